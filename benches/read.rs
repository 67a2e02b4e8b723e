//! `cargo bench --bench read`: the read API over a directory of 1,000,000 cards. Prints
//! p50/p99 of search for each kind of query an operator types, and of the card and timeline,
//! first on a quiet store, then while `replay` writes new cards into it: on SQLite always, on
//! PostgreSQL when `BENCH_PG_URL` names a server.
//!
//! Every request goes over real HTTP to `appealflow api`'s router on a reader store, one at a
//! time, so a figure is what one operator waits for. Filling a store with a million cards takes
//! a replay of minutes, so the filled store is kept and reused by the next run:
//! `~/.cache/appealflow/bench/read-<cards>.db` (`BENCH_READ_DIR` moves it) and the PostgreSQL
//! database `appealflow_bench_read_<cards>`; each write phase adds a few thousand cards to it.
//!
//! Options (environment): `BENCH_CARDS` (default 1000000), `BENCH_QUERIES` (per kind, default
//! 300), `BENCH_WRITES` (inputs replayed during the loaded phase, default 60000), `BENCH_PG_URL`,
//! `BENCH_STORES` (`sqlite,postgres`), `BENCH_FILL_ONLY=1` (fill the stores, measure nothing),
//! `BENCH_PG_DB` (the database's name).
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a smoke run on 3,000 cards
//! that fails when a query kind stops finding the card it was made from.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::config::Config;
use appealflow::model::format_ts;
use appealflow::store::Store;
use appealflow::testkit::Rng;
use appealflow::{api, replay, testkit};

/// 2026-11-01T00:00:00Z
const START: i64 = 1_793_491_200_000;
const DAY: i64 = 86_400_000;
const TOKEN: &str = "bench-token";
/// Every twentieth person writes again on three later days: four appeals on the timeline.
const REPEATER: usize = 20;

const FIRST: [&str; 40] = [
    "Anna",
    "Maria",
    "Olga",
    "Elena",
    "Natalia",
    "Irina",
    "Svetlana",
    "Tatiana",
    "Julia",
    "Daria",
    "Alexander",
    "Dmitry",
    "Sergey",
    "Andrey",
    "Alexey",
    "Maxim",
    "Ivan",
    "Mikhail",
    "Nikolai",
    "Pavel",
    "John",
    "Emma",
    "Oliver",
    "Sophia",
    "William",
    "Isabella",
    "James",
    "Charlotte",
    "Lucas",
    "Amelia",
    "Mehmet",
    "Ayse",
    "Fatima",
    "Omar",
    "Li",
    "Wei",
    "Hiroshi",
    "Yuki",
    "Carlos",
    "Lucia",
];
const STEM: [&str; 24] = [
    "Kuzn", "Petr", "Ivan", "Smirn", "Volk", "Moroz", "Sokol", "Pop", "Lebed", "Kozl", "Novik", "Fedor",
    "Mikhail", "Belo", "Tarasen", "Golub", "Vinogr", "Orl", "Kiselev", "Makar", "Zaitz", "Solov", "Vasil",
    "Pavl",
];
const ENDING: [&str; 12] =
    ["etsov", "ov", "ova", "in", "ina", "enko", "sky", "man", "son", "berg", "ley", "ford"];
const FIRST_CYR: [&str; 20] = [
    "Анна",
    "Мария",
    "Ольга",
    "Елена",
    "Наталья",
    "Ирина",
    "Светлана",
    "Татьяна",
    "Юлия",
    "Дарья",
    "Александр",
    "Дмитрий",
    "Сергей",
    "Андрей",
    "Алексей",
    "Максим",
    "Иван",
    "Михаил",
    "Николай",
    "Павел",
];
const STEM_CYR: [&str; 16] = [
    "Кузн",
    "Петр",
    "Иван",
    "Смирн",
    "Волк",
    "Мороз",
    "Сокол",
    "Поп",
    "Лебед",
    "Козл",
    "Новик",
    "Федор",
    "Белоус",
    "Тарас",
    "Голуб",
    "Виногр",
];
const ENDING_CYR: [&str; 8] = ["ецов", "ов", "ова", "ин", "ина", "енко", "ский", "ская"];

/// The generator of a person, so any person can be rebuilt without the others.
fn person_rng(i: usize) -> Rng {
    Rng::new((i as u64).wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED)
}

/// One person of the directory, as the generator made them.
struct Person {
    i: usize,
    first: &'static str,
    last: String,
    channel: &'static str,
    /// Ten digits after +7.
    phone: Option<String>,
    email: Option<String>,
    account: Option<String>,
    contract: Option<String>,
}

fn person(i: usize) -> Person {
    let mut r = person_rng(i);
    let (first, last) = if r.below(100) < 30 {
        (r.pick(&FIRST_CYR), format!("{}{}", r.pick(&STEM_CYR), r.pick(&ENDING_CYR)))
    } else {
        (r.pick(&FIRST), format!("{}{}", r.pick(&STEM), r.pick(&ENDING)))
    };
    // 9xx mobile ranges are valid Russian numbers; the index makes each person's unique.
    let phone = format!("9{:02}{:07}", 10 + r.below(80), i % 10_000_000);
    let email = format!(
        "{}.{}{i}@{}",
        ascii(first),
        ascii(&last),
        r.pick(&["mail.example", "corp.example", "inbox.example"])
    );
    let contract = Some(format!("D-{i}"));
    let (channel, phone, email, account, contract) = match r.below(100) {
        0..35 => ("acme-tg", (r.below(2) == 0).then_some(phone), None, None, None),
        35..60 => ("acme-wa", Some(phone), None, None, None),
        60..80 => ("acme-web", None, Some(email), (r.below(2) == 0).then(|| format!("acct-{i}")), contract),
        80..95 => ("acme-mail", None, Some(email), None, contract),
        _ => ("acme-vk", None, None, None, None),
    };
    Person { i, first, last, channel, phone, email, account, contract }
}

/// A transliteration good enough for a mailbox name.
fn ascii(name: &str) -> String {
    let s: String = name.chars().filter(char::is_ascii_alphabetic).collect();
    if s.is_empty() {
        format!("u{}", name.chars().count())
    } else {
        s.to_lowercase()
    }
}

impl Person {
    fn name(&self) -> String {
        format!("{} {}", self.first, self.last)
    }

    /// The visitor object of this person's input: the channel's id, what it reveals.
    fn visitor(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "name": self.name() });
        let phone = self.phone.as_deref().map(|d| spelled(d, self.i));
        v["id"] = match self.channel {
            "acme-wa" => phone.clone().unwrap_or_default().into(),
            "acme-mail" => self.email.clone().unwrap_or_default().into(),
            other => format!("{}-{}", &other[5..], self.i).into(),
        };
        if let (Some(p), "acme-tg") = (&phone, self.channel) {
            v["phone"] = p.clone().into();
        }
        if self.channel == "acme-web" {
            v["email"] = self.email.clone().unwrap_or_default().to_uppercase().into();
        }
        if let Some(a) = &self.account {
            v["external_id"] = a.clone().into();
        }
        if let Some(c) = &self.contract {
            v["fields"] = serde_json::json!({ "contract_number": c });
        }
        v
    }
}

/// A phone the way people type it.
fn spelled(d: &str, i: usize) -> String {
    match i % 3 {
        0 => format!("+7 ({}) {}-{}-{}", &d[..3], &d[3..6], &d[6..8], &d[8..]),
        1 => format!("8 {} {} {} {}", &d[..3], &d[3..6], &d[6..8], &d[8..]),
        _ => format!("7{d}"),
    }
}

fn message(id: &str, p: &Person, at: i64) -> String {
    serde_json::json!({
        "type": "message", "message_id": id, "project_id": "acme", "channel_id": p.channel,
        "sent_at": format_ts(at), "visitor": p.visitor(),
        "content": { "kind": "text", "text": format!("Здравствуйте, вопрос по договору {}", p.i) },
    })
    .to_string()
}

/// Writes the stream that fills the directory with persons `from..to`: one message each,
/// then, for every twentieth person, one on each of three later days (new appeals).
fn write_stream(path: &std::path::Path, from: usize, to: usize, tag: &str) -> usize {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut lines = 0;
    let step = (4 * DAY) / (to - from).max(1) as i64;
    for i in from..to {
        writeln!(out, "{}", message(&format!("{tag}-{i}"), &person(i), START + (i - from) as i64 * step))
            .unwrap();
        lines += 1;
    }
    for day in 1..=3 {
        for i in (from..to).filter(|i| i % REPEATER == 0) {
            let at = START + (3 + 2 * day) * DAY + (i - from) as i64 * step / 2;
            writeln!(out, "{}", message(&format!("{tag}-{i}-{day}"), &person(i), at)).unwrap();
            lines += 1;
        }
    }
    out.flush().unwrap();
    lines
}

fn config() -> Arc<Config> {
    let toml = format!(
        "[api]\n  [[api.tokens]]\n  token = \"{TOKEN}\"\n  projects = [\"acme\"]\n{}",
        testkit::CONFIG
    );
    Arc::new(Config::from_toml(&toml).unwrap())
}

/// The kinds of query an operator types, each made from a person of the directory, and
/// whether a result is the card it was made from.
const KINDS: [&str; 10] = [
    "name",
    "name prefix",
    "name typo",
    "cyrillic name",
    "phone spelling",
    "phone last 4",
    "e-mail upper",
    "e-mail prefix",
    "external id",
    "field value",
];

/// A query of `kind` made from person `i`, or none when that person lacks what it needs.
fn query(kind: &str, p: &Person) -> Option<String> {
    let cyrillic = !p.first.is_ascii();
    Some(match kind {
        "name" if !cyrillic => p.name(),
        "name prefix" if !cyrillic => format!("{} {}", p.first, &p.last[..4]),
        "name typo" if !cyrillic => format!("{} {}", p.first, typo(&p.last)),
        "cyrillic name" if cyrillic => p.name().to_lowercase(),
        "phone spelling" => spelled(p.phone.as_deref()?, p.i + 1),
        "phone last 4" => p.phone.as_deref()?[6..].to_string(),
        "e-mail upper" => p.email.as_deref()?.to_uppercase(),
        "e-mail prefix" => p.email.as_deref()?.split('@').next()?.to_string(),
        "external id" => p.account.clone()?,
        "field value" => p.contract.clone()?,
        _ => return None,
    })
}

/// The word with two neighbouring letters swapped, past its start.
fn typo(word: &str) -> String {
    let mut c: Vec<char> = word.chars().collect();
    let k = c.len() / 2;
    c.swap(k, k + 1);
    c.into_iter().collect()
}

/// Whether a search answer lists a card with person `p`'s full name: the summary shows
/// nothing more particular, and for name queries any namesake is as good an answer.
fn found(body: &serde_json::Value, p: &Person) -> bool {
    let want = p.name();
    body["clients"].as_array().is_some_and(|cs| cs.iter().any(|c| c["client"]["name"] == want.as_str()))
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn pct(&self, p: usize) -> f64 {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return f64::NAN;
        }
        v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1000.0
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn get(&self, path: &str) -> (Duration, serde_json::Value) {
        let started = Instant::now();
        let resp = self.http.get(format!("{}{path}", self.base)).bearer_auth(TOKEN).send().await.unwrap();
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        let took = started.elapsed();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        (took, body)
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What one phase measured.
struct Phase {
    search: Vec<(&'static str, Latencies, usize)>,
    card: Latencies,
    timeline: Latencies,
}

/// Runs every query kind over `samples` people, then cards and timelines of `cards`, until
/// `until` says stop (the write phase ends with the writer).
async fn measure(c: &Client, samples: &[usize], cards: &[String], until: &dyn Fn() -> bool) -> Phase {
    let mut search = Vec::new();
    for kind in KINDS {
        let mut lat = Vec::new();
        let mut hits = 0;
        for p in samples.iter().map(|&i| person(i)) {
            let Some(q) = query(kind, &p) else { continue };
            if until() {
                break;
            }
            let (took, body) = c.get(&format!("/v1/projects/acme/clients?q={}", encode(&q))).await;
            lat.push(took);
            hits += usize::from(found(&body, &p));
        }
        search.push((kind, Latencies(lat), hits));
    }
    let (mut card, mut timeline) = (Vec::new(), Vec::new());
    for id in cards {
        if until() {
            break;
        }
        card.push(c.get(&format!("/v1/projects/acme/clients/{id}")).await.0);
        timeline.push(c.get(&format!("/v1/projects/acme/clients/{id}/timeline?limit=20")).await.0);
    }
    Phase { search, card: Latencies(card), timeline: Latencies(timeline) }
}

fn print(phase: &Phase, title: &str) {
    println!("  {title}");
    println!("    {:<16} {:>7} {:>9} {:>9} {:>8}", "query", "n", "p50 ms", "p99 ms", "found");
    for (kind, lat, hits) in &phase.search {
        let n = lat.0.len();
        let share = if n == 0 { 0.0 } else { *hits as f64 / n as f64 };
        println!("    {kind:<16} {n:>7} {:>9.2} {:>9.2} {:>7.0}%", lat.pct(50), lat.pct(99), share * 100.0);
    }
    for (what, lat) in [("card", &phase.card), ("timeline", &phase.timeline)] {
        println!("    {what:<16} {:>7} {:>9.2} {:>9.2}", lat.0.len(), lat.pct(50), lat.pct(99));
    }
}

/// Fills the store at `url` with `cards` people unless it holds them already.
async fn fill(config: &Arc<Config>, url: &str, cards: usize, dir: &std::path::Path) {
    let store = Store::connect(url, 4).await.unwrap();
    let have = count(url).await;
    if have >= cards {
        println!("  reusing the store's {have} cards");
        store.close().await;
        return;
    }
    let path = dir.join("directory.jsonl");
    let lines = write_stream(&path, 0, cards, "dir");
    let started = Instant::now();
    let summary = replay::replay(
        config.clone(),
        store.clone(),
        &[path.display().to_string()],
        &mut std::io::sink(),
        false,
    )
    .await
    .unwrap();
    store.close().await;
    println!(
        "  filled: {lines} inputs, {} applied, {} appeals, in {:.0} s ({:.0} inputs/s)",
        summary.stats.applied,
        summary.stats.event("appeal.opened"),
        started.elapsed().as_secs_f64(),
        summary.inputs_per_second()
    );
}

async fn count(url: &str) -> usize {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let row =
        sqlx::query("SELECT COUNT(*) FROM clients WHERE merged_into IS NULL").fetch_one(&pool).await.unwrap();
    pool.close().await;
    row.get::<i64, _>(0) as usize
}

/// Card ids of people who wrote on four days, found through the API itself.
async fn timeline_cards(c: &Client, samples: &[usize]) -> Vec<String> {
    let mut ids = Vec::new();
    for p in samples.iter().map(|&i| person(i / REPEATER * REPEATER)) {
        let Some(q) = query("field value", &p).or_else(|| query("phone spelling", &p)) else { continue };
        let (_, body) = c.get(&format!("/v1/projects/acme/clients?q={}", encode(&q))).await;
        if let Some(id) = body["clients"][0]["client"]["id"].as_str() {
            ids.push(id.to_string());
        }
    }
    ids
}

async fn bench_store(
    config: &Arc<Config>,
    url: &str,
    cards: usize,
    queries: usize,
    writes: usize,
    dir: &std::path::Path,
) {
    fill(config, url, cards, dir).await;
    let reader = Store::connect_reader(url, 4).await.unwrap();
    let addr = api::serve("127.0.0.1:0", config.clone(), reader.clone(), Default::default()).await.unwrap();
    let c = Client { http: reqwest::Client::new(), base: format!("http://{addr}") };
    let mut r = Rng::new(0xBE7C);
    let samples: Vec<usize> = (0..queries).map(|_| r.below(cards as u64) as usize).collect();
    let ids = timeline_cards(&c, &samples).await;
    assert!(!ids.is_empty(), "no card found to open");

    let quiet = measure(&c, &samples, &ids, &|| false).await;
    print(&quiet, "quiet store");

    // New people, under ids no earlier run used, written while the same queries run.
    let stamp = chrono::Utc::now().timestamp_millis();
    let from = cards + (stamp as usize % 1_000) * 10_000;
    let path = dir.join("writes.jsonl");
    let lines = write_stream(&path, from, from + writes * 20 / 23, &format!("w{stamp}"));
    let writer = Store::connect(url, 4).await.unwrap();
    // The writer and the queries share this task: replay's sink is not `Send`, and a flag
    // set when it returns is all the queries need to know.
    let done = std::cell::Cell::new(false);
    let write = async {
        let mut sink = std::io::sink();
        let paths = [path.display().to_string()];
        let summary = replay::replay(config.clone(), writer.clone(), &paths, &mut sink, false).await.unwrap();
        done.set(true);
        summary
    };
    let (summary, (loaded, still_writing)) = futures::join!(write, async {
        let phase = measure(&c, &samples, &ids, &|| done.get()).await;
        (phase, !done.get())
    });
    writer.close().await;
    print(
        &loaded,
        &format!(
            "while replay writes {lines} inputs ({:.0} inputs/s; {} applied){}",
            summary.inputs_per_second(),
            summary.stats.applied,
            if still_writing { "" } else { "; it finished before every query ran" }
        ),
    );
    reader.close().await;
    if !benching() {
        for (kind, lat, hits) in &quiet.search {
            assert!(*hits > 0 || lat.0.is_empty(), "{kind}: no query found the card it was made from");
        }
    }
}

fn benching() -> bool {
    std::env::args().any(|a| a == "--bench")
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary too (in debug),
    // where a small run on a throw-away store proves it works without spending minutes.
    let benching = benching();
    let cards = env("BENCH_CARDS", if benching { 1_000_000 } else { 3_000 });
    let queries = env("BENCH_QUERIES", if benching { 300 } else { 20 });
    let writes = env("BENCH_WRITES", if benching { 60_000 } else { 1_100 });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let config = config();
    let scratch = tempfile::tempdir().unwrap();
    let keep = std::env::var("BENCH_READ_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| {
        std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/appealflow/bench")
    });
    let dir = if benching { keep } else { scratch.path().to_path_buf() };
    std::fs::create_dir_all(&dir).unwrap();
    println!("appealflow read API benchmark: {cards} cards, {queries} people sampled per query kind");

    let stores = std::env::var("BENCH_STORES").unwrap_or_else(|_| "sqlite,postgres".into());
    let fill_only = std::env::var("BENCH_FILL_ONLY").is_ok_and(|v| v == "1");
    let mut urls = Vec::new();
    if stores.contains("sqlite") {
        urls.push(("SQLite", format!("sqlite://{}", dir.join(format!("read-{cards}.db")).display())));
    }
    if let (Ok(admin), true) = (std::env::var("BENCH_PG_URL"), stores.contains("postgres")) {
        let name = std::env::var("BENCH_PG_DB").unwrap_or_else(|_| format!("appealflow_bench_read_{cards}"));
        let url = runtime.block_on(pg_database(&admin, &name, benching));
        urls.push(("PostgreSQL", url));
    }
    for (name, url) in urls {
        println!("{name} ({url})");
        if fill_only {
            // Filling stores in parallel processes, then measuring each alone, saves an hour.
            runtime.block_on(fill(&config, &url, cards, scratch.path()));
        } else {
            runtime.block_on(bench_store(&config, &url, cards, queries, writes, scratch.path()));
        }
    }
}

/// The benchmark's database under the server `admin` names, created when missing (and
/// afresh for a smoke run).
async fn pg_database(admin: &str, name: &str, keep: bool) -> String {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
    if !keep {
        conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await.unwrap();
    }
    let exists = sqlx::query("SELECT 1 FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_optional(&mut conn)
        .await
        .unwrap()
        .is_some();
    if !exists {
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    }
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
    format!("{base}/{name}")
}
