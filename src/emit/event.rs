//! Event values (SPEC "Output records"): common fields plus a body per `type`.

use serde::Serialize;

use super::Cause;
pub use crate::model::MatchedValue;
use crate::model::{
    AppealSummary, Attachment, AuthorKind, ClientSummary, ContentKind, DeliveryStatus, Message,
};

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub event_id: String,
    #[serde(flatten)]
    pub body: EventBody,
    pub occurred_at: String,
    pub project_id: String,
    pub cause: Cause,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub appeal: Option<AppealSummary>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifyMethod {
    ExternalId,
    Fixed,
    Crm,
    Manual,
    Bot,
}

/// One card joined into a merge, and the rule that matched it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergeMatch {
    pub client_id: String,
    pub rule_id: String,
}

/// The message object of `appeal.message_added`.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: String,
    pub author_kind: AuthorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author_id: Option<String>,
    /// A client message's visitor (which device of the client wrote it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    pub kind: ContentKind,
    pub group_id: String,
    pub sent_at: String,
    pub visible_to_client: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
}

/// A stored message as events show it (its delivery status travels in events of its own).
impl From<Message> for MessageView {
    fn from(m: Message) -> Self {
        MessageView {
            id: m.id,
            author_kind: m.author_kind,
            author_id: m.author_id,
            visitor_id: m.visitor_id,
            kind: m.kind,
            group_id: m.group_id,
            sent_at: m.sent_at,
            visible_to_client: m.visible_to_client,
            text: m.text,
            attachment: m.attachment,
        }
    }
}

/// What one restored card of a split took back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitMoved {
    pub client_id: String,
    pub visitors: usize,
    pub appeals: usize,
    pub values: usize,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type")]
pub enum EventBody {
    #[serde(rename = "client.created")]
    ClientCreated {},
    #[serde(rename = "client.identified")]
    ClientIdentified {
        method: IdentifyMethod,
        #[serde(skip_serializing_if = "Option::is_none")]
        identifier: Option<String>,
        /// Manual identification in a project with a CRM: what the CRM said of the value
        /// (`found`, `not_found`, `failed`). The operator's word stands either way.
        #[serde(skip_serializing_if = "Option::is_none")]
        crm: Option<&'static str>,
    },
    #[serde(rename = "client.updated")]
    ClientUpdated {
        changes: Vec<String>,
        /// Fields whose new values could not be read (a phone that is no valid number): kept
        /// on the card under `invalid_values`, never compared.
        rejected: Vec<String>,
    },
    #[serde(rename = "client.merged")]
    ClientMerged {
        survivor_id: String,
        absorbed_ids: Vec<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        rule_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
        /// `rule`, `operator` or `external_id`.
        by: &'static str,
        matches: Vec<MergeMatch>,
        /// The shared values that made the merge happen.
        matched: Vec<MatchedValue>,
        /// The merge's entry in the ledger: what `split_client` names to undo it.
        merge_id: String,
    },
    /// SPEC "Undoing a merge": the cards a merge absorbed are cards again.
    #[serde(rename = "client.split")]
    ClientSplit {
        merge_id: String,
        survivor_id: String,
        restored_ids: Vec<String>,
        operator: String,
        /// Per restored card: how many visitors, appeals and values went back to it.
        moved: Vec<SplitMoved>,
        /// Operator-made values since the merge that stay with the survivor.
        kept: Vec<MatchedValue>,
        /// Later ledger entries that matched on values the restored cards took back.
        dependent_merges: Vec<String>,
    },
    #[serde(rename = "client.commented")]
    ClientCommented {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        operator_id: Option<String>,
    },
    #[serde(rename = "client.tagged")]
    ClientTagged { tag: String },
    #[serde(rename = "client.merge_refused")]
    ClientMergeRefused {
        reason: String,
        /// The cards that would have joined (at most `max_merge_group` + 1 of them); for a
        /// generic value, the card that met it and the oldest card holding it.
        client_ids: Vec<String>,
        rule_ids: Vec<String>,
        /// A generic value: its field, its value, and how many cards hold it.
        #[serde(skip_serializing_if = "Option::is_none")]
        field: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        /// How many cards: the group that was refused, or the holders of a generic value.
        #[serde(skip_serializing_if = "Option::is_none")]
        cards: Option<i64>,
    },
    #[serde(rename = "appeal.opened")]
    AppealOpened {},
    #[serde(rename = "appeal.message_added")]
    AppealMessageAdded { message: MessageView },
    #[serde(rename = "appeal.message_status")]
    AppealMessageStatus { message_id: String, status: DeliveryStatus },
    #[serde(rename = "appeal.assigned")]
    AppealAssigned {
        #[serde(skip_serializing_if = "Option::is_none")]
        group: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        operator_id: Option<String>,
        by: &'static str,
    },
    #[serde(rename = "appeal.categorized")]
    AppealCategorized { category: String },
    #[serde(rename = "appeal.tagged")]
    AppealTagged { tag: String },
    #[serde(rename = "appeal.commented")]
    AppealCommented {
        text: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        operator_id: Option<String>,
    },
    #[serde(rename = "appeal.closed")]
    AppealClosed { reason: &'static str },
    #[serde(rename = "outbound.refused")]
    OutboundRefused { reason: String, channel_id: String },
    #[serde(rename = "command.rejected")]
    CommandRejected {
        command_type: String,
        reason: String,
        /// With reason `stale_revision`: the card's current revision (SPEC identity rule 10).
        #[serde(skip_serializing_if = "Option::is_none")]
        revision: Option<u64>,
    },
    #[serde(rename = "identification.failed")]
    IdentificationFailed {
        /// `not_found`, `no_identifier`, `no_valid_answer`, or the CRM failure (`timeout`, ...).
        reason: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        identifier: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    #[serde(rename = "bot.block_entered")]
    BotBlockEntered { scenario_id: String, block_id: String, block_type: &'static str },
    /// SPEC identity rule 11: an operator stepped in; `block_id` is where it waited (none
    /// for a scenario that had not started yet).
    #[serde(rename = "bot.stopped")]
    BotStopped {
        scenario_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        block_id: Option<String>,
        reason: &'static str,
    },
    #[serde(rename = "bot.answer_rejected")]
    BotAnswerRejected {
        scenario_id: String,
        block_id: String,
        expect: &'static str,
        on_invalid: &'static str,
        message_id: String,
        reason: String,
    },
}
