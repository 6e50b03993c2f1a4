//! `persona import FILE.jsonl`: backfill of Segment-spec messages with their own
//! timestamps, through the collector's validation, into the event log. `import-profiles`
//! sends its messages the same way.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use persona_collector::normalize::{Envelope, has_message_id, normalize_value};
use persona_log::{EventLog, LogConfig};
use serde_json::Value;

use crate::cli::{DestinationArgs, ImportArgs, default_data_dir};
use crate::client::{BatchOutcome, Numbered, Sender, progress_bar, reject_line, send_all};

/// Rejects printed in full; the rest are only counted.
const SHOWN_REJECTS: usize = 20;

/// Namespace of the ids imported messages without a `messageId` get (see [`give_stable_id`]).
const IMPORT_IDS: uuid::Uuid = uuid::uuid!("e811e646-861c-4ffa-a1d0-3ada7667aa20");

/// Gives a message that has no `messageId` one derived from its number in the input and its
/// content. Importing the same file again (after a failed run, say) then repeats the ids,
/// so the processor's dedupe and anything downstream that keys on `messageId` drop the
/// copies; the random id the collector would give stores every message a second time.
fn give_stable_id(number: usize, msg: &mut Value) {
    if msg.as_object().is_none_or(has_message_id) {
        return;
    }
    let id = uuid::Uuid::new_v5(&IMPORT_IDS, format!("{number}:{msg}").as_bytes());
    if let Some(o) = msg.as_object_mut() {
        o.insert("messageId".into(), id.to_string().into());
    }
}

/// Where imported messages go.
pub enum Destination {
    /// Straight into the log of a stopped server (the log's lock says if one is running).
    Log(PathBuf),
    /// Through a running server's `/v1/batch`; the server validates.
    Http(Sender),
}

impl Destination {
    /// `--target URL --write-key KEY`, else the data folder's log; and the batch size.
    pub fn from_args(args: &DestinationArgs) -> anyhow::Result<(Self, usize)> {
        if args.batch_size == 0 {
            anyhow::bail!("--batch-size must be at least 1");
        }
        let dest = match &args.target {
            Some(t) => Destination::Http(Sender::new(
                t,
                args.write_key.as_deref().unwrap_or_default(),
            )?),
            None => Destination::Log(
                args.data_dir
                    .clone()
                    .unwrap_or_else(default_data_dir)
                    .join("log"),
            ),
        };
        Ok((dest, args.batch_size))
    }

    /// Sends every message. Items are numbered by their place in the input (`unit` says
    /// what that is, e.g. "line"), for the rejects; an `Err` item is a problem found while
    /// reading the input, counted as a reject.
    pub async fn import(
        &self,
        messages: impl Iterator<Item = (usize, Result<Value, String>)>,
        unit: &'static str,
        batch: usize,
    ) -> anyhow::Result<BatchOutcome> {
        match self {
            Destination::Log(dir) => into_log(dir, messages, unit, batch).await,
            Destination::Http(sender) => via_http(sender, messages, unit, batch).await,
        }
    }
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let (dest, batch_size) = Destination::from_args(&args.destination)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let bar = progress_bar(file.metadata()?.len(), "reading");
    // Lines as bytes: a line that is not UTF-8 is repaired like an HTTP body, not refused.
    let lines = BufReader::new(file)
        .split(b'\n')
        .enumerate()
        .filter_map(|(n, line)| {
            let line = match line {
                Ok(l) => l,
                Err(e) => return Some((n + 1, Err(format!("line {}: cannot read: {e}", n + 1)))),
            };
            bar.inc(line.len() as u64 + 1);
            if line.trim_ascii().is_empty() {
                return None;
            }
            // What the HTTP collector repairs (half an emoji, bytes that are not UTF-8,
            // Python's NaN) is repaired here the same way.
            let (_, parsed) = persona_collector::repair::parse_or_repair(
                &line,
                &mut None,
                serde_json::from_slice::<Value>,
            );
            let parsed = parsed.map_err(|e| format!("line {}: not JSON: {e}", n + 1));
            Some((n + 1, parsed))
        });
    let summary = dest.import(lines, "line", batch_size).await?;
    bar.finish_and_clear();
    report(&summary, "messages", &args.file);
    Ok(())
}

/// Prints the summary of an import and its first rejects.
pub fn report(summary: &BatchOutcome, what: &str, file: &std::path::Path) {
    eprintln!(
        "imported {} {what} from {}; rejected {}",
        summary.accepted,
        file.display(),
        summary.rejected
    );
    for p in summary.problems.iter().take(SHOWN_REJECTS) {
        eprintln!("  rejected {p}");
    }
    if summary.problems.len() > SHOWN_REJECTS {
        eprintln!("  ... and {} more", summary.problems.len() - SHOWN_REJECTS);
    }
}

async fn into_log(
    dir: &std::path::Path,
    messages: impl Iterator<Item = (usize, Result<Value, String>)>,
    unit: &str,
    batch: usize,
) -> anyhow::Result<BatchOutcome> {
    let (log, _) = EventLog::open(dir, LogConfig::default(), Arc::new(())).with_context(|| {
        format!(
            "cannot open the event log in {} (is a server running? then use --target)",
            dir.display()
        )
    })?;
    let mut summary = BatchOutcome::default();
    let mut pending = Vec::with_capacity(batch);
    for (n, item) in messages {
        let envelope = Envelope {
            received_at: Utc::now(),
            correct_skew: false,
            ..Default::default()
        };
        let normalized = item.map_err(|p| vec![p]).and_then(|mut v| {
            give_stable_id(n, &mut v);
            normalize_value(v, None, n, &envelope)
                .map_err(|errs| errs.iter().map(|e| reject_line(unit, n, e)).collect())
        });
        match normalized {
            Ok(m) => pending.push(m.bytes),
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
    Ok(summary)
}

async fn via_http(
    sender: &Sender,
    messages: impl Iterator<Item = (usize, Result<Value, String>)>,
    unit: &'static str,
    batch: usize,
) -> anyhow::Result<BatchOutcome> {
    let mut lines = Vec::new();
    let mut summary = BatchOutcome::default();
    for (number, item) in messages {
        match item {
            Ok(mut v) => {
                // Without `sentAt` the server keeps each message's own timestamp instead of
                // "correcting" it for a clock skew of months.
                if let Some(o) = v.as_object_mut() {
                    o.remove("sentAt");
                }
                // An id given here, not by the server, also keeps a retried batch from
                // being stored twice under two ids.
                give_stable_id(number, &mut v);
                lines.push(Numbered {
                    number,
                    json: v.to_string(),
                });
            }
            Err(problem) => {
                summary.rejected += 1;
                summary.problems.push(problem);
            }
        }
    }
    summary.add(send_all(sender, lines, batch, unit).await?);
    Ok(summary)
}
