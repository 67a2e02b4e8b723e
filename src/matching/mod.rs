//! Matching: multi-contact rules that merge cards of one person (SPEC "Multi-contact matching").
//!
//! A rule matches two cards when, for every field of the rule, they share at least one
//! normalised value that is not blocked (AND inside a rule); any rule suffices (OR across
//! rules). Matching runs on the whole card each time it gains a value and is transitive: the
//! merged card is matched again until nothing more joins. The oldest card survives. A merge
//! that would make a card stand for more than `max_merge_group` original cards is refused.
//!
//! `rules` holds the pure decisions; this module drives them over the working set.

pub mod rules;
pub mod split;

use std::collections::{BTreeSet, HashSet};

use crate::emit::{Emitter, EventBody, MatchedValue, MergeMatch};
use crate::model::{Brought, CardSnapshot, Client, MergeEntry, Millis};
use crate::stage::Ctx;
use crate::store::{Holders, StoreResult, WorkingSet};

pub use rules::{group_limit_reason, merged_card, pick_survivor, Generic, ProjectRules};

/// Why cards were merged: the `client.merged` event says which.
#[derive(Debug, Clone, PartialEq)]
pub enum MergeBy {
    /// Multi-contact rules: which rule brought each absorbed card, and on which values.
    Rule { matches: Vec<MergeMatch>, matched: Vec<MatchedValue> },
    /// `merge_clients`: the operator, and the card whose name the operator kept.
    Operator { operator: String, keep_name_of: String },
    /// An anonymous visitor's card met the card of the external ID it now carries.
    ExternalId(String),
}

/// Runs the project's rules for a card that gained values; returns the live card after any
/// merge (the survivor, which may be another card than `client_id`).
pub async fn run(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    client_id: &str,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Client> {
    let card = ws.live_client(client_id).await?.expect("card exists: it was just written");
    if ctx.rules.rules.is_empty() {
        return Ok(card);
    }
    let mut group = vec![card.clone()];
    let mut union = card.clone();
    let mut matches: Vec<MergeMatch> = Vec::new();
    let mut matched: BTreeSet<MatchedValue> = BTreeSet::new();
    let mut generic = Generic::new();
    let mut kept_apart: HashSet<String> = HashSet::new();
    loop {
        let mut candidates = candidates(ws, ctx, (&union, &group), &mut generic, at, em).await?;
        candidates.retain(|c| !kept_apart.contains(&c.id));
        let mut found = Vec::new();
        for (client, rule) in ctx.rules.matches(&union, &candidates, &generic) {
            if split_apart(ws, (&group, &union), &client).await? {
                kept_apart.insert(client.id.clone());
                refuse_split(em, at, &card, &client, Some(&rule.id));
            } else {
                found.push((client, rule));
            }
        }
        if found.is_empty() {
            break;
        }
        for (client, rule) in found {
            for (field, value) in ctx.rules.shared_values(&union, &client, rule, &generic) {
                matched.insert(MatchedValue { field, value });
            }
            matches.push(MergeMatch { client_id: client.id.clone(), rule_id: rule.id.clone() });
            group.push(client);
        }
        union = merged_card(&group, None);
    }
    if group.len() == 1 {
        return Ok(card);
    }
    let size: usize = group.iter().map(|c| c.doc.group_size).sum();
    if size > ctx.project.max_merge_group {
        refuse(em, at, &card, (&group, &matches), size, ctx.project.max_merge_group);
        return Ok(card);
    }
    let survivor = pick_survivor(&group).id.clone();
    let absorbed: Vec<&Client> = group.iter().filter(|c| c.id != survivor).collect();
    let matches = absorbed_matches(&card.id, &survivor, &absorbed, &matches);
    let by = MergeBy::Rule { matches, matched: matched.into_iter().collect() };
    merge_into(ws, group, at, em, by).await
}

/// Whether an operator split `other` from the group (or the group from it): no rule joins
/// them again until an operator does (SPEC identity rule 9). Blocked ids are followed to the
/// cards they live on in now.
pub async fn split_apart(
    ws: &mut WorkingSet,
    (group, union): (&[Client], &Client),
    other: &Client,
) -> StoreResult<bool> {
    for id in &union.doc.blocked_merges {
        if ws.live_client(id).await?.is_some_and(|c| c.id == other.id) {
            return Ok(true);
        }
    }
    for id in &other.doc.blocked_merges {
        if let Some(c) = ws.live_client(id).await? {
            if group.iter().any(|g| g.id == c.id) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// The reason of a merge refused because an operator split the cards.
pub const SPLIT_BY_OPERATOR: &str = "split_by_operator";

/// Says that a rule (`rule_id`), or an external ID (none), would join cards an operator split.
pub fn refuse_split(em: &mut Emitter, at: Millis, card: &Client, other: &Client, rule_id: Option<&str>) {
    let body = EventBody::ClientMergeRefused {
        reason: format!(
            "{SPLIT_BY_OPERATOR}: an operator split these cards; merge_clients or allow_merge joins them again"
        ),
        client_ids: vec![card.id.clone(), other.id.clone()],
        rule_ids: rule_id.into_iter().map(str::to_string).collect(),
        field: None,
        value: None,
        cards: None,
    };
    em.event(at, body, Some(card.summary()), None);
}

/// Which rule brought each absorbed card in. The card that triggered matching was not found
/// by a rule itself: it came in by the rule that found the survivor.
fn absorbed_matches(
    trigger: &str,
    survivor: &str,
    absorbed: &[&Client],
    found: &[MergeMatch],
) -> Vec<MergeMatch> {
    let rule_of = |id: &str| found.iter().find(|m| m.client_id == id).map(|m| m.rule_id.clone());
    absorbed
        .iter()
        .map(|c| {
            let rule = if c.id == trigger { rule_of(survivor) } else { rule_of(&c.id) };
            MergeMatch {
                client_id: c.id.clone(),
                rule_id: rule.or_else(|| found.first().map(|m| m.rule_id.clone())).unwrap_or_default(),
            }
        })
        .collect()
}

/// Cards sharing a first-field value with the card under any rule: a superset of the matches.
/// A value held beyond the group limit is generic: skipped (and announced, the first time),
/// so the candidates stay few however many cards share one office phone.
async fn candidates(
    ws: &mut WorkingSet,
    ctx: &Ctx<'_>,
    (card, group): (&Client, &[Client]),
    generic: &mut Generic,
    at: Millis,
    em: &mut Emitter,
) -> StoreResult<Vec<Client>> {
    let mut lookups: BTreeSet<(String, String)> = BTreeSet::new();
    for rule in &ctx.rules.rules {
        let field = &rule.fields[0];
        for value in card.values(field) {
            let pair = (field.clone(), value.to_string());
            if !ctx.rules.is_blocked(value) && !generic.contains(&pair) {
                lookups.insert(pair);
            }
        }
    }
    let mut seen: HashSet<String> = group.iter().map(|g| g.id.clone()).collect();
    let mut out: Vec<Client> = Vec::new();
    let max = ctx.project.max_merge_group;
    for (field, value) in lookups {
        match ws.value_holders(&ctx.project.id, &field, &value, max).await? {
            Holders::Cards(cards) => out.extend(cards.into_iter().filter(|c| seen.insert(c.id.clone()))),
            Holders::Generic { cards, newly, oldest } => {
                if newly {
                    announce_generic(em, at, card, ctx, (&field, &value), cards, oldest);
                }
                generic.insert((field, value));
            }
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    Ok(out)
}

/// Says once, when a value turns generic, that it is no longer compared: with how many cards
/// hold it, not a list of them.
fn announce_generic(
    em: &mut Emitter,
    at: Millis,
    card: &Client,
    ctx: &Ctx<'_>,
    (field, value): (&str, &str),
    cards: i64,
    oldest: Vec<String>,
) {
    let max = ctx.project.max_merge_group;
    crate::telemetry::events::ValueTurnedGeneric { field, value, cards }.emit();
    let mut client_ids = vec![card.id.clone()];
    client_ids.extend(oldest.into_iter().filter(|id| *id != card.id).take(1));
    let rule_ids = ctx.rules.rules.iter().filter(|r| r.fields[0] == field).map(|r| r.id.clone()).collect();
    let body = EventBody::ClientMergeRefused {
        reason: format!(
            "generic_value: {field} is held by {cards} cards, standing for more people than max_merge_group \
             ({max}); it is no longer compared"
        ),
        client_ids,
        rule_ids,
        field: Some(field.to_string()),
        value: Some(value.to_string()),
        cards: Some(cards),
    };
    em.event(at, body, Some(card.summary()), None);
}

fn refuse(
    em: &mut Emitter,
    at: Millis,
    card: &Client,
    (group, matches): (&[Client], &[MergeMatch]),
    size: usize,
    max: usize,
) {
    let rule_ids: Vec<String> = matches
        .iter()
        .map(|m| m.rule_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let body = EventBody::ClientMergeRefused {
        reason: group_limit_reason(size, max),
        client_ids: group.iter().take(max + 1).map(|c| c.id.clone()).collect(),
        rule_ids,
        field: None,
        value: None,
        cards: Some(size as i64),
    };
    em.event(at, body, Some(card.summary()), None);
}

/// Merges a group of cards (SPEC rule 2): the oldest survives and holds what
/// [`merged_card`] decides, the others point at it forever and their appeals follow it.
/// Every merge path (rules, external ID, operator, bot and CRM through the rules) ends here.
pub async fn merge_into(
    ws: &mut WorkingSet,
    group: Vec<Client>,
    at: Millis,
    em: &mut Emitter,
    by: MergeBy,
) -> StoreResult<Client> {
    let keep_name = match &by {
        MergeBy::Operator { keep_name_of, .. } => Some((keep_name_of.as_str(), at)),
        _ => None,
    };
    let mut merged = merged_card(&group, keep_name);
    // An operator's merge lifts a split's block; ids that now live on in this card go too.
    for id in std::mem::take(&mut merged.doc.blocked_merges) {
        let lives_on = ws.live_client(&id).await?.map(|c| c.id);
        if !lives_on.as_ref().is_some_and(|l| group.iter().any(|g| g.id == *l)) {
            merged.doc.blocked_merges.insert(id);
        }
    }
    let mut absorbed = Vec::with_capacity(group.len() - 1);
    let mut brought = Vec::with_capacity(group.len() - 1);
    let mut survivor_before = None;
    for mut other in group {
        if other.id == merged.id {
            survivor_before = Some(CardSnapshot { kind: other.kind, doc: other.doc });
            continue;
        }
        let members = match other.doc.group_size {
            1 => Vec::new(),
            _ => ws.absorbed_by(&other.id).await?,
        };
        brought.push(Brought {
            client_id: other.id.clone(),
            members,
            card: CardSnapshot { kind: other.kind, doc: other.doc.clone() },
        });
        absorbed.push(other.id.clone());
        other.merged_into = Some(merged.id.clone());
        ws.put_client(other);
    }
    ws.put_client(merged.clone());
    let (rule_id, operator, matches, matched, how) = match by {
        MergeBy::Rule { matches, matched } => {
            (matches.first().map(|m| m.rule_id.clone()), None, matches, matched, "rule")
        }
        MergeBy::Operator { operator, .. } => (None, Some(operator), Vec::new(), Vec::new(), "operator"),
        MergeBy::ExternalId(x) => {
            let evidence = vec![MatchedValue { field: "external_id".into(), value: x }];
            (None, None, Vec::new(), evidence, "external_id")
        }
    };
    let merge_id = em.named_id("merge", &[&merged.id, &absorbed.join(","), &at.to_string()]);
    ws.record_merge(MergeEntry {
        merge_id: merge_id.clone(),
        project_id: merged.project_id.clone(),
        at,
        survivor_id: merged.id.clone(),
        absorbed_ids: absorbed.clone(),
        by: how.to_string(),
        rule_id: rule_id.clone(),
        operator: operator.clone(),
        matched: matched.clone(),
        survivor_before,
        brought,
        split: None,
    });
    crate::telemetry::events::CardsMerged { survivor: &merged.id, absorbed: absorbed.len(), by: how }.emit();
    let body = EventBody::ClientMerged {
        survivor_id: merged.id.clone(),
        absorbed_ids: absorbed,
        rule_id,
        operator,
        matches,
        matched,
        by: how,
        merge_id,
    };
    em.event(at, body, Some(merged.summary()), None);
    Ok(merged)
}
