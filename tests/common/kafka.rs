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
        let head = format!(
            r#"
[kafka]
brokers = "{brokers}"
group_id = "{}"
idle_clock_after = "1h"
shutdown_deadline = "10s"
[kafka.topics]
inbound = "{}"
commands = "{}"
events = "{}"
outbound = "{}"
dlq = "{}"
[kafka.consumer_options]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
[store]
url = "{store_url}"
"#,
            self.group, self.inbound, self.commands, self.events, self.outbound, self.dlq
        );
        let toml = toml.replace("[pipeline]\nbatch_size = 500\n", "");
        Arc::new(
            Config::from_toml(&format!(
                "{head}\n[pipeline]\nbatch_size = 200\nbatch_max_wait = \"100ms\"\n{toml}"
            ))
            .expect("config"),
        )
    }
}

/// Produces lines to a topic in order, keyed as gateways key them (project:channel:visitor).
pub async fn produce(brokers: &str, topic: &str, lines: &[String]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for chunk in lines.chunks(500) {
        let sends = chunk.iter().map(|line| {
            let key = input_key(line);
            let producer = &producer;
            async move {
                producer
                    .send(FutureRecord::to(topic).key(&key).payload(line), Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| e)
                    .expect("produced")
            }
        });
        futures::future::join_all(sends).await;
    }
}

/// SPEC keys: messages by visitor; commands and anything unreadable by project.
pub fn input_key(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let project = v["project_id"].as_str().unwrap_or("?");
    match (v["channel_id"].as_str(), v["visitor"]["id"].as_str()) {
        (Some(c), Some(visitor)) => format!("{project}:{c}:{visitor}"),
        _ => project.to_string(),
    }
}

/// Reads output topics from the start until `want` records arrived and nothing new came
/// for `quiet`, or `timeout` passed. Records come back in per-topic offset order.
pub fn read_outputs(brokers: &str, topics: &[&str], want: usize, timeout: Duration) -> Vec<Rec> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("reader-{}", super::uuid_like()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader");
    consumer.subscribe(topics).expect("subscribe");
    let started = Instant::now();
    let mut out = Vec::new();
    while started.elapsed() < timeout && out.len() < want {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value");
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let line = serde_json::json!({"topic": m.topic(), "key": key, "value": value}).to_string();
            out.push(Rec { line, topic: m.topic().to_string(), key, value });
        }
    }
    out
}
