//! The batch's appeals, their lookups (conversation → open appeal, number → appeal), the
//! idle appeals of the batch's partitions by close deadline, and appeal numbering.
//!
//! The database finds idle appeals by `idle_check_at`, a lower bound of the close deadline
//! ([`idle_check`]): on PostgreSQL an appeal's update keeps the bound it has while it is no
//! later than the deadline, so the row's indexed columns stay as they were and the update is
//! made in place. The sweep raises a bound it finds stale ([`Appeals::prefetch_idle`]).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{not_cached, ProjectKey};
use crate::model::{Appeal, Millis};
use crate::store::driver::DbRow;
use crate::store::sql::{self, Db, Param};
use crate::store::StoreResult;

#[derive(Default)]
pub(super) struct Appeals {
    by_id: HashMap<String, Appeal>,
    dirty: BTreeSet<String>,
    new: HashSet<String>,
    /// (project, conversation key) → its open appeal.
    mem_open: HashMap<ProjectKey, String>,
    db_open: HashMap<ProjectKey, Option<String>>,
    mem_numbers: HashMap<(String, i64), String>,
    idle_partitions: HashSet<String>,
    /// Open appeals of `idle_partitions` by close deadline.
    idle: BTreeSet<(Millis, String)>,
    /// The `idle_check_at` each appeal read from the database holds; `None` once the bound
    /// has to be rewritten (raised to the deadline by the sweep).
    stored_checks: HashMap<String, Option<Millis>>,
    counters: HashMap<String, i64>,
    dirty_counters: BTreeSet<String>,
}

/// When an appeal closes for inactivity, while it is open.
fn deadline(a: &Appeal) -> Option<Millis> {
    a.close_deadline.filter(|_| a.is_open())
}

/// The `idle_check_at` to write for an appeal: a bound no later than its deadline, so the
/// sweep never misses it. `stored` is the bound its row holds; where updates that keep the
/// indexed columns are made in place (`keep_stored`), a stored bound still no later than the
/// deadline stays; otherwise the bound is the deadline itself.
fn idle_check(a: &Appeal, stored: Option<Millis>, keep_stored: bool) -> Option<Millis> {
    let due = deadline(a)?;
    match stored {
        Some(bound) if keep_stored && bound <= due => Some(bound),
        _ => Some(due),
    }
}

impl Appeals {
    fn index(&mut self, a: &Appeal, add: bool) {
        let open_key = (a.project_id.clone(), a.key.clone());
        let idle_entry = deadline(a).map(|d| (d, a.id.clone()));
        let in_partition = self.idle_partitions.contains(&a.partition);
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

    /// Holds an appeal row read from the database, unless the batch holds the appeal already;
    /// returns the appeal.
    fn cache_row(&mut self, row: &DbRow) -> StoreResult<Appeal> {
        let a = sql::appeal_from_row(row)?;
        if !self.by_id.contains_key(&a.id) {
            self.stored_checks.insert(a.id.clone(), sql::appeal_idle_check_from_row(row)?);
            self.index(&a, true);
            self.by_id.insert(a.id.clone(), a.clone());
        }
        Ok(a)
    }

    pub(super) fn put(&mut self, a: Appeal) {
        match self.by_id.remove(&a.id) {
            Some(old) => self.index(&old, false),
            None => {
                self.new.insert(a.id.clone());
            }
        }
        self.index(&a, true);
        self.dirty.insert(a.id.clone());
        self.by_id.insert(a.id.clone(), a);
    }

    /// Hands the appeals of `absorbed` cards the batch holds to `survivor` (the database's
    /// others follow at flush).
    pub(super) fn move_to(&mut self, survivor: &str, absorbed: &[String]) {
        let moved: Vec<String> =
            self.by_id.values().filter(|a| absorbed.contains(&a.client_id)).map(|a| a.id.clone()).collect();
        for id in moved {
            if let Some(mut appeal) = self.by_id.get(&id).cloned() {
                appeal.client_id = survivor.to_string();
                self.put(appeal);
            }
        }
    }

    /// Hands the appeals of `from` of these conversations (`model::conversation_key`) to
    /// `to` (a split: the restored card's conversations go back to it); returns how many.
    /// Reads only the appeals that move. Merges of the batch must be repointed first.
    pub(super) async fn split_off(
        &mut self,
        db: &mut Db,
        (project, from, to): (&str, &str, &str),
        keys: &[String],
    ) -> StoreResult<usize> {
        let params: Vec<Param> = keys.iter().map(|h| h.clone().into()).collect();
        let head = format!(
            "SELECT {} FROM appeals WHERE project_id = $1 AND client_id = $2 AND conversation_key",
            sql::APPEAL_COLS
        );
        let fixed = vec![project.into(), from.into()];
        let rows = db.select_in(&head, "", fixed, params, "read appeals to split off").await?;
        for row in &rows {
            self.cache_row(row)?;
        }
        let wanted: HashSet<&String> = keys.iter().collect();
        let moving: Vec<String> = self
            .by_id
            .values()
            .filter(|a| a.project_id == project && a.client_id == from && wanted.contains(&a.key))
            .map(|a| a.id.clone())
            .collect();
        for id in &moving {
            if let Some(mut appeal) = self.by_id.get(id).cloned() {
                appeal.client_id = to.to_string();
                self.put(appeal);
            }
        }
        Ok(moving.len())
    }

    /// Loads the appeals a filter selects; returns their cards.
    async fn load_where(
        &mut self,
        db: &mut Db,
        filter: &str,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<String>> {
        let sql = format!("SELECT {} FROM appeals WHERE {filter}", sql::APPEAL_COLS);
        let rows = db.fetch_all(&sql, params, context).await?;
        let mut cards = Vec::with_capacity(rows.len());
        for row in &rows {
            cards.push(self.cache_row(row)?.client_id);
        }
        Ok(cards)
    }

    /// Loads the open appeals of these conversations of one project; returns their cards.
    pub(super) async fn prefetch_open(
        &mut self,
        db: &mut Db,
        project: &str,
        keys: &[String],
    ) -> StoreResult<Vec<String>> {
        let missing = not_cached(keys, |k| self.db_open.contains_key(&(project.to_string(), k.to_string())));
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let params: Vec<Param> = missing.iter().map(|k| (*k).clone().into()).collect();
        let head = format!(
            "SELECT {} FROM appeals WHERE project_id = $1 AND status = 'open' AND conversation_key",
            sql::APPEAL_COLS
        );
        let rows = db.select_in(&head, "", vec![project.into()], params, "read open appeals").await?;
        let mut found: HashMap<String, String> = HashMap::new();
        let mut cards = Vec::with_capacity(rows.len());
        for row in &rows {
            let appeal = self.cache_row(row)?;
            found.insert(appeal.key, appeal.id);
            cards.push(appeal.client_id);
        }
        for key in missing {
            self.db_open.insert((project.to_string(), key.clone()), found.get(key).cloned());
        }
        Ok(cards)
    }

    /// The open appeal of a conversation as far as the batch knows it: `None` when the
    /// database has to be asked first ([`Appeals::prefetch_open`]).
    pub(super) fn open(&self, project: &str, key: &str) -> Option<Option<Appeal>> {
        let cache_key = (project.to_string(), key.to_string());
        if let Some(id) = self.mem_open.get(&cache_key) {
            return Some(self.by_id.get(id).cloned());
        }
        let id = self.db_open.get(&cache_key)?;
        Some(id.as_ref().and_then(|id| self.by_id.get(id)).filter(|a| a.is_open() && a.key == key).cloned())
    }

    pub(super) async fn by_id(&mut self, db: &mut Db, id: &str) -> StoreResult<Option<Appeal>> {
        if !self.by_id.contains_key(id) {
            self.load_where(db, "id = $1", vec![id.into()], "read appeal").await?;
        }
        Ok(self.by_id.get(id).cloned())
    }

    pub(super) async fn by_number(
        &mut self,
        db: &mut Db,
        project: &str,
        number: i64,
    ) -> StoreResult<Option<Appeal>> {
        let key = (project.to_string(), number);
        if !self.mem_numbers.contains_key(&key) {
            let params = vec![project.into(), number.into()];
            self.load_where(db, "project_id = $1 AND number = $2", params, "read appeal").await?;
        }
        Ok(self.mem_numbers.get(&key).and_then(|id| self.by_id.get(id)).cloned())
    }

    /// Loads the appeals of `partition` that may go idle before `until` and tracks every open
    /// appeal of that partition the batch touches; returns the cards of those it holds. An
    /// appeal found by a stale bound (its deadline is `until` or later) gets its bound raised
    /// to the deadline, so the next sweep does not read it again.
    pub(super) async fn prefetch_idle(
        &mut self,
        db: &mut Db,
        partition: &str,
        until: Millis,
    ) -> StoreResult<Vec<String>> {
        self.idle_partitions.insert(partition.to_string());
        let filter =
            "partition_key = $1 AND status = 'open' AND idle_check_at < $2 ORDER BY idle_check_at, id";
        self.load_where(db, filter, vec![partition.into(), until.into()], "read idle appeals").await?;
        let open: Vec<Appeal> = self.by_id.values().filter(|a| a.partition == partition).cloned().collect();
        for a in &open {
            let Some(due) = deadline(a) else { continue };
            self.idle.insert((due, a.id.clone()));
            let stored = self.stored_checks.get(&a.id).copied().flatten();
            if stored.is_some_and(|bound| bound < until && until <= due) {
                self.stored_checks.insert(a.id.clone(), None);
                self.dirty.insert(a.id.clone());
            }
        }
        Ok(open.into_iter().map(|a| a.client_id).collect())
    }

    /// Open appeals of `partition` whose deadline is before `clock`, oldest first.
    pub(super) fn due_idle(&self, partition: &str, clock: Millis) -> Vec<Appeal> {
        let due = self.idle.iter().take_while(|(d, _)| *d < clock);
        let appeals = due.filter_map(|(_, id)| self.by_id.get(id));
        appeals.filter(|a| a.partition == partition).cloned().collect()
    }

    /// Allocates the next appeal number of a project.
    pub(super) async fn next_number(&mut self, db: &mut Db, project: &str) -> StoreResult<i64> {
        if !self.counters.contains_key(project) {
            let sql = "SELECT next_appeal_number FROM project_state WHERE project_id = $1";
            let rows = db.fetch_all(sql, vec![project.into()], "read appeal counter").await?;
            self.counters.insert(project.to_string(), rows.first().map(|r| r.get(0)).unwrap_or(1));
        }
        let next = self.counters.get_mut(project).expect("loaded above");
        let number = *next;
        *next += 1;
        self.dirty_counters.insert(project.to_string());
        Ok(number)
    }

    pub(super) async fn flush(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows = self
            .dirty
            .iter()
            .filter_map(|id| self.by_id.get(id))
            .map(|a| {
                let stored = self.stored_checks.get(&a.id).copied().flatten();
                let bound = idle_check(a, stored, db.backend().updates_in_place());
                (self.new.contains(&a.id), sql::appeal_params(a, bound))
            })
            .collect();
        let head = format!("INSERT INTO appeals ({})", sql::APPEAL_COLS);
        let tail = "ON CONFLICT (id) DO UPDATE SET client_id = excluded.client_id, status = excluded.status, \
                    last_message_at = excluded.last_message_at, doc = excluded.doc, close_deadline = excluded.close_deadline, \
                    visitor_id = excluded.visitor_id, conversation_key = excluded.conversation_key, \
                    idle_check_at = excluded.idle_check_at";
        db.write_rows((&head, tail), rows, "write appeals").await
    }

    pub(super) async fn flush_counters(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows =
            self.dirty_counters.iter().map(|p| vec![p.clone().into(), self.counters[p].into()]).collect();
        let head = "INSERT INTO project_state (project_id, next_appeal_number)";
        let tail = "ON CONFLICT (project_id) DO UPDATE SET next_appeal_number = excluded.next_appeal_number";
        db.insert_rows(head, tail, rows, "write appeal counters").await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AppealDoc, AppealStatus};

    fn open_until(deadline: Millis) -> Appeal {
        Appeal {
            id: "ap".into(),
            project_id: "p".into(),
            number: 1,
            client_id: "c".into(),
            channel_id: "tg".into(),
            visitor_id: "v".into(),
            key: "v:tg:v".into(),
            status: AppealStatus::Open,
            opened_at: 0,
            last_message_at: 0,
            partition: "in:0".into(),
            close_deadline: Some(deadline),
            doc: AppealDoc::default(),
        }
    }

    #[test]
    fn a_stored_bound_no_later_than_the_deadline_stays_where_updates_are_in_place() {
        let a = open_until(9_000);
        assert_eq!(idle_check(&a, Some(3_000), true), Some(3_000));
        assert_eq!(idle_check(&a, Some(9_000), true), Some(9_000));
    }

    #[test]
    fn a_bound_later_than_the_deadline_is_lowered_to_it_so_the_sweep_never_misses_the_appeal() {
        assert_eq!(idle_check(&open_until(2_000), Some(3_000), true), Some(2_000));
    }

    #[test]
    fn without_in_place_updates_or_a_stored_bound_the_bound_is_the_deadline() {
        let a = open_until(9_000);
        assert_eq!(idle_check(&a, Some(3_000), false), Some(9_000));
        assert_eq!(idle_check(&a, None, true), Some(9_000));
    }

    #[test]
    fn a_closed_appeal_has_no_bound() {
        let mut a = open_until(9_000);
        a.status = AppealStatus::Closed;
        assert_eq!(idle_check(&a, Some(3_000), true), None);
    }
}
