//! Which partitions' inputs form the next batches: decisions only, no I/O.
//!
//! Batches that touch the same project take turns on its lock. One batch per partition
//! would queue behind its neighbours: every partition's few inputs a transaction of their
//! own, one after another, each paying its round trips and its commit while the inputs
//! behind it wait. So the partitions whose buffered inputs share a project form one batch,
//! and a partition holding a project that a batch in flight holds waits for that batch
//! (gathering what arrives meanwhile) instead of queueing on the lock. Partitions of
//! disjoint projects still run concurrently. This only decides who goes together: the
//! store's project lock orders the batches whatever this plans.

use std::collections::BTreeSet;
use std::time::Instant;

/// The projects a partition's buffered inputs (or a batch in flight) name.
pub type Footprint<'a> = BTreeSet<&'a str>;

fn meets(a: &Footprint<'_>, b: &Footprint<'_>) -> bool {
    !a.is_disjoint(b)
}

/// A partition holding inputs, with no batch in flight.
pub struct Candidate<'a, K> {
    pub key: K,
    pub buffered: usize,
    /// Its buffer is full or has waited long enough to start a batch on its own.
    pub ready: bool,
    /// When its oldest buffered input arrived: the longest waiting go first.
    pub since: Instant,
    pub footprint: Footprint<'a>,
}

/// The batches to start, each as its partitions and how many inputs to take from each (at
/// most `batch_size` in all, shared fairly). Partitions whose footprints meet go together;
/// a group starts when one of its partitions is ready and none meets a batch in flight.
pub fn plan<K: Clone>(
    candidates: &[Candidate<'_, K>],
    in_flight: &[Footprint<'_>],
    batch_size: usize,
) -> Vec<Vec<(K, usize)>> {
    let free: Vec<&Candidate<'_, K>> =
        candidates.iter().filter(|c| !in_flight.iter().any(|f| meets(f, &c.footprint))).collect();
    let mut out = Vec::new();
    for mut group in components(&free) {
        if !group.iter().any(|c| c.ready) {
            continue;
        }
        group.sort_by_key(|c| c.since);
        let takes = allot(&group.iter().map(|c| c.buffered).collect::<Vec<_>>(), batch_size);
        let parts = group.iter().zip(takes).filter(|(_, n)| *n > 0).map(|(c, n)| (c.key.clone(), n));
        out.push(parts.collect());
    }
    out
}

/// The candidates grouped by meeting footprints, directly or through others.
fn components<'c, 'a, K>(free: &[&'c Candidate<'a, K>]) -> Vec<Vec<&'c Candidate<'a, K>>> {
    let mut grouped = vec![false; free.len()];
    let mut groups = Vec::new();
    for start in 0..free.len() {
        if grouped[start] {
            continue;
        }
        grouped[start] = true;
        let mut members = vec![start];
        let mut next = 0;
        while next < members.len() {
            let at = members[next];
            for other in 0..free.len() {
                if !grouped[other] && meets(&free[at].footprint, &free[other].footprint) {
                    grouped[other] = true;
                    members.push(other);
                }
            }
            next += 1;
        }
        members.sort_unstable();
        groups.push(members.into_iter().map(|i| free[i]).collect());
    }
    groups
}

/// How many of each buffer to take, at most `total` in all: equal shares, and what a short
/// buffer leaves of its share goes to the longer ones. The first ones get the remainder.
fn allot(buffered: &[usize], total: usize) -> Vec<usize> {
    let mut take = vec![0; buffered.len()];
    let mut room = total;
    loop {
        let open: Vec<usize> = (0..buffered.len()).filter(|&i| take[i] < buffered[i]).collect();
        if room == 0 || open.is_empty() {
            return take;
        }
        let share = (room / open.len()).max(1);
        for i in open {
            let n = share.min(buffered[i] - take[i]).min(room);
            take[i] += n;
            room -= n;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn candidate(
        key: &'static str,
        buffered: usize,
        ready: bool,
        projects: &[&'static str],
    ) -> Candidate<'static, &'static str> {
        let footprint = projects.iter().copied().collect();
        Candidate { key, buffered, ready, since: Instant::now(), footprint }
    }

    fn held(projects: &[&'static str]) -> Footprint<'static> {
        projects.iter().copied().collect()
    }

    #[test]
    fn partitions_of_one_project_form_one_batch() {
        let c = [
            candidate("p0", 3, true, &["acme"]),
            candidate("p1", 2, false, &["acme"]),
            candidate("p2", 4, true, &["acme"]),
        ];
        assert_eq!(plan(&c, &[], 1000), vec![vec![("p0", 3), ("p1", 2), ("p2", 4)]]);
    }

    #[test]
    fn partitions_of_disjoint_projects_form_batches_of_their_own() {
        let c = [
            candidate("p0", 3, true, &["acme"]),
            candidate("p1", 2, true, &["globex"]),
            candidate("p2", 1, true, &["acme"]),
        ];
        assert_eq!(plan(&c, &[], 1000), vec![vec![("p0", 3), ("p2", 1)], vec![("p1", 2)]]);
    }

    #[test]
    fn partitions_sharing_a_project_through_a_third_go_together() {
        let c = [
            candidate("p0", 1, true, &["acme"]),
            candidate("p1", 1, false, &["globex"]),
            candidate("p2", 1, false, &["acme", "globex"]),
        ];
        assert_eq!(plan(&c, &[], 1000), vec![vec![("p0", 1), ("p1", 1), ("p2", 1)]]);
    }

    #[test]
    fn a_partition_whose_project_is_in_flight_waits_for_that_batch() {
        let c = [candidate("p0", 3, true, &["acme"]), candidate("p1", 2, true, &["globex"])];
        assert_eq!(plan(&c, &[held(&["acme", "initech"])], 1000), vec![vec![("p1", 2)]]);
    }

    #[test]
    fn inputs_naming_no_project_lock_nothing_and_wait_for_no_one() {
        let c = [candidate("p0", 2, true, &[]), candidate("p1", 1, true, &["acme"])];
        assert_eq!(plan(&c, &[held(&["acme"])], 1000), vec![vec![("p0", 2)]]);
    }

    #[test]
    fn a_group_with_no_ready_partition_keeps_waiting() {
        let c = [candidate("p0", 3, false, &["acme"]), candidate("p1", 2, false, &["acme"])];
        assert!(plan(&c, &[], 1000).is_empty());
    }

    #[test]
    fn a_group_over_the_batch_size_takes_fair_shares_longest_waiting_first() {
        let mut c = vec![
            candidate("p0", 900, true, &["acme"]),
            candidate("p1", 10, true, &["acme"]),
            candidate("p2", 900, true, &["acme"]),
        ];
        c[2].since = c[0].since - Duration::from_secs(1);
        assert_eq!(plan(&c, &[], 1000), vec![vec![("p2", 495), ("p0", 495), ("p1", 10)]]);
        assert_eq!(plan(&c, &[], 1), vec![vec![("p2", 1)]], "nothing is taken from the others");
    }

    #[test]
    fn shares_add_up_to_the_room_or_to_everything_buffered() {
        for (buffered, total) in [(vec![5, 5, 5], 10), (vec![1, 100], 50), (vec![3, 4], 100), (vec![7], 3)] {
            let take = allot(&buffered, total);
            assert_eq!(
                take.iter().sum::<usize>(),
                total.min(buffered.iter().sum()),
                "{buffered:?} in {total}"
            );
            assert!(take.iter().zip(&buffered).all(|(t, b)| t <= b));
        }
    }
}
