//! The read API's response bodies (SPEC "Read API"), built from the model by pure functions:
//! what an operator sees of a card, its timeline and its merge ledger.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::appeal::commands::REPLY_WINDOW_MS;
use crate::config::{ChannelKind, ProjectConfig};
use crate::model::{
    format_ts, Appeal, AppealStatus, AppealSummary, CardValue, Client, ClientSummary, Comment, MergeEntry,
    Millis, Source,
};

#[derive(Debug, Serialize, ToSchema)]
pub struct ValueView {
    pub value: String,
    pub display: String,
    #[schema(value_type = String)]
    pub source: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplyWindow {
    /// Until when a free-text reply may go out; null when none may (or the channel has no window).
    pub open_until: Option<String>,
    /// Outside the window only approved templates may go (WhatsApp).
    pub template_only: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VisitorView {
    pub channel_id: String,
    #[schema(value_type = Option<String>)]
    pub channel_kind: Option<ChannelKind>,
    pub visitor_id: String,
    pub last_client_message_at: Option<String>,
    pub reply_window: ReplyWindow,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Technical {
    pub visitors: Vec<VisitorView>,
    pub external_ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CrmView {
    pub crm_id: Option<String>,
    /// What the CRM said of the client: the card's values whose source is the CRM.
    pub data: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CommentView {
    pub text: String,
    pub operator_id: Option<String>,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InvalidView {
    pub field: String,
    /// As given: it could not be read as a value of its type.
    pub display: String,
    pub source: &'static str,
    pub at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CardView {
    pub id: String,
    pub name: Option<String>,
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub kind: &'static str,
    pub created_at: String,
    pub appeal_count: i64,
    /// +1 on every change of the card (SPEC identity rule 10): send it back as a command's
    /// `expected_revision`.
    pub revision: u64,
    pub contacts: BTreeMap<String, Vec<ValueView>>,
    pub fields: BTreeMap<String, Vec<ValueView>>,
    pub invalid_values: Vec<InvalidView>,
    pub technical: Technical,
    pub crm: Option<CrmView>,
    pub tags: Vec<String>,
    pub comments: Vec<CommentView>,
    pub absorbed_ids: Vec<String>,
    /// Cards a split keeps apart from this one (SPEC "Undoing a merge"): no rule merges them
    /// until `merge_clients` or `allow_merge`.
    pub blocked_merges: Vec<String>,
    /// The id asked for, when it was an absorbed card's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
}

fn values(map: &BTreeMap<String, Vec<CardValue>>) -> BTreeMap<String, Vec<ValueView>> {
    let view = |v: &CardValue| ValueView {
        value: v.value.clone(),
        display: v.display().to_string(),
        source: v.source.into(),
    };
    map.iter().map(|(k, vs)| (k.clone(), vs.iter().map(view).collect())).collect()
}

fn comments(list: &[Comment]) -> Vec<CommentView> {
    list.iter()
        .map(|c| CommentView {
            text: c.text.clone(),
            operator_id: c.operator_id.clone(),
            at: format_ts(c.at),
        })
        .collect()
}

/// The reply window of a conversation whose client last wrote at `last`, as of `now`.
pub fn reply_window(kind: Option<ChannelKind>, last: Option<Millis>, now: Millis) -> ReplyWindow {
    let Some(kind) = kind.filter(|k| k.has_reply_window()) else {
        return ReplyWindow { open_until: None, template_only: false };
    };
    let until = last.map(|t| t.saturating_add(REPLY_WINDOW_MS)).filter(|u| *u > now);
    ReplyWindow {
        open_until: until.map(format_ts),
        template_only: until.is_none() && kind == ChannelKind::Whatsapp,
    }
}

/// The card as the API shows it, as of `now` (for reply windows).
pub fn card(c: &Client, project: &ProjectConfig, absorbed_ids: Vec<String>, now: Millis) -> CardView {
    let visitors = c
        .doc
        .visitors
        .iter()
        .map(|v| {
            let kind = project.channel(&v.channel_id).map(|ch| ch.kind);
            let handle = crate::store::visitor_handle(&v.channel_id, &v.visitor_id);
            let last = c.doc.last_inbound.get(&handle).copied();
            VisitorView {
                channel_id: v.channel_id.clone(),
                channel_kind: kind,
                visitor_id: v.visitor_id.clone(),
                last_client_message_at: last.map(format_ts),
                reply_window: reply_window(kind, last, now),
            }
        })
        .collect();
    CardView {
        id: c.id.clone(),
        name: c.doc.name.clone(),
        kind: c.kind.as_str(),
        created_at: format_ts(c.created_at),
        appeal_count: c.appeal_count,
        revision: c.doc.revision,
        contacts: values(&c.doc.contacts),
        fields: values(&c.doc.fields),
        invalid_values: c
            .doc
            .invalid_values
            .iter()
            .map(|v| InvalidView {
                field: v.field.clone(),
                display: v.display.clone(),
                source: v.source.into(),
                at: format_ts(v.at),
            })
            .collect(),
        technical: Technical { visitors, external_ids: c.doc.external_ids.iter().cloned().collect() },
        crm: crm(c),
        tags: c.doc.tags.clone(),
        comments: comments(&c.doc.comments),
        absorbed_ids,
        blocked_merges: c.doc.blocked_merges.iter().cloned().collect(),
        resolved_from: None,
    }
}

fn crm(c: &Client) -> Option<CrmView> {
    let crm_id = c.doc.contacts.get("crm_id").and_then(|v| v.first()).map(|v| v.value.clone());
    let mut data: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (field, vs) in c.doc.contacts.iter().chain(c.doc.fields.iter()) {
        for v in vs.iter().filter(|v| v.source == Source::Crm) {
            data.entry(field.clone()).or_default().push(v.display().to_string());
        }
    }
    (crm_id.is_some() || !data.is_empty()).then_some(CrmView { crm_id, data })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimelineEntry {
    pub number: i64,
    pub id: String,
    pub channel_id: String,
    #[schema(value_type = String)]
    pub status: &'static str,
    pub opened_at: String,
    pub closed_at: Option<String>,
    pub group: Option<String>,
    pub operator_id: Option<String>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub message_count: i64,
    pub last_message_at: String,
}

pub fn timeline_entry(a: &Appeal) -> TimelineEntry {
    TimelineEntry {
        number: a.number,
        id: a.id.clone(),
        channel_id: a.channel_id.clone(),
        status: if a.is_open() { "open" } else { "closed" },
        opened_at: format_ts(a.opened_at),
        closed_at: a.doc.closed_at.map(format_ts),
        group: a.doc.group.clone(),
        operator_id: a.doc.operator_id.clone(),
        category: a.doc.category.clone(),
        tags: a.doc.tags.clone(),
        message_count: a.doc.message_count,
        last_message_at: format_ts(a.last_message_at),
    }
}

/// A value that made a merge happen.
#[derive(Debug, Serialize, ToSchema)]
pub struct MatchedView {
    pub field: String,
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MergeView {
    /// What `split_client` names to undo this merge.
    pub merge_id: String,
    pub at: String,
    pub survivor_id: String,
    pub absorbed_ids: Vec<String>,
    pub by: String,
    pub rule_id: Option<String>,
    pub operator: Option<String>,
    pub matched: Vec<MatchedView>,
    /// Set once an operator undid the merge.
    pub split: Option<SplitView>,
    /// Whether `split_client` can undo it: a merge recorded before the ledger kept what
    /// each card brought cannot be.
    pub splittable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SplitView {
    pub at: String,
    pub operator: String,
}

pub fn merge(m: MergeEntry) -> MergeView {
    MergeView {
        merge_id: m.merge_id,
        splittable: m.split.is_none() && m.survivor_before.is_some() && !m.brought.is_empty(),
        split: m.split.map(|s| SplitView { at: format_ts(s.at), operator: s.operator }),
        at: format_ts(m.at),
        survivor_id: m.survivor_id,
        absorbed_ids: m.absorbed_ids,
        by: m.by,
        rule_id: m.rule_id,
        operator: m.operator,
        matched: m.matched.into_iter().map(|v| MatchedView { field: v.field, value: v.value }).collect(),
    }
}

/// The client object of search results and appeals.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientSummaryView {
    pub id: String,
    pub name: Option<String>,
    /// `channel`, `internal` or `crm`.
    #[serde(rename = "type")]
    pub kind: String,
    pub appeal_count: i64,
    /// The card's revision (SPEC identity rule 10).
    pub revision: u64,
}

impl ClientSummaryView {
    pub fn of(c: &Client) -> Self {
        ClientSummaryView::with_revision(c.summary(), c.doc.revision)
    }

    pub fn with_revision(c: ClientSummary, revision: u64) -> Self {
        ClientSummaryView {
            id: c.id,
            name: c.name,
            kind: c.kind.as_str().to_string(),
            appeal_count: c.appeal_count,
            revision,
        }
    }
}

/// The appeal object of an event or a command's answer.
#[derive(Serialize, ToSchema)]
pub struct AppealSummaryView {
    pub number: i64,
    pub id: String,
    pub channel_id: String,
    /// `open` or `closed`.
    pub status: String,
    pub group: Option<String>,
    pub operator_id: Option<String>,
    pub category: Option<String>,
}

impl From<AppealSummary> for AppealSummaryView {
    fn from(a: AppealSummary) -> Self {
        let status = match a.status {
            AppealStatus::Open => "open",
            AppealStatus::Closed => "closed",
        };
        AppealSummaryView {
            number: a.number,
            id: a.id,
            channel_id: a.channel_id,
            status: status.into(),
            group: a.group,
            operator_id: a.operator_id,
            category: a.category,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3600 * 1000;

    #[test]
    fn a_whatsapp_conversation_is_open_for_a_day_after_the_client_wrote_then_templates_only() {
        let open = reply_window(Some(ChannelKind::Whatsapp), Some(0), 23 * HOUR);
        assert_eq!(open.open_until.as_deref(), Some("1970-01-02T00:00:00Z"));
        assert!(!open.template_only);
        let closed = reply_window(Some(ChannelKind::Whatsapp), Some(0), 25 * HOUR);
        assert_eq!((closed.open_until, closed.template_only), (None, true));
        let never = reply_window(Some(ChannelKind::Whatsapp), None, 0);
        assert!(never.template_only, "no message yet: templates only");
    }

    #[test]
    fn channels_without_a_window_have_no_limit_and_instagram_has_no_templates() {
        let tg = reply_window(Some(ChannelKind::Telegram), None, 0);
        assert_eq!((tg.open_until, tg.template_only), (None, false));
        let ig = reply_window(Some(ChannelKind::Instagram), Some(0), 25 * HOUR);
        assert_eq!((ig.open_until, ig.template_only), (None, false));
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageItem {
    pub id: String,
    #[schema(value_type = String)]
    pub author_kind: crate::model::AuthorKind,
    /// Who wrote it: the visitor of a client message, the operator's or the bot's id.
    pub author: Option<String>,
    #[schema(value_type = String)]
    pub kind: crate::model::ContentKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attachment: Option<crate::model::Attachment>,
    pub sent_at: String,
    pub group_id: String,
    #[schema(value_type = Option<String>)]
    pub status: Option<crate::model::DeliveryStatus>,
    pub visible_to_client: bool,
}

pub fn message(m: crate::model::Message) -> MessageItem {
    let author = match m.author_kind {
        crate::model::AuthorKind::Client => m.visitor_id.or(m.author_id),
        _ => m.author_id,
    };
    MessageItem {
        id: m.id,
        author_kind: m.author_kind,
        author,
        kind: m.kind,
        text: m.text,
        attachment: m.attachment,
        sent_at: m.sent_at,
        group_id: m.group_id,
        status: m.status,
        visible_to_client: m.visible_to_client,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppealView {
    #[serde(flatten)]
    pub appeal: TimelineEntry,
    pub client: ClientSummaryView,
    pub comments: Vec<CommentView>,
    pub messages: Vec<MessageItem>,
    /// The cursor of the next page of messages (`after`), or null.
    pub next: Option<String>,
}

pub fn appeal(a: &Appeal, client: &Client, messages: Vec<MessageItem>, next: Option<String>) -> AppealView {
    AppealView {
        appeal: timeline_entry(a),
        client: ClientSummaryView::of(client),
        comments: comments(&a.doc.comments),
        messages,
        next,
    }
}
