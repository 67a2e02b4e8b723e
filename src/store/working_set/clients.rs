//! The batch's cards and their secondary lookups: handle → card (visitors, external IDs) and
//! value → cards (phones, e-mails, matched fields), each the database's answer at the start
//! of the batch joined with an index of the cards the batch holds in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::{not_cached, ProjectKey, ValueKey};
use crate::model::{search, Client};
use crate::store::sql::{self, Db, Param};
use crate::store::StoreResult;

/// Who holds a value, as [`super::WorkingSet::value_holders`] sees it.
pub enum Holders {
    Cards(Vec<Client>),
    /// Held by cards standing for more people than the group limit: no longer compared.
    /// `newly`: this lookup found it so (say so once); `cards` is then how many hold it and
    /// `oldest` the two oldest of them.
    Generic {
        cards: i64,
        newly: bool,
        oldest: Vec<String>,
    },
}

/// The handle of a visitor of a channel.
pub fn visitor_handle(channel_id: &str, visitor_id: &str) -> String {
    format!("v:{channel_id}:{visitor_id}")
}

/// The handle of an external ID.
pub fn external_handle(external_id: &str) -> String {
    format!("x:{external_id}")
}

fn handles_of(c: &Client) -> Vec<String> {
    let visitors = c.doc.visitors.iter().map(|v| visitor_handle(&v.channel_id, &v.visitor_id));
    visitors.chain(c.doc.external_ids.iter().map(|x| external_handle(x))).collect()
}

#[derive(Default)]
pub(super) struct Clients {
    cards: HashMap<String, Client>,
    dirty: BTreeSet<String>,
    /// Cards this batch created: written only where their id is free (see [`Db::write_rows`]).
    new: HashSet<String>,
    /// Cards whose handles or values changed: only these rewrite their index rows.
    dirty_index: BTreeSet<String>,
    /// Cards whose search terms may have changed (name, values, handles, merged).
    dirty_search: BTreeSet<String>,
    mem_handles: HashMap<ProjectKey, String>,
    db_handles: HashMap<ProjectKey, Option<String>>,
    mem_values: HashMap<ValueKey, BTreeSet<String>>,
    db_values: HashMap<ValueKey, Vec<String>>,
    /// Whether a value is generic (held beyond the group limit), as loaded or found.
    generic: HashMap<ValueKey, bool>,
    /// Values found generic by this batch, with how many cards held them.
    new_generic: Vec<(ValueKey, i64)>,
}

impl Clients {
    fn index(&mut self, client: &Client, add: bool) {
        if client.merged_into.is_some() {
            return;
        }
        for handle in handles_of(client) {
            let key = (client.project_id.clone(), handle);
            if add {
                self.mem_handles.insert(key, client.id.clone());
            } else if self.mem_handles.get(&key) == Some(&client.id) {
                self.mem_handles.remove(&key);
            }
        }
        for (field, value) in client.all_values() {
            let key = (client.project_id.clone(), field, value);
            if add {
                self.mem_values.entry(key).or_default().insert(client.id.clone());
            } else if let Some(ids) = self.mem_values.get_mut(&key) {
                ids.remove(&client.id);
            }
        }
    }

    fn cache(&mut self, client: Client) {
        if self.cards.contains_key(&client.id) {
            return;
        }
        self.index(&client, true);
        self.cards.insert(client.id.clone(), client);
    }

    /// Loads cards by id (already cached ones are kept: they may be newer).
    pub(super) async fn load(&mut self, db: &mut Db, ids: &[String]) -> StoreResult<()> {
        let missing: Vec<Param> = ids
            .iter()
            .filter(|id| !self.cards.contains_key(*id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|id| id.clone().into())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let head = format!("SELECT {} FROM clients WHERE id", sql::CLIENT_COLS);
        let rows = db.select_in(&head, "", vec![], missing, "load clients").await?;
        for row in &rows {
            let client = sql::client_from_row(row)?;
            self.cache(client);
        }
        Ok(())
    }

    /// The card with this id, following merges to the card that absorbed it.
    pub(super) async fn live(&mut self, db: &mut Db, id: &str) -> StoreResult<Option<Client>> {
        let mut id = id.to_string();
        for _ in 0..64 {
            self.load(db, std::slice::from_ref(&id)).await?;
            match self.cards.get(&id) {
                None => return Ok(None),
                Some(c) => match &c.merged_into {
                    Some(next) => id = next.clone(),
                    None => return Ok(Some(c.clone())),
                },
            }
        }
        Ok(None)
    }

    /// The card with this id as stored, absorbed or not.
    pub(super) async fn row(&mut self, db: &mut Db, id: &str) -> StoreResult<Option<Client>> {
        self.load(db, std::slice::from_ref(&id.to_string())).await?;
        Ok(self.cards.get(id).cloned())
    }

    /// Every card absorbed into `id`, directly or through a card it absorbed.
    pub(super) async fn absorbed_by(&mut self, db: &mut Db, id: &str) -> StoreResult<Vec<String>> {
        let mut found: BTreeSet<String> = BTreeSet::new();
        let mut frontier = vec![id.to_string()];
        while !frontier.is_empty() && found.len() <= 100_000 {
            let keys: Vec<Param> = frontier.iter().map(|f| f.clone().into()).collect();
            let rows = db
                .select_in(
                    "SELECT id FROM clients WHERE merged_into",
                    "",
                    vec![],
                    keys,
                    "read absorbed cards",
                )
                .await?;
            let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
            self.load(db, &ids).await?;
            let inside: HashSet<&String> = frontier.iter().collect();
            // The batch's own copies decide: a card merged or split earlier in it.
            let next: Vec<String> = self
                .cards
                .values()
                .filter(|c| c.merged_into.as_ref().is_some_and(|m| inside.contains(m)))
                .map(|c| c.id.clone())
                .filter(|c| !found.contains(c) && c != id)
                .collect();
            found.extend(next.iter().cloned());
            frontier = next;
        }
        Ok(found.into_iter().collect())
    }

    /// Stores a new or changed card.
    pub(super) fn put(&mut self, mut client: Client) {
        let old = self.cards.remove(&client.id);
        client.doc.revision = client.next_revision(old.as_ref());
        let (index_changed, name_changed) = match old {
            Some(old) => {
                self.index(&old, false);
                let index_changed = old.merged_into != client.merged_into
                    || handles_of(&old) != handles_of(&client)
                    || old.all_values() != client.all_values();
                (index_changed, old.doc.name != client.doc.name)
            }
            None => {
                self.new.insert(client.id.clone());
                (true, true)
            }
        };
        if index_changed {
            self.dirty_index.insert(client.id.clone());
        }
        if index_changed || name_changed {
            self.dirty_search.insert(client.id.clone());
        }
        self.index(&client, true);
        self.dirty.insert(client.id.clone());
        self.cards.insert(client.id.clone(), client);
    }

    /// Loads handle → card mappings for these handles of one project.
    pub(super) async fn prefetch_handles(
        &mut self,
        db: &mut Db,
        project: &str,
        handles: &[String],
    ) -> StoreResult<()> {
        let missing =
            not_cached(handles, |h| self.db_handles.contains_key(&(project.to_string(), h.to_string())));
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|h| (*h).clone().into()).collect();
        let head = "SELECT handle, client_id FROM client_handles WHERE project_id = $1 AND handle";
        let rows = db.select_in(head, "", vec![project.into()], keys, "read client handles").await?;
        let found: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let ids: Vec<String> = found.values().cloned().collect();
        for handle in missing {
            let id = found.get(handle).cloned();
            self.db_handles.insert((project.to_string(), handle.clone()), id);
        }
        self.load(db, &ids).await
    }

    /// The live card holding a handle (`v:channel:visitor`, `x:external`), if any.
    pub(super) async fn by_handle(
        &mut self,
        db: &mut Db,
        project: &str,
        handle: &str,
    ) -> StoreResult<Option<Client>> {
        let key = (project.to_string(), handle.to_string());
        if let Some(id) = self.mem_handles.get(&key).cloned() {
            return self.live(db, &id).await;
        }
        if !self.db_handles.contains_key(&key) {
            self.prefetch_handles(db, project, &[handle.to_string()]).await?;
        }
        match self.db_handles.get(&key).cloned().flatten() {
            Some(id) => self.live(db, &id).await,
            None => Ok(None),
        }
    }

    /// Loads which values of one field are generic (see [`Holders::Generic`]).
    async fn load_generic(
        &mut self,
        db: &mut Db,
        project: &str,
        field: &str,
        values: &[String],
    ) -> StoreResult<()> {
        let missing = not_cached(values, |v| {
            self.generic.contains_key(&(project.to_string(), field.to_string(), v.to_string()))
        });
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|v| (*v).clone().into()).collect();
        let head = "SELECT value FROM generic_values WHERE project_id = $1 AND field = $2 AND value";
        let fixed = vec![project.into(), field.into()];
        let rows = db.select_in(head, "", fixed, keys, "read generic values").await?;
        let found: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        for v in missing {
            let generic = found.contains(v);
            self.generic.insert((project.to_string(), field.to_string(), v.clone()), generic);
        }
        Ok(())
    }

    /// Whether a value is known to be generic (loaded by a lookup of it this batch).
    pub(super) fn is_generic(&self, project: &str, field: &str, value: &str) -> bool {
        self.generic.get(&(project.to_string(), field.to_string(), value.to_string())) == Some(&true)
    }

    /// Loads which cards hold these values of one field (one statement for a whole batch),
    /// at most `limit + 2` cards a value: more than that many are more than any group may
    /// join, and reading them all would make a shared value cost more with every card.
    pub(super) async fn prefetch_values(
        &mut self,
        db: &mut Db,
        (project, field): (&str, &str),
        values: &[String],
        limit: usize,
    ) -> StoreResult<()> {
        self.load_generic(db, project, field, values).await?;
        let missing = not_cached(values, |v| {
            let key = (project.to_string(), field.to_string(), v.to_string());
            self.db_values.contains_key(&key) || self.generic.get(&key) == Some(&true)
        });
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|v| (*v).clone().into()).collect();
        let head = "SELECT value, client_id FROM (SELECT value, client_id, \
                    ROW_NUMBER() OVER (PARTITION BY value ORDER BY client_id) AS n \
                    FROM client_values WHERE project_id = $1 AND field = $2 AND value";
        let tail = format!(") held WHERE n <= {}", limit.saturating_add(2));
        let fixed = vec![project.into(), field.into()];
        let rows = db.select_in(head, &tail, fixed, keys, "read client values").await?;
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for row in &rows {
            found.entry(row.get(0)).or_default().push(row.get(1));
        }
        let ids: Vec<String> = found.values().flatten().cloned().collect();
        for v in missing {
            let key = (project.to_string(), field.to_string(), v.clone());
            self.db_values.insert(key, found.remove(v).unwrap_or_default());
        }
        self.load(db, &ids).await
    }

    /// See [`super::WorkingSet::value_holders`].
    pub(super) async fn value_holders(
        &mut self,
        db: &mut Db,
        (project, field, value): (&str, &str, &str),
        limit: usize,
    ) -> StoreResult<Holders> {
        let key = (project.to_string(), field.to_string(), value.to_string());
        self.prefetch_values(db, (project, field), std::slice::from_ref(&key.2), limit).await?;
        if self.generic.get(&key) == Some(&true) {
            return Ok(Holders::Generic { cards: 0, newly: false, oldest: Vec::new() });
        }
        let out = self.live_holders(db, &key).await?;
        let people: usize = out.iter().map(|c| c.doc.group_size).sum();
        if people > limit {
            let cards = count_holders(db, &key).await?.max(out.len() as i64);
            self.generic.insert(key.clone(), true);
            self.new_generic.push((key, cards));
            let oldest = out.iter().take(2).map(|c| c.id.clone()).collect();
            return Ok(Holders::Generic { cards, newly: true, oldest });
        }
        Ok(Holders::Cards(out))
    }

    /// The live cards holding a value, oldest first: those the database listed at the start
    /// of the batch and those holding it in memory, each checked against its current state.
    async fn live_holders(&mut self, db: &mut Db, key: &ValueKey) -> StoreResult<Vec<Client>> {
        let (_, field, value) = key;
        let mut ids: BTreeSet<String> = self.db_values[key].iter().cloned().collect();
        ids.extend(self.mem_values.get(key).into_iter().flatten().cloned());
        let mut out: Vec<Client> = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if let Some(c) = self.live(db, &id).await? {
                if c.values(field).contains(value.as_str()) && seen.insert(c.id.clone()) {
                    out.push(c);
                }
            }
        }
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(out)
    }

    /// Writes changed cards, then rewrites the handle and value rows of those whose handles
    /// or values changed.
    pub(super) async fn flush(&mut self, db: &mut Db) -> StoreResult<()> {
        let dirty: Vec<&Client> = self.dirty.iter().filter_map(|id| self.cards.get(id)).collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let rows = dirty.iter().map(|c| (self.new.contains(&c.id), sql::client_params(c))).collect();
        let head = format!("INSERT INTO clients ({})", sql::CLIENT_COLS);
        let tail =
            "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, appeal_count = excluded.appeal_count, \
                    merged_into = excluded.merged_into, doc = excluded.doc";
        let reindexed: Vec<&Client> =
            dirty.iter().copied().filter(|c| self.dirty_index.contains(&c.id)).collect();
        let researched: Vec<&Client> =
            dirty.iter().copied().filter(|c| self.dirty_search.contains(&c.id)).collect();
        db.write_rows((&head, tail), rows, "write clients").await?;
        write_index(db, &reindexed).await?;
        write_search_terms(db, &researched).await
    }

    /// Records the values this batch found generic.
    pub(super) async fn flush_generic(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows = std::mem::take(&mut self.new_generic)
            .into_iter()
            .map(|((p, f, v), cards)| vec![p.into(), f.into(), v.into(), cards.into()])
            .collect();
        let head = "INSERT INTO generic_values (project_id, field, value, cards)";
        db.insert_rows(head, "ON CONFLICT DO NOTHING", rows, "record generic values").await
    }
}

/// How many cards the store holds a value on (once, when the value turns generic).
async fn count_holders(db: &mut Db, (project, field, value): &ValueKey) -> StoreResult<i64> {
    let count = "SELECT COUNT(*) FROM client_values WHERE project_id = $1 AND field = $2 AND value = $3";
    let params = vec![project.clone().into(), field.clone().into(), value.clone().into()];
    let rows = db.fetch_all(count, params, "count value holders").await?;
    let row = rows.first().expect("COUNT(*) returns one row");
    row.try_get(0).map_err(crate::store::StoreError::new("count value holders"))
}

/// Replaces the handle and value rows of these cards (an absorbed card keeps none).
async fn write_index(db: &mut Db, cards: &[&Client]) -> StoreResult<()> {
    let mut handles: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut values: Vec<(String, Vec<Vec<Param>>)> = Vec::new();
    for c in cards {
        let mut rows = Vec::new();
        if c.merged_into.is_none() {
            for h in handles_of(c) {
                handles.insert((c.project_id.clone(), h), c.id.clone());
            }
            for (f, v) in c.all_values() {
                rows.push(vec![c.project_id.clone().into(), f.into(), v.into(), c.id.clone().into()]);
            }
        }
        values.push((c.id.clone(), rows));
    }
    for (sql, params, apart) in stale_value_deletes(&values) {
        match apart {
            true => db.execute_apart(sql, params, "clear client values").await?,
            false => db.execute(sql, params, "clear client values").await?,
        }
    }
    let rows = values.into_iter().flat_map(|(_, rows)| rows).collect();
    let head = "INSERT INTO client_values (project_id, field, value, client_id)";
    db.insert_rows(head, "ON CONFLICT DO NOTHING", rows, "write client values").await?;
    let rows = handles.into_iter().map(|((p, h), id)| vec![p.into(), h.into(), id.into()]).collect();
    let head = "INSERT INTO client_handles (project_id, handle, client_id)";
    let tail = "ON CONFLICT (project_id, handle) DO UPDATE SET client_id = excluded.client_id";
    db.insert_rows(head, tail, rows, "write client handles").await
}

/// Bound values a statement clearing value rows carries at most.
const CLEAR_PARAMS: usize = 8_000;

/// Statements deleting the value rows of these cards (id, the value rows it holds) that
/// they no longer hold, and only those: a row kept is not rewritten, and the
/// insert after them never meets a row they delete (the two may share one statement: see
/// [`Db`]). A card holding more values than one statement lists loses all its rows in a
/// statement that must run apart, before the insert (`true`).
fn stale_value_deletes(cards: &[(String, Vec<Vec<Param>>)]) -> Vec<(String, Vec<Param>, bool)> {
    let size = |kept: &Vec<Vec<Param>>| 1 + 4 * kept.len();
    let mut out = Vec::new();
    let mut rest = cards;
    while let Some((id, kept)) = rest.first() {
        if size(kept) > CLEAR_PARAMS {
            let sql = "DELETE FROM client_values WHERE client_id IN ($1)".to_string();
            out.push((sql, vec![id.clone().into()], true));
            rest = &rest[1..];
            continue;
        }
        let mut total = 0;
        let take = rest
            .iter()
            .take_while(|(_, kept)| {
                total += size(kept);
                total <= CLEAR_PARAMS
            })
            .count();
        let (chunk, later) = rest.split_at(take);
        rest = later;
        let ids: Vec<Param> = chunk.iter().map(|(id, _)| id.clone().into()).collect();
        let kept: Vec<Param> = chunk.iter().flat_map(|(_, kept)| kept.iter().flatten().cloned()).collect();
        let mut sql = format!("DELETE FROM client_values WHERE client_id IN ({})", sql::list(ids.len(), 1));
        if !kept.is_empty() {
            let tuples = sql::value_tuples(kept.len() / 4, 4, ids.len() + 1);
            sql.push_str(&format!(" AND (project_id, field, value, client_id) NOT IN (VALUES {tuples})"));
        }
        out.push((sql, ids.into_iter().chain(kept).collect(), false));
    }
    out
}

/// Replaces the search terms of these cards (SPEC "Read API", search; `model::search`).
pub(crate) async fn write_search_terms(db: &mut Db, cards: &[&Client]) -> StoreResult<()> {
    let ids: Vec<Param> = cards.iter().map(|c| c.id.clone().into()).collect();
    db.execute_in("DELETE FROM search_terms WHERE client_id", vec![], ids, "clear search terms").await?;
    let rows = cards
        .iter()
        .flat_map(|c| {
            search::terms(c).into_iter().map(|t| {
                vec![
                    c.project_id.clone().into(),
                    t.term.into(),
                    c.id.clone().into(),
                    t.field.into(),
                    t.value.into(),
                ]
            })
        })
        .collect();
    let head = "INSERT INTO search_terms (project_id, term, client_id, field, value)";
    db.insert_rows(head, "", rows, "write search terms").await?;
    let words: BTreeSet<(String, String, String)> = cards
        .iter()
        .flat_map(|c| search::vocabulary(c).into_iter().map(|(t, w)| (c.project_id.clone(), t, w)))
        .collect();
    let rows = words.into_iter().map(|(p, t, w)| vec![p.into(), t.into(), w.into()]).collect();
    let head = "INSERT INTO search_words (project_id, trigram, word)";
    db.insert_rows(head, "ON CONFLICT DO NOTHING", rows, "write search words").await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: &str, values: &[(&str, &str)]) -> (String, Vec<Vec<Param>>) {
        let rows = values.iter().map(|(f, v)| ["p", f, v, id].map(Param::from).into()).collect();
        (id.to_string(), rows)
    }

    #[test]
    fn a_card_s_values_it_still_holds_are_kept_out_of_the_delete() {
        let deletes = stale_value_deletes(&[card("a", &[("phone", "1")]), card("b", &[])]);
        assert_eq!(deletes.len(), 1);
        let (sql, params, _) = &deletes[0];
        assert_eq!(
            sql,
            "DELETE FROM client_values WHERE client_id IN ($1,$2) \
             AND (project_id, field, value, client_id) NOT IN (VALUES ($3,$4,$5,$6))"
        );
        let expected: Vec<Param> = ["a", "b", "p", "phone", "1", "a"].map(Param::from).into();
        assert_eq!(params, &expected);
    }

    #[test]
    fn cards_that_hold_no_values_lose_all_their_rows() {
        let deletes = stale_value_deletes(&[card("a", &[])]);
        assert_eq!(deletes[0].0, "DELETE FROM client_values WHERE client_id IN ($1)");
    }

    #[test]
    fn many_values_split_into_statements_under_the_parameter_bound() {
        let values: Vec<(String, String)> = (0..1_500).map(|i| ("phone".into(), i.to_string())).collect();
        let refs: Vec<(&str, &str)> = values.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
        let cards: Vec<_> = (0..4).map(|i| card(&format!("c{i}"), &refs)).collect();
        let deletes = stale_value_deletes(&cards);
        assert_eq!(deletes.len(), 4, "each card's 6,001 parameters fit alone, not two together");
        assert!(deletes.iter().all(|(_, p, apart)| p.len() <= CLEAR_PARAMS && !apart));
        let ids: usize = deletes.iter().map(|(sql, _, _)| sql.matches("client_id IN ($1)").count()).sum();
        assert_eq!(ids, 4);
    }

    #[test]
    fn a_card_holding_more_values_than_a_statement_lists_is_cleared_apart_before_the_insert() {
        let values: Vec<(String, String)> = (0..2_500).map(|i| (format!("f{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = values.iter().map(|(f, v)| (f.as_str(), v.as_str())).collect();
        let deletes = stale_value_deletes(&[card("small", &[]), card("huge", &refs), card("next", &[])]);
        let shapes: Vec<(usize, bool)> = deletes.iter().map(|(_, p, apart)| (p.len(), *apart)).collect();
        assert_eq!(shapes, [(1, false), (1, true), (1, false)]);
        assert_eq!(deletes[1].0, "DELETE FROM client_values WHERE client_id IN ($1)");
    }
}
