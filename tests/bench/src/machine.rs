//! What a table says about the machine it was measured on.

use std::fmt;

/// The cores and the load average (1, 5 and 15 minutes).
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
}

impl Machine {
    pub fn this() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| cpu_model(&info))
            .unwrap_or_else(|| "unknown CPU".to_owned());
        Self { cores, cpu }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cores ({})", self.cores, self.cpu)
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, model)| model.trim().to_owned())
}

/// A scenario's heading, then the machine, the load average around the run and the command.
pub fn print_heading(title: &str, before: LoadAverage, after: LoadAverage) {
    let command: Vec<String> = std::env::args().skip(1).collect();
    println!("## {title}\n");
    println!(
        "- machine: {}; load average (1, 5, 15 min) {before} before, {after} after",
        Machine::this()
    );
    println!("- command: `scripts/bench {}`", command.join(" "));
}

/// The load average now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadAverage(pub [f64; 3]);

impl LoadAverage {
    pub fn now() -> Self {
        std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| parse_loadavg(&s))
            .unwrap_or_default()
    }
}

impl fmt::Display for LoadAverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [one, five, fifteen] = self.0;
        write!(f, "{one:.2} {five:.2} {fifteen:.2}")
    }
}

fn parse_loadavg(s: &str) -> Option<LoadAverage> {
    let mut fields = s.split_whitespace().map(str::parse::<f64>);
    let mut next = || fields.next()?.ok();
    Some(LoadAverage([next()?, next()?, next()?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_formats() {
        let load = parse_loadavg("2.94 2.16 2.18 3/300 6922\n");
        assert_eq!(load, Some(LoadAverage([2.94, 2.16, 2.18])));
        assert_eq!(
            load.map(|l| l.to_string()).as_deref(),
            Some("2.94 2.16 2.18")
        );
        assert_eq!(parse_loadavg("garbage"), None);
        let info = "processor\t: 0\nmodel name\t: Some CPU @ 2.10GHz\nflags\t: x\n";
        assert_eq!(cpu_model(info).as_deref(), Some("Some CPU @ 2.10GHz"));
    }
}
