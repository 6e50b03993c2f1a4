//! Who gets the CPU first when there is not enough of it.
//!
//! An event is acknowledged only once the log has synced it, so the threads on that path
//! (the collector's HTTP workers and the log writer) keep the normal priority, and so does
//! the processor: profiles are promised fresh within tens of milliseconds under load, and
//! at nice 5 it fell behind whenever ingestion saturated the machine (`persona bench
//! profiles` on a slow VM: freshness p50 167 ms and p99 1.4 s, against 3.6 ms and 424 ms at
//! normal priority). The store's flush
//! and compaction can wait (the store slows the processor's writes if they fall far
//! behind), so they run lower, as RocksDB lowers its compaction pool
//! (`LowerThreadPoolCPUPriority`).

/// The store's flush and compaction threads: under full contention about a tenth of a
/// normal thread's share, and all of whatever is idle.
pub const BACKGROUND_NICE: i32 = 10;

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

/// The nice value of thread `tid` of this process, read from `/proc`.
#[cfg(target_os = "linux")]
pub fn thread_nice(tid: u32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // Field 19; the thread's name before it is in parentheses and may hold spaces.
    let after_name = stat.get(stat.rfind(')')? + 2..)?;
    after_name.split(' ').nth(16)?.parse().ok()
}

/// The calling thread's id.
#[cfg(target_os = "linux")]
pub fn current_thread_id() -> u32 {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() as u32 }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_lowers_its_own_priority_and_no_other() {
        let me = current_thread_id();
        let mine = thread_nice(me).unwrap();
        let (before, after) = std::thread::spawn(|| {
            let tid = current_thread_id();
            let before = thread_nice(tid).unwrap();
            assert!(set_thread_nice(0, before + 3));
            (before, thread_nice(tid).unwrap())
        })
        .join()
        .unwrap();
        assert_eq!(after, before + 3);
        assert_eq!(
            thread_nice(me),
            Some(mine),
            "the spawning thread keeps its priority"
        );
    }
}
