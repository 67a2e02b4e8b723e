//! PostgreSQL: a pool of writers, per-project advisory locks so that several instances never
//! interleave inside one project, and planner statistics kept fresh while a new database grows.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Executor;

use super::Opened;
use crate::store::driver::{Pool, Tx};
use crate::store::{StoreError, StoreResult};

pub(super) async fn open_writer(url: &str, max_connections: u32) -> StoreResult<Opened> {
    let options: PgConnectOptions = url.parse().map_err(StoreError::new("parse store.url"))?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(Duration::from_secs(10))
        .after_connect(|conn, _| {
            Box::pin(async move {
                // Prepared statements get a generic plan after five runs; planned while the
                // tables were empty it scans them, and a batch slows as they grow. Lookups
                // here are all by key: always plan for the actual values.
                conn.execute("SET plan_cache_mode = force_custom_plan").await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .map_err(StoreError::connecting("connect to PostgreSQL"))?;
    let planner = PlannerStatistics { next_refresh: FIRST_ANALYZE_AFTER.into(), ..Default::default() };
    Ok(Opened { pool: Pool::Postgres(pool), writer: None, planner: Some(Arc::new(planner)) })
}

/// `SELECT * FROM unnest($1::text[],$2::int8[],...)`: rows from one array per column.
pub(super) fn unnest(text: &[bool], first: usize) -> String {
    let arrays: Vec<String> = text
        .iter()
        .enumerate()
        .map(|(i, &text)| format!("${}::{}", first + i, if text { "text[]" } else { "int8[]" }))
        .collect();
    format!("SELECT * FROM unnest({})", arrays.join(","))
}

/// Locks are taken in sorted order (a `BTreeSet`) so two batches can never wait on each
/// other in a cycle.
pub(super) async fn lock_projects(tx: &mut Tx, projects: &BTreeSet<String>) -> StoreResult<()> {
    for project in projects {
        let key = [format!("appealflow:{project}").into()];
        tx.fetch_all("SELECT pg_advisory_xact_lock(hashtext($1))", &key, true)
            .await
            .map_err(StoreError::new("lock project"))?;
    }
    Ok(())
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
pub(crate) struct PlannerStatistics {
    committed: AtomicU64,
    next_refresh: AtomicU64,
    refreshing: AtomicBool,
}

/// Inputs committed before the first refresh; each later one waits for twice as many.
const FIRST_ANALYZE_AFTER: u64 = 1_000;

/// The tables that grow with the stream and are read by key in every batch. (Without
/// statistics, the batch's `DELETE FROM search_terms WHERE client_id IN (...)` scanned the
/// whole table: at 700,000 cards a fill slowed to 200 inputs/s.)
const ANALYZED_TABLES: [&str; 8] = [
    "clients",
    "client_handles",
    "client_values",
    "appeals",
    "messages",
    "applied_inputs",
    "search_terms",
    "search_words",
];

/// Those of [`ANALYZED_TABLES`] never analysed, or changed by more than autovacuum's default
/// share (50 rows plus 10%) since their last analysis: a restart over large, settled tables
/// analyses nothing. (Change counts reach these views up to a few seconds late, which is why
/// a table never analysed does not wait for them.)
const STALE_TABLES: &str =
    "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid \
     WHERE s.schemaname = current_schema() AND s.relname::text = ANY(string_to_array($1, ',')) \
     AND (COALESCE(s.last_analyze, s.last_autoanalyze) IS NULL \
          OR s.n_mod_since_analyze > 50 + 0.1 * GREATEST(c.reltuples, 0))";

impl PlannerStatistics {
    /// Counts committed inputs and refreshes the statistics in the background each time
    /// their number doubled.
    pub(crate) fn note_committed(self: &Arc<Self>, url: &Arc<str>, inputs: usize) {
        if inputs == 0 {
            return;
        }
        let total = self.committed.fetch_add(inputs as u64, Ordering::Relaxed) + inputs as u64;
        if total < self.next_refresh.load(Ordering::Relaxed) || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        self.next_refresh.store(total.saturating_mul(2), Ordering::Relaxed);
        let (url, planner) = (url.clone(), self.clone());
        tokio::spawn(async move {
            refresh(&url, total).await;
            planner.refreshing.store(false, Ordering::Release);
        });
    }
}

/// How much `ANALYZE` samples: 300 rows per unit of the target, 3,000 rows per table
/// instead of the default 30,000. Why: the batches' statements look rows up by key, and the
/// planner needs little more than each table's size and how distinct its keys are to choose
/// the index; a sample of 3,000 rows tells both. Measured over the eight tables after 20,000
/// inputs: 48-58 ms per refresh against 158-171 ms, server CPU that a `run` on two cores
/// takes from the batches. On this connection only: other sessions keep their target.
const SAMPLE_SIZE: &str = "SET default_statistics_target = 10";

/// `ANALYZE` of the tables that changed enough, on a connection of its own so batches keep
/// the pool. It takes a lock that writers and readers do not wait for. A failure only costs
/// plan quality: logged, not raised.
async fn refresh(url: &str, inputs: u64) {
    use sqlx::Connection;
    let started = std::time::Instant::now();
    let result = async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let stale: Vec<String> =
            sqlx::query_scalar(STALE_TABLES).bind(ANALYZED_TABLES.join(",")).fetch_all(&mut conn).await?;
        // The names come from ANALYZED_TABLES, never from input.
        if !stale.is_empty() {
            conn.execute(SAMPLE_SIZE).await?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn rows_come_from_one_typed_array_per_column_numbered_on() {
        assert_eq!(super::unnest(&[true, false], 3), "SELECT * FROM unnest($3::text[],$4::int8[])");
    }
}
