//! Automatic (CRM) identification settings: how a project reaches its CRM (`[projects.crm]`)
//! and which identifier a channel searches by (`[projects.channels.identification]`).
//!
//! The defaults keep a slow CRM from stalling the stream: a 2 s timeout, two retries with
//! doubling backoff, and a circuit breaker that skips calls while the CRM is down.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::serde_duration;

/// A value that must never reach a log, an error message or `check-config` output.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it (the `Authorization` header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The certificates of a `ca_file`, or why it cannot be used.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<reqwest::Certificate>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// How a project calls its CRM's Search Client API (`docs/crm.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrmConfig {
    /// Base URL; appealflow calls `POST {url}/search-client`. `https://` is verified against
    /// the system's CA roots and `ca_file`.
    pub url: String,
    /// Sent as `Authorization: Bearer {token}`; without it no `Authorization` header is sent.
    #[serde(default)]
    pub token: Option<Secret>,
    /// The environment variable holding the token, instead of `token` in the file.
    #[serde(default)]
    pub token_env: Option<String>,
    /// PEM file of the CA (or CAs) that signed the CRM's certificate, trusted beside the
    /// system's roots: a private CA of the CRM's network.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Longest one HTTP attempt may take, connecting and reading the answer included.
    #[serde(default = "default_timeout", with = "serde_duration")]
    pub timeout: Duration,
    /// How long a found / not found answer is reused for the same identifier; "0s" disables.
    #[serde(default = "default_cache_ttl", with = "serde_duration")]
    pub cache_ttl: Duration,
    /// Extra attempts after the first for 429, 5xx, connection errors and timeouts.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; it doubles for every further retry.
    #[serde(default = "default_backoff", with = "serde_duration")]
    pub backoff: Duration,
    /// Most calls in flight to this CRM at once (per project). The breaker lowers it to
    /// `breaker_failures` minus the consecutive failures so far (see `crm::breaker`).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Consecutive failed calls (retries exhausted) that open the circuit breaker; also the
    /// most calls in flight at once, so no more than this many can fail before it opens.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker skips calls before one trial call may test the CRM again.
    #[serde(default = "default_breaker_cooldown", with = "serde_duration")]
    pub breaker_cooldown: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_cache_ttl() -> Duration {
    Duration::from_secs(600)
}
fn default_retries() -> u32 {
    2
}
fn default_backoff() -> Duration {
    Duration::from_millis(100)
}
fn default_concurrency() -> usize {
    8
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_cooldown() -> Duration {
    Duration::from_secs(30)
}

impl CrmConfig {
    /// A config with every default, for tests and the double's demos.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            token: None,
            token_env: None,
            ca_file: None,
            timeout: default_timeout(),
            cache_ttl: default_cache_ttl(),
            retries: default_retries(),
            backoff: default_backoff(),
            concurrency: default_concurrency(),
            breaker_failures: default_breaker_failures(),
            breaker_cooldown: default_breaker_cooldown(),
        }
    }
}

/// What a CRM can be searched by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierType {
    Phone,
    Email,
    CrmId,
}

impl IdentifierType {
    /// The contact type and wire name: `phone`, `email`, `crm_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierType::Phone => "phone",
            IdentifierType::Email => "email",
            IdentifierType::CrmId => "crm_id",
        }
    }
}

impl fmt::Display for IdentifierType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel's automatic identification rule (SPEC "Identification", point 3).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentificationConfig {
    /// Shown to operators and in events ("by phone").
    pub name: String,
    /// What the CRM is searched by.
    pub identifier: IdentifierType,
    /// When the message carries no identifier (or the CRM does not know it), ask the client.
    #[serde(default)]
    pub ask_client: bool,
    /// Sent to the client when `ask_client` is on; required then.
    #[serde(default)]
    pub question: Option<String>,
    /// Sent to the client once the CRM found them.
    #[serde(default)]
    pub success: Option<String>,
    /// Questions asked before identification gives up and the appeal proceeds unidentified.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_attempts() -> u32 {
    3
}
