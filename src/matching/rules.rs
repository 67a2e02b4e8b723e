//! Pure matching decisions: which cards a rule joins, who survives, what the merged card
//! holds. No I/O: unit-tested on plain cards.

use std::collections::{BTreeMap, HashSet};

use crate::config::{ProjectConfig, RuleConfig};
use crate::identify::normalize;
use crate::model::card;
use crate::model::{
    CardValue, Client, ClientDoc, ClientType, InvalidValue, Millis, NameClaim, NameRank, Source,
};

/// (field, value) pairs held beyond the group limit: never compared.
pub type Generic = HashSet<(String, String)>;

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

    /// Whether a value of a field is compared at all: blocked values and generic ones (held
    /// beyond the group limit, see `store::Holders::Generic`) never are.
    fn compared(&self, field: &str, value: &str, generic: &Generic) -> bool {
        !self.is_blocked(value) && !generic.contains(&(field.to_string(), value.to_string()))
    }

    /// The values of `field` the two cards share and compare.
    fn shared<'c>(&self, a: &'c Client, b: &Client, field: &str, generic: &Generic) -> Vec<&'c str> {
        let theirs = b.values(field);
        a.values(field)
            .into_iter()
            .filter(|v| theirs.contains(v) && self.compared(field, v, generic))
            .collect()
    }

    /// The first rule (in config order) every field of which the two cards share.
    pub fn matching_rule(&self, a: &Client, b: &Client, generic: &Generic) -> Option<&RuleConfig> {
        if a.project_id != b.project_id || a.id == b.id {
            return None;
        }
        self.rules.iter().find(|r| r.fields.iter().all(|f| !self.shared(a, b, f, generic).is_empty()))
    }

    /// The values of each field of `rule` the two cards share: the evidence a
    /// `client.merged` event shows.
    pub fn shared_values(
        &self,
        a: &Client,
        b: &Client,
        rule: &RuleConfig,
        generic: &Generic,
    ) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for field in &rule.fields {
            out.extend(self.shared(a, b, field, generic).into_iter().map(|v| (field.clone(), v.to_string())));
        }
        out
    }

    /// The candidates that match `card`, each with the rule that matched it.
    pub fn matches<'r>(
        &'r self,
        card: &Client,
        candidates: &[Client],
        generic: &Generic,
    ) -> Vec<(Client, &'r RuleConfig)> {
        candidates
            .iter()
            .filter_map(|c| self.matching_rule(card, c, generic).map(|r| (c.clone(), r)))
            .collect()
    }
}

/// Why a merge joining `size` original cards, more than the project's `max_merge_group`, is
/// refused: the reason of `client.merge_refused`, whichever path merges.
pub fn group_limit_reason(size: usize, max: usize) -> String {
    format!("max_merge_group: the merge would join {size} cards, the limit is {max}")
}

/// The oldest card survives; equal ages fall back to the id, so every instance agrees.
pub fn pick_survivor(group: &[Client]) -> &Client {
    group
        .iter()
        .min_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)))
        .expect("a merge group is never empty")
}

/// The card a group merges into (SPEC rule 2), whichever path merges it (rule, external ID,
/// operator, bot, CRM): the oldest card's identity; contacts, fields, technical contacts and
/// values that could not be read unioned; the best name by provenance; the best-known type.
/// The result does not depend on the order of `group`. `keep_name` (`merge_clients`'
/// `keep_name_from`: the chosen card and the command's time) makes that card's name the
/// operator's choice.
pub fn merged_card(group: &[Client], keep_name: Option<(&str, Millis)>) -> Client {
    let survivor = pick_survivor(group);
    let mut ordered: Vec<&Client> = group.iter().collect();
    ordered.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let mut doc = ClientDoc {
        group_size: group.iter().map(|c| c.doc.group_size).sum(),
        contacts: union_values(ordered.iter().map(|c| &c.doc.contacts)),
        fields: union_values(ordered.iter().map(|c| &c.doc.fields)),
        ..ClientDoc::default()
    };
    let mut invalid: Vec<&InvalidValue> = ordered.iter().flat_map(|c| &c.doc.invalid_values).collect();
    invalid.sort_by_key(|v| v.at);
    for v in invalid {
        doc.add_invalid(v.clone());
    }
    for c in &ordered {
        for tag in &c.doc.tags {
            if !doc.tags.contains(tag) {
                doc.tags.push(tag.clone());
            }
        }
        doc.comments.extend(c.doc.comments.iter().cloned());
        doc.visitors.extend(c.doc.visitors.iter().cloned());
        doc.external_ids.extend(c.doc.external_ids.iter().cloned());
        merge_latest(&mut doc.last_inbound, &c.doc.last_inbound);
        doc.blocked_merges.extend(c.doc.blocked_merges.iter().cloned());
    }
    for c in group {
        doc.blocked_merges.remove(&c.id);
    }
    doc.comments.sort_by(|a, b| (a.at, &a.text).cmp(&(b.at, &b.text)));
    doc.names = union_claims(ordered.iter().flat_map(|c| &c.doc.names));

    if let Some((name, at)) =
        keep_name.and_then(|(id, at)| Some((group.iter().find(|c| c.id == id)?.doc.name.clone()?, at)))
    {
        let claim = NameClaim { name, rank: NameRank::Operator, source: "operator".into(), at };
        doc.names.retain(|c| c.source != claim.source || c.rank != claim.rank);
        doc.names.push(claim);
    }
    doc.settle_name();
    let mut merged = Client {
        kind: group.iter().map(|c| c.kind).max_by_key(|k| type_rank(*k)).unwrap_or(ClientType::Internal),
        appeal_count: group.iter().map(|c| c.appeal_count).sum(),
        doc,
        ..survivor.clone()
    };
    merged.settle_type();
    merged
}

/// Each field's values from every card: one per normalised value (an operator's over an
/// automatic one, then the earliest), oldest first, bounded like any field.
fn union_values<'a>(
    maps: impl Iterator<Item = &'a BTreeMap<String, Vec<CardValue>>>,
) -> BTreeMap<String, Vec<CardValue>> {
    let mut best: BTreeMap<&str, BTreeMap<&str, &CardValue>> = BTreeMap::new();
    for map in maps {
        for (field, values) in map {
            let slot = best.entry(field).or_default();
            for v in values {
                let better = |old: &&CardValue| {
                    (v.source != Source::Manual, v.at) < (old.source != Source::Manual, old.at)
                };
                if slot.get(v.value.as_str()).is_none_or(better) {
                    slot.insert(&v.value, v);
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    for (field, values) in best {
        let mut list: Vec<CardValue> = values.into_values().cloned().collect();
        list.sort_by(|a, b| (a.at, &a.value).cmp(&(b.at, &b.value)));
        card::bound(&mut list);
        out.insert(field.to_string(), list);
    }
    out
}

/// Every source's latest name claim of each rank.
fn union_claims<'a>(claims: impl Iterator<Item = &'a NameClaim>) -> Vec<NameClaim> {
    let mut latest: BTreeMap<(&str, NameRank), &NameClaim> = BTreeMap::new();
    for c in claims {
        let key = (c.source.as_str(), c.rank);
        if latest.get(&key).is_none_or(|old| (c.at, &c.name) > (old.at, &old.name)) {
            latest.insert(key, c);
        }
    }
    latest.into_values().cloned().collect()
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
