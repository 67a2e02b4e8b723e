//! CRM identification applied to a card (SPEC "Identification" 3-4).
//!
//! The CRM is never called while a batch's transaction is open: the pipeline looks up every
//! identifier it can predict before the transaction, and the stages read the answers from
//! [`crate::crm::lookups::CrmLookups`]. An identifier nobody predicted (a phone that reached the card through a
//! merge in the same batch, a bot answer leading to an `identify` block) is recorded as
//! missing; the pipeline then rolls the batch back, looks it up, and applies the batch again.
//! So a slow CRM delays a batch by at most its timeout budget and never holds locks meanwhile.

use crate::crm::{Answer, FailReason, FoundClient, Identifier, IdentifierType};
use crate::emit::{Emitter, EventBody, IdentifyMethod};
use crate::identify::{save_revealed, CardChanges, Revealed};
use crate::matching;
use crate::model::{
    is_identifier, Appeal, CardValue, Client, ClientType, Millis, NameClaim, NameRank, Source,
};
use crate::stage::Ctx;
use crate::store::{StoreResult, WorkingSet};

/// What a CRM search did to the card.
pub enum Identification {
    /// Found: the card (possibly merged with others by the rules) now carries the CRM data.
    Found(Client),
    /// The CRM does not know the value.
    NotFound(Client),
    /// The CRM could not answer: `identification.failed` was emitted.
    Failed(Client),
}

impl Identification {
    pub fn client(self) -> Client {
        match self {
            Identification::Found(c) | Identification::NotFound(c) | Identification::Failed(c) => c,
        }
    }

    /// What `client.identified` (`manual`) says the CRM answered.
    pub fn crm_answer(&self) -> &'static str {
        match self {
            Identification::Found(_) => "found",
            Identification::NotFound(_) => "not_found",
            Identification::Failed(_) => "failed",
        }
    }
}

/// One search: the identifier and the value to keep on the card for it when found (as the
/// operator or client gave it), and who asked.
pub struct Search {
    pub kind: IdentifierType,
    pub value: CardValue,
    pub method: IdentifyMethod,
}

impl Search {
    fn identifier(&self) -> Identifier {
        Identifier::new(self.kind, self.value.value.clone())
    }
}

/// Searches the CRM and applies the answer to the card. Its events carry `appeal`, the appeal
/// the identification runs for (opened, asking, or named by `identify_client`). A value the
/// CRM does not know is `identification.failed` for automatic identification only: an
/// operator's identification stands (SPEC identity rule 8).
pub async fn search(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    client: Client,
    appeal: &Appeal,
    search: Search,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Identification> {
    let id = search.identifier();
    let answer = match ctx.lookups.answer(&ctx.project.id, &id) {
        Some(answer) => answer.clone(),
        // Re-applied once the lookup is done; what happens meanwhile is rolled back.
        None => Answer::Failed { reason: FailReason::CrmUnavailable },
    };
    match answer {
        Answer::Found(found) => {
            let card = apply_found(ws, ctx, client, appeal, &found, search, at, em).await?;
            Ok(Identification::Found(card))
        }
        Answer::NotFound => {
            if search.method != IdentifyMethod::Manual {
                failed(em, at, &client, appeal, "not_found", Some(id.kind.as_str()), None);
            }
            Ok(Identification::NotFound(client))
        }
        Answer::Failed { reason } => {
            tracing::info!(identifier = %id.masked(), reason = reason.as_str(), "CRM identification failed");
            failed(em, at, &client, appeal, reason.as_str(), Some(id.kind.as_str()), Some(reason.detail()));
            Ok(Identification::Failed(client))
        }
    }
}

/// Emits `identification.failed` for `appeal`, which goes on unidentified.
pub fn failed(
    em: &mut Emitter,
    at: Millis,
    client: &Client,
    appeal: &Appeal,
    reason: &str,
    identifier: Option<&'static str>,
    detail: Option<String>,
) {
    let body = EventBody::IdentificationFailed { reason: reason.to_string(), identifier, detail };
    em.event(at, body, Some(client.summary()), Some(appeal.summary()));
}

/// The card takes the CRM id, name, contacts and fields; then the rules may join it with
/// other cards of the same person.
#[allow(clippy::too_many_arguments)]
async fn apply_found(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    mut card: Client,
    appeal: &Appeal,
    found: &FoundClient,
    search: Search,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Client> {
    // The searched value first: as the operator or client gave it, it outranks the CRM's
    // spelling of the same value.
    let kind = search.kind.as_str();
    let saved = card.save_value(kind, search.value);
    let mut changes = crm_data(&mut card, found, &ctx.project.default_region, at);
    if saved {
        changes.changed(kind);
    }
    ws.put_client(card.clone());
    let crm = (search.method == IdentifyMethod::Manual).then_some("found");
    let body = EventBody::ClientIdentified { method: search.method, identifier: Some(kind.to_string()), crm };
    em.event(at, body, Some(card.summary()), Some(appeal.summary()));
    if !changes.is_empty() {
        em.event(at, changes.event(), Some(card.summary()), None);
    }
    if changes.values_changed() {
        card = matching::run(ws, ctx, &card.id, at, em).await?;
    }
    Ok(card)
}

/// Copies what the CRM knows onto the card as the CRM spells it, compared normalised like
/// every other source; returns what changed. Values the CRM holds that do not read as their
/// field are kept under `invalid_values`, not fatal: a CRM's data quality is not the
/// stream's problem.
pub fn crm_data(card: &mut Client, found: &FoundClient, region: &str, at: Millis) -> CardChanges {
    let mut changes = CardChanges::default();
    if card.kind != ClientType::Crm {
        card.kind = ClientType::Crm;
        changes.changed("type");
    }

    let crm_id = found.crm_id.trim();
    if !crm_id.is_empty() && card.save_value("crm_id", CardValue::new(crm_id.into(), crm_id, Source::Crm, at))
    {
        changes.changed("crm_id");
    }
    if let Some(name) = found.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        let claim = NameClaim { name: name.to_string(), rank: NameRank::Crm, source: "crm".into(), at };
        if card.doc.claim_name(claim) {
            changes.changed("name");
        }
    }
    let contacts = found.contacts.iter().map(|c| Revealed::new(&c.kind, &c.value, true, region));
    let fields = found.fields.iter().map(|(f, v)| Revealed::new(f, v, is_identifier(f), region));
    for r in contacts.chain(fields) {
        save_revealed(card, r, (Source::Crm, None), at, &mut changes);
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::Contact;

    fn card() -> Client {
        Client {
            id: "c1".into(),
            project_id: "acme".into(),
            kind: ClientType::Channel,
            created_at: 0,
            appeal_count: 0,
            merged_into: None,
            doc: Default::default(),
        }
    }

    #[test]
    fn a_found_client_makes_the_card_a_crm_card_with_normalised_contacts_and_fields() {
        let found = FoundClient {
            crm_id: "CRM-1".into(),
            name: Some("Alfred Hitchcock".into()),
            contacts: vec![
                Contact { kind: "phone".into(), value: "8 999 123-45-67".into() },
                Contact { kind: "email".into(), value: "not an email".into() },
            ],
            fields: [("contract_number".to_string(), " D-100 ".to_string())].into(),
        };
        let mut c = card();
        let changes = crm_data(&mut c, &found, "RU", 5);
        assert_eq!(c.kind, ClientType::Crm);
        assert_eq!(c.values("phone").into_iter().collect::<Vec<_>>(), ["+79991234567"]);
        assert_eq!(c.doc.contacts["phone"][0].display(), "8 999 123-45-67");
        assert_eq!(c.values("crm_id").into_iter().collect::<Vec<_>>(), ["CRM-1"]);
        assert!(!c.doc.contacts.contains_key("email"), "invalid CRM values are not contacts");
        assert_eq!(c.doc.invalid_values[0].display, "not an email");
        assert_eq!(c.values("contract_number").into_iter().collect::<Vec<_>>(), ["d-100"]);
        assert_eq!(c.doc.fields["contract_number"][0].display(), "D-100");
        assert_eq!(c.doc.name.as_deref(), Some("Alfred Hitchcock"));
        let changed: Vec<&str> = changes.changes.iter().map(String::as_str).collect();
        assert_eq!(changed, ["contract_number", "crm_id", "invalid_values", "name", "phone", "type"]);

        assert_eq!(changes.rejected.iter().collect::<Vec<_>>(), ["email"]);
    }
}
