//! `appealflow serve` (SPEC "Embedded service"): the whole product on one machine without
//! Kafka. It is the store's one writer (SQLite by default: the writer lock refuses a second),
//! runs the pipeline in-process, and serves the read and write API and the console, with the
//! ingest endpoint for gateways.
//!
//! Inputs posted over HTTP and commands from the write API go to one intake; the apply task
//! takes what arrived meanwhile as one batch (a group commit: one transaction for many
//! requests, not one each), commits it, and only then answers each request with its inputs'
//! results and wakes the write API's watcher and the feed's readers. The batch's output
//! records join the event feed in its transaction, go to stdout (one JSON line each as
//! `replay` prints them) and leave the outbox once written. Like `replay`,
//! `serve` keeps one event-time clock (its partition is `replay`'s), so the same stream posted
//! to `serve` and replayed gives the same events; a clock quiet for `kafka.idle_clock_after`
//! is moved on by the wall clock, as `run` does, so idle appeals close when traffic stops.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::write::{CommandSink, CommitSignal, InputResult, InputSink, InputStatus, SinkDown};
use crate::api::Writes;
use crate::config::Config;
use crate::emit::Record;
use crate::pipeline::{Committed, Pipeline};
use crate::source::file::REPLAY_PARTITION;
use crate::source::{http, Batch, RawInput, SourcePos};
use crate::store::{self, Store};
use crate::telemetry::Stats;

/// Submissions waiting for the apply task; a full queue makes requests wait their turn.
const QUEUE: usize = 256;

/// How long a batch waits for the requests that came with the last one (see `gather`): a
/// client's round trip on one host, well under the answer's latency target.
const GROUP_WAIT: Duration = Duration::from_millis(3);

/// The output records' destination (stdout for the binary).
pub type Output = Box<dyn Write + Send>;

/// A running `serve`.
pub struct Service {
    /// Where the API listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<Stats>>,
}

impl Service {
    /// Recovers what a killed `serve` committed but never wrote, starts the apply task and the
    /// API on `config.api.listen`.
    pub async fn start(config: Arc<Config>, store: Store, mut out: Output) -> anyhow::Result<Service> {
        let store = store.keeping_feed(config.api.feed_retention);
        let pipeline = Pipeline::new(config.clone(), store.clone())?;
        for (batch_id, records) in store.pending_outbox().await? {
            write_records(&mut out, &records, &config)?;
            store.mark_published(std::slice::from_ref(&batch_id)).await?;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let intake = Arc::new(Intake { tx, max_input_bytes: config.pipeline.max_input_bytes });
        let signal = CommitSignal::default();
        // A reader of its own: over SQLite the apply task keeps the single writer connection.
        let reader = store.reader(config.store.max_connections).await?;
        let writes = Writes {
            sink: Some(intake.clone()),
            signal: Some(signal.clone()),
            ingest: Some(intake as Arc<dyn InputSink>),
        };
        let addr = crate::api::serve(&config.api.listen, config.clone(), reader, writes).await?;
        let (stop, stopped) = watch::channel(false);
        let applier = Applier { pipeline, store, config, out, signal, stats: Stats::default() };
        let task = tokio::spawn(applier.run(rx, stopped));
        Ok(Service { addr, stop, task })
    }

    /// Finishes the batch in hand and stops taking inputs: what was queued and not applied is
    /// answered `503` (nothing of it was applied). Returns what the service applied.
    pub async fn stop(self) -> anyhow::Result<Stats> {
        let _ = self.stop.send(true);
        self.task.await?
    }
}

/// One queued request: its inputs and where its results go once they are committed.
struct Submission {
    inputs: Vec<RawInput>,
    reply: oneshot::Sender<Vec<InputResult>>,
}

/// The one way into `serve`'s pipeline, for posted inputs and for commands alike.
struct Intake {
    tx: mpsc::Sender<Submission>,
    max_input_bytes: usize,
}

impl Intake {
    async fn submit(&self, project: &str, lines: Vec<Vec<u8>>) -> Result<Vec<InputResult>, SinkDown> {
        let request = uuid::Uuid::new_v4().to_string();
        let inputs = http::inputs(lines, project, &request, self.max_input_bytes);
        let (reply, answer) = oneshot::channel();
        let stopping = || SinkDown("serve is stopping; nothing of the request was applied".into());
        self.tx.send(Submission { inputs, reply }).await.map_err(|_| stopping())?;
        answer.await.map_err(|_| stopping())
    }
}

impl InputSink for Intake {
    fn ingest<'a>(
        &'a self,
        project: &'a str,
        inputs: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<Vec<InputResult>, SinkDown>> {
        Box::pin(self.submit(project, inputs))
    }
}

impl CommandSink for Intake {
    /// Returns once the command's batch committed; the watcher then finds its outcome.
    fn submit<'a>(&'a self, project: &'a str, command: &'a [u8]) -> BoxFuture<'a, Result<(), SinkDown>> {
        Box::pin(async move { Intake::submit(self, project, vec![command.to_vec()]).await.map(|_| ()) })
    }
}

/// The apply task: the store's one writer.
struct Applier {
    pipeline: Pipeline,
    store: Store,
    config: Arc<Config>,
    out: Output,
    signal: CommitSignal,
    stats: Stats,
}

impl Applier {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Submission>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Stats> {
        let idle_after = self.config.kafka.idle_clock_after;
        let mut quiet_since = Instant::now();
        let mut concurrent = 1;
        loop {
            let first = tokio::select! {
                biased;
                _ = stop.changed() => break,
                next = rx.recv() => match next {
                    Some(s) => s,
                    None => break,
                },
                _ = tokio::time::sleep(idle_after.saturating_sub(quiet_since.elapsed())) => {
                    self.advance_idle_clock(quiet_since.elapsed()).await?;
                    quiet_since = Instant::now();
                    continue;
                }
            };
            let group = gather(first, &mut rx, concurrent, self.config.pipeline.batch_size).await;
            concurrent = group.len();
            self.apply(group).await?;
            quiet_since = Instant::now();
        }
        Ok(self.stats)
    }

    /// One batch of every input of `group`, committed, written out, then answered.
    async fn apply(&mut self, group: Vec<Submission>) -> anyhow::Result<()> {
        let mut replies = Vec::with_capacity(group.len());
        let mut inputs = Vec::new();
        for s in group {
            replies.push((s.reply, s.inputs.iter().map(|i| i.pos.clone()).collect::<Vec<_>>()));
            inputs.extend(s.inputs);
        }
        let batch = Batch::one(REPLAY_PARTITION, inputs, None);
        let committed = store::retry(None, || self.pipeline.process(&batch)).await?;
        self.publish(&committed).await?;
        let verdicts = verdicts(&committed);
        for (reply, positions) in replies {
            let results = positions.iter().map(|p| verdicts.get(p).cloned().unwrap_or(APPLIED)).collect();
            let _ = reply.send(results); // a client that went away still had its inputs applied
        }
        Ok(())
    }

    async fn publish(&mut self, committed: &Committed) -> anyhow::Result<()> {
        write_records(&mut self.out, &committed.records, &self.config)?;
        store::retry(None, || self.store.mark_published(&committed.batch_ids)).await?;
        self.stats.add(&committed.stats);
        self.signal.committed();
        Ok(())
    }

    /// The wall clock moves the event-time clock of a quiet `serve` on, as `run` does for a
    /// quiet partition.
    async fn advance_idle_clock(&mut self, quiet: Duration) -> anyhow::Result<()> {
        let Some((clock, _)) = store::retry(None, || self.store.partition(REPLAY_PARTITION)).await? else {
            return Ok(());
        };
        let to = clock.saturating_add(i64::try_from(quiet.as_millis()).unwrap_or(i64::MAX));
        let committed = store::retry(None, || self.pipeline.advance_clock(REPLAY_PARTITION, to)).await?;
        self.publish(&committed).await
    }
}

/// What arrived meanwhile, up to a batch. Clients that post one request at a time all
/// wait on the batch in hand and come back together once it is answered: when the last
/// batch held `concurrent` requests, the next one waits up to `GROUP_WAIT` for as many,
/// so they share one commit instead of the first of them taking one alone. A lone client
/// (the last batch held one request) never waits.
async fn gather(
    first: Submission,
    rx: &mut mpsc::Receiver<Submission>,
    concurrent: usize,
    batch_size: usize,
) -> Vec<Submission> {
    let until = tokio::time::Instant::now() + GROUP_WAIT;
    let mut inputs = first.inputs.len();
    let mut group = vec![first];
    while inputs < batch_size {
        let next = match rx.try_recv() {
            Ok(s) => Some(s),
            Err(_) if group.len() >= concurrent => None,
            Err(_) => tokio::time::timeout_at(until, rx.recv()).await.ok().flatten(),
        };
        let Some(s) = next else { break };
        inputs += s.inputs.len();
        group.push(s);
    }
    group
}

const APPLIED: InputResult = InputResult { status: InputStatus::Applied, reason: None };

/// The inputs of a batch that were not applied, by position: found applied before, or
/// dead-lettered with their reason.
fn verdicts(committed: &Committed) -> HashMap<SourcePos, InputResult> {
    let duplicates = committed
        .duplicates
        .iter()
        .map(|p| (p.clone(), InputResult { status: InputStatus::Duplicate, reason: None }));
    let dead = committed.dead_lettered.iter().map(|(p, reason)| {
        (p.clone(), InputResult { status: InputStatus::Dlq, reason: Some(reason.clone()) })
    });
    duplicates.chain(dead).collect()
}

fn write_records(out: &mut Output, records: &[Record], config: &Config) -> std::io::Result<()> {
    for r in records {
        out.write_all(r.to_line(&config.kafka.topics).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Shares a writer between the service and its owner (the tests read what `serve` printed).
#[derive(Clone, Default)]
pub struct SharedOutput(pub Arc<Mutex<Vec<u8>>>);

impl Write for SharedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("output lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission() -> Submission {
        Submission { inputs: Vec::new(), reply: oneshot::channel().0 }
    }

    /// A second request arriving once the first waits, as a gateway coming back after its
    /// answer. (The test runtime has one thread: the sender runs only when `gather` waits, so
    /// the outcome does not depend on how busy the machine is.)
    async fn gathered(concurrent: usize) -> usize {
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let _ = tx.send(submission()).await;
        });
        gather(submission(), &mut rx, concurrent, 500).await.len()
    }

    #[tokio::test]
    async fn a_batch_waits_for_as_many_requests_as_the_last_one_held() {
        assert_eq!(gathered(2).await, 2, "the second client's request shares the commit");
    }

    #[tokio::test]
    async fn a_lone_clients_request_never_waits() {
        assert_eq!(gathered(1).await, 1);
    }

    #[tokio::test]
    async fn the_wait_ends_after_the_group_wait_when_fewer_come_back() {
        let (_tx, mut rx) = mpsc::channel::<Submission>(4);
        let started = Instant::now();
        assert_eq!(gather(submission(), &mut rx, 4, 500).await.len(), 1);
        assert!(started.elapsed() < Duration::from_secs(1), "bounded by GROUP_WAIT");
    }
}
