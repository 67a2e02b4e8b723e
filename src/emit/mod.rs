//! Emit: the records appealflow produces (SPEC "Output records").
//!
//! Event ids are UUIDv5 of (project, cause kind, cause id, position among that cause's
//! records): the same input processed against the same state yields the same ids, so a
//! consumer that drops repeated ids sees every event exactly once even when a crash makes us
//! publish a batch twice.

mod event;
pub mod kafka;

use serde::Serialize;
use uuid::Uuid;

use crate::config::TopicsConfig;
use crate::source::SourcePos;

pub use event::{Event, EventBody, IdentifyMethod, MatchedValue, MergeMatch, MessageView};

/// Namespace of every id appealflow derives (events, clients, appeals, messages).
const NAMESPACE: Uuid = Uuid::from_u128(0x6a1e_f10f_4d2b_4c1e_9b3a_51ce_a99e_a1f0);

/// A deterministic id from its parts; parts are joined with a separator no id contains.
pub fn derive_id(parts: &[&str]) -> String {
    Uuid::new_v5(&NAMESPACE, parts.join("\u{1f}").as_bytes()).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    Message,
    Command,
    Timer,
}

impl CauseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CauseKind::Message => "message",
            CauseKind::Command => "command",
            CauseKind::Timer => "timer",
        }
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
    /// The replay line: `{"topic": ..., "key": ..., "value": {...}}`.
    pub fn to_line(&self, topics: &TopicsConfig) -> String {
        let topic = serde_json::to_string(self.topic.name(topics)).unwrap_or_default();
        let key = serde_json::to_string(&self.key).unwrap_or_default();
        format!("{{\"topic\":{topic},\"key\":{key},\"value\":{}}}", self.value)
    }

    /// A batch's records as one outbox value: a JSON array of `[topic, key, value]` where
    /// the value is embedded as the JSON it already is. (Embedding it as a string would
    /// escape every quote of every record again, which showed up in batch profiles.)
    pub fn encode_batch(records: &[Record]) -> String {
        let size: usize = records.iter().map(|r| r.key.len() + r.value.len() + 16).sum();
        let mut out = Vec::with_capacity(size + 2);
        out.push(b'[');
        for (i, r) in records.iter().enumerate() {
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
    pub input: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_base64: Option<String>,
}

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

/// Builds the DLQ record for an input.
pub fn dlq(
    bytes: &[u8],
    pos: &SourcePos,
    key: Option<&str>,
    reason: &str,
    stage: &'static str,
    project_id: Option<String>,
) -> Record {
    let (input, input_base64) = match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (String::from_utf8_lossy(bytes).into_owned(), Some(base64(bytes))),
    };
    let position = serde_json::to_string(pos).unwrap_or_default();
    let record = DlqRecord {
        dlq_id: derive_id(&["dlq", &position, &input]),
        reason: reason.to_string(),
        error_class: "poison",
        stage,
        project_id,
        source: pos.clone(),
        input,
        input_base64,
    };
    let key = key.map(str::to_string).unwrap_or(position);
    Record { topic: Topic::Dlq, key, value: serde_json::to_string(&record).expect("dlq serialises") }
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
