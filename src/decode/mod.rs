//! Decode: raw bytes → a typed, validated input, or a precise reason for the DLQ.
//!
//! Everything a later stage may rely on is checked here (size, UTF-8, JSON, shape, timestamps,
//! known project and channel, content rules), so identify/matching/appeal never meet a
//! malformed input. Decode errors are always poison: retrying the same bytes cannot help.

mod command;
pub mod limits;
mod wire;

use std::collections::BTreeMap;

use crate::config::{Config, ProjectConfig};
use crate::model::{parse_ts, Attachment, ContentKind, DeliveryStatus, Millis};

pub use command::{
    ClientRef, Command, CommandAction, ContactSpec, KeepName, Operator, Scope, Template, COMMAND_TYPES,
};

/// A validated input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Message(InboundMessage),
    Status(StatusUpdate),
    Command(Command),
}

impl Input {
    pub fn project_id(&self) -> &str {
        match self {
            Input::Message(m) => &m.project_id,
            Input::Status(s) => &s.project_id,
            Input::Command(c) => &c.project_id,
        }
    }

    /// Event time the input carries; it drives the partition's clock.
    pub fn event_time(&self) -> Millis {
        match self {
            Input::Message(m) => m.sent_at,
            Input::Status(s) => s.at,
            Input::Command(c) => c.issued_at,
        }
    }

    /// The id a repeated input is recognised by. A delivery status has none of its own: its
    /// fields are its identity, so one that went to the DLQ (its message unknown then) stays
    /// there when the stream is replayed after the message arrived.
    pub fn dedupe_id(&self) -> Option<String> {
        match self {
            Input::Message(m) => Some(format!("m:{}", m.message_id)),
            Input::Status(s) => Some(format!(
                "s:{}:{}:{}:{}",
                s.channel_id,
                s.message_id,
                serde_json::to_value(s.status).ok()?.as_str()?,
                s.at
            )),
            Input::Command(c) => Some(format!("c:{}", c.command_id)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InboundMessage {
    pub message_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub sent_at: Millis,
    pub visitor: VisitorInfo,
    pub content: Content,
}

/// What the gateway knows about the sender. Values are as received; identify normalises them.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VisitorInfo {
    pub id: String,
    pub name: Option<String>,
    pub external_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub kind: ContentKind,
    pub text: Option<String>,
    pub attachment: Option<Attachment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StatusUpdate {
    pub message_id: String,
    pub project_id: String,
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub at: Millis,
}

/// Why an input went to the DLQ, and the project it named if that much could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub reason: String,
    pub project_id: Option<String>,
}

impl DecodeError {
    fn new(reason: impl Into<String>) -> Self {
        Self { reason: reason.into(), project_id: None }
    }

    fn in_project(mut self, project: &str) -> Self {
        self.project_id = Some(project.to_string());
        self
    }
}

/// An input posted to one project's endpoint that names another project: refused, and
/// dead-lettered in the project it was posted to, so no token reaches another's data.
pub fn other_project(named: &str, posted_to: &str) -> DecodeError {
    DecodeError::new(format!(
        "project_id {:?} is not the project this input was posted to",
        limits::shorten(named)
    ))
    .in_project(posted_to)
}

/// Decodes one raw input against the configuration; `now` is the wall clock (event time may
/// not run ahead of it by more than `pipeline.max_future`).
/// The `project_id` of an input at a glance, without decoding it: what `run` groups
/// partitions by before the pipeline decodes (a wrong answer costs a wait on a lock, never
/// correctness: the batch locks the projects its decoded inputs name).
pub fn project_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Glance<'a> {
        #[serde(borrow)]
        project_id: Option<std::borrow::Cow<'a, str>>,
    }
    let glance: Glance<'_> = serde_json::from_slice(bytes).ok()?;
    glance.project_id.map(std::borrow::Cow::into_owned)
}

pub fn decode(bytes: &[u8], config: &Config, now: Millis) -> Result<Input, DecodeError> {
    let limit = config.pipeline.max_input_bytes;
    if bytes.len() > limit {
        return Err(oversized(bytes.len() as u64, limit));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| DecodeError::new(format!("not UTF-8: invalid byte at {}", e.valid_up_to())))?;
    let value = limits::parse(text)?;
    let kind = value
        .get("type")
        .ok_or_else(|| DecodeError::new("missing field `type`"))?
        .as_str()
        .ok_or_else(|| DecodeError::new("`type` must be a string"))?
        .to_string();
    let project_hint = value.get("project_id").and_then(|v| v.as_str()).map(str::to_string);
    let result = match kind.as_str() {
        "message" => wire::message(value).and_then(|m| message(m, config)),
        "status" => wire::status(value).and_then(|s| status(s, config)),
        t if COMMAND_TYPES.contains(&t) => command::decode(value, config).map(Input::Command),
        other => Err(DecodeError::new(format!(
            "unknown input type {:?}: known types are message, status, {}",
            limits::shorten(other),
            COMMAND_TYPES.join(", ")
        ))),
    };
    result.and_then(|input| not_in_the_future(input, config, now)).map_err(|mut e| {
        if e.project_id.is_none() {
            e.project_id = project_hint.filter(|p| config.project(p).is_some());
        }
        e
    })
}

/// A command of the write API, read strictly: no field the contract does not name, and not
/// dated more than `pipeline.max_future` ahead of `now`.
pub fn command_strict(
    value: serde_json::Value,
    config: &Config,
    now: Millis,
) -> Result<Command, DecodeError> {
    let command = command::decode_strict(value, config)?;
    match not_in_the_future(Input::Command(command), config, now)? {
        Input::Command(command) => Ok(command),
        _ => unreachable!("a command stays a command"),
    }
}

/// SPEC identity rule 7: one input dated years ahead would move its partition's clock there
/// and close every open appeal for inactivity at the next input. It moves no clock: DLQ.
fn not_in_the_future(input: Input, config: &Config, now: Millis) -> Result<Input, DecodeError> {
    let max = config.pipeline.max_future;
    let limit = now.saturating_add(i64::try_from(max.as_millis()).unwrap_or(i64::MAX));
    if input.event_time() <= limit {
        return Ok(input);
    }
    let field = match &input {
        Input::Message(_) => "sent_at",
        Input::Status(_) => "at",
        Input::Command(_) => "issued_at",
    };
    Err(DecodeError::new(format!(
        "{field} is in the future: {} is more than pipeline.max_future ({}) after the wall clock ({})",
        crate::model::format_ts(input.event_time()),
        humantime::format_duration(max),
        crate::model::format_ts(now),
    ))
    .in_project(input.project_id()))
}

/// The reason of an input over `pipeline.max_input_bytes`.
pub fn oversized(size: u64, limit: usize) -> DecodeError {
    DecodeError::new(format!("input of {size} bytes exceeds pipeline.max_input_bytes ({limit})"))
}

/// Checks that the project exists and returns its config.
pub(crate) fn project<'a>(config: &'a Config, id: &str) -> Result<&'a ProjectConfig, DecodeError> {
    config.project(id).ok_or_else(|| DecodeError::new(format!("unknown project {:?}", limits::shorten(id))))
}

/// Checks that the channel belongs to the project.
pub(crate) fn channel(project: &ProjectConfig, id: &str) -> Result<(), DecodeError> {
    match project.channel(id) {
        Some(_) => Ok(()),
        None => Err(DecodeError::new(format!(
            "unknown channel {:?} in project {:?}",
            limits::shorten(id),
            project.id
        ))
        .in_project(&project.id)),
    }
}

pub(crate) fn timestamp(field: &str, text: &str) -> Result<Millis, DecodeError> {
    parse_ts(text).map_err(|e| DecodeError::new(format!("`{field}`: {text:?} is {e}")))
}

pub(crate) fn non_empty(field: &str, value: &str) -> Result<(), DecodeError> {
    if value.trim().is_empty() {
        Err(DecodeError::new(format!("`{field}` must not be empty")))
    } else {
        Ok(())
    }
}

fn message(m: wire::Message, config: &Config) -> Result<Input, DecodeError> {
    let project = project(config, &m.project_id)?;
    let in_project = |e: DecodeError| e.in_project(&project.id);
    channel(project, &m.channel_id)?;
    visitor_limits(&m).map_err(in_project)?;
    let sent_at = timestamp("sent_at", &m.sent_at).map_err(in_project)?;
    let content = content(m.content).map_err(in_project)?;
    let fields = fields(m.visitor.fields).map_err(in_project)?;
    let visitor = VisitorInfo {
        id: m.visitor.id,
        name: m.visitor.name.filter(|n| !n.trim().is_empty()),
        external_id: m.visitor.external_id.filter(|x| !x.trim().is_empty()),
        phone: m.visitor.phone.filter(|p| !p.trim().is_empty()),
        email: m.visitor.email.filter(|e| !e.trim().is_empty()),
        fields,
    };
    Ok(Input::Message(InboundMessage {
        message_id: m.message_id,
        project_id: m.project_id,
        channel_id: m.channel_id,
        sent_at,
        visitor,
        content,
    }))
}

/// Every id and value of a message within [`limits`].
fn visitor_limits(m: &wire::Message) -> Result<(), DecodeError> {
    let v = &m.visitor;
    limits::id("message_id", &m.message_id)?;
    limits::id("visitor.id", &v.id)?;
    limits::opt_id("visitor.external_id", v.external_id.as_deref().filter(|x| !x.trim().is_empty()))?;
    limits::opt_value("visitor.name", v.name.as_deref())?;
    limits::opt_value("visitor.phone", v.phone.as_deref())?;
    limits::opt_value("visitor.email", v.email.as_deref())?;
    if v.fields.len() > limits::MAX_FIELDS {
        return Err(DecodeError::new(format!(
            "`visitor.fields` has {} fields, the limit is {}",
            v.fields.len(),
            limits::MAX_FIELDS
        )));
    }
    for (key, value) in &v.fields {
        limits::id("visitor.fields", key)?;
        if let Some(text) = value.as_str() {
            limits::value(&format!("visitor.fields.{}", limits::shorten(key)), text)?;
        }
    }
    Ok(())
}

/// Custom fields must be scalars; numbers and booleans are kept as their text.
fn fields(raw: BTreeMap<String, serde_json::Value>) -> Result<BTreeMap<String, String>, DecodeError> {
    raw.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            serde_json::Value::Number(n) => Ok((k, n.to_string())),
            serde_json::Value::Bool(b) => Ok((k, b.to_string())),
            _ => Err(DecodeError::new(format!("`visitor.fields.{k}` must be a string, number or boolean"))),
        })
        .collect()
}

fn content(c: wire::Content) -> Result<Content, DecodeError> {
    limits::opt_text("content.text", c.text.as_deref())?;
    if let Some(a) = &c.attachment {
        limits::value("content.attachment.url", &a.url)?;
        limits::opt_value("content.attachment.mime_type", a.mime_type.as_deref())?;
        limits::opt_value("content.attachment.file_name", a.file_name.as_deref())?;
    }
    match c.kind {
        ContentKind::Text => {
            let text = c.text.filter(|t| !t.is_empty());
            if text.is_none() {
                return Err(DecodeError::new("`content.text` is required for text content"));
            }
            Ok(Content { kind: ContentKind::Text, text, attachment: c.attachment })
        }
        kind => {
            let Some(attachment) = c.attachment else {
                return Err(DecodeError::new(format!(
                    "`content.attachment` is required for {} content",
                    serde_json::to_value(kind).unwrap().as_str().unwrap_or("non-text")
                )));
            };
            non_empty("content.attachment.url", &attachment.url)?;
            let kind = if kind == ContentKind::Photo && !is_supported_photo(&attachment) {
                ContentKind::File
            } else {
                kind
            };
            Ok(Content { kind, text: c.text, attachment: Some(attachment) })
        }
    }
}

/// Operator apps render JPEG, GIF, TIFF and PNG inline; any other picture is offered as a file.
pub fn is_supported_photo(attachment: &Attachment) -> bool {
    const MIMES: [&str; 5] = ["image/jpeg", "image/jpg", "image/gif", "image/tiff", "image/png"];
    const EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "gif", "tif", "tiff", "png"];
    if let Some(mime) = &attachment.mime_type {
        return MIMES.contains(&mime.trim().to_ascii_lowercase().as_str());
    }
    let name = attachment.file_name.as_deref().unwrap_or(&attachment.url);
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str()))
}

fn status(s: wire::Status, config: &Config) -> Result<Input, DecodeError> {
    let project = project(config, &s.project_id)?;
    channel(project, &s.channel_id)?;
    limits::id("message_id", &s.message_id).map_err(|e| e.in_project(&project.id))?;

    let at = timestamp("at", &s.at).map_err(|e| e.in_project(&project.id))?;
    Ok(Input::Status(StatusUpdate {
        message_id: s.message_id,
        project_id: s.project_id,
        channel_id: s.channel_id,
        status: s.status,
        at,
    }))
}

#[cfg(test)]
mod tests;
