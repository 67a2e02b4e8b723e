//! SQLite: one writer per file (a lock file names it), WAL with the pragmas a growing store
//! needs, positional placeholders.

use std::sync::Arc;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use super::Opened;
use crate::store::{StoreCause, StoreError, StoreResult};

pub(super) async fn open_writer(url: &str) -> StoreResult<Opened> {
    let writer = writer_lock(url)?;
    let url = with_mode(url, "rwc");
    let options: AnyConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
    // One connection: SQLite serialises writers anyway, and one connection keeps the batch
    // transaction free of SQLITE_BUSY from our own pool.
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("PRAGMA journal_mode = WAL").await?;
                conn.execute("PRAGMA synchronous = NORMAL").await?;
                conn.execute("PRAGMA busy_timeout = 10000").await?;
                // Card and appeal keys are UUIDs, so writes land on random pages: a 2 MiB
                // default cache turns every batch into page reads as tables grow.
                conn.execute("PRAGMA cache_size = -131072").await?;
                conn.execute("PRAGMA mmap_size = 1073741824").await?;
                conn.execute("PRAGMA temp_store = MEMORY").await?;
                conn.execute("PRAGMA foreign_keys = OFF").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(StoreError::new("open SQLite database"))?;
    Ok(Opened { pool, url, writer, planner: None })
}

/// The URL with an open mode (`rwc` for the writer, `ro` for readers) unless it names one.
pub(super) fn with_mode(url: &str, mode: &str) -> String {
    if url.contains("mode=") {
        return url.to_string();
    }
    format!("{url}{}mode={mode}", if url.contains('?') { "&" } else { "?" })
}

pub(super) async fn migrate(pool: &AnyPool) -> StoreResult<()> {
    let result = sqlx::migrate!("./migrations/sqlite").run(pool).await;
    result.map_err(|e| StoreError::new("apply migrations")(e.into()))
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
