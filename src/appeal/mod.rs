//! Appeal: open or append the support conversation, group messages, apply delivery statuses,
//! close appeals by command or inactivity (SPEC "Appeals and messages").
//!
//! An appeal is one conversation of one client in one channel, keyed by (channel, visitor), or
//! by (channel, external ID) when the message carries one, so every device of a signed-in
//! person shares it (`model::conversation_key`). A client message with no open appeal of its
//! conversation opens one, numbered next in the project; later messages append, and replies
//! go to the visitor who wrote last. The pure rules (grouping, status order, deadlines) are
//! the small functions at the top; the rest applies them through the working set.

pub mod commands;
pub mod dialogue;

use crate::decode::{InboundMessage, StatusUpdate};
use crate::emit::{derive_id, Cause, CauseKind, Emitter, EventBody};
use crate::model::{
    conversation_key, format_ts, Appeal, AppealDoc, AppealStatus, Author, AuthorKind, Client, ContentKind,
    DeliveryStatus, Message, Millis, StoredMessage,
};
use crate::stage::{ApplyError, Ctx};
use crate::store::{StoreResult, WorkingSet};

/// Messages of one author closer together than this share a group id.
pub const GROUP_WINDOW_MS: Millis = 60_000;

/// The group id of a new message: the previous group's when the same author wrote less than
/// a minute before, else the message's own id.
pub fn group_id(
    doc: &AppealDoc,
    last_at: Millis,
    author: &Author,
    sent_at: Millis,
    message_id: &str,
) -> String {
    match (&doc.last_author, &doc.last_group_id) {
        (Some(last), Some(group))
            if last == author && sent_at >= last_at && sent_at - last_at < GROUP_WINDOW_MS =>
        {
            group.clone()
        }
        _ => message_id.to_string(),
    }
}

/// Delivery statuses only move forward: a late "delivered" never hides a "read".
pub fn status_advances(current: Option<DeliveryStatus>, new: DeliveryStatus) -> bool {
    current.is_none_or(|c| new > c)
}

/// A message to append, before it gets its group id.
pub struct NewMessage {
    pub id: String,
    pub author: Author,
    /// A client message's visitor. Grouping compares visitors, not cards: a merge between
    /// two messages must not start a new group.
    pub visitor_id: Option<String>,
    pub kind: ContentKind,
    pub sent_at: Millis,
    pub text: Option<String>,
    pub attachment: Option<crate::model::Attachment>,
    pub visible_to_client: bool,
}

impl NewMessage {
    /// A note for operators only ("appeal assigned to group X").
    pub fn system(id: String, at: Millis, text: String) -> Self {
        NewMessage {
            id,
            author: Author { kind: AuthorKind::System, id: None },
            visitor_id: None,
            kind: ContentKind::Text,
            sent_at: at,
            text: Some(text),
            attachment: None,
            visible_to_client: false,
        }
    }
}

/// A message stored outside any appeal (an operator's send with no appeal open): its own group.
pub fn unappended(m: NewMessage) -> Message {
    Message {
        group_id: m.id.clone(),
        id: m.id,
        author_kind: m.author.kind,
        author_id: m.author.id,
        visitor_id: m.visitor_id,
        kind: m.kind,
        sent_at: format_ts(m.sent_at),
        visible_to_client: m.visible_to_client,
        text: m.text,
        attachment: m.attachment,
        status: None,
        seq: None,
    }
}

/// Appends a message to an appeal (in memory and in the working set) and emits it.
pub fn append(ws: &mut WorkingSet, appeal: &mut Appeal, client: &Client, m: NewMessage, em: &mut Emitter) {
    let counts_for_grouping = m.author.kind != AuthorKind::System;
    let grouped_as = match &m.visitor_id {
        Some(v) => Author { kind: m.author.kind, id: Some(v.clone()) },
        None => m.author.clone(),
    };
    let group_id = if counts_for_grouping {
        group_id(&appeal.doc, appeal.last_message_at, &grouped_as, m.sent_at, &m.id)
    } else {
        m.id.clone()
    };
    let message = Message {
        id: m.id,
        author_kind: m.author.kind,
        author_id: m.author.id.clone(),
        visitor_id: m.visitor_id,
        kind: m.kind,
        group_id,
        sent_at: format_ts(m.sent_at),
        visible_to_client: m.visible_to_client,
        text: m.text,
        attachment: m.attachment,
        status: None,
        seq: Some(appeal.doc.message_count + 1),
    };
    appeal.doc.message_count += 1;
    if counts_for_grouping {
        appeal.doc.last_author = Some(grouped_as);
        appeal.doc.last_group_id = Some(message.group_id.clone());
        let last = appeal.last_message_at.max(m.sent_at);
        // The inactivity window the appeal opened with moves along with its last message.
        appeal.close_deadline =
            appeal.close_deadline.map(|d| d.saturating_add(last - appeal.last_message_at));
        appeal.last_message_at = last;
    }
    ws.put_appeal(appeal.clone());
    ws.add_message(StoredMessage {
        project_id: appeal.project_id.clone(),
        appeal_id: Some(appeal.id.clone()),
        message: message.clone(),
    });
    em.event(
        m.sent_at,
        EventBody::AppealMessageAdded { message: message.into() },
        Some(client.summary()),
        Some(appeal.summary()),
    );
}

/// The conversation key of a client message.
pub fn message_key(m: &InboundMessage) -> String {
    conversation_key(&m.channel_id, &m.visitor.id, m.visitor.external_id.as_deref())
}

/// Appends a client message to its conversation's open appeal, opening one first if needed.
pub async fn client_message(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    partition: &str,
    m: &InboundMessage,
    client: Client,
    em: &mut Emitter,
) -> StoreResult<(Appeal, bool)> {
    let key = message_key(m);
    let current = match ws.open_appeal(&m.project_id, &key).await? {
        Some(a) => Some(a),
        None => signed_in_mid_conversation(ws, m, &client, &key).await?,
    };
    let (mut appeal, client, opened) = match current {
        Some(a) => (a, client, false),
        None => {
            let (a, c) = open(ws, ctx, partition, m, client, key, em).await?;
            (a, c, true)
        }
    };
    appeal.visitor_id = m.visitor.id.clone();
    let author = Author { kind: AuthorKind::Client, id: Some(client.id.clone()) };
    let new = NewMessage {
        id: m.message_id.clone(),
        author,
        visitor_id: Some(m.visitor.id.clone()),
        kind: m.content.kind,
        sent_at: m.sent_at,
        text: m.content.text.clone(),
        attachment: m.content.attachment.clone(),
        visible_to_client: true,
    };
    append(ws, &mut appeal, &client, new, em);
    if opened {
        if let Some(group) = appeal.doc.group.clone() {
            em.event(
                m.sent_at,
                EventBody::AppealAssigned { group: Some(group.clone()), operator_id: None, by: "routing" },
                Some(client.summary()),
                Some(appeal.summary()),
            );
            let note = NewMessage::system(
                em.next_id("system-message"),
                m.sent_at,
                format!("Appeal assigned to group {group}"),
            );
            append(ws, &mut appeal, &client, note, em);
        }
    }
    Ok((appeal, opened))
}

/// A visitor that signs in while its anonymous conversation in the channel is open: when that
/// conversation belongs to the card the message was identified as (the anonymous card joined
/// the account), it becomes the signed-in conversation, so logging in does not split a chat.
/// On a shared device the open conversation is the previous account's and stays apart.
async fn signed_in_mid_conversation(
    ws: &mut WorkingSet,
    m: &InboundMessage,
    client: &Client,
    key: &str,
) -> StoreResult<Option<Appeal>> {
    if m.visitor.external_id.is_none() {
        return Ok(None);
    }
    let anonymous = conversation_key(&m.channel_id, &m.visitor.id, None);
    let Some(mut appeal) = ws.open_appeal(&m.project_id, &anonymous).await? else { return Ok(None) };
    let owner = ws.live_client(&appeal.client_id).await?;
    if owner.is_none_or(|o| o.id != client.id) {
        return Ok(None);
    }
    appeal.key = key.to_string();
    ws.put_appeal(appeal.clone());
    Ok(Some(appeal))
}

async fn open(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    partition: &str,
    m: &InboundMessage,
    mut client: Client,
    key: String,
    em: &mut Emitter,
) -> StoreResult<(Appeal, Client)> {
    let number = ws.next_appeal_number(&m.project_id).await?;
    let appeal = Appeal {
        id: derive_id(&[&m.project_id, "appeal", &m.message_id]),
        project_id: m.project_id.clone(),
        number,
        client_id: client.id.clone(),
        channel_id: m.channel_id.clone(),
        visitor_id: m.visitor.id.clone(),
        key,
        status: AppealStatus::Open,
        opened_at: m.sent_at,
        last_message_at: m.sent_at,
        partition: partition.to_string(),
        close_deadline: Some(m.sent_at.saturating_add(ctx.project.auto_close_after.as_millis() as Millis)),
        doc: AppealDoc { group: ctx.channel(&m.channel_id).group.clone(), ..AppealDoc::default() },
    };
    client.appeal_count += 1;
    ws.put_client(client.clone());
    ws.put_appeal(appeal.clone());
    em.event(m.sent_at, EventBody::AppealOpened {}, Some(client.summary()), Some(appeal.summary()));
    Ok((appeal, client))
}

/// Closes an appeal, with a note for operators saying who or what closed it.
pub fn close(
    ws: &mut WorkingSet,
    appeal: &mut Appeal,
    client: &Client,
    at: Millis,
    reason: &'static str,
    note: String,
    em: &mut Emitter,
) {
    appeal.status = AppealStatus::Closed;
    appeal.close_deadline = None;
    appeal.doc.closed_at = Some(at);
    ws.put_appeal(appeal.clone());
    em.event(at, EventBody::AppealClosed { reason }, Some(client.summary()), Some(appeal.summary()));
    let note = NewMessage::system(em.next_id("system-message"), at, note);
    append(ws, appeal, client, note, em);
}

/// Closes the partition's appeals whose close deadline is before `clock` (those of projects
/// the configuration still has). Each closure is its own cause (a timer with a deterministic
/// id), so replays agree.
pub async fn close_idle(
    ws: &mut WorkingSet,
    configured: impl Fn(&str) -> bool,
    partition: &str,
    clock: Millis,
) -> StoreResult<Vec<Emitter>> {
    let mut out = Vec::new();
    for mut appeal in ws.due_idle(partition, clock) {
        let Some(at) = appeal.close_deadline.filter(|_| configured(&appeal.project_id)) else {
            continue;
        };
        let after = at - appeal.last_message_at;
        let cause = Cause {
            kind: CauseKind::Timer,
            id: format!("inactivity:{}:{}", appeal.id, appeal.last_message_at),
        };
        let mut em = Emitter::new(&appeal.project_id, cause);
        let client = ws.live_client(&appeal.client_id).await?.expect("an appeal's client exists");
        let note = format!("Appeal closed after {} of inactivity", short_duration(after));
        close(ws, &mut appeal, &client, at, "inactivity", note, &mut em);
        out.push(em);
    }
    Ok(out)
}

/// `86400000` → `24h`, `5400000` → `90m`: how an operator would write it.
pub fn short_duration(ms: Millis) -> String {
    let secs = ms / 1000;
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Applies a delivery status to a stored message.
pub async fn status(ws: &mut WorkingSet, s: &StatusUpdate, em: &mut Emitter) -> Result<(), ApplyError> {
    let Some(mut stored) = ws.message(&s.project_id, &s.message_id).await? else {
        return Err(ApplyError::poison("appeal", format!("status for unknown message {:?}", s.message_id)));
    };
    if !status_advances(stored.message.status, s.status) {
        return Ok(());
    }
    stored.message.status = Some(s.status);
    let appeal = match &stored.appeal_id {
        Some(id) => ws.appeal_by_id(id).await?,
        None => None,
    };
    ws.put_message(stored);
    let client = match &appeal {
        Some(a) => ws.live_client(&a.client_id).await?,
        None => None,
    };
    let body = EventBody::AppealMessageStatus { message_id: s.message_id.clone(), status: s.status };
    em.event(s.at, body, client.map(|c| c.summary()), appeal.map(|a| a.summary()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_author() -> Author {
        Author { kind: AuthorKind::Client, id: Some("c1".into()) }
    }

    #[test]
    fn messages_of_one_author_within_a_minute_share_a_group() {
        let doc = AppealDoc {
            last_author: Some(client_author()),
            last_group_id: Some("m1".into()),
            ..Default::default()
        };
        assert_eq!(group_id(&doc, 1_000, &client_author(), 60_999, "m2"), "m1");
        assert_eq!(group_id(&doc, 1_000, &client_author(), 61_000, "m2"), "m2");
    }

    #[test]
    fn another_author_starts_a_new_group() {
        let doc = AppealDoc {
            last_author: Some(client_author()),
            last_group_id: Some("m1".into()),
            ..Default::default()
        };
        let operator = Author { kind: AuthorKind::Operator, id: Some("op-7".into()) };
        assert_eq!(group_id(&doc, 1_000, &operator, 2_000, "m2"), "m2");
    }

    #[test]
    fn a_message_older_than_the_last_one_starts_its_own_group() {
        let doc = AppealDoc {
            last_author: Some(client_author()),
            last_group_id: Some("m1".into()),
            ..Default::default()
        };
        assert_eq!(group_id(&doc, 10_000, &client_author(), 5_000, "m0"), "m0");
    }

    #[test]
    fn durations_are_written_in_the_largest_whole_unit() {
        assert_eq!(short_duration(86_400_000), "24h");
        assert_eq!(short_duration(5_400_000), "90m");
        assert_eq!(short_duration(45_000), "45s");
    }

    #[test]
    fn statuses_never_move_backwards() {
        assert!(status_advances(None, DeliveryStatus::Delivered));
        assert!(status_advances(Some(DeliveryStatus::Delivered), DeliveryStatus::Read));
        assert!(!status_advances(Some(DeliveryStatus::Read), DeliveryStatus::Delivered));
        assert!(!status_advances(Some(DeliveryStatus::Read), DeliveryStatus::Read));
    }
}
