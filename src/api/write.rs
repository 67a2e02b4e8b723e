//! The write API's two ends (SPEC "Write API"): the one command sink commands go to, and the
//! one outcome watcher every waiting request waits on. The API never reaches into the
//! pipeline: it hands a command to the sink (the commands topic under `run` and `api`) and
//! learns what became of it from the store, where the pipeline records each command's
//! outcome in the transaction that applied it.
//!
//! The watcher is one task per process: however many requests wait, it reads their outcomes
//! in one indexed statement per project per wake-up. It wakes when a batch committed in this
//! process (the pipeline's signal) and, for the batches other processes commit, every
//! `POLL` while anyone waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{oneshot, watch, Notify};

use crate::emit::kafka::CommandProducer;
use crate::emit::CommandOutcome;
use crate::store::Store;

/// How often the watcher reads the store while requests wait and no signal came.
const POLL: Duration = Duration::from_millis(25);

/// The command path is down: nothing was submitted (the message says why; it names no
/// secret and no command content).
#[derive(Debug)]
pub struct SinkDown(pub String);

/// Where the write API hands commands: the commands topic, or (`serve`) the pipeline itself.
pub trait CommandSink: Send + Sync + 'static {
    /// Submits one command (its complete JSON) of `project`; returns once it is durably
    /// on its way (the broker acknowledged it), or fails with nothing half-submitted.
    fn submit<'a>(&'a self, project: &'a str, command: &'a [u8]) -> BoxFuture<'a, Result<(), SinkDown>>;
}

impl CommandSink for CommandProducer {
    fn submit<'a>(&'a self, project: &'a str, command: &'a [u8]) -> BoxFuture<'a, Result<(), SinkDown>> {
        Box::pin(async move { self.send(project, command).await.map_err(|e| SinkDown(self.explain(&e))) })
    }
}

/// Tells the watcher that a batch committed in this process (the waiting requests' outcomes
/// may be in the store now), and the feed's long-polling readers that it may have grown.
#[derive(Clone)]
pub struct CommitSignal {
    wake: Arc<Notify>,
    commits: Arc<watch::Sender<u64>>,
}

impl Default for CommitSignal {
    fn default() -> Self {
        CommitSignal { wake: Arc::default(), commits: Arc::new(watch::Sender::new(0)) }
    }
}

impl CommitSignal {
    pub fn committed(&self) {
        // A stored permit, not a broadcast: a commit while the watcher reads is not lost.
        self.wake.notify_one();
        self.commits.send_modify(|n| *n += 1);
    }

    /// The commit count, for readers that wait for the next commit.
    pub(super) fn commits(&self) -> Arc<watch::Sender<u64>> {
        self.commits.clone()
    }
}

type Key = (String, String);

/// Requests waiting for outcomes, by (project, command id).
#[derive(Default)]
struct Waiting {
    by_key: Mutex<HashMap<Key, Vec<oneshot::Sender<CommandOutcome>>>>,
}

/// The one outcome watcher of a process.
#[derive(Clone)]
pub struct Watcher {
    waiting: Arc<Waiting>,
    wake: Arc<Notify>,
}

/// A request's place in the watcher: registered before its command is submitted, so an
/// outcome committed at once is never missed.
pub struct Ticket(oneshot::Receiver<CommandOutcome>);

impl Watcher {
    /// Starts the watcher's task over `store`; `signal` when the pipeline runs in this process.
    pub fn spawn(store: Store, signal: Option<CommitSignal>) -> Watcher {
        let watcher = Watcher { waiting: Arc::default(), wake: Arc::default() };
        let task = watch(Arc::downgrade(&watcher.waiting), watcher.wake.clone(), store, signal);
        tokio::spawn(task);
        watcher
    }

    pub fn register(&self, project: &str, command_id: &str) -> Ticket {
        let (tx, rx) = oneshot::channel();
        let key = (project.to_string(), command_id.to_string());
        self.waiting.by_key.lock().expect("watcher lock").entry(key).or_default().push(tx);
        self.wake.notify_one();
        Ticket(rx)
    }

    /// The outcome, if it is recorded within `wait`.
    pub async fn wait(&self, ticket: Ticket, wait: Duration) -> Option<CommandOutcome> {
        tokio::time::timeout(wait, ticket.0).await.ok().and_then(Result::ok)
    }
}

/// The watcher's loop: sleeps while nobody waits, else reads the outcomes of every waiting
/// request at each wake-up. Ends when the API that owns the watcher is gone.
async fn watch(waiting: Weak<Waiting>, wake: Arc<Notify>, store: Store, signal: Option<CommitSignal>) {
    loop {
        let Some(shared) = waiting.upgrade() else { return };
        let wanted = wanted(&shared);
        if wanted.is_empty() {
            drop(shared);
            // Re-checks now and then that the API still exists.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake.notified()).await;
            continue;
        }
        for (project, ids) in wanted {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            match store.command_outcomes(&project, &ids).await {
                Ok(found) => deliver(&shared, &project, found),
                Err(e) => tracing::warn!(error = %e, "write API: reading command outcomes failed; retrying"),
            }
        }
        drop(shared);
        match &signal {
            Some(s) => {
                let _ = tokio::time::timeout(POLL * 4, s.wake.notified()).await;
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
}

/// The keys someone still waits for, by project; requests that gave up are forgotten.
fn wanted(waiting: &Waiting) -> HashMap<String, Vec<String>> {
    let mut by_key = waiting.by_key.lock().expect("watcher lock");
    by_key.retain(|_, senders| {
        senders.retain(|tx| !tx.is_closed());
        !senders.is_empty()
    });
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for (project, id) in by_key.keys() {
        out.entry(project.clone()).or_default().push(id.clone());
    }
    out
}

fn deliver(waiting: &Waiting, project: &str, found: Vec<CommandOutcome>) {
    let mut by_key = waiting.by_key.lock().expect("watcher lock");
    for outcome in found {
        let key = (project.to_string(), outcome.command_id.clone());
        for tx in by_key.remove(&key).unwrap_or_default() {
            let _ = tx.send(outcome.clone());
        }
    }
}

/// What became of one input posted to the ingest endpoint (`serve`), in the order posted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct InputResult {
    /// `applied`, `duplicate` (applied before: nothing changed) or `dlq` (with the reason its
    /// DLQ record gives).
    pub status: InputStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputStatus {
    Applied,
    Duplicate,
    Dlq,
}

/// Where the ingest endpoint hands a posted body's inputs: the pipeline of `serve`.
pub trait InputSink: Send + Sync + 'static {
    /// Applies the inputs (each one line's bytes) posted to `project`, answering once they
    /// are committed: one result per input, in order.
    fn ingest<'a>(
        &'a self,
        project: &'a str,
        inputs: Vec<Vec<u8>>,
    ) -> BoxFuture<'a, Result<Vec<InputResult>, SinkDown>>;
}
