use super::*;
use crate::config::Config;

fn config() -> Config {
    Config::from_toml(
        r#"
[pipeline]
max_input_bytes = 600
[[projects]]
id = "acme"
  [[projects.channels]]
  id = "acme-tg"
  kind = "telegram"
"#,
    )
    .unwrap()
}

fn message(content: &str) -> String {
    format!(
        r#"{{"type":"message","message_id":"m1","project_id":"acme","channel_id":"acme-tg","sent_at":"2026-11-21T10:00:00+03:00","visitor":{{"id":"1","fields":{{"n":5,"vip":true}}}},"content":{content}}}"#
    )
}

/// The wall clock these tests decode at: 2026-11-21T12:00:00Z.
const NOW: Millis = 1_795_262_400_000;

fn decode(bytes: &[u8], config: &Config) -> Result<Input, DecodeError> {
    super::decode(bytes, config, NOW)
}

fn reason(input: &str) -> String {
    decode(input.as_bytes(), &config()).unwrap_err().reason
}

#[test]
fn the_spec_message_example_decodes_with_offsets_normalised_to_utc() {
    let Input::Message(m) =
        decode(message(r#"{"kind":"text","text":"Hello"}"#).as_bytes(), &config()).unwrap()
    else {
        panic!("a message")
    };
    assert_eq!(crate::model::format_ts(m.sent_at), "2026-11-21T07:00:00Z");
    assert_eq!(m.visitor.fields["n"], "5");
    assert_eq!(m.visitor.fields["vip"], "true");
}

#[test]
fn a_missing_nested_field_is_named_by_its_path() {
    let input = r#"{"type":"message","message_id":"m1","project_id":"acme","channel_id":"acme-tg","sent_at":"2026-11-21T10:00:00Z","visitor":{"name":"x"},"content":{"kind":"text","text":"a"}}"#;
    assert_eq!(reason(input), "`visitor`: missing field `id`");
}

#[test]
fn malformed_inputs_get_precise_reasons() {
    assert!(reason("{").starts_with("not JSON"));
    assert!(reason("\u{1}\u{2}").starts_with("not JSON"));
    assert_eq!(reason(r#"{"a":1}"#), "missing field `type`");
    assert!(reason(r#"{"type":"fax"}"#).starts_with("unknown input type \"fax\""));
    assert!(reason(&message(r#"{"kind":"sticker"}"#)).starts_with("`content.kind`: unknown variant"));
    assert!(reason(&message(r#"{"kind":"photo"}"#)).contains("attachment` is required for photo"));
    assert!(reason(&message(r#"{"kind":"text"}"#)).contains("content.text"));
    assert!(reason(
        &message(r#"{"kind":"text","text":"x"}"#).replace("2026-11-21T10:00:00+03:00", "21.11.2026")
    )
    .starts_with("`sent_at`"));
    assert!(reason(&message(r#"{"kind":"text","text":"x"}"#).replace("\"acme-tg\"", "\"acme-vk\""))
        .contains("unknown channel"));
    assert!(reason(
        &message(r#"{"kind":"text","text":"x"}"#).replace("\"project_id\":\"acme\"", "\"project_id\":\"x\"")
    )
    .contains("unknown project"));
}

#[test]
fn invalid_utf8_and_oversized_inputs_are_refused_before_parsing() {
    assert!(decode(b"{\"type\":\"\xff\"}", &config()).unwrap_err().reason.starts_with("not UTF-8"));
    let big = message(&format!(r#"{{"kind":"text","text":"{}"}}"#, "x".repeat(700)));
    assert!(reason(&big).contains("exceeds pipeline.max_input_bytes (600)"));
}

#[test]
fn a_decode_error_keeps_the_project_when_it_is_known() {
    let e = decode(message(r#"{"kind":"text"}"#).as_bytes(), &config()).unwrap_err();
    assert_eq!(e.project_id.as_deref(), Some("acme"));
}

#[test]
fn photos_in_formats_operators_cannot_show_become_files() {
    let photo = |mime: &str| {
        message(&format!(r#"{{"kind":"photo","attachment":{{"url":"u","mime_type":"{mime}"}}}}"#))
    };
    let kind = |input: String| match decode(input.as_bytes(), &config()).unwrap() {
        Input::Message(m) => m.content.kind,
        _ => panic!("a message"),
    };
    assert_eq!(kind(photo("image/webp")), crate::model::ContentKind::File);
    assert_eq!(kind(photo("image/TIFF")), crate::model::ContentKind::Photo);
    let by_name = message(r#"{"kind":"photo","attachment":{"url":"https://x/y.heic"}}"#);
    assert_eq!(kind(by_name), crate::model::ContentKind::File);
}

#[test]
fn every_command_type_decodes() {
    let fields = [
        ("close_appeal", r#""appeal_number":1"#),
        ("assign_appeal", r#""appeal_number":1,"group":"g""#),
        ("set_category", r#""appeal_number":1,"category":"c""#),
        ("tag_appeal", r#""appeal_number":1,"tag":"t""#),
        ("comment_appeal", r#""appeal_number":1,"text":"t""#),
        ("identify_client", r#""appeal_number":1,"identifier":"phone","value":"+79991234567""#),
        ("set_client_field", r#""client":{"client_id":"c"},"field":"f","value":7"#),
        ("add_contact", r#""client":{"external_id":"x"},"contact_type":"email","value":"a@b.c""#),
        ("remove_contact", r#""client":{"appeal_number":1},"contact_type":"email","value":"a@b.c""#),
        ("rename_client", r#""client":{"channel_id":"acme-tg","visitor_id":"1"},"name":"N""#),
        ("create_client", r#""name":"N","contacts":[{"contact_type":"phone","value":"1"}]"#),
        (
            "merge_clients",
            r#""target":{"client_id":"a"},"source":{"client_id":"b"},"keep_name_from":"source""#,
        ),
        ("send_outbound", r#""client":{"client_id":"a"},"channel_id":"acme-tg","text":"hi""#),
        ("start_scenario", r#""appeal_number":1,"scenario_id":"s""#),
        ("comment_client", r#""client":{"client_id":"a"},"text":"t""#),
        ("tag_client", r#""client":{"client_id":"a"},"tag":"t""#),
        ("edit_contact", r#""client":{"client_id":"a"},"contact_type":"phone","old_value":"1","value":"2""#),
        ("split_client", r#""client":{"client_id":"a"},"merge_id":"m-1""#),
        ("allow_merge", r#""client":{"client_id":"a"},"other":{"appeal_number":2}"#),
    ];

    assert_eq!(fields.len(), COMMAND_TYPES.len());
    for (kind, f) in fields {
        let input = format!(
            r#"{{"type":"{kind}","command_id":"c1","project_id":"acme","issued_at":"2026-11-21T11:00:00Z",{f}}}"#
        );
        let decoded = decode(input.as_bytes(), &config()).unwrap_or_else(|e| panic!("{kind}: {}", e.reason));
        let Input::Command(c) = decoded else { panic!("{kind} is a command") };
        assert_eq!(c.action.type_name(), kind);
    }
}

#[test]
fn a_client_ref_must_hold_exactly_one_form() {
    let input = r#"{"type":"rename_client","command_id":"c1","project_id":"acme","issued_at":"2026-11-21T11:00:00Z","client":{"client_id":"a","external_id":"b"},"name":"N"}"#;
    assert!(reason(input).contains("exactly one of"));
    let half = input.replace(r#""client_id":"a","external_id":"b""#, r#""visitor_id":"1""#);
    assert!(reason(&half).contains("channel_id and visitor_id"));
}

#[test]
fn an_input_dated_past_max_future_goes_to_the_dlq_and_one_within_it_is_read() {
    let at = |ts: &str| message(r#"{"kind":"text","text":"hi"}"#).replace("2026-11-21T10:00:00+03:00", ts);
    let e = decode(at("2036-01-01T00:00:00Z").as_bytes(), &config()).unwrap_err();
    assert!(e.reason.starts_with("sent_at is in the future"), "{}", e.reason);
    assert!(e.reason.contains("pipeline.max_future (15m)"), "{}", e.reason);
    assert_eq!(e.project_id.as_deref(), Some("acme"));
    assert!(decode(at("2026-11-21T12:14:00Z").as_bytes(), &config()).is_ok());
    assert!(decode(at("2026-11-21T12:16:00Z").as_bytes(), &config()).is_err());
}

#[test]
fn a_glance_finds_the_project_an_input_names_and_nothing_in_what_does_not_parse() {
    assert_eq!(
        project_of(br#"{"type":"message","project_id":"acme","x":{"project_id":"b"}}"#).as_deref(),
        Some("acme")
    );
    assert_eq!(project_of(br#"{"project_id":"ac\u006de"}"#).as_deref(), Some("acme"), "escapes are read");
    assert_eq!(project_of(br#"{"type":"message"}"#), None);
    assert_eq!(project_of(br#"{"project_id":"a","project_id":"b"}"#), None, "duplicate keys name no one");
    assert_eq!(project_of(b"not json"), None);
    assert_eq!(project_of(br#"{"project_id":7}"#), None);
}

fn strict(fields: &str) -> Result<Command, DecodeError> {
    let input = format!(
        r#"{{"command_id":"c1","project_id":"acme","issued_at":"2026-11-21T11:00:00Z","operator":{{"id":"op"}},{fields}}}"#
    );
    command_strict(serde_json::from_str(&input).unwrap(), &config(), NOW)
}

#[test]
fn a_strict_command_with_a_field_the_contract_does_not_name_is_refused_by_that_field() {
    let e = strict(r#""type":"close_appeal","appeal_number":1,"apeal_note":"x""#).unwrap_err();
    assert_eq!(e.reason, "`apeal_note`: unknown field");
    let nested = r#"{"type":"close_appeal","command_id":"c1","project_id":"acme","issued_at":"2026-11-21T11:00:00Z","appeal_number":1,"operator":{"id":"op","nick":"x"}}"#;
    let e = command_strict(serde_json::from_str(nested).unwrap(), &config(), NOW).unwrap_err();
    assert_eq!(e.reason, "`operator.nick`: unknown field");
    assert!(strict(r#""type":"close_appeal","appeal_number":1,"expected_revision":4"#).is_ok());
}

#[test]
fn the_same_unknown_field_on_the_topic_is_read_past() {
    let input = r#"{"type":"close_appeal","command_id":"c1","project_id":"acme","issued_at":"2026-11-21T11:00:00Z","appeal_number":1,"later_field":true}"#;
    assert!(decode(input.as_bytes(), &config()).is_ok());
}

#[test]
fn a_strict_command_names_a_missing_field_an_unknown_type_and_a_wrong_type() {
    let missing = strict(r#""type":"rename_client","client":{"client_id":"a"}"#).unwrap_err();
    assert!(missing.reason.contains("missing field `name`"), "{}", missing.reason);
    let unknown = strict(r#""type":"delete_everything""#).unwrap_err();
    assert!(unknown.reason.contains("unknown variant `delete_everything`"), "{}", unknown.reason);
    let wrong = strict(r#""type":"close_appeal","appeal_number":"one""#).unwrap_err();
    assert!(wrong.reason.starts_with("`appeal_number`:"), "{}", wrong.reason);
}

#[test]
fn expected_revision_is_refused_where_it_names_no_single_card() {
    let create = strict(r#""type":"create_client","name":"N","contacts":[],"expected_revision":1"#);
    assert!(create.unwrap_err().reason.starts_with("`expected_revision`"));
    let merge = r#""type":"merge_clients","target":{"client_id":"a"},"source":{"client_id":"b"}"#;
    let e = strict(&format!(r#"{merge},"expected_revision":1"#)).unwrap_err();
    assert!(e.reason.contains("target_revision"), "{}", e.reason);
    let both = strict(&format!(r#"{merge},"target_revision":3,"source_revision":5"#)).unwrap();
    let CommandAction::MergeClients { target_revision, source_revision, .. } = both.action else { panic!() };
    assert_eq!((target_revision, source_revision), (Some(3), Some(5)));
}

#[test]
fn a_strict_command_issued_in_2036_is_refused_by_max_future() {
    let input = r#"{"type":"close_appeal","command_id":"c1","project_id":"acme","issued_at":"2036-01-01T00:00:00Z","operator":{"id":"op"},"appeal_number":1}"#;
    let e = command_strict(serde_json::from_str(input).unwrap(), &config(), NOW).unwrap_err();
    assert!(e.reason.starts_with("issued_at is in the future"), "{}", e.reason);
}
