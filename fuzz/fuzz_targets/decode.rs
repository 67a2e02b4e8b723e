//! Any bytes through decode: no panic; a refused input gets a reason and a DLQ record within
//! its bound; an accepted one has ids within theirs.
#![no_main]

use std::sync::LazyLock;

use appealflow::config::Config;
use appealflow::decode::{self, limits, Input};
use appealflow::emit::{self, DlqReason};
use appealflow::source::{RawInput, SourcePos};
use libfuzzer_sys::fuzz_target;

static CONFIG: LazyLock<Config> = LazyLock::new(|| {
    Config::from_toml(include_str!("../../config/example.toml")).expect("the example config is valid")
});

/// 2026-11-21T12:00:00Z: a fixed wall clock, so a run is repeatable.
const NOW: i64 = 1_795_262_400_000;
const DLQ_MAX: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    match decode::decode(data, &CONFIG, NOW) {
        Ok(input) => {
            let ids: Vec<&str> = match &input {
                Input::Message(m) => vec![&m.message_id, &m.visitor.id],
                Input::Status(s) => vec![&s.message_id],
                Input::Command(c) => vec![&c.command_id],
            };
            for id in ids {
                assert!(id.len() <= limits::MAX_ID_BYTES && !id.chars().any(char::is_control));
            }
        }
        Err(e) => {
            assert!(!e.reason.trim().is_empty());
            let raw = RawInput {
                bytes: data.to_vec(),
                pos: SourcePos::File { file: "fuzz".into(), line: 1 },
                key: None,
                cut: None,
            };
            let why = DlqReason { reason: &e.reason, stage: "decode", project_id: e.project_id };
            let record = emit::dlq(&raw, why, DLQ_MAX);
            assert!(record.value.len() <= DLQ_MAX);
        }
    }
});
