//! Hostile input (README "Guarantees"): no input may overwrite someone else's data, stop a
//! store, or apply twice; bad input goes to the DLQ with a reason and the rest of its batch
//! applies. On SQLite and PostgreSQL where the store matters.

mod common;

use common::*;
use serde_json::Value;

const T0: &str = "2026-11-21T10:00:00Z";

fn at(min: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339(T0).unwrap();
    (base + chrono::Duration::minutes(min)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn each_backend(lines: &[String], check: impl AsyncFn(&Run, &TestDb)) {
    each_backend_with(&config(BASE), lines, check).await
}

async fn each_backend_with(
    config: &std::sync::Arc<appealflow::config::Config>,
    lines: &[String],
    check: impl AsyncFn(&Run, &TestDb),
) {
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let run = replay_lines(config, &db, lines).await;
        eprintln!("backend {kind:?}");
        check(&run, &db).await;
    }
}

fn first<'a>(run: &'a Run, cause: &str, kind: &str) -> &'a Value {
    let found = run.caused_by(cause).into_iter().find(|e| e["type"] == kind);
    found.unwrap_or_else(|| panic!("{cause} caused no {kind}:\n{}", run.stdout))
}

fn dlq_reasons(run: &Run) -> Vec<String> {
    run.topic("inbound.dlq").iter().map(|d| d["reason"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn a_message_whose_id_looks_like_another_origin_gets_a_card_of_its_own() {
    let lines = [
        msg("m1", "acme-corp", &at(0), r#"{"id":"c-1","name":"Kate"}"#, "corporate"),
        cmd("create_client", "cmd-42", &at(1), r#""name":"Made by hand","contacts":[]"#),
        msg("fixed:corp-1", "acme-tg", &at(2), r#"{"id":"t1","name":"Mallory"}"#, "take over"),
        msg("command:cmd-42", "acme-tg", &at(3), r#"{"id":"t2","name":"Mallory"}"#, "take over"),
        cmd("rename_client", "c2", &at(4), r#""client":{"external_id":"corp-1"},"name":"Corp""#),
    ];
    each_backend(&lines, async |run, db| {
        let corp = first(run, "m1", "client.created")["client"]["id"].as_str().unwrap().to_string();
        let by_hand = first(run, "cmd-42", "client.created")["client"]["id"].as_str().unwrap().to_string();
        let m3 = first(run, "fixed:corp-1", "client.created")["client"]["id"].as_str().unwrap().to_string();
        let m4 = first(run, "command:cmd-42", "client.created")["client"]["id"].as_str().unwrap().to_string();
        assert!(m3 != corp && m4 != by_hand && m3 != m4, "{}", run.stdout);
        assert_eq!(first(run, "c2", "client.updated")["client"]["id"], corp.as_str());
        let corp = card(db, &corp).await;
        assert_eq!(corp.doc.visitors.len(), 1, "Mallory is not on the corporate card");
        assert_eq!(card(db, &by_hand).await.doc.name.as_deref(), Some("Made by hand"));
    })
    .await;
}

#[tokio::test]
async fn a_client_message_reusing_an_operators_message_id_goes_to_the_dlq_and_the_batch_applies() {
    let lines = [
        msg("m1", "acme-tg", &at(0), r#"{"id":"t1"}"#, "hi"),
        cmd(
            "send_outbound",
            "c1",
            &at(1),
            r#""client":{"channel_id":"acme-tg","visitor_id":"t1"},"channel_id":"acme-tg","text":"Hello from the bank""#,
        ),
    ];
    each_backend(&lines, async |first_run, db| {
        let outbound_id = first_run.topic("outbound.messages")[0]["outbound_id"].as_str().unwrap().to_string();
        let config = config(BASE);
        let attack = [
            msg("m2", "acme-tg", &at(2), r#"{"id":"t2"}"#, "before"),
            msg(&outbound_id, "acme-tg", &at(3), r#"{"id":"t3"}"#, "I am the bank now"),
            msg("m4", "acme-tg", &at(4), r#"{"id":"t4"}"#, "after"),
            format!(r#"{{"type":"status","message_id":"{outbound_id}","project_id":"acme","channel_id":"acme-tg","status":"read","at":"{}"}}"#, at(5)),
        ];
        let run = replay_lines(&config, db, &attack).await;
        let dlq = run.topic("inbound.dlq");
        assert_eq!(dlq.len(), 1, "{}", run.stdout);
        assert_eq!(dlq[0]["stage"], "store");
        assert!(dlq[0]["reason"].as_str().unwrap().contains("already another row's"), "{}", dlq[0]["reason"]);
        for applied in ["m2", "m4"] {
            assert!(!run.caused_by(applied).is_empty(), "{applied} applied around the refused input");
        }
        let status = first(&run, &format!("status:{outbound_id}:read"), "appeal.message_status");
        assert_eq!(status["appeal"]["number"], 1, "the operator's message is still the operator's");
    })
    .await;
}

#[tokio::test]
async fn a_batch_of_two_partitions_commits_around_a_refused_input_and_moves_each_partition_on() {
    use appealflow::pipeline::Pipeline;
    use appealflow::source::{Batch, Part, RawInput, SourcePos};
    let reply =
        r#""client":{"channel_id":"acme-tg","visitor_id":"t1"},"channel_id":"acme-tg","text":"Hello""#;
    let lines =
        [msg("m1", "acme-tg", &at(0), r#"{"id":"t1"}"#, "hi"), cmd("send_outbound", "c1", &at(1), reply)];
    each_backend(&lines, async |first_run, db| {
        let outbound_id =
            first_run.topic("outbound.messages")[0]["outbound_id"].as_str().unwrap().to_string();
        let part = |topic_partition: i32, lines: Vec<String>| {
            let inputs = lines.into_iter().enumerate().map(|(i, line)| {
                let pos = SourcePos::Kafka {
                    topic: "in".into(),
                    partition: topic_partition,
                    offset: 10 + i as i64,
                };
                RawInput { bytes: line.into_bytes(), pos, key: None, cut: None, project: None }
            });
            let inputs: Vec<RawInput> = inputs.collect();
            Part {
                partition: format!("in:{topic_partition}"),
                next_offset: Some(10 + inputs.len() as i64),
                inputs,
            }
        };
        let attack = msg(&outbound_id, "acme-tg", &at(3), r#"{"id":"t3"}"#, "I am the bank now");
        let batch = Batch {
            parts: vec![
                part(0, vec![msg("m2", "acme-tg", &at(2), r#"{"id":"t2"}"#, "before"), attack]),
                part(1, vec![msg("m4", "acme-tg", &at(4), r#"{"id":"t4"}"#, "after")]),
            ],
        };
        let store = db.store().await;
        let committed = Pipeline::new(config(BASE), store.clone()).unwrap().process(&batch).await.unwrap();
        assert_eq!((committed.stats.inputs, committed.stats.dlq), (3, 1));
        let dlq: Vec<&str> = committed
            .records
            .iter()
            .filter(|r| r.value.contains("\"stage\":\"store\""))
            .map(|r| r.value.as_str())
            .collect();
        assert_eq!(dlq.len(), 1, "the refused input is dead-lettered once");
        for applied in ["m2", "m4"] {
            let caused = format!("\"id\":\"{applied}\"");
            assert!(
                committed.records.iter().any(|r| r.value.contains(&caused)),
                "{applied} applied around it"
            );
        }
        let ms = |min: i64| chrono::DateTime::parse_from_rfc3339(&at(min)).unwrap().timestamp_millis();
        assert_eq!(
            store.partition("in:0").await.unwrap(),
            Some((ms(2), Some(12))),
            "past the refused input, which moves no clock"
        );
        assert_eq!(store.partition("in:1").await.unwrap(), Some((ms(4), Some(11))), "each by its own clock");
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn values_the_store_cannot_hold_go_to_the_dlq_at_decode() {
    let long = "x".repeat(3000);
    let lines = [
        msg("m1", "acme-tg", &at(0), r#"{"id":"a\u0000b"}"#, "nul in an id"),
        msg("m2", "acme-tg", &at(0), &format!(r#"{{"id":"{long}"}}"#), "a long visitor id"),
        msg("m3", "acme-tg", &at(0), r#"{"id":"t3","email":"a\u0000@example.com"}"#, "nul in an e-mail"),
        msg("m4", "acme-tg", &at(0), r#"{"id":"t4","phone":"+7 999 123-45-67\u0000"}"#, "nul in a phone"),
        msg("m\u{1f}5", "acme-tg", &at(0), r#"{"id":"t5"}"#, "a separator in an id"),
        msg("m6", "acme-tg", &at(0), r#"{"id":"t6","fields":{"note":"ok"}}"#, "fine"),
    ];
    each_backend(&lines, async |run, _| {
        let reasons = dlq_reasons(run);
        assert_eq!(reasons.len(), 5, "{}", run.stdout);
        assert!(reasons[0].contains("NUL"), "{reasons:?}");
        assert!(reasons[1].contains("`visitor.id` is 3000 bytes, the limit is 256"), "{reasons:?}");
        assert!(reasons[2].contains("NUL") && reasons[3].contains("NUL"), "{reasons:?}");
        assert!(reasons[4].contains("control character"), "{reasons:?}");
        assert!(!run.caused_by("m6").is_empty(), "the rest of the batch applies");
        assert_eq!(run.summary.stats.applied, 1);
    })
    .await;
}

#[tokio::test]
async fn an_input_with_a_key_given_twice_goes_to_the_dlq() {
    let lines = [
        format!(
            r#"{{"type":"message","message_id":"m1","project_id":"acme","channel_id":"acme-tg","sent_at":"{T0}","visitor":{{"id":"anna","id":"boris"}},"content":{{"kind":"text","text":"hi"}}}}"#
        ),
        format!(
            r#"{{"type":"message","message_id":"m2","message_id":"m3","project_id":"acme","channel_id":"acme-tg","sent_at":"{T0}","visitor":{{"id":"t1"}},"content":{{"kind":"text","text":"hi"}}}}"#
        ),
    ];
    each_backend(&lines, async |run, _| {
        let reasons = dlq_reasons(run);
        assert_eq!(reasons.len(), 2, "{}", run.stdout);
        assert!(
            reasons[0].contains("duplicate key `id`") && reasons[1].contains("duplicate key `message_id`"),
            "{reasons:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn replaying_a_file_again_changes_nothing_not_even_statuses_and_dead_letters() {
    let lines = [
        format!(
            r#"{{"type":"status","message_id":"m1","project_id":"acme","channel_id":"acme-tg","status":"read","at":"{T0}"}}"#
        ),
        msg("m1", "acme-tg", &at(1), r#"{"id":"t1"}"#, "hi"),
        format!(
            r#"{{"type":"status","message_id":"m1","project_id":"acme","channel_id":"acme-tg","status":"delivered","at":"{}"}}"#,
            at(2)
        ),
        "{not json".to_string(),
    ];
    let config = config(BASE);
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stream.jsonl");
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let first = replay_file(&config, &db, &path).await;
        assert_eq!(first.topic("inbound.dlq").len(), 2, "{kind:?}: {}", first.stdout);
        assert_eq!(first.events("appeal.message_status").len(), 1);
        let again = replay_file(&config, &db, &path).await;
        assert_eq!(again.stdout, "", "{kind:?}: a second replay prints nothing");
        assert_eq!(again.summary.stats.duplicates, 4);
    }
}

#[tokio::test]
async fn dead_letter_reasons_in_logs_mask_the_values_they_echo() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines = [
        format!(
            r#"{{"type":"message","message_id":79267778899,"project_id":"acme","channel_id":"acme-tg","sent_at":"{T0}","visitor":{{"id":"t1"}},"content":{{"kind":"text","text":"hi"}}}}"#
        ),
        format!(
            r#"{{"type":"status","message_id":"+79161112233","project_id":"acme","channel_id":"acme-tg","status":"read","at":"{T0}"}}"#
        ),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, BASE).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .args(["replay", "--config"])
        .arg(&config_path)
        .arg("--db")
        .arg(format!("sqlite://{}", dir.path().join("s.db").display()))
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("input sent to the DLQ"), "{stderr}");
    for secret in ["79267778899", "79161112233"] {
        assert!(!stderr.contains(secret), "{secret} in the log:\n{stderr}");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("79267778899"), "the DLQ record keeps the whole reason: {stdout}");
}

#[tokio::test]
async fn a_line_far_over_the_input_limit_becomes_a_bounded_dlq_record() {
    let toml = format!("[pipeline]\nmax_input_bytes = 100000\ndlq_max_bytes = 20000\n{BASE}");
    let config = config(&toml);
    let poison = "\u{1}".repeat(3_000_000);
    let lines = [poison.clone(), "\u{1}".repeat(60_000), msg("m1", "acme-tg", T0, r#"{"id":"t1"}"#, "fine")];
    for kind in kinds() {
        let db = TestDb::new(kind).await;
        let run = replay_lines(&config, &db, &lines).await;
        let dlq: Vec<&Rec> = run.records.iter().filter(|r| r.topic == "inbound.dlq").collect();
        assert_eq!(dlq.len(), 2, "{kind:?}");
        for (record, size) in dlq.iter().zip([3_000_000, 60_000]) {
            assert!(
                record.value.to_string().len() <= 20_000,
                "{kind:?}: {} bytes",
                record.value.to_string().len()
            );
            assert_eq!(record.value["original_size"], size);
        }
        assert!(dlq[0].value["reason"]
            .as_str()
            .unwrap()
            .contains("3000000 bytes exceeds pipeline.max_input_bytes"));
        assert_eq!(dlq[0].value["original_sha256"], appealflow::emit::sha256_hex(poison.as_bytes()));
        assert!(!run.caused_by("m1").is_empty());
    }
}

#[test]
fn a_second_writer_of_one_sqlite_store_exits_at_once_naming_the_first() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, BASE).unwrap();
    let db = format!("sqlite://{}", dir.path().join("shared.db").display());
    let replay = |input: &str| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"));
        c.args(["replay", "--no-progress", "--config"]).arg(&config_path).args(["--db", &db, input]);
        c
    };
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert!(replay(empty.to_str().unwrap()).output().unwrap().status.success(), "the store exists, migrated");
    // The first writer reads stdin, which stays open until the test closes it.
    let mut first = replay("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = dir.path().join("shared.db.writer-lock");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&lock).unwrap_or_default().contains(&format!("pid {}", first.id())) {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the first writer never took the store"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let input = dir.path().join("in.jsonl");
    std::fs::write(&input, msg("m1", "acme-tg", T0, r#"{"id":"t1"}"#, "hi") + "\n").unwrap();
    let second = replay(input.to_str().unwrap()).output().unwrap();
    assert!(!second.status.success(), "a second writer is refused");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("pid {}", first.id())) && stderr.contains("one writer"), "{stderr}");
    let report = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .args(["report", "scenarios", "--config"])
        .arg(&config_path)
        .args(["--db", &db])
        .output()
        .unwrap();
    assert!(report.status.success(), "a reader is welcome: {}", String::from_utf8_lossy(&report.stderr));
    let mut stdin = first.stdin.take().unwrap();
    writeln!(stdin, "{}", msg("m2", "acme-tg", T0, r#"{"id":"t2"}"#, "hi")).unwrap();
    drop(stdin);
    assert!(first.wait().unwrap().success());
    assert!(replay(input.to_str().unwrap()).output().unwrap().status.success(), "the store is free again");
}

/// `run` and `replay` may start before their database: connecting (and migrating) is retried
/// with backoff while the server refuses connections, instead of exiting.
#[tokio::test]
async fn connecting_waits_for_a_database_that_is_not_up_yet() {
    if !kinds().contains(&Kind::Postgres) {
        return;
    }
    let db = TestDb::new(Kind::Postgres).await;
    let (base, name) = db.url.rsplit_once('/').unwrap();
    let server = base.rsplit_once('@').map(|(_, h)| h).unwrap_or(base.trim_start_matches("postgres://"));
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let upstream = server.to_string();
    // The "database" comes up after a while: a proxy to the real server that starts late.
    let proxy = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut server = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    let user = base.trim_start_matches("postgres://").split('@').next().filter(|_| base.contains('@'));
    let url = match user {
        Some(user) => format!("postgres://{user}@127.0.0.1:{port}/{name}"),
        None => format!("postgres://127.0.0.1:{port}/{name}"),
    };
    let store = appealflow::store::Store::connect_with_retry(&url, 2, Some(8))
        .await
        .expect("connects once the server is up");
    store.close().await;
    proxy.abort();
}

/// 300 cards with one office phone, then two inputs of someone else who shares nothing with it.
fn office_phone_lines() -> Vec<String> {
    let mut lines: Vec<String> = (0..300)
        .map(|i| {
            msg(
                &format!("m{i}"),
                "acme-tg",
                &at(i),
                &format!(r#"{{"id":"t{i}","phone":"+7 999 555-00-00"}}"#),
                "hi",
            )
        })
        .collect();
    lines.push(msg("x1", "acme-tg", &at(400), r#"{"id":"t900","phone":"+7 916 000-11-22"}"#, "someone else"));
    lines.push(msg("x2", "acme-wa", &at(401), r#"{"id":"79160001122"}"#, "same person"));
    lines
}

fn assert_the_office_phone_turned_generic_once(run: &Run) {
    let refused = run.events("client.merge_refused");
    assert_eq!(refused.len(), 1, "{}", refused.len());
    let generic = refused[0];
    assert!(generic["reason"].as_str().unwrap().starts_with("generic_value"), "{generic}");
    assert_eq!((generic["field"].clone(), generic["value"].clone()), ("phone".into(), "+79995550000".into()));
    assert_eq!(generic["cards"], 2, "the merged card of four and the fifth");
    assert!(generic.to_string().len() < 2048, "a count, not a list");
    assert_eq!(run.events("client.merged").len(), 3 + 1, "three joins of the first four, then x2 with x1");
    assert_eq!(run.summary.stats.applied, 302);
}

#[tokio::test]
async fn a_value_shared_beyond_the_group_limit_turns_generic_once_and_stops_being_compared() {
    // BASE allows groups of 4: the first four cards with the office phone merge, the fifth
    // makes the phone generic, and the rest never compare it again.
    each_backend(&office_phone_lines(), async |run, _| assert_the_office_phone_turned_generic_once(run))
        .await;
}

#[tokio::test]
async fn a_value_made_generic_by_an_earlier_batch_is_read_back_as_generic_by_later_ones() {
    // Batches of 7: the phone turns generic in the second batch, and the 42 batches after it
    // learn so from the store, in the lookup that finds the cards of their other values.
    let config = config(&format!("[pipeline]\nbatch_size = 7\n{BASE}"));
    each_backend_with(&config, &office_phone_lines(), async |run, _| {
        assert_the_office_phone_turned_generic_once(run)
    })
    .await;
}
