//! SPEC "Identity rules that users rely on" and the conversation key, each asserted on the
//! records (and, where only the card shows it, the committed card) of a real replay, on
//! SQLite and PostgreSQL. Every test here failed on the first release.

mod common;

use common::*;
use serde_json::{json, Value};

/// 2026-11-21T10:00:00Z plus `min` minutes (and `sec` seconds).
fn t(min: i64, sec: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap();
    (base + chrono::Duration::seconds(min * 60 + sec)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Replays `lines` on a fresh store of every backend; `check` gets the run and the store.
async fn each_backend(lines: &[String], check: impl AsyncFn(&Run, &TestDb)) {
    let config = config(BASE);
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let run = replay_lines(&config, &db, lines).await;
        eprintln!("backend {kind:?}");
        check(&run, &db).await;
    }
}

fn first<'a>(run: &'a Run, cause: &str, kind: &str) -> &'a Value {
    let found = run.caused_by(cause).into_iter().find(|e| e["type"] == kind);
    found.unwrap_or_else(|| panic!("{cause} caused no {kind}:\n{}", run.stdout))
}

fn created_by(run: &Run, cause: &str) -> String {
    first(run, cause, "client.created")["client"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_shared_browser_never_merges_two_accounts() {
    let lines = [
        msg("m1", "acme-web", &t(0, 0), r#"{"id":"w1","external_id":"acc-anna","name":"Anna"}"#, "hi"),
        msg("m2", "acme-web", &t(1, 0), r#"{"id":"w1"}"#, "logged out"),
        msg("m3", "acme-web", &t(2, 0), r#"{"id":"w1","external_id":"acc-boris","name":"Boris"}"#, "hi"),
        cmd(
            "send_outbound",
            "c1",
            &t(3, 0),
            r#""client":{"external_id":"acc-anna"},"channel_id":"acme-web","text":"Anna?""#,
        ),
    ];
    each_backend(&lines, async |run, db| {
        assert!(run.events("client.merged").is_empty(), "{}", run.stdout);
        let anna = created_by(run, "m1");
        let boris = created_by(run, "m3");
        assert_ne!(anna, boris);
        assert_eq!(first(run, "m2", "appeal.message_added")["client"]["id"], anna.as_str());
        let opened = first(run, "m3", "appeal.opened");
        assert_eq!(opened["client"]["id"], boris.as_str(), "Anna's open conversations stay hers");
        assert_eq!(opened["appeal"]["number"], 3);
        let refused = first(run, "c1", "outbound.refused");
        assert!(refused["reason"].as_str().unwrap().contains("no visitor"), "{refused}");
        let anna = card(db, &anna).await;
        assert_eq!(anna.doc.name.as_deref(), Some("Anna"));
        assert!(anna.doc.visitors.is_empty(), "the device moved to Boris: {:?}", anna.doc.visitors);
        assert_eq!(anna.doc.external_ids.iter().collect::<Vec<_>>(), ["acc-anna"]);
        let boris = card(db, &boris).await;
        assert_eq!(boris.doc.name.as_deref(), Some("Boris"));
        assert_eq!(boris.doc.visitors.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_older_anonymous_card_joining_a_younger_account_survives_with_the_account_name() {
    let lines = [
        msg("m1", "acme-web", &t(0, 0), r#"{"id":"w1","name":"Guest 123"}"#, "hi"),
        msg(
            "m2",
            "acme-tg",
            &t(1, 0),
            r#"{"id":"t1","external_id":"acc-dmitry","name":"Dmitry Orlov"}"#,
            "hi",
        ),
        msg("m3", "acme-web", &t(2, 0), r#"{"id":"w1","external_id":"acc-dmitry"}"#, "signed in"),
    ];
    each_backend(&lines, async |run, _| {
        let guest = created_by(run, "m1");
        let dmitry = created_by(run, "m2");
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1, "{}", run.stdout);
        assert_eq!(merged[0]["by"], "external_id");
        assert_eq!(merged[0]["survivor_id"], guest.as_str(), "the oldest card survives every merge");
        assert_eq!(merged[0]["absorbed_ids"], json!([dmitry]));
        assert_eq!(
            merged[0]["client"]["name"], "Dmitry Orlov",
            "an external-ID profile outranks a guest name"
        );
        assert_eq!(merged[0]["matched"], json!([{"field": "external_id", "value": "acc-dmitry"}]));
        // Signing in mid-conversation continues it: no appeal opens for m3.
        assert_eq!(run.events("appeal.opened").len(), 2);
        assert_eq!(first(run, "m3", "appeal.message_added")["appeal"]["number"], 1);
    })
    .await;
}

#[tokio::test]
async fn values_accumulate_so_three_people_end_on_one_card_in_any_order() {
    let web = |id: &str, msg_id: &str, contract: &str| {
        let visitor =
            format!(r#"{{"id":"{id}","email":"E@x.example","fields":{{"contract_number":"{contract}"}}}}"#);
        msg(msg_id, "acme-web", &t(0, 0), &visitor, "hi")
    };
    let mail = |msg_id: &str, contract: &str| {
        let visitor = format!(r#"{{"id":"e@x.example","fields":{{"contract_number":"{contract}"}}}}"#);
        msg(msg_id, "acme-mail", &t(0, 0), &visitor, "hi")
    };
    let (w1, w2, mail1, mail2) =
        (web("w1", "a", "D-1"), web("w2", "b", "D-2"), mail("c", "D-1"), mail("d", "D-2"));
    let orders = [
        vec![w1.clone(), w2.clone(), mail1.clone(), mail2.clone()],
        vec![mail1.clone(), mail2.clone(), w1.clone(), w2.clone()],
        vec![mail1, w2, mail2, w1],
    ];
    let want = vec![vec!["acme-mail:e@x.example".to_string(), "acme-web:w1".into(), "acme-web:w2".into()]];
    for lines in orders {
        each_backend(&lines, async |run, db| {
            assert_same_groups(&visitor_components(run), &want);
            let card = card(db, run.events("client.created")[0]["client"]["id"].as_str().unwrap()).await;
            assert_eq!(card.values("contract_number").into_iter().collect::<Vec<_>>(), ["d-1", "d-2"]);
        })
        .await;
    }
}

#[tokio::test]
async fn invalid_phones_are_kept_for_operators_and_never_merge_strangers() {
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1","phone":"12345"}"#, "hi"),
        msg("m2", "acme-tg", &t(1, 0), r#"{"id":"t2","phone":"1-2-3-4-5"}"#, "hi"),
        msg("m3", "acme-tg", &t(2, 0), r#"{"id":"t3","phone":"020 7946 0958"}"#, "hi"),
        msg("m4", "acme-tg", &t(3, 0), r#"{"id":"t4","phone":"020 7946 0958"}"#, "hi"),
        msg("m5", "acme-tg", &t(4, 0), r#"{"id":"t1","phone":"12345"}"#, "again"),
    ];
    each_backend(&lines, async |run, db| {
        assert!(run.events("client.merged").is_empty(), "{}", run.stdout);
        for cause in ["m1", "m2", "m3", "m4"] {
            let updated = first(run, cause, "client.updated");
            assert_eq!(updated["rejected"], json!(["phone"]), "{cause}");
            assert_eq!(updated["changes"], json!(["invalid_values"]), "{cause}");
        }
        assert!(
            run.caused_by("m5").iter().all(|e| e["type"] != "client.updated"),
            "a repeat changes nothing"
        );
        let t1 = card(db, &created_by(run, "m1")).await;
        assert!(t1.values("phone").is_empty());
        assert_eq!(t1.doc.invalid_values.len(), 1);
        assert_eq!(
            (t1.doc.invalid_values[0].field.as_str(), t1.doc.invalid_values[0].display.as_str()),
            ("phone", "12345")
        );
    })
    .await;
}

#[tokio::test]
async fn every_operator_path_holds_three_manual_contacts_of_a_type_and_gateway_values_do_not_count() {
    let set = |id: &str, n: u32| {
        let fields = format!(
            r#""client":{{"channel_id":"acme-tg","visitor_id":"t1"}},"field":"phone","value":"+7 999 000-00-0{n}""#
        );
        cmd("set_client_field", id, &t(1, n as i64), &fields)
    };
    let create = r#""name":"Four phones","contacts":[{"contact_type":"phone","value":"+7 999 100-00-01"},{"contact_type":"phone","value":"+7 999 100-00-02"},{"contact_type":"phone","value":"+7 999 100-00-03"},{"contact_type":"phone","value":"+7 999 100-00-04"}]"#;
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1","phone":"+7 999 111-11-11"}"#, "hi"),
        set("c1", 1),
        set("c2", 2),
        set("c3", 3),
        set("c4", 4),
        cmd(
            "add_contact",
            "c5",
            &t(2, 0),
            r#""client":{"channel_id":"acme-tg","visitor_id":"t1"},"contact_type":"phone","value":"+7 999 000-00-05""#,
        ),
        cmd("create_client", "c6", &t(3, 0), create),
    ];
    each_backend(&lines, async |run, db| {
        for ok in ["c1", "c2", "c3"] {
            assert_eq!(first(run, ok, "client.updated")["changes"], json!(["phone"]), "{ok}");
        }
        for refused in ["c4", "c5", "c6"] {
            let rejected = first(run, refused, "command.rejected");
            assert!(rejected["reason"].as_str().unwrap().contains("3 phone contacts"), "{rejected}");
        }
        assert_eq!(first(run, "c4", "command.rejected")["client"]["id"], created_by(run, "m1").as_str());
        let t1 = card(db, &created_by(run, "m1")).await;
        assert_eq!(t1.values("phone").len(), 4, "one from the gateway, three by hand");
        assert_eq!(t1.doc.manual_count("phone"), 3);
    })
    .await;
}

#[tokio::test]
async fn values_keep_the_spelling_they_arrived_with_and_are_compared_normalised() {
    let visitor = r#"{"id":"w1","email":"Alfred@Example.com","fields":{"note":"VIP: call after 6 PM","contract_number":" D-100 "}}"#;
    let lines = [
        msg("m1", "acme-web", &t(0, 0), visitor, "hi"),
        cmd(
            "set_client_field",
            "c1",
            &t(1, 0),
            r#""client":{"channel_id":"acme-web","visitor_id":"w1"},"field":"segment","value":"Gold Plus""#,
        ),
        cmd(
            "set_client_field",
            "c2",
            &t(2, 0),
            r#""client":{"channel_id":"acme-web","visitor_id":"w1"},"field":"segment","value":"Platinum""#,
        ),
        msg(
            "m2",
            "acme-mail",
            &t(3, 0),
            r#"{"id":"ALFRED@example.com ","fields":{"contract_number":"d-100"}}"#,
            "hi",
        ),
    ];
    each_backend(&lines, async |run, db| {
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1, "e-mail and contract compare normalised: {}", run.stdout);
        let matched = &merged[0]["matched"];
        assert_eq!(*matched, json!([{"field": "contract_number", "value": "d-100"}, {"field": "email", "value": "alfred@example.com"}]));
        let c = card(db, &created_by(run, "m1")).await;
        let note = &c.doc.fields["note"][0];
        assert_eq!((note.display(), note.value.as_str()), ("VIP: call after 6 PM", "vip: call after 6 pm"));
        assert_eq!(c.doc.contacts["email"][0].display(), "Alfred@Example.com");
        assert_eq!(c.doc.fields["contract_number"][0].display(), "D-100");
        let segment: Vec<&str> = c.doc.fields["segment"].iter().map(|v| v.display()).collect();
        assert_eq!(segment, ["Platinum"], "the operator's value replaces the operator's previous one");
    })
    .await;
}

#[tokio::test]
async fn a_merge_between_two_messages_of_a_visitor_does_not_break_their_group() {
    let lines = [
        msg("m0", "acme-wa", &t(0, 0), r#"{"id":"79991234567"}"#, "older card"),
        msg("m1", "acme-tg", &t(60, 0), r#"{"id":"t1"}"#, "hello"),
        msg("m2", "acme-tg", &t(60, 10), r#"{"id":"t1","phone":"8 999 123-45-67"}"#, "my phone"),
    ];
    each_backend(&lines, async |run, _| {
        assert_eq!(run.events("client.merged").len(), 1, "{}", run.stdout);
        let m2 = first(run, "m2", "appeal.message_added");
        assert_eq!(m2["message"]["group_id"], "m1");
        assert_eq!(m2["message"]["visitor_id"], "t1");
        assert_eq!(m2["client"]["id"], created_by(run, "m0").as_str());
    })
    .await;
}

#[tokio::test]
async fn an_input_dated_in_2036_goes_to_the_dlq_and_closes_nothing() {
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1"}"#, "hi"),
        msg("m2", "acme-tg", "2036-01-01T00:00:00Z", r#"{"id":"t2"}"#, "from the future"),
        cmd("close_appeal", "c1", "2036-01-01T00:00:00Z", r#""appeal_number":1"#),
        msg("m3", "acme-tg", &t(60, 0), r#"{"id":"t1"}"#, "still here"),
    ];
    each_backend(&lines, async |run, _| {
        let dlq = run.topic("inbound.dlq");
        assert_eq!(dlq.len(), 2, "{}", run.stdout);
        assert!(dlq[0]["reason"].as_str().unwrap().starts_with("sent_at is in the future"), "{}", dlq[0]);
        assert!(dlq[1]["reason"].as_str().unwrap().starts_with("issued_at is in the future"), "{}", dlq[1]);
        assert!(run.events("appeal.closed").is_empty(), "{}", run.stdout);
        assert_eq!(first(run, "m3", "appeal.message_added")["appeal"]["number"], 1);
    })
    .await;
}

#[tokio::test]
async fn two_devices_of_one_signed_in_person_share_one_conversation_and_replies_go_to_the_last_writer() {
    let send = |id: &str, at: String| {
        cmd(
            "send_outbound",
            id,
            &at,
            r#""client":{"external_id":"acc-1"},"channel_id":"acme-web","text":"Hello""#,
        )
    };
    let lines = [
        msg("m1", "acme-web", &t(0, 0), r#"{"id":"laptop","external_id":"acc-1"}"#, "from the laptop"),
        msg("m2", "acme-web", &t(1, 0), r#"{"id":"phone","external_id":"acc-1"}"#, "from the phone"),
        send("c1", t(2, 0)),
        msg("m3", "acme-web", &t(3, 0), r#"{"id":"laptop","external_id":"acc-1"}"#, "laptop again"),
        send("c2", t(4, 0)),
    ];
    each_backend(&lines, async |run, _| {
        assert_eq!(run.events("appeal.opened").len(), 1, "{}", run.stdout);
        assert_eq!(first(run, "m2", "appeal.message_added")["appeal"]["number"], 1);
        let out = run.topic("outbound.messages");
        let to: Vec<&str> = out.iter().map(|o| o["visitor_id"].as_str().unwrap()).collect();
        assert_eq!(to, ["phone", "laptop"]);
        assert!(out.iter().all(|o| o["appeal_number"] == 1));
    })
    .await;
}

#[tokio::test]
async fn a_fixed_client_channel_records_its_visitors_and_can_be_written_to() {
    let lines = [
        msg("m1", "acme-corp", &t(0, 0), r#"{"id":"c-1","name":"Kate","phone":"+7 999 555-44-33"}"#, "hi"),
        cmd(
            "send_outbound",
            "c1",
            &t(1, 0),
            r#""client":{"external_id":"corp-1"},"channel_id":"acme-corp","text":"Hello""#,
        ),
        cmd(
            "rename_client",
            "c2",
            &t(2, 0),
            r#""client":{"channel_id":"acme-corp","visitor_id":"c-1"},"name":"Corp One""#,
        ),
    ];
    each_backend(&lines, async |run, db| {
        let corp = created_by(run, "m1");
        assert_eq!(first(run, "m1", "client.identified")["method"], "fixed");
        let out = run.topic("outbound.messages");
        assert_eq!(out.len(), 1, "{}", run.stdout);
        assert_eq!(out[0]["visitor_id"], "c-1");
        assert_eq!(first(run, "c2", "client.updated")["client"]["id"], corp.as_str());
        let c = card(db, &corp).await;
        assert_eq!(c.values("phone").into_iter().collect::<Vec<_>>(), ["+79995554433"]);
        assert_eq!(c.doc.visitors.len(), 1);
        assert_eq!(c.doc.name.as_deref(), Some("Corp One"));
    })
    .await;
}

#[tokio::test]
async fn a_rejected_command_carries_the_client_and_appeal_it_named() {
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1"}"#, "hi"),
        cmd("tag_appeal", "c1", &t(1, 0), r#""appeal_number":1,"tag":"vip""#),
        cmd("tag_appeal", "c2", &t(2, 0), r#""appeal_number":1,"tag":"vip""#),
        cmd("close_appeal", "c3", &t(3, 0), r#""appeal_number":99"#),
        cmd(
            "remove_contact",
            "c4",
            &t(4, 0),
            r#""client":{"channel_id":"acme-tg","visitor_id":"t1"},"contact_type":"phone","value":"+7 999 123-45-67""#,
        ),
    ];
    each_backend(&lines, async |run, _| {
        let c2 = first(run, "c2", "command.rejected");
        assert_eq!(c2["appeal"]["number"], 1);
        assert_eq!(c2["client"]["id"], created_by(run, "m1").as_str());
        let c3 = first(run, "c3", "command.rejected");
        assert!(c3.get("appeal").is_none() && c3.get("client").is_none(), "{c3}");
        assert_eq!(first(run, "c4", "command.rejected")["client"]["id"], created_by(run, "m1").as_str());
    })
    .await;
}

#[tokio::test]
async fn an_operator_merge_keeps_the_oldest_card_and_the_chosen_name() {
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1","name":"alf_tg"}"#, "hi"),
        msg("m2", "acme-web", &t(1, 0), r#"{"id":"w1","name":"Alfred Hitchcock"}"#, "hi"),
        cmd(
            "merge_clients",
            "c1",
            &t(2, 0),
            r#""target":{"channel_id":"acme-web","visitor_id":"w1"},"source":{"channel_id":"acme-tg","visitor_id":"t1"},"keep_name_from":"target""#,
        ),
        msg("m3", "acme-tg", &t(3, 0), r#"{"id":"t1","name":"alf_tg_renamed"}"#, "hi"),
    ];
    each_backend(&lines, async |run, _| {
        let merged = first(run, "c1", "client.merged");
        assert_eq!(merged["survivor_id"], created_by(run, "m1").as_str(), "the oldest card survives");
        assert_eq!(merged["client"]["name"], "Alfred Hitchcock");
        assert_eq!(merged["client"]["type"], "channel", "channel outranks internal");
        assert_eq!(merged["by"], "operator");
        assert_eq!(merged["matched"], json!([]));
        let later = first(run, "m3", "appeal.message_added");
        assert_eq!(
            later["client"]["name"], "Alfred Hitchcock",
            "a profile name never undoes an operator's choice"
        );
    })
    .await;
}

#[tokio::test]
async fn a_name_that_came_with_an_external_id_outranks_a_profile_name_and_an_operators_outranks_both() {
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1","name":"alf_tg"}"#, "hi"),
        msg(
            "m2",
            "acme-tg",
            &t(1, 0),
            r#"{"id":"t1","external_id":"acc-1","name":"Alfred Hitchcock"}"#,
            "signed in",
        ),
        msg("m3", "acme-tg", &t(2, 0), r#"{"id":"t1","name":"alf_tg_2"}"#, "profile renamed"),
        cmd("rename_client", "c1", &t(3, 0), r#""client":{"external_id":"acc-1"},"name":"VIP Alfred""#),
        msg("m4", "acme-tg", &t(4, 0), r#"{"id":"t1","external_id":"acc-1","name":"Alfred H."}"#, "again"),
    ];
    each_backend(&lines, async |run, _| {
        let name_after = |cause: &str| first(run, cause, "appeal.message_added")["client"]["name"].clone();
        assert_eq!(name_after("m1"), "alf_tg");
        assert_eq!(name_after("m2"), "Alfred Hitchcock");
        assert_eq!(name_after("m3"), "Alfred Hitchcock");
        assert_eq!(name_after("m4"), "VIP Alfred");
    })
    .await;
}

#[tokio::test]
async fn a_rule_merge_names_the_values_that_made_it_fire() {
    let lines = [
        msg("m1", "acme-tg", &t(0, 0), r#"{"id":"t1","phone":"8 (999) 123-45-67"}"#, "hi"),
        msg("m2", "acme-wa", &t(1, 0), r#"{"id":"79991234567"}"#, "hi"),
    ];
    each_backend(&lines, async |run, _| {
        let merged = first(run, "m2", "client.merged");
        assert_eq!(merged["rule_id"], "by-phone");
        assert_eq!(merged["matched"], json!([{"field": "phone", "value": "+79991234567"}]));
    })
    .await;
}
