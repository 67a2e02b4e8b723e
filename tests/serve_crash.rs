//! `appealflow serve` killed with SIGKILL while four gateways post (SPEC "Embedded service":
//! a kill loses nothing that was answered): the binary over a SQLite file, restarted, and
//! everything posted again; then the feed and the cards against a replay of the same inputs.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use appealflow::emit::Topic;
use appealflow::store::{FeedRead, Store};
use common::{assert_same_groups, visitor_components, Rec, Run};
use serde_json::Value;

const TOKENS: &str = r#"
[api]
  [[api.tokens]]
  token = "acme-gateway-1"
  projects = ["acme"]
  ingest = true
"#;

/// Lines per posted body.
const BODY: usize = 10;

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    async fn start(dir: &std::path::Path) -> Serve {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("out.jsonl")).unwrap();
        let err = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("err.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_appealflow"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("config.toml"))
            .arg("--db")
            .arg(format!("sqlite://{}", dir.join("store.db").display()))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .expect("serve starts");
        let serve = Serve { child, base: format!("http://127.0.0.1:{port}/v1") };
        let http = reqwest::Client::new();
        for _ in 0..600 {
            if http.get(format!("{}/health", serve.base)).send().await.is_ok_and(|r| r.status() == 200) {
                return serve;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("serve did not come up: {}", std::fs::read_to_string(dir.join("err.log")).unwrap());
    }
}

/// Posts one client's bodies in order until one fails; the status of each line answered.
async fn post_all(
    base: String,
    bodies: Vec<Vec<(usize, String)>>,
    answered: Arc<AtomicUsize>,
) -> Vec<(usize, String)> {
    let http = reqwest::Client::new();
    let mut out = Vec::new();
    for body in bodies {
        let text: Vec<&str> = body.iter().map(|(_, l)| l.as_str()).collect();
        let sent = http
            .post(format!("{base}/projects/acme/inputs"))
            .bearer_auth("acme-gateway-1")
            .body(text.join("\n"))
            .timeout(Duration::from_secs(60))
            .send()
            .await;
        let Ok(response) = sent else { break };
        let Ok(answer) = response.json::<Value>().await else { break };
        let Some(results) = answer["results"].as_array() else { break };
        for ((i, _), r) in body.iter().zip(results) {
            out.push((*i, r["status"].as_str().unwrap().to_string()));
        }
        answered.fetch_add(1, Ordering::SeqCst);
    }
    out
}

/// The workload's lines split over four gateways by record key (a visitor's lines stay in
/// order on one), in bodies.
fn gateways(lines: &[String], keys: &[String]) -> Vec<Vec<Vec<(usize, String)>>> {
    let mut streams: Vec<Vec<(usize, String)>> = vec![Vec::new(); 4];
    for (i, (line, key)) in lines.iter().zip(keys).enumerate() {
        let slot = key.bytes().fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize)) % 4;
        streams[slot].push((i, line.clone()));
    }
    streams.into_iter().map(|s| s.chunks(BODY).map(<[_]>::to_vec).collect()).collect()
}

async fn post_everything(
    base: &str,
    bodies: &[Vec<Vec<(usize, String)>>],
    answered: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<Vec<(usize, String)>>> {
    bodies.iter().map(|b| tokio::spawn(post_all(base.to_string(), b.clone(), answered.clone()))).collect()
}

/// Every record of the project's feed, oldest first.
async fn feed(store: &Store, topic: Topic) -> Vec<Value> {
    let (mut after, mut out) = (None, Vec::new());
    loop {
        let FeedRead::Page { records, next } = store.feed("acme", topic, after, 1000).await.unwrap() else {
            panic!("the feed is whole");
        };
        if records.is_empty() {
            return out;
        }
        out.extend(records.into_iter().map(|r| serde_json::from_str::<Value>(&r.value).unwrap()));
        after = Some(next);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_serve_loses_nothing_it_answered_and_a_repost_applies_only_the_rest() {
    let workload = appealflow::testkit::generate_with(300, 41, false);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.toml"), format!("{TOKENS}\n{}", appealflow::testkit::CONFIG))
        .unwrap();
    let bodies = gateways(&workload.lines, &workload.keys);
    let total: usize = bodies.iter().map(Vec::len).sum();

    // Killed once about a third of the bodies were answered, while the four still post.
    let mut first = Serve::start(dir.path()).await;
    let answered = Arc::new(AtomicUsize::new(0));
    let posting = post_everything(&first.base, &bodies, &answered).await;
    while answered.load(Ordering::SeqCst) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let mut before: BTreeMap<usize, String> = BTreeMap::new();
    for task in posting {
        before.extend(task.await.unwrap());
    }
    assert!(before.len() < workload.lines.len(), "killed while posting");
    assert!(before.values().any(|s| s == "applied"), "answered before the kill");

    // Restarted over the same file; every body posted again.
    let mut second = Serve::start(dir.path()).await;
    let posting = post_everything(&second.base, &bodies, &Arc::new(AtomicUsize::new(0))).await;
    let mut after: BTreeMap<usize, String> = BTreeMap::new();
    for task in posting {
        after.extend(task.await.unwrap());
    }
    assert_eq!(after.len(), workload.lines.len(), "every line answered after the restart");
    for (i, status) in &before {
        if status == "applied" {
            assert_eq!(
                after[i], "duplicate",
                "line {i} was answered applied before the kill: {}",
                workload.lines[*i]
            );
        }
    }
    assert!(after.values().any(|s| s == "applied"), "the rest applied after the restart");
    eprintln!(
        "answered before the kill: {} of {} lines; applied after the restart: {}",
        before.len(),
        workload.lines.len(),
        after.values().filter(|s| *s == "applied").count()
    );
    sigterm(&second.child);
    assert!(second.child.wait().unwrap().success(), "SIGTERM: exit 0");

    let store_url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = Store::connect_reader(&store_url, 1).await.unwrap();
    let events = feed(&store, Topic::Events).await;
    let ids: Vec<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "no event in the feed twice");
    let printed = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let printed: BTreeSet<String> = printed
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["topic"] == "appeal.events")
        .map(|r| r["value"]["event_id"].as_str().unwrap().to_string())
        .collect();
    let fed: BTreeSet<String> = ids.iter().map(|s| s.to_string()).collect();
    assert_eq!(printed, fed, "what was committed was printed, across the kill, and nothing else");

    let records = events
        .into_iter()
        .map(|value| Rec { line: String::new(), topic: "appeal.events".into(), key: String::new(), value })
        .collect();
    let run = Run { records, summary: Default::default(), stdout: String::new() };
    let mut numbers: Vec<i64> =
        run.events("appeal.opened").iter().map(|o| o["appeal"]["number"].as_i64().unwrap()).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>(), "appeal numbers unique and gapless");
    assert_same_groups(&visitor_components(&run), &workload.expected.components);

    // The same inputs replayed in the order serve committed them give the same feed and the
    // same cards: serve's output depends on the order it applied inputs in, not on its batches,
    // its kill or its restart.
    let order = commit_order(&workload.lines, &run);
    let config = common::config(&format!("{TOKENS}\n{}", appealflow::testkit::CONFIG));
    let replayed_db = common::TestDb::new(common::Kind::Sqlite).await;
    let replayed = common::replay_lines(&config, &replayed_db, &order).await;
    for (topic, name) in [(Topic::Events, "appeal.events"), (Topic::Outbound, "appeal.outbound")] {
        let fed: Vec<String> = feed(&store, topic).await.iter().map(Value::to_string).collect();
        let want: Vec<String> = replayed.topic(name).iter().map(|v| v.to_string()).collect();
        common::assert_same(&fed, &want, &format!("{name}: the feed against a replay in commit order"));
    }
    let served_db = common::TestDb::at(&store_url);
    let final_of = common::final_cards(&run);
    let ids: BTreeSet<String> =
        run.events("client.created").iter().map(|e| final_of(e["client"]["id"].as_str().unwrap())).collect();
    for id in ids {
        let (served, replayed) = (common::card(&served_db, &id).await, common::card(&replayed_db, &id).await);
        assert_eq!(served, replayed, "card {id}: serve's against the replay's");
    }
}

/// The lines in the order serve applied them: by the first event each caused (an input's
/// events carry its id as their cause); lines that caused none keep their order, last.
fn commit_order(lines: &[String], run: &Run) -> Vec<String> {
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for (i, e) in run.records.iter().enumerate() {
        first.entry(e.value["cause"]["id"].as_str().unwrap().to_string()).or_insert(i);
    }
    let cause = |line: &String| {
        let v: Value = serde_json::from_str(line).unwrap_or(Value::Null);
        match v["type"].as_str() {
            Some("message") => v["message_id"].as_str().unwrap_or_default().to_string(),
            Some("status") => format!(
                "status:{}:{}",
                v["message_id"].as_str().unwrap_or_default(),
                v["status"].as_str().unwrap_or_default()
            ),
            _ => v["command_id"].as_str().unwrap_or_default().to_string(),
        }
    };
    let mut ordered: Vec<(usize, usize, &String)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (first.get(&cause(l)).copied().unwrap_or(usize::MAX), i, l))
        .collect();
    ordered.sort();
    ordered.into_iter().map(|(_, _, l)| l.clone()).collect()
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
}
