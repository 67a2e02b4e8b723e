//! Operator and API commands (SPEC "Command"). Every command type decodes, with its fields
//! checked; whether it can apply (does appeal 17 exist?) is the appeal stage's question.

use serde::Deserialize;

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
    /// The revision the operator saw of the card the command is about (SPEC identity rule
    /// 10): the command applies only while the card is still at it.
    pub expected_revision: Option<u64>,
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
        scope: Scope,
    },
    CommentAppeal {
        appeal_number: i64,
        text: String,
        scope: Scope,
    },
    IdentifyClient {
        appeal_number: i64,
        identifier: String,
        value: String,
    },
    SetClientField {
        client: ClientRef,
        field: String,
        value: String,
    },
    AddContact {
        client: ClientRef,
        contact_type: String,
        value: String,
    },
    RemoveContact {
        client: ClientRef,
        contact_type: String,
        value: String,
    },
    RenameClient {
        client: ClientRef,
        name: String,
    },
    CreateClient {
        name: String,
        contacts: Vec<ContactSpec>,
    },
    MergeClients {
        target: ClientRef,
        source: ClientRef,
        keep_name_from: KeepName,
        /// The revisions a merge preview showed: the merge applies only to those cards.
        target_revision: Option<u64>,
        source_revision: Option<u64>,
    },
    SendOutbound {
        client: ClientRef,
        channel_id: String,
        text: Option<String>,
        template: Option<Template>,
    },
    StartScenario {
        appeal_number: i64,
        scenario_id: String,
    },
    CommentClient {
        client: ClientRef,
        text: String,
    },
    TagClient {
        client: ClientRef,
        tag: String,
    },
    EditContact {
        client: ClientRef,
        contact_type: String,
        old_value: String,
        value: String,
    },
    /// Undoes one entry of the card's merge ledger (SPEC "Undoing a merge").
    SplitClient {
        client: ClientRef,
        merge_id: String,
    },
    /// Lifts the block a split left between two cards.
    AllowMerge {
        client: ClientRef,
        other: ClientRef,
    },
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
    #[serde(default)]
    expected_revision: Option<u64>,
}

/// The fields every command may carry besides its own (`Common`'s, and `type`).
const COMMON_FIELDS: &[&str] = &["command_id", "project_id", "issued_at", "operator", "expected_revision"];

#[derive(Deserialize)]
struct WireRef {
    client_id: Option<String>,
    channel_id: Option<String>,
    visitor_id: Option<String>,
    external_id: Option<String>,
    appeal_number: Option<i64>,
}

/// A command's own fields by its `type`. Read as an externally tagged enum (`{type: {...}}`,
/// see [`wire`]) so that every field it does not know can be listed (strict decoding).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
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
        #[serde(default)]
        target_revision: Option<u64>,
        #[serde(default)]
        source_revision: Option<u64>,
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
    SplitClient {
        client: WireRef,
        merge_id: String,
    },
    AllowMerge {
        client: WireRef,
        other: WireRef,
    },
}

pub fn decode(value: serde_json::Value, config: &Config) -> Result<Command, DecodeError> {
    decode_with(value, config, None)
}

/// Decodes a command that must hold no field the contract does not name (the write API: an
/// operator app's typo is a `400`, not a field silently dropped). Topics stay lenient:
/// gateways may extend the contract before we do.
pub fn decode_strict(value: serde_json::Value, config: &Config) -> Result<Command, DecodeError> {
    let mut unknown = Vec::new();
    let command = decode_with(value, config, Some(&mut unknown))?;
    match unknown.first() {
        None => Ok(command),
        Some(field) => Err(DecodeError::new(format!("`{}`: unknown field", limits::shorten(field)))
            .in_project(&command.project_id)),
    }
}

fn decode_with(
    value: serde_json::Value,
    config: &Config,
    unknown: Option<&mut Vec<String>>,
) -> Result<Command, DecodeError> {
    let mut ignored = Vec::new();
    let common: Common = typed_listing(value.clone(), "", &mut ignored)?;
    let project = project(config, &common.project_id)?;
    let located = |e: DecodeError| DecodeError { project_id: Some(project.id.clone()), ..e };
    limits::id("command_id", &common.command_id).map_err(located)?;
    operator_limits(common.operator.as_ref()).map_err(located)?;
    let issued_at = timestamp("issued_at", &common.issued_at).map_err(located)?;
    let mut wire_ignored = Vec::new();
    let wire = wire(value, &mut wire_ignored).map_err(located)?;
    let action = action(wire, project).map_err(located)?;
    revisions(common.expected_revision, &action).map_err(located)?;
    if let Some(unknown) = unknown {
        // `Common` skips the command's own fields and `Wire` the common ones: a field is
        // unknown when neither reads it.
        let operator_fields = ignored.into_iter().filter(|p| p.starts_with("operator."));
        let own_fields = wire_ignored.into_iter().filter(|p| {
            let top = p.split('.').next().unwrap_or_default();
            !COMMON_FIELDS.contains(&top)
        });
        unknown.extend(operator_fields.chain(own_fields));
    }
    Ok(Command {
        command_id: common.command_id,
        project_id: common.project_id,
        issued_at,
        operator: common.operator,
        expected_revision: common.expected_revision,
        action,
    })
}

/// A command's own fields: `{"type": T, ...}` read as `Wire`'s variant `T`, the paths of
/// the fields it does not read added to `ignored`, reasons naming fields as the input does
/// (`appeal_number: ...`, not `close_appeal.appeal_number: ...`).
fn wire(mut value: serde_json::Value, ignored: &mut Vec<String>) -> Result<Wire, DecodeError> {
    let object = value.as_object_mut().ok_or_else(|| DecodeError::new("a command is a JSON object"))?;
    let kind = match object.remove("type") {
        Some(serde_json::Value::String(kind)) => kind,
        _ => return Err(DecodeError::new("`type` must be a string")),
    };
    let prefix = format!("{kind}.");
    let tagged = serde_json::Value::Object(serde_json::Map::from_iter([(kind, value)]));
    let mut paths = Vec::new();
    let wire = typed_listing(tagged, &prefix, &mut paths)?;
    ignored.extend(paths);
    Ok(wire)
}

/// Like `wire::typed`, listing the paths of the fields it skipped, each without `prefix`.
fn typed_listing<T: serde::de::DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
    ignored: &mut Vec<String>,
) -> Result<T, DecodeError> {
    let strip = |path: String| path.strip_prefix(prefix).map(str::to_string).unwrap_or(path);
    let mut skipped = Vec::new();
    // serde_ignored writes an `Option`'s inside as a `?` segment; inputs name no such level.
    let mut note = |path: serde_ignored::Path<'_>| {
        let segments: Vec<String> =
            path.to_string().split('.').filter(|s| *s != "?").map(str::to_string).collect();
        skipped.push(segments.join("."));
    };
    let de = serde_ignored::Deserializer::new(value, &mut note);
    let result = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = strip(e.path().to_string());
        let inner = e.into_inner().to_string();
        let whole = path == "." || path.is_empty() || format!("{path}.") == prefix;
        DecodeError::new(if whole { inner } else { format!("`{path}`: {inner}") })
    });
    ignored.extend(skipped.into_iter().map(strip));
    result
}

/// `expected_revision` names the card a command is about; a merge names two cards, and
/// `create_client` none yet.
fn revisions(expected: Option<u64>, action: &CommandAction) -> Result<(), DecodeError> {
    match (expected, action) {
        (Some(_), CommandAction::CreateClient { .. }) => Err(DecodeError::new(
            "`expected_revision`: create_client makes a new card, which has no revision yet",
        )),
        (Some(_), CommandAction::MergeClients { .. }) => Err(DecodeError::new(
            "`expected_revision`: merge_clients names two cards: use target_revision and source_revision",
        )),
        _ => Ok(()),
    }
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
        Wire::MergeClients { target, source, keep_name_from, target_revision, source_revision } => {
            A::MergeClients {
                target: client("target", target)?,
                source: client("source", source)?,
                keep_name_from,
                target_revision,
                source_revision,
            }
        }
        Wire::SplitClient { client: r, merge_id } => {
            limits::id("merge_id", &merge_id)?;
            A::SplitClient { client: client("client", r)?, merge_id }
        }
        Wire::AllowMerge { client: r, other } => {
            A::AllowMerge { client: client("client", r)?, other: client("other", other)? }
        }
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
