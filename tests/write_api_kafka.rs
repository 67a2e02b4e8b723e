//! The write API end to end (SPEC "Write API"): `run` with `[api] listen` over the real
//! broker (tansu) and PostgreSQL. Every command type goes in over HTTP; each answer, the
//! events on the topic and a read of the card right after each `200` are checked; two
//! operators race on one card; the broker stops (`503`) and comes back, and nothing is lost
//! or applied twice. One test in its own binary: it restarts the shared broker.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::kafka::{self, Topics};
use common::*;
use serde_json::{json, Value};

const TOKENS: &str = r#"
[api]
listen = "LISTEN"
  [[api.tokens]]
  token = "acme-writer-1"
  projects = ["acme"]
  write = true
  operator = { id = "op-1", name = "Olga" }
  [[api.tokens]]
  token = "acme-writer-2"
  projects = ["acme"]
  write = true
  operator = { id = "op-2", name = "Pavel" }
"#;

const SCENARIO: &str = r#"
  [[projects.scenarios]]
  id = "collect-phone"
  start = "ask-phone"
    [[projects.scenarios.blocks]]
    id = "ask-phone"
    type = "ask"
    text = "Please send your mobile phone number"
    expect = "phone"
    save_to = "phone"
    next = "done"
    [[projects.scenarios.blocks]]
    id = "done"
    type = "end"
"#;

/// BASE with a scenario for acme and the API on `listen`.
fn toml(listen: &str) -> String {
    let base =
        BASE.replace("[[projects]]\nid = \"globex\"", &format!("{SCENARIO}\n[[projects]]\nid = \"globex\""));
    format!("{base}\n{}", TOKENS.replace("LISTEN", listen))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn restart_broker_after(down: impl FnOnce()) {
    let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/test-env.sh");
    assert!(Command::new("bash").arg(&script).arg("stop").status().unwrap().success());
    down();
    let start = Command::new("bash").arg(&script).env("APPEALFLOW_TANSU_KEEP_STATE", "1").output().unwrap();
    assert!(start.status.success(), "broker restarted: {}", String::from_utf8_lossy(&start.stderr));
}

struct Api {
    base: String,
    http: reqwest::Client,
}

#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Api {
    async fn post(&self, token: &str, command: &Value) -> Answer {
        let url = format!("{}/commands?wait=20s", self.base);
        let response =
            self.http.post(url).bearer_auth(token).json(command).send().await.expect("API answers");
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
        Answer { status, retry_after, body: response.json().await.expect("a JSON answer") }
    }

    async fn get(&self, path: &str) -> Value {
        let response =
            self.http.get(format!("{}{path}", self.base)).bearer_auth("acme-writer-1").send().await;
        let response = response.expect("API answers");
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    async fn wait_until_up(&self) {
        let started = Instant::now();
        while self
            .http
            .get(format!("{}/clients?q=x", self.base))
            .bearer_auth("acme-writer-1")
            .send()
            .await
            .is_err()
        {
            assert!(started.elapsed() < Duration::from_secs(60), "the API never listened");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Everything the test sent and what each answer said.
#[derive(Default)]
struct Ledger {
    answers: BTreeMap<String, Answer>,
    commands: BTreeMap<String, Value>,
}

impl Ledger {
    /// Submits `command` as `cmd-N`, asserts the status, and for a `200` reads the card
    /// at once: the read shows the revision the answer gave.
    async fn submit(&mut self, api: &Api, mut command: Value, status: u16) -> Value {
        let id = format!("cmd-{}", self.answers.len() + 1);
        command["command_id"] = json!(id);
        let answer = api.post("acme-writer-1", &command).await;
        assert_eq!(answer.status, status, "{}: {}", command["type"], answer.body);
        assert_eq!(answer.body["command_id"], id.as_str());
        if status == 200 {
            assert_eq!(answer.body["status"], "applied");
            assert!(!answer.body["events"].as_array().unwrap().is_empty(), "{}", answer.body);
            if let Some(card) = answer.body["client"]["id"].as_str() {
                let read = api.get(&format!("/clients/{card}")).await;
                assert_eq!(read["revision"], answer.body["revision"], "read your writes: {read}");
            }
        }
        self.commands.insert(id.clone(), command);
        self.answers.insert(id, answer.clone());
        answer.body
    }
}

fn at(offset_minutes: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::minutes(offset_minutes))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_over_http_is_answered_read_back_and_survives_the_broker_going_down() {
    let Some(brokers) = kafka::brokers() else { return };
    let topics = Topics::random();
    topics.create(&brokers, 1).await;
    let db = TestDb::new(Kind::Postgres).await;
    let port = free_port();
    // A session that outlives the outage: the member rejoins no group when the broker is
    // back (tansu 0.6 cannot take a group rejoined over its kept state).
    let text = topics.config_toml(&brokers, &db.url, &toml(&format!("127.0.0.1:{port}")));
    let text = text.replace("\"6000\"", "\"45000\"").replace("\"15000\"", "\"60000\"");
    let config = std::sync::Arc::new(appealflow::config::Config::from_toml(&text).expect("config"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(appealflow::run::run(config, db.store().await, async move {
        let _ = stopped.await;
    }));
    let api = Api { base: format!("http://127.0.0.1:{port}/v1/projects/acme"), http: reqwest::Client::new() };
    api.wait_until_up().await;

    let inputs = [
        msg("m1", "acme-tg", &at(-10), r#"{"id":"t1","name":"Anna","phone":"+7 999 111-22-33"}"#, "hello"),
        msg("m2", "acme-wa", &at(-9), r#"{"id":"79995556677","name":"Boris"}"#, "hi there"),
    ];
    kafka::produce(&brokers, &topics.inbound, &inputs, &["acme".into(), "acme".into()]).await;
    kafka::wait_until_applied(&db.url, &topics.inbound, 2, Duration::from_secs(60)).await;
    let search = api.get("/clients?q=Anna").await;
    let anna = search["clients"][0]["client"]["id"].as_str().unwrap().to_string();
    assert_eq!(search["clients"][0]["client"]["revision"], 1, "search results show the revision");
    let boris = api.get("/clients?q=Boris").await["clients"][0]["client"]["id"].as_str().unwrap().to_string();
    assert_eq!(api.get("/appeals/1").await["client"]["id"], anna.as_str());
    let a = json!({"client_id": anna});
    let mut ledger = Ledger::default();

    // Every command type, on Anna's card and appeal 1, then Boris's appeal 2.
    let revision = api.get(&format!("/clients/{anna}")).await["revision"].as_u64().unwrap();
    let renamed = ledger
        .submit(&api, json!({"type": "rename_client", "client": a, "name": "Anna Petrova", "expected_revision": revision}), 200)
        .await;
    assert_eq!(renamed["revision"], revision + 1);
    assert_eq!(api.get(&format!("/clients/{anna}")).await["name"], "Anna Petrova");
    let email = json!({"client": a, "contact_type": "email"});
    let with = |base: &Value, more: Value| {
        let mut v = base.clone();
        v.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        v
    };
    ledger.submit(&api, with(&email, json!({"type": "add_contact", "value": "anna@example.com"})), 200).await;
    ledger
        .submit(
            &api,
            with(
                &email,
                json!({"type": "edit_contact", "old_value": "anna@example.com", "value": "a.p@example.com"}),
            ),
            200,
        )
        .await;
    let card = api.get(&format!("/clients/{anna}")).await;
    assert_eq!(card["contacts"]["email"][0]["value"], "a.p@example.com", "{card}");
    ledger
        .submit(&api, with(&email, json!({"type": "remove_contact", "value": "a.p@example.com"})), 200)
        .await;
    assert!(api.get(&format!("/clients/{anna}")).await["contacts"].get("email").is_none());
    ledger
        .submit(
            &api,
            json!({"type": "set_client_field", "client": a, "field": "contract_number", "value": "C-77"}),
            200,
        )
        .await;
    ledger.submit(&api, json!({"type": "comment_client", "client": a, "text": "Prefers calls"}), 200).await;
    ledger.submit(&api, json!({"type": "tag_client", "client": a, "tag": "vip"}), 200).await;
    let twice = ledger.submit(&api, json!({"type": "tag_client", "client": a, "tag": "vip"}), 422).await;
    assert!(twice["reason"].as_str().unwrap().contains("already has tag"), "{twice}");
    ledger
        .submit(&api, json!({"type": "identify_client", "appeal_number": 1, "identifier": "email", "value": "anna@corp.example"}), 200)
        .await;
    ledger
        .submit(&api, json!({"type": "comment_appeal", "appeal_number": 1, "text": "Card blocked"}), 200)
        .await;
    ledger.submit(&api, json!({"type": "tag_appeal", "appeal_number": 1, "tag": "cards"}), 200).await;
    ledger.submit(&api, json!({"type": "set_category", "appeal_number": 1, "category": "cards"}), 200).await;
    let assigned = ledger
        .submit(&api, json!({"type": "assign_appeal", "appeal_number": 1, "group": "first-line", "operator_id": "op-1"}), 200)
        .await;
    assert_eq!(assigned["appeal"]["operator_id"], "op-1", "{assigned}");
    assert_eq!(api.get("/appeals/1").await["operator_id"], "op-1");
    ledger
        .submit(
            &api,
            json!({"type": "send_outbound", "client": a, "channel_id": "acme-tg", "text": "We are on it"}),
            200,
        )
        .await;
    ledger
        .submit(
            &api,
            json!({"type": "start_scenario", "appeal_number": 2, "scenario_id": "collect-phone"}),
            200,
        )
        .await;
    ledger.submit(&api, json!({"type": "close_appeal", "appeal_number": 1}), 200).await;
    let created = ledger
        .submit(&api, json!({"type": "create_client", "name": "Carl", "contacts": [{"contact_type": "phone", "value": "+7 999 333-44-55"}]}), 200)
        .await;
    let carl = created["client"]["id"].as_str().unwrap().to_string();
    assert_eq!(api.get(&format!("/clients/{carl}")).await["name"], "Carl");
    let (ra, rb) = (
        api.get(&format!("/clients/{anna}")).await["revision"].clone(),
        api.get(&format!("/clients/{boris}")).await["revision"].clone(),
    );
    let stale_merge = json!({"type": "merge_clients", "target": a, "source": {"client_id": boris},
        "target_revision": ra, "source_revision": rb.as_u64().unwrap() + 5});
    let refused = ledger.submit(&api, stale_merge, 409).await;
    assert_eq!(refused["error"]["code"], "stale_revision");
    let merge = json!({"type": "merge_clients", "target": a, "source": {"client_id": boris},
        "target_revision": ra, "source_revision": rb, "keep_name_from": "target"});
    let merged = ledger.submit(&api, merge, 200).await;
    assert!(merged["events"].as_array().unwrap().iter().any(|e| e["type"] == "client.merged"), "{merged}");
    assert_eq!(
        api.get(&format!("/clients/{boris}")).await["id"],
        anna.as_str(),
        "the absorbed id answers with Anna"
    );
    let merges = api.get(&format!("/clients/{anna}/merges")).await;
    let entry = merges["merges"].as_array().unwrap().iter().find(|m| m["by"] == "operator").unwrap().clone();
    assert_eq!(entry["splittable"], true, "{entry}");
    let undo = json!({"type": "split_client", "client": a, "merge_id": entry["merge_id"]});
    let split = ledger.submit(&api, undo, 200).await;
    assert!(split["events"].as_array().unwrap().iter().any(|e| e["type"] == "client.split"), "{split}");
    assert_eq!(api.get(&format!("/clients/{boris}")).await["id"], boris.as_str(), "Boris is a card again");
    let blocked = api.get(&format!("/clients/{anna}")).await["blocked_merges"].clone();
    assert_eq!(blocked, json!([boris]));
    let allow = json!({"type": "allow_merge", "client": a, "other": {"client_id": boris}});
    ledger.submit(&api, allow, 200).await;
    assert_eq!(api.get(&format!("/clients/{anna}")).await["blocked_merges"], json!([]));

    let kinds: BTreeSet<String> =
        ledger.commands.values().map(|c| c["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(kinds.len(), appealflow::decode::COMMAND_TYPES.len(), "every command type: {kinds:?}");

    // Two operators rename the same card against the same revision: one wins.
    let revision = api.get(&format!("/clients/{carl}")).await["revision"].clone();
    let race = |token: &'static str, name: &str| {
        let body = json!({"type": "rename_client", "client": {"client_id": carl}, "name": name,
            "expected_revision": revision, "command_id": format!("race-{token}")});
        let (http, base) = (api.http.clone(), api.base.clone());
        async move { Api { base, http }.post(token, &body).await }
    };
    let (one, two) = tokio::join!(race("acme-writer-1", "Carl I"), race("acme-writer-2", "Carl II"));
    let mut statuses = [one.status, two.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} / {}", one.body, two.body);
    let loser = if one.status == 409 { &one } else { &two };
    assert_eq!(loser.body["revision"], revision.as_u64().unwrap() + 1, "the 409 gives the current revision");

    // The broker goes down: a command is refused with Retry-After, nothing half-done.
    let tag = json!({"type": "tag_client", "client": a, "tag": "while-down", "command_id": "during-outage"});
    let mut refused = None;
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        restart_broker_after(|| refused = Some(handle.block_on(api.post("acme-writer-1", &tag))));
    });
    let refused = refused.unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.retry_after.as_deref(), Some("2"));
    // Sent again under its id as the answer says, it is applied once.
    let started = Instant::now();
    let applied = loop {
        let answer = api.post("acme-writer-1", &tag).await;
        if answer.status != 503 {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(90), "the command path never came back");
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    assert_eq!(applied.status, 200, "{}", applied.body);
    ledger.answers.insert("during-outage".into(), applied);

    // Every earlier command sent again: its first answer, nothing applied twice.
    for (id, command) in &ledger.commands {
        let again = api.post("acme-writer-1", command).await;
        assert_eq!(again.body, ledger.answers[id].body, "{id} again");
    }
    let card = api.get(&format!("/clients/{anna}")).await;
    assert_eq!(card["tags"], json!(["vip", "while-down"]), "{card}");
    assert_eq!(card["comments"][0]["text"], "Prefers calls", "{card}");

    // On the topic: each command's events, each once (after the relay's at-least-once).
    let _ = stop.send(());
    run.await.unwrap().expect("run ends cleanly");
    let records = kafka::read_all_async(&brokers, &topics).await;
    let mut by_command: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.topic == topics.events && r.value["cause"]["kind"] == "command") {
        let id = r.value["cause"]["id"].as_str().unwrap().to_string();
        by_command.entry(id).or_default().insert(format!("{} {}", r.value["event_id"], r.value["type"]));
    }
    for (id, answer) in &ledger.answers {
        let answered: BTreeSet<String> = answer.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{} {}", e["event_id"], e["type"]))
            .collect();
        assert_eq!(
            by_command.remove(id).unwrap_or_default(),
            answered,
            "{id}: the topic holds what it answered"
        );
    }
    assert_eq!(by_command.keys().filter(|k| !k.starts_with("race-")).count(), 0, "{by_command:?}");
}
