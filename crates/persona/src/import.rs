//! `persona import FILE.jsonl`: backfill of Segment-spec messages with their own
//! timestamps, through the collector's validation, into the event log. `import-profiles`
//! sends its messages the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use persona_collector::CollectorConfig;
use persona_collector::normalize::{Envelope, has_message_id, normalize, not_an_object};
use persona_collector::shallow::{Field, Kind, NotAnObject, Object};
use persona_log::{EventLog, LogConfig, LogError};
use serde_json::Value;

use crate::cli::{DestinationArgs, ImportArgs, default_data_dir};
use crate::client::{BatchOutcome, Numbered, Sender, bytes_bar, reject_line, send_all};
use crate::jsonl::{self, Line};
use crate::say::say;

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
fn give_stable_id(number: usize, msg: &mut Object<'static>) {
    if has_message_id(msg) {
        return;
    }
    // The content as `serde_json::Value` writes it (keys sorted), as imports before
    // messages were kept as sent hashed it: a file imported again after an upgrade gets
    // the ids it got before.
    let content: Value = serde_json::from_slice(&msg.to_bytes()).expect("an object parses");
    let id = uuid::Uuid::new_v5(&IMPORT_IDS, format!("{number}:{content}").as_bytes());
    msg.insert("messageId", Field::of(&id.to_string()));
}

/// One message of the input, or why it cannot be imported, with its number in the input.
pub type Item = (usize, Result<Object<'static>, String>);

/// Where imported messages go.
pub enum Destination {
    /// Straight into the log of a stopped server (the log's lock says if one is running).
    Log(PathBuf),
    /// Through a running server's `/v1/batch`; the server validates. (Boxed: its HTTP
    /// client is large beside a path.)
    Http(Box<Sender>),
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
                Destination::Http(Box::new(Sender::new(
                    t,
                    args.write_key.as_deref().unwrap_or_default(),
                )?))
            }
            None => {
                let dir = args.data_dir.clone().unwrap_or_else(default_data_dir);
                let log = dir.join("log");
                if !log.exists() {
                    say!(
                        "note: {} has no event log yet; a new one is made",
                        dir.display()
                    );
                    persona_core::durable::create_private_dir_all(&dir)
                        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
                }
                Destination::Log(log)
            }
        };
        Ok((dest, args.batch_size))
    }

    /// Sends every message. Items are numbered by their place in the input (`unit` says
    /// what that is, e.g. "line"), for the rejects; an `Err` item is a problem found while
    /// reading the input, counted as a reject.
    pub async fn import(
        &self,
        messages: impl Iterator<Item = Item>,
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
    // The input first: a wrong file name leaves no new data folder behind.
    let bar = bytes_bar("reading");
    let input = jsonl::open(&args.file, &bar)?;
    let (dest, batch_size) = Destination::from_args(&args.destination)?;
    // A read error ends the input (it is no reject of one line); it is reported after
    // what was read before it has been imported.
    let read_error = std::cell::Cell::new(None);
    let lines = jsonl::lines(input, MAX_LINE)
        .map_while(|line| match line {
            Ok(line) => Some(line),
            Err(e) => {
                read_error.set(Some(e));
                None
            }
        })
        .filter_map(|(n, line)| {
            let line = match line {
                Line::Text(text) => text,
                Line::TooLong(len) => return Some((n, Err(too_long(n, len)))),
            };
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
    if let Some(e) = read_error.take() {
        report(&summary, "messages", &args.file);
        anyhow::bail!(
            "cannot read {} to its end: {e}; the lines before that were imported",
            args.file.display()
        );
    }
    finish(&summary, "messages", &args.file, &args.destination)
}

/// Lines longer than this are not read into memory: no message can be this long (the
/// server takes 32 KB a message, 500 KB a batch), even written with room to spare.
const MAX_LINE: usize = 1 << 20;

fn too_long(n: usize, len: usize) -> String {
    format!(
        "line {n}: is {len} bytes long, longer than any message can be; a file holding one \
         JSON array is not JSON lines (one message per line)"
    )
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

/// One line of the input as a message, parsed as the HTTP collector parses a message (one
/// level deep, so that its keys keep their order and its numbers every digit); what the
/// collector repairs (half an emoji, bytes that are not UTF-8, Python's NaN) is repaired
/// here the same way.
fn parse_line(n: usize, line: &[u8]) -> Result<Object<'static>, String> {
    let mut repaired = None;
    let (_, parsed) =
        persona_collector::repair::parse_or_repair(line, &mut repaired, Object::parse);
    let msg = match parsed {
        Ok(msg) => msg,
        // serde_json counts lines and columns within the text it was given: this line.
        Err(NotAnObject::Invalid(e)) => {
            return Err(format!(
                "line {n}: not JSON: {} at column {}",
                persona_collector::repair::message_without_position(&e),
                e.column()
            ));
        }
        Err(NotAnObject::Other(kind)) => {
            return Err(reject_line("line", n, &not_an_object(n, kind)[0]));
        }
    };
    if msg.get("batch").is_some_and(|b| b.kind() == Kind::Array) && !msg.contains_key("type") {
        return Err(format!(
            "line {n}: is a batch body ({{\"batch\": [...]}}); the file needs one message per line"
        ));
    }
    Ok(msg.into_owned())
}

/// A message as both ways of importing hand it on, with its JSON text (what a `--target`
/// import sends): with a stable id and without `sentAt` (so that the server keeps each
/// message's own timestamp instead of "correcting" it for a clock skew of months); or why
/// not, when it is over the server's size limit for a message (measured on that text, as
/// the server measures a message sent to it, so that both ways of importing refuse the
/// same ones).
fn prepare(
    unit: &str,
    number: usize,
    mut msg: Object<'static>,
) -> Result<(Object<'static>, Vec<u8>), String> {
    give_stable_id(number, &mut msg);
    msg.remove("sentAt");
    let text = msg.to_bytes();
    let limit = CollectorConfig::default().max_message_bytes;
    if text.len() > limit {
        return Err(format!(
            "{unit} {number}: message is {} bytes; the limit is {} KB",
            text.len(),
            limit / 1024
        ));
    }
    Ok((msg, text))
}

/// Prints the summary of an import and its first rejects.
fn report(summary: &BatchOutcome, what: &str, file: &Path) {
    say!(
        "imported {} {what} from {}; rejected {}",
        summary.accepted,
        file.display(),
        summary.rejected
    );
    let mut problems: Vec<_> = summary.problems.iter().collect();
    problems.sort_by_key(|(n, _)| *n);
    for (_, p) in problems.iter().take(SHOWN_REJECTS) {
        say!("  rejected {p}");
    }
    if problems.len() > SHOWN_REJECTS {
        // A reject may have several problems: these are counted, not the rejects.
        say!("  ... and {} more problems", problems.len() - SHOWN_REJECTS);
    }
}

async fn into_log(
    dir: &Path,
    messages: impl Iterator<Item = Item>,
    unit: &str,
    batch: usize,
) -> anyhow::Result<BatchOutcome> {
    let (log, _) = EventLog::open(dir, LogConfig::default(), Arc::new(())).map_err(|e| {
        let hint = match e {
            LogError::Locked(_) => " (a server is running: import with --target instead)",
            _ => "",
        };
        anyhow::anyhow!("cannot open the event log in {}{hint}: {e}", dir.display())
    })?;
    let mut summary = BatchOutcome::default();
    let mut pending = Vec::with_capacity(batch);
    // The first line whose message (if valid) is not stored yet.
    let mut unstored_from = 1;
    for (n, item) in messages {
        let envelope = Envelope {
            received_at: Utc::now(),
            correct_skew: false,
            ..Default::default()
        };
        let normalized = item
            .and_then(|msg| prepare(unit, n, msg))
            .map_err(|p| vec![(n, p)])
            .and_then(|(msg, _)| {
                normalize(msg, None, n, &envelope)
                    .map_err(|errs| errs.iter().map(|e| (n, reject_line(unit, n, e))).collect())
            });
        match normalized {
            Ok(m) => pending.push(m.to_bytes()),
            Err(problems) => {
                summary.rejected += 1;
                summary.problems.extend(problems);
            }
        }
        if pending.len() >= batch {
            let full = std::mem::take(&mut pending);
            store(&log, full, &mut summary, (unit, unstored_from)).await?;
            unstored_from = n + 1;
        }
    }
    store(&log, pending, &mut summary, (unit, unstored_from)).await?;
    Ok(summary)
}

/// What a person should know before running an import of messages that stopped part way
/// again.
const AGAIN: &str = "running the same import again gives each message the same id, and the \
     processor drops the copies among the last 500,000 records it applied (its default dedupe \
     window); older copies would count again, so after a long file stopped late, import only \
     what comes after those stored";

/// What to know before running again an import of `unit`s (lines of messages, or rows of
/// profile attributes, which set traits: setting them twice is harmless).
fn again(unit: &str) -> &'static str {
    match unit {
        "row" => {
            "running the same import again sets the same traits again, which is harmless \
             (rows are counted without the header)"
        }
        _ => AGAIN,
    }
}

/// Appends one batch of messages to the log and counts them; a failure says how far the
/// import got: every valid message before `unstored_from` (a line, or a row) is stored.
async fn store(
    log: &EventLog,
    messages: Vec<Vec<u8>>,
    summary: &mut BatchOutcome,
    (unit, unstored_from): (&str, usize),
) -> anyhow::Result<()> {
    let n = messages.len();
    log.append(messages).await.map_err(|e| {
        anyhow::anyhow!(
            "{e}; the {} valid messages before {unit} {unstored_from} were stored; {}",
            summary.accepted,
            again(unit)
        )
    })?;
    summary.accepted += n;
    Ok(())
}

async fn via_http(
    sender: &Sender,
    messages: impl Iterator<Item = Item>,
    unit: &'static str,
    batch: usize,
) -> anyhow::Result<BatchOutcome> {
    // Streamed: a file of any size is read as its batches go out.
    let mut unsendable = Vec::new();
    let lines = messages.filter_map(|(number, item)| {
        let json = item
            .and_then(|msg| prepare(unit, number, msg))
            .map(|(_, text)| String::from_utf8(text).expect("written from UTF-8 parts"));
        match json {
            Ok(json) => Some(Numbered { number, json }),
            Err(problem) => {
                unsendable.push((number, problem));
                None
            }
        }
    });
    let sent = send_all(sender, lines, batch, unit).await;
    let mut summary = sent.map_err(|e| e.context(AGAIN))?;
    summary.rejected += unsendable.len();
    summary.problems.extend(unsendable);
    Ok(summary)
}
