//! `GET /openapi.json`: a valid OpenAPI 3.1 document (checked by openapi-spec-validator)
//! that names every route the server has, each of which answers.

mod common;

use std::collections::BTreeSet;

use common::{Http, KEY, Server};

/// The routes written in the routers' source: every `.route("…"` literal, and the SDK
/// settings paths, which are constants.
fn routes_in_source() -> BTreeSet<String> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut routes = BTreeSet::new();
    for file in [
        "persona-api/src/lib.rs",
        "persona-collector/src/lib.rs",
        "persona-collector/src/sdk_settings.rs",
        "persona/src/openapi.rs",
        "persona/src/dashboard.rs",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        for (i, _) in text.match_indices('"') {
            let rest = &text[i + 1..];
            let Some(end) = rest.find('"') else { continue };
            let literal = &rest[..end];
            let before = text[..i].trim_end();
            let is_route = before.ends_with(".route(")
                || before.ends_with("const ROUTE: &str =")
                || (file.ends_with("sdk_settings.rs") && literal.starts_with("/sourceConfig"));
            if is_route && literal.starts_with('/') {
                routes.insert(literal.to_owned());
            }
        }
    }
    routes
}

#[tokio::test]
async fn the_document_is_valid_names_every_route_and_each_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (url, http) = (server.url(), Http::default());
    let (status, doc) = http
        .get(&format!("{url}/openapi.json"), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "no token needed");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));

    // Valid against the OpenAPI 3.1 schema, as client generators will read it.
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(common::python())
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python with openapi-spec-validator (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Every route in the source is documented.
    let paths = doc["paths"].as_object().unwrap();
    let documented: BTreeSet<String> = paths.keys().cloned().collect();
    let in_source = routes_in_source();
    assert!(in_source.len() > 15, "{in_source:?}");
    let missing: Vec<_> = in_source.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without documentation: {missing:?}"
    );
    for path in [
        "/v1/track",
        "/v1/t",
        "/v1/batch",
        "/v1/b",
        "/v1/import",
        "/beacon/v1/batch",
    ] {
        assert!(paths.contains_key(path), "{path}");
    }

    // Every documented operation is served: the router's own 404 ("no route") and 405
    // never answer it.
    let mut called = 0;
    for (path, item) in paths {
        for method in item.as_object().unwrap().keys() {
            let filled = path
                .replace("{key}", "user_id:nobody")
                .replace("{id}", "987654")
                .replace("{write_key}", KEY);
            let target = format!("{url}{filled}");
            // Each called with the credential its document says it takes.
            let op = &item[method];
            let needs = |scheme: &str| op["security"][0].get(scheme).is_some();
            let (status, answer) = if needs("adminToken") {
                http.admin(&method.to_uppercase(), &target, None)
                    .await
                    .unwrap()
            } else if needs("writeKey") && method == "post" {
                http.post(&url, &filled, KEY, &serde_json::json!({}))
                    .await
                    .unwrap()
            } else if needs("writeKey") {
                http.get(&format!("{target}?writeKey={KEY}"), None)
                    .await
                    .unwrap()
            } else {
                http.get(&target, None).await.unwrap()
            };
            let message = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(
                status != 405 && !message.starts_with("no route"),
                "{method} {path}: {status} {answer}"
            );
            assert_ne!(status, 401, "{method} {path}: {answer}");
            called += 1;
        }
    }
    assert!(called > 40, "{called}");
}
