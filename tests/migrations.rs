//! Migrations that reshape data keep it: a database upgraded with records still waiting in
//! the old per-record outbox publishes exactly those records, in order, after the upgrade.
//! Storage settings the migrations choose for speed are in place, and identifiers order the
//! same way on both stores whatever the PostgreSQL database's collation.

mod common;

use appealflow::emit::{Record, Topic};
use common::{kinds, Kind, TestDb};
use sqlx::any::AnyPoolOptions;
use sqlx::Row;

const PG_0001: &str = include_str!("../migrations/postgres/0001_initial.sql");
const PG_0002: &str = include_str!("../migrations/postgres/0002_outbox_batches.sql");
const LITE_0001: &str = include_str!("../migrations/sqlite/0001_initial.sql");
const LITE_0002: &str = include_str!("../migrations/sqlite/0002_outbox_batches.sql");

#[tokio::test]
async fn records_waiting_in_the_old_outbox_survive_the_upgrade_in_order() {
    sqlx::any::install_default_drivers();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let url = match kind {
            Kind::Sqlite => format!("{}?mode=rwc", db.url),
            Kind::Postgres => db.url.clone(),
        };
        let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let (first, second) = if kind == Kind::Sqlite { (LITE_0001, LITE_0002) } else { (PG_0001, PG_0002) };
        sqlx::raw_sql(first).execute(&pool).await.unwrap();
        // Two batches, interleaved by insertion to prove grouping keeps each batch's order.
        let rows = [
            ("b1", "events", "k1", r#"{"n":1}"#),
            ("b1", "outbound", "k2", r#"{"n":2}"#),
            ("b2", "dlq", "k3", r#"{"n":3}"#),
            ("b1", "events", "k1", r#"{"n":4}"#),
        ];
        for (batch, topic, key, value) in rows {
            sqlx::query("INSERT INTO outbox (batch_id, topic, record_key, value) VALUES ($1, $2, $3, $4)")
                .bind(batch)
                .bind(topic)
                .bind(key)
                .bind(value)
                .execute(&pool)
                .await
                .unwrap();
        }
        sqlx::raw_sql(second).execute(&pool).await.unwrap();

        let batches = sqlx::query("SELECT batch_id, records FROM outbox_batches ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
        let got: Vec<(String, Vec<Record>)> = batches
            .iter()
            .map(|r| (r.get(0), Record::decode_batch(&r.get::<String, _>(1)).unwrap()))
            .collect();
        let rec = |topic, key: &str, value: &str| Record { topic, key: key.into(), value: value.into() };
        let want = vec![
            (
                "b1".to_string(),
                vec![
                    rec(Topic::Events, "k1", r#"{"n":1}"#),
                    rec(Topic::Outbound, "k2", r#"{"n":2}"#),
                    rec(Topic::Events, "k1", r#"{"n":4}"#),
                ],
            ),
            ("b2".to_string(), vec![rec(Topic::Dlq, "k3", r#"{"n":3}"#)]),
        ];
        assert_eq!(got, want, "{kind:?}");
        pool.close().await;
    }
}

#[tokio::test]
async fn postgres_compresses_the_outbox_with_lz4_where_it_was_built_with_lz4() {
    if !kinds().contains(&Kind::Postgres) {
        return;
    }
    let db = TestDb::new(Kind::Postgres).await;
    db.store().await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    // A server built without lz4 refuses the method; the migration then keeps the outbox
    // uncompressed, out of line (0004).
    let lz4 = sqlx::raw_sql("CREATE TEMP TABLE probe (t text COMPRESSION lz4)").execute(&pool).await.is_ok();
    let (compression, storage): (String, String) = sqlx::query_as(
        "SELECT attcompression::text, attstorage::text FROM pg_attribute \
         WHERE attrelid = 'outbox_batches'::regclass AND attname = 'records'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let want = if lz4 { ("l", "x") } else { ("", "e") };
    assert_eq!((compression.as_str(), storage.as_str()), want, "lz4 available: {lz4}");
    pool.close().await;
}

/// Both stores order identifiers byte by byte, so `ORDER BY id` agrees between them. The
/// PostgreSQL database here collates by an ICU English locale, where `a` sorts before `B`:
/// without migration 0006 it orders `_x, a, B, é, Z` where SQLite orders `B, Z, _x, a, é`.
#[tokio::test]
async fn identifiers_sort_byte_wise_on_both_stores_even_where_the_database_collates_by_locale() {
    sqlx::any::install_default_drivers();
    let ids = ["a", "B", "\u{e9}", "Z", "_x"];
    let mut want: Vec<&str> = ids.to_vec();
    want.sort_unstable(); // str's Ord is byte order
    for kind in kinds() {
        let db = match kind {
            Kind::Sqlite => TestDb::new(kind).await,
            Kind::Postgres => {
                TestDb::postgres_with(
                    "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
                )
                .await
            }
        };
        let store = db.store().await;
        let pool = AnyPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
        for id in ids {
            sqlx::query("INSERT INTO project_state (project_id, next_appeal_number) VALUES ($1, 1)")
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
        let got: Vec<String> = sqlx::query("SELECT project_id FROM project_state ORDER BY project_id")
            .fetch_all(&pool)
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(got, want, "{kind:?}");
        pool.close().await;
        store.close().await;
    }
}
