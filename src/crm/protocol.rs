//! The Search Client API on the wire (SPEC "Search Client API", `docs/crm.md`,
//! `schemas/crm.search-client.*.json`): what appealflow sends and what a CRM answers.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::IdentifierType;
use crate::identify::normalize;

/// The path appended to `crm.url`.
pub const SEARCH_PATH: &str = "/search-client";

/// A normalised value to search by. Ordered and hashable so answers can be keyed by it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Identifier {
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    /// Already normalised: E.164 phone, lower-cased e-mail, trimmed CRM id.
    pub value: String,
}

impl Identifier {
    /// Wraps a value that is normalised already (stored contacts, card fields).
    pub fn new(kind: IdentifierType, value: impl Into<String>) -> Self {
        Self { kind, value: value.into() }
    }

    /// Normalises a value carried by a message or card (`8 999 123-45-67` → `+79991234567`).
    pub fn normalise(kind: IdentifierType, raw: &str, region: &str) -> Result<Self, String> {
        normalize::value(kind.as_str(), raw, region).map(|value| Self { kind, value })
    }

    /// What a client typed in answer to the identification question, read like any value.
    pub fn from_answer(kind: IdentifierType, raw: &str, region: &str) -> Result<Self, String> {
        Self::normalise(kind, raw, region)
    }

    /// The value as logs may show it: phones and e-mails masked, CRM ids as they are.
    pub fn masked(&self) -> String {
        match self.kind {
            IdentifierType::CrmId => self.value.clone(),
            IdentifierType::Phone | IdentifierType::Email => normalize::mask(&self.value),
        }
    }
}

// NB: masked on purpose, so `{:?}` of an answer map in a log or a failed assertion never shows
// a client's full phone or e-mail.
impl fmt::Debug for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.masked())
    }
}

impl fmt::Display for Identifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.masked())
    }
}

/// The request body: `{"project_id": "acme", "identifier": {"type": "phone", "value": "+7..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchRequest {
    pub project_id: String,
    pub identifier: Identifier,
}

/// A client the CRM knows. Contacts and field values arrive as the CRM stores them; whoever
/// saves them on a card normalises them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundClient {
    pub crm_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

/// A typed contact: `phone`, `email`, `crm_id` or a custom type such as `skype`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// The `200` body: `{"found": false}` or `{"found": true, "client": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchResponse {
    pub found: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<FoundClient>,
}

impl SearchResponse {
    pub fn found(client: FoundClient) -> Self {
        Self { found: true, client: Some(client) }
    }

    pub fn not_found() -> Self {
        Self { found: false, client: None }
    }

    /// The client, if found; an error when `found` and `client` disagree.
    pub fn into_client(self) -> Result<Option<FoundClient>, String> {
        match (self.found, self.client) {
            (true, Some(client)) => Ok(Some(client)),
            (true, None) => Err("\"found\": true without a \"client\"".into()),
            (false, None) => Ok(None),
            (false, Some(_)) => Err("\"found\": false with a \"client\"".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_request_serialises_exactly_as_the_spec_example() {
        let request = SearchRequest {
            project_id: "acme".into(),
            identifier: Identifier::new(IdentifierType::Phone, "+79991234567"),
        };
        let expected =
            json!({"project_id": "acme", "identifier": {"type": "phone", "value": "+79991234567"}});
        assert_eq!(serde_json::to_value(&request).unwrap(), expected);
    }

    #[test]
    fn the_spec_found_answer_parses_with_contacts_and_fields() {
        let body = r#"{"found": true, "client": {"crm_id": "CRM-1001", "name": "Alfred Hitchcock",
            "contacts": [{"type": "email", "value": "alfred@example.com"}],
            "fields": {"contract_number": "D-100"}}}"#;
        let client = serde_json::from_str::<SearchResponse>(body).unwrap().into_client().unwrap().unwrap();
        assert_eq!(client.crm_id, "CRM-1001");
        assert_eq!(client.contacts[0].kind, "email");
        assert_eq!(client.fields["contract_number"], "D-100");
    }

    #[test]
    fn a_found_client_needs_only_its_crm_id() {
        let body = r#"{"found": true, "client": {"crm_id": "CRM-7"}}"#;
        let client = serde_json::from_str::<SearchResponse>(body).unwrap().into_client().unwrap().unwrap();
        assert_eq!((client.name, client.contacts.len(), client.fields.len()), (None, 0, 0));
    }

    #[test]
    fn not_found_serialises_without_a_client_key() {
        assert_eq!(serde_json::to_value(SearchResponse::not_found()).unwrap(), json!({"found": false}));
    }

    #[test]
    fn found_without_a_client_is_a_contradiction() {
        let response: SearchResponse = serde_json::from_str(r#"{"found": true}"#).unwrap();
        assert!(response.into_client().is_err());
    }

    #[test]
    fn identifiers_are_normalised_and_masked_in_debug_output() {
        let id = Identifier::normalise(IdentifierType::Phone, "8 (999) 123-45-67", "RU").unwrap();
        assert_eq!(id.value, "+79991234567");
        assert_eq!(format!("{id:?}"), "phone:+799******67");
        let email = Identifier::normalise(IdentifierType::Email, " Alfred@Example.com ", "RU").unwrap();
        assert_eq!(email.to_string(), "email:a***@example.com");
    }

    #[test]
    fn an_answer_that_is_no_valid_phone_is_refused() {
        assert!(Identifier::from_answer(IdentifierType::Phone, "12345", "RU").is_err());
        assert!(Identifier::from_answer(IdentifierType::Phone, "+7 999 123 45 67", "RU").is_ok());
    }
}
