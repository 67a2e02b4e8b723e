//! Pure matching decisions: which cards a rule joins, who survives, what the merged card
//! holds. No I/O: unit-tested on plain cards.

use std::collections::{BTreeMap, HashSet};

use crate::config::{ProjectConfig, RuleConfig};
use crate::identify::normalize;
use crate::model::{Client, ClientType};

/// A project's rules with its blocked values normalised once at start.
#[derive(Debug, Clone)]
pub struct ProjectRules {
    pub rules: Vec<RuleConfig>,
    blocked: HashSet<String>,
}

impl ProjectRules {
    pub fn new(project: &ProjectConfig) -> Self {
        let mut blocked = HashSet::new();
        for raw in &project.blocked_values {
            // A blocked value may be a phone, an e-mail or a field value: block every form.
            blocked.insert(raw.trim().to_string());
            blocked.extend(normalize::phone(raw, &project.default_region).ok());
            blocked.extend(normalize::email(raw).ok());
            blocked.extend(normalize::field(raw).ok());
        }
        ProjectRules { rules: project.multicontact_rules.clone(), blocked }
    }

    pub fn is_blocked(&self, value: &str) -> bool {
        self.blocked.contains(value)
    }

    /// Whether two cards share a non-blocked value of `field`.
    fn shares(&self, a: &Client, b: &Client, field: &str) -> bool {
        let theirs = b.values(field);
        a.values(field).into_iter().any(|v| theirs.contains(v) && !self.is_blocked(v))
    }

    /// The first rule (in config order) every field of which the two cards share.
    pub fn matching_rule(&self, a: &Client, b: &Client) -> Option<&RuleConfig> {
        if a.project_id != b.project_id || a.id == b.id {
            return None;
        }
        self.rules.iter().find(|r| r.fields.iter().all(|f| self.shares(a, b, f)))
    }

    /// The candidates that match `card`, each with the rule that matched it.
    pub fn matches(&self, card: &Client, candidates: &[Client]) -> Vec<(Client, String)> {
        candidates
            .iter()
            .filter_map(|c| self.matching_rule(card, c).map(|r| (c.clone(), r.id.clone())))
            .collect()
    }
}

/// The oldest card survives; equal ages fall back to the id, so every instance agrees.
pub fn pick_survivor(group: &[Client]) -> &Client {
    group
        .iter()
        .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
        .expect("a merge group is never empty")
}

/// The card a group merges into: the survivor's identity with everyone's contacts, technical
/// contacts and appeal counts. Single-valued things (name, custom fields) come from the
/// survivor first, then from the others oldest first; `keep_name_of` overrides the name.
pub fn merged_card(group: &[Client], keep_name_of: Option<&str>) -> Client {
    let survivor = pick_survivor(group);
    let mut ordered: Vec<&Client> = group.iter().collect();
    ordered.sort_by_key(|c| (c.id != survivor.id, c.created_at, c.id.clone()));
    let mut out = survivor.clone();
    out.doc.group_size = group.iter().map(|c| c.doc.group_size).sum();
    out.appeal_count = group.iter().map(|c| c.appeal_count).sum();
    out.kind = group.iter().map(|c| c.kind).max_by_key(|k| type_rank(*k)).unwrap_or(ClientType::Internal);
    for c in ordered.iter().skip(1) {
        if out.doc.name.is_none() {
            out.doc.name = c.doc.name.clone();
        }
        for (kind, values) in &c.doc.contacts {
            for v in values {
                out.add_contact(kind, v);
            }
        }
        for (kind, values) in &c.doc.manual_contacts {
            let mine = out.doc.manual_contacts.entry(kind.clone()).or_default();
            for v in values {
                if !mine.contains(v) {
                    mine.push(v.clone());
                }
            }
        }
        for (f, v) in &c.doc.fields {
            out.doc.fields.entry(f.clone()).or_insert_with(|| v.clone());
        }
        out.doc.visitors.extend(c.doc.visitors.iter().cloned());
        out.doc.external_ids.extend(c.doc.external_ids.iter().cloned());
        merge_latest(&mut out.doc.last_inbound, &c.doc.last_inbound);
    }
    if let Some(name_of) = keep_name_of.and_then(|id| group.iter().find(|c| c.id == id)) {
        if name_of.doc.name.is_some() {
            out.doc.name = name_of.doc.name.clone();
        }
    }
    out
}

/// What we know best wins: a CRM-identified card outranks a messenger one, which outranks
/// an anonymous widget visitor.
fn type_rank(k: ClientType) -> u8 {
    match k {
        ClientType::Internal => 0,
        ClientType::Channel => 1,
        ClientType::Crm => 2,
    }
}

fn merge_latest(into: &mut BTreeMap<String, i64>, from: &BTreeMap<String, i64>) {
    for (k, v) in from {
        let e = into.entry(k.clone()).or_insert(*v);
        *e = (*e).max(*v);
    }
}

#[cfg(test)]
mod tests;
