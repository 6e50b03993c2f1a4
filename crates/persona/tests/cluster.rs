//! `persona cluster` end to end: a feature table in, labels and a description out.

mod common;

use common::run;

/// `persona cluster ARGS --json`, which must succeed, parsed.
fn cluster_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["cluster", "--json"];
    all.extend_from_slice(args);
    serde_json::from_slice(&common::run_ok(&all)).unwrap()
}

#[test]
fn three_customer_groups_are_found_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("features.csv");
    let mut csv = String::from("user_id,recency_days,frequency,monetary,country\n");
    // Recent big spenders, lapsed one-timers, and frequent small buyers, 40 each.
    for i in 0..40 {
        let j = f64::from(i % 7);
        csv += &format!("a{i},{},{},{},DE\n", 2.0 + j, 20.0 + j, 2000.0 + 10.0 * j);
        csv += &format!("b{i},{},{},{},FR\n", 300.0 + j, 1.0, 30.0 + j);
        let monetary = if i == 0 {
            String::new()
        } else {
            format!("{}", 200.0 + j)
        };
        csv += &format!("c{i},{},{},{monetary},US\n", 20.0 + j, 40.0 + j);
    }
    std::fs::write(&input, csv).unwrap();
    let labels_path = dir.path().join("labels.csv");
    // Every linkage finds the same three groups.
    for linkage in ["ward", "complete", "average", "single"] {
        let r = cluster_json(&[
            "--input",
            input.to_str().unwrap(),
            "--k",
            "3",
            "--algorithm",
            "hierarchical",
            "--linkage",
            linkage,
        ]);
        assert_eq!(
            r["sizes"],
            serde_json::json!([40, 40, 40]),
            "{linkage}: {r}"
        );
    }
    let out = run(&[
        "cluster",
        "--input",
        input.to_str().unwrap(),
        "--k",
        "3",
        "--seed",
        "1",
        "--output",
        labels_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "algorithm",
        "k",
        "labels_path",
        "inertia",
        "silhouette",
        "calinski_harabasz",
        "davies_bouldin",
        "iterations",
        "sizes",
        "centers",
        "curves",
        "clusters",
    ] {
        assert!(report.get(field).is_some(), "{field} missing: {report}");
    }
    assert_eq!(
        report["features"],
        serde_json::json!(["recency_days", "frequency", "monetary"])
    );
    assert_eq!(
        report["preparation"]["imputed"],
        serde_json::json!([["monetary", 1, "median"]])
    );
    assert!(report["silhouette"].as_f64().unwrap() > 0.7, "{report}");
    assert!(report["stability"].as_f64().unwrap() > 0.95, "{report}");

    let labels: Vec<String> = std::fs::read_to_string(&labels_path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(labels[0], "label");
    assert_eq!(labels.len(), 121);
    // Rows come in triples a, b, c: each group has one label, and the three differ.
    for group in 0..3 {
        let first = &labels[1 + group];
        assert!(
            (0..40).all(|i| &labels[1 + 3 * i + group] == first),
            "group {group} split"
        );
    }
    assert!(labels[1] != labels[2] && labels[2] != labels[3] && labels[1] != labels[3]);
    let big_spenders: usize = labels[1].parse().unwrap();
    let c = &report["clusters"][big_spenders];
    assert_eq!(c["size"], 40);
    assert!(c["name"].as_str().unwrap().contains("high monetary"), "{c}");
    let centre = &report["centers"][big_spenders];
    assert!(
        (centre["monetary"].as_f64().unwrap() - 2030.0).abs() < 20.0,
        "centres are in input units: {centre}"
    );
}

/// The three groups of [`three_customer_groups_are_found_and_described`], with a country
/// per group and a gap, as CSV.
fn groups_csv() -> String {
    let mut csv = String::from("user_id,recency_days,frequency,monetary,country\n");
    for i in 0..40 {
        let j = f64::from(i % 7);
        let country = if i == 5 { "" } else { "DE" };
        csv += &format!(
            "a{i},{},{},{},{country}\n",
            2.0 + j,
            20.0 + j,
            2000.0 + 10.0 * j
        );
        csv += &format!("b{i},{},{},{},FR\n", 300.0 + j, 1.0, 30.0 + j);
        csv += &format!("c{i},{},{},{},US\n", 20.0 + j, 40.0 + j, 200.0 + j);
    }
    csv
}

#[test]
fn categories_and_log1p_are_prepared_and_the_stored_model_assigns_as_training_did() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("features.csv");
    std::fs::write(&input, groups_csv()).unwrap();
    let (labels_path, model_path) = (dir.path().join("l.csv"), dir.path().join("m.json"));
    let r = cluster_json(&[
        "--input",
        input.to_str().unwrap(),
        "--k",
        "3",
        "--features",
        "recency_days,monetary,country",
        "--log1p",
        "monetary",
        "--impute",
        "country=constant:DE",
        "--output",
        labels_path.to_str().unwrap(),
        "--model",
        model_path.to_str().unwrap(),
    ]);
    assert_eq!(
        r["features"],
        serde_json::json!([
            "recency_days",
            "monetary",
            "country=DE",
            "country=FR",
            "country=US"
        ])
    );
    assert_eq!(r["preparation"]["log1p"], serde_json::json!(["monetary"]));
    assert_eq!(
        r["preparation"]["imputed"],
        serde_json::json!([["country", 1, "constant DE"]])
    );
    assert_eq!(r["sizes"], serde_json::json!([40, 40, 40]));
    // Centres come back in input units: money undone from the log, a category as its share.
    let big = r["centers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["country=DE"] == 1.0)
        .expect("a cluster of the German customers");
    let m = big["monetary"].as_f64().unwrap();
    assert!((2000.0..2060.0).contains(&m), "{big}");

    let stored: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&model_path).unwrap()).unwrap();
    assert_eq!(stored["names"].as_array().unwrap().len(), 3);
    let model: persona_segment::Model = serde_json::from_value(stored["model"].clone()).unwrap();
    let labels = std::fs::read_to_string(&labels_path).unwrap();
    let labels: Vec<usize> = labels.lines().skip(1).map(|l| l.parse().unwrap()).collect();
    let csv = groups_csv();
    for (line, label) in csv.lines().skip(1).zip(&labels) {
        let cells: Vec<&str> = line.split(',').collect();
        let number = |s: &str| persona_segment::Cell::Number(s.parse().unwrap());
        let country = match cells[4] {
            "" => persona_segment::Cell::Missing,
            c => persona_segment::Cell::Text(c),
        };
        let (assigned, _) = model
            .assign(&[number(cells[1]), number(cells[3]), country])
            .unwrap();
        assert_eq!(assigned, *label, "{line}");
    }
}

#[test]
fn every_algorithm_finds_the_groups_and_dbscan_marks_the_stragglers_as_noise() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("features.csv");
    // The three groups spread evenly through small boxes (DBSCAN needs density, not the
    // repeated values of `groups_csv`), and two customers far from every group.
    let mut csv = String::from("user_id,recency_days,frequency,monetary\n");
    let spread = |i: u32, step: f64| (f64::from(i) * step).fract();
    for i in 0..40 {
        let (u, v, w) = (spread(i, 0.618), spread(i, 0.414), spread(i, 0.732));
        csv += &format!(
            "a{i},{},{},{}\n",
            2.0 + 8.0 * u,
            20.0 + 6.0 * v,
            2000.0 + 80.0 * w
        );
        csv += &format!(
            "b{i},{},{},{}\n",
            300.0 + 8.0 * v,
            1.0 + 2.0 * w,
            30.0 + 20.0 * u
        );
        csv += &format!(
            "c{i},{},{},{}\n",
            20.0 + 8.0 * w,
            40.0 + 6.0 * u,
            200.0 + 30.0 * v
        );
    }
    let groups = dir.path().join("groups.csv");
    std::fs::write(&groups, &csv).unwrap();
    csv += "x1,900,90,9000\nx2,950,0,1\n";
    std::fs::write(&input, csv).unwrap();
    let labels_path = dir.path().join("labels.csv");
    let f = input.to_str().unwrap();
    let r = cluster_json(&[
        "--input",
        f,
        "--algorithm",
        "dbscan",
        "--output",
        labels_path.to_str().unwrap(),
    ]);
    assert_eq!(r["k"], 3, "{r}");
    assert_eq!(r["noise"], 2, "{r}");
    assert_eq!(r["sizes"], serde_json::json!([40, 40, 40]));
    assert!(r["curves"]["eps"].as_f64().unwrap() > 0.0);
    assert!(!r["curves"]["k_distance"].as_array().unwrap().is_empty());
    let labels = std::fs::read_to_string(&labels_path).unwrap();
    let labels: Vec<&str> = labels.lines().skip(1).collect();
    assert_eq!(labels.len(), 122);
    assert_eq!(&labels[120..], ["-1", "-1"]);
    assert!(labels[..120].iter().all(|l| *l != "-1"));

    // Cut by height, Ward's tree gives the three groups and the two stragglers alone, and
    // the over-segmentation guard says so.
    let out = run(&[
        "cluster",
        "--json",
        "--input",
        f,
        "--algorithm",
        "hierarchical",
        "--cut-height",
        "0.5",
    ]);
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains("cluster 3 holds 1 rows, under 2%"),
        "{warned}"
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["sizes"], serde_json::json!([40, 40, 40, 1, 1]), "{r}");
    for c in r["clusters"].as_array().unwrap() {
        for field in ["cohesion", "separation", "silhouette"] {
            assert!(c[field].is_number(), "{field}: {c}");
        }
    }
    // Without the stragglers, mini-batch K-Means and hierarchical clustering choose k = 3.
    for algorithm in ["minibatch-kmeans", "hierarchical"] {
        let r = cluster_json(&[
            "--input",
            groups.to_str().unwrap(),
            "--algorithm",
            algorithm,
            "--k",
            "auto",
            "--k-max",
            "6",
        ]);
        assert_eq!(r["k"], 3, "{algorithm}: {r}");
        assert!(r["stability"].as_f64().unwrap() > 0.9, "{algorithm}: {r}");
        assert_eq!(r["curves"]["k"].as_array().unwrap().len(), 5);
    }
}

#[test]
fn bad_options_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("f.csv");
    std::fs::write(&input, "a,b,c\n1,2,1\n3,4,n/a\n5,6,3\n").unwrap();
    let f = input.to_str().unwrap();
    for (args, expect) in [
        (
            vec!["--k", "many"],
            "--k must be a whole number of at least 1 or auto",
        ),
        (
            vec!["--k", "2", "--algorithm", "dbscan"],
            "--k does not apply to dbscan",
        ),
        (vec![], "--k is required for the kmeans algorithm"),
        (
            vec!["--algorithm", "dbscan", "--eps", "0"],
            "--eps must be a positive number",
        ),
        (
            vec!["--algorithm", "dbscan", "--model", "m.json"],
            "DBSCAN has no centres",
        ),
        (
            vec![
                "--k",
                "2",
                "--algorithm",
                "hierarchical",
                "--linkage",
                "median",
            ],
            "--linkage must be",
        ),
        (vec!["--k", "2", "--features", "a,zzz"], "no column \"zzz\""),
        (vec!["--k", "2", "--scale", "log"], "--scale"),
        (
            vec!["--k", "2", "--kmeans-variant", "elkan"],
            "--kmeans-variant must be",
        ),
        (
            vec!["--cut-height", "2"],
            "--cut-height applies to the hierarchical algorithm",
        ),
        (
            vec!["--k", "2", "--features", "a,b", "--impute", "a=mode"],
            "--impute a: must be median",
        ),
        (
            vec!["--k", "2", "--features", "a,b", "--log1p", "zzz"],
            "column \"zzz\": is not one of",
        ),
        (
            vec!["--cut-height=-1", "--algorithm", "hierarchical"],
            "--cut-height must be",
        ),
        (
            vec!["--k", "2", "--features", "a,c"],
            "row 2: column \"c\" holds both numbers and text (here \"n/a\"); fix the cell (an empty one is imputed), or name the column in --categorical",
        ),
        (
            vec!["--k", "2"],
            "row 2: column \"c\" holds both numbers and text (here \"n/a\"); fix the cell (an empty one is imputed), or choose the columns to use with --features",
        ),
        (
            vec!["--k", "2", "--features", "a,b,a"],
            "\"a\" is named twice (names 1 and 3)",
        ),
        (
            vec!["--k", "2", "--features", "a,b", "--categorical", "c"],
            "--categorical: \"c\" is not among --features",
        ),
        (
            vec!["--k", "2", "--linkage", "single"],
            "--linkage applies to the hierarchical algorithm only",
        ),
        (
            vec![
                "--k",
                "2",
                "--features",
                "a,b",
                "--output",
                "/no/such/dir/l.csv",
            ],
            "--output: the folder /no/such/dir does not exist",
        ),
        (
            vec!["--k", "2", "--features", "a,b", "--report", f],
            "is also the file of --input",
        ),
        (
            vec!["--k", "9", "--features", "a,b"],
            "k = 9 is more than the 3 rows",
        ),
        (vec!["--k", "2", "--id", "zzz"], "--id: "),
        (
            vec!["--k", "2", "--features", "a,b", "--id", "a"],
            "--id: \"a\" identifies rows, so it cannot also be a feature",
        ),
    ] {
        let mut all = vec!["cluster", "--input", f];
        all.extend(args);
        let out = run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(expect),
            "{all:?}: {err}"
        );
    }
}

/// Rows are read by column name, so a second column of the same name would replace the
/// first without a word; a numeric customer id, clustered on like any number, is pointed
/// out; and a table piped into `head` ends quietly.
#[test]
fn a_repeated_column_name_is_refused_an_id_is_pointed_out_and_a_closed_pipe_is_no_error() {
    let dir = tempfile::tempdir().unwrap();
    let twice = dir.path().join("twice.csv");
    std::fs::write(&twice, "a,a\n1,100\n2,200\n3,300\n4,400\n").unwrap();
    let out = run(&["cluster", "--input", twice.to_str().unwrap(), "--k", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("columns 1 and 2 are both named \"a\"; rename one"),
        "{err}"
    );

    let ids = dir.path().join("ids.csv");
    std::fs::write(
        &ids,
        "customer_id,name,spend\n1,Ann,10\n2,1984,11\n3,Bob,50\n4,Cy,52\n",
    )
    .unwrap();
    let out = run(&["cluster", "--input", ids.to_str().unwrap(), "--k", "2"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.contains("column \"customer_id\" looks like an identifier"),
        "{err}"
    );
    // A text column with a number-like cell is text, left out with a word.
    assert!(
        err.contains("column \"name\" holds some numbers but mostly text, and is left out"),
        "{err}"
    );
    // Named in --id, the id is no feature and goes beside each label, to join them back.
    let labels = dir.path().join("labels.csv");
    let json = cluster_json(&[
        "--input",
        ids.to_str().unwrap(),
        "--k",
        "2",
        "--id",
        "customer_id",
        "--output",
        labels.to_str().unwrap(),
    ]);
    assert_eq!(json["features"], serde_json::json!(["spend"]), "{json}");
    let written = std::fs::read_to_string(&labels).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    assert_eq!(lines[0], "customer_id,label");
    let ids: Vec<&str> = lines[1..]
        .iter()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4"]);
    let label = |i: usize| lines[i].split(',').nth(1).unwrap();
    assert_eq!(label(1), label(2), "{written}");
    assert_ne!(label(1), label(3), "{written}");

    let input = dir.path().join("groups.csv");
    std::fs::write(&input, groups_csv()).unwrap();
    let exe = env!("CARGO_BIN_EXE_persona");
    let mut child = std::process::Command::new(exe)
        .args(["cluster", "--input", input.to_str().unwrap(), "--k", "auto"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the table is written, as `| head -1` may.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn k_auto_finds_the_groups_and_shows_the_curves() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("f.csv");
    let mut csv = String::from("x,y\n");
    for (cx, cy) in [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0)] {
        for i in 0..40 {
            let t = f64::from(i) * 0.37;
            csv += &format!("{},{}\n", cx + t.sin(), cy + (t * 1.3).cos());
        }
    }
    std::fs::write(&input, csv).unwrap();
    let report_path = dir.path().join("report.html");
    let out = run(&[
        "cluster",
        "--input",
        input.to_str().unwrap(),
        "--k",
        "auto",
        "--k-max",
        "6",
        "--json",
        "--report",
        report_path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["k"], 3, "{report}");
    assert_eq!(report["curves"]["k"], serde_json::json!([2, 3, 4, 5, 6]));
    assert_eq!(report["curves"]["inertia"].as_array().unwrap().len(), 5);
    assert_eq!(report["curves"]["elbow_k"], 3);
    // One page, no outside file: the two curves, sizes, centres and the projection.
    let page = std::fs::read_to_string(&report_path).unwrap();
    assert_eq!(page.matches("<svg").count(), 5, "{page}");
    assert!(page.contains("Chosen k = 3"));
    assert_eq!(
        page.matches("<circle").count(),
        120 + 5 + 5,
        "every row plotted, plus 5 points per curve"
    );
    assert!(!page.contains("src=") && !page.contains("<script"));
}
