//! The embedded store's background work runs below the threads that take events.
//!
//! fjall flushes full memtables and compacts tables on its own worker threads. A flush of a
//! 64 MiB memtable is a few hundred milliseconds of one core; on a two-core machine it took
//! that core from the collector and the stream stage at once, and single-event
//! acknowledgements waited for it. fjall starts those threads itself, so they are found by
//! name and given [`persona_core::priority::BACKGROUND_NICE`].

use persona_core::priority::set_thread_nice;

/// fjall's name for its flush and compaction threads.
pub(crate) const FJALL_WORKERS: &str = "fjall:worker";

/// Sets the nice value of every thread of this process named `name`; returns how many.
pub(crate) fn lower_priority(name: &str, nice: i32) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse::<u32>().ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            (comm.trim_end() == name).then_some(tid)
        })
        .filter(|&tid| set_thread_nice(tid, nice))
        .count()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use persona_core::priority::{current_thread_id, thread_nice};

    #[test]
    fn only_the_named_threads_are_lowered() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name("persona-bg-test".into())
            .spawn(move || {
                tx.send(current_thread_id()).unwrap();
                let _ = stop_rx.recv();
            })
            .unwrap();
        let tid = rx.recv().unwrap();
        let before = thread_nice(tid).unwrap();
        let me = current_thread_id();
        let mine = thread_nice(me).unwrap();

        assert_eq!(lower_priority("persona-bg-test", before + 5), 1);
        assert_eq!(thread_nice(tid), Some(before + 5));
        assert_eq!(
            thread_nice(me),
            Some(mine),
            "other threads keep their priority"
        );
        drop(stop_tx);
        worker.join().unwrap();
    }
}
