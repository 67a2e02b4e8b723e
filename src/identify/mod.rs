//! Identify: which client card a message belongs to (SPEC "Identification" 1-2).
//!
//! Technical identification by (channel, visitor ID); external IDs across the project (an
//! anonymous visitor who later carries an external ID joins that card); the fixed client of
//! a channel; and the attributes a gateway sends (name, phone, e-mail, fields, and the visitor
//! ID itself in WhatsApp and e-mail channels) recorded on the card, normalised.

pub mod crm;
pub mod normalize;

use crate::config::{ChannelConfig, ChannelKind, ProjectConfig};
use crate::decode::{InboundMessage, VisitorInfo};
use crate::emit::{derive_id, Emitter, EventBody, IdentifyMethod};
use crate::matching;
use crate::model::{Client, ClientType, Visitor};
use crate::pipeline::Ctx;
use crate::store::{StoreResult, WorkingSet};

pub use crate::store::{external_handle, visitor_handle};

/// The card a message belongs to.
pub struct Identified {
    pub client: Client,
    /// The channel names a fixed client: every new appeal gets `client.identified` (fixed).
    pub fixed: bool,
}

/// Finds or creates the card of a message's sender and records what the gateway told us.
pub async fn identify(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    m: &InboundMessage,
    em: &mut Emitter,
) -> StoreResult<Identified> {
    let channel = ctx.channel(&m.channel_id);
    if let Some(external) = &channel.fixed_client {
        let client = fixed_client(ws, ctx, channel, external, m.sent_at, em).await?;
        return Ok(Identified { client, fixed: true });
    }
    let by_visitor =
        ws.client_by_handle(&m.project_id, &visitor_handle(&m.channel_id, &m.visitor.id)).await?;
    let by_external = match &m.visitor.external_id {
        Some(x) => ws.client_by_handle(&m.project_id, &external_handle(x)).await?,
        None => None,
    };
    let visitor = Visitor { channel_id: m.channel_id.clone(), visitor_id: m.visitor.id.clone() };
    let (mut client, created, linked) = match (by_visitor, by_external) {
        (None, None) => {
            let mut c = new_client(ctx, channel.kind.client_type(), &m.message_id, m.sent_at);
            c.doc.visitors.insert(visitor);
            c.doc.external_ids.extend(m.visitor.external_id.clone());
            (c, true, m.visitor.external_id.is_some())
        }
        (None, Some(mut known)) => {
            known.doc.visitors.insert(visitor);
            (known, false, true)
        }
        (Some(mut anonymous), None) => {
            let linked = match &m.visitor.external_id {
                Some(x) => anonymous.doc.external_ids.insert(x.clone()),
                None => false,
            };
            (anonymous, false, linked)
        }
        (Some(a), Some(b)) if a.id == b.id => (a, false, false),
        (Some(anonymous), Some(known)) => {
            let size = anonymous.doc.group_size + known.doc.group_size;
            if size > ctx.project.max_merge_group {
                // Even the customer's own word does not build a card bigger than the limit:
                // the visitor stays on its card and the refusal is reported.
                let reason = format!(
                    "max_merge_group: the merge would join {size} cards, the limit is {}",
                    ctx.project.max_merge_group
                );
                let body = EventBody::ClientMergeRefused {
                    reason,
                    client_ids: vec![known.id.clone(), anonymous.id.clone()],
                    rule_ids: vec![],
                };
                em.event(m.sent_at, body, Some(anonymous.summary()), None);
                (anonymous, false, false)
            } else {
                // The customer's own system vouches for the external ID: the visitor's card
                // joins the identified card whatever their ages.
                let merged = matching::merge_into(
                    ws,
                    known,
                    vec![anonymous],
                    m.sent_at,
                    em,
                    matching::MergeBy::ExternalId,
                )
                .await?;
                (merged, false, true)
            }
        }
    };
    client.doc.last_inbound.insert(visitor_handle(&m.channel_id, &m.visitor.id), m.sent_at);
    let changes = record_attributes(&mut client, ctx.project, channel, m);
    ws.put_client(client.clone());
    if created {
        em.event(m.sent_at, EventBody::ClientCreated {}, Some(client.summary()), None);
    } else if !changes.is_empty() {
        em.event(
            m.sent_at,
            EventBody::ClientUpdated { changes: changes.clone() },
            Some(client.summary()),
            None,
        );
    }
    if linked {
        identified(em, m.sent_at, &client, IdentifyMethod::ExternalId, None);
    }
    if changes.iter().any(|c| c != "name") {
        client = matching::run(ws, ctx, &client.id, m.sent_at, em).await?;
    }
    Ok(Identified { client, fixed: false })
}

fn identified(em: &mut Emitter, at: i64, c: &Client, method: IdentifyMethod, identifier: Option<String>) {
    em.event(at, EventBody::ClientIdentified { method, identifier }, Some(c.summary()), None);
}

/// A new card with an id derived from what created it (stable across replays).
pub fn new_client(ctx: &Ctx<'_>, kind: ClientType, cause_id: &str, at: i64) -> Client {
    let id = derive_id(&[&ctx.project.id, "client", cause_id]);
    Client::new(id, ctx.project.id.clone(), kind, at)
}

async fn fixed_client(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    channel: &ChannelConfig,
    external: &str,
    at: i64,
    em: &mut Emitter,
) -> StoreResult<Client> {
    if let Some(c) = ws.client_by_handle(&ctx.project.id, &external_handle(external)).await? {
        return Ok(c);
    }
    let mut c = new_client(ctx, channel.kind.client_type(), &format!("fixed:{external}"), at);
    c.doc.external_ids.insert(external.to_string());
    ws.put_client(c.clone());
    em.event(at, EventBody::ClientCreated {}, Some(c.summary()), None);
    Ok(c)
}

/// Records the gateway's attributes on the card; returns the names of what changed.
///
/// A name only fills an empty one: an operator's rename must not be undone by the next
/// message. Values that do not normalise (a phone with letters) are left off the card, so
/// they can never match by accident.
pub fn record_attributes(
    client: &mut Client,
    project: &ProjectConfig,
    channel: &ChannelConfig,
    m: &InboundMessage,
) -> Vec<String> {
    let mut changes = Vec::new();
    let v = &m.visitor;
    if client.doc.name.is_none() {
        if let Some(name) = &v.name {
            client.doc.name = Some(name.trim().to_string());
            changes.push("name".to_string());
        }
    }
    for (field, value) in revealed_values(project, channel.kind, v) {
        let changed = match field.as_str() {
            "phone" | "email" | "crm_id" => client.add_contact(&field, &value),
            _ => client.set_field(&field, &value),
        };
        if changed {
            push_once(&mut changes, &field);
        }
    }
    changes
}

/// The (field, value) pairs a visitor reveals, normalised: its phone and e-mail (and, in
/// WhatsApp and e-mail channels, its visitor ID as one), then its custom fields. Values that
/// do not normalise are left out, so they can never match by accident.
pub fn revealed_values(project: &ProjectConfig, kind: ChannelKind, v: &VisitorInfo) -> Vec<(String, String)> {
    let mut phones: Vec<&str> = v.phone.iter().map(String::as_str).collect();
    let mut emails: Vec<&str> = v.email.iter().map(String::as_str).collect();
    match kind {
        ChannelKind::Whatsapp => phones.push(&v.id),
        ChannelKind::Email => emails.push(&v.id),
        _ => {}
    }
    let mut out = Vec::new();
    for raw in phones {
        match normalize::phone(raw, &project.default_region) {
            Ok(p) => out.push(("phone".to_string(), p)),
            Err(e) => {
                tracing::debug!(value = %normalize::mask(raw), reason = %e, "visitor phone left off the card")
            }
        }
    }
    for raw in emails {
        match normalize::email(raw) {
            Ok(e) => out.push(("email".to_string(), e)),
            Err(e) => {
                tracing::debug!(value = %normalize::mask(raw), reason = %e, "visitor e-mail left off the card")
            }
        }
    }
    for (field, raw) in &v.fields {
        if let Ok(value) = normalize::value(field, raw, &project.default_region) {
            out.push((field.clone(), value));
        }
    }
    out
}

fn push_once(changes: &mut Vec<String>, what: &str) {
    if !changes.iter().any(|c| c == what) {
        changes.push(what.to_string());
    }
}
