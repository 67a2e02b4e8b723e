use super::*;
use crate::config::Config;
use crate::model::Client;

fn project() -> ProjectConfig {
    let config = Config::from_toml(
        r#"
[[projects]]
id = "acme"
blocked_values = ["+7 495 000-00-00", "Test@Example.com"]
  [[projects.multicontact_rules]]
  id = "by-phone"
  fields = ["phone"]
  [[projects.multicontact_rules]]
  id = "by-email-and-contract"
  fields = ["email", "contract_number"]
"#,
    )
    .unwrap();
    config.projects[0].clone()
}

fn card(id: &str, at: i64, values: &[(&str, &str)]) -> Client {
    let mut c = Client::new(id.into(), "acme".into(), ClientType::Channel, at);
    for (k, v) in values {
        c.save_value(k, CardValue::new(v.to_string(), &v.to_uppercase(), Source::Gateway, at));
    }
    c
}

fn named(mut c: Client, name: &str, rank: NameRank, at: i64) -> Client {
    c.doc.claim_name(NameClaim { name: name.into(), rank, source: format!("src-{name}"), at });
    c
}

#[test]
fn one_shared_field_of_a_one_field_rule_matches() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("phone", "+79991234567")]);
    let b = card("b", 2, &[("phone", "+79991234567"), ("phone", "+79990000000")]);
    assert_eq!(rules.matching_rule(&a, &b, &Generic::new()).map(|r| r.id.as_str()), Some("by-phone"));
}

#[test]
fn a_rule_of_two_fields_needs_both_shared() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("email", "x@example.com"), ("contract_number", "d-1")]);
    let same_email = card("b", 2, &[("email", "x@example.com"), ("contract_number", "d-2")]);
    let both = card("c", 3, &[("email", "x@example.com"), ("contract_number", "d-1")]);
    assert!(rules.matching_rule(&a, &same_email, &Generic::new()).is_none());
    assert_eq!(
        rules.matching_rule(&a, &both, &Generic::new()).map(|r| r.id.as_str()),
        Some("by-email-and-contract")
    );
}

#[test]
fn a_field_a_card_lacks_never_matches() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("email", "x@example.com")]);
    let b = card("b", 2, &[("email", "x@example.com")]);
    assert!(rules.matching_rule(&a, &b, &Generic::new()).is_none());
}

#[test]
fn blocked_values_are_normalised_and_never_match() {
    let rules = ProjectRules::new(&project());
    assert!(rules.is_blocked("+74950000000"));
    assert!(rules.is_blocked("test@example.com"));
    let a = card("a", 1, &[("phone", "+74950000000")]);
    let b = card("b", 2, &[("phone", "+74950000000")]);
    assert!(rules.matching_rule(&a, &b, &Generic::new()).is_none());
}

#[test]
fn cards_of_different_projects_never_match() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("phone", "+79991234567")]);
    let mut b = card("b", 2, &[("phone", "+79991234567")]);
    b.project_id = "globex".into();
    assert!(rules.matching_rule(&a, &b, &Generic::new()).is_none());
}

#[test]
fn the_oldest_card_survives_and_ties_fall_back_to_the_id() {
    let group = [card("b", 5, &[]), card("c", 1, &[]), card("a", 1, &[])];
    assert_eq!(pick_survivor(&group).id, "a");
}

#[test]
fn a_merged_card_unions_every_value_and_keeps_each_spelling() {
    let mut old = card("old", 1, &[("phone", "+79990000001"), ("contract_number", "d-1")]);
    old.appeal_count = 2;
    let mut young = card(
        "young",
        2,
        &[("phone", "+79990000002"), ("email", "y@example.com"), ("contract_number", "d-2")],
    );
    young.appeal_count = 3;
    young.kind = ClientType::Crm;
    let merged = merged_card(&[young.clone(), old.clone()], None);
    assert_eq!(merged.id, "old");
    assert_eq!(merged.created_at, 1);
    assert_eq!(merged.values("phone").len(), 2);
    assert_eq!(merged.values("contract_number").into_iter().collect::<Vec<_>>(), ["d-1", "d-2"]);
    assert_eq!(merged.doc.fields["contract_number"][1].display(), "D-2");
    assert_eq!(merged.appeal_count, 5);
    assert_eq!(merged.doc.group_size, 2);
    assert_eq!(merged.kind, ClientType::Crm);
}

#[test]
fn the_merged_name_goes_by_provenance_not_by_which_card_is_older() {
    let guest = named(card("guest", 1, &[]), "Guest 123", NameRank::Channel, 1);
    let account = named(card("account", 5, &[]), "Dmitry Orlov", NameRank::ExternalId, 5);
    for group in [[guest.clone(), account.clone()], [account.clone(), guest.clone()]] {
        let merged = merged_card(&group, None);
        assert_eq!(merged.id, "guest", "the oldest card survives");
        assert_eq!(
            merged.doc.name.as_deref(),
            Some("Dmitry Orlov"),
            "an external-ID profile outranks a channel one"
        );
    }
    let chosen = merged_card(&[guest.clone(), account], Some(("guest", 9)));
    assert_eq!(chosen.doc.name.as_deref(), Some("Guest 123"), "the operator's choice overrides");
    let unnamed = card("unnamed", 0, &[]);
    let kept = merged_card(&[unnamed, guest], Some(("unnamed", 9)));
    assert_eq!(kept.doc.name.as_deref(), Some("Guest 123"), "keeping a missing name changes nothing");
}

#[test]
fn equal_name_ranks_go_to_the_most_recently_set() {
    let a = named(card("a", 1, &[]), "Alfred", NameRank::Channel, 10);
    let b = named(card("b", 2, &[]), "Alf", NameRank::Channel, 20);
    assert_eq!(merged_card(&[a, b], None).doc.name.as_deref(), Some("Alf"));
}

#[test]
fn a_value_both_cards_hold_is_kept_once_and_an_operators_copy_wins() {
    let a = card("a", 1, &[("phone", "+79990000001")]);
    let mut b = Client::new("b".into(), "acme".into(), ClientType::Channel, 2);
    b.add_contact("phone", CardValue::new("+79990000001".into(), "8 999 000-00-01", Source::Manual, 2));
    let merged = merged_card(&[a, b], None);
    let phones = &merged.doc.contacts["phone"];
    assert_eq!(phones.len(), 1);
    assert_eq!((phones[0].source, phones[0].display()), (Source::Manual, "8 999 000-00-01"));
}

#[test]
fn shared_values_name_the_evidence_of_every_field_of_the_rule() {
    let rules = ProjectRules::new(&project());
    let a =
        card("a", 1, &[("email", "x@example.com"), ("contract_number", "d-1"), ("contract_number", "d-9")]);
    let b = card("b", 2, &[("email", "x@example.com"), ("contract_number", "d-1")]);
    let rule = rules.matching_rule(&a, &b, &Generic::new()).unwrap();
    let shared = rules.shared_values(&a, &b, rule, &Generic::new());
    let expected = [("email", "x@example.com"), ("contract_number", "d-1")];
    assert_eq!(shared, expected.map(|(f, v)| (f.to_string(), v.to_string())));
}
