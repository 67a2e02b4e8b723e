//! The operations endpoint over real HTTP: health and Prometheus metrics.

use std::time::Duration;

use appealflow::pipeline::Stats;
use appealflow::telemetry::{self, Readiness, Timings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut response))
        .await
        .unwrap()
        .unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn readiness_follows_the_service_and_metrics_expose_batch_counts() {
    let ready = Readiness::default();
    let addr = telemetry::serve("127.0.0.1:0", telemetry::recorder(), ready.clone()).await.unwrap();
    assert_eq!(get(addr, "/health/live").await.0, 200);
    assert_eq!(get(addr, "/health/ready").await.0, 503);
    ready.set(true);
    assert_eq!(get(addr, "/health/ready").await.0, 200);

    let mut stats = Stats { inputs: 3, applied: 2, dlq: 1, ..Stats::default() };
    stats.events.insert("client.merged".into(), 1);
    telemetry::batch_committed(&stats, Timings::default());
    telemetry::consumer_lag("inbound.messages", 3, 42);
    let (status, body) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"appealflow_inputs_total{outcome="dlq"} 1"#), "{body}");
    assert!(body.contains("appealflow_merges_total 1"));
    assert!(body.contains(r#"appealflow_consumer_lag{topic="inbound.messages",partition="3"} 42"#));
    assert!(body.contains("appealflow_stage_seconds_bucket"));
}

#[test]
fn logs_written_to_a_pipe_are_plain_text_without_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .arg("replay")
        .arg("--config")
        .arg(root.join("config/example.toml"))
        .arg("--db")
        .arg(format!("sqlite://{}", dir.path().join("state.db").display()))
        .arg(root.join("examples/sample.jsonl"))
        .output()
        .expect("appealflow runs");
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("input sent to the DLQ"), "the sample's bad lines are logged: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "no ANSI escape codes: {stderr}");
}

#[test]
fn the_readme_lists_every_metric_the_code_registers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut names = std::collections::BTreeSet::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for (at, _) in text.match_indices("\"appealflow_") {
                    let name: String = text[at + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    names.insert(name);
                }
            }
        }
    }
    assert!(names.len() >= 10, "found the metrics: {names:?}");
    let missing: Vec<&String> = names.iter().filter(|n| !readme.contains(&format!("`{n}`"))).collect();
    assert!(missing.is_empty(), "README's metrics list misses {missing:?}");
}
