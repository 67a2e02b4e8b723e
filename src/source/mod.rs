//! Where inputs come from. Every input carries its position so a DLQ record can point back at
//! it and so a source can resume: a file line in `replay`, a topic/partition/offset in `run`.

pub mod file;
pub mod kafka;

use serde::Serialize;

/// Position of one input in its source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum SourcePos {
    File { file: String, line: u64 },
    Kafka { topic: String, partition: i32, offset: i64 },
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
}

/// The whole of an input of which only the head was kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub size: u64,
    /// SHA-256 of the whole input, hex.
    pub sha256: String,
}

/// A run of consecutive inputs of one partition, processed in one transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The partition whose event-time clock governs inactivity (`replay` for files).
    pub partition: String,
    pub inputs: Vec<RawInput>,
}
