//! `POST /v1/projects/{project}/commands` and `GET .../commands/{command_id}` (SPEC "Write
//! API"): a command is read strictly and completed (its id, time, project and operator),
//! handed to the command sink, and answered with its outcome once the pipeline recorded it,
//! or `202 pending` when `wait` ran out first. A body that is not a valid command is a `400`
//! and nothing is submitted.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::views::{AppealSummaryView, ClientSummaryView};
use super::{auth, path_id, Api, ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::appeal::commands::STALE_REVISION;
use crate::config::{ApiToken, TokenOperator};
use crate::emit::{CommandOutcome, OutcomeStatus};

/// `wait` when a request names none, and the most it may name.
const DEFAULT_WAIT: Duration = Duration::from_secs(10);
const MAX_WAIT: Duration = Duration::from_secs(30);
/// A command id is the client's idempotency key: short enough to log and index.
const MAX_COMMAND_ID_CHARS: usize = 128;
/// What a `503` asks the client to wait before trying again (with the same `command_id`).
const RETRY_AFTER_SECONDS: u64 = 2;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct WaitQuery {
    /// How long the answer may wait for the outcome: `0` to `30s` (`500ms`, `5s`, or whole
    /// seconds); by default `10s` for a POST and `0` for a GET.
    wait: Option<String>,
}

/// A command's outcome: applied, or rejected with the reason.
#[derive(Serialize, ToSchema)]
pub struct CommandAnswer {
    command_id: String,
    /// `applied` or `rejected`.
    status: String,
    /// Set when rejected: `stale_revision: ...` (a `409`) or any other reason (a `422`).
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// Set when rejected, as every failure's `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorDetail>,
    /// The events the command caused, in order.
    events: Vec<EventRefView>,
    /// The card it was about, as the command left it.
    client: Option<ClientSummaryView>,
    appeal: Option<AppealSummaryView>,
    /// That card's revision now: the `expected_revision` of the next command on it.
    revision: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct EventRefView {
    event_id: String,
    #[serde(rename = "type")]
    kind: String,
}

/// A command submitted whose outcome is not recorded yet.
#[derive(Serialize, ToSchema)]
pub struct PendingAnswer {
    command_id: String,
    /// `pending`.
    status: String,
}

#[utoipa::path(
    post,
    path = "/v1/projects/{project}/commands",
    params(("project" = String, Path), WaitQuery),
    request_body(content = Object, description = "a command of SPEC \"Contracts\": `type` and its fields; `command_id`, `issued_at`, `project_id` and (with an operator token) `operator` may be left out", content_type = "application/json"),
    responses(
        (status = 200, body = CommandAnswer, description = "applied"),
        (status = 202, body = PendingAnswer, description = "submitted; the outcome is not known yet (see Location)"),
        (status = 400, body = ErrorBody, description = "not a valid command: nothing was submitted"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a token without write = true"),
        (status = 404, body = ErrorBody),
        (status = 409, body = CommandAnswer, description = "rejected: stale_revision"),
        (status = 413, body = ErrorBody),
        (status = 422, body = CommandAnswer, description = "rejected for another reason"),
        (status = 503, body = ErrorBody, description = "the command path is down, or this process has none: nothing was submitted"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn submit(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(project): Path<String>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let token = writer(&api, &headers, &project)?;
    let wait = wait(query)?;
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large(api.config.pipeline.max_input_bytes),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    let now = chrono::Utc::now().timestamp_millis();
    let value = complete(&body, &project, token, now)?;
    let command = crate::decode::command_strict(value.clone(), &api.config, now)
        .map_err(|e| ApiError::bad_request(e.reason))?;
    let id = command.command_id;
    if let Some(first) = api.store.command_outcomes(&project, &[&id]).await?.pop() {
        return Ok(answer(first));
    }
    let Some(sink) = &api.sink else {
        return Err(ApiError::unavailable(
            "this process has no command path: run `appealflow run` with [api] listen, or `appealflow api` \
             with [kafka] set, to submit commands",
        ));
    };
    let ticket = api.watcher.register(&project, &id);
    let payload = serde_json::to_vec(&value).expect("JSON values serialise");
    if let Err(down) = sink.submit(&project, &payload).await {
        tracing::warn!(reason = %down.0, "write API: command not submitted");
        return Err(ApiError::unavailable(format!(
            "the command path is down ({}); nothing was submitted: send it again with command_id {id:?}",
            down.0
        )));
    }
    match api.watcher.wait(ticket, wait).await {
        Some(outcome) => Ok(answer(outcome)),
        None => Ok(pending(&project, &id)),
    }
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/commands/{command_id}",
    params(("project" = String, Path), ("command_id" = String, Path), WaitQuery),
    responses(
        (status = 200, body = CommandAnswer, description = "applied"),
        (status = 202, body = PendingAnswer, description = "no outcome recorded (yet)"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = CommandAnswer, description = "rejected: stale_revision"),
        (status = 422, body = CommandAnswer, description = "rejected for another reason"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn outcome(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> ApiResult {
    super::project(&api, &headers, &project)?;
    // A GET is a look unless it asks to wait (a POST waits by default).
    let wait = match &query {
        Ok(Query(WaitQuery { wait: None })) => Duration::ZERO,
        _ => wait(query)?,
    };
    let id = path_id(&id, "command_id")?;
    if let Some(first) = api.store.command_outcomes(&project, &[id]).await?.pop() {
        return Ok(answer(first));
    }
    if wait.is_zero() {
        return Ok(pending(&project, id));
    }
    let ticket = api.watcher.register(&project, id);
    match api.watcher.wait(ticket, wait).await {
        Some(outcome) => Ok(answer(outcome)),
        None => Ok(pending(&project, id)),
    }
}

/// The token of a request that may submit commands to `project`.
fn writer<'a>(api: &'a Api, headers: &HeaderMap, project: &str) -> Result<&'a ApiToken, ApiError> {
    super::project(api, headers, project)?;
    let token = auth::token(headers, &api.config.api.tokens).ok_or_else(ApiError::unauthorized)?;
    if !token.write {
        return Err(ApiError::forbidden(
            "this token reads only: submitting commands needs a token with write = true",
        ));
    }
    Ok(token)
}

/// `wait` within its bounds.
fn wait(query: Result<Query<WaitQuery>, QueryRejection>) -> Result<Duration, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Some(raw) = q.wait else { return Ok(DEFAULT_WAIT) };
    parse_wait(&raw)
}

/// A `wait` parameter: `0` to `30s`, in seconds or as a duration (`500ms`, `5s`).
pub(super) fn parse_wait(raw: &str) -> Result<Duration, ApiError> {
    let parsed = match raw.parse::<u64>() {
        Ok(seconds) => Some(Duration::from_secs(seconds.min(u64::from(u32::MAX)))),
        Err(_) if raw.len() <= 32 => humantime::parse_duration(raw).ok(),
        Err(_) => None,
    };
    match parsed {
        Some(d) if d <= MAX_WAIT => Ok(d),
        _ => Err(ApiError::bad_request("`wait` must be a duration from 0 to 30s (such as 500ms, 5s or 5)")),
    }
}

/// The body as the command that goes to the sink: read strictly (no duplicate keys, no NUL),
/// with what the API fills in when it is left out (SPEC "Write API"): `project_id` from the
/// path, a fresh `command_id`, `issued_at` the time of receipt, and the token's operator.
fn complete(body: &[u8], project: &str, token: &ApiToken, now: i64) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body).map_err(|_| ApiError::bad_request("the body is not UTF-8"))?;
    let value = crate::decode::limits::parse(text).map_err(|e| ApiError::bad_request(e.reason))?;
    let Value::Object(mut command) = value else {
        return Err(ApiError::bad_request("a command is a JSON object"));
    };
    match command.get("project_id") {
        None => {
            command.insert("project_id".into(), project.into());
        }
        Some(Value::String(p)) if p == project => {}
        Some(_) => return Err(ApiError::bad_request("`project_id` differs from the project of the path")),
    }
    match command.get("command_id") {
        None => {
            command.insert("command_id".into(), uuid::Uuid::new_v4().to_string().into());
        }
        Some(Value::String(id)) if id.chars().count() > MAX_COMMAND_ID_CHARS => {
            return Err(ApiError::bad_request(format!(
                "`command_id` is {} characters, the limit is {MAX_COMMAND_ID_CHARS}",
                id.chars().count()
            )));
        }
        Some(_) => {}
    }
    command.entry("issued_at").or_insert_with(|| crate::model::format_ts(now).into());
    operator(&mut command, token.operator.as_ref())?;
    Ok(Value::Object(command))
}

/// The token's operator is the command's; without one, the command must name its operator.
fn operator(command: &mut Map<String, Value>, fixed: Option<&TokenOperator>) -> Result<(), ApiError> {
    match (fixed, command.get("operator")) {
        (None, None) => Err(ApiError::bad_request(
            "`operator`: missing field (this token acts as no operator, so the command names one: {\"id\", \"name\"})",
        )),
        (None, Some(_)) => Ok(()),
        (Some(op), None) => {
            command.insert("operator".into(), serde_json::to_value(op).expect("operators serialise"));
            Ok(())
        }
        (Some(op), Some(given)) if given.get("id").and_then(Value::as_str) == Some(op.id.as_str()) => Ok(()),
        (Some(_), Some(_)) => {
            Err(ApiError::bad_request("`operator`: this token acts as its own operator; a command may not name another"))
        }
    }
}

/// The answer an outcome gets: `200` applied, `409` stale, `422` any other rejection.
fn answer(outcome: CommandOutcome) -> Response {
    let CommandOutcome { command_id, status, reason, events, client, appeal, revision } = outcome;
    let (code, name, error) = match status {
        OutcomeStatus::Applied => (StatusCode::OK, "applied", None),
        OutcomeStatus::Rejected => {
            let reason = reason.clone().unwrap_or_default();
            let (code, error_code) = if reason.starts_with(STALE_REVISION) {
                (StatusCode::CONFLICT, STALE_REVISION)
            } else {
                (StatusCode::UNPROCESSABLE_ENTITY, "rejected")
            };
            (code, "rejected", Some(ErrorDetail { code: error_code.into(), message: reason }))
        }
    };
    let body = CommandAnswer {
        command_id,
        status: name.into(),
        reason,
        error,
        events: events.into_iter().map(|e| EventRefView { event_id: e.event_id, kind: e.kind }).collect(),
        client: client.map(|c| ClientSummaryView::with_revision(c, revision.unwrap_or_default())),
        appeal: appeal.map(Into::into),
        revision,
    };
    (code, Json(body)).into_response()
}

fn pending(project: &str, id: &str) -> Response {
    let location = format!("/v1/projects/{project}/commands/{}", percent_encode(id));
    let body = PendingAnswer { command_id: id.to_string(), status: "pending".into() };
    (StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response()
}

/// A path segment: everything but unreserved characters percent-encoded.
fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Seconds a `503` asks the client to wait.
pub(super) fn retry_after() -> String {
    RETRY_AFTER_SECONDS.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(operator: Option<TokenOperator>) -> ApiToken {
        ApiToken {
            token: "t".repeat(16),
            projects: vec!["acme".into()],
            write: true,
            operator,
            ingest: false,
        }
    }

    #[test]
    fn what_a_command_leaves_out_is_filled_in_from_the_path_the_clock_and_the_token() {
        let op = TokenOperator { id: "op-7".into(), name: Some("Ivan".into()) };
        let body = br#"{"type": "close_appeal", "appeal_number": 3}"#;
        let value = complete(body, "acme", &token(Some(op)), 0).unwrap();
        assert_eq!(value["project_id"], "acme");
        assert_eq!(value["issued_at"], "1970-01-01T00:00:00Z");
        assert_eq!(value["operator"]["id"], "op-7");
        assert!(uuid::Uuid::parse_str(value["command_id"].as_str().unwrap()).is_ok());
    }

    #[test]
    fn a_command_naming_another_project_or_operator_than_its_token_is_refused() {
        let op = TokenOperator { id: "op-7".into(), name: None };
        let other_project = br#"{"type": "close_appeal", "appeal_number": 3, "project_id": "beta"}"#;
        assert!(complete(other_project, "acme", &token(Some(op.clone())), 0).is_err());
        let other_operator = br#"{"type": "close_appeal", "appeal_number": 3, "operator": {"id": "op-8"}}"#;
        assert!(complete(other_operator, "acme", &token(Some(op)), 0).is_err());
        let no_operator = br#"{"type": "close_appeal", "appeal_number": 3}"#;
        assert!(complete(no_operator, "acme", &token(None), 0).is_err());
    }

    #[test]
    fn a_command_id_of_129_characters_is_refused_and_one_of_128_kept() {
        let body = |n: usize| {
            format!(
                r#"{{"type": "close_appeal", "appeal_number": 3, "operator": {{"id": "o"}}, "command_id": "{}"}}"#,
                "c".repeat(n)
            )
        };
        assert!(complete(body(129).as_bytes(), "acme", &token(None), 0).is_err());
        assert!(complete(body(128).as_bytes(), "acme", &token(None), 0).is_ok());
    }

    #[test]
    fn wait_takes_durations_up_to_thirty_seconds_and_nothing_else() {
        let q = |w: &str| wait(Ok(Query(WaitQuery { wait: Some(w.into()) })));
        assert_eq!(q("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(q("5").unwrap(), Duration::from_secs(5));
        assert_eq!(q("0").unwrap(), Duration::ZERO);
        for bad in ["1e9", "31s", "-1", "99999999999999999999", "soon"] {
            assert!(q(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_location_escapes_what_a_path_segment_cannot_hold() {
        assert_eq!(percent_encode("cmd 1/é"), "cmd%201%2F%C3%A9");
    }
}
