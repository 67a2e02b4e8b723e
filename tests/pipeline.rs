//! Pipeline semantics, asserted on the records the real pipeline prints, against every store
//! backend this run has (SQLite always; PostgreSQL under the test env).

mod common;

use common::*;
use serde_json::Value;

const T0: &str = "2026-11-21T10:00:00Z";

fn tg(name: &str, phone: &str) -> String {
    format!(r#"{{"id":"tg-{name}","name":"{name}","phone":"{phone}"}}"#)
}

async fn run_each(lines: &[String], check: impl Fn(&Run)) {
    let config = config(BASE);
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let run = replay_lines(&config, &db, lines).await;
        eprintln!("backend {kind:?}");
        check(&run);
    }
}

#[tokio::test]
async fn a_first_message_creates_a_card_and_opens_appeal_one_assigned_to_the_channel_group() {
    let lines = [msg("m1", "acme-tg", T0, &tg("alfred", "+7 999 123-45-67"), "Hello")];
    run_each(&lines, |run| {
        let kinds: Vec<&str> = run.records.iter().map(Rec::kind).collect();
        assert_eq!(
            kinds,
            [
                "client.created",
                "appeal.opened",
                "appeal.message_added",
                "appeal.assigned",
                "appeal.message_added"
            ]
        );
        let created = run.events("client.created")[0];
        assert_eq!(created["client"]["type"], "channel");
        assert_eq!(created["client"]["name"], "alfred");
        let opened = run.events("appeal.opened")[0];
        assert_eq!(opened["appeal"]["number"], 1);
        assert_eq!(opened["appeal"]["group"], "first-line");
        assert_eq!(opened["client"]["appeal_count"], 1);
        let system = run.events("appeal.message_added")[1];
        assert_eq!(system["message"]["author_kind"], "system");
        assert_eq!(system["message"]["visible_to_client"], false);
    })
    .await;
}

#[tokio::test]
async fn widget_visitors_are_internal_clients_and_messengers_are_channel_clients() {
    let lines =
        [msg("m1", "acme-web", T0, r#"{"id":"w1"}"#, "hi"), msg("m2", "acme-tg", T0, r#"{"id":"t1"}"#, "hi")];
    run_each(&lines, |run| {
        let types: Vec<&Value> = run.events("client.created").iter().map(|e| &e["client"]["type"]).collect();
        assert_eq!(types, ["internal", "channel"]);
    })
    .await;
}

#[tokio::test]
async fn telegram_and_whatsapp_cards_merge_by_phone_written_in_national_and_bare_forms() {
    let lines = [
        msg("m1", "acme-tg", T0, &tg("alfred", "8 999 123 45 67"), "Hello"),
        msg("m2", "acme-wa", "2026-11-21T10:05:00Z", r#"{"id":"79991234567"}"#, "Hi from WhatsApp"),
    ];
    run_each(&lines, |run| {
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1);
        let tg_card = run.events("client.created")[0]["client"]["id"].clone();
        let wa_card = run.events("client.created")[1]["client"]["id"].clone();
        assert_eq!(merged[0]["survivor_id"], tg_card, "the oldest card survives");
        assert_eq!(merged[0]["absorbed_ids"], serde_json::json!([wa_card]));
        assert_eq!(merged[0]["rule_id"], "by-phone");
        let wa_appeal = run.caused_by("m2").into_iter().find(|e| e["type"] == "appeal.opened").unwrap();
        assert_eq!(wa_appeal["client"]["id"], tg_card, "the WhatsApp appeal belongs to the merged card");
        assert_eq!(wa_appeal["client"]["appeal_count"], 2);
    })
    .await;
}

#[tokio::test]
async fn an_anonymous_visitor_later_carrying_an_external_id_joins_that_card() {
    let lines = [
        msg("m1", "acme-tg", T0, r#"{"id":"t1","external_id":"site-user-42"}"#, "from the app"),
        msg("m2", "acme-web", "2026-11-21T10:01:00Z", r#"{"id":"w1"}"#, "anonymous"),
        msg(
            "m3",
            "acme-web",
            "2026-11-21T10:02:00Z",
            r#"{"id":"w1","external_id":"site-user-42"}"#,
            "logged in",
        ),
        msg("m4", "acme-web", "2026-11-21T10:03:00Z", r#"{"id":"w1"}"#, "still me"),
    ];
    run_each(&lines, |run| {
        let known = run.events("client.created")[0]["client"]["id"].clone();
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0]["survivor_id"], known);
        assert_eq!(merged[0]["by"], "external_id");
        let identified: Vec<&Value> =
            run.caused_by("m3").into_iter().filter(|e| e["type"] == "client.identified").collect();
        assert_eq!(identified[0]["method"], "external_id");
        let last = run.caused_by("m4").into_iter().find(|e| e["type"] == "appeal.message_added").unwrap();
        assert_eq!(last["client"]["id"], known);
    })
    .await;
}

#[tokio::test]
async fn a_rule_needs_every_field_and_any_rule_suffices() {
    let web = |id: &str, email: &str, contract: &str| {
        format!(r#"{{"id":"{id}","email":"{email}","fields":{{"contract_number":"{contract}"}}}}"#)
    };
    let lines = [
        msg("m1", "acme-web", T0, &web("w1", "ann@example.com", "D-1"), "a"),
        msg(
            "m2",
            "acme-web",
            "2026-11-21T10:01:00Z",
            &web("w2", "ANN@example.com ", " d-2"),
            "b: same e-mail, other contract",
        ),
        msg(
            "m3",
            "acme-mail",
            "2026-11-21T10:02:00Z",
            r#"{"id":"Ann@Example.com","fields":{"contract_number":" D-1 "}}"#,
            "c: same e-mail and contract",
        ),
    ];
    run_each(&lines, |run| {
        let ids: Vec<Value> =
            run.events("client.created").iter().map(|e| e["client"]["id"].clone()).collect();
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1, "only the card with the same e-mail AND contract merges");
        assert_eq!(merged[0]["survivor_id"], ids[0]);
        assert_eq!(merged[0]["absorbed_ids"], serde_json::json!([ids[2]]));
        assert_eq!(merged[0]["rule_id"], "by-email-and-contract");
    })
    .await;
}

#[tokio::test]
async fn matching_is_transitive_on_whole_cards_and_the_oldest_card_survives() {
    // A~B by phone; B gains an e-mail and contract that C has: A, B and C become one card.
    let lines = [
        msg("m1", "acme-tg", T0, &tg("a", "+79990000001"), "a"),
        msg(
            "m2",
            "acme-web",
            "2026-11-21T10:01:00Z",
            r#"{"id":"c","email":"c@example.com","fields":{"contract_number":"K-9"}}"#,
            "c",
        ),
        msg(
            "m3",
            "acme-wa",
            "2026-11-21T10:02:00Z",
            r#"{"id":"79990000001","email":"c@example.com","fields":{"contract_number":"k-9"}}"#,
            "b",
        ),
    ];
    run_each(&lines, |run| {
        let a = run.events("client.created")[0]["client"]["id"].clone();
        let final_of = final_cards(run);
        let finals: std::collections::BTreeSet<String> = run
            .events("client.created")
            .iter()
            .map(|e| final_of(e["client"]["id"].as_str().unwrap()))
            .collect();
        assert_eq!(finals.len(), 1, "three cards became one");
        assert_eq!(finals.into_iter().next().unwrap(), a.as_str().unwrap());
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1, "one merge event for the whole group");
        assert_eq!(merged[0]["absorbed_ids"].as_array().unwrap().len(), 2);
    })
    .await;
}

#[tokio::test]
async fn blocked_values_never_match() {
    let lines = [
        msg("m1", "acme-tg", T0, &tg("a", "+7 495 000-00-00"), "a"),
        msg("m2", "acme-tg", T0, &tg("b", "8 495 000 00 00"), "b"),
    ];
    run_each(&lines, |run| {
        assert_eq!(run.events("client.created").len(), 2);
        assert!(run.events("client.merged").is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_merge_beyond_max_merge_group_is_refused_with_an_event() {
    // max_merge_group = 4 in BASE: five people giving one phone end as a card of four and one
    // card left alone.
    let lines: Vec<String> = (0..5)
        .map(|i| {
            msg(&format!("m{i}"), "acme-tg", T0, &format!(r#"{{"id":"t{i}","phone":"+79990000001"}}"#), "x")
        })
        .collect();
    run_each(&lines, |run| {
        assert_eq!(run.events("client.merged").len(), 3);
        let refused = run.events("client.merge_refused");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["cause"]["id"], "m4");
        assert!(refused[0]["reason"].as_str().unwrap().contains("max_merge_group"));
        let final_of = final_cards(run);
        let finals: std::collections::BTreeSet<String> = run
            .events("client.created")
            .iter()
            .map(|e| final_of(e["client"]["id"].as_str().unwrap()))
            .collect();
        assert_eq!(finals.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn clients_of_different_projects_never_merge() {
    let lines = [
        msg("m1", "acme-tg", T0, &tg("a", "+79991234567"), "a"),
        msg_in("globex", "m1", "globex-tg", T0, &tg("a", "+79991234567"), "same phone, other tenant"),
    ];
    run_each(&lines, |run| {
        assert_eq!(run.events("client.created").len(), 2);
        assert!(run.events("client.merged").is_empty());
        let numbers: Vec<&Value> =
            run.events("appeal.opened").iter().map(|e| &e["appeal"]["number"]).collect();
        assert_eq!(numbers, [1, 1], "numbering is per project, and message ids are unique per project only");
    })
    .await;
}

#[tokio::test]
async fn appeals_append_until_closed_then_the_next_message_opens_the_next_number() {
    let v = r#"{"id":"t1"}"#;
    let lines = [
        msg("m1", "acme-tg", T0, v, "one"),
        msg("m2", "acme-tg", "2026-11-21T10:10:00Z", v, "two"),
        msg("m3", "acme-web", "2026-11-21T10:11:00Z", r#"{"id":"w"}"#, "someone else"),
        cmd("close_appeal", "c1", "2026-11-21T11:00:00Z", r#""appeal_number":1"#),
        msg("m4", "acme-tg", "2026-11-21T12:00:00Z", v, "three"),
    ];
    run_each(&lines, |run| {
        let opened: Vec<(&Value, &Value)> =
            run.events("appeal.opened").iter().map(|e| (&e["cause"]["id"], &e["appeal"]["number"])).collect();
        assert_eq!(
            opened,
            [
                (&Value::from("m1"), &Value::from(1)),
                (&Value::from("m3"), &Value::from(2)),
                (&Value::from("m4"), &Value::from(3))
            ]
        );
        let closed = run.events("appeal.closed");
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0]["reason"], "operator");
        assert_eq!(closed[0]["appeal"]["status"], "closed");
        let note = run.caused_by("c1").into_iter().find(|e| e["type"] == "appeal.message_added").unwrap();
        assert_eq!(note["message"]["text"], "Operator Ivan Petrov closed the appeal");
        assert_eq!(note["message"]["visible_to_client"], false);
    })
    .await;
}

#[tokio::test]
async fn idle_appeals_close_on_the_event_time_clock_before_the_late_message_opens_a_new_one() {
    let v = r#"{"id":"t1"}"#;
    let lines = [
        msg("m1", "acme-tg", T0, v, "one"),
        msg("m2", "acme-web", "2026-11-22T09:00:00Z", r#"{"id":"w"}"#, "other visitor, clock 23h later"),
        msg("m3", "acme-tg", "2026-11-22T10:00:01Z", v, "back after a day"),
    ];
    run_each(&lines, |run| {
        let closed = run.events("appeal.closed");
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0]["reason"], "inactivity");
        assert_eq!(closed[0]["occurred_at"], "2026-11-22T10:00:00Z", "last message + auto_close_after");
        assert_eq!(closed[0]["cause"]["kind"], "timer");
        let order: Vec<&str> = run.records.iter().map(Rec::kind).collect();
        let close_at = order.iter().position(|k| *k == "appeal.closed").unwrap();
        let reopen_at = order.iter().rposition(|k| *k == "appeal.opened").unwrap();
        assert!(close_at < reopen_at, "the timer fires before the late message is applied");
        assert_eq!(run.events("appeal.opened").len(), 3);
    })
    .await;
}

#[tokio::test]
async fn messages_of_one_author_less_than_a_minute_apart_share_a_group() {
    let v = r#"{"id":"t1"}"#;
    let lines = [
        msg("m1", "acme-tg", "2026-11-21T10:00:00Z", v, "a"),
        msg("m2", "acme-tg", "2026-11-21T10:00:30Z", v, "b"),
        msg("m3", "acme-tg", "2026-11-21T10:01:29Z", v, "c"),
        msg("m4", "acme-tg", "2026-11-21T10:03:00Z", v, "d"),
    ];
    run_each(&lines, |run| {
        let groups: Vec<(String, String)> = run
            .events("appeal.message_added")
            .iter()
            .filter(|e| e["message"]["author_kind"] == "client")
            .map(|e| {
                (
                    e["message"]["id"].as_str().unwrap().into(),
                    e["message"]["group_id"].as_str().unwrap().into(),
                )
            })
            .collect();
        let expected = [("m1", "m1"), ("m2", "m1"), ("m3", "m1"), ("m4", "m4")]
            .map(|(a, b)| (a.to_string(), b.to_string()));
        assert_eq!(groups, expected);
    })
    .await;
}

#[tokio::test]
async fn a_webp_photo_is_kept_as_a_file_and_a_png_stays_a_photo() {
    let photo = |id: &str, mime: &str| {
        format!(
            r#"{{"type":"message","message_id":"{id}","project_id":"acme","channel_id":"acme-tg","sent_at":"{T0}","visitor":{{"id":"t1"}},"content":{{"kind":"photo","attachment":{{"url":"https://cdn/x","mime_type":"{mime}","file_name":"x","size_bytes":10}}}}}}"#
        )
    };
    let lines = [photo("p1", "image/webp"), photo("p2", "image/png")];
    run_each(&lines, |run| {
        let kinds: Vec<&Value> = run
            .events("appeal.message_added")
            .iter()
            .filter(|e| e["message"]["author_kind"] == "client")
            .map(|e| &e["message"]["kind"])
            .collect();
        assert_eq!(kinds, ["file", "photo"]);
    })
    .await;
}

#[tokio::test]
async fn delivery_statuses_update_messages_and_never_go_back() {
    let status = |s: &str, at: &str| {
        format!(
            r#"{{"type":"status","message_id":"m1","project_id":"acme","channel_id":"acme-tg","status":"{s}","at":"{at}"}}"#
        )
    };
    let lines = [
        msg("m1", "acme-tg", T0, r#"{"id":"t1"}"#, "a"),
        status("delivered", "2026-11-21T10:00:05Z"),
        status("read", "2026-11-21T10:00:09Z"),
        status("delivered", "2026-11-21T10:00:10Z"),
        r#"{"type":"status","message_id":"nope","project_id":"acme","channel_id":"acme-tg","status":"read","at":"2026-11-21T10:00:11Z"}"#.to_string(),
    ];
    run_each(&lines, |run| {
        let statuses: Vec<&Value> =
            run.events("appeal.message_status").iter().map(|e| &e["status"]).collect();
        assert_eq!(statuses, ["delivered", "read"]);
        assert_eq!(run.events("appeal.message_status")[0]["appeal"]["number"], 1);
        let dlq = run.topic("inbound.dlq");
        assert_eq!(dlq.len(), 1);
        assert!(dlq[0]["reason"].as_str().unwrap().contains("unknown message"));
    })
    .await;
}

#[tokio::test]
async fn commands_that_cannot_apply_are_rejected_with_a_reason_and_the_stream_goes_on() {
    let lines = [
        msg("m1", "acme-tg", T0, r#"{"id":"t1"}"#, "a"),
        cmd("close_appeal", "c1", "2026-11-21T10:01:00Z", r#""appeal_number":7"#),
        cmd("close_appeal", "c2", "2026-11-21T10:02:00Z", r#""appeal_number":1"#),
        cmd("close_appeal", "c3", "2026-11-21T10:03:00Z", r#""appeal_number":1"#),
        cmd("rename_client", "c4", "2026-11-21T10:04:00Z", r#""client":{"external_id":"nobody"},"name":"X""#),
        cmd(
            "start_scenario",
            "c5",
            "2026-11-21T10:05:00Z",
            r#""appeal_number":1,"scenario_id":"collect-phone""#,
        ),
        cmd("tag_appeal", "c6", "2026-11-21T10:06:00Z", r#""appeal_number":1,"tag":"vip""#),
    ];
    run_each(&lines, |run| {
        let rejected: Vec<(String, String)> = run
            .events("command.rejected")
            .iter()
            .map(|e| (e["cause"]["id"].as_str().unwrap().into(), e["reason"].as_str().unwrap().into()))
            .collect();
        assert_eq!(rejected.len(), 4);
        assert_eq!(rejected[0], ("c1".into(), "appeal 7 does not exist".into()));
        assert_eq!(rejected[1], ("c3".into(), "appeal 1 is already closed".into()));
        assert!(rejected[2].1.contains("external_id \"nobody\""));
        assert!(rejected[3].1.contains("collect-phone"));
        assert_eq!(run.events("appeal.tagged").len(), 1, "tagging a closed appeal is allowed");
    })
    .await;
}

#[tokio::test]
async fn operator_commands_change_appeals_and_cards() {
    let client = r#""client":{"channel_id":"acme-tg","visitor_id":"t1"}"#;
    let lines = [
        msg("m1", "acme-tg", T0, r#"{"id":"t1","name":"alf"}"#, "a"),
        cmd(
            "assign_appeal",
            "c1",
            "2026-11-21T10:01:00Z",
            r#""appeal_number":1,"group":"vip","operator_id":"op-9""#,
        ),
        cmd("set_category", "c2", "2026-11-21T10:02:00Z", r#""appeal_number":1,"category":"cards""#),
        cmd("comment_appeal", "c3", "2026-11-21T10:03:00Z", r#""appeal_number":1,"text":"called back""#),
        cmd("rename_client", "c4", "2026-11-21T10:04:00Z", &format!(r#"{client},"name":"Alfred Hitchcock""#)),
        cmd(
            "set_client_field",
            "c5",
            "2026-11-21T10:05:00Z",
            &format!(r#"{client},"field":"contract_number","value":" D-7 ""#),
        ),
        cmd(
            "remove_contact",
            "c6",
            "2026-11-21T10:06:00Z",
            &format!(r#"{client},"contact_type":"phone","value":"+79990000000""#),
        ),
    ];
    run_each(&lines, |run| {
        let assigned = run.events("appeal.assigned").into_iter().find(|e| e["by"] == "operator").unwrap();
        assert_eq!(assigned["appeal"]["group"], "vip");
        assert_eq!(assigned["appeal"]["operator_id"], "op-9");
        assert_eq!(run.events("appeal.categorized")[0]["appeal"]["category"], "cards");
        assert_eq!(run.events("appeal.commented")[0]["operator_id"], "op-7");
        let renamed = run.caused_by("c4");
        assert_eq!(renamed[0]["client"]["name"], "Alfred Hitchcock");
        assert_eq!(run.caused_by("c5")[0]["changes"], serde_json::json!(["contract_number"]));
        assert_eq!(run.caused_by("c6")[0]["type"], "command.rejected");
    })
    .await;
}

#[tokio::test]
async fn a_fourth_contact_of_a_type_added_by_hand_is_rejected() {
    let client = r#""client":{"channel_id":"acme-tg","visitor_id":"t1"}"#;
    let mut lines = vec![msg("m1", "acme-tg", T0, r#"{"id":"t1"}"#, "a")];
    for i in 1..=4 {
        lines.push(cmd(
            "add_contact",
            &format!("c{i}"),
            "2026-11-21T10:01:00Z",
            &format!(r#"{client},"contact_type":"email","value":"a{i}@example.com""#),
        ));
    }
    run_each(&lines, |run| {
        assert_eq!(run.events("client.updated").len(), 3);
        let rejected = run.events("command.rejected");
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0]["cause"]["id"], "c4");
    })
    .await;
}

#[tokio::test]
async fn an_operator_merge_keeps_the_chosen_name_and_an_added_contact_triggers_matching() {
    let lines = [
        msg("m1", "acme-tg", T0, r#"{"id":"t1","name":"Old"}"#, "a"),
        msg("m2", "acme-web", T0, r#"{"id":"w1","name":"New"}"#, "b"),
        msg("m3", "acme-tg", T0, r#"{"id":"t3","phone":"+79995550000"}"#, "c"),
        cmd(
            "merge_clients",
            "c1",
            "2026-11-21T10:01:00Z",
            r#""target":{"channel_id":"acme-tg","visitor_id":"t1"},"source":{"channel_id":"acme-web","visitor_id":"w1"},"keep_name_from":"source""#,
        ),
        cmd(
            "add_contact",
            "c2",
            "2026-11-21T10:02:00Z",
            r#""client":{"channel_id":"acme-web","visitor_id":"w1"},"contact_type":"phone","value":"8 999 555 00 00""#,
        ),
    ];
    run_each(&lines, |run| {
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0]["operator"], "op-7");
        assert_eq!(merged[0]["client"]["name"], "New");
        assert_eq!(merged[1]["rule_id"], "by-phone");
    })
    .await;
}

#[tokio::test]
async fn outbound_to_whatsapp_after_24_hours_is_refused_but_a_template_passes() {
    let wa = r#"{"id":"79991234567"}"#;
    let client = r#""client":{"channel_id":"acme-wa","visitor_id":"79991234567"},"channel_id":"acme-wa""#;
    let lines = [
        msg("m1", "acme-wa", T0, wa, "a"),
        cmd("send_outbound", "c1", "2026-11-21T12:00:00Z", &format!(r#"{client},"text":"Hello!""#)),
        cmd("close_appeal", "c2", "2026-11-21T12:01:00Z", r#""appeal_number":1"#),
        cmd("send_outbound", "c3", "2026-11-23T12:00:00Z", &format!(r#"{client},"text":"Are you there?""#)),
        cmd(
            "send_outbound",
            "c4",
            "2026-11-23T12:00:00Z",
            &format!(r#"{client},"template":{{"name":"reminder","params":{{"n":1}}}}"#),
        ),
    ];
    run_each(&lines, |run| {
        let outbound = run.topic("outbound.messages");
        assert_eq!(outbound.len(), 2);
        assert_eq!(outbound[0]["text"], "Hello!");
        assert_eq!(outbound[0]["appeal_number"], 1);
        assert_eq!(outbound[1]["template"]["name"], "reminder");
        let refused = run.events("outbound.refused");
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0]["cause"]["id"], "c3");
        assert!(refused[0]["reason"].as_str().unwrap().starts_with("outside_24h_window"));
        let operator_msg =
            run.caused_by("c1").into_iter().find(|e| e["type"] == "appeal.message_added").unwrap();
        assert_eq!(operator_msg["message"]["author_kind"], "operator");
    })
    .await;
}

#[tokio::test]
async fn every_new_appeal_of_a_fixed_channel_belongs_to_the_fixed_client() {
    let lines = [
        msg("m1", "acme-corp", T0, r#"{"id":"emp-1","phone":"+79990000001"}"#, "a"),
        msg("m2", "acme-corp", T0, r#"{"id":"emp-2"}"#, "b"),
    ];
    run_each(&lines, |run| {
        assert_eq!(run.events("client.created").len(), 1, "the fixed card is created once");
        let opened = run.events("appeal.opened");
        assert_eq!(opened.len(), 2, "each visitor has its own appeal");
        assert_eq!(opened[0]["client"]["id"], opened[1]["client"]["id"]);
        let identified: Vec<&Value> = run.events("client.identified").iter().map(|e| &e["method"]).collect();
        assert_eq!(identified, ["fixed", "fixed"]);
    })
    .await;
}

#[tokio::test]
async fn bad_inputs_go_to_the_dlq_with_a_precise_reason_and_the_stream_goes_on() {
    let lines = [
        "not json".to_string(),
        r#"{"type":"message","message_id":"x1","project_id":"acme","channel_id":"acme-tg","sent_at":"2026-11-21T10:00:00Z","visitor":{},"content":{"kind":"text","text":"a"}}"#.to_string(),
        r#"{"type":"message","message_id":"x2","project_id":"acme","channel_id":"acme-tg","sent_at":"yesterday","visitor":{"id":"1"},"content":{"kind":"text","text":"a"}}"#.to_string(),
        r#"{"type":"message","message_id":"x3","project_id":"nope","channel_id":"acme-tg","sent_at":"2026-11-21T10:00:00Z","visitor":{"id":"1"},"content":{"kind":"text","text":"a"}}"#.to_string(),
        r#"{"type":"message","message_id":"x4","project_id":"acme","channel_id":"acme-xx","sent_at":"2026-11-21T10:00:00Z","visitor":{"id":"1"},"content":{"kind":"text","text":"a"}}"#.to_string(),
        r#"{"type":"message","message_id":"x5","project_id":"acme","channel_id":"acme-tg","sent_at":"2026-11-21T10:00:00Z","visitor":{"id":"1"},"content":{"kind":"sticker"}}"#.to_string(),
        r#"{"type":"teleport"}"#.to_string(),
        msg("ok", "acme-tg", T0, r#"{"id":"t1"}"#, "still flowing"),
    ];
    run_each(&lines, |run| {
        let reasons: Vec<&str> =
            run.topic("inbound.dlq").iter().map(|d| d["reason"].as_str().unwrap()).collect();
        assert_eq!(reasons.len(), 7);
        assert!(reasons[0].starts_with("not JSON"));
        assert!(reasons[1].contains("visitor") && reasons[1].contains("id"), "{}", reasons[1]);
        assert!(reasons[2].contains("sent_at"));
        assert!(reasons[3].contains("unknown project"));
        assert!(reasons[4].contains("unknown channel"));
        assert!(reasons[5].contains("content.kind"), "{}", reasons[5]);
        assert!(reasons[6].contains("unknown input type"));
        let first = run.topic("inbound.dlq")[0];
        assert_eq!(first["input"], "not json");
        assert_eq!(first["source"]["line"], 1);
        assert_eq!(run.events("appeal.opened").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn an_input_over_the_size_limit_goes_to_the_dlq() {
    let config = config(&format!("[pipeline]\nmax_input_bytes = 300\n{BASE}"));
    let big = msg("big", "acme-tg", T0, r#"{"id":"t1"}"#, &"x".repeat(400));
    let db = TestDb::new(Kind::Sqlite).await;
    let run = replay_lines(&config, &db, &[big]).await;
    let dlq = run.topic("inbound.dlq");
    assert_eq!(dlq.len(), 1);
    assert!(dlq[0]["reason"].as_str().unwrap().contains("max_input_bytes"));
}

#[tokio::test]
async fn event_ids_are_unique_and_every_event_names_its_cause_and_project() {
    let lines = [
        msg("m1", "acme-tg", T0, &tg("a", "+79991234567"), "a"),
        msg("m2", "acme-wa", T0, r#"{"id":"79991234567"}"#, "b"),
        cmd("close_appeal", "c1", "2026-11-21T10:01:00Z", r#""appeal_number":1"#),
    ];
    run_each(&lines, |run| {
        let events = run.topic("appeal.events");
        let ids: std::collections::HashSet<&str> =
            events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), events.len());
        for e in events {
            assert_eq!(e["project_id"], "acme");
            assert!(e["cause"]["id"].is_string() && e["occurred_at"].is_string());
        }
    })
    .await;
}

#[tokio::test]
async fn an_operator_message_goes_to_the_visitor_whose_appeal_is_open() {
    // One client, two web visitors (laptop, then phone via the same external ID); the laptop
    // appeal is closed, the phone one is open: the reply must go to the phone.
    let lines = [
        msg("m1", "acme-web", T0, r#"{"id":"z-laptop","external_id":"u-1"}"#, "from the laptop"),
        cmd("close_appeal", "c1", "2026-11-21T10:01:00Z", r#""appeal_number":1"#),
        msg(
            "m2",
            "acme-web",
            "2026-11-21T10:02:00Z",
            r#"{"id":"a-phone","external_id":"u-1"}"#,
            "from the phone",
        ),
        cmd(
            "send_outbound",
            "c2",
            "2026-11-21T10:03:00Z",
            r#""client":{"external_id":"u-1"},"channel_id":"acme-web","text":"Hi""#,
        ),
    ];
    run_each(&lines, |run| {
        let outbound = run.topic("outbound.messages");
        assert_eq!(outbound.len(), 1);
        assert_eq!(outbound[0]["visitor_id"], "a-phone");
        assert_eq!(outbound[0]["appeal_number"], 2);
    })
    .await;
}

#[tokio::test]
async fn an_external_id_join_beyond_max_merge_group_is_refused() {
    // Four cards share a phone (a group of 4 = the limit); a fifth, anonymous card then
    // claims the group's external ID.
    let mut lines: Vec<String> = (0..4)
        .map(|i| {
            let ext = if i == 0 { r#","external_id":"vip""# } else { "" };
            msg(
                &format!("m{i}"),
                "acme-tg",
                T0,
                &format!(r#"{{"id":"t{i}","phone":"+79990000001"{ext}}}"#),
                "x",
            )
        })
        .collect();
    lines.push(msg("w1", "acme-web", T0, r#"{"id":"w"}"#, "anonymous"));
    lines.push(msg(
        "w2",
        "acme-web",
        "2026-11-21T10:01:00Z",
        r#"{"id":"w","external_id":"vip"}"#,
        "claims it",
    ));
    run_each(&lines, |run| {
        let refused = run.caused_by("w2").into_iter().filter(|e| e["type"] == "client.merge_refused").count();
        assert_eq!(refused, 1);
        assert!(run.caused_by("w2").iter().all(|e| e["type"] != "client.merged"));
    })
    .await;
}
