//! This process's threads as Linux shows them (name, CPU time, nice value), and who gets
//! the CPU first when there is not enough of it.
//!
//! An event is acknowledged only once the log has synced it, so the threads on that path
//! (the collector's HTTP workers and the log writer) keep the normal priority, and so does
//! the processor: profiles are promised fresh within tens of milliseconds under load, and
//! at nice 5 it fell behind whenever ingestion saturated the machine (`persona bench
//! profiles` on a slow VM: freshness p50 167 ms and p99 1.4 s, against 3.6 ms and 424 ms at
//! normal priority). The store's flush and compaction can wait (the store slows the
//! processor's writes if they fall far behind), so they run lower, as RocksDB lowers its
//! compaction pool (`LowerThreadPoolCPUPriority`).

/// The store's flush and compaction threads: under full contention about a tenth of a
/// normal thread's share, and all of whatever is idle.
pub const BACKGROUND_NICE: i32 = 10;

/// One thread as `/proc/<pid>/task/<tid>/stat` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ThreadStat {
    pub tid: u32,
    /// The first 15 bytes of its name, as Linux keeps them.
    pub name: String,
    /// User plus system CPU time so far.
    pub cpu_seconds: f64,
    pub nice: i32,
}

impl ThreadStat {
    /// Reads a stat line; `ticks_per_second` is the unit of its CPU times.
    pub fn parse(stat: &str, ticks_per_second: f64) -> Option<Self> {
        // The name is in parentheses and may itself hold spaces and parentheses.
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let tid = stat.get(..open)?.trim().parse().ok()?;
        let name = stat.get(open + 1..close)?.to_string();
        // Fields from 3 (the state) on: utime and stime are 14 and 15, nice is 19.
        let fields: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
        let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
        Some(ThreadStat {
            tid,
            name,
            cpu_seconds: (ticks(14)? + ticks(15)?) / ticks_per_second,
            nice: fields.get(19 - 3)?.parse().ok()?,
        })
    }
}

/// Every thread of process `pid` now; empty where `/proc` cannot be read.
#[cfg(target_os = "linux")]
pub fn threads(pid: u32) -> Vec<ThreadStat> {
    // SAFETY: sysconf reads its integer argument and nothing else.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            ThreadStat::parse(&stat, ticks)
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
pub fn threads(_pid: u32) -> Vec<ThreadStat> {
    Vec::new()
}

/// Thread `tid` of this process now.
pub fn thread(tid: u32) -> Option<ThreadStat> {
    threads(std::process::id())
        .into_iter()
        .find(|t| t.tid == tid)
}

/// Sets the nice value of thread `tid` of this process (0: the calling thread); false where
/// the system refuses or has no per-thread priorities.
#[cfg(target_os = "linux")]
pub fn set_thread_nice(tid: u32, nice: i32) -> bool {
    // SAFETY: setpriority reads its three integer arguments and nothing else; on Linux
    // PRIO_PROCESS with a thread id (0 for the caller) sets that one thread's nice value.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) == 0 }
}

#[cfg(not(target_os = "linux"))]
pub fn set_thread_nice(_tid: u32, _nice: i32) -> bool {
    false
}

/// The calling thread's id.
#[cfg(target_os = "linux")]
pub fn current_thread_id() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_whatever_the_name_holds() {
        let stat = "4242 (tokio rt) (worker) S 1 2 3 4 5 6 7 8 9 10 150 50 0 0 20 5 3 0";
        assert_eq!(
            ThreadStat::parse(stat, 100.0),
            Some(ThreadStat {
                tid: 4242,
                name: "tokio rt) (worker".into(),
                cpu_seconds: 2.0,
                nice: 5,
            })
        );
        assert_eq!(ThreadStat::parse("4242 (cut", 100.0), None);
        assert_eq!(ThreadStat::parse("4242 (short) S 1 2", 100.0), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_lowers_its_own_priority_and_no_other() {
        let nice = |tid| thread(tid).unwrap().nice;
        let me = current_thread_id();
        let mine = nice(me);
        let (before, after) = std::thread::spawn(move || {
            let tid = current_thread_id();
            let before = nice(tid);
            assert!(set_thread_nice(0, before + 3));
            (before, nice(tid))
        })
        .join()
        .unwrap();
        assert_eq!(after, before + 3);
        assert_eq!(nice(me), mine, "the spawning thread keeps its priority");
    }
}
