//! The threads queries run on.
//!
//! DataFusion computes on the async runtime that polls it. On the server's own runtime a
//! heavy query would hold the workers that answer ingestion; on a runtime of its own, at a
//! lower CPU priority, it takes what the server leaves (as PostgreSQL leaves analytics to
//! replicas and ClickHouse caps a query's threads).

use std::future::Future;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// How much less CPU priority query threads get than the server (a nice value).
const NICENESS: libc::c_int = 10;

pub(crate) struct QueryRuntime {
    runtime: Option<Runtime>,
    threads: usize,
}

impl QueryRuntime {
    pub fn start() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("persona-sql")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(QueryRuntime {
            runtime: Some(runtime),
            threads,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("running until dropped")
            .spawn(task)
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropped on the server's runtime at shutdown, where a blocking drop would panic.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Lowers the calling thread's priority. Linux's `setpriority` with a thread id sets
/// that thread alone; failing to is harmless.
fn lower_priority() {
    // SAFETY: plain system calls on the calling thread, with no pointers.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        let _ = libc::setpriority(libc::PRIO_PROCESS, thread, NICENESS);
    }
}
