//! The step function: walk blocks until the scenario has to wait (an `ask`, an `identify`)
//! or ends. Pure and deterministic: the same state, answer and card give the same outcome.

use std::collections::BTreeSet;

use super::{answer, Action, BotState, CardView, FinishReason, Outcome, Scenario, MAX_STEPS};
use crate::config::{AskBlock, BlockConfig, OnInvalid};

impl Scenario {
    /// Begins a run at the start block. Any state the appeal had is replaced by the result.
    pub fn start(&self, card: &dyn CardView) -> Outcome {
        Walk::new(self, card).run(&self.start)
    }

    /// Takes the client's message as the answer to the `ask` the state waits at. Valid:
    /// save it (when the block has `save_to`) and walk on from `next`. Invalid: reject it,
    /// then repeat the question's error text or follow `invalid` as the block says. A state
    /// not waiting at an `ask` is returned unchanged with no actions (see
    /// [`Scenario::expects_answer`]).
    pub fn answer(&self, state: &BotState, text: &str, card: &dyn CardView, region: &str) -> Outcome {
        let walk = Walk::new(self, card);
        let Some(node) = self.node(&state.block_id) else {
            return walk.finish(FinishReason::MissingBlock);
        };
        let BlockConfig::Ask(ask) = &node.config else {
            return unchanged(state);
        };
        match answer::accept(ask, node.pattern.as_ref(), text, region) {
            Ok(value) => walk.valid(ask, value, text.trim()),
            Err(reason) => walk.invalid(ask, state.invalid_answers, reason),
        }
    }

    /// Continues after the integrator carried out [`Action::Identify`] (found or not): walks
    /// on from the `identify` block's `next`, so a later `check_field` sees what the CRM
    /// filled in. A state not waiting at an `identify` is returned unchanged.
    pub fn resume(&self, state: &BotState, card: &dyn CardView) -> Outcome {
        let walk = Walk::new(self, card);
        match self.node(&state.block_id).map(|n| &n.config) {
            None => walk.finish(FinishReason::MissingBlock),
            Some(BlockConfig::Identify(block)) => walk.run(&block.next),
            Some(_) => unchanged(state),
        }
    }
}

fn unchanged(state: &BotState) -> Outcome {
    Outcome { actions: Vec::new(), state: Some(state.clone()) }
}

/// One walk through the graph, collecting actions.
struct Walk<'a> {
    scenario: &'a Scenario,
    card: &'a dyn CardView,
    /// Fields saved earlier in this walk: the integrator applies them only after the step, so
    /// a `check_field` further on would not see them on `card`.
    saved: BTreeSet<String>,
    actions: Vec<Action>,
}

impl<'a> Walk<'a> {
    fn new(scenario: &'a Scenario, card: &'a dyn CardView) -> Self {
        Walk { scenario, card, saved: BTreeSet::new(), actions: Vec::new() }
    }

    fn run(mut self, from: &'a str) -> Outcome {
        let mut id = from;
        for _ in 0..MAX_STEPS {
            let Some(node) = self.scenario.node(id) else {
                return self.finish(FinishReason::MissingBlock);
            };
            let block = &node.config;
            self.actions.push(Action::Entered { block_id: id.to_string(), block_type: block.kind() });
            id = match block {
                BlockConfig::CheckField(b) if self.has_field(&b.field) => b.filled.as_str(),
                BlockConfig::CheckField(b) => b.empty.as_str(),
                BlockConfig::Message(b) => {
                    self.send(&b.text);
                    b.next.as_str()
                }
                BlockConfig::Ask(b) => {
                    self.send(&b.text);
                    return self.wait_at(&b.id, 0);
                }
                BlockConfig::Identify(b) => {
                    self.actions.push(Action::Identify);
                    return self.wait_at(&b.id, 0);
                }
                BlockConfig::End(_) => return self.finish(FinishReason::End),
            };
        }
        self.finish(FinishReason::StepLimit)
    }

    fn valid(mut self, ask: &'a AskBlock, value: String, display: &str) -> Outcome {
        if let Some(field) = &ask.save_to {
            self.saved.insert(field.clone());
            self.actions.push(Action::Save { field: field.clone(), value, display: display.to_string() });
        }
        self.run(&ask.next)
    }

    fn invalid(mut self, ask: &'a AskBlock, before: u32, reason: String) -> Outcome {
        self.actions.push(Action::Rejected {
            block_id: ask.id.clone(),
            expect: ask.expect,
            on_invalid: ask.on_invalid,
            reason,
        });
        let invalid_answers = before.saturating_add(1);
        let exhausted = ask.max_repeats.is_some_and(|max| invalid_answers > max);
        match (ask.on_invalid, &ask.invalid) {
            (OnInvalid::Repeat, _) if !exhausted => {
                self.send(ask.error_text());
                self.wait_at(&ask.id, invalid_answers)
            }
            (_, Some(exit)) => self.run(exit),
            (OnInvalid::Repeat, None) => self.finish(FinishReason::RepeatLimit),
            (OnInvalid::Continue, None) => self.finish(FinishReason::MissingBlock),
        }
    }

    fn has_field(&self, field: &str) -> bool {
        self.saved.contains(field) || self.card.has_field(field)
    }

    fn send(&mut self, text: &str) {
        self.actions.push(Action::Send { text: text.to_string() });
    }

    fn wait_at(self, block_id: &str, invalid_answers: u32) -> Outcome {
        let state = BotState {
            scenario_id: self.scenario.id.clone(),
            block_id: block_id.to_string(),
            invalid_answers,
        };
        Outcome { actions: self.actions, state: Some(state) }
    }

    fn finish(mut self, reason: FinishReason) -> Outcome {
        self.actions.push(Action::Finished { reason });
        Outcome { actions: self.actions, state: None }
    }
}
