//! The scenario report: how often each block was entered, and which never were. The
//! integrator reads the counts from the store; turning them into rows and text is pure.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use super::Scenario;
use crate::config::BlockKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioReport {
    pub project_id: String,
    pub scenario_id: String,
    /// One row per configured block, in config order.
    pub rows: Vec<ReportRow>,
    /// Configured blocks with no entries: dead ends of the scenario worth a look.
    pub never_entered: Vec<String>,
    /// Counted blocks the config no longer has (renamed or removed since), with their counts.
    pub retired: Vec<(String, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportRow {
    pub block_id: String,
    pub block_type: BlockKind,
    pub entries: u64,
}

impl Scenario {
    /// The report for this scenario given entry counts by block id.
    pub fn report(&self, entries: &BTreeMap<String, u64>) -> ScenarioReport {
        let rows: Vec<ReportRow> = self
            .blocks()
            .map(|b| ReportRow {
                block_id: b.id().to_string(),
                block_type: b.kind(),
                entries: entries.get(b.id()).copied().unwrap_or(0),
            })
            .collect();
        let never_entered = rows.iter().filter(|r| r.entries == 0).map(|r| r.block_id.clone()).collect();
        let retired = entries
            .iter()
            .filter(|(id, _)| self.node(id).is_none())
            .map(|(id, n)| (id.clone(), *n))
            .collect();
        ScenarioReport {
            project_id: self.project_id.clone(),
            scenario_id: self.id.clone(),
            rows,
            never_entered,
            retired,
        }
    }
}

impl fmt::Display for ScenarioReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "scenario {} (project {})", self.scenario_id, self.project_id)?;
        let width = self.rows.iter().map(|r| r.block_id.chars().count()).chain([5]).max().unwrap_or(5);
        writeln!(f, "  {:width$}  {:11}  {:>7}", "block", "type", "entries")?;
        for r in &self.rows {
            writeln!(f, "  {:width$}  {:11}  {:>7}", r.block_id, r.block_type.as_str(), r.entries)?;
        }
        let never =
            if self.never_entered.is_empty() { "-".to_string() } else { self.never_entered.join(", ") };
        writeln!(f, "  never entered: {never}")?;
        if !self.retired.is_empty() {
            let retired: Vec<String> = self.retired.iter().map(|(id, n)| format!("{id} ({n})")).collect();
            writeln!(f, "  no longer configured: {}", retired.join(", "))?;
        }
        Ok(())
    }
}

/// The report of every configured scenario, for `appealflow report scenarios`.
pub fn render_reports(scenarios: &super::Scenarios, entries: &crate::model::BotBlockEntries) -> String {
    let none = BTreeMap::new();
    let mut out = String::new();
    for scenario in scenarios.iter() {
        let key = (scenario.project_id().to_string(), scenario.id().to_string());
        out.push_str(&scenario.report(entries.get(&key).unwrap_or(&none)).to_string());
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str("no bot scenarios are configured\n");
    }
    out
}
