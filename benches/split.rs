//! `cargo bench --bench split`: what undoing a merge costs (SPEC "Undoing a merge"). On a
//! fresh SQLite file, Anna's card holds 1,000 appeals of 20 messages each and Boris's card a
//! history of its own; Boris then gives Anna's phone, the rule merges his card into hers, and an
//! operator splits it again. Printed: the split's time beside the merge's, for Boris with
//! 1,000 appeals (20,000 messages) and with 100 (2,000), and the time of an average batch of the
//! stream: a split costs in proportion to what moves, and holds the partition no longer than
//! about one batch.
//!
//! Options (environment): `BENCH_APPEALS` (Anna's appeals, default 1000).

use std::sync::Arc;
use std::time::Duration;

use appealflow::config::Config;
use appealflow::store::Store;
use appealflow::{replay, testkit};

const MESSAGES_PER_APPEAL: usize = 20;
const PHONE: &str = "+7 812 555-01-01";

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let anna_appeals: usize = std::env::var("BENCH_APPEALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benching { 1000 } else { 20 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = Arc::new(Config::from_toml(testkit::CONFIG).unwrap());
    println!(
        "appealflow split benchmark: Anna's card with {anna_appeals} appeals of {MESSAGES_PER_APPEAL} messages, SQLite"
    );
    for boris_appeals in [anna_appeals, anna_appeals / 10] {
        let dir = tempfile::tempdir().unwrap();
        let run = runtime.block_on(scenario(&config, dir.path(), anna_appeals, boris_appeals.max(1)));
        println!(
            "  Boris with {:>5} appeals ({:>6} messages): merge {:>7.1} ms, split {:>7.1} ms ({:.2} of the merge); \
             an average batch of the stream {:.1} ms (the split is {:.2} of it; of the batch interval, \
             pipeline.batch_max_wait {} ms, {:.2})",
            boris_appeals.max(1),
            boris_appeals.max(1) * MESSAGES_PER_APPEAL,
            ms(run.merge),
            ms(run.split),
            run.split.as_secs_f64() / run.merge.as_secs_f64(),
            ms(run.batch),
            run.split.as_secs_f64() / run.batch.as_secs_f64(),
            config.pipeline.batch_max_wait.as_millis(),
            run.split.as_secs_f64() / config.pipeline.batch_max_wait.as_secs_f64(),
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Timings {
    merge: Duration,
    split: Duration,
    batch: Duration,
}

/// 2023-01-01 plus `minutes`.
fn at(minutes: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2023-01-01T00:00:00Z").unwrap();
    (base + chrono::Duration::minutes(minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn message(id: &str, visitor: &str, minutes: i64, phone: Option<&str>) -> String {
    let mut v = serde_json::json!({"id": visitor});
    if let Some(p) = phone {
        v["phone"] = p.into();
    }
    serde_json::json!({"type": "message", "message_id": id, "project_id": "acme", "channel_id": "acme-tg",
        "sent_at": at(minutes), "visitor": v, "content": {"kind": "text", "text": "about my card"}})
    .to_string()
}

async fn scenario(config: &Arc<Config>, dir: &std::path::Path, anna: usize, boris: usize) -> Timings {
    let url = format!("sqlite://{}", dir.join("split.db").display());
    // Each appeal a burst of messages; a day and more between bursts closes it (24 h idle).
    let mut history = Vec::new();
    for k in 0..anna.max(boris) {
        let day = k as i64 * 25 * 60;
        for m in 0..MESSAGES_PER_APPEAL {
            let minute = day + m as i64;
            if k < anna {
                let phone = (k == 0 && m == 0).then_some(PHONE);
                history.push(message(&format!("a-{k}-{m}"), "anna", minute, phone));
            }
            if k < boris {
                history.push(message(&format!("b-{k}-{m}"), "boris", minute, None));
            }
        }
    }
    let end = anna.max(boris) as i64 * 25 * 60;
    let built = replay_file(config, &url, dir, "history", &history).await;
    let batches = built.stats.inputs.div_ceil(config.pipeline.batch_size as u64).max(1);
    let batch = built.elapsed / batches as u32;
    let merge =
        replay_file(config, &url, dir, "merge", &[message("b-phone", "boris", end, Some(PHONE))]).await;
    assert_eq!(merge.stats.event("client.merged"), 1, "Boris's phone merges his card into Anna's");
    let store = Store::connect(&url, 1).await.unwrap();
    let anna_id = {
        let mut ws = store.begin().await.unwrap();
        let card = ws.client_by_handle("acme", "v:acme-tg:anna").await.unwrap().expect("Anna's card");
        drop(ws);
        card.id
    };
    let ledger = store.merge_ledger("acme", &anna_id).await.unwrap();
    store.close().await;
    drop(store);
    let split = serde_json::json!({"type": "split_client", "command_id": "split-1", "project_id": "acme",
        "issued_at": at(end + 1), "operator": {"id": "op-1"}, "client": {"client_id": anna_id},
        "merge_id": ledger.last().expect("the merge is in the ledger").merge_id})
    .to_string();
    let undone = replay_file(config, &url, dir, "split", &[split]).await;
    assert_eq!(undone.stats.event("client.split"), 1, "the split applies");
    Timings { merge: merge.elapsed, split: undone.elapsed, batch }
}

async fn replay_file(
    config: &Arc<Config>,
    url: &str,
    dir: &std::path::Path,
    name: &str,
    lines: &[String],
) -> replay::Summary {
    let path = dir.join(format!("{name}.jsonl"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let store = Store::connect(url, 4).await.unwrap();
    let files = [path.display().to_string()];
    let summary =
        replay::replay(config.clone(), store.clone(), &files, &mut std::io::sink(), false).await.unwrap();
    store.close().await;
    summary
}
