//! Error classes every stage acts on (SPEC "Guarantees"): retry with backoff and never skip,
//! dead-letter the input and move on, or stop with a message naming the cause and the
//! setting. Nothing retries a permanent error forever.

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How the process reacts to a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connection lost, lock timeout, broker unavailable: retry after a pause, skip nothing.
    Retryable,
    /// Data of one input that cannot be stored or sent (a value an index cannot hold, an id
    /// that is another row's): that input goes to the DLQ, the rest of its batch applies.
    Poison,
    /// Configuration, authorisation or schema: stop with a clear message.
    Fatal,
}

/// Whether an error is the TLS layer refusing the peer (a certificate nobody trusted, a name
/// it does not hold), looking through the `io::Error`s that wrap it: `io::Error::source`
/// skips a wrapped error, so the chain alone does not show it.
pub fn is_tls_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    match error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        Some(inner) => is_tls_refusal(inner),
        None => false,
    }
}

/// A Kafka failure's class, and for a fatal one the settings to look at.
pub fn kafka(e: &KafkaError) -> (ErrorClass, &'static str) {
    use RDKafkaErrorCode as C;
    if let Some(settings) = e.rdkafka_error_code().and_then(crate::broker::fatal_connection) {
        return (ErrorClass::Fatal, settings);
    }
    match e {
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => (
            ErrorClass::Fatal,
            "kafka.brokers, kafka.options, kafka.consumer_options, kafka.producer_options",
        ),
        KafkaError::Subscription(_) => (ErrorClass::Fatal, "kafka.topics"),
        _ => match e.rdkafka_error_code() {
            Some(C::MessageSizeTooLarge | C::InvalidMessageSize) => (
                ErrorClass::Fatal,
                "kafka.producer_options message.max.bytes (and the broker's), pipeline.max_input_bytes, \
                 pipeline.dlq_max_bytes",
            ),
            Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition | C::InvalidTopic) => {
                (ErrorClass::Fatal, "kafka.topics (create the topics, or name existing ones)")
            }
            Some(
                C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::TransactionalIdAuthorizationFailed,
            ) => (
                ErrorClass::Fatal,
                "the ACLs of kafka.sasl_username on the broker, kafka.topics, kafka.group_id",
            ),
            Some(C::Fatal | C::InvalidArgument | C::UnsupportedFeature | C::UnsupportedVersion) => {
                (ErrorClass::Fatal, "kafka.producer_options / kafka.consumer_options")
            }
            _ => (ErrorClass::Retryable, ""),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_certificate_or_login_stops_naming_the_connection_settings() {
        let ssl = KafkaError::MessageConsumption(RDKafkaErrorCode::SSL);
        assert_eq!(kafka(&ssl), (ErrorClass::Fatal, "kafka.security_protocol, kafka.ssl_ca_location"));
        let login = KafkaError::Global(RDKafkaErrorCode::Authentication);
        assert!(kafka(&login).1.contains("kafka.sasl_password"));
    }

    #[test]
    fn an_oversized_record_or_a_missing_topic_stops_and_a_broker_outage_is_retried() {
        let too_big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert_eq!(kafka(&too_big).0, ErrorClass::Fatal);
        assert!(kafka(&too_big).1.contains("message.max.bytes"));
        let missing = KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition);
        assert_eq!(kafka(&missing).0, ErrorClass::Fatal);
        for transient in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::LeaderNotAvailable,
        ] {
            assert_eq!(
                kafka(&KafkaError::MessageProduction(transient)).0,
                ErrorClass::Retryable,
                "{transient:?}"
            );
        }
    }
}
