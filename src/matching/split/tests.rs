use super::*;
use crate::matching::merged_card;
use crate::model::{Brought, Visitor};

fn card(id: &str, visitor: &str, at: Millis, phones: &[&str]) -> Client {
    let mut c = Client::new(id.into(), "acme".into(), ClientType::Channel, at);
    c.doc.visitors.insert(Visitor { channel_id: "acme-tg".into(), visitor_id: visitor.into() });
    for p in phones {
        c.save_value("phone", CardValue::new(p.to_string(), p, Source::Gateway, at));
    }
    c
}

fn snapshot(c: &Client) -> CardSnapshot {
    CardSnapshot { kind: c.kind, doc: c.doc.clone() }
}

/// `b` merged into `a` at `at`: the live card, the entry, and `b` as stored since.
fn merged(a: &Client, b: &Client, at: Millis) -> (Client, MergeEntry, Client) {
    let live = merged_card(&[a.clone(), b.clone()], None);
    let entry = MergeEntry {
        project_id: "acme".into(),
        at,
        survivor_id: a.id.clone(),
        absorbed_ids: vec![b.id.clone()],
        by: "rule".into(),
        rule_id: Some("by-phone".into()),
        operator: None,
        matched: vec![],
        merge_id: "m-1".into(),
        survivor_before: Some(snapshot(a)),
        brought: vec![Brought { client_id: b.id.clone(), members: vec![], card: snapshot(b) }],
        split: None,
    };
    let row = Client { merged_into: Some(a.id.clone()), ..b.clone() };
    (live, entry, row)
}

fn phones(c: &Client) -> Vec<&str> {
    c.values("phone").into_iter().collect()
}

#[test]
fn each_card_gets_back_what_it_brought_and_a_shared_value_stays_on_both() {
    let a = card("a", "t1", 1, &["+79990000001", "+79991112233"]);
    let b = card("b", "t2", 2, &["+79991112233", "+79990000002"]);
    let (live, entry, row) = merged(&a, &b, 3);
    let plan = plan(&live, &entry, &[row], &[]).expect("the entry kept its snapshots");
    assert_eq!(phones(&plan.survivor), ["+79990000001", "+79991112233"]);
    assert_eq!(phones(&plan.restored[0]), ["+79990000002", "+79991112233"]);
    assert_eq!(plan.restored[0].merged_into, None);
    assert_eq!(plan.survivor.doc.visitors.len(), 1);
    assert!(
        plan.survivor.doc.blocked_merges.contains("b") && plan.restored[0].doc.blocked_merges.contains("a")
    );
    assert!(plan.kept.is_empty());
}

#[test]
fn a_value_that_came_through_the_restored_visitor_goes_back_and_an_operators_stays() {
    let a = card("a", "t1", 1, &["+79990000001"]);
    let b = card("b", "t2", 2, &["+79990000001"]);
    let (mut live, entry, row) = merged(&a, &b, 3);
    let via_b = CardValue::new("b@example.org".into(), "b@example.org", Source::Gateway, 4)
        .through(&live.doc, "v:acme-tg:t2".into());
    assert_eq!(via_b.via.as_deref(), Some("v:acme-tg:t2"), "a merged card notes where values came from");
    live.save_value("email", via_b);
    live.save_value("phone", CardValue::new("+79035554433".into(), "+7 903 555-44-33", Source::Manual, 5));
    let plan = plan(&live, &entry, &[row], &[]).unwrap();
    assert_eq!(plan.restored[0].values("email").into_iter().collect::<Vec<_>>(), ["b@example.org"]);
    assert!(plan.survivor.values("email").is_empty());
    assert!(plan.survivor.values("phone").contains("+79035554433"));
    assert!(!plan.restored[0].values("phone").contains("+79035554433"));
    assert_eq!(plan.kept, [MatchedValue { field: "phone".into(), value: "+79035554433".into() }]);
}

#[test]
fn an_entry_written_before_snapshots_cannot_be_planned() {
    let a = card("a", "t1", 1, &["+79990000001"]);
    let b = card("b", "t2", 2, &["+79990000001"]);
    let (live, mut entry, row) = merged(&a, &b, 3);
    entry.survivor_before = None;
    assert!(plan(&live, &entry, &[row], &[]).is_none());
}
