//! The dashboard at `/` in headless Chromium: it shows the server ready and its throughput
//! without a token, refuses a wrong admin token, and with the right one lists segments,
//! models and webhooks and looks profiles up. Names from the API are shown as text, never
//! run as HTML, and the page runs under its content security policy without a complaint.

mod common;

use std::process::Command;

use std::time::Duration;

use common::{ADMIN, Http, KEY, Server, poll};
use serde_json::{Value, json};

const SCRIPT: &str = r#"
const { chromium } = require('playwright-core')
const [persona, admin, writeKey] = process.argv.slice(1)
async function main() {
  const browser = await chromium.launch({
    executablePath: process.env.PERSONA_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  })
  try {
    const tab = await browser.newPage()
    const problems = []
    tab.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()) })
    tab.on('pageerror', (e) => problems.push(String(e)))
    tab.on('dialog', (d) => { problems.push('a dialog opened: ' + d.message()); d.dismiss() })
    await tab.goto(persona + '/')
    await tab.waitForFunction(() => document.getElementById('status').textContent === 'ready')
    // Two samples of /metrics make the first point of the chart.
    await tab.waitForFunction(() => document.getElementById('line').getAttribute('points').includes(','))
    const records = await tab.textContent('#records')
    // Events sent now show in the rate and in the ingestion p99 of the next samples.
    const auth = 'Basic ' + Buffer.from(writeKey + ':').toString('base64')
    for (let i = 0; i < 20; i++) {
      const r = await fetch(persona + '/v1/track', { method: 'POST', headers: { authorization: auth },
        body: JSON.stringify({ userId: 'u2', event: 'Viewed', messageId: 'v' + i }) })
      if (!r.ok) throw new Error('track answered ' + r.status)
    }
    await tab.waitForFunction(() => document.getElementById('p99').textContent.includes('ms'))
    const p99 = await tab.textContent('#p99')

    await tab.fill('#token', 'not the token')
    await tab.click('#token-form button')
    await tab.waitForFunction(() => document.getElementById('token-error').textContent.includes('refused'))
    const refused = await tab.textContent('#token-error')
    // The browser reports the refused request itself as a console error: expected here.
    problems.length = 0

    await tab.fill('#token', admin)
    await tab.click('#token-form button')
    await tab.waitForSelector('#segments tbody tr')
    const rows = (id) => tab.$$eval(`#${id} tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)))
    const segments = await rows('segments')
    const webhooks = await rows('webhooks')
    const injected = await tab.$$eval('#segments img', (imgs) => imgs.length)

    await tab.fill('#lookup', 'user_id:u1')
    await tab.click('#lookup-form button')
    await tab.waitForFunction(() => document.getElementById('profile').textContent.includes('"user_id"'))
    const profile = JSON.parse(await tab.textContent('#profile'))
    console.log(JSON.stringify({ records, p99, refused, segments, webhooks, injected, profile, problems }))
  } finally {
    await browser.close()
  }
}
main().catch((e) => { console.error(e); process.exit(1) })
"#;

#[tokio::test]
async fn the_dashboard_shows_health_segments_webhooks_and_profiles() {
    let modules = std::env::var("PERSONA_TEST_NODE_MODULES")
        .expect("PERSONA_TEST_NODE_MODULES names the node_modules that scripts/test installs");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    for n in 0..3 {
        let msg = json!({"userId": "u1", "event": "Order Completed", "messageId": format!("m{n}"),
                         "properties": {"revenue": 20}});
        let (status, body) = http.post(&url, "/v1/track", KEY, &msg).await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // A name that would run script if the page put it into HTML.
    let sly = "<img src=x onerror=alert(1)> buyers";
    let (status, seg) = http
        .admin(
            "POST",
            &format!("{url}/v1/segments"),
            Some(&json!({"name": sly, "rule": "computed.frequency >= 1"})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{seg}");
    let receiver = "http://127.0.0.1:9/hooks";
    let (status, hook) = http
        .admin(
            "POST",
            &format!("{url}/v1/webhooks"),
            Some(&json!({"url": receiver, "events": ["segment.entered"]})),
        )
        .await
        .unwrap();
    assert_eq!(status, 201, "{hook}");
    http.wait_processed(&url).await;
    let segment = format!("{url}/v1/segments/{}", seg["id"]);
    poll("the back-fill", Duration::from_millis(20), || async {
        let (_, s) = http.get(&segment, Some(ADMIN)).await.unwrap();
        (s["backfill"]["state"] == "done").then_some(())
    })
    .await;

    let out = Command::new("node")
        .args(["-e", SCRIPT, &url, ADMIN, KEY])
        .env("NODE_PATH", &modules)
        .output()
        .expect("node starts");
    assert!(
        out.status.success(),
        "the dashboard in Chromium failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(out.stdout.trim_ascii()).unwrap();
    assert_eq!(seen["problems"], json!([]), "{seen}");
    assert_eq!(seen["records"], "3", "{seen}");
    assert!(seen["refused"].as_str().unwrap().contains("refused"));
    assert!(seen["p99"].as_str().unwrap().starts_with("≤ "), "{seen}");
    let segment = &seen["segments"][0];
    assert_eq!(segment[1], sly, "the name is shown as written: {seen}");
    assert_eq!(segment[2], "1", "one member: {seen}");
    assert_eq!(seen["injected"], 0, "no element was made from the name");
    assert_eq!(seen["webhooks"][0][1], receiver);
    assert_eq!(seen["profile"]["user_id"], "u1");
    assert_eq!(seen["profile"]["computed"]["frequency"], 3);

    // The page's own headers: its policy forbids inline script and framing.
    let req = hyper::Request::get(format!("{url}/"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http();
    let resp = client.request(req).await.unwrap();
    let policy = resp.headers()["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("default-src 'self'") && policy.contains("frame-ancestors 'none'"));
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}
