//! `cargo bench --bench replay`: replays a generated stream of 100k inputs through the full
//! pipeline and prints inputs/s next to a decode-only baseline measured in the same run, so
//! the figure that matters is the ratio (machines here are shared and noisy).
//!
//! It also replays the same stream with CRM identification on the WhatsApp and e-mail
//! channels, once against the CRM test double and once with the CRM down (connections
//! refused), to show what identification costs and that an outage does not stall the stream.
//!
//! Next to it, in alternating rounds, runs the durable-ingest floor (`benches/ingest_floor.py`:
//! Python's `json` and `sqlite3` keeping each input as one row, WAL, `synchronous=FULL`) and
//! prints the engine's share of it.
//!
//! Last, the `appealflow` binary replays a stream in a process of its own and the bench prints
//! its peak resident set size: the memory a replay of that many inputs needs.
//!
//! Options (environment): `BENCH_INPUTS` (default 100000), `BENCH_PG_URL` (also replay on a
//! fresh PostgreSQL database created under that server URL), `BENCH_MEMORY_INPUTS` (the size
//! of the stream the memory phase replays; default `BENCH_INPUTS`, `0` skips it).

use std::sync::Arc;
use std::time::Instant;

use appealflow::config::Config;
use appealflow::store::Store;
use appealflow::{decode, replay, testkit};

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary too (in debug),
    // where a small smoke run proves it works without spending minutes.
    let benching = std::env::args().any(|a| a == "--bench");
    let default_inputs = if benching { 100_000 } else { 2_000 };
    let inputs: usize =
        std::env::var("BENCH_INPUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_inputs);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = Arc::new(Config::from_toml(testkit::CONFIG).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.jsonl");
    let lines = write_stream(inputs, 42, &path);
    println!("appealflow replay benchmark: {} generated inputs ({} persons' worth)", lines.len(), inputs / 2);

    let baseline = decode_only(&lines, &config);
    println!("  decode-only baseline   {:>9.0} inputs/s", baseline);

    // The floor and the engine alternate, so both see the same machine; the ratio is the figure.
    let mut sqlite = 0f64;
    let mut of_floor: Option<f64> = None;
    for round in 1..=ROUNDS {
        let floor = ingest_floor(&path, &dir.path().join(format!("floor-{round}.db")));
        let url = format!("sqlite://{}", dir.path().join(format!("bench-{round}.db")).display());
        let engine = runtime.block_on(full(&config, &url, &path));
        sqlite = sqlite.max(engine);
        match floor {
            Some(floor) => {
                of_floor = Some(of_floor.unwrap_or(0f64).max(engine / floor));
                println!(
                "  round {round}: ingest floor {floor:>7.0} inputs/s, full pipeline, SQLite {engine:>7.0} inputs/s  \
                 ({:.2} of the floor, {:.3} of decode alone)",
                engine / floor,
                engine / baseline
            )
            }
            None => println!(
                "  round {round}: full pipeline, SQLite {engine:>7.0} inputs/s (no python3 for the floor)"
            ),
        }
    }

    let crm = runtime.block_on(start_crm_double());
    let up = Arc::new(Config::from_toml(&with_crm(&crm)).unwrap());
    let url = format!("sqlite://{}", dir.path().join("bench-crm.db").display());
    let with_up = runtime.block_on(full(&up, &url, &path));
    println!(
        "  SQLite + CRM double    {:>9.0} inputs/s  ({:.2} of SQLite without CRM)",
        with_up,
        with_up / sqlite
    );
    // Nothing listens on port 9: every call is refused, then the circuit breaker opens.
    let down = Arc::new(Config::from_toml(&with_crm("http://127.0.0.1:9")).unwrap());
    let url = format!("sqlite://{}", dir.path().join("bench-crm-down.db").display());
    let with_down = runtime.block_on(full(&down, &url, &path));
    println!(
        "  SQLite + CRM down      {:>9.0} inputs/s  ({:.2} of SQLite without CRM)",
        with_down,
        with_down / sqlite
    );

    let memory_inputs = std::env::var("BENCH_MEMORY_INPUTS").ok().and_then(|v| v.parse().ok());
    let memory = match memory_inputs.unwrap_or(lines.len()) {
        0 => None,
        n if n == lines.len() => Some((n, replay_peak_memory(&path, n, dir.path()))),
        n => {
            let stream = dir.path().join("memory.jsonl");
            drop(write_stream(n, 43, &stream));
            Some((n, replay_peak_memory(&stream, n, dir.path())))
        }
    };

    let pg = std::env::var("BENCH_PG_URL").ok().map(|admin| {
        let url = runtime.block_on(fresh_pg(&admin));
        let pg = runtime.block_on(full(&config, &url, &path));
        runtime.block_on(drop_pg(&admin, &url));
        println!(
            "  full pipeline, PostgreSQL {:>6.0} inputs/s  ({:.3} of baseline, {:.2} of SQLite)",
            pg,
            pg / baseline,
            pg / sqlite
        );
        pg
    });
    print_targets(of_floor, pg.map(|pg| pg / sqlite), memory);
}

/// The engine's targets this bench measures (docs/performance.md "Targets"): each with its
/// figure from this run and whether it holds.
fn print_targets(of_floor: Option<f64>, pg_of_sqlite: Option<f64>, memory: Option<(usize, f64)>) {
    let ratio = |r: Option<f64>| r.map_or("-".to_string(), |r| format!("{r:.2}"));
    println!("targets:");
    let what = "1. replay on SQLite, share of the durable-ingest floor";
    testkit::print_target(what, &ratio(of_floor), "≥ 0.50", of_floor.map(|r| r >= 0.5));
    let what = "1. replay on PostgreSQL, share of SQLite";
    testkit::print_target(what, &ratio(pg_of_sqlite), "≥ 0.80", pg_of_sqlite.map(|r| r >= 0.8));
    testkit::print_memory_target("4. replay", memory);
}

/// Rounds of floor and engine, alternating.
const ROUNDS: usize = 2;

/// `benches/ingest_floor.py` over the stream: what merely keeping each input durably costs
/// (inputs/s), or `None` without a Python to run it.
fn ingest_floor(stream: &std::path::Path, db: &std::path::Path) -> Option<f64> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/ingest_floor.py");
    let out = std::process::Command::new("python3").arg(script).arg(stream).arg(db).output().ok()?;
    assert!(out.status.success(), "ingest floor failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    Some(report["inputs"].as_f64()? / report["seconds"].as_f64()?)
}

/// Writes `inputs` generated inputs (`inputs / 2` people's worth) to `path`; returns them.
fn write_stream(inputs: usize, seed: u64, path: &std::path::Path) -> Vec<String> {
    let mut lines = testkit::generate(inputs / 2, seed).lines;
    lines.truncate(inputs);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    lines
}

/// Replays `stream` with the `appealflow` binary on a fresh SQLite file and prints the most
/// memory that process held; returns its peak resident set in MB.
fn replay_peak_memory(stream: &std::path::Path, inputs: usize, dir: &std::path::Path) -> f64 {
    let config = dir.join("memory.toml");
    std::fs::write(&config, testkit::CONFIG).unwrap();
    let db = format!("sqlite://{}", dir.join("memory.db").display());
    let started = Instant::now();
    let (status, peak) = testkit::run_measuring_peak_memory(
        std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
            .args(["replay", "--no-progress", "--db", &db, "--config"])
            .arg(&config)
            .arg(stream)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
        &Default::default(),
    )
    .unwrap();
    assert!(status.is_some_and(|s| s.success()), "the memory phase's replay failed: {status:?}");
    println!(
        "  memory: `appealflow replay` of {inputs} inputs in its own process, peak RSS {}  ({:.0} inputs/s)",
        peak.describe(),
        inputs as f64 / started.elapsed().as_secs_f64()
    );
    peak.resident.map_or(f64::NAN, |b| b as f64 / 1e6)
}

/// Read + JSON decode + validate every input: the floor any processing adds to.
fn decode_only(lines: &[String], config: &Config) -> f64 {
    let started = Instant::now();
    let ok = lines
        .iter()
        .filter(|l| decode::decode(l.as_bytes(), config, chrono::Utc::now().timestamp_millis()).is_ok())
        .count();
    assert!(ok > 0);
    lines.len() as f64 / started.elapsed().as_secs_f64()
}

async fn full(config: &Arc<Config>, url: &str, path: &std::path::Path) -> f64 {
    let store = Store::connect(url, 4).await.unwrap();
    let summary = replay::replay(
        config.clone(),
        store.clone(),
        &[path.display().to_string()],
        &mut std::io::sink(),
        false,
    )
    .await
    .unwrap();
    store.close().await;
    println!(
        "    {} inputs: {} applied, {} duplicates, {} DLQ; {} appeals, {} merges",
        summary.stats.inputs,
        summary.stats.applied,
        summary.stats.duplicates,
        summary.stats.dlq,
        summary.stats.event("appeal.opened"),
        summary.stats.event("client.merged")
    );
    summary.inputs_per_second()
}

/// The benchmark config plus a CRM and identification by phone (WhatsApp) and e-mail.
fn with_crm(url: &str) -> String {
    let identification = |kind: &str| {
        format!("\n    [projects.channels.identification]\n    name = \"by {kind}\"\n    identifier = \"{kind}\"\n    success = \"You are identified\"")
    };
    testkit::CONFIG
        .replace(
            "blocked_values = [\"+7 495 000-00-00\"]",
            &format!("blocked_values = [\"+7 495 000-00-00\"]\n  [projects.crm]\n  url = \"{url}\"\n  timeout = \"500ms\""),
        )
        .replace("kind = \"whatsapp\"\n  group = \"first-line\"", &format!("kind = \"whatsapp\"\n  group = \"first-line\"{}", identification("phone")))
        .replace("kind = \"email\"\n  group = \"back-office\"", &format!("kind = \"email\"\n  group = \"back-office\"{}", identification("email")))
}

/// The CRM test double with the example clients, in-process; returns its base URL.
async fn start_crm_double() -> String {
    use appealflow::crm::double;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crm-clients.json");
    let clients = double::load_clients(&path).unwrap();
    let (addr, handle) = double::serve(clients, Default::default(), "127.0.0.1:0").await.unwrap();
    std::mem::forget(handle); // serves until the benchmark exits
    format!("http://{addr}")
}

async fn fresh_pg(admin: &str) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("appealflow_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}

/// The benchmark database holds a run's worth of state: dropped once measured.
async fn drop_pg(admin: &str, url: &str) {
    use sqlx::{Connection, Executor};
    let name = url.rsplit_once('/').map_or(url, |(_, n)| n);
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    if let Err(e) = conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await {
        println!("  (could not drop benchmark database {name}: {e})");
    }
}
