//! Durability under SIGKILL: every event acknowledged with 200 is in the log exactly once,
//! however often the server is killed mid-stream.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::acked::{assert_logged_once, spawn_senders, until_acked};
use common::{Http, KEY, Server};
use serde_json::json;

const ROUNDS: usize = 4;
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let http = Http::default();
    for round in 0..ROUNDS {
        let mut server = Server::start(dir.path());
        let url = server.url();
        let before = acked.lock().unwrap().len();
        let clients = spawn_senders(&url, &http, &format!("r{round}"), CLIENTS, &acked);
        tokio::time::sleep(Duration::from_millis(600)).await;
        until_acked(&acked, before, 100).await;
        server.kill9();
        for c in clients {
            c.await.unwrap();
        }
        let during = acked.lock().unwrap().len() - before;
        assert!(
            during > 100,
            "round {round}: only {during} events acknowledged; the test proves nothing"
        );
    }

    // A last restart must recover whatever tail the last kill left.
    let mut server = Server::start(dir.path());
    server.stop();

    assert_logged_once(dir.path(), &acked.lock().unwrap());
}

/// Exactly-once profiles under SIGKILL: clients resend whatever was not acknowledged (with
/// the same messageIds) after each restart, so in the end every event was acknowledged, some
/// were logged twice, and the profiles must still count each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_count_every_acknowledged_event_once_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    // Per client, the batch in flight when the server died.
    let unanswered: Arc<Mutex<HashMap<usize, Vec<String>>>> = Arc::default();
    let http = Http::default();
    let send = move |url: String, c: usize, ids: Vec<String>| {
        let http = http.clone();
        async move {
            let msgs: Vec<_> = ids
                .iter()
                .map(|id| json!({"type": "track", "userId": format!("u{c}"), "event": "Tick", "messageId": id}))
                .collect();
            matches!(
                http.post(&url, "/v1/batch", KEY, &json!({"batch": msgs})).await,
                Ok((status, _)) if status.is_success()
            )
        }
    };
    for round in 0..=ROUNDS {
        let mut server = Server::start(dir.path());
        let url = server.url();
        let mut clients = Vec::new();
        for c in 0..CLIENTS {
            let (url, acked, unanswered) = (url.clone(), acked.clone(), unanswered.clone());
            let send = send.clone();
            clients.push(tokio::spawn(async move {
                let retry = unanswered.lock().unwrap().remove(&c);
                if let Some(ids) = retry {
                    assert!(
                        send(url.clone(), c, ids.clone()).await,
                        "a fresh server refused a resend"
                    );
                    acked.lock().unwrap().extend(ids);
                }
                // The last round only resends.
                for seq in 0..if round < ROUNDS { usize::MAX } else { 0 } {
                    let ids: Vec<String> = (0..1 + (seq + c) % 10)
                        .map(|i| format!("r{round}-c{c}-s{seq}-{i}"))
                        .collect();
                    if send(url.clone(), c, ids.clone()).await {
                        acked.lock().unwrap().extend(ids);
                    } else {
                        unanswered.lock().unwrap().insert(c, ids);
                        return;
                    }
                }
            }));
        }
        if round < ROUNDS {
            let before = acked.lock().unwrap().len();
            tokio::time::sleep(Duration::from_millis(500)).await;
            // With 4 rounds of more than 250, the 1,000 the end asks for are there.
            until_acked(&acked, before, 250).await;
            server.kill9();
        }
        for c in clients {
            c.await.unwrap();
        }
        if round == ROUNDS {
            Http::default().wait_processed(&url).await;
            server.stop();
        }
    }
    let acked = acked.lock().unwrap();
    let distinct: std::collections::HashSet<&String> = acked.iter().collect();
    assert_eq!(distinct.len(), acked.len(), "each id acknowledged once");
    assert!(
        acked.len() > 1000,
        "only {} events; the test proves nothing",
        acked.len()
    );
    let profiles = common::exported_profiles(dir.path());
    assert_eq!(profiles.len(), CLIENTS);
    let counted: u64 = profiles
        .iter()
        .map(|p| p["computed"]["event_count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted,
        acked.len() as u64,
        "sum of event_count vs acknowledged events"
    );
}
