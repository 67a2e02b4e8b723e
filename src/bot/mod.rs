//! Bot contact collection: scenarios compiled once at start-up and a pure step function.
//!
//! The engine does no I/O and keeps no state of its own. The integrator calls
//! [`Scenario::start`] when an appeal opens in a channel with a scenario (or on a
//! `start_scenario` command), [`Scenario::answer`] with the client's next message while the
//! state waits at an `ask`, and [`Scenario::resume`] once it has carried out
//! [`Action::Identify`]. Each call returns the actions to carry out, in order, and the state
//! to store with the appeal; `None` means no scenario is running any more.

mod answer;
mod engine;
mod report;

use std::collections::{BTreeMap, HashMap};

use regex::Regex;
use serde::Serialize;

use crate::config::scenario::full_match_regex;
use crate::config::{BlockConfig, BlockKind, Config, Expect, OnInvalid, ScenarioConfig};
use crate::model::Client;

pub use report::{render_reports, ReportRow, ScenarioReport};

/// Blocks one walk may enter before it is cut off. Validation refuses loops without an
/// `ask`, so only a config that skipped validation can get here; it must not hang the stream.
pub const MAX_STEPS: usize = 1000;

pub use crate::model::BotState;

/// One thing the integrator does, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A block was entered: a `bot.block_entered` event and the per-block counter.
    Entered { block_id: String, block_type: BlockKind },
    /// A bot message: appended to the appeal (author `bot`) and sent as an outbound record.
    Send { text: String },
    /// A valid answer, normalised for its field (`value`) and as the client wrote it
    /// (`display`): saved on the card (`Client::save_value`), which triggers matching.
    Save { field: String, value: String, display: String },
    /// The answer did not validate: a `bot.answer_rejected` event.
    Rejected { block_id: String, expect: Expect, on_invalid: OnInvalid, reason: String },
    /// Run the channel's CRM identification now, then call [`Scenario::resume`].
    Identify,
    /// The scenario is over; the returned state is `None`.
    Finished { reason: FinishReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An `end` block.
    End,
    /// An `ask` ran out of `max_repeats` and has no `invalid` exit.
    RepeatLimit,
    /// An exit or the stored state names a block the scenario does not have (the config
    /// changed under a running scenario, or was never validated).
    MissingBlock,
    /// [`MAX_STEPS`] blocks without waiting for the client.
    StepLimit,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::End => "end",
            FinishReason::RepeatLimit => "repeat_limit",
            FinishReason::MissingBlock => "missing_block",
            FinishReason::StepLimit => "step_limit",
        }
    }
}

/// What one step did and where the scenario now waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub actions: Vec<Action>,
    /// `Some`: store it with the appeal. `None`: no scenario runs; forget the state.
    pub state: Option<BotState>,
}

/// The part of a client card a scenario reads.
pub trait CardView {
    /// Whether the card has a value for the field; contacts (`phone`, `email`, `crm_id`,
    /// custom types) count as fields of their type.
    fn has_field(&self, field: &str) -> bool;
}

impl CardView for Client {
    fn has_field(&self, field: &str) -> bool {
        !self.values(field).is_empty()
    }
}

/// Every scenario of every project, compiled once from the config.
#[derive(Debug, Default)]
pub struct Scenarios {
    projects: BTreeMap<String, ProjectScenarios>,
}

#[derive(Debug, Default)]
struct ProjectScenarios {
    scenarios: BTreeMap<String, Scenario>,
    /// Channel id → the scenario an appeal opening there starts.
    by_channel: BTreeMap<String, String>,
}

impl Scenarios {
    pub fn compile(config: &Config) -> Scenarios {
        let projects = config.projects.iter().map(|p| {
            let scenarios = p.scenarios.iter().map(|s| (s.id.clone(), Scenario::compile(&p.id, s))).collect();
            let by_channel =
                p.channels.iter().filter_map(|c| Some((c.id.clone(), c.scenario.clone()?))).collect();
            (p.id.clone(), ProjectScenarios { scenarios, by_channel })
        });
        Scenarios { projects: projects.collect() }
    }

    pub fn get(&self, project_id: &str, scenario_id: &str) -> Option<&Scenario> {
        self.projects.get(project_id)?.scenarios.get(scenario_id)
    }

    /// The scenario started when an appeal opens in this channel, if it has one.
    pub fn for_channel(&self, project_id: &str, channel_id: &str) -> Option<&Scenario> {
        let project = self.projects.get(project_id)?;
        project.scenarios.get(project.by_channel.get(channel_id)?)
    }

    /// Every scenario, by project then scenario id (the order of the scenario report).
    pub fn iter(&self) -> impl Iterator<Item = &Scenario> {
        self.projects.values().flat_map(|p| p.scenarios.values())
    }
}

/// One scenario ready to run: blocks indexed by id, patterns compiled.
#[derive(Debug)]
pub struct Scenario {
    project_id: String,
    id: String,
    start: String,
    nodes: Vec<Node>,
    index: HashMap<String, usize>,
}

#[derive(Debug)]
struct Node {
    config: BlockConfig,
    /// An `ask` with `expect = "regex"`: the full-match pattern, or why it does not compile
    /// (only possible for a config that skipped validation: every answer is then rejected).
    pattern: Option<Result<Regex, String>>,
}

impl Scenario {
    pub fn compile(project_id: &str, config: &ScenarioConfig) -> Scenario {
        let nodes: Vec<Node> = config.blocks.iter().map(Node::compile).collect();
        let mut index = HashMap::new();
        for (i, node) in nodes.iter().enumerate() {
            // A duplicate id is a validation error; the first one wins if it gets here anyway.
            index.entry(node.config.id().to_string()).or_insert(i);
        }
        Scenario {
            project_id: project_id.into(),
            id: config.id.clone(),
            start: config.start.clone(),
            nodes,
            index,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn project_id(&self) -> &str {
        &self.project_id
    }

    /// The blocks in config order.
    pub fn blocks(&self) -> impl Iterator<Item = &BlockConfig> {
        self.nodes.iter().map(|n| &n.config)
    }

    /// Whether the client's next message is this scenario's business: the state waits at an
    /// `ask`. At an `identify` the message belongs to CRM identification (its own question).
    pub fn expects_answer(&self, state: &BotState) -> bool {
        matches!(self.node(&state.block_id).map(|n| &n.config), Some(BlockConfig::Ask(_)))
    }

    fn node(&self, block_id: &str) -> Option<&Node> {
        self.index.get(block_id).map(|&i| &self.nodes[i])
    }
}

impl Node {
    fn compile(config: &BlockConfig) -> Node {
        let pattern = match config {
            BlockConfig::Ask(ask) if ask.expect == Expect::Regex => {
                let pattern = ask.pattern.as_deref().ok_or_else(|| "no pattern is configured".to_string());
                Some(pattern.and_then(full_match_regex))
            }
            _ => None,
        };
        Node { config: config.clone(), pattern }
    }
}

#[cfg(test)]
mod tests;
