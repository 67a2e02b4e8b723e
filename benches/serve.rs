//! `cargo bench --bench serve`: the sample-shaped generated stream posted to `serve` (in this
//! process, over a fresh SQLite file) by four concurrent gateways in bodies of 100 lines, a
//! visitor's lines on one gateway, in alternating rounds with `replay` of the same stream on a
//! fresh file; prints both rates and their ratio (the figure that matters: the machines are
//! shared and noisy). Then the latency of single inputs posted one after another to an idle
//! `serve`, answer included (p50/p99), and how soon a reader long-polling the feed gets
//! their events.
//!
//! Options (environment): `BENCH_INPUTS` (default 100000), `BENCH_SINGLES` (default 500).

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::config::Config;
use appealflow::serve::Service;
use appealflow::store::Store;
use appealflow::{replay, testkit};

const TOKENS: &str = r#"
[api]
listen = "127.0.0.1:0"
  [[api.tokens]]
  token = "bench-gateway"
  projects = ["acme"]
  ingest = true
  [[api.tokens]]
  token = "bench-reader"
  projects = ["acme"]
"#;

const GATEWAYS: usize = 4;
const BODY: usize = 100;
const ROUNDS: usize = 2;

fn main() {
    // `cargo test --all-targets` runs this binary too (in debug): a small smoke run.
    let benching = std::env::args().any(|a| a == "--bench");
    let env =
        |key: &str, default: usize| std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let inputs = env("BENCH_INPUTS", if benching { 100_000 } else { 2_000 });
    let singles = env("BENCH_SINGLES", if benching { 500 } else { 20 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = Arc::new(Config::from_toml(&format!("{TOKENS}\n{}", testkit::CONFIG)).unwrap());
    let workload = testkit::generate(inputs / 2, 42);
    let n = workload.lines.len().min(inputs);
    let (lines, keys) = (&workload.lines[..n], &workload.keys[..n]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    println!(
        "appealflow serve benchmark: {n} generated inputs, {GATEWAYS} gateways posting bodies of {BODY} lines"
    );
    for round in 1..=ROUNDS {
        let url =
            |what: &str| format!("sqlite://{}", dir.path().join(format!("{what}-{round}.db")).display());
        let replayed = runtime.block_on(replay_rate(&config, &url("replay"), &path));
        let served = runtime.block_on(serve_rate(&config, &url("serve"), lines, keys));
        println!(
            "  round {round}: replay {replayed:>7.0} inputs/s, serve {served:>7.0} inputs/s  ({:.2} of replay)",
            served / replayed
        );
    }
    runtime.block_on(single_latency(
        &config,
        &format!("sqlite://{}", dir.path().join("single.db").display()),
        singles,
    ));
}

async fn replay_rate(config: &Arc<Config>, url: &str, path: &std::path::Path) -> f64 {
    let store = Store::connect(url, 4).await.unwrap();
    let files = [path.display().to_string()];
    let summary =
        replay::replay(config.clone(), store.clone(), &files, &mut std::io::sink(), false).await.unwrap();
    store.close().await;
    summary.inputs_per_second()
}

/// Inputs/s from the first post to the last answer.
async fn serve_rate(config: &Arc<Config>, url: &str, lines: &[String], keys: &[String]) -> f64 {
    let store = Store::connect(url, 4).await.unwrap();
    let service = Service::start(config.clone(), store.clone(), Box::new(std::io::sink())).await.unwrap();
    let base = format!("http://{}/v1/projects/acme/inputs", service.addr);
    let mut streams: Vec<Vec<&str>> = vec![Vec::new(); GATEWAYS];
    for (line, key) in lines.iter().zip(keys) {
        let slot = key.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % GATEWAYS;
        streams[slot].push(line);
    }
    let started = Instant::now();
    let gateways: Vec<_> = streams
        .into_iter()
        .map(|stream| {
            let bodies: Vec<String> = stream.chunks(BODY).map(|c| c.join("\n")).collect();
            let base = base.clone();
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                for body in bodies {
                    let response =
                        http.post(&base).bearer_auth("bench-gateway").body(body).send().await.unwrap();
                    assert_eq!(response.status(), 200);
                    response.bytes().await.unwrap();
                }
            })
        })
        .collect();
    for g in gateways {
        g.await.unwrap();
    }
    let rate = lines.len() as f64 / started.elapsed().as_secs_f64();
    let stats = service.stop().await.unwrap();
    assert_eq!(stats.inputs as usize, lines.len(), "every input applied or accounted for");
    store.close().await;
    rate
}

/// Single inputs, one at a time, to an idle `serve`: the answer's latency, commit included,
/// and when a reader long-polling the feed got the input's events, from the same post.
async fn single_latency(config: &Arc<Config>, url: &str, count: usize) {
    let store = Store::connect(url, 4).await.unwrap();
    let service = Service::start(config.clone(), store.clone(), Box::new(std::io::sink())).await.unwrap();
    let base = format!("http://{}/v1/projects/acme", service.addr);
    let http = reqwest::Client::new();
    let (fed, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
    let follower = tokio::spawn(follow_feed(http.clone(), format!("{base}/feed"), fed));
    let lines = testkit::generate(count, 7).lines;
    let (mut answered, mut delivered) = (Vec::with_capacity(count), Vec::with_capacity(count));
    for line in lines.iter().take(count) {
        tokio::time::sleep(Duration::from_millis(5)).await;
        while arrivals.try_recv().is_ok() {} // a page of the previous post's later records
        let started = Instant::now();
        let response = http
            .post(format!("{base}/inputs"))
            .bearer_auth("bench-gateway")
            .body(line.clone())
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
        answered.push(started.elapsed());
        // Not every input makes an event (a status update of an unknown message): skipped.
        if let Ok(Some(at)) = tokio::time::timeout(Duration::from_millis(500), arrivals.recv()).await {
            delivered.push(at.duration_since(started));
        }
    }
    follower.abort();
    println!(
        "  single inputs to an idle serve ({} posted one at a time): answered p50 {:.1} ms, p99 {:.1} ms",
        answered.len(),
        quantile(&mut answered, 0.5),
        quantile(&mut answered, 0.99)
    );
    println!(
        "  feed long-poll: the events of {} of them reached a waiting reader p50 {:.1} ms, p99 {:.1} ms \
         after the post (the commit included)",
        delivered.len(),
        quantile(&mut delivered, 0.5),
        quantile(&mut delivered, 0.99)
    );
    service.stop().await.unwrap();
    store.close().await;
}

/// Long-polls the events feed from its start and sends the instant each page came back.
async fn follow_feed(http: reqwest::Client, url: String, fed: tokio::sync::mpsc::UnboundedSender<Instant>) {
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("topic", "events".to_string()), ("wait", "10s".to_string())];
        query.extend(after.clone().map(|a| ("after", a)));
        let page: serde_json::Value = http
            .get(&url)
            .bearer_auth("bench-reader")
            .query(&query)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let arrived = Instant::now();
        if page["records"].as_array().is_some_and(|r| !r.is_empty()) {
            let _ = fed.send(arrived);
        }
        after = page["next"].as_str().map(str::to_string).or(after);
    }
}

fn quantile(took: &mut [Duration], q: f64) -> f64 {
    took.sort();
    took.get(((took.len().max(1) - 1) as f64 * q) as usize).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
}
