//! `cargo bench --bench kafka`: the production path (broker + PostgreSQL) against a
//! passthrough baseline on the same broker in the same run.
//!
//! Passthrough consumes the input topic and produces every record unchanged to another topic
//! (idempotent producer, acks=all, offsets committed after the acknowledgements): what any
//! consume-produce service pays. `run` does the same plus the whole pipeline and its database
//! transaction. The ratio is the figure that matters; the two run in alternating rounds, each
//! `run` under a group and on a database of its own. `run` writes several records per input,
//! so a last line repeats the passthrough writing as many records as `run` did: about what a
//! pipeline costing nothing would reach on this broker, the ceiling for `run`'s ratio. The
//! line before it replays the same inputs through the pipeline and PostgreSQL with no broker
//! at all: the pipeline's share. Both clocks start at the first input consumed (the group
//! join is not counted), and under each line the CPU time per input of this process, the
//! broker and PostgreSQL shows where a phase's work went (Linux `/proc`).
//!
//! Needs a broker and PostgreSQL: `BENCH_KAFKA` (or `APPEALFLOW_TEST_KAFKA`) and `BENCH_PG_URL`
//! (or `APPEALFLOW_TEST_PG_URL`); `scripts/test-env.sh` provides both. `BENCH_INPUTS` sets the
//! size (default 20000), `BENCH_BATCH_SIZE` the pipeline's batch size (default: appealflow's),
//! `BENCH_BATCH_MAX_WAIT` its `batch_max_wait` (`50ms`; default: appealflow's),
//! `BENCH_PRODUCER` extra librdkafka producer options for `run` (`compression.type=lz4`),
//! `BENCH_CONSUMER` consumer options for `run` and the passthroughs (`fetch.wait.max.ms=20`),
//! `BENCH_WORKLOAD` the traffic: `conversations` (default: visits of up to a dozen messages,
//! as steady support traffic is) or `stress` (short visits, a new card every other input,
//! many merges: 3.7 records written per input against 2.0); see `testkit::Shape`.
//! Two latency phases offer the same inputs to a fresh `run` at a fixed rate and print the
//! end-to-end latency percentiles, how long a client's message takes to become events: a
//! quiet system (`BENCH_QUIET_RATE` inputs/s, default 100, for 15 seconds) and one under load
//! (`BENCH_LATENCY_RATE`; default 0.7 of the rate `run` reached); `0` skips a phase. Last, the
//! `appealflow` binary runs in a process of its own over a backlog of `BENCH_MEMORY_INPUTS`
//! inputs (default: the bench's inputs; `0` skips it) and the bench prints its peak resident
//! set size while it catches up; its log is kept in the temporary directory, and a `run` that
//! applies nothing for two minutes stops the bench with where it stood.
//! The write API phase runs `run` with `[api] listen` over the same backlog twice per round,
//! once alone and once while 4 HTTP clients submit `BENCH_COMMAND_RATE` commands/s between
//! them (default 20; `0` skips it), each on a card of its own (rename with its revision,
//! comment, tag, set a field): it prints POST → `200 applied` p50/p99 and the inputs/s `run`
//! kept against the same run without commands; then the same clients beside a conversation
//! stream at the quiet rate for 15 seconds, and their p50/p99 there.

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::config::Config;
use appealflow::run::RunStats;
use appealflow::store::Store;
use appealflow::testkit;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};
use sqlx::{Connection, Executor, Row};

const PARTITIONS: i32 = 4;

fn env(names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| std::env::var(n).ok())
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let (Some(brokers), Some(pg)) =
        (env(&["BENCH_KAFKA", "APPEALFLOW_TEST_KAFKA"]), env(&["BENCH_PG_URL", "APPEALFLOW_TEST_PG_URL"]))
    else {
        println!("kafka bench: no broker/PostgreSQL configured (run scripts/test-env.sh); skipped");
        return;
    };
    let inputs: usize = std::env::var("BENCH_INPUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 20_000 } else { 500 });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let workload = std::env::var("BENCH_WORKLOAD").unwrap_or_else(|_| "conversations".into());
    let Some(shape) = testkit::Shape::named(&workload) else {
        panic!("BENCH_WORKLOAD must be `stress` or `conversations`, not {workload:?}");
    };
    rt.block_on(bench(&brokers, &pg, inputs, (&workload, shape)));
}

/// People enough for `inputs` inputs of this shape; the stream's later tail is cut off.
fn persons_for(inputs: usize, shape: testkit::Shape) -> usize {
    // Half as many people as inputs for the stress shape (what the README's figures used);
    // proportionally fewer where visits are longer.
    (inputs * 5 / (2 * (1 + shape.max_messages as usize))).max(1)
}

async fn bench(brokers: &str, pg: &str, inputs: usize, (name, shape): (&str, testkit::Shape)) {
    let tag = format!("bench-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos());
    let topic = |name: &str| format!("{name}-{tag}");
    create_run_topics(brokers, &tag, &[(topic("pt"), PARTITIONS)]).await;
    let workload = testkit::generate_shaped(persons_for(inputs, shape), 7, false, shape);
    let lines: Vec<String> = workload.lines.into_iter().take(inputs).collect();
    let keys: Vec<String> = workload.keys.into_iter().take(lines.len()).collect();
    produce(brokers, &topic("in"), &lines, &keys).await;
    println!(
        "appealflow kafka benchmark: {} inputs ({name} workload) on {PARTITIONS} partitions (tansu/Kafka at {brokers})",
        lines.len()
    );

    // Passthrough and `run` alternate, so both see the same machine; the ratios are the figure.
    let (mut pt, mut full, mut out, mut pg_us) = (0f64, 0f64, None, f64::INFINITY);
    for round in 1..=ROUNDS {
        let cpu = Cpu::now();
        let this_pt = passthrough(brokers, &topic("in"), &topic("pt"), lines.len(), round).await;
        println!("  round {round}: passthrough (consume, produce acks=all, commit)  {this_pt:>8.0} inputs/s");
        println!("    {}", Cpu::now().since(cpu).line(lines.len()));
        let (this_run, stats, notes, this_pg_us) = run_phase(brokers, pg, &tag, round, lines.len()).await;
        pg_us = pg_us.min(this_pg_us);
        println!(
            "  round {round}: appealflow run, PostgreSQL                       {this_run:>8.0} inputs/s  ({:.2} of passthrough)",
            this_run / this_pt
        );
        println!("{notes}");
        (pt, full) = (pt.max(this_pt), full.max(this_run));
        out = Some(stats);
    }
    let out = out.expect("at least one round");
    println!("  best of the rounds: run {:.2} of passthrough", full / pt);
    // The same inputs through the same pipeline and database with no broker at all: what
    // `run` could reach if consuming and producing cost nothing.
    let cpu = Cpu::now();
    let (alone, record_bytes) = pipeline_alone(brokers, pg, &tag, &lines).await;
    println!(
        "  pipeline alone (replay, PostgreSQL, no broker)   {alone:>8.0} inputs/s  ({:.2} of passthrough)",
        alone / pt
    );
    println!("    {}", Cpu::now().since(cpu).line(lines.len()));
    // `run` writes several records per input (events, outbound, DLQ); plain passthrough
    // writes one. This baseline consumes the same inputs and writes as many records as `run`
    // did, copies of the inputs, with no processing: about the most any pipeline could reach
    // on this broker and machine, so its ratio to passthrough is the ceiling for `run`'s.
    // `run`'s records are larger than the inputs copied here, so the ceiling is if anything
    // too high. (Padding the copies to `run`'s size was tried: librdkafka's broker thread
    // then spins, cause unknown, and the client's CPU per input grows eightfold, which
    // would understate the ceiling on a shared two-core machine.)
    let written = out.stats.events.values().sum::<u64>() + out.stats.outbound + out.stats.dlq;
    let fanout = written as f64 / lines.len() as f64;
    let input_bytes = lines.iter().map(String::len).sum::<usize>() / lines.len().max(1);
    let cpu = Cpu::now();
    let wide = passthrough_fanout(brokers, &topic("in"), &topic("pt"), lines.len(), (fanout, 0)).await;
    println!(
        "  passthrough writing {fanout:.2} records per input     {wide:>8.0} inputs/s  (ceiling {:.2} of passthrough; run is {:.2} of it)",
        wide / pt,
        full / wide
    );
    println!("    (records: run's average {record_bytes} B, the input copies {input_bytes} B)");
    println!("    {}", Cpu::now().since(cpu).line(lines.len()));
    // Throughput alone says nothing of how long a client waits: the same inputs again, now
    // offered at a fixed rate below what `run` just reached, timed from each input's produce
    // to the last record it caused: first on a quiet system (a support desk's ordinary hour),
    // then at 0.7 of capacity.
    let quiet = std::env::var("BENCH_QUIET_RATE").ok().and_then(|v| v.parse::<f64>().ok()).unwrap_or(100.0);
    let rate = std::env::var("BENCH_LATENCY_RATE").ok().and_then(|v| v.parse::<f64>().ok());
    let rate = rate.unwrap_or((full * 0.7).round());
    // The quiet phase offers 15 seconds' worth of inputs.
    let quiet_inputs = ((quiet * 15.0) as usize).clamp(2, lines.len());
    let mut latencies = Vec::new();
    for (phase, rate, n) in [("quiet", quiet, quiet_inputs), ("load", rate, lines.len())] {
        if rate <= 0.0 {
            continue;
        }
        let l = latency(brokers, pg, &format!("{tag}-{phase}"), &lines[..n], &keys[..n], rate).await;
        latencies.push((phase, rate / full, l.p50, l.p99));
        println!(
            "  latency at {rate:.0} inputs/s ({:.2} of run's rate): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms  ({} inputs, {:.0} per batch)",
            rate / full,
            l.p50,
            l.p90,
            l.p99,
            l.max,
            l.inputs,
            l.per_batch
        );
        println!("    {}", l.stages);
    }
    let command_rate = std::env::var("BENCH_COMMAND_RATE").ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(rate) = Some(command_rate.unwrap_or(20.0)).filter(|r| *r > 0.0) {
        write_api(brokers, pg, &tag, (&lines, &keys), rate, quiet).await;
    }
    let memory_inputs = std::env::var("BENCH_MEMORY_INPUTS").ok().and_then(|v| v.parse().ok());
    let memory = match memory_inputs.unwrap_or(lines.len()) {
        0 => None,
        n if n == lines.len() => Some((n, catch_up_peak_memory(brokers, pg, &tag, None).await)),
        n => {
            let tag = format!("{tag}-mem");
            create_run_topics(brokers, &tag, &[]).await;
            let more = testkit::generate_shaped(persons_for(n, shape), 8, false, shape);
            let lines: Vec<String> = more.lines.into_iter().take(n).collect();
            let keys: Vec<String> = more.keys.into_iter().take(lines.len()).collect();
            produce(brokers, &format!("in-{tag}"), &lines, &keys).await;
            drop((lines, keys));
            Some((n, catch_up_peak_memory(brokers, pg, &tag, Some(n)).await))
        }
    };
    print_targets(name, (full, pt), pg_us, &latencies, memory);
}

/// PostgreSQL's CPU per input under `run` on conversations before the storage shape of
/// about two rows per input (docs/performance.md, 2026-12-01): target 2 halves it.
const PG_US_BEFORE: f64 = 60.0;

/// The targets this bench measures (docs/performance.md "Targets"), each with its figure from
/// this run and whether it holds.
fn print_targets(
    workload: &str,
    (full, pt): (f64, f64),
    pg_us: f64,
    latencies: &[(&str, f64, i64, i64)],
    memory: Option<(usize, f64)>,
) {
    let line = |what: String, figure: String, bound: &str, holds: bool| {
        testkit::print_target(&what, &figure, bound, Some(holds));
    };
    let of_passthrough = full / pt;
    println!("targets:");
    let need = if workload == "stress" { 0.5 } else { 0.7 };
    line(
        format!("2. run, {workload}, share of passthrough"),
        format!("{of_passthrough:.2}"),
        &format!("≥ {need:.2}"),
        of_passthrough >= need,
    );
    let bound = format!("≤ {:.0}, half of {PG_US_BEFORE:.0}", PG_US_BEFORE / 2.0);
    line(
        "2. run, PostgreSQL's CPU µs per input".into(),
        format!("{pg_us:.0}"),
        &bound,
        pg_us <= PG_US_BEFORE / 2.0,
    );
    for (phase, share, p50, p99) in latencies {
        if *phase == "quiet" {
            let what = format!("3. latency at {:.0} inputs/s, p50 / p99 ms", share * full);
            line(what, format!("{p50} / {p99}"), "p50 ≤ 30, p99 ≤ 100", *p50 <= 30 && *p99 <= 100);
        } else {
            let what = format!("3. latency at {share:.2} of run's rate, p99 ms");
            line(what, format!("{p99}"), "p99 ≤ 300", *p99 <= 300);
        }
    }
    testkit::print_memory_target("4. run catching up", memory);
}

/// `run` in this process until the returned sender fires.
fn spawn_run(
    config: Arc<Config>,
    store: Store,
) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<anyhow::Result<RunStats>>) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(appealflow::run::run(config, store, async move {
        let _ = stopped.await;
    }));
    (stop, task)
}

/// Rounds of passthrough and `run`, alternating.
const ROUNDS: usize = 2;

/// `run` in this process from the start of the inbound topic, under a group and on a fresh
/// database of its own, until it applied all `n` inputs: inputs/s from its first input, what
/// it did, the lines to print and PostgreSQL's CPU per input in µs.
async fn run_phase(
    brokers: &str,
    pg: &str,
    tag: &str,
    round: usize,
    n: usize,
) -> (f64, RunStats, String, f64) {
    let url = fresh_db(pg, &format!("{tag}-r{round}")).await;
    let toml = config_toml(brokers, &url, tag)
        .replace(&format!("group_id = \"run-{tag}\""), &format!("group_id = \"run-{tag}-{round}\""));
    let config = Arc::new(Config::from_toml(&toml).unwrap());
    let store = Store::connect(&url, config.store.max_connections).await.unwrap();
    let task_store = store.clone();
    let cpu = Cpu::now();
    let started = Instant::now();
    let (stop, task) = spawn_run(config, task_store);
    wait_applied(&url, &format!("in-{tag}"), n as i64).await;
    let finished = Instant::now();
    let run_cpu = Cpu::now().since(cpu);
    let _ = stop.send(());
    let out = task.await.unwrap().unwrap();
    store.close().await;
    drop_db(pg, &url).await;
    // Like the passthrough's, the clock starts at the first input: joining the group and
    // the assignment are not the pipeline's work (tansu takes a few seconds over them).
    let first = out.first_input.unwrap_or(started);
    let notes = format!(
        "    (run joined the group and got its first input after {:.2}s)\n    {}\n    {} ({:.0} inputs)",
        (first - started).as_secs_f64(),
        run_cpu.line(n),
        stage_means(&out),
        out.stats.inputs as f64 / out.batches.max(1) as f64
    );
    let pg_us = run_cpu.postgres * 1e6 / n as f64;
    (n as f64 / (finished - first).as_secs_f64(), out, notes, pg_us)
}

/// `appealflow run` in a process of its own, from the start of `tag`'s inbound topic under a
/// new group and on a fresh database, until it has applied everything: prints the most memory
/// it held and its rate; returns its peak resident set in MB.
async fn catch_up_peak_memory(brokers: &str, pg: &str, tag: &str, inputs: Option<usize>) -> f64 {
    let url = fresh_db(pg, &format!("{tag}-rss")).await;
    // Kafka's default session timeout rather than appealflow's 10 s: with 10 s, tansu 0.6
    // stops assigning the group's partitions part way through a million-input catch-up (not
    // even to a fresh member of the group, while a new group is assigned at once).
    let toml = config_toml_with(brokers, &url, tag, &[("session.timeout.ms", "45000")])
        .replace(&format!("group_id = \"run-{tag}\""), &format!("group_id = \"rss-{tag}\""));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("run.toml");
    std::fs::write(&file, toml).unwrap();
    let inbound = format!("in-{tag}");
    let backlog = match inputs {
        Some(n) => n as i64,
        None => topic_size(brokers, &inbound),
    };
    // Kept after the bench: where to look should the catch-up stall.
    let log = std::env::temp_dir().join(format!("appealflow-bench-{tag}-catch-up.log"));
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"));
    command
        .args(["run", "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    println!("    (`appealflow run` logs to {})", log.display());
    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_child = stop.clone();
    let measuring = std::thread::spawn(move || testkit::run_measuring_peak_memory(&mut command, &stop_child));
    let waited = try_wait_applied(&url, &inbound, backlog).await;
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (status, peak) =
        tokio::task::spawn_blocking(move || measuring.join().unwrap().unwrap()).await.unwrap();
    if let Err(stalled) = waited {
        panic!("{stalled}; its log: {}", log.display());
    }
    assert!(status.is_none(), "`appealflow run` ended before it was stopped: {status:?}");
    drop_db(pg, &url).await;
    println!(
        "  memory: `appealflow run` catching up on {backlog} inputs in its own process, peak RSS {}  ({:.0} inputs/s with the group join)",
        peak.describe(),
        backlog as f64 / elapsed.as_secs_f64()
    );
    peak.resident.map_or(f64::NAN, |b| b as f64 / 1e6)
}

/// `lock 1.2 ms, prefetch ...`: each stage's mean time per batch over a run.
fn stage_means(out: &RunStats) -> String {
    let t = &out.timings;
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / out.batches.max(1) as f64;
    let r = &out.relay;
    let per_round = |d: Duration| d.as_secs_f64() * 1000.0 / r.rounds.max(1) as f64;
    format!(
        "per batch: lock wait {:.1} ms, prefetch {:.1} ms, apply {:.1} ms, commit {:.1} ms; \
         relay: queued {:.1} ms a batch, {:.1} batches a round, publish {:.1} ms and outbox delete {:.1} ms a round",
        per(t.lock),
        per(t.prefetch),
        per(t.apply),
        per(t.commit),
        r.queued.as_secs_f64() * 1000.0 / r.batches.max(1) as f64,
        r.batches as f64 / r.rounds.max(1) as f64,
        per_round(r.publish),
        per_round(r.forget),
    )
}

/// End-to-end latency percentiles, in milliseconds.
struct Latency {
    p50: i64,
    p90: i64,
    p99: i64,
    max: i64,
    inputs: usize,
    per_batch: f64,
    /// Mean milliseconds per batch in each stage: where a batch's time went.
    stages: String,
}

/// Offers `lines` to a fresh `run` at `rate` inputs/s and measures, per message input, the
/// time from its produce to the last output record it caused (both Kafka record timestamps,
/// taken on this machine's clock: the input's when the bench hands it to its producer, an
/// output's when the relay hands it to its producer, after the commit). Messages that cause
/// no record (duplicates, bad lines) are not counted.
async fn latency(
    brokers: &str,
    pg: &str,
    tag: &str,
    lines: &[String],
    keys: &[String],
    rate: f64,
) -> Latency {
    let topic = |name: &str| format!("{name}-{tag}");
    create_run_topics(brokers, tag, &[]).await;
    let url = fresh_db(pg, tag).await;
    // tansu answers every fetch only after sleeping out (half) the request's max wait, even
    // when it has data, so librdkafka's default 500 ms would be most of what is measured here.
    // A real Kafka broker answers as soon as data arrives; 10 ms makes tansu nearly do so.
    let mut config = (*config(brokers, &url, tag)).clone();
    config.kafka.consumer_options.entry("fetch.wait.max.ms".into()).or_insert_with(|| "10".into());
    let config = Arc::new(config);
    let store = Store::connect(&url, config.store.max_connections).await.unwrap();
    let (stop, task) = spawn_run(config, store.clone());
    let inbound = topic("in");
    // The first input waits for the group join; it is applied before the clock starts. It
    // goes through the producer of the timed inputs, so their clock does not count that
    // producer's start either (connecting, its idempotent producer id).
    let producer = producer(brokers);
    let first = FutureRecord::to(&inbound).key(keys[0].as_str()).payload(lines[0].as_str());
    producer.send(first, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    wait_applied(&url, &inbound, 1).await;
    let mut produced = std::collections::HashMap::new();
    let mut acks = Vec::with_capacity(lines.len());
    let start = tokio::time::Instant::now();
    for (i, (line, key)) in lines.iter().zip(keys).enumerate().skip(1) {
        tokio::time::sleep_until(start + Duration::from_secs_f64((i - 1) as f64 / rate)).await;
        let now = now_ms();
        if let Some(id) = message_id(line) {
            produced.entry(id).or_insert(now);
        }
        let record = FutureRecord::to(&inbound).key(key.as_str()).payload(line.as_str()).timestamp(now);
        acks.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for ack in acks {
        ack.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    wait_applied(&url, &inbound, lines.len() as i64).await;
    let _ = stop.send(());
    let out = task.await.unwrap().unwrap();
    store.close().await;
    drop_db(pg, &url).await;
    let records = (out.stats.events.values().sum::<u64>() + out.stats.outbound) as usize;
    // A blocking consumer: keep the runtime's other workers free while it polls.
    let done =
        tokio::task::block_in_place(|| last_record_times(brokers, &[topic("ev"), topic("out")], records));
    let mut waits: Vec<i64> = done.iter().filter_map(|(id, at)| Some(at - produced.get(id)?)).collect();
    waits.sort_unstable();
    let at =
        |q: f64| waits.get(((waits.len() as f64 * q) as usize).min(waits.len().saturating_sub(1))).copied();
    Latency {
        p50: at(0.5).unwrap_or(0),
        p90: at(0.9).unwrap_or(0),
        p99: at(0.99).unwrap_or(0),
        max: waits.last().copied().unwrap_or(0),
        inputs: waits.len(),
        per_batch: out.stats.inputs as f64 / out.batches.max(1) as f64,
        stages: stage_means(&out),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn message_id(line: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    (v["type"] == "message").then(|| v["message_id"].as_str().map(str::to_string)).flatten()
}

/// Reads `n` records of `topics` from the start; per causing message id, the latest record
/// timestamp.
fn last_record_times(brokers: &str, topics: &[String], n: usize) -> std::collections::HashMap<String, i64> {
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "latency-reader")
        .create()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    for t in topics {
        let metadata = consumer.fetch_metadata(Some(t), Duration::from_secs(10)).unwrap();
        for p in metadata.topics()[0].partitions() {
            tpl.add_partition_offset(t, p.id(), rdkafka::Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut last = std::collections::HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = 0;
    while seen < n && Instant::now() < deadline {
        let Some(m) = consumer.poll(Duration::from_millis(200)) else { continue };
        let m = m.unwrap();
        seen += 1;
        let (Some(at), Some(payload)) = (m.timestamp().to_millis(), m.payload()) else { continue };
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        if v["cause"]["kind"] == "message" {
            if let Some(id) = v["cause"]["id"].as_str() {
                let e = last.entry(id.to_string()).or_insert(at);
                *e = (*e).max(at);
            }
        }
    }
    assert_eq!(seen, n, "every record `run` wrote is read back");
    last
}

/// The topics [`config`] names for `tag`, plus `more`.
async fn create_run_topics(brokers: &str, tag: &str, more: &[(String, i32)]) {
    let topic = |name: &str| format!("{name}-{tag}");
    let mut topics = vec![
        (topic("in"), PARTITIONS),
        (topic("ev"), PARTITIONS),
        (topic("out"), 1),
        (topic("dlq"), 1),
        (topic("cmd"), 1),
    ];
    topics.extend_from_slice(more);
    create_topics(brokers, &topics).await;
}

async fn create_topics(brokers: &str, topics: &[(String, i32)]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let new: Vec<NewTopic> =
        topics.iter().map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1))).collect();
    for r in admin.create_topics(&new, &AdminOptions::new()).await.unwrap() {
        r.unwrap();
    }
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

async fn produce(brokers: &str, topic: &str, lines: &[String], keys: &[String]) {
    let producer = producer(brokers);
    let pairs: Vec<(&String, &String)> = lines.iter().zip(keys).collect();
    for chunk in pairs.chunks(1000) {
        let sends = chunk.iter().map(|(l, k)| {
            producer
                .send(FutureRecord::to(topic).key(k.as_str()).payload(l.as_str()), Duration::from_secs(30))
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).unwrap();
        }
    }
}

/// Consume-produce with no processing, batches of 500, offsets committed after the acks.
async fn passthrough(brokers: &str, from: &str, to: &str, n: usize, round: usize) -> f64 {
    passthrough_fanout(brokers, from, to, n, (1.0, round)).await
}

/// Like [`passthrough`], writing `fanout` records per consumed input on average (copies of
/// the input under its key, so per-key order is kept as `run`'s per-client keys keep it).
async fn passthrough_fanout(
    brokers: &str,
    from: &str,
    to: &str,
    n: usize,
    (fanout, round): (f64, usize),
) -> f64 {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("pt-{from}-{fanout}-{round}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("partition.assignment.strategy", "cooperative-sticky");
    for (k, v) in options("BENCH_CONSUMER") {
        config.set(k, v);
    }
    let consumer: StreamConsumer = config.create().unwrap();
    consumer.subscribe(&[from]).unwrap();
    let producer = producer(brokers);
    let mut started = None;
    let mut done = 0;
    while done < n {
        let mut batch = Vec::new();
        while batch.len() < 500 && done + batch.len() < n {
            let m = consumer.recv().await.unwrap();
            started.get_or_insert_with(Instant::now);
            batch.push((m.key().unwrap_or_default().to_vec(), m.payload().unwrap_or_default().to_vec()));
            consumer.store_offset_from_message(&m).unwrap();
        }
        let copies = |i: usize| {
            ((done + i + 1) as f64 * fanout).round() as usize - ((done + i) as f64 * fanout).round() as usize
        };
        let sends = batch
            .iter()
            .enumerate()
            .flat_map(|(i, kv)| std::iter::repeat_n(kv, copies(i)))
            .map(|(k, v)| producer.send(FutureRecord::to(to).key(k).payload(v), Duration::from_secs(30)));
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).unwrap();
        }
        consumer.commit_consumer_state(CommitMode::Async).unwrap();
        done += batch.len();
    }
    n as f64 / started.unwrap().elapsed().as_secs_f64()
}

/// `replay` of the inputs on a fresh database, records discarded: the pipeline and
/// PostgreSQL with no broker, one partition, the same batch size. Returns inputs/s and the
/// average size of a record's value.
async fn pipeline_alone(brokers: &str, pg: &str, tag: &str, lines: &[String]) -> (f64, usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("inputs.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let url = fresh_db(pg, &format!("{tag}-alone")).await;
    let config = config(brokers, &url, tag);
    let store = Store::connect(&url, config.store.max_connections).await.unwrap();
    let inputs = [path.display().to_string()];
    let mut out = ValueBytes::default();
    let summary = appealflow::replay::replay(config, store.clone(), &inputs, &mut out, false).await.unwrap();
    store.close().await;
    drop_db(pg, &url).await;
    assert_eq!(summary.stats.inputs as usize, lines.len());
    (summary.inputs_per_second(), out.average())
}

/// Counts the bytes of the `value` of replay's output lines (`{"topic":..,"key":..,"value":..}`).
#[derive(Default)]
struct ValueBytes {
    pending: Vec<u8>,
    values: usize,
    bytes: usize,
}

impl ValueBytes {
    fn average(&self) -> usize {
        self.bytes / self.values.max(1)
    }
}

impl std::io::Write for ValueBytes {
    /// Cheap enough not to weigh on the phase it runs in: one scan per line, no allocation.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        const KEY: &[u8] = b"\"value\":";
        self.pending.extend_from_slice(buf);
        let mut start = 0;
        while let Some(len) = self.pending[start..].iter().position(|b| *b == b'\n') {
            let line = &self.pending[start..start + len];
            if let Some(at) = line.windows(KEY.len()).position(|w| w == KEY) {
                self.values += 1;
                self.bytes += line.len().saturating_sub(at + KEY.len() + 1); // the closing brace
            }
            start += len + 1;
        }
        self.pending.drain(..start);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Benchmark databases are dropped afterwards: each holds a run's worth of state.
async fn drop_db(admin: &str, url: &str) {
    let name = url.rsplit_once('/').map_or(url, |(_, n)| n);
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    if let Err(e) = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await {
        println!("  (could not drop benchmark database {name}: {e})");
    }
}

async fn fresh_db(admin: &str, tag: &str) -> String {
    let name = tag.replace('-', "_");
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

fn config(brokers: &str, url: &str, tag: &str) -> Arc<Config> {
    Arc::new(Config::from_toml(&config_toml(brokers, url, tag)).unwrap())
}

/// The TOML of [`config`].
fn config_toml(brokers: &str, url: &str, tag: &str) -> String {
    config_toml_with(brokers, url, tag, &[])
}

/// [`config_toml`] with consumer options `BENCH_CONSUMER` does not set.
fn config_toml_with(brokers: &str, url: &str, tag: &str, consumer_defaults: &[(&str, &str)]) -> String {
    format!(
        r#"
[kafka]
brokers = "{brokers}"
group_id = "run-{tag}"
{}
[kafka.topics]
inbound = "in-{tag}"
commands = "cmd-{tag}"
events = "ev-{tag}"
outbound = "out-{tag}"
dlq = "dlq-{tag}"
[store]
url = "{url}"
[ops]
listen = ""
{}"#,
        client_options(consumer_defaults),
        testkit::CONFIG
            .replace("batch_size = 500", &format!("batch_size = {}{}", batch_size(), batch_max_wait()))
    )
}

/// How many records a topic holds (the sum of its partitions' high watermarks).
fn topic_size(brokers: &str, topic: &str) -> i64 {
    use rdkafka::consumer::BaseConsumer;
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", brokers).create().unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10)).unwrap().1)
        .sum()
}

/// `BENCH_PRODUCER="compression.type=lz4,linger.ms=20"`: librdkafka producer options for `run`;
/// `BENCH_CONSUMER="fetch.wait.max.ms=20"`: consumer options for `run` and the passthroughs.
fn client_options(consumer_defaults: &[(&str, &str)]) -> String {
    let section = |name: &str, options: Vec<(String, String)>| {
        let pairs: Vec<String> = options.iter().map(|(k, v)| format!("{k:?} = {v:?}")).collect();
        if pairs.is_empty() {
            String::new()
        } else {
            format!("[kafka.{name}]\n{}\n", pairs.join("\n"))
        }
    };
    let mut consumer = options("BENCH_CONSUMER");
    for (k, v) in consumer_defaults {
        if !consumer.iter().any(|(set, _)| set == k) {
            consumer.push((k.to_string(), v.to_string()));
        }
    }
    section("producer_options", options("BENCH_PRODUCER")) + &section("consumer_options", consumer)
}

fn options(var: &str) -> Vec<(String, String)> {
    let options = std::env::var(var).unwrap_or_default();
    options
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `BENCH_BATCH_MAX_WAIT="50ms"`: the pipeline's `batch_max_wait` (default: appealflow's).
fn batch_max_wait() -> String {
    std::env::var("BENCH_BATCH_MAX_WAIT").map_or(String::new(), |w| format!("\nbatch_max_wait = {w:?}"))
}

fn batch_size() -> usize {
    let default = appealflow::config::PipelineConfig::default().batch_size;
    std::env::var("BENCH_BATCH_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn wait_applied(url: &str, inbound: &str, n: i64) {
    if let Err(stalled) = try_wait_applied(url, inbound, n).await {
        panic!("{stalled}");
    }
}

/// Waits until `n` inputs of `inbound` are applied and published; an error says where `run`
/// stopped if it applies nothing for [`STALLED_AFTER`] (a figure from a run that stopped
/// moving would be no figure).
async fn try_wait_applied(url: &str, inbound: &str, n: i64) -> Result<(), String> {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let mut last = (-1, Instant::now());
    loop {
        let row = sqlx::query("SELECT COALESCE(SUM(next_offset),0)::BIGINT, (SELECT COUNT(*) FROM outbox_batches) FROM partitions WHERE partition_key LIKE $1")
            .bind(format!("{inbound}:%"))
            .fetch_one(&pool)
            .await;
        // A `run` in another process may not have created its tables yet.
        let (applied, pending): (i64, i64) = row.map_or((0, 0), |row| (row.get(0), row.get(1)));
        if applied >= n && pending == 0 {
            return Ok(());
        }
        if applied != last.0 {
            last = (applied, Instant::now());
        }
        if last.1.elapsed() >= STALLED_AFTER {
            return Err(format!(
                "`run` applied nothing for {STALLED_AFTER:?}: stalled at {applied} of {n} inputs of {inbound}, \
                 {pending} batches unpublished"
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How long `run` may apply nothing, with inputs still waiting, before the bench stops.
const STALLED_AFTER: Duration = Duration::from_secs(120);

/// CPU seconds spent so far by this process, the broker and PostgreSQL, read from `/proc`
/// (Linux; zeros elsewhere). The machine is shared, so where a phase's CPU went says more than
/// its wall time: which of the three a faster `run` has to save on.
#[derive(Debug, Clone, Copy, Default)]
struct Cpu {
    bench: f64,
    broker: f64,
    postgres: f64,
}

impl Cpu {
    fn now() -> Cpu {
        let procs = processes();
        let sum = |pred: &dyn Fn(&Proc) -> bool| {
            procs.iter().filter(|p| pred(p)).map(|p| p.own + p.children_if_root).sum()
        };
        Cpu {
            bench: procs.iter().find(|p| p.pid == std::process::id()).map_or(0.0, |p| p.own),
            broker: sum(&|p| p.comm == "tansu"),
            // Every PostgreSQL process, plus what exited backends spent (reaped by the
            // postmaster, so counted in its children's time).
            postgres: sum(&|p| p.comm == "postgres"),
        }
    }

    fn since(self, start: Cpu) -> Cpu {
        Cpu {
            bench: self.bench - start.bench,
            broker: self.broker - start.broker,
            postgres: self.postgres - start.postgres,
        }
    }

    fn line(self, inputs: usize) -> String {
        let per = |s: f64| s * 1e6 / inputs as f64;
        format!(
            "CPU µs per input: appealflow/bench {:.0}, broker {:.0}, PostgreSQL {:.0}",
            per(self.bench),
            per(self.broker),
            per(self.postgres)
        )
    }
}

struct Proc {
    pid: u32,
    comm: String,
    own: f64,
    /// Children's time, counted only for the root of a process tree of that name.
    children_if_root: f64,
}

fn processes() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut all: Vec<(Proc, u32)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // `pid (comm) state ppid ...`: comm may hold spaces, so split at the last ')'.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let f: Vec<&str> = rest.split_whitespace().collect();
            let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 100.0;
            let ppid = f.get(1)?.parse().ok()?;
            Some((Proc { pid, comm, own: tick(11) + tick(12), children_if_root: tick(13) + tick(14) }, ppid))
        })
        .collect();
    let comms: std::collections::HashMap<u32, String> =
        all.iter().map(|(p, _)| (p.pid, p.comm.clone())).collect();
    for (p, ppid) in &mut all {
        if comms.get(ppid) == Some(&p.comm) {
            p.children_if_root = 0.0;
        }
    }
    all.into_iter().map(|(p, _)| p).collect()
}

/// The write API: per round, `run` alone over the backlog and `run` over it while 4 clients
/// submit `rate` commands/s between them (each on a fresh database); then the same clients
/// against a `run` fed a conversation stream at `quiet` inputs/s for 15 seconds, the load of an
/// ordinary hour, where what an operator waits for is the figure.
async fn write_api(
    brokers: &str,
    pg: &str,
    tag: &str,
    workload: (&[String], &[String]),
    rate: f64,
    quiet: f64,
) {
    let n = workload.0.len();
    let (mut alone, mut with, mut during) = (0f64, 0f64, Answers::default());
    for round in 1..=ROUNDS {
        let (this_alone, _) = api_run(brokers, pg, tag, &format!("a{round}"), n, None).await;
        let (this_with, answers) = api_run(brokers, pg, tag, &format!("w{round}"), n, Some(rate)).await;
        println!(
            "  round {round}: run with the API {this_alone:>8.0} inputs/s alone, {this_with:>8.0} while taking commands ({:.2})",
            this_with / this_alone
        );
        (alone, with) = (alone.max(this_alone), with.max(this_with));
        during.extend(answers);
    }
    println!(
        "  write API during the backlog, {rate:.0} commands/s from 4 clients: POST → 200 applied {}; run kept {:.2} of its rate without commands (best rounds)",
        during.line(),
        with / alone
    );
    if quiet <= 0.0 {
        return;
    }
    let inputs = ((quiet * 15.0) as usize).clamp(2, n);
    let steady = format!("{tag}-cq");
    create_run_topics(brokers, &steady, &[]).await;
    let feed = (&workload.0[..inputs], &workload.1[..inputs], quiet);
    let answers = api_run_fed(brokers, pg, &steady, inputs, rate, feed).await;
    println!(
        "  write API at {rate:.0} commands/s from 4 clients beside {quiet:.0} inputs/s: POST → 200 applied {}",
        answers.line()
    );
}

/// The answers of the command clients: (status, milliseconds from POST to answer).
#[derive(Default)]
struct Answers(Vec<(u16, u64)>);

impl Answers {
    fn extend(&mut self, more: Vec<(u16, u64)>) {
        self.0.extend(more);
    }

    fn line(&self) -> String {
        let mut waits: Vec<u64> = self.0.iter().filter(|(s, _)| *s == 200).map(|(_, ms)| *ms).collect();
        waits.sort_unstable();
        let at = |q: f64| {
            waits
                .get(((waits.len() as f64 * q) as usize).min(waits.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        format!(
            "p50 {} ms, p99 {} ms, max {} ms ({} applied, {} other answers)",
            at(0.5),
            at(0.99),
            waits.last().copied().unwrap_or(0),
            waits.len(),
            self.0.len() - waits.len()
        )
    }
}

/// A `run` config with the API on a free port and a write token, under a group of its own.
fn api_config(brokers: &str, url: &str, tag: &str, phase: &str) -> (Arc<Config>, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let toml = config_toml(brokers, url, tag)
        .replace(&format!("group_id = \"run-{tag}\""), &format!("group_id = \"run-{tag}-{phase}\""))
        + &format!(
            "\n[api]\nlisten = \"127.0.0.1:{port}\"\n[[api.tokens]]\ntoken = \"bench-writer-1\"\nprojects = [\"acme\"]\nwrite = true\noperator = {{ id = \"op-1\" }}\n"
        );
    let mut config = Config::from_toml(&toml).unwrap();
    // As documented for tansu (config/example.toml): it holds a fetch for half its max wait.
    config.kafka.consumer_options.entry("fetch.wait.max.ms".into()).or_insert_with(|| "10".into());
    (Arc::new(config), format!("http://127.0.0.1:{port}/v1/projects/acme/commands"))
}

/// `run` with the API from the start of `tag`'s backlog on a fresh database until it applied
/// `n` inputs, with command clients at `rate` when given: its inputs/s from its first input,
/// and each command's answer.
async fn api_run(
    brokers: &str,
    pg: &str,
    tag: &str,
    phase: &str,
    n: usize,
    rate: Option<f64>,
) -> (f64, Vec<(u16, u64)>) {
    let url = fresh_db(pg, &format!("{tag}-{phase}")).await;
    let (config, commands) = api_config(brokers, &url, tag, phase);
    let store = Store::connect(&url, config.store.max_connections).await.unwrap();
    let started = Instant::now();
    let (stop, task) = spawn_run(config, store.clone());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = match rate {
        Some(rate) => (0..4)
            .map(|i| tokio::spawn(command_client(commands.clone(), i, rate / 4.0, done.clone())))
            .collect(),
        None => Vec::new(),
    };
    wait_applied(&url, &format!("in-{tag}"), n as i64).await;
    let finished = Instant::now();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answers = Vec::new();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    let _ = stop.send(());
    let out = task.await.unwrap().unwrap();
    store.close().await;
    drop_db(pg, &url).await;
    let first = out.first_input.unwrap_or(started);
    (n as f64 / (finished - first).as_secs_f64(), answers)
}

/// `run` with the API on `tag`'s empty topics, fed `feed`'s inputs at its rate while the
/// command clients submit `rate` commands/s: their answers.
async fn api_run_fed(
    brokers: &str,
    pg: &str,
    tag: &str,
    n: usize,
    rate: f64,
    (lines, keys, input_rate): (&[String], &[String], f64),
) -> Answers {
    let url = fresh_db(pg, tag).await;
    let (config, commands) = api_config(brokers, &url, tag, "fed");
    let store = Store::connect(&url, config.store.max_connections).await.unwrap();
    let (stop, task) = spawn_run(config, store.clone());
    let inbound = format!("in-{tag}");
    // The first input waits for the group join; the clients start once it is applied.
    let producer = producer(brokers);
    let first = FutureRecord::to(&inbound).key(keys[0].as_str()).payload(lines[0].as_str());
    producer.send(first, Duration::from_secs(30)).await.map_err(|(e, _)| e).unwrap();
    wait_applied(&url, &inbound, 1).await;
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> =
        (0..4).map(|i| tokio::spawn(command_client(commands.clone(), i, rate / 4.0, done.clone()))).collect();
    let start = tokio::time::Instant::now();
    let mut acks = Vec::with_capacity(n);
    for (i, (line, key)) in lines.iter().zip(keys).enumerate().skip(1) {
        tokio::time::sleep_until(start + Duration::from_secs_f64((i - 1) as f64 / input_rate)).await;
        let record = FutureRecord::to(&inbound).key(key.as_str()).payload(line.as_str());
        acks.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
    }
    for ack in acks {
        ack.await.unwrap().map_err(|(e, _)| e).unwrap();
    }
    wait_applied(&url, &inbound, n as i64).await;
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut answers = Answers::default();
    for c in clients {
        answers.extend(c.await.unwrap());
    }
    let _ = stop.send(());
    task.await.unwrap().unwrap();
    store.close().await;
    drop_db(pg, &url).await;
    answers
}

/// One operator app: creates a card of its own, then acts on it at `rate` commands/s until
/// `done`, carrying the revision each answer gives into the next rename.
async fn command_client(
    url: String,
    client: usize,
    rate: f64,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<(u16, u64)> {
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        let request = http.post(format!("{url}?wait=20s")).bearer_auth("bench-writer-1").json(&body);
        async move {
            let sent = Instant::now();
            loop {
                // The API listens once `run` started; until then the connection is refused.
                match request.try_clone().unwrap().send().await {
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let body: serde_json::Value = r.json().await.unwrap_or_default();
                        return (status, sent.elapsed().as_millis() as u64, body);
                    }
                    Err(_) if sent.elapsed() < Duration::from_secs(30) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => panic!("the write API never answered: {e}"),
                }
            }
        }
    };
    let create = serde_json::json!({"type": "create_client", "name": format!("Bench client {client}"),
        "contacts": [{"contact_type": "email", "value": format!("bench-{client}@example.com")}]});
    let (_, _, created) = post(create).await;
    let card = created["client"]["id"].as_str().expect("create_client applied").to_string();
    let mut revision = created["revision"].as_u64().unwrap_or(1);
    let mut answers = Vec::new();
    let start = tokio::time::Instant::now();
    for k in 0u64.. {
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        let c = serde_json::json!({"client_id": card});
        let body = match k % 4 {
            0 => {
                serde_json::json!({"type": "rename_client", "client": c, "name": format!("Bench client {client}.{k}"), "expected_revision": revision})
            }
            1 => serde_json::json!({"type": "comment_client", "client": c, "text": format!("note {k}")}),
            2 => serde_json::json!({"type": "tag_client", "client": c, "tag": format!("t{k}")}),
            _ => {
                serde_json::json!({"type": "set_client_field", "client": c, "field": "contract_number", "value": format!("C-{k}")})
            }
        };
        let (status, ms, answer) = post(body).await;
        revision = answer["revision"].as_u64().unwrap_or(revision);
        answers.push((status, ms));
    }
    answers
}
