//! JSONL files (or stdin) for `replay`: one input per line, read in order, batched.
//!
//! A line is read in pieces and only its first `pipeline.max_input_bytes` + 1 bytes are kept:
//! a line of gigabytes costs its hashing, not its size in memory.

use std::path::Path;

use sha2::Digest;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};

use super::{Cut, RawInput, SourcePos};

/// The partition name replayed files share: one input order, one event-time clock.
pub const REPLAY_PARTITION: &str = "replay";

/// Reads lines of one file (`-` is stdin) as raw inputs, skipping blank lines.
pub struct LineSource {
    name: String,
    reader: Box<dyn AsyncBufRead + Unpin + Send>,
    line: u64,
    /// Lines longer than this keep only their first `max_line + 1` bytes.
    max_line: usize,
    /// Size of the input in bytes, when known (for progress).
    pub len: Option<u64>,
    pub bytes_read: u64,
}

/// One line as read: its first bytes, and the whole's size and hash when it was cut.
struct Line {
    head: Vec<u8>,
    size: u64,
    hasher: Option<sha2::Sha256>,
}

impl LineSource {
    /// Opens a file; lines over `max_line` bytes are cut (see [`RawInput::cut`]).
    pub async fn open(path: &str, max_line: usize) -> std::io::Result<Self> {
        let (name, reader, len): (String, Box<dyn AsyncBufRead + Unpin + Send>, Option<u64>) = if path == "-"
        {
            ("-".into(), Box::new(BufReader::with_capacity(1 << 16, tokio::io::stdin())), None)
        } else {
            let file = tokio::fs::File::open(Path::new(path)).await?;
            let len = file.metadata().await.ok().map(|m| m.len());
            (path.to_string(), Box::new(BufReader::with_capacity(1 << 16, file)), len)
        };
        Ok(Self { name, reader, line: 0, max_line, len, bytes_read: 0 })
    }

    /// The next non-blank line, or `None` at the end of the input.
    pub async fn next(&mut self) -> std::io::Result<Option<RawInput>> {
        loop {
            let Some(line) = self.read_line().await? else { return Ok(None) };
            self.line += 1;
            let Line { mut head, size, hasher } = line;
            let cut = hasher
                .map(|h| Cut { size, sha256: h.finalize().iter().map(|b| format!("{b:02x}")).collect() });
            if cut.is_none() {
                while matches!(head.last(), Some(b'\r')) {
                    head.pop();
                }
                if head.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
            }
            let pos = SourcePos::File { file: self.name.clone(), line: self.line };
            return Ok(Some(RawInput { bytes: head, pos, key: None, cut, project: None }));
        }
    }

    /// Reads up to the next newline in pieces, keeping at most `max_line + 1` bytes; past
    /// that it hashes what it reads instead of keeping it.
    async fn read_line(&mut self) -> std::io::Result<Option<Line>> {
        let keep = self.max_line.saturating_add(1);
        let mut line = Line { head: Vec::new(), size: 0, hasher: None };
        loop {
            let available = self.reader.fill_buf().await?;
            if available.is_empty() {
                return Ok((line.size > 0).then_some(line));
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let piece = &available[..newline.unwrap_or(available.len())];
            let take = piece.len().min(keep - line.head.len().min(keep));
            line.head.extend_from_slice(&piece[..take]);
            line.size += piece.len() as u64;
            if line.size > self.max_line as u64 {
                let hasher = line.hasher.get_or_insert_with(|| {
                    let mut h = sha2::Sha256::new();
                    h.update(&line.head[..line.head.len() - take]);
                    h
                });
                hasher.update(piece);
            }
            let consumed = piece.len() + usize::from(newline.is_some());
            self.reader.consume(consumed);
            self.bytes_read += consumed as u64;
            if newline.is_some() {
                return Ok(Some(line));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_line_over_the_limit_keeps_only_its_head_and_says_what_the_whole_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        let long = "x".repeat(5000);
        std::fs::write(&path, format!("short\n{long}\r\n\n  \nlast")).unwrap();
        let mut source = LineSource::open(path.to_str().unwrap(), 100).await.unwrap();
        let first = source.next().await.unwrap().unwrap();
        assert_eq!((first.bytes.as_slice(), first.cut.is_none()), (b"short".as_slice(), true));
        let cut = source.next().await.unwrap().unwrap();
        assert_eq!(cut.bytes.len(), 101, "only max + 1 bytes are kept");
        let whole = cut.cut.expect("cut");
        assert_eq!(whole.size, 5001, "the line as it was, carriage return included");
        assert_eq!(whole.sha256, crate::emit::sha256_hex(format!("{long}\r").as_bytes()));
        let last = source.next().await.unwrap().unwrap();
        assert_eq!(last.bytes, b"last");
        assert_eq!(last.pos, SourcePos::File { file: path.to_str().unwrap().into(), line: 5 });
        assert!(source.next().await.unwrap().is_none());
    }
}
