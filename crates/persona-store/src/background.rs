//! The embedded store's background work runs below the threads that take events.
//!
//! fjall flushes full memtables and compacts tables on its own worker threads. A flush of a
//! 64 MiB memtable is a few hundred milliseconds of one core; on a two-core machine it took
//! that core from the collector and the stream stage at once, and single-event
//! acknowledgements waited for it. Background work can wait a little without anyone
//! noticing (fjall slows writers down if it falls far behind), so its threads get a lower
//! CPU priority, as RocksDB does for its compaction pool (`LowerThreadPoolCPUPriority`).

/// fjall's name for its flush and compaction threads.
pub(crate) const FJALL_WORKERS: &str = "fjall:worker";

/// The nice value given to them: under full contention a nice-10 thread gets about a tenth
/// of the CPU share of a normal one, and all of whatever is idle.
pub(crate) const BACKGROUND_NICE: i32 = 10;

/// Sets the nice value of every thread of this process named `name`; returns how many.
#[cfg(target_os = "linux")]
pub(crate) fn lower_priority(name: &str, nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut lowered = 0;
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        // SAFETY: setpriority reads its three integer arguments and nothing else; on Linux
        // PRIO_PROCESS with a thread id sets that one thread's nice value.
        let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } == 0;
        if done {
            lowered += 1;
        }
    }
    lowered
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn lower_priority(_name: &str, _nice: i32) -> usize {
    0
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn nice_of(tid: i32) -> i32 {
        // Field 19 of /proc/<pid>/task/<tid>/stat; the name before it may hold spaces.
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    fn only_the_named_threads_are_lowered() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("persona-bg-test".into())
            .spawn(move || {
                // SAFETY: gettid takes no arguments.
                tx.send(unsafe { libc::gettid() }).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let before = nice_of(tid);
        // SAFETY: as above.
        let me = unsafe { libc::gettid() };
        let mine = nice_of(me);

        assert_eq!(lower_priority("persona-bg-test", before + 5), 1);
        assert_eq!(nice_of(tid), before + 5);
        assert_eq!(nice_of(me), mine, "other threads keep their priority");
        drop(stop_tx);
        worker.join().unwrap();
    }
}
