//! Latency percentiles, and a process's CPU time and resident memory from `/proc`.

use anyhow::Context;
use serde::Serialize;

/// Relay latency percentiles, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Latency {
    /// How many messages the percentiles are over.
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles of `samples` (nanoseconds; sorted in place), or `None` when there are none.
    pub fn of(samples: &mut [u64]) -> Option<Self> {
        samples.sort_unstable();
        let last = samples.len().checked_sub(1)?;
        // Nearest rank: the smallest sample with at least q of all samples at or below it.
        let at = |q: f64| {
            let rank = (q * samples.len() as f64).ceil() as usize;
            samples[rank.saturating_sub(1).min(last)] as f64 / 1000.0
        };
        Some(Self {
            count: samples.len(),
            p50_us: at(0.50),
            p99_us: at(0.99),
            p999_us: at(0.999),
            max_us: samples[last] as f64 / 1000.0,
        })
    }
}

/// One reading of a process's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
}

/// Linux reports /proc CPU times in USER_HZ, which is 100 on every architecture it runs on.
pub const TICKS_PER_SEC: f64 = 100.0;

impl ProcSample {
    /// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
    pub fn read(pid: u32) -> anyhow::Result<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .with_context(|| format!("cannot read /proc/{pid}/status"))?;
        Ok(Self {
            cpu_ticks: cpu_ticks(&stat).context("unexpected /proc/PID/stat")?,
            rss_kib: rss_kib(&status).context("no VmRSS in /proc/PID/status")?,
        })
    }

    /// CPU seconds from `earlier` to `self`.
    pub fn cpu_secs_since(&self, earlier: &Self) -> f64 {
        self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / TICKS_PER_SEC
    }
}

/// utime + stime: fields 14 and 15, counted after the `(comm)` field, which may hold spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).rev().map(|us| us * 1000).collect();
        let lat = Latency::of(&mut samples).unwrap();
        assert_eq!(lat.count, 1000);
        assert_eq!(lat.p50_us, 500.0);
        assert_eq!(lat.p99_us, 990.0);
        assert_eq!(lat.p999_us, 999.0);
        assert_eq!(lat.max_us, 1000.0);
        assert_eq!(Latency::of(&mut []), None);
    }

    #[test]
    fn proc_fields_are_found() {
        let stat = "42 (tokio (x) y) S 1 42 42 0 -1 4194560 900 0 0 0 250 30 0 0 20 0 3 0";
        assert_eq!(cpu_ticks(stat), Some(280));
        assert_eq!(rss_kib("Name:\tx\nVmRSS:\t  12345 kB\nThreads: 3\n"), Some(12345));
        let me = ProcSample::read(std::process::id()).unwrap();
        assert!(me.rss_kib > 0);
    }
}
