//! What differs between the two backends, in one place per backend: how a store is opened
//! (pool, pragmas, SQLite's single-writer lock), its migrations, placeholder spelling, how
//! instances exclude each other inside a project, how many batches may write at once, and
//! PostgreSQL's planner statistics. Everything else is the same SQL on each native driver
//! (both accept `$N`, `ON CONFLICT` and `RETURNING`), written once in `sql` and
//! `working_set`; every `match` on [`Backend`] is in this file.

mod postgres;
mod sqlite;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

pub(crate) use postgres::PlannerStatistics;

use super::driver::{Pool, Tx};
use super::{StoreError, StoreResult};
pub(crate) use sqlite::Writer as SqliteWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool opened on a store, with what the backend keeps alongside it.
pub(crate) struct Opened {
    pub pool: Pool,
    /// A SQLite store's writer lock and checkpointer, held as long as the store lives.
    pub writer: Option<Arc<SqliteWriter>>,
    pub planner: Option<Arc<PlannerStatistics>>,
}

impl Backend {
    /// The backend a `store.url` names (validated at start-up: `sqlite:` or `postgres:`).
    pub fn of_url(url: &str) -> Backend {
        if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        }
    }

    /// How many batches may hold a transaction at once.
    pub fn max_writers(self, max_connections: u32) -> usize {
        match self {
            // One connection: a second batch would only wait for it.
            Backend::Sqlite => 1,
            // One connection is left for the relay's outbox deletes.
            Backend::Postgres => (max_connections as usize).saturating_sub(1).max(1),
        }
    }

    /// Whether an update that leaves every indexed column as it was keeps the row's index
    /// entries: PostgreSQL's in-place (HOT) update, given free space in the page. SQLite
    /// rewrites the index entries of every column an `UPDATE` assigns, equal or not.
    pub(crate) fn updates_in_place(self) -> bool {
        match self {
            Backend::Sqlite => false,
            Backend::Postgres => true,
        }
    }

    /// A statement in this backend's placeholder spelling.
    pub(crate) fn statement(self, sql: String) -> String {
        match self {
            Backend::Sqlite => sqlite::positional_placeholders(sql),
            Backend::Postgres => sql,
        }
    }

    /// Whether the backend binds a list as one array parameter: PostgreSQL does (sent in
    /// binary, no statement text grows with the rows), SQLite has no arrays.
    pub(crate) fn binds_arrays(self) -> bool {
        match self {
            Backend::Sqlite => false,
            Backend::Postgres => true,
        }
    }

    /// A `SELECT` of rows given as one array parameter per column from `$first` (text
    /// columns where `text` says so, the others 64-bit integers): any number of rows in one
    /// statement whose text never changes, so each connection prepares it once. Only where
    /// [`Backend::binds_arrays`].
    pub(crate) fn array_rows(self, text: &[bool], first: usize) -> String {
        postgres::unnest(text, first)
    }

    /// A subquery yielding the strings of the array bound as parameter `$n`. Only where
    /// [`Backend::binds_arrays`].
    pub(crate) fn array_keys(self, n: usize) -> String {
        format!("SELECT unnest(${n}::text[])")
    }

    /// A subquery yielding the strings of the JSON array bound as parameter `$n`: a lookup
    /// of any number of keys in one statement whose text never changes, so each connection
    /// prepares it once (a list of placeholders is a new statement for every count).
    pub(crate) fn json_keys(self, n: usize) -> String {
        match self {
            Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
            Backend::Postgres => format!("SELECT jsonb_array_elements_text(${n}::jsonb)"),
        }
    }

    /// A `SELECT` of `cols` text columns from the JSON array of arrays bound as `$n`: rows to
    /// insert, any number of them, in one statement whose text never changes.
    pub(crate) fn json_rows(self, n: usize, cols: usize) -> String {
        let (row, from) = match self {
            Backend::Sqlite => ("value", format!("json_each(${n})")),
            Backend::Postgres => ("r", format!("jsonb_array_elements(${n}::jsonb) AS r")),
        };
        let columns: Vec<String> = (0..cols).map(|i| format!("{row}->>{i}")).collect();
        format!("SELECT {} FROM {from}", columns.join(", "))
    }

    /// Opens the store as its writer: SQLite takes its writer lock first.
    pub(crate) async fn open_writer(self, url: &str, max_connections: u32) -> StoreResult<Opened> {
        match self {
            Backend::Sqlite => sqlite::open_writer(url).await,
            Backend::Postgres => postgres::open_writer(url, max_connections).await,
        }
    }

    /// Opens the store as a reader: no lock, a SQLite file read-only.
    pub(crate) async fn open_reader(self, url: &str, max_connections: u32) -> StoreResult<Opened> {
        let reading = StoreError::connecting("open the store for reading");
        let pool = match self {
            Backend::Sqlite => {
                let options =
                    sqlite::with_mode(url, "ro").parse().map_err(StoreError::new("parse store.url"))?;
                Pool::Sqlite(reader_options(max_connections).connect_with(options).await.map_err(reading)?)
            }
            Backend::Postgres => {
                let options = url.parse().map_err(StoreError::new("parse store.url"))?;
                Pool::Postgres(reader_options(max_connections).connect_with(options).await.map_err(reading)?)
            }
        };
        Ok(Opened { pool, writer: None, planner: None })
    }

    pub(crate) async fn migrate(self, pool: &Pool) -> StoreResult<()> {
        let result = match pool {
            Pool::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await,
            Pool::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await,
        };
        result.map_err(|e| StoreError::new("apply migrations")(e.into()))
    }

    /// Serialises writers per project for the rest of the transaction: PostgreSQL instances
    /// take advisory locks; a SQLite store has one writer already.
    pub(crate) async fn lock_projects(self, tx: &mut Tx, projects: &BTreeSet<String>) -> StoreResult<()> {
        match self {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => postgres::lock_projects(tx, projects).await,
        }
    }
}

/// A reader's pool: any number of connections, none waited for longer than ten seconds.
fn reader_options<DB: sqlx::Database>(max_connections: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
}
