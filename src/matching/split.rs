//! Undoing a merge (SPEC "Undoing a merge", identity rule 9): the cards a ledger entry
//! absorbed come back under their ids with what they brought and what arrived since through
//! their visitors; operator-made changes since the merge stay with the survivor.
//!
//! [`plan`] is the pure decision over the live card, the entry's snapshots and the later
//! entries; [`split`] reads what it needs in the batch's transaction and applies it.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::emit::{Emitter, EventBody, MatchedValue, SplitMoved};
use crate::model::{
    conversation_key, CardSnapshot, CardValue, Client, ClientType, MergeEntry, Millis, Source, SplitMark,
};
use crate::store::{visitor_handle, StoreError, WorkingSet};

/// Why a split cannot apply (the command is rejected), or the store failed.
pub enum SplitError {
    Rejected(String),
    Store(StoreError),
}

impl From<StoreError> for SplitError {
    fn from(e: StoreError) -> Self {
        SplitError::Store(e)
    }
}

fn rejected<T>(reason: impl Into<String>) -> Result<T, SplitError> {
    Err(SplitError::Rejected(reason.into()))
}

/// What a split leaves: the survivor's card, each restored card (its appeal count still to
/// be set from the appeals that move), and what the `client.split` event reports.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitPlan {
    pub survivor: Client,
    pub restored: Vec<Client>,
    pub moved_values: Vec<usize>,
    pub kept: Vec<MatchedValue>,
    pub dependent_merges: Vec<String>,
}

/// What the survivor's side held on its own: the survivor before the merge and every card
/// that joined the group later without the restored cards in it.
#[derive(Default)]
struct Side {
    values: HashSet<(String, String)>,
    names: Vec<crate::model::NameClaim>,
    tags: HashSet<String>,
    comments: Vec<crate::model::Comment>,
    invalid: Vec<crate::model::InvalidValue>,
    kind: Option<ClientType>,
}

impl Side {
    fn add(&mut self, card: &CardSnapshot) {
        let doc = &card.doc;
        for (field, values) in doc.contacts.iter().chain(doc.fields.iter()) {
            self.values.extend(values.iter().map(|v| (field.clone(), v.value.clone())));
        }
        self.names.extend(doc.names.iter().cloned());
        self.tags.extend(doc.tags.iter().cloned());
        self.comments.extend(doc.comments.iter().cloned());
        self.invalid.extend(doc.invalid_values.iter().cloned());
        self.kind = Some(self.kind.map_or(card.kind, |k| k.max(card.kind)));
    }
}

/// The snapshots of cards that joined the group after `entry` and do not hold the restored
/// cards: the cards a later entry absorbed, or the survivor that absorbed the group.
fn clean_later<'a>(entry: &MergeEntry, later: &'a [MergeEntry]) -> Vec<&'a CardSnapshot> {
    let mut chain: BTreeSet<&str> = BTreeSet::from([entry.survivor_id.as_str()]);
    let mut out = Vec::new();
    for e in later {
        if chain.contains(e.survivor_id.as_str()) {
            out.extend(e.brought.iter().map(|b| &b.card));
        } else if e.brought.iter().any(|b| chain.contains(b.client_id.as_str())) {
            chain.insert(&e.survivor_id);
            out.extend(e.survivor_before.iter());
            out.extend(e.brought.iter().filter(|b| !chain.contains(b.client_id.as_str())).map(|b| &b.card));
        }
    }
    out
}

/// The split of `entry` out of the live card `current`: `rows` are the absorbed cards as
/// stored (in the entry's order), `later` the group's ledger entries after it that were not
/// undone. `None`: the entry kept no snapshots (written before the ledger did).
pub fn plan(
    current: &Client,
    entry: &MergeEntry,
    rows: &[Client],
    later: &[MergeEntry],
) -> Option<SplitPlan> {
    let before = entry.survivor_before.as_ref()?;
    if entry.brought.is_empty() || rows.len() != entry.brought.len() {
        return None;
    }
    let since = entry.at;
    let mut side = Side::default();
    side.add(before);
    for snapshot in clean_later(entry, later) {
        side.add(snapshot);
    }
    let mut survivor = current.clone();
    let mut kept = Vec::new();
    let restored_ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let mut restored: Vec<Client> = Vec::with_capacity(rows.len());
    let mut handles = Vec::with_capacity(rows.len());
    for (row, brought) in rows.iter().zip(&entry.brought) {
        let snap = &brought.card.doc;
        let mut card = Client { merged_into: None, kind: brought.card.kind, appeal_count: 0, ..row.clone() };
        card.doc = snap.clone();
        // A visitor or account that moved on to another card since stays there.
        card.doc.visitors.retain(|v| current.doc.visitors.contains(v));
        card.doc.external_ids.retain(|x| current.doc.external_ids.contains(x));
        let own: Vec<String> =
            card.doc.visitors.iter().map(|v| visitor_handle(&v.channel_id, &v.visitor_id)).collect();
        for h in &own {
            if let Some(at) = current.doc.last_inbound.get(h) {
                card.doc.last_inbound.insert(h.clone(), *at);
            }
        }
        card.doc.blocked_merges.insert(current.id.clone());
        card.doc.blocked_merges.extend(restored_ids.iter().filter(|id| **id != card.id).cloned());
        card.doc.revision = row.doc.revision;
        handles.push(own);
        restored.push(card);
    }
    let mut moved_values = vec![0; restored.len()];
    for contact in [true, false] {
        let values = if contact { &current.doc.contacts } else { &current.doc.fields };
        let mut survivor_map: BTreeMap<String, Vec<CardValue>> = BTreeMap::new();
        let mut restored_maps: Vec<BTreeMap<String, Vec<CardValue>>> = vec![BTreeMap::new(); restored.len()];
        for (field, list) in values {
            for cv in list {
                let key = (field.clone(), cv.value.clone());
                let after = cv.at > since;
                let operator_after = after && cv.source == Source::Manual;
                let mut owners = Vec::new();
                for (i, brought) in entry.brought.iter().enumerate() {
                    let snap = &brought.card.doc;
                    let map = if contact { &snap.contacts } else { &snap.fields };
                    // What the card brought goes back as it brought it (its own spelling).
                    let brought_it = map.get(field).and_then(|l| l.iter().find(|v| v.value == cv.value));
                    let through_it = after && cv.via.as_ref().is_some_and(|h| handles[i].contains(h));
                    if let Some(value) = brought_it.or(through_it.then_some(cv)) {
                        owners.push(i);
                        restored_maps[i].entry(field.clone()).or_default().push(value.clone());
                        moved_values[i] += 1;
                    }
                }
                if operator_after {
                    kept.push(MatchedValue { field: field.clone(), value: cv.value.clone() });
                }
                if owners.is_empty() || operator_after || side.values.contains(&key) {
                    survivor_map.entry(field.clone()).or_default().push(cv.clone());
                }
            }
        }
        for (card, map) in restored.iter_mut().zip(restored_maps) {
            *(if contact { &mut card.doc.contacts } else { &mut card.doc.fields }) = map;
        }
        *(if contact { &mut survivor.doc.contacts } else { &mut survivor.doc.fields }) = survivor_map;
    }
    let theirs = |pred: &dyn Fn(&CardSnapshot) -> bool| entry.brought.iter().any(|b| pred(&b.card));
    survivor.doc.tags.retain(|t| side.tags.contains(t) || !theirs(&|c| c.doc.tags.contains(t)));
    for t in &survivor.doc.tags {
        if !side.tags.contains(t) {
            kept.push(MatchedValue { field: "tag".into(), value: t.clone() });
        }
    }
    survivor.doc.comments.retain(|c| side.comments.contains(c) || !theirs(&|s| s.doc.comments.contains(c)));
    for c in survivor.doc.comments.iter().filter(|c| c.at > since) {
        kept.push(MatchedValue { field: "comment".into(), value: c.text.clone() });
    }
    survivor
        .doc
        .invalid_values
        .retain(|v| side.invalid.contains(v) || !theirs(&|s| s.doc.invalid_values.contains(v)));
    for card in &restored {
        survivor.doc.visitors.retain(|v| !card.doc.visitors.contains(v));
        survivor.doc.external_ids.retain(|x| !card.doc.external_ids.contains(x));
        survivor.doc.group_size = survivor.doc.group_size.saturating_sub(card.doc.group_size).max(1);
    }
    for own in &handles {
        survivor.doc.last_inbound.retain(|h, _| !own.contains(h));
    }
    split_names(&mut survivor, &mut restored, (&side, &handles), since, &mut kept);
    survivor.doc.blocked_merges.extend(restored_ids.iter().cloned());
    survivor.kind = side.kind.unwrap_or(survivor.kind);
    survivor.settle_type();
    for card in &mut restored {
        card.settle_type();
    }
    // Values the group had through the restored cards only: a later merge on one of them
    // may not have happened without this one.
    let mut own = Side::default();
    own.add(before);
    let taken: BTreeSet<(String, String)> =
        restored.iter().flat_map(Client::all_values).filter(|v| !own.values.contains(v)).collect();
    let dependent_merges = later
        .iter()
        .filter(|e| e.matched.iter().any(|m| taken.contains(&(m.field.clone(), m.value.clone()))))
        .map(|e| e.merge_id.clone())
        .collect();
    kept.sort();
    kept.dedup();
    Some(SplitPlan { survivor, restored, moved_values, kept, dependent_merges })
}

/// The survivor keeps the names its side gave and those claimed since the merge (an
/// operator's rename is listed as kept); the merge's own choice of name goes with it. A
/// restored card takes its names back, and those its visitors claimed since.
fn split_names(
    survivor: &mut Client,
    restored: &mut [Client],
    (side, handles): (&Side, &[Vec<String>]),
    since: Millis,
    kept: &mut Vec<MatchedValue>,
) {
    let current = std::mem::take(&mut survivor.doc.names);
    let mut names = side.names.clone();
    for claim in current.into_iter().filter(|c| c.at > since) {
        match handles.iter().position(|own| own.contains(&claim.source)) {
            Some(i) => restored[i].doc.names.push(claim),
            None => {
                if claim.rank == crate::model::NameRank::Operator {
                    kept.push(MatchedValue { field: "name".into(), value: claim.name.clone() });
                }
                names.retain(|c| c.source != claim.source || c.rank != claim.rank);
                names.push(claim);
            }
        }
    }
    names.dedup();
    survivor.doc.names = names;
    survivor.doc.settle_name();
    for card in restored {
        card.doc.settle_name();
    }
}

/// Undoes ledger entry `merge_id` of the live card `card` (`split_client`) and says so in
/// `client.split`. Returns the survivor's card after the split.
pub async fn split(
    ws: &mut WorkingSet,
    card: &Client,
    merge_id: &str,
    (operator, at): (&str, Millis),
    em: &mut Emitter,
) -> Result<Client, SplitError> {
    let project = card.project_id.as_str();
    let Some(mut entry) = ws.ledger_entry(project, merge_id).await? else {
        return rejected(format!("merge_id {merge_id:?}: no such merge in the project's ledger"));
    };
    if let Some(done) = &entry.split {
        let when = crate::model::format_ts(done.at);
        return rejected(format!("merge {merge_id} was split already, at {when} by {}", done.operator));
    }
    let owner = ws.live_client(&entry.survivor_id).await?;
    if owner.as_ref().map(|c| c.id.as_str()) != Some(card.id.as_str()) {
        return rejected(format!("merge {merge_id} is not in the merge ledger of card {}", card.id));
    }
    let mut rows = Vec::with_capacity(entry.brought.len());
    for b in &entry.brought {
        match ws.client_row(&b.client_id).await? {
            Some(row) if ws.live_client(&row.id).await?.is_some_and(|l| l.id == card.id) => rows.push(row),
            _ => {
                return rejected(format!(
                    "card {} of merge {merge_id} is no longer in this card's group",
                    b.client_id
                ))
            }
        }
    }
    let mut group = vec![card.id.clone()];
    group.extend(ws.absorbed_by(&card.id).await?);
    let ledger = ws.ledger_of(project, &group).await?;
    let position = ledger.iter().position(|e| e.merge_id == entry.merge_id).unwrap_or(ledger.len());
    let later: Vec<MergeEntry> = ledger
        .into_iter()
        .skip(position + 1)
        .filter(|e| e.split.is_none() && e.merge_id != entry.merge_id)
        .collect();
    let Some(plan) = plan(card, &entry, &rows, &later) else {
        return rejected(format!(
            "merge {merge_id} was recorded before the ledger kept what each card brought: it cannot be undone"
        ));
    };
    apply(ws, card, (&mut entry, plan), (operator, at), em).await
}

/// The conversations a restored card takes back: those of its visitors, and those of its
/// accounts in the channels its visitors write in. A conversation of the survivor's account
/// stays with the survivor, whoever wrote in it.
fn conversations(card: &Client) -> Vec<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    for v in &card.doc.visitors {
        out.insert(conversation_key(&v.channel_id, &v.visitor_id, None));
        for x in &card.doc.external_ids {
            out.insert(conversation_key(&v.channel_id, &v.visitor_id, Some(x)));
        }
    }
    out.into_iter().collect()
}

async fn apply(
    ws: &mut WorkingSet,
    card: &Client,
    (entry, plan): (&mut MergeEntry, SplitPlan),
    (operator, at): (&str, Millis),
    em: &mut Emitter,
) -> Result<Client, SplitError> {
    let SplitPlan { mut survivor, restored, moved_values, kept, dependent_merges } = plan;
    let mut moved = Vec::with_capacity(restored.len());
    for (mut restored, values) in restored.into_iter().zip(moved_values) {
        let conversations = conversations(&restored);
        let appeals = ws.split_appeals(&card.project_id, (&card.id, &restored.id), &conversations).await?;
        restored.appeal_count = appeals as i64;
        survivor.appeal_count = (survivor.appeal_count - appeals as i64).max(0);
        let brought = entry.brought.iter().find(|b| b.client_id == restored.id);
        for member in brought.map(|b| b.members.clone()).unwrap_or_default() {
            if let Some(mut row) = ws.client_row(&member).await? {
                row.merged_into = Some(restored.id.clone());
                ws.put_client(row);
            }
        }
        moved.push(SplitMoved {
            client_id: restored.id.clone(),
            visitors: restored.doc.visitors.len(),
            appeals,
            values,
        });
        ws.put_client(restored);
    }
    ws.put_client(survivor.clone());
    let survivor = ws.live_client(&survivor.id).await?.unwrap_or(survivor);
    entry.split = Some(SplitMark { at, operator: operator.to_string() });
    ws.update_ledger(entry.clone());
    crate::telemetry::events::CardsSplit { survivor: &survivor.id, restored: moved.len() }.emit();
    let body = EventBody::ClientSplit {
        merge_id: entry.merge_id.clone(),
        survivor_id: survivor.id.clone(),
        restored_ids: moved.iter().map(|m| m.client_id.clone()).collect(),
        operator: operator.to_string(),
        moved,
        kept,
        dependent_merges,
    };
    em.event(at, body, Some(survivor.summary()), None);
    Ok(survivor)
}

#[cfg(test)]
mod tests;
