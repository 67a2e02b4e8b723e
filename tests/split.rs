//! SPEC "Undoing a merge" (identity rule 9): `split_client` and `allow_merge` on the records
//! and committed cards of real replays, on SQLite and PostgreSQL.

mod common;

use common::*;
use serde_json::Value;

/// 2026-11-21T10:00:00Z plus `min` minutes.
fn t(min: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap();
    (base + chrono::Duration::minutes(min)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A stream replayed in parts on one store, as an operator acts on what earlier parts made.
struct Story {
    db: TestDb,
    config: std::sync::Arc<appealflow::config::Config>,
    runs: Vec<Run>,
}

impl Story {
    async fn new(kind: Kind) -> Story {
        Story { db: TestDb::new(kind).await, config: config(BASE), runs: Vec::new() }
    }

    async fn feed(&mut self, lines: &[String]) -> &Run {
        let run = replay_lines(&self.config, &self.db, lines).await;
        self.runs.push(run);
        self.runs.last().unwrap()
    }

    /// The first event of `kind` that input `cause` caused, in any part so far.
    fn first(&self, cause: &str, kind: &str) -> Value {
        let found = self.runs.iter().flat_map(|r| r.caused_by(cause)).find(|e| e["type"] == kind).cloned();
        found.unwrap_or_else(|| {
            let all: Vec<&str> = self.runs.iter().map(|r| r.stdout.as_str()).collect();
            panic!("{cause} caused no {kind}:\n{}", all.join(""))
        })
    }

    fn client_of(&self, cause: &str) -> String {
        self.first(cause, "appeal.message_added")["client"]["id"].as_str().unwrap().to_string()
    }

    fn merge_id(&self, cause: &str) -> String {
        self.first(cause, "client.merged")["merge_id"].as_str().unwrap().to_string()
    }

    async fn card(&self, id: &str) -> appealflow::model::Client {
        card(&self.db, id).await
    }
}

fn split(id: &str, at: &str, client: &str, merge_id: &str) -> String {
    cmd("split_client", id, at, &format!(r#""client":{{"client_id":"{client}"}},"merge_id":"{merge_id}""#))
}

fn values(card: &appealflow::model::Client, field: &str) -> Vec<String> {
    card.values(field).into_iter().map(str::to_string).collect()
}

fn rejected_reason(story: &Story, cause: &str) -> String {
    story.first(cause, "command.rejected")["reason"].as_str().unwrap().to_string()
}

const ANNA: &str = r#"{"id":"t1","name":"Anna","phone":"+7 999 111-22-33"}"#;
const BORIS: &str = r#"{"id":"t2","name":"Boris","phone":"8 (999) 111-22-33"}"#;

#[tokio::test]
async fn a_rule_merge_split_gives_each_card_back_what_it_brought_and_keeps_them_apart() {
    for kind in kinds() {
        let mut s = Story::new(kind).await;
        s.feed(&[
            msg("m1", "acme-tg", &t(0), ANNA, "hi, Anna here"),
            msg("m2", "acme-tg", &t(1), BORIS, "Boris, same office phone"),
            msg("m3", "acme-tg", &t(2), r#"{"id":"t2","email":"boris@example.org"}"#, "my mail"),
            msg("m4", "acme-tg", &t(3), r#"{"id":"t1","email":"anna@example.org"}"#, "mine"),
        ])
        .await;
        let (anna, boris) = (s.client_of("m1"), s.first("m2", "client.created")["client"]["id"].clone());
        let boris = boris.as_str().unwrap().to_string();
        assert_eq!(s.client_of("m2"), anna, "merged on the shared phone");
        let merge_id = s.merge_id("m2");

        s.feed(&[split("c1", &t(10), &anna, &merge_id)]).await;
        let event = s.first("c1", "client.split");
        assert_eq!(event["survivor_id"], anna.as_str());
        assert_eq!(event["restored_ids"], serde_json::json!([boris]));
        assert_eq!(event["operator"], "op-7");
        assert_eq!(event["moved"][0]["visitors"], 1);
        assert_eq!(event["moved"][0]["appeals"], 1);
        assert_eq!(event["moved"][0]["values"], 2, "the phone it brought and the e-mail since: {event}");

        let a = s.card(&anna).await;
        let b = s.card(&boris).await;
        assert_eq!(b.id, boris, "the restored id is a card again, not the survivor");
        assert_eq!(a.doc.name.as_deref(), Some("Anna"));
        assert_eq!(b.doc.name.as_deref(), Some("Boris"));
        assert_eq!(values(&a, "email"), ["anna@example.org"]);
        assert_eq!(values(&b, "email"), ["boris@example.org"], "what arrived through its visitor since");
        assert_eq!(values(&a, "phone"), ["+79991112233"]);
        assert_eq!(values(&b, "phone"), ["+79991112233"], "a value both brought stays on both");
        assert_eq!(b.doc.visitors.iter().map(|v| v.visitor_id.as_str()).collect::<Vec<_>>(), ["t2"]);
        assert_eq!(a.doc.visitors.iter().map(|v| v.visitor_id.as_str()).collect::<Vec<_>>(), ["t1"]);
        assert_eq!((a.appeal_count, b.appeal_count), (1, 1));
        assert_eq!((a.doc.group_size, b.doc.group_size), (1, 1));
        assert!(a.doc.blocked_merges.contains(&boris) && b.doc.blocked_merges.contains(&anna));
        let store = s.db.store().await;
        let ledger = store.merge_ledger("acme", &anna).await.unwrap();
        assert_eq!(ledger.len(), 1);
        assert_eq!(ledger[0].split.as_ref().map(|m| m.operator.as_str()), Some("op-7"));
        assert!(store.absorbed_ids(&anna).await.unwrap().is_empty(), "nothing resolves to the survivor");
        let timeline = store.timeline("acme", &boris, None, 10).await.unwrap();
        assert_eq!(timeline.len(), 1, "Boris's timeline is his appeal");
        assert_eq!(store.timeline("acme", &anna, None, 10).await.unwrap().len(), 1);
        let exact = appealflow::store::Match::Exact;
        let found = store.search_terms("acme", "e:boris@example.org", exact, 10).await.unwrap();
        assert!(!found.is_empty() && found.iter().all(|h| h.client_id == boris), "search finds Boris's card");
        store.close().await;
        drop(store); // the SQLite writer lock goes with the store

        // Boris's open appeal continues on his card; a rule meeting Anna again is refused.
        s.feed(&[
            msg("m5", "acme-tg", &t(11), r#"{"id":"t2"}"#, "still there?"),
            msg("m6", "acme-tg", &t(12), r#"{"id":"t2","email":"boris@work.example.org"}"#, "work mail"),
            split("c2", &t(13), &anna, &merge_id),
        ])
        .await;
        let added = s.first("m5", "appeal.message_added");
        assert_eq!(added["client"]["id"], boris.as_str());
        assert_eq!(added["appeal"]["number"], s.first("m2", "appeal.opened")["appeal"]["number"]);
        let refused = s.first("m6", "client.merge_refused");
        assert!(refused["reason"].as_str().unwrap().starts_with("split_by_operator"), "{refused}");
        assert!(rejected_reason(&s, "c2").contains("split already"));

        // allow_merge lifts the block: the rule joins them again.
        s.feed(&[cmd(
            "allow_merge",
            "c3",
            &t(14),
            &format!(r#""client":{{"client_id":"{boris}"}},"other":{{"client_id":"{anna}"}}"#),
        )])
        .await;
        let merged = s.first("c3", "client.merged");
        assert_eq!(merged["survivor_id"], anna.as_str());
        assert_ne!(merged["merge_id"].as_str().unwrap(), merge_id, "a new entry in the ledger");
        let a = s.card(&anna).await;
        assert!(a.doc.blocked_merges.is_empty(), "{:?}", a.doc.blocked_merges);
        assert_eq!(s.card(&boris).await.id, anna);
    }
}

#[tokio::test]
async fn an_external_id_merge_split_keeps_the_account_and_refuses_the_login_again() {
    for kind in kinds() {
        let mut s = Story::new(kind).await;
        s.feed(&[
            msg("m1", "acme-web", &t(0), r#"{"id":"w1","external_id":"acc-1","name":"Anna"}"#, "hi"),
            msg("m2", "acme-web", &t(1), r#"{"id":"w2","name":"Guest"}"#, "hello"),
            msg("m3", "acme-web", &t(2), r#"{"id":"w2","external_id":"acc-1"}"#, "logged in"),
        ])
        .await;
        let (known, guest) = (s.client_of("m1"), s.client_of("m2"));
        assert_eq!(s.first("m3", "client.merged")["by"], "external_id");
        s.feed(&[split("c1", &t(5), &known, &s.merge_id("m3"))]).await;
        assert_eq!(s.first("c1", "client.split")["restored_ids"], serde_json::json!([guest]));
        let g = s.card(&guest).await;
        assert_eq!(g.id, guest);
        assert!(g.doc.external_ids.is_empty(), "the account stays with its card");
        assert_eq!(s.card(&known).await.doc.external_ids.len(), 1);

        s.feed(&[msg("m4", "acme-web", &t(6), r#"{"id":"w2","external_id":"acc-1"}"#, "again")]).await;
        let refused = s.first("m4", "client.merge_refused");
        assert!(refused["reason"].as_str().unwrap().starts_with("split_by_operator"), "{refused}");
        assert_eq!(s.client_of("m4"), guest);
    }
}

#[tokio::test]
async fn splitting_an_older_merge_names_the_later_ones_that_matched_on_what_it_took_back() {
    for kind in kinds() {
        let mut s = Story::new(kind).await;
        s.feed(&[
            msg("m1", "acme-tg", &t(0), ANNA, "a"),
            msg("m2", "acme-tg", &t(1), BORIS, "b"),
            msg("m3", "acme-tg", &t(2), r#"{"id":"t2","phone":"+7 916 000-00-02"}"#, "my mobile"),
            msg("m4", "acme-wa", &t(3), r#"{"id":"79160000002","name":"Boris WA"}"#, "c"),
            msg("m5", "acme-tg", &t(4), r#"{"id":"t3","name":"Dora","phone":"+7 999 111 22 33"}"#, "d"),
        ])
        .await;
        let anna = s.client_of("m1");
        let (first, second, third) = (s.merge_id("m2"), s.merge_id("m4"), s.merge_id("m5"));
        s.feed(&[split("c1", &t(10), &anna, &first)]).await;
        let event = s.first("c1", "client.split");
        assert_eq!(event["dependent_merges"], serde_json::json!([second]), "{event}");
        let store = s.db.store().await;
        let ledger = store.merge_ledger("acme", &anna).await.unwrap();
        let later: Vec<(&str, bool)> =
            ledger.iter().map(|e| (e.merge_id.as_str(), e.split.is_some())).collect();
        assert!(
            later.contains(&(second.as_str(), false)) && later.contains(&(third.as_str(), false)),
            "{later:?}"
        );
        store.close().await;
        drop(store);
        let boris = s.card(event["restored_ids"][0].as_str().unwrap()).await;
        assert_eq!(values(&boris, "phone"), ["+79160000002", "+79991112233"]);
        let a = s.card(&anna).await;
        assert_eq!(a.doc.group_size, 3, "the later merges stay: Anna, the WhatsApp card and Dora");
        assert!(a.values("phone").contains("+79160000002"), "the WhatsApp card still brings its own number");
        assert_eq!(s.client_of("m4"), anna);
    }
}

#[tokio::test]
async fn operator_changes_since_the_merge_stay_with_the_survivor_and_are_listed_as_kept() {
    for kind in kinds() {
        let mut s = Story::new(kind).await;
        s.feed(&[msg("m1", "acme-tg", &t(0), ANNA, "a"), msg("m2", "acme-tg", &t(1), BORIS, "b")]).await;
        let anna = s.client_of("m1");
        let merge_id = s.merge_id("m2");
        let client = format!(r#""client":{{"client_id":"{anna}"}}"#);
        s.feed(&[
            cmd("rename_client", "c1", &t(2), &format!(r#"{client},"name":"Anna Karenina""#)),
            cmd(
                "add_contact",
                "c2",
                &t(3),
                &format!(r#"{client},"contact_type":"phone","value":"+7 903 555-44-33""#),
            ),
            cmd("tag_client", "c3", &t(4), &format!(r#"{client},"tag":"vip""#)),
            split("c4", &t(5), &anna, &merge_id),
        ])
        .await;
        let kept = &s.first("c4", "client.split")["kept"];
        for (field, value) in [("name", "Anna Karenina"), ("phone", "+79035554433"), ("tag", "vip")] {
            let listed = kept.as_array().unwrap().iter().any(|k| k["field"] == field && k["value"] == value);
            assert!(listed, "{field} {value} in kept: {kept}");
        }
        let a = s.card(&anna).await;
        assert_eq!(a.doc.name.as_deref(), Some("Anna Karenina"));
        assert!(a.values("phone").contains("+79035554433"));
        assert_eq!(a.doc.tags, ["vip"]);
        let boris = s.client_of("m2");
        assert_eq!(boris, anna, "m2's message event names the card as it was then");
        let restored = s.first("c4", "client.split")["restored_ids"][0].as_str().unwrap().to_string();
        let b = s.card(&restored).await;
        assert_eq!(b.doc.name.as_deref(), Some("Boris"));
        assert!(!b.values("phone").contains("+79035554433") && b.doc.tags.is_empty());
    }
}

#[tokio::test]
async fn a_split_is_applied_once_and_replays_byte_for_byte() {
    let lines = |merge_id: &str, anna: &str| {
        vec![
            msg("m1", "acme-tg", &t(0), ANNA, "a"),
            msg("m2", "acme-tg", &t(1), BORIS, "b"),
            split("c1", &t(2), anna, merge_id),
            msg("m3", "acme-tg", &t(3), r#"{"id":"t2"}"#, "after"),
        ]
    };
    let mut probe = Story::new(Kind::Sqlite).await;
    probe.feed(&lines("", "")[..2]).await;
    let (merge_id, anna) = (probe.merge_id("m2"), probe.client_of("m1"));
    let stream = lines(&merge_id, &anna);
    for kind in kinds() {
        let mut outputs = Vec::new();
        for _ in 0..2 {
            let mut s = Story::new(kind).await;
            outputs.push(s.feed(&stream).await.stdout.clone());
            // The whole stream again, as after a crash before the offsets were committed.
            let again = s.feed(&stream).await;
            assert!(again.events("client.split").is_empty(), "{}", again.stdout);
            assert_eq!(again.summary.stats.duplicates, 4);
        }
        assert_eq!(outputs[0], outputs[1], "two fresh stores, the same records");
        assert!(outputs[0].contains("\"client.split\""));
    }
}

#[tokio::test]
async fn splits_naming_a_merge_that_is_not_the_cards_are_rejected_with_the_reason() {
    for kind in kinds() {
        let mut s = Story::new(kind).await;
        s.feed(&[
            msg("m1", "acme-tg", &t(0), ANNA, "a"),
            msg("m2", "acme-tg", &t(1), BORIS, "b"),
            msg("m3", "acme-tg", &t(2), r#"{"id":"t7","name":"Ivan","phone":"+7 916 123-45-67"}"#, "c"),
            msg("m4", "acme-wa", &t(3), r#"{"id":"79161234567"}"#, "d"),
            msg_in("globex", "g1", "globex-tg", &t(4), r#"{"id":"x1","phone":"+7 926 000-11-22"}"#, "e"),
            msg_in("globex", "g2", "globex-tg", &t(5), r#"{"id":"x2","phone":"8 926 000 11 22"}"#, "f"),
        ])
        .await;
        let (anna, ivan) = (s.client_of("m1"), s.client_of("m3"));
        let other_card = s.merge_id("m4");
        let other_project = s.merge_id("g2");
        let both = format!(r#""client":{{"client_id":"{anna}"}},"other":{{"client_id":"{anna}"}}"#);
        let not_split = format!(r#""client":{{"client_id":"{anna}"}},"other":{{"client_id":"{ivan}"}}"#);
        s.feed(&[
            split("c1", &t(10), &anna, "no-such-merge"),
            split("c2", &t(11), &anna, &other_card),
            split("c3", &t(12), &anna, &other_project),
            cmd("allow_merge", "c4", &t(13), &both),
            cmd("allow_merge", "c5", &t(14), &not_split),
        ])
        .await;
        assert!(rejected_reason(&s, "c1").contains("no such merge"));
        assert!(rejected_reason(&s, "c2").contains("not in the merge ledger of card"));
        assert!(rejected_reason(&s, "c3").contains("no such merge"));
        assert!(rejected_reason(&s, "c4").contains("one card"));
        assert!(rejected_reason(&s, "c5").contains("no split keeps"));
        assert_eq!(s.card(&anna).await.doc.group_size, 2, "nothing was undone");
    }
}

/// Rewrites a ledger row as the release before snapshots wrote it: keyed by its first absorbed
/// card, with no survivor_before nor brought.
async fn as_written_before_snapshots(db: &TestDb, merge_id: &str) {
    use sqlx::Connection;
    let sql = "UPDATE merge_ledger SET doc = '{\"absorbed_ids\":[\"x\"],\"by\":\"rule\",\"matched\":[]}' \
               WHERE merge_id = '{id}'"
        .replace("{id}", merge_id);
    if db.url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
        sqlx::Executor::execute(&mut conn, sql.as_str()).await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        sqlx::Executor::execute(&mut conn, sql.as_str()).await.unwrap();
    }
}

#[tokio::test]
async fn a_merge_recorded_before_the_ledger_kept_snapshots_is_refused_with_the_reason() {
    for kind in kinds() {
        let mut s = Story::new(kind).await;
        s.feed(&[msg("m1", "acme-tg", &t(0), ANNA, "a"), msg("m2", "acme-tg", &t(1), BORIS, "b")]).await;
        let (anna, merge_id) = (s.client_of("m1"), s.merge_id("m2"));
        as_written_before_snapshots(&s.db, &merge_id).await;
        s.feed(&[split("c1", &t(2), &anna, &merge_id)]).await;
        assert!(rejected_reason(&s, "c1").contains("recorded before the ledger kept what each card brought"));
        assert_eq!(s.card(&anna).await.doc.group_size, 2, "nothing was undone");
    }
}
