//! `GET /v1/projects/{project}/feed` (SPEC "Event feed"): a project's output records of one
//! topic in commit order after a cursor, exactly as written to the topic, long-polling while
//! there is none. Gateways without Kafka deliver `outbound` from it; the console follows a
//! card from it.
//!
//! Waiting readers do not each poll the store: they wait on one commit counter, bumped by the
//! pipeline when it runs in this process, and by one task that reads the feed's head while
//! anyone waits, for what other processes commit (`api` beside a writer, other `run`s).

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::{watch, Semaphore};
use utoipa::{IntoParams, ToSchema};

use super::write::CommitSignal;
use super::{limit, project, Api, ApiError, ApiResult, ErrorBody, ErrorDetail};
use crate::emit::Topic;
use crate::store::{FeedCursor, FeedRead, Store};

/// How often the head task reads the store while readers wait and no signal comes.
const POLL: Duration = Duration::from_millis(100);

/// Readers that may wait at once; more are answered at once, as with `wait=0`.
const MAX_WAITING: usize = 1024;

/// What waiting readers wait on: the count of commits (or of feed heads seen).
#[derive(Clone)]
pub(super) struct FeedHead {
    commits: Arc<watch::Sender<u64>>,
    waiting: Arc<Semaphore>,
}

impl FeedHead {
    /// On the pipeline's signal when it runs in this process, and on a task reading the
    /// feed's head every `POLL` while anyone waits (for what other processes commit: `api`
    /// beside a writer, or the other instances of `run`).
    pub(super) fn spawn(store: Store, signal: Option<&CommitSignal>) -> FeedHead {
        let waiting = Arc::new(Semaphore::new(MAX_WAITING));
        let commits = signal.map_or_else(|| Arc::new(watch::Sender::new(0)), CommitSignal::commits);
        tokio::spawn(follow_head(Arc::downgrade(&commits), store));
        FeedHead { commits, waiting }
    }
}

/// Moves the counter on when the feed's newest row changes; reads only while someone
/// waits, and ends with the API.
async fn follow_head(commits: Weak<watch::Sender<u64>>, store: Store) {
    let mut seen = None;
    loop {
        let Some(tx) = commits.upgrade() else { return };
        if tx.receiver_count() == 0 {
            drop(tx);
            tokio::time::sleep(POLL).await;
            continue;
        }
        match store.feed_head().await {
            Ok(head) if seen != Some(head) => {
                seen = Some(head);
                tx.send_modify(|n| *n += 1);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "feed: reading the head failed; retrying"),
        }
        drop(tx);
        tokio::time::sleep(POLL).await;
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct FeedQuery {
    /// `events` (default), `outbound` or `dlq`.
    topic: Option<String>,
    /// The `next` (or a record's `cursor`) of an earlier answer; left out: the oldest kept;
    /// `end`: only what commits from now on (a follower starting at the present).
    after: Option<String>,
    /// 1 to 1000, default 100.
    #[param(value_type = Option<u32>)]
    limit: Option<String>,
    /// How long to wait while there is no record: `0` (default) to `30s`.
    wait: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct FeedAnswer {
    records: Vec<FeedItem>,
    /// Where to read on from (`after`).
    next: String,
}

#[derive(Serialize, ToSchema)]
pub struct FeedItem {
    /// Reading on `after` it gives the records after this one.
    cursor: String,
    key: String,
    /// The record's value, byte for byte as written to the topic.
    #[schema(value_type = Object)]
    value: Box<RawValue>,
}

/// The `410` of a cursor older than what is kept.
#[derive(Serialize, ToSchema)]
pub struct FeedGone {
    error: ErrorDetail,
    /// Reading on from it gives the oldest record kept.
    oldest: String,
}

#[utoipa::path(
    get,
    path = "/v1/projects/{project}/feed",
    params(("project" = String, Path), FeedQuery),
    responses(
        (status = 200, body = FeedAnswer, description = "the records after the cursor, oldest first (none when `wait` ran out)"),
        (status = 400, body = ErrorBody, description = "an unknown topic, a limit or wait out of bounds, a cursor this feed never issued"),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 410, body = FeedGone, description = "records after the cursor are no longer kept (api.feed_retention)"),
    ),
    security(("bearer" = []))
)]
pub(super) async fn feed(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(p): Path<String>,
    query: Result<Query<FeedQuery>, QueryRejection>,
) -> ApiResult {
    project(&api, &headers, &p)?;
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let topic = match q.topic.as_deref() {
        None => Topic::Events,
        Some(code) => Topic::from_code(code)
            .ok_or_else(|| ApiError::bad_request("topic must be events, outbound or dlq"))?,
    };
    let never_issued = || ApiError::bad_request("`after` is not a cursor this feed issued");
    let after = match q.after.as_deref() {
        None => None,
        Some("end") => Some(api.store.feed_end(&p, topic).await?),
        Some(text) => Some(FeedCursor::parse(text).ok_or_else(never_issued)?),
    };
    let limit = limit(q.limit.as_deref(), 100, 1000)?;
    let wait = match q.wait.as_deref() {
        None => Duration::ZERO,
        Some(raw) => super::commands::parse_wait(raw)?,
    };
    // Subscribed before the first read: a commit between the read and the wait is not missed.
    let mut commits = api.feed_head.commits.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    let permit = if wait.is_zero() { None } else { api.feed_head.waiting.clone().try_acquire_owned().ok() };
    loop {
        match api.store.feed(&p, topic, after, limit).await? {
            FeedRead::NeverIssued => return Err(never_issued()),
            FeedRead::Gone { oldest } => return Ok(gone(oldest)),
            FeedRead::Page { records, next } => {
                let waiting = permit.is_some() && records.is_empty();
                let committed = waiting
                    && matches!(tokio::time::timeout_at(deadline, commits.changed()).await, Ok(Ok(())));
                if !committed {
                    return Ok(Json(answer(records, next)).into_response());
                }
            }
        }
    }
}

fn answer(records: Vec<crate::store::FeedRecord>, next: FeedCursor) -> FeedAnswer {
    let records = records
        .into_iter()
        .filter_map(|r| {
            // Every value was serialised as JSON by the pipeline; one that is not is left out
            // rather than answered broken.
            let value = RawValue::from_string(r.value).ok()?;
            Some(FeedItem { cursor: r.cursor.to_string(), key: r.key, value })
        })
        .collect();
    FeedAnswer { records, next: next.to_string() }
}

fn gone(oldest: FeedCursor) -> axum::response::Response {
    let error = ErrorDetail {
        code: "gone".into(),
        message: format!(
            "records after this cursor are no longer kept (api.feed_retention); read on from {oldest}"
        ),
    };
    (StatusCode::GONE, Json(FeedGone { error, oldest: oldest.to_string() })).into_response()
}
