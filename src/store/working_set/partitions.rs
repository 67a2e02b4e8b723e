//! Per-partition state (event-time clock, next offset) and the bot's block entry counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::model::Millis;
use crate::store::sql::Db;
use crate::store::StoreResult;

#[derive(Default)]
pub(super) struct Partitions {
    /// Partition key → (clock, next offset), as read or changed.
    state: HashMap<String, (Option<Millis>, Option<i64>)>,
    dirty: BTreeSet<String>,
    /// Bot block entries of this batch by (project, scenario, block), added on commit.
    block_entries: BTreeMap<(String, String, String), i64>,
}

impl Partitions {
    /// Reads the state of the partitions not read yet, in one statement.
    pub(super) async fn prefetch(&mut self, db: &mut Db, partitions: &[&str]) -> StoreResult<()> {
        let missing: Vec<&str> =
            partitions.iter().copied().filter(|p| !self.state.contains_key(*p)).collect();
        if missing.len() < 2 {
            return Ok(()); // `clock` reads one as cheaply
        }
        let keys = missing.iter().map(|p| p.to_string().into()).collect();
        let head = "SELECT partition_key, clock, next_offset FROM partitions WHERE partition_key";
        for row in db.select_in(head, "", vec![], keys, "read partitions").await? {
            self.state.insert(row.get(0), (Some(row.get(1)), row.get(2)));
        }
        for p in missing {
            self.state.entry(p.to_string()).or_insert((None, None));
        }
        Ok(())
    }

    pub(super) async fn clock(&mut self, db: &mut Db, partition: &str) -> StoreResult<Option<Millis>> {
        if !self.state.contains_key(partition) {
            let sql = "SELECT clock, next_offset FROM partitions WHERE partition_key = $1";
            let rows = db.fetch_all(sql, vec![partition.into()], "read partition").await?;
            let state = rows.first().map(|r| (Some(r.get(0)), r.get(1))).unwrap_or((None, None));
            self.state.insert(partition.to_string(), state);
        }
        Ok(self.state[partition].0)
    }

    pub(super) async fn advance_clock(
        &mut self,
        db: &mut Db,
        partition: &str,
        to: Millis,
    ) -> StoreResult<Millis> {
        let current = self.clock(db, partition).await?;
        let clock = current.map_or(to, |c| c.max(to));
        if current != Some(clock) {
            self.state.get_mut(partition).expect("loaded by clock()").0 = Some(clock);
            self.dirty.insert(partition.to_string());
        }
        Ok(clock)
    }

    pub(super) async fn set_next_offset(
        &mut self,
        db: &mut Db,
        partition: &str,
        offset: i64,
    ) -> StoreResult<()> {
        self.clock(db, partition).await?;
        self.state.get_mut(partition).expect("loaded by clock()").1 = Some(offset);
        self.dirty.insert(partition.to_string());
        Ok(())
    }

    pub(super) fn count_block_entry(&mut self, project_id: &str, scenario_id: &str, block_id: &str) {
        let key = (project_id.to_string(), scenario_id.to_string(), block_id.to_string());
        *self.block_entries.entry(key).or_default() += 1;
    }

    pub(super) async fn flush(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows = self
            .dirty
            .iter()
            .map(|k| {
                let (clock, offset) = self.state[k];
                vec![k.clone().into(), clock.unwrap_or(0).into(), offset.into()]
            })
            .collect();
        let head = "INSERT INTO partitions (partition_key, clock, next_offset)";
        let tail = "ON CONFLICT (partition_key) DO UPDATE SET clock = excluded.clock, \
                    next_offset = COALESCE(excluded.next_offset, partitions.next_offset)";
        db.insert_rows(head, tail, rows, "write partitions").await
    }

    pub(super) async fn flush_block_entries(&mut self, db: &mut Db) -> StoreResult<()> {
        let rows = std::mem::take(&mut self.block_entries)
            .into_iter()
            .map(|((p, s, b), n)| vec![p.into(), s.into(), b.into(), n.into()])
            .collect();
        let head = "INSERT INTO bot_block_entries (project_id, scenario_id, block_id, entries)";
        let tail = "ON CONFLICT (project_id, scenario_id, block_id) \
                    DO UPDATE SET entries = bot_block_entries.entries + excluded.entries";
        db.insert_rows(head, tail, rows, "count bot block entries").await
    }
}
