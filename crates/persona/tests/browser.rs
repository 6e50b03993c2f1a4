//! Browser SDKs in a real browser: Segment's `@segment/analytics-next` and RudderStack's
//! `rudder-sdk-js`, bundled as a site bundles them, load in headless Chromium on a page of
//! another origin with persona as their settings source (`cdnURL`, `configUrl`), fetch their
//! settings from persona, and send their calls there. `scripts/test` installs Chromium and
//! the npm packages.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{ADMIN, Http, KEY, Server, logged};
use serde_json::Value;

/// Bundles both SDKs with esbuild, serves pages from their own origin, and drives
/// Chromium through them with playwright-core: analytics.js once with each of its deliveries,
/// then RudderStack. Prints the message ids sent in each.
const SCRIPT: &str = r#"
const esbuild = require('esbuild')
const http = require('http')
const fs = require('fs')
const path = require('path')
const { chromium } = require('playwright-core')
const [persona, writeKey, dir] = process.argv.slice(1)

const page = `<!doctype html><title>shop</title><script src="/bundle.js"></script><script>
window.sent = (async () => {
  // ?batching: analytics.js's batching delivery, three calls to a batch (posted to /v1/b).
  const batching = location.search.includes('batching')
  const options = batching
    ? { integrations: { 'Segment.io': { deliveryStrategy: { strategy: 'batching', config: { size: 3 } } } } }
    : {}
  const [analytics] = await AnalyticsBrowser.load({ writeKey: ${JSON.stringify(writeKey)}, cdnURL: ${JSON.stringify(persona)} }, options)
  const user = batching ? 'batching-user' : 'browser-user'
  const calls = await Promise.all([
    analytics.identify(user, { plan: 'pro', email: 'b@example.com' }),
    analytics.track('Order Completed', { revenue: 42.5 }),
    analytics.page('Docs', 'Install'),
  ])
  for (const ctx of calls) {
    const failed = ctx.failedDelivery()
    if (failed) throw new Error('delivery failed: ' + String(failed.reason))
  }
  return calls.map((ctx) => ctx.event.messageId)
})()
</script>`

// RudderStack's SDK, with persona as its control plane (configUrl) and its data plane.
const rudderPage = `<!doctype html><title>shop</title><script src="/rudder.js"></script><script>
rudderanalytics.load(${JSON.stringify(writeKey)}, ${JSON.stringify(persona)}, { configUrl: ${JSON.stringify(persona)}, logLevel: 'ERROR' })
rudderanalytics.ready(() => {
  rudderanalytics.identify('rudder-user', { plan: 'pro', email: 'r@example.com' })
  rudderanalytics.track('Order Completed', { revenue: 42.5 })
  rudderanalytics.page('Docs', 'Install')
})
</script>`

async function bundle(name, contents) {
  await esbuild.build({
    stdin: { contents, resolveDir: dir },
    bundle: true, format: 'iife', platform: 'browser', target: 'es2020',
    nodePaths: [process.env.NODE_PATH], outfile: path.join(dir, name), logLevel: 'error',
  })
  return fs.readFileSync(path.join(dir, name))
}

async function main() {
  const files = {
    '/bundle.js': await bundle('bundle.js', "import { AnalyticsBrowser } from '@segment/analytics-next'; window.AnalyticsBrowser = AnalyticsBrowser"),
    '/rudder.js': await bundle('rudder.js', "import * as rudderanalytics from 'rudder-sdk-js'; window.rudderanalytics = rudderanalytics"),
  }
  const site = http.createServer((req, res) => {
    const js = files[req.url]
    res.writeHead(200, { 'Content-Type': js ? 'text/javascript' : 'text/html' })
    res.end(js || (req.url.startsWith('/rudder') ? rudderPage : page))
  })
  await new Promise((ok) => site.listen(0, '127.0.0.1', ok))
  const browser = await chromium.launch({
    executablePath: process.env.PERSONA_TEST_CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  try {
    // Headless Chromium says so in its user agent, and persona drops bots as noise: the
    // page presents itself as the desktop Chrome a shopper would use.
    const tab = await browser.newPage({
      userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36',
    })
    const problems = []
    tab.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()) })
    tab.on('pageerror', (e) => problems.push(String(e)))
    const sent = {}
    for (const mode of ['standard', 'batching']) {
      await tab.goto(`http://127.0.0.1:${site.address().port}/?${mode}`)
      sent[mode] = await tab.evaluate(() => window.sent).catch((e) => {
        throw new Error(`${mode}: ${e.message}\nbrowser console: ${problems.join('\n')}`)
      })
    }
    // RudderStack's SDK reports no delivery to the page: its three posts are awaited here.
    const posted = ['identify', 'track', 'page'].map((type) =>
      tab.waitForResponse((r) => r.url() === `${persona}/v1/${type}` && r.request().method() === 'POST', { timeout: 30000 }))
    await tab.goto(`http://127.0.0.1:${site.address().port}/rudder`)
    const responses = await Promise.all(posted).catch((e) => {
      throw new Error(`rudder: ${e.message}\nbrowser console: ${problems.join('\n')}`)
    })
    for (const r of responses) {
      if (r.status() !== 200) throw new Error(`rudder: ${r.url()} answered ${r.status()}: ${await r.text()}`)
    }
    sent.rudder = responses.map((r) => JSON.parse(r.request().postData()).messageId)
    console.log(JSON.stringify(sent))
  } finally {
    await browser.close()
    site.close()
  }
}
main().catch((e) => { console.error(e); process.exit(1) })
"#;

#[tokio::test]
async fn browser_sdks_in_chromium_load_their_settings_from_persona_and_send_there() {
    let modules = std::env::var("PERSONA_TEST_NODE_MODULES")
        .expect("PERSONA_TEST_NODE_MODULES names the node_modules that scripts/test installs");
    let dir = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let out = Command::new("node")
        .args([
            "-e",
            SCRIPT,
            &server.url(),
            KEY,
            work.path().to_str().unwrap(),
        ])
        .env("NODE_PATH", &modules)
        .output()
        .expect("node starts");
    assert!(
        out.status.success(),
        "analytics.js in Chromium failed (scripts/test installs both):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let sent: HashMap<String, Vec<String>> = serde_json::from_slice(&out.stdout).unwrap();

    let http = Http::default();
    http.wait_processed(&server.url()).await;
    for user in ["browser-user", "batching-user", "rudder-user"] {
        let (status, profile) = http
            .get(&format!("{}/v1/profiles/{user}", server.url()), Some(ADMIN))
            .await
            .unwrap();
        assert_eq!(status, 200, "{profile}");
        assert_eq!(profile["traits"]["plan"], "pro");
        assert_eq!(profile["computed"]["monetary"], 42.5, "{profile}");
    }
    // The batching delivery posted its three calls to /v1/b, as one batch.
    let metrics = http
        .get_text(&format!("{}/metrics", server.url()))
        .await
        .unwrap();
    let batch_posts = r#"persona_http_request_duration_seconds_count{path="/v1/b",status="200"} 1"#;
    assert!(metrics.contains(batch_posts), "{metrics}");
    server.stop();

    let stored: Vec<Value> = logged(dir.path());
    assert_eq!(stored.len(), 9, "{stored:?}");
    let libraries = [
        ("standard", "browser-user", "analytics.js"),
        ("batching", "batching-user", "analytics.js"),
        ("rudder", "rudder-user", "RudderLabs JavaScript SDK"),
    ];
    for (mode, user, library) in libraries {
        assert_eq!(sent[mode].len(), 3);
        for id in &sent[mode] {
            let m = stored
                .iter()
                .find(|s| s["messageId"] == id.as_str())
                .unwrap_or_else(|| panic!("{id} was sent but is not in the log: {stored:?}"));
            assert_eq!(m["userId"], user, "{m}");
            assert_eq!(m["context"]["library"]["name"], library, "{m}");
            let agent = m["context"]["userAgent"].as_str().unwrap_or_default();
            assert!(agent.contains("Chrome"), "{m}");
            assert!(m["context"]["page"]["url"].is_string(), "{m}");
            assert!(m["anonymousId"].is_string(), "{m}");
            // The browser's address, filled in by the collector as Segment's servers do.
            assert_eq!(m["context"]["ip"], "127.0.0.1", "{m}");
        }
    }
    let types: std::collections::BTreeSet<&str> =
        stored.iter().map(|m| m["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["identify", "page", "track"].into());
}
