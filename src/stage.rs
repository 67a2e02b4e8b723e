//! What every stage of the pipeline gets and gives back, below all of them: the per-input
//! context (the input's project and what was compiled for it at start) and the error a stage
//! returns. The pipeline above drives the stages; the stages never import it.

use crate::bot::Scenarios;
use crate::config::{ChannelConfig, ProjectConfig};
use crate::crm::lookups::CrmLookups;
use crate::matching::rules::ProjectRules;
use crate::store::StoreError;

/// What a stage needs to know about the input's project.
pub struct Ctx<'a> {
    pub project: &'a ProjectConfig,
    pub rules: &'a ProjectRules,
    pub scenarios: &'a Scenarios,
    /// CRM answers looked up before the batch's transaction began.
    pub lookups: &'a CrmLookups,
}

impl Ctx<'_> {
    /// The input's channel; decode already checked that it exists.
    pub fn channel(&self, id: &str) -> &ChannelConfig {
        self.project.channel(id).expect("decode checks channels")
    }
}

/// Why one input could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The input itself is wrong (a status for a message nobody knows): DLQ, move on.
    #[error("{stage}: {reason}")]
    Poison { stage: &'static str, reason: String },
    /// The store failed: the whole batch is retried or the process stops, by class.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ApplyError {
    pub fn poison(stage: &'static str, reason: impl Into<String>) -> Self {
        ApplyError::Poison { stage, reason: reason.into() }
    }
}
