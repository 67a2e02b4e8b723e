//! Inputs posted over HTTP to `serve`'s ingest endpoint: one body, one line an input, each
//! bound to the project of the endpoint it was posted to. A line over
//! `pipeline.max_input_bytes` keeps only its head and what the whole was, as a file line does.

use sha2::Digest;

use super::{Cut, RawInput, SourcePos};

/// The inputs of one posted body (`lines`, blank ones already left out) as the pipeline
/// takes them; `request` names the body in DLQ records.
pub fn inputs(lines: Vec<Vec<u8>>, project: &str, request: &str, max_bytes: usize) -> Vec<RawInput> {
    lines
        .into_iter()
        .enumerate()
        .map(|(i, mut bytes)| {
            let cut = (bytes.len() > max_bytes).then(|| Cut {
                size: bytes.len() as u64,
                sha256: sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect(),
            });
            if cut.is_some() {
                bytes.truncate(max_bytes + 1);
            }
            let pos = SourcePos::Request { request: request.to_string(), line: i as u64 + 1 };
            RawInput { bytes, pos, key: None, cut, project: Some(project.to_string()) }
        })
        .collect()
}
