//! Shared test harness: run the real pipeline in-process on a fresh store (a SQLite file, or
//! a fresh PostgreSQL database when `APPEALFLOW_TEST_PG_URL` is set) and read its records.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use appealflow::config::Config;
use appealflow::replay::{replay, Summary};
use appealflow::store::Store;
use serde_json::Value;

/// A store for one test. PostgreSQL databases are created fresh and dropped on drop.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg_drop: Option<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// The backends this run tests: SQLite always, PostgreSQL when the test env provides it.
pub fn kinds() -> Vec<Kind> {
    let mut kinds = vec![Kind::Sqlite];
    if std::env::var("APPEALFLOW_TEST_PG_URL").is_ok() {
        kinds.push(Kind::Postgres);
    } else if std::env::var("CI").is_ok() {
        panic!("CI must run the store tests on PostgreSQL too: APPEALFLOW_TEST_PG_URL is not set");
    }
    kinds
}

impl TestDb {
    pub async fn new(kind: Kind) -> TestDb {
        match kind {
            Kind::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("state.db").display());
                TestDb { url, _dir: Some(dir), pg_drop: None }
            }
            Kind::Postgres => TestDb::postgres_with("").await,
        }
    }

    /// A store some other part of the test made (and removes).
    pub fn at(url: &str) -> TestDb {
        TestDb { url: url.to_string(), _dir: None, pg_drop: None }
    }

    /// A fresh PostgreSQL database created with these `CREATE DATABASE` options.
    pub async fn postgres_with(options: &str) -> TestDb {
        let admin = std::env::var("APPEALFLOW_TEST_PG_URL").expect("APPEALFLOW_TEST_PG_URL");
        let name = format!("appealflow_test_{}", uuid_like());
        run_admin(&admin, &format!("CREATE DATABASE {name} {options}")).await;
        let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin.clone());
        TestDb { url: format!("{base}/{name}"), _dir: None, pg_drop: Some((admin, name)) }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url, 4).await.expect("store connects and migrates")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.pg_drop.take() {
            // Dropping needs no connection of ours open; run it on a fresh thread and runtime.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(run_admin(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")));
            })
            .join();
        }
    }
}

async fn run_admin(url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to the test PostgreSQL");
    sqlx::Executor::execute(&mut conn, sql).await.expect(sql);
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{}_{}_{}", std::process::id(), nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// One output record, parsed.
#[derive(Debug, Clone)]
pub struct Rec {
    pub line: String,
    pub topic: String,
    pub key: String,
    pub value: Value,
}

impl Rec {
    pub fn kind(&self) -> &str {
        self.value["type"].as_str().unwrap_or("")
    }
}

/// What one replay printed.
pub struct Run {
    pub records: Vec<Rec>,
    pub summary: Summary,
    pub stdout: String,
}

impl Run {
    pub fn events(&self, kind: &str) -> Vec<&Value> {
        self.records
            .iter()
            .filter(|r| r.topic == "appeal.events" && r.kind() == kind)
            .map(|r| &r.value)
            .collect()
    }
    pub fn topic(&self, topic: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r.topic == topic).map(|r| &r.value).collect()
    }
    pub fn caused_by(&self, id: &str) -> Vec<&Value> {
        self.records.iter().filter(|r| r.value["cause"]["id"] == id).map(|r| &r.value).collect()
    }
}

pub fn config(toml: &str) -> Arc<Config> {
    Arc::new(Config::from_toml(toml).expect("test config is valid"))
}

/// Replays `lines` (one input each) on `db` and returns the printed records.
pub async fn replay_lines(config: &Arc<Config>, db: &TestDb, lines: &[String]) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("input.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write input");
    replay_file(config, db, &path).await
}

/// Replays one input file on `db`.
pub async fn replay_file(config: &Arc<Config>, db: &TestDb, path: &std::path::Path) -> Run {
    let store = db.store().await;
    let mut out = Vec::new();
    let summary = replay(config.clone(), store.clone(), &[path.display().to_string()], &mut out, false)
        .await
        .expect("replay succeeds");
    store.close().await;
    let stdout = String::from_utf8(out).expect("utf-8 output");
    Run { records: parse(&stdout), summary, stdout }
}

pub fn parse(stdout: &str) -> Vec<Rec> {
    stdout
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("every output line is JSON");
            Rec {
                line: line.to_string(),
                topic: v["topic"].as_str().expect("topic").to_string(),
                key: v["key"].as_str().expect("key").to_string(),
                value: v["value"].clone(),
            }
        })
        .collect()
}

/// The base config most pipeline tests use.
pub const BASE: &str = include_str!("../fixtures/base.toml");

/// A client message input. `visitor` is the JSON of the visitor object.
pub fn msg(id: &str, channel: &str, at: &str, visitor: &str, text: &str) -> String {
    msg_in("acme", id, channel, at, visitor, text)
}

pub fn msg_in(project: &str, id: &str, channel: &str, at: &str, visitor: &str, text: &str) -> String {
    format!(
        r#"{{"type":"message","message_id":"{id}","project_id":"{project}","channel_id":"{channel}","sent_at":"{at}","visitor":{visitor},"content":{{"kind":"text","text":{text:?}}}}}"#
    )
}

/// A command input; `fields` is the JSON of its type-specific fields without braces.
pub fn cmd(kind: &str, id: &str, at: &str, fields: &str) -> String {
    format!(
        r#"{{"type":"{kind}","command_id":"{id}","project_id":"acme","issued_at":"{at}","operator":{{"id":"op-7","name":"Ivan Petrov"}},{fields}}}"#
    )
}

/// Follows `client.merged` events to the final card of every client id seen.
pub fn final_cards(run: &Run) -> impl Fn(&str) -> String + '_ {
    let mut absorbed_by = std::collections::HashMap::new();
    for e in run.events("client.merged") {
        let survivor = e["survivor_id"].as_str().unwrap().to_string();
        for a in e["absorbed_ids"].as_array().unwrap() {
            absorbed_by.insert(a.as_str().unwrap().to_string(), survivor.clone());
        }
    }
    move |id: &str| {
        let mut id = id.to_string();
        while let Some(next) = absorbed_by.get(&id) {
            id = next.clone();
        }
        id
    }
}

pub mod kafka;

/// The schema the OpenAPI document gives for the answer of `method path` with this status,
/// able to validate on its own (its `$ref`s point into the document's components).
pub fn documented(doc: &Value, method: &str, path: &str, status: u16) -> jsonschema::Validator {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    let schema = &response["content"]["application/json"]["schema"];
    assert!(schema.is_object(), "{method} {path} answers {status} undocumented");
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&root)
        .expect("the schema compiles")
}

/// The committed card `id` lives on (following merges).
pub async fn card(db: &TestDb, id: &str) -> appealflow::model::Client {
    let store = db.store().await;
    let card = store.client(id).await.expect("read card").unwrap_or_else(|| panic!("no card {id}"));
    store.close().await;
    card
}

/// Asserts two record lists are equal, showing only the first difference.
pub fn assert_same(got: &[String], want: &[String], what: &str) {
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at record {}:\n  got:  {}\n  want: {}", i + 1, got[i], want[i]);
    }
    assert_eq!(got.len(), want.len(), "{what}: same records, different counts");
}

/// Groups visitors (`channel:visitor_id`) by the card they ended on: the card of each
/// visitor's last message, followed through every `client.merged`. Every visitor that
/// wrote (a message the DLQ did not take) is in one group.
pub fn visitor_components(run: &Run) -> Vec<Vec<String>> {
    let final_of = final_cards(run);
    let mut last_card: BTreeMap<String, String> = BTreeMap::new();
    for e in run.events("appeal.message_added") {
        let Some(visitor) = e["message"]["visitor_id"].as_str() else { continue };
        let key = format!("{}:{visitor}", e["appeal"]["channel_id"].as_str().unwrap());
        last_card.insert(key, e["client"]["id"].as_str().unwrap().to_string());
    }
    let mut groups: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (visitor, card) in last_card {
        groups.entry(final_of(&card)).or_default().insert(visitor);
    }
    let mut out: Vec<Vec<String>> = groups.into_values().map(|g| g.into_iter().collect()).collect();
    out.sort();
    out
}

/// Asserts two groupings are equal, listing only the groups each side has alone.
pub fn assert_same_groups(got: &[Vec<String>], want: &[Vec<String>]) {
    let only_got: Vec<&Vec<String>> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    let only_want: Vec<&Vec<String>> = want.iter().filter(|g| !got.contains(g)).take(5).collect();
    assert!(
        only_got.is_empty() && only_want.is_empty(),
        "groups differ:\n  only got:  {only_got:?}\n  only want: {only_want:?}"
    );
}
