//! PostgreSQL and the broker restarting under a running `run`: nothing lost, nothing
//! repeated, nothing dead-lettered for it. One test in its own binary: restarting shared
//! servers must not disturb other tests.

mod common;

use std::process::Command;
use std::time::Duration;

use appealflow::testkit;
use common::kafka::{self, Topics};
use common::*;

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Stops or starts the local PostgreSQL cluster the test env uses.
fn postgres(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a local PostgreSQL cluster")
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let status = Command::new("pg_ctlcluster")
        .args(["--skip-systemctl-redirect", version.to_str().unwrap(), "main", action])
        .status()
        .expect("pg_ctlcluster");
    assert!(status.success(), "PostgreSQL {action}");
}

fn retries(what: &str) -> u64 {
    let text = appealflow::telemetry::recorder().render();
    let prefix = format!("appealflow_retries_total{{what=\"{what}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Stops the test broker and starts it again on the same data.
fn restart_broker() {
    let script = repo().join("scripts/test-env.sh");
    assert!(Command::new("bash").arg(&script).arg("stop").status().unwrap().success());
    std::thread::sleep(Duration::from_secs(2));
    let start = Command::new("bash").arg(&script).env("APPEALFLOW_TANSU_KEEP_STATE", "1").output().unwrap();
    assert!(start.status.success(), "broker restarted: {}", String::from_utf8_lossy(&start.stderr));
}

fn local_postgres() -> bool {
    std::env::var("APPEALFLOW_TEST_PG_URL").is_ok_and(|u| u.contains("127.0.0.1:5432"))
        && std::path::Path::new("/etc/postgresql").exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_and_broker_restarts_during_a_run_lose_and_repeat_nothing() {
    let Some(brokers) = kafka::brokers() else { return };
    if !local_postgres() {
        eprintln!("not the test env's local PostgreSQL: skipping restarts");
        return;
    }
    let workload = testkit::generate(300, 31);
    let expected =
        replay_lines(&config(testkit::CONFIG), &TestDb::new(Kind::Sqlite).await, &workload.lines).await;
    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    let db = TestDb::new(Kind::Postgres).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(appealflow::run::run(
        topics.config(&brokers, &db.url, testkit::CONFIG),
        db.store().await,
        async move {
            let _ = stopped.await;
        },
    ));
    let thirds = [0, workload.lines.len() / 3, 2 * workload.lines.len() / 3, workload.lines.len()];
    let part =
        |i: usize| (&workload.lines[thirds[i]..thirds[i + 1]], &workload.keys[thirds[i]..thirds[i + 1]]);

    let (lines, keys) = part(0);
    kafka::produce(&brokers, &topics.inbound, lines, keys).await;
    kafka::wait_until_applied(&db.url, &topics.inbound, thirds[1] as i64, Duration::from_secs(120)).await;
    // The database goes down with inputs arriving: they must wait, not fail or skip.
    tokio::task::spawn_blocking(|| postgres("stop")).await.unwrap();
    let (lines, keys) = part(1);
    kafka::produce(&brokers, &topics.inbound, lines, keys).await;
    // Longer than the pool's 10 s acquire timeout, so the run's own backoff takes over.
    tokio::time::sleep(Duration::from_secs(14)).await;
    tokio::task::spawn_blocking(|| postgres("start")).await.unwrap();
    kafka::wait_until_applied(&db.url, &topics.inbound, thirds[2] as i64, Duration::from_secs(120)).await;
    tokio::task::spawn_blocking(restart_broker).await.unwrap();
    let (lines, keys) = part(2);
    kafka::produce(&brokers, &topics.inbound, lines, keys).await;
    kafka::wait_until_applied(&db.url, &topics.inbound, thirds[3] as i64, Duration::from_secs(180)).await;
    let _ = stop.send(());
    let stats = run.await.unwrap().expect("run ends cleanly");
    assert_eq!(
        stats.stats.dlq, expected.summary.stats.dlq,
        "no input dead-lettered because a server was down"
    );
    assert!(retries("store") > 0, "the run retried while PostgreSQL was down");

    let got = kafka::read_all_async(&brokers, &topics).await;
    let mut seen = std::collections::HashSet::new();
    let values =
        |records: &[Rec], topic: &str, seen: &mut std::collections::HashSet<String>| -> Vec<String> {
            records
                .iter()
                .filter(|r| r.topic == topic)
                .filter(|r| seen.insert(r.value.to_string()))
                .map(|r| r.value.to_string())
                .collect()
        };
    let want_events = values(&expected.records, "appeal.events", &mut std::collections::HashSet::new());
    assert_same(&values(&got, &topics.events, &mut seen), &want_events, "events after dedupe");
}
