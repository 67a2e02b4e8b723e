//! What became of a command (SPEC "Write API"): read off the records it produced, and stored
//! with the state they describe, in the same transaction, so the write API answers from it
//! and a command submitted again under its id gets this first outcome forever.

use serde::{Deserialize, Serialize};

use super::{Record, Topic};
use crate::model::{AppealSummary, ClientSummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Applied,
    Rejected,
}

/// An event a command caused, by id and type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub command_id: String,
    pub status: OutcomeStatus,
    /// Why it was rejected: the `command.rejected` (or `outbound.refused`) reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub events: Vec<EventRef>,
    /// The card the command was about, as the batch left it.
    #[serde(default)]
    pub client: Option<ClientSummary>,
    #[serde(default)]
    pub appeal: Option<AppealSummary>,
    /// That card's revision after the command (SPEC identity rule 10).
    #[serde(default)]
    pub revision: Option<u64>,
}

/// The fields of an event an outcome reads.
#[derive(Deserialize)]
struct Peek {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    client: Option<ClientSummary>,
    #[serde(default)]
    appeal: Option<AppealSummary>,
}

/// Event types that say a command did not do what it asked: refused outright, or (a send)
/// refused by the channel's rules.
const REFUSALS: &[&str] = &["command.rejected", "outbound.refused"];

impl CommandOutcome {
    /// The outcome the records of one command tell: rejected when one of them is a refusal
    /// (its reason given), else applied; the client and appeal are the last ones an event
    /// names (a merge's survivor, a new card).
    pub fn from_records(command_id: &str, records: &[Record]) -> CommandOutcome {
        let mut outcome = CommandOutcome {
            command_id: command_id.to_string(),
            status: OutcomeStatus::Applied,
            reason: None,
            events: Vec::new(),
            client: None,
            appeal: None,
            revision: None,
        };
        let events = records.iter().filter(|r| r.topic == Topic::Events);
        for peek in events.filter_map(|r| serde_json::from_str::<Peek>(&r.value).ok()) {
            if REFUSALS.contains(&peek.kind.as_str()) && outcome.status == OutcomeStatus::Applied {
                outcome.status = OutcomeStatus::Rejected;
                outcome.reason = peek.reason;
            }
            outcome.client = peek.client.or(outcome.client);
            outcome.appeal = peek.appeal.or(outcome.appeal);
            outcome.events.push(EventRef { event_id: peek.event_id, kind: peek.kind });
        }
        outcome
    }

    /// A command the pipeline could not apply at all (the store refused its data).
    pub fn failed(command_id: &str, reason: String) -> CommandOutcome {
        CommandOutcome {
            status: OutcomeStatus::Rejected,
            reason: Some(reason),
            ..CommandOutcome::from_records(command_id, &[])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(value: serde_json::Value) -> Record {
        Record { topic: Topic::Events, key: "acme".into(), value: value.to_string() }
    }

    fn client(id: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "name": null, "type": "channel", "appeal_count": 0})
    }

    #[test]
    fn a_command_whose_events_hold_no_refusal_is_applied_with_the_last_client_named() {
        let records = [
            event(serde_json::json!({"event_id": "e1", "type": "client.updated", "client": client("a")})),
            event(serde_json::json!({"event_id": "e2", "type": "client.merged", "client": client("b")})),
            Record { topic: Topic::Outbound, key: "k".into(), value: "{}".into() },
        ];
        let outcome = CommandOutcome::from_records("cmd-1", &records);
        assert_eq!(outcome.status, OutcomeStatus::Applied);
        assert_eq!(
            outcome.events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            ["client.updated", "client.merged"]
        );
        assert_eq!(outcome.client.map(|c| c.id), Some("b".into()));
    }

    #[test]
    fn a_refused_send_is_a_rejection_with_the_channels_reason() {
        let refused = serde_json::json!({"event_id": "e1", "type": "outbound.refused", "reason": "outside_24h_window: x", "client": client("a")});
        let outcome = CommandOutcome::from_records("cmd-1", &[event(refused)]);
        assert_eq!(outcome.status, OutcomeStatus::Rejected);
        assert_eq!(outcome.reason.as_deref(), Some("outside_24h_window: x"));
    }
}
