//! The working set of one batch: a read-through cache over the batch's transaction with
//! buffered writes, flushed in a few multi-row statements at commit.
//!
//! Why: one round trip per read and per write would cap PostgreSQL at a few thousand inputs
//! per second. Within the transaction nobody else changes what we read (SQLite has one writer;
//! PostgreSQL instances take the batch's project locks first), so a row read once stays valid
//! until commit, and the cache is the truth for everything the batch touched.
//!
//! Secondary lookups (handle → card, value → cards, conversation → open appeal) combine what
//! the database held at the start of the batch with in-memory indexes of loaded entities, and
//! every answer is checked against the in-memory entity, so a card merged or an appeal closed
//! earlier in the batch is never returned stale.
//!
//! Each entity owns its cache, indexes and dirty set ([`clients`], [`appeals`], [`messages`],
//! [`partitions`]); this type holds the transaction and joins them where a lookup of one
//! loads another (an open appeal's card, say); [`flush`] writes them all at commit.

mod appeals;
mod clients;
mod flush;
mod messages;
mod partitions;

use std::collections::BTreeSet;
use std::sync::Arc;

pub(crate) use clients::write_search_terms;
pub use clients::{external_handle, visitor_handle, Holders};

use super::driver::Tx;
use super::sql::Db;
use super::{Backend, FeedKeeping, StoreResult};
use crate::emit::CommandOutcome;
use crate::model::{Appeal, Client, MergeEntry, Millis, StoredMessage};

type ProjectKey = (String, String);
type ValueKey = (String, String, String);

/// The distinct keys a lookup still has to read from the database.
fn not_cached(keys: &[String], cached: impl Fn(&str) -> bool) -> BTreeSet<&String> {
    keys.iter().filter(|k| !cached(k)).collect()
}

pub struct WorkingSet {
    db: Db,
    clients: clients::Clients,
    appeals: appeals::Appeals,
    messages: messages::Messages,
    applied: messages::AppliedInputs,
    partitions: partitions::Partitions,
    /// Merges of this batch in order not yet repointed, as (survivor, absorbed): rows the
    /// batch did not load follow their survivor at commit (or before a split).
    merges: Vec<(String, Vec<String>)>,
    /// Ledger entries the batch wrote or changed, in order.
    ledger: Vec<MergeEntry>,
    /// What became of the batch's commands, by project.
    outcomes: Vec<(String, CommandOutcome)>,
    /// Whether the batch's records join the event feed.
    feed: Option<Arc<FeedKeeping>>,
}

impl WorkingSet {
    pub(super) fn new(tx: Tx, backend: Backend, feed: Option<Arc<FeedKeeping>>) -> Self {
        WorkingSet {
            db: Db::new(tx, backend),
            clients: Default::default(),
            appeals: Default::default(),
            messages: Default::default(),
            applied: Default::default(),
            partitions: Default::default(),
            merges: Vec::new(),
            ledger: Vec::new(),
            outcomes: Vec::new(),
            feed,
        }
    }

    /// Serialises writers per project for the rest of the transaction (see
    /// [`Backend::lock_projects`]).
    pub async fn lock_projects(&mut self, projects: &BTreeSet<String>) -> StoreResult<()> {
        let backend = self.db.backend();
        backend.lock_projects(self.db.tx(), projects).await
    }

    // ---- inputs already applied -------------------------------------------------------

    /// Claims these input ids for the batch: one `INSERT ... ON CONFLICT DO NOTHING
    /// RETURNING` both tells which ids earlier batches applied (not returned) and writes the
    /// rest, so a new input costs no separate read. Every input with an id reaches
    /// [`WorkingSet::mark_applied`] or fails the whole transaction, so a claimed id is never
    /// left marked without its input applied.
    pub async fn prefetch_applied(&mut self, ids: &[(String, String)]) -> StoreResult<()> {
        self.applied.claim(&mut self.db, ids).await
    }

    /// Whether an earlier batch applied this input (claiming it for this batch if not).
    pub async fn is_applied(&mut self, project: &str, id: &str) -> StoreResult<bool> {
        self.applied.is_applied(&mut self.db, project, id).await
    }

    pub fn mark_applied(&mut self, project: &str, id: &str) {
        self.applied.mark(project, id)
    }

    /// Records what became of a command, committed with the state it produced.
    pub fn record_outcome(&mut self, project: &str, outcome: CommandOutcome) {
        self.outcomes.push((project.to_string(), outcome))
    }

    // ---- clients ------------------------------------------------------------------------

    /// Loads cards by id into the cache (already cached ones are kept: they may be newer).
    pub async fn load_clients(&mut self, ids: &[String]) -> StoreResult<()> {
        self.clients.load(&mut self.db, ids).await
    }

    /// The card with this id, following merges to the card that absorbed it.
    pub async fn live_client(&mut self, id: &str) -> StoreResult<Option<Client>> {
        self.clients.live(&mut self.db, id).await
    }

    /// Stores a new or changed card.
    pub fn put_client(&mut self, client: Client) {
        self.clients.put(client)
    }

    /// Loads handle → card mappings for these handles of one project.
    pub async fn prefetch_handles(&mut self, project: &str, handles: &[String]) -> StoreResult<()> {
        self.clients.prefetch_handles(&mut self.db, project, handles).await
    }

    /// The live card holding a handle (`v:channel:visitor`, `x:external`), if any.
    pub async fn client_by_handle(&mut self, project: &str, handle: &str) -> StoreResult<Option<Client>> {
        self.clients.by_handle(&mut self.db, project, handle).await
    }

    /// Whether a value is known to be generic (loaded by a lookup of it this batch).
    pub fn is_generic(&self, project: &str, field: &str, value: &str) -> bool {
        self.clients.is_generic(project, field, value)
    }

    /// Loads which cards hold these values of one field (one statement for a whole batch),
    /// at most `limit + 2` cards a value.
    pub async fn prefetch_values(
        &mut self,
        project: &str,
        field: &str,
        values: &[String],
        limit: usize,
    ) -> StoreResult<()> {
        self.clients.prefetch_values(&mut self.db, (project, field), values, limit).await
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
        self.clients.value_holders(&mut self.db, (project, field, value), limit).await
    }

    /// Records a merge: its absorbed cards now live on in its survivor, their appeals follow
    /// it, and the merge ledger gets the entry.
    pub fn record_merge(&mut self, entry: MergeEntry) {
        self.appeals.move_to(&entry.survivor_id, &entry.absorbed_ids);
        self.merges.push((entry.survivor_id.clone(), entry.absorbed_ids.clone()));
        self.ledger.push(entry);
    }

    /// The card with this id as stored, absorbed or not.
    pub async fn client_row(&mut self, id: &str) -> StoreResult<Option<Client>> {
        self.clients.row(&mut self.db, id).await
    }

    /// Every card absorbed into `id`, directly or through a card it absorbed.
    pub async fn absorbed_by(&mut self, id: &str) -> StoreResult<Vec<String>> {
        self.clients.absorbed_by(&mut self.db, id).await
    }

    /// One entry of a project's merge ledger, as this batch left it.
    pub async fn ledger_entry(&mut self, project: &str, merge_id: &str) -> StoreResult<Option<MergeEntry>> {
        if let Some(e) = self.ledger.iter().rev().find(|e| e.project_id == project && e.merge_id == merge_id)
        {
            return Ok(Some(e.clone()));
        }
        let sql =
            "SELECT merge_id, at, survivor_id, doc FROM merge_ledger WHERE project_id = $1 AND merge_id = $2";
        let rows = self.db.fetch_all(sql, vec![project.into(), merge_id.into()], "read a merge").await?;
        rows.first().map(|r| super::read::ledger_entry(project, r)).transpose()
    }

    /// The ledger entries whose survivor is one of `survivors`, as this batch left them,
    /// oldest first.
    pub async fn ledger_of(&mut self, project: &str, survivors: &[String]) -> StoreResult<Vec<MergeEntry>> {
        let keys: Vec<super::sql::Param> = survivors.iter().map(|s| s.clone().into()).collect();
        let head =
            "SELECT merge_id, at, survivor_id, doc FROM merge_ledger WHERE project_id = $1 AND survivor_id";
        let rows = self.db.select_in(head, "", vec![project.into()], keys, "read merge ledger").await?;
        let mut out: std::collections::BTreeMap<String, MergeEntry> = std::collections::BTreeMap::new();
        for row in &rows {
            let e = super::read::ledger_entry(project, row)?;
            out.insert(e.merge_id.clone(), e);
        }
        for e in self.ledger.iter().filter(|e| e.project_id == project && survivors.contains(&e.survivor_id))
        {
            out.insert(e.merge_id.clone(), e.clone());
        }
        let mut out: Vec<MergeEntry> = out.into_values().collect();
        out.sort_by(|a, b| (a.at, &a.absorbed_ids).cmp(&(b.at, &b.absorbed_ids)));
        Ok(out)
    }

    /// Rewrites a ledger entry (a split marks it undone).
    pub fn update_ledger(&mut self, entry: MergeEntry) {
        self.ledger.retain(|e| e.merge_id != entry.merge_id);
        self.ledger.push(entry);
    }

    /// Gives `to` the appeals of `from` of these conversations (a split); returns how many. The batch's merges are repointed first, so the
    /// database answers for the cards as the batch left them.
    pub async fn split_appeals(
        &mut self,
        project: &str,
        (from, to): (&str, &str),
        conversations: &[String],
    ) -> StoreResult<usize> {
        flush::repoint_merged(&mut self.db, &std::mem::take(&mut self.merges)).await?;
        self.appeals.split_off(&mut self.db, (project, from, to), conversations).await
    }

    // ---- appeals ------------------------------------------------------------------------

    pub fn put_appeal(&mut self, a: Appeal) {
        self.appeals.put(a)
    }

    /// Loads the open appeals of these conversations (`model::conversation_key`) of one
    /// project, and their cards.
    pub async fn prefetch_open_appeals(&mut self, project: &str, keys: &[String]) -> StoreResult<()> {
        let cards = self.appeals.prefetch_open(&mut self.db, project, keys).await?;
        self.clients.load(&mut self.db, &cards).await
    }

    /// The open appeal of a conversation, if any.
    pub async fn open_appeal(&mut self, project: &str, key: &str) -> StoreResult<Option<Appeal>> {
        if self.appeals.open(project, key).is_none() {
            self.prefetch_open_appeals(project, &[key.to_string()]).await?;
        }
        Ok(self.appeals.open(project, key).flatten())
    }

    pub async fn appeal_by_id(&mut self, id: &str) -> StoreResult<Option<Appeal>> {
        self.appeals.by_id(&mut self.db, id).await
    }

    pub async fn appeal_by_number(&mut self, project: &str, number: i64) -> StoreResult<Option<Appeal>> {
        self.appeals.by_number(&mut self.db, project, number).await
    }

    /// Loads the appeals of `partition` that go idle before `until`, and tracks every open
    /// appeal of that partition the batch touches, for [`WorkingSet::due_idle`].
    pub async fn prefetch_idle(&mut self, partition: &str, until: Millis) -> StoreResult<()> {
        let cards = self.appeals.prefetch_idle(&mut self.db, partition, until).await?;
        // Closing an appeal reads its card: one statement now instead of one per appeal.
        self.clients.load(&mut self.db, &cards).await
    }

    /// Open appeals of `partition` whose deadline is before `clock`, oldest first.
    pub fn due_idle(&mut self, partition: &str, clock: Millis) -> Vec<Appeal> {
        self.appeals.due_idle(partition, clock)
    }

    /// Allocates the next appeal number of a project.
    pub async fn next_appeal_number(&mut self, project: &str) -> StoreResult<i64> {
        self.appeals.next_number(&mut self.db, project).await
    }

    // ---- messages -----------------------------------------------------------------------

    pub async fn prefetch_messages(&mut self, project: &str, ids: &[String]) -> StoreResult<()> {
        self.messages.prefetch(&mut self.db, project, ids).await
    }

    pub async fn message(&mut self, project: &str, id: &str) -> StoreResult<Option<StoredMessage>> {
        self.messages.get(&mut self.db, project, id).await
    }

    /// Stores a message this batch wrote: a row of its own, refused at commit if its id is
    /// another message's (a client reusing the id of an operator's message, say).
    pub fn add_message(&mut self, m: StoredMessage) {
        self.messages.add(m)
    }

    /// Stores a change to a message read from the store (a delivery status).
    pub fn put_message(&mut self, m: StoredMessage) {
        self.messages.put(m)
    }

    // ---- partitions ---------------------------------------------------------------------

    /// Reads the state of these partitions in one statement.
    pub async fn prefetch_clocks(&mut self, partitions: &[&str]) -> StoreResult<()> {
        self.partitions.prefetch(&mut self.db, partitions).await
    }

    /// The partition's event-time clock (the latest input time seen), if it has one.
    pub async fn clock(&mut self, partition: &str) -> StoreResult<Option<Millis>> {
        self.partitions.clock(&mut self.db, partition).await
    }

    pub async fn advance_clock(&mut self, partition: &str, to: Millis) -> StoreResult<Millis> {
        self.partitions.advance_clock(&mut self.db, partition, to).await
    }

    /// Records the next offset to consume, committed with the batch's state.
    pub async fn set_next_offset(&mut self, partition: &str, offset: i64) -> StoreResult<()> {
        self.partitions.set_next_offset(&mut self.db, partition, offset).await
    }

    /// Counts one entry into a bot block (the scenario report reads the totals).
    pub fn count_block_entry(&mut self, project_id: &str, scenario_id: &str, block_id: &str) {
        self.partitions.count_block_entry(project_id, scenario_id, block_id)
    }
}
