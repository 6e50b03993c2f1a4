//! A known-data test: CDNOW's public transaction log (69,659 CD purchases by 23,570
//! customers, 1997-1998; `CDNOW_master.txt` as the Python package `lifetimes` ships it)
//! imported as `Order Completed` events. Every customer's frequency, monetary value and
//! recency must equal a straight computation over the file, and the RFM scores must equal
//! those numpy's percentiles give.

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::{ADMIN, Http, Server, exported_profiles_as_of, run_ok};
use persona_segment::rfm::{RfmEdges, RfmValues};
use serde_json::json;

/// The scoring date: the day after CDNOW's last transaction month.
const AS_OF: &str = "1998-07-01T00:00:00Z";
const DAY_MS: i64 = 86_400_000;

/// The data file, found without importing `lifetimes` (scripts/test installs it).
fn cdnow_master() -> String {
    let out = Command::new(common::python())
        .args([
            "-c",
            "import importlib.util, os; s = importlib.util.find_spec('lifetimes'); print(os.path.join(os.path.dirname(s.origin), 'datasets', 'CDNOW_master.txt'))",
        ])
        .output()
        .expect("run Python");
    assert!(
        out.status.success(),
        "the lifetimes package is missing (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// One customer's purchases, straight from the file: count, cents, last day (ms).
#[derive(Default, Debug, Clone, Copy)]
struct Truth {
    purchases: u64,
    cents: i64,
    last_ms: i64,
}

fn day_ms(yyyymmdd: &str) -> i64 {
    let d = chrono::NaiveDate::parse_from_str(yyyymmdd, "%Y%m%d").unwrap();
    d.and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
}

#[tokio::test]
async fn cdnow_purchases_give_the_known_frequency_monetary_recency_and_rfm() {
    let text = std::fs::read_to_string(cdnow_master()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("cdnow.jsonl");
    let mut lines = Vec::new();
    let mut truth: HashMap<String, Truth> = HashMap::new();
    for (n, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let [customer, date, _cds, dollars] = f[..] else {
            panic!("line {}: {line:?}", n + 2)
        };
        let user = format!("cdnow-{customer}");
        let (whole, frac) = dollars.split_once('.').unwrap();
        let cents = whole.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap();
        let at = day_ms(date);
        let t = truth.entry(user.clone()).or_default();
        t.purchases += 1;
        t.cents += cents;
        t.last_ms = t.last_ms.max(at);
        let timestamp = chrono::DateTime::from_timestamp_millis(at)
            .unwrap()
            .to_rfc3339();
        lines.push(
            serde_json::json!({
                "type": "track", "event": "Order Completed", "userId": user,
                "timestamp": timestamp, "messageId": format!("cdnow-{n}"),
                "properties": {"revenue": dollars.parse::<f64>().unwrap()},
            })
            .to_string(),
        );
    }
    assert_eq!((lines.len(), truth.len()), (69_659, 23_570));
    std::fs::write(&jsonl, lines.join("\n")).unwrap();

    let data = dir.path().join("data");
    run_ok(&[
        "import",
        jsonl.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let mut server = Server::start(&data);
    let (url, http) = (server.url(), Http::default());
    http.wait_processed(&url).await;
    // The server's own RFM: a batch fit over every purchasing customer, and every 25th
    // customer's scores as the profile API shows them.
    let (status, fit) = http
        .admin(
            "POST",
            &format!("{url}/v1/rfm"),
            Some(&json!({ "as_of": AS_OF })),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{fit}");
    let mut sampled: Vec<&String> = truth.keys().collect();
    sampled.sort();
    let mut served = HashMap::new();
    for user in sampled.into_iter().step_by(25) {
        let (status, p) = http
            .get(
                &format!("{url}/v1/profiles/{user}?as_of={AS_OF}"),
                Some(ADMIN),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{p}");
        served.insert(user.clone(), p["rfm"].clone());
    }
    server.stop();

    let profiles = exported_profiles_as_of(&data, Some(AS_OF));
    assert_eq!(profiles.len(), truth.len());
    let as_of = chrono::DateTime::parse_from_rfc3339(AS_OF)
        .unwrap()
        .timestamp_millis();
    let mut values = Vec::new();
    for p in &profiles {
        let user = p["user_id"].as_str().unwrap();
        let t = truth[user];
        let c = &p["computed"];
        assert_eq!(c["frequency"], t.purchases, "{user}");
        let monetary = c["monetary"].as_f64().unwrap();
        assert!(
            (monetary - t.cents as f64 / 100.0).abs() < 1e-6,
            "{user}: {monetary} vs {} cents",
            t.cents
        );
        assert_eq!(
            c["recency_days"],
            (as_of - t.last_ms).div_euclid(DAY_MS),
            "{user}"
        );
        values.push((
            user.to_owned(),
            RfmValues {
                recency_days: c["recency_days"].as_f64().unwrap(),
                frequency: t.purchases as f64,
                monetary,
            },
        ));
    }
    // RFM: quintile edges and scores, against numpy's percentiles of the same values.
    let edges = RfmEdges::fit(&values.iter().map(|v| v.1).collect::<Vec<_>>(), 1).unwrap();
    let csv = dir.path().join("rfm.csv");
    let mut rows = String::from("user,recency,frequency,monetary\n");
    for (user, v) in &values {
        rows += &format!("{user},{},{},{}\n", v.recency_days, v.frequency, v.monetary);
    }
    std::fs::write(&csv, rows).unwrap();
    let script = r#"
import csv, sys
import numpy as np
rows = list(csv.DictReader(open(sys.argv[1])))
cols = {k: np.array([float(r[k]) for r in rows]) for k in ("recency", "frequency", "monetary")}
edges = {k: np.percentile(v, [20, 40, 60, 80]) for k, v in cols.items()}
grid = {  # R: segment for FM = 1..5, as the README documents it
    5: ["New Customers", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
    4: ["Promising", "Potential Loyalists", "Potential Loyalists", "Champions", "Champions"],
    3: ["About to Sleep", "Need Attention", "Need Attention", "Loyal Customers", "Loyal Customers"],
    2: ["About to Sleep", "About to Sleep", "At Risk", "At Risk", "At Risk"],
    1: ["Lost", "Hibernating", "At Risk", "Can't Lose Them", "Can't Lose Them"],
}
for i, r in enumerate(rows):
    above = {k: int((cols[k][i] > edges[k]).sum()) for k in cols}
    R, F, M = 5 - above["recency"], 1 + above["frequency"], 1 + above["monetary"]
    fm = -(-(F + M) // 2)
    print(r["user"], R, F, M, grid[R][fm - 1], sep="\t")
"#;
    let out = common::python_script(script, &[csv.as_os_str()]);
    type Scored = ((u8, u8, u8), String);
    let numpy: HashMap<String, Scored> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let score = |i: usize| f[i].parse::<u8>().unwrap();
            (
                f[0].to_owned(),
                ((score(1), score(2), score(3)), f[4].to_owned()),
            )
        })
        .collect();
    // The served fit has the same edges, and each served profile numpy's scores.
    assert_eq!(fit["edges"]["customers"], truth.len());
    for (name, want) in [
        ("recency_days", edges.recency_days),
        ("frequency", edges.frequency),
        ("monetary", edges.monetary),
    ] {
        assert_eq!(fit["edges"][name], json!(want), "{name}");
    }
    assert!(served.len() > 900);
    for (user, rfm) in &served {
        let ((r, f, m), segment) = &numpy[user];
        assert_eq!(
            (&rfm["r"], &rfm["f"], &rfm["m"], &rfm["segment"]),
            (&json!(r), &json!(f), &json!(m), &json!(segment)),
            "{user}"
        );
        assert_eq!(rfm["version"], fit["edges"]["version"]);
    }
    let mut segments: HashMap<&str, usize> = HashMap::new();
    for (user, v) in &values {
        let s = edges.score(v);
        let (want, segment) = &numpy[user];
        assert_eq!((s.r, s.f, s.m), *want, "{user}: {v:?}");
        assert_eq!(s.segment.name(), segment, "{user}");
        *segments.entry(s.segment.name()).or_default() += 1;
    }
    // A one-time buyer's FM is at most 3, so none is a Champion; and the data has both.
    let one_time_champions = values
        .iter()
        .filter(|(_, v)| v.frequency == 1.0 && edges.score(v).segment.name() == "Champions")
        .count();
    assert_eq!(one_time_champions, 0);
    assert!(
        segments["Champions"] > 0 && segments["Lost"] > 0,
        "{segments:?}"
    );
}
