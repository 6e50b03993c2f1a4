//! CPU time of a server process's threads, grouped by the work they do, read from Linux's
//! `/proc`: where a request's CPU goes without a profiler, and a steadier figure than
//! requests per second on a machine whose speed drifts while it is measured.

use std::collections::{BTreeMap, HashMap};

/// Each thread's group and CPU seconds (user and system) at one moment.
#[derive(Debug, Clone, Default)]
pub struct ThreadTimes(HashMap<u32, (&'static str, f64)>);

/// The group a thread's name puts it in; Linux keeps the first 15 bytes of a name. The
/// log's group commits run on the HTTP workers (see `persona_log`), so their CPU counts there.
fn group(name: &str) -> &'static str {
    match name {
        n if n.starts_with("tokio") => "HTTP workers",
        n if n.starts_with("persona-process") => "processor",
        n if n.starts_with("fjall") => "store background",
        _ => "other",
    }
}

impl ThreadTimes {
    /// The threads of process `pid` now; empty where `/proc` cannot be read.
    pub fn read(pid: u32) -> Self {
        let threads = persona_core::threads::threads(pid)
            .into_iter()
            .map(|t| (t.tid, (group(&t.name), t.cpu_seconds)))
            .collect();
        ThreadTimes(threads)
    }

    /// CPU seconds by group between `earlier` and this reading; a thread that ended in
    /// between is left out, one that started counts whole.
    pub fn since(&self, earlier: &ThreadTimes) -> BTreeMap<&'static str, f64> {
        let mut groups = BTreeMap::new();
        for (tid, (group, now)) in &self.0 {
            let before = earlier.0.get(tid).map_or(0.0, |(_, s)| *s);
            *groups.entry(*group).or_default() += now - before;
        }
        groups
    }
}

/// CPU microseconds per request, by group and in all, summed over several phases.
#[derive(Debug, Default, serde::Serialize)]
pub struct PerRequest {
    pub total_us: f64,
    pub groups_us: BTreeMap<&'static str, f64>,
    #[serde(skip)]
    seconds: BTreeMap<&'static str, f64>,
    #[serde(skip)]
    requests: usize,
}

impl PerRequest {
    /// Adds a phase that answered `requests` requests while the server used `seconds`.
    pub fn add(&mut self, seconds: BTreeMap<&'static str, f64>, requests: usize) {
        for (group, s) in seconds {
            *self.seconds.entry(group).or_default() += s;
        }
        self.requests += requests;
        let per = |s: f64| s * 1e6 / self.requests.max(1) as f64;
        self.groups_us = self.seconds.iter().map(|(g, s)| (*g, per(*s))).collect();
        self.total_us = per(self.seconds.values().sum());
    }
}

impl std::fmt::Display for PerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1} µs", self.total_us)?;
        if self.groups_us.len() > 1 {
            let parts: Vec<String> = self
                .groups_us
                .iter()
                .map(|(g, us)| format!("{g} {us:.1}"))
                .collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// The whole machine's CPU time so far (all cores), from the first line of `/proc/stat`:
/// all of it, the part idle or waiting for the disk, and the part a VM's host ran something
/// else on its vCPUs (steal).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MachineTimes {
    total: u64,
    idle: u64,
    stolen: u64,
}

impl MachineTimes {
    /// Now; zero where `/proc/stat` cannot be read.
    pub fn read() -> Self {
        Self::parse(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
    }

    /// `cpu  user nice system idle iowait irq softirq steal guest guest_nice`, in ticks;
    /// guest time is already inside user and nice, so it is not added again.
    fn parse(stat: &str) -> Self {
        let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        let ticks: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .map(|t| t.parse().unwrap_or(0))
            .collect();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
        MachineTimes {
            total: ticks.iter().sum(),
            idle: tick(3) + tick(4),
            stolen: tick(7),
        }
    }
}

/// The share of the machine left idle (or waiting for the disk), summed over several
/// phases: near zero when a server is bound by CPU, large when it is bound by latency.
/// Beside it the share the VM's host took: a run in which it is more than a few percent
/// measured the host as much as the servers.
#[derive(Debug, Default, serde::Serialize)]
pub struct IdleShare {
    pub share: f64,
    pub stolen_share: f64,
    #[serde(skip)]
    total: u64,
    #[serde(skip)]
    idle: u64,
    #[serde(skip)]
    stolen: u64,
}

impl IdleShare {
    pub fn add(&mut self, before: MachineTimes, after: MachineTimes) {
        self.total += after.total.saturating_sub(before.total);
        self.idle += after.idle.saturating_sub(before.idle);
        self.stolen += after.stolen.saturating_sub(before.stolen);
        self.share = self.idle as f64 / self.total.max(1) as f64;
        self.stolen_share = self.stolen as f64 / self.total.max(1) as f64;
    }
}

impl std::fmt::Display for IdleShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0}% ({:.0}% taken by the VM's host)",
            self.share * 100.0,
            self.stolen_share * 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_share_counts_idle_and_iowait_and_steal_apart() {
        let stat = |user: u64, idle: u64, iowait: u64| {
            format!(
                "cpu  {user} 0 100 {idle} {iowait} 0 0 0 50 0\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n"
            )
        };
        let before = MachineTimes::parse(&stat(1000, 500, 0));
        assert_eq!(
            before,
            MachineTimes {
                total: 1600,
                idle: 500,
                stolen: 0
            }
        );
        let mut share = IdleShare::default();
        share.add(before, MachineTimes::parse(&stat(1600, 800, 100)));
        assert_eq!(share.to_string(), "40% (0% taken by the VM's host)");
        // A second phase adds up with the first, weighted by its length.
        let later = MachineTimes::parse(&stat(5000, 800, 100));
        share.add(later, MachineTimes::parse(&stat(5000, 1000, 100)));
        assert!((share.share - 0.5).abs() < 1e-9, "{}", share.share);
        assert_eq!(MachineTimes::parse("garbage"), MachineTimes::default());
        // Steal is the eighth column: time the host ran something else on these vCPUs.
        let mut host = IdleShare::default();
        host.add(
            MachineTimes::parse("cpu  0 0 0 0 0 0 0 0 0 0\n"),
            MachineTimes::parse("cpu  100 0 0 100 0 0 0 50 0 0\n"),
        );
        assert_eq!(host.to_string(), "40% (20% taken by the VM's host)");
        // The real file parses, and time moves on.
        let now = MachineTimes::read();
        assert!(now.total > 0 && now.idle <= now.total, "{now:?}");
    }

    #[test]
    fn this_process_is_seen_using_cpu_in_its_own_thread() {
        let me = std::process::id();
        let before = ThreadTimes::read(me);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        let used = loop {
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let used = ThreadTimes::read(me).since(&before);
            if used.get("other").copied().unwrap_or(0.0) >= 0.2 {
                break used;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no CPU time seen: {used:?}"
            );
        };
        assert!(used.values().all(|s| *s >= 0.0), "{used:?}");

        let mut per = PerRequest::default();
        per.add(
            BTreeMap::from([("processor", 0.5), ("HTTP workers", 1.5)]),
            100_000,
        );
        per.add(BTreeMap::from([("HTTP workers", 2.0)]), 100_000);
        assert_eq!(per.total_us, 20.0);
        assert_eq!(per.groups_us["processor"], 2.5);
        assert_eq!(
            per.to_string(),
            "20.0 µs (HTTP workers 17.5, processor 2.5)"
        );
    }
}
