//! JSONL files (or stdin) for `replay`: one input per line, read in order, batched.

use std::path::Path;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::{RawInput, SourcePos};

/// The partition name replayed files share: one input order, one event-time clock.
pub const REPLAY_PARTITION: &str = "replay";

/// Reads lines of one file (`-` is stdin) as raw inputs, skipping blank lines.
pub struct LineSource {
    name: String,
    reader: Box<dyn AsyncBufRead + Unpin + Send>,
    line: u64,
    /// Size of the input in bytes, when known (for progress).
    pub len: Option<u64>,
    pub bytes_read: u64,
}

impl LineSource {
    pub async fn open(path: &str) -> std::io::Result<Self> {
        if path == "-" {
            let reader = Box::new(BufReader::with_capacity(1 << 16, tokio::io::stdin()));
            return Ok(Self { name: "-".into(), reader, line: 0, len: None, bytes_read: 0 });
        }
        let file = tokio::fs::File::open(Path::new(path)).await?;
        let len = file.metadata().await.ok().map(|m| m.len());
        let reader = Box::new(BufReader::with_capacity(1 << 16, file));
        Ok(Self { name: path.to_string(), reader, line: 0, len, bytes_read: 0 })
    }

    /// The next non-blank line, or `None` at the end of the input.
    pub async fn next(&mut self) -> std::io::Result<Option<RawInput>> {
        loop {
            let mut buf = Vec::new();
            let n = self.reader.read_until(b'\n', &mut buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.bytes_read += n as u64;
            while matches!(buf.last(), Some(b'\n' | b'\r')) {
                buf.pop();
            }
            if buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let pos = SourcePos::File { file: self.name.clone(), line: self.line };
            return Ok(Some(RawInput { bytes: buf, pos, key: None }));
        }
    }

    /// Reads up to `max` inputs.
    pub async fn next_chunk(&mut self, max: usize) -> std::io::Result<Vec<RawInput>> {
        let mut out = Vec::with_capacity(max.min(4096));
        while out.len() < max {
            match self.next().await? {
                Some(input) => out.push(input),
                None => break,
            }
        }
        Ok(out)
    }
}
