use super::*;
use crate::config::{MessageBlock, ScenarioConfig};
use crate::model::ClientType;

/// The SPEC's scenario, attached to a WhatsApp channel.
const COLLECT_PHONE: &str = r#"
[[projects]]
id = "acme"
  [[projects.channels]]
  id = "acme-wa"
  kind = "whatsapp"
  scenario = "collect-phone"
  [[projects.channels]]
  id = "acme-tg"
  kind = "telegram"

  [[projects.scenarios]]
  id = "collect-phone"
  start = "has-phone"
    [[projects.scenarios.blocks]]
    id = "has-phone"
    type = "check_field"
    field = "phone"
    filled = "thanks"
    empty = "ask-phone"
    [[projects.scenarios.blocks]]
    id = "ask-phone"
    type = "ask"
    text = "Please send your mobile phone number"
    expect = "phone"
    save_to = "phone"
    on_invalid = "repeat"
    error_text = "That does not look like a phone number, please try again"
    next = "thanks"
    [[projects.scenarios.blocks]]
    id = "thanks"
    type = "message"
    text = "Thank you!"
    next = "done"
    [[projects.scenarios.blocks]]
    id = "done"
    type = "end"
"#;

fn collect_phone() -> Scenario {
    let config = Config::from_toml(COLLECT_PHONE).unwrap();
    Scenario::compile("acme", &config.projects[0].scenarios[0])
}

/// A scenario `s` in project `acme` with the given `[[...blocks]]` tables, validated.
fn scenario(start: &str, blocks: &str) -> Scenario {
    let toml = format!(
        "[[projects]]\nid = \"acme\"\n[[projects.scenarios]]\nid = \"s\"\nstart = \"{start}\"\n{blocks}"
    );
    let config = Config::from_toml(&toml).unwrap();
    Scenario::compile("acme", &config.projects[0].scenarios[0])
}

/// An `ask` block `q` that goes to `done` on a valid answer, plus the `done` end block.
fn ask_then_end(options: &str) -> Scenario {
    scenario(
        "q",
        &format!(
            "[[projects.scenarios.blocks]]\nid = \"q\"\ntype = \"ask\"\ntext = \"Question?\"\nnext = \"done\"\n{options}\n\
             [[projects.scenarios.blocks]]\nid = \"done\"\ntype = \"end\"\n\
             [[projects.scenarios.blocks]]\nid = \"fallback\"\ntype = \"message\"\ntext = \"Never mind\"\nnext = \"done\"\n"
        ),
    )
}

fn save_on_card(c: &mut Client, field: &str, value: &str) -> bool {
    c.save_value(field, crate::model::CardValue::new(value.into(), value, crate::model::Source::Bot, 0))
}

fn card(values: &[(&str, &str)]) -> Client {
    let mut c = Client::new("c1".into(), "acme".into(), ClientType::Channel, 0);
    for (field, value) in values {
        save_on_card(&mut c, field, value);
    }
    c
}

fn waiting_at(block_id: &str, invalid_answers: u32) -> Option<BotState> {
    Some(BotState { scenario_id: "collect-phone".into(), block_id: block_id.into(), invalid_answers })
}

fn entered(id: &str, kind: BlockKind) -> Action {
    Action::Entered { block_id: id.into(), block_type: kind }
}

fn send(text: &str) -> Action {
    Action::Send { text: text.into() }
}

fn finished(reason: FinishReason) -> Action {
    Action::Finished { reason }
}

fn saved(outcome: &Outcome) -> Vec<(&str, &str)> {
    let saves = outcome.actions.iter().filter_map(|a| match a {
        Action::Save { field, value, .. } => Some((field.as_str(), value.as_str())),
        _ => None,
    });
    saves.collect()
}

fn rejected(outcome: &Outcome) -> bool {
    outcome.actions.iter().any(|a| matches!(a, Action::Rejected { .. }))
}

fn entered_ids(outcome: &Outcome) -> Vec<&str> {
    let ids = outcome.actions.iter().filter_map(|a| match a {
        Action::Entered { block_id, .. } => Some(block_id.as_str()),
        _ => None,
    });
    ids.collect()
}

#[test]
fn a_card_with_a_phone_is_thanked_and_the_scenario_ends_without_asking() {
    let outcome = collect_phone().start(&card(&[("phone", "+79991234567")]));
    assert_eq!(
        outcome.actions,
        [
            entered("has-phone", BlockKind::CheckField),
            entered("thanks", BlockKind::Message),
            send("Thank you!"),
            entered("done", BlockKind::End),
            finished(FinishReason::End),
        ]
    );
    assert_eq!(outcome.state, None);
}

#[test]
fn a_card_without_a_phone_is_asked_and_the_scenario_waits_at_the_question() {
    let outcome = collect_phone().start(&card(&[]));
    assert_eq!(
        outcome.actions,
        [
            entered("has-phone", BlockKind::CheckField),
            entered("ask-phone", BlockKind::Ask),
            send("Please send your mobile phone number"),
        ]
    );
    assert_eq!(outcome.state, waiting_at("ask-phone", 0));
}

#[test]
fn a_valid_russian_phone_is_saved_in_e164_and_the_scenario_continues() {
    let s = collect_phone();
    let outcome = s.answer(&waiting_at("ask-phone", 0).unwrap(), "8 999 123-45-67", &card(&[]), "RU");
    assert_eq!(
        outcome.actions,
        [
            Action::Save {
                field: "phone".into(),
                value: "+79991234567".into(),
                display: "8 999 123-45-67".into()
            },
            entered("thanks", BlockKind::Message),
            send("Thank you!"),
            entered("done", BlockKind::End),
            finished(FinishReason::End),
        ]
    );
    assert_eq!(outcome.state, None);
}

#[test]
fn an_invalid_answer_with_repeat_sends_the_error_text_and_keeps_waiting() {
    let s = collect_phone();
    let first = s.answer(&waiting_at("ask-phone", 0).unwrap(), "my phone is broken", &card(&[]), "RU");
    let [Action::Rejected { block_id, expect, on_invalid, reason }, error] = first.actions.as_slice() else {
        panic!("a rejection and the error text: {:?}", first.actions);
    };
    assert_eq!((block_id.as_str(), *expect, *on_invalid), ("ask-phone", Expect::Phone, OnInvalid::Repeat));
    assert!(!reason.is_empty());
    assert_eq!(*error, send("That does not look like a phone number, please try again"));
    assert_eq!(first.state, waiting_at("ask-phone", 1));

    let second = s.answer(first.state.as_ref().unwrap(), "+7 999 123 45 67", &card(&[]), "RU");
    assert_eq!(saved(&second), [("phone", "+79991234567")]);
    assert_eq!(entered_ids(&second), ["thanks", "done"], "the ask is not entered again");
    assert_eq!(second.state, None);
}

#[test]
fn an_invalid_answer_with_continue_is_rejected_and_follows_the_invalid_exit() {
    let s = ask_then_end("expect = \"email\"\non_invalid = \"continue\"\ninvalid = \"fallback\"");
    let state = s.start(&card(&[])).state.unwrap();
    let outcome = s.answer(&state, "not an address", &card(&[]), "RU");
    assert!(matches!(&outcome.actions[0], Action::Rejected { on_invalid: OnInvalid::Continue, .. }));
    assert_eq!(
        outcome.actions[1..],
        [
            entered("fallback", BlockKind::Message),
            send("Never mind"),
            entered("done", BlockKind::End),
            finished(FinishReason::End)
        ]
    );
    assert_eq!(outcome.state, None);
}

#[test]
fn an_email_answer_is_saved_trimmed_and_lower_cased() {
    let s = ask_then_end("expect = \"email\"\nsave_to = \"email\"");
    let state = s.start(&card(&[])).state.unwrap();
    let outcome = s.answer(&state, "  Alfred@Example.COM\n", &card(&[]), "RU");
    assert_eq!(saved(&outcome), [("email", "alfred@example.com")]);
    assert!(rejected(&s.answer(&state, "alfred.example.com", &card(&[]), "RU")));
}

#[test]
fn a_number_is_digits_with_an_optional_sign_and_decimal_part() {
    let s = ask_then_end("expect = \"number\"\nsave_to = \"age\"");
    let state = s.start(&card(&[])).state.unwrap();
    for good in ["42", " -3.5 ", "+4,25", "007"] {
        let outcome = s.answer(&state, good, &card(&[]), "RU");
        assert_eq!(saved(&outcome), [("age", good.trim())], "{good:?}");
    }
    for bad in ["12a", "1.2.3", "", "+", "-.5", "1.", "1 000", "forty"] {
        let outcome = s.answer(&state, bad, &card(&[]), "RU");
        assert!(rejected(&outcome), "{bad:?} is no number");
        assert_eq!(outcome.state, Some(BotState { invalid_answers: 1, ..state.clone() }));
    }
}

#[test]
fn a_regex_answer_must_match_whole_and_is_saved_like_any_custom_field() {
    let s = ask_then_end("expect = \"regex\"\npattern = '[A-Z]-\\d{3}'\nsave_to = \"contract_number\"");
    let state = s.start(&card(&[])).state.unwrap();
    let outcome = s.answer(&state, " D-100 ", &card(&[]), "RU");
    assert_eq!(saved(&outcome), [("contract_number", "d-100")], "custom fields are case-folded");
    for bad in ["xD-100", "D-1000", "my contract is D-100", "d-100"] {
        assert!(rejected(&s.answer(&state, bad, &card(&[]), "RU")), "{bad:?}");
    }
}

#[test]
fn any_answer_but_a_blank_one_is_accepted() {
    let s = ask_then_end("expect = \"any\"\nsave_to = \"comment\"");
    let state = s.start(&card(&[])).state.unwrap();
    assert_eq!(saved(&s.answer(&state, "  Call me  ", &card(&[]), "RU")), [("comment", "call me")]);
    assert!(rejected(&s.answer(&state, " \n\t", &card(&[]), "RU")));
}

#[test]
fn an_answer_saved_to_a_contact_must_also_read_as_that_contact() {
    let s = ask_then_end("expect = \"any\"\nsave_to = \"phone\"");
    let state = s.start(&card(&[])).state.unwrap();
    assert!(rejected(&s.answer(&state, "hello", &card(&[]), "RU")));
    assert_eq!(saved(&s.answer(&state, "8 999 123 45 67", &card(&[]), "RU")), [("phone", "+79991234567")]);
}

#[test]
fn an_ask_without_save_to_validates_but_saves_nothing() {
    let s = ask_then_end("expect = \"phone\"");
    let state = s.start(&card(&[])).state.unwrap();
    let outcome = s.answer(&state, "+79991234567", &card(&[]), "RU");
    assert!(saved(&outcome).is_empty());
    assert_eq!(outcome.actions.last(), Some(&finished(FinishReason::End)));
}

#[test]
fn after_max_repeats_invalid_answers_the_invalid_exit_is_followed() {
    let s = ask_then_end("expect = \"number\"\nmax_repeats = 2\ninvalid = \"fallback\"");
    let mut state = s.start(&card(&[])).state.unwrap();
    for expected in 1..=2 {
        let outcome = s.answer(&state, "no", &card(&[]), "RU");
        assert_eq!(outcome.actions.last(), Some(&send("Please answer with a number")), "the default text");
        state = outcome.state.unwrap();
        assert_eq!(state.invalid_answers, expected);
    }
    let third = s.answer(&state, "still no", &card(&[]), "RU");
    assert!(matches!(&third.actions[0], Action::Rejected { .. }));
    assert_eq!(entered_ids(&third), ["fallback", "done"]);
    assert_eq!(third.state, None);
}

#[test]
fn after_max_repeats_without_an_invalid_exit_the_scenario_ends() {
    let s = ask_then_end("expect = \"number\"\nmax_repeats = 1");
    let state = s.start(&card(&[])).state.unwrap();
    let first = s.answer(&state, "no", &card(&[]), "RU");
    let second = s.answer(first.state.as_ref().unwrap(), "no", &card(&[]), "RU");
    assert!(matches!(&second.actions[0], Action::Rejected { .. }));
    assert_eq!(second.actions[1..], [finished(FinishReason::RepeatLimit)]);
    assert_eq!(second.state, None);
}

#[test]
fn without_max_repeats_the_question_repeats_for_as_long_as_it_takes() {
    let s = ask_then_end("expect = \"number\"");
    let state = BotState { scenario_id: "s".into(), block_id: "q".into(), invalid_answers: 10_000 };
    let outcome = s.answer(&state, "no", &card(&[]), "RU");
    assert_eq!(outcome.state.unwrap().invalid_answers, 10_001);
}

const IDENTIFY_THEN_CHECK: &str = "
[[projects.scenarios.blocks]]
id = \"who\"
type = \"identify\"
next = \"known\"
[[projects.scenarios.blocks]]
id = \"known\"
type = \"check_field\"
field = \"crm_id\"
filled = \"welcome\"
empty = \"done\"
[[projects.scenarios.blocks]]
id = \"welcome\"
type = \"message\"
text = \"Welcome back\"
next = \"done\"
[[projects.scenarios.blocks]]
id = \"done\"
type = \"end\"
";

#[test]
fn identify_hands_over_to_the_integrator_and_resume_continues_at_its_next() {
    let s = scenario("who", IDENTIFY_THEN_CHECK);
    let started = s.start(&card(&[]));
    assert_eq!(started.actions, [entered("who", BlockKind::Identify), Action::Identify]);
    let state = started.state.unwrap();
    assert_eq!(state.block_id, "who");
    assert!(!s.expects_answer(&state), "a message now belongs to CRM identification");

    // The CRM found the client: the card now carries its CRM id.
    let resumed = s.resume(&state, &card(&[("crm_id", "CRM-1001")]));
    assert_eq!(entered_ids(&resumed), ["known", "welcome", "done"]);
    assert_eq!(resumed.state, None);
    assert_eq!(entered_ids(&s.resume(&state, &card(&[]))), ["known", "done"], "not found");
}

#[test]
fn answer_and_resume_leave_a_state_they_do_not_own_unchanged() {
    let s = scenario("who", IDENTIFY_THEN_CHECK);
    let at_identify = s.start(&card(&[])).state.unwrap();
    let outcome = s.answer(&at_identify, "hello", &card(&[]), "RU");
    assert_eq!(outcome, Outcome { actions: vec![], state: Some(at_identify) });

    let phone = collect_phone();
    let at_ask = waiting_at("ask-phone", 0).unwrap();
    assert!(phone.expects_answer(&at_ask));
    assert_eq!(phone.resume(&at_ask, &card(&[])), Outcome { actions: vec![], state: Some(at_ask) });
}

#[test]
fn a_check_field_after_a_save_in_the_same_walk_sees_the_saved_field() {
    let blocks = "
[[projects.scenarios.blocks]]
id = \"q\"
type = \"ask\"
text = \"Your e-mail?\"
expect = \"email\"
save_to = \"email\"
next = \"has-email\"
[[projects.scenarios.blocks]]
id = \"has-email\"
type = \"check_field\"
field = \"email\"
filled = \"done\"
empty = \"q\"
[[projects.scenarios.blocks]]
id = \"done\"
type = \"end\"
";
    let s = scenario("q", blocks);
    let state = s.start(&card(&[])).state.unwrap();
    let outcome = s.answer(&state, "a@example.com", &card(&[]), "RU");
    assert_eq!(entered_ids(&outcome), ["has-email", "done"]);
    assert_eq!(outcome.state, None);
}

#[test]
fn every_block_entered_is_reported_in_order_including_waits_and_ends() {
    let blocks = "
[[projects.scenarios.blocks]]
id = \"hello\"
type = \"message\"
text = \"Hello\"
next = \"has-name\"
[[projects.scenarios.blocks]]
id = \"has-name\"
type = \"check_field\"
field = \"name\"
filled = \"bye\"
empty = \"bye\"
[[projects.scenarios.blocks]]
id = \"bye\"
type = \"message\"
text = \"Bye\"
next = \"done\"
[[projects.scenarios.blocks]]
id = \"done\"
type = \"end\"
";
    let outcome = scenario("hello", blocks).start(&card(&[]));
    assert_eq!(
        outcome.actions,
        [
            entered("hello", BlockKind::Message),
            send("Hello"),
            entered("has-name", BlockKind::CheckField),
            entered("bye", BlockKind::Message),
            send("Bye"),
            entered("done", BlockKind::End),
            finished(FinishReason::End),
        ]
    );
}

#[test]
fn a_state_naming_a_block_the_config_no_longer_has_ends_the_scenario() {
    let s = collect_phone();
    let stale = waiting_at("ask-email", 0).unwrap();
    let expected = Outcome { actions: vec![finished(FinishReason::MissingBlock)], state: None };
    assert_eq!(s.answer(&stale, "x", &card(&[]), "RU"), expected);
    assert_eq!(s.resume(&stale, &card(&[])), expected);
}

#[test]
fn a_loop_that_slipped_past_validation_is_cut_off_after_max_steps() {
    let message = |id: &str, next: &str| {
        BlockConfig::Message(MessageBlock { id: id.into(), text: "again".into(), next: next.into() })
    };
    let config = ScenarioConfig {
        id: "loop".into(),
        start: "a".into(),
        blocks: vec![message("a", "b"), message("b", "a")],
    };
    let outcome = Scenario::compile("acme", &config).start(&card(&[]));
    assert_eq!(entered_ids(&outcome).len(), MAX_STEPS);
    assert_eq!(outcome.actions.last(), Some(&finished(FinishReason::StepLimit)));
    assert_eq!(outcome.state, None);
}

#[test]
fn the_same_inputs_give_the_same_outcome() {
    let s = collect_phone();
    let state = waiting_at("ask-phone", 0).unwrap();
    let run = || s.answer(&state, "8 999 123-45-67", &card(&[]), "RU");
    assert_eq!(run(), run());
}

#[test]
fn scenarios_are_found_by_project_and_id_and_by_channel() {
    let scenarios = Scenarios::compile(&Config::from_toml(COLLECT_PHONE).unwrap());
    assert_eq!(scenarios.get("acme", "collect-phone").map(Scenario::id), Some("collect-phone"));
    assert!(scenarios.get("acme", "other").is_none());
    assert!(scenarios.get("globex", "collect-phone").is_none());
    assert_eq!(scenarios.for_channel("acme", "acme-wa").map(Scenario::id), Some("collect-phone"));
    assert!(scenarios.for_channel("acme", "acme-tg").is_none(), "a channel without a scenario");
    assert_eq!(scenarios.iter().count(), 1);
}

#[test]
fn the_state_is_stored_as_json_and_read_back() {
    let state = waiting_at("ask-phone", 2).unwrap();
    let json = serde_json::to_string(&state).unwrap();
    assert_eq!(json, r#"{"scenario_id":"collect-phone","block_id":"ask-phone","invalid_answers":2}"#);
    assert_eq!(serde_json::from_str::<BotState>(&json).unwrap(), state);
    let without_count: BotState =
        serde_json::from_str(r#"{"scenario_id":"collect-phone","block_id":"ask-phone"}"#).unwrap();
    assert_eq!(without_count.invalid_answers, 0);
}

#[test]
fn saving_puts_identifiers_in_contacts_and_the_rest_in_custom_fields() {
    let mut c = card(&[]);
    assert!(save_on_card(&mut c, "phone", "+79991234567"));
    assert!(!save_on_card(&mut c, "phone", "+79991234567"), "nothing changed");
    assert!(save_on_card(&mut c, "contract_number", "d-100"));
    assert_eq!(c.doc.contacts["phone"][0].value, "+79991234567");
    assert_eq!(c.doc.fields["contract_number"][0].value, "d-100");
    assert!(c.has_field("phone") && c.has_field("contract_number") && !c.has_field("email"));
}

#[test]
fn the_report_counts_entries_per_block_and_names_those_never_entered() {
    let counts: BTreeMap<String, u64> = [("has-phone", 10), ("thanks", 10), ("done", 10), ("ask-email", 3)]
        .map(|(k, n)| (k.to_string(), n))
        .into();
    let report = collect_phone().report(&counts);
    let rows: Vec<(&str, BlockKind, u64)> =
        report.rows.iter().map(|r| (r.block_id.as_str(), r.block_type, r.entries)).collect();
    assert_eq!(
        rows,
        [
            ("has-phone", BlockKind::CheckField, 10),
            ("ask-phone", BlockKind::Ask, 0),
            ("thanks", BlockKind::Message, 10),
            ("done", BlockKind::End, 10),
        ]
    );
    assert_eq!(report.never_entered, ["ask-phone"]);
    assert_eq!(report.retired, [("ask-email".to_string(), 3)]);
    assert_eq!(
        report.to_string(),
        "scenario collect-phone (project acme)\n\
         \x20 block      type         entries\n\
         \x20 has-phone  check_field       10\n\
         \x20 ask-phone  ask                0\n\
         \x20 thanks     message           10\n\
         \x20 done       end               10\n\
         \x20 never entered: ask-phone\n\
         \x20 no longer configured: ask-email (3)\n"
    );
}
