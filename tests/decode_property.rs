//! Hostile input as a property: random bytes and mutated valid inputs never panic decode,
//! always get a DLQ reason when refused, never make an accepted input carry an id over its
//! bounds, and never make a record (DLQ or event) over its bound, through the whole pipeline.
//! `APPEALFLOW_PROPTEST_CASES=N` runs more. `cargo fuzz run decode` (fuzz/) searches longer.

mod common;

use appealflow::decode::{self, limits, Input};
use appealflow::emit::{self, DlqReason};
use appealflow::source::{RawInput, SourcePos};
use common::{kinds, replay_lines, Kind, TestDb, BASE};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

const NOW: i64 = 1_795_262_400_000; // 2026-11-21T12:00:00Z
const DLQ_MAX: usize = 16 * 1024;
/// A broker's default record limit (message.max.bytes).
const RECORD_MAX: usize = 1_000_000;

fn valid_inputs() -> Vec<String> {
    let t = "2026-11-21T10:00:00Z";
    vec![
        common::msg(
            "m1",
            "acme-tg",
            t,
            r#"{"id":"t1","name":"Alfred","phone":"+7 999 123-45-67","email":"A@b.co","external_id":"x1","fields":{"contract_number":"D-1"}}"#,
            "hello",
        ),
        common::msg("m2", "acme-wa", t, r#"{"id":"79991234567"}"#, "hi"),
        format!(
            r#"{{"type":"status","message_id":"m1","project_id":"acme","channel_id":"acme-tg","status":"read","at":"{t}"}}"#
        ),
        common::cmd("close_appeal", "c1", t, r#""appeal_number":1"#),
        common::cmd(
            "set_client_field",
            "c2",
            t,
            r#""client":{"channel_id":"acme-tg","visitor_id":"t1"},"field":"note","value":"VIP""#,
        ),
        common::cmd(
            "send_outbound",
            "c3",
            t,
            r#""client":{"external_id":"x1"},"channel_id":"acme-tg","text":"hi""#,
        ),
        common::cmd("merge_clients", "c4", t, r#""target":{"client_id":"a"},"source":{"appeal_number":1}"#),
        common::cmd(
            "edit_contact",
            "c5",
            t,
            r#""client":{"client_id":"a"},"contact_type":"phone","old_value":"1","value":"2""#,
        ),
    ]
}

/// One way to spoil an input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, byte: u8 },
    Insert { at: usize, text: String },
    Cut { at: usize },
    Repeat { from: usize, len: usize, times: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let text = prop_oneof![
        Just("\\u0000".to_string()),
        Just("\"".to_string()),
        Just(",\"message_id\":\"dup\"".to_string()),
        Just("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_string()),
        Just("\\ud800".to_string()),
        Just("\u{1f}".to_string()),
        Just("2036-01-01T00:00:00Z".to_string()),
        "\\PC{0,8}",
    ];
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        (any::<usize>(), text).prop_map(|(at, text)| Mutation::Insert { at, text }),
        any::<usize>().prop_map(|at| Mutation::Cut { at }),
        (any::<usize>(), 1..40usize, 1..200usize).prop_map(|(from, len, times)| Mutation::Repeat {
            from,
            len,
            times
        }),
    ]
}

fn mutate(input: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = input.as_bytes().to_vec();
    for m in mutations {
        let n = bytes.len().max(1);
        match m {
            Mutation::Flip { at, byte } if !bytes.is_empty() => bytes[at % n] = *byte,
            Mutation::Insert { at, text } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, text.bytes());
            }
            Mutation::Cut { at } => bytes.truncate(at % n),
            Mutation::Repeat { from, len, times } if !bytes.is_empty() => {
                let from = from % bytes.len();
                let piece: Vec<u8> = bytes[from..(from + len).min(bytes.len())].to_vec();
                let copies: Vec<u8> = std::iter::repeat_n(piece, *times).flatten().collect();
                bytes.splice(from..from, copies);
            }
            _ => {}
        }
    }
    bytes
}

fn raw(bytes: Vec<u8>) -> RawInput {
    RawInput {
        bytes,
        pos: SourcePos::File { file: "fuzz".into(), line: 1 },
        key: None,
        cut: None,
        project: None,
    }
}

/// What must hold of one input, whatever it is.
fn check(config: &appealflow::config::Config, bytes: Vec<u8>) -> Result<(), TestCaseError> {
    match decode::decode(&bytes, config, NOW) {
        Ok(input) => accepted_within_bounds(&input)?,
        Err(e) => {
            prop_assert!(!e.reason.trim().is_empty());
            let why = DlqReason { reason: &e.reason, stage: "decode", project_id: e.project_id.clone() };
            let record = emit::dlq(&raw(bytes), why, DLQ_MAX);
            prop_assert!(record.value.len() <= DLQ_MAX, "DLQ record of {} bytes", record.value.len());
            prop_assert!(serde_json::from_str::<serde_json::Value>(&record.value).is_ok());
        }
    }
    Ok(())
}

fn accepted_within_bounds(input: &Input) -> Result<(), TestCaseError> {
    let ids: Vec<&str> = match input {
        Input::Message(m) => vec![&m.message_id, &m.visitor.id],
        Input::Status(s) => vec![&s.message_id],
        Input::Command(c) => vec![&c.command_id],
    };
    for id in ids {
        prop_assert!(id.len() <= limits::MAX_ID_BYTES && !id.chars().any(char::is_control), "{id:?}");
    }
    Ok(())
}

fn cases(default: u32) -> u32 {
    std::env::var("APPEALFLOW_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(RunnerConfig { cases, failure_persistence: None, ..RunnerConfig::default() })
}

#[test]
fn random_bytes_never_panic_decode_and_always_get_a_bounded_dlq_record() {
    let config = common::config(BASE);
    let bytes = proptest::collection::vec(any::<u8>(), 0..4096);
    runner(cases(1000)).run(&bytes, |b| check(&config, b)).unwrap();
}

#[test]
fn mutated_valid_inputs_never_panic_decode_and_stay_within_their_bounds() {
    let config = common::config(BASE);
    let inputs = valid_inputs();
    let strategy = (0..inputs.len(), proptest::collection::vec(mutation(), 1..5));
    runner(cases(2000)).run(&strategy, |(i, ms)| check(&config, mutate(&inputs[i], &ms))).unwrap();
}

/// Through the whole pipeline: a batch of spoiled inputs applies, and no record it makes is
/// over its bound.
#[test]
fn a_batch_of_mutated_inputs_applies_and_makes_no_record_over_its_bound() {
    let toml = format!("[pipeline]\ndlq_max_bytes = {DLQ_MAX}\n{BASE}");
    let config = common::config(&toml);
    let inputs = valid_inputs();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let batch =
        proptest::collection::vec((0..inputs.len(), proptest::collection::vec(mutation(), 0..4)), 1..24);
    let kind = *kinds().last().unwrap_or(&Kind::Sqlite);
    let result = runner((cases(2400) / 100).max(1)).run(&batch, |spoiled| {
        // Lines of a file: a newline inside a mutation would split an input in two.
        let lines: Vec<String> = spoiled
            .iter()
            .map(|(i, ms)| String::from_utf8_lossy(&mutate(&inputs[*i], ms)).replace(['\n', '\r'], " "))
            .collect();
        let run = rt.block_on(async { replay_lines(&config, &TestDb::new(kind).await, &lines).await });
        prop_assert_eq!(
            run.summary.stats.inputs,
            lines.iter().filter(|l| !l.trim().is_empty()).count() as u64
        );
        for r in &run.records {
            let bound = if r.topic == "inbound.dlq" { DLQ_MAX } else { RECORD_MAX };
            prop_assert!(
                r.value.to_string().len() <= bound,
                "{} record of {} bytes",
                r.topic,
                r.value.to_string().len()
            );
        }
        Ok(())
    });
    result.unwrap();
}
