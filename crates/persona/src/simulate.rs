//! `persona simulate`: realistic, seeded customer behaviour drawn from a handful of
//! personas, written to a JSONL file or sent to a server through its HTTP API.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use persona_core::time::{format_timestamp, parse_timestamp};

use crate::cli::SimulateArgs;
use crate::client::{Numbered, Sender, progress_bar, send_all};
use crate::paths::same_file;
use crate::say::say;
use persona_simulate::{Customer, Period};

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.customers == 0 || args.days == 0 {
        anyhow::bail!("--customers and --days must be at least 1");
    }
    if args.batch_size == 0 || args.batch_size > 5000 {
        anyhow::bail!("--batch-size must be between 1 and 5000");
    }
    let end = match &args.end {
        Some(s) => parse_timestamp(s).map_err(|e| anyhow::anyhow!("--end {e}"))?,
        None => Utc::now(),
    };
    let start = end
        .checked_sub_signed(Duration::days(args.days.into()))
        .with_context(|| format!("--days {} reaches before the year -262143", args.days))?;
    check_memory(args.customers, args.days)?;
    let sender = match &args.target {
        Some(target) => Some(Sender::new(
            target,
            args.write_key.as_deref().unwrap_or_default(),
        )?),
        None => None,
    };
    // Both files are created before minutes of generating, so that a wrong path fails at
    // once, the truth file first, so that a wrong truth path leaves the output as it was;
    // the truth is written last, so that a failed run leaves none behind.
    if let (Some(out), Some(truth)) = (&args.out, &args.truth)
        && same_file(out, truth)
    {
        anyhow::bail!("--out and --truth name the same file");
    }
    let truth = match &args.truth {
        Some(path) if path.as_os_str() == "-" => {
            anyhow::bail!("--truth needs a file (`-` is for --out)")
        }
        Some(path) => Some(PendingFile::create(path)?),
        None => None,
    };
    let out = match &args.out {
        Some(path) if path.as_os_str() == "-" => Some(Output::Stdout),
        Some(path) => Some(Output::File(create(path)?, path.clone())),
        None => None,
    };
    let period = Period { start, end };
    let (customers, lines) = generate(args.seed, args.customers, period);
    match (out, sender) {
        (Some(out), _) => {
            let to = out.name();
            match write_lines(out, &lines) {
                Ok(()) => {}
                // The reader stopped reading (`| head`): what it wanted, it has.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                Err(e) => return Err(anyhow::anyhow!("cannot write {to}: {e}")),
            }
            say!(
                "wrote {} messages for {} customers to {to}",
                lines.len(),
                customers.len(),
            );
        }
        (None, Some(sender)) => {
            let target = args.target.as_deref().expect("a sender has a target");
            let messages = lines
                .into_iter()
                .enumerate()
                .map(|(i, (_, json))| Numbered {
                    number: i + 1,
                    json,
                });
            let sent = send_all(&sender, messages, args.batch_size, "message")
                .await
                .map_err(|e| {
                    // The cause first; then how to resume.
                    let end = format_timestamp(end);
                    anyhow::anyhow!(
                        "{e:#}; to send the same messages again (their ids depend on the \
                         period), repeat the command with --end {end}"
                    )
                })?;
            say!(
                "sent {} messages for {} customers to {target}: {} accepted, {} rejected",
                sent.accepted + sent.rejected,
                customers.len(),
                sent.accepted,
                sent.rejected
            );
            for (_, problem) in sent.problems.iter().take(20) {
                say!("  rejected {problem}");
            }
            if sent.rejected > 0 {
                // A server with its default limits takes every simulated message.
                anyhow::bail!("the server rejected {} messages", sent.rejected);
            }
        }
        (None, None) => unreachable!("clap requires --out or --target"),
    }
    if let Some(truth) = truth {
        truth.write(|out| persona_simulate::write_truth(out, &customers))?;
    }
    Ok(())
}

fn write_lines(out: Output, lines: &[(DateTime<Utc>, String)]) -> std::io::Result<()> {
    let bar = progress_bar(lines.len() as u64, "writing");
    let mut out = BufWriter::new(out.writer());
    for (_, line) in lines {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        bar.inc(1);
    }
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}

/// Messages a simulated customer sends a day, on average (10,000 customers over 90 days
/// sent 2,830,792), and the memory each takes until it is written or sent.
const MESSAGES_PER_CUSTOMER_DAY: f64 = 3.2;
const BYTES_PER_MESSAGE: f64 = 1000.0;

/// Refuses a simulation whose messages would not fit in the memory available: they are
/// all generated before the first is written, to be written in time order.
fn check_memory(customers: usize, days: u32) -> anyhow::Result<()> {
    let Some(available) = available_memory() else {
        return Ok(());
    };
    let messages = customers as f64 * f64::from(days) * MESSAGES_PER_CUSTOMER_DAY;
    let needed = messages * BYTES_PER_MESSAGE;
    if needed > available as f64 {
        anyhow::bail!(
            "--customers {customers} over --days {days} makes about {messages:.0} messages, \
             about {:.1} GiB in memory, and {:.1} GiB is available; simulate fewer customers, \
             or consecutive periods one at a time (--end), which keeps the same customers",
            needed / GIB,
            available as f64 / GIB
        );
    }
    Ok(())
}

const GIB: f64 = (1u64 << 30) as f64;

/// `MemAvailable` from `/proc/meminfo`, in bytes (`None` where there is no such file).
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Where `--out` writes: a file, or standard output for `-`.
enum Output {
    File(std::fs::File, PathBuf),
    Stdout,
}

impl Output {
    fn name(&self) -> String {
        match self {
            Output::File(_, path) => path.display().to_string(),
            Output::Stdout => "standard output".into(),
        }
    }

    fn writer(self) -> Box<dyn Write> {
        match self {
            Output::File(f, _) => Box::new(f),
            Output::Stdout => Box::new(std::io::stdout().lock()),
        }
    }
}

fn create(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// A file created at once and written at the end; removed again if it never is.
struct PendingFile {
    path: PathBuf,
    file: Option<std::fs::File>,
}

impl PendingFile {
    fn create(path: &Path) -> anyhow::Result<Self> {
        Ok(PendingFile {
            file: Some(create(path)?),
            path: path.to_path_buf(),
        })
    }

    fn write(
        mut self,
        fill: impl FnOnce(&mut BufWriter<std::fs::File>) -> std::io::Result<()>,
    ) -> anyhow::Result<()> {
        let mut out = BufWriter::new(self.file.take().expect("written once"));
        fill(&mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn generate(
    seed: u64,
    customers: usize,
    period: Period,
) -> (Vec<Customer>, Vec<(DateTime<Utc>, String)>) {
    let bar = progress_bar(customers as u64, "simulating");
    let out = persona_simulate::generate(seed, customers, period, || bar.inc(1));
    bar.finish_and_clear();
    out
}

/// `serve --demo`: keeps feeding a gentle stream of simulated customers into the server.
pub async fn demo(target: String, write_key: String) {
    let sender = match Sender::new(&target, &write_key) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "demo traffic cannot start");
            return;
        }
    };
    tracing::info!("demo: sending simulated customer traffic");
    for round in 0u64.. {
        let end = Utc::now();
        let period = Period {
            start: end - Duration::days(30),
            end,
        };
        let (_, lines) = tokio::task::spawn_blocking(move || {
            persona_simulate::generate(round, 200, period, || {})
        })
        .await
        .expect("generation does not panic");
        for chunk in lines.chunks(50) {
            let batch: Vec<Numbered> = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, json))| Numbered {
                    number: i + 1,
                    json: json.clone(),
                })
                .collect();
            if let Err(e) = sender.send_batch(&batch, "message").await {
                tracing::warn!(error = %e, "demo batch failed");
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}
