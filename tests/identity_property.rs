//! SPEC identity rule 3 as a property: random interleavings of the same visitors' messages,
//! each visitor's own order kept, end in the same final partition of visitors into cards,
//! equal to the union-find oracle of `appealflow::testkit`, whenever no guard fires (the
//! group limit is out of reach and no value is blocked).
//!
//! A few hundred cases on SQLite and a few dozen on PostgreSQL per run; heavier runs with
//! `APPEALFLOW_PROPTEST_CASES=N` (SQLite; PostgreSQL gets a tenth).

mod common;

use std::collections::BTreeSet;

use appealflow::testkit::{expected_partition, VisitorFacts};
use common::{assert_same_groups, kinds, replay_lines, visitor_components, Kind, TestDb};
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestRunner};

const CONFIG: &str = include_str!("fixtures/property.toml");

const RULES: [&[&str]; 2] = [&["phone"], &["email", "contract_number"]];
const CHANNELS: [&str; 4] = ["acme-tg", "acme-wa", "acme-web", "acme-mail"];
/// Valid Russian mobile numbers, without the country code.
const PHONES: [&str; 3] = ["9991234567", "9161112233", "9035554433"];
const EMAILS: [&str; 3] = ["anna@example.org", "boris@example.org", "kate@example.org"];
const CONTRACTS: [&str; 3] = ["D-1", "D-2", "D-3"];
const ACCOUNTS: [&str; 2] = ["acc-1", "acc-2"];

/// What one message reveals: indices into the pools, and a spelling.
#[derive(Debug, Clone)]
struct Reveal {
    phone: Option<(usize, u8)>,
    email: Option<(usize, bool)>,
    contract: Option<(usize, bool)>,
}

#[derive(Debug, Clone)]
struct Visitor {
    channel: usize,
    /// Which phone (WhatsApp) or e-mail (e-mail channel) the visitor ID is.
    who: usize,
    /// The visitor's place in the stream: a Telegram or web visitor's ID, so no two share one
    /// (a web visitor carrying two accounts would be SPEC's shared device, order-dependent by
    /// design and tested on its own).
    n: usize,
    spelling: u8,
    /// A web visitor's account, carried on every message.
    account: Option<usize>,
    messages: Vec<Reveal>,
}

impl Visitor {
    fn id(&self) -> String {
        match CHANNELS[self.channel] {
            "acme-wa" => format!("{}{}", ["7", "+7", "8"][self.spelling as usize % 3], PHONES[self.who]),
            "acme-mail" if self.spelling.is_multiple_of(2) => EMAILS[self.who].to_uppercase(),
            "acme-mail" => EMAILS[self.who].to_string(),
            _ => format!("v{}", self.n),
        }
    }

    fn account(&self) -> Option<&'static str> {
        self.account.filter(|_| CHANNELS[self.channel] == "acme-web").map(|a| ACCOUNTS[a])
    }

    fn key(&self) -> String {
        format!("{}:{}", CHANNELS[self.channel], self.id())
    }
}

fn phone_spelling(digits: &str, spelling: u8) -> String {
    match spelling % 3 {
        0 => format!("+7 ({}) {}-{}-{}", &digits[..3], &digits[3..6], &digits[6..8], &digits[8..]),
        1 => format!("8 {} {} {} {}", &digits[..3], &digits[3..6], &digits[6..8], &digits[8..]),
        _ => format!("7{digits}"),
    }
}

fn reveal() -> impl Strategy<Value = Reveal> {
    let phone = proptest::option::weighted(0.4, (0..PHONES.len(), 0..3u8));
    let email = proptest::option::weighted(0.4, (0..EMAILS.len(), any::<bool>()));
    let contract = proptest::option::weighted(0.4, (0..CONTRACTS.len(), any::<bool>()));
    (phone, email, contract).prop_map(|(phone, email, contract)| Reveal { phone, email, contract })
}

fn visitor() -> impl Strategy<Value = Visitor> {
    let account = proptest::option::weighted(0.4, 0..ACCOUNTS.len());
    (0..CHANNELS.len(), 0..3usize, 0..3u8, account, proptest::collection::vec(reveal(), 1..4)).prop_map(
        |(channel, who, spelling, account, messages)| Visitor {
            channel,
            who,
            n: 0,
            spelling,
            account,
            messages,
        },
    )
}

/// Visitors, and the order their messages arrive in: visitor indices, each as often as it
/// has messages, shuffled (a visitor's k-th appearance is its k-th message).
fn stream() -> impl Strategy<Value = (Vec<Visitor>, Vec<usize>)> {
    proptest::collection::vec(visitor(), 2..7).prop_flat_map(|mut visitors| {
        visitors.iter_mut().enumerate().for_each(|(n, v)| v.n = n);

        let order: Vec<usize> =
            visitors.iter().enumerate().flat_map(|(i, v)| std::iter::repeat_n(i, v.messages.len())).collect();
        (Just(visitors), Just(order).prop_shuffle())
    })
}

/// The inputs of a stream, one message per entry of `order`, ten seconds apart.
fn lines(visitors: &[Visitor], order: &[usize]) -> Vec<String> {
    let mut next = vec![0; visitors.len()];
    order
        .iter()
        .enumerate()
        .map(|(n, &i)| {
            let v = &visitors[i];
            let r = &v.messages[next[i]];
            next[i] += 1;
            let mut attrs = vec![format!(r#""id":{:?}"#, v.id())];
            if let Some(x) = v.account() {
                attrs.push(format!(r#""external_id":{x:?}"#));
            }
            if let Some((p, spelling)) = r.phone {
                attrs.push(format!(r#""phone":{:?}"#, phone_spelling(PHONES[p], spelling)));
            }
            if let Some((e, upper)) = r.email {
                let email = if upper { EMAILS[e].to_uppercase() } else { EMAILS[e].to_string() };
                attrs.push(format!(r#""email":{email:?}"#));
            }
            if let Some((c, padded)) = r.contract {
                let contract =
                    if padded { format!(" {} ", CONTRACTS[c]) } else { CONTRACTS[c].to_lowercase() };
                attrs.push(format!(r#""fields":{{"contract_number":{contract:?}}}"#));
            }
            let at = common_time(n as i64 * 10);
            common::msg(&format!("m{n}"), CHANNELS[v.channel], &at, &format!("{{{}}}", attrs.join(",")), "hi")
        })
        .collect()
}

fn common_time(secs: i64) -> String {
    let base = chrono::DateTime::parse_from_rfc3339("2026-11-21T10:00:00Z").unwrap();
    (base + chrono::Duration::seconds(secs)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// What the oracle knows of each visitor: the normalised values it revealed (the pools hold
/// them in normal form), its visitor ID as a phone or e-mail where the channel says so, and
/// its account.
fn facts(visitors: &[Visitor]) -> Vec<VisitorFacts> {
    let mut by_key: std::collections::BTreeMap<String, VisitorFacts> = Default::default();
    for v in visitors {
        let f = by_key.entry(v.key()).or_insert_with(|| VisitorFacts { key: v.key(), ..Default::default() });
        f.external_id = f.external_id.take().or(v.account().map(str::to_string));
        let mut add = |field: &str, value: String| f.values.insert((field.to_string(), value));
        match CHANNELS[v.channel] {
            "acme-wa" => add("phone", format!("+7{}", PHONES[v.who])),
            "acme-mail" => add("email", EMAILS[v.who].to_string()),
            _ => false,
        };
        for r in &v.messages {
            r.phone.map(|(p, _)| add("phone", format!("+7{}", PHONES[p])));
            r.email.map(|(e, _)| add("email", EMAILS[e].to_string()));
            r.contract.map(|(c, _)| add("contract_number", CONTRACTS[c].to_lowercase()));
        }
    }
    by_key.into_values().collect()
}

fn cases(kind: Kind) -> u32 {
    let base: u32 =
        std::env::var("APPEALFLOW_PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    match kind {
        Kind::Sqlite => base,
        Kind::Postgres => (base / 10).max(8),
    }
}

fn check_every_interleaving_groups_like_the_oracle(kind: Kind) {
    let config = common::config(CONFIG);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let runner_config =
        RunnerConfig { cases: cases(kind), failure_persistence: None, ..RunnerConfig::default() };
    let mut runner = TestRunner::new(runner_config);
    let result = runner.run(&stream(), |(visitors, order)| {
        let lines = lines(&visitors, &order);
        let want = expected_partition(&facts(&visitors), &RULES, &BTreeSet::new());
        let run = rt.block_on(async { replay_lines(&config, &TestDb::new(kind).await, &lines).await });
        prop_assert!(run.topic("inbound.dlq").is_empty(), "{}", run.stdout);
        prop_assert!(run.events("client.merge_refused").is_empty(), "no guard fires: {}", run.stdout);
        let got = visitor_components(&run);
        prop_assert_eq!(&got, &want, "lines:\n{}", lines.join("\n"));
        assert_same_groups(&got, &want);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{kind:?}: {e}");
    }
}

#[test]
fn every_interleaving_of_the_same_visitors_ends_in_the_oracles_cards_on_sqlite() {
    check_every_interleaving_groups_like_the_oracle(Kind::Sqlite);
}

#[test]
fn every_interleaving_of_the_same_visitors_ends_in_the_oracles_cards_on_postgres() {
    if kinds().contains(&Kind::Postgres) {
        check_every_interleaving_groups_like_the_oracle(Kind::Postgres);
    }
}
