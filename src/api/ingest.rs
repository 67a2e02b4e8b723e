//! `POST /v1/projects/{project}/inputs` (SPEC "Embedded service"): gateways post one input
//! (the contracts' JSON) or up to 1,000 as JSON lines; the answer comes once they are
//! committed, one result per input. Served by `serve`, whose pipeline takes them; every input
//! is bound to the project of the path (one naming another goes to the DLQ).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::write::InputResult;
use super::{auth, project, Api, ApiError, ApiResult, ErrorBody};

/// Inputs one body may hold.
pub const MAX_INPUTS: usize = 1000;
/// The most a body may hold whatever `pipeline.max_input_bytes` allows each input.
const MAX_BODY_BYTES: usize = 64 << 20;

/// The body limit of the ingest endpoint.
pub(super) fn body_limit(max_input_bytes: usize) -> usize {
    max_input_bytes.saturating_mul(MAX_INPUTS).min(MAX_BODY_BYTES).max(max_input_bytes)
}

#[derive(Serialize, ToSchema)]
pub struct IngestAnswer {
    /// One per input of the body, in order.
    results: Vec<InputResult>,
}

#[utoipa::path(
    post,
    path = "/v1/projects/{project}/inputs",
    params(("project" = String, Path)),
    request_body(description = "one input of SPEC \"Contracts\" (a message or a delivery status) sent as application/json, or up to 1,000 as JSON lines (any other content type)", content((String = "application/x-ndjson"), (serde_json::Value = "application/json"))),
    responses(
        (status = 200, body = IngestAnswer, description = "committed: one result per input"),
        (status = 400, body = ErrorBody, description = "a body with no input"),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody, description = "a token without ingest = true"),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "more than 1,000 inputs, a body of one input over pipeline.max_input_bytes, or a body over the limit"),
        (status = 503, body = ErrorBody, description = "this process takes no inputs over HTTP, or is stopping: nothing was applied"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn post(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    project(&api, &headers, &p)?;
    let token = auth::token(&headers, &api.config.api.tokens).ok_or_else(ApiError::unauthorized)?;
    if !token.ingest {
        return Err(ApiError::forbidden("posting inputs needs a token with ingest = true"));
    }
    let limit = body_limit(api.config.pipeline.max_input_bytes);
    let body = body.map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::too_large_body(limit),
        _ => ApiError::bad_request(e.body_text()),
    })?;
    let lines = inputs_of(&headers, &body);
    if lines.is_empty() {
        return Err(ApiError::bad_request("the body holds no input"));
    }
    if lines.len() > MAX_INPUTS {
        return Err(ApiError::too_many(lines.len(), MAX_INPUTS));
    }
    let max_input = api.config.pipeline.max_input_bytes;
    if let [only] = lines.as_slice() {
        if only.len() > max_input {
            return Err(ApiError::too_large_input(only.len(), max_input));
        }
    }
    let Some(sink) = &api.ingest else {
        return Err(ApiError::unavailable(
            "this process takes no inputs over HTTP: `appealflow serve` does; under `run` gateways write to the inbound topic",
        ));
    };
    let results = sink.ingest(&p, lines).await.map_err(|down| ApiError::unavailable(down.0))?;
    Ok(Json(IngestAnswer { results }).into_response())
}

/// The inputs of a body: a body sent as `application/json` is one input, whatever line breaks
/// its JSON holds; any other is JSON lines (blank ones left out).
fn inputs_of(headers: &HeaderMap, body: &[u8]) -> Vec<Vec<u8>> {
    let json = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if json {
        return if body.trim_ascii().is_empty() { vec![] } else { vec![body.trim_ascii().to_vec()] };
    }
    body.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()).map(<[u8]>::to_vec).collect()
}
