//! How the log's group commit tells the processor that new records are durable.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

use persona_log::CommitObserver;

/// Wakes the processor when the log commits new records. Clones share one signal.
///
/// Lock-free on purpose: the append committing a group calls [`Wakeup::notify`] after
/// every sync, and every acknowledgement in the group waits for it. With a mutex here, a processor preempted
/// while holding it would hold up every sender until it ran again.
#[derive(Clone, Default)]
pub struct Wakeup(Arc<WakeupInner>);

#[derive(Default)]
struct WakeupInner {
    pending: AtomicBool,
    /// The waiting thread, known from its first wait on.
    waiter: OnceLock<Thread>,
}

impl Wakeup {
    pub fn notify(&self) {
        // Already pending: the notification that set it has woken the waiter, or the waiter
        // will see the flag before it parks. Nothing more to do on the commit's hot path.
        if self.0.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(t) = self.0.waiter.get() {
            t.unpark();
        }
    }

    /// Returns once notified (at once if a notification came since the last wait) or after
    /// `timeout`. Only one thread may wait.
    pub(crate) fn wait(&self, timeout: Duration) {
        let me = self.0.waiter.get_or_init(std::thread::current);
        debug_assert_eq!(me.id(), std::thread::current().id(), "one waiting thread");
        // A notify between this check and the park leaves its unpark token, so the park
        // returns at once: no wakeup is lost.
        if !self.0.pending.swap(false, Ordering::AcqRel) {
            std::thread::park_timeout(timeout);
            self.0.pending.store(false, Ordering::Release);
        }
    }
}

impl CommitObserver for Wakeup {
    fn on_commit(&self, _: u64, _: u64, _: Duration) {
        self.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let w = Wakeup::default();
        w.wait(Duration::from_millis(1)); // registers this thread
        w.notify();
        let t = Instant::now();
        w.wait(Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn without_a_notification_the_wait_times_out() {
        let w = Wakeup::default();
        let t = Instant::now();
        w.wait(Duration::from_millis(50));
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn a_notification_from_another_thread_wakes_the_waiter() {
        let w = Wakeup::default();
        w.wait(Duration::from_millis(1));
        let notifier = {
            let w = w.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                w.notify();
            })
        };
        let t = Instant::now();
        w.wait(Duration::from_secs(10));
        assert!(t.elapsed() < Duration::from_secs(5));
        notifier.join().unwrap();
    }
}
