//! A CPU profile of a process under load with Linux `perf` (installed by `scripts/bench`):
//! samples of the process's threads while a measurement runs, then the share of each thread
//! and of each symbol (the `benchmark` profile keeps line tables, so symbols are named).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// Samples per second and thread.
const FREQUENCY: &str = "999";
/// With call stacks (each sample copies 32 KiB of stack).
const CALLS_FREQUENCY: &str = "249";

/// A running `perf record`.
#[derive(Debug)]
pub struct Recording {
    perf: Child,
    data: PathBuf,
}

/// Starts sampling `pid` into `<dir>/<name>.perf.data`; with `calls`, the call stacks too (from
/// DWARF unwinding, at a quarter of the rate: `perf report -i <data> --children` shows who
/// calls what).
pub fn start(pid: u32, dir: &Path, name: &str, calls: bool) -> anyhow::Result<Recording> {
    let data = dir.join(format!("{name}.perf.data"));
    let mut perf = Command::new("perf");
    perf.args(["record", "--quiet", "-p", &pid.to_string()]);
    if calls {
        perf.args(["-F", CALLS_FREQUENCY, "--call-graph", "dwarf,32768"]);
    } else {
        perf.args(["-F", FREQUENCY]);
    }
    let perf = perf
        .arg("-o")
        .arg(&data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("could not start `perf record` (scripts/bench installs linux-perf)")?;
    Ok(Recording { perf, data })
}

impl Recording {
    /// Stops sampling and reports: the share of each thread, then of each symbol (above half
    /// a percent). The full reports are kept beside the data.
    pub async fn finish(mut self) -> anyhow::Result<String> {
        if let Some(pid) = self.perf.id() {
            let _ = kill(Pid::from_raw(i32::try_from(pid)?), Signal::SIGINT);
        }
        self.perf.wait().await?;
        let threads = self.report(&["--sort", "comm"]).await?;
        let objects = self.report(&["--sort", "dso"]).await?;
        let symbols = self
            .report(&["--sort", "dso,symbol", "--percent-limit", "0.5"])
            .await?;
        let text = format!(
            "by thread:\n{threads}\nby object:\n{objects}\nby symbol:\n{symbols}\n(data: {})",
            self.data.display()
        );
        std::fs::write(self.data.with_extension("txt"), &text)?;
        Ok(text)
    }

    async fn report(&self, sort: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("perf")
            .args(["report", "--stdio", "--no-children", "-g", "none", "-i"])
            .arg(&self.data)
            .args(sort)
            .output()
            .await?;
        anyhow::ensure!(
            output.status.success(),
            "perf report failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The rows only, without the header's comments, blank lines and padding.
        Ok(String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n"))
    }
}
