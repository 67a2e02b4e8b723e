//! The wire shapes of SPEC "Contracts", deserialised with the path of any error so the DLQ
//! reason says `visitor.id: missing field` rather than just "invalid input".
//! Unknown fields are accepted: gateways may extend the contract before we do.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::DecodeError;
use crate::model::{Attachment, ContentKind, DeliveryStatus};

#[derive(Deserialize)]
pub struct Message {
    pub message_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub sent_at: String,
    pub visitor: Visitor,
    pub content: Content,
}

#[derive(Deserialize)]
pub struct Visitor {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub fields: BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
pub struct Content {
    pub kind: ContentKind,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub attachment: Option<Attachment>,
}

#[derive(Deserialize)]
pub struct Status {
    pub message_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub at: String,
}

pub fn message(value: serde_json::Value) -> Result<Message, DecodeError> {
    typed(value)
}

pub fn status(value: serde_json::Value) -> Result<Status, DecodeError> {
    typed(value)
}

/// Deserialises with the failing path in the reason (`content.kind: unknown variant ...`).
pub fn typed<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, DecodeError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let reason = if path == "." { inner } else { format!("`{path}`: {inner}") };
        DecodeError { reason, project_id: None }
    })
}
