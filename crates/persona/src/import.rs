//! `persona import FILE.jsonl`: backfill of Segment-spec messages with their own
//! timestamps, through the collector's validation, into the event log.

use std::io::{BufRead, BufReader};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use persona_collector::normalize::{Envelope, normalize};
use persona_log::{EventLog, LogConfig};
use serde_json::Value;

use crate::cli::{ImportArgs, default_data_dir};
use crate::client::{BatchOutcome, Sender, progress_bar, send_all};

/// Rejects printed in full; the rest are only counted.
const SHOWN_REJECTS: usize = 20;

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.batch_size == 0 {
        anyhow::bail!("--batch-size must be at least 1");
    }
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let size = file.metadata()?.len();
    let summary = match &args.target {
        Some(target) => {
            let sender = Sender::new(target, args.write_key.as_deref().unwrap_or_default())?;
            via_http(&sender, file, size, args.batch_size).await?
        }
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(default_data_dir)
                .join("log");
            into_log(&dir, file, size, args.batch_size).await?
        }
    };
    eprintln!(
        "imported {} messages from {}; rejected {}",
        summary.accepted,
        args.file.display(),
        summary.rejected
    );
    for p in summary.problems.iter().take(SHOWN_REJECTS) {
        eprintln!("  rejected {p}");
    }
    if summary.problems.len() > SHOWN_REJECTS {
        eprintln!("  ... and {} more", summary.problems.len() - SHOWN_REJECTS);
    }
    Ok(())
}

/// Straight into the log of a stopped server (the log's lock says if one is running).
async fn into_log(
    dir: &std::path::Path,
    file: std::fs::File,
    size: u64,
    batch: usize,
) -> anyhow::Result<BatchOutcome> {
    let (log, _) = EventLog::open(dir, LogConfig::default(), Arc::new(())).with_context(|| {
        format!(
            "cannot open the event log in {} (is a server running? then use --target)",
            dir.display()
        )
    })?;
    let bar = progress_bar(size, "importing");
    let mut summary = BatchOutcome::default();
    let mut pending = Vec::with_capacity(batch);
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.context("cannot read the input")?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let line_no = n + 1;
        let envelope = Envelope {
            received_at: Utc::now(),
            correct_skew: false,
            ..Default::default()
        };
        let parsed = serde_json::from_str::<Value>(&line)
            .map_err(|e| vec![format!("line {line_no}: not JSON: {e}")])
            .and_then(|v| {
                normalize(v, None, n, &envelope).map_err(|errs| {
                    errs.iter()
                        .map(|e| format!("line {line_no}: `{}` {}", e.field, e.reason))
                        .collect()
                })
            });
        match parsed {
            Ok(m) => pending.push(serde_json::to_vec(&m.body)?),
            Err(problems) => {
                summary.rejected += 1;
                summary.problems.extend(problems);
            }
        }
        if pending.len() >= batch {
            summary.accepted += pending.len();
            log.append(std::mem::take(&mut pending)).await?;
        }
    }
    summary.accepted += pending.len();
    log.append(pending).await?;
    bar.finish_and_clear();
    Ok(summary)
}

/// Through a running server's `/v1/batch`; the server validates.
async fn via_http(
    sender: &Sender,
    file: std::fs::File,
    size: u64,
    batch: usize,
) -> anyhow::Result<BatchOutcome> {
    let bar = progress_bar(size, "importing");
    let mut lines = Vec::new();
    let mut summary = BatchOutcome::default();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.context("cannot read the input")?;
        bar.inc(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(mut v) => {
                // Without `sentAt` the server keeps each message's own timestamp instead of
                // "correcting" it for a clock skew of months.
                if let Some(o) = v.as_object_mut() {
                    o.remove("sentAt");
                    // An id given here, not by the server, keeps a retried batch from being
                    // stored twice under two ids.
                    if !o.get("messageId").is_some_and(Value::is_string) {
                        o.insert("messageId".into(), uuid::Uuid::new_v4().to_string().into());
                    }
                }
                lines.push(v.to_string());
            }
            Err(e) => {
                summary.rejected += 1;
                summary
                    .problems
                    .push(format!("line {}: not JSON: {e}", n + 1));
            }
        }
    }
    bar.finish_and_clear();
    summary.add(send_all(sender, lines, batch).await?);
    Ok(summary)
}
