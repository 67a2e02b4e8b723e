//! End-to-end through the real broker (tansu) and PostgreSQL: `run` as a consumer group.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use appealflow::config::Config;
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
    let workload = testkit::generate(150, 11);
    let lines = workload.lines.clone();
    let expected = replay_lines(&config(testkit::CONFIG), &TestDb::new(Kind::Sqlite).await, &lines).await;

    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    kafka::produce(&brokers, &topics.inbound, &lines, &workload.keys).await;
    let db = TestDb::new(kinds().into_iter().last().unwrap()).await;
    let config = topics.config(&brokers, &db.url, testkit::CONFIG);
    let started = std::time::Instant::now();
    let (stop, task) = spawn_run(config, db.store().await);
    kafka::wait_until_applied(&db.url, &topics.inbound, lines.len() as i64, Duration::from_secs(120)).await;
    let applied = std::time::Instant::now();
    let _ = stop.send(());
    let got = kafka::read_all_async(&brokers, &topics).await;
    let stats = task.await.unwrap();
    assert_eq!(stats.stats.inputs as usize, lines.len());
    // The bench measures throughput from here; it must fall between start and the last apply.
    let first = stats.first_input.expect("the first input's arrival is recorded");
    assert!(started < first && first < applied);

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_four_partitions_end_with_the_cards_and_appeals_the_oracle_expects() {
    let Some(brokers) = kafka::brokers() else { return };
    let workload = testkit::generate_with(400, 23, false);
    let topics = Topics::random();
    topics.create(&brokers, 4).await;
    kafka::produce(&brokers, &topics.inbound, &workload.lines, &workload.keys).await;
    let db = TestDb::new(kinds().into_iter().last().unwrap()).await;
    let config = topics.config(&brokers, &db.url, testkit::CONFIG);
    let (stop_a, a) = spawn_run(config.clone(), db.store().await);
    let (stop_b, b) = spawn_run(config, db.store().await);
    let e = workload.expected.clone();
    let want_opened = e.appeals_opened as usize;
    kafka::wait_until_applied(
        &db.url,
        &topics.inbound,
        workload.lines.len() as i64,
        Duration::from_secs(180),
    )
    .await;
    let _ = (stop_a.send(()), stop_b.send(()));
    let got = kafka::read_all_async(&brokers, &topics).await;
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert!(
        a.stats.inputs > 0 && b.stats.inputs > 0,
        "both instances took partitions: {} and {}",
        a.stats.inputs,
        b.stats.inputs
    );
    assert_eq!(a.stats.inputs + b.stats.inputs, workload.lines.len() as u64, "every input applied once");
    let run =
        Run { records: canonical(dedupe(got), &topics), summary: Default::default(), stdout: String::new() };
    assert_eq!(run.events("appeal.opened").len(), want_opened);
    let mut numbers: Vec<i64> =
        run.events("appeal.opened").iter().map(|o| o["appeal"]["number"].as_i64().unwrap()).collect();
    numbers.sort();
    assert_eq!(
        numbers,
        (1..=want_opened as i64).collect::<Vec<_>>(),
        "numbers unique and gapless per project"
    );
    assert_eq!(run.topic("inbound.dlq").len() as u64, e.dlq);
    assert_same_groups(&visitor_components(&run), &e.components);
}

/// Renames the test's random topics to the default names the harness filters on.
fn canonical(records: Vec<Rec>, topics: &Topics) -> Vec<Rec> {
    records
        .into_iter()
        .map(|mut r| {
            r.topic = match r.topic.as_str() {
                t if t == topics.events => "appeal.events".into(),
                t if t == topics.outbound => "outbound.messages".into(),
                _ => "inbound.dlq".into(),
            };
            r
        })
        .collect()
}

/// Keeps the first record of each id (a republished batch repeats ids).
fn dedupe(records: Vec<Rec>) -> Vec<Rec> {
    let mut seen = std::collections::HashSet::new();
    records
        .into_iter()
        .filter(|r| {
            let id = ["event_id", "outbound_id", "dlq_id"]
                .iter()
                .find_map(|k| r.value[k].as_str())
                .unwrap_or_default()
                .to_string();
            seen.insert(id)
        })
        .collect()
}

/// A `run` process of the real binary.
/// Waits until process `pid` has a SIGTERM handler (Linux: the `SigCgt` mask of its status).
fn wait_until_catching_sigterm(pid: u32) {
    const SIGTERM_BIT: u64 = 1 << (15 - 1);
    let started = std::time::Instant::now();
    loop {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .is_some_and(|mask| mask & SIGTERM_BIT != 0);
        if caught {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "run never installed its SIGTERM handler");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_process(config: &std::path::Path) -> Instance {
    std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "appealflow=warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .map(Instance)
        .expect("start appealflow run")
}

/// A `run` process that is killed when the test ends, so a failing assertion does not leave
/// it running (holding the test's pipes open and consuming the broker's groups).
struct Instance(std::process::Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_and_applies_nothing_twice() {
    use rand::Rng;
    let Some(brokers) = kafka::brokers() else { return };
    let workload = testkit::generate(400, 99);
    let expected =
        replay_lines(&config(testkit::CONFIG), &TestDb::new(Kind::Sqlite).await, &workload.lines).await;
    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    let db = TestDb::new(kinds().into_iter().last().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    // Each instance joins a group of its own. Resuming never depends on the group: offsets
    // come from the database (a new group has no committed offset at all, so this proves it).
    // In one group, tansu 0.6 sometimes never assigns the partitions again once a member was
    // killed in the middle of joining (seen 2 runs in 4, the last instance idle for 180 s),
    // and until it evicts a dead member (the session timeout, 6 s) a new instance sits idle,
    // so most kills would land before any batch instead of at random moments in processing.
    let configs: Vec<std::path::PathBuf> = (0..5)
        .map(|instance| {
            let path = dir.path().join(format!("run-{instance}.toml"));
            let own = Topics { group: format!("{}-{instance}", topics.group), ..topics.clone() };
            std::fs::write(&path, own.config_toml(&brokers, &db.url, testkit::CONFIG)).unwrap();
            path
        })
        .collect();

    // Inputs arrive while the service is being killed: half before, half during the kills.
    let half = workload.lines.len() / 2;
    kafka::produce(&brokers, &topics.inbound, &workload.lines[..half], &workload.keys[..half]).await;
    for (round, config) in configs[..4].iter().enumerate() {
        let mut child = spawn_process(config);
        let ms = rand::thread_rng().gen_range(1_500..4_500);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
        if round == 1 {
            kafka::produce(&brokers, &topics.inbound, &workload.lines[half..], &workload.keys[half..]).await;
        }
    }
    let mut child = spawn_process(&configs[4]);
    kafka::wait_until_applied(
        &db.url,
        &topics.inbound,
        workload.lines.len() as i64,
        Duration::from_secs(180),
    )
    .await;
    // All inputs may have been applied by the killed instances already, so the wait above
    // can return while this one is still starting: a SIGTERM before its handler is installed
    // would kill it by default action. Wait until it catches the signal.
    wait_until_catching_sigterm(child.0.id());
    std::process::Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(child.0.wait().unwrap().success(), "SIGTERM ends run cleanly");

    let got = canonical(kafka::read_all_async(&brokers, &topics).await, &topics);
    let got = dedupe(got);
    for topic in ["appeal.events", "outbound.messages"] {
        let lines = |records: &[Rec]| {
            records.iter().filter(|r| r.topic == topic).map(|r| r.value.to_string()).collect::<Vec<_>>()
        };
        assert_nothing_lost(&got, &expected.records, topic);
        assert_same(&lines(&got), &lines(&expected.records), topic);
    }
    let dlq = |records: &[Rec]| records.iter().filter(|r| r.topic == "inbound.dlq").count();
    assert_eq!(dlq(&got), dlq(&expected.records));
}

/// Produces one line to one partition of a topic.
async fn produce_to(brokers: &str, topic: &str, partition: i32, line: &str) {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().expect("producer");
    let record = FutureRecord::to(topic).partition(partition).key("k").payload(line);
    producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("produced");
}

/// The next offset the store holds for one partition of the inbound topic (0 before any).
async fn stored_offset(pool: &sqlx::PgPool, partition_key: &str) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT next_offset FROM partitions WHERE partition_key = $1")
        .bind(partition_key)
        .fetch_optional(pool)
        .await
        .expect("read partition")
        .flatten()
        .unwrap_or(0)
}

/// Polls `check` every 100 ms until it holds or `what` times out after a minute.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Takes project acme's lock on a connection of its own, as another instance busy with acme
/// for as long as it likes would.
async fn lock_acme(pool: &sqlx::PgPool) -> sqlx::pool::PoolConnection<sqlx::Postgres> {
    let mut other_instance = pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock(hashtext('appealflow:acme'))")
        .execute(&mut *other_instance)
        .await
        .expect("lock acme");
    other_instance
}

async fn unlock_acme(mut other_instance: sqlx::pool::PoolConnection<sqlx::Postgres>) {
    sqlx::query("SELECT pg_advisory_unlock(hashtext('appealflow:acme'))")
        .execute(&mut *other_instance)
        .await
        .expect("unlock acme");
}

/// Sessions of this database waiting for an advisory lock.
async fn lock_waiters(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(pool)
    .await
    .expect("read locks")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_waiting_for_its_lock_does_not_hold_up_another_projects_partition() {
    let Some(brokers) = kafka::brokers() else { return };
    if !kinds().contains(&Kind::Postgres) {
        return; // the per-project lock exists on PostgreSQL only
    }
    let topics = Topics::random();
    topics.create(&brokers, 2).await;
    let db = TestDb::new(Kind::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    // Stands for another instance busy with project acme for as long as it likes.
    let other_instance = lock_acme(&pool).await;

    let acme = msg("a-1", "acme-tg", "2026-11-20T10:00:00Z", r#"{"id":"t1"}"#, "hello");
    let globex = msg_in("globex", "g-1", "globex-tg", "2026-11-20T10:00:00Z", r#"{"id":"t2"}"#, "hi");
    produce_to(&brokers, &topics.inbound, 0, &acme).await;
    let (stop, task) = spawn_run(topics.config(&brokers, &db.url, BASE), db.store().await);
    eventually("acme's batch waits for acme's lock", || async { lock_waiters(&pool).await > 0 }).await;

    produce_to(&brokers, &topics.inbound, 1, &globex).await;
    let (p0, p1) = (format!("{}:0", topics.inbound), format!("{}:1", topics.inbound));
    eventually("globex's input is applied", || async { stored_offset(&pool, &p1).await == 1 }).await;
    assert_eq!(stored_offset(&pool, &p0).await, 0, "acme's batch is still waiting for its lock");

    unlock_acme(other_instance).await;
    kafka::wait_until_applied(&db.url, &topics.inbound, 2, Duration::from_secs(60)).await;
    let _ = stop.send(());
    let stats = task.await.unwrap();
    assert_eq!(stats.stats.inputs, 2);
    assert_eq!(stats.stats.event("appeal.opened"), 2, "each project opened its appeal once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_a_project_whose_lock_is_busy_wait_and_then_go_as_one_batch() {
    let Some(brokers) = kafka::brokers() else { return };
    if !kinds().contains(&Kind::Postgres) {
        return; // the per-project lock exists on PostgreSQL only
    }
    let topics = Topics::random();
    topics.create(&brokers, 3).await;
    let db = TestDb::new(Kind::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let other_instance = lock_acme(&pool).await;
    let line = |id: &str, visitor: &str| msg(id, "acme-tg", "2026-11-20T10:00:00Z", visitor, "hello");
    produce_to(&brokers, &topics.inbound, 0, &line("a-0", r#"{"id":"t0"}"#)).await;
    let (stop, task) = spawn_run(topics.config(&brokers, &db.url, BASE), db.store().await);
    eventually("the first batch waits for acme's lock", || async { lock_waiters(&pool).await > 0 }).await;

    produce_to(&brokers, &topics.inbound, 1, &line("a-1", r#"{"id":"t1"}"#)).await;
    produce_to(&brokers, &topics.inbound, 2, &line("a-2", r#"{"id":"t2"}"#)).await;
    // Time for the consumer to buffer both (it fetches every few milliseconds here).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lock_waiters(&pool).await, 1, "no second batch of acme queues on the lock");

    unlock_acme(other_instance).await;
    kafka::wait_until_applied(&db.url, &topics.inbound, 3, Duration::from_secs(60)).await;
    let _ = stop.send(());
    let stats = task.await.unwrap();
    assert_eq!(stats.stats.inputs, 3);
    assert_eq!(stats.batches, 2, "the two partitions that waited went as one batch");
    for p in 0..3 {
        assert_eq!(stored_offset(&pool, &format!("{}:{p}", topics.inbound)).await, 1, "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_quiet_topic_each_input_is_applied_at_once_not_after_batch_max_wait() {
    let Some(brokers) = kafka::brokers() else { return };
    if !kinds().contains(&Kind::Postgres) {
        return;
    }
    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    let db = TestDb::new(Kind::Postgres).await;
    // A partial batch may wait a minute for more input; nothing else is waiting, so none does.
    let toml = topics
        .config_toml(&brokers, &db.url, BASE)
        .replace("batch_max_wait = \"100ms\"", "batch_max_wait = \"60s\"");
    let config = std::sync::Arc::new(Config::from_toml(&toml).expect("config"));
    let (stop, task) = spawn_run(config, db.store().await);
    for (i, at) in ["2026-11-20T10:00:00Z", "2026-11-20T10:00:05Z"].into_iter().enumerate() {
        let line = msg(&format!("q-{i}"), "acme-tg", at, r#"{"id":"quiet"}"#, "hello?");
        produce_to(&brokers, &topics.inbound, 0, &line).await;
        // The first wait includes joining the group (a few seconds against tansu).
        kafka::wait_until_applied(&db.url, &topics.inbound, i as i64 + 1, Duration::from_secs(30)).await;
    }
    let _ = stop.send(());
    let stats = task.await.unwrap();
    assert_eq!(stats.batches, 2, "each input was a batch of its own");
    assert_eq!(stats.stats.inputs, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_whose_batches_wait_stops_fetching_at_its_buffer_bound_and_resumes_without_loss() {
    let Some(brokers) = kafka::brokers() else { return };
    if !kinds().contains(&Kind::Postgres) {
        return; // the per-project lock that stalls the batches exists on PostgreSQL only
    }
    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    let db = TestDb::new(Kind::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    // Another instance holding project acme: every batch of ours waits, as in a slow database.
    let other_instance = lock_acme(&pool).await;
    let lines: Vec<String> = (0..60)
        .map(|i| {
            msg(&format!("m-{i}"), "acme-tg", "2026-11-20T10:00:00Z", &format!(r#"{{"id":"v{i}"}}"#), "hi")
        })
        .collect();
    let keys = vec!["acme".to_string(); lines.len()];
    kafka::produce(&brokers, &topics.inbound, &lines, &keys).await;

    // Batches of 5, at most 2 batches' worth (10 inputs) held before fetching pauses.
    let toml = topics
        .config_toml(&brokers, &db.url, BASE)
        .replace("batch_size = 200", "batch_size = 5\nbuffered_batches = 2");
    let config = std::sync::Arc::new(appealflow::config::Config::from_toml(&toml).expect("config"));
    let (stop, task) = spawn_run(config, db.store().await);
    eventually("the first batch waits for acme's lock", || async { lock_waiters(&pool).await > 0 }).await;
    // Unbounded, the loop would read all 60 inputs in this time.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = appealflow::telemetry::recorder().render();
    let labels = format!(r#"{{topic="{}",partition="0"}}"#, topics.inbound);
    assert!(metrics.contains(&format!("appealflow_partition_paused{labels} 1")), "{metrics}");
    assert!(metrics.contains(&format!("appealflow_buffered_inputs{labels} 10")), "{metrics}");

    unlock_acme(other_instance).await;
    kafka::wait_until_applied(&db.url, &topics.inbound, 60, Duration::from_secs(60)).await;
    let _ = stop.send(());
    let stats = task.await.unwrap();
    assert!(stats.pauses >= 1, "fetching paused at least once");
    assert!(stats.peak_buffered <= 10, "held at most two batches: {}", stats.peak_buffered);
    assert_eq!(stats.stats.inputs, 60, "every input handed out once after the resumes");
    assert_eq!(stats.stats.duplicates, 0);
    assert_eq!(stats.stats.event("appeal.opened"), 60);
}

/// Says which way records went wrong, before comparing their order: missing from the broker
/// (read up to its high watermarks, with every input applied and the outbox empty, so lost
/// between the commit and the broker), or present without a replay producing them.
fn assert_nothing_lost(got: &[Rec], expected: &[Rec], topic: &str) {
    let id = |r: &Rec| {
        ["event_id", "outbound_id"].iter().find_map(|k| r.value[k].as_str()).unwrap_or_default().to_string()
    };
    let ids = |records: &[Rec]| -> std::collections::BTreeMap<String, String> {
        records
            .iter()
            .filter(|r| r.topic == topic)
            .map(|r| (id(r), r.value["cause"]["id"].as_str().unwrap_or_default().to_string()))
            .collect()
    };
    let (have, want) = (ids(got), ids(expected));
    let missing: std::collections::BTreeSet<&String> =
        want.iter().filter(|(i, _)| !have.contains_key(*i)).map(|(_, cause)| cause).collect();
    assert!(
        missing.is_empty(),
        "{topic}: records of inputs {missing:?} are missing from the broker, read up to its high \
         watermarks, though the store applied every input and its outbox is empty: lost between \
         the commit and the broker"
    );
    let extra: std::collections::BTreeSet<&String> =
        have.iter().filter(|(i, _)| !want.contains_key(*i)).map(|(_, cause)| cause).collect();
    assert!(
        extra.is_empty(),
        "{topic}: records of inputs {extra:?} that a replay does not produce (applied twice?)"
    );
}

/// Inputs built to hurt: DLQ records that would outgrow the broker's limit if they carried
/// the input whole, NUL characters, repeated keys, ids over their bounds, dates in 2036.
fn poison() -> Vec<String> {
    let msg = |id: &str, visitor: &str, text: &str| {
        format!(
            r#"{{"type":"message","message_id":"{id}","project_id":"acme","channel_id":"acme-tg","sent_at":"2026-11-05T10:00:00Z","visitor":{visitor},"content":{{"kind":"text","text":"{text}"}}}}"#
        )
    };
    vec![
        "\u{1}".repeat(200_000),
        msg("p-long-text", r#"{"id":"p1"}"#, &"\\u0001".repeat(70_000)),
        msg("p-nul\\u0000", r#"{"id":"p2"}"#, "nul"),
        msg("p-dup", r#"{"id":"p3","id":"p4"}"#, "duplicate key"),
        msg("p-long-id", &format!(r#"{{"id":"{}"}}"#, "v".repeat(3_000)), "long visitor id"),
        msg("p-2036", r#"{"id":"p5"}"#, "from the future").replace("2026-11-05", "2036-11-05"),
        format!(
            "{{\"type\":\"message\",\"message_id\":\"p-deep\",\"x\":{}1{}}}",
            "[".repeat(40),
            "]".repeat(40)
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_twenty_times_amid_poison_run_ends_with_replays_records_and_a_bounded_dlq() {
    use rand::{Rng, SeedableRng};
    let Some(brokers) = kafka::brokers() else { return };
    let mut rng = rand::rngs::StdRng::seed_from_u64(20);
    let workload = testkit::generate(250, 77);
    let (mut lines, mut keys) = (workload.lines.clone(), workload.keys.clone());
    for (i, p) in poison().into_iter().enumerate() {
        let at = rng.gen_range(0..lines.len());
        lines.insert(at, p);
        keys.insert(at, format!("acme:poison:{i}"));
    }
    let toml = format!("[pipeline]\ndlq_max_bytes = 65536\n{}", testkit::CONFIG.replace("[pipeline]\n", ""));
    let expected = replay_lines(&config(&toml), &TestDb::new(Kind::Sqlite).await, &lines).await;
    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    let db = TestDb::new(kinds().into_iter().last().unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let config_for = |instance: usize| {
        let path = dir.path().join(format!("run-{instance}.toml"));
        let own = Topics { group: format!("{}-{instance}", topics.group), ..topics.clone() };
        let text = own.config_toml(&brokers, &db.url, testkit::CONFIG).replace(
            "[pipeline]\nbatch_size = 200\n",
            "[pipeline]\nbatch_size = 50\ndlq_max_bytes = 65536\n",
        );
        Config::from_toml(&text).expect("the run config is valid");
        std::fs::write(&path, text).unwrap();
        path
    };
    let portions = 5;
    let per = lines.len().div_ceil(portions);
    for kill in 0..20 {
        if kill % 4 == 0 && kill / 4 < portions {
            let from = kill / 4 * per;
            let to = (from + per).min(lines.len());
            kafka::produce(&brokers, &topics.inbound, &lines[from..to], &keys[from..to]).await;
        }
        let mut child = spawn_process(&config_for(kill));
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2_500))).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().unwrap();
    }
    let mut last = spawn_process(&config_for(20));
    kafka::wait_until_applied(&db.url, &topics.inbound, lines.len() as i64, Duration::from_secs(240)).await;
    wait_until_catching_sigterm(last.0.id());
    std::process::Command::new("kill").args(["-TERM", &last.0.id().to_string()]).status().unwrap();
    assert!(last.0.wait().unwrap().success(), "SIGTERM ends run cleanly");

    let got = dedupe(canonical(kafka::read_all_async(&brokers, &topics).await, &topics));
    for topic in ["appeal.events", "outbound.messages"] {
        let values = |records: &[Rec]| {
            records.iter().filter(|r| r.topic == topic).map(|r| r.value.to_string()).collect::<Vec<_>>()
        };
        assert_nothing_lost(&got, &expected.records, topic);
        assert_same(&values(&got), &values(&expected.records), topic);
    }
    // A future date's reason names the wall clock of the run that refused it.
    let dlq = |records: &[Rec]| -> Vec<String> {
        let reason = |r: &Rec| {
            r.value["reason"].as_str().unwrap().split(" after the wall clock").next().unwrap().to_string()
        };
        records.iter().filter(|r| r.topic == "inbound.dlq").map(reason).collect()
    };
    assert_eq!(dlq(&got), dlq(&expected.records), "the same inputs dead-lettered for the same reasons");
    assert_eq!(dlq(&got).len() as u64, workload.expected.dlq + poison().len() as u64);
    for record in got.iter().filter(|r| r.topic == "inbound.dlq") {
        assert!(record.value.to_string().len() <= 65_536, "a DLQ record within dlq_max_bytes");
    }
}
