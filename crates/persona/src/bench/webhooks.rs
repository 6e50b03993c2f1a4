//! `persona bench webhooks`: how fast a real `persona serve` delivers segment entries to
//! webhook receivers. Customers are sent in, webhooks subscribed, and a segment every
//! customer is in is created: its back-fill writes one entry a customer, and the bench
//! times the receivers (in this process, answering 200 at once) taking all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::http::StatusCode;
use bytes::Bytes;
use hyper::Method;
use serde_json::{Value, json};

use super::Server;
use super::api::Api;
use crate::cli::BenchWebhooksArgs;

/// Customers sent in one batch request.
const BATCH: usize = 100;

/// A receiver counting the deliveries it takes.
struct Receiver {
    url: String,
    taken: Arc<AtomicU64>,
}

async fn receiver() -> anyhow::Result<Receiver> {
    let taken = Arc::new(AtomicU64::new(0));
    let counter = taken.clone();
    let app = axum::Router::new().fallback(move |_body: Bytes| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::Relaxed);
            StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Receiver { url, taken })
}

pub async fn webhooks(args: BenchWebhooksArgs) -> anyhow::Result<()> {
    if args.customers == 0 || args.webhooks == 0 {
        bail!("--customers and --webhooks must be at least 1");
    }
    let data = tempfile::tempdir()?;
    let server = Server::serve(data.path(), &[])?;
    let api = Api::new(&server)?;

    println!(
        "sending {} customers, then {} webhook(s) receive one segment entry each",
        args.customers, args.webhooks
    );
    for first in (0..args.customers).step_by(BATCH) {
        let batch: Vec<Value> = (first..(first + BATCH).min(args.customers))
            .map(|i| json!({"type": "identify", "userId": format!("c{i}"), "traits": {"n": i}}))
            .collect();
        api.ingest("/v1/batch", json!({ "batch": batch })).await?;
    }
    api.wait_processed().await;
    let mut receivers = Vec::with_capacity(args.webhooks);
    for _ in 0..args.webhooks {
        let r = receiver().await?;
        let hook = json!({"url": r.url, "events": ["segment.entered"]});
        api.admin(Method::POST, "/v1/webhooks", hook).await?;
        receivers.push(r);
    }

    let started = Instant::now();
    let segment = json!({"name": "everyone", "rule": "true"});
    let created = api.admin(Method::POST, "/v1/segments", segment).await?;
    let path = format!("/v1/segments/{}", created["id"]);
    let want = args.customers as u64;
    let mut backfilled = None;
    let deadline = started + Duration::from_secs(args.timeout_seconds);
    loop {
        if backfilled.is_none() {
            let seg = api.admin(Method::GET, &path, Value::Null).await?;
            if seg["backfill"]["state"] == "done" {
                backfilled = Some(started.elapsed());
            }
        }
        let least = receivers
            .iter()
            .map(|r| r.taken.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0);
        if least >= want {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "after {} s the slowest webhook had taken {least} of {want} deliveries",
                args.timeout_seconds
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let all = started.elapsed().as_secs_f64();
    let total = want * args.webhooks as u64;
    if let Some(b) = backfilled {
        println!(
            "back-fill of {want} profiles into the segment: {:.2} s",
            b.as_secs_f64()
        );
    }
    println!(
        "{want} deliveries to each of {} webhook(s) in {all:.2} s from the segment's creation: {:.0} deliveries/s a webhook, {:.0} in all",
        args.webhooks,
        want as f64 / all,
        total as f64 / all
    );
    drop(server);
    data.close()
        .context("cannot remove the bench's data folder")?;
    Ok(())
}
