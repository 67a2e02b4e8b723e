//! What every Kafka client of the process shares: the connection properties of `[kafka]`
//! (brokers, TLS, SASL, `[kafka.options]`) and a [`Watch`] on the failures no retry fixes.
//!
//! librdkafka reconnects by itself after any broker error, a rejected certificate or a
//! refused login included, so on its own a misconfigured TLS or SASL setting would look like
//! an endless outage. The watch hears those two through the client's error callback and the
//! process stops with the setting to look at; an unreachable broker stays a retry.

use std::sync::Arc;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

use crate::config::KafkaConfig;

/// A client config holding the connection part of `[kafka]`; the caller adds its own role's
/// properties, then the per-role options.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.connection().properties() {
        config.set(key, value);
    }
    config
}

/// The settings behind a connection failure that retrying cannot fix, or `None`.
pub fn fatal_connection(code: RDKafkaErrorCode) -> Option<&'static str> {
    match code {
        RDKafkaErrorCode::SSL => Some("kafka.security_protocol, kafka.ssl_ca_location"),
        RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed => {
            Some("kafka.security_protocol, kafka.sasl_mechanism, kafka.sasl_username, kafka.sasl_password")
        }
        _ => None,
    }
}

/// Hears the fatal connection failures of every client it is the context of. Cloning shares it.
#[derive(Clone)]
pub struct Watch {
    fatal: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl Default for Watch {
    fn default() -> Self {
        Watch { fatal: Arc::new(tokio::sync::watch::Sender::new(None)) }
    }
}

impl Watch {
    /// The first fatal failure heard, as a sentence naming the settings.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    /// Resolves with the first fatal failure; pending for as long as there is none.
    pub async fn failed(&self) -> String {
        let mut seen = self.fatal.subscribe();
        let heard = seen.wait_for(Option::is_some).await.map(|message| message.clone());
        match heard {
            Ok(message) => message.unwrap_or_default(),
            // The sender lives in `self`: it cannot be dropped while this waits.
            Err(_) => std::future::pending().await,
        }
    }

    fn heard(&self, code: RDKafkaErrorCode, reason: &str) {
        let Some(settings) = fatal_connection(code) else {
            tracing::debug!(%code, reason, "Kafka client error; librdkafka retries");
            return;
        };
        let message = format!("Kafka connection refused for good: {reason} (check {settings})");
        self.fatal.send_if_modified(|slot| {
            if slot.is_some() {
                return false;
            }
            tracing::error!(%code, "{message}");
            *slot = Some(message.clone());
            true
        });
    }
}

impl ClientContext for Watch {
    fn error(&self, error: KafkaError, reason: &str) {
        if let Some(code) = error.rdkafka_error_code() {
            self.heard(code, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_certificate_or_login_is_fatal_and_names_its_settings_and_an_outage_is_not() {
        let watch = Watch::default();
        watch.error(KafkaError::Global(RDKafkaErrorCode::AllBrokersDown), "1/1 brokers are down");
        assert_eq!(watch.fatal(), None);
        watch.error(KafkaError::Global(RDKafkaErrorCode::SSL), "SSL handshake failed");
        let fatal = watch.fatal().expect("fatal");
        assert!(fatal.contains("SSL handshake failed") && fatal.contains("kafka.ssl_ca_location"), "{fatal}");
        watch.error(KafkaError::Global(RDKafkaErrorCode::Authentication), "SASL authentication failed");
        assert_eq!(watch.fatal(), Some(fatal), "the first cause is the one reported");
    }

    #[tokio::test]
    async fn a_waiter_wakes_when_the_failure_is_heard() {
        let watch = Watch::default();
        let waiter = tokio::spawn({
            let watch = watch.clone();
            async move { watch.failed().await }
        });
        tokio::task::yield_now().await;
        watch.error(KafkaError::Global(RDKafkaErrorCode::Authentication), "SASL authentication failed");
        assert!(waiter.await.unwrap().contains("kafka.sasl_password"));
    }
}
