//! A test double of a CRM's Search Client API, for integration tests (in-process, see
//! [`serve`]) and demos (the `appealflow-crm-double` binary).
//!
//! It answers `POST /search-client` from a fixed list of clients, matching phones and e-mails
//! after normalising both sides, and CRM ids exactly. Faults are injected at start or at run
//! time through `POST /_control {"delay_ms": 0, "fail_status": 503}`; `GET /_stats` says how
//! many searches arrived, so tests can tell a cache hit or a skipped call from a request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::json;

use super::protocol::{FoundClient, Identifier, SearchRequest, SearchResponse, SEARCH_PATH};
use crate::config::IdentifierType;
use crate::identify::normalize;

/// How the double behaves from the start.
#[derive(Debug, Clone)]
pub struct DoubleOptions {
    /// When set, searches need `Authorization: Bearer {token}` (401 otherwise).
    pub token: Option<String>,
    /// Every search waits this long before answering.
    pub delay: Duration,
    /// Every search answers this status instead of searching.
    pub fail_status: Option<u16>,
    /// Region for reading phone numbers in the clients file.
    pub region: String,
    /// Serve HTTPS with this PEM certificate chain and private key (plain HTTP without).
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl Default for DoubleOptions {
    fn default() -> Self {
        Self { token: None, delay: Duration::ZERO, fail_status: None, region: "RU".into(), tls: None }
    }
}

/// Reads a clients file: a JSON array of Search Client API `client` objects.
pub fn load_clients(path: &Path) -> Result<Vec<FoundClient>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The clients by every identifier they can be found by.
struct Directory(HashMap<Identifier, FoundClient>);

impl Directory {
    fn new(clients: Vec<FoundClient>, region: &str) -> Self {
        let mut by_id = HashMap::new();
        for client in clients {
            for id in identifiers(&client, region) {
                by_id.entry(id).or_insert_with(|| client.clone());
            }
        }
        Self(by_id)
    }

    fn find(&self, id: &Identifier, region: &str) -> Option<&FoundClient> {
        // Lenient on purpose: a hand-typed `curl` search for "8 999 ..." still finds the client.
        let normalised = Identifier::normalise(id.kind, &id.value, region).unwrap_or_else(|_| id.clone());
        self.0.get(&normalised)
    }
}

/// The CRM id plus every phone, e-mail and CRM id contact, normalised.
fn identifiers(client: &FoundClient, region: &str) -> Vec<Identifier> {
    let mut ids = vec![Identifier::new(IdentifierType::CrmId, client.crm_id.trim())];
    for contact in &client.contacts {
        let kind = match contact.kind.as_str() {
            "phone" => IdentifierType::Phone,
            "email" => IdentifierType::Email,
            "crm_id" => IdentifierType::CrmId,
            _ => continue,
        };
        if let Ok(value) = normalize::value(kind.as_str(), &contact.value, region) {
            ids.push(Identifier::new(kind, value));
        }
    }
    ids
}

/// Shared by the handlers; faults are atomics so `/_control` changes them without a lock.
struct Double {
    directory: Directory,
    token: Option<String>,
    region: String,
    delay_ms: AtomicU64,
    /// 0 = no injected failure.
    fail_status: AtomicU16,
    searches: AtomicU64,
}

/// The running double; dropping it stops the server.
pub struct DoubleHandle {
    task: tokio::task::JoinHandle<()>,
}

impl DoubleHandle {
    /// Serves until the process ends (the binary).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for DoubleHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the double on `addr` (port 0 picks a free port) and returns the bound address.
pub async fn serve(
    clients: Vec<FoundClient>,
    options: DoubleOptions,
    addr: &str,
) -> std::io::Result<(SocketAddr, DoubleHandle)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let options_tls = options.tls.clone();
    let double = Double {
        directory: Directory::new(clients, &options.region),
        token: options.token,
        region: options.region,
        delay_ms: AtomicU64::new(options.delay.as_millis() as u64),
        fail_status: AtomicU16::new(options.fail_status.unwrap_or(0)),
        searches: AtomicU64::new(0),
    };
    let app = Router::new()
        .route(SEARCH_PATH, post(search))
        .route("/_control", post(control))
        .route("/_stats", get(stats))
        .with_state(Arc::new(double));
    let tls = match &options_tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let task = tokio::spawn(async move {
        let served = match tls {
            Some(acceptor) => axum::serve(TlsListener { tcp: listener, acceptor }, app).await,
            None => axum::serve(listener, app).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "CRM double stopped");
        }
    });
    Ok((local, DoubleHandle { task }))
}

/// A TLS server side from a PEM certificate chain and key (the double's `--tls-cert`,
/// `--tls-key`; tests put it in front of other servers too).
pub fn tls_acceptor(cert: &Path, key: &Path) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad =
        |e: &dyn std::fmt::Display| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string());
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| bad(&format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(&format!("{}: {e}", key.display())))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| bad(&e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Accepts TCP connections and hands axum only those whose TLS handshake succeeded.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            // A client that refuses the certificate ends its handshake here; the next one waits
            // at most this long behind a client that stalls in it.
            match tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => return (tls, addr),
                Ok(Err(e)) => tracing::debug!(error = %e, %addr, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

type Reply = (StatusCode, [(header::HeaderName, &'static str); 1], String);

fn reply(status: StatusCode, body: serde_json::Value) -> Reply {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn search(State(double): State<Arc<Double>>, headers: HeaderMap, body: Bytes) -> Reply {
    double.searches.fetch_add(1, Ordering::Relaxed);
    let delay = double.delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if let Some(status) = injected_failure(&double) {
        return reply(status, json!({"error": "injected failure"}));
    }
    if !authorised(double.token.as_deref(), &headers) {
        return reply(StatusCode::UNAUTHORIZED, json!({"error": "missing or wrong bearer token"}));
    }
    let request: SearchRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    let answer = match double.directory.find(&request.identifier, &double.region) {
        Some(client) => SearchResponse::found(client.clone()),
        None => SearchResponse::not_found(),
    };
    reply(StatusCode::OK, serde_json::to_value(answer).expect("a response serialises"))
}

fn injected_failure(double: &Double) -> Option<StatusCode> {
    match double.fail_status.load(Ordering::Relaxed) {
        0 => None,
        code => StatusCode::from_u16(code).ok(),
    }
}

fn authorised(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(token) = token else {
        return true;
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    given.and_then(|v| v.strip_prefix("Bearer ")) == Some(token)
}

/// The whole fault state: a field left out resets it (no delay, no failure).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    #[serde(default)]
    delay_ms: u64,
    #[serde(default)]
    fail_status: Option<u16>,
}

async fn control(State(double): State<Arc<Double>>, body: Bytes) -> Reply {
    let control: Control = match serde_json::from_slice(&body) {
        Ok(control) => control,
        Err(e) => return reply(StatusCode::BAD_REQUEST, json!({"error": e.to_string()})),
    };
    if let Some(code) = control.fail_status.filter(|c| StatusCode::from_u16(*c).is_err() || *c < 100) {
        return reply(StatusCode::BAD_REQUEST, json!({"error": format!("{code} is no HTTP status")}));
    }
    double.delay_ms.store(control.delay_ms, Ordering::Relaxed);
    double.fail_status.store(control.fail_status.unwrap_or(0), Ordering::Relaxed);
    reply(StatusCode::OK, json!({"delay_ms": control.delay_ms, "fail_status": control.fail_status}))
}

async fn stats(State(double): State<Arc<Double>>) -> Reply {
    reply(StatusCode::OK, json!({"searches": double.searches.load(Ordering::Relaxed)}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::protocol::Contact;

    fn alfred() -> FoundClient {
        FoundClient {
            crm_id: "CRM-1001".into(),
            name: Some("Alfred".into()),
            contacts: vec![
                Contact { kind: "phone".into(), value: "8 (999) 123-45-67".into() },
                Contact { kind: "email".into(), value: "Alfred@Example.com".into() },
                Contact { kind: "skype".into(), value: "alfred.h".into() },
            ],
            fields: Default::default(),
        }
    }

    #[test]
    fn clients_are_found_by_normalised_phone_email_and_crm_id() {
        let directory = Directory::new(vec![alfred()], "RU");
        for (kind, value) in [
            (IdentifierType::Phone, "+79991234567"),
            (IdentifierType::Email, "alfred@example.com"),
            (IdentifierType::CrmId, "CRM-1001"),
        ] {
            assert!(directory.find(&Identifier::new(kind, value), "RU").is_some(), "{kind} {value}");
        }
        assert!(directory.find(&Identifier::new(IdentifierType::Phone, "+79990000000"), "RU").is_none());
    }

    #[test]
    fn a_bearer_token_must_match_exactly_when_one_is_required() {
        let mut headers = HeaderMap::new();
        assert!(authorised(None, &headers));
        assert!(!authorised(Some("t"), &headers));
        headers.insert(header::AUTHORIZATION, "Bearer t".parse().unwrap());
        assert!(authorised(Some("t"), &headers));
        assert!(!authorised(Some("other"), &headers));
    }
}
