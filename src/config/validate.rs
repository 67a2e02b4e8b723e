//! Start-up validation: every problem is collected (not just the first) and named by key.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;

use super::crm::{CrmConfig, IdentificationConfig};
use super::scenario::{full_match_regex, AskBlock, BlockConfig, Expect, OnInvalid, ScenarioConfig};
use super::{ChannelConfig, Config, ProjectConfig, RuleConfig};

/// One thing wrong with the configuration, located by its key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `projects[0].channels[1].kind`, or `<file>` for problems with the file itself.
    pub key: String,
    pub message: String,
}

/// Everything wrong with a configuration; fatal at start-up.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { problems: vec![Problem { key: key.into(), message: message.into() }] }
    }

    pub fn missing_file(path: &Path) -> Self {
        Self::single("<file>", format!("config file {} does not exist", path.display()))
    }

    /// Turns figment's errors (unknown keys, wrong types, bad durations) into located problems.
    pub fn from_figment(error: figment::Error) -> Self {
        let problems = error
            .into_iter()
            .map(|e| {
                let source = e
                    .metadata
                    .as_ref()
                    .map(|m| match &m.source {
                        Some(src) => format!(" (from {src})"),
                        None => format!(" (from {})", m.name),
                    })
                    .unwrap_or_default();
                Problem { key: key_path(&e.path), message: format!("{}{source}", e.kind) }
            })
            .collect();
        Self { problems }
    }
}

/// `["projects", "0", "channels", "1", "kind"]` → `projects[0].channels[1].kind`.
fn key_path(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if part.chars().all(|c| c.is_ascii_digit()) && !part.is_empty() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    if out.is_empty() {
        "<root>".into()
    } else {
        out
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid configuration ({} problem(s)):", self.problems.len())?;
        for p in &self.problems {
            writeln!(f, "  {}: {}", p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// What one pass over a configuration found: errors refuse it, warnings are only shown.
pub(super) struct Checked {
    pub problems: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let problems = check(config).problems;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { problems })
    }
}

pub(super) fn check(config: &Config) -> Checked {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut push = |key: String, message: String| problems.push(Problem { key, message });

    bounds(config, &mut push);
    let url = &config.store.url;
    if !(url.starts_with("sqlite:") || url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        push("store.url".into(), format!("unsupported store {url:?}: use sqlite://FILE or postgres://..."));
    }
    if config.projects.is_empty() {
        push("projects".into(), "at least one [[projects]] is needed: every input names its project".into());
    }
    duplicates(config.projects.iter().map(|p| p.id.as_str()), "projects", &mut push);

    for (pi, project) in config.projects.iter().enumerate() {
        project_rules(project, &format!("projects[{pi}]"), &mut push, &mut warnings);
    }
    api(config, &mut push);
    for (key, message) in config.kafka.connection().problems() {
        push(key.into(), message);
    }
    Checked { problems, warnings }
}

/// `[api]`: an address that parses, tokens that are secrets and name configured projects.
fn api(config: &Config, push: &mut impl FnMut(String, String)) {
    let api = &config.api;
    if !api.listen.is_empty() && api.listen.parse::<std::net::SocketAddr>().is_err() {
        push("api.listen".into(), format!("{:?} is not an address such as 127.0.0.1:8080", api.listen));
    }
    if !api.listen.is_empty() && api.tokens.is_empty() {
        push(
            "api.tokens".into(),
            "the API serves only bearer tokens: add at least one [[api.tokens]]".into(),
        );
    }
    let mut seen = HashSet::new();
    for (i, t) in api.tokens.iter().enumerate() {
        let at = format!("api.tokens[{i}]");
        // The token itself is a secret: problems never quote it.
        if t.token.len() < 8 || t.token.len() > 256 || !t.token.bytes().all(|b| b.is_ascii_graphic()) {
            push(format!("{at}.token"), "a token is 8 to 256 visible ASCII characters".into());
        }
        if !seen.insert(t.token.as_str()) {
            push(format!("{at}.token"), "the same token is listed twice".into());
        }
        if t.projects.is_empty() {
            push(format!("{at}.projects"), "list the projects this token reads, or [\"*\"]".into());
        }
        for p in t.projects.iter().filter(|p| *p != "*") {
            if !config.projects.iter().any(|c| &c.id == p) {
                push(format!("{at}.projects"), format!("unknown project {p:?}"));
            }
        }
        if let Some(op) = &t.operator {
            if let Err(why) = crate::text::check_id(&op.id) {
                push(format!("{at}.operator.id"), format!("an operator id {why}"));
            }
            if op.name.as_ref().is_some_and(|n| n.len() > 1024 || n.chars().any(char::is_control)) {
                push(
                    format!("{at}.operator.name"),
                    "an operator name is at most 1024 bytes, without control characters".into(),
                );
            }
            if !t.write {
                push(format!("{at}.operator"), "an operator acts through commands: set write = true".into());
            }
        }
    }
}

/// One project: its id, region and bounds, its channels, scenarios, CRM and rules.
fn project_rules(
    project: &ProjectConfig,
    at: &str,
    push: &mut impl FnMut(String, String),
    warnings: &mut Vec<Problem>,
) {
    config_id(&project.id, &format!("{at}.id"), push);
    if phonenumber::country::Id::try_from(project.default_region.as_str()).is_err()
        && project.default_region.parse::<phonenumber::country::Id>().is_err()
    {
        push(
            format!("{at}.default_region"),
            format!("unknown region {:?}: use an ISO 3166 code such as \"RU\"", project.default_region),
        );
    }
    within(&format!("{at}.max_merge_group"), project.max_merge_group, 2, 1_000, push);
    span(&format!("{at}.auto_close_after"), project.auto_close_after, (60, 366 * 86_400), push);
    duplicates(project.channels.iter().map(|c| c.id.as_str()), &format!("{at}.channels"), push);
    for (ci, channel) in project.channels.iter().enumerate() {
        channel_rules(project, channel, &format!("{at}.channels[{ci}]"), push);
    }
    duplicates(project.templates.iter().map(|t| t.name.as_str()), &format!("{at}.templates"), push);
    for (ti, t) in project.templates.iter().enumerate() {
        if t.name.trim().is_empty() || t.name.len() > 128 {
            push(format!("{at}.templates[{ti}].name"), "must be 1 to 128 characters".into());
        }
    }
    duplicates(project.scenarios.iter().map(|s| s.id.as_str()), &format!("{at}.scenarios"), push);
    for (si, s) in project.scenarios.iter().enumerate() {
        scenario(s, &format!("{at}.scenarios[{si}]"), push, warnings);
    }
    if let Some(crm_config) = &project.crm {
        crm(crm_config, &format!("{at}.crm"), push);
    }
    duplicates(
        project.multicontact_rules.iter().map(|r| r.id.as_str()),
        &format!("{at}.multicontact_rules"),
        push,
    );
    for (ri, rule) in project.multicontact_rules.iter().enumerate() {
        multicontact_rule(rule, &format!("{at}.multicontact_rules[{ri}]"), push);
    }
}

fn channel_rules(
    project: &ProjectConfig,
    channel: &ChannelConfig,
    at: &str,
    push: &mut impl FnMut(String, String),
) {
    config_id(&channel.id, &format!("{at}.id"), push);
    if let Some(fixed) = &channel.fixed_client {
        if let Err(why) = crate::text::check_id(fixed) {
            push(format!("{at}.fixed_client"), why);
        }
    }
    if let Some(id) = channel.scenario.as_deref().filter(|id| project.scenario(id).is_none()) {
        push(format!("{at}.scenario"), format!("no scenario {id:?} in project {:?}", project.id));
    }
    if let Some(rule) = &channel.identification {
        identification(rule, project.crm.is_some(), &format!("{at}.identification"), push);
    }
}

fn multicontact_rule(rule: &RuleConfig, at: &str, push: &mut impl FnMut(String, String)) {
    config_id(&rule.id, &format!("{at}.id"), push);
    if rule.fields.is_empty() {
        push(format!("{at}.fields"), format!("rule {:?} has no fields: it would match everyone", rule.id));
    }
    if rule.fields.iter().any(|f| f.trim().is_empty()) {
        push(format!("{at}.fields"), "field names must not be empty".into());
    }
    duplicates(rule.fields.iter().map(|f| f.as_str()), &format!("{at}.fields"), push);
}

/// Every size and duration within bounds: a value outside them is a typo or an overflow
/// waiting to happen (`"300000000years"`, `"1ns"`, a batch of a billion inputs), never a wish.
fn bounds(config: &Config, push: &mut impl FnMut(String, String)) {
    let p = &config.pipeline;
    within("pipeline.batch_size", p.batch_size, 1, 100_000, push);
    within("pipeline.buffered_batches", p.buffered_batches, 1, 64, push);
    within("pipeline.max_input_bytes", p.max_input_bytes, 64, 16 << 20, push);
    let producer_max: usize = config
        .kafka
        .producer_options
        .get("message.max.bytes")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if p.dlq_max_bytes < 4096 || p.dlq_max_bytes + 64 * 1024 > producer_max {
        push(
            "pipeline.dlq_max_bytes".into(),
            format!(
                "must be at least 4096 and 64 KiB under the producer's message.max.bytes ({producer_max}, \
                 kafka.producer_options): a DLQ record must always fit the broker"
            ),
        );
    }
    span_ms("pipeline.batch_max_wait", p.batch_max_wait, (1, 60_000), push);
    span("pipeline.max_future", p.max_future, (1, 7 * 86_400), push);
    span("kafka.shutdown_deadline", config.kafka.shutdown_deadline, (1, 600), push);
    span("kafka.idle_clock_after", config.kafka.idle_clock_after, (1, 86_400), push);
    // 0 keeps no feed; up to 30 days.
    span_ms("api.feed_retention", config.api.feed_retention, (0, 30 * 86_400_000), push);
    span_ms("api.idle_timeout", config.api.idle_timeout, (1_000, 3_600_000), push);
    within("api.max_connections", config.api.max_connections, 1, 65_536, push);
    within("store.max_connections", config.store.max_connections as usize, 1, 64, push);
    let session_ms: u128 = config
        .kafka
        .consumer_options
        .get("session.timeout.ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(super::SESSION_TIMEOUT_MS as u128);
    if config.kafka.shutdown_deadline.as_millis() >= session_ms {
        push(
            "kafka.shutdown_deadline".into(),
            format!(
                "must be shorter than the consumer's session.timeout.ms ({session_ms} ms, \
                 kafka.consumer_options): a shutdown outliving it hands partitions to another \
                 instance while this one still applies them"
            ),
        );
    }
}

fn within(key: &str, value: usize, min: usize, max: usize, push: &mut impl FnMut(String, String)) {
    if !(min..=max).contains(&value) {
        push(key.into(), format!("{value} is out of bounds: must be between {min} and {max}"));
    }
}

/// A duration between `min` and `max` seconds.
fn span(
    key: &str,
    value: std::time::Duration,
    (min, max): (u64, u64),
    push: &mut impl FnMut(String, String),
) {
    span_ms(key, value, (min * 1000, max * 1000), push);
}

fn span_ms(
    key: &str,
    value: std::time::Duration,
    (min, max): (u64, u64),
    push: &mut impl FnMut(String, String),
) {
    let ms = value.as_millis();
    if ms < min as u128 || ms > max as u128 {
        let show = |ms: u64| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string();
        push(
            key.into(),
            format!(
                "{} is out of bounds: must be between {} and {}",
                humantime::format_duration(value),
                show(min),
                show(max)
            ),
        );
    }
}

/// Ids the config defines (projects, channels, rules, scenarios, blocks) are keys and parts
/// of keys (`v:<channel>:<visitor>`): letters, digits, `.`, `_` and `-`, at most 64. A `:` in
/// a channel id would let two visitors share a handle.
fn config_id(id: &str, key: &str, push: &mut impl FnMut(String, String)) {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !ok {
        push(
            key.into(),
            format!(
                "{:?} is not an id: use 1 to 64 letters, digits, '.', '_' or '-'",
                crate::text::shorten(id)
            ),
        );
    }
}

/// A scenario's graph: unique ids, exits that name blocks, consistent `ask` options, and no
/// loop a run could spin in without waiting for the client. Blocks no run reaches are legal
/// (a scenario being edited) but almost always a mistake, so they are warnings.
fn scenario(
    s: &ScenarioConfig,
    at: &str,
    push: &mut impl FnMut(String, String),
    warnings: &mut Vec<Problem>,
) {
    config_id(&s.id, &format!("{at}.id"), push);
    duplicates(s.blocks.iter().map(BlockConfig::id), &format!("{at}.blocks"), push);
    if s.index_of(&s.start).is_none() {
        push(format!("{at}.start"), format!("no block {:?} in scenario {:?}", s.start, s.id));
    }
    for (bi, block) in s.blocks.iter().enumerate() {
        block_rules(s, block, &format!("{at}.blocks[{bi}]"), push);
    }
    for group in s.askless_cycles() {
        let ids: Vec<&str> = group.iter().map(|&i| s.blocks[i].id()).collect();
        push(
            format!("{at}.blocks[{}]", group[0]),
            format!(
                "a loop without an ask block runs through {}: the bot would never stop to wait for the client",
                ids.join(", ")
            ),
        );
    }
    for i in s.unreachable() {
        let message = format!("block {:?} is never reached from start {:?}", s.blocks[i].id(), s.start);
        warnings.push(Problem { key: format!("{at}.blocks[{i}]"), message });
    }
}

fn block_rules(s: &ScenarioConfig, block: &BlockConfig, at: &str, push: &mut impl FnMut(String, String)) {
    config_id(block.id(), &format!("{at}.id"), push);
    for (key, target) in block.exits() {
        if s.index_of(target).is_none() {
            push(format!("{at}.{key}"), format!("no block {target:?} in scenario {:?}", s.id));
        }
    }
    match block {
        BlockConfig::CheckField(b) => not_empty(&b.field, &format!("{at}.field"), push),
        BlockConfig::Message(b) => not_empty(&b.text, &format!("{at}.text"), push),
        BlockConfig::Ask(b) => ask_rules(b, at, push),
        BlockConfig::Identify(_) | BlockConfig::End(_) => {}
    }
}

fn ask_rules(ask: &AskBlock, at: &str, push: &mut impl FnMut(String, String)) {
    not_empty(&ask.text, &format!("{at}.text"), push);
    if let Some(field) = &ask.save_to {
        not_empty(field, &format!("{at}.save_to"), push);
    }
    match (ask.expect, &ask.pattern) {
        (Expect::Regex, None) => push(format!("{at}.pattern"), "required when expect = \"regex\"".into()),
        (Expect::Regex, Some(p)) => {
            if let Err(e) = full_match_regex(p) {
                push(format!("{at}.pattern"), e);
            }
        }
        (other, Some(_)) => push(
            format!("{at}.pattern"),
            format!("only used with expect = \"regex\", this block expects {:?}", other.as_str()),
        ),
        (_, None) => {}
    }
    invalid_exit_rules(ask, at, push);
}

/// `invalid` is where `continue` goes, and where `repeat` goes once `max_repeats` ran out;
/// an option that could never take effect is refused rather than silently ignored.
fn invalid_exit_rules(ask: &AskBlock, at: &str, push: &mut impl FnMut(String, String)) {
    match (ask.on_invalid, &ask.invalid, ask.max_repeats) {
        (OnInvalid::Continue, None, _) => {
            push(format!("{at}.invalid"), "required when on_invalid = \"continue\"".into())
        }
        (OnInvalid::Continue, Some(_), Some(_)) => {
            push(format!("{at}.max_repeats"), "only used with on_invalid = \"repeat\"".into())
        }
        (OnInvalid::Repeat, Some(_), None) => push(
            format!("{at}.invalid"),
            "never taken: with on_invalid = \"repeat\" it is followed only once max_repeats is reached"
                .into(),
        ),
        (OnInvalid::Repeat, _, Some(0)) => push(
            format!("{at}.max_repeats"),
            "must be at least 1 (to never repeat, use on_invalid = \"continue\")".into(),
        ),
        _ => {}
    }
}

fn not_empty(value: &str, key: &str, push: &mut impl FnMut(String, String)) {
    if value.trim().is_empty() {
        push(key.to_string(), "must not be empty".into());
    }
}

fn crm(crm: &CrmConfig, at: &str, push: &mut impl FnMut(String, String)) {
    if let Err(why) = crm_url(&crm.url) {
        push(format!("{at}.url"), why);
    }
    if let Some(ca) = &crm.ca_file {
        if !crm.url.starts_with("https://") {
            push(format!("{at}.ca_file"), "set, but crm.url is not https://: a CA verifies TLS only".into());
        }
        if let Err(why) = super::crm::read_ca_file(ca) {
            push(format!("{at}.ca_file"), why);
        }
    }

    if crm.timeout.is_zero() {
        push(format!("{at}.timeout"), "must be longer than zero".into());
    }
    if crm.concurrency == 0 {
        push(format!("{at}.concurrency"), "must be at least 1".into());
    }
    if crm.breaker_failures == 0 {
        push(format!("{at}.breaker_failures"), "must be at least 1".into());
    }
    // NB: the backoff doubles per retry; beyond this the stream would wait minutes per call.
    if crm.retries > 10 {
        push(format!("{at}.retries"), "at most 10: a slow CRM must not stall the stream".into());
    }
}

/// `http://` or `https://` with a host.
fn crm_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e}): write e.g. \"https://crm:8099\""))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(()),
        "http" | "https" => Err("the URL has no host".into()),
        other => Err(format!("unsupported scheme {other:?}: use https:// (or http://)")),
    }
}

fn identification(
    rule: &IdentificationConfig,
    project_has_crm: bool,
    at: &str,
    push: &mut impl FnMut(String, String),
) {
    if !project_has_crm {
        push(at.into(), "channel has identification but project has no [projects.crm]".into());
    }
    if rule.name.trim().is_empty() {
        push(format!("{at}.name"), "must not be empty".into());
    }
    let no_question = rule.question.as_deref().is_none_or(|q| q.trim().is_empty());
    if rule.ask_client && no_question {
        push(format!("{at}.question"), "required when ask_client = true".into());
    }
    if rule.ask_client && rule.max_attempts == 0 {
        push(format!("{at}.max_attempts"), "must be at least 1 when ask_client = true".into());
    }
}

fn duplicates<'a>(ids: impl Iterator<Item = &'a str>, at: &str, push: &mut impl FnMut(String, String)) {
    let mut seen = HashSet::new();
    for (i, id) in ids.enumerate() {
        if !seen.insert(id) {
            push(format!("{at}[{i}]"), format!("duplicate id {id:?}"));
        }
    }
}
