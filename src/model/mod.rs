//! Domain types shared by every stage: client cards, appeals, messages, event time.
//!
//! They are plain data. Cards and appeals are persisted as a few indexed columns plus a JSON
//! document (`ClientDoc`, `AppealDoc`), so adding a field to a card never needs a migration.

pub mod card;
pub mod search;

use std::collections::BTreeSet;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Serialize};

pub use card::{
    is_identifier, Added, CardValue, ClientDoc, InvalidValue, NameClaim, NameRank, Source,
    MAX_MANUAL_CONTACTS, MAX_VALUES_PER_FIELD,
};

/// (project, scenario) → block → entries.
pub type BotBlockEntries =
    std::collections::BTreeMap<(String, String), std::collections::BTreeMap<String, u64>>;

/// Event time in milliseconds since the Unix epoch (UTC).
pub type Millis = i64;

/// Formats event time as RFC 3339 UTC, with milliseconds only when they are not zero.
pub fn format_ts(ms: Millis) -> String {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default().to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Parses an RFC 3339 timestamp with an explicit offset; a naive time would be a guess.
pub fn parse_ts(text: &str) -> Result<Millis, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 timestamp with offset ({e})"))
}

#[derive(
    strum::IntoStaticStr, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ClientType {
    /// Anonymous visitor of a widget or SDK chat.
    Internal,
    /// Known by a messenger or social network account.
    Channel,
    /// Identified through the CRM or online banking.
    Crm,
}

impl ClientType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A (channel, visitor ID) pair: the technical contact a gateway identifies a sender by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Visitor {
    pub channel_id: String,
    pub visitor_id: String,
}

/// A client card.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub id: String,
    pub project_id: String,
    pub kind: ClientType,
    /// Event time of creation: the oldest card of a merge survives.
    pub created_at: Millis,
    pub appeal_count: i64,
    /// Set once this card was absorbed by a merge; every reference then resolves to it.
    pub merged_into: Option<String>,
    pub doc: ClientDoc,
}

impl Client {
    /// The revision this card has once `self` replaces `before` (None: a new card): one more
    /// when anything an operator sees changed (SPEC identity rule 10). The one rule for every
    /// path that stores a card.
    pub fn next_revision(&self, before: Option<&Client>) -> u64 {
        match before {
            None => self.doc.revision.max(1),
            Some(old) => {
                let same = old.kind == self.kind
                    && old.merged_into == self.merged_into
                    && old.doc.same_card(&self.doc);
                if same {
                    old.doc.revision
                } else {
                    old.doc.revision + 1
                }
            }
        }
    }

    pub fn new(id: String, project_id: String, kind: ClientType, created_at: Millis) -> Self {
        let doc = ClientDoc { group_size: 1, ..ClientDoc::default() };
        Client { id, project_id, kind, created_at, appeal_count: 0, merged_into: None, doc }
    }

    /// Every normalised value a multi-contact rule field can see: contacts of that type and
    /// the custom field of that name.
    pub fn values(&self, field: &str) -> BTreeSet<&str> {
        self.doc.values(field).collect()
    }

    /// Every (field, normalised value) pair this card offers to matching.
    pub fn all_values(&self) -> BTreeSet<(String, String)> {
        let doc = &self.doc;
        let pairs = doc.contacts.iter().chain(doc.fields.iter());
        pairs.flat_map(|(f, vs)| vs.iter().map(move |v| (f.clone(), v.value.clone()))).collect()
    }

    /// Saves a value the way every automatic source does (gateway, bot, CRM): identifier
    /// types (`phone`, `email`, `crm_id`) become contacts, anything else a custom field.
    /// Returns whether the card gained it.
    pub fn save_value(&mut self, field: &str, value: CardValue) -> bool {
        self.doc.add_value(is_identifier(field), field, value) == Added::New
    }

    /// Adds a contact of any type (custom types such as `skype` included).
    pub fn add_contact(&mut self, kind: &str, value: CardValue) -> bool {
        self.doc.add_value(true, kind, value) == Added::New
    }

    /// Raises the type to what the card holds implies (seed 002): `crm` once it holds an
    /// external ID (the customer's own login) or a CRM id. A type is never lowered. Returns
    /// whether it changed.
    pub fn settle_type(&mut self) -> bool {
        let identified = !self.doc.external_ids.is_empty()
            || self.doc.contacts.get("crm_id").is_some_and(|v| !v.is_empty());
        if identified && self.kind != ClientType::Crm {
            self.kind = ClientType::Crm;
            return true;
        }
        false
    }

    pub fn summary(&self) -> ClientSummary {
        ClientSummary {
            id: self.id.clone(),
            name: self.doc.name.clone(),
            kind: self.kind,
            appeal_count: self.appeal_count,
        }
    }
}

/// The client object every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientSummary {
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: ClientType,
    pub appeal_count: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppealStatus {
    Open,
    Closed,
}

/// Who wrote a message; grouping compares authors, not just their kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub kind: AuthorKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(strum::IntoStaticStr, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AuthorKind {
    Client,
    Operator,
    Bot,
    System,
}

impl AuthorKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comment {
    pub text: String,
    pub operator_id: Option<String>,
    pub at: Millis,
}

/// The mutable part of an appeal, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AppealDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<Comment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Millis>,
    /// Last message that counts for grouping (system notes are not chat bubbles).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_author: Option<Author>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_group_id: Option<String>,
    #[serde(default)]
    pub message_count: i64,
    /// Where the automatic conversation (identification question, bot scenario) stands.
    #[serde(default, skip_serializing_if = "Dialogue::is_idle")]
    pub dialogue: Dialogue,
}

/// Where a running scenario stands, stored as JSON with the appeal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BotState {
    pub scenario_id: String,
    /// The `ask` waiting for an answer, or the `identify` waiting for `bot::Scenario::resume`.
    pub block_id: String,
    /// Invalid answers given to this `ask` so far (its `max_repeats` bound counts them).
    #[serde(default)]
    pub invalid_answers: u32,
}

/// The automatic conversation of an appeal, persisted with it so a restart resumes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialogue {
    /// Identification asked the client for an identifier this many times and waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ident_asked: Option<u32>,
    /// The running scenario (waiting at an `ask`, or at an `identify` until it finishes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<BotState>,
    /// A scenario that starts once identification stopped asking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_pending: Option<String>,
}

impl Dialogue {
    pub fn is_idle(&self) -> bool {
        *self == Dialogue::default()
    }
}

/// The key of a conversation (SPEC "Appeals and messages"): (channel, external ID) when the
/// message carries one, so every device of a signed-in person shares one appeal in a channel;
/// else (channel, visitor). The visitor form is also the visitor's handle.
pub fn conversation_key(channel_id: &str, visitor_id: &str, external_id: Option<&str>) -> String {
    match external_id {
        Some(x) => format!("x:{channel_id}:{x}"),
        None => format!("v:{channel_id}:{visitor_id}"),
    }
}

/// One support conversation of one client in one channel (see [`conversation_key`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Appeal {
    pub id: String,
    pub project_id: String,
    pub number: i64,
    pub client_id: String,
    pub channel_id: String,
    /// Where replies go: the visitor of the conversation who wrote last.
    pub visitor_id: String,
    /// The conversation this appeal is the open (or a past) appeal of.
    pub key: String,
    pub status: AppealStatus,
    pub opened_at: Millis,
    /// Event time of the last message; inactivity is measured from it.
    pub last_message_at: Millis,
    /// The input partition whose event-time clock closes this appeal when idle.
    pub partition: String,
    /// When inactivity closes it, while open: set by the appeal stage (the project's
    /// `auto_close_after` past the last message), kept by the store for the idle index.
    pub close_deadline: Option<Millis>,
    pub doc: AppealDoc,
}

impl Appeal {
    pub fn summary(&self) -> AppealSummary {
        AppealSummary {
            number: self.number,
            id: self.id.clone(),
            channel_id: self.channel_id.clone(),
            status: self.status,
            group: self.doc.group.clone(),
            operator_id: self.doc.operator_id.clone(),
            category: self.doc.category.clone(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.status == AppealStatus::Open
    }
}

/// The appeal object every event carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppealSummary {
    pub number: i64,
    pub id: String,
    pub channel_id: String,
    pub status: AppealStatus,
    pub group: Option<String>,
    pub operator_id: Option<String>,
    pub category: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentKind {
    Text,
    Photo,
    Video,
    Document,
    File,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Sent,
    Delivered,
    Read,
}

/// A message of an appeal (client, operator, bot or system).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: String,
    pub author_kind: AuthorKind,
    /// The client card (at the time), operator or bot that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author_id: Option<String>,
    /// A client message's visitor: which device of the client wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor_id: Option<String>,
    pub kind: ContentKind,
    pub group_id: String,
    pub sent_at: String,
    pub visible_to_client: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<Attachment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<DeliveryStatus>,
    /// Its place in the appeal (1, 2, ...): the order messages were appended in, which their
    /// times cannot give (a system message shares its client message's time). Absent on
    /// messages stored before it was kept, and outside appeals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
}

/// A stored message with what a delivery status needs to find its appeal.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub project_id: String,
    pub appeal_id: Option<String>,
    pub message: Message,
}

/// A value two cards shared that made a rule (or an external ID) merge them: the evidence an
/// operator needs to trust or dispute a merge (in `client.merged` and the merge ledger).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MatchedValue {
    pub field: String,
    pub value: String,
}

/// One merge as the ledger keeps it (SPEC "Read API", merges): written in the batch that
/// merged, read by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeEntry {
    #[serde(skip)]
    pub project_id: String,
    #[serde(skip)]
    pub at: Millis,
    #[serde(skip)]
    pub survivor_id: String,
    pub absorbed_ids: Vec<String>,
    /// `rule`, `external_id` or `operator`.
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    #[serde(default)]
    pub matched: Vec<MatchedValue>,
    /// The entry's id (SPEC "Undoing a merge"). Entries written before it was kept in the
    /// document are named by their first absorbed card (the ledger row's key).
    #[serde(default)]
    pub merge_id: String,
    /// What a split needs: the survivor as it was just before the merge, and each absorbed
    /// card as it came in. Entries written before the ledger kept them cannot be undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub survivor_before: Option<CardSnapshot>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub brought: Vec<Brought>,
    /// Set once an operator undid the merge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitMark>,
}

/// A card as it was at a merge: what it brought to the group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardSnapshot {
    pub kind: ClientType,
    pub doc: ClientDoc,
}

/// One card a merge absorbed: its snapshot, and the cards it had absorbed before (they come
/// back with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Brought {
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    pub card: CardSnapshot,
}

/// When and by whom a merge was undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMark {
    pub at: Millis,
    pub operator: String,
}
