//! Operator and API commands. A command that cannot apply (unknown appeal, a fourth contact of
//! a type, ...) becomes `command.rejected` with the reason: an operator's mistake is not an
//! error of the stream.

use crate::config::ChannelKind;
use crate::decode::{ClientRef, Command, CommandAction, ContactSpec, KeepName, Scope};
use crate::emit::{Emitter, EventBody, IdentifyMethod, Outbound};
use crate::identify::crm::{self as crm_ident, Identification, Search};
use crate::identify::{self, external_handle, normalize, visitor_handle};
use crate::matching::{self, MergeBy};
use crate::model::{
    conversation_key, is_identifier, Appeal, Author, AuthorKind, CardValue, Client, ClientType, Comment,
    ContentKind, Millis, NameClaim, NameRank, Source, StoredMessage, Visitor, MAX_MANUAL_CONTACTS,
};
use crate::stage::{ApplyError, Ctx};
use crate::store::{StoreError, WorkingSet};

use super::{append, close, NewMessage};

/// Meta's reply window: free-form business messages only this long after the client wrote.
pub const REPLY_WINDOW_MS: Millis = 24 * 3600 * 1000;

enum Refusal {
    Rejected(String),
    /// The card moved on since the operator saw it (SPEC identity rule 10).
    Stale {
        revision: u64,
        expected: u64,
    },
    Failed(ApplyError),
}

/// The reason of a stale command starts with this code (the write API answers it `409`).
pub const STALE_REVISION: &str = "stale_revision";

impl From<ApplyError> for Refusal {
    fn from(e: ApplyError) -> Self {
        Refusal::Failed(e)
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::Failed(e.into())
    }
}

fn reject<T>(reason: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Rejected(reason.into()))
}

type Outcome = Result<(), Refusal>;

/// Applies a command; refusals become `command.rejected`.
pub async fn apply(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    em: &mut Emitter,
) -> Result<(), ApplyError> {
    let outcome = match check_revisions(ws, ctx, cmd).await {
        Ok(()) => dispatch(ws, ctx, cmd, em).await,
        refused => refused,
    };
    let (reason, revision) = match outcome {
        Ok(()) => return Ok(()),
        Err(Refusal::Failed(e)) => return Err(e),
        Err(Refusal::Rejected(reason)) => (reason, None),
        Err(Refusal::Stale { revision, expected }) => {
            let reason = format!(
                "{STALE_REVISION}: the card is at revision {revision}, the command expected {expected}"
            );
            (reason, Some(revision))
        }
    };
    let (client, appeal) = subject(ws, ctx, cmd).await?;
    let (client, appeal) = (client.map(|c| c.summary()), appeal.map(|a| a.summary()));
    let body =
        EventBody::CommandRejected { command_type: cmd.action.type_name().to_string(), reason, revision };
    em.event(cmd.issued_at, body, client, appeal);
    Ok(())
}

/// A command applies only to the revisions of the cards it was made against, where it
/// names them: `expected_revision` of the card it is about, or a merge's two revisions.
async fn check_revisions(ws: &mut WorkingSet, ctx: &Ctx<'_>, cmd: &Command) -> Outcome {
    let stale = |card: &Client, expected: u64| match card.doc.revision {
        revision if revision == expected => Ok(()),
        revision => Err(Refusal::Stale { revision, expected }),
    };
    if let CommandAction::MergeClients { target, source, target_revision, source_revision, .. } = &cmd.action
    {
        for (r, expected) in [(target, target_revision), (source, source_revision)] {
            if let Some(expected) = expected {
                stale(&resolve(ws, ctx, r).await?, *expected)?;
            }
        }
        return Ok(());
    }
    let Some(expected) = cmd.expected_revision else { return Ok(()) };
    match subject(ws, ctx, cmd).await? {
        (Some(card), _) => stale(&card, expected),
        // The command itself says what is missing.
        (None, _) => Ok(()),
    }
}

/// The card and appeal a command named, where they exist: a `command.rejected` carries them so
/// an operator app can show the refusal where it belongs (SPEC identity rule 8).
async fn subject(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
) -> Result<(Option<Client>, Option<Appeal>), ApplyError> {
    use CommandAction as A;
    let number = match &cmd.action {
        A::CloseAppeal { appeal_number }
        | A::AssignAppeal { appeal_number, .. }
        | A::SetCategory { appeal_number, .. }
        | A::TagAppeal { appeal_number, .. }
        | A::CommentAppeal { appeal_number, .. }
        | A::IdentifyClient { appeal_number, .. }
        | A::StartScenario { appeal_number, .. } => Some(*appeal_number),
        _ => None,
    };
    let client_ref = match &cmd.action {
        A::SetClientField { client, .. }
        | A::AddContact { client, .. }
        | A::RemoveContact { client, .. }
        | A::RenameClient { client, .. }
        | A::SendOutbound { client, .. }
        | A::CommentClient { client, .. }
        | A::TagClient { client, .. }
        | A::EditContact { client, .. }
        | A::SplitClient { client, .. }
        | A::AllowMerge { client, .. }
        | A::MergeClients { target: client, .. } => Some(client),
        _ => None,
    };
    let appeal = match number {
        Some(n) => ws.appeal_by_number(&cmd.project_id, n).await?,
        None => None,
    };
    let client = match (&appeal, client_ref) {
        (Some(a), _) => ws.live_client(&a.client_id).await?,
        (None, Some(r)) => match resolve(ws, ctx, r).await {
            Ok(c) => Some(c),
            Err(Refusal::Failed(e)) => return Err(e),
            Err(_) => None,
        },
        (None, None) => None,
    };
    Ok((client, appeal))
}

async fn dispatch(ws: &mut WorkingSet, ctx: &Ctx<'_>, cmd: &Command, em: &mut Emitter) -> Outcome {
    use CommandAction as A;
    match &cmd.action {
        A::CloseAppeal { appeal_number } => close_appeal(ws, cmd, *appeal_number, em).await,
        A::AssignAppeal { appeal_number, group, operator_id } => {
            assign(ws, cmd, *appeal_number, group, operator_id, em).await
        }
        A::SetCategory { appeal_number, category } => {
            set_category(ws, cmd, *appeal_number, category, em).await
        }
        A::TagAppeal { appeal_number, tag, scope } => {
            tag_appeal(ws, cmd, *appeal_number, tag, *scope, em).await
        }
        A::CommentAppeal { appeal_number, text, scope } => {
            comment_appeal(ws, cmd, *appeal_number, text, *scope, em).await
        }
        A::TagClient { client, tag } => {
            let card = resolve(ws, ctx, client).await?;
            tag_client(ws, cmd, card, tag, None, em)
        }
        A::CommentClient { client, text } => {
            let card = resolve(ws, ctx, client).await?;
            comment_client(ws, cmd, card, text, None, em);
            Ok(())
        }
        A::EditContact { client, contact_type, old_value, value } => {
            edit_contact(ws, ctx, cmd, client, contact_type, (old_value, value), em).await
        }
        A::IdentifyClient { appeal_number, identifier, value } => {
            identify_client(ws, ctx, cmd, *appeal_number, identifier, value, em).await
        }
        A::SetClientField { client, field, value } => {
            set_client_field(ws, ctx, cmd, client, (field, value), em).await
        }
        A::AddContact { client, contact_type, value } => {
            add_contact(ws, ctx, cmd, client, contact_type, value, em).await
        }
        A::RemoveContact { client, contact_type, value } => {
            remove_contact(ws, ctx, cmd, client, (contact_type, value), em).await
        }
        A::RenameClient { client, name } => rename_client(ws, ctx, cmd, client, name, em).await,
        A::CreateClient { name, contacts } => create_client(ws, ctx, cmd, name, contacts, em).await,
        A::MergeClients { target, source, keep_name_from, .. } => {
            merge(ws, ctx, cmd, target, source, *keep_name_from, em).await
        }
        A::SendOutbound { client, channel_id, text, template } => {
            let message = OutboundMessage { text: text.as_deref(), template: template.as_ref() };
            send_outbound(ws, ctx, cmd, client, channel_id, message, em).await
        }
        A::StartScenario { appeal_number, scenario_id } => {
            start_scenario(ws, ctx, cmd, *appeal_number, scenario_id, em).await
        }
        A::SplitClient { client, merge_id } => split_client(ws, ctx, cmd, client, merge_id, em).await,
        A::AllowMerge { client, other } => allow_merge(ws, ctx, cmd, (client, other), em).await,
    }
}

/// `split_client`: undoes one merge of the card's ledger (SPEC "Undoing a merge").
async fn split_client(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    merge_id: &str,
    em: &mut Emitter,
) -> Outcome {
    let card = resolve(ws, ctx, client).await?;
    let operator = cmd.operator.as_ref().map_or_else(|| "api".to_string(), |o| o.id.clone());
    match matching::split::split(ws, &card, merge_id, (&operator, cmd.issued_at), em).await {
        Ok(_) => Ok(()),
        Err(matching::split::SplitError::Rejected(reason)) => reject(reason),
        Err(matching::split::SplitError::Store(e)) => Err(e.into()),
    }
}

/// `allow_merge`: lifts the block a split left between two cards; the rules may then join
/// them as they would any two cards.
async fn allow_merge(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    (client, other): (&ClientRef, &ClientRef),
    em: &mut Emitter,
) -> Outcome {
    let mut card = resolve(ws, ctx, client).await?;
    let mut other = resolve(ws, ctx, other).await?;
    if card.id == other.id {
        return reject("client and other are one card: a card is never kept apart from itself");
    }
    let mut lifted = lift(ws, &mut card, &other.id).await?;
    lifted |= lift(ws, &mut other, &card.id).await?;
    if !lifted {
        return reject(format!("no split keeps cards {} and {} apart", card.id, other.id));
    }
    for c in [&other, &card] {
        ws.put_client(c.clone());
        let body = EventBody::ClientUpdated { changes: vec!["blocked_merges".into()], rejected: vec![] };
        em.event(cmd.issued_at, body, Some(c.summary()), None);
    }
    matching::run(ws, ctx, &card.id, cmd.issued_at, em).await?;
    Ok(())
}

/// Drops the ids of `card`'s blocked merges that live on in card `other`; whether any did.
async fn lift(ws: &mut WorkingSet, card: &mut Client, other: &str) -> Result<bool, Refusal> {
    let mut lifted = false;
    for id in card.doc.blocked_merges.clone() {
        if ws.live_client(&id).await?.is_some_and(|c| c.id == other) {
            card.doc.blocked_merges.remove(&id);
            lifted = true;
        }
    }
    Ok(lifted)
}

async fn set_category(
    ws: &mut WorkingSet,
    cmd: &Command,
    number: i64,
    category: &str,
    em: &mut Emitter,
) -> Outcome {
    let (mut appeal, client) = appeal(ws, cmd, number).await?;
    appeal.doc.category = Some(category.to_string());
    ws.put_appeal(appeal.clone());
    let body = EventBody::AppealCategorized { category: category.to_string() };
    em.event(cmd.issued_at, body, Some(client.summary()), Some(appeal.summary()));
    Ok(())
}

/// A tag on the appeal (the session), or on the client's dialogue through it.
async fn tag_appeal(
    ws: &mut WorkingSet,
    cmd: &Command,
    number: i64,
    tag: &str,
    scope: Scope,
    em: &mut Emitter,
) -> Outcome {
    let (mut appeal, client) = appeal(ws, cmd, number).await?;
    if scope == Scope::Dialogue {
        return tag_client(ws, cmd, client, tag, Some(&appeal), em);
    }
    if appeal.doc.tags.iter().any(|t| t == tag) {
        return reject(format!("appeal {number} already has tag {tag:?}"));
    }
    appeal.doc.tags.push(tag.to_string());
    ws.put_appeal(appeal.clone());
    let body = EventBody::AppealTagged { tag: tag.to_string() };
    em.event(cmd.issued_at, body, Some(client.summary()), Some(appeal.summary()));
    Ok(())
}

/// A comment on the appeal (the session), or on the client's dialogue through it.
async fn comment_appeal(
    ws: &mut WorkingSet,
    cmd: &Command,
    number: i64,
    text: &str,
    scope: Scope,
    em: &mut Emitter,
) -> Outcome {
    let (mut appeal, client) = appeal(ws, cmd, number).await?;
    if scope == Scope::Dialogue {
        comment_client(ws, cmd, client, text, Some(&appeal), em);
        return Ok(());
    }
    let operator_id = cmd.operator.as_ref().map(|o| o.id.clone());
    let comment = Comment { text: text.to_string(), operator_id: operator_id.clone(), at: cmd.issued_at };
    appeal.doc.comments.push(comment);
    ws.put_appeal(appeal.clone());
    let body = EventBody::AppealCommented { text: text.to_string(), operator_id };
    em.event(cmd.issued_at, body, Some(client.summary()), Some(appeal.summary()));
    Ok(())
}

/// `set_client_field`: on `phone`/`email`/`crm_id` a hand-added contact (rule 6); on a custom
/// field, the operator's value replaces the operator's previous one (rule 3).
async fn set_client_field(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    (field, value): (&str, &str),
    em: &mut Emitter,
) -> Outcome {
    if is_identifier(field) {
        return add_contact(ws, ctx, cmd, client, field, value, em).await;
    }
    let mut card = resolve(ws, ctx, client).await?;
    let normal = normalized(ctx, field, value)?;
    let shown = mask_value(field, &normal);
    let at = cmd.issued_at;
    if !card.doc.set_manual_field(field, CardValue::new(normal, value.trim(), Source::Manual, at)) {
        return reject(format!("client already has {field} = {shown:?}"));
    }
    updated(ws, ctx, card, field, at, em).await
}

async fn remove_contact(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    (kind, value): (&str, &str),
    em: &mut Emitter,
) -> Outcome {
    let mut card = resolve(ws, ctx, client).await?;
    let value = normalized(ctx, kind, value)?;
    if !card.doc.remove_contact(kind, &value) {
        return reject(format!("client has no {kind} contact {:?}", normalize::mask(&value)));
    }
    ws.put_client(card.clone());
    let body = EventBody::ClientUpdated { changes: vec![kind.to_string()], rejected: vec![] };
    em.event(cmd.issued_at, body, Some(card.summary()), None);
    Ok(())
}

async fn rename_client(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    name: &str,
    em: &mut Emitter,
) -> Outcome {
    let mut card = resolve(ws, ctx, client).await?;
    card.doc.claim_name(operator_named(name, cmd.issued_at));
    ws.put_client(card.clone());
    let body = EventBody::ClientUpdated { changes: vec!["name".into()], rejected: vec![] };
    em.event(cmd.issued_at, body, Some(card.summary()), None);
    Ok(())
}

async fn start_scenario(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    number: i64,
    scenario_id: &str,
    em: &mut Emitter,
) -> Outcome {
    let (mut appeal, client) = appeal(ws, cmd, number).await?;
    let Some(scenario) = ctx.scenarios.get(&ctx.project.id, scenario_id) else {
        return reject(format!("scenario {scenario_id:?} is not defined in project {:?}", ctx.project.id));
    };
    if !appeal.is_open() {
        return reject(format!("appeal {number} is closed"));
    }
    super::dialogue::start(ws, ctx, &mut appeal, client, scenario, cmd.issued_at, em).await?;
    Ok(())
}

/// The appeal a command names and its client.
async fn appeal(ws: &mut WorkingSet, cmd: &Command, number: i64) -> Result<(Appeal, Client), Refusal> {
    let Some(appeal) = ws.appeal_by_number(&cmd.project_id, number).await? else {
        return reject(format!("appeal {number} does not exist"));
    };
    let client = ws.live_client(&appeal.client_id).await?.expect("an appeal's client exists");
    Ok((appeal, client))
}

async fn open_appeal(ws: &mut WorkingSet, cmd: &Command, number: i64) -> Result<(Appeal, Client), Refusal> {
    let (appeal, client) = appeal(ws, cmd, number).await?;
    if !appeal.is_open() {
        return reject(format!("appeal {number} is closed"));
    }
    Ok((appeal, client))
}

/// The live card a client ref names.
async fn resolve(ws: &mut WorkingSet, ctx: &Ctx<'_>, r: &ClientRef) -> Result<Client, Refusal> {
    let project = &ctx.project.id;
    let found = match r {
        ClientRef::Id(id) => ws.live_client(id).await?.filter(|c| c.project_id == *project),
        ClientRef::Visitor { channel_id, visitor_id } => {
            ws.client_by_handle(project, &visitor_handle(channel_id, visitor_id)).await?
        }
        ClientRef::External(x) => ws.client_by_handle(project, &external_handle(x)).await?,
        ClientRef::Appeal(n) => match ws.appeal_by_number(project, *n).await? {
            Some(a) => ws.live_client(&a.client_id).await?,
            None => None,
        },
    };
    match found {
        Some(c) => Ok(c),
        None => reject(format!("no client matches {}", describe(r))),
    }
}

fn describe(r: &ClientRef) -> String {
    match r {
        ClientRef::Id(id) => format!("client_id {id:?}"),
        ClientRef::Visitor { channel_id, visitor_id } => {
            format!("visitor {visitor_id:?} of channel {channel_id:?}")
        }
        ClientRef::External(x) => format!("external_id {x:?}"),
        ClientRef::Appeal(n) => format!("appeal {n}"),
    }
}

fn normalized(ctx: &Ctx<'_>, kind: &str, raw: &str) -> Result<String, Refusal> {
    normalize::value(kind, raw, &ctx.project.default_region)
        .or_else(|e| reject(format!("invalid {kind}: {e}")))
}

/// A value as a rejection reason may show it: phones and e-mails masked (reasons reach logs).
fn mask_value(kind: &str, value: &str) -> String {
    match kind {
        "phone" | "email" => normalize::mask(value),
        _ => value.to_string(),
    }
}

/// The name an operator gave (rename, create): the highest-ranked claim (SPEC rule 2).
fn operator_named(name: &str, at: Millis) -> NameClaim {
    NameClaim { name: name.trim().to_string(), rank: NameRank::Operator, source: "operator".into(), at }
}

fn operator_name(cmd: &Command) -> String {
    match &cmd.operator {
        Some(op) => op.name.clone().unwrap_or_else(|| op.id.clone()),
        None => "API".into(),
    }
}

/// Stores a card that gained a value of `field`, emits `client.updated` and runs matching.
async fn updated(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    mut card: Client,
    field: &str,
    at: Millis,
    em: &mut Emitter,
) -> Outcome {
    let mut changes = vec![field.to_string()];
    if card.settle_type() {
        changes.push("type".into());
    }
    ws.put_client(card.clone());
    let body = EventBody::ClientUpdated { changes, rejected: vec![] };
    em.event(at, body, Some(card.summary()), None);
    matching::run(ws, ctx, &card.id, at, em).await?;
    Ok(())
}

async fn close_appeal(ws: &mut WorkingSet, cmd: &Command, number: i64, em: &mut Emitter) -> Outcome {
    let (mut appeal, client) = appeal(ws, cmd, number).await?;
    if !appeal.is_open() {
        return reject(format!("appeal {number} is already closed"));
    }
    let note = format!("Operator {} closed the appeal", operator_name(cmd));
    close(ws, &mut appeal, &client, cmd.issued_at, "operator", note, em);
    Ok(())
}

async fn assign(
    ws: &mut WorkingSet,
    cmd: &Command,
    number: i64,
    group: &Option<String>,
    operator_id: &Option<String>,
    em: &mut Emitter,
) -> Outcome {
    let (mut appeal, client) = open_appeal(ws, cmd, number).await?;
    let mut notes = Vec::new();
    if let Some(g) = group {
        appeal.doc.group = Some(g.clone());
        notes.push(format!("Appeal assigned to group {g}"));
    }
    if let Some(op) = operator_id {
        appeal.doc.operator_id = Some(op.clone());
        notes.push(format!("Appeal assigned to operator {op}"));
    }
    let body =
        EventBody::AppealAssigned { group: group.clone(), operator_id: operator_id.clone(), by: "operator" };
    em.event(cmd.issued_at, body, Some(client.summary()), Some(appeal.summary()));
    if operator_id.is_some() {
        super::dialogue::stop_for_operator(&mut appeal, &client, cmd.issued_at, em);
    }
    ws.put_appeal(appeal.clone());
    for note in notes {
        let note = NewMessage::system(em.next_id("system-message"), cmd.issued_at, note);
        append(ws, &mut appeal, &client, note, em);
    }
    Ok(())
}

/// Manual identification (SPEC identity rule 8): the operator's word stands. With a CRM the
/// value is searched there and a found client's data joins the card; whatever the CRM says,
/// the identifier is saved on the card and `client.identified` (`manual`) says what the CRM
/// answered.
async fn identify_client(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    number: i64,
    identifier: &str,
    raw: &str,
    em: &mut Emitter,
) -> Outcome {
    let (appeal, mut card) = appeal(ws, cmd, number).await?;
    let value = normalized(ctx, identifier, raw)?;
    let at = cmd.issued_at;
    let saved = CardValue::new(value, raw.trim(), Source::Manual, at);
    let mut crm = None;
    if let (Some((kind, _)), Some(_)) = (cmd.identify_value(), &ctx.project.crm) {
        let wanted = Search { kind, value: saved.clone(), method: IdentifyMethod::Manual };
        let outcome = crm_ident::search(ws, ctx, card, &appeal, wanted, at, em).await?;
        if let Identification::Found(_) = outcome {
            return Ok(());
        }
        crm = Some(outcome.crm_answer());
        card = outcome.client();
    }
    let changed = card.add_contact(identifier, saved);
    ws.put_client(card.clone());
    let body = EventBody::ClientIdentified {
        method: IdentifyMethod::Manual,
        identifier: Some(identifier.to_string()),
        crm,
    };
    em.event(at, body, Some(card.summary()), Some(appeal.summary()));
    if changed {
        updated(ws, ctx, card, identifier, at, em).await?;
    }
    Ok(())
}

/// A tag on the client's dialogue (seed 003); `appeal` is the one the command came through.
fn tag_client(
    ws: &mut WorkingSet,
    cmd: &Command,
    mut card: Client,
    tag: &str,
    appeal: Option<&Appeal>,
    em: &mut Emitter,
) -> Outcome {
    if card.doc.tags.iter().any(|t| t == tag) {
        return reject(format!("client already has tag {tag:?}"));
    }
    card.doc.tags.push(tag.to_string());
    ws.put_client(card.clone());
    let body = EventBody::ClientTagged { tag: tag.to_string() };
    em.event(cmd.issued_at, body, Some(card.summary()), appeal.map(Appeal::summary));
    Ok(())
}

/// A comment on the client's dialogue: shown with every appeal of the card (seed 003).
fn comment_client(
    ws: &mut WorkingSet,
    cmd: &Command,
    mut card: Client,
    text: &str,
    appeal: Option<&Appeal>,
    em: &mut Emitter,
) {
    let operator_id = cmd.operator.as_ref().map(|o| o.id.clone());
    let comment = Comment { text: text.to_string(), operator_id: operator_id.clone(), at: cmd.issued_at };
    card.doc.comments.push(comment);
    ws.put_client(card.clone());
    let body = EventBody::ClientCommented { text: text.to_string(), operator_id };
    em.event(cmd.issued_at, body, Some(card.summary()), appeal.map(Appeal::summary));
}

/// `edit_contact`: one hand-added contact replaced by another value of its type (seed 001's
/// "Edit" next to each contact). Gateway, bot and CRM values are the channels' data, not the
/// operator's to edit: they come back with the next message.
async fn edit_contact(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    kind: &str,
    (old_raw, raw): (&str, &str),
    em: &mut Emitter,
) -> Outcome {
    let mut card = resolve(ws, ctx, client).await?;
    let old = normalized(ctx, kind, old_raw)?;
    let value = normalized(ctx, kind, raw)?;
    let values = card.doc.contacts.get(kind).map(Vec::as_slice).unwrap_or_default();
    let Some(at) = values.iter().position(|v| v.value == old && v.source == Source::Manual) else {
        return reject(format!("client has no hand-added {kind} contact {}", mask_value(kind, &old)));
    };
    if value != old && values.iter().any(|v| v.value == value) {
        return reject(format!("client already has {kind} contact {}", mask_value(kind, &value)));
    }
    let edited = CardValue::new(value, raw.trim(), Source::Manual, cmd.issued_at);
    if values[at].display() == edited.display() {
        return reject(format!("{kind} contact {} is already so", mask_value(kind, &old)));
    }
    card.doc.contacts.get_mut(kind).expect("found above")[at] = edited;
    updated(ws, ctx, card, kind, cmd.issued_at, em).await
}

/// `add_contact`, and `set_client_field` on `phone`/`email`/`crm_id`: a hand-added contact,
/// at most three of a type (SPEC identity rule 6).
async fn add_contact(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    kind: &str,
    raw: &str,
    em: &mut Emitter,
) -> Outcome {
    let mut card = resolve(ws, ctx, client).await?;
    let value = normalized(ctx, kind, raw)?;
    if card.doc.manual_count(kind) >= MAX_MANUAL_CONTACTS {
        return reject(format!("client already has {MAX_MANUAL_CONTACTS} {kind} contacts added by hand"));
    }
    let shown = mask_value(kind, &value);
    if !card.add_contact(kind, CardValue::new(value, raw.trim(), Source::Manual, cmd.issued_at)) {
        return reject(format!("client already has {kind} contact {shown}"));
    }
    updated(ws, ctx, card, kind, cmd.issued_at, em).await
}

async fn create_client(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    name: &str,
    contacts: &[ContactSpec],
    em: &mut Emitter,
) -> Outcome {
    let at = cmd.issued_at;
    let mut card =
        identify::new_client(ctx, ClientType::Internal, identify::Origin::Command(&cmd.command_id), at);

    card.doc.claim_name(operator_named(name, at));
    for c in contacts {
        let kind = &c.contact_type;
        let value = normalized(ctx, kind, &c.value)?;
        let known = card.values(kind).contains(value.as_str());
        if !known && card.doc.manual_count(kind) >= MAX_MANUAL_CONTACTS {
            return reject(format!("at most {MAX_MANUAL_CONTACTS} {kind} contacts per card"));
        }
        card.add_contact(kind, CardValue::new(value, c.value.trim(), Source::Manual, at));
    }
    // Not anonymous: an operator knows a way to reach them (seed 002's types), and a CRM id
    // makes them a CRM client.
    if !contacts.is_empty() {
        card.kind = ClientType::Channel;
    }
    card.settle_type();
    ws.put_client(card.clone());

    em.event(cmd.issued_at, EventBody::ClientCreated {}, Some(card.summary()), None);
    matching::run(ws, ctx, &card.id, cmd.issued_at, em).await?;
    Ok(())
}

async fn merge(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    target: &ClientRef,
    source: &ClientRef,
    keep: KeepName,
    em: &mut Emitter,
) -> Outcome {
    let target = resolve(ws, ctx, target).await?;
    let source = resolve(ws, ctx, source).await?;
    if target.id == source.id {
        return reject("target and source are already one card");
    }
    let size = target.doc.group_size + source.doc.group_size;
    if size > ctx.project.max_merge_group {
        return reject(format!(
            "max_merge_group: the merge would join {size} cards, the limit is {}",
            ctx.project.max_merge_group
        ));
    }
    let keep_name_of = match keep {
        KeepName::Target => target.id.clone(),
        KeepName::Source => source.id.clone(),
    };
    let operator = cmd.operator.as_ref().map_or_else(|| "api".to_string(), |o| o.id.clone());
    let by = MergeBy::Operator { operator, keep_name_of };
    let merged = matching::merge_into(ws, vec![target, source], cmd.issued_at, em, by).await?;
    matching::run(ws, ctx, &merged.id, cmd.issued_at, em).await?;
    Ok(())
}

/// What an operator sends: free text, or an approved template.
#[derive(Clone, Copy)]
struct OutboundMessage<'a> {
    text: Option<&'a str>,
    template: Option<&'a crate::decode::Template>,
}

/// `send_outbound`: to the client's conversation in the channel, or the visitor there who
/// wrote last, or (WhatsApp) the client's phone; the 24 h rule decides text or template. A
/// refused send is an `outbound.refused` event, never dropped silently.
async fn send_outbound(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    client: &ClientRef,
    channel_id: &str,
    message: OutboundMessage<'_>,
    em: &mut Emitter,
) -> Outcome {
    let mut card = resolve(ws, ctx, client).await?;
    if let Some(t) = message.template {
        let approved = &ctx.project.templates;
        if !approved.is_empty() && !approved.iter().any(|a| a.name == t.name) {
            let names: Vec<&str> = approved.iter().map(|a| a.name.as_str()).collect();
            return reject(format!(
                "template {:?} is not one of the project's templates ({})",
                t.name,
                names.join(", ")
            ));
        }
    }
    let at = cmd.issued_at;
    let kind = ctx.channel(channel_id).kind;
    let refused = |em: &mut Emitter, card: &Client, reason: String| {
        let body = EventBody::OutboundRefused { reason, channel_id: channel_id.to_string() };
        em.event(at, body, Some(card.summary()), None);
        Ok(())
    };
    let target = match outbound_target(ws, &card, channel_id).await? {
        Some(target) => Some(target),
        None if kind == ChannelKind::Whatsapp => match whatsapp_by_phone(ws, &card, channel_id).await {
            Ok(target) => target,
            Err(Refusal::Rejected(reason)) => return refused(em, &card, reason),
            Err(failed) => return Err(failed),
        },
        None => None,
    };
    let Some((visitor, appeal)) = target else {
        return refused(em, &card, format!("client has no visitor in channel {channel_id:?}"));
    };
    let last = card.doc.last_inbound.get(&visitor_handle(channel_id, &visitor.visitor_id)).copied();
    if let Some(reason) = window_refusal(kind, last, at, message.template.is_some()) {
        return refused(em, &card, reason);
    }
    if card.doc.visitors.insert(visitor.clone()) {
        // A WhatsApp number written to for the first time: the client's visitor there from
        // now on, so the answer lands on this card.
        ws.put_client(card.clone());
    }
    deliver(ws, ctx, cmd, (&card, &visitor, appeal), message, em);
    Ok(())
}

/// An operator's message that may go out: the outbound record for the gateway, and the
/// message in the open appeal (or, with none, stored alone so its delivery statuses apply).
fn deliver(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    cmd: &Command,
    (card, visitor, appeal): (&Client, &Visitor, Option<Appeal>),
    message: OutboundMessage<'_>,
    em: &mut Emitter,
) {
    let id = em.next_id("outbound");
    let outbound = Outbound {
        outbound_id: id.clone(),
        project_id: ctx.project.id.clone(),
        channel_id: visitor.channel_id.clone(),
        visitor_id: visitor.visitor_id.clone(),
        appeal_number: appeal.as_ref().map(|a| a.number),
        text: message.text.map(str::to_string),
        template: message.template.map(|t| serde_json::json!({"name": t.name, "params": t.params})),
        author_kind: AuthorKind::Operator,
        cause: em.cause().clone(),
    };
    em.outbound(&outbound);
    let author = Author { kind: AuthorKind::Operator, id: cmd.operator.as_ref().map(|o| o.id.clone()) };
    let text = message
        .text
        .map(str::to_string)
        .or_else(|| message.template.map(|t| format!("[template {}]", t.name)));
    let new = NewMessage {
        id,
        author,
        visitor_id: None,
        kind: ContentKind::Text,
        sent_at: cmd.issued_at,
        text,
        attachment: None,
        visible_to_client: true,
    };
    match appeal {
        Some(mut appeal) => {
            super::dialogue::stop_for_operator(&mut appeal, card, cmd.issued_at, em);
            append(ws, &mut appeal, card, new, em)
        }
        None => ws.add_message(StoredMessage {
            project_id: ctx.project.id.clone(),
            appeal_id: None,
            message: super::unappended(new),
        }),
    }
}

/// WhatsApp's visitor ID is the client's phone (seed 001: an operator adds the phone a
/// web-chat client gave, then writes to them on WhatsApp): the card's newest hand-added phone,
/// else its newest phone. A number that is another card's WhatsApp visitor is not this one's.
async fn whatsapp_by_phone(
    ws: &mut WorkingSet,
    card: &Client,
    channel_id: &str,
) -> Result<Option<(Visitor, Option<Appeal>)>, Refusal> {
    let phones = card.doc.contacts.get("phone").map(Vec::as_slice).unwrap_or_default();
    let newest = phones.iter().max_by_key(|p| (p.source == Source::Manual, p.at));
    let Some(phone) = newest else { return Ok(None) };
    // WhatsApp's own IDs are the number's digits, without the plus.
    let visitor_id = phone.value.trim_start_matches('+').to_string();
    let owner = ws.client_by_handle(&card.project_id, &visitor_handle(channel_id, &visitor_id)).await?;
    if owner.is_some_and(|o| o.id != card.id) {
        return reject(format!(
            "WhatsApp number {} is another client's visitor in channel {channel_id:?}",
            normalize::mask(&phone.value)
        ));
    }
    Ok(Some((Visitor { channel_id: channel_id.to_string(), visitor_id }, None)))
}

/// Where an operator's message goes: the card's open conversation in the channel (to the
/// visitor who wrote last in it), else the card's visitor there who wrote last.
async fn outbound_target(
    ws: &mut WorkingSet,
    card: &Client,
    channel_id: &str,
) -> Result<Option<(Visitor, Option<Appeal>)>, Refusal> {
    let visitors: Vec<&Visitor> = card.doc.visitors.iter().filter(|v| v.channel_id == channel_id).collect();
    let by_visitor = visitors.iter().map(|v| conversation_key(channel_id, &v.visitor_id, None));
    let by_account = card.doc.external_ids.iter().map(|x| conversation_key(channel_id, "", Some(x)));
    for key in by_visitor.chain(by_account).collect::<Vec<_>>() {
        let Some(appeal) = ws.open_appeal(&card.project_id, &key).await? else { continue };
        let visitor = Visitor { channel_id: channel_id.to_string(), visitor_id: appeal.visitor_id.clone() };
        // A shared device that moved to another account since writing last is no longer this
        // client's: nothing of theirs goes to it.
        if card.doc.visitors.contains(&visitor) {
            return Ok(Some((visitor, Some(appeal))));
        }
    }
    let last_wrote =
        |v: &&Visitor| card.doc.last_inbound.get(&visitor_handle(channel_id, &v.visitor_id)).copied();
    Ok(visitors.into_iter().max_by_key(|v| (last_wrote(v), v.visitor_id.clone())).map(|v| (v.clone(), None)))
}

/// Why a business-initiated message may not go out on this channel now, if it may not.
pub fn window_refusal(
    kind: ChannelKind,
    last_inbound: Option<Millis>,
    at: Millis,
    is_template: bool,
) -> Option<String> {
    if !kind.has_reply_window() {
        return None;
    }
    let inside = last_inbound.is_some_and(|t| at.saturating_sub(t) < REPLY_WINDOW_MS);
    if inside {
        return None;
    }
    if kind == ChannelKind::Whatsapp && is_template {
        return None;
    }
    Some(if kind == ChannelKind::Whatsapp && last_inbound.is_none() {
        "outside_24h_window: the client has not written on WhatsApp yet; only approved templates may go"
            .into()
    } else if kind == ChannelKind::Whatsapp {
        "outside_24h_window: WhatsApp accepts only approved templates 24 h after the client's last message"
            .into()
    } else {
        "outside_24h_window: the channel refuses business messages 24 h after the client's last message"
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Millis = 3600 * 1000;

    #[test]
    fn messengers_without_a_window_always_accept() {
        assert_eq!(window_refusal(ChannelKind::Telegram, None, 100 * H, false), None);
    }

    #[test]
    fn whatsapp_accepts_text_inside_the_window_and_only_templates_after() {
        assert_eq!(window_refusal(ChannelKind::Whatsapp, Some(0), 23 * H, false), None);
        assert!(window_refusal(ChannelKind::Whatsapp, Some(0), 25 * H, false).is_some());
        assert_eq!(window_refusal(ChannelKind::Whatsapp, Some(0), 25 * H, true), None);
    }

    #[test]
    fn instagram_refuses_even_templates_after_the_window() {
        assert!(window_refusal(ChannelKind::Instagram, Some(0), 25 * H, true).is_some());
        assert!(window_refusal(ChannelKind::Facebook, None, 0, false).is_some());
    }
}
