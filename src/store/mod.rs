//! Store: SQLite (embedded default) or PostgreSQL through sqlx, one schema, one code path.
//!
//! The same SQL runs on both backends, each on its native sqlx driver ([`driver`]); what
//! differs (opening, pragmas and locks, migrations, placeholders, arrays, planner statistics)
//! is in [`dialect`]. A batch's state changes, the ids of the inputs it applied, its partition
//! clock/offset and its output records (the outbox) are written in one transaction: that
//! transaction is the commit point.

mod dialect;
mod driver;
mod feed;
mod read;
mod search;
mod sql;
mod working_set;

use std::sync::Arc;

pub use dialect::Backend;
use dialect::PlannerStatistics;
pub use driver::Param;
pub use feed::{FeedCursor, FeedKeeping, FeedRead, FeedRecord};
pub use search::{Hit, Match};
pub use working_set::{external_handle, visitor_handle, Holders, WorkingSet};

use crate::emit::Record;

pub use crate::errors::ErrorClass;

#[derive(Debug, thiserror::Error)]
#[error("store: {context}: {source}")]
pub struct StoreError {
    pub context: &'static str,
    #[source]
    pub source: StoreCause,
}

/// What went wrong underneath a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub enum StoreCause {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    /// A new row's id is already another row's: refused, never overwritten.
    #[error("{0}")]
    Clash(String),
    /// Another process writes this SQLite store.
    #[error("{0}")]
    Locked(String),
    /// The server refused the connection for a reason no retry fixes: a rejected certificate,
    /// a TLS mode it does not allow, a login it does not accept.
    #[error("{error} (check {settings})")]
    Refused { error: sqlx::Error, settings: &'static str },
}

/// SQLSTATEs and SQLite result codes that mean "this data cannot be stored": PostgreSQL's
/// data exceptions (class 22: bad encoding, too long, out of range), program limits (54000:
/// an index row too large) and unique violations; SQLite's TOOBIG, CONSTRAINT (and its
/// unique/primary key variants) and MISMATCH.
fn is_data_error(code: &str) -> bool {
    code.starts_with("22") || ["54000", "23505", "18", "19", "20", "1555", "2067"].contains(&code)
}

impl StoreError {
    pub fn new(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError { context, source: source.into() }
    }

    /// Like [`StoreError::new`], with a unique violation reported as the clash it is: a new
    /// row's key (a card, appeal or message id an input chose) is already another row's. The
    /// database's message names the constraint, never the key, so it holds no client data.
    pub fn from_sql(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| match &source {
            sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::clash(
                context,
                format!("a new row's key is already another row's ({})", db.message()),
            ),
            _ => StoreError::new(context)(source),
        }
    }

    /// Like [`StoreError::new`] for opening a connection: a refusal no retry fixes names the
    /// part of `store.url` to look at.
    pub fn connecting(context: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| {
            let Some(settings) = refusal(&source) else { return StoreError::new(context)(source) };
            StoreError { context, source: StoreCause::Refused { error: source, settings } }
        }
    }

    pub fn clash(context: &'static str, detail: String) -> StoreError {
        StoreError { context, source: StoreCause::Clash(detail) }
    }

    pub fn class(&self) -> ErrorClass {
        let sql = match &self.source {
            StoreCause::Clash(_) => return ErrorClass::Poison,
            StoreCause::Locked(_) | StoreCause::Refused { .. } => return ErrorClass::Fatal,
            StoreCause::Sql(e) => e,
        };
        match sql {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => ErrorClass::Retryable,
            sqlx::Error::Database(db) => {
                // 40001 serialization_failure, 40P01 deadlock, 57P01 admin shutdown,
                // 08xxx connection exceptions; SQLite BUSY (5) and LOCKED (6).
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                let transient = ["40001", "40P01", "57P01", "57P02", "57P03", "5", "6", "517", "261"]
                    .contains(&code.as_str())
                    || code.starts_with("08");
                if transient {
                    ErrorClass::Retryable
                } else if is_data_error(&code) {
                    ErrorClass::Poison
                } else {
                    ErrorClass::Fatal
                }
            }
            _ => ErrorClass::Fatal,
        }
    }
}

const TLS_SETTINGS: &str = "store.url: sslmode, sslrootcert and the host name the certificate names";

/// The settings behind a connection the server or the TLS layer refused for good.
fn refusal(error: &sqlx::Error) -> Option<&'static str> {
    match error {
        sqlx::Error::Tls(_) => Some(TLS_SETTINGS),
        sqlx::Error::Io(io) if crate::errors::is_tls_refusal(io) => Some(TLS_SETTINGS),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // 28000: no pg_hba.conf entry (e.g. hostssl only and sslmode=disable).
            Some("28000") => {
                Some("store.url: sslmode (the server may accept TLS connections only), user, database")
            }
            // 28P01: wrong password.
            Some("28P01") => Some("store.url: user and password"),
            _ => None,
        },
        _ => None,
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

pub use crate::model::BotBlockEntries;

/// Retries an operation after transient store errors (a locked SQLite file, PostgreSQL down
/// or failing over) with backoff, `limit` times or forever; any other error, or the last one,
/// is returned.
pub async fn retry<T, F, Fut>(limit: Option<u32>, attempt: F) -> StoreResult<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = StoreResult<T>>,
{
    let retryable = |e: &StoreError| e.class() == ErrorClass::Retryable;
    crate::retry::retry("store", crate::retry::Backoff::services(limit), retryable, attempt).await.0
}

/// A connection pool and the backend it talks to.
#[derive(Clone)]
pub struct Store {
    pool: driver::Pool,
    backend: Backend,
    url: Arc<str>,
    /// PostgreSQL writers only.
    planner: Option<Arc<PlannerStatistics>>,
    /// A SQLite store's writer lock and checkpointer, held as long as any clone of the store
    /// lives.
    writer: Option<Arc<dialect::SqliteWriter>>,
    /// Set on the writers of `run` and `serve`: each batch's records join the event feed.
    feed: Option<Arc<FeedKeeping>>,
}

impl Store {
    /// Connects as the store's writer and applies pending migrations. Retryable failures (the
    /// database not up yet, a backend terminated during migrations) are retried with backoff
    /// `retries` times, or forever with `None`; a SQLite store another process writes is
    /// refused at once.
    pub async fn connect_with_retry(
        url: &str,
        max_connections: u32,
        retries: Option<u32>,
    ) -> StoreResult<Store> {
        retry(retries, || Store::connect(url, max_connections)).await
    }

    /// Connects as the store's writer and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Store> {
        let backend = Backend::of_url(url);
        let store = Store::from(url, backend, backend.open_writer(url, max_connections).await?);
        backend.migrate(&store.pool).await?;
        store.build_search_index().await?;
        Ok(store)
    }

    /// Connects as a reader: no writer lock and no migrations, a SQLite file opened read-only,
    /// so it reads while `replay` or `run` write.
    pub async fn connect_reader(url: &str, max_connections: u32) -> StoreResult<Store> {
        let backend = Backend::of_url(url);
        Ok(Store::from(url, backend, backend.open_reader(url, max_connections).await?))
    }

    /// `url` as configured (a reader opened from it is read-only whatever the writer's mode).
    fn from(url: &str, backend: Backend, opened: dialect::Opened) -> Store {
        let dialect::Opened { pool, writer, planner, .. } = opened;
        Store { pool, backend, url: url.into(), planner, writer, feed: None }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This writer keeps the event feed (SPEC "Event feed"): each batch's records, kept
    /// `retention`; a zero retention keeps none.
    pub fn keeping_feed(mut self, retention: std::time::Duration) -> Store {
        self.feed = (!retention.is_zero()).then(|| Arc::new(FeedKeeping::new(retention)));
        self
    }

    /// A reader of the same store (see [`Store::connect_reader`]).
    pub async fn reader(&self, max_connections: u32) -> StoreResult<Store> {
        Store::connect_reader(&self.url, max_connections).await
    }

    /// Starts a batch: a transaction plus the cache the stages read and write through.
    pub async fn begin(&self) -> StoreResult<WorkingSet> {
        if let Some(writer) = &self.writer {
            writer.catch_up(&self.pool).await?;
        }
        let tx = self.pool.begin().await.map_err(StoreError::new("begin transaction"))?;
        Ok(WorkingSet::new(tx, self.backend, self.feed.clone()))
    }

    /// Records committed but not yet published (a crash came between commit and publish),
    /// batch by batch in commit order.
    pub async fn pending_outbox(&self) -> StoreResult<Vec<(String, Vec<Record>)>> {
        let rows = self
            .fetch_all("SELECT batch_id, records FROM outbox_batches ORDER BY seq", vec![], "read outbox")
            .await?;
        rows.iter()
            .map(|row| {
                let batch: String = row.get(0);
                let records = Record::decode_batch(row.try_str(1).map_err(StoreError::new("read outbox"))?)
                    .map_err(|e| StoreError::new("read outbox")(sqlx::Error::Decode(e.into())))?;
                Ok((batch, records))
            })
            .collect()
    }

    /// Forgets batches whose records the sink acknowledged, in one statement.
    pub async fn mark_published(&self, batch_ids: &[String]) -> StoreResult<()> {
        let keys = batch_ids.iter().map(|id| id.clone().into()).collect();
        let context = "delete published outbox batches";
        let tx = self.pool.begin().await.map_err(StoreError::new(context))?;
        let mut db = sql::Db::new(tx, self.backend);
        db.execute_in("DELETE FROM outbox_batches WHERE batch_id", Vec::new(), keys, context).await?;
        db.commit(context).await
    }

    /// Bot block entries so far, by project, scenario and block.
    pub async fn bot_block_entries(&self) -> StoreResult<BotBlockEntries> {
        let sql = "SELECT project_id, scenario_id, block_id, entries FROM bot_block_entries";
        let rows = self.fetch_all(sql, vec![], "read bot block entries").await?;
        let mut out = BotBlockEntries::new();
        for row in rows {
            let key = (row.get::<String>(0), row.get::<String>(1));
            out.entry(key).or_default().insert(row.get(2), row.get::<i64>(3).max(0) as u64);
        }
        Ok(out)
    }

    /// A card as committed, following merges to the card that absorbed it (outside any batch:
    /// for readers and tests).
    pub async fn client(&self, id: &str) -> StoreResult<Option<crate::model::Client>> {
        let mut id = id.to_string();
        for _ in 0..64 {
            let query = format!("SELECT {} FROM clients WHERE id = $1", sql::CLIENT_COLS);
            let rows = self.fetch_all(&query, vec![id.as_str().into()], "read client").await?;
            let Some(row) = rows.first() else { return Ok(None) };
            let client = sql::client_from_row(row)?;
            match client.merged_into {
                Some(next) => id = next,
                None => return Ok(Some(client)),
            }
        }
        Ok(None)
    }

    /// The stored clock and next offset of a partition.
    pub async fn partition(&self, key: &str) -> StoreResult<Option<(i64, Option<i64>)>> {
        let sql = "SELECT clock, next_offset FROM partitions WHERE partition_key = $1";
        let rows = self.fetch_all(sql, vec![key.into()], "read partition").await?;
        Ok(rows.first().map(|r| (r.get(0), r.get(1))))
    }

    /// Counts committed inputs: PostgreSQL's planner statistics are refreshed as they grow
    /// (see [`PlannerStatistics`]).
    pub fn note_committed(&self, inputs: usize) {
        if let Some(planner) = &self.planner {
            planner.note_committed(&self.url, inputs);
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
