//! The read API (SPEC "Read API") over a replayed stream whose truth the test knows, on
//! SQLite and PostgreSQL, through real HTTP: cards with display and normalised values, ids of
//! absorbed cards, timelines paged by 2, merge ledgers, tenancy, bad input, and a card
//! committed while the server runs.

mod common;

use std::sync::Arc;

use appealflow::config::Config;
use appealflow::store::Store;
use common::{config, kinds, msg, replay_lines, TestDb, BASE};
use serde_json::Value;

const TOKENS: &str = r#"
[api]
  [[api.tokens]]
  token = "acme-token-1"
  projects = ["acme"]
  [[api.tokens]]
  token = "globex-token"
  projects = ["globex"]
"#;

fn api_config() -> Arc<Config> {
    config(&format!("{BASE}\n{TOKENS}"))
}

/// Minutes after the stream's start.
fn t(min: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap();
    (base + chrono::Duration::minutes(min)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

const DAY: i64 = 24 * 60;

/// Anna writes on Telegram on three days (three appeals: each earlier one goes idle), then on
/// WhatsApp with the same phone: that card is absorbed by hers.
fn stream() -> Vec<String> {
    let tg = r#"{"id":"t1","name":"Anna Petrova","phone":"8 (999) 111-22-33"}"#;
    vec![
        msg("m1", "acme-tg", &t(0), tg, "hello"),
        msg("m2", "acme-tg", &t(2 * DAY), r#"{"id":"t1"}"#, "me again"),
        msg("m3", "acme-tg", &t(4 * DAY), r#"{"id":"t1"}"#, "and again"),
        msg(
            "m4",
            "acme-wa",
            &t(4 * DAY + 5),
            r#"{"id":"79991112233","phone":"+79991112233"}"#,
            "on WhatsApp",
        ),
    ]
}

struct Server {
    base: String,
    http: reqwest::Client,
}

impl Server {
    async fn start(config: Arc<Config>, db: &TestDb) -> Server {
        let store = Store::connect_reader(&db.url, 2).await.expect("reader connects");
        let addr = appealflow::api::serve("127.0.0.1:0", config, store, Default::default())
            .await
            .expect("API listens");
        Server { base: format!("http://{addr}/v1"), http: reqwest::Client::new() }
    }

    async fn get(&self, token: Option<&str>, path: &str) -> (u16, Value) {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("server answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("every answer is JSON");
        (status, body)
    }

    async fn acme(&self, path: &str) -> Value {
        let (status, body) = self.get(Some("acme-token-1"), &format!("/projects/acme{path}")).await;
        assert_eq!(status, 200, "{path}: {body}");
        body
    }
}

/// Anna's stream replayed on a fresh store and served: the store (kept for the test's
/// length), the server, her card, the card it absorbed, and what the replay printed.
struct Served {
    db: TestDb,
    server: Server,
    survivor: String,
    absorbed: String,
    run: common::Run,
}

async fn serve_stream(config: &Arc<Config>, kind: common::Kind) -> Served {
    let db = TestDb::new(kind).await;
    let run = replay_lines(config, &db, &stream()).await;
    let survivor = ids(&run, "client.merged", "survivor_id")[0].clone();
    let absorbed = run.events("client.merged")[0]["absorbed_ids"][0].as_str().unwrap().to_string();
    let server = Server::start(config.clone(), &db).await;
    Served { db, server, survivor, absorbed, run }
}

/// The client id of the events of one type, in order.
fn ids(run: &common::Run, kind: &str, field: &str) -> Vec<String> {
    run.events(kind).iter().map(|e| e[field].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_card_shows_its_values_visitors_and_what_it_absorbed_and_an_absorbed_id_answers_with_it() {
    let config = api_config();
    for kind in kinds() {
        let Served { db: _db, server, survivor, absorbed, .. } = serve_stream(&config, kind).await;

        let card = server.acme(&format!("/clients/{survivor}")).await;
        assert_eq!(card["name"], "Anna Petrova");
        assert_eq!(card["contacts"]["phone"][0]["value"], "+79991112233");
        assert_eq!(card["contacts"]["phone"][0]["display"], "8 (999) 111-22-33");
        assert_eq!(card["contacts"]["phone"][0]["source"], "gateway");
        let channels: Vec<&str> = card["technical"]["visitors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["channel_id"].as_str().unwrap())
            .collect();
        assert_eq!(channels, ["acme-tg", "acme-wa"]);
        let wa = &card["technical"]["visitors"][1];
        assert_eq!(wa["last_client_message_at"], t(4 * DAY + 5));
        assert!(
            wa["reply_window"]["template_only"].as_bool().unwrap(),
            "days ago: templates only on WhatsApp"
        );
        assert_eq!(card["absorbed_ids"], serde_json::json!([absorbed]));
        assert!(card.get("resolved_from").is_none());

        let via_absorbed = server.acme(&format!("/clients/{absorbed}")).await;
        assert_eq!(via_absorbed["id"], survivor.as_str());
        assert_eq!(via_absorbed["resolved_from"], absorbed.as_str());
    }
}

#[tokio::test]
async fn the_timeline_pages_every_appeal_of_the_card_and_of_what_it_absorbed_newest_first() {
    let config = api_config();
    for kind in kinds() {
        let Served { db: _db, server, survivor, .. } = serve_stream(&config, kind).await;

        let mut numbers = Vec::new();
        let mut path = format!("/clients/{survivor}/timeline?limit=2");
        loop {
            let page = server.acme(&path).await;
            let appeals = page["appeals"].as_array().unwrap();
            assert!(appeals.len() <= 2);
            numbers.extend(appeals.iter().map(|a| a["number"].as_i64().unwrap()));
            match page["next"].as_str() {
                Some(next) => path = format!("/clients/{survivor}/timeline?limit=2&before={next}"),
                None => break,
            }
        }
        assert_eq!(numbers, [4, 3, 2, 1], "three on Telegram, one on the absorbed WhatsApp card");
        let first = server.acme(&format!("/clients/{survivor}/timeline")).await;
        assert_eq!(first["appeals"][3]["status"], "closed", "the first one went idle");
        assert_eq!(first["appeals"][0]["channel_id"], "acme-wa");
    }
}

#[tokio::test]
async fn the_merge_ledger_says_who_joined_by_which_rule_on_which_value() {
    let config = api_config();
    for kind in kinds() {
        let Served { db: _db, server, survivor, .. } = serve_stream(&config, kind).await;
        let ledger = server.acme(&format!("/clients/{survivor}/merges")).await;
        let merges = ledger["merges"].as_array().unwrap();
        assert_eq!(merges.len(), 1, "{ledger}");
        assert_eq!(merges[0]["by"], "rule");
        assert_eq!(merges[0]["rule_id"], "by-phone");
        assert_eq!(merges[0]["at"], t(4 * DAY + 5));
        assert_eq!(merges[0]["matched"], serde_json::json!([{"field": "phone", "value": "+79991112233"}]));
    }
}

#[tokio::test]
async fn tokens_read_only_their_projects_and_bad_input_is_a_400_never_a_500() {
    let config = api_config();
    for kind in kinds() {
        let Served { db: _db, server, run, .. } = serve_stream(&config, kind).await;
        let card = run.events("client.created")[0]["client"]["id"].as_str().unwrap().to_string();
        let path = format!("/projects/acme/clients/{card}");
        assert_eq!(server.get(None, &path).await.0, 401);
        assert_eq!(server.get(Some("wrong-token-1"), &path).await.0, 401);
        let (status, body) = server.get(Some("globex-token"), &path).await;
        assert_eq!((status, &body["error"]["code"]), (404, &Value::from("not_found")), "{body}");
        assert_eq!(server.get(Some("acme-token-1"), "/projects/nope/clients/x").await.0, 404);
        for bad in [
            format!("/projects/acme/clients/{card}/timeline?limit=0"),
            format!("/projects/acme/clients/{card}/timeline?limit=101"),
            format!("/projects/acme/clients/{card}/timeline?before=not-a-cursor"),
            format!("/projects/acme/clients/{card}/timeline?colour=red"),
            format!("/projects/acme/clients/{}", "x".repeat(600)),
        ] {
            let (status, body) = server.get(Some("acme-token-1"), &bad).await;
            assert_eq!(status, 400, "{bad}: {body}");
            assert_eq!(body["error"]["code"], "bad_request");
        }
        for unknown in
            ["/projects/acme/clients/x'%20OR%20'1'='1", "/projects/acme/clients/%25", "/nothing/here"]
        {
            assert_eq!(server.get(Some("acme-token-1"), unknown).await.0, 404, "{unknown}");
        }
    }
}

#[tokio::test]
async fn a_card_committed_while_the_server_runs_is_served_at_once() {
    let config = api_config();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        replay_lines(&config, &db, &stream()[..1]).await;
        let server = Server::start(config.clone(), &db).await;
        let later = msg("m9", "acme-tg", &t(10), r#"{"id":"t9","name":"Boris"}"#, "hi");
        let run = replay_lines(&config, &db, &[later]).await;
        let boris = run.events("client.created")[0]["client"]["id"].as_str().unwrap().to_string();
        let card = server.acme(&format!("/clients/{boris}")).await;
        assert_eq!(card["name"], "Boris");
    }
}

#[tokio::test]
async fn an_appeal_lists_its_messages_in_order_paged_with_the_client_and_system_messages() {
    let config = api_config();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = vec![
            msg("m1", "acme-tg", &t(0), r#"{"id":"t1","name":"Anna Petrova"}"#, "one"),
            msg("m2", "acme-tg", &t(1), r#"{"id":"t1"}"#, "two"),
            common::cmd(
                "send_outbound",
                "c1",
                &t(2),
                r#""client":{"channel_id":"acme-tg","visitor_id":"t1"},"channel_id":"acme-tg","text":"three""#,
            ),
            msg("m3", "acme-tg", &t(3), r#"{"id":"t1"}"#, "four"),
        ];
        let run = replay_lines(&config, &db, &lines).await;
        assert!(run.events("command.rejected").is_empty(), "{}", run.stdout);
        let server = Server::start(config.clone(), &db).await;

        let whole = server.acme("/appeals/1").await;
        assert_eq!(whole["number"], 1);
        assert_eq!(whole["client"]["name"], "Anna Petrova");
        let ids = |list: &Value| -> Vec<String> {
            list.as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
        };
        let appended: Vec<String> = run
            .events("appeal.message_added")
            .iter()
            .map(|e| e["message"]["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids(&whole["messages"]), appended, "in the order they were appended");
        let texts: Vec<&str> =
            whole["messages"].as_array().unwrap().iter().filter_map(|m| m["text"].as_str()).collect();
        assert_eq!(
            texts,
            ["one", "Appeal assigned to group first-line", "two", "three", "four"],
            "system messages too"
        );
        let by_text = |text: &str| {
            whole["messages"].as_array().unwrap().iter().find(|m| m["text"] == text).unwrap().clone()
        };
        assert_eq!(by_text("one")["author"], "t1", "a client message names its visitor");
        assert_eq!(by_text("three")["author_kind"], "operator");
        assert!(whole["next"].is_null());

        let mut seen = Vec::new();
        let mut path = "/appeals/1?limit=2".to_string();
        loop {
            let page = server.acme(&path).await;
            seen.extend(page["messages"].as_array().unwrap().iter().map(|m| m["id"].clone()));
            match page["next"].as_str() {
                Some(next) => path = format!("/appeals/1?limit=2&after={next}"),
                None => break,
            }
        }
        let all: Vec<Value> = whole["messages"].as_array().unwrap().iter().map(|m| m["id"].clone()).collect();
        assert_eq!(seen, all, "pages of 2 add up to the whole appeal");

        for (path, status) in [
            ("/appeals/99", 404),
            ("/appeals/one", 400),
            ("/appeals/1?limit=501", 400),
            ("/appeals/1?after=x", 400),
        ] {
            let (got, body) = server.get(Some("acme-token-1"), &format!("/projects/acme{path}")).await;
            assert_eq!(got, status, "{path}: {body}");
        }
    }
}

/// Who the search found for `q`: (client name, how the first match matched).
async fn found(server: &Server, q: &str) -> Vec<(String, String)> {
    let path = format!("/clients?q={}", urlencode(q));
    let body = server.acme(&path).await;
    body["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["client"]["name"].as_str().unwrap_or("").to_string(),
                r["matched"][0]["how"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn urlencode(q: &str) -> String {
    q.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[tokio::test]
async fn search_finds_phones_in_any_spelling_digit_tails_emails_typos_and_cyrillic_names() {
    let config = api_config();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = vec![
            msg(
                "m1",
                "acme-tg",
                &t(0),
                r#"{"id":"t1","name":"Alfred Hitchcock","phone":"+7 (999) 123-45-67"}"#,
                "hi",
            ),
            msg(
                "m2",
                "acme-tg",
                &t(1),
                r#"{"id":"t2","name":"Дмитрий Орлов","email":"D.Orlov@Example.com"}"#,
                "привет",
            ),
            msg("m3", "acme-tg", &t(2), r#"{"id":"t3","name":"Alfreda Brown"}"#, "hi"),
            msg("m4", "acme-wa", &t(3), r#"{"id":"79991234567","phone":"79991234567"}"#, "same phone"),
        ];
        let run = replay_lines(&config, &db, &lines).await;
        let absorbed = run.events("client.merged")[0]["absorbed_ids"][0].as_str().unwrap().to_string();
        let server = Server::start(config.clone(), &db).await;

        let alfred = ("Alfred Hitchcock".to_string(), "exact".to_string());
        assert_eq!(found(&server, "8 (999) 123-45-67").await, std::slice::from_ref(&alfred));
        assert_eq!(found(&server, "+79991234567").await, std::slice::from_ref(&alfred));
        assert_eq!(found(&server, "4567").await[0].1, "suffix");
        assert_eq!(
            found(&server, "D.ORLOV@example.COM").await,
            [("Дмитрий Орлов".to_string(), "exact".to_string())]
        );
        let start = found(&server, "d.orl").await;
        assert_eq!(
            start,
            [("Дмитрий Орлов".to_string(), "prefix".to_string())],
            "an e-mail's beginning, no @"
        );
        assert_eq!(found(&server, "d.orlov@").await[0].1, "prefix");
        assert_eq!(found(&server, "орлов").await[0].0, "Дмитрий Орлов", "Cyrillic, case-insensitive");
        assert_eq!(found(&server, "дмит").await[0].1, "prefix");
        assert_eq!(found(&server, "alfrd hitch").await[0].0, "Alfred Hitchcock", "a typo and a word prefix");
        let both = found(&server, "alfred").await;
        assert_eq!(both[0], alfred, "the exact word first, then the longer one");
        assert_eq!(both[1].0, "Alfreda Brown");
        assert_eq!(found(&server, "79991234567").await.len(), 1, "the visitor id and the phone are one card");
        assert_eq!(found(&server, &absorbed).await.len(), 0, "absorbed cards are never listed");

        for bad in ["", "%20%20", &"x".repeat(257), "a%00b"] {
            let (status, body) =
                server.get(Some("acme-token-1"), &format!("/projects/acme/clients?q={bad}")).await;
            assert_eq!(status, 400, "{bad:?}: {body}");
        }
        let (status, _) = server.get(Some("acme-token-1"), "/projects/acme/clients?q=anna&limit=21").await;
        assert_eq!(status, 400);
        let (status, body) = server.get(Some("globex-token"), "/projects/acme/clients?q=alfred").await;
        assert_eq!(status, 404, "{body}");
    }
}

#[tokio::test]
async fn a_store_written_before_the_search_index_gets_it_built_when_the_writer_starts() {
    let config = api_config();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = vec![msg("m1", "acme-tg", &t(0), r#"{"id":"t1","name":"Anna Petrova"}"#, "hi")];
        replay_lines(&config, &db, &lines).await;
        // What a store of the release before looks like: no terms, no mark.
        let store = db.store().await;
        store.forget_search_index().await.unwrap();
        store.close().await;
        drop(store); // releases SQLite's writer lock
        let server = Server::start(config.clone(), &db).await;
        assert!(found(&server, "anna").await.is_empty());
        db.store().await.close().await; // the writer starts
        assert_eq!(found(&server, "anna").await[0].0, "Anna Petrova");
    }
}

#[tokio::test]
async fn every_answer_of_every_endpoint_matches_the_openapi_document() {
    let config = api_config();
    for kind in kinds() {
        let Served { db: _db, server, survivor, absorbed, .. } = serve_stream(&config, kind).await;
        let (status, doc) = server.get(None, "/openapi.json").await;
        assert_eq!(status, 200, "the document needs no token");
        assert_eq!(doc["openapi"], "3.1.0");
        jsonschema::draft202012::meta::validate(&doc["components"]["schemas"]["CardView"])
            .expect("a JSON Schema");

        let card = "/v1/projects/{project}/clients/{client_id}";
        let wrong = serde_json::json!({"id": 7, "name": "x"});
        assert!(
            !common::documented(&doc, "get", card, 200).is_valid(&wrong),
            "the document can tell a wrong answer"
        );
        let cases: Vec<(&str, Option<&str>, String)> = vec![
            ("/v1/health", None, "/health".into()),
            (
                "/v1/projects/{project}/clients",
                Some("acme-token-1"),
                "/projects/acme/clients?q=anna%20petr".into(),
            ),
            ("/v1/projects/{project}/clients", Some("acme-token-1"), "/projects/acme/clients?q=1122".into()),
            ("/v1/projects/{project}/clients", Some("acme-token-1"), "/projects/acme/clients?q=".into()),
            (card, Some("acme-token-1"), format!("/projects/acme/clients/{survivor}")),
            (card, Some("acme-token-1"), format!("/projects/acme/clients/{absorbed}")),
            (card, None, format!("/projects/acme/clients/{survivor}")),
            (card, Some("globex-token"), format!("/projects/acme/clients/{survivor}")),
            (
                "/v1/projects/{project}/clients/{client_id}/timeline",
                Some("acme-token-1"),
                format!("/projects/acme/clients/{survivor}/timeline?limit=2"),
            ),
            (
                "/v1/projects/{project}/clients/{client_id}/timeline",
                Some("acme-token-1"),
                format!("/projects/acme/clients/{survivor}/timeline?before=bad"),
            ),
            (
                "/v1/projects/{project}/clients/{client_id}/merges",
                Some("acme-token-1"),
                format!("/projects/acme/clients/{survivor}/merges"),
            ),
            (
                "/v1/projects/{project}/appeals/{number}",
                Some("acme-token-1"),
                "/projects/acme/appeals/4?limit=1".into(),
            ),
            (
                "/v1/projects/{project}/appeals/{number}",
                Some("acme-token-1"),
                "/projects/acme/appeals/99".into(),
            ),
        ];
        for (template, token, path) in cases {
            let (status, body) = server.get(token, &path).await;
            assert!(status < 500, "{path}: {status}");
            let validator = common::documented(&doc, "get", template, status);
            let errors: Vec<String> = validator.iter_errors(&body).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{path} ({status}) breaks the document: {errors:?}\n{body}");
        }
    }
}
