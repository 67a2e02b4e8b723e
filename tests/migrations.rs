//! Migrations that reshape data keep it: a database upgraded with records still waiting in
//! the old per-record outbox publishes exactly those records, in order, after the upgrade.
//! A store the engine wrote before the newest migration answers every read-API request the
//! same after it, and the rest of its stream goes on as on a store that never migrated. Storage settings the migrations choose for speed are in place, and
//! identifiers order the same way on both stores whatever the PostgreSQL database's collation.

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

/// A database the first release wrote (migrations up to 0006, cards with one string per value
/// and a separate list of hand-added contacts, appeals keyed by visitor handle) opens, keeps
/// its conversations going and its cards merging, and its values read with display = the
/// stored value.
#[tokio::test]
async fn a_database_the_first_release_wrote_opens_and_keeps_working() {
    sqlx::any::install_default_drivers();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let url = match kind {
            Kind::Sqlite => format!("{}?mode=rwc", db.url),
            Kind::Postgres => db.url.clone(),
        };
        let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let mut first_release = match kind {
            Kind::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Kind::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        first_release.migrations =
            first_release.migrations.iter().filter(|m| m.version <= 6).cloned().collect();
        first_release.run(&pool).await.unwrap();
        for (sql, params) in first_release_rows() {
            let mut q = sqlx::query(sql);
            for p in params {
                q = q.bind(p);
            }
            q.execute(&pool).await.unwrap();
        }
        pool.close().await;

        let lines = [
            common::msg("m1", "acme-tg", "2026-11-21T10:01:00Z", r#"{"id":"t1"}"#, "still there?"),
            common::msg("m2", "acme-wa", "2026-11-21T10:02:00Z", r#"{"id":"79991234567"}"#, "from WhatsApp"),
        ];
        let run = common::replay_lines(&common::config(common::BASE), &db, &lines).await;
        assert!(run.events("appeal.opened").iter().all(|e| e["cause"]["id"] != "m1"), "{}", run.stdout);
        let m1 = run.caused_by("m1").into_iter().find(|e| e["type"] == "appeal.message_added").unwrap();
        assert_eq!(m1["appeal"]["number"], 1, "{kind:?}: the open conversation goes on");
        assert_eq!(m1["client"]["name"], "Alfred");
        let merged = run.events("client.merged");
        assert_eq!(merged.len(), 1, "{kind:?}: {}", run.stdout);
        assert_eq!(merged[0]["survivor_id"], OLD_CARD);
        let card = common::card(&db, OLD_CARD).await;
        let phone = &card.doc.contacts["phone"][0];
        assert_eq!((phone.display(), phone.source), ("+79991234567", appealflow::model::Source::Manual));
        assert_eq!(card.doc.fields["contract_number"][0].display(), "d-100");
        assert_eq!(card.doc.name.as_deref(), Some("Alfred"));
    }
}

const OLD_CARD: &str = "00000000-0000-5000-8000-000000000001";

/// Rows as the first release wrote them: one card with an open Telegram appeal.
fn first_release_rows() -> Vec<(&'static str, Vec<String>)> {
    let doc = r#"{"name":"Alfred","contacts":{"phone":["+79991234567"]},"manual_contacts":{"phone":["+79991234567"]},"fields":{"contract_number":"d-100"},"visitors":[{"channel_id":"acme-tg","visitor_id":"t1"}],"last_inbound":{"v:acme-tg:t1":1795254000000},"group_size":1}"#;
    let appeal_doc = format!(
        r#"{{"group":"first-line","last_author":{{"kind":"client","id":"{OLD_CARD}"}},"last_group_id":"old-1","message_count":1}}"#
    );
    let s = |v: &str| v.to_string();
    vec![
        (
            "INSERT INTO clients (id, project_id, kind, created_at, appeal_count, merged_into, doc) \
             VALUES ($1, 'acme', 'channel', 1795254000000, 1, NULL, $2)",
            vec![s(OLD_CARD), s(doc)],
        ),
        ("INSERT INTO client_handles (project_id, handle, client_id) VALUES ('acme', 'v:acme-tg:t1', $1)", vec![s(OLD_CARD)]),
        (
            "INSERT INTO client_values (project_id, field, value, client_id) VALUES ('acme', 'phone', '+79991234567', $1)",
            vec![s(OLD_CARD)],
        ),
        (
            "INSERT INTO client_values (project_id, field, value, client_id) VALUES ('acme', 'contract_number', 'd-100', $1)",
            vec![s(OLD_CARD)],
        ),
        (
            "INSERT INTO appeals (id, project_id, number, client_id, channel_id, visitor_id, visitor_handle, status, \
             opened_at, last_message_at, close_deadline, partition_key, doc) VALUES ('00000000-0000-5000-8000-0000000000a1', \
             'acme', 1, $1, 'acme-tg', 't1', 'v:acme-tg:t1', 'open', 1795254000000, 1795254000000, 1795340400000, 'old', $2)",
            vec![s(OLD_CARD), appeal_doc],
        ),
        ("INSERT INTO project_state (project_id, next_appeal_number) VALUES ('acme', 2)", vec![]),
    ]
}

fn migrator(kind: Kind) -> sqlx::migrate::Migrator {
    match kind {
        Kind::Sqlite => sqlx::migrate!("./migrations/sqlite"),
        Kind::Postgres => sqlx::migrate!("./migrations/postgres"),
    }
}

/// The newest migration of a backend: the one a store written before it is upgraded by.
fn newest_migration(kind: Kind) -> i64 {
    migrator(kind).migrations.iter().map(|m| m.version).max().expect("migrations")
}

/// Applies the migrations before `from` and records the rest as applied without running
/// them, so the engine writes the store as it was before them.
async fn hold_back_migrations(kind: Kind, url: &str, from: i64) {
    let mut migrator = migrator(kind);
    let (before, held): (Vec<_>, Vec<_>) =
        migrator.migrations.iter().cloned().partition(|m| m.version < from);
    migrator.migrations = before.into();
    let url = if kind == Kind::Sqlite { format!("{url}?mode=rwc") } else { url.to_string() };
    let pool = AnyPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
    migrator.run(&pool).await.unwrap();
    for m in held {
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES ($1, $2, TRUE, $3, 0)",
        )
        .bind(m.version)
        .bind(m.description.to_string())
        .bind(m.checksum.to_vec())
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

/// Forgets the held-back migrations, so the next writer to connect runs them.
async fn release_migrations(url: &str, from: i64) {
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version >= $1").bind(from).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Every read-API answer about what a replay produced, by request path: each card the events
/// name, its timeline and merge ledger, each appeal of those timelines with its messages,
/// and a search by each card's name and first phone.
async fn every_read(
    config: &std::sync::Arc<appealflow::config::Config>,
    url: &str,
    run: &common::Run,
) -> Vec<(String, u16, serde_json::Value)> {
    let reader = appealflow::store::Store::connect_reader(url, 2).await.unwrap();
    let addr =
        appealflow::api::serve("127.0.0.1:0", config.clone(), reader, Default::default()).await.unwrap();
    let http = reqwest::Client::new();
    let get = |path: String, query: Vec<(&'static str, String)>| {
        let http = http.clone();
        async move {
            let response = http
                .get(format!("http://{addr}/v1/projects/acme{path}"))
                .query(&query)
                .bearer_auth("migration-token")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let what = format!("{path}?{query:?}");
            (what, status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let mut cards = std::collections::BTreeSet::new();
    for record in &run.records {
        collect_client_ids(&record.value, &mut cards);
    }
    assert!(cards.len() > 50, "the stream names many cards: {}", cards.len());
    let mut out = Vec::new();
    let mut numbers = std::collections::BTreeSet::new();
    let mut queries = std::collections::BTreeSet::new();
    for id in &cards {
        let card = get(format!("/clients/{id}"), vec![]).await;
        if let Some(name) = card.2["name"].as_str() {
            queries.insert(name.to_string());
        }
        if let Some(phone) = card.2["contacts"]["phone"][0]["value"].as_str() {
            queries.insert(phone.to_string());
        }
        out.push(card);
        let timeline = get(format!("/clients/{id}/timeline"), vec![("limit", "100".into())]).await;
        for appeal in timeline.2["appeals"].as_array().into_iter().flatten() {
            numbers.extend(appeal["number"].as_i64());
        }
        out.push(timeline);
        out.push(get(format!("/clients/{id}/merges"), vec![]).await);
    }
    assert!(numbers.len() > 50, "the timelines list many appeals: {}", numbers.len());
    for number in numbers {
        out.push(get(format!("/appeals/{number}"), vec![("limit", "500".into())]).await);
    }
    for q in queries {
        out.push(get("/clients".to_string(), vec![("q", q)]).await);
    }
    out
}

fn collect_client_ids(value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("client_id" | "survivor_id", serde_json::Value::String(id)) => {
                        out.insert(id.clone());
                    }
                    _ => collect_client_ids(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_client_ids(v, out)),
        _ => {}
    }
}

/// SQL giving a store today's engine wrote the layout of the release before migration
/// `version`, for a migration today's engine cannot write around (it writes what the
/// migration adds); `None` where holding the migration back is enough.
fn downgrade(kind: Kind, version: i64) -> Option<&'static str> {
    match (kind, version) {
        (Kind::Sqlite, 14) => Some(concat!(
            "DROP INDEX appeals_idle; ALTER TABLE appeals DROP COLUMN idle_check_at; ",
            "CREATE INDEX appeals_idle ON appeals (partition_key, close_deadline) WHERE status = 'open';"
        )),
        (Kind::Postgres, 14) => Some(concat!(
            "DROP INDEX appeals_idle; ALTER TABLE appeals DROP COLUMN idle_check_at; ",
            "CREATE INDEX appeals_idle ON appeals (partition_key, close_deadline) WHERE status = 'open'; ",
            "ALTER TABLE appeals RESET (fillfactor); ALTER TABLE clients RESET (fillfactor); ",
            "ALTER TABLE client_handles RESET (fillfactor);"
        )),
        _ => None,
    }
}

async fn execute(url: &str, sql: &str) {
    let pool = AnyPoolOptions::new().max_connections(1).connect(url).await.unwrap();
    sqlx::raw_sql(sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// Every migration that reshapes tables must keep what the read API shows and what the
/// engine does next: a store the engine wrote before the newest migration answers every
/// read the same after it, and the rest of the stream then produces byte for byte what it
/// produces on a store that never migrated.
#[tokio::test]
async fn a_store_written_before_the_newest_migration_answers_every_read_the_same_after_it() {
    sqlx::any::install_default_drivers();
    let workload = appealflow::testkit::generate(300, 38);
    let (head, rest) = workload.lines.split_at(workload.lines.len() * 2 / 3);
    let toml = format!(
        "{}\n[api]\n  [[api.tokens]]\n  token = \"migration-token\"\n  projects = [\"acme\"]\n",
        appealflow::testkit::CONFIG
    );
    let config = common::config(&toml);
    let dir = tempfile::tempdir().unwrap();
    let rest_file = dir.path().join("rest.jsonl");
    std::fs::write(&rest_file, rest.join("\n") + "\n").unwrap();
    for kind in kinds() {
        let newest = newest_migration(kind);
        let db = TestDb::new(kind).await;
        let downgrade = downgrade(kind, newest);
        if downgrade.is_none() {
            hold_back_migrations(kind, &db.url, newest).await;
        }
        let run = common::replay_lines(&config, &db, head).await;
        let before = every_read(&config, &db.url, &run).await;
        assert!(before.iter().all(|(_, status, _)| *status == 200), "{kind:?}: every read answers");
        if let Some(sql) = downgrade {
            execute(&db.url, sql).await;
        }
        release_migrations(&db.url, newest).await;

        db.store().await.close().await;
        let pool = AnyPoolOptions::new().max_connections(1).connect(&db.url).await.unwrap();
        let applied: i64 =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations").fetch_one(&pool).await.unwrap();
        pool.close().await;
        assert_eq!(applied, newest, "{kind:?}: the writer ran the held-back migration");
        let after = every_read(&config, &db.url, &run).await;
        assert_eq!(before.len(), after.len());
        for (b, a) in before.iter().zip(&after) {
            assert_eq!(b, a, "{kind:?}: {} answers the same after migration {newest}", b.0);
        }

        // One file for both: dead letters name the file they came from.
        let migrated = common::replay_file(&config, &db, &rest_file).await;
        let never = TestDb::new(kind).await;
        common::replay_lines(&config, &never, head).await;
        let unmigrated = common::replay_file(&config, &never, &rest_file).await;
        assert!(
            !unmigrated.events("appeal.closed").is_empty(),
            "{kind:?}: the rest of the stream closes appeals"
        );
        assert_eq!(
            migrated.stdout, unmigrated.stdout,
            "{kind:?}: after migration {newest} the stream goes on as on a store that never migrated"
        );
    }
}
