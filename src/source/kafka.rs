//! The Kafka source: a consumer-group member on the inbound and commands topics.
//!
//! Offsets are never committed automatically: the database holds the next offset of every
//! partition, written in the same transaction as the state it produced. Kafka's committed
//! offsets are only a mirror for lag monitoring. On assignment we seek each partition to the
//! offset the database holds (see `run`), so a crash between the database commit and Kafka's
//! cannot make us skip or repeat an input.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::{RawInput, SourcePos};
use crate::broker::Watch;
use crate::config::KafkaConfig;

/// A topic partition.
pub type Tp = (String, i32);

/// Partitions assigned and revoked since the run loop last looked.
#[derive(Default)]
pub struct RebalanceLog {
    pub assigned: BTreeSet<Tp>,
    pub revoked: BTreeSet<Tp>,
}

/// Records rebalances for the run loop; it acts on them between batches.
#[derive(Clone, Default)]
pub struct GroupContext {
    log: Arc<Mutex<RebalanceLog>>,
    watch: Watch,
}

impl ClientContext for GroupContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.watch.error(error, reason);
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut log = self.log.lock().expect("rebalance log");
            for tp in partitions(tpl) {
                log.assigned.remove(&tp);
                log.revoked.insert(tp);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut log = self.log.lock().expect("rebalance log");
            for tp in partitions(tpl) {
                log.revoked.remove(&tp);
                log.assigned.insert(tp);
            }
        }
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect()
}

pub struct KafkaSource {
    pub consumer: StreamConsumer<GroupContext>,
    context: GroupContext,
}

impl KafkaSource {
    pub fn new(kafka: &KafkaConfig, watch: Watch) -> Result<Self, KafkaError> {
        let mut config = crate::broker::client_config(kafka);
        config
            .set("group.id", &kafka.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", crate::config::SESSION_TIMEOUT_MS.to_string());
        for (k, v) in &kafka.consumer_options {
            config.set(k, v);
        }
        let context = GroupContext { watch, ..GroupContext::default() };
        let consumer: StreamConsumer<GroupContext> = config.create_with_context(context.clone())?;
        let topics = [kafka.topics.inbound.as_str(), kafka.topics.commands.as_str()];
        consumer.subscribe(&topics)?;
        Ok(KafkaSource { consumer, context })
    }

    /// Takes the rebalances that happened since the last call.
    pub fn take_rebalances(&self) -> RebalanceLog {
        std::mem::take(&mut *self.context.log.lock().expect("rebalance log"))
    }

    /// The next input, as an owned raw input with its position.
    pub async fn next(&self) -> Result<RawInput, KafkaError> {
        let m = self.consumer.recv().await?;
        let pos =
            SourcePos::Kafka { topic: m.topic().to_string(), partition: m.partition(), offset: m.offset() };
        let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
        Ok(RawInput { bytes: m.payload().unwrap_or_default().to_vec(), pos, key, cut: None, project: None })
    }

    /// Stops fetching from a partition. librdkafka also drops what it prefetched for it and,
    /// on [`KafkaSource::resume`], fetches again from the first offset it has not handed
    /// out, so nothing is skipped or handed out twice.
    pub fn pause(&self, tp: &Tp) -> Result<(), KafkaError> {
        self.consumer.pause(&one_partition(tp))
    }

    pub fn resume(&self, tp: &Tp) -> Result<(), KafkaError> {
        self.consumer.resume(&one_partition(tp))
    }

    /// Moves a partition's read position (to the offset the database holds).
    pub fn seek(&self, tp: &Tp, offset: i64) -> Result<(), KafkaError> {
        self.consumer.seek(&tp.0, tp.1, Offset::Offset(offset), std::time::Duration::from_secs(10))
    }

    /// The partition's high watermark as last seen by the fetcher (no network round trip).
    pub fn high_watermark(&self, tp: &Tp) -> Option<i64> {
        let topic = std::ffi::CString::new(tp.0.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer lives as long as `self.consumer`; librdkafka only reads
        // the topic string and writes the two offsets. rust-rdkafka wraps only the networked
        // `fetch_watermarks`, which would cost a broker round trip per batch.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                tp.1,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
            .then_some(high)
    }

    /// Mirrors a committed offset to the group, for lag monitoring only.
    pub fn mirror_offset(&self, tp: &Tp, next_offset: i64, mode: rdkafka::consumer::CommitMode) {
        let mut tpl = TopicPartitionList::new();
        if tpl.add_partition_offset(&tp.0, tp.1, Offset::Offset(next_offset)).is_ok() {
            if let Err(e) = self.consumer.commit(&tpl, mode) {
                tracing::debug!(error = %e, topic = %tp.0, partition = tp.1, "offset mirror to the group failed");
            }
        }
    }
}

fn one_partition(tp: &Tp) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&tp.0, tp.1);
    tpl
}

/// The store's partition key of a topic partition.
pub fn partition_key(tp: &Tp) -> String {
    format!("{}:{}", tp.0, tp.1)
}
