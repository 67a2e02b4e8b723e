//! The event feed's rows (SPEC "Event feed"): a writer that keeps the feed adds, in each
//! batch's transaction, one row per project and topic holding that project's records of the
//! batch on that topic, byte for byte as they go to the topic, and prunes rows older than
//! `api.feed_retention` now and then. Readers page through one project's rows of one topic
//! after a cursor.
//!
//! Why rows of the batch's transaction: a record is in the feed exactly when its batch
//! committed, in commit order per project (SQLite has one writer; on PostgreSQL a project's
//! batches hold its advisory lock from their first read to their commit, so its rows take
//! their `seq` in commit order), and the relay's outbox is left as it is.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::sql::{Db, Param};
use super::{Store, StoreError, StoreResult};
use crate::emit::{Record, Topic};
use crate::model::Millis;

/// How often a writer prunes at most (more often when the retention is shorter).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Feed rows a read fetches at a time (each holds a batch's records of a project and topic).
const ROWS_PER_READ: i64 = 8;

/// A writer's feed keeping: how long rows are kept, and when it last pruned.
#[derive(Debug)]
pub struct FeedKeeping {
    retention: Duration,
    last_prune: Mutex<Option<Instant>>,
}

impl FeedKeeping {
    pub fn new(retention: Duration) -> FeedKeeping {
        FeedKeeping { retention, last_prune: Mutex::new(None) }
    }

    /// The commit time before which rows go, when this commit should prune.
    fn prune_before(&self, now: Millis) -> Option<Millis> {
        let mut last = self.last_prune.lock().expect("feed prune clock");
        let every = PRUNE_EVERY.min(self.retention);
        if last.is_some_and(|at| at.elapsed() < every) {
            return None;
        }
        *last = Some(Instant::now());
        Some(now.saturating_sub(i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX)))
    }
}

/// A place in one project's feed of one topic: after every row before `seq` and the first
/// `n` records of row `seq`. Written `seq-n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct FeedCursor {
    seq: i64,
    n: i64,
}

impl FeedCursor {
    /// Before everything.
    pub const START: FeedCursor = FeedCursor { seq: 0, n: 0 };

    /// A cursor as the feed writes it; anything else is `None`.
    pub fn parse(text: &str) -> Option<FeedCursor> {
        let (seq, n) = text.split_once('-')?;
        let number = |s: &str| {
            let digits = !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| s.parse::<i64>().ok()).flatten()
        };
        Some(FeedCursor { seq: number(seq)?, n: number(n)? })
    }
}

impl std::fmt::Display for FeedCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.seq, self.n)
    }
}

/// One record of the feed: the topic's key and value, and the cursor just after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedRecord {
    pub cursor: FeedCursor,
    pub key: String,
    pub value: String,
}

/// What a read of the feed found.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedRead {
    /// The records after the cursor (possibly none) and the cursor to read on from.
    Page { records: Vec<FeedRecord>, next: FeedCursor },
    /// Records after the cursor were pruned: reading on from `oldest` gives the oldest kept.
    Gone { oldest: FeedCursor },
    /// The feed never wrote this cursor (of this project and topic).
    NeverIssued,
}

/// Adds the batch's records to the feed, one row per project and topic, and prunes when due.
pub(crate) async fn write(
    db: &mut Db,
    keeping: &FeedKeeping,
    records: &[Record],
    now: Millis,
) -> StoreResult<()> {
    let mut rows: BTreeMap<(String, &'static str), Vec<&Record>> = BTreeMap::new();
    for r in records {
        if let Some(project) = r.project() {
            rows.entry((project, r.topic.code())).or_default().push(r);
        }
    }
    let rows = rows
        .into_iter()
        .map(|((project, topic), records)| {
            let count = records.len() as i64;
            let text = Record::encode_batch(records.iter().copied());
            vec![project.into(), topic.into(), now.into(), count.into(), text.into()]
        })
        .collect();
    let head = "INSERT INTO feed (project_id, topic, committed_at, record_count, records)";
    db.insert_rows(head, "", rows, "write feed").await?;
    match keeping.prune_before(now) {
        Some(before) => prune(db, before).await,
        None => Ok(()),
    }
}

/// Drops rows committed before `before`, remembering per project and topic the last one
/// dropped (see [`FeedRead::Gone`]).
async fn prune(db: &mut Db, before: Millis) -> StoreResult<()> {
    let horizon = "INSERT INTO feed_horizon (project_id, topic, through_seq, through_count) \
         SELECT project_id, topic, seq, record_count FROM feed \
         WHERE seq IN (SELECT MAX(seq) FROM feed WHERE committed_at < $1 GROUP BY project_id, topic) \
         ON CONFLICT (project_id, topic) DO UPDATE \
         SET through_seq = excluded.through_seq, through_count = excluded.through_count";
    db.execute(horizon.into(), vec![before.into()], "record the feed's horizon").await?;
    db.execute("DELETE FROM feed WHERE committed_at < $1".into(), vec![before.into()], "prune feed").await
}

impl Store {
    /// Up to `limit` records of `project` on `topic` after `after` (from the oldest kept
    /// without one), in commit order.
    pub async fn feed(
        &self,
        project: &str,
        topic: Topic,
        after: Option<FeedCursor>,
        limit: usize,
    ) -> StoreResult<FeedRead> {
        let key = || -> Vec<Param> { vec![project.into(), topic.code().into()] };
        let horizon = self
            .fetch_all(
                "SELECT through_seq, through_count FROM feed_horizon WHERE project_id = $1 AND topic = $2",
                key(),
                "read the feed's horizon",
            )
            .await?
            .first()
            .map(|r| FeedCursor { seq: r.get(0), n: r.get(1) });
        let start = after.or(horizon).unwrap_or(FeedCursor::START);
        if let Some(h) = horizon {
            if start.seq < h.seq || (start.seq == h.seq && start.n < h.n) {
                return Ok(FeedRead::Gone { oldest: h });
            }
        }
        if start != FeedCursor::START && Some(start) != horizon && !self.issued(project, topic, start).await?
        {
            return Ok(FeedRead::NeverIssued);
        }
        let (mut records, mut next) = (Vec::new(), start);
        let mut from = start.seq;
        while records.len() < limit {
            let rows = self
                .fetch_all(
                    "SELECT seq, records FROM feed WHERE project_id = $1 AND topic = $2 AND seq >= $3 \
                     ORDER BY seq LIMIT $4",
                    [key(), vec![from.into(), ROWS_PER_READ.into()]].concat(),
                    "read feed",
                )
                .await?;
            for row in &rows {
                let seq: i64 = row.get(0);
                let skip = if seq == start.seq { start.n } else { 0 };
                let decoded = Record::decode_batch(row.try_str(1).map_err(StoreError::new("read feed"))?)
                    .map_err(|e| StoreError::new("read feed")(sqlx::Error::Decode(e.into())))?;
                for (i, r) in decoded.into_iter().enumerate().skip(skip as usize) {
                    if records.len() == limit {
                        break;
                    }
                    next = FeedCursor { seq, n: i as i64 + 1 };
                    records.push(FeedRecord { cursor: next, key: r.key, value: r.value });
                }
                from = seq + 1;
            }
            if (rows.len() as i64) < ROWS_PER_READ {
                break;
            }
        }
        Ok(FeedRead::Page { records, next })
    }

    /// The cursor after the newest record of `project` on `topic`: reading on from it gives
    /// only what commits later.
    pub async fn feed_end(&self, project: &str, topic: Topic) -> StoreResult<FeedCursor> {
        let rows = self
            .fetch_all(
                "SELECT seq, record_count FROM feed WHERE project_id = $1 AND topic = $2 ORDER BY seq DESC LIMIT 1",
                vec![project.into(), topic.code().into()],
                "read the feed's end",
            )
            .await?;
        if let Some(r) = rows.first() {
            return Ok(FeedCursor { seq: r.get(0), n: r.get(1) });
        }
        let horizon = self
            .fetch_all(
                "SELECT through_seq, through_count FROM feed_horizon WHERE project_id = $1 AND topic = $2",
                vec![project.into(), topic.code().into()],
                "read the feed's horizon",
            )
            .await?;
        Ok(horizon.first().map_or(FeedCursor::START, |r| FeedCursor { seq: r.get(0), n: r.get(1) }))
    }

    /// Whether `cursor` is one the feed of `project` and `topic` wrote: inside a row it holds.
    async fn issued(&self, project: &str, topic: Topic, cursor: FeedCursor) -> StoreResult<bool> {
        let rows = self
            .fetch_all(
                "SELECT record_count FROM feed WHERE project_id = $1 AND topic = $2 AND seq = $3",
                vec![project.into(), topic.code().into(), cursor.seq.into()],
                "read feed",
            )
            .await?;
        let count = rows.first().map(|r| r.get::<i64>(0));
        Ok(count.is_some_and(|c| (1..=c).contains(&cursor.n)))
    }

    /// The newest feed row's `seq` (0 when there is none): what long-polling readers watch.
    pub async fn feed_head(&self) -> StoreResult<i64> {
        let rows = self.fetch_all("SELECT MAX(seq) FROM feed", vec![], "read the feed's head").await?;
        Ok(rows.first().and_then(|r| r.get::<Option<i64>>(0)).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::FeedCursor;

    #[test]
    fn a_cursor_reads_back_as_it_was_written() {
        let c = FeedCursor { seq: 41, n: 7 };
        assert_eq!(FeedCursor::parse(&c.to_string()), Some(c));
        assert_eq!(FeedCursor::parse("0-0"), Some(FeedCursor::START));
    }

    #[test]
    fn anything_a_feed_never_writes_is_not_a_cursor() {
        for text in
            ["", "-", "1-", "-1", "1.2", "+1-2", "1-2-3", "１-2", "99999999999999999999-1", "a-b", " 1-2"]
        {
            assert_eq!(FeedCursor::parse(text), None, "{text:?}");
        }
    }
}
