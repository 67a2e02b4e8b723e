//! SQLite: one writer per file (a lock file names it), WAL with the pragmas a growing store
//! needs, positional placeholders.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Executor;

use super::Opened;
use crate::store::driver::Pool;
use crate::store::{StoreCause, StoreError, StoreResult};

/// How often the checkpointer copies committed WAL pages into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// WAL size past which the writer empties the WAL before its next batch. SQLite starts the
/// WAL afresh only when a transaction begins with every page copied, and copying beside a
/// writer that is nearly always inside a batch, the checkpointer seldom sees that moment.
/// The file's size is what it holds: it is only ever emptied by truncation.
const CATCH_UP_BYTES: u64 = 64 << 20;
/// WAL pages (of 4 KiB) past which the writer checkpoints by itself, in its commits: a last
/// resort, as the writer empties the WAL between batches long before.
const BACKSTOP_PAGES: u64 = 4 * CATCH_UP_BYTES / 4096;

/// What a SQLite store's writer holds for as long as any clone of the store lives: the writer
/// lock, and the checkpointer, stopped with it.
pub(crate) struct Writer {
    _lock: std::fs::File,
    checkpointer: tokio::task::JoinHandle<()>,
    wal: std::path::PathBuf,
}

impl Writer {
    /// Between batches, when the WAL has grown past [`CATCH_UP_BYTES`]: a `TRUNCATE`
    /// checkpoint on the writer's connection copies what the checkpointer has not yet and
    /// empties the WAL. It waits for readers' snapshots up to the busy timeout.
    pub(crate) async fn catch_up(&self, pool: &Pool) -> StoreResult<()> {
        if std::fs::metadata(&self.wal).map_or(0, |m| m.len()) < CATCH_UP_BYTES {
            return Ok(());
        }
        let Pool::Sqlite(pool) = pool else { return Ok(()) };
        let done: (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(pool)
            .await
            .map_err(StoreError::new("empty the SQLite WAL"))?;
        tracing::debug!(busy = done.0, wal_pages = done.1, copied = done.2, "WAL emptied between batches");
        Ok(())
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.checkpointer.abort();
    }
}

pub(super) async fn open_writer(url: &str) -> StoreResult<Opened> {
    let lock = writer_lock(url)?;
    let url = with_mode(url, "rwc");
    let options: SqliteConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
    // One connection: SQLite serialises writers anyway, and one connection keeps the batch
    // transaction free of SQLITE_BUSY from our own pool.
    let pool: SqlitePool = SqlitePoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                // Durability: in WAL mode NORMAL syncs the WAL at each checkpoint, not at each
                // commit. A killed process loses nothing (the OS holds the written WAL); a
                // power cut can lose the last commits, each whole: the store then stands at an
                // earlier batch with that batch's offsets, and `run` consumes the rest again.
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute(format!("PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}").as_str()).await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                // Card and appeal keys are UUIDs, so writes land on random pages: a 2 MiB
                // default cache turns every batch into page reads as tables grow.
                conn.execute("PRAGMA cache_size = -131072").await?;
                // No memory map: its pages count in the process's resident size, which then
                // grows with the file (1.2 GB at the end of a 1,000,000-input replay with a
                // 1 GiB map, 0.24 GB without). Reads go through the page cache instead, which
                // cost that replay about 9% (docs/performance.md).
                conn.execute("PRAGMA mmap_size = 0").await?;
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                conn.execute("PRAGMA foreign_keys = OFF").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(StoreError::new("open SQLite database"))?;
    let writer = match (lock, sqlite_path(&url)) {
        (Some(lock), Some(path)) => {
            let wal = format!("{path}-wal").into();
            Some(Arc::new(Writer { _lock: lock, checkpointer: checkpointer(&url).await?, wal }))
        }
        _ => None,
    };
    Ok(Opened { pool: Pool::Sqlite(pool), writer, planner: None })
}

/// Copies the WAL into the database file from a connection of its own, every
/// [`CHECKPOINT_EVERY`]. In the writer's own commit (SQLite's default) a checkpoint stalls the
/// batch that crosses the threshold; here it runs beside the batches, on another thread
/// (`PASSIVE`: it neither blocks the writer nor waits for it). The writer empties a WAL grown
/// past [`CATCH_UP_BYTES`] before its next batch ([`Writer::catch_up`]), so it stays bounded.
///
/// A crash in the middle is SQLite's to recover: the WAL keeps every page until the database
/// file holds it, synced (`synchronous = NORMAL` syncs both at each checkpoint).
async fn checkpointer(url: &str) -> StoreResult<tokio::task::JoinHandle<()>> {
    use sqlx::ConnectOptions;
    let options: SqliteConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
    let mut conn = options
        .busy_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(StoreError::new("open SQLite checkpointer"))?;
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            tracing::trace!("WAL checkpoint started");
            let done = sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&mut conn)
                .await;
            match done {
                Ok((busy, wal_pages, copied)) => {
                    tracing::trace!(busy, wal_pages, copied, "WAL checkpoint done")
                }
                Err(e) => tracing::warn!(
                    error = %e,
                    "WAL checkpoint failed; the writer checkpoints in its commits past {BACKSTOP_PAGES} pages"
                ),
            }
        }
    }))
}

/// The URL with an open mode (`rwc` for the writer, `ro` for readers) unless it names one.
pub(super) fn with_mode(url: &str, mode: &str) -> String {
    if url.contains("mode=") {
        return url.to_string();
    }
    format!("{url}{}mode={mode}", if url.contains('?') { "&" } else { "?" })
}

/// SQLite resolves `$N` parameters by name with a linear scan per bind, which is quadratic
/// on multi-row statements; anonymous `?` are bound by position. Placeholders in our SQL
/// always appear in ascending order, so the rewrite keeps their meaning.
pub(super) fn positional_placeholders(sql: String) -> String {
    if !sql.contains('$') {
        return sql;
    }
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
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
fn writer_lock(url: &str) -> StoreResult<Option<std::fs::File>> {
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
            Ok(Some(file))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_placeholders_become_positional_ones_outside_literals_too_but_not_a_bare_dollar() {
        let sql = "SELECT a FROM t WHERE p = $1 AND x IN ($2,$3) AND note = '$'".to_string();
        assert_eq!(positional_placeholders(sql), "SELECT a FROM t WHERE p = ? AND x IN (?,?) AND note = '$'");
    }

    #[test]
    fn a_url_keeps_the_mode_it_names_and_otherwise_gets_one() {
        assert_eq!(with_mode("sqlite://a.db", "rwc"), "sqlite://a.db?mode=rwc");
        assert_eq!(with_mode("sqlite://a.db?cache=shared", "ro"), "sqlite://a.db?cache=shared&mode=ro");
        assert_eq!(with_mode("sqlite://a.db?mode=ro", "rwc"), "sqlite://a.db?mode=ro");
    }

    #[test]
    fn in_memory_databases_take_no_writer_lock() {
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("sqlite://data/a.db?mode=rwc"), Some("data/a.db"));
    }
}
