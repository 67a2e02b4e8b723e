//! Bot scenarios as configured: a start block and a graph of blocks joined by named exits.
//!
//! Blocks are internally tagged by `type`. Each variant is its own struct carrying
//! `deny_unknown_fields`, so the tag is taken off by the enum and every other key must be
//! known to that block's type: a misspelt `error_txt` is an error at the block rather than a
//! silently default error text (a test holds this, as serde's attribute does not reach into
//! tagged enums on its own).
//!
//! The graph helpers here are pure and shared by start-up validation and the bot engine.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// Named by channels (`scenario = "..."`) and by `start_scenario` commands.
    pub id: String,
    /// The block a run begins at.
    pub start: String,
    #[serde(default)]
    pub blocks: Vec<BlockConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockConfig {
    CheckField(CheckFieldBlock),
    Ask(AskBlock),
    Message(MessageBlock),
    Identify(IdentifyBlock),
    End(EndBlock),
}

/// Branches on whether the client card has a field (contacts such as `phone` count).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFieldBlock {
    pub id: String,
    pub field: String,
    /// Exit taken when the card has the field.
    pub filled: String,
    /// Exit taken when it does not.
    pub empty: String,
}

/// Sends a question and waits for the client's next message as the answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskBlock {
    pub id: String,
    pub text: String,
    pub expect: Expect,
    /// The regular expression a whole answer must match; required iff `expect = "regex"`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Card field (or contact type: phone, email, crm_id) a valid answer is saved to.
    #[serde(default)]
    pub save_to: Option<String>,
    #[serde(default)]
    pub on_invalid: OnInvalid,
    /// Sent after an invalid answer with `on_invalid = "repeat"`; a default fits the expect.
    #[serde(default)]
    pub error_text: Option<String>,
    /// Exit after a valid answer.
    pub next: String,
    /// Exit after an invalid answer: required with `continue`; with `repeat`, taken once
    /// `max_repeats` is exhausted.
    #[serde(default)]
    pub invalid: Option<String>,
    /// With `repeat`: how many times the error text is sent at most. The next invalid answer
    /// follows `invalid`, or ends the scenario when there is none. Unbounded when absent.
    #[serde(default)]
    pub max_repeats: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageBlock {
    pub id: String,
    pub text: String,
    pub next: String,
}

/// Runs the channel's CRM identification, then continues at `next`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifyBlock {
    pub id: String,
    pub next: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndBlock {
    pub id: String,
}

/// What an `ask` block accepts as an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Phone,
    Email,
    Number,
    Any,
    Regex,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnInvalid {
    /// Send the error text and keep waiting at the same block.
    #[default]
    Repeat,
    /// Follow the `invalid` exit.
    Continue,
}

/// The `type` of a block, as events and the scenario report name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockKind {
    CheckField,
    Ask,
    Message,
    Identify,
    End,
}

impl BlockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BlockKind::CheckField => "check_field",
            BlockKind::Ask => "ask",
            BlockKind::Message => "message",
            BlockKind::Identify => "identify",
            BlockKind::End => "end",
        }
    }
}

impl fmt::Display for BlockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Expect {
    pub fn as_str(self) -> &'static str {
        match self {
            Expect::Phone => "phone",
            Expect::Email => "email",
            Expect::Number => "number",
            Expect::Any => "any",
            Expect::Regex => "regex",
        }
    }
}

impl OnInvalid {
    pub fn as_str(self) -> &'static str {
        match self {
            OnInvalid::Repeat => "repeat",
            OnInvalid::Continue => "continue",
        }
    }
}

impl AskBlock {
    /// The configured error text, or one that tells the client what was expected.
    pub fn error_text(&self) -> &str {
        if let Some(text) = &self.error_text {
            return text;
        }
        match self.expect {
            Expect::Phone => "That does not look like a phone number, please try again",
            Expect::Email => "That does not look like an e-mail address, please try again",
            Expect::Number => "Please answer with a number",
            Expect::Any => "Please type your answer",
            Expect::Regex => "That answer is not in the expected format, please try again",
        }
    }
}

impl BlockConfig {
    pub fn id(&self) -> &str {
        match self {
            BlockConfig::CheckField(b) => &b.id,
            BlockConfig::Ask(b) => &b.id,
            BlockConfig::Message(b) => &b.id,
            BlockConfig::Identify(b) => &b.id,
            BlockConfig::End(b) => &b.id,
        }
    }

    pub fn kind(&self) -> BlockKind {
        match self {
            BlockConfig::CheckField(_) => BlockKind::CheckField,
            BlockConfig::Ask(_) => BlockKind::Ask,
            BlockConfig::Message(_) => BlockKind::Message,
            BlockConfig::Identify(_) => BlockKind::Identify,
            BlockConfig::End(_) => BlockKind::End,
        }
    }

    /// Every exit as (config key, target block id), in key order.
    pub fn exits(&self) -> Vec<(&'static str, &str)> {
        match self {
            BlockConfig::CheckField(b) => vec![("filled", &b.filled), ("empty", &b.empty)],
            BlockConfig::Ask(b) => {
                let invalid = b.invalid.as_deref().map(|t| ("invalid", t));
                [("next", b.next.as_str())].into_iter().chain(invalid).collect()
            }
            BlockConfig::Message(b) => vec![("next", &b.next)],
            BlockConfig::Identify(b) => vec![("next", &b.next)],
            BlockConfig::End(_) => Vec::new(),
        }
    }
}

impl ScenarioConfig {
    pub fn index_of(&self, block_id: &str) -> Option<usize> {
        self.blocks.iter().position(|b| b.id() == block_id)
    }

    /// Indices of the blocks no run can enter, in config order.
    pub fn unreachable(&self) -> Vec<usize> {
        let Some(start) = self.index_of(&self.start) else {
            return Vec::new(); // a missing start is an error of its own, not n warnings
        };
        let mut reached = successors_closure(&self.edges(|_| true), start);
        reached.insert(start);
        (0..self.blocks.len()).filter(|i| !reached.contains(i)).collect()
    }

    /// Groups of blocks (indices, ascending) that form a loop no `ask` interrupts: a run
    /// entering one would spin forever without waiting for the client.
    pub fn askless_cycles(&self) -> Vec<Vec<usize>> {
        // An ask ends a walk, so its exits are not edges of a walk.
        let edges = self.edges(|b| b.kind() != BlockKind::Ask);
        let reach: Vec<BTreeSet<usize>> =
            (0..self.blocks.len()).map(|i| successors_closure(&edges, i)).collect();
        let mut grouped = BTreeSet::new();
        let mut cycles = Vec::new();
        for i in 0..self.blocks.len() {
            if grouped.contains(&i) || !reach[i].contains(&i) {
                continue;
            }
            let group: Vec<usize> = reach[i].iter().copied().filter(|&j| reach[j].contains(&i)).collect();
            grouped.extend(group.iter().copied());
            cycles.push(group);
        }
        cycles
    }

    /// For each block, the indices its exits lead to (exits naming no block left out), or
    /// none for blocks a walk does not go on from.
    fn edges(&self, walks_on: impl Fn(&BlockConfig) -> bool) -> Vec<Vec<usize>> {
        let index: HashMap<&str, usize> =
            self.blocks.iter().enumerate().rev().map(|(i, b)| (b.id(), i)).collect();
        let targets = |b: &BlockConfig| b.exits().iter().filter_map(|(_, t)| index.get(t).copied()).collect();
        self.blocks.iter().map(|b| if walks_on(b) { targets(b) } else { Vec::new() }).collect()
    }
}

/// Blocks reachable from `from` by one or more edges (so `from` is in it iff it loops).
fn successors_closure(edges: &[Vec<usize>], from: usize) -> BTreeSet<usize> {
    let mut reached = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(i) = stack.pop() {
        for &j in &edges[i] {
            if reached.insert(j) {
                stack.push(j);
            }
        }
    }
    reached
}

/// Compiles an `ask` pattern so that it must match the whole answer, not a part of it. The
/// error is one line, fit for `check-config`.
pub fn full_match_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(&format!(r"\A(?:{pattern})\z")).map_err(|e| {
        let text = e.to_string();
        // The syntax error's last line names the problem; the lines above draw a caret.
        let reason = text.lines().rev().find_map(|l| l.strip_prefix("error: ")).unwrap_or(&text);
        format!("pattern does not compile: {}", reason.replace('\n', " "))
    })
}
