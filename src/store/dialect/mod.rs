//! What differs between the two backends, in one place per backend: how a store is opened
//! (pool, pragmas, SQLite's single-writer lock), its migrations, placeholder spelling, how
//! instances exclude each other inside a project, how many batches may write at once, and
//! PostgreSQL's planner statistics. Everything else is the same SQL through `sqlx::Any`
//! (both accept `$N`, `ON CONFLICT` and `RETURNING`), written once in `sql` and
//! `working_set`; every `match` on [`Backend`] is in this file.

mod postgres;
mod sqlite;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Transaction};

pub(crate) use postgres::PlannerStatistics;

use super::{StoreError, StoreResult};
pub(crate) use sqlite::Writer as SqliteWriter;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A pool opened on a store, with what the backend keeps alongside it.
pub(crate) struct Opened {
    pub pool: AnyPool,
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
        let url = match self {
            Backend::Sqlite => sqlite::with_mode(url, "ro"),
            Backend::Postgres => url.to_string(),
        };
        let options: AnyConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(StoreError::connecting("open the store for reading"))?;
        Ok(Opened { pool, writer: None, planner: None })
    }

    pub(crate) async fn migrate(self, pool: &AnyPool) -> StoreResult<()> {
        match self {
            Backend::Sqlite => sqlite::migrate(pool).await,
            Backend::Postgres => postgres::migrate(pool).await,
        }
    }

    /// Serialises writers per project for the rest of the transaction: PostgreSQL instances
    /// take advisory locks; a SQLite store has one writer already.
    pub(crate) async fn lock_projects(
        self,
        tx: &mut Transaction<'static, Any>,
        projects: &BTreeSet<String>,
    ) -> StoreResult<()> {
        match self {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => postgres::lock_projects(tx, projects).await,
        }
    }
}
