//! A synthetic workload for tests and benchmarks: people writing from several channels,
//! revealing phones (in three spellings), e-mails and contract numbers, going idle, being
//! closed by operators, plus bad lines and duplicates.
//!
//! Alongside the stream it computes what a correct pipeline must end with, by its own simple
//! means (a union-find over what each visitor revealed, and a per-visitor appeal simulation),
//! so tests compare the pipeline against an oracle that shares none of its code.

use std::collections::{BTreeMap, HashMap};

/// The config the generated stream is written for.
pub const CONFIG: &str = r#"
[pipeline]
batch_size = 500

[[projects]]
id = "acme"
default_region = "RU"
auto_close_after = "24h"
max_merge_group = 50
blocked_values = ["+7 495 000-00-00"]

  [[projects.channels]]
  id = "acme-tg"
  kind = "telegram"
  group = "first-line"
  [[projects.channels]]
  id = "acme-wa"
  kind = "whatsapp"
  group = "first-line"
  [[projects.channels]]
  id = "acme-web"
  kind = "web_chat"
  group = "web"
  [[projects.channels]]
  id = "acme-mail"
  kind = "email"
  group = "back-office"
  [[projects.channels]]
  id = "acme-vk"
  kind = "vk"
  group = "first-line"

  [[projects.multicontact_rules]]
  id = "by-phone"
  fields = ["phone"]
  [[projects.multicontact_rules]]
  id = "by-email-and-contract"
  fields = ["email", "contract_number"]
"#;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-11-01T00:00:00Z
const START: i64 = 1_793_491_200_000;

/// A generated stream and what must come of it.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub lines: Vec<String>,
    /// The record key a gateway would give each line (`project:channel:visitor`), so that a
    /// visitor's messages and the commands about them share a partition.
    pub keys: Vec<String>,
    pub expected: Expected,
}

#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// Visitors (`channel:visitor_id`) grouped by the card they must end on.
    pub components: Vec<Vec<String>>,
    pub appeals_opened: u64,
    pub operator_closes: u64,
    pub inactivity_closes: u64,
    pub dlq: u64,
    pub duplicates: u64,
}

/// SplitMix64: small, seedable and good enough to shape a workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

struct Person {
    phone_digits: String,
    email: String,
    contract: String,
}

/// One visitor's planned message, before global ordering.
struct Planned {
    at: i64,
    channel: &'static str,
    visitor: String,
    visitor_json: String,
    close_after: bool,
}

/// How the generated people write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// A visit is 1 to this many messages, uniformly.
    pub max_messages: u64,
    /// Chance, in percent, of a day and a half of silence after a message: the appeal goes
    /// idle and the next message opens another.
    pub idle_percent: u64,
    /// Chance, in percent, that an operator closes the appeal after a message (where the
    /// stream has operator closes at all).
    pub close_percent: u64,
}

impl Shape {
    /// Short visits (1.7 messages per appeal) and two inputs per new card: appeal turnover,
    /// card creation and merges dominate. The tests' and the replay bench's default.
    pub const STRESS: Shape = Shape { max_messages: 4, idle_percent: 20, close_percent: 15 };
    /// Steadier support traffic: visits of up to a dozen messages, rarely left idle, so most
    /// inputs continue an open appeal of a known card. The kafka bench's default.
    pub const CONVERSATIONS: Shape = Shape { max_messages: 12, idle_percent: 4, close_percent: 5 };

    /// `stress` or `conversations`.
    pub fn named(name: &str) -> Option<Shape> {
        match name {
            "stress" => Some(Shape::STRESS),
            "conversations" => Some(Shape::CONVERSATIONS),
            _ => None,
        }
    }
}

/// Generates a stream of about `persons * 3` inputs.
pub fn generate(persons: usize, seed: u64) -> Workload {
    generate_with(persons, seed, true)
}

/// Like [`generate`]; without `closes`, no operator closes (their appeal numbers assume
/// one input order, which several partitions do not keep).
pub fn generate_with(persons: usize, seed: u64, closes: bool) -> Workload {
    generate_shaped(persons, seed, closes, Shape::STRESS)
}

/// Like [`generate_with`], with people writing in the given [`Shape`].
pub fn generate_shaped(persons: usize, seed: u64, closes: bool, shape: Shape) -> Workload {
    let mut rng = Rng(seed);
    let people: Vec<Person> = (0..persons).map(|i| person(i, &mut rng)).collect();
    let mut planned = Vec::new();
    let mut links = UnionFind::default();
    for (i, p) in people.iter().enumerate() {
        plan_person(i, p, &people, shape, &mut rng, &mut planned, &mut links);
    }
    planned.sort_by(|a, b| (a.at, &a.visitor, a.channel).cmp(&(b.at, &b.visitor, b.channel)));
    render(planned, links, &mut rng, closes)
}

fn person(i: usize, rng: &mut Rng) -> Person {
    // 9xx mobile ranges are valid Russian numbers; the index keeps them unique.
    let phone_digits = format!("9{:02}{:07}", 10 + rng.below(80), i);
    Person { phone_digits, email: format!("user{i}@example.org"), contract: format!("D-{i}") }
}

fn phone_spelling(digits: &str, rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => format!("+7 ({}) {}-{}-{}", &digits[..3], &digits[3..6], &digits[6..8], &digits[8..]),
        1 => format!("8 {} {} {} {}", &digits[..3], &digits[3..6], &digits[6..8], &digits[8..]),
        _ => format!("7{digits}"),
    }
}

fn plan_person(
    i: usize,
    p: &Person,
    people: &[Person],
    shape: Shape,
    rng: &mut Rng,
    planned: &mut Vec<Planned>,
    links: &mut UnionFind,
) {
    let active_from = START + rng.below(10) as i64 * DAY + rng.below(DAY as u64) as i64;
    let phone_key = format!("phone:+7{}", p.phone_digits);
    // Some people share an e-mail with their neighbour but have their own contract: no merge.
    let email = if i > 0 && rng.chance(5) { people[i - 1].email.clone() } else { p.email.clone() };
    let mut visitors: Vec<(&'static str, String, String, Vec<String>)> = Vec::new();
    if rng.chance(70) {
        let with_phone = rng.chance(60);
        let phone = if with_phone {
            format!(r#","phone":{:?}"#, phone_spelling(&p.phone_digits, rng))
        } else {
            String::new()
        };
        let keys = if with_phone { vec![phone_key.clone()] } else { vec![] };
        visitors.push(("acme-tg", format!("tg-{i}"), format!(r#""name":"Person {i}"{phone}"#), keys));
    }
    if rng.chance(50) {
        visitors.push((
            "acme-wa",
            phone_spelling(&p.phone_digits, rng),
            String::new(),
            vec![phone_key.clone()],
        ));
    }
    let pair_key = format!("email+contract:{email}|{}", p.contract.to_lowercase());
    if rng.chance(40) {
        let fields = format!(
            r#""email":{:?},"fields":{{"contract_number":{:?}}}"#,
            email.to_uppercase(),
            format!(" {} ", p.contract)
        );
        visitors.push(("acme-web", format!("web-{i}"), fields, vec![pair_key.clone()]));
    }
    // Someone sharing a neighbour's mailbox would be the neighbour's e-mail visitor, whose
    // single contract field is last-write-wins: an order-dependent outcome no oracle can
    // predict across partitions. Such people only use the web form.
    if rng.chance(30) && email == p.email {
        let fields = format!(r#""fields":{{"contract_number":{:?}}}"#, p.contract.to_lowercase());
        visitors.push(("acme-mail", email.clone(), fields, vec![pair_key]));
    }
    if rng.chance(10) {
        // The blocked office line: many people give it, nobody merges through it.
        visitors.push(("acme-vk", format!("vk-{i}"), r#""phone":"+7 495 000-00-00""#.into(), vec![]));
    }
    for (channel, visitor, attrs, keys) in visitors {
        let key = format!("{channel}:{visitor}");
        links.add(&key);
        for k in keys {
            links.add(&k);
            links.union(&key, &k);
        }
        let visitor_json = if attrs.is_empty() {
            format!(r#"{{"id":{visitor:?}}}"#)
        } else {
            format!(r#"{{"id":{visitor:?},{attrs}}}"#)
        };
        plan_visitor(channel, visitor, visitor_json, active_from, shape, rng, planned);
    }
}

fn plan_visitor(
    channel: &'static str,
    visitor: String,
    visitor_json: String,
    from: i64,
    shape: Shape,
    rng: &mut Rng,
    planned: &mut Vec<Planned>,
) {
    let mut at = from + rng.below(6 * HOUR as u64) as i64;
    for _ in 0..1 + rng.below(shape.max_messages) {
        let close_after = rng.chance(shape.close_percent);
        planned.push(Planned {
            at,
            channel,
            visitor: visitor.clone(),
            visitor_json: visitor_json.clone(),
            close_after,
        });
        // Mostly quick replies; sometimes a day and a half of silence (the appeal goes idle).
        at += if rng.chance(shape.idle_percent) { 36 * HOUR } else { 5_000 + rng.below(10 * 60_000) as i64 };
    }
}

/// The oracle's view of one visitor's appeal.
struct OpenAppeal {
    number: u64,
    last: i64,
}

fn render(planned: Vec<Planned>, mut links: UnionFind, rng: &mut Rng, closes: bool) -> Workload {
    let mut w = Workload::default();
    let mut open: BTreeMap<String, OpenAppeal> = BTreeMap::new();
    let mut clock = i64::MIN;
    let mut next_number = 1;
    for (n, p) in planned.iter().enumerate() {
        let key = format!("{}:{}", p.channel, p.visitor);
        clock = clock.max(p.at);
        let idle: Vec<String> =
            open.iter().filter(|(_, a)| a.last + DAY < clock).map(|(k, _)| k.clone()).collect();
        for k in idle {
            open.remove(&k);
            w.expected.inactivity_closes += 1;
        }
        let appeal = open.entry(key.clone()).or_insert_with(|| {
            w.expected.appeals_opened += 1;
            next_number += 1;
            OpenAppeal { number: next_number - 1, last: p.at }
        });
        appeal.last = p.at;
        let line = format!(
            r#"{{"type":"message","message_id":"gen-{n}","project_id":"acme","channel_id":"{}","sent_at":"{}","visitor":{},"content":{{"kind":"text","text":"message {n}"}}}}"#,
            p.channel,
            crate::model::format_ts(p.at),
            p.visitor_json
        );
        let visitor_key = format!("acme:{}:{}", p.channel, p.visitor);
        w.push(line.clone(), &visitor_key);
        if rng.chance(1) {
            w.push(line, &visitor_key);
            w.expected.duplicates += 1;
        }
        if rng.chance(1) {
            w.push(format!(r#"{{"type":"message","message_id":"bad-{n}","project_id":"acme""#), "acme");
            w.expected.dlq += 1;
        }
        if p.close_after && closes {
            let number = appeal.number;
            open.remove(&key);
            w.expected.operator_closes += 1;
            let close = format!(
                r#"{{"type":"close_appeal","command_id":"close-{n}","project_id":"acme","issued_at":"{}","operator":{{"id":"op-1"}},"appeal_number":{number}}}"#,
                crate::model::format_ts(p.at)
            );
            w.push(close, &visitor_key);
        }
    }
    w.expected.components = links.visitor_components();
    w
}

impl Workload {
    fn push(&mut self, line: String, key: &str) {
        self.lines.push(line);
        self.keys.push(key.to_string());
    }
}

/// Union-find over string keys; visitor keys contain a `:` channel prefix starting `acme-`.
#[derive(Default)]
struct UnionFind {
    parent: HashMap<String, String>,
}

impl UnionFind {
    fn add(&mut self, k: &str) {
        self.parent.entry(k.to_string()).or_insert_with(|| k.to_string());
    }
    fn find(&mut self, k: &str) -> String {
        let p = self.parent[k].clone();
        if p == k {
            return p;
        }
        let root = self.find(&p);
        self.parent.insert(k.to_string(), root.clone());
        root
    }
    fn union(&mut self, a: &str, b: &str) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent.insert(ra, rb);
        }
    }
    fn visitor_components(&mut self) -> Vec<Vec<String>> {
        let keys: Vec<String> = self.parent.keys().filter(|k| k.starts_with("acme-")).cloned().collect();
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for k in keys {
            let root = self.find(&k);
            groups.entry(root).or_default().push(k);
        }
        let mut out: Vec<Vec<String>> = groups
            .into_values()
            .map(|mut g| {
                g.sort();
                g
            })
            .collect();
        out.sort();
        out
    }
}
