//! The CRM client over real HTTP against the in-process test double: answers, timeouts,
//! retries, rejections, the circuit breaker, the cache and bounded concurrency.
//!
//! The double's `/_stats` counts the searches that reached it, so a cache hit or a call the
//! breaker skipped shows as "no request".

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use appealflow::config::{CrmConfig, Secret};
use appealflow::crm::double::{self, DoubleHandle, DoubleOptions};
use appealflow::crm::{Answer, CrmClient, FailReason, Identifier, IdentifierType};

/// A running double and the base URL to reach it.
struct Crm {
    url: String,
    _handle: DoubleHandle,
}

impl Crm {
    async fn start(options: DoubleOptions) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/crm-clients.json");
        let clients = double::load_clients(&path).unwrap();
        let (addr, handle) = double::serve(clients, options, "127.0.0.1:0").await.unwrap();
        Self { url: format!("http://{addr}"), _handle: handle }
    }

    async fn searches(&self) -> u64 {
        let stats: Value = reqwest::get(format!("{}/_stats", self.url)).await.unwrap().json().await.unwrap();
        stats["searches"].as_u64().expect("searches count")
    }

    async fn control(&self, body: Value) {
        let response =
            reqwest::Client::new().post(format!("{}/_control", self.url)).json(&body).send().await.unwrap();
        assert!(response.status().is_success(), "{body}: {}", response.status());
    }

    /// Client settings fast enough for tests: short timeout, short backoff, long cooldown.
    fn config(&self) -> CrmConfig {
        CrmConfig {
            timeout: Duration::from_millis(500),
            backoff: Duration::from_millis(10),
            breaker_cooldown: Duration::from_secs(60),
            ..CrmConfig::with_url(&self.url)
        }
    }

    fn client(&self, config: CrmConfig) -> CrmClient {
        CrmClient::new("acme", &config).unwrap()
    }
}

fn phone(value: &str) -> Identifier {
    Identifier::new(IdentifierType::Phone, value)
}

fn reason(answer: Answer) -> FailReason {
    match answer {
        Answer::Failed { reason } => reason,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Distinct phones nobody in the clients file has.
fn unknown_phones(n: u32) -> Vec<Identifier> {
    (0..n).map(|i| phone(&format!("+7999000{i:04}"))).collect()
}

#[tokio::test]
async fn a_known_phone_finds_the_client_with_contacts_and_fields() {
    let crm = Crm::start(DoubleOptions::default()).await;
    let client = crm.client(crm.config());
    let Answer::Found(found) = client.search(&phone("+79991234567")).await else {
        panic!("Alfred not found");
    };
    assert_eq!(found.crm_id, "CRM-1001");
    assert_eq!(found.name.as_deref(), Some("Alfred Hitchcock"));
    assert_eq!(found.fields["contract_number"], "D-100");
    assert!(found.contacts.iter().any(|c| c.kind == "email"));
}

#[tokio::test]
async fn an_email_stored_in_mixed_case_is_found_by_its_normalised_form() {
    let crm = Crm::start(DoubleOptions::default()).await;
    let answer =
        crm.client(crm.config()).search(&Identifier::new(IdentifierType::Email, "alfred@example.com")).await;
    assert!(matches!(answer, Answer::Found(c) if c.crm_id == "CRM-1001"));
}

#[tokio::test]
async fn an_unknown_phone_is_not_found() {
    let crm = Crm::start(DoubleOptions::default()).await;
    assert_eq!(crm.client(crm.config()).search(&phone("+79990000000")).await, Answer::NotFound);
}

#[tokio::test]
async fn a_crm_slower_than_the_timeout_fails_with_timeout_within_the_retry_budget() {
    let crm = Crm::start(DoubleOptions { delay: Duration::from_secs(3), ..Default::default() }).await;
    let config = CrmConfig { timeout: Duration::from_millis(200), retries: 1, ..crm.config() };
    let started = Instant::now();
    let answer = crm.client(config).search(&phone("+79991234567")).await;
    assert_eq!(reason(answer), FailReason::Timeout);
    assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    assert_eq!(crm.searches().await, 2, "the timed-out attempt is retried once");
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_with_their_status() {
    let crm = Crm::start(DoubleOptions { fail_status: Some(503), ..Default::default() }).await;
    let config = CrmConfig { retries: 2, ..crm.config() };
    let answer = crm.client(config).search(&phone("+79991234567")).await;
    assert_eq!(reason(answer), FailReason::ServerError { status: 503 });
    assert_eq!(crm.searches().await, 3, "one attempt and two retries");
}

#[tokio::test]
async fn a_wrong_token_is_rejected_once_without_retries() {
    let options = DoubleOptions { token: Some("right".into()), ..Default::default() };
    let crm = Crm::start(options).await;
    let config = CrmConfig { token: Some(Secret::new("wrong")), ..crm.config() };
    let answer = crm.client(config).search(&phone("+79991234567")).await;
    assert_eq!(reason(answer), FailReason::Rejected { status: 401 });
    assert_eq!(crm.searches().await, 1);
}

#[tokio::test]
async fn the_right_token_is_sent_as_a_bearer_token() {
    let crm = Crm::start(DoubleOptions { token: Some("right".into()), ..Default::default() }).await;
    let config = CrmConfig { token: Some(Secret::new("right")), ..crm.config() };
    assert!(matches!(crm.client(config).search(&phone("+79991234567")).await, Answer::Found(_)));
}

#[tokio::test]
async fn an_unreachable_crm_fails_with_a_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let config = CrmConfig { retries: 1, backoff: Duration::from_millis(10), ..CrmConfig::with_url(url) };
    let answer = CrmClient::new("acme", &config).unwrap().search(&phone("+79991234567")).await;
    assert_eq!(reason(answer).as_str(), "connection");
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_and_half_opens_after_the_cooldown() {
    let crm = Crm::start(DoubleOptions { fail_status: Some(500), ..Default::default() }).await;
    let cooldown = Duration::from_millis(300);
    let config = CrmConfig { retries: 0, breaker_failures: 2, breaker_cooldown: cooldown, ..crm.config() };
    let client = crm.client(config);
    for id in unknown_phones(2) {
        assert_eq!(reason(client.search(&id).await).as_str(), "server_error");
    }
    assert_eq!(reason(client.search(&phone("+79991234567")).await), FailReason::CrmUnavailable);
    assert_eq!(crm.searches().await, 2, "the skipped call sent no request");

    crm.control(json!({"delay_ms": 0, "fail_status": null})).await;
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    assert!(matches!(client.search(&phone("+79991234567")).await, Answer::Found(_)), "the trial call");
    assert_eq!(client.search(&phone("+79990000000")).await, Answer::NotFound, "closed again");
    assert_eq!(crm.searches().await, 4);
}

#[tokio::test]
async fn breaker_opens_within_one_batch_of_lookups() {
    // Every search waits, then fails: a batch's calls would all be under way before the first
    // failure came back if nothing held them.
    let options =
        DoubleOptions { delay: Duration::from_millis(100), fail_status: Some(503), ..Default::default() };
    let crm = Crm::start(options).await;
    let config = CrmConfig { retries: 1, breaker_failures: 3, concurrency: 8, ..crm.config() };
    let client = crm.client(config);
    let answers = client.search_many(unknown_phones(8)).await;
    let mut reasons: Vec<&str> = answers.into_values().map(|a| reason(a).as_str()).collect();
    reasons.sort();
    // Calls whose outcome is unknown never outnumber the failures the breaker still needs, so
    // exactly `breaker_failures` calls reach the CRM (each with its retry) and the rest are
    // skipped once the breaker opened.
    let skipped = ["crm_unavailable"; 5];
    assert_eq!(reasons, [&skipped[..], &["server_error"; 3]].concat());
    assert_eq!(crm.searches().await, 3 * 2, "3 calls of 2 attempts each");
}

#[tokio::test]
async fn a_healthy_crm_gets_as_many_calls_at_once_as_the_breaker_can_absorb() {
    let delay = Duration::from_millis(200);
    let crm = Crm::start(DoubleOptions { delay, ..Default::default() }).await;
    let config =
        CrmConfig { timeout: Duration::from_secs(5), concurrency: 8, breaker_failures: 4, ..crm.config() };
    let started = Instant::now();
    let answers = crm.client(config).search_many(unknown_phones(8)).await;
    assert!(answers.values().all(|a| *a == Answer::NotFound));
    let took = started.elapsed();
    assert!(took >= delay * 2 && took < delay * 6, "8 searches, 4 at a time, took {took:?}");
}

#[tokio::test]
async fn a_cancelled_search_gives_its_place_in_the_breaker_back() {
    let crm = Crm::start(DoubleOptions { delay: Duration::from_secs(2), ..Default::default() }).await;
    let client =
        crm.client(CrmConfig { timeout: Duration::from_secs(5), breaker_failures: 1, ..crm.config() });
    let cancelled =
        tokio::time::timeout(Duration::from_millis(100), client.search(&phone("+79990000001"))).await;
    assert!(cancelled.is_err(), "the slow search was cancelled");
    crm.control(json!({"delay_ms": 0})).await;
    let next = tokio::time::timeout(Duration::from_secs(1), client.search(&phone("+79991234567"))).await;
    assert!(matches!(next, Ok(Answer::Found(_))), "the next search went ahead: {next:?}");
}

#[tokio::test]
async fn a_failed_trial_call_keeps_the_breaker_open() {
    let crm = Crm::start(DoubleOptions { fail_status: Some(502), ..Default::default() }).await;
    let cooldown = Duration::from_millis(200);
    let config = CrmConfig { retries: 0, breaker_failures: 1, breaker_cooldown: cooldown, ..crm.config() };
    let client = crm.client(config);
    assert_eq!(reason(client.search(&phone("+79990000001")).await).as_str(), "server_error");
    tokio::time::sleep(cooldown + Duration::from_millis(50)).await;
    assert_eq!(reason(client.search(&phone("+79990000002")).await).as_str(), "server_error");
    assert_eq!(reason(client.search(&phone("+79990000003")).await), FailReason::CrmUnavailable);
    assert_eq!(crm.searches().await, 2);
}

#[tokio::test]
async fn a_second_search_within_the_ttl_is_served_from_the_cache() {
    let crm = Crm::start(DoubleOptions::default()).await;
    let client = crm.client(crm.config());
    let first = client.search(&phone("+79991234567")).await;
    let second = client.search(&phone("+79991234567")).await;
    assert_eq!(first, second);
    assert_eq!(client.search(&phone("+79990000000")).await, Answer::NotFound);
    assert_eq!(client.search(&phone("+79990000000")).await, Answer::NotFound);
    assert_eq!(crm.searches().await, 2, "one request per identifier");
}

#[tokio::test]
async fn a_failure_is_not_cached_so_the_next_search_asks_again() {
    let crm = Crm::start(DoubleOptions { fail_status: Some(503), ..Default::default() }).await;
    let client = crm.client(CrmConfig { retries: 0, ..crm.config() });
    assert_eq!(reason(client.search(&phone("+79991234567")).await).as_str(), "server_error");
    crm.control(json!({"fail_status": null})).await;
    assert!(matches!(client.search(&phone("+79991234567")).await, Answer::Found(_)));
    assert_eq!(crm.searches().await, 2);
}

#[tokio::test]
async fn search_many_runs_distinct_searches_concurrently() {
    let crm = Crm::start(DoubleOptions { delay: Duration::from_millis(200), ..Default::default() }).await;
    let config =
        CrmConfig { timeout: Duration::from_secs(5), concurrency: 8, breaker_failures: 8, ..crm.config() };
    let client = crm.client(config);
    let mut ids = unknown_phones(8);
    ids.push(ids[0].clone());
    let started = Instant::now();
    let answers = client.search_many(ids).await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert_eq!(answers.len(), 8);
    assert!(answers.values().all(|a| *a == Answer::NotFound));
    assert_eq!(crm.searches().await, 8, "a repeated identifier is searched once");
}

#[tokio::test]
async fn search_many_keeps_to_the_concurrency_limit() {
    let delay = Duration::from_millis(200);
    let crm = Crm::start(DoubleOptions { delay, ..Default::default() }).await;
    let client = crm.client(CrmConfig { timeout: Duration::from_secs(5), concurrency: 2, ..crm.config() });
    let started = Instant::now();
    let answers = client.search_many(unknown_phones(4)).await;
    assert_eq!(answers.len(), 4);
    assert!(started.elapsed() >= delay * 2, "4 searches, 2 at a time, took only {:?}", started.elapsed());
}

#[tokio::test]
async fn the_double_answers_400_to_a_malformed_body_and_401_without_a_token() {
    let crm = Crm::start(DoubleOptions { token: Some("t".into()), ..Default::default() }).await;
    let http = reqwest::Client::new();
    let url = format!("{}/search-client", crm.url);
    let no_token = http.post(&url).body(r#"{"project_id": "acme"}"#).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
    let malformed = http.post(&url).bearer_auth("t").body("{not json").send().await.unwrap();
    assert_eq!(malformed.status(), 400);
    let bad_type = json!({"project_id": "acme", "identifier": {"type": "skype", "value": "x"}});
    let bad_type = http.post(&url).bearer_auth("t").json(&bad_type).send().await.unwrap();
    assert_eq!(bad_type.status(), 400);
}
