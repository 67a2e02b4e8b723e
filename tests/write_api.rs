//! The write API's edges (SPEC "Write API") through real HTTP, on SQLite and PostgreSQL:
//! bodies that are not commands, tokens, a command path that is down or missing, and
//! outcomes read from the store a pipeline wrote, with a sink that records what reached it
//! (the commands topic end to end is `tests/write_api_kafka.rs`).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use appealflow::api::write::{CommandSink, SinkDown};
use appealflow::api::Writes;
use appealflow::config::Config;
use common::{config, kinds, msg, replay_lines, TestDb, BASE};
use futures::future::BoxFuture;
use serde_json::{json, Value};

const TOKENS: &str = r#"
[api]
  [[api.tokens]]
  token = "acme-writer-1"
  projects = ["acme"]
  write = true
  operator = { id = "op-1", name = "Olga" }
  [[api.tokens]]
  token = "acme-app-token"
  projects = ["acme"]
  write = true
  [[api.tokens]]
  token = "acme-reader-1"
  projects = ["acme"]
  [[api.tokens]]
  token = "globex-writer"
  projects = ["globex"]
  write = true
"#;

fn api_config() -> Arc<Config> {
    config(&format!("{BASE}\n{TOKENS}"))
}

/// Records every command it is handed; fails each one while `down` is set.
#[derive(Default)]
struct Recorder {
    sent: Mutex<Vec<Value>>,
    down: std::sync::atomic::AtomicBool,
}

impl CommandSink for Recorder {
    fn submit<'a>(&'a self, _project: &'a str, command: &'a [u8]) -> BoxFuture<'a, Result<(), SinkDown>> {
        Box::pin(async move {
            if self.down.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SinkDown("the commands topic: broker transport failure".into()));
            }
            self.sent.lock().unwrap().push(serde_json::from_slice(command).unwrap());
            Ok(())
        })
    }
}

impl Recorder {
    fn sent(&self) -> Vec<Value> {
        self.sent.lock().unwrap().clone()
    }
}

struct Server {
    base: String,
    http: reqwest::Client,
    sink: Arc<Recorder>,
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Server {
    async fn start(db: &TestDb, with_sink: bool) -> Server {
        // The writer migrates the store the reader opens.
        db.store().await.close().await;
        let store = appealflow::store::Store::connect_reader(&db.url, 2).await.expect("reader connects");
        let sink = Arc::new(Recorder::default());
        let writes =
            Writes { sink: with_sink.then(|| sink.clone() as Arc<dyn CommandSink>), ..Writes::default() };
        let addr =
            appealflow::api::serve("127.0.0.1:0", api_config(), store, writes).await.expect("API listens");
        Server { base: format!("http://{addr}/v1/projects"), http: reqwest::Client::new(), sink }
    }

    async fn send(&self, request: reqwest::RequestBuilder, token: &str) -> Answer {
        let response = request.bearer_auth(token).send().await.expect("server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("answer {status} is not JSON: {text}"));
        Answer { status, headers, body }
    }

    async fn post(&self, token: &str, path: &str, body: impl Into<reqwest::Body>) -> Answer {
        let request =
            self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        self.send(request.body(body), token).await
    }

    async fn command(&self, body: &Value) -> Answer {
        self.post("acme-writer-1", "/acme/commands?wait=0", body.to_string()).await
    }

    async fn get(&self, token: &str, path: &str) -> Answer {
        self.send(self.http.get(format!("{}{path}", self.base)), token).await
    }
}

fn close(extra: Value) -> Value {
    let mut command = json!({"type": "close_appeal", "appeal_number": 1});
    command.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    command
}

#[tokio::test]
async fn a_body_that_is_not_a_command_is_a_400_naming_what_is_wrong_and_nothing_is_submitted() {
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let server = Server::start(&db, true).await;
        let cases: Vec<(&str, String, &str)> = vec![
            ("not JSON", "{\"type\": \"close_appeal\",".into(), "not JSON"),
            ("a JSON array", "[1, 2]".into(), "JSON object"),
            ("an unknown type", json!({"type": "drop_tables"}).to_string(), "drop_tables"),
            ("a missing field", json!({"type": "close_appeal"}).to_string(), "appeal_number"),
            ("an unknown field", close(json!({"appeal_numbr": 2})).to_string(), "appeal_numbr"),
            (
                "a duplicate key",
                r#"{"type":"close_appeal","appeal_number":1,"appeal_number":2}"#.into(),
                "appeal_number",
            ),
            ("a long command_id", close(json!({"command_id": "c".repeat(129)})).to_string(), "command_id"),
            ("a command_id with a newline", close(json!({"command_id": "c1\nc2"})).to_string(), "command_id"),
            ("a command_id with NUL", close(json!({"command_id": "c1\u{0}"})).to_string(), "command_id"),
            (
                "an issued_at in 2036",
                close(json!({"issued_at": "2036-01-01T00:00:00Z"})).to_string(),
                "issued_at",
            ),
            ("another project_id", close(json!({"project_id": "globex"})).to_string(), "project_id"),
            ("another operator", close(json!({"operator": {"id": "op-2"}})).to_string(), "operator"),
            (
                "a 10 kB operator name",
                close(json!({"operator": {"id": "op-1", "name": "O".repeat(10_000)}})).to_string(),
                "operator",
            ),
            (
                "a revision on create_client",
                json!({"type": "create_client", "name": "N", "contacts": [], "expected_revision": 1})
                    .to_string(),
                "expected_revision",
            ),
            ("a negative revision", close(json!({"expected_revision": -1})).to_string(), "expected_revision"),
        ];
        for (what, body, named) in cases {
            let answer = server.post("acme-writer-1", "/acme/commands", body).await;
            assert_eq!(answer.status, 400, "{what}: {}", answer.body);
            assert_eq!(answer.body["error"]["code"], "bad_request", "{what}");
            let message = answer.body["error"]["message"].as_str().unwrap();
            assert!(message.contains(named), "{what}: {message:?} names no {named:?}");
        }
        for wait in ["1e9", "31s", "forever", "-1"] {
            let answer = server
                .post("acme-writer-1", &format!("/acme/commands?wait={wait}"), close(json!({})).to_string())
                .await;
            assert_eq!(answer.status, 400, "wait={wait}: {}", answer.body);
            assert!(answer.body["error"]["message"].as_str().unwrap().contains("wait"));
        }
        let no_operator = server.post("acme-app-token", "/acme/commands", close(json!({})).to_string()).await;
        assert_eq!(
            no_operator.status, 400,
            "a token with no operator needs the body's: {}",
            no_operator.body
        );
        assert!(server.sink.sent().is_empty(), "nothing reached the command path: {:?}", server.sink.sent());
    }
}

#[tokio::test]
async fn a_10_mb_body_is_a_413_and_the_server_keeps_answering() {
    let db = TestDb::new(common::Kind::Sqlite).await;
    let server = Server::start(&db, true).await;
    let huge = close(json!({"comment": "x".repeat(10 << 20)})).to_string();
    let answer = server.post("acme-writer-1", "/acme/commands", huge).await;
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], "too_large");
    assert!(server.sink.sent().is_empty());
    assert_eq!(server.command(&close(json!({}))).await.status, 202, "the next command is taken");
}

#[tokio::test]
async fn only_a_write_token_of_the_project_may_submit_and_another_project_is_not_found() {
    let db = TestDb::new(common::Kind::Sqlite).await;
    let server = Server::start(&db, true).await;
    let body = close(json!({})).to_string();
    let read = server.post("acme-reader-1", "/acme/commands", body.clone()).await;
    assert_eq!((read.status, read.body["error"]["code"].as_str()), (403, Some("forbidden")), "{}", read.body);
    assert_eq!(server.post("globex-writer", "/acme/commands", body.clone()).await.status, 404);
    assert_eq!(server.post("acme-writer-1", "/globex/commands", body.clone()).await.status, 404);
    assert_eq!(server.post("no-such-token-1", "/acme/commands", body.clone()).await.status, 401);
    assert_eq!(server.get("globex-writer", "/acme/commands/c1").await.status, 404);
    assert!(server.sink.sent().is_empty());
}

#[tokio::test]
async fn with_no_command_path_or_a_command_path_down_the_answer_is_503_and_names_the_way() {
    let db = TestDb::new(common::Kind::Sqlite).await;
    let none = Server::start(&db, false).await;
    let answer = none.command(&close(json!({}))).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.body["error"]["message"].as_str().unwrap().contains("no command path"), "{}", answer.body);

    let down = Server::start(&db, true).await;
    down.sink.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let answer = down.command(&close(json!({"command_id": "retry-me"}))).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.headers["retry-after"], "2");
    assert!(answer.body["error"]["message"].as_str().unwrap().contains("retry-me"), "{}", answer.body);
    down.sink.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let again = down.command(&close(json!({"command_id": "retry-me"}))).await;
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.headers["location"], "/v1/projects/acme/commands/retry-me");
    assert_eq!(down.sink.sent().len(), 1);
}

/// A command submitted over HTTP, then applied by a pipeline in another process (a replay
/// of what the sink received): the waiting request gets its outcome, a GET gets it, and a
/// second POST under the same id gets the first outcome without submitting anything.
#[tokio::test]
async fn an_outcome_committed_elsewhere_reaches_the_waiting_request_and_a_resubmission_gets_it_again() {
    let config = api_config();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let hello = msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1","name":"Anna"}"#, "hello");
        let run = replay_lines(&config, &db, &[hello]).await;
        let card = run.events("client.created")[0]["client"]["id"].as_str().unwrap().to_string();
        let server = Arc::new(Server::start(&db, true).await);
        let rename = json!({
            "type": "rename_client", "command_id": "rename-1", "client": {"client_id": card},
            "name": "Anna Petrova", "expected_revision": 1
        });
        let waiting = {
            let server = server.clone();
            let body = rename.to_string();
            tokio::spawn(async move { server.post("acme-writer-1", "/acme/commands?wait=20s", body).await })
        };
        let submitted = loop {
            if let Some(c) = server.sink.sent().pop() {
                break c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(submitted["operator"], json!({"id": "op-1", "name": "Olga"}), "the token's operator");
        assert_eq!(submitted["project_id"], "acme");
        replay_lines(&config, &db, &[submitted.to_string()]).await;

        let answer = waiting.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.body["status"], "applied");
        assert_eq!(answer.body["revision"], 2);
        assert_eq!(answer.body["client"]["id"], card.as_str());
        assert_eq!(answer.body["client"]["revision"], 2);
        assert_eq!(answer.body["events"][0]["type"], "client.updated");
        let read = server.get("acme-reader-1", &format!("/acme/clients/{card}")).await;
        assert_eq!(
            (read.body["name"].as_str(), read.body["revision"].as_u64()),
            (Some("Anna Petrova"), Some(2))
        );

        let again = server.command(&rename).await;
        assert_eq!(again.body, answer.body, "the first outcome, forever");
        assert_eq!(server.get("acme-reader-1", "/acme/commands/rename-1").await.body, answer.body);
        assert_eq!(server.sink.sent().len(), 1, "nothing submitted twice");

        // The same command made against revision 1 by a second operator: stale now.
        let stale = json!({"command_id": "rename-2", "operator": {"id": "op-2"}, "type": "rename_client",
            "client": {"client_id": card}, "name": "A.", "expected_revision": 1});
        replay_lines(&config, &db, &[stale_command(&stale)]).await;
        let conflict = server.get("acme-reader-1", "/acme/commands/rename-2").await;
        assert_eq!(conflict.status, 409, "{}", conflict.body);
        assert_eq!(conflict.body["error"]["code"], "stale_revision");
        assert_eq!(conflict.body["revision"], 2);
        let unknown = server.get("acme-reader-1", "/acme/commands/never-sent?wait=0").await;
        assert_eq!((unknown.status, unknown.body["status"].as_str()), (202, Some("pending")));
    }
}

/// A command as a gateway writes it to the topic: every common field present.
fn stale_command(body: &Value) -> String {
    let mut c = body.clone();
    c["project_id"] = json!("acme");
    c["issued_at"] = json!("2026-11-21T10:05:00Z");
    c.to_string()
}

#[tokio::test]
async fn every_answer_of_the_write_api_matches_the_openapi_document() {
    let config = api_config();
    let db = TestDb::new(common::Kind::Sqlite).await;
    let hello = msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1","name":"Anna"}"#, "hello");
    let run = replay_lines(&config, &db, &[hello]).await;
    let card = run.events("client.created")[0]["client"]["id"].as_str().unwrap().to_string();
    let applied = json!({"type": "tag_client", "command_id": "t-1", "project_id": "acme",
        "issued_at": "2026-11-21T10:01:00Z", "operator": {"id": "op-1"}, "client": {"client_id": card}, "tag": "vip"});
    let stale = json!({"type": "rename_client", "command_id": "r-1", "project_id": "acme", "expected_revision": 9,
        "issued_at": "2026-11-21T10:02:00Z", "operator": {"id": "op-1"}, "client": {"client_id": card}, "name": "A"});
    let rejected = json!({"type": "close_appeal", "command_id": "x-1", "project_id": "acme",
        "issued_at": "2026-11-21T10:03:00Z", "operator": {"id": "op-1"}, "appeal_number": 77});
    replay_lines(&config, &db, &[applied.to_string(), stale.to_string(), rejected.to_string()]).await;
    let server = Server::start(&db, true).await;
    let none = Server::start(&db, false).await;
    let doc = reqwest::get(format!("{}/../openapi.json", server.base))
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();

    let post = "/v1/projects/{project}/commands";
    let get = "/v1/projects/{project}/commands/{command_id}";
    let mut answers = vec![
        (post, 200, server.command(&applied).await),
        (post, 409, server.command(&stale).await),
        (post, 422, server.command(&rejected).await),
        (post, 202, server.command(&close(json!({"command_id": "new-1"}))).await),
        (post, 400, server.command(&json!({"type": "close_appeal"})).await),
        (post, 403, server.post("acme-reader-1", "/acme/commands", close(json!({})).to_string()).await),
        (post, 503, none.command(&close(json!({}))).await),
        (get, 200, server.get("acme-reader-1", "/acme/commands/t-1").await),
        (get, 202, server.get("acme-reader-1", "/acme/commands/unknown").await),
        (get, 409, server.get("acme-reader-1", "/acme/commands/r-1").await),
    ];
    answers.push((post, 413, server.post("acme-writer-1", "/acme/commands", "x".repeat(2 << 20)).await));
    for (path, status, answer) in answers {
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        let method = if path == post { "post" } else { "get" };
        let validator = common::documented(&doc, method, path, status);
        let errors: Vec<String> = validator.iter_errors(&answer.body).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "{method} {path} ({status}) breaks the document: {errors:?}\n{}",
            answer.body
        );
    }
}

#[tokio::test]
async fn a_merge_preview_shows_the_card_merge_clients_then_makes_and_changes_nothing() {
    let config = api_config();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let at = |m: u32| format!("2026-11-21T10:{m:02}:00Z");
        let add = |id: &str, m: u32, visitor: &str, phone: &str| {
            common::cmd(
                "add_contact",
                id,
                &at(m),
                &format!(
                    r#""client":{{"channel_id":"acme-tg","visitor_id":"{visitor}"}},"contact_type":"phone","value":"{phone}""#
                ),
            )
        };
        let lines = [
            msg("m1", "acme-tg", &at(0), r#"{"id":"t1","name":"Anna"}"#, "hello"),
            msg("m2", "acme-tg", &at(1), r#"{"id":"t2","name":"Anna Petrova"}"#, "hi"),
            add("c1", 2, "t1", "+7 999 000-00-01"),
            add("c2", 3, "t1", "+7 999 000-00-02"),
            add("c3", 4, "t2", "+7 999 000-00-03"),
            add("c4", 5, "t2", "+7 999 000-00-04"),
        ];
        let run = replay_lines(&config, &db, &lines).await;
        let created = run.events("client.created");
        let (anna, other) =
            (created[0]["client"]["id"].as_str().unwrap(), created[1]["client"]["id"].as_str().unwrap());
        let server = Server::start(&db, true).await;
        let body = json!({"target": {"client_id": anna}, "source": {"client_id": other}}).to_string();
        let preview = server.post("acme-reader-1", "/acme/merges/preview", body.clone()).await;
        assert_eq!(preview.status, 200, "a reader may preview: {}", preview.body);
        let p = &preview.body;
        assert_eq!(p["card"]["id"], anna, "the older card survives");
        assert_eq!(p["card"]["contacts"]["phone"].as_array().unwrap().len(), 4);
        assert_eq!(
            p["over_limit"],
            json!([{"contact_type": "phone", "values": ["+7 999 000-00-01", "+7 999 000-00-02", "+7 999 000-00-03", "+7 999 000-00-04"]}])
        );
        let names: Vec<(&str, &str)> = p["name_options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o["from"].as_str().unwrap(), o["name"].as_str().unwrap()))
            .collect();
        assert_eq!(names, [("target", "Anna"), ("source", "Anna Petrova")]);
        assert_eq!((p["target_revision"].as_u64(), p["source_revision"].as_u64()), (Some(3), Some(3)));
        assert_eq!(
            server.get("acme-reader-1", &format!("/acme/clients/{other}")).await.body["id"],
            other,
            "nothing changed"
        );

        let merge = json!({"type": "merge_clients", "command_id": "merge-1", "project_id": "acme", "issued_at": at(6),
            "operator": {"id": "op-1"}, "target": {"client_id": anna}, "source": {"client_id": other},
            "target_revision": p["target_revision"], "source_revision": p["source_revision"]});
        replay_lines(&config, &db, &[merge.to_string()]).await;
        let card = server.get("acme-reader-1", &format!("/acme/clients/{anna}")).await.body;
        for field in
            ["id", "name", "contacts", "fields", "tags", "absorbed_ids", "revision", "type", "appeal_count"]
        {
            assert_eq!(card[field], p["card"][field], "{field}: the merge made what the preview showed");
        }

        let same = json!({"target": {"client_id": anna}, "source": {"client_id": other}}).to_string();
        let one_card = server.post("acme-reader-1", "/acme/merges/preview", same).await;
        assert_eq!(one_card.status, 409, "one card now: {}", one_card.body);
        let itself = json!({"target": {"client_id": anna}, "source": {"client_id": anna}}).to_string();
        let itself = server.post("acme-reader-1", "/acme/merges/preview", itself).await;
        assert_eq!(itself.status, 400, "a card with itself: {}", itself.body);
        let unknown = json!({"target": {"client_id": anna}, "source": {"client_id": "nobody"}}).to_string();
        let unknown = server.post("acme-reader-1", "/acme/merges/preview", unknown).await;
        assert_eq!(unknown.status, 404);
        let typo = json!({"target": {"client_id": anna}, "sorce": {"client_id": other}}).to_string();
        let typo = server.post("acme-reader-1", "/acme/merges/preview", typo).await;
        assert_eq!(typo.status, 400);
        assert_eq!(server.post("globex-writer", "/acme/merges/preview", body).await.status, 404);
        let doc = reqwest::get(format!("{}/../openapi.json", server.base))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        for answer in [&preview, &one_card, &itself, &unknown, &typo] {
            let validator =
                common::documented(&doc, "post", "/v1/projects/{project}/merges/preview", answer.status);
            let errors: Vec<String> = validator.iter_errors(&answer.body).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{} breaks the document: {errors:?}\n{}", answer.status, answer.body);
        }
    }
}
