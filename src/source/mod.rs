//! Where inputs come from. Every input carries its position so a DLQ record can point back at
//! it and so a source can resume: a file line in `replay`, a topic/partition/offset in `run`.

pub mod file;
pub mod http;
pub mod kafka;

use serde::Serialize;

/// Position of one input in its source.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum SourcePos {
    File {
        file: String,
        line: u64,
    },
    Kafka {
        topic: String,
        partition: i32,
        offset: i64,
    },
    /// `serve`: the line of a body posted to the ingest endpoint, by the request's id.
    Request {
        request: String,
        line: u64,
    },
}

/// One input as received, before decoding.
#[derive(Debug, Clone)]
pub struct RawInput {
    pub bytes: Vec<u8>,
    pub pos: SourcePos,
    /// The record key, when the source has one (Kafka).
    pub key: Option<String>,
    /// Set when the source kept only the first bytes of an input larger than
    /// `pipeline.max_input_bytes`, to bound memory: what the whole was.
    pub cut: Option<Cut>,
    /// The only project the input may name, where the source is one project's (a body posted
    /// to a project's ingest endpoint): an input naming another goes to the DLQ.
    pub project: Option<String>,
}

/// The whole of an input of which only the head was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub size: u64,
    /// SHA-256 of the whole input, hex.
    pub sha256: String,
}

/// Inputs processed in one transaction: a run of consecutive inputs from each of one or more
/// partitions. `run` puts the partitions whose batches would take turns on the same
/// project's lock into one batch (see `run::plan`).
#[derive(Debug, Clone)]
pub struct Batch {
    pub parts: Vec<Part>,
}

/// A run of consecutive inputs of one partition.
#[derive(Debug, Clone)]
pub struct Part {
    /// The partition whose event-time clock governs inactivity (`replay` for files).
    pub partition: String,
    pub inputs: Vec<RawInput>,
    /// The partition's offset after these inputs, stored with the batch (`run`); files
    /// have none.
    pub next_offset: Option<i64>,
}

impl Batch {
    /// A batch of one partition.
    pub fn one(partition: impl Into<String>, inputs: Vec<RawInput>, next_offset: Option<i64>) -> Batch {
        Batch { parts: vec![Part { partition: partition.into(), inputs, next_offset }] }
    }

    /// How many inputs the batch holds.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.inputs.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every input with its partition, part by part.
    pub fn inputs(&self) -> impl Iterator<Item = (&str, &RawInput)> {
        self.parts.iter().flat_map(|p| p.inputs.iter().map(move |i| (p.partition.as_str(), i)))
    }
}
