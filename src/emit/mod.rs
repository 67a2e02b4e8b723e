//! Emit: the records appealflow produces (SPEC "Output records").
//!
//! Event ids are UUIDv5 of (project, cause kind, cause id, position among that cause's
//! records): the same input processed against the same state yields the same ids, so a
//! consumer that drops repeated ids sees every event exactly once even when a crash makes us
//! publish a batch twice.

mod event;
pub mod kafka;
mod outcome;

use serde::Serialize;
use uuid::Uuid;

use crate::config::TopicsConfig;
use crate::source::SourcePos;

pub use event::{Event, EventBody, IdentifyMethod, MatchedValue, MergeMatch, MessageView, SplitMoved};
pub use outcome::{CommandOutcome, EventRef, OutcomeStatus};

/// Namespace of every id appealflow derives (events, clients, appeals, messages).
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_f10f_4d2b_4c1e_9b3a_51ce_a99e_a1f0);

/// A deterministic id from its parts; parts are joined with a separator no id contains.
pub fn derive_id(parts: &[&str]) -> String {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes()).to_string()
}

#[derive(strum::IntoStaticStr, Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CauseKind {
    Message,
    Command,
    Timer,
}

impl CauseKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What made a record happen: an input (message or command) or the inactivity timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cause {
    pub kind: CauseKind,
    pub id: String,
}

/// Which configured topic a record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Events,
    Outbound,
    Dlq,
}

impl Topic {
    pub fn name(self, topics: &TopicsConfig) -> &str {
        match self {
            Topic::Events => &topics.events,
            Topic::Outbound => &topics.outbound,
            Topic::Dlq => &topics.dlq,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Topic::Events => "events",
            Topic::Outbound => "outbound",
            Topic::Dlq => "dlq",
        }
    }

    pub fn from_code(code: &str) -> Option<Topic> {
        match code {
            "events" => Some(Topic::Events),
            "outbound" => Some(Topic::Outbound),
            "dlq" => Some(Topic::Dlq),
            _ => None,
        }
    }
}

/// One output record: the value is serialised once, when produced, and kept as JSON text
/// through the outbox to the sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: Topic,
    pub key: String,
    pub value: String,
}

impl Record {
    /// The project a record is of: the first part of an event's or outbound record's key
    /// (SPEC: keys begin with the project id, which holds no `:`), a DLQ record's
    /// `project_id` (none when the input named no project appealflow knows).
    pub fn project(&self) -> Option<String> {
        match self.topic {
            Topic::Events | Topic::Outbound => self.key.split(':').next().map(str::to_string),
            Topic::Dlq => {
                #[derive(serde::Deserialize)]
                struct Project {
                    project_id: Option<String>,
                }
                serde_json::from_str::<Project>(&self.value).ok().and_then(|p| p.project_id)
            }
        }
    }

    /// The replay line: `{"topic": ..., "key": ..., "value": {...}}`.
    pub fn to_line(&self, topics: &TopicsConfig) -> String {
        let topic = serde_json::to_string(self.topic.name(topics)).unwrap_or_default();
        let key = serde_json::to_string(&self.key).unwrap_or_default();
        format!("{{\"topic\":{topic},\"key\":{key},\"value\":{}}}", self.value)
    }

    /// A batch's records as one outbox value: a JSON array of `[topic, key, value]` where
    /// the value is embedded as the JSON it already is. (Embedding it as a string would
    /// escape every quote of every record again, which showed up in batch profiles.)
    pub fn encode_batch<'a, I>(records: I) -> String
    where
        I: IntoIterator<Item = &'a Record>,
        I::IntoIter: Clone,
    {
        let records = records.into_iter();
        let size: usize = records.clone().map(|r| r.key.len() + r.value.len() + 16).sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        for (i, r) in records.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"[\"");
            out.extend_from_slice(r.topic.code().as_bytes());
            out.extend_from_slice(b"\",");
            serde_json::to_writer(&mut out, &r.key).expect("strings always serialise");
            out.push(b',');
            out.extend_from_slice(r.value.as_bytes());
            out.push(b']');
        }
        out.push(b']');
        String::from_utf8(out).expect("built from UTF-8 strings")
    }

    /// Reads [`Record::encode_batch`]'s format, and the older one where each value was a
    /// JSON string (batches left in the outbox by an older version).
    pub fn decode_batch(text: &str) -> Result<Vec<Record>, serde_json::Error> {
        let triples: Vec<(String, String, Box<serde_json::value::RawValue>)> = serde_json::from_str(text)?;
        triples
            .into_iter()
            .map(|(topic, key, value)| {
                let topic = Topic::from_code(&topic)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown topic code {topic:?}")))?;
                let value = match value.get() {
                    quoted if quoted.starts_with('"') => serde_json::from_str::<String>(quoted)?,
                    raw => raw.to_string(),
                };
                Ok(Record { topic, key, value })
            })
            .collect()
    }
}

/// An outbound message for a gateway to deliver.
#[derive(Debug, Clone, Serialize)]
pub struct Outbound {
    pub outbound_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub visitor_id: String,
    pub appeal_number: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<serde_json::Value>,
    pub author_kind: crate::model::AuthorKind,
    pub cause: Cause,
}

/// An input that could not be processed, with where it came from and why.
#[derive(Debug, Clone, Serialize)]
pub struct DlqRecord {
    pub dlq_id: String,
    pub reason: String,
    pub error_class: &'static str,
    pub stage: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    pub source: SourcePos,
    /// The input as received, as text (invalid UTF-8 replaced); exact bytes in `input_base64`.
    /// Only its first bytes when the whole would not fit `pipeline.dlq_max_bytes`.
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_base64: Option<String>,
    /// The input's size in bytes, when `input` holds only its first bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_size: Option<u64>,
    /// SHA-256 of the whole input (hex), when `input` holds only its first bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_sha256: Option<String>,
}

/// A DLQ reason is at most this long: it may quote input values.
const MAX_REASON_BYTES: usize = 2048;

/// Collects the records one cause produces, numbering them for stable ids.
#[derive(Debug)]
pub struct Emitter {
    project_id: String,
    cause: Cause,
    /// What the ids derive from besides the cause id: its kind, or `status` for delivery
    /// statuses, whose cause is shown as a message but whose ids must never be a message's.
    namespace: &'static str,
    next: usize,
    pub records: Vec<Record>,
}

impl Emitter {
    pub fn new(project_id: &str, cause: Cause) -> Self {
        let namespace = cause.kind.as_str();
        Self { project_id: project_id.to_string(), cause, namespace, next: 0, records: Vec::new() }
    }

    /// For a delivery status: its records' ids live apart from every message's.
    pub fn for_status(project_id: &str, cause: Cause) -> Self {
        Self { namespace: "status", ..Self::new(project_id, cause) }
    }

    pub fn cause(&self) -> &Cause {
        &self.cause
    }

    /// A stable id under this cause named by `parts` (a merge ledger entry), leaving the
    /// numbering of [`Emitter::next_id`] as it is.
    pub fn named_id(&self, what: &str, parts: &[&str]) -> String {
        let mut all = vec![self.project_id.as_str(), self.namespace, self.cause.id.as_str(), what];
        all.extend_from_slice(parts);
        derive_id(&all)
    }

    /// The next stable id under this cause (events, outbound ids, system message ids).
    pub fn next_id(&mut self, what: &str) -> String {
        let n = self.next.to_string();
        self.next += 1;
        derive_id(&[&self.project_id, self.namespace, &self.cause.id, what, &n])
    }

    /// Adds an event; its key keeps one client's (or, without one, one project's) events in
    /// order on one partition.
    pub fn event(
        &mut self,
        occurred_at: i64,
        body: EventBody,
        client: Option<crate::model::ClientSummary>,
        appeal: Option<crate::model::AppealSummary>,
    ) {
        let key = match &client {
            Some(c) => format!("{}:{}", self.project_id, c.id),
            None => self.project_id.clone(),
        };
        let event = Event {
            event_id: self.next_id("event"),
            body,
            occurred_at: crate::model::format_ts(occurred_at),
            project_id: self.project_id.clone(),
            cause: self.cause.clone(),
            client,
            appeal,
        };
        let value = serde_json::to_string(&event).expect("events serialise");
        self.records.push(Record { topic: Topic::Events, key, value });
    }

    /// Adds an outbound record keyed like the visitor's inbound messages.
    pub fn outbound(&mut self, outbound: &Outbound) {
        let key = format!("{}:{}:{}", outbound.project_id, outbound.channel_id, outbound.visitor_id);
        let value = serde_json::to_string(outbound).expect("outbound serialises");
        self.records.push(Record { topic: Topic::Outbound, key, value });
    }
}

/// Why an input goes to the DLQ and where it was refused.
pub struct DlqReason<'a> {
    pub reason: &'a str,
    pub stage: &'static str,
    pub project_id: Option<String>,
}

/// Builds the DLQ record for an input, at most `max_bytes` long: an input too large for that
/// (or cut short while it was read) is carried by its first bytes, its size and its SHA-256,
/// so no input, however built, makes a record the broker refuses.
pub fn dlq(raw: &crate::source::RawInput, why: DlqReason<'_>, max_bytes: usize) -> Record {
    let position = serde_json::to_string(&raw.pos).unwrap_or_default();
    let mut record = DlqRecord {
        dlq_id: String::new(),
        reason: crate::text::cut(why.reason, MAX_REASON_BYTES),
        error_class: "poison",
        stage: why.stage,
        project_id: why.project_id,
        source: raw.pos.clone(),
        input: String::new(),
        input_base64: None,
        original_size: raw.cut.as_ref().map(|c| c.size),
        original_sha256: raw.cut.as_ref().map(|c| c.sha256.clone()),
    };
    // A placeholder of the id's length, so the sizes measured below are the final ones.
    record.dlq_id = derive_id(&["dlq"]);
    let whole = raw.cut.is_none() && fill_input(&mut record, &raw.bytes, usize::MAX);
    if !whole || json_len(&record) > max_bytes {
        record.original_size.get_or_insert(raw.bytes.len() as u64);
        record.original_sha256.get_or_insert_with(|| sha256_hex(&raw.bytes));
        let bare = DlqRecord { input: String::new(), input_base64: None, ..record.clone() };
        let mut budget = max_bytes.saturating_sub(json_len(&bare) + 32);
        fill_input(&mut record, &raw.bytes, budget);
        // The halves' estimates are close, not exact: take off what is still over.
        while json_len(&record) > max_bytes && budget > 0 {
            budget = budget.saturating_sub(json_len(&record) - max_bytes + 16);
            fill_input(&mut record, &raw.bytes, budget);
        }
    }
    record.dlq_id = derive_id(&["dlq", &position, &record.input]);
    let key = raw.key.clone().unwrap_or(position);
    Record { topic: Topic::Dlq, key, value: serde_json::to_string(&record).expect("dlq serialises") }
}

/// Puts the input into the record in at most `budget` bytes of JSON: the text (invalid UTF-8
/// replaced) and, when the bytes are not UTF-8, their base64 too, each taking half. Returns
/// whether all of it fitted.
fn fill_input(record: &mut DlqRecord, bytes: &[u8], budget: usize) -> bool {
    match std::str::from_utf8(bytes) {
        Ok(text) => {
            record.input = json_prefix(text, budget);
            record.input_base64 = None;
            record.input.len() == text.len()
        }
        Err(_) => {
            let head = &bytes[..bytes.len().min(budget / 2 / 4 * 3)];
            record.input_base64 = Some(base64(head));
            record.input = json_prefix(&String::from_utf8_lossy(head), budget / 2);
            head.len() == bytes.len()
        }
    }
}

/// The longest prefix of `text` whose JSON string escaping takes at most `budget` bytes.
fn json_prefix(text: &str, budget: usize) -> String {
    let mut used = 2;
    for (i, c) in text.char_indices() {
        used += match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if used > budget {
            return text[..i].to_string();
        }
    }
    text.to_string()
}

fn json_len(record: &DlqRecord) -> usize {
    serde_json::to_vec(record).map(|v| v.len()).unwrap_or(usize::MAX)
}

/// Hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Standard base64 with padding, for `input_base64` (schemas/dlq.json).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_records() -> Vec<Record> {
        vec![
            Record {
                topic: Topic::Events,
                key: "acme:c-1".into(),
                value: r#"{"type":"x","text":"say \"hi\"\n"}"#.into(),
            },
            Record {
                topic: Topic::Outbound,
                key: "k \"q\"".into(),
                value: r#"{"a":[1,2,{"b":null}]}"#.into(),
            },
            Record { topic: Topic::Dlq, key: String::new(), value: "{}".into() },
        ]
    }

    #[test]
    fn an_outbox_batch_decodes_to_the_same_records_byte_for_byte() {
        let records = sample_records();
        let text = Record::encode_batch(&records);
        assert!(text.contains(r#""text":"say \"hi\"\n""#), "values are embedded, not re-escaped: {text}");
        assert_eq!(Record::decode_batch(&text).unwrap(), records);
        assert_eq!(Record::decode_batch(&Record::encode_batch(&[])).unwrap(), vec![]);
    }

    #[test]
    fn an_outbox_batch_written_by_an_older_version_with_string_values_still_decodes() {
        let records = sample_records();
        let triples: Vec<(&str, &str, &str)> =
            records.iter().map(|r| (r.topic.code(), r.key.as_str(), r.value.as_str())).collect();
        let old = serde_json::to_string(&triples).unwrap();
        assert_eq!(Record::decode_batch(&old).unwrap(), records);
    }

    #[test]
    fn derived_ids_are_stable_and_depend_on_every_part() {
        assert_eq!(derive_id(&["a", "b"]), derive_id(&["a", "b"]));
        assert_ne!(derive_id(&["a", "b"]), derive_id(&["ab"]));
        assert_ne!(derive_id(&["a", "b"]), derive_id(&["a", "c"]));
    }

    fn raw(bytes: &[u8]) -> crate::source::RawInput {
        let pos = SourcePos::File { file: "in.jsonl".into(), line: 3 };
        crate::source::RawInput { bytes: bytes.to_vec(), pos, key: None, cut: None, project: None }
    }

    fn dlq_of(input: &crate::source::RawInput, max: usize) -> (usize, serde_json::Value) {
        let why = DlqReason { reason: "bad", stage: "decode", project_id: None };
        let record = dlq(input, why, max);
        (record.value.len(), serde_json::from_str(&record.value).unwrap())
    }

    #[test]
    fn a_small_input_is_carried_whole() {
        let (_, v) = dlq_of(&raw(br#"{"type":"x"}"#), 4096);
        assert_eq!(v["input"], r#"{"type":"x"}"#);
        assert!(v.get("original_size").is_none() && v.get("input_base64").is_none());
    }

    #[test]
    fn an_input_of_control_characters_is_cut_to_the_bound_with_its_size_and_hash() {
        let bytes = vec![1u8; 200_000];
        let (len, v) = dlq_of(&raw(&bytes), 16 * 1024);
        assert!(len <= 16 * 1024, "{len}");
        assert_eq!(v["original_size"], 200_000);
        assert_eq!(v["original_sha256"], sha256_hex(&bytes));
        assert!(v["input"].as_str().unwrap().len() > 1000, "the head is kept");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_cut_in_text_and_base64_alike() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 256) as u8).collect();
        let (len, v) = dlq_of(&raw(&bytes), 32 * 1024);
        assert!(len <= 32 * 1024, "{len}");
        let head = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            v["input_base64"].as_str().unwrap(),
        )
        .unwrap();
        assert!(bytes.starts_with(&head) && head.len() > 4000);
        assert_eq!(v["original_size"], 300_000);
    }

    #[test]
    fn an_input_the_source_cut_short_says_what_the_whole_was() {
        let mut input = raw(b"{\"type\":");
        input.cut = Some(crate::source::Cut { size: 5_000_000, sha256: "ab".repeat(32) });
        let (_, v) = dlq_of(&input, 4096);
        assert_eq!(
            (v["original_size"].clone(), v["original_sha256"].clone()),
            (5_000_000.into(), "ab".repeat(32).into())
        );
        assert_eq!(v["input"], "{\"type\":");
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"\xff\xfe"), "//4=");
    }

    #[test]
    fn an_emitter_numbers_records_so_the_same_cause_gives_the_same_ids() {
        let cause = Cause { kind: CauseKind::Message, id: "tg-1".into() };
        let mut a = Emitter::new("acme", cause.clone());
        let mut b = Emitter::new("acme", cause);
        assert_eq!(a.next_id("event"), b.next_id("event"));
        assert_ne!(a.next_id("event"), a.next_id("event"));
    }
}
