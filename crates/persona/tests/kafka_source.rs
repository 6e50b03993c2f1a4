//! `persona serve` reading Segment messages from a real Kafka-protocol broker (tansu;
//! `scripts/test` installs it and names its binary in `PERSONA_TEST_TANSU`): records become
//! profiles, bad records go whole to the dead-letter topic with the reason, a clean stop
//! commits what was stored, and a server killed before committing reads its records
//! again without counting any purchase twice.

mod common;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN, Http, Server, poll};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::{Value, json};

fn tansu() -> String {
    std::env::var("PERSONA_TEST_TANSU")
        .expect("PERSONA_TEST_TANSU must name the tansu broker binary (scripts/test installs it)")
}

/// A broker of the test's own, on a free port, keeping its topics in memory; reached
/// over TLS when it has a TLS front.
struct Broker {
    child: Child,
    /// Where clients start from: tansu, or its TLS front.
    address: String,
    /// tansu's own listener, for its command line.
    plain: String,
    /// The TLS front (socat) and its certificate, when there is one.
    tls: Option<(Child, PathBuf)>,
}

fn free_address() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

fn wait_listening(address: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(address).is_err() {
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {address}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Broker {
    fn start() -> Broker {
        let address = free_address();
        Broker::start_tansu(address.clone(), address)
    }

    /// tansu listening on `plain`, telling clients to connect to `advertised`.
    fn start_tansu(plain: String, advertised: String) -> Broker {
        let child = Command::new(tansu())
            .args(["broker", "--listener-url", &format!("tcp://{plain}")])
            .args(["--advertised-listener-url", &format!("tcp://{advertised}")])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the tansu broker starts");
        wait_listening(&plain, "tansu");
        Broker {
            child,
            address: advertised,
            plain,
            tls: None,
        }
    }

    /// A broker that clients reach only over TLS: socat in front of tansu, with a
    /// certificate for 127.0.0.1 that openssl makes in `dir` (tansu has no TLS of its own).
    fn start_tls(dir: &Path) -> Broker {
        let persona_test_certs::SelfSigned { cert, key } =
            persona_test_certs::self_signed(dir, "broker", "IP:127.0.0.1");
        let front = free_address();
        let mut broker = Broker::start_tansu(free_address(), front.clone());
        let (host, port) = front.split_once(':').unwrap();
        let socat = Command::new("socat")
            .arg(format!(
                "OPENSSL-LISTEN:{port},bind={host},reuseaddr,fork,cert={},key={},verify=0",
                cert.display(),
                key.display()
            ))
            .arg(format!("TCP:{}", broker.plain))
            .stderr(Stdio::null())
            .spawn()
            .expect("socat starts");
        broker.tls = Some((socat, cert));
        wait_listening(&front, "socat");
        broker
    }

    /// The librdkafka settings a client of this broker needs.
    fn client_options(&self) -> Vec<(&'static str, String)> {
        match &self.tls {
            None => Vec::new(),
            Some((_, cert)) => vec![
                ("security.protocol", "ssl".into()),
                ("ssl.ca.location", cert.display().to_string()),
            ],
        }
    }

    /// A client configured for this broker.
    fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.address);
        for (key, value) in self.client_options() {
            config.set(key, value);
        }
        config
    }

    fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://{}", self.plain),
            ])
            .args(["--partitions", &partitions.to_string(), topic])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "creating topic {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sends each (key, value) to `topic` and waits until the broker has them all.
    fn produce(&self, topic: &str, records: &[(String, String)]) {
        self.produce_to(topic, None, records)
    }

    /// The same, to one partition when given.
    fn produce_to(&self, topic: &str, partition: Option<i32>, records: &[(String, String)]) {
        let producer: BaseProducer = self.client().set("acks", "all").create().unwrap();
        for (key, value) in records {
            let mut record = BaseRecord::to(topic)
                .key(key.as_str())
                .payload(value.as_str());
            if let Some(p) = partition {
                record = record.partition(p);
            }
            while let Err((e, back)) = producer.send(record) {
                assert!(format!("{e}").contains("Queue full"), "{e}");
                producer.poll(Duration::from_millis(50));
                record = back;
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// The first `n` records of `topic`, with their headers.
    fn read(&self, topic: &str, n: usize) -> Vec<(String, BTreeMap<String, String>)> {
        let consumer: BaseConsumer = self
            .client()
            .set("group.id", format!("test-reader-{}", std::process::id()))
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        while out.len() < n {
            assert!(
                Instant::now() < deadline,
                "read {} of {n} from {topic}",
                out.len()
            );
            let Some(m) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = m.unwrap();
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                            (h.key.to_owned(), value.into_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let payload = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            out.push((payload, headers));
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let fronted = self.tls.as_mut().map(|(front, _)| front);
        for child in fronted.into_iter().chain([&mut self.child]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A config reading `events` from `broker`, with `extra` lines in `[sources.kafka]` and
/// `options` for the client, and tansu's consumer-group joins kept short (each waits
/// about half the session timeout).
fn config(dir: &Path, broker: &Broker, extra: &str, options: &str) -> PathBuf {
    let path = dir.join("persona.toml");
    let client: String = broker
        .client_options()
        .iter()
        .map(|(key, value)| format!("{key:?} = {value:?}\n"))
        .collect();
    std::fs::write(
        &path,
        format!(
            "[sources.kafka]\nbrokers = \"{}\"\ntopics = [\"events\"]\n{extra}\n\
             [sources.kafka.options]\n\"session.timeout.ms\" = \"6000\"\n{client}{options}\n",
            broker.address
        ),
    )
    .unwrap();
    path
}

fn purchase(user: &str, id: Option<String>, revenue: u32) -> (String, String) {
    let mut msg = json!({"type": "track", "userId": user, "event": "Order Completed",
        "properties": {"revenue": revenue}});
    if let Some(id) = id {
        msg["messageId"] = json!(id);
    }
    (user.to_owned(), msg.to_string())
}

async fn profile(http: &Http, base: &str, user: &str) -> Value {
    let url = format!("{base}/v1/profiles/user_id:{user}");
    let (_, body) = http.get(&url, Some(ADMIN)).await.unwrap();
    body
}

/// A counter from the server's `/metrics`, 0 when absent.
async fn metric(http: &Http, base: &str, line_start: &str) -> f64 {
    let text = http.get_text(&format!("{base}/metrics")).await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Waits until the server has stored `records` from Kafka and applied them to profiles.
async fn accepted_and_applied(http: &Http, base: &str, records: f64) {
    poll(
        "the records from Kafka",
        Duration::from_millis(100),
        || async { (metric(http, base, ACCEPTED).await == records).then_some(()) },
    )
    .await;
    http.wait_processed(base).await;
}

const ACCEPTED: &str = "persona_kafka_source_records_total{outcome=\"accepted\"}";
const REJECTED: &str = "persona_kafka_source_records_total{outcome=\"rejected\"}";
const CLIENT_ERRORS: &str = "persona_kafka_source_client_errors_total ";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_records_become_profiles_and_bad_ones_become_dead_letters() {
    let broker = Broker::start();
    broker.create_topic("events", 2);
    broker.create_topic("rejects", 1);
    let dir = tempfile::tempdir().unwrap();
    // No offset is committed while the server runs: only the commit at its clean stop.
    let config = config(
        dir.path(),
        &broker,
        "dead_letter_topic = \"rejects\"",
        "\"auto.commit.interval.ms\" = \"600000\"",
    );
    let data = dir.path().join("data");

    // Sent before the server first starts: a new group reads from the oldest record.
    let mut records = vec![
        purchase("ann", Some("ann-1".into()), 30),
        purchase("ann", None, 20),
        purchase("bob", None, 5),
        (
            "dee".into(),
            json!({"type": "identify", "userId": "dee", "traits": {"plan": "pro"}}).to_string(),
        ),
        ("x".into(), "{not json".into()),
        (
            "y".into(),
            json!({"type": "track", "userId": "y"}).to_string(),
        ),
    ];
    // The same message sent twice by its producer: one purchase.
    records.push(purchase("ann", Some("ann-1".into()), 30));
    broker.produce("events", &records);

    let http = Http::default();
    let mut server = Server::start_configured(&data, &config);
    let base = server.url();
    accepted_and_applied(&http, &base, 5.0).await;
    assert_eq!(
        metric(&http, &base, "persona_kafka_source_running ").await,
        1.0
    );
    let ann = profile(&http, &base, "ann").await;
    assert_eq!(
        ann["computed"]["frequency"], 2,
        "the resent purchase counts once"
    );
    assert_eq!(ann["computed"]["monetary"], 50.0);
    let bob = profile(&http, &base, "bob").await;
    assert_eq!(bob["computed"]["frequency"], 1);
    let dee = profile(&http, &base, "dee").await;
    assert_eq!(dee["traits"]["plan"], "pro");
    // Counted once the dead-letter topic has them, which may be after the profiles.
    poll("the two rejects", Duration::from_millis(100), || async {
        (metric(&http, &base, REJECTED).await == 2.0).then_some(())
    })
    .await;

    // Each bad record, whole, with why and where it came from.
    let dead: BTreeMap<String, BTreeMap<String, String>> =
        broker.read("rejects", 2).into_iter().collect();
    let not_json = &dead["{not json"];
    assert!(
        not_json["persona.error"].starts_with("not JSON"),
        "{not_json:?}"
    );
    assert_eq!(not_json["persona.topic"], "events");
    let no_event = &dead[&records[5].1];
    assert_eq!(
        no_event["persona.error"],
        "`event` is required for track calls"
    );
    assert!(no_event["persona.offset"].parse::<i64>().is_ok());

    // A clean stop commits what was stored: after a restart only the new records are read.
    server.stop();
    let stored = common::log_stats(&data)["records"].as_u64().unwrap();
    assert_eq!(
        stored, 5,
        "the valid records, the producer's resend included"
    );
    // One new record on each partition: a record read again would come before it.
    broker.produce_to("events", Some(0), &[purchase("bob", None, 7)]);
    broker.produce_to("events", Some(1), &[purchase("cat", None, 9)]);
    let server = Server::start_configured(&data, &config);
    let base = server.url();
    for (user, purchases) in [("bob", 2), ("cat", 1)] {
        poll("the new purchases", Duration::from_millis(100), || async {
            let p = profile(&http, &base, user).await;
            (p["computed"]["frequency"] == purchases).then_some(())
        })
        .await;
    }
    assert_eq!(
        metric(&http, &base, ACCEPTED).await,
        2.0,
        "nothing read twice"
    );
    assert_eq!(metric(&http, &base, REJECTED).await, 0.0, "nor the rejects");
    drop(server);
    assert_eq!(common::log_stats(&data)["records"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_over_tls_is_read_with_the_brokers_authority() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start_tls(dir.path());
    broker.create_topic("events", 2);
    // Produced over TLS as well: the broker's front takes nothing else.
    broker.produce(
        "events",
        &[
            purchase("tia", None, 10),
            purchase("tia", None, 20),
            purchase("uma", None, 5),
        ],
    );
    let config = config(dir.path(), &broker, "", "");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\"security.protocol\" = \"ssl\""), "{text}");
    let http = Http::default();

    // A server trusting another authority reads nothing, and counts the refusals.
    let other = persona_test_certs::self_signed(dir.path(), "other", "IP:127.0.0.1").cert;
    let (_, right) = broker.tls.as_ref().unwrap();
    let distrusting = dir.path().join("distrusting.toml");
    let text = text.replace(
        &format!("{:?}", right.display().to_string()),
        &format!("{:?}", other.display().to_string()),
    );
    assert!(text.contains("other.pem"), "{text}");
    std::fs::write(&distrusting, text).unwrap();
    let server = Server::start_configured(&dir.path().join("distrusting"), &distrusting);
    let base = server.url();
    poll("refused handshakes", Duration::from_millis(100), || async {
        (metric(&http, &base, CLIENT_ERRORS).await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(metric(&http, &base, ACCEPTED).await, 0.0);
    drop(server);

    let server = Server::start_configured(&dir.path().join("data"), &config);
    let base = server.url();
    accepted_and_applied(&http, &base, 3.0).await;
    let tia = profile(&http, &base, "tia").await;
    assert_eq!(tia["computed"]["frequency"], 2);
    assert_eq!(tia["computed"]["monetary"], 30.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_reads_again_and_counts_each_purchase_once() {
    let broker = Broker::start();
    broker.create_topic("events", 4);
    let dir = tempfile::tempdir().unwrap();
    // No offset is committed while the first server runs: all it read is read again.
    let config = config(
        dir.path(),
        &broker,
        "max_batch = 50",
        "\"auto.commit.interval.ms\" = \"600000\"",
    );
    let data = dir.path().join("data");
    let users: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    // Half the purchases carry the sender's id, half get the one derived from their place
    // in the topic: both must be recognised when read again.
    let batch = |from: u32, to: u32| -> Vec<(String, String)> {
        (from..to)
            .flat_map(|n| {
                users.iter().map(move |u| {
                    let id = (n % 2 == 0).then(|| format!("{u}-{n}"));
                    purchase(u, id, n + 1)
                })
            })
            .collect()
    };
    broker.produce("events", &batch(0, 20));

    let http = Http::default();
    let mut server = Server::start_configured(&data, &config);
    let base = server.url();
    accepted_and_applied(&http, &base, 200.0).await;
    server.kill9();

    broker.produce("events", &batch(20, 30));
    let server = Server::start_configured(&data, &config);
    let base = server.url();
    let expected_revenue: u32 = (1..=30).sum();
    for user in &users {
        let p = poll("every purchase", Duration::from_millis(100), || async {
            let p = profile(&http, &base, user).await;
            (p["computed"]["frequency"] == 30).then_some(p)
        })
        .await;
        assert_eq!(
            p["computed"]["monetary"],
            f64::from(expected_revenue),
            "{user}"
        );
    }
    http.wait_processed(&base).await;
    // Every record was read again (nothing was committed), and none counted twice.
    assert_eq!(metric(&http, &base, ACCEPTED).await, 300.0);
    for user in &users {
        assert_eq!(
            profile(&http, &base, user).await["computed"]["frequency"],
            30
        );
    }
    drop(server);
    assert_eq!(common::log_stats(&data)["records"], 500);
}

#[test]
fn bad_kafka_settings_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("persona.toml");
    let refused = |text: &str| {
        std::fs::write(&config, text).unwrap();
        common::serve_refuses(&data, &config)
    };
    let err = refused("[sources.kafka]\nbrokers = \"127.0.0.1:9\"\n");
    assert!(err.contains("sources.kafka.topics is empty"), "{err}");
    let err = refused(
        "[sources.kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"events\"]\n\
         [sources.kafka.options]\n\"no.such.setting\" = \"1\"\n",
    );
    assert!(
        err.contains("sources.kafka") && err.contains("no.such.setting"),
        "{err}"
    );
    let err = refused(
        "[sources.kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"events\"]\n\
         [sources.kafka.options]\n\"group.id\" = \"other\"\n",
    );
    assert!(err.contains("cannot set \"group.id\""), "{err}");
    let err = refused(
        "[sources.kafka]\nbrokers = \"127.0.0.1:9\"\ntopics = [\"events\"]\n\
         [sources.kafka.options]\n\"security.protocol\" = \"ssl\"\n\
         \"ssl.ca.location\" = \"/nowhere/ca.pem\"\n",
    );
    assert!(err.contains("ssl.ca.location"), "{err}");
}
