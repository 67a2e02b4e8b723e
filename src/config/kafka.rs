//! How every Kafka client of the process reaches the brokers: the transport (`PLAINTEXT`,
//! `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`), the SASL login and the CA that verifies the
//! brokers' certificates, plus `[kafka.options]` for any other librdkafka property.
//!
//! Typed keys rather than raw librdkafka properties so that `check-config` can say what is
//! wrong (SASL without a user, a CA file on a plaintext connection) and so that the password
//! is a [`Secret`] that no log or message shows.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::Secret;

/// `security.protocol`: whether the connection is encrypted and whether it logs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum SecurityProtocol {
    #[default]
    #[serde(rename = "PLAINTEXT", alias = "plaintext")]
    Plaintext,
    #[serde(rename = "SSL", alias = "ssl")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT", alias = "sasl_plaintext")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL", alias = "sasl_ssl")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// `sasl.mechanism`: the login exchanges librdkafka carries without extra system libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// librdkafka properties the typed keys own: setting one in `[kafka.options]` as well would
/// leave two answers to one question.
pub const OWNED_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "kafka.brokers"),
    ("group.id", "kafka.group_id"),
    ("security.protocol", "kafka.security_protocol"),
    ("sasl.mechanism", "kafka.sasl_mechanism"),
    ("sasl.mechanisms", "kafka.sasl_mechanism"),
    ("sasl.username", "kafka.sasl_username"),
    ("sasl.password", "kafka.sasl_password"),
    ("ssl.ca.location", "kafka.ssl_ca_location"),
];

/// The connection part of `[kafka]`, shared by the consumer and every producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection<'a> {
    pub brokers: &'a str,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: Option<SaslMechanism>,
    pub sasl_username: Option<&'a str>,
    pub sasl_password: Option<&'a Secret>,
    pub ssl_ca_location: Option<&'a PathBuf>,
    pub options: &'a BTreeMap<String, String>,
}

impl Connection<'_> {
    /// The librdkafka properties every client of the process starts from, in the order they
    /// are set. Values of secret properties are only ever handed to librdkafka.
    pub fn properties(&self) -> Vec<(&str, &str)> {
        let mut out =
            vec![("bootstrap.servers", self.brokers), ("security.protocol", self.security_protocol.as_str())];
        if let Some(m) = self.sasl_mechanism {
            out.push(("sasl.mechanism", m.as_str()));
        }
        if let Some(user) = self.sasl_username {
            out.push(("sasl.username", user));
        }
        if let Some(password) = self.sasl_password {
            out.push(("sasl.password", password.expose()));
        }
        if let Some(ca) = self.ssl_ca_location.and_then(|p| p.to_str()) {
            out.push(("ssl.ca.location", ca));
        }
        out.extend(self.options.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        out
    }

    /// One line for `check-config`: where, how and as whom, never the password.
    pub fn explain(&self) -> String {
        let mut out = format!("kafka {} over {}", self.brokers, self.security_protocol.as_str());
        if self.security_protocol.sasl() {
            out.push_str(&format!(
                ", {} as {} (password {})",
                self.sasl_mechanism.map_or("-", SaslMechanism::as_str),
                self.sasl_username.unwrap_or("-"),
                if self.sasl_password.is_some() { "set" } else { "not set" }
            ));
        }
        if let Some(ca) = self.ssl_ca_location {
            out.push_str(&format!(", brokers verified against {}", ca.display()));
        } else if self.security_protocol.tls() {
            out.push_str(", brokers verified against the system's CA roots");
        }
        if !self.options.is_empty() {
            let keys: Vec<&str> = self.options.keys().map(String::as_str).collect();
            out.push_str(&format!(", options {}", keys.join(", ")));
        }
        out.push('\n');
        out
    }

    /// What is wrong with the combination, by key.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let protocol = self.security_protocol.as_str();
        if self.security_protocol.sasl() {
            if self.sasl_mechanism.is_none() {
                out.push((
                    "kafka.sasl_mechanism",
                    format!("{protocol} needs a mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
                ));
            }
            if self.sasl_username.is_none_or(|u| u.trim().is_empty()) {
                out.push(("kafka.sasl_username", format!("{protocol} needs a user to log in as")));
            }
            if self.sasl_password.is_none_or(|p| p.expose().is_empty()) {
                out.push((
                    "kafka.sasl_password",
                    format!("{protocol} needs a password (set APPEALFLOW__KAFKA__SASL_PASSWORD)"),
                ));
            }
        } else {
            let set = [
                ("kafka.sasl_mechanism", self.sasl_mechanism.is_some()),
                ("kafka.sasl_username", self.sasl_username.is_some()),
                ("kafka.sasl_password", self.sasl_password.is_some()),
            ];
            for (key, _) in set.into_iter().filter(|(_, set)| *set) {
                out.push((
                    key,
                    format!("set, but security_protocol is {protocol}: use SASL_SSL (or SASL_PLAINTEXT) to log in"),
                ));
            }
        }
        if let Some(ca) = self.ssl_ca_location {
            if !self.security_protocol.tls() {
                out.push((
                    "kafka.ssl_ca_location",
                    format!("set, but security_protocol is {protocol}: use SSL or SASL_SSL for TLS"),
                ));
            } else if !ca.is_file() {
                out.push(("kafka.ssl_ca_location", format!("{} is not a readable file", ca.display())));
            }
        }
        for key in self.options.keys() {
            if let Some((_, owner)) = OWNED_PROPERTIES.iter().find(|(p, _)| p == key) {
                out.push(("kafka.options", format!("{key:?} is set by {owner}: set it there")));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(options: &BTreeMap<String, String>) -> Connection<'_> {
        Connection {
            brokers: "b:9092",
            security_protocol: SecurityProtocol::Plaintext,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            options,
        }
    }

    #[test]
    fn a_plaintext_connection_sets_only_the_brokers_and_the_protocol() {
        let none = BTreeMap::new();
        assert_eq!(
            plain(&none).properties(),
            vec![("bootstrap.servers", "b:9092"), ("security.protocol", "PLAINTEXT")]
        );
        assert!(plain(&none).problems().is_empty());
    }

    #[test]
    fn sasl_ssl_hands_librdkafka_the_login_and_the_ca_and_check_config_never_shows_the_password() {
        let none = BTreeMap::new();
        let password = Secret::new("hunter2");
        let ca = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
        let c = Connection {
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: Some(SaslMechanism::ScramSha512),
            sasl_username: Some("svc"),
            sasl_password: Some(&password),
            ssl_ca_location: Some(&ca),
            ..plain(&none)
        };
        let props = c.properties();
        assert!(props.contains(&("sasl.mechanism", "SCRAM-SHA-512")));
        assert!(props.contains(&("sasl.password", "hunter2")));
        assert!(props.contains(&("ssl.ca.location", "/etc/ssl/certs/ca-certificates.crt")));
        let explained = c.explain();
        assert!(explained.contains("SCRAM-SHA-512 as svc (password set)"), "{explained}");
        assert!(!explained.contains("hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn sasl_without_a_user_or_a_mechanism_is_explained_by_key() {
        let none = BTreeMap::new();
        let c = Connection { security_protocol: SecurityProtocol::SaslSsl, ..plain(&none) };
        let keys: Vec<&str> = c.problems().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["kafka.sasl_mechanism", "kafka.sasl_username", "kafka.sasl_password"]);
    }

    #[test]
    fn a_login_or_a_ca_on_a_connection_that_cannot_use_it_is_refused() {
        let none = BTreeMap::new();
        let ca = PathBuf::from("/nonexistent/ca.pem");
        let c = Connection { sasl_username: Some("svc"), ssl_ca_location: Some(&ca), ..plain(&none) };
        let problems = c.problems();
        assert!(problems.iter().any(|(k, m)| *k == "kafka.sasl_username" && m.contains("SASL_SSL")));
        assert!(problems.iter().any(|(k, m)| *k == "kafka.ssl_ca_location" && m.contains("PLAINTEXT")));
        let tls = Connection {
            security_protocol: SecurityProtocol::Ssl,
            ssl_ca_location: Some(&ca),
            ..plain(&none)
        };
        assert!(tls.problems()[0].1.contains("not a readable file"));
    }

    #[test]
    fn an_option_that_a_typed_key_owns_is_refused_with_the_key_to_use() {
        let options = BTreeMap::from([("sasl.password".to_string(), "x".to_string())]);
        let problems = plain(&options).problems();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].1.contains("kafka.sasl_password"), "{problems:?}");
        assert!(!problems[0].1.contains("\"x\""));
    }
}
