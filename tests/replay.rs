//! Effectively-once on the store, determinism, and a generated stream checked against an
//! independent oracle (`appealflow::testkit`).

mod common;

use std::collections::BTreeSet;

use appealflow::pipeline::Pipeline;
use appealflow::source::{Batch, RawInput, SourcePos};
use appealflow::testkit;
use common::*;

fn sample() -> Vec<String> {
    testkit::generate(120, 7).lines
}

fn without_dlq_source(run: &Run) -> Vec<String> {
    run.records
        .iter()
        .map(|r| {
            let mut v = r.value.clone();
            if r.topic == "inbound.dlq" {
                v.as_object_mut().unwrap().remove("source");
                v.as_object_mut().unwrap().remove("dlq_id");
            }
            format!("{} {}", r.topic, v)
        })
        .collect()
}

#[tokio::test]
async fn a_duplicate_message_id_changes_nothing() {
    let config = config(BASE);
    let m = msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1"}"#, "a");
    let changed =
        msg("m1", "acme-tg", "2026-11-21T10:00:01Z", r#"{"id":"t1","phone":"+79991234567"}"#, "edited");
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let once = replay_lines(&config, &db, std::slice::from_ref(&m)).await;
        let db2 = TestDb::new(kind).await;
        let thrice = replay_lines(&config, &db2, &[m.clone(), m.clone(), changed.clone()]).await;
        assert_eq!(once.stdout, thrice.stdout);
        assert_eq!(thrice.summary.stats.duplicates, 2);
    }
}

#[tokio::test]
async fn rerunning_a_file_on_the_same_database_emits_no_new_state_events() {
    let config = config(testkit::CONFIG);
    let lines = sample();
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let first = replay_lines(&config, &db, &lines).await;
        assert!(first.records.len() > lines.len());
        let second = replay_lines(&config, &db, &lines).await;
        assert!(second.topic("appeal.events").is_empty(), "no event the second time");
        assert!(second.topic("outbound.messages").is_empty());
        assert_eq!(
            second.topic("inbound.dlq").len(),
            first.topic("inbound.dlq").len(),
            "bad lines are reported again"
        );
        assert_eq!(second.summary.stats.applied, 0);
    }
}

#[tokio::test]
async fn half_a_file_then_the_other_half_gives_the_records_of_one_full_run() {
    let config = config(testkit::CONFIG);
    let lines = sample();
    for kind in kinds() {
        for cut in [1, lines.len() / 3, lines.len() / 2 + 7] {
            let full_db = TestDb::new(kind).await;
            let full = replay_lines(&config, &full_db, &lines).await;
            let split_db = TestDb::new(kind).await;
            let a = replay_lines(&config, &split_db, &lines[..cut]).await;
            let b = replay_lines(&config, &split_db, &lines[cut..]).await;
            let mut split = without_dlq_source(&a);
            split.extend(without_dlq_source(&b));
            // DLQ records point at their file and line, which differ between the runs.
            assert_eq!(split, without_dlq_source(&full), "cut at {cut} on {kind:?}");
        }
    }
}

#[tokio::test]
async fn two_runs_on_fresh_databases_print_byte_identical_output() {
    let config = config(testkit::CONFIG);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stream.jsonl");
    std::fs::write(&path, sample().join("\n")).unwrap();
    for kind in kinds() {
        let a = replay_file(&config, &TestDb::new(kind).await, &path).await;
        let b = replay_file(&config, &TestDb::new(kind).await, &path).await;
        assert_same_lines(&a.stdout, &b.stdout);
    }
}

/// Compares outputs line by line, showing only the first difference.
fn assert_same_lines(a: &str, b: &str) {
    let first_diff = a.lines().zip(b.lines()).position(|(x, y)| x != y);
    if let Some(i) = first_diff {
        panic!(
            "outputs differ at line {}:\n  {}\n  {}",
            i + 1,
            a.lines().nth(i).unwrap(),
            b.lines().nth(i).unwrap()
        );
    }
    assert_eq!(a.lines().count(), b.lines().count(), "same lines, different counts");
}

#[tokio::test]
async fn sqlite_and_postgresql_print_the_same_records() {
    if kinds().len() < 2 {
        return;
    }
    let config = config(testkit::CONFIG);
    let lines = sample();
    let a = replay_lines(&config, &TestDb::new(Kind::Sqlite).await, &lines).await;
    let b = replay_lines(&config, &TestDb::new(Kind::Postgres).await, &lines).await;
    assert_eq!(without_dlq_source(&a), without_dlq_source(&b));
}

#[tokio::test]
async fn records_committed_but_never_printed_are_printed_by_the_next_replay() {
    let config = config(BASE);
    let m1 = msg("m1", "acme-tg", "2026-11-21T10:00:00Z", r#"{"id":"t1"}"#, "a");
    let m2 = msg("m2", "acme-tg", "2026-11-21T10:00:10Z", r#"{"id":"t1"}"#, "b");
    for kind in kinds() {
        let reference = replay_lines(&config, &TestDb::new(kind).await, &[m1.clone(), m2.clone()]).await;
        let db = TestDb::new(kind).await;
        // A run that committed m1's batch and died before printing it.
        let store = db.store().await;
        let pipeline = Pipeline::new(config.clone(), store.clone()).unwrap();
        let pos = SourcePos::File { file: "crashed".into(), line: 1 };
        let raw = RawInput { bytes: m1.clone().into_bytes(), pos, key: None, cut: None, project: None };
        pipeline.process(&Batch::one("replay", vec![raw], None)).await.unwrap();
        drop(pipeline);
        store.close().await;
        drop(store); // the dead run's writer lock goes with it
        let rerun = replay_lines(&config, &db, &[m1.clone(), m2.clone()]).await;
        assert_eq!(rerun.stdout, reference.stdout);
        assert!(rerun.summary.recovered_records > 0);
        assert_eq!(rerun.summary.stats.duplicates, 1);
    }
}

#[tokio::test]
async fn a_generated_stream_ends_with_the_merges_and_appeals_the_oracle_expects() {
    let config = config(testkit::CONFIG);
    let workload = testkit::generate(1500, 2026);
    assert!(workload.lines.len() >= 3000, "a few thousand inputs: {}", workload.lines.len());
    for kind in kinds() {
        let run = replay_lines(&config, &TestDb::new(kind).await, &workload.lines).await;
        let e = &workload.expected;
        assert_eq!(run.summary.stats.dlq, e.dlq);
        assert_eq!(run.summary.stats.duplicates, e.duplicates);
        assert_eq!(run.events("appeal.opened").len() as u64, e.appeals_opened);
        assert_eq!(run.summary.stats.inactivity_closes, e.inactivity_closes);
        let operator_closes =
            run.events("appeal.closed").iter().filter(|c| c["reason"] == "operator").count() as u64;
        assert_eq!(operator_closes, e.operator_closes);
        assert!(run.events("command.rejected").is_empty(), "every generated close applies");
        let numbers: Vec<i64> =
            run.events("appeal.opened").iter().map(|o| o["appeal"]["number"].as_i64().unwrap()).collect();
        assert_eq!(numbers, (1..=numbers.len() as i64).collect::<Vec<_>>(), "numbers follow opening order");
        assert_same_groups(&visitor_components(&run), &e.components);
    }
}

#[tokio::test]
async fn a_conversation_shaped_stream_mostly_continues_open_appeals_and_still_matches_the_oracle() {
    let config = config(testkit::CONFIG);
    let workload = testkit::generate_shaped(250, 5, true, testkit::Shape::CONVERSATIONS);
    let stress = testkit::generate(250, 5);
    let per_appeal = |w: &testkit::Workload| {
        let messages = w.lines.iter().filter(|l| l.starts_with(r#"{"type":"message""#)).count();
        messages as f64 / w.expected.appeals_opened as f64
    };
    assert!(per_appeal(&workload) > 3.5, "conversations: {:.1} inputs per appeal", per_appeal(&workload));
    assert!(per_appeal(&stress) < 2.5, "stress: {:.1} inputs per appeal", per_appeal(&stress));
    for kind in kinds() {
        let run = replay_lines(&config, &TestDb::new(kind).await, &workload.lines).await;
        let e = &workload.expected;
        assert_eq!(run.events("appeal.opened").len() as u64, e.appeals_opened);
        assert_eq!(run.summary.stats.inactivity_closes, e.inactivity_closes);
        assert_eq!(run.summary.stats.dlq, e.dlq);
        assert_same_groups(&visitor_components(&run), &e.components);
    }
}

#[tokio::test]
async fn postgres_refreshes_planner_statistics_once_a_fresh_database_has_grown_and_not_after_a_restart() {
    if !kinds().contains(&Kind::Postgres) {
        return;
    }
    let db = TestDb::new(Kind::Postgres).await;
    let config = config(testkit::CONFIG);
    let lines: Vec<String> = testkit::generate(1000, 11).lines.into_iter().take(1500).collect();
    replay_lines(&config, &db, &lines).await;
    // Only an explicit ANALYZE sets `last_analyze` (autovacuum sets `last_autoanalyze`); it
    // runs in the background, so wait for it.
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let analysed = || async {
        sqlx::query_as::<_, (String, String)>(
            "SELECT relname::text, last_analyze::text FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL \
             AND relname IN ('clients','client_handles','client_values','appeals','messages','applied_inputs') \
             ORDER BY relname",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let first = loop {
        let tables = analysed().await;
        if tables.len() == 6 || std::time::Instant::now() > deadline {
            break tables;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(first.len(), 6, "every growing table has planner statistics: {first:?}");

    // The last 500 inputs changed the tables again since: settle them, then let a second
    // process replay the same inputs. All are duplicates and nothing changes, so when its
    // input count passes the first threshold there is nothing to analyse.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    sqlx::query("ANALYZE clients, client_handles, client_values, appeals, messages, applied_inputs")
        .execute(&pool)
        .await
        .unwrap();
    let settled = analysed().await;
    replay_lines(&config, &db, &lines).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(analysed().await, settled, "settled tables are not analysed again");
    pool.close().await;
}

/// `appealflow replay` on `db`, logging the SQLite checkpointer, its stdout appended to `out`.
fn spawn_replay(
    config: &std::path::Path,
    db: &str,
    stream: &std::path::Path,
    out: &std::path::Path,
) -> std::process::Child {
    let stdout = std::fs::OpenOptions::new().create(true).append(true).open(out).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .args(["replay", "--no-progress", "--config"])
        .arg(config)
        .args(["--db", db])
        .arg(stream)
        .env("RUST_LOG", "warn,appealflow::store::dialect=trace")
        .stdout(stdout)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start appealflow replay")
}

/// Complete output lines, each once: a killed run may have printed a batch's records without
/// marking them printed (the next run prints them again) or died inside a line.
fn complete_lines(out: &str) -> BTreeSet<String> {
    out.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')).map(str::to_string).collect()
}

#[tokio::test]
async fn a_replay_killed_while_its_wal_checkpoint_runs_resumes_and_loses_nothing() {
    use std::io::BufRead;
    let lines = testkit::generate(2_000, 17).lines;
    let dir = tempfile::tempdir().unwrap();
    let stream = dir.path().join("stream.jsonl");
    std::fs::write(&stream, lines.join("\n") + "\n").unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, testkit::CONFIG).unwrap();
    let reference = replay_file(&config(testkit::CONFIG), &TestDb::new(Kind::Sqlite).await, &stream).await;
    let want: BTreeSet<String> = reference.stdout.lines().map(str::to_string).collect();
    assert_eq!(want.len(), reference.records.len(), "a clean run prints no line twice");

    let db = format!("sqlite://{}", dir.path().join("killed.db").display());
    let out = dir.path().join("killed.out");
    let mut kills = 0;
    for round in 0..3 {
        let mut child = spawn_replay(&config_path, &db, &stream, &out);
        // The checkpointer's first round runs at start on an empty WAL; later ones copy what
        // the batches committed since the last, a few milliseconds' work for half a second's
        // writes. SIGKILL the moment one starts (a different one each run): it lands within a
        // millisecond, mostly while SQLite copies pages.
        let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let started = stderr.lines().map_while(Result::ok).filter(|l| l.contains("WAL checkpoint started"));
        if started.take(3 + round).count() == 3 + round {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills > 0, "the replay outlived three checkpoints at least once");
    let last = spawn_replay(&config_path, &db, &stream, &out).wait_with_output().unwrap();
    assert!(last.status.success(), "the resumed replay ends: {}", String::from_utf8_lossy(&last.stderr));

    let got = complete_lines(&std::fs::read_to_string(&out).unwrap());
    let missing: Vec<_> = want.difference(&got).take(3).collect();
    let extra: Vec<_> = got.difference(&want).take(3).collect();
    assert!(missing.is_empty() && extra.is_empty(), "lost: {missing:?}\nnew: {extra:?}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("{db}?mode=ro")).await.unwrap();
    let (check,): (String,) = sqlx::query_as("PRAGMA integrity_check").fetch_one(&pool).await.unwrap();
    assert_eq!(check, "ok");
}
