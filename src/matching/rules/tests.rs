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
        match *k {
            "contract_number" => {
                c.set_field(k, v);
            }
            _ => {
                c.add_contact(k, v);
            }
        }
    }
    c
}

#[test]
fn one_shared_field_of_a_one_field_rule_matches() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("phone", "+79991234567")]);
    let b = card("b", 2, &[("phone", "+79991234567"), ("phone", "+79990000000")]);
    assert_eq!(rules.matching_rule(&a, &b).map(|r| r.id.as_str()), Some("by-phone"));
}

#[test]
fn a_rule_of_two_fields_needs_both_shared() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("email", "x@example.com"), ("contract_number", "d-1")]);
    let same_email = card("b", 2, &[("email", "x@example.com"), ("contract_number", "d-2")]);
    let both = card("c", 3, &[("email", "x@example.com"), ("contract_number", "d-1")]);
    assert!(rules.matching_rule(&a, &same_email).is_none());
    assert_eq!(rules.matching_rule(&a, &both).map(|r| r.id.as_str()), Some("by-email-and-contract"));
}

#[test]
fn a_field_a_card_lacks_never_matches() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("email", "x@example.com")]);
    let b = card("b", 2, &[("email", "x@example.com")]);
    assert!(rules.matching_rule(&a, &b).is_none());
}

#[test]
fn blocked_values_are_normalised_and_never_match() {
    let rules = ProjectRules::new(&project());
    assert!(rules.is_blocked("+74950000000"));
    assert!(rules.is_blocked("test@example.com"));
    let a = card("a", 1, &[("phone", "+74950000000")]);
    let b = card("b", 2, &[("phone", "+74950000000")]);
    assert!(rules.matching_rule(&a, &b).is_none());
}

#[test]
fn cards_of_different_projects_never_match() {
    let rules = ProjectRules::new(&project());
    let a = card("a", 1, &[("phone", "+79991234567")]);
    let mut b = card("b", 2, &[("phone", "+79991234567")]);
    b.project_id = "globex".into();
    assert!(rules.matching_rule(&a, &b).is_none());
}

#[test]
fn the_oldest_card_survives_and_ties_fall_back_to_the_id() {
    let group = [card("b", 5, &[]), card("c", 1, &[]), card("a", 1, &[])];
    assert_eq!(pick_survivor(&group).id, "a");
}

#[test]
fn a_merged_card_unions_contacts_and_keeps_the_survivors_single_values() {
    let mut old = card("old", 1, &[("phone", "+79990000001"), ("contract_number", "d-1")]);
    old.doc.name = None;
    old.appeal_count = 2;
    let mut young = card(
        "young",
        2,
        &[("phone", "+79990000002"), ("email", "y@example.com"), ("contract_number", "d-2")],
    );
    young.doc.name = Some("Young".into());
    young.appeal_count = 3;
    young.kind = ClientType::Crm;
    let merged = merged_card(&[young.clone(), old.clone()], None);
    assert_eq!(merged.id, "old");
    assert_eq!(merged.values("phone").len(), 2);
    assert_eq!(merged.doc.fields["contract_number"], "d-1", "the survivor's field wins");
    assert_eq!(merged.doc.name.as_deref(), Some("Young"), "an empty name is filled from the others");
    assert_eq!(merged.appeal_count, 5);
    assert_eq!(merged.doc.group_size, 2);
    assert_eq!(merged.kind, ClientType::Crm);
    let named = merged_card(&[young, old.clone()], Some("old"));
    assert_eq!(named.doc.name.as_deref(), Some("Young"), "keeping a missing name changes nothing");
}
