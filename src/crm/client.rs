//! The HTTP side of a project's CRM: cache → breaker → `POST {url}/search-client` with a
//! timeout per attempt and bounded retries. Every path ends in an [`Answer`], never an error:
//! a slow or broken CRM costs the stream at most the retry budget, then the appeal proceeds.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use tokio::sync::{Notify, Semaphore};

use super::answer::{self, Answer, Attempt, FailReason};
use super::breaker::{Admission, Breaker, Ticket};
use super::cache::{AnswerCache, DEFAULT_CAPACITY};
use super::protocol::{Identifier, SearchRequest, SEARCH_PATH};
use crate::config::{CrmConfig, Secret};
use crate::retry::{retry, Backoff};
use crate::telemetry::{
    self,
    events::{CrmBreaker, CrmSearched},
};

/// A client for one project's CRM. Cloning is cheap and shares cache, breaker and limits.
#[derive(Clone)]
pub struct CrmClient {
    inner: Arc<Inner>,
}

struct Inner {
    project_id: String,
    endpoint: String,
    token: Option<Secret>,
    http: reqwest::Client,
    retries: u32,
    backoff: Duration,
    concurrency: usize,
    /// Bounds calls in flight across every caller of this project's client.
    permits: Semaphore,
    /// Wakes the calls the breaker told to wait whenever an admitted call reported.
    reported: Notify,
    /// NB: a std Mutex is enough: it is held for map and counter updates only, never across
    /// an `.await`.
    state: Mutex<State>,
}

struct State {
    cache: AnswerCache,
    breaker: Breaker,
}

/// The client could not be built from its config.
#[derive(Debug, thiserror::Error)]
pub enum CrmError {
    #[error("project {project}: crm.url {url:?} is not usable: {reason}")]
    BadUrl { project: String, url: String, reason: String },
    #[error("project {project}: HTTP client: {source}")]
    Http { project: String, source: reqwest::Error },
    #[error("project {project}: crm.ca_file: {reason}")]
    BadCa { project: String, reason: String },
}

impl CrmClient {
    pub fn new(project_id: &str, config: &CrmConfig) -> Result<Self, CrmError> {
        let endpoint = endpoint(project_id, &config.url)?;
        let mut http = reqwest::Client::builder();
        if let Some(ca) = &config.ca_file {
            let bad = |reason| CrmError::BadCa { project: project_id.into(), reason };
            for cert in crate::config::crm::read_ca_file(ca).map_err(bad)? {
                http = http.add_root_certificate(cert);
            }
        }
        let http = http
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .pool_max_idle_per_host(config.concurrency)
            // A redirected POST would turn into a GET elsewhere: a 3xx is a misconfigured URL.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| CrmError::Http { project: project_id.into(), source })?;
        let state = State {
            cache: AnswerCache::new(config.cache_ttl, DEFAULT_CAPACITY),
            breaker: Breaker::new(config.breaker_failures, config.breaker_cooldown),
        };
        let concurrency = config.concurrency.max(1);
        let inner = Inner {
            project_id: project_id.into(),
            endpoint,
            token: config.token.clone(),
            http,
            retries: config.retries,
            backoff: config.backoff,
            concurrency,
            permits: Semaphore::new(concurrency),
            reported: Notify::new(),
            state: Mutex::new(state),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    pub fn project_id(&self) -> &str {
        &self.inner.project_id
    }

    /// Searches the CRM for one identifier: from the cache if answered recently, skipped while
    /// the breaker is open, otherwise over HTTP within the retry budget.
    pub async fn search(&self, id: &Identifier) -> Answer {
        if let Some(answer) = self.cached(id) {
            telemetry::crm_cache_hit(self.project_id());
            return answer;
        }
        // The semaphore is never closed, so acquiring cannot fail.
        let _permit = self.inner.permits.acquire().await.expect("CRM permits are never closed");
        let Some(call) = self.admitted().await else {
            return self.finish(id, Answer::failed(FailReason::CrmUnavailable), 0);
        };
        let (answer, attempts) = self.call_with_retries(id).await;
        self.settle(id, call, &answer);
        self.finish(id, answer, attempts)
    }

    /// Asks the breaker until it admits the call (`Some`) or skips it (`None`).
    ///
    /// NB: the breaker admits no more calls than could still fail before it opens (see
    /// [`Breaker`]), so a batch of lookups against a dead CRM makes `breaker_failures` calls
    /// and the others, waiting here, are skipped once those failed. That is also why the
    /// retries of an admitted call need no second look at the breaker: the failures it still
    /// needs to open include this call's own, so it cannot open while this call is retrying.
    async fn admitted(&self) -> Option<InFlight<'_>> {
        loop {
            let reported = self.inner.reported.notified();
            tokio::pin!(reported);
            // Registered before asking, so a report between the answer and the wait is not lost.
            reported.as_mut().enable();
            let admission = self.state().breaker.admit(Instant::now());
            match admission {
                Admission::Call(ticket) => return Some(InFlight { client: self, ticket: Some(ticket) }),
                Admission::Skip => return None,
                Admission::Wait => reported.await,
            }
        }
    }

    /// Searches several identifiers, each distinct one once, at most `crm.concurrency` at a time.
    pub async fn search_many(
        &self,
        ids: impl IntoIterator<Item = Identifier>,
    ) -> BTreeMap<Identifier, Answer> {
        let distinct: BTreeSet<Identifier> = ids.into_iter().collect();
        stream::iter(distinct)
            .map(|id| async move {
                let answer = self.search(&id).await;
                (id, answer)
            })
            .buffer_unordered(self.inner.concurrency)
            .collect()
            .await
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent cache and breaker: keep going.
        self.inner.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, id: &Identifier) -> Option<Answer> {
        let hit = self.state().cache.get(id, Instant::now())?;
        Some(hit.map_or(Answer::NotFound, Answer::Found))
    }

    async fn call_with_retries(&self, id: &Identifier) -> (Answer, u32) {
        let policy =
            Backoff { first: self.inner.backoff, max: Duration::MAX, limit: Some(self.inner.retries) };
        let attempt = || async {
            match self.attempt(id).await {
                Attempt::Answered(answer) => Ok(answer),
                Attempt::Retry(reason) => Err(reason),
            }
        };
        let (outcome, attempts) = retry("crm", policy, |_| true, attempt).await;
        (outcome.unwrap_or_else(Answer::failed), attempts)
    }

    async fn attempt(&self, id: &Identifier) -> Attempt {
        let body = SearchRequest { project_id: self.inner.project_id.clone(), identifier: id.clone() };
        let mut request = self.inner.http.post(&self.inner.endpoint).json(&body);
        if let Some(token) = &self.inner.token {
            request = request.bearer_auth(token.expose());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failed_request(e),
        };
        if let Some(verdict) = answer::status_verdict(response.status().as_u16()) {
            return verdict;
        }
        match response.bytes().await {
            Ok(body) => Attempt::Answered(answer::read_body(&body)),
            Err(e) => Attempt::Retry(transport_failure(e)),
        }
    }

    /// Feeds the breaker and the cache with a call's answer, then wakes the calls waiting.
    fn settle(&self, id: &Identifier, mut call: InFlight<'_>, answer: &Answer) {
        let ticket = call.ticket.take().expect("an admitted call reports once");
        let now = Instant::now();
        let mut state = self.state();
        let outage = matches!(answer, Answer::Failed { reason } if reason.is_outage());
        if outage {
            if state.breaker.failed(ticket, now) {
                CrmBreaker { project: self.project_id(), open: true }.emit();
            }
        } else if state.breaker.succeeded(ticket) {
            CrmBreaker { project: self.project_id(), open: false }.emit();
        }
        match answer {
            Answer::Found(client) => state.cache.put(id.clone(), Some(client.clone()), now),
            Answer::NotFound => state.cache.put(id.clone(), None, now),
            Answer::Failed { .. } => {}
        }
        drop(state);
        self.inner.reported.notify_waiters();
    }

    /// Counts and logs a search's end. Identifiers are masked; the token is never near a log.
    fn finish(&self, id: &Identifier, answer: Answer, attempts: u32) -> Answer {
        let detail = match &answer {
            Answer::Failed { reason } => Some(reason.detail()),
            _ => None,
        };
        let identifier = id.masked();
        CrmSearched {
            project: self.project_id(),
            identifier: &identifier,
            outcome: answer.outcome(),
            detail,
            attempts,
        }
        .emit();
        answer
    }
}

/// A call the breaker admitted. Settled, it reports its outcome; dropped unsettled (the
/// search was cancelled mid-call) it reports itself abandoned, so the breaker's count of calls
/// in flight stays true and the calls waiting on it go on.
struct InFlight<'a> {
    client: &'a CrmClient,
    ticket: Option<Ticket>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.client.state().breaker.abandoned(ticket);
            self.client.inner.reported.notify_waiters();
        }
    }
}

/// `{url}/search-client`, after checking the URL is one this build can call.
fn endpoint(project: &str, url: &str) -> Result<String, CrmError> {
    let bad = |reason: String| CrmError::BadUrl { project: project.into(), url: url.into(), reason };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("use https:// (or http://)".into()));
    }
    Ok(format!("{}{SEARCH_PATH}", url.trim_end_matches('/')))
}

/// A request that got no status line: a certificate the CRM's TLS layer showed that is not
/// trusted is final; the rest (refused, reset, timed out) is worth another attempt.
fn failed_request(error: reqwest::Error) -> Attempt {
    match transport_failure(error) {
        reason @ FailReason::Certificate { .. } => Attempt::Answered(Answer::failed(reason)),
        reason => Attempt::Retry(reason),
    }
}

/// A request that got no status line, or whose body broke off.
fn transport_failure(error: reqwest::Error) -> FailReason {
    if error.is_timeout() {
        return FailReason::Timeout;
    }
    // NB: without the URL, which may carry credentials; the cause chain says what happened.
    let error = error.without_url();
    let mut message = error.to_string();
    let mut tls = false;
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        tls |= crate::errors::is_tls_refusal(cause);
        source = cause.source();
    }
    if tls {
        FailReason::Certificate { message }
    } else {
        FailReason::Connection { message }
    }
}

/// Whether a project's CRM can be reached over TLS with the configured trust: one request at
/// start-up, so a certificate that is not trusted stops the service instead of failing every
/// lookup. An unreachable CRM passes (its calls are retried and the breaker guards them).
pub async fn check_certificate(project_id: &str, config: &CrmConfig, at: &str) -> Result<(), String> {
    if !config.url.starts_with("https://") {
        return Ok(());
    }
    let client = CrmClient::new(project_id, config).map_err(|e| e.to_string())?;
    match client.inner.http.get(&config.url).send().await {
        Err(e) => match transport_failure(e) {
            FailReason::Certificate { message } => Err(format!(
                "project {project_id}: the CRM at {} refused over TLS: {message} (check {at}.ca_file and {at}.url)",
                crate::config::redact_url(&config.url)
            )),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_the_base_url_plus_the_search_path() {
        assert_eq!(endpoint("a", "http://crm:8099/").unwrap(), "http://crm:8099/search-client");
        assert_eq!(endpoint("a", "http://crm/api").unwrap(), "http://crm/api/search-client");
    }

    #[test]
    fn a_url_this_build_cannot_call_is_refused_at_construction() {
        assert!(CrmClient::new("a", &CrmConfig::with_url("ftp://crm")).is_err());
        assert!(CrmClient::new("a", &CrmConfig::with_url("crm:8099")).is_err());
        assert!(CrmClient::new("a", &CrmConfig::with_url("https://crm")).is_ok());
    }

    #[test]
    fn the_client_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<CrmClient>();
    }
}
