//! The commit of a batch: every entity writes what it changed, merges repoint what the batch
//! did not load, the output records join the outbox, all in the batch's transaction.

use std::collections::BTreeMap;

use super::WorkingSet;
use crate::emit::{CommandOutcome, Record};
use crate::model::MergeEntry;
use crate::store::sql::{self, Db, Param};
use crate::store::StoreResult;

impl WorkingSet {
    /// Writes everything the batch changed plus its output records, then commits. Merges
    /// repoint rows first, on their own: the rest may rewrite those rows, so it is held and
    /// sent after them as one statement (see [`Db`]).
    pub async fn commit(mut self, batch_id: &str, records: &[Record]) -> StoreResult<()> {
        let t = std::time::Instant::now();
        let db = &mut self.db;
        let mut marks = Vec::new();
        let merges = std::mem::take(&mut self.merges);
        repoint_merged(db, &merges).await?;
        marks.push(("merges", t.elapsed()));
        db.hold_writes();
        write_ledger(db, std::mem::take(&mut self.ledger)).await?;
        self.appeals.flush_counters(db).await?;
        self.clients.flush(db).await?;
        self.appeals.flush(db).await?;
        self.messages.flush(db).await?;
        self.applied.flush(db).await?;
        write_outcomes(db, std::mem::take(&mut self.outcomes)).await?;
        self.partitions.flush(db).await?;
        self.partitions.flush_block_entries(db).await?;
        self.clients.flush_generic(db).await?;
        flush_outbox(db, batch_id, records).await?;
        if let Some(keeping) = &self.feed {
            crate::store::feed::write(db, keeping, records, chrono::Utc::now().timestamp_millis()).await?;
        }
        db.release_writes().await?;
        marks.push(("writes", t.elapsed()));
        self.db.commit("commit batch").await?;
        marks.push(("commit", t.elapsed()));
        tracing::debug!(?marks, "flushed");
        Ok(())
    }
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

/// Moves the appeals of absorbed cards to their final survivor and repoints cards merged
/// into them earlier, in two statements for the whole batch whatever the merge count.
pub(super) async fn repoint_merged(db: &mut Db, pairs: &[(String, Vec<String>)]) -> StoreResult<()> {
    let rows: Vec<Vec<Param>> = final_survivors(pairs)
        .into_iter()
        .map(|(absorbed, survivor)| vec![absorbed.into(), survivor.into()])
        .collect();
    for (table, column, context) in [
        ("appeals", "client_id", "move appeals to survivor"),
        ("clients", "merged_into", "repoint merged cards"),
    ] {
        let build = |chunk: Vec<Vec<Param>>| {
            let sql = format!(
                "WITH m (absorbed, survivor) AS (VALUES {}) \
                 UPDATE {table} SET {column} = m.survivor FROM m WHERE {table}.{column} = m.absorbed",
                sql::value_tuples(chunk.len(), 2, 1)
            );
            (sql, chunk.into_iter().flatten().collect())
        };
        db.chunked(rows.clone(), build, context).await?;
    }
    Ok(())
}

async fn write_ledger(db: &mut Db, merges: Vec<MergeEntry>) -> StoreResult<()> {
    let rows = merges
        .into_iter()
        .map(|m| {
            let doc = serde_json::to_string(&m).expect("merge entry serialises");
            vec![m.merge_id.into(), m.project_id.into(), m.at.into(), m.survivor_id.into(), doc.into()]
        })
        .collect();
    let head = "INSERT INTO merge_ledger (merge_id, project_id, at, survivor_id, doc)";
    // A split rewrites its entry; the batch holds one version of each.
    db.insert_rows(
        head,
        "ON CONFLICT (merge_id) DO UPDATE SET doc = excluded.doc",
        rows,
        "write merge ledger",
    )
    .await
}

async fn write_outcomes(db: &mut Db, outcomes: Vec<(String, CommandOutcome)>) -> StoreResult<()> {
    let rows = outcomes
        .into_iter()
        .map(|(project, o)| {
            let doc = serde_json::to_string(&o).expect("outcomes serialise");
            vec![project.into(), o.command_id.into(), doc.into()]
        })
        .collect();
    let head = "INSERT INTO command_outcomes (project_id, command_id, doc)";
    // An id is applied once (its claim is in the same transaction): nothing to replace.
    db.insert_rows(head, "ON CONFLICT DO NOTHING", rows, "write command outcomes").await
}

/// The batch's records as one row: see migration 0002 for why.
async fn flush_outbox(db: &mut Db, batch_id: &str, records: &[Record]) -> StoreResult<()> {
    if records.is_empty() {
        return Ok(());
    }
    let row = vec![batch_id.into(), Record::encode_batch(records).into()];
    db.insert_rows("INSERT INTO outbox_batches (batch_id, records)", "", vec![row], "write outbox").await
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
