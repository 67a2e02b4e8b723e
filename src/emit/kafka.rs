//! The Kafka sink: publishes a committed batch's records with an idempotent producer and
//! returns only when the broker acknowledged every one of them (acks=all), so the caller may
//! then drop the batch from the outbox.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use super::Record;
use crate::broker::Watch;
use crate::config::{KafkaConfig, TopicsConfig};

pub struct KafkaSink {
    producer: FutureProducer<Watch>,
    topics: TopicsConfig,
}

impl KafkaSink {
    pub fn new(kafka: &KafkaConfig, watch: Watch) -> Result<Self, KafkaError> {
        let mut config = crate::broker::client_config(kafka);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        for (k, v) in &kafka.producer_options {
            config.set(k, v);
        }
        Ok(KafkaSink { producer: config.create_with_context(watch)?, topics: kafka.topics.clone() })
    }

    /// Sends every record and waits for all acknowledgements. Records of one key keep their
    /// order: the idempotent producer never reorders within a partition.
    pub async fn publish(&self, records: &[Record]) -> Result<(), KafkaError> {
        let sends = records.iter().map(|r| {
            let record = FutureRecord::to(r.topic.name(&self.topics)).key(&r.key).payload(&r.value);
            self.producer.send(record, Duration::from_secs(30))
        });
        for result in join_all(sends).await {
            result.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// Waits for records in flight. Only an optimisation at shutdown: every record still
    /// unacknowledged is in the outbox and is produced again at the next start.
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "producer flush at shutdown failed; the outbox keeps what was not acknowledged");
        }
    }
}

/// The write API's way onto the commands topic: one command at a time, keyed by project,
/// returned only once the broker acknowledged it (acks=all), or failed within
/// `timeout` (a broker that is down makes the API answer `503`, never hang).
pub struct CommandProducer {
    producer: FutureProducer<Watch>,
    topic: String,
    timeout: Duration,
    brokers: String,
    watch: Watch,
}

impl CommandProducer {
    pub fn new(kafka: &KafkaConfig, timeout: Duration, watch: Watch) -> Result<Self, KafkaError> {
        let mut config = crate::broker::client_config(kafka);
        config
            // A command carries its own idempotency key (`command_id`): a copy the producer
            // retried is applied once anyway. Producer idempotence would add nothing, and a
            // message timed out during an outage would force an epoch bump on reconnect.
            .set("enable.idempotence", "false")
            .set("acks", "all")
            .set("linger.ms", "0")
            .set("message.timeout.ms", timeout.as_millis().to_string());
        for (k, v) in &kafka.producer_options {
            config.set(k, v);
        }
        let brokers = kafka.brokers.clone();
        Ok(CommandProducer {
            producer: config.create_with_context(watch.clone())?,
            topic: kafka.topics.commands.clone(),
            timeout,
            brokers,
            watch,
        })
    }

    /// Why a send failed, in the settings' words: a timeout means no broker answered.
    pub fn explain(&self, error: &KafkaError) -> String {
        use rdkafka::types::RDKafkaErrorCode;
        if let Some(fatal) = self.watch.fatal() {
            return fatal;
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::MessageTimedOut) => format!(
                "no broker of kafka.brokers ({}) acknowledged it within {:?}",
                self.brokers, self.timeout
            ),
            _ => format!("kafka.topics.commands ({}): {error}", self.topic),
        }
    }

    /// Produces one command and waits for its acknowledgement.
    pub async fn send(&self, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let record = FutureRecord::to(&self.topic).key(key).payload(payload);
        self.producer.send(record, self.timeout).await.map(|_| ()).map_err(|(e, _)| e)
    }
}
