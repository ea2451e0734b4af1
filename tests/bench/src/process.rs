//! The processes a scenario starts: servers that run until stopped, and one-shot measurers
//! whose report is one JSON line on their standard output.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::de::DeserializeOwned;
use tokio::process::{Child, Command};

/// A free port on 127.0.0.1 (bound, then released for the process that will listen on it).
pub fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?)
}

/// This harness's binary, and the `gallery` binary a scenario runs: `explicit`, or the one
/// beside the harness (built by `scripts/bench`).
pub fn binaries(explicit: Option<&Path>) -> anyhow::Result<(PathBuf, PathBuf)> {
    let exe = std::env::current_exe()?;
    let gallery = explicit.map_or_else(|| exe.with_file_name("gallery"), Path::to_path_buf);
    anyhow::ensure!(
        gallery.exists(),
        "no gallery binary at {} (scripts/bench builds it)",
        gallery.display()
    );
    Ok((exe, gallery))
}

/// A server process, killed if it is still running when dropped.
#[derive(Debug)]
pub struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `command`, its output into `<dir>/<name>.log`.
    pub fn start(name: &'static str, mut command: Command, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log)?;
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("could not start the {name}"))?;
        Ok(Self { name, child, log })
    }

    /// Starts `command` and waits until it answers on `addr` (two minutes at most).
    pub async fn start_healthy(
        name: &'static str,
        command: Command,
        addr: SocketAddr,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut server = Self::start(name, command, dir)?;
        server.wait_healthy(addr, Duration::from_secs(120)).await?;
        Ok(server)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Waits until `GET /healthz` on `addr` answers `200`, at most `patience`.
    pub async fn wait_healthy(
        &mut self,
        addr: SocketAddr,
        patience: Duration,
    ) -> anyhow::Result<()> {
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        let deadline = tokio::time::Instant::now() + patience;
        let url = format!("http://{addr}/healthz");
        loop {
            self.ensure_running()?;
            if client
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(());
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the {} did not answer on {url} within {} s; its log ({}):\n{}",
                self.name,
                patience.as_secs(),
                self.log.display(),
                tail(&self.log)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails, with the end of its log, when the process has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "the {} exited ({status}); its log ({}):\n{}",
                self.name,
                self.log.display(),
                tail(&self.log)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after ten seconds.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let pid = Pid::from_raw(i32::try_from(pid)?);
            // Already gone is fine: the wait below reaps it.
            let _ = kill(pid, Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(10), self.child.wait())
                .await
                .is_ok()
            {
                return Ok(());
            }
            tracing::warn!(name = self.name, "did not stop within 10 s; killing it");
        }
        self.child.kill().await?;
        Ok(())
    }
}

/// Starts a server and waits until `GET /healthz` on `addr` answers (at most two minutes).
pub async fn start_healthy(
    name: &'static str,
    command: Command,
    addr: SocketAddr,
    dir: &Path,
) -> anyhow::Result<Server> {
    let mut server = Server::start(name, command, dir)?;
    server.wait_healthy(addr, Duration::from_secs(120)).await?;
    Ok(server)
}

/// The last lines of a log.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Runs a measurer to its end and reads its report (its last line of output).
pub async fn report<T: DeserializeOwned>(
    name: &str,
    mut command: Command,
    dir: &Path,
) -> anyhow::Result<T> {
    let log = dir.join(format!("{name}.log"));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log)?)
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .with_context(|| format!("could not run {name}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{name} failed ({}); its log ({}):\n{}",
        output.status,
        log.display(),
        tail(&log)
    );
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{name} printed no report: {stdout}"))
}
