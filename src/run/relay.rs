//! The relay: publishes committed batches from the outbox in commit order.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::retry_store;
use crate::emit::kafka::KafkaSink;
use crate::emit::Record;
use crate::pipeline::Committed;
use crate::store::{ErrorClass, Store};
use crate::telemetry;
use crate::telemetry::events::KafkaFatal;

/// Committed batches the relay may hold before `publish` waits.
const RELAY_DEPTH: usize = 4;
/// Batches published together at most (one produce round, one outbox delete).
const RELAY_GROUP: usize = 16;

/// Publishes committed batches in commit order, off the processing path: while batch N's
/// records wait for their acknowledgements, batch N+1 is already being applied. Batches
/// waiting together are produced as one round and forgotten in one outbox delete.
pub(super) struct Relay {
    tx: mpsc::Sender<(Instant, Committed)>,
    task: JoinHandle<anyhow::Result<RelayStats>>,
}

/// Where the relay's time went over a run.
#[derive(Debug, Default, Clone)]
pub struct RelayStats {
    /// Publish rounds (each one or more committed batches).
    pub rounds: u64,
    pub batches: u64,
    /// Summed over batches: from being handed to the relay to the start of their round.
    pub queued: Duration,
    /// Summed over rounds: producing and waiting for every acknowledgement.
    pub publish: Duration,
    /// Summed over rounds: deleting the round's batches from the outbox.
    pub forget: Duration,
}

impl Relay {
    pub(super) fn start(store: Store, sink: KafkaSink) -> Relay {
        let (tx, rx) = mpsc::channel(RELAY_DEPTH);
        Relay { tx, task: tokio::spawn(relay(store, sink, rx)) }
    }

    pub(super) async fn send(&mut self, committed: Committed) -> anyhow::Result<()> {
        if self.tx.send((Instant::now(), committed)).await.is_err() {
            // The relay only stops early on a fatal store error; surface it.
            let outcome = (&mut self.task).await?;
            outcome?;
            anyhow::bail!("the outbox relay stopped unexpectedly");
        }
        Ok(())
    }

    /// Publishes what is queued and returns once the outbox is empty.
    pub(super) async fn finish(self) -> anyhow::Result<RelayStats> {
        drop(self.tx);
        self.task.await?
    }
}

async fn relay(
    store: Store,
    sink: KafkaSink,
    mut rx: mpsc::Receiver<(Instant, Committed)>,
) -> anyhow::Result<RelayStats> {
    let mut stats = RelayStats::default();
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < RELAY_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        stats.rounds += 1;
        stats.batches += group.len() as u64;
        stats.queued += group.iter().map(|(handed, _)| started - *handed).sum::<Duration>();
        let ids: Vec<String> = group.iter().flat_map(|(_, c)| c.batch_ids.iter().cloned()).collect();

        let records: Vec<Record> = group.into_iter().flat_map(|(_, c)| c.records).collect();
        telemetry::outbox_backlog(records.len());
        publish_with_retry(&sink, &records).await?;
        let published = Instant::now();
        stats.publish += published - started;
        telemetry::published(published - started);
        retry_store(|| store.mark_published(&ids)).await?;
        stats.forget += published.elapsed();
        telemetry::outbox_backlog(0);
    }
    sink.flush(Duration::from_secs(5));
    Ok(stats)
}

/// Produces what a crashed run committed but did not get acknowledged.
pub(super) async fn republish_outbox(store: &Store, sink: &KafkaSink) -> anyhow::Result<()> {
    for (batch_id, records) in retry_store(|| store.pending_outbox()).await? {
        tracing::info!(batch = %batch_id, records = records.len(), "republishing records of an interrupted batch");
        publish_with_retry(sink, &records).await?;
        retry_store(|| store.mark_published(std::slice::from_ref(&batch_id))).await?;
    }
    Ok(())
}

/// Publishes records, retrying what may pass later (the broker down, a queue full) with
/// backoff. A permanent error (a record over the broker's limit, a missing topic, no
/// authorisation) would fail forever: `run` stops with the cause and the setting, the records
/// stay in the outbox for the next start.
async fn publish_with_retry(sink: &KafkaSink, records: &[Record]) -> anyhow::Result<()> {
    let retryable = |e: &rdkafka::error::KafkaError| crate::errors::kafka(e).0 != ErrorClass::Fatal;
    let policy = crate::retry::Backoff::services(None);
    match crate::retry::retry("publish", policy, retryable, || sink.publish(records)).await.0 {
        Ok(()) => Ok(()),
        Err(e) => {
            let settings = crate::errors::kafka(&e).1;
            KafkaFatal { side: "publish", error: &e, settings }.emit();
            anyhow::bail!(
                "publishing to Kafka failed: {e} (check {settings}); the records stay in the outbox"
            )
        }
    }
}
