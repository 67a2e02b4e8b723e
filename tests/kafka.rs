//! End-to-end through the real broker (tansu) and PostgreSQL: `run` as a consumer group.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use appealflow::testkit;
use common::kafka::{self, Topics};
use common::*;
use tokio::sync::oneshot;

/// Starts `run` in this process; the returned sender stops it.
fn spawn_run(
    config: std::sync::Arc<appealflow::config::Config>,
    store: appealflow::store::Store,
) -> (oneshot::Sender<()>, tokio::task::JoinHandle<appealflow::run::RunStats>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        appealflow::run::run(config, store, shutdown).await.expect("run succeeds")
    });
    (stop, task)
}

/// Topic-independent view of a record: DLQ records point at their source, which differs
/// between a file and a topic.
fn comparable(r: &Rec, topics: &Topics) -> String {
    let topic = match r.topic.as_str() {
        t if t == topics.events || t == "appeal.events" => "events",
        t if t == topics.outbound || t == "outbound.messages" => "outbound",
        _ => "dlq",
    };
    let mut v = r.value.clone();
    if topic == "dlq" {
        let o = v.as_object_mut().unwrap();
        o.remove("source");
        o.remove("dlq_id");
        return format!("{topic} {v}"); // keyed by the input's record key or file position
    }
    format!("{topic} {} {v}", r.key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_partition_topic_yields_the_records_replay_prints_for_the_same_file() {
    let Some(brokers) = kafka::brokers() else { return };
    let lines = testkit::generate(150, 11).lines;
    let expected = replay_lines(&config(testkit::CONFIG), &TestDb::new(Kind::Sqlite).await, &lines).await;

    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    kafka::produce(&brokers, &topics.inbound, &lines).await;
    let db = TestDb::new(kinds().into_iter().last().unwrap()).await;
    let config = topics.config(&brokers, &db.url, testkit::CONFIG);
    let (stop, task) = spawn_run(config, db.store().await);
    let got = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        let outputs: Vec<String> = topics.outputs().iter().map(|s| s.to_string()).collect();
        let want = expected.records.len();
        move || {
            kafka::read_outputs(
                &brokers,
                &outputs.iter().map(String::as_str).collect::<Vec<_>>(),
                want,
                Duration::from_secs(90),
            )
        }
    })
    .await
    .unwrap();
    let _ = stop.send(());
    let stats = task.await.unwrap();
    assert_eq!(stats.stats.inputs as usize, lines.len());

    // Each output topic has one partition, so per-topic order must equal replay's.
    let by_topic = |records: &[Rec]| {
        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in records {
            let c = comparable(r, &topics);
            m.entry(c.split(' ').next().unwrap().to_string()).or_default().push(c);
        }
        m
    };
    let (got, want) = (by_topic(&got), by_topic(&expected.records));
    for topic in ["events", "outbound", "dlq"] {
        let none = Vec::new();
        assert_same(got.get(topic).unwrap_or(&none), want.get(topic).unwrap_or(&none), topic);
    }
}
