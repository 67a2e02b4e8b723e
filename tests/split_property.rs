//! SPEC "Undoing a merge" as a property: a merge split right after it happened leaves the
//! cards, visitors, appeals and values the same stream gives when that merge was refused (its
//! shared value blocked), whatever the visitors write after; and a stream with a split
//! replays byte for byte on two fresh stores.
//!
//! Anna and Boris share an office phone, which merges Boris's card into Anna's; Carl shares
//! values with Anna only and Dora with Boris only, so no other path joins the two sides.
//! Cases on SQLite (`APPEALFLOW_PROPTEST_CASES=N` for more).

mod common;

use std::collections::BTreeMap;

use common::{cmd, config, msg, replay_lines, Kind, TestDb, BASE};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

/// The phone Anna and Boris share.
const OFFICE: &str = "+7 812 555-01-01";
const VISITORS: [&str; 4] = ["anna", "boris", "carl", "dora"];
/// Values of Anna's side (Anna, Carl) and Boris's side (Boris, Dora).
const PHONES: [[&str; 2]; 2] =
    [["+7 916 100-00-01", "+7 916 100-00-02"], ["+7 916 200-00-01", "+7 916 200-00-02"]];
const EMAILS: [[&str; 2]; 2] = [["a1@example.org", "a2@example.org"], ["b1@example.org", "b2@example.org"]];
const NAMES: [&str; 3] = ["Anna", "Boris B.", "Office"];

/// One later message: who writes, and what it reveals.
#[derive(Debug, Clone)]
struct Later {
    visitor: usize,
    phone: Option<usize>,
    email: Option<usize>,
    name: Option<usize>,
}

fn later() -> impl Strategy<Value = Later> {
    (
        0..4usize,
        proptest::option::of(0..2usize),
        proptest::option::of(0..2usize),
        proptest::option::of(0..3usize),
    )
        .prop_map(|(visitor, phone, email, name)| Later { visitor, phone, email, name })
}

fn at(i: usize) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap();
    (base + chrono::Duration::minutes(i as i64)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn visitor_json(id: &str, phone: Option<&str>, email: Option<&str>, name: Option<&str>) -> String {
    let mut v = serde_json::json!({ "id": id });
    for (key, value) in [("phone", phone), ("email", email), ("name", name)] {
        if let Some(value) = value {
            v[key] = value.into();
        }
    }
    v.to_string()
}

/// Anna and Boris each write once with the office phone (the merge is Boris's message), then
/// the later messages.
fn stream(laters: &[Later]) -> Vec<String> {
    let mut lines = vec![
        msg("m-0", "acme-tg", &at(0), &visitor_json("anna", Some(OFFICE), None, Some("Anna")), "hi"),
        msg("m-1", "acme-tg", &at(1), &visitor_json("boris", Some(OFFICE), None, Some("Boris")), "hi"),
    ];
    for (i, l) in laters.iter().enumerate() {
        let side = if l.visitor % 2 == 0 { 0 } else { 1 };
        let visitor = visitor_json(
            VISITORS[l.visitor],
            l.phone.map(|p| PHONES[side][p]),
            l.email.map(|e| EMAILS[side][e]),
            l.name.map(|n| NAMES[n]),
        );
        lines.push(msg(&format!("m-{}", i + 2), "acme-tg", &at(i + 3), &visitor, "more"));
    }
    lines
}

/// Every card by id as an operator sees it (revisions, blocks and the ledger apart), and each
/// appeal's card.
async fn state(db: &TestDb, ids: &[String]) -> (BTreeMap<String, String>, BTreeMap<i64, String>) {
    let store = db.store().await;
    let mut cards = BTreeMap::new();
    let mut appeals = BTreeMap::new();
    for id in ids {
        let c = store.client(id).await.unwrap().expect("card");
        let visitors: Vec<&str> = c.doc.visitors.iter().map(|v| v.visitor_id.as_str()).collect();
        let summary = format!(
            "{} {:?} {:?} appeals {} group {} visitors {visitors:?} values {:?}",
            c.id,
            c.kind,
            c.doc.name,
            c.appeal_count,
            c.doc.group_size,
            c.all_values()
        );
        cards.insert(id.clone(), summary);
    }
    for number in 1..=40 {
        if let Some(a) = store.appeal_by_number("acme", number).await.unwrap() {
            let owner = store.client(&a.client_id).await.unwrap().unwrap().id;
            appeals.insert(number, format!("{owner} {:?}", a.status));
        }
    }
    store.close().await;
    (cards, appeals)
}

#[test]
fn a_merge_split_at_once_leaves_what_the_stream_leaves_when_that_merge_is_refused() {
    let cases = std::env::var("APPEALFLOW_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut runner =
        TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() });
    let blocked = BASE.replace("blocked_values = [", &format!("blocked_values = [\"{OFFICE}\", "));
    assert_ne!(blocked, BASE, "the office phone is blocked in the refusing config");
    let (splitting, refusing) = (config(BASE), config(&blocked));
    runner
        .run(&proptest::collection::vec(later(), 0..12), |laters| {
            runtime.block_on(async {
                let lines = stream(&laters);
                // The merge's ledger id, from the two messages that make it.
                let probe = TestDb::new(Kind::Sqlite).await;
                let first = replay_lines(&splitting, &probe, &lines[..2]).await;
                let merged = first.events("client.merged");
                prop_assert_eq!(merged.len(), 1, "the office phone merges: {}", first.stdout);
                let (survivor, merge_id) =
                    (merged[0]["survivor_id"].as_str().unwrap(), merged[0]["merge_id"].as_str().unwrap());
                let split = cmd(
                    "split_client",
                    "split-1",
                    &at(2),
                    &format!(r#""client":{{"client_id":"{survivor}"}},"merge_id":"{merge_id}""#),
                );
                let mut with_split = lines[..2].to_vec();
                with_split.push(split);
                with_split.extend(lines[2..].iter().cloned());

                let (a, b, c) = (
                    TestDb::new(Kind::Sqlite).await,
                    TestDb::new(Kind::Sqlite).await,
                    TestDb::new(Kind::Sqlite).await,
                );
                let undone = replay_lines(&splitting, &a, &with_split).await;
                prop_assert_eq!(undone.events("client.split").len(), 1, "{}", undone.stdout);
                let again = replay_lines(&splitting, &b, &with_split).await;
                prop_assert_eq!(&undone.stdout, &again.stdout, "a split replays byte for byte");
                let refused = replay_lines(&refusing, &c, &lines).await;
                let ids: Vec<String> = refused
                    .events("client.created")
                    .iter()
                    .map(|e| e["client"]["id"].as_str().unwrap().to_string())
                    .collect();
                let (want, got) = (state(&c, &ids).await, state(&a, &ids).await);
                prop_assert_eq!(got.0, want.0, "the cards");
                prop_assert_eq!(got.1, want.1, "the appeals");
                Ok(())
            })
        })
        .unwrap();
}
