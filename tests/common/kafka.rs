//! Kafka helpers for end-to-end tests against the real broker of the test env (tansu):
//! random topic and group names, an independent producer and a reader of output topics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::config::Config;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

use super::Rec;

/// The broker of the test env, or `None` (outside CI) when it is not running.
pub fn brokers() -> Option<String> {
    match std::env::var("APPEALFLOW_TEST_KAFKA") {
        Ok(b) => Some(b),
        Err(_) if std::env::var("CI").is_ok() => {
            panic!("CI must run the Kafka tests: APPEALFLOW_TEST_KAFKA is not set")
        }
        Err(_) => {
            eprintln!("APPEALFLOW_TEST_KAFKA is not set: skipping (scripts/test.sh sets it)");
            None
        }
    }
}

/// Fresh topic names for one test.
#[derive(Clone)]
pub struct Topics {
    pub inbound: String,
    pub commands: String,
    pub events: String,
    pub outbound: String,
    pub dlq: String,
    pub group: String,
}

impl Topics {
    pub fn random() -> Topics {
        let tag = format!("{}-{}", std::process::id(), super::uuid_like());
        Topics {
            inbound: format!("in-{tag}"),
            commands: format!("cmd-{tag}"),
            events: format!("ev-{tag}"),
            outbound: format!("out-{tag}"),
            dlq: format!("dlq-{tag}"),
            group: format!("g-{tag}"),
        }
    }

    pub fn outputs(&self) -> [&str; 3] {
        [&self.events, &self.outbound, &self.dlq]
    }

    /// Creates the topics: the inbound one with `partitions`, the rest with one.
    pub async fn create(&self, brokers: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
        let mut topics = vec![NewTopic::new(&self.inbound, partitions, TopicReplication::Fixed(1))];
        for name in [&self.commands, &self.events, &self.outbound, &self.dlq] {
            topics.push(NewTopic::new(name, 1, TopicReplication::Fixed(1)));
        }
        for result in admin.create_topics(&topics, &AdminOptions::new()).await.expect("create topics") {
            result.expect("topic created");
        }
    }

    /// A config for `run` on these topics, `toml` giving the projects.
    pub fn config(&self, brokers: &str, store_url: &str, toml: &str) -> Arc<Config> {
        Arc::new(Config::from_toml(&self.config_toml(brokers, store_url, toml)).expect("config"))
    }

    /// The TOML text of [`Topics::config`], for a `run` process.
    pub fn config_toml(&self, brokers: &str, store_url: &str, toml: &str) -> String {
        let head = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{}"
idle_clock_after = "1h"
shutdown_deadline = "5s"
[kafka.topics]
inbound = "{}"
commands = "{}"
events = "{}"
outbound = "{}"
dlq = "{}"
[kafka.consumer_options]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
# A member killed mid-rebalance is waited for up to this long (the rebalance timeout).
"max.poll.interval.ms" = "15000"
[store]
url = "{store_url}"
[ops]
listen = "127.0.0.1:0"
"#,
            self.group, self.inbound, self.commands, self.events, self.outbound, self.dlq
        );
        let toml = toml.replace("[pipeline]\nbatch_size = 500\n", "");
        format!("{head}\n[pipeline]\nbatch_size = 200\nbatch_max_wait = \"100ms\"\n{toml}")
    }
}

/// Produces lines to a topic in order with their record keys.
pub async fn produce(brokers: &str, topic: &str, lines: &[String], keys: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let keyed: Vec<(&String, &String)> = lines.iter().zip(keys).collect();
    for chunk in keyed.chunks(500) {
        let sends = chunk.iter().map(|(line, key)| {
            let producer = &producer;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(key.as_str()).payload(line.as_str()),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produced")
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// Reads output topics from the start up to the high watermark every partition had when the
/// read began: everything the broker acknowledged by then, however slowly it serves it (a
/// read that stops at a quiet spell can miss records a loaded broker was slow to hand out,
/// and a "nothing lost" test must not fail for that). A fetch error fails the read.
pub fn read_all(brokers: &str, topics: &[String], timeout: Duration) -> Vec<Rec> {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let consumer = reader(brokers, &names);
    let mut remaining: std::collections::BTreeMap<(String, i32), i64> = std::collections::BTreeMap::new();
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).expect("metadata");
    for topic in metadata.topics().iter().filter(|t| names.contains(&t.name())) {
        for p in topic.partitions() {
            let (_, high) =
                consumer.fetch_watermarks(topic.name(), p.id(), Duration::from_secs(10)).expect("watermarks");
            if high > 0 {
                remaining.insert((topic.name().to_string(), p.id()), high);
            }
        }
    }
    let started = Instant::now();
    let mut out = Vec::new();
    while !remaining.is_empty() {
        assert!(
            started.elapsed() < timeout,
            "read {} records in {timeout:?} but not up to the high watermarks (still to read: {remaining:?})",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let tp = (m.topic().to_string(), m.partition());
                if remaining.get(&tp).is_some_and(|high| m.offset() + 1 >= *high) {
                    remaining.remove(&tp);
                }
                out.push(rec(&m));
            }
            Some(Err(e)) => panic!("reading the output topics failed: {e}"),
            None => {}
        }
    }
    out
}

/// Waits until the store has applied `inputs` inputs (sum of next offsets over the inbound
/// topic's partitions) and published everything (empty outbox).
pub async fn wait_until_applied(url: &str, inbound: &str, inputs: i64, timeout: Duration) {
    use sqlx::Row;
    let pool = sqlx::PgPool::connect(url).await.expect("connect");
    let started = Instant::now();
    loop {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(next_offset), 0)::BIGINT, (SELECT COUNT(*) FROM outbox_batches) FROM partitions WHERE partition_key LIKE $1",
        )
        .bind(format!("{inbound}:%"))
        .fetch_one(&pool)
        .await
        .expect("progress query");
        let (applied, pending): (i64, i64) = (row.get(0), row.get(1));
        if applied >= inputs && pending == 0 {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "only {applied} of {inputs} inputs applied ({pending} outbox batches) after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reader(brokers: &str, topics: &[&str]) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", super::uuid_like()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(topics).expect("subscribe");
    consumer
}

fn rec(m: &rdkafka::message::BorrowedMessage<'_>) -> Rec {
    let value: serde_json::Value =
        serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value");
    let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
    let line = serde_json::json!({"topic": m.topic(), "key": key, "value": value}).to_string();
    Rec { line, topic: m.topic().to_string(), key, value }
}

/// [`read_all`] of a test's output topics, off the async runtime.
pub async fn read_all_async(brokers: &str, topics: &Topics) -> Vec<Rec> {
    let brokers = brokers.to_string();
    let outputs: Vec<String> = topics.outputs().iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || read_all(&brokers, &outputs, Duration::from_secs(120))).await.unwrap()
}
