//! The operator actions of the seeds (SPEC "Command" table and "Appeals and messages"):
//! comments and tags on the client's dialogue, editing a contact, writing on WhatsApp to a
//! phone an operator added, and client types as seed 002 defines them. Asserted on the
//! records (and the committed card) of a real replay, on SQLite and PostgreSQL.

mod common;

use common::*;
use serde_json::{json, Value};

fn t(min: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap();
    (base + chrono::Duration::minutes(min)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn each_backend(lines: &[String], check: impl AsyncFn(&Run, &TestDb)) {
    each_backend_with(BASE, lines, check).await
}

async fn each_backend_with(toml: &str, lines: &[String], check: impl AsyncFn(&Run, &TestDb)) {
    let config = config(toml);
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let run = replay_lines(&config, &db, lines).await;
        eprintln!("backend {kind:?}");
        check(&run, &db).await;
    }
}

/// The (field, value) rows the value index holds for a card, sorted.
async fn value_rows(db: &TestDb, card: &str) -> Vec<(String, String)> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
    let select = "SELECT field, value FROM client_values WHERE client_id = $1 ORDER BY field, value";
    let select = if db.url.starts_with("sqlite") { select.replace("$1", "?") } else { select.to_string() };
    let rows: Vec<(String, String)> = sqlx::query_as(&select).bind(card).fetch_all(&pool).await.unwrap();
    pool.close().await;
    rows
}

fn first<'a>(run: &'a Run, cause: &str, kind: &str) -> &'a Value {
    let found = run.caused_by(cause).into_iter().find(|e| e["type"] == kind);
    found.unwrap_or_else(|| panic!("{cause} caused no {kind}:\n{}", run.stdout))
}

fn client_of(run: &Run, cause: &str) -> String {
    first(run, cause, "appeal.message_added")["client"]["id"].as_str().unwrap().to_string()
}

const TG1: &str = r#""client":{"channel_id":"acme-tg","visitor_id":"t1"}"#;

#[tokio::test]
async fn comments_and_tags_on_the_clients_dialogue_are_kept_with_the_card_and_survive_a_merge() {
    let lines = [
        msg("m1", "acme-tg", &t(0), r#"{"id":"t1","phone":"+7 999 123-45-67"}"#, "hi"),
        cmd("comment_client", "c1", &t(1), &format!(r#"{TG1},"text":"Prefers calls after 6 PM""#)),
        cmd("tag_client", "c2", &t(2), &format!(r#"{TG1},"tag":"vip""#)),
        cmd("tag_client", "c3", &t(3), &format!(r#"{TG1},"tag":"vip""#)),
        cmd(
            "comment_appeal",
            "c4",
            &t(4),
            r#""appeal_number":1,"text":"Asked about the card","scope":"dialogue""#,
        ),
        cmd("tag_appeal", "c5", &t(5), r#""appeal_number":1,"tag":"prepaid","scope":"dialogue""#),
        cmd(
            "comment_appeal",
            "c6",
            &t(6),
            r#""appeal_number":1,"text":"This session only","scope":"session""#,
        ),
        msg("m2", "acme-wa", &t(7), r#"{"id":"79991234567"}"#, "from WhatsApp"),
        cmd(
            "tag_client",
            "c7",
            &t(8),
            r#""client":{"channel_id":"acme-wa","visitor_id":"79991234567"},"tag":"prepaid""#,
        ),
    ];
    each_backend(&lines, async |run, db| {
        let card = client_of(run, "m1");
        let c1 = first(run, "c1", "client.commented");
        assert_eq!(
            (c1["text"].clone(), c1["operator_id"].clone()),
            (json!("Prefers calls after 6 PM"), json!("op-7"))
        );
        assert_eq!(c1["client"]["id"], card.as_str());
        assert_eq!(first(run, "c2", "client.tagged")["tag"], "vip");
        assert!(first(run, "c3", "command.rejected")["reason"].as_str().unwrap().contains("already has tag"));
        assert_eq!(first(run, "c4", "client.commented")["appeal"]["number"], 1, "it came through appeal 1");
        assert_eq!(first(run, "c5", "client.tagged")["tag"], "prepaid");
        assert_eq!(first(run, "c6", "appeal.commented")["text"], "This session only");
        assert!(
            first(run, "c7", "command.rejected")["reason"].as_str().unwrap().contains("already has tag"),
            "the merged card has the tag"
        );
        let c = common::card(db, &card).await;
        assert_eq!(c.doc.tags, ["vip", "prepaid"]);
        let comments: Vec<&str> = c.doc.comments.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(comments, ["Prefers calls after 6 PM", "Asked about the card"]);
    })
    .await;
}

#[tokio::test]
async fn an_unknown_comment_scope_goes_to_the_dlq() {
    let lines = [cmd("comment_appeal", "c1", &t(0), r#""appeal_number":1,"text":"x","scope":"everyone""#)];
    each_backend(&lines, async |run, _| {
        let dlq = run.topic("inbound.dlq");
        assert_eq!(dlq.len(), 1, "{}", run.stdout);
        assert!(
            dlq[0]["reason"].as_str().unwrap().contains("`session` or `dialogue`"),
            "{}",
            dlq[0]["reason"]
        );
    })
    .await;
}

#[tokio::test]
async fn edit_contact_replaces_one_hand_added_contact_and_the_new_value_can_merge() {
    let edit = |id: &str, min: i64, old: &str, new: &str| {
        let fields = format!(r#"{TG1},"contact_type":"phone","old_value":"{old}","value":"{new}""#);
        cmd("edit_contact", id, &t(min), &fields)
    };
    let lines = [
        msg("m0", "acme-wa", &t(0), r#"{"id":"79995550103"}"#, "older WhatsApp card"),
        msg("m1", "acme-tg", &t(1), r#"{"id":"t1","phone":"+7 999 111-11-11"}"#, "hi"),
        cmd(
            "add_contact",
            "c1",
            &t(2),
            &format!(r#"{TG1},"contact_type":"phone","value":"+7 999 555-01-02""#),
        ),
        edit("c2", 3, "8 999 111-11-11", "+7 999 777-77-77"),
        edit("c3", 4, "+7 999 555-01-02", "+7 999 111-11-11"),
        edit("c4", 5, "+79995550102", "8 (999) 555-01-03"),
        edit("c5", 6, "+7 999 000-00-00", "+7 999 000-00-01"),
    ];
    each_backend(&lines, async |run, db| {
        let not_manual = first(run, "c2", "command.rejected");
        assert!(not_manual["reason"].as_str().unwrap().contains("no hand-added phone"), "{not_manual}");
        assert!(first(run, "c3", "command.rejected")["reason"]
            .as_str()
            .unwrap()
            .contains("already has phone"));
        assert_eq!(first(run, "c4", "client.updated")["changes"], json!(["phone"]));
        let merged = first(run, "c4", "client.merged");
        assert_eq!(merged["matched"], json!([{"field": "phone", "value": "+79995550103"}]));
        assert!(first(run, "c5", "command.rejected")["reason"].as_str().is_some());
        let c = common::card(db, &client_of(run, "m1")).await;
        let manual: Vec<&str> = c.doc.contacts["phone"]
            .iter()
            .filter(|v| v.source == appealflow::model::Source::Manual)
            .map(|v| v.display())
            .collect();
        assert_eq!(manual, ["8 (999) 555-01-03"]);
        assert!(!c.values("phone").contains("+79995550102"));
    })
    .await;
}

#[tokio::test]
async fn a_value_edited_away_in_a_later_batch_leaves_the_value_index_and_the_values_kept_still_match() {
    // One input per batch: the edit rewrites the index rows of a card stored by earlier
    // batches, the way a live desk's edits arrive.
    let toml = format!("[pipeline]\nbatch_size = 1\n{BASE}");
    let lines = [
        msg("m1", "acme-tg", &t(0), r#"{"id":"t1","phone":"+7 999 111-11-11"}"#, "hi"),
        cmd(
            "add_contact",
            "c1",
            &t(1),
            &format!(r#"{TG1},"contact_type":"phone","value":"+7 999 555-01-02""#),
        ),
        cmd(
            "edit_contact",
            "c2",
            &t(2),
            &format!(
                r#"{TG1},"contact_type":"phone","old_value":"+7 999 555-01-02","value":"+7 999 555-01-03""#
            ),
        ),
        msg("m2", "acme-wa", &t(3), r#"{"id":"79995550102"}"#, "the edited-away number"),
        msg("m3", "acme-wa", &t(4), r#"{"id":"79995550103"}"#, "the new number"),
        msg("m4", "acme-wa", &t(5), r#"{"id":"79991111111"}"#, "the number the gateway gave"),
    ];
    each_backend_with(&toml, &lines, async |run, db| {
        let card = client_of(run, "m1");
        let index = value_rows(db, &card).await;
        let phones: Vec<&str> = index.iter().filter(|(f, _)| f == "phone").map(|(_, v)| v.as_str()).collect();
        assert_eq!(phones, ["+79991111111", "+79995550103"], "the card's phone rows in the value index");
        assert_eq!(first(run, "c2", "client.updated")["changes"], json!(["phone"]));
        assert!(run.caused_by("m2").iter().all(|e| e["type"] != "client.merged"), "{}", run.stdout);
        assert_ne!(client_of(run, "m2"), card);
        for cause in ["m3", "m4"] {
            assert_eq!(first(run, cause, "client.merged")["survivor_id"], json!(card), "{cause}");
            assert_eq!(client_of(run, cause), card, "{cause}");
        }
    })
    .await;
}

#[tokio::test]
async fn whatsapp_reaches_a_phone_an_operator_added_with_a_template_and_the_answer_lands_on_the_card() {
    let send = |id: &str, min: i64, body: &str| {
        cmd(
            "send_outbound",
            id,
            &t(min),
            &format!(
                r#""client":{{"channel_id":"acme-web","visitor_id":"w1"}},"channel_id":"acme-wa",{body}"#
            ),
        )
    };
    let lines = [
        msg("m1", "acme-web", &t(0), r#"{"id":"w1","name":"Anna"}"#, "my phone is 8 916 555 01 02"),
        send("c0", 1, r#""text":"Hello""#),
        cmd(
            "add_contact",
            "c1",
            &t(2),
            r#""client":{"channel_id":"acme-web","visitor_id":"w1"},"contact_type":"phone","value":"8 916 555 01 02""#,
        ),
        send("c2", 3, r#""text":"Hello from WhatsApp""#),
        send("c3", 4, r#""template":{"name":"callback","params":{}}"#),
        msg("m2", "acme-wa", &t(30), r#"{"id":"79165550102"}"#, "yes, call me"),
        send("c4", 31, r#""text":"Calling you now""#),
    ];
    each_backend(&lines, async |run, _| {
        let anna = client_of(run, "m1");
        assert!(first(run, "c0", "outbound.refused")["reason"].as_str().unwrap().contains("no visitor"));
        let no_window = first(run, "c2", "outbound.refused")["reason"].as_str().unwrap().to_string();
        assert!(no_window.starts_with("outside_24h_window"), "{no_window}");
        let out = run.topic("outbound.messages");
        assert_eq!(out.len(), 2, "{}", run.stdout);
        assert_eq!(
            (out[0]["visitor_id"].clone(), out[0]["appeal_number"].clone()),
            (json!("79165550102"), Value::Null)
        );
        assert_eq!(out[0]["template"]["name"], "callback");
        assert!(
            run.caused_by("m2").iter().all(|e| e["type"] != "client.created"),
            "the answer needs no new card"
        );
        assert_eq!(client_of(run, "m2"), anna);
        assert_eq!(out[1]["text"], "Calling you now");
        assert_eq!(out[1]["appeal_number"], first(run, "m2", "appeal.opened")["appeal"]["number"]);
    })
    .await;
}

#[tokio::test]
async fn whatsapp_by_phone_never_writes_to_another_clients_number() {
    let lines = [
        msg("m0", "acme-wa", &t(0), r#"{"id":"79165550102"}"#, "someone else"),
        cmd(
            "remove_contact",
            "c0",
            &t(1),
            r#""client":{"channel_id":"acme-wa","visitor_id":"79165550102"},"contact_type":"phone","value":"+79165550102""#,
        ),
        msg("m1", "acme-web", &t(2), r#"{"id":"w1"}"#, "hi"),
        cmd(
            "add_contact",
            "c1",
            &t(3),
            r#""client":{"channel_id":"acme-web","visitor_id":"w1"},"contact_type":"phone","value":"+7 916 555-01-02""#,
        ),
        cmd(
            "send_outbound",
            "c2",
            &t(4),
            r#""client":{"channel_id":"acme-web","visitor_id":"w1"},"channel_id":"acme-wa","template":{"name":"callback","params":{}}"#,
        ),
    ];
    each_backend(&lines, async |run, _| {
        assert!(run.events("client.merged").is_empty(), "{}", run.stdout);
        let refused = first(run, "c2", "outbound.refused");
        assert!(refused["reason"].as_str().unwrap().contains("another client"), "{refused}");
        assert!(run.topic("outbound.messages").is_empty());
    })
    .await;
}

#[tokio::test]
async fn client_types_follow_seed_002() {
    let create = |id: &str, contacts: &str| {
        cmd("create_client", id, &t(9), &format!(r#""name":"{id}","contacts":[{contacts}]"#))
    };
    let lines = [
        msg("m1", "acme-web", &t(0), r#"{"id":"w1"}"#, "anonymous"),
        msg("m2", "acme-web", &t(1), r#"{"id":"w2","external_id":"acc-2"}"#, "signed in"),
        msg("m3", "acme-web", &t(2), r#"{"id":"w1","external_id":"acc-1"}"#, "signed in now"),
        msg("m4", "acme-tg", &t(3), r#"{"id":"t1"}"#, "messenger"),
        msg("m5", "acme-corp", &t(4), r#"{"id":"c1"}"#, "corporate"),
        create("c1", ""),
        create("c2", r#"{"contact_type":"phone","value":"+7 999 222-33-44"}"#),
        create("c3", r#"{"contact_type":"crm_id","value":"CRM-9"}"#),
    ];
    each_backend(&lines, async |run, _| {
        let created_type = |cause: &str| first(run, cause, "client.created")["client"]["type"].clone();
        assert_eq!(created_type("m1"), "internal", "an anonymous widget visitor");
        assert_eq!(created_type("m2"), "crm", "the customer's own login");
        let linked = first(run, "m3", "client.updated");
        assert_eq!(
            (linked["changes"].clone(), linked["client"]["type"].clone()),
            (json!(["type"]), json!("crm"))
        );
        assert_eq!(created_type("m4"), "channel");
        assert_eq!(created_type("m5"), "crm", "a fixed client is known by its external ID");
        assert_eq!(created_type("c1"), "internal");
        assert_eq!(created_type("c2"), "channel");
        assert_eq!(created_type("c3"), "crm");
    })
    .await;
}

#[tokio::test]
async fn an_unknown_input_type_goes_to_the_dlq_with_the_known_types() {
    let lines = [r#"{"type":"comment_everyone","command_id":"c1","project_id":"acme"}"#.to_string()];
    each_backend(&lines, async |run, _| {
        let reason = run.topic("inbound.dlq")[0]["reason"].as_str().unwrap().to_string();
        for known in ["message", "status", "comment_client", "tag_client", "edit_contact", "close_appeal"] {
            assert!(reason.contains(known), "{reason}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_card_revision_counts_its_changes_not_its_messages_and_a_stale_command_changes_nothing() {
    let rename = |id: &str, min: i64, expected: u64, name: &str| {
        cmd("rename_client", id, &t(min), &format!(r#"{TG1},"name":"{name}","expected_revision":{expected}"#))
    };
    let merge = |id: &str, min: i64, target: u64, source: u64| {
        let fields = format!(
            r#""target":{{"channel_id":"acme-tg","visitor_id":"t1"}},"source":{{"channel_id":"acme-wa","visitor_id":"79990000001"}},"target_revision":{target},"source_revision":{source}"#
        );
        cmd("merge_clients", id, &t(min), &fields)
    };
    let lines = [
        msg("m1", "acme-tg", &t(0), r#"{"id":"t1","first_name":"Anna"}"#, "hi"),
        msg("m2", "acme-tg", &t(1), r#"{"id":"t1","first_name":"Anna"}"#, "still there?"),
        rename("c1", 2, 1, "Anna Petrova"),
        rename("c2", 3, 1, "Anna P."),
        cmd("tag_client", "c3", &t(4), &format!(r#"{TG1},"tag":"vip""#)),
        msg("m3", "acme-wa", &t(5), r#"{"id":"79990000001"}"#, "other channel"),
        merge("c4", 6, 2, 1),
        merge("c5", 7, 3, 1),
    ];
    each_backend(&lines, async |run, db| {
        let card = client_of(run, "m1");
        assert!(run.caused_by("c1").iter().any(|e| e["type"] == "client.updated"));
        let stale = first(run, "c2", "command.rejected");
        assert!(stale["reason"].as_str().unwrap().starts_with("stale_revision"), "{stale}");
        assert_eq!(stale["revision"], 2, "two messages and one rename: revision 2");
        let stale_merge = first(run, "c4", "command.rejected");
        assert_eq!(stale_merge["revision"], 3, "{stale_merge}");
        assert!(run.caused_by("c5").iter().any(|e| e["type"] == "client.merged"));
        let c = common::card(db, &card).await;
        assert_eq!(c.doc.name.as_deref(), Some("Anna Petrova"), "the stale rename changed nothing");
        assert_eq!(c.doc.revision, 4, "created, renamed, tagged, merged");

        let store = db.store().await;
        let outcomes = store.command_outcomes("acme", &["c1", "c2", "c5", "never-sent"]).await.unwrap();
        store.close().await;
        let by_id = |id: &str| outcomes.iter().find(|o| o.command_id == id).unwrap_or_else(|| panic!("{id}"));
        assert_eq!(outcomes.len(), 3);
        assert_eq!(
            (by_id("c1").status, by_id("c1").revision),
            (appealflow::emit::OutcomeStatus::Applied, Some(2))
        );
        assert_eq!(by_id("c2").status, appealflow::emit::OutcomeStatus::Rejected);
        assert_eq!(by_id("c2").revision, Some(2));
        assert_eq!(by_id("c5").revision, Some(4));
        assert_eq!(by_id("c5").client.as_ref().map(|c| c.id.as_str()), Some(card.as_str()));
    })
    .await;
}

#[tokio::test]
async fn a_template_the_project_does_not_list_is_refused_and_a_listed_one_goes() {
    let toml = BASE.replacen(
        "  [[projects.channels]]",
        "  [[projects.templates]]\n  name = \"callback\"\n  params = [\"time\"]\n  [[projects.channels]]",
        1,
    );
    let send = |id: &str, name: &str| {
        cmd(
            "send_outbound",
            id,
            &t(1),
            &format!(
                r#""client":{{"channel_id":"acme-tg","visitor_id":"t1"}},"channel_id":"acme-tg","template":{{"name":"{name}","params":{{"time":"18:00"}}}}"#
            ),
        )
    };
    let lines = [
        msg("m1", "acme-tg", &t(0), r#"{"id":"t1"}"#, "hi"),
        send("c1", "promo_blast"),
        send("c2", "callback"),
    ];
    each_backend_with(&toml, &lines, async |run, _| {
        let rejected = run.caused_by("c1").into_iter().find(|e| e["type"] == "command.rejected").cloned();
        let reason = rejected.map(|e| e["reason"].as_str().unwrap().to_string()).unwrap_or_default();
        assert!(reason.contains("not one of the project's templates (callback)"), "{}", run.stdout);
        let sent = run.topic("outbound.messages");
        assert!(sent.iter().any(|o| o["template"]["name"] == "callback"), "{}", run.stdout);
        assert!(!sent.iter().any(|o| o["template"]["name"] == "promo_blast"));
    })
    .await;
}
