//! Typed configuration: a TOML file layered with `APPEALFLOW__SECTION__KEY` environment
//! variables, deserialised into the structs below and validated once at start-up.
//!
//! Every problem found is reported with the key it concerns (`projects[0].channels[1].kind`)
//! so `appealflow check-config` can tell an operator exactly what to fix. Unknown keys are
//! errors, never silently ignored: a misspelt `auto_close_afer` must not fall back to a default.

pub mod crm;
mod duration;
pub mod kafka;
pub mod scenario;
mod validate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

pub use crm::{CrmConfig, IdentificationConfig, IdentifierType, Secret};
pub use duration::parse_duration;
pub use scenario::{
    AskBlock, BlockConfig, BlockKind, CheckFieldBlock, EndBlock, Expect, IdentifyBlock, MessageBlock,
    OnInvalid, ScenarioConfig,
};
pub use validate::{ConfigError, Problem};

/// The consumer's `session.timeout.ms` unless `kafka.consumer_options` sets another.
pub const SESSION_TIMEOUT_MS: u64 = 10_000;

/// Environment variables with this prefix override file keys; `__` separates levels.
pub const ENV_PREFIX: &str = "APPEALFLOW__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker connection and topic names (used by `run`; topic names also label replay output).
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Where state lives: `sqlite://...` (embedded default) or `postgres://...`.
    #[serde(default)]
    pub store: StoreConfig,
    /// Micro-batching and input limits shared by `run` and `replay`.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The operations endpoint of `run`: Prometheus metrics and health checks.
    #[serde(default)]
    pub ops: OpsConfig,
    /// The read API (SPEC "Read API"): served by `appealflow api`, and by `run` when `listen`
    /// is set.
    #[serde(default)]
    pub api: ApiConfig,
    /// Tenants. Every lookup, rule and merge is scoped to one project.
    #[serde(default)]
    pub projects: Vec<ProjectConfig>,
    /// Whether the file or the environment set anything under `[kafka]`: `appealflow api`
    /// then submits commands to the commands topic (without it, it has no command path).
    #[serde(skip)]
    pub kafka_configured: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma separated.
    pub brokers: String,
    /// Consumer group shared by all `run` instances.
    pub group_id: String,
    pub topics: TopicsConfig,
    /// `PLAINTEXT` (default), `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`.
    pub security_protocol: kafka::SecurityProtocol,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`; needed with the SASL protocols.
    pub sasl_mechanism: Option<kafka::SaslMechanism>,
    pub sasl_username: Option<String>,
    /// A secret: never logged or printed; set it by `APPEALFLOW__KAFKA__SASL_PASSWORD`.
    pub sasl_password: Option<Secret>,
    /// PEM file of the CA that signed the brokers' certificates; without it the system's roots.
    pub ssl_ca_location: Option<PathBuf>,
    /// Any other librdkafka property, for the consumer and every producer alike.
    pub options: BTreeMap<String, String>,
    /// Raw librdkafka consumer options passed through unchanged (`"fetch.min.bytes" = "1"`).
    pub consumer_options: BTreeMap<String, String>,
    /// Raw librdkafka producer options passed through unchanged (`"linger.ms" = "10"`).
    pub producer_options: BTreeMap<String, String>,
    /// How long shutdown (SIGTERM/SIGINT) may take to finish batches, publish and commit.
    #[serde(with = "duration::serde_duration")]
    pub shutdown_deadline: Duration,
    /// A partition that receives nothing for this long has its event-time clock advanced by
    /// wall-clock time, so idle appeals still close when traffic stops.
    #[serde(with = "duration::serde_duration")]
    pub idle_clock_after: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "appealflow".into(),
            topics: TopicsConfig::default(),
            security_protocol: kafka::SecurityProtocol::default(),
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            options: BTreeMap::new(),
            consumer_options: BTreeMap::new(),
            producer_options: BTreeMap::new(),
            // Under the consumer's session timeout (10 s): see `validate::bounds`.
            shutdown_deadline: Duration::from_secs(8),
            idle_clock_after: Duration::from_secs(60),
        }
    }
}

impl KafkaConfig {
    /// How every client of the process connects (brokers, TLS, SASL, `[kafka.options]`).
    pub fn connection(&self) -> kafka::Connection<'_> {
        kafka::Connection {
            brokers: &self.brokers,
            security_protocol: self.security_protocol,
            sasl_mechanism: self.sasl_mechanism,
            sasl_username: self.sasl_username.as_deref(),
            sasl_password: self.sasl_password.as_ref(),
            ssl_ca_location: self.ssl_ca_location.as_ref(),
            options: &self.options,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    pub inbound: String,
    pub commands: String,
    pub events: String,
    pub outbound: String,
    pub dlq: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            inbound: "inbound.messages".into(),
            commands: "inbound.commands".into(),
            events: "appeal.events".into(),
            outbound: "outbound.messages".into(),
            dlq: "inbound.dlq".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    /// Address of `/metrics`, `/health/live` and `/health/ready`; empty disables it.
    pub listen: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Address of the read API; empty: `run` does not serve it (`api` defaults to
    /// 127.0.0.1:8080).
    pub listen: String,
    /// Bearer tokens and the projects each may read.
    pub tokens: Vec<ApiToken>,
    /// How long `run` and `serve` keep output records in the event feed (SPEC "Event
    /// feed"); `0s` keeps no feed.
    #[serde(with = "duration::serde_duration")]
    pub feed_retention: Duration,
    /// Connections the API holds at once; more wait until one closes.
    pub max_connections: usize,
    /// A connection on which nothing is read or written this long is closed; keep it above
    /// the longest `wait` clients long-poll with (at most 30 s).
    #[serde(with = "duration::serde_duration")]
    pub idle_timeout: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: String::new(),
            tokens: Vec::new(),
            feed_retention: Duration::from_secs(24 * 3600),
            max_connections: 2048,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiToken {
    /// A secret: never logged, compared in constant time.
    pub token: String,
    /// Project ids this token reads, or `["*"]` for all.
    pub projects: Vec<String>,
    /// Whether it may submit commands (the write API); a read token's POST is a `403`.
    #[serde(default)]
    pub write: bool,
    /// The operator every command of this token acts as (an operator app's own token);
    /// without it a command names its operator.
    #[serde(default)]
    pub operator: Option<TokenOperator>,
    /// Whether it may post inputs to `serve`'s ingest endpoint (a gateway's token).
    #[serde(default)]
    pub ingest: bool,
}

/// An approved message template: its name (as the messenger knows it), what it says for an
/// operator choosing it, and the parameters it takes.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TemplateConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub params: Vec<String>,
}

/// The operator a token acts as.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenOperator {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("token", &"***")
            .field("projects", &self.projects)
            .field("write", &self.write)
            .field("operator", &self.operator)
            .field("ingest", &self.ingest)
            .finish()
    }
}

impl ApiToken {
    pub fn covers(&self, project: &str) -> bool {
        self.projects.iter().any(|p| p == "*" || p == project)
    }
}

impl Default for OpsConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:9464".into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://appealflow.db` or `postgres://user@host/db`.
    pub url: String,
    /// Connections in the pool (PostgreSQL; SQLite always writes through one). `run` applies
    /// up to this many minus one batches of different partitions at once.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: "sqlite://appealflow.db".into(), max_connections: 4 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Inputs per micro-batch: one database transaction each.
    pub batch_size: usize,
    /// Longest a partial batch waits for more input before it is committed. `run` applies a
    /// partial batch at once when the consumer holds nothing more and no batch is being
    /// applied, so this bounds the wait only while other batches keep it busy.
    #[serde(with = "duration::serde_duration")]
    pub batch_max_wait: Duration,
    /// Inputs larger than this go to the DLQ unread.
    pub max_input_bytes: usize,
    /// How many batches' worth of inputs `run` holds per partition before it pauses fetching
    /// from it: what bounds memory when the database is slower than the topic (a backlog
    /// after downtime, an outage).
    pub buffered_batches: usize,
    /// Inputs dated more than this after the wall clock when they are processed go to the
    /// DLQ and move no event-time clock (a gateway with a broken clock, a crafted date).
    #[serde(with = "duration::serde_duration")]
    pub max_future: Duration,
    /// The largest DLQ record: an input that would make a larger one is carried by its first
    /// bytes, its size and its SHA-256. Must stay under the producer's `message.max.bytes`.
    pub dlq_max_bytes: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            // 1000, not 500: on the kafka bench a batch of 1000 took about a sixth off
            // PostgreSQL's CPU per input and `run` went from 0.44-0.56 to 0.55-0.61 of
            // passthrough, while the latency at a fixed offered rate stayed the same (batches
            // only fill up to the limit when a backlog builds; below it they hold what waited).
            batch_size: 1000,
            batch_max_wait: Duration::from_millis(200),
            max_input_bytes: 1 << 20,
            buffered_batches: 4,
            max_future: Duration::from_secs(15 * 60),
            dlq_max_bytes: 256 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    pub id: String,
    /// ISO 3166 region used to read phone numbers written without a country code.
    #[serde(default = "default_region")]
    pub default_region: String,
    /// Open appeals idle (event time) for this long are closed.
    #[serde(default = "default_auto_close", with = "duration::serde_duration")]
    pub auto_close_after: Duration,
    /// A merged card never joins more than this many original cards.
    #[serde(default = "default_max_merge_group")]
    pub max_merge_group: usize,
    /// Values that never match in multi-contact rules (shared office phones, test addresses).
    #[serde(default)]
    pub blocked_values: Vec<String>,
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    #[serde(default)]
    pub multicontact_rules: Vec<RuleConfig>,
    /// Bot scenarios channels and `start_scenario` commands name by id.
    #[serde(default)]
    pub scenarios: Vec<ScenarioConfig>,
    /// The message templates the project's messenger accounts have approved (what may go to
    /// WhatsApp or Instagram outside the 24 h window). None listed: a `send_outbound`
    /// template is sent under the name it gives; listed: any other name is refused.
    #[serde(default)]
    pub templates: Vec<TemplateConfig>,
    /// The project's CRM, for automatic identification; none means no CRM calls at all.
    #[serde(default)]
    pub crm: Option<CrmConfig>,
}

fn default_region() -> String {
    "RU".into()
}
fn default_auto_close() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn default_max_merge_group() -> usize {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: String,
    pub kind: ChannelKind,
    /// Operator group new appeals of this channel are assigned to.
    #[serde(default)]
    pub group: Option<String>,
    /// External ID of the client every new appeal of this channel belongs to.
    #[serde(default)]
    pub fixed_client: Option<String>,
    /// Bot scenario (id in this project) started when an appeal opens in this channel.
    #[serde(default)]
    pub scenario: Option<String>,
    /// Automatic CRM identification when an appeal opens; needs the project's `[projects.crm]`.
    #[serde(default)]
    pub identification: Option<IdentificationConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Telegram,
    Whatsapp,
    Viber,
    Vk,
    Ok,
    Instagram,
    Facebook,
    WebChat,
    MobileSdk,
    Email,
    Sms,
    Marketplace,
    OfflineForm,
}

impl ChannelKind {
    /// Widget and SDK chats are anonymous until identified; messengers identify by account.
    pub fn client_type(self) -> crate::model::ClientType {
        use crate::model::ClientType;
        match self {
            ChannelKind::WebChat | ChannelKind::MobileSdk => ClientType::Internal,
            _ => ClientType::Channel,
        }
    }

    /// Meta's platforms only let a business write first within 24 h of the client's message.
    pub fn has_reply_window(self) -> bool {
        matches!(self, ChannelKind::Whatsapp | ChannelKind::Facebook | ChannelKind::Instagram)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// All of these fields must share a value for two cards to merge.
    pub fields: Vec<String>,
}

impl Config {
    /// Reads the file (if any), applies environment overrides, then validates.
    ///
    /// Every key outside `[[projects]]` can be overridden (`APPEALFLOW__STORE__URL`,
    /// `APPEALFLOW__KAFKA__CONSUMER_OPTIONS__FETCH.WAIT.MAX.MS`); list entries cannot: a
    /// variable naming one is an error rather than silently ignored.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let lists: Vec<Problem> = std::env::vars()
            .filter_map(|(name, _)| {
                let rest = name.strip_prefix(ENV_PREFIX)?;
                let section = rest.split("__").next()?.to_ascii_lowercase();
                (section == "projects").then(|| Problem {
                    key: name.clone(),
                    message: "[[projects]] entries cannot be overridden by environment variables: set \
                              them in the config file (every key outside [[projects]] can be)"
                        .into(),
                })
            })
            .collect();
        if !lists.is_empty() {
            return Err(ConfigError { problems: lists });
        }
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                return Err(ConfigError::missing_file(path));
            }
            figment = figment.merge(Toml::file(path));
        }
        Self::from_figment(figment.merge(Env::prefixed(ENV_PREFIX).split("__")))
    }

    /// Parses TOML text (tests and embedded defaults), with no environment layer.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::new().merge(Toml::string(text)))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(ConfigError::from_figment)?;
        config.kafka_configured = figment.find_value("kafka").is_ok();
        let mut problems = config.secrets_from_env();
        if let Err(invalid) = validate::validate(&config) {
            problems.extend(invalid.problems);
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Reads the secrets a `[[projects]]` entry names by environment variable (`token_env`):
    /// list entries have no `APPEALFLOW__...` override of their own.
    fn secrets_from_env(&mut self) -> Vec<Problem> {
        let mut problems = Vec::new();
        for (pi, project) in self.projects.iter_mut().enumerate() {
            let Some(crm) = project.crm.as_mut() else { continue };
            let Some(name) = crm.token_env.clone() else { continue };
            let key = format!("projects[{pi}].crm.token_env");
            match (crm.token.is_some(), std::env::var(&name)) {
                (true, _) => {
                    problems.push(Problem { key, message: "set together with token: keep one".into() })
                }
                (false, Ok(token)) if !token.is_empty() => crm.token = Some(Secret::new(token)),
                (false, _) => problems.push(Problem {
                    key,
                    message: format!("the environment variable {name} is not set (or empty)"),
                }),
            }
        }
        problems
    }

    /// Things that are legal but probably not meant (a scenario block no run can reach):
    /// printed by `check-config` and logged at start-up, never fatal.
    pub fn warnings(&self) -> Vec<Problem> {
        validate::check(self).warnings
    }

    pub fn project(&self, id: &str) -> Option<&ProjectConfig> {
        self.projects.iter().find(|p| p.id == id)
    }
}

impl ProjectConfig {
    pub fn channel(&self, id: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.id == id)
    }

    pub fn scenario(&self, id: &str) -> Option<&ScenarioConfig> {
        self.scenarios.iter().find(|s| s.id == id)
    }
}

/// A short human description of a valid config, printed by `check-config`.
pub fn explain(config: &Config) -> String {
    let mut out =
        format!("config OK: store {}, {} project(s)\n", redact_url(&config.store.url), config.projects.len());
    if config.kafka_configured {
        out.push_str(&config.kafka.connection().explain());
    }
    for p in &config.projects {
        out.push_str(&format!(
            "  project {}: region {}, auto-close after {}, max merge group {}, {} blocked value(s)\n",
            p.id,
            p.default_region,
            humantime::format_duration(p.auto_close_after),
            p.max_merge_group,
            p.blocked_values.len()
        ));
        for c in &p.channels {
            let kind = serde_json::to_value(c.kind)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            out.push_str(&format!(
                "    channel {} ({kind}) → group {}",
                c.id,
                c.group.as_deref().unwrap_or("-")
            ));
            if let Some(f) = &c.fixed_client {
                out.push_str(&format!(", fixed client {f}"));
            }
            if let Some(s) = &c.scenario {
                out.push_str(&format!(", scenario {s}"));
            }
            if let Some(i) = &c.identification {
                out.push_str(&explain_identification(i));
            }
            out.push('\n');
        }
        if let Some(crm) = &p.crm {
            out.push_str(&explain_crm(crm));
        }
        for r in &p.multicontact_rules {
            out.push_str(&format!("    rule {}: {}\n", r.id, r.fields.join(" AND ")));
        }
        for s in &p.scenarios {
            out.push_str(&format!(
                "    scenario {}: {} block(s), starts at {}\n",
                s.id,
                s.blocks.len(),
                s.start
            ));
        }
    }
    out
}

/// Warnings as `check-config` prints them after the explanation (empty when there are none).
pub fn explain_warnings(warnings: &[Problem]) -> String {
    let mut out = String::new();
    if !warnings.is_empty() {
        out.push_str(&format!("{} warning(s):\n", warnings.len()));
    }
    for w in warnings {
        out.push_str(&format!("  {}: {}\n", w.key, w.message));
    }
    out
}

/// One line about a project's CRM. The token is only said to be set, never shown.
fn explain_crm(crm: &CrmConfig) -> String {
    format!(
        "    crm {} (token {}): timeout {}, retries {} with backoff from {}, cache {}, concurrency {}, \
         breaker after {} failed call(s) for {}\n",
        redact_url(&crm.url),
        if crm.token.is_some() { "set" } else { "none" },
        humantime::format_duration(crm.timeout),
        crm.retries,
        humantime::format_duration(crm.backoff),
        humantime::format_duration(crm.cache_ttl),
        crm.concurrency,
        crm.breaker_failures,
        humantime::format_duration(crm.breaker_cooldown),
    )
}

fn explain_identification(i: &IdentificationConfig) -> String {
    let ask = if i.ask_client { format!(", asks up to {} time(s)", i.max_attempts) } else { String::new() };
    format!(", CRM identification {:?} by {}{ask}", i.name, i.identifier)
}

/// Hides a password in a store URL (`postgres://user:secret@host` → `postgres://user:***@host`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests;
