//! Reads outside any batch, for the read API and tests: what the batches committed, by card,
//! appeal and merge. Every lookup is by an indexed key and scoped to a project.

use super::driver::DbRow;
use super::sql::{self, Param};
use super::{Store, StoreError, StoreResult};
use crate::emit::CommandOutcome;
use crate::model::{Appeal, Client, MergeEntry, Message, Millis};

impl Store {
    pub(super) async fn fetch_all(
        &self,
        sql: &str,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<DbRow>> {
        let sql = self.backend.statement(sql.to_string());
        self.pool.fetch_all(&sql, &params, true).await.map_err(StoreError::new(context))
    }

    /// The outcomes of these commands of a project that have one, in no order: one indexed
    /// statement however many requests wait (the write API's watcher).
    pub async fn command_outcomes(&self, project: &str, ids: &[&str]) -> StoreResult<Vec<CommandOutcome>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(sql::CHUNK_ROWS) {
            let sql = format!(
                "SELECT doc FROM command_outcomes WHERE project_id = $1 AND command_id IN ({})",
                sql::list(chunk.len(), 2)
            );
            let params = std::iter::once(project.into()).chain(chunk.iter().map(|&id| id.into())).collect();
            for row in self.fetch_all(&sql, params, "read command outcomes").await? {
                let doc = row.try_str(0).map_err(StoreError::new("read command outcomes"))?;
                let outcome = serde_json::from_str(doc)
                    .map_err(|e| StoreError::new("read command outcomes")(sqlx::Error::Decode(e.into())))?;
                out.push(outcome);
            }
        }
        Ok(out)
    }

    /// The live card of a project an id names (an absorbed card's id names its survivor).
    pub async fn project_client(&self, project: &str, id: &str) -> StoreResult<Option<Client>> {
        Ok(self.client(id).await?.filter(|c| c.project_id == project))
    }

    /// The live cards of a project among `ids`, in no order: what a search lists, read at
    /// once (absorbed cards and other projects' cards are left out).
    pub async fn project_clients(&self, project: &str, ids: &[&str]) -> StoreResult<Vec<Client>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(sql::CHUNK_ROWS) {
            let sql = format!(
                "SELECT {} FROM clients WHERE project_id = $1 AND merged_into IS NULL AND id IN ({})",
                sql::CLIENT_COLS,
                sql::list(chunk.len(), 2)
            );
            let params = std::iter::once(project.into()).chain(chunk.iter().map(|&id| id.into())).collect();
            for row in self.fetch_all(&sql, params, "read clients").await? {
                out.push(sql::client_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// The ids of the cards a live card absorbed (directly or through cards it absorbed:
    /// merges repoint them all to the final survivor), in id order.
    pub async fn absorbed_ids(&self, survivor: &str) -> StoreResult<Vec<String>> {
        let sql = "SELECT id FROM clients WHERE merged_into = $1 ORDER BY id";
        let rows = self.fetch_all(sql, vec![survivor.into()], "read absorbed cards").await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every merge a live card's group took part in, oldest first: each left its survivor in
    /// the group, so they are the ledger rows whose survivor is the card or one it absorbed.
    pub async fn merge_ledger(&self, project: &str, survivor: &str) -> StoreResult<Vec<MergeEntry>> {
        let mut group: Vec<Param> = vec![survivor.into()];
        group.extend(self.absorbed_ids(survivor).await?.into_iter().map(Param::from));
        let mut out = Vec::new();
        for chunk in group.chunks(sql::CHUNK_ROWS) {
            let sql = format!(
                "SELECT merge_id, at, survivor_id, doc FROM merge_ledger WHERE project_id = $1 AND survivor_id IN ({})",
                sql::list(chunk.len(), 2)
            );
            let params = std::iter::once(project.into()).chain(chunk.iter().cloned()).collect();
            for row in self.fetch_all(&sql, params, "read merge ledger").await? {
                out.push(ledger_entry(project, &row)?);
            }
        }
        out.sort_by(|a, b| (a.at, &a.absorbed_ids).cmp(&(b.at, &b.absorbed_ids)));
        Ok(out)
    }
}

impl Store {
    /// A page of a card's appeals, newest first (by opening time, then number), after the
    /// appeal `before` names (its opening time and number). Appeals of absorbed cards moved
    /// to the survivor when they merged.
    pub async fn timeline(
        &self,
        project: &str,
        client_id: &str,
        before: Option<(Millis, i64)>,
        limit: usize,
    ) -> StoreResult<Vec<Appeal>> {
        let mut params: Vec<Param> = vec![project.into(), client_id.into()];
        let mut filter = String::new();
        if let Some((opened, number)) = before {
            filter = " AND (opened_at < $3 OR (opened_at = $3 AND number < $4))".into();
            params.extend([opened.into(), number.into()]);
        }
        let sql = format!(
            "SELECT {} FROM appeals WHERE project_id = $1 AND client_id = $2{filter} \
             ORDER BY opened_at DESC, number DESC LIMIT {}",
            sql::APPEAL_COLS,
            limit
        );
        let rows = self.fetch_all(&sql, params, "read timeline").await?;
        rows.iter().map(sql::appeal_from_row).collect()
    }

    /// An appeal of a project by its number.
    pub async fn appeal_by_number(&self, project: &str, number: i64) -> StoreResult<Option<Appeal>> {
        let sql = format!("SELECT {} FROM appeals WHERE project_id = $1 AND number = $2", sql::APPEAL_COLS);
        let rows = self.fetch_all(&sql, vec![project.into(), number.into()], "read appeal").await?;
        rows.first().map(sql::appeal_from_row).transpose()
    }

    /// Every message of an appeal with its time, in the order they were appended (messages
    /// stored before that order was kept come first, by time and id).
    pub async fn appeal_messages(
        &self,
        project: &str,
        appeal_id: &str,
    ) -> StoreResult<Vec<(Millis, Message)>> {
        let sql = "SELECT project_id, appeal_id, doc FROM messages WHERE project_id = $1 AND appeal_id = $2";
        let rows = self.fetch_all(sql, vec![project.into(), appeal_id.into()], "read messages").await?;
        // `sent_at` is RFC 3339 with optional fractions: compared as text, 10:00:00.5Z would
        // sort before 10:00:00Z.
        let at = |m: &Message| {
            chrono::DateTime::parse_from_rfc3339(&m.sent_at).map_or(0, |t| t.timestamp_millis())
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let m = sql::message_from_row(row)?.message;
            out.push((at(&m), m));
        }
        out.sort_by(|a, b| (a.1.seq, a.0, &a.1.id).cmp(&(b.1.seq, b.0, &b.1.id)));
        Ok(out)
    }
}

/// A ledger row (`merge_id, at, survivor_id, doc`). Entries written before the document held
/// its id are named by the row's key.
pub(super) fn ledger_entry(project: &str, row: &DbRow) -> StoreResult<MergeEntry> {
    let doc = row.try_str(3).map_err(StoreError::new("read merge ledger"))?;
    let mut entry: MergeEntry = serde_json::from_str(doc)
        .map_err(|e| StoreError::new("read merge ledger")(sqlx::Error::Decode(Box::new(e))))?;
    entry.project_id = project.to_string();
    if entry.merge_id.is_empty() {
        entry.merge_id = row.get(0);
    }
    entry.at = row.get(1);
    entry.survivor_id = row.get(2);
    Ok(entry)
}
