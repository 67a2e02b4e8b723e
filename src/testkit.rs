//! A synthetic workload for tests and benchmarks: people writing from several channels,
//! revealing phones (in three spellings), e-mails and contract numbers, signing in on the web
//! (some from two devices), going idle, being closed by operators, plus bad lines and
//! duplicates.
//!
//! Alongside the stream it computes what a correct pipeline must end with, by its own simple
//! means (SPEC's identity rules as a union-find over what each visitor revealed, and a
//! per-conversation appeal simulation), so tests compare the pipeline against an oracle that
//! shares none of its code.

use std::collections::{BTreeMap, BTreeSet, HashMap};

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

/// SplitMix64: small, seedable and good enough to shape a workload (the benches' too).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
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
    /// SPEC's conversation key as the oracle reads it: the account on the web when signed
    /// in, else the visitor.
    conversation: String,
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

/// Like [`generate`]. Without `one_order`, no operator closes (their appeal numbers assume one
/// input order) and no conversation is shared by two devices (its inactivity close would be
/// judged by the clock of one of two partitions): for streams spread over several partitions.
pub fn generate_with(persons: usize, seed: u64, one_order: bool) -> Workload {
    generate_shaped(persons, seed, one_order, Shape::STRESS)
}

/// Like [`generate_with`], with people writing in the given [`Shape`].
pub fn generate_shaped(persons: usize, seed: u64, one_order: bool, shape: Shape) -> Workload {
    let mut rng = Rng(seed);
    let people: Vec<Person> = (0..persons).map(|i| person(i, &mut rng)).collect();
    let mut planned = Vec::new();
    let mut facts: BTreeMap<String, VisitorFacts> = BTreeMap::new();
    for (i, p) in people.iter().enumerate() {
        plan_person(i, p, &people, shape, one_order, &mut rng, &mut planned, &mut facts);
    }
    planned.sort_by(|a, b| (a.at, &a.visitor, a.channel).cmp(&(b.at, &b.visitor, b.channel)));
    let mut w = render(planned, &mut rng, one_order);
    let facts: Vec<VisitorFacts> = facts.into_values().collect();
    w.expected.components = expected_partition(&facts, &RULES, &BTreeSet::new());
    w
}

/// The rules of [`CONFIG`], as the oracle reads them.
const RULES: [&[&str]; 2] = [&["phone"], &["email", "contract_number"]];

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

/// One visitor a person writes from.
struct PlannedVisitor {
    channel: &'static str,
    id: String,
    attrs: String,
    external_id: Option<String>,
    /// What it reveals, normalised by the generator's own means (it made the values).
    values: Vec<(String, String)>,
}

#[allow(clippy::too_many_arguments)]
fn plan_person(
    i: usize,
    p: &Person,
    people: &[Person],
    shape: Shape,
    one_order: bool,
    rng: &mut Rng,
    planned: &mut Vec<Planned>,
    facts: &mut BTreeMap<String, VisitorFacts>,
) {
    let active_from = START + rng.below(10) as i64 * DAY + rng.below(DAY as u64) as i64;
    // Some people share an e-mail with their neighbour but have their own contract: no merge
    // by that pair alone (their shared mailbox, holding both contracts, joins them).
    let email = if i > 0 && rng.chance(5) { people[i - 1].email.clone() } else { p.email.clone() };
    for v in person_visitors(i, p, &email, one_order, rng) {
        let key = format!("{}:{}", v.channel, v.id);
        let f = facts
            .entry(key.clone())
            .or_insert_with(|| VisitorFacts { key: key.clone(), ..Default::default() });
        f.values.extend(v.values);
        f.external_id = f.external_id.take().or(v.external_id.clone());
        let visitor_json = if v.attrs.is_empty() {
            format!(r#"{{"id":{:?}}}"#, v.id)
        } else {
            format!(r#"{{"id":{:?},{}}}"#, v.id, v.attrs)
        };
        let conversation = match &v.external_id {
            Some(x) => format!("x:{}:{x}", v.channel),
            None => key,
        };
        plan_visitor(v.channel, v.id, visitor_json, conversation, active_from, shape, rng, planned);
    }
}

/// The visitors one person writes from, and what each reveals.
fn person_visitors(i: usize, p: &Person, email: &str, one_order: bool, rng: &mut Rng) -> Vec<PlannedVisitor> {
    let phone = ("phone".to_string(), format!("+7{}", p.phone_digits));
    let pair = vec![
        ("email".to_string(), email.to_string()),
        ("contract_number".to_string(), p.contract.to_lowercase()),
    ];
    let visitor =
        |channel, id, attrs, values| PlannedVisitor { channel, id, attrs, external_id: None, values };
    let mut visitors = Vec::new();
    if rng.chance(70) {
        let (attrs, values) = if rng.chance(60) {
            let spelled = phone_spelling(&p.phone_digits, rng);
            (format!(r#""name":"Person {i}","phone":{spelled:?}"#), vec![phone.clone()])
        } else {
            (format!(r#""name":"Person {i}""#), vec![])
        };
        visitors.push(visitor("acme-tg", format!("tg-{i}"), attrs, values));
    }
    if rng.chance(50) {
        visitors.push(visitor("acme-wa", phone_spelling(&p.phone_digits, rng), String::new(), vec![phone]));
    }
    if rng.chance(40) {
        visitors.extend(web_visitors(i, p, email, &pair, one_order, rng));
    }
    if rng.chance(30) {
        let fields = format!(r#""fields":{{"contract_number":{:?}}}"#, p.contract.to_lowercase());
        visitors.push(visitor("acme-mail", email.to_string(), fields, pair));
    }
    if rng.chance(10) {
        // The blocked office line: many people give it, nobody merges through it.
        visitors.push(visitor("acme-vk", format!("vk-{i}"), r#""phone":"+7 495 000-00-00""#.into(), vec![]));
    }
    visitors
}

/// A person's web chat visitor: a third are signed in, some of those from a second device.
fn web_visitors(
    i: usize,
    p: &Person,
    email: &str,
    pair: &[(String, String)],
    one_order: bool,
    rng: &mut Rng,
) -> Vec<PlannedVisitor> {
    let account = rng.chance(33).then(|| format!("acct-{i}"));
    let signed_in = account.as_ref().map(|a| format!(r#","external_id":{a:?}"#)).unwrap_or_default();
    let attrs = format!(
        r#""email":{:?},"fields":{{"contract_number":{:?}}}{signed_in}"#,
        email.to_uppercase(),
        format!(" {} ", p.contract)
    );
    let second = account.is_some() && one_order && rng.chance(50);
    let web = |id: String, attrs: String, values: Vec<(String, String)>| PlannedVisitor {
        channel: "acme-web",
        id,
        attrs,
        external_id: account.clone(),
        values,
    };
    let mut out = vec![web(format!("web-{i}"), attrs, pair.to_vec())];
    if second {
        let attrs = format!(r#""external_id":{:?}"#, account.clone().unwrap_or_default());
        out.push(web(format!("web-{i}-m"), attrs, vec![]));
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn plan_visitor(
    channel: &'static str,
    visitor: String,
    visitor_json: String,
    conversation: String,
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
            conversation: conversation.clone(),
            close_after,
        });
        // Mostly quick replies; sometimes a day and a half of silence (the appeal goes idle).
        at += if rng.chance(shape.idle_percent) { 36 * HOUR } else { 5_000 + rng.below(10 * 60_000) as i64 };
    }
}

/// The oracle's view of one conversation's appeal.
struct OpenAppeal {
    number: u64,
    last: i64,
}

fn render(planned: Vec<Planned>, rng: &mut Rng, closes: bool) -> Workload {
    let mut w = Workload::default();
    let mut open: BTreeMap<String, OpenAppeal> = BTreeMap::new();
    // The open appeals by last message, so closing the idle ones does not scan them all (a
    // million-input stream would take hours).
    let mut by_last: BTreeSet<(i64, String)> = BTreeSet::new();
    let mut clock = i64::MIN;
    let mut next_number = 1;
    for (n, p) in planned.iter().enumerate() {
        clock = clock.max(p.at);
        while let Some((last, k)) = by_last.first().cloned().filter(|(last, _)| last + DAY < clock) {
            by_last.remove(&(last, k.clone()));
            open.remove(&k);
            w.expected.inactivity_closes += 1;
        }
        let appeal = open.entry(p.conversation.clone()).or_insert_with(|| {
            w.expected.appeals_opened += 1;
            next_number += 1;
            OpenAppeal { number: next_number - 1, last: p.at }
        });
        by_last.remove(&(appeal.last, p.conversation.clone()));
        appeal.last = p.at;
        by_last.insert((appeal.last, p.conversation.clone()));
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
            open.remove(&p.conversation);
            by_last.remove(&(p.at, p.conversation.clone()));
            w.expected.operator_closes += 1;
            let close = format!(
                r#"{{"type":"close_appeal","command_id":"close-{n}","project_id":"acme","issued_at":"{}","operator":{{"id":"op-1"}},"appeal_number":{number}}}"#,
                crate::model::format_ts(p.at)
            );
            w.push(close, &visitor_key);
        }
    }
    w
}

impl Workload {
    fn push(&mut self, line: String, key: &str) {
        self.lines.push(line);
        self.keys.push(key.to_string());
    }
}

/// What one visitor (`channel:visitor_id`) revealed over all its messages, normalised, and
/// the external ID it carries (always the same one: a visitor switching accounts is SPEC's
/// shared-device rule, which the oracle does not model).
#[derive(Debug, Clone, Default)]
pub struct VisitorFacts {
    pub key: String,
    pub external_id: Option<String>,
    pub values: BTreeSet<(String, String)>,
}

/// SPEC's final grouping of visitors, by simple means: visitors carrying one external ID are
/// one person; then, until nothing changes, two groups join when for every field of some
/// rule they share a value that is not blocked (values accumulate on a card, so a group holds
/// the union of its visitors' values). Sorted groups of sorted visitor keys.
pub fn expected_partition(
    visitors: &[VisitorFacts],
    rules: &[&[&str]],
    blocked: &BTreeSet<String>,
) -> Vec<Vec<String>> {
    let mut uf = UnionFind::new(visitors.len());
    let mut by_account: HashMap<&str, usize> = HashMap::new();
    for (i, v) in visitors.iter().enumerate() {
        if let Some(x) = &v.external_id {
            let first = *by_account.entry(x).or_insert(i);
            uf.union(first, i);
        }
    }
    while join_sharing(&mut uf, visitors, rules, blocked) {}
    let mut groups: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (i, v) in visitors.iter().enumerate() {
        groups.entry(uf.find(i)).or_default().push(v.key.clone());
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

/// A group's values by field.
type Held<'a> = BTreeMap<&'a str, BTreeSet<&'a str>>;

/// One round of the oracle: joins every two groups that share a value in every field of some
/// rule (values as the groups held them at the start of the round). Whether any joined.
fn join_sharing(
    uf: &mut UnionFind,
    visitors: &[VisitorFacts],
    rules: &[&[&str]],
    blocked: &BTreeSet<String>,
) -> bool {
    let mut held: BTreeMap<usize, Held> = BTreeMap::new();
    for (i, v) in visitors.iter().enumerate() {
        let root = uf.find(i);
        for (field, value) in v.values.iter().filter(|(_, value)| !blocked.contains(value)) {
            held.entry(root).or_default().entry(field).or_default().insert(value);
        }
    }
    let shares = |a: &Held, b: &Held| {
        rules.iter().any(|rule| {
            rule.iter().all(|f| match (a.get(f), b.get(f)) {
                (Some(x), Some(y)) => !x.is_disjoint(y),
                _ => false,
            })
        })
    };
    let mut holders: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (root, fields) in &held {
        for (field, values) in fields {
            values.iter().for_each(|v| holders.entry((field, v)).or_default().push(*root));
        }
    }
    let mut joined = false;
    for (a, fields) in &held {
        for rule in rules {
            let firsts = fields.get(rule[0]).into_iter().flatten();
            let others = firsts.flat_map(|v| holders.get(&(rule[0], *v)).into_iter().flatten());
            for b in others.copied().collect::<Vec<_>>() {
                if uf.find(*a) != uf.find(b) && shares(fields, &held[&b]) {
                    uf.union(*a, b);
                    joined = true;
                }
            }
        }
    }
    joined
}

/// Union-find over indices.
struct UnionFind {
    parent: Vec<usize>,
}

impl UnionFind {
    fn new(n: usize) -> Self {
        UnionFind { parent: (0..n).collect() }
    }
    fn find(&mut self, i: usize) -> usize {
        let p = self.parent[i];
        if p == i {
            return i;
        }
        let root = self.find(p);
        self.parent[i] = root;
        root
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            self.parent[ra] = rb;
        }
    }
}

/// The most memory a process held, in bytes: its peak resident set size (Linux `VmHWM`) and,
/// of what it held at the samples, the most that was anonymous (heap, stacks, caches), as
/// against pages of mapped files, which the kernel may drop and read again at will.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeakMemory {
    pub resident: Option<u64>,
    pub anonymous: Option<u64>,
}

impl PeakMemory {
    /// Folds in one `/proc/PID/status` text.
    fn sample(&mut self, status: &str) {
        let kb = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kb| kb * 1024)
        };
        self.resident = self.resident.max(kb("VmHWM:"));
        self.anonymous = self.anonymous.max(kb("RssAnon:"));
    }

    /// `1223 MB (anonymous 212 MB)`, for a bench's output.
    pub fn describe(&self) -> String {
        let mb = |b: Option<u64>| {
            b.map_or("unknown (no /proc)".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6))
        };
        format!("{} (anonymous {})", mb(self.resident), mb(self.anonymous))
    }
}

/// Inputs the memory targets are stated for (docs/performance.md "Targets").
pub const MEMORY_TARGET_INPUTS: usize = 1_000_000;

/// One line of a bench's `targets:` block: what, this run's figure, the bound and whether it
/// holds (`None`: not measured in this run).
pub fn print_target(what: &str, figure: &str, bound: &str, holds: Option<bool>) {
    let verdict = match holds {
        Some(true) => "holds",
        Some(false) => "does not hold",
        None => "not measured in this run",
    };
    println!("  {what:<58} {figure:>8}  (target {bound}: {verdict})");
}

/// A peak RSS against the memory targets' bound of 250 MB, judged only at
/// [`MEMORY_TARGET_INPUTS`] or more: a smaller run says nothing of a million inputs.
pub fn print_memory_target(what: &str, memory: Option<(usize, f64)>) {
    let bound = "< 250 MB at 1,000,000 inputs";
    match memory {
        Some((n, mb)) => {
            let holds = (n >= MEMORY_TARGET_INPUTS).then_some(mb < 250.0);
            print_target(&format!("{what} of {n} inputs, peak RSS MB"), &format!("{mb:.0}"), bound, holds);
        }
        None => print_target(&format!("{what}, peak RSS MB"), "-", bound, None),
    }
}

/// Runs a command until it ends, or until `stop` is set (then kills it), and returns its exit
/// status (`None` when killed) with the most memory it held, sampled every 20 ms while it ran
/// (a peak held for less than that at the very end can be missed).
pub fn run_measuring_peak_memory(
    command: &mut std::process::Command,
    stop: &std::sync::atomic::AtomicBool,
) -> std::io::Result<(Option<std::process::ExitStatus>, PeakMemory)> {
    let mut child = command.spawn()?;
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = PeakMemory::default();
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file) {
            peak.sample(&status);
        }
        if let Some(status) = child.try_wait()? {
            return Ok((Some(status), peak));
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            child.kill()?;
            child.wait()?;
            return Ok((None, peak));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn visitor(key: &str, external: Option<&str>, values: &[(&str, &str)]) -> VisitorFacts {
        let values = values.iter().map(|(f, v)| (f.to_string(), v.to_string())).collect();
        VisitorFacts { key: key.into(), external_id: external.map(str::to_string), values }
    }

    #[test]
    fn the_oracle_joins_by_accounts_and_by_rules_over_accumulated_values() {
        let visitors = [
            visitor("web:1", None, &[("email", "e"), ("contract_number", "d-1")]),
            visitor("web:2", None, &[("email", "e"), ("contract_number", "d-2")]),
            // Holds both contracts: joins both web visitors, though neither pair matches the other.
            visitor(
                "mail:e",
                None,
                &[("email", "e"), ("contract_number", "d-1"), ("contract_number", "d-2")],
            ),
            visitor("tg:1", Some("acc"), &[("phone", "+1")]),
            visitor("web:3", Some("acc"), &[]),
            visitor("wa:+1", None, &[("phone", "+1")]),
            visitor("vk:1", None, &[("phone", "+blocked")]),
            visitor("vk:2", None, &[("phone", "+blocked")]),
        ];
        let blocked = BTreeSet::from(["+blocked".to_string()]);
        let got = expected_partition(&visitors, &RULES, &blocked);
        let want: Vec<Vec<&str>> = vec![
            vec!["mail:e", "web:1", "web:2"],
            vec!["tg:1", "wa:+1", "web:3"],
            vec!["vk:1"],
            vec!["vk:2"],
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn the_peak_memory_keeps_the_largest_of_each_figure_across_samples() {
        let mut peak = PeakMemory::default();
        peak.sample("Name:\tappealflow\nVmHWM:\t  2048 kB\nRssAnon:\t 1024 kB\nRssFile:\t 1024 kB\n");
        peak.sample("Name:\tappealflow\nVmHWM:\t  3072 kB\nRssAnon:\t 512 kB\nRssFile:\t 2560 kB\n");
        peak.sample("Name:\tzombie\n");
        assert_eq!(peak, PeakMemory { resident: Some(3072 * 1024), anonymous: Some(1024 * 1024) });
        assert_eq!(peak.describe(), "3 MB (anonymous 1 MB)");
    }
}
