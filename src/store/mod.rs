//! Store: SQLite (embedded default) or PostgreSQL through sqlx, one schema, one code path.
//!
//! The same SQL runs on both backends through `sqlx::Any`; the only backend-specific parts
//! are the migrations folder, connection pragmas, the per-project lock PostgreSQL takes so
//! that several instances never interleave inside one project, and the planner statistics
//! PostgreSQL is given as a fresh database grows. A batch's state changes, the
//! ids of the inputs it applied, its partition clock/offset and its output records (the
//! outbox) are written in one transaction: that transaction is the commit point.

mod sql;
mod working_set;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor, Row};

pub use sql::Param;
pub use working_set::{external_handle, visitor_handle, Holders, WorkingSet};

use crate::emit::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

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

    pub fn clash(context: &'static str, detail: String) -> StoreError {
        StoreError { context, source: StoreCause::Clash(detail) }
    }

    pub fn class(&self) -> ErrorClass {
        let sql = match &self.source {
            StoreCause::Clash(_) => return ErrorClass::Poison,
            StoreCause::Locked(_) => return ErrorClass::Fatal,
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
    pool: AnyPool,
    backend: Backend,
    url: Arc<str>,
    planner: Arc<PlannerStatistics>,
    /// A SQLite store's writer lock, held as long as any clone of the store lives.
    _writer: Option<Arc<std::fs::File>>,
}

/// When the planner statistics of the growing tables were last refreshed, in inputs committed
/// by this process.
///
/// Why: a fresh database grows from nothing to many thousands of rows within minutes, and
/// until PostgreSQL has statistics it assumes default selectivities: lookups of a batch's
/// handles, values and merged cards then scan whole tables, and every batch gets slower as the
/// tables grow. Autovacuum fixes that within minutes where it is on, and never where it is
/// off (as on these machines). Refreshing each time the input count doubles costs a few
/// `ANALYZE` runs (each samples at most 30,000 rows per table) over the life of a process.
#[derive(Default)]
struct PlannerStatistics {
    committed: AtomicU64,
    next_refresh: AtomicU64,
    refreshing: AtomicBool,
}

/// Inputs committed before the first refresh; each later one waits for twice as many.
const FIRST_ANALYZE_AFTER: u64 = 1_000;

/// The tables that grow with the stream and are read by key in every batch.
const ANALYZED_TABLES: [&str; 6] =
    ["clients", "client_handles", "client_values", "appeals", "messages", "applied_inputs"];

/// Those of [`ANALYZED_TABLES`] never analysed, or changed by more than autovacuum's default
/// share (50 rows plus 10%) since their last analysis: a restart over large, settled tables
/// analyses nothing. (Change counts reach these views up to a few seconds late, which is why
/// a table never analysed does not wait for them.)
const STALE_TABLES: &str =
    "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
     WHERE s.schemaname = current_schema() AND s.relname::text = ANY(string_to_array($1, ',')) \
     AND (COALESCE(s.last_analyze, s.last_autoanalyze) IS NULL \
          OR s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0))";

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
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let writer = match backend {
            Backend::Sqlite => writer_lock(url)?,
            Backend::Postgres => None,
        };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
            }
            _ => url.to_string(),
        };
        let options: AnyConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
        let pool = match backend {
            // One writer: SQLite serialises writers anyway, and one connection keeps the
            // batch transaction free of SQLITE_BUSY from our own pool.
            Backend::Sqlite => AnyPoolOptions::new()
                .max_connections(1)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        // Card and appeal keys are UUIDs, so writes land on random pages: a
                        // 2 MiB default cache turns every batch into page reads as tables grow.
                        conn.execute("PRAGMA cache_size = -131072").await?;
                        conn.execute("PRAGMA mmap_size = 1073741824").await?;
                        conn.execute("PRAGMA temp_store = MEMORY").await?;
                        conn.execute("PRAGMA foreign_keys = OFF").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(StoreError::new("open SQLite database"))?,
            Backend::Postgres => AnyPoolOptions::new()
                .max_connections(max_connections.max(1))
                .acquire_timeout(Duration::from_secs(10))
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        // Prepared statements get a generic plan after five runs; planned while
                        // the tables were empty it scans them, and a batch slows as they grow.
                        // Lookups here are all by key: always plan for the actual values.
                        conn.execute("SET plan_cache_mode = force_custom_plan").await?;
                        Ok(())
                    })
                })
                .connect_with(options)
                .await
                .map_err(StoreError::new("connect to PostgreSQL"))?,
        };
        let planner = PlannerStatistics { next_refresh: FIRST_ANALYZE_AFTER.into(), ..Default::default() };
        let store = Store { pool, backend, url: url.into(), planner: Arc::new(planner), _writer: writer };
        store.migrate().await?;
        Ok(store)
    }

    /// Connects as a reader: no writer lock and no migrations, a SQLite file opened read-only,
    /// so it reads while `replay` or `run` write.
    pub async fn connect_reader(url: &str, max_connections: u32) -> StoreResult<Store> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                format!("{url}{}mode=ro", if url.contains('?') { "&" } else { "?" })
            }
            _ => url.to_string(),
        };
        let options: AnyConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(StoreError::new("open the store for reading"))?;
        let planner = PlannerStatistics::default();
        Ok(Store { pool, backend, url: url.into(), planner: Arc::new(planner), _writer: None })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    async fn migrate(&self) -> StoreResult<()> {
        let result = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.pool).await,
        };
        result.map_err(|e| StoreError::new("apply migrations")(e.into()))
    }

    /// Starts a batch: a transaction plus the cache the stages read and write through.
    pub async fn begin(&self) -> StoreResult<WorkingSet> {
        let tx = self.pool.begin().await.map_err(StoreError::new("begin transaction"))?;
        Ok(WorkingSet::new(tx, self.backend))
    }

    /// Records committed but not yet published (a crash came between commit and publish),
    /// batch by batch in commit order.
    pub async fn pending_outbox(&self) -> StoreResult<Vec<(String, Vec<Record>)>> {
        let rows = sqlx::query("SELECT batch_id, records FROM outbox_batches ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::new("read outbox"))?;
        rows.iter()
            .map(|row| {
                let batch: String = row.get(0);
                let records = Record::decode_batch(&row.get::<String, _>(1))
                    .map_err(|e| StoreError::new("read outbox")(sqlx::Error::Decode(e.into())))?;
                Ok((batch, records))
            })
            .collect()
    }

    /// Forgets batches whose records the sink acknowledged, in one statement.
    pub async fn mark_published(&self, batch_ids: &[String]) -> StoreResult<()> {
        let keys = batch_ids.iter().map(|id| id.clone().into()).collect();
        let context = "delete published outbox batches";
        let mut tx = self.pool.begin().await.map_err(StoreError::new(context))?;
        let head = "DELETE FROM outbox_batches WHERE batch_id";
        sql::execute_in(&mut tx, self.backend, head, Vec::new(), keys, context).await?;
        tx.commit().await.map_err(StoreError::new(context))
    }

    /// Bot block entries so far, by project, scenario and block.
    pub async fn bot_block_entries(&self) -> StoreResult<BotBlockEntries> {
        let rows = sqlx::query("SELECT project_id, scenario_id, block_id, entries FROM bot_block_entries")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::new("read bot block entries"))?;
        let mut out = BotBlockEntries::new();
        for row in rows {
            let key = (row.get::<String, _>(0), row.get::<String, _>(1));
            out.entry(key).or_default().insert(row.get(2), row.get::<i64, _>(3).max(0) as u64);
        }
        Ok(out)
    }

    /// A card as committed, following merges to the card that absorbed it (outside any batch:
    /// for readers and tests).
    pub async fn client(&self, id: &str) -> StoreResult<Option<crate::model::Client>> {
        let mut id = id.to_string();
        for _ in 0..64 {
            let query = format!("SELECT {} FROM clients WHERE id = $1", sql::CLIENT_COLS);
            let row = sqlx::query(&query)
                .bind(&id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::new("read client"))?;
            let Some(row) = row else { return Ok(None) };
            let client = sql::client_from_row(&row)?;
            match client.merged_into {
                Some(next) => id = next,
                None => return Ok(Some(client)),
            }
        }
        Ok(None)
    }

    /// The stored clock and next offset of a partition.
    pub async fn partition(&self, key: &str) -> StoreResult<Option<(i64, Option<i64>)>> {
        let row = sqlx::query("SELECT clock, next_offset FROM partitions WHERE partition_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::new("read partition"))?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Counts committed inputs and, on PostgreSQL, refreshes the planner statistics in the
    /// background each time their number doubled (see [`PlannerStatistics`]).
    pub fn note_committed(&self, inputs: usize) {
        if self.backend != Backend::Postgres || inputs == 0 {
            return;
        }
        let planner = &self.planner;
        let total = planner.committed.fetch_add(inputs as u64, Ordering::Relaxed) + inputs as u64;
        if total < planner.next_refresh.load(Ordering::Relaxed)
            || planner.refreshing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        planner.next_refresh.store(total.saturating_mul(2), Ordering::Relaxed);
        let (url, planner) = (self.url.clone(), self.planner.clone());
        tokio::spawn(async move {
            refresh_planner_statistics(&url, total).await;
            planner.refreshing.store(false, Ordering::Release);
        });
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// The SQLite file of a `sqlite://` URL, unless it is in memory.
fn sqlite_path(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:")).then_some(path)
}

/// One process writes a SQLite store (README "Guarantees"): an exclusive lock on
/// `<file>.writer-lock`, which records who holds it. A second writer would interleave its
/// batches with the first's; it is refused at once, naming the holder. The operating system
/// releases the lock when the holder exits, however it exits.
fn writer_lock(url: &str) -> StoreResult<Option<Arc<std::fs::File>>> {
    use std::io::{Read, Seek, Write};
    let Some(path) = sqlite_path(url) else { return Ok(None) };
    let lock_path = format!("{path}.writer-lock");
    let failed = |e: std::io::Error| StoreError::new("lock the SQLite store")(sqlx::Error::Io(e));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&lock_path)
        .map_err(failed)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0).map_err(failed)?;
            file.seek(std::io::SeekFrom::Start(0)).map_err(failed)?;
            let holder = format!("pid {} since {}", std::process::id(), chrono::Utc::now().to_rfc3339());
            file.write_all(holder.as_bytes()).map_err(failed)?;
            Ok(Some(Arc::new(file)))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let detail = format!(
                "{path} is written by another appealflow process ({}): a SQLite store has one writer; stop \
                 it, or use a store of your own (--db, store.url) or PostgreSQL for several instances",
                if holder.trim().is_empty() { "unknown pid" } else { holder.trim() }
            );
            Err(StoreError { context: "open SQLite database", source: StoreCause::Locked(detail) })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(failed(e)),
    }
}

/// `ANALYZE` of the tables that changed enough, on a connection of its own so batches keep
/// the pool. It takes a lock that writers and readers do not wait for. A failure only costs
/// plan quality: logged, not raised.
async fn refresh_planner_statistics(url: &str, inputs: u64) {
    use sqlx::Connection;
    let started = std::time::Instant::now();
    let result = async {
        let mut conn = sqlx::AnyConnection::connect(url).await?;
        let stale: Vec<String> =
            sqlx::query_scalar(STALE_TABLES).bind(ANALYZED_TABLES.join(",")).fetch_all(&mut conn).await?;
        // The names come from ANALYZED_TABLES, never from input.
        if !stale.is_empty() {
            conn.execute(format!("ANALYZE {}", stale.join(", ")).as_str()).await?;
        }
        conn.close().await?;
        Ok::<_, sqlx::Error>(stale)
    }
    .await;
    match result {
        Ok(tables) => {
            tracing::debug!(inputs, ?tables, took = ?started.elapsed(), "planner statistics refreshed")
        }
        Err(e) => tracing::warn!(error = %e, "could not refresh planner statistics; continuing"),
    }
}
