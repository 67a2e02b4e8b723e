//! `appealflow serve` (SPEC "Embedded service") in this process over a fresh store, through
//! real HTTP: posted inputs answered after their commit with one result each, hostile lines
//! among good ones, tokens, commands going straight into the pipeline, and the same stream
//! posted and replayed giving the same events.

mod common;

use std::sync::Arc;

use appealflow::config::Config;
use appealflow::serve::{Service, SharedOutput};
use common::{kinds, msg, msg_in, replay_lines, Kind, TestDb, BASE};
use serde_json::{json, Value};

const SERVE: &str = r#"
[pipeline]
max_input_bytes = 4096
[api]
listen = "127.0.0.1:0"
  [[api.tokens]]
  token = "acme-gateway-1"
  projects = ["acme"]
  ingest = true
  [[api.tokens]]
  token = "acme-operator-1"
  projects = ["acme"]
  write = true
  operator = { id = "op-1", name = "Olga" }
  [[api.tokens]]
  token = "acme-reader-1"
  projects = ["acme"]
"#;

struct Served {
    service: Service,
    out: SharedOutput,
    base: String,
    http: reqwest::Client,
}

impl Served {
    async fn start(projects: &str, db: &TestDb) -> Served {
        Served::with(SERVE, projects, db).await
    }

    async fn with(serve: &str, projects: &str, db: &TestDb) -> Served {
        let config = Arc::new(Config::from_toml(&format!("{serve}\n{projects}")).expect("config"));
        let out = SharedOutput::default();
        let service =
            Service::start(config, db.store().await, Box::new(out.clone())).await.expect("serve starts");
        let base = format!("http://{}/v1/projects", service.addr);
        Served { service, out, base, http: reqwest::Client::new() }
    }

    async fn post(&self, token: &str, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response =
            self.http.post(format!("{}{path}", self.base)).bearer_auth(token).body(body).send().await;
        let response = response.expect("serve answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }

    async fn ingest(&self, lines: &[String]) -> Vec<Value> {
        let (status, body) = self.post("acme-gateway-1", "/acme/inputs", lines.join("\n")).await;
        assert_eq!(status, 200, "{body}");
        body["results"].as_array().unwrap().clone()
    }

    /// What `serve` printed, as records.
    fn records(&self) -> Vec<Value> {
        records_of(&self.out)
    }
}

fn records_of(out: &SharedOutput) -> Vec<Value> {
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn statuses(results: &[Value]) -> Vec<&str> {
    results.iter().map(|r| r["status"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn posted_inputs_are_answered_after_their_commit_one_result_each_and_bad_lines_go_to_the_dlq() {
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let served = Served::start(BASE, &db).await;
        let good = |id: &str, min: u32| {
            msg(
                id,
                "acme-tg",
                &format!("2026-11-21T10:{min:02}:00Z"),
                r#"{"id":"t1","name":"Anna"}"#,
                "hello",
            )
        };
        let lines = [
            good("m1", 0),
            "this is not JSON {".to_string(),
            good("m2", 1),
            good("m3", 2).replace("hello", "hel\\u0000lo"),
            msg_in("globex", "g1", "globex-tg", "2026-11-21T10:03:00Z", r#"{"id":"x"}"#, "not yours"),
            good("m4", 4).replace("hello", &"x".repeat(5000)),
        ];
        let mut body = lines.join("\n").into_bytes();
        body.extend_from_slice(b"\n{\"type\": \"message\", \"text\": \"\xff\xfe\"}\n");
        let (status, answer) = served.post("acme-gateway-1", "/acme/inputs", body.clone()).await;
        assert_eq!(status, 200, "{answer}");
        let results = answer["results"].as_array().unwrap();
        assert_eq!(
            statuses(results),
            ["applied", "dlq", "applied", "dlq", "dlq", "dlq", "dlq"],
            "{kind:?}: {answer}"
        );
        let reason = |i: usize| results[i]["reason"].as_str().unwrap().to_string();
        assert!(reason(1).starts_with("not JSON"), "{}", reason(1));
        assert!(reason(3).contains("NUL"), "{}", reason(3));
        assert!(reason(4).contains("not the project this input was posted to"), "{}", reason(4));
        assert!(reason(5).contains("max_input_bytes"), "{}", reason(5));
        assert!(reason(6).contains("UTF-8"), "{}", reason(6));
        let dlq: Vec<Value> = served.records().into_iter().filter(|r| r["topic"] == "inbound.dlq").collect();
        assert_eq!(dlq.len(), 5);
        assert_eq!(dlq[2]["value"]["project_id"], "acme", "dead-lettered where it was posted");

        let (_, again) = served.post("acme-gateway-1", "/acme/inputs", body).await;
        let again = again["results"].as_array().unwrap();
        assert_eq!(statuses(again)[..3], ["duplicate", "dlq", "duplicate"], "nothing applied twice");
        let found =
            served.http.get(format!("{}/acme/clients?q=Anna", served.base)).bearer_auth("acme-reader-1");
        let found: Value = found.send().await.unwrap().json().await.unwrap();
        assert_eq!(found["clients"][0]["client"]["name"], "Anna", "read at once: {found}");
        served.service.stop().await.unwrap();
    }
}

#[tokio::test]
async fn only_an_ingest_token_may_post_and_a_body_is_one_to_a_thousand_inputs() {
    let db = TestDb::new(Kind::Sqlite).await;
    let served = Served::start(BASE, &db).await;
    let one = msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1"}"#, "hi");
    assert_eq!(served.post("acme-reader-1", "/acme/inputs", one.clone()).await.0, 403);
    assert_eq!(served.post("acme-operator-1", "/acme/inputs", one.clone()).await.0, 403);
    assert_eq!(served.post("nobody-at-all-1", "/acme/inputs", one.clone()).await.0, 401);
    assert_eq!(served.post("acme-gateway-1", "/globex/inputs", one.clone()).await.0, 404);
    assert_eq!(served.post("acme-gateway-1", "/acme/inputs", "\n \n").await.0, 400);
    let many: Vec<String> = (0..1001).map(|i| one.replace("\"m1\"", &format!("\"m{i}\""))).collect();
    let (status, body) = served.post("acme-gateway-1", "/acme/inputs", many.join("\n")).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(served.ingest(&many[..1000]).await.len(), 1000, "a thousand are one body");
    let huge = one.replace("\"hi\"", &format!("\"{}\"", "x".repeat(5000)));
    let (status, body) = served.post("acme-gateway-1", "/acme/inputs", huge).await;
    assert_eq!(status, 413, "a body of one input over max_input_bytes: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("max_input_bytes"), "{body}");
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_sent_as_application_json_is_one_input_whatever_its_line_breaks() {
    let db = TestDb::new(Kind::Sqlite).await;
    let served = Served::start(BASE, &db).await;
    let one: Value =
        serde_json::from_str(&msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1"}"#, "hi")).unwrap();
    let pretty = serde_json::to_string_pretty(&one).unwrap();
    assert!(pretty.lines().count() > 5);
    let response = served
        .http
        .post(format!("{}/acme/inputs", served.base))
        .bearer_auth("acme-gateway-1")
        .header("content-type", "application/json")
        .body(pretty)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["results"], json!([{"status": "applied"}]), "{answer}");
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_command_over_the_write_api_goes_straight_into_the_pipeline() {
    let db = TestDb::new(Kind::Sqlite).await;
    let served = Served::start(BASE, &db).await;
    served
        .ingest(&[msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1","name":"Anna"}"#, "hi")])
        .await;
    let card = served.records().iter().find(|r| r["value"]["type"] == "client.created").unwrap()["value"]
        ["client"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let rename = json!({"type": "rename_client", "client": {"client_id": card}, "name": "Anna Petrova", "expected_revision": 1});
    let (status, answer) = served.post("acme-operator-1", "/acme/commands", rename.to_string()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!((answer["status"].as_str(), answer["revision"].as_u64()), (Some("applied"), Some(2)));
    let (status, stale) = served.post("acme-operator-1", "/acme/commands", rename.to_string()).await;
    assert_eq!(status, 409, "{stale}");
    let stats = served.service.stop().await.unwrap();
    assert_eq!(stats.applied, 3);
}

#[tokio::test]
async fn the_same_stream_posted_to_serve_and_replayed_gives_the_same_events() {
    let workload = appealflow::testkit::generate(120, 3);
    let projects = appealflow::testkit::CONFIG.replace("[pipeline]\nbatch_size = 500\n", "");
    let config = common::config(&format!("{SERVE}\n{projects}"));
    let replayed = replay_lines(&config, &TestDb::new(Kind::Sqlite).await, &workload.lines).await;
    let db = TestDb::new(Kind::Sqlite).await;
    let served = Served::start(&projects, &db).await;
    for body in workload.lines.chunks(37) {
        served.ingest(body).await;
    }
    let Served { service, out, .. } = served;
    service.stop().await.unwrap();
    let outputs = |records: Vec<Value>| -> Vec<String> {
        records.into_iter().filter(|r| r["topic"] != "inbound.dlq").map(|r| r.to_string()).collect()
    };
    let want = outputs(replayed.records.iter().map(|r| serde_json::from_str(&r.line).unwrap()).collect());
    assert!(want.len() > 200, "a stream with something to say: {}", want.len());
    common::assert_same(&outputs(records_of(&out)), &want, "events and outbound, ids included");
}

impl Served {
    async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(token).send().await;
        let response = response.expect("serve answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON answer"))
    }
}

fn hello(id: &str, min: u32) -> String {
    msg(id, "acme-tg", &format!("2026-11-21T10:{min:02}:00Z"), r#"{"id":"t1","name":"Anna"}"#, "hello")
}

/// The value of every printed record of a topic, as the exact text that was printed.
fn printed_values(out: &SharedOutput, topic: &str) -> Vec<String> {
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let head = format!("{{\"topic\":\"{topic}\",");
    text.lines()
        .filter(|l| l.starts_with(&head))
        .map(|l| l[l.find(",\"value\":").unwrap() + 9..l.len() - 1].to_string())
        .collect()
}

#[tokio::test]
async fn the_feed_gives_a_projects_records_in_commit_order_exactly_as_printed() {
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let served = Served::start(BASE, &db).await;
        for (i, id) in ["m1", "m2", "m3"].iter().enumerate() {
            served.ingest(&[hello(id, i as u32)]).await;
        }
        served.post("acme-gateway-1", "/acme/inputs", "not JSON").await;
        let printed = printed_values(&served.out, "appeal.events");
        assert!(printed.len() >= 4, "{printed:?}");

        // Paged two at a time, every event comes once, in order, byte for byte.
        let (mut after, mut seen) = (String::new(), Vec::new());
        loop {
            let url = format!("{}/acme/feed?topic=events&limit=2{after}", served.base);
            let text =
                served.http.get(url).bearer_auth("acme-reader-1").send().await.unwrap().text().await.unwrap();
            let page: Value = serde_json::from_str(&text).unwrap();
            let records = page["records"].as_array().unwrap();
            assert!(records.len() <= 2);
            for r in records {
                let value = serde_json::to_string(&r["value"]).unwrap();
                let exact = printed.iter().find(|p| serde_json::from_str::<Value>(p).unwrap() == r["value"]);
                let exact = exact.unwrap_or_else(|| panic!("a record never printed: {value}"));
                assert!(text.contains(exact.as_str()), "byte for byte as printed: {exact}");
                seen.push(exact.clone());
            }
            if records.is_empty() {
                break;
            }
            after = format!("&after={}", page["next"].as_str().unwrap());
        }
        assert_eq!(seen, printed);
        let (status, dlq) = served.get("acme-reader-1", "/acme/feed?topic=dlq").await;
        assert_eq!(status, 200);
        assert_eq!(dlq["records"].as_array().unwrap().len(), 1, "{dlq}");
        assert_eq!(dlq["records"][0]["value"]["source"]["line"], 1);
        served.service.stop().await.unwrap();
    }
}

#[tokio::test]
async fn a_feed_reader_waits_for_the_next_commit_and_bad_parameters_are_refused() {
    let db = TestDb::new(Kind::Sqlite).await;
    let served = Arc::new(Served::start(BASE, &db).await);
    served.ingest(&[hello("m1", 0)]).await;
    let (_, first) = served.get("acme-reader-1", "/acme/feed").await;
    let next = first["next"].as_str().unwrap().to_string();

    let waiting = {
        let served = served.clone();
        let next = next.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let page = served.get("acme-reader-1", &format!("/acme/feed?after={next}&wait=20s")).await;
            (page, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    served.ingest(&[hello("m2", 1)]).await;
    let ((status, page), took) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(!page["records"].as_array().unwrap().is_empty(), "woken by the commit: {page}");
    assert!(
        took < std::time::Duration::from_secs(10),
        "answered at the commit, not at the timeout: {took:?}"
    );
    let (_, quiet) = served
        .get("acme-reader-1", &format!("/acme/feed?after={}&wait=300ms", page["next"].as_str().unwrap()))
        .await;
    assert_eq!(quiet["records"], json!([]), "nothing new: an empty page when the wait runs out");
    assert_eq!(quiet["next"], page["next"]);

    // `after=end` starts at the present: nothing of what is kept, then what commits next.
    let (status, at_end) = served.get("acme-reader-1", "/acme/feed?after=end").await;
    assert_eq!((status, &at_end["records"]), (200, &json!([])), "{at_end}");
    served.ingest(&[hello("m3", 2)]).await;
    let (_, fresh) =
        served.get("acme-reader-1", &format!("/acme/feed?after={}", at_end["next"].as_str().unwrap())).await;
    let fresh = fresh["records"].as_array().unwrap();
    assert!(!fresh.is_empty() && fresh.iter().all(|r| r["value"]["cause"]["id"] == "m3"), "{fresh:?}");

    for bad in [
        "topic=nope",
        "after=garbage",
        "after=999999-1",
        "after=1-999",
        "limit=0",
        "limit=1001",
        "wait=1e9",
        "wait=31s",
        "colour=red",
    ] {
        let (status, body) = served.get("acme-reader-1", &format!("/acme/feed?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, _) = served.get("acme-reader-1", &format!("/acme/feed?topic=outbound&after={next}")).await;
    assert_eq!(status, 400, "a cursor of the events feed is not one of the outbound feed");
    assert_eq!(served.get("acme-reader-1", "/globex/feed").await.0, 404);
    assert_eq!(served.get("nobody-at-all-1", "/acme/feed").await.0, 401);
    Arc::try_unwrap(served).ok().expect("the waiter is done").service.stop().await.unwrap();
}

#[tokio::test]
async fn a_cursor_older_than_the_retention_is_gone_with_the_oldest_kept() {
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let short =
            SERVE.replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nfeed_retention = \"1s\"");
        let served = Served::with(&short, BASE, &db).await;
        served.ingest(&[hello("m1", 0)]).await;
        let (_, first) = served.get("acme-reader-1", "/acme/feed").await;
        let old = first["next"].as_str().unwrap().to_string();
        tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
        served.ingest(&[hello("m2", 1)]).await;
        let (status, gone) = served.get("acme-reader-1", "/acme/feed?after=0-0").await;
        assert_eq!(status, 410, "{gone}");
        assert_eq!(gone["error"]["code"], "gone");
        let oldest = gone["oldest"].as_str().unwrap();
        assert_eq!(oldest, old, "what was pruned is exactly what the old reader had read");
        let (status, kept) = served.get("acme-reader-1", &format!("/acme/feed?after={oldest}")).await;
        assert_eq!(status, 200, "a reader that read everything pruned reads on: {kept}");
        let (_, doc) = served.get("acme-reader-1", "/../openapi.json").await;
        for (status, body) in [(410, &gone), (200, &kept)] {
            let schema = common::documented(&doc, "get", "/v1/projects/{project}/feed", status);
            assert!(schema.is_valid(body), "{status} as documented: {body}");
        }
        let cause = |page: &Value| page["records"][0]["value"]["cause"]["id"].clone();
        assert_eq!(cause(&kept), "m2");
        let (_, from_start) = served.get("acme-reader-1", "/acme/feed").await;
        assert_eq!(cause(&from_start), "m2", "without a cursor: the oldest kept");
        served.service.stop().await.unwrap();
    }
}

#[tokio::test]
async fn the_api_beside_another_writer_wakes_its_feed_readers_from_the_store() {
    let db = TestDb::new(Kind::Sqlite).await;
    let served = Served::start(BASE, &db).await;
    served.ingest(&[hello("m1", 0)]).await;
    let config = Arc::new(Config::from_toml(&format!("{SERVE}\n{BASE}")).unwrap());
    let reader = appealflow::store::Store::connect_reader(&db.url, 2).await.unwrap();
    let addr = appealflow::api::serve("127.0.0.1:0", config, reader, Default::default()).await.unwrap();
    let api = format!("http://{addr}/v1/projects/acme/feed");
    let http = reqwest::Client::new();
    let get = |url: String| http.get(url).bearer_auth("acme-reader-1").send();
    let first: Value = get(api.clone()).await.unwrap().json().await.unwrap();
    let next = first["next"].as_str().unwrap();
    let waiting = get(format!("{api}?after={next}&wait=20s"));
    let (page, ()) = tokio::join!(waiting, async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        served.ingest(&[hello("m2", 1)]).await;
    });
    let page: Value = page.unwrap().json().await.unwrap();
    assert_eq!(page["records"][0]["value"]["cause"]["id"], "m2", "{page}");
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn clients_that_never_read_their_answers_hold_a_bounded_number_of_connections_for_a_bounded_time() {
    use tokio::io::AsyncWriteExt;
    let db = TestDb::new(Kind::Sqlite).await;
    let bounded = SERVE.replace("[api]\n", "[api]\nmax_connections = 2\nidle_timeout = \"2s\"\n");
    let served = Served::with(&bounded, BASE, &db).await;
    let addr = served.base.trim_start_matches("http://").trim_end_matches("/v1/projects").to_string();
    // Two clients ask for a long-poll and never read the answer, nor close.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let request = format!(
            "GET /v1/projects/acme/feed?wait=1s HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer acme-reader-1\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        stalled.push(tcp);
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // A third waits for one of them to be let go, then is served.
    let started = std::time::Instant::now();
    let (status, _) = served.get("acme-reader-1", "/acme/feed").await;
    let waited = started.elapsed();
    assert_eq!(status, 200);
    assert!(
        waited >= std::time::Duration::from_millis(1500),
        "served only once an idle one closed: {waited:?}"
    );
    assert!(waited < std::time::Duration::from_secs(10), "idle connections are closed: {waited:?}");
    drop(stalled);
    served.service.stop().await.unwrap();
}
