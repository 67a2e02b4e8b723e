//! `appealflow run`: the consumer-group service.
//!
//! # Guarantee
//! Effectively-once: every input of the inbound and commands topics is applied to the state
//! exactly once, and every output record reaches its topic at least once with a stable
//! `event_id`/`outbound_id`/`dlq_id`, so a consumer that drops repeated ids sees each exactly
//! once. How:
//! - Inputs are applied in micro-batches of one or more partitions. One database transaction
//!   holds the state changes, the ids of the inputs applied, each partition's next offset and
//!   event-time clock, and the batch's output records (the outbox). That commit is the only
//!   commit point.
//! - After the commit a relay task produces the records with an idempotent producer
//!   (acks=all), in commit order, while the next batch is already being applied; only when
//!   every record was acknowledged is the batch deleted from the outbox. At start, records
//!   left in the outbox by a crash are produced first.
//! - On assignment a partition is read from the offset the database holds, never from Kafka's
//!   committed offset (which is only mirrored there for lag monitoring). Inputs below that
//!   offset are skipped; a replayed input with a known `message_id`/`command_id` is a no-op.
//!
//! # Limits
//! - A crash between the commit and the acknowledgements republishes that batch's records
//!   (same ids): downstream sees duplicates unless it deduplicates by id.
//! - Records of different batches of one partition are published in batch order; records of
//!   different partitions are not ordered with each other.
//! - A project's batches are applied one at a time (they take turns on its lock), so the
//!   partitions that carry the same projects form one batch between them, and wait while a
//!   batch holding their project is applied (see [`plan`]). Partitions of disjoint projects
//!   are applied concurrently: at most one batch per partition, at most
//!   `store.max_connections - 1` at once on PostgreSQL, one on SQLite.
//! - While the database or the broker is down the loop retries with backoff and neither
//!   skips nor dead-letters anything; a consumer stuck longer than `max.poll.interval.ms`
//!   leaves the group and its partitions move to another instance, which resumes from the
//!   database offsets.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::consumer::CommitMode;
use tokio::task::JoinHandle;

use crate::api::write::CommitSignal;
use crate::api::Writes;
use crate::broker::Watch;
use crate::config::Config;
use crate::emit::kafka::{CommandProducer, KafkaSink};
use crate::pipeline::{Committed, Pipeline};
use crate::source::kafka::{partition_key, KafkaSource, Tp};
use crate::source::{Batch, Part, RawInput, SourcePos};
use crate::store::{self, ErrorClass, Store, StoreError};
use crate::telemetry;
use crate::telemetry::events::{KafkaFatal, Retrying};
use crate::telemetry::Stats;

mod buffer;
pub mod plan;
mod relay;

use buffer::Buffer;
pub use relay::RelayStats;
use relay::{republish_outbox, Relay};

/// How long the write API waits for the broker to acknowledge a command before it answers
/// `503` (a broker that is down).
pub const COMMAND_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// What one partition has buffered and where it stands.
struct PartitionState {
    inputs: Buffer,
    first_buffered: Option<Instant>,
    /// The next offset the database holds; inputs below it were applied already.
    next_offset: Option<i64>,
    last_activity: Instant,
}

/// Counts of a `run`, returned when it stops.
#[derive(Debug, Default, Clone)]
pub struct RunStats {
    pub stats: Stats,
    pub batches: u64,
    /// The stage timings of all batches, summed.
    pub timings: crate::telemetry::Timings,
    /// When the first input arrived: joining the group and being assigned partitions come
    /// before it, so throughput measured from here is the pipeline's, not the group join's.
    pub first_input: Option<Instant>,
    /// The most inputs one partition held in memory at once (bounded by
    /// `pipeline.buffered_batches`).
    pub peak_buffered: usize,
    /// How often a partition's fetching was paused because its buffer was full.
    pub pauses: u64,
    /// What publishing the committed batches took.
    pub relay: RelayStats,
}

/// Runs until `shutdown` resolves, then finishes buffered batches within the configured
/// deadline, publishes their records and returns.
pub async fn run(
    config: Arc<Config>,
    store: Store,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<RunStats> {
    let store = store.keeping_feed(config.api.feed_retention);
    let ready = telemetry::Readiness::default();
    if !config.ops.listen.is_empty() {
        let addr = telemetry::serve(&config.ops.listen, telemetry::recorder(), ready.clone()).await?;
        tracing::info!(%addr, "metrics and health endpoint listening");
    }
    let signal = CommitSignal::default();
    let watch = Watch::default();
    if !config.api.listen.is_empty() {
        // A reader of its own: over SQLite the batches keep the single writer connection.
        let reader = Store::connect_reader(&config.store.url, config.store.max_connections).await?;
        let commands = CommandProducer::new(&config.kafka, COMMAND_DELIVERY_TIMEOUT, watch.clone())?;
        let writes = Writes { sink: Some(Arc::new(commands)), signal: Some(signal.clone()), ingest: None };
        let addr = crate::api::serve(&config.api.listen, config.clone(), reader, writes).await?;
        tracing::info!(%addr, "read and write API listening");
    }
    let mut runner = tokio::select! {
        runner = Runner::connect(config.clone(), store, signal, watch.clone()) => runner?,
        fatal = watch.failed() => anyhow::bail!("{fatal}"),
    };
    ready.set(true);
    tokio::pin!(shutdown);
    let poll = Duration::from_millis(50).min(config.pipeline.batch_max_wait);
    loop {
        runner.apply_rebalances().await?;
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            fatal = watch.failed() => anyhow::bail!("{fatal}"),
            Some(done) = runner.in_flight.next() => runner.finish(done?).await?,
            next = tokio::time::timeout(poll, runner.source.next()) => match next {
                Ok(Ok(input)) => runner.buffer(input),
                Ok(Err(e)) => consumer_error(&e, &watch).await?,
                Err(_) => {}
            },
        }
        let caught_up = runner.buffer_waiting().await?;
        runner.start_ready(caught_up && runner.in_flight.is_empty());
        runner.resume_drained();
        runner.advance_idle_clocks().await?;
    }
    ready.set(false);
    runner.shut_down().await
}

/// A batch being applied: its partitions with the offset after each, and how it ended.
type BatchDone = (Vec<(Tp, i64)>, Result<Committed, StoreError>);

struct Runner {
    config: Arc<Config>,
    store: Store,
    source: KafkaSource,
    pipeline: Arc<Pipeline>,
    relay: Relay,
    parts: BTreeMap<Tp, PartitionState>,
    /// Partitions with a batch in flight: their next batch waits for it (order per partition).
    /// Kept apart from `parts` so a partition revoked and assigned back meanwhile stays busy.
    busy: BTreeSet<Tp>,
    /// Partitions whose fetching is paused: their buffer reached `buffered_batches` batches.
    paused: BTreeSet<Tp>,
    /// The projects the inputs of each partition's batch in flight name.
    holding: BTreeMap<Tp, BTreeSet<String>>,
    /// Spawned, not just polled here: a batch holds a transaction and locks, and must not
    /// stall while this loop awaits something else (an idle-clock advance wanting that lock).
    in_flight: FuturesUnordered<JoinHandle<BatchDone>>,
    max_in_flight: usize,
    out: RunStats,
    /// Wakes the write API's watcher when a batch committed (its commands' outcomes).
    signal: CommitSignal,
    /// Hears the Kafka clients' rejected certificates and logins.
    watch: Watch,
}

impl Runner {
    /// Publishes what a crashed run left in the outbox, then joins the group.
    async fn connect(
        config: Arc<Config>,
        store: Store,
        signal: CommitSignal,
        watch: Watch,
    ) -> anyhow::Result<Runner> {
        let sink = KafkaSink::new(&config.kafka, watch.clone())?;
        republish_outbox(&store, &sink).await?;
        let relay = Relay::start(store.clone(), sink);
        let source = KafkaSource::new(&config.kafka, watch.clone())?;
        let pipeline = Arc::new(Pipeline::new(config.clone(), store.clone())?);
        let max_in_flight = store.backend().max_writers(config.store.max_connections);
        Ok(Runner {
            config,
            store,
            source,
            pipeline,
            relay,
            parts: BTreeMap::new(),
            busy: BTreeSet::new(),
            paused: BTreeSet::new(),
            holding: BTreeMap::new(),
            in_flight: FuturesUnordered::new(),
            max_in_flight,
            out: RunStats::default(),
            signal,
            watch,
        })
    }

    /// Finishes buffered batches within `kafka.shutdown_deadline`, mirrors the offsets and
    /// publishes what is left.
    async fn shut_down(mut self) -> anyhow::Result<RunStats> {
        tracing::info!("shutdown requested: finishing buffered batches");
        let deadline = self.config.kafka.shutdown_deadline;
        match tokio::time::timeout(deadline, self.drain()).await {
            Ok(outcome) => outcome?,
            Err(_) => {
                // Unfinished batches roll back; their inputs are re-read from the database offsets.
                self.in_flight.iter().for_each(JoinHandle::abort);
                tracing::warn!(
                    ?deadline,
                    "shutdown deadline passed; unfinished batches will be re-read from the database offsets"
                );
            }
        }
        self.mirror_all(CommitMode::Sync);
        let Runner { relay, mut out, .. } = self;
        out.relay = relay.finish().await?;
        Ok(out)
    }

    /// Revoked partitions drop what they buffered (the next owner re-reads it from the
    /// database offset); assigned ones seek to the database offset.
    async fn apply_rebalances(&mut self) -> anyhow::Result<()> {
        let log = self.source.take_rebalances();
        for tp in log.revoked {
            if self.paused.remove(&tp) {
                // The pause would otherwise outlive the assignment if the partition comes back.
                if let Err(e) = self.source.resume(&tp) {
                    tracing::debug!(error = %e, topic = %tp.0, partition = tp.1, "resuming a revoked partition failed");
                }
            }
            if let Some(p) = self.parts.remove(&tp) {
                tracing::info!(topic = %tp.0, partition = tp.1, dropped = p.inputs.len(), "partition revoked");
            }
        }
        for tp in log.assigned {
            let key = partition_key(&tp);
            let stored = retry_store(|| self.store.partition(&key)).await?;
            let next_offset = stored.and_then(|(_, offset)| offset);
            if let Some(offset) = next_offset {
                if let Err(e) = self.source.seek(&tp, offset) {
                    tracing::debug!(error = %e, "seek after assignment failed; older inputs are skipped instead");
                }
            }
            tracing::info!(topic = %tp.0, partition = tp.1, ?next_offset, "partition assigned");
            let state = PartitionState {
                inputs: Buffer::default(),
                first_buffered: None,
                next_offset,
                last_activity: Instant::now(),
            };
            self.parts.insert(tp, state);
        }
        Ok(())
    }

    fn buffer(&mut self, input: RawInput) {
        self.out.first_input.get_or_insert_with(Instant::now);
        let SourcePos::Kafka { topic, partition, offset } = &input.pos else { unreachable!("kafka inputs") };
        let tp = (topic.clone(), *partition);
        let state = self.parts.entry(tp.clone()).or_insert_with(|| PartitionState {
            inputs: Buffer::default(),
            first_buffered: None,
            next_offset: None,
            last_activity: Instant::now(),
        });
        if state.next_offset.is_some_and(|next| *offset < next) {
            return; // applied by an earlier batch (ours or a previous owner's)
        }
        state.first_buffered.get_or_insert_with(Instant::now);
        state.last_activity = Instant::now();
        state.inputs.push(input);
        let held = state.inputs.len();
        self.out.peak_buffered = self.out.peak_buffered.max(held);
        if held >= self.buffer_limit() && !self.paused.contains(&tp) {
            self.pause(tp, held);
        }
    }

    /// Buffers what the consumer already holds, without waiting for more; true when it ran
    /// out (the source is caught up), false when it stopped at a batch's worth so the loop
    /// can book finished batches and notice a shutdown in between.
    async fn buffer_waiting(&mut self) -> anyhow::Result<bool> {
        use futures::FutureExt;
        for _ in 0..self.config.pipeline.batch_size {
            match self.source.next().now_or_never() {
                Some(Ok(input)) => self.buffer(input),
                // Whatever the error, the loop's own poll meets the next one, with its timeout.
                Some(Err(e)) => return consumer_error(&e, &self.watch).await.map(|()| false),
                None => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Most inputs a partition holds before its fetching pauses.
    fn buffer_limit(&self) -> usize {
        self.config.pipeline.batch_size * self.config.pipeline.buffered_batches
    }

    /// Stops fetching from a partition whose buffer is full. Without it a backlog (after
    /// downtime, during a database outage) would be read into memory whole.
    fn pause(&mut self, tp: Tp, held: usize) {
        match self.source.pause(&tp) {
            Ok(()) => {
                tracing::debug!(topic = %tp.0, partition = tp.1, buffered = held, "buffer full; fetching paused");
                telemetry::buffered(&tp.0, tp.1, held, true);
                self.out.pauses += 1;
                self.paused.insert(tp);
            }
            // Not fatal: the buffer just grows until the next input tries again.
            Err(e) => {
                tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, "could not pause a full partition")
            }
        }
    }

    /// Resumes fetching from paused partitions with room for a whole batch again.
    fn resume_drained(&mut self) {
        if self.paused.is_empty() {
            return;
        }
        let room = self.buffer_limit().saturating_sub(self.config.pipeline.batch_size);
        let drained: Vec<Tp> = self
            .paused
            .iter()
            .filter(|tp| self.parts.get(*tp).is_none_or(|p| p.inputs.len() <= room))
            .cloned()
            .collect();
        for tp in drained {
            match self.source.resume(&tp) {
                Ok(()) => {
                    let held = self.parts.get(&tp).map_or(0, |p| p.inputs.len());
                    telemetry::buffered(&tp.0, tp.1, held, false);
                    self.paused.remove(&tp);
                }
                Err(e) => {
                    tracing::warn!(error = %e, topic = %tp.0, partition = tp.1, "could not resume a partition")
                }
            }
        }
    }

    /// Starts batches of the partitions whose buffer is full or old enough (or, with `all`,
    /// has anything), grouped by [`plan::plan`], as far as `max_in_flight` allows.
    ///
    /// The loop passes `all` when the consumer holds nothing more and no batch is being
    /// applied: then waiting would only add latency, so a quiet system applies each input at
    /// once, and batches grow only with the backlog (what arrives while a batch is applied
    /// forms the next one). `batch_max_wait` bounds the wait of a partial batch meanwhile.
    fn start_ready(&mut self, all: bool) {
        let size = self.config.pipeline.batch_size;
        let wait = self.config.pipeline.batch_max_wait;
        let candidates: Vec<plan::Candidate<'_, Tp>> = self
            .parts
            .iter()
            .filter(|(tp, p)| !p.inputs.is_empty() && !self.busy.contains(*tp))
            .map(|(tp, p)| {
                let since = p.first_buffered.unwrap_or_else(Instant::now);
                let ready = all || p.inputs.len() >= size || since.elapsed() >= wait;
                let footprint = p.inputs.footprint();
                plan::Candidate { key: tp.clone(), buffered: p.inputs.len(), ready, since, footprint }
            })
            .collect();
        let held: Vec<plan::Footprint<'_>> =
            self.holding.values().map(|projects| projects.iter().map(String::as_str).collect()).collect();
        let batches = plan::plan(&candidates, &held, size);
        for parts in batches {
            if self.in_flight.len() >= self.max_in_flight {
                break;
            }
            self.start(parts);
        }
    }

    /// Takes the first `n` buffered inputs of a partition, with the projects they name.
    fn take(&mut self, tp: &Tp, n: usize) -> (Vec<RawInput>, BTreeSet<String>) {
        let p = self.parts.get_mut(tp).expect("planned from the buffered partitions");
        let taken = p.inputs.take(n);
        if p.inputs.is_empty() {
            p.first_buffered = None;
        }
        telemetry::buffered(&tp.0, tp.1, p.inputs.len(), self.paused.contains(tp));
        taken
    }

    /// Starts a batch of the first `n` buffered inputs of each partition listed.
    fn start(&mut self, parts: Vec<(Tp, usize)>) {
        let mut offsets = Vec::with_capacity(parts.len());
        let mut batch = Batch { parts: Vec::with_capacity(parts.len()) };
        for (tp, n) in parts {
            let (inputs, projects) = self.take(&tp, n);
            let Some(SourcePos::Kafka { offset: last, .. }) = inputs.last().map(|i| &i.pos) else { continue };
            let next_offset = last + 1;
            self.busy.insert(tp.clone());
            self.holding.insert(tp.clone(), projects);
            batch.parts.push(Part { partition: partition_key(&tp), inputs, next_offset: Some(next_offset) });
            offsets.push((tp, next_offset));
        }
        if batch.is_empty() {
            return;
        }
        let pipeline = self.pipeline.clone();
        let signal = self.signal.clone();
        self.in_flight.push(tokio::spawn(async move {
            let committed = retry_store(|| pipeline.process(&batch)).await;
            signal.committed();
            (offsets, committed)
        }));
    }

    /// Books a finished batch: records to the relay, offsets forward.
    async fn finish(&mut self, (offsets, committed): BatchDone) -> anyhow::Result<()> {
        for (tp, _) in &offsets {
            self.busy.remove(tp);
            self.holding.remove(tp);
        }
        self.publish(committed?).await?;
        for (tp, next) in offsets {
            self.advance(&tp, next);
        }
        Ok(())
    }

    /// Moves a partition past a committed batch.
    fn advance(&mut self, tp: &Tp, next: i64) {
        // A partition revoked meanwhile belongs to another instance now: its offsets are
        // that instance's to move (it resumes from the database, which has this batch).
        let Some(p) = self.parts.get_mut(tp) else { return };
        p.next_offset = Some(next);
        // Assigned back while this batch ran, it may have re-read inputs this batch applied.
        p.inputs.drop_below(next);
        self.source.mirror_offset(tp, next, CommitMode::Async);
        if let Some(high) = self.source.high_watermark(tp) {
            telemetry::consumer_lag(&tp.0, tp.1, (high - next).max(0));
        }
    }

    /// Applies everything buffered and waits for every batch in flight (shutdown).
    async fn drain(&mut self) -> anyhow::Result<()> {
        loop {
            self.start_ready(true);
            match self.in_flight.next().await {
                Some(done) => self.finish(done?).await?,
                None if self.parts.values().all(|p| p.inputs.is_empty()) => return Ok(()),
                None => {}
            }
        }
    }

    /// Hands a committed batch to the relay; waits only when the relay is `RELAY_DEPTH`
    /// batches behind, so a slow broker slows consumption instead of growing memory.
    async fn publish(&mut self, committed: Committed) -> anyhow::Result<()> {
        telemetry::batch_committed(&committed.stats, committed.timings);
        self.out.stats.add(&committed.stats);
        self.out.batches += 1;
        self.out.timings.add(&committed.timings);
        self.relay.send(committed).await
    }

    /// Advances the clock of partitions that went quiet, by the wall-clock time they were
    /// quiet, so their idle appeals still close.
    async fn advance_idle_clocks(&mut self) -> anyhow::Result<()> {
        let after = self.config.kafka.idle_clock_after;
        let quiet: Vec<(Tp, Duration)> = self
            .parts
            .iter()
            .filter(|(tp, p)| {
                p.inputs.is_empty() && !self.busy.contains(*tp) && p.last_activity.elapsed() >= after
            })
            .map(|(tp, p)| (tp.clone(), p.last_activity.elapsed()))
            .collect();
        for (tp, elapsed) in quiet {
            let key = partition_key(&tp);
            let Some((clock, _)) = retry_store(|| self.store.partition(&key)).await? else {
                self.parts.get_mut(&tp).expect("listed").last_activity = Instant::now();
                continue;
            };
            let to = clock + elapsed.as_millis() as i64;
            let committed = retry_store(|| self.pipeline.advance_clock(&key, to)).await?;
            self.publish(committed).await?;
            self.parts.get_mut(&tp).expect("listed").last_activity = Instant::now();
        }
        Ok(())
    }

    fn mirror_all(&self, mode: CommitMode) {
        for (tp, p) in &self.parts {
            if let Some(next) = p.next_offset {
                self.source.mirror_offset(tp, next, mode);
            }
        }
    }
}

/// A consumer error: a permanent one (a topic that does not exist, no authorisation) stops
/// `run` with its cause and the setting to look at; the rest librdkafka retries by itself.
///
/// A rejected certificate or login reaches the consumer with librdkafka's reason stripped; the
/// watch hears the same failure with its reason ("certificate verify failed") from the error
/// callback, so that sentence is the one reported.
async fn consumer_error(e: &rdkafka::error::KafkaError, watch: &Watch) -> anyhow::Result<()> {
    match crate::errors::kafka(e) {
        (ErrorClass::Fatal, settings) => {
            KafkaFatal { side: "consume", error: e, settings }.emit();
            if e.rdkafka_error_code().and_then(crate::broker::fatal_connection).is_some() {
                if let Ok(heard) = tokio::time::timeout(Duration::from_secs(1), watch.failed()).await {
                    anyhow::bail!("{heard}");
                }
            }
            anyhow::bail!("consuming from Kafka failed: {e} (check {settings})")
        }
        _ => {
            Retrying { what: "consume", error: e, retry_in: Duration::ZERO }.emit();
            Ok(())
        }
    }
}

/// An input is never skipped because the database is down: retry until it is back.
async fn retry_store<T, F, Fut>(attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    store::retry(None, attempt).await
}
