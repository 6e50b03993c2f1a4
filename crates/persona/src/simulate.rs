//! `persona simulate`: realistic, seeded customer behaviour drawn from a handful of
//! personas, written to a JSONL file or sent to a server through its HTTP API.

use std::io::{BufWriter, Write};
use std::sync::Arc;

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use persona_core::time::parse_timestamp;
use tokio::sync::Semaphore;

use crate::cli::SimulateArgs;
use crate::client::{Sender, progress_bar};
use persona_simulate::{Customer, Period};

/// Batches in flight at once when sending.
const IN_FLIGHT: usize = 4;

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
    let period = Period {
        start: end - Duration::days(args.days.into()),
        end,
    };
    let (customers, lines) = generate(args.seed, args.customers, period);
    if let Some(path) = &args.truth {
        write_truth(path, &customers)?;
    }
    match (&args.out, &args.target) {
        (Some(path), _) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            let mut out = BufWriter::new(file);
            let bar = progress_bar(lines.len() as u64, "writing");
            for (_, line) in &lines {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")?;
                bar.inc(1);
            }
            out.flush()?;
            bar.finish_and_clear();
            eprintln!(
                "wrote {} messages for {} customers to {}",
                lines.len(),
                customers.len(),
                path.display()
            );
        }
        (None, Some(target)) => {
            let sender = Sender::new(target, args.write_key.as_deref().unwrap_or_default())?;
            let messages: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
            let sent = send_all(&sender, messages, args.batch_size, true).await?;
            eprintln!(
                "sent {} messages for {} customers to {target}: {} accepted, {} rejected",
                sent.accepted + sent.rejected,
                customers.len(),
                sent.accepted,
                sent.rejected
            );
        }
        (None, None) => unreachable!("clap requires --out or --target"),
    }
    Ok(())
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

fn write_truth(path: &std::path::Path, customers: &[Customer]) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    persona_simulate::write_truth(&mut out, customers)?;
    out.flush()?;
    Ok(())
}

/// Totals of a send.
#[derive(Debug, Default)]
pub struct Sent {
    pub accepted: usize,
    pub rejected: usize,
    pub problems: Vec<String>,
}

/// Sends serialised messages in batches, a few in flight, with a progress bar.
pub async fn send_all(
    sender: &Sender,
    messages: Vec<String>,
    batch_size: usize,
    show: bool,
) -> anyhow::Result<Sent> {
    let bar = if show {
        progress_bar(messages.len() as u64, "sending")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut chunks = messages.into_iter().peekable();
    let mut total = Sent::default();
    while chunks.peek().is_some() {
        let batch = next_batch(&mut chunks, batch_size);
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let sender = sender.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            let outcome = sender.send_batch(&batch).await;
            bar.inc(batch.len() as u64);
            drop(permit);
            outcome
        });
        while let Some(done) = tasks.try_join_next() {
            add(&mut total, done??);
        }
    }
    while let Some(done) = tasks.join_next().await {
        add(&mut total, done??);
    }
    bar.finish_and_clear();
    Ok(total)
}

/// Request bodies are kept under the server's 500 KB batch limit with room to spare.
const MAX_BATCH_BODY: usize = 450 * 1024;

/// Takes up to `max` messages whose total size stays under [`MAX_BATCH_BODY`] (always at
/// least one: a message that is too large on its own is for the server to reject).
fn next_batch(
    messages: &mut std::iter::Peekable<impl Iterator<Item = String>>,
    max: usize,
) -> Vec<String> {
    let mut batch = Vec::new();
    let mut bytes = 0;
    while batch.len() < max {
        match messages.peek() {
            Some(m) if batch.is_empty() || bytes + m.len() < MAX_BATCH_BODY => {
                bytes += m.len() + 1;
                batch.push(messages.next().expect("peeked"));
            }
            _ => break,
        }
    }
    batch
}

fn add(total: &mut Sent, o: crate::client::BatchOutcome) {
    total.accepted += o.accepted;
    total.rejected += o.rejected;
    total.problems.extend(o.problems);
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
            let batch: Vec<String> = chunk.iter().map(|(_, l)| l.clone()).collect();
            if let Err(e) = sender.send_batch(&batch).await {
                tracing::warn!(error = %e, "demo batch failed");
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_under_the_servers_size_limit() {
        let messages: Vec<String> = (0..10)
            .map(|i| format!("{i}{}", "x".repeat(100 * 1024)))
            .collect();
        let mut it = messages.into_iter().peekable();
        let sizes: Vec<usize> =
            std::iter::from_fn(|| Some(next_batch(&mut it, 100)).filter(|b| !b.is_empty()))
                .map(|b| b.len())
                .collect();
        assert_eq!(sizes, [4, 4, 2]);
        let mut small = (0..250).map(|i| i.to_string()).peekable();
        assert_eq!(next_batch(&mut small, 100).len(), 100);
    }
}
