//! Segment's and RudderStack's own SDKs (`segment-analytics-python`, `rudder-sdk-python`
//! and Segment's `@segment/analytics-node`, installed by `scripts/test`) send to persona
//! unchanged: every call type, batched by the SDK's own machinery, gzip on and off where
//! the SDK has it; and what they sent becomes one live profile.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{ADMIN, Http, KEY, Server, logged};
use std::path::Path;

const SCRIPT: &str = r#"
import importlib, sys

host, key, module = sys.argv[1], sys.argv[2], sys.argv[3]
Client = importlib.import_module(module).Client
errors = []
for gz in (False, True):
    # Queued and sent in batches by the SDK's consumer thread, as in production.
    c = Client(key, host=host, gzip=gz, max_retries=0,
               on_error=lambda e, batch: errors.append(repr(e)))
    s = "gz" if gz else "plain"
    c.identify("sdk-user", {"email": "sdk@example.com", "plan": "pro"}, message_id=f"{s}-identify")
    c.track("sdk-user", "Order Completed", {"revenue": 99.5}, message_id=f"{s}-track")
    c.page("sdk-user", "docs", "Install", {"path": "/install"}, message_id=f"{s}-page")
    c.screen(anonymous_id="sdk-anon", name="Home", message_id=f"{s}-screen")
    c.group("sdk-user", "acme", {"employees": 40}, message_id=f"{s}-group")
    c.alias("sdk-anon", "sdk-user", message_id=f"{s}-alias")
    c.flush()
    c.shutdown()
if errors:
    print("SDK errors:", errors)
    sys.exit(1)
"#;

/// The same calls through Segment's Node SDK: one client sending each event on its own,
/// one sending them in a single batch.
const NODE_SCRIPT: &str = r#"
const { Analytics } = require('@segment/analytics-node')
const [host, writeKey] = process.argv.slice(1)
const errors = []
async function send(s, flushAt) {
  const a = new Analytics({ writeKey, host, flushAt, maxRetries: 0 })
  a.on('error', (e) => errors.push(String((e && (e.reason || e.message || e.code)) || e)))
  a.identify({ userId: 'sdk-user', traits: { email: 'sdk@example.com', plan: 'pro' }, messageId: `${s}-identify` })
  a.track({ userId: 'sdk-user', event: 'Order Completed', properties: { revenue: 99.5 }, messageId: `${s}-track` })
  a.page({ userId: 'sdk-user', category: 'docs', name: 'Install', properties: { path: '/install' }, messageId: `${s}-page` })
  a.screen({ anonymousId: 'sdk-anon', name: 'Home', messageId: `${s}-screen` })
  a.group({ userId: 'sdk-user', groupId: 'acme', traits: { employees: 40 }, messageId: `${s}-group` })
  a.alias({ userId: 'sdk-user', previousId: 'sdk-anon', messageId: `${s}-alias` })
  await a.closeAndFlush({ timeout: 10000 })
}
send('single', 1).then(() => send('batched', 6)).then(() => {
  if (errors.length) { console.error('SDK errors:', errors); process.exit(1) }
})
"#;

#[tokio::test]
async fn segments_python_sdk_sends_every_call_type() {
    sdk_sends_every_call_type("segment.analytics").await;
}

#[tokio::test]
async fn rudderstacks_python_sdk_sends_every_call_type() {
    sdk_sends_every_call_type("rudderstack.analytics").await;
}

async fn sdk_sends_every_call_type(module: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut python = Command::new(common::python());
    python.args(["-c", SCRIPT, &server.url(), KEY, module]);
    run_sdk(python, module);
    check_what_arrived(&mut server, dir.path(), ["plain", "gz"], "analytics-python").await;
}

#[tokio::test]
async fn segments_node_sdk_sends_every_call_type() {
    let modules = std::env::var("PERSONA_TEST_NODE_MODULES")
        .expect("PERSONA_TEST_NODE_MODULES names the node_modules that scripts/test installs");
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let mut node = Command::new("node");
    node.args(["-e", NODE_SCRIPT, &server.url(), KEY])
        .env("NODE_PATH", modules);
    run_sdk(node, "@segment/analytics-node");
    let library = "@segment/analytics-node";
    check_what_arrived(&mut server, dir.path(), ["single", "batched"], library).await;
}

fn run_sdk(mut command: Command, sdk: &str) {
    let out = command.output().expect("the SDK's runtime starts");
    assert!(
        out.status.success(),
        "the {sdk} SDK failed (scripts/test installs it):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two rounds of the same six calls, their message ids prefixed by `rounds`, became one
/// customer and twelve whole messages from `library`.
async fn check_what_arrived(server: &mut Server, dir: &Path, rounds: [&str; 2], library: &str) {
    // The anonymous screen views and the known user's calls are one customer after alias.
    let http = Http::default();
    http.wait_processed(&server.url()).await;
    let (status, profile) = http
        .get(
            &format!("{}/v1/profiles/sdk-user", server.url()),
            Some(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["anonymous_ids"], serde_json::json!(["sdk-anon"]));
    assert_eq!(profile["traits"]["plan"], "pro");
    let computed = &profile["computed"];
    assert_eq!(computed["event_count"], 12, "{profile}");
    assert_eq!(
        (
            computed["frequency"].as_u64(),
            computed["monetary"].as_f64()
        ),
        (Some(2), Some(199.0))
    );
    assert_eq!(computed["screen_views"], 2);
    server.stop();
    let by_id: HashMap<String, serde_json::Value> = logged(dir)
        .into_iter()
        .map(|m| (m["messageId"].as_str().unwrap().to_string(), m))
        .collect();
    assert_eq!(by_id.len(), 12, "{:?}", by_id.keys());
    for s in rounds {
        for kind in ["identify", "track", "page", "screen", "group", "alias"] {
            let m = &by_id[&format!("{s}-{kind}")];
            assert_eq!(m["type"], kind);
            assert_eq!(m["context"]["library"]["name"], library);
            // A backend's address says nothing about the customer: as Segment does, it is
            // not stored as `context.ip` (client-side messages get it; see browser.rs).
            assert!(m["context"].get("ip").is_none(), "{m}");
            assert!(m["sentAt"].is_string() && m["originalTimestamp"].is_string());
        }
        let track = &by_id[&format!("{s}-track")];
        assert_eq!(track["event"], "Order Completed");
        assert_eq!(track["properties"]["revenue"], 99.5);
        assert_eq!(by_id[&format!("{s}-identify")]["traits"]["plan"], "pro");
        assert_eq!(by_id[&format!("{s}-alias")]["previousId"], "sdk-anon");
        assert_eq!(by_id[&format!("{s}-group")]["groupId"], "acme");
        assert_eq!(by_id[&format!("{s}-screen")]["anonymousId"], "sdk-anon");
    }
}
