//! `persona import FILE.jsonl`: backfill of Segment-spec messages with their own
//! timestamps, through the collector's validation, into the event log. `import-profiles`
//! sends its messages the same way.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use chrono::Utc;
use indicatif::ProgressBar;
use persona_collector::CollectorConfig;
use persona_collector::normalize::{Envelope, has_message_id, normalize_value};
use persona_log::{EventLog, LogConfig, LogError};
use serde_json::Value;

use crate::cli::{DestinationArgs, ImportArgs, default_data_dir};
use crate::client::{BatchOutcome, Numbered, Sender, bytes_bar, reject_line, send_all};

/// Rejects printed in full; the rest are only counted.
const SHOWN_REJECTS: usize = 20;

/// Most messages in one append or HTTP batch (the server takes 500 KB a batch in any case).
const MAX_BATCH: usize = 5000;

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
        if args.batch_size == 0 || args.batch_size > MAX_BATCH {
            anyhow::bail!("--batch-size must be between 1 and {MAX_BATCH}");
        }
        let dest = match &args.target {
            Some(t) => {
                // `PERSONA_DATA_DIR` set for the server does not stand in the way of a
                // `--target`; a `--data-dir` given with it does.
                let from_env = std::env::var_os("PERSONA_DATA_DIR").map(PathBuf::from);
                if args.data_dir.is_some() && args.data_dir != from_env {
                    anyhow::bail!("--data-dir and --target cannot be used together");
                }
                Destination::Http(Sender::new(
                    t,
                    args.write_key.as_deref().unwrap_or_default(),
                )?)
            }
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
    let bar = bytes_bar("reading");
    let input = open_input(&args.file, &bar)?;
    // A read error ends the input (it is no reject of one line); it is reported after
    // what was read before it has been imported.
    let read_error = std::cell::Cell::new(None);
    let lines = input
        .split(b'\n')
        .enumerate()
        .map_while(|(n, line)| match line {
            Ok(line) => Some((n + 1, line)),
            Err(e) => {
                read_error.set(Some((n + 1, e)));
                None
            }
        })
        .filter_map(|(n, line)| {
            // A byte-order mark, as Windows editors write one, is not part of the JSON.
            let line = match (n, line.strip_prefix(b"\xEF\xBB\xBF")) {
                (1, Some(rest)) => rest,
                _ => &line[..],
            };
            if line.trim_ascii().is_empty() {
                return None;
            }
            Some((n, parse_line(n, line)))
        })
        // Read to the end: the bar goes, before a `--target` import starts its own.
        .chain(std::iter::from_fn(|| {
            bar.finish_and_clear();
            None
        }));
    let summary = dest.import(lines, "line", batch_size).await;
    bar.finish_and_clear();
    let summary = summary?;
    if let Some((n, e)) = read_error.take() {
        report(&summary, "messages", &args.file);
        anyhow::bail!(
            "cannot read {} at line {n}: {e}; the lines before it were imported",
            args.file.display()
        );
    }
    finish(&summary, "messages", &args.file, &args.destination)
}

/// Prints the summary; an error when more were rejected than `--max-rejects` allows.
pub fn finish(
    summary: &BatchOutcome,
    what: &str,
    file: &Path,
    args: &DestinationArgs,
) -> anyhow::Result<()> {
    report(summary, what, file);
    if summary.rejected > args.max_rejects {
        anyhow::bail!(
            "{} rejected, more than --max-rejects {}; everything else was imported",
            summary.rejected,
            args.max_rejects
        );
    }
    Ok(())
}

/// One line of the input as a message; what the HTTP collector repairs (half an emoji,
/// bytes that are not UTF-8, Python's NaN) is repaired here the same way.
fn parse_line(n: usize, line: &[u8]) -> Result<Value, String> {
    let (_, parsed) = persona_collector::repair::parse_or_repair(
        line,
        &mut None,
        serde_json::from_slice::<Value>,
    );
    let v = parsed.map_err(|e| format!("line {n}: not JSON: {e}"))?;
    // The server's limit, in both ways of importing, measured as the server measures a
    // message sent through `--target`: serialised compactly. (Only a long line can be over.)
    let limit = CollectorConfig::default().max_message_bytes;
    if line.len() > limit / 2 {
        let size = v.to_string().len();
        if size > limit {
            let kb = limit / 1024;
            return Err(format!(
                "line {n}: message is {size} bytes; the limit is {kb} KB"
            ));
        }
    }
    if v.get("batch").is_some_and(Value::is_array) && v.get("type").is_none() {
        return Err(format!(
            "line {n}: is a batch body ({{\"batch\": [...]}}); the file needs one message per line"
        ));
    }
    Ok(v)
}

/// The input file (`-`: standard input), gunzipped when it is gzip, counting the bytes
/// read from it on `bar`.
fn open_input(path: &Path, bar: &ProgressBar) -> anyhow::Result<Box<dyn BufRead>> {
    let raw: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let meta = file.metadata()?;
        if meta.is_dir() {
            anyhow::bail!("{} is a folder, not a file of JSON lines", path.display());
        }
        bar.set_length(meta.len());
        Box::new(file)
    };
    let mut input = BufReader::with_capacity(
        256 << 10,
        Counted {
            inner: raw,
            bar: bar.clone(),
        },
    );
    let head = input
        .fill_buf()
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(input)))
    } else {
        Box::new(input)
    })
}

/// A reader that counts what it reads on a progress bar.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

/// Prints the summary of an import and its first rejects.
fn report(summary: &BatchOutcome, what: &str, file: &std::path::Path) {
    eprintln!(
        "imported {} {what} from {}; rejected {}",
        summary.accepted,
        file.display(),
        summary.rejected
    );
    let mut problems: Vec<_> = summary.problems.iter().collect();
    problems.sort_by_key(|(n, _)| *n);
    for (_, p) in problems.iter().take(SHOWN_REJECTS) {
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
    let new = !dir.exists();
    let (log, _) = EventLog::open(dir, LogConfig::default(), Arc::new(())).map_err(|e| {
        let hint = match e {
            LogError::Locked(_) => " (a server is running: import with --target instead)",
            _ => "",
        };
        anyhow::anyhow!("cannot open the event log in {}{hint}: {e}", dir.display())
    })?;
    if new {
        eprintln!(
            "note: {} did not exist; a new event log was made there",
            dir.display()
        );
    }

    let mut summary = BatchOutcome::default();
    let mut pending = Vec::with_capacity(batch);
    for (n, item) in messages {
        let envelope = Envelope {
            received_at: Utc::now(),
            correct_skew: false,
            ..Default::default()
        };
        let normalized = item.map_err(|p| vec![(n, p)]).and_then(|mut v| {
            give_stable_id(n, &mut v);
            normalize_value(v, None, n, &envelope)
                .map_err(|errs| errs.iter().map(|e| (n, reject_line(unit, n, e))).collect())
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
    // Streamed: a file of any size is read as its batches go out.
    let mut unreadable = Vec::new();
    let lines = messages.filter_map(|(number, item)| match item {
        Ok(mut v) => {
            // An id given here, not by the server, also keeps a retried batch from being
            // stored twice under two ids. It is derived from the message as read, as an
            // import straight into the log derives it.
            give_stable_id(number, &mut v);
            // Without `sentAt` the server keeps each message's own timestamp instead of
            // "correcting" it for a clock skew of months.
            if let Some(o) = v.as_object_mut() {
                o.remove("sentAt");
            }
            Some(Numbered {
                number,
                json: v.to_string(),
            })
        }
        Err(problem) => {
            unreadable.push((number, problem));
            None
        }
    });
    let mut summary = send_all(sender, lines, batch, unit).await?;
    summary.rejected += unreadable.len();
    summary.problems.extend(unreadable);
    Ok(summary)
}
