//! One type per thing that happens to the process (STYLE 6): its `emit()` writes the log line
//! and bumps the metric, with fixed labels, so every occurrence of it is logged and counted
//! alike wherever it happens. Values that could identify a person are masked here.

use std::time::Duration;

use metrics::{counter, gauge};

use crate::source::SourcePos;

/// A transient failure about to be retried (`store`, `publish`, `consume`, `crm`).
pub struct Retrying<'a> {
    pub what: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl Retrying<'_> {
    pub fn emit(self) {
        tracing::warn!(what = self.what, error = %self.error, retry_in = ?self.retry_in, "retrying");
        counter!("appealflow_retries_total", "what" => self.what).increment(1);
    }
}

/// An input sent to the DLQ, logged once its batch committed. The reason may echo input
/// values (a phone in a type error): masked here; the DLQ record keeps it whole.
pub struct DeadLettered<'a> {
    pub stage: &'static str,
    pub reason: &'a str,
    pub source: &'a SourcePos,
}

impl DeadLettered<'_> {
    pub fn emit(self) {
        let reason = crate::identify::normalize::mask_text(self.reason);
        tracing::warn!(%reason, stage = self.stage, source = ?self.source, "input sent to the DLQ");
        counter!("appealflow_dlq_total", "stage" => self.stage).increment(1);
    }
}

/// The store refused an input's data: its batch is committed in parts around it.
pub struct StoreRefusedData<'a> {
    pub error: &'a dyn std::fmt::Display,
    pub inputs: usize,
}

impl StoreRefusedData<'_> {
    pub fn emit(self) {
        tracing::warn!(error = %self.error, inputs = self.inputs, "the store refused an input's data; isolating it");
        counter!("appealflow_store_refusals_total").increment(1);
    }
}

/// A Kafka error the process cannot get past (a topic missing, an authorisation refused, a
/// record over the broker's limit): `run` stops with it.
pub struct KafkaFatal<'a> {
    pub side: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub settings: &'static str,
}

impl KafkaFatal<'_> {
    pub fn emit(self) {
        tracing::error!(side = self.side, error = %self.error, settings = self.settings, "Kafka failed for good");
        counter!("appealflow_kafka_fatal_total", "side" => self.side).increment(1);
    }
}

/// A CRM search ended: `found`, `not_found`, or a failure reason (`crm_unavailable` when the
/// breaker skipped the call).
pub struct CrmSearched<'a> {
    pub project: &'a str,
    /// Already masked.
    pub identifier: &'a str,
    pub outcome: &'static str,
    pub detail: Option<String>,
    pub attempts: u32,
}

impl CrmSearched<'_> {
    pub fn emit(self) {
        let (project, identifier, outcome, attempts) =
            (self.project, self.identifier, self.outcome, self.attempts);
        match (&self.detail, outcome) {
            (_, "crm_unavailable") => {
                tracing::debug!(project, identifier, reason = outcome, "CRM call skipped")
            }
            (Some(detail), _) => {
                tracing::warn!(project, identifier, reason = outcome, %detail, attempts, "CRM search failed")
            }
            (None, _) => tracing::debug!(project, identifier, outcome, attempts, "CRM searched"),
        }
        counter!("appealflow_crm_calls_total", "project" => project.to_string(), "outcome" => outcome)
            .increment(1);
    }
}

/// A project's CRM circuit breaker opened (calls are skipped) or closed again.
pub struct CrmBreaker<'a> {
    pub project: &'a str,
    pub open: bool,
}

impl CrmBreaker<'_> {
    pub fn emit(self) {
        if self.open {
            tracing::warn!(project = self.project, "CRM circuit breaker opened: calls are skipped");
        } else {
            tracing::info!(project = self.project, "CRM circuit breaker closed: the CRM answers again");
        }
        gauge!("appealflow_crm_breaker_open", "project" => self.project.to_string()).set(if self.open {
            1.0
        } else {
            0.0
        });
    }
}

/// Cards were merged (the `client.merged` event says the rest).
pub struct CardsMerged<'a> {
    pub survivor: &'a str,
    pub absorbed: usize,
    pub by: &'static str,
}

impl CardsMerged<'_> {
    pub fn emit(self) {
        tracing::info!(survivor = self.survivor, absorbed = self.absorbed, by = self.by, "cards merged");
    }
}

/// An operator undid a merge (the `client.split` event says the rest).
pub struct CardsSplit<'a> {
    pub survivor: &'a str,
    pub restored: usize,
}

impl CardsSplit<'_> {
    pub fn emit(self) {
        tracing::info!(survivor = self.survivor, restored = self.restored, "merge undone");
    }
}

/// A value turned generic: held beyond the group limit, it is no longer compared.
pub struct ValueTurnedGeneric<'a> {
    pub field: &'a str,
    pub value: &'a str,
    pub cards: i64,
}

impl ValueTurnedGeneric<'_> {
    pub fn emit(self) {
        let value = crate::identify::normalize::mask(self.value);
        tracing::info!(field = self.field, %value, cards = self.cards, "a value turned generic");
        counter!("appealflow_generic_values_total", "field" => self.field.to_string()).increment(1);
    }
}
