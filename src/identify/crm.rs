//! CRM identification applied to a card (SPEC "Identification" 3-4).
//!
//! The CRM is never called while a batch's transaction is open: the pipeline looks up every
//! identifier it can predict before the transaction, and the stages read the answers from
//! [`CrmLookups`]. An identifier nobody predicted (a phone that reached the card through a
//! merge in the same batch, a bot answer leading to an `identify` block) is recorded as
//! missing; the pipeline then rolls the batch back, looks it up, and applies the batch again.
//! So a slow CRM delays a batch by at most its timeout budget and never holds locks meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use crate::crm::{Answer, FailReason, FoundClient, Identifier};
use crate::emit::{Emitter, EventBody, IdentifyMethod};
use crate::identify::normalize;
use crate::matching;
use crate::model::{Appeal, Client, ClientType, Millis};
use crate::pipeline::Ctx;
use crate::store::{StoreResult, WorkingSet};

/// (project, identifier): what one CRM search is about.
pub type Lookup = (String, Identifier);

/// The CRM answers a batch may use, and the lookups it wanted but did not have.
#[derive(Default)]
pub struct CrmLookups {
    answers: BTreeMap<Lookup, Answer>,
    /// A Mutex, not a RefCell, only because the batch future must be `Send`; one batch
    /// applies its inputs one at a time, so it is never contended.
    missing: Mutex<BTreeSet<Lookup>>,
}

impl CrmLookups {
    pub fn extend(&mut self, answers: impl IntoIterator<Item = (Lookup, Answer)>) {
        self.answers.extend(answers);
    }

    /// The answer for an identifier; `None` records it as missing (the batch is re-applied
    /// once it has been looked up).
    pub fn answer(&self, project_id: &str, id: &Identifier) -> Option<&Answer> {
        let key = (project_id.to_string(), id.clone());
        let answer = self.answers.get(&key);
        if answer.is_none() {
            self.missing.lock().expect("lookups").insert(key);
        }
        answer
    }

    pub fn take_missing(&self) -> BTreeSet<Lookup> {
        std::mem::take(&mut self.missing.lock().expect("lookups"))
    }
}

/// What a CRM search did to the card.
pub enum Identification {
    /// Found: the card (possibly merged with others by the rules) now carries the CRM data.
    Found(Client),
    /// Not found or the CRM failed: `identification.failed` was emitted.
    Failed(Client),
}

impl Identification {
    pub fn client(self) -> Client {
        match self {
            Identification::Found(c) | Identification::Failed(c) => c,
        }
    }
}

/// Searches the CRM for `id` and applies the answer to the card. Its events carry `appeal`, the
/// appeal the identification runs for (opened, asking, or named by `identify_client`).
#[allow(clippy::too_many_arguments)]
pub async fn search(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    client: Client,
    appeal: &Appeal,
    id: &Identifier,
    method: IdentifyMethod,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Identification> {
    let answer = match ctx.lookups.answer(&ctx.project.id, id) {
        Some(answer) => answer.clone(),
        // Re-applied once the lookup is done; what happens meanwhile is rolled back.
        None => Answer::Failed { reason: FailReason::CrmUnavailable },
    };
    match answer {
        Answer::Found(found) => {
            let card = apply_found(ws, ctx, client, appeal, &found, id, method, at, em).await?;
            Ok(Identification::Found(card))
        }
        Answer::NotFound => {
            failed(em, at, &client, appeal, "not_found", Some(id.kind.as_str()), None);
            Ok(Identification::Failed(client))
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
    id: &Identifier,
    method: IdentifyMethod,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Client> {
    let mut changes = crm_data(&mut card, found, &ctx.project.default_region);
    if card.add_contact(id.kind.as_str(), &id.value) {
        changes.insert(id.kind.as_str().to_string());
    }
    ws.put_client(card.clone());
    let body = EventBody::ClientIdentified { method, identifier: Some(id.kind.as_str().to_string()) };
    em.event(at, body, Some(card.summary()), Some(appeal.summary()));
    if !changes.is_empty() {
        let body = EventBody::ClientUpdated { changes: changes.iter().cloned().collect() };
        em.event(at, body, Some(card.summary()), None);
    }
    if changes.iter().any(|c| c != "name") {
        card = matching::run(ws, ctx, &card.id, at, em).await?;
    }
    Ok(card)
}

/// Copies what the CRM knows onto the card, normalised like every other source; returns the
/// names of what changed. Values the CRM holds that do not normalise are skipped, not fatal:
/// a CRM's data quality is not the stream's problem.
pub fn crm_data(card: &mut Client, found: &FoundClient, region: &str) -> BTreeSet<String> {
    let mut changes = BTreeSet::new();
    card.kind = ClientType::Crm;
    if card.add_contact("crm_id", found.crm_id.trim()) {
        changes.insert("crm_id".to_string());
    }
    if let Some(name) = found.name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        if card.doc.name.as_deref() != Some(name) {
            card.doc.name = Some(name.to_string());
            changes.insert("name".to_string());
        }
    }
    for contact in &found.contacts {
        if let Ok(value) = normalize::value(&contact.kind, &contact.value, region) {
            if crate::bot::save_on_card(card, &contact.kind, &value) {
                changes.insert(contact.kind.clone());
            }
        }
    }
    for (field, raw) in &found.fields {
        if let Ok(value) = normalize::field(raw) {
            if card.set_field(field, &value) {
                changes.insert(field.clone());
            }
        }
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
        let changes = crm_data(&mut c, &found, "RU");
        assert_eq!(c.kind, ClientType::Crm);
        assert_eq!(c.doc.contacts["phone"], ["+79991234567"]);
        assert_eq!(c.doc.contacts["crm_id"], ["CRM-1"]);
        assert!(!c.doc.contacts.contains_key("email"), "invalid CRM values are skipped");
        assert_eq!(c.doc.fields["contract_number"], "d-100");
        assert_eq!(changes.into_iter().collect::<Vec<_>>(), ["contract_number", "crm_id", "name", "phone"]);
    }

    #[test]
    fn an_answer_nobody_looked_up_is_recorded_as_missing_once() {
        let lookups = CrmLookups::default();
        let id = Identifier::normalise(crate::crm::IdentifierType::Phone, "+79991234567", "RU").unwrap();
        assert!(lookups.answer("acme", &id).is_none());
        assert!(lookups.answer("acme", &id).is_none());
        assert_eq!(lookups.take_missing().len(), 1);
        assert!(lookups.take_missing().is_empty());
    }
}
