//! `persona import-profiles` and `persona profiles export|stats`.

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use persona_collector::normalize::object_of;
use persona_core::time::{format_timestamp, parse_timestamp};
use persona_store::{EmbeddedStore, ProfileStore};
use serde_json::{Value, json};

use crate::cli::{ImportProfilesArgs, ProfilesExportArgs, ProfilesStatsArgs, default_data_dir};
use crate::client::progress_bar;
use crate::import::{Destination, finish};
use crate::table;

/// Each row becomes an identify call marked as enrichment: the processor writes its traits
/// (last write wins by time, as for any identify) without counting it as behaviour.
pub async fn import(args: ImportProfilesArgs) -> anyhow::Result<()> {
    let table = table::open(&args.file, table::NonFinite::Missing)?;
    if !table.columns.iter().any(|c| c == &args.key) {
        anyhow::bail!(
            "{} has no column {:?} (--key); its columns are: {}",
            args.file.display(),
            args.key,
            table.columns.join(", ")
        );
    }
    let (dest, batch_size) = Destination::from_args(&args.destination)?;
    let bar = progress_bar(table.len.unwrap_or(0), "reading rows");
    let now = format_timestamp(Utc::now());
    let key = args.key.clone();
    let messages = table.rows.enumerate().map(|(n, row)| {
        bar.inc(1);
        let row_no = n + 1;
        let message = row
            .map_err(|e| format!("row {row_no}: {e:#}"))
            .and_then(|mut row| {
                let user_id = match row.remove(&key) {
                    Some(Value::String(s)) => s,
                    Some(v @ Value::Number(_)) => v.to_string(),
                    None => return Err(format!("row {row_no}: `{key}` is empty")),
                    Some(v) => {
                        return Err(format!(
                            "row {row_no}: `{key}` must be a string or number, got {v}"
                        ));
                    }
                };
                let Value::Object(msg) = json!({
                    "type": "identify",
                    "userId": user_id,
                    "traits": row,
                    "timestamp": now,
                    "context": {"library": {"name": persona_stream::ENRICHMENT_SOURCE}},
                }) else {
                    unreachable!("built as an object")
                };
                Ok(object_of(msg))
            });
        (row_no, message)
    });
    let summary = dest.import(messages, "row", batch_size).await?;
    bar.finish_and_clear();
    finish(&summary, "profiles", &args.file, &args.destination)
}

fn open_store(data_dir: Option<PathBuf>) -> anyhow::Result<(EmbeddedStore, PathBuf)> {
    let path = data_dir.unwrap_or_else(default_data_dir).join("profiles");
    if !path.exists() {
        anyhow::bail!(
            "no profile store at {} (has `persona serve` run there?)",
            path.display()
        );
    }
    let store =
        EmbeddedStore::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    Ok((store, path))
}

pub fn export(args: ProfilesExportArgs) -> anyhow::Result<()> {
    let as_of = match &args.as_of {
        Some(s) => parse_timestamp(s).map_err(|e| anyhow::anyhow!("--as-of {e}"))?,
        None => Utc::now(),
    };
    let (store, _) = open_store(args.data_dir)?;
    // `-` is standard output, as for `simulate --out` and `import`.
    let out: Box<dyn Write> = match args.out.as_ref().filter(|p| p.as_os_str() != "-") {
        Some(p) => Box::new(
            std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let bar = progress_bar(store.count()?, "exporting");
    persona_store::for_each_page(&store, 10_000, |page| {
        for (_, p) in page {
            serde_json::to_writer(&mut out, &p.view(as_of))?;
            out.write_all(b"\n")?;
        }
        bar.inc(page.len() as u64);
        anyhow::Ok(())
    })?;
    out.flush()?;
    bar.finish_and_clear();
    Ok(())
}

pub fn stats(args: ProfilesStatsArgs) -> anyhow::Result<()> {
    let (store, _) = open_store(args.data_dir)?;
    crate::say::print_json(&store_stats(&store)?)?;
    Ok(())
}

/// Profiles, file size and size per profile of a store.
pub fn store_stats(store: &EmbeddedStore) -> anyhow::Result<Value> {
    let profiles = store.count()?;
    let bytes = store.disk_bytes()?;
    Ok(json!({
        "profiles": profiles,
        "store_bytes": bytes,
        "bytes_per_profile": bytes.checked_div(profiles).unwrap_or(0),
        "processor_offset": store.offset(persona_stream::CONSUMER)?,
    }))
}
