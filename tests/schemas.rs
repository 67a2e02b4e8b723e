//! The JSON Schemas in `schemas/` (SPEC "Contracts", "Output records") against the SPEC's own
//! examples and against every record a real replay of `tests/fixtures/all_types.jsonl` emits.
//!
//! References between schemas (`common.json#/$defs/...`) resolve from the local folder through
//! [`LocalSchemas`]; nothing is ever fetched from the network.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jsonschema::{Draft, Retrieve, Uri, Validator};
use serde_json::{json, Value};

const SCHEMA_BASE: &str = "https://appealflow.dev/schemas/";
const FIXTURE_CONFIG: &str = "tests/fixtures/all_types.toml";
const FIXTURE_INPUT: &str = "tests/fixtures/all_types.jsonl";

/// Event types the pipeline can emit today: the fixture replay must show every one.
const EMITTED_EVENT_TYPES: [&str; 22] = [
    "client.created",
    "client.commented",
    "client.tagged",
    "client.identified",
    "client.updated",
    "client.merged",
    "client.merge_refused",
    "client.split",
    "appeal.opened",
    "appeal.message_added",
    "appeal.message_status",
    "appeal.assigned",
    "appeal.categorized",
    "appeal.tagged",
    "appeal.commented",
    "appeal.closed",
    "outbound.refused",
    "command.rejected",
    "bot.block_entered",
    "bot.answer_rejected",
    "bot.stopped",
    "identification.failed",
];

/// Serves `https://appealflow.dev/schemas/<file>` from `schemas/<file>`, and nothing else.
struct LocalSchemas;

impl Retrieve for LocalSchemas {
    fn retrieve(&self, uri: &Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri
            .as_str()
            .strip_prefix(SCHEMA_BASE)
            .ok_or_else(|| format!("{uri} is not an appealflow schema"))?;
        let text = std::fs::read_to_string(schema_dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

fn schema_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(schema_dir())
        .expect("schemas/ exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    names
}

fn read_schema(name: &str) -> Value {
    let text = std::fs::read_to_string(schema_dir().join(name)).expect("schema file");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(true)
        .with_retriever(LocalSchemas)
        .build(schema)
        .map_err(|e| e.to_string())
}

/// Every schema file, compiled, by file name.
fn validators() -> BTreeMap<String, Validator> {
    schema_files()
        .into_iter()
        .map(|name| {
            let v = compile(&read_schema(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, v)
        })
        .collect()
}

/// The validation errors of an instance, as `path: message` lines.
fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path)).collect()
}

/// The schema file for an input `type`, if the type is one appealflow reads.
fn input_schema(kind: &str) -> Option<String> {
    match kind {
        "message" | "status" => Some(format!("input.{kind}.json")),
        t if appealflow::decode::COMMAND_TYPES.contains(&t) => Some(format!("command.{t}.json")),
        _ => None,
    }
}

/// The schema file for an output record of `topic`.
fn record_schema(topic: &str, value: &Value) -> String {
    match topic {
        "appeal.events" => format!("event.{}.json", value["type"].as_str().unwrap_or("?")),
        "outbound.messages" => "outbound.json".into(),
        "inbound.dlq" => "dlq.json".into(),
        other => panic!("record on unexpected topic {other:?}"),
    }
}

#[test]
fn every_schema_file_is_a_valid_schema_and_resolves_its_refs() {
    for name in schema_files() {
        let schema = read_schema(&name);
        if let Err(e) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{name} is not a valid draft 2020-12 schema: {e}");
        }
        assert_eq!(schema["$id"], json!(format!("{SCHEMA_BASE}{name}")), "{name}");
        compile(&schema).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn a_reference_to_a_missing_definition_fails_to_compile() {
    let schema = json!({
        "$id": format!("{SCHEMA_BASE}probe.json"),
        "$ref": "common.json#/$defs/no_such_definition"
    });
    assert!(compile(&schema).is_err());
}

#[test]
fn there_is_a_schema_for_every_input_and_event_type() {
    let files: BTreeSet<String> = schema_files().into_iter().collect();
    let inputs = ["message", "status"].iter().chain(appealflow::decode::COMMAND_TYPES.iter());
    let mut expected: Vec<String> = inputs.filter_map(|t| input_schema(t)).collect();
    expected.extend(EMITTED_EVENT_TYPES.iter().map(|t| format!("event.{t}.json")));
    expected.extend(["common.json", "outbound.json", "dlq.json"].map(String::from));
    let missing: Vec<&String> = expected.iter().filter(|f| !files.contains(*f)).collect();
    assert!(missing.is_empty(), "missing schemas: {missing:?}");
}

/// The examples of SPEC "Contracts", verbatim.
const SPEC_MESSAGE: &str = r#"{
  "type": "message",
  "message_id": "tg-0001",
  "project_id": "acme",
  "channel_id": "acme-tg",
  "sent_at": "2026-11-21T10:00:00Z",
  "visitor": {
    "id": "513377",
    "name": "Alfred",
    "external_id": "site-user-42",
    "phone": "+7 (999) 123-45-67",
    "email": "Alfred@Example.com",
    "fields": { "contract_number": "D-100" }
  },
  "content": { "kind": "text", "text": "Hello" }
}"#;
const SPEC_STATUS: &str = r#"{ "type": "status", "message_id": "out-17", "project_id": "acme", "channel_id": "acme-tg",
  "status": "delivered", "at": "2026-11-21T10:00:05Z" }"#;
const SPEC_CLOSE_APPEAL: &str = r#"{ "type": "close_appeal", "command_id": "cmd-1", "project_id": "acme",
  "issued_at": "2026-11-21T11:00:00Z",
  "operator": { "id": "op-7", "name": "Ivan Petrov" },
  "appeal_number": 17 }"#;

fn spec_example(text: &str) -> Value {
    serde_json::from_str(text).expect("SPEC example is JSON")
}

/// The rename_client command, naming its client by `client`.
fn rename(client: Value) -> Value {
    json!({"type": "rename_client", "command_id": "c-1", "project_id": "acme",
           "issued_at": "2026-11-21T11:00:00Z", "client": client, "name": "Alfred"})
}

#[test]
fn spec_examples_are_accepted_by_the_input_schemas() {
    let v = validators();
    for (schema, text) in [
        ("input.message.json", SPEC_MESSAGE),
        ("input.status.json", SPEC_STATUS),
        ("command.close_appeal.json", SPEC_CLOSE_APPEAL),
    ] {
        let problems = errors(&v[schema], &spec_example(text));
        assert!(problems.is_empty(), "{schema}: {problems:?}");
    }
}

#[test]
fn every_client_ref_form_is_accepted_alone() {
    let v = &validators()["command.rename_client.json"];
    for client in [
        json!({"client_id": "c-42"}),
        json!({"channel_id": "acme-tg", "visitor_id": "513377"}),
        json!({"external_id": "site-user-42"}),
        json!({"appeal_number": 17}),
    ] {
        assert!(v.is_valid(&rename(client.clone())), "{client}");
    }
}

#[test]
fn inputs_breaking_the_contract_are_rejected() {
    let v = validators();
    let mut no_visitor_id = spec_example(SPEC_MESSAGE);
    no_visitor_id["visitor"].as_object_mut().unwrap().remove("id");
    let mut vague_status = spec_example(SPEC_STATUS);
    vague_status["status"] = json!("sent-ish");
    let mut photo_without_file = spec_example(SPEC_MESSAGE);
    photo_without_file["content"] = json!({"kind": "photo"});
    let cases = [
        ("input.message.json", no_visitor_id),
        ("input.message.json", photo_without_file),
        ("input.status.json", vague_status),
        ("command.rename_client.json", rename(json!({"client_id": "c-42", "external_id": "site-user-42"}))),
        ("command.rename_client.json", rename(json!({"channel_id": "acme-tg"}))),
        ("command.rename_client.json", rename(json!({"external_id": "x", "visitor_id": "513377"}))),
    ];
    for (schema, instance) in cases {
        assert!(!v[schema].is_valid(&instance), "{schema} accepted {instance}");
    }
}

/// Replays the fixture in-process and returns the output records, one JSON value per line.
async fn replay_fixture() -> Vec<Value> {
    let config = appealflow::config::Config::load(Some(Path::new(FIXTURE_CONFIG))).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = appealflow::store::Store::connect(&url, 1).await.unwrap();
    let mut out: Vec<u8> = Vec::new();
    let inputs = [FIXTURE_INPUT.to_string()];
    appealflow::replay::replay(Arc::new(config), store, &inputs, &mut out, false).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

#[tokio::test]
async fn every_record_a_replay_emits_matches_the_schema_of_its_type() {
    let v = validators();
    let records = replay_fixture().await;
    let mut failures = Vec::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for record in &records {
        let topic = record["topic"].as_str().expect("topic");
        let value = &record["value"];
        let schema = record_schema(topic, value);
        let label = value["type"].as_str().unwrap_or(topic).to_string();
        *seen.entry(label.clone()).or_default() += 1;
        match v.get(&schema) {
            None => failures.push(format!("{label}: no schema {schema}")),
            Some(validator) => failures
                .extend(errors(validator, value).into_iter().map(|e| format!("{label} {e}\n  in {value}"))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let missing: Vec<&str> = EMITTED_EVENT_TYPES.into_iter().filter(|t| !seen.contains_key(*t)).collect();
    assert!(missing.is_empty(), "the fixture never produced {missing:?}");
    let count = |label: &str| seen.get(label).copied().unwrap_or(0);
    assert!(count("outbound.messages") >= 1, "no outbound record: {seen:?}");
    assert!(count("inbound.dlq") >= 4, "too few DLQ records: {seen:?}");
}

/// Refusals a schema cannot see: they depend on the configuration or on stored state.
fn refused_for_context(dlq: &Value) -> bool {
    let reason = dlq["reason"].as_str().unwrap_or_default();
    dlq["stage"] != "decode" || reason.starts_with("unknown project") || reason.starts_with("unknown channel")
}

#[tokio::test]
async fn fixture_inputs_match_their_schema_exactly_when_the_decoder_accepts_them() {
    let v = validators();
    let dlq_by_line: BTreeMap<u64, Value> = replay_fixture()
        .await
        .into_iter()
        .filter(|r| r["topic"] == "inbound.dlq")
        .map(|r| (r["value"]["source"]["line"].as_u64().unwrap(), r["value"].clone()))
        .collect();
    let text = std::fs::read_to_string(FIXTURE_INPUT).unwrap();
    let mut checked = 0;
    for (n, line) in (1u64..).zip(text.lines()) {
        let Ok(input) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(schema) = input["type"].as_str().and_then(input_schema) else {
            continue;
        };
        let should_pass = dlq_by_line.get(&n).is_none_or(refused_for_context);
        let problems = errors(&v[&schema], &input);
        assert_eq!(problems.is_empty(), should_pass, "line {n} vs {schema}: {problems:?}");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} fixture inputs checked");
}

/// The Search Client API examples of SPEC, verbatim.
const SPEC_CRM_REQUEST: &str =
    r#"{ "project_id": "acme", "identifier": { "type": "phone", "value": "+79991234567" } }"#;
const SPEC_CRM_NOT_FOUND: &str = r#"{"found": false}"#;
const SPEC_CRM_FOUND: &str = r#"{"found": true, "client": {"crm_id": "CRM-1001",
  "name": "Alfred Hitchcock",
  "contacts": [{"type": "email", "value": "alfred@example.com"}], "fields": {"contract_number": "D-100"}}}"#;

const CRM_REQUEST: &str = "crm.search-client.request.json";
const CRM_RESPONSE: &str = "crm.search-client.response.json";

#[test]
fn spec_search_client_examples_are_accepted_by_the_crm_schemas() {
    let v = validators();
    for (schema, text) in
        [(CRM_REQUEST, SPEC_CRM_REQUEST), (CRM_RESPONSE, SPEC_CRM_NOT_FOUND), (CRM_RESPONSE, SPEC_CRM_FOUND)]
    {
        let problems = errors(&v[schema], &spec_example(text));
        assert!(problems.is_empty(), "{schema}: {problems:?}");
    }
}

#[test]
fn search_client_messages_breaking_the_protocol_are_rejected() {
    let v = validators();
    let cases = [
        (CRM_REQUEST, json!({"project_id": "acme", "identifier": {"type": "skype", "value": "x"}})),
        (CRM_REQUEST, json!({"project_id": "acme", "identifier": {"type": "phone", "value": "8 999 123"}})),
        (CRM_REQUEST, json!({"identifier": {"type": "email", "value": "a@b.c"}})),
        (CRM_RESPONSE, json!({"found": true})),
        (CRM_RESPONSE, json!({"found": false, "client": {"crm_id": "C"}})),
        (CRM_RESPONSE, json!({"found": true, "client": {"name": "no crm id"}})),
        (CRM_RESPONSE, json!({"found": true, "client": {"crm_id": "C", "fields": {"n": 1}}})),
    ];
    for (schema, instance) in cases {
        assert!(!v[schema].is_valid(&instance), "{schema} accepted {instance}");
    }
}

/// What appealflow's client sends is what the request schema describes.
#[test]
fn the_request_appealflow_sends_matches_the_request_schema() {
    use appealflow::crm::protocol::SearchRequest;
    use appealflow::crm::{Identifier, IdentifierType};
    let v = &validators()[CRM_REQUEST];
    for id in [
        Identifier::normalise(IdentifierType::Phone, "8 (999) 123-45-67", "RU").unwrap(),
        Identifier::normalise(IdentifierType::Email, " Alfred@Example.com", "RU").unwrap(),
        Identifier::normalise(IdentifierType::CrmId, "CRM-1001 ", "RU").unwrap(),
    ] {
        let request =
            serde_json::to_value(SearchRequest { project_id: "acme".into(), identifier: id }).unwrap();
        assert!(errors(v, &request).is_empty(), "{:?}", errors(v, &request));
    }
}

#[tokio::test]
async fn every_answer_of_the_crm_double_matches_the_response_schema() {
    use appealflow::crm::double::{self, DoubleOptions};
    let v = validators();
    let clients_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crm-clients.json");
    let clients = double::load_clients(&clients_file).unwrap();
    let (addr, _handle) = double::serve(clients, DoubleOptions::default(), "127.0.0.1:0").await.unwrap();
    let searches = [
        ("phone", "+79991234567"),
        ("email", "alfred@example.com"),
        ("crm_id", "CRM-1003"),
        ("crm_id", "CRM-1004"),
        ("phone", "+79990000000"),
    ];
    let http = reqwest::Client::new();
    for (kind, value) in searches {
        let request = json!({"project_id": "acme", "identifier": {"type": kind, "value": value}});
        assert!(v[CRM_REQUEST].is_valid(&request), "{request}");
        let response = http.post(format!("http://{addr}/search-client")).json(&request).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let problems = errors(&v[CRM_RESPONSE], &body);
        assert!(problems.is_empty(), "{kind} {value}: {problems:?} in {body}");
        assert_eq!(body["found"], json!(value != "+79990000000"), "{kind} {value}");
    }
}

#[test]
fn a_dlq_record_of_a_posted_input_matches_the_dlq_schema() {
    let raw = appealflow::source::RawInput {
        bytes: b"not JSON {".to_vec(),
        pos: appealflow::source::SourcePos::Request { request: "6f1c".into(), line: 3 },
        key: None,
        cut: None,
        project: Some("acme".into()),
    };
    let why =
        appealflow::emit::DlqReason { reason: "not JSON", stage: "decode", project_id: Some("acme".into()) };
    let record = appealflow::emit::dlq(&raw, why, 256 * 1024);
    let value: Value = serde_json::from_str(&record.value).unwrap();
    assert_eq!(value["source"], serde_json::json!({"request": "6f1c", "line": 3}));
    let validators = validators();
    assert_eq!(errors(&validators["dlq.json"], &value), Vec::<String>::new());
}
