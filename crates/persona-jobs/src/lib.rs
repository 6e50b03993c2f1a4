//! persona's scheduled jobs: the in-process cron of the brief.
//!
//! A job is a named piece of maintenance (compacting the lake, snapshotting the profiles)
//! with an optional schedule, a standard five-field cron expression in UTC. One thread
//! runs the jobs that fall due, one at a time; the API and the CLI run any job at once on
//! request (`POST /v1/jobs/{name}/run`, `persona jobs run NAME`), which is how an outside
//! orchestrator (Airflow, a crontab) drives them instead: the CLI exits non-zero when the
//! job fails. A job never runs twice at once. As with cron, a run missed while the server
//! was down is not made up; the next falls at the next time the expression names.

mod metrics;
mod schedule;

pub use metrics::JobMetrics;
pub use schedule::Schedule;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// What a job does; answers a summary of what it did, or why it failed. Runs on the
/// scheduler's thread or a request's blocking thread, never on an async worker.
pub type Work = Box<dyn Fn() -> Result<serde_json::Value, String> + Send + Sync>;

/// A job to register.
pub struct JobSpec {
    pub name: &'static str,
    pub description: &'static str,
    /// When it runs by itself; `None` for only on request.
    pub schedule: Option<Schedule>,
    pub work: Work,
}

/// Why a run ended as it did.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
}

/// What started a run.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Request,
}

/// One run of a job.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub job: &'static str,
    pub trigger: Trigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: f64,
    pub outcome: Outcome,
    /// The job's summary when it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job as `GET /v1/jobs` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub name: &'static str,
    pub description: &'static str,
    /// The cron expression (UTC), or null when it runs only on request.
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    pub running: bool,
    /// Runs since the server started, and how many of them failed.
    pub runs: u64,
    pub failures: u64,
    pub last_run: Option<Run>,
}

/// Why a job could not be started on request.
#[derive(Debug, PartialEq, Eq)]
pub enum RunError {
    Unknown {
        name: String,
        known: Vec<&'static str>,
    },
    AlreadyRunning(&'static str),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Unknown { name, known } => write!(
                f,
                "no job is named {name:?}; the jobs are {}",
                known.join(", ")
            ),
            RunError::AlreadyRunning(name) => write!(
                f,
                "job {name} is running already; wait for it to finish (GET /v1/jobs shows it)"
            ),
        }
    }
}

struct Entry {
    spec: JobSpec,
    running: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: Option<DateTime<Utc>>,
    runs: u64,
    failures: u64,
    last: Option<Run>,
}

impl Entry {
    fn state(&self) -> MutexGuard<'_, State> {
        // Held only to read or write a few fields; a panic there cannot leave them half set.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The registered jobs.
pub struct Jobs {
    entries: Vec<Entry>,
    metrics: JobMetrics,
}

/// The scheduler's thread; dropping it stops the thread after the job it is running.
pub struct Scheduler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// The longest the scheduler sleeps before it looks at the clock again (a clock set
/// forward would otherwise make it oversleep).
const LONGEST_SLEEP: Duration = Duration::from_secs(30);

impl Jobs {
    /// Registers `specs` and starts the thread that runs them on their schedules.
    pub fn start(
        specs: Vec<JobSpec>,
        metrics: JobMetrics,
    ) -> std::io::Result<(Arc<Jobs>, Scheduler)> {
        let now = Utc::now();
        let entries = specs
            .into_iter()
            .map(|spec| {
                let next = spec.schedule.as_ref().and_then(|s| s.next_after(now));
                Entry {
                    spec,
                    running: AtomicBool::new(false),
                    state: Mutex::new(State {
                        next,
                        ..State::default()
                    }),
                }
            })
            .collect();
        let jobs = Arc::new(Jobs { entries, metrics });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (jobs, stop) = (jobs.clone(), stop.clone());
            std::thread::Builder::new()
                .name("persona-jobs".into())
                .spawn(move || jobs.schedule(&stop))?
        };
        Ok((
            jobs,
            Scheduler {
                stop,
                thread: Some(thread),
            },
        ))
    }

    /// Every job, in the order registered.
    pub fn list(&self) -> Vec<JobView> {
        self.entries
            .iter()
            .map(|entry| {
                let state = entry.state();
                JobView {
                    name: entry.spec.name,
                    description: entry.spec.description,
                    schedule: entry.spec.schedule.as_ref().map(|s| s.to_string()),
                    next_run: state.next,
                    running: entry.running.load(Ordering::Acquire),
                    runs: state.runs,
                    failures: state.failures,
                    last_run: state.last.clone(),
                }
            })
            .collect()
    }

    /// Runs job `name` now, on this thread, and returns its run (failed or not). Blocks
    /// for as long as the job takes.
    pub fn run_now(&self, name: &str) -> Result<Run, RunError> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| RunError::Unknown {
                name: name.to_owned(),
                known: self.entries.iter().map(|e| e.spec.name).collect(),
            })?;
        self.run(entry, Trigger::Request)
            .ok_or(RunError::AlreadyRunning(entry.spec.name))
    }

    /// Runs `entry` unless it is running already.
    fn run(&self, entry: &Entry, trigger: Trigger) -> Option<Run> {
        if entry.running.swap(true, Ordering::AcqRel) {
            return None;
        }
        let name = entry.spec.name;
        tracing::info!(job = name, ?trigger, "job started");
        let started_at = Utc::now();
        let clock = Instant::now();
        let done = catch_unwind(AssertUnwindSafe(|| (entry.spec.work)()))
            .unwrap_or_else(|_| Err("the job panicked (a bug; the log says where)".into()));
        let duration = clock.elapsed();
        let mut run = Run {
            job: name,
            trigger,
            started_at,
            finished_at: Utc::now(),
            duration_ms: duration.as_secs_f64() * 1e3,
            outcome: Outcome::Succeeded,
            result: None,
            error: None,
        };
        match done {
            Ok(result) => {
                tracing::info!(job = name, seconds = duration.as_secs_f64(), %result, "job succeeded");
                run.result = Some(result);
            }
            Err(error) => {
                tracing::error!(job = name, %error, "job failed");
                run.outcome = Outcome::Failed;
                run.error = Some(error);
            }
        }
        self.metrics.record(&run, duration);
        {
            let mut state = entry.state();
            state.runs += 1;
            state.failures += u64::from(run.outcome == Outcome::Failed);
            state.last = Some(run.clone());
        }
        entry.running.store(false, Ordering::Release);
        Some(run)
    }

    /// The scheduler's loop: sleeps until the next job falls due, runs every due job.
    fn schedule(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::Acquire) {
            let now = Utc::now();
            for entry in &self.entries {
                let due = {
                    let mut state = entry.state();
                    match state.next {
                        Some(next) if next <= now => {
                            state.next =
                                entry.spec.schedule.as_ref().and_then(|s| s.next_after(now));
                            true
                        }
                        _ => false,
                    }
                };
                if due && self.run(entry, Trigger::Schedule).is_none() {
                    tracing::warn!(
                        job = entry.spec.name,
                        "job due while still running from a request; this run is skipped"
                    );
                }
                if stop.load(Ordering::Acquire) {
                    return;
                }
            }
            let now = Utc::now();
            let soonest = self.entries.iter().filter_map(|e| e.state().next).min();
            let sleep = soonest
                .map(|next| (next - now).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(LONGEST_SLEEP)
                .min(LONGEST_SLEEP);
            std::thread::park_timeout(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    fn spec(name: &'static str, work: Work) -> JobSpec {
        JobSpec {
            name,
            description: "a test job",
            schedule: None,
            work,
        }
    }

    #[test]
    fn a_job_runs_on_request_and_its_failures_are_kept() {
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let (jobs, _scheduler) = Jobs::start(
            vec![
                spec(
                    "count",
                    Box::new(move || {
                        Ok(serde_json::json!({"n": counted.fetch_add(1, Ordering::AcqRel) + 1}))
                    }),
                ),
                spec("fail", Box::new(|| Err("disk full".into()))),
                spec("panic", Box::new(|| panic!("boom"))),
            ],
            JobMetrics::default(),
        )
        .unwrap();
        let run = jobs.run_now("count").unwrap();
        assert_eq!(run.outcome, Outcome::Succeeded);
        assert_eq!(run.result, Some(serde_json::json!({"n": 1})));
        assert_eq!(run.trigger, Trigger::Request);
        let run = jobs.run_now("fail").unwrap();
        assert_eq!(run.outcome, Outcome::Failed);
        assert_eq!(run.error.as_deref(), Some("disk full"));
        assert_eq!(jobs.run_now("panic").unwrap().outcome, Outcome::Failed);
        let err = jobs.run_now("nope").unwrap_err();
        assert!(err.to_string().contains("count, fail, panic"), "{err}");
        let views = jobs.list();
        assert_eq!(views[0].runs, 1);
        assert_eq!(views[1].failures, 1);
        assert!(views.iter().all(|v| !v.running && v.schedule.is_none()));
        assert_eq!(calls.load(Ordering::Acquire), 1);
    }

    #[test]
    fn a_job_never_runs_twice_at_once() {
        let (entered, release) = (
            Arc::new(std::sync::Barrier::new(2)),
            Arc::new(std::sync::Barrier::new(2)),
        );
        let (e, r) = (entered.clone(), release.clone());
        let (jobs, _scheduler) = Jobs::start(
            vec![spec(
                "slow",
                Box::new(move || {
                    e.wait();
                    r.wait();
                    Ok(serde_json::Value::Null)
                }),
            )],
            JobMetrics::default(),
        )
        .unwrap();
        let first = {
            let jobs = jobs.clone();
            std::thread::spawn(move || jobs.run_now("slow"))
        };
        entered.wait();
        assert!(jobs.list()[0].running);
        assert_eq!(
            jobs.run_now("slow").unwrap_err(),
            RunError::AlreadyRunning("slow")
        );
        release.wait();
        assert_eq!(first.join().unwrap().unwrap().outcome, Outcome::Succeeded);
    }
}
