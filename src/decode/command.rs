//! Operator and API commands (SPEC "Command"). Every command type decodes, with its fields
//! checked; whether it can apply (does appeal 17 exist?) is the appeal stage's question.

use serde::Deserialize;

use super::wire::typed;
use super::{limits, non_empty, project, timestamp, DecodeError};
use crate::config::Config;
use crate::model::Millis;

/// The `type` values that are commands: the names of [`CommandAction`]'s variants.
pub const COMMAND_TYPES: &[&str] = <CommandAction as strum::VariantNames>::VARIANTS;

#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub command_id: String,
    pub project_id: String,
    pub issued_at: Millis,
    pub operator: Option<Operator>,
    pub action: CommandAction,
}

impl Command {
    /// What an `identify_client` command identifies by, as given (not yet normalised).
    pub fn identify_value(&self) -> Option<(crate::config::IdentifierType, &str)> {
        use crate::config::IdentifierType as T;
        let CommandAction::IdentifyClient { identifier, value, .. } = &self.action else { return None };
        let kind = match identifier.as_str() {
            "phone" => T::Phone,
            "email" => T::Email,
            "crm_id" => T::CrmId,
            _ => return None,
        };
        Some((kind, value))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Operator {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

/// A reference to a client card: exactly one of the SPEC's four forms.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRef {
    Id(String),
    Visitor { channel_id: String, visitor_id: String },
    External(String),
    Appeal(i64),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContactSpec {
    pub contact_type: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Template {
    pub name: String,
    #[serde(default)]
    pub params: serde_json::Value,
}

/// What an appeal's comment or tag is about (seed 003): the session (the appeal itself) or
/// the client's dialogue (shown with every appeal of the card).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    #[default]
    Session,
    Dialogue,
}

#[derive(Debug, Clone, PartialEq, strum::IntoStaticStr, strum::VariantNames)]
#[strum(serialize_all = "snake_case")]
pub enum CommandAction {
    CloseAppeal { appeal_number: i64 },
    AssignAppeal { appeal_number: i64, group: Option<String>, operator_id: Option<String> },
    SetCategory { appeal_number: i64, category: String },
    TagAppeal { appeal_number: i64, tag: String, scope: Scope },
    CommentAppeal { appeal_number: i64, text: String, scope: Scope },
    IdentifyClient { appeal_number: i64, identifier: String, value: String },
    SetClientField { client: ClientRef, field: String, value: String },
    AddContact { client: ClientRef, contact_type: String, value: String },
    RemoveContact { client: ClientRef, contact_type: String, value: String },
    RenameClient { client: ClientRef, name: String },
    CreateClient { name: String, contacts: Vec<ContactSpec> },
    MergeClients { target: ClientRef, source: ClientRef, keep_name_from: KeepName },
    SendOutbound { client: ClientRef, channel_id: String, text: Option<String>, template: Option<Template> },
    StartScenario { appeal_number: i64, scenario_id: String },
    CommentClient { client: ClientRef, text: String },
    TagClient { client: ClientRef, tag: String },
    EditContact { client: ClientRef, contact_type: String, old_value: String, value: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeepName {
    #[default]
    Target,
    Source,
}

#[derive(Deserialize)]
struct Common {
    command_id: String,
    project_id: String,
    issued_at: String,
    #[serde(default)]
    operator: Option<Operator>,
}

#[derive(Deserialize)]
struct WireRef {
    client_id: Option<String>,
    channel_id: Option<String>,
    visitor_id: Option<String>,
    external_id: Option<String>,
    appeal_number: Option<i64>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Wire {
    CloseAppeal {
        appeal_number: i64,
    },
    AssignAppeal {
        appeal_number: i64,
        group: Option<String>,
        operator_id: Option<String>,
    },
    SetCategory {
        appeal_number: i64,
        category: String,
    },
    TagAppeal {
        appeal_number: i64,
        tag: String,
        #[serde(default)]
        scope: Scope,
    },
    CommentAppeal {
        appeal_number: i64,
        text: String,
        #[serde(default)]
        scope: Scope,
    },
    IdentifyClient {
        appeal_number: i64,
        identifier: String,
        value: String,
    },
    SetClientField {
        client: WireRef,
        field: String,
        value: serde_json::Value,
    },
    AddContact {
        client: WireRef,
        contact_type: String,
        value: String,
    },
    RemoveContact {
        client: WireRef,
        contact_type: String,
        value: String,
    },
    RenameClient {
        client: WireRef,
        name: String,
    },
    CreateClient {
        name: String,
        #[serde(default)]
        contacts: Vec<ContactSpec>,
    },
    MergeClients {
        target: WireRef,
        source: WireRef,
        #[serde(default)]
        keep_name_from: KeepName,
    },
    SendOutbound {
        client: WireRef,
        channel_id: String,
        text: Option<String>,
        template: Option<Template>,
    },
    StartScenario {
        appeal_number: i64,
        scenario_id: String,
    },
    CommentClient {
        client: WireRef,
        text: String,
    },
    TagClient {
        client: WireRef,
        tag: String,
    },
    EditContact {
        client: WireRef,
        contact_type: String,
        old_value: String,
        value: String,
    },
}

pub fn decode(value: serde_json::Value, config: &Config) -> Result<Command, DecodeError> {
    let common: Common = typed(value.clone())?;
    let project = project(config, &common.project_id)?;
    let located = |e: DecodeError| DecodeError { project_id: Some(project.id.clone()), ..e };
    limits::id("command_id", &common.command_id).map_err(located)?;
    operator_limits(common.operator.as_ref()).map_err(located)?;
    let issued_at = timestamp("issued_at", &common.issued_at).map_err(located)?;
    let wire: Wire = typed(value).map_err(located)?;
    let action = action(wire, project).map_err(located)?;
    Ok(Command {
        command_id: common.command_id,
        project_id: common.project_id,
        issued_at,
        operator: common.operator,
        action,
    })
}

fn action(wire: Wire, project: &crate::config::ProjectConfig) -> Result<CommandAction, DecodeError> {
    match wire {
        w @ (Wire::CloseAppeal { .. }
        | Wire::AssignAppeal { .. }
        | Wire::SetCategory { .. }
        | Wire::TagAppeal { .. }
        | Wire::CommentAppeal { .. }
        | Wire::IdentifyClient { .. }
        | Wire::StartScenario { .. }) => appeal_action(w),
        w => client_action(w, project),
    }
}

/// Commands on an appeal, named by its number.
fn appeal_action(wire: Wire) -> Result<CommandAction, DecodeError> {
    use CommandAction as A;
    Ok(match wire {
        Wire::CloseAppeal { appeal_number } => A::CloseAppeal { appeal_number },
        Wire::AssignAppeal { appeal_number, group, operator_id } => {
            assign(appeal_number, group, operator_id)?
        }
        Wire::SetCategory { appeal_number, category } => {
            limits::id("category", &category)?;
            A::SetCategory { appeal_number, category }
        }
        Wire::TagAppeal { appeal_number, tag, scope } => {
            limits::id("tag", &tag)?;
            A::TagAppeal { appeal_number, tag, scope }
        }
        Wire::CommentAppeal { appeal_number, text, scope } => {
            A::CommentAppeal { appeal_number, text: text_field("text", text)?, scope }
        }
        Wire::IdentifyClient { appeal_number, identifier, value } => {
            identify(appeal_number, identifier, value)?
        }
        Wire::StartScenario { appeal_number, scenario_id } => {
            limits::id("scenario_id", &scenario_id)?;
            A::StartScenario { appeal_number, scenario_id }
        }
        _ => unreachable!("`action` sends only appeal commands here"),
    })
}

/// Commands on a client card, named by a client ref.
fn client_action(wire: Wire, project: &crate::config::ProjectConfig) -> Result<CommandAction, DecodeError> {
    use CommandAction as A;
    let client = |at: &str, r: WireRef| client_ref(at, r, project);
    Ok(match wire {
        Wire::CommentClient { client: r, text } => {
            A::CommentClient { text: text_field("text", text)?, client: client("client", r)? }
        }
        Wire::TagClient { client: r, tag } => {
            limits::id("tag", &tag)?;
            A::TagClient { client: client("client", r)?, tag }
        }
        Wire::EditContact { client: r, contact_type, old_value, value } => {
            limits::id("contact_type", &contact_type)?;
            limits::value("old_value", &old_value)?;
            let (contact_type, value) = contact(contact_type, value)?;
            A::EditContact { client: client("client", r)?, contact_type, old_value, value }
        }
        Wire::SetClientField { client: r, field, value } => {
            limits::id("field", &field)?;
            A::SetClientField { client: client("client", r)?, field, value: scalar(value)? }
        }
        Wire::AddContact { client: r, contact_type, value } => {
            let (contact_type, value) = contact(contact_type, value)?;
            A::AddContact { client: client("client", r)?, contact_type, value }
        }
        Wire::RemoveContact { client: r, contact_type, value } => {
            let (contact_type, value) = contact(contact_type, value)?;
            A::RemoveContact { client: client("client", r)?, contact_type, value }
        }
        Wire::RenameClient { client: r, name } => {
            A::RenameClient { client: client("client", r)?, name: name_field(name)? }
        }
        Wire::CreateClient { name, contacts } => create(name, contacts)?,
        Wire::MergeClients { target, source, keep_name_from } => A::MergeClients {
            target: client("target", target)?,
            source: client("source", source)?,
            keep_name_from,
        },
        Wire::SendOutbound { client: r, channel_id, text, template } => {
            super::channel(project, &channel_id)?;
            outbound_body(text.as_deref(), template.as_ref())?;
            A::SendOutbound { client: client("client", r)?, channel_id, text, template }
        }
        _ => unreachable!("`action` sends only client commands here"),
    })
}

fn assign(
    appeal_number: i64,
    group: Option<String>,
    operator_id: Option<String>,
) -> Result<CommandAction, DecodeError> {
    if group.is_none() && operator_id.is_none() {
        return Err(DecodeError::new("assign_appeal needs `group` or `operator_id`"));
    }
    limits::opt_id("group", group.as_deref())?;
    limits::opt_id("operator_id", operator_id.as_deref())?;
    Ok(CommandAction::AssignAppeal { appeal_number, group, operator_id })
}

fn identify(appeal_number: i64, identifier: String, value: String) -> Result<CommandAction, DecodeError> {
    if !crate::model::is_identifier(&identifier) {
        return Err(DecodeError::new(format!(
            "`identifier` must be phone, email or crm_id, not {identifier:?}"
        )));
    }
    non_empty("value", &value)?;
    limits::value("value", &value)?;
    Ok(CommandAction::IdentifyClient { appeal_number, identifier, value })
}

fn create(name: String, contacts: Vec<ContactSpec>) -> Result<CommandAction, DecodeError> {
    if contacts.len() > MAX_CREATE_CONTACTS {
        return Err(DecodeError::new(format!(
            "`contacts` has {} entries, the limit is {MAX_CREATE_CONTACTS}",
            contacts.len()
        )));
    }
    for c in &contacts {
        limits::id("contacts.contact_type", &c.contact_type)?;
        limits::value("contacts.value", &c.value)?;
    }
    Ok(CommandAction::CreateClient { name: name_field(name)?, contacts })
}

/// A contact type and value within their bounds.
fn contact(contact_type: String, value: String) -> Result<(String, String), DecodeError> {
    limits::id("contact_type", &contact_type)?;
    limits::value("value", &value)?;
    Ok((contact_type, value))
}

/// A text (a comment): not empty, within the text bound.
fn text_field(field: &str, text: String) -> Result<String, DecodeError> {
    non_empty(field, &text)?;
    limits::opt_text(field, Some(&text))?;
    Ok(text)
}

fn name_field(name: String) -> Result<String, DecodeError> {
    non_empty("name", &name)?;
    limits::value("name", &name)?;
    Ok(name)
}

/// A custom field value: a scalar, kept as its text.
fn scalar(value: serde_json::Value) -> Result<String, DecodeError> {
    let text = match value {
        serde_json::Value::String(s) => s,
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return Err(DecodeError::new("`value` must be a string, number or boolean")),
    };
    limits::value("value", &text)?;
    Ok(text)
}

/// Exactly one of a text or a template, each within its bound.
fn outbound_body(text: Option<&str>, template: Option<&Template>) -> Result<(), DecodeError> {
    match (text, template) {
        (Some(t), None) => {
            non_empty("text", t)?;
            limits::opt_text("text", Some(t))
        }
        (None, Some(t)) => {
            limits::id("template.name", &t.name)?;
            limits::opt_text("template.params", Some(&t.params.to_string()))
        }
        _ => Err(DecodeError::new("send_outbound needs exactly one of `text` or `template`")),
    }
}

/// Contacts one `create_client` may carry (three of a type hold anyway).
const MAX_CREATE_CONTACTS: usize = 32;

/// The operator a command names, within [`limits`].
fn operator_limits(operator: Option<&Operator>) -> Result<(), DecodeError> {
    let Some(op) = operator else { return Ok(()) };
    limits::id("operator.id", &op.id)?;
    limits::opt_value("operator.name", op.name.as_deref())
}

fn client_ref(
    at: &str,
    r: WireRef,
    project: &crate::config::ProjectConfig,
) -> Result<ClientRef, DecodeError> {
    let forms = [
        r.client_id.is_some(),
        r.channel_id.is_some() || r.visitor_id.is_some(),
        r.external_id.is_some(),
        r.appeal_number.is_some(),
    ];
    if forms.iter().filter(|f| **f).count() != 1 {
        return Err(DecodeError::new(format!(
            "`{at}` must hold exactly one of client_id, channel_id+visitor_id, external_id, appeal_number"
        )));
    }
    Ok(match r {
        WireRef { client_id: Some(id), .. } => {
            limits::id(&format!("{at}.client_id"), &id)?;
            ClientRef::Id(id)
        }
        WireRef { external_id: Some(x), .. } => {
            limits::id(&format!("{at}.external_id"), &x)?;
            ClientRef::External(x)
        }
        WireRef { appeal_number: Some(n), .. } => ClientRef::Appeal(n),
        WireRef { channel_id: Some(channel_id), visitor_id: Some(visitor_id), .. } => {
            super::channel(project, &channel_id)?;
            limits::id(&format!("{at}.visitor_id"), &visitor_id)?;
            ClientRef::Visitor { channel_id, visitor_id }
        }

        _ => return Err(DecodeError::new(format!("`{at}` needs both channel_id and visitor_id"))),
    })
}

impl CommandAction {
    /// The command's `type` on the wire.
    pub fn type_name(&self) -> &'static str {
        self.into()
    }
}
