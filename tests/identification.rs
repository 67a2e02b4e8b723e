//! CRM identification, manual identification and bot contact collection through the whole
//! pipeline (replay), against the CRM test double over real HTTP, on SQLite and PostgreSQL.

mod common;

use std::path::Path;
use std::sync::Arc;

use appealflow::config::Config;
use appealflow::crm::double::{self, DoubleHandle, DoubleOptions};
use common::{cmd, kinds, msg, replay_lines, Run, TestDb};
use serde_json::Value;

/// A running CRM double serving examples/crm-clients.json.
struct Crm {
    url: String,
    _handle: DoubleHandle,
}

impl Crm {
    async fn start() -> Crm {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crm-clients.json");
        let clients = double::load_clients(&path).unwrap();
        let options = DoubleOptions { token: Some("s3cret".into()), ..DoubleOptions::default() };
        let (addr, handle) = double::serve(clients, options, "127.0.0.1:0").await.unwrap();
        Crm { url: format!("http://{addr}"), _handle: handle }
    }
}

/// WhatsApp identifies by the phone it knows; Telegram asks for one (twice at most); the web
/// chat runs the collect-phone scenario; rules join cards by phone.
fn config(crm_url: &str) -> Arc<Config> {
    common::config(&config_toml(crm_url))
}

fn config_toml(crm_url: &str) -> String {
    include_str!("fixtures/crm.toml").replace("CRM_URL", crm_url)
}

fn visitor(id: &str) -> String {
    format!(r#"{{"id":"{id}"}}"#)
}

fn outbound_texts(run: &Run) -> Vec<String> {
    run.topic("outbound.messages").iter().map(|o| o["text"].as_str().unwrap_or("").to_string()).collect()
}

/// The number of the appeal an event carries; `Value::Null` when it carries none.
fn appeal_number(event: &Value) -> &Value {
    &event["appeal"]["number"]
}

fn types(events: &[&Value]) -> Vec<String> {
    events.iter().map(|e| e["type"].as_str().unwrap_or("(outbound)").to_string()).collect()
}

#[tokio::test]
async fn a_whatsapp_client_known_to_the_crm_is_identified_when_the_appeal_opens() {
    let crm = Crm::start().await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = [msg("m1", "wa", "2026-11-21T10:00:00Z", &visitor("79991234567"), "hello")];
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        let identified = run.events("client.identified");
        assert_eq!(identified.len(), 1, "{kind:?}: {}", run.stdout);
        assert_eq!(identified[0]["method"], "crm");
        assert_eq!(identified[0]["client"]["type"], "crm");
        assert_eq!(identified[0]["client"]["name"], "Alfred Hitchcock");
        assert_eq!(appeal_number(identified[0]), 1, "the appeal the identification ran for");
        assert_eq!(outbound_texts(&run), ["You are identified"]);
        assert!(run.events("identification.failed").is_empty());
        assert!(run.topic("inbound.dlq").is_empty());
    }
}

#[tokio::test]
async fn a_client_the_crm_does_not_know_gets_identification_failed_and_the_appeal_proceeds() {
    let crm = Crm::start().await;
    let db = TestDb::new(common::Kind::Sqlite).await;
    let lines = [msg("m1", "wa", "2026-11-21T10:00:00Z", &visitor("79990000001"), "hello")];
    let run = replay_lines(&config(&crm.url), &db, &lines).await;
    let failed = run.events("identification.failed");
    assert_eq!(failed.len(), 1, "{}", run.stdout);
    assert_eq!(failed[0]["reason"], "not_found");
    assert_eq!(appeal_number(failed[0]), 1);
    assert_eq!(run.events("appeal.opened").len(), 1);
    assert!(outbound_texts(&run).is_empty());
}

#[tokio::test]
async fn with_the_crm_down_the_appeal_opens_and_an_event_says_why() {
    // Nothing listens on port 9 of localhost: every call is refused at once.
    let db = TestDb::new(common::Kind::Sqlite).await;
    let lines: Vec<String> = (0..8)
        .map(|i| {
            msg(&format!("m{i}"), "wa", "2026-11-21T10:00:00Z", &visitor(&format!("7999000000{i}")), "hi")
        })
        .collect();
    let run = replay_lines(&config("http://127.0.0.1:9"), &db, &lines).await;
    assert_eq!(run.events("appeal.opened").len(), 8);
    let reasons: Vec<&str> =
        run.events("identification.failed").iter().map(|e| e["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons.len(), 8, "{}", run.stdout);
    let refused = reasons.iter().filter(|r| **r == "connection").count();
    let skipped = reasons.iter().filter(|r| **r == "crm_unavailable").count();
    assert_eq!((refused, skipped), (5, 3), "the breaker opens after 5 failed calls: {reasons:?}");
    for failed in run.events("identification.failed") {
        let cause = failed["cause"]["id"].as_str().unwrap();
        let opened = run.caused_by(cause).into_iter().find(|e| e["type"] == "appeal.opened").unwrap();
        assert_eq!(appeal_number(failed), appeal_number(opened), "{cause}: {failed}");
    }
    assert!(run.topic("inbound.dlq").is_empty());
}

#[tokio::test]
async fn telegram_asks_for_a_phone_repeats_on_nonsense_and_identifies_by_the_answer() {
    let crm = Crm::start().await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let v = visitor("tg-1");
        let lines = [
            msg("m1", "tg", "2026-11-21T10:00:00Z", &v, "hi, my order is late"),
            msg("m2", "tg", "2026-11-21T10:01:00Z", &v, "why do you need it?"),
            msg("m3", "tg", "2026-11-21T10:02:00Z", &v, "8 999 123-45-67"),
        ];
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        assert_eq!(
            outbound_texts(&run),
            ["Please send your phone number", "Please send your phone number", "You are identified"],
            "{kind:?}"
        );
        let identified: Vec<&Value> =
            run.caused_by("m3").into_iter().filter(|e| e["type"] == "client.identified").collect();
        assert_eq!(identified.len(), 1, "{}", run.stdout);
        assert_eq!(
            (&identified[0]["method"], appeal_number(identified[0])),
            (&Value::from("crm"), &Value::from(1)),
            "identified by the answer, in the appeal that asked"
        );
        // Every client message still lands in the appeal.
        let client_messages = run
            .events("appeal.message_added")
            .iter()
            .filter(|e| e["message"]["author_kind"] == "client")
            .count();
        assert_eq!(client_messages, 3);
    }
}

#[tokio::test]
async fn identification_gives_up_after_max_attempts_of_invalid_answers() {
    let crm = Crm::start().await;
    let db = TestDb::new(common::Kind::Sqlite).await;
    let v = visitor("tg-2");
    let lines = [
        msg("m1", "tg", "2026-11-21T10:00:00Z", &v, "hi"),
        msg("m2", "tg", "2026-11-21T10:01:00Z", &v, "no"),
        msg("m3", "tg", "2026-11-21T10:02:00Z", &v, "still no"),
        msg("m4", "tg", "2026-11-21T10:03:00Z", &v, "+7 999 123 45 67"),
    ];
    let run = replay_lines(&config(&crm.url), &db, &lines).await;
    let failed = run.events("identification.failed");
    assert_eq!(failed.len(), 1, "{}", run.stdout);
    assert_eq!(failed[0]["reason"], "no_valid_answer");
    assert_eq!(failed[0]["cause"]["id"], "m3");
    assert_eq!(appeal_number(failed[0]), 1);
    assert!(run.events("client.identified").is_empty(), "m4 comes after identification gave up");
}

#[tokio::test]
async fn a_bot_answer_merges_the_web_card_with_the_whatsapp_card_by_phone() {
    let crm = Crm::start().await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let web = visitor("web-1");
        let lines = [
            msg("m1", "wa", "2026-11-21T10:00:00Z", &visitor("79991234567"), "hello from WhatsApp"),
            msg("m2", "web", "2026-11-21T10:05:00Z", &web, "hello from the site"),
            msg("m3", "web", "2026-11-21T10:06:00Z", &web, "what?"),
            msg("m4", "web", "2026-11-21T10:07:00Z", &web, "+7 (999) 123-45-67"),
        ];
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        let texts = outbound_texts(&run);
        assert_eq!(
            texts,
            [
                "You are identified",
                "Please send your mobile phone number",
                "That does not look like a phone number",
                "Thank you!"
            ],
            "{kind:?}"
        );
        let rejected = run.events("bot.answer_rejected");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0]["message_id"], "m3");
        let by_bot: Vec<&Value> =
            run.events("client.identified").into_iter().filter(|e| e["method"] == "bot").collect();
        assert_eq!(by_bot.len(), 1);
        assert_eq!(
            (&by_bot[0]["identifier"], &by_bot[0]["cause"]["id"]),
            (&Value::from("phone"), &Value::from("m4"))
        );
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1, "{}", run.stdout);
        assert_eq!(merged[0]["rule_id"], "by-phone");
        assert_eq!(merged[0]["cause"]["id"], "m4");
        let blocks: Vec<&str> =
            run.events("bot.block_entered").iter().map(|e| e["block_id"].as_str().unwrap()).collect();
        assert_eq!(blocks, ["has-phone", "ask-phone", "thanks", "done"]);
        let store = db.store().await;
        let entries = store.bot_block_entries().await.unwrap();
        let counts = &entries[&("acme".to_string(), "collect-phone".to_string())];
        assert_eq!(counts.values().sum::<u64>(), 4);
    }
}

#[tokio::test]
async fn a_dialogue_interrupted_by_a_restart_resumes_where_it_was() {
    let crm = Crm::start().await;
    let web = visitor("web-9");
    let lines = [
        msg("m1", "web", "2026-11-21T10:05:00Z", &web, "hello"),
        msg("m2", "web", "2026-11-21T10:06:00Z", &web, "not a phone"),
        msg("m3", "web", "2026-11-21T10:07:00Z", &web, "89121234567"),
    ];
    let config = config(&crm.url);
    let whole = replay_lines(&config, &TestDb::new(common::Kind::Sqlite).await, &lines).await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let first = replay_lines(&config, &db, &lines[..2]).await;
        let second = replay_lines(&config, &db, &lines[2..]).await;
        let split: Vec<String> =
            first.records.iter().chain(&second.records).map(|r| r.line.clone()).collect();
        let once: Vec<String> = whole.records.iter().map(|r| r.line.clone()).collect();
        assert_eq!(split, once, "{kind:?}");
        assert_eq!(outbound_texts(&second), ["Thank you!"]);
    }
}

#[tokio::test]
async fn an_invalid_answer_with_continue_follows_the_invalid_exit() {
    let crm = Crm::start().await;
    let db = TestDb::new(common::Kind::Sqlite).await;
    let lines = [
        msg("m1", "wa", "2026-11-21T10:00:00Z", &visitor("79990000002"), "hello"),
        cmd("start_scenario", "c1", "2026-11-21T10:01:00Z", r#""appeal_number":1,"scenario_id":"contract""#),
        msg("m2", "wa", "2026-11-21T10:02:00Z", &visitor("79990000002"), "I do not know it"),
        cmd("start_scenario", "c2", "2026-11-21T10:03:00Z", r#""appeal_number":1,"scenario_id":"contract""#),
        msg("m3", "wa", "2026-11-21T10:04:00Z", &visitor("79990000002"), "d-42"),
        cmd("start_scenario", "c3", "2026-11-21T10:05:00Z", r#""appeal_number":1,"scenario_id":"nope""#),
    ];
    let run = replay_lines(&config(&crm.url), &db, &lines).await;
    let texts = outbound_texts(&run);
    assert_eq!(
        texts,
        ["Your contract number, please", "An operator will help you", "Your contract number, please"],
        "{}",
        run.stdout
    );
    assert_eq!(types(&run.caused_by("m2")).iter().filter(|t| *t == "bot.answer_rejected").count(), 1);
    let updated: Vec<&Value> =
        run.caused_by("m3").into_iter().filter(|e| e["type"] == "client.updated").collect();
    assert_eq!(updated.len(), 1, "the regex answer is saved: {}", run.stdout);
    assert_eq!(updated[0]["changes"][0], "contract_number");
    let rejected = run.events("command.rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["cause"]["id"], "c3");
}

#[tokio::test]
async fn identify_client_by_phone_links_the_crm_client_manually() {
    let crm = Crm::start().await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = [
            msg("m1", "web", "2026-11-21T10:00:00Z", &visitor("web-5"), "hi"),
            cmd(
                "identify_client",
                "c1",
                "2026-11-21T10:01:00Z",
                r#""appeal_number":1,"identifier":"email","value":"ALMA@example.com""#,
            ),
        ];
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        let identified: Vec<&Value> =
            run.caused_by("c1").into_iter().filter(|e| e["type"] == "client.identified").collect();
        assert_eq!(identified.len(), 1, "{kind:?}: {}", run.stdout);
        assert_eq!(identified[0]["method"], "manual");
        assert_eq!(identified[0]["client"]["name"], "Alma Reville");
        assert_eq!(appeal_number(identified[0]), 1, "the appeal the command names");
        assert_eq!(identified[0]["client"]["type"], "crm");
    }
}

#[tokio::test]
async fn identify_client_without_a_crm_saves_the_identifier_on_the_card() {
    let db = TestDb::new(common::Kind::Sqlite).await;
    let config = common::config(
        r#"
[[projects]]
id = "acme"
  [[projects.channels]]
  id = "web"
  kind = "web_chat"
"#,
    );
    let lines = [
        msg("m1", "web", "2026-11-21T10:00:00Z", &visitor("web-5"), "hi"),
        cmd(
            "identify_client",
            "c1",
            "2026-11-21T10:01:00Z",
            r#""appeal_number":1,"identifier":"phone","value":"8 999 111 22 33""#,
        ),
    ];
    let run = replay_lines(&config, &db, &lines).await;
    let kinds = types(&run.caused_by("c1"));
    assert_eq!(kinds, ["client.identified", "client.updated"], "{}", run.stdout);
    assert_eq!(run.caused_by("c1")[0]["method"], "manual");
}

#[tokio::test]
async fn an_input_sent_to_the_dlq_is_logged_once_though_its_batch_was_applied_twice() {
    // The web chat's bot identifies the visitor by the phone it has just collected: a CRM lookup
    // nobody could predict from the inputs, so the batch is rolled back, looked up and
    // applied again, and the poison input in it is rejected in both attempts.
    let crm = Crm::start().await;
    let toml = config_toml(&crm.url)
        .replace(
            "scenario = \"collect-phone\"\n",
            "scenario = \"collect-phone\"\n    [projects.channels.identification]\n    name = \"by phone\"\n    \
             identifier = \"phone\"\n    success = \"You are identified\"\n",
        )
        .replace(
        "error_text = \"That does not look like a phone number\"\n    next = \"thanks\"",
        "error_text = \"That does not look like a phone number\"\n    next = \"who\"\n    \
         [[projects.scenarios.blocks]]\n    id = \"who\"\n    type = \"identify\"\n    next = \"thanks\"",
    );
    assert!(toml.contains("type = \"identify\""));
    let config = common::config(&toml);
    let logs = LogCapture::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt().with_writer(logs.clone()).with_max_level(tracing::Level::DEBUG).finish(),
    );
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let web = visitor("web-7");
        let lines = [
            msg("m1", "web", "2026-11-21T10:05:00Z", &web, "hello"),
            "{not json".to_string(),
            msg("m2", "web", "2026-11-21T10:06:00Z", &web, "+7 (999) 123-45-67"),
        ];
        let before = logs.text();
        let run = replay_lines(&config, &db, &lines).await;
        assert_eq!(run.topic("inbound.dlq").len(), 1, "{kind:?}");
        let text = logs.text()[before.len()..].to_string();
        assert!(
            text.contains("re-applying"),
            "the batch was applied twice ({kind:?}): {text}\n{}",
            run.stdout
        );
        assert_eq!(text.matches("input sent to the DLQ").count(), 1, "{kind:?}: {text}");
    }
}

/// Log lines written through `tracing`, kept for the test to read.
#[derive(Clone, Default)]
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> LogCapture {
        self.clone()
    }
}

#[tokio::test]
async fn identify_client_with_a_value_the_crm_does_not_know_keeps_the_operators_word() {
    let crm = Crm::start().await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = [
            msg("m1", "web", "2026-11-21T10:00:00Z", &visitor("web-5"), "hi"),
            cmd(
                "identify_client",
                "c1",
                "2026-11-21T10:01:00Z",
                r#""appeal_number":1,"identifier":"phone","value":"8 999 111 22 33""#,
            ),
        ];
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        let caused = run.caused_by("c1");
        assert_eq!(types(&caused), ["client.identified", "client.updated"], "{kind:?}: {}", run.stdout);
        assert_eq!(caused[0]["method"], "manual");
        assert_eq!(caused[0]["crm"], "not_found");
        assert_eq!(appeal_number(caused[0]), 1);
        assert_eq!(caused[1]["changes"], serde_json::json!(["phone"]));
        let card = common::card(&db, caused[0]["client"]["id"].as_str().unwrap()).await;
        let phone = &card.doc.contacts["phone"][0];
        assert_eq!((phone.value.as_str(), phone.display()), ("+79991112233", "8 999 111 22 33"));
    }
}

#[tokio::test]
async fn crm_data_keeps_the_crms_spelling_and_is_compared_normalised() {
    let crm = Crm::start().await;
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let lines = [
            msg("m1", "web", "2026-11-21T10:00:00Z", &visitor("web-7"), "hi"),
            cmd(
                "identify_client",
                "c1",
                "2026-11-21T10:01:00Z",
                r#""appeal_number":1,"identifier":"email","value":"support@globex.example""#,
            ),
        ];
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        let identified = run.caused_by("c1").into_iter().find(|e| e["type"] == "client.identified").unwrap();
        assert_eq!(identified["crm"], "found", "{kind:?}: {}", run.stdout);
        let card = common::card(&db, identified["client"]["id"].as_str().unwrap()).await;
        let manager = &card.doc.fields["manager"][0];
        assert_eq!((manager.display(), manager.value.as_str()), ("Ivan Petrov", "ivan petrov"));
        assert_eq!(card.doc.contacts["email"][0].display(), "support@globex.example");
        assert_eq!(card.doc.contacts["skype"][0].display(), "globex.support");
        assert_eq!(card.doc.name.as_deref(), Some("Globex Corp. (corporate)"));
    }
}

#[tokio::test]
async fn the_bot_stops_when_an_operator_takes_or_writes_in_the_appeal_and_start_scenario_restarts_it() {
    let crm = Crm::start().await;
    let (web, web2) = (visitor("web-1"), visitor("web-2"));
    let lines = [
        msg("m1", "web", "2026-11-21T10:00:00Z", &web, "hello"),
        cmd("assign_appeal", "c1", "2026-11-21T10:01:00Z", r#""appeal_number":1,"operator_id":"op-7""#),
        msg("m2", "web", "2026-11-21T10:02:00Z", &web, "+7 999 123-45-67"),
        cmd(
            "start_scenario",
            "c2",
            "2026-11-21T10:03:00Z",
            r#""appeal_number":1,"scenario_id":"collect-phone""#,
        ),
        msg("m3", "web", "2026-11-21T10:04:00Z", &web, "+7 999 123-45-67"),
        msg("m4", "web", "2026-11-21T10:05:00Z", &web2, "hi"),
        cmd(
            "send_outbound",
            "c3",
            "2026-11-21T10:06:00Z",
            r#""client":{"channel_id":"web","visitor_id":"web-2"},"channel_id":"web","text":"Operator Ivan here""#,
        ),
        msg("m5", "web", "2026-11-21T10:07:00Z", &web2, "8 912 123-45-67"),
    ];
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let run = replay_lines(&config(&crm.url), &db, &lines).await;
        let ask = "Please send your mobile phone number";
        assert_eq!(
            outbound_texts(&run),
            [ask, ask, "Thank you!", ask, "Operator Ivan here"],
            "nothing from the bot after an operator stepped in: {kind:?}"
        );
        let stopped = run.events("bot.stopped");
        assert_eq!(stopped.len(), 2, "{}", run.stdout);
        for (event, cause, appeal) in [(stopped[0], "c1", 1), (stopped[1], "c3", 2)] {
            assert_eq!(event["cause"]["id"], cause);
            assert_eq!(*appeal_number(event), appeal);
            assert_eq!(
                (&event["scenario_id"], &event["block_id"]),
                (&"collect-phone".into(), &"ask-phone".into())
            );
            assert_eq!(event["reason"], "operator");
        }
        assert_eq!(types(&run.caused_by("c1"))[..2], ["appeal.assigned", "bot.stopped"]);
        let c3 = types(&run.caused_by("c3"));
        assert_eq!(c3, ["(outbound)", "bot.stopped", "appeal.message_added"], "stopped before the message");
        let by_bot: Vec<&Value> =
            run.events("client.identified").into_iter().filter(|e| e["method"] == "bot").collect();
        assert_eq!(by_bot.len(), 1, "only the restarted scenario took an answer");
        assert_eq!(by_bot[0]["cause"]["id"], "m3");
    }
}

#[tokio::test]
async fn a_scenario_waiting_for_identification_to_stop_asking_never_starts_once_an_operator_took_the_appeal()
{
    let crm = Crm::start().await;
    // The web chat asks for a phone for the CRM first; its scenario waits for that to end.
    let toml = config_toml(&crm.url).replace(
        "scenario = \"collect-phone\"\n",
        "scenario = \"collect-phone\"\n    [projects.channels.identification]\n    name = \"ask phone\"\n    \
         identifier = \"phone\"\n    ask_client = true\n    question = \"Your phone, please\"\n    \
         success = \"You are identified\"\n    max_attempts = 1\n",
    );
    let web = visitor("web-5");
    let lines = [
        msg("m1", "web", "2026-11-21T10:00:00Z", &web, "hello"),
        cmd("assign_appeal", "c1", "2026-11-21T10:01:00Z", r#""appeal_number":1,"operator_id":"op-7""#),
        msg("m2", "web", "2026-11-21T10:02:00Z", &web, "no phone for you"),
    ];
    for kind in kinds() {
        let run = replay_lines(&common::config(&toml), &TestDb::new(kind).await, &lines).await;
        let stopped = run.events("bot.stopped");
        assert_eq!(stopped.len(), 1, "{}", run.stdout);
        assert_eq!(stopped[0]["scenario_id"], "collect-phone");
        assert!(stopped[0].get("block_id").is_none(), "it had not started: {}", stopped[0]);
        assert_eq!(outbound_texts(&run), ["Your phone, please"], "the scenario never spoke");
        assert!(run.events("bot.block_entered").is_empty());
    }
}
