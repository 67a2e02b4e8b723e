//! `cargo bench --bench replay`: replays a generated stream of 100k inputs through the full
//! pipeline and prints inputs/s next to a decode-only baseline measured in the same run, so
//! the figure that matters is the ratio (machines here are shared and noisy).
//!
//! Options (environment): `BENCH_INPUTS` (default 100000), `BENCH_PG_URL` (also replay on a
//! fresh PostgreSQL database created under that server URL).

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
    let mut lines = testkit::generate(inputs / 2, 42).lines;
    lines.truncate(inputs);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    println!("appealflow replay benchmark: {} generated inputs ({} persons' worth)", lines.len(), inputs / 2);

    let baseline = decode_only(&lines, &config);
    println!("  decode-only baseline   {:>9.0} inputs/s", baseline);

    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = runtime.block_on(full(&config, &url, &path));
    println!("  full pipeline, SQLite  {:>9.0} inputs/s  ({:.3} of baseline)", sqlite, sqlite / baseline);

    if let Ok(admin) = std::env::var("BENCH_PG_URL") {
        let url = runtime.block_on(fresh_pg(&admin));
        let pg = runtime.block_on(full(&config, &url, &path));
        println!(
            "  full pipeline, PostgreSQL {:>6.0} inputs/s  ({:.3} of baseline, {:.2} of SQLite)",
            pg,
            pg / baseline,
            pg / sqlite
        );
    }
}

/// Read + JSON decode + validate every input: the floor any processing adds to.
fn decode_only(lines: &[String], config: &Config) -> f64 {
    let started = Instant::now();
    let ok = lines.iter().filter(|l| decode::decode(l.as_bytes(), config).is_ok()).count();
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

async fn fresh_pg(admin: &str) -> String {
    use sqlx::{Connection, Executor};
    let name = format!("appealflow_bench_{}", std::process::id());
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}
