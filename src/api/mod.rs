//! The read and write API (SPEC "Read API", "Write API") beside the pipeline. Reads come from
//! what the batches committed, through a store opened as a reader (a SQLite file read-only),
//! so `replay` or `run` keep writing while it serves. Writes (`commands`) are handed to the
//! one command sink and answered from the outcome the pipeline stored with their effect
//! (`write`): the API never reaches into the pipeline. The operator console (`console`, at
//! `/`) is the API's first client and uses only `/v1`.
//!
//! Every response is JSON; every failure is `{"error": {"code", "message"}}` with a 400, 401,
//! 403, 404 or 413 (a token that does not cover a project gets the 404 of a project that does
//! not exist); a store failure or a command path that is down is a 503 and is logged.

mod auth;
mod commands;
mod console;
mod cursor;
mod feed;
mod ingest;
mod listen;
mod merges;
mod project;
mod scenarios;
pub mod search;
pub mod views;
pub mod write;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::config::Config;
use crate::model::Millis;
use crate::store::{Store, StoreError};

/// What every handler reads.
#[derive(Clone)]
pub struct Api {
    config: Arc<Config>,
    store: Store,
    /// Where commands go; none: the API only reads (commands are `503`).
    sink: Option<Arc<dyn write::CommandSink>>,
    /// Where posted inputs go (`serve`); none: the ingest endpoint is `503`.
    ingest: Option<Arc<dyn write::InputSink>>,
    watcher: write::Watcher,
    feed_head: feed::FeedHead,
}

/// How the API acts (SPEC "Write API"): the command sink, and the commit signal of a
/// pipeline running in the same process. The default only reads.
#[derive(Clone, Default)]
pub struct Writes {
    pub sink: Option<Arc<dyn write::CommandSink>>,
    pub signal: Option<write::CommitSignal>,
    /// `serve`'s pipeline, for the ingest endpoint.
    pub ingest: Option<Arc<dyn write::InputSink>>,
}

/// A failed request, as the client sees it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn forbidden(message: &str) -> Self {
        ApiError { status: StatusCode::FORBIDDEN, code: "forbidden", message: message.into() }
    }

    fn too_many(inputs: usize, max: usize) -> Self {
        let message = format!("the body holds {inputs} inputs, the most one may hold is {max}");
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, code: "too_large", message }
    }

    fn too_large(limit: usize) -> Self {
        let message = format!("the body is over pipeline.max_input_bytes ({limit} bytes)");
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, code: "too_large", message }
    }

    /// An ingest body over what it may hold: 1,000 inputs of `pipeline.max_input_bytes`, at
    /// most 64 MiB.
    fn too_large_body(limit: usize) -> Self {
        let message = format!(
            "the body is over {limit} bytes (1,000 inputs of pipeline.max_input_bytes, at most 64 MiB)"
        );
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, code: "too_large", message }
    }

    /// A body of one input over `pipeline.max_input_bytes`.
    fn too_large_input(size: usize, max: usize) -> Self {
        let message = format!("the input is {size} bytes, over pipeline.max_input_bytes ({max} bytes)");
        ApiError { status: StatusCode::PAYLOAD_TOO_LARGE, code: "too_large", message }
    }

    /// A `422`: what was asked would be refused (the reason says why).
    fn rejected(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, code: "rejected", message: message.into() }
    }

    /// A `409`: the cards named are not what the request takes them for (one card already).
    fn conflict(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::CONFLICT, code: "conflict", message: message.into() }
    }

    /// A `503` with `Retry-After`: nothing was done, the same request may be sent again.
    fn unavailable(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::SERVICE_UNAVAILABLE, code: "unavailable", message: message.into() }
    }
}

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }

    fn not_found(what: &str) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: format!("no such {what}") }
    }

    fn unauthorized() -> Self {
        let message = "send Authorization: Bearer <token> with a token of [[api.tokens]]".into();
        ApiError { status: StatusCode::UNAUTHORIZED, code: "unauthorized", message }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "read API: store failed");
        ApiError::unavailable("the store did not answer; try again")
    }
}

/// Every failure's body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `too_large`, `unavailable`;
    /// for a rejected command `stale_revision` or `rejected`.
    code: String,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            let retry = commands::retry_after().parse().expect("a number is a header value");
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, retry);
        }
        response
    }
}

#[derive(Serialize, ToSchema)]
pub struct SearchResult {
    client: views::ClientSummaryView,
    matched: Vec<search::Matched>,
    score: f64,
}

#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    clients: Vec<SearchResult>,
}

#[derive(Serialize, ToSchema)]
pub struct TimelineResponse {
    appeals: Vec<views::TimelineEntry>,
    /// The cursor of the next page (`before`), or null.
    next: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MergesResponse {
    merges: Vec<views::MergeView>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: String,
}

/// The OpenAPI 3.1 description of the API, generated from the handlers and their types.
#[derive(OpenApi)]
#[openapi(
    info(title = "appealflow API", description = "SPEC \"Read API\": cards, search, timelines, appeals, merge ledgers; \"Write API\": operator commands and their outcomes; \"Event feed\": output records over HTTP; \"Embedded service\": posted inputs"),
    paths(health, search_clients, card, timeline, merges, appeal, commands::submit, commands::outcome, merges::preview, ingest::post, feed::feed, scenarios::report, project::show),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

type ApiResult = Result<Response, ApiError>;

/// The API's routes over a store. Starts the write API's outcome watcher (so it is called
/// inside a Tokio runtime).
pub fn router(config: Arc<Config>, store: Store, writes: Writes) -> Router {
    let feed_head = feed::FeedHead::spawn(store.clone(), writes.signal.as_ref());
    let watcher = write::Watcher::spawn(store.clone(), writes.signal);
    // A body is one command: more than an input may hold is refused before it is read whole.
    let body_limit = axum::extract::DefaultBodyLimit::max(config.pipeline.max_input_bytes);
    let ingest_limit =
        axum::extract::DefaultBodyLimit::max(ingest::body_limit(config.pipeline.max_input_bytes));
    let api = Api { config, store, sink: writes.sink, ingest: writes.ingest, watcher, feed_head };
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(|| async { Json(ApiDoc::openapi()) }))
        .route("/v1/projects/{project}", get(project::show))
        .route("/v1/projects/{project}/clients", get(search_clients))
        .route("/v1/projects/{project}/clients/{client_id}", get(card))
        .route("/v1/projects/{project}/clients/{client_id}/timeline", get(timeline))
        .route("/v1/projects/{project}/clients/{client_id}/merges", get(merges))
        .route("/v1/projects/{project}/appeals/{number}", get(appeal))
        .route("/v1/projects/{project}/commands", post(commands::submit).layer(body_limit))
        .route("/v1/projects/{project}/commands/{command_id}", get(commands::outcome))
        .route("/v1/projects/{project}/merges/preview", post(merges::preview).layer(body_limit))
        .route("/v1/projects/{project}/inputs", post(ingest::post).layer(ingest_limit))
        .route("/v1/projects/{project}/feed", get(feed::feed))
        .route("/v1/projects/{project}/scenarios", get(scenarios::report))
        .merge(console::routes())
        .fallback(|| async { ApiError::not_found("endpoint") })
        .with_state(api)
}

/// Serves the API on `addr` until the process ends; returns the address bound.
pub async fn serve(
    addr: &str,
    config: Arc<Config>,
    store: Store,
    writes: Writes,
) -> anyhow::Result<SocketAddr> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("api.listen {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let listener = listen::Bounded::new(listener, config.api.max_connections, config.api.idle_timeout);
    let app = router(config, store, writes);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "read API stopped");
        }
    });
    Ok(local)
}

fn now() -> Millis {
    chrono::Utc::now().timestamp_millis()
}

/// Checks the token and the project; the project's config.
fn project<'a>(
    api: &'a Api,
    headers: &HeaderMap,
    project: &str,
) -> Result<&'a crate::config::ProjectConfig, ApiError> {
    let token = auth::token(headers, &api.config.api.tokens).ok_or_else(ApiError::unauthorized)?;
    match api.config.projects.iter().find(|p| p.id == project) {
        Some(p) if token.covers(project) => Ok(p),
        _ => Err(ApiError::not_found("project")),
    }
}

/// An id from a path: bounded, no control characters (ids never hold them).
fn path_id<'a>(id: &'a str, what: &str) -> Result<&'a str, ApiError> {
    if id.is_empty() || id.len() > 512 || id.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{what} must be 1 to 512 characters without control characters"
        )));
    }
    Ok(id)
}

/// The live card an id names, and the id asked for when it was an absorbed card's.
async fn live_card(
    api: &Api,
    project: &str,
    id: &str,
) -> Result<(crate::model::Client, Option<String>), ApiError> {
    let id = path_id(id, "client_id")?;
    let card = api.store.project_client(project, id).await?.ok_or_else(|| ApiError::not_found("client"))?;
    let resolved_from = (card.id != id).then(|| id.to_string());
    Ok((card, resolved_from))
}

#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health)))]
async fn health() -> Json<Health> {
    Json(Health { status: "ok".into() })
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/clients/{client_id}",
    params(("project" = String, Path), ("client_id" = String, Path, description = "a card's id; an absorbed card's answers with its survivor")),
    responses((status = 200, body = views::CardView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn card(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> ApiResult {
    let config = project(&api, &headers, &p)?;
    let (card, resolved_from) = live_card(&api, &p, &id).await?;
    let absorbed = api.store.absorbed_ids(&card.id).await?;
    let mut view = views::card(&card, config, absorbed, now());
    view.resolved_from = resolved_from;
    Ok(Json(view).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TimelineQuery {
    /// 1 to 100, default 50.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    before: Option<String>,
}

/// `limit` within 1..=max, or the default.
fn limit(raw: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    let Some(raw) = raw else { return Ok(default) };
    match raw.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(format!("limit must be a whole number from 1 to {max}"))),
    }
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/clients/{client_id}/timeline",
    params(("project" = String, Path), ("client_id" = String, Path), TimelineQuery),
    responses((status = 200, body = TimelineResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn timeline(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
    query: Result<Query<TimelineQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    project(&api, &headers, &p)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = limit(q.limit.as_deref(), 50, 100)?;
    let before = q.before.as_deref().map(cursor::decode_appeal).transpose()?;
    let (card, _) = live_card(&api, &p, &id).await?;
    let mut page = api.store.timeline(&p, &card.id, before, limit + 1).await?;
    let next = (page.len() > limit).then(|| {
        page.truncate(limit);
        page.last().map(|a| cursor::encode_appeal(a.opened_at, a.number))
    });
    let appeals = page.iter().map(views::timeline_entry).collect();
    Ok(Json(TimelineResponse { appeals, next: next.flatten() }).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/clients/{client_id}/merges",
    params(("project" = String, Path), ("client_id" = String, Path)),
    responses((status = 200, body = MergesResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn merges(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((p, id)): Path<(String, String)>,
) -> ApiResult {
    project(&api, &headers, &p)?;
    let (card, _) = live_card(&api, &p, &id).await?;
    let ledger = api.store.merge_ledger(&p, &card.id).await?;
    let merges = ledger.into_iter().map(views::merge).collect();
    Ok(Json(MergesResponse { merges }).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AppealQuery {
    /// 1 to 500, default 500.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/appeals/{number}",
    params(("project" = String, Path), ("number" = i64, Path), AppealQuery),
    responses((status = 200, body = views::AppealView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn appeal(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((p, number)): Path<(String, String)>,
    query: Result<Query<AppealQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    project(&api, &headers, &p)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let number: i64 =
        number.parse().map_err(|_| ApiError::bad_request("an appeal number is a whole number"))?;
    let limit = limit(q.limit.as_deref(), 500, 500)?;
    let after = q.after.as_deref().map(cursor::decode_message).transpose()?;
    let appeal =
        api.store.appeal_by_number(&p, number).await?.ok_or_else(|| ApiError::not_found("appeal"))?;
    let client = api
        .store
        .project_client(&p, &appeal.client_id)
        .await?
        .ok_or_else(|| ApiError::not_found("client"))?;
    let all = api.store.appeal_messages(&p, &appeal.id).await?;
    let key = |(at, m): &(Millis, crate::model::Message)| (m.seq.unwrap_or(0), *at, m.id.clone());
    let start = after.map_or(0, |after| all.partition_point(|item| key(item) <= after));
    let page: Vec<_> = all.into_iter().skip(start).take(limit + 1).collect();
    let next = (page.len() > limit).then(|| cursor::encode_message(&key(&page[limit - 1])));
    let messages = page.into_iter().take(limit).map(|(_, m)| views::message(m)).collect();
    Ok(Json(views::appeal(&appeal, &client, messages, next)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SearchQuery {
    /// 1 to 256 characters: a name, phone, e-mail, identifier or field value.
    q: Option<String>,
    /// 1 to 20, default 20.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/clients",
    params(("project" = String, Path), SearchQuery),
    responses((status = 200, body = SearchResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = []))
)]
async fn search_clients(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(p): Path<String>,
    query: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let config = project(&api, &headers, &p)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let q = query.q.as_deref().map(str::trim).unwrap_or_default();
    if q.is_empty() || q.chars().count() > 256 || q.chars().any(char::is_control) {
        return Err(ApiError::bad_request("q must be 1 to 256 characters without control characters"));
    }
    let limit = limit(query.limit.as_deref(), 20, 20)?;
    let found = search::search(&api.store, config, q, limit).await?;
    let ids: Vec<&str> = found.iter().map(|f| f.client_id.as_str()).collect();
    let mut cards: HashMap<String, crate::model::Client> =
        api.store.project_clients(&p, &ids).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
    // The index holds live cards only; a card absorbed since the lookup is left out, never shown.
    let clients = found
        .into_iter()
        .filter_map(|f| {
            let card = cards.remove(&f.client_id)?;
            Some(SearchResult {
                client: views::ClientSummaryView::of(&card),
                matched: f.matched,
                score: f.score,
            })
        })
        .collect();
    Ok(Json(SearchResponse { clients }).into_response())
}
