//! This process's threads as Linux shows them (name, CPU time, nice value), and who gets
//! the CPU first when there is not enough of it.
//!
//! An event is acknowledged only once the log has synced it, so the threads on that path
//! (the collector's HTTP workers, which also run the log's group commits) keep the normal
//! priority, and so does the processor: profiles are promised fresh within tens of milliseconds under load, and
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
///
/// Linux ends a listing of `/proc/<pid>/task` early when the thread it has reached exits
/// meanwhile, so one pass can miss live threads whenever others are exiting. Passes are
/// repeated, keeping every thread seen, until two in a row list the same threads: a cut-short
/// pass would have to be cut at the same place twice.
#[cfg(target_os = "linux")]
pub fn threads(pid: u32) -> Vec<ThreadStat> {
    const MAX_PASSES: usize = 8;
    let dir = format!("/proc/{pid}/task");
    let mut seen: Vec<ThreadStat> = Vec::new();
    let mut previous: Option<Vec<u32>> = None;
    for _ in 0..MAX_PASSES {
        let Ok(tasks) = std::fs::read_dir(&dir) else {
            break;
        };
        let mut listed: Vec<u32> = tasks
            .flatten()
            .filter_map(|task| task.file_name().to_str()?.parse().ok())
            .collect();
        listed.sort_unstable();
        for &tid in &listed {
            if seen.iter().all(|t| t.tid != tid) {
                seen.extend(read_stat(pid, tid));
            }
        }
        if previous.as_ref() == Some(&listed) {
            break;
        }
        previous = Some(listed);
    }
    seen
}

#[cfg(not(target_os = "linux"))]
pub fn threads(_pid: u32) -> Vec<ThreadStat> {
    Vec::new()
}

/// Thread `tid` of this process now, read directly rather than found in a listing.
#[cfg(target_os = "linux")]
pub fn thread(tid: u32) -> Option<ThreadStat> {
    read_stat(std::process::id(), tid)
}

#[cfg(not(target_os = "linux"))]
pub fn thread(_tid: u32) -> Option<ThreadStat> {
    None
}

#[cfg(target_os = "linux")]
fn read_stat(pid: u32, tid: u32) -> Option<ThreadStat> {
    // SAFETY: sysconf reads its integer argument and nothing else.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).ok()?;
    ThreadStat::parse(&stat, ticks)
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
    fn a_listing_finds_a_live_thread_while_older_ones_exit() {
        use std::time::{Duration, Instant};
        let mut misses = 0;
        for _ in 0..150 {
            // Threads that exit one after another while a younger one is looked for: the
            // listing reaches the young thread only by passing the exiting ones.
            let exiting: Vec<_> = (0..64u64)
                .map(|i| {
                    std::thread::spawn(move || {
                        let until = Instant::now() + Duration::from_micros(20 * i);
                        while Instant::now() < until {
                            std::hint::spin_loop();
                        }
                    })
                })
                .collect();
            let (tx, rx) = std::sync::mpsc::channel();
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let young = std::thread::spawn(move || {
                tx.send(current_thread_id()).unwrap();
                let _ = stop_rx.recv();
            });
            let tid = rx.recv().unwrap();
            while !exiting.iter().all(|t| t.is_finished()) {
                if threads(std::process::id()).iter().all(|t| t.tid != tid) {
                    misses += 1;
                }
            }
            exiting.into_iter().for_each(|t| t.join().unwrap());
            drop(stop_tx);
            young.join().unwrap();
        }
        assert_eq!(misses, 0, "listings that missed a live thread");
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
