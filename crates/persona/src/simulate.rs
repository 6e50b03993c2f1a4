//! `persona simulate`: realistic, seeded customer behaviour drawn from a handful of
//! personas, written to a JSONL file or sent to a server through its HTTP API.

use std::io::{BufWriter, Write};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use persona_core::time::parse_timestamp;

use crate::cli::SimulateArgs;
use crate::client::{Numbered, Sender, progress_bar, send_all};
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
    let period = Period { start, end };
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
            let messages = lines
                .into_iter()
                .enumerate()
                .map(|(i, (_, json))| Numbered {
                    number: i + 1,
                    json,
                })
                .collect();
            let sent = send_all(&sender, messages, args.batch_size, "message").await?;
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
