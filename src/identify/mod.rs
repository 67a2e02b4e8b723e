//! Identify: which client card a message belongs to (SPEC "Identification" 1-2 and "Identity
//! rules that users rely on" 1-5).
//!
//! Technical identification by (channel, visitor ID); external IDs across the project; the
//! fixed client of a channel; and the attributes a gateway sends (name, phone, e-mail, fields,
//! and the visitor ID itself in WhatsApp and e-mail channels) recorded on the card as given,
//! compared normalised. A shared device never merges two accounts: a visitor whose card holds
//! one external ID and who then carries another moves to the other's card.

pub mod crm;
pub mod normalize;
pub mod phone;

use std::collections::BTreeSet;

use crate::config::{ChannelConfig, ChannelKind, ProjectConfig};
use crate::decode::{InboundMessage, VisitorInfo};
use crate::emit::{derive_id, Emitter, EventBody, IdentifyMethod};
use crate::matching::{self, MergeBy};
use crate::model::{
    is_identifier, Added, CardValue, Client, ClientType, InvalidValue, Millis, NameClaim, NameRank, Source,
    Visitor,
};
use crate::stage::Ctx;
use crate::store::{StoreResult, WorkingSet};

pub use crate::store::{external_handle, visitor_handle};

/// The card a message belongs to.
pub struct Identified {
    pub client: Client,
    /// The channel names a fixed client: every new appeal gets `client.identified` (fixed).
    pub fixed: bool,
}

/// What a change to a card did, for `client.updated`: the fields and contact types that
/// changed, and the fields whose new values could not be read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CardChanges {
    pub changes: BTreeSet<String>,
    pub rejected: BTreeSet<String>,
}

impl CardChanges {
    pub fn changed(&mut self, field: &str) {
        self.changes.insert(field.to_string());
    }

    /// A value of `field` went to `invalid_values` instead.
    pub fn rejected(&mut self, field: &str) {
        self.changes.insert("invalid_values".to_string());
        self.rejected.insert(field.to_string());
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether the card gained values a rule compares (so matching has to run).
    pub fn values_changed(&self) -> bool {
        self.changes.iter().any(|c| !["name", "invalid_values", "type"].contains(&c.as_str()))
    }

    pub fn event(&self) -> EventBody {
        EventBody::ClientUpdated {
            changes: self.changes.iter().cloned().collect(),
            rejected: self.rejected.iter().cloned().collect(),
        }
    }
}

/// How the sender's card was found.
struct Found {
    client: Client,
    created: bool,
    /// The visitor was identified by the external ID it carries (`client.identified`).
    linked: bool,
    /// Cards were merged on the way: the merged card is matched again.
    merged: bool,
}

impl Found {
    fn existing(client: Client) -> Self {
        Found { client, created: false, linked: false, merged: false }
    }
}

/// Finds or creates the card of a message's sender and records what the gateway told us.
pub async fn identify(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    m: &InboundMessage,
    em: &mut Emitter,
) -> StoreResult<Identified> {
    let channel = ctx.channel(&m.channel_id);
    let found = match &channel.fixed_client {
        Some(external) => fixed_client(ws, ctx, channel, external, m).await?,
        None => sender(ws, ctx, channel, m, em).await?,
    };
    let Found { mut client, created, linked, merged } = found;
    client.doc.last_inbound.insert(visitor_handle(&m.channel_id, &m.visitor.id), m.sent_at);
    let mut recorded = record_attributes(&mut client, ctx.project, channel, m);
    if client.settle_type() {
        recorded.changed("type");
    }
    ws.put_client(client.clone());
    if created {
        em.event(m.sent_at, EventBody::ClientCreated {}, Some(client.summary()), None);
    }
    if !recorded.is_empty() && (!created || !recorded.rejected.is_empty()) {
        em.event(m.sent_at, recorded.event(), Some(client.summary()), None);
    }
    if linked {
        identified(em, m.sent_at, &client, IdentifyMethod::ExternalId, None);
    }
    if merged || recorded.values_changed() {
        client = matching::run(ws, ctx, &client.id, m.sent_at, em).await?;
    }
    Ok(Identified { client, fixed: channel.fixed_client.is_some() })
}

fn identified(em: &mut Emitter, at: i64, c: &Client, method: IdentifyMethod, identifier: Option<String>) {
    let body = EventBody::ClientIdentified { method, identifier, crm: None };
    em.event(at, body, Some(c.summary()), None);
}

/// What created a card: its id derives from this, so ids of different origins never meet
/// (a message whose id is `fixed:corp-1` does not get the fixed client's card).
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    Message(&'a str),
    Fixed(&'a str),
    Command(&'a str),
}

/// A new card with an id derived from what created it (stable across replays).
pub fn new_client(ctx: &Ctx<'_>, kind: ClientType, origin: Origin<'_>, at: i64) -> Client {
    let (namespace, id) = match origin {
        Origin::Message(id) => ("message", id),
        Origin::Fixed(id) => ("fixed", id),
        Origin::Command(id) => ("command", id),
    };
    let id = derive_id(&[&ctx.project.id, "client", namespace, id]);
    Client::new(id, ctx.project.id.clone(), kind, at)
}

/// The sender's card by visitor handle and external ID (SPEC identity rule 1).
async fn sender(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    channel: &ChannelConfig,
    m: &InboundMessage,
    em: &mut Emitter,
) -> StoreResult<Found> {
    let project = &m.project_id;
    let visitor = Visitor { channel_id: m.channel_id.clone(), visitor_id: m.visitor.id.clone() };
    let by_visitor = ws.client_by_handle(project, &visitor_handle(&m.channel_id, &m.visitor.id)).await?;
    let external = m.visitor.external_id.as_deref();
    let by_external = match external {
        Some(x) => ws.client_by_handle(project, &external_handle(x)).await?,
        None => None,
    };
    let fresh = || {
        let mut c = new_client(ctx, channel.kind.client_type(), Origin::Message(&m.message_id), m.sent_at);
        c.doc.visitors.insert(visitor.clone());
        c.doc.external_ids.extend(external.map(str::to_string));
        c
    };
    let linked = |client| Found { client, created: false, linked: true, merged: false };
    Ok(match (by_visitor, by_external, external) {
        (None, None, _) => {
            let client = fresh();
            Found { client, created: true, linked: external.is_some(), merged: false }
        }
        (None, Some(mut known), _) => {
            known.doc.visitors.insert(visitor.clone());
            linked(known)
        }
        (Some(card), None, None) => Found::existing(card),
        (Some(a), Some(b), _) if a.id == b.id => Found::existing(a),
        (Some(mut anonymous), None, Some(x)) if anonymous.doc.external_ids.is_empty() => {
            anonymous.doc.external_ids.insert(x.to_string());
            linked(anonymous)
        }
        (Some(other), None, Some(_)) => {
            // A shared device: the card holds another account. The visitor moves to a new
            // card of this account; the other card keeps its history.
            let client = fresh();
            move_visitor(ws, other, &visitor);
            Found { client, created: true, linked: true, merged: false }
        }
        (Some(anonymous), Some(known), Some(x)) if anonymous.doc.external_ids.is_empty() => {
            join_account(ws, ctx, anonymous, known, x, m.sent_at, em).await?
        }
        (Some(other), Some(mut known), _) => {
            move_visitor(ws, other, &visitor);
            known.doc.visitors.insert(visitor.clone());
            linked(known)
        }
    })
}

/// An anonymous card meets the card of a known external ID: it joins that card's group,
/// unless the group would outgrow `max_merge_group` (the visitor then stays where it was).
async fn join_account(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    anonymous: Client,
    known: Client,
    external: &str,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Found> {
    let size = anonymous.doc.group_size + known.doc.group_size;
    let max = ctx.project.max_merge_group;
    if size > max {
        let body = EventBody::ClientMergeRefused {
            reason: matching::group_limit_reason(size, max),
            client_ids: vec![known.id.clone(), anonymous.id.clone()],
            rule_ids: vec![],
            field: Some("external_id".into()),
            value: Some(external.to_string()),
            cards: Some(size as i64),
        };
        em.event(at, body, Some(anonymous.summary()), None);
        return Ok(Found::existing(anonymous));
    }
    if matching::split_apart(ws, (std::slice::from_ref(&known), &known), &anonymous).await? {
        matching::refuse_split(em, at, &anonymous, &known, None);
        return Ok(Found::existing(anonymous));
    }
    let by = MergeBy::ExternalId(external.to_string());
    let client = matching::merge_into(ws, vec![anonymous, known], at, em, by).await?;
    Ok(Found { client, created: false, linked: true, merged: true })
}

/// Takes a visitor (and its reply window) off a card that no longer speaks for it.
fn move_visitor(ws: &mut WorkingSet, mut from: Client, visitor: &Visitor) {
    from.doc.visitors.remove(visitor);
    from.doc.last_inbound.remove(&visitor_handle(&visitor.channel_id, &visitor.visitor_id));
    ws.put_client(from);
}

/// The channel's fixed client, created on first use, with the visitor recorded on it.
async fn fixed_client(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    channel: &ChannelConfig,
    external: &str,
    m: &InboundMessage,
) -> StoreResult<Found> {
    let (mut card, created) = match ws.client_by_handle(&ctx.project.id, &external_handle(external)).await? {
        Some(c) => (c, false),
        None => {
            let mut c = new_client(ctx, channel.kind.client_type(), Origin::Fixed(external), m.sent_at);

            c.doc.external_ids.insert(external.to_string());
            (c, true)
        }
    };
    let visitor = Visitor { channel_id: m.channel_id.clone(), visitor_id: m.visitor.id.clone() };
    if !card.doc.visitors.contains(&visitor) {
        let handle = visitor_handle(&m.channel_id, &m.visitor.id);
        if let Some(other) = ws.client_by_handle(&ctx.project.id, &handle).await?.filter(|o| o.id != card.id)
        {
            move_visitor(ws, other, &visitor);
        }
        card.doc.visitors.insert(visitor);
    }
    Ok(Found { client: card, created, linked: false, merged: false })
}

/// Records the gateway's attributes on the card; returns what changed.
///
/// The name is a claim of this visitor's profile, ranked higher when it came with an
/// external ID (SPEC rule 2). Values keep the spelling they came in; those that are no valid
/// value of their field (a phone that is no number) are kept under `invalid_values`, never
/// compared.
pub fn record_attributes(
    client: &mut Client,
    project: &ProjectConfig,
    channel: &ChannelConfig,
    m: &InboundMessage,
) -> CardChanges {
    let mut changes = CardChanges::default();
    let v = &m.visitor;
    if let Some(name) = &v.name {
        let signed_in = v.external_id.is_some() && channel.fixed_client.is_none();
        let claim = NameClaim {
            name: name.trim().to_string(),
            rank: if signed_in { NameRank::ExternalId } else { NameRank::Channel },
            source: visitor_handle(&m.channel_id, &v.id),
            at: m.sent_at,
        };
        if client.doc.claim_name(claim) {
            changes.changed("name");
        }
    }
    for r in revealed(project, channel.kind, v) {
        let via = Some(visitor_handle(&m.channel_id, &v.id));
        save_revealed(client, r, (Source::Gateway, via), m.sent_at, &mut changes);
    }
    changes
}

/// Saves one value a source revealed (through a visitor, `via`, where one revealed it): on
/// the card if it reads as its field, else under `invalid_values`. Empty values are not
/// worth keeping.
pub fn save_revealed(
    client: &mut Client,
    r: Revealed<'_>,
    (source, via): (Source, Option<String>),
    at: Millis,
    changes: &mut CardChanges,
) {
    match r.value {
        Ok(value) => {
            let mut value = CardValue::new(value, r.raw.trim(), source, at);
            if let Some(handle) = via {
                value = value.through(&client.doc, handle);
            }
            if client.doc.add_value(r.contact, &r.field, value) == Added::New {
                changes.changed(&r.field);
            }
        }
        Err(reason) if !r.raw.trim().is_empty() => {
            tracing::debug!(field = %r.field, value = %normalize::mask(r.raw), %reason, "value kept as invalid");
            let invalid =
                InvalidValue { field: r.field.clone(), display: r.raw.trim().to_string(), source, at };
            if client.doc.add_invalid(invalid) {
                changes.rejected(&r.field);
            }
        }
        Err(_) => {}
    }
}

/// One value a visitor (or the CRM) revealed: its field, the text as given, and its
/// normalised form or why it has none.
pub struct Revealed<'a> {
    pub field: String,
    /// A contact (phone, e-mail, a CRM's skype) rather than a custom field.
    pub contact: bool,
    pub raw: &'a str,
    pub value: Result<String, String>,
}

impl<'a> Revealed<'a> {
    pub fn new(field: &str, raw: &'a str, contact: bool, region: &str) -> Self {
        Revealed { field: field.to_string(), contact, raw, value: normalize::value(field, raw, region) }
    }
}

/// The values a visitor reveals: its phone and e-mail (and, in WhatsApp and e-mail channels,
/// its visitor ID as one), then its custom fields.
pub fn revealed<'a>(project: &ProjectConfig, kind: ChannelKind, v: &'a VisitorInfo) -> Vec<Revealed<'a>> {
    let region = &project.default_region;
    let mut phones: Vec<&str> = v.phone.iter().map(String::as_str).collect();
    let mut emails: Vec<&str> = v.email.iter().map(String::as_str).collect();
    match kind {
        ChannelKind::Whatsapp => phones.push(&v.id),
        ChannelKind::Email => emails.push(&v.id),
        _ => {}
    }
    let phones = phones.into_iter().map(|raw| ("phone", raw, true));
    let emails = emails.into_iter().map(|raw| ("email", raw, true));
    let fields = v.fields.iter().map(|(f, raw)| (f.as_str(), raw.as_str(), is_identifier(f)));
    phones
        .chain(emails)
        .chain(fields)
        .map(|(field, raw, contact)| Revealed::new(field, raw, contact, region))
        .collect()
}

/// The normalised (field, value) pairs a visitor reveals; values that do not normalise are
/// left out, so they can never match by accident.
pub fn revealed_values(project: &ProjectConfig, kind: ChannelKind, v: &VisitorInfo) -> Vec<(String, String)> {
    revealed(project, kind, v).into_iter().filter_map(|r| Some((r.field, r.value.ok()?))).collect()
}
