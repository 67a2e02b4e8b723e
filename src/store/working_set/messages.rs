//! The batch's messages, and the ids of the inputs it applied (the effectively-once claim).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::{not_cached, ProjectKey};
use crate::model::StoredMessage;
use crate::store::sql::{self, Db, Param};
use crate::store::StoreResult;

#[derive(Default)]
pub(super) struct Messages {
    by_key: HashMap<ProjectKey, Option<StoredMessage>>,
    dirty: BTreeSet<ProjectKey>,
    /// Messages this batch wrote: rows of their own, refused if their id is taken.
    new: HashSet<ProjectKey>,
}

impl Messages {
    pub(super) async fn prefetch(&mut self, db: &mut Db, project: &str, ids: &[String]) -> StoreResult<()> {
        let missing = not_cached(ids, |id| self.by_key.contains_key(&(project.to_string(), id.to_string())));
        if missing.is_empty() {
            return Ok(());
        }
        let keys: Vec<Param> = missing.iter().map(|id| (*id).clone().into()).collect();
        let head = "SELECT project_id, appeal_id, doc FROM messages WHERE project_id = $1 AND id";
        let rows = db.select_in(head, "", vec![project.into()], keys, "read messages").await?;
        for row in &rows {
            let m = sql::message_from_row(row)?;
            self.by_key.insert((project.to_string(), m.message.id.clone()), Some(m));
        }
        for id in missing {
            self.by_key.entry((project.to_string(), id.clone())).or_insert(None);
        }
        Ok(())
    }

    pub(super) async fn get(
        &mut self,
        db: &mut Db,
        project: &str,
        id: &str,
    ) -> StoreResult<Option<StoredMessage>> {
        self.prefetch(db, project, &[id.to_string()]).await?;
        Ok(self.by_key.get(&(project.to_string(), id.to_string())).cloned().flatten())
    }

    pub(super) fn add(&mut self, m: StoredMessage) {
        self.new.insert((m.project_id.clone(), m.message.id.clone()));
        self.put(m);
    }

    pub(super) fn put(&mut self, m: StoredMessage) {
        let key = (m.project_id.clone(), m.message.id.clone());
        self.dirty.insert(key.clone());
        self.by_key.insert(key, Some(m));
    }

    pub(super) async fn flush(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows = self
            .dirty
            .iter()
            .filter_map(|k| Some((self.new.contains(k), self.by_key.get(k)?.as_ref()?)))
            .map(|(new, m)| {
                let doc = serde_json::to_string(&m.message).expect("message serialises");
                let params = vec![
                    m.project_id.clone().into(),
                    m.message.id.clone().into(),
                    m.appeal_id.clone().into(),
                    doc.into(),
                ];
                (new, params)
            })
            .collect();
        let head = "INSERT INTO messages (project_id, id, appeal_id, doc)";
        let tail =
            "ON CONFLICT (project_id, id) DO UPDATE SET appeal_id = excluded.appeal_id, doc = excluded.doc";
        db.write_rows((head, tail), rows, "write messages").await
    }
}

/// Which inputs earlier batches applied, and which this batch applies.
#[derive(Default)]
pub(super) struct AppliedInputs {
    applied: HashMap<ProjectKey, bool>,
    /// Ids written to `applied_inputs` by [`AppliedInputs::claim`] already.
    claimed: HashSet<ProjectKey>,
    new: Vec<ProjectKey>,
}

impl AppliedInputs {
    /// See [`super::WorkingSet::prefetch_applied`].
    pub(super) async fn claim(&mut self, db: &mut Db, ids: &[(String, String)]) -> StoreResult<()> {
        let wanted: BTreeSet<&(String, String)> =
            ids.iter().filter(|key| !self.applied.contains_key(*key)).collect();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows = wanted.iter().map(|(p, id)| vec![p.clone().into(), id.clone().into()]).collect();
        let head = "INSERT INTO applied_inputs (project_id, input_id)";
        let tail = "ON CONFLICT DO NOTHING RETURNING project_id, input_id";
        let claimed = db.insert_rows_returning(head, tail, rows, "claim applied inputs").await?;
        for row in &claimed {
            self.claimed.insert((row.get(0), row.get(1)));
        }
        for key in wanted {
            let applied_before = !self.claimed.contains(key);
            self.applied.insert(key.clone(), applied_before);
        }
        Ok(())
    }

    pub(super) async fn is_applied(&mut self, db: &mut Db, project: &str, id: &str) -> StoreResult<bool> {
        let key = (project.to_string(), id.to_string());
        if !self.applied.contains_key(&key) {
            self.claim(db, std::slice::from_ref(&key)).await?;
        }
        Ok(self.applied.get(&key).copied().unwrap_or(false))
    }

    pub(super) fn mark(&mut self, project: &str, id: &str) {
        let key = (project.to_string(), id.to_string());
        if self.applied.insert(key.clone(), true) != Some(true) && !self.claimed.contains(&key) {
            self.new.push(key);
        }
    }

    pub(super) async fn flush(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows = self.new.iter().map(|(p, id)| vec![p.clone().into(), id.clone().into()]).collect();
        db.insert_rows("INSERT INTO applied_inputs (project_id, input_id)", "", rows, "write applied inputs")
            .await
    }
}
