//! The working set of one batch: a read-through cache over the batch's transaction with
//! buffered writes, flushed in a few multi-row statements at commit.
//!
//! Why: one round trip per read and per write would cap PostgreSQL at a few thousand inputs
//! per second. Within the transaction nobody else changes what we read (SQLite has one writer;
//! PostgreSQL instances take the batch's project locks first), so a row read once stays valid
//! until commit, and the cache is the truth for everything the batch touched.
//!
//! Secondary lookups (handle → card, value → cards, visitor → open appeal) combine what the
//! database held at the start of the batch with in-memory indexes of loaded entities, and
//! every answer is checked against the in-memory entity, so a card merged or an appeal closed
//! earlier in the batch is never returned stale.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sqlx::{Any, Row, Transaction};

use super::sql::{self, Param};
use super::{Backend, StoreError, StoreResult};
use crate::emit::Record;
use crate::model::{Appeal, Client, Millis, StoredMessage};

type ProjectKey = (String, String);
type ValueKey = (String, String, String);

pub struct WorkingSet {
    tx: Transaction<'static, Any>,
    backend: Backend,

    clients: HashMap<String, Client>,
    dirty_clients: BTreeSet<String>,
    /// Cards this batch created: written only where their id is free (see [`insert_new`]).
    new_clients: HashSet<String>,
    /// Cards whose handles or values changed: only these rewrite their index rows.
    dirty_index: BTreeSet<String>,
    mem_handles: HashMap<ProjectKey, String>,
    db_handles: HashMap<ProjectKey, Option<String>>,
    mem_values: HashMap<ValueKey, BTreeSet<String>>,
    db_values: HashMap<ValueKey, Vec<String>>,
    /// Whether a value is generic (held beyond the group limit), as loaded or found.
    generic: HashMap<ValueKey, bool>,
    /// Values found generic by this batch, with how many cards held them.
    new_generic: Vec<(ValueKey, i64)>,
    merges: Vec<(String, Vec<String>)>,

    appeals: HashMap<String, Appeal>,
    dirty_appeals: BTreeSet<String>,
    new_appeals: HashSet<String>,
    /// (project, conversation key) → its open appeal.
    mem_open: HashMap<ProjectKey, String>,
    db_open: HashMap<ProjectKey, Option<String>>,
    mem_numbers: HashMap<(String, i64), String>,
    idle_partition: Option<String>,
    idle: BTreeSet<(Millis, String)>,
    counters: HashMap<String, i64>,
    dirty_counters: BTreeSet<String>,

    messages: HashMap<ProjectKey, Option<StoredMessage>>,
    dirty_messages: BTreeSet<ProjectKey>,
    new_messages: HashSet<ProjectKey>,

    applied: HashMap<ProjectKey, bool>,
    /// Ids written to `applied_inputs` by [`WorkingSet::prefetch_applied`] already.
    claimed: HashSet<ProjectKey>,
    new_applied: Vec<ProjectKey>,

    partitions: HashMap<String, (Option<Millis>, Option<i64>)>,
    dirty_partitions: BTreeSet<String>,

    /// Bot block entries of this batch by (project, scenario, block), added on commit.
    block_entries: BTreeMap<(String, String, String), i64>,
}

/// Each absorbed card → the card it finally lives on in, following merges of this batch in
/// order (a survivor absorbed later passes its absorbed cards on to its own survivor).
fn final_survivors(merges: &[(String, Vec<String>)]) -> BTreeMap<String, String> {
    let mut into: BTreeMap<String, String> = BTreeMap::new();
    for (survivor, absorbed) in merges {
        for id in absorbed {
            into.insert(id.clone(), survivor.clone());
        }
    }
    let resolve = |start: &String| {
        let mut at = start;
        for _ in 0..=into.len() {
            match into.get(at) {
                Some(next) => at = next,
                None => break,
            }
        }
        at.clone()
    };
    into.keys().map(|id| (id.clone(), resolve(id))).collect()
}

/// Who holds a value, as [`WorkingSet::value_holders`] sees it.
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

/// Writes a table's rows: (created by this batch, key, params). Existing rows are upserted;
/// created ones are inserted only where their key is free, so a new card, appeal or message
/// whose id another row holds (a crafted input) is a clash the caller refuses, and never
/// overwrites that row.
async fn write_rows(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    (head, upsert_tail, key): (&str, &str, &str),
    rows: Vec<(bool, String, Vec<Param>)>,
    context: &'static str,
) -> StoreResult<()> {
    let (created, existing): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(new, _, _)| *new);
    sql::insert_rows(tx, backend, head, upsert_tail, existing.into_iter().map(|r| r.2).collect(), context)
        .await?;
    let wanted: BTreeSet<String> = created.iter().map(|r| r.1.clone()).collect();
    let tail = format!("ON CONFLICT DO NOTHING RETURNING {key}");
    let params = created.into_iter().map(|r| r.2).collect();
    let written = sql::insert_rows_returning(tx, backend, head, &tail, params, context).await?;
    let written: BTreeSet<String> = written.iter().map(|r| r.get(0)).collect();
    match wanted.difference(&written).next() {
        Some(taken) => Err(StoreError::clash(
            context,
            format!("id {:?} is already another row's", crate::text::shorten(taken)),
        )),
        None => Ok(()),
    }
}

/// The handle of a visitor of a channel.
pub fn visitor_handle(channel_id: &str, visitor_id: &str) -> String {
    format!("v:{channel_id}:{visitor_id}")
}

/// The handle of an external ID.
pub fn external_handle(external_id: &str) -> String {
    format!("x:{external_id}")
}

/// The distinct keys a lookup still has to read from the database.
fn not_cached(keys: &[String], cached: impl Fn(&str) -> bool) -> BTreeSet<&String> {
    keys.iter().filter(|k| !cached(k)).collect()
}

fn handles_of(c: &Client) -> Vec<String> {
    let visitors = c.doc.visitors.iter().map(|v| visitor_handle(&v.channel_id, &v.visitor_id));
    visitors.chain(c.doc.external_ids.iter().map(|x| external_handle(x))).collect()
}

impl WorkingSet {
    pub(super) fn new(tx: Transaction<'static, Any>, backend: Backend) -> Self {
        WorkingSet {
            tx,
            backend,
            clients: HashMap::new(),
            dirty_clients: BTreeSet::new(),
            new_clients: HashSet::new(),
            dirty_index: BTreeSet::new(),
            mem_handles: HashMap::new(),
            db_handles: HashMap::new(),
            mem_values: HashMap::new(),
            db_values: HashMap::new(),
            generic: HashMap::new(),
            new_generic: Vec::new(),
            merges: Vec::new(),
            appeals: HashMap::new(),
            dirty_appeals: BTreeSet::new(),
            new_appeals: HashSet::new(),
            mem_open: HashMap::new(),
            db_open: HashMap::new(),
            mem_numbers: HashMap::new(),
            idle_partition: None,
            idle: BTreeSet::new(),
            counters: HashMap::new(),
            dirty_counters: BTreeSet::new(),
            messages: HashMap::new(),
            dirty_messages: BTreeSet::new(),
            new_messages: HashSet::new(),

            block_entries: BTreeMap::new(),
            applied: HashMap::new(),
            claimed: HashSet::new(),
            new_applied: Vec::new(),
            partitions: HashMap::new(),
            dirty_partitions: BTreeSet::new(),
        }
    }

    /// PostgreSQL: serialise instances per project for the rest of the transaction. Locks are
    /// taken in sorted order so two batches can never wait on each other in a cycle.
    pub async fn lock_projects(&mut self, projects: &BTreeSet<String>) -> StoreResult<()> {
        if self.backend != Backend::Postgres {
            return Ok(());
        }
        for project in projects {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(format!("appealflow:{project}"))
                .execute(&mut *self.tx)
                .await
                .map_err(StoreError::new("lock project"))?;
        }
        Ok(())
    }

    // ---- inputs already applied -------------------------------------------------------

    /// Claims these input ids for the batch: one `INSERT ... ON CONFLICT DO NOTHING
    /// RETURNING` both tells which ids earlier batches applied (not returned) and writes the
    /// rest, so a new input costs no separate read. Every input with an id reaches
    /// [`WorkingSet::mark_applied`] or fails the whole transaction, so a claimed id is never
    /// left marked without its input applied.
    pub async fn prefetch_applied(&mut self, ids: &[(String, String)]) -> StoreResult<()> {
        let wanted: BTreeSet<&(String, String)> =
            ids.iter().filter(|key| !self.applied.contains_key(*key)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = wanted.iter().map(|(p, id)| vec![p.clone().into(), id.clone().into()]).collect();
        let claimed = sql::insert_rows_returning(
            &mut self.tx,
            self.backend,
            "INSERT INTO applied_inputs (project_id, input_id)",
            "ON CONFLICT DO NOTHING RETURNING project_id, input_id",
            rows,
            "claim applied inputs",
        )
        .await?;
        for row in &claimed {
            self.claimed.insert((row.get(0), row.get(1)));
        }
        for key in wanted {
            let applied_before = !self.claimed.contains(key);
            self.applied.insert(key.clone(), applied_before);
        }
        Ok(())
    }

    pub async fn is_applied(&mut self, project: &str, id: &str) -> StoreResult<bool> {
        let key = (project.to_string(), id.to_string());
        if !self.applied.contains_key(&key) {
            self.prefetch_applied(std::slice::from_ref(&key)).await?;
        }
        Ok(self.applied.get(&key).copied().unwrap_or(false))
    }

    pub fn mark_applied(&mut self, project: &str, id: &str) {
        let key = (project.to_string(), id.to_string());
        if self.applied.insert(key.clone(), true) != Some(true) && !self.claimed.contains(&key) {
            self.new_applied.push(key);
        }
    }

    // ---- clients ------------------------------------------------------------------------

    fn index_client(&mut self, client: &Client, add: bool) {
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

    fn cache_client(&mut self, client: Client) {
        if self.clients.contains_key(&client.id) {
            return;
        }
        self.index_client(&client, true);
        self.clients.insert(client.id.clone(), client);
    }

    /// Loads cards by id into the cache (already cached ones are kept: they may be newer).
    pub async fn load_clients(&mut self, ids: &[String]) -> StoreResult<()> {
        let missing: Vec<Param> = ids
            .iter()
            .filter(|id| !self.clients.contains_key(*id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|id| id.clone().into())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let head = format!("SELECT {} FROM clients WHERE id", sql::CLIENT_COLS);
        let rows =
            sql::select_in(&mut self.tx, self.backend, &head, "", vec![], missing, "load clients").await?;
        for row in &rows {
            let client = sql::client_from_row(row)?;
            self.cache_client(client);
        }
        Ok(())
    }

    /// The card with this id, following merges to the card that absorbed it.
    pub async fn live_client(&mut self, id: &str) -> StoreResult<Option<Client>> {
        let mut id = id.to_string();
        for _ in 0..64 {
            self.load_clients(std::slice::from_ref(&id)).await?;
            match self.clients.get(&id) {
                None => return Ok(None),
                Some(c) => match &c.merged_into {
                    Some(next) => id = next.clone(),
                    None => return Ok(Some(c.clone())),
                },
            }
        }
        Ok(None)
    }

    /// Stores a new or changed card.
    pub fn put_client(&mut self, client: Client) {
        let index_changed = match self.clients.remove(&client.id) {
            Some(old) => {
                self.index_client(&old, false);
                old.merged_into != client.merged_into
                    || handles_of(&old) != handles_of(&client)
                    || old.all_values() != client.all_values()
            }
            None => {
                self.new_clients.insert(client.id.clone());
                true
            }
        };
        if index_changed {
            self.dirty_index.insert(client.id.clone());
        }
        self.index_client(&client, true);
        self.dirty_clients.insert(client.id.clone());
        self.clients.insert(client.id.clone(), client);
    }

    /// Loads handle → card mappings for these handles of one project.
    pub async fn prefetch_handles(&mut self, project: &str, handles: &[String]) -> StoreResult<()> {
        let missing =
            not_cached(handles, |h| self.db_handles.contains_key(&(project.to_string(), h.to_string())));
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|h| (*h).clone().into()).collect();
        let head = "SELECT handle, client_id FROM client_handles WHERE project_id = $1 AND handle";
        let rows = sql::select_in(
            &mut self.tx,
            self.backend,
            head,
            "",
            vec![project.into()],
            keys,
            "read client handles",
        )
        .await?;
        let found: HashMap<String, String> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let ids: Vec<String> = found.values().cloned().collect();
        for handle in missing {
            let id = found.get(handle).cloned();
            self.db_handles.insert((project.to_string(), handle.clone()), id);
        }
        self.load_clients(&ids).await
    }

    /// The live card holding a handle (`v:channel:visitor`, `x:external`), if any.
    pub async fn client_by_handle(&mut self, project: &str, handle: &str) -> StoreResult<Option<Client>> {
        let key = (project.to_string(), handle.to_string());
        if let Some(id) = self.mem_handles.get(&key).cloned() {
            return self.live_client(&id).await;
        }
        if !self.db_handles.contains_key(&key) {
            self.prefetch_handles(project, &[handle.to_string()]).await?;
        }
        match self.db_handles.get(&key).cloned().flatten() {
            Some(id) => self.live_client(&id).await,
            None => Ok(None),
        }
    }

    /// Loads which values of one field are generic (see [`Holders::Generic`]).
    async fn load_generic(&mut self, project: &str, field: &str, values: &[String]) -> StoreResult<()> {
        let missing = not_cached(values, |v| {
            self.generic.contains_key(&(project.to_string(), field.to_string(), v.to_string()))
        });
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|v| (*v).clone().into()).collect();
        let head = "SELECT value FROM generic_values WHERE project_id = $1 AND field = $2 AND value";
        let fixed = vec![project.into(), field.into()];
        let rows =
            sql::select_in(&mut self.tx, self.backend, head, "", fixed, keys, "read generic values").await?;
        let found: HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        for v in missing {
            let generic = found.contains(v);
            self.generic.insert((project.to_string(), field.to_string(), v.clone()), generic);
        }
        Ok(())
    }

    /// Whether a value is known to be generic (loaded by a lookup of it this batch).
    pub fn is_generic(&self, project: &str, field: &str, value: &str) -> bool {
        self.generic.get(&(project.to_string(), field.to_string(), value.to_string())) == Some(&true)
    }

    /// Loads which cards hold these values of one field (one statement for a whole batch),
    /// at most `limit + 2` cards a value: more than that many are more than any group may
    /// join, and reading them all would make a shared value cost more with every card.
    pub async fn prefetch_values(
        &mut self,
        project: &str,
        field: &str,
        values: &[String],
        limit: usize,
    ) -> StoreResult<()> {
        self.load_generic(project, field, values).await?;
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
        let rows = sql::select_in(&mut self.tx, self.backend, head, &tail, fixed, keys, "read client values")
            .await?;
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for row in &rows {
            found.entry(row.get(0)).or_default().push(row.get(1));
        }
        let ids: Vec<String> = found.values().flatten().cloned().collect();
        for v in missing {
            let key = (project.to_string(), field.to_string(), v.clone());
            self.db_values.insert(key, found.remove(v).unwrap_or_default());
        }
        self.load_clients(&ids).await
    }

    /// The live cards holding `value` in `field`, oldest first; or, when they stand for more
    /// people than `limit` (the project's `max_merge_group`), [`Holders::Generic`]: the value
    /// can never join them all, so it stops being compared, and its cost stays flat however
    /// many more cards hold it.
    pub async fn value_holders(
        &mut self,
        project: &str,
        field: &str,
        value: &str,
        limit: usize,
    ) -> StoreResult<Holders> {
        let key = (project.to_string(), field.to_string(), value.to_string());
        self.prefetch_values(project, field, std::slice::from_ref(&key.2), limit).await?;
        if self.generic.get(&key) == Some(&true) {
            return Ok(Holders::Generic { cards: 0, newly: false, oldest: Vec::new() });
        }
        let mut ids: BTreeSet<String> = self.db_values[&key].iter().cloned().collect();
        ids.extend(self.mem_values.get(&key).into_iter().flatten().cloned());
        let mut out: Vec<Client> = Vec::new();
        let mut seen = HashSet::new();
        for id in ids {
            if let Some(c) = self.live_client(&id).await? {
                if c.values(field).contains(value) && seen.insert(c.id.clone()) {
                    out.push(c);
                }
            }
        }
        let people: usize = out.iter().map(|c| c.doc.group_size).sum();
        out.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        if people > limit {
            let cards = self.count_holders(&key).await?.max(out.len() as i64);
            self.generic.insert(key.clone(), true);
            self.new_generic.push((key, cards));
            let oldest = out.iter().take(2).map(|c| c.id.clone()).collect();
            return Ok(Holders::Generic { cards, newly: true, oldest });
        }
        Ok(Holders::Cards(out))
    }

    /// How many cards the store holds a value on (once, when the value turns generic).
    async fn count_holders(&mut self, (project, field, value): &ValueKey) -> StoreResult<i64> {
        let count = "SELECT COUNT(*) FROM client_values WHERE project_id = $1 AND field = $2 AND value = $3";
        sqlx::query_scalar(count)
            .bind(project)
            .bind(field)
            .bind(value)
            .fetch_one(&mut *self.tx)
            .await
            .map_err(StoreError::new("count value holders"))
    }

    /// Records that `absorbed` cards now live on in `survivor`; their appeals follow it.
    pub fn record_merge(&mut self, survivor: &str, absorbed: &[String]) {
        let moved: Vec<String> =
            self.appeals.values().filter(|a| absorbed.contains(&a.client_id)).map(|a| a.id.clone()).collect();
        for id in moved {
            if let Some(mut appeal) = self.appeals.get(&id).cloned() {
                appeal.client_id = survivor.to_string();
                self.put_appeal(appeal);
            }
        }
        self.merges.push((survivor.to_string(), absorbed.to_vec()));
    }

    // ---- appeals ------------------------------------------------------------------------

    fn deadline(&self, a: &Appeal) -> Option<Millis> {
        a.close_deadline.filter(|_| a.is_open())
    }

    fn index_appeal(&mut self, a: &Appeal, add: bool) {
        let open_key = (a.project_id.clone(), a.key.clone());
        let idle_entry = self.deadline(a).map(|d| (d, a.id.clone()));
        let in_partition = self.idle_partition.as_deref() == Some(a.partition.as_str());
        if add {
            self.mem_numbers.insert((a.project_id.clone(), a.number), a.id.clone());
            if a.is_open() {
                self.mem_open.insert(open_key, a.id.clone());
                if let (Some(e), true) = (idle_entry, in_partition) {
                    self.idle.insert(e);
                }
            }
        } else {
            if self.mem_open.get(&open_key) == Some(&a.id) {
                self.mem_open.remove(&open_key);
            }
            if let Some(e) = idle_entry {
                self.idle.remove(&e);
            }
        }
    }

    fn cache_appeal(&mut self, a: Appeal) {
        if self.appeals.contains_key(&a.id) {
            return;
        }
        self.index_appeal(&a, true);
        self.appeals.insert(a.id.clone(), a);
    }

    pub fn put_appeal(&mut self, a: Appeal) {
        match self.appeals.remove(&a.id) {
            Some(old) => self.index_appeal(&old, false),
            None => {
                self.new_appeals.insert(a.id.clone());
            }
        }
        self.index_appeal(&a, true);
        self.dirty_appeals.insert(a.id.clone());
        self.appeals.insert(a.id.clone(), a);
    }

    async fn load_appeals_where(
        &mut self,
        filter: &str,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<String>> {
        let sql = format!("SELECT {} FROM appeals WHERE {filter}", sql::APPEAL_COLS);
        let rows = sql::bind_all(sqlx::query(&sql), params)
            .fetch_all(&mut *self.tx)
            .await
            .map_err(StoreError::new(context))?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let appeal = sql::appeal_from_row(row)?;
            ids.push(appeal.id.clone());
            self.cache_appeal(appeal);
        }
        Ok(ids)
    }

    /// Loads the open appeals of these conversations (`model::conversation_key`) of one project.
    pub async fn prefetch_open_appeals(&mut self, project: &str, keys: &[String]) -> StoreResult<()> {
        let missing = not_cached(keys, |k| self.db_open.contains_key(&(project.to_string(), k.to_string())));
        if missing.is_empty() {
            return Ok(());
        }
        let params: Vec<Param> = missing.iter().map(|k| (*k).clone().into()).collect();
        let head = format!(
            "SELECT {} FROM appeals WHERE project_id = $1 AND status = 'open' AND conversation_key",
            sql::APPEAL_COLS
        );
        let rows = sql::select_in(
            &mut self.tx,
            self.backend,
            &head,
            "",
            vec![project.into()],
            params,
            "read open appeals",
        )
        .await?;
        let mut found: HashMap<String, String> = HashMap::new();
        let mut cards = Vec::with_capacity(rows.len());
        for row in &rows {
            let appeal = sql::appeal_from_row(row)?;
            found.insert(appeal.key.clone(), appeal.id.clone());
            cards.push(appeal.client_id.clone());
            self.cache_appeal(appeal);
        }
        for key in missing {
            self.db_open.insert((project.to_string(), key.clone()), found.get(key).cloned());
        }
        self.load_clients(&cards).await
    }

    /// The open appeal of a conversation, if any.
    pub async fn open_appeal(&mut self, project: &str, key: &str) -> StoreResult<Option<Appeal>> {
        let cache_key = (project.to_string(), key.to_string());
        if let Some(id) = self.mem_open.get(&cache_key) {
            return Ok(self.appeals.get(id).cloned());
        }
        if !self.db_open.contains_key(&cache_key) {
            self.prefetch_open_appeals(project, &[key.to_string()]).await?;
        }
        let id = self.db_open.get(&cache_key).cloned().flatten();
        Ok(id.and_then(|id| self.appeals.get(&id)).filter(|a| a.is_open() && a.key == key).cloned())
    }

    pub async fn appeal_by_id(&mut self, id: &str) -> StoreResult<Option<Appeal>> {
        if !self.appeals.contains_key(id) {
            self.load_appeals_where("id = $1", vec![id.into()], "read appeal").await?;
        }
        Ok(self.appeals.get(id).cloned())
    }

    pub async fn appeal_by_number(&mut self, project: &str, number: i64) -> StoreResult<Option<Appeal>> {
        let key = (project.to_string(), number);
        if !self.mem_numbers.contains_key(&key) {
            self.load_appeals_where(
                "project_id = $1 AND number = $2",
                vec![project.into(), number.into()],
                "read appeal",
            )
            .await?;
        }
        Ok(self.mem_numbers.get(&key).and_then(|id| self.appeals.get(id)).cloned())
    }

    /// Loads the appeals of `partition` that go idle before `until`, and tracks every open
    /// appeal of that partition the batch touches, for [`WorkingSet::due_idle`].
    pub async fn prefetch_idle(&mut self, partition: &str, until: Millis) -> StoreResult<()> {
        self.idle_partition = Some(partition.to_string());
        let filter =
            "partition_key = $1 AND status = 'open' AND close_deadline < $2 ORDER BY close_deadline, id";
        self.load_appeals_where(filter, vec![partition.into(), until.into()], "read idle appeals").await?;
        let open: Vec<Appeal> = self.appeals.values().filter(|a| a.partition == partition).cloned().collect();
        for a in &open {
            if let Some(d) = self.deadline(a) {
                self.idle.insert((d, a.id.clone()));
            }
        }
        // Closing an appeal reads its card: one statement now instead of one per appeal.
        let cards: Vec<String> = open.into_iter().map(|a| a.client_id).collect();
        self.load_clients(&cards).await
    }

    /// Open appeals of the batch partition whose deadline is before `clock`, oldest first.
    pub fn due_idle(&mut self, clock: Millis) -> Vec<Appeal> {
        let due: Vec<(Millis, String)> = self.idle.iter().take_while(|(d, _)| *d < clock).cloned().collect();
        due.iter().filter_map(|(_, id)| self.appeals.get(id).cloned()).collect()
    }

    /// Allocates the next appeal number of a project.
    pub async fn next_appeal_number(&mut self, project: &str) -> StoreResult<i64> {
        if !self.counters.contains_key(project) {
            let row = sqlx::query("SELECT next_appeal_number FROM project_state WHERE project_id = $1")
                .bind(project)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(StoreError::new("read appeal counter"))?;
            self.counters.insert(project.to_string(), row.map(|r| r.get(0)).unwrap_or(1));
        }
        let next = self.counters.get_mut(project).expect("loaded above");
        let number = *next;
        *next += 1;
        self.dirty_counters.insert(project.to_string());
        Ok(number)
    }

    // ---- messages -----------------------------------------------------------------------

    pub async fn prefetch_messages(&mut self, project: &str, ids: &[String]) -> StoreResult<()> {
        let missing =
            not_cached(ids, |id| self.messages.contains_key(&(project.to_string(), id.to_string())));
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|id| (*id).clone().into()).collect();
        let head = "SELECT project_id, appeal_id, doc FROM messages WHERE project_id = $1 AND id";
        let rows =
            sql::select_in(&mut self.tx, self.backend, head, "", vec![project.into()], keys, "read messages")
                .await?;
        for row in &rows {
            let m = sql::message_from_row(row)?;
            self.messages.insert((project.to_string(), m.message.id.clone()), Some(m));
        }
        for id in missing {
            self.messages.entry((project.to_string(), id.clone())).or_insert(None);
        }
        Ok(())
    }

    pub async fn message(&mut self, project: &str, id: &str) -> StoreResult<Option<StoredMessage>> {
        self.prefetch_messages(project, &[id.to_string()]).await?;
        Ok(self.messages.get(&(project.to_string(), id.to_string())).cloned().flatten())
    }

    /// Stores a message this batch wrote: a row of its own, refused at commit if its id is
    /// another message's (a client reusing the id of an operator's message, say).
    pub fn add_message(&mut self, m: StoredMessage) {
        self.new_messages.insert((m.project_id.clone(), m.message.id.clone()));
        self.put_message(m);
    }

    /// Stores a change to a message read from the store (a delivery status).
    pub fn put_message(&mut self, m: StoredMessage) {
        let key = (m.project_id.clone(), m.message.id.clone());
        self.dirty_messages.insert(key.clone());

        self.messages.insert(key, Some(m));
    }

    // ---- partitions ---------------------------------------------------------------------

    /// The partition's event-time clock (the latest input time seen), if it has one.
    pub async fn clock(&mut self, partition: &str) -> StoreResult<Option<Millis>> {
        if !self.partitions.contains_key(partition) {
            let row = sqlx::query("SELECT clock, next_offset FROM partitions WHERE partition_key = $1")
                .bind(partition)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err(StoreError::new("read partition"))?;
            let state = row.map(|r| (Some(r.get(0)), r.get(1))).unwrap_or((None, None));
            self.partitions.insert(partition.to_string(), state);
        }
        Ok(self.partitions[partition].0)
    }

    pub async fn advance_clock(&mut self, partition: &str, to: Millis) -> StoreResult<Millis> {
        let current = self.clock(partition).await?;
        let clock = current.map_or(to, |c| c.max(to));
        if current != Some(clock) {
            self.partitions.get_mut(partition).expect("loaded by clock()").0 = Some(clock);
            self.dirty_partitions.insert(partition.to_string());
        }
        Ok(clock)
    }

    /// Records the next offset to consume, committed with the batch's state.
    pub async fn set_next_offset(&mut self, partition: &str, offset: i64) -> StoreResult<()> {
        self.clock(partition).await?;
        self.partitions.get_mut(partition).expect("loaded by clock()").1 = Some(offset);
        self.dirty_partitions.insert(partition.to_string());
        Ok(())
    }

    /// Counts one entry into a bot block (the scenario report reads the totals).
    pub fn count_block_entry(&mut self, project_id: &str, scenario_id: &str, block_id: &str) {
        let key = (project_id.to_string(), scenario_id.to_string(), block_id.to_string());
        *self.block_entries.entry(key).or_default() += 1;
    }

    // ---- commit -------------------------------------------------------------------------

    /// Writes everything the batch changed plus its output records, then commits.
    pub async fn commit(mut self, batch_id: &str, records: &[Record]) -> StoreResult<()> {
        let t = std::time::Instant::now();
        let mut marks = Vec::new();
        self.flush_counters().await?;
        self.flush_merges().await?;
        marks.push(("merges", t.elapsed()));
        self.flush_clients().await?;
        marks.push(("clients", t.elapsed()));
        self.flush_appeals().await?;
        marks.push(("appeals", t.elapsed()));
        self.flush_messages().await?;
        marks.push(("messages", t.elapsed()));
        self.flush_applied().await?;
        marks.push(("applied", t.elapsed()));
        self.flush_partitions().await?;
        self.flush_block_entries().await?;
        self.flush_generic().await?;
        self.flush_outbox(batch_id, records).await?;
        marks.push(("outbox", t.elapsed()));
        self.tx.commit().await.map_err(StoreError::new("commit batch"))?;
        marks.push(("commit", t.elapsed()));
        tracing::debug!(?marks, "flushed");
        Ok(())
    }

    async fn flush_counters(&mut self) -> StoreResult<()> {
        let rows =
            self.dirty_counters.iter().map(|p| vec![p.clone().into(), self.counters[p].into()]).collect();
        let head = "INSERT INTO project_state (project_id, next_appeal_number)";
        let tail = "ON CONFLICT (project_id) DO UPDATE SET next_appeal_number = excluded.next_appeal_number";
        sql::insert_rows(&mut self.tx, self.backend, head, tail, rows, "write appeal counters").await
    }

    /// Moves the appeals of absorbed cards to their final survivor and repoints cards merged
    /// into them earlier, in two statements for the whole batch whatever the merge count.
    async fn flush_merges(&mut self) -> StoreResult<()> {
        let rows: Vec<Vec<Param>> = final_survivors(&std::mem::take(&mut self.merges))
            .into_iter()
            .map(|(absorbed, survivor)| vec![absorbed.into(), survivor.into()])
            .collect();
        for (table, column, context) in [
            ("appeals", "client_id", "move appeals to survivor"),
            ("clients", "merged_into", "repoint merged cards"),
        ] {
            for chunk in rows.chunks(sql::CHUNK_ROWS) {
                let statement = format!(
                    "WITH m (absorbed, survivor) AS (VALUES {}) \
                     UPDATE {table} SET {column} = m.survivor FROM m WHERE {table}.{column} = m.absorbed",
                    sql::value_tuples(chunk.len(), 2, 1)
                );
                let params = chunk.iter().flatten().cloned().collect();
                sql::bind_all(sqlx::query(&sql::dialect(self.backend, statement)), params)
                    .execute(&mut *self.tx)
                    .await
                    .map_err(StoreError::new(context))?;
            }
        }
        Ok(())
    }

    async fn flush_clients(&mut self) -> StoreResult<()> {
        let dirty: Vec<&Client> = self.dirty_clients.iter().filter_map(|id| self.clients.get(id)).collect();
        if dirty.is_empty() {
            return Ok(());
        }
        let rows = dirty
            .iter()
            .map(|c| (self.new_clients.contains(&c.id), c.id.clone(), sql::client_params(c)))
            .collect();
        let head = format!("INSERT INTO clients ({})", sql::CLIENT_COLS);
        let tail =
            "ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, appeal_count = excluded.appeal_count, \
                    merged_into = excluded.merged_into, doc = excluded.doc";
        let reindexed: Vec<&Client> =
            dirty.iter().copied().filter(|c| self.dirty_index.contains(&c.id)).collect();
        let ids: Vec<Param> = reindexed.iter().map(|c| c.id.clone().into()).collect();
        let mut handles: BTreeMap<(String, String), String> = BTreeMap::new();
        let mut values: BTreeSet<(String, String, String, String)> = BTreeSet::new();
        for c in reindexed.iter().filter(|c| c.merged_into.is_none()) {
            for h in handles_of(c) {
                handles.insert((c.project_id.clone(), h), c.id.clone());
            }
            for (f, v) in c.all_values() {
                values.insert((c.project_id.clone(), f, v, c.id.clone()));
            }
        }
        write_rows(&mut self.tx, self.backend, (&head, tail, "id"), rows, "write clients").await?;
        sql::execute_in(
            &mut self.tx,
            self.backend,
            "DELETE FROM client_values WHERE client_id",
            vec![],
            ids,
            "clear client values",
        )
        .await?;
        let rows =
            values.into_iter().map(|(p, f, v, id)| vec![p.into(), f.into(), v.into(), id.into()]).collect();
        sql::insert_rows(
            &mut self.tx,
            self.backend,
            "INSERT INTO client_values (project_id, field, value, client_id)",
            "",
            rows,
            "write client values",
        )
        .await?;
        let rows = handles.into_iter().map(|((p, h), id)| vec![p.into(), h.into(), id.into()]).collect();
        let tail = "ON CONFLICT (project_id, handle) DO UPDATE SET client_id = excluded.client_id";
        sql::insert_rows(
            &mut self.tx,
            self.backend,
            "INSERT INTO client_handles (project_id, handle, client_id)",
            tail,
            rows,
            "write client handles",
        )
        .await
    }

    async fn flush_appeals(&mut self) -> StoreResult<()> {
        let rows = self
            .dirty_appeals
            .iter()
            .filter_map(|id| self.appeals.get(id))
            .map(|a| (self.new_appeals.contains(&a.id), a.id.clone(), sql::appeal_params(a)))
            .collect();
        let head = format!("INSERT INTO appeals ({})", sql::APPEAL_COLS);
        let tail = "ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, status = excluded.status, \
                    last_message_at = excluded.last_message_at, doc = excluded.doc, close_deadline = excluded.close_deadline, \
                    visitor_id = excluded.visitor_id, conversation_key = excluded.conversation_key";
        write_rows(&mut self.tx, self.backend, (&head, tail, "id"), rows, "write appeals").await
    }

    async fn flush_messages(&mut self) -> StoreResult<()> {
        let rows = self
            .dirty_messages
            .iter()
            .filter_map(|k| Some((self.new_messages.contains(k), self.messages.get(k)?.as_ref()?)))
            .map(|(new, m)| {
                let doc = serde_json::to_string(&m.message).expect("message serialises");
                let params = vec![
                    m.project_id.clone().into(),
                    m.message.id.clone().into(),
                    m.appeal_id.clone().into(),
                    doc.into(),
                ];
                (new, m.message.id.clone(), params)
            })
            .collect();
        let head = "INSERT INTO messages (project_id, id, appeal_id, doc)";
        let tail =
            "ON CONFLICT (project_id, id) DO UPDATE SET appeal_id = excluded.appeal_id, doc = excluded.doc";
        write_rows(&mut self.tx, self.backend, (head, tail, "id"), rows, "write messages").await
    }

    async fn flush_applied(&mut self) -> StoreResult<()> {
        let rows = self.new_applied.iter().map(|(p, id)| vec![p.clone().into(), id.clone().into()]).collect();
        sql::insert_rows(
            &mut self.tx,
            self.backend,
            "INSERT INTO applied_inputs (project_id, input_id)",
            "",
            rows,
            "write applied inputs",
        )
        .await
    }

    async fn flush_partitions(&mut self) -> StoreResult<()> {
        let rows = self
            .dirty_partitions
            .iter()
            .map(|k| {
                let (clock, offset) = self.partitions[k];
                vec![k.clone().into(), clock.unwrap_or(0).into(), offset.into()]
            })
            .collect();
        let head = "INSERT INTO partitions (partition_key, clock, next_offset)";
        let tail = "ON CONFLICT (partition_key) DO UPDATE SET clock = excluded.clock, \
                    next_offset = COALESCE(excluded.next_offset, partitions.next_offset)";
        sql::insert_rows(&mut self.tx, self.backend, head, tail, rows, "write partitions").await
    }

    async fn flush_generic(&mut self) -> StoreResult<()> {
        let rows = std::mem::take(&mut self.new_generic)
            .into_iter()
            .map(|((p, f, v), cards)| vec![p.into(), f.into(), v.into(), cards.into()])
            .collect();
        let head = "INSERT INTO generic_values (project_id, field, value, cards)";
        sql::insert_rows(
            &mut self.tx,
            self.backend,
            head,
            "ON CONFLICT DO NOTHING",
            rows,
            "record generic values",
        )
        .await
    }

    async fn flush_block_entries(&mut self) -> StoreResult<()> {
        let rows = std::mem::take(&mut self.block_entries)
            .into_iter()
            .map(|((p, s, b), n)| vec![p.into(), s.into(), b.into(), n.into()])
            .collect();
        let head = "INSERT INTO bot_block_entries (project_id, scenario_id, block_id, entries)";
        let tail = "ON CONFLICT (project_id, scenario_id, block_id) \
                    DO UPDATE SET entries = bot_block_entries.entries + excluded.entries";
        sql::insert_rows(&mut self.tx, self.backend, head, tail, rows, "count bot block entries").await
    }

    /// The batch's records as one row: see migration 0002 for why.
    async fn flush_outbox(&mut self, batch_id: &str, records: &[Record]) -> StoreResult<()> {
        if records.is_empty() {
            return Ok(());
        }
        let row = vec![batch_id.into(), Record::encode_batch(records).into()];
        let head = "INSERT INTO outbox_batches (batch_id, records)";
        sql::insert_rows(&mut self.tx, self.backend, head, "", vec![row], "write outbox").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merges(list: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        list.iter().map(|(s, a)| (s.to_string(), a.iter().map(|x| x.to_string()).collect())).collect()
    }

    #[test]
    fn cards_absorbed_by_a_card_that_is_absorbed_later_end_on_the_last_survivor() {
        let out = final_survivors(&merges(&[("b", &["a"]), ("c", &["b", "x"]), ("d", &["y"])]));
        let expected: BTreeMap<String, String> = [("a", "c"), ("b", "c"), ("x", "c"), ("y", "d")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn no_merges_need_no_mapping() {
        assert!(final_survivors(&[]).is_empty());
    }
}
