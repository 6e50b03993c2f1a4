//! The embedded store's background work runs below the threads that take events.
//!
//! fjall flushes full memtables and compacts tables on its own worker threads. A flush of a
//! 64 MiB memtable is a few hundred milliseconds of one core; on a two-core machine it took
//! that core from the collector and the stream stage at once, and single-event
//! acknowledgements waited for it. fjall starts those threads itself, so they are found by
//! name and given [`persona_core::threads::BACKGROUND_NICE`].

use persona_core::threads::{set_thread_nice, threads};

/// fjall's name for its flush and compaction threads.
pub(crate) const FJALL_WORKERS: &str = "fjall:worker";

/// Sets the nice value of every thread of this process named `name`; returns how many.
pub(crate) fn lower_priority(name: &str, nice: i32) -> usize {
    threads(std::process::id())
        .into_iter()
        .filter(|t| t.name == name && set_thread_nice(t.tid, nice))
        .count()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use persona_core::threads::{current_thread_id, thread};

    fn nice(tid: u32) -> i32 {
        thread(tid).unwrap().nice
    }

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
        let before = nice(tid);
        let me = current_thread_id();
        let mine = nice(me);

        assert_eq!(lower_priority("persona-bg-test", before + 5), 1);
        assert_eq!(nice(tid), before + 5);
        assert_eq!(nice(me), mine, "other threads keep their priority");
        drop(stop_tx);
        worker.join().unwrap();
    }
}
