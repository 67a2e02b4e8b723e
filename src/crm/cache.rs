//! Recent CRM answers by identifier, so a client writing ten messages costs one call.
//!
//! Only definite answers are kept (found, not found); a failure is never cached, so the next
//! message tries again. Entries live `ttl`; beyond `capacity` the oldest goes first. Pure
//! state with the time passed in.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::protocol::{FoundClient, Identifier};

/// Entries kept per project before the oldest are dropped.
pub const DEFAULT_CAPACITY: usize = 10_000;

/// A definite answer: the client, or `None` for "not found".
pub type Definite = Option<FoundClient>;

struct Entry {
    answer: Definite,
    stored: Instant,
    seq: u64,
}

pub struct AnswerCache {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<Identifier, Entry>,
    /// Insertion order (`seq` → key): the first is the oldest, so it expires and goes first.
    order: BTreeMap<u64, Identifier>,
    next_seq: u64,
}

impl AnswerCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { ttl, capacity, entries: HashMap::new(), order: BTreeMap::new(), next_seq: 0 }
    }

    /// The answer stored for `id` less than `ttl` ago.
    pub fn get(&mut self, id: &Identifier, now: Instant) -> Option<Definite> {
        let entry = self.entries.get(id)?;
        if self.expired(entry, now) {
            self.remove(id);
            return None;
        }
        Some(entry.answer.clone())
    }

    pub fn put(&mut self, id: Identifier, answer: Definite, now: Instant) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        self.remove(&id);
        self.drop_expired(now);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id.clone());
        self.entries.insert(id, Entry { answer, stored: now, seq });
        while self.entries.len() > self.capacity {
            self.drop_oldest();
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        now.saturating_duration_since(entry.stored) >= self.ttl
    }

    fn remove(&mut self, id: &Identifier) {
        if let Some(entry) = self.entries.remove(id) {
            self.order.remove(&entry.seq);
        }
    }

    /// Entries are in insertion order and share one ttl, so expired ones are all at the front.
    fn drop_expired(&mut self, now: Instant) {
        while let Some((_, id)) = self.order.first_key_value() {
            let stale = self.entries.get(id).is_none_or(|entry| self.expired(entry, now));
            if !stale {
                break;
            }
            self.drop_oldest();
        }
    }

    fn drop_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_first() {
            self.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::IdentifierType;

    const TTL: Duration = Duration::from_secs(600);

    fn phone(n: u32) -> Identifier {
        Identifier::new(IdentifierType::Phone, format!("+7999000{n:04}"))
    }

    fn client(crm_id: &str) -> Definite {
        Some(FoundClient { crm_id: crm_id.into(), name: None, contacts: vec![], fields: Default::default() })
    }

    #[test]
    fn a_second_search_within_the_ttl_is_served_from_the_cache() {
        let (mut cache, now) = (AnswerCache::new(TTL, 10), Instant::now());
        cache.put(phone(1), client("CRM-1"), now);
        assert_eq!(cache.get(&phone(1), now + TTL - Duration::from_secs(1)), Some(client("CRM-1")));
    }

    #[test]
    fn not_found_is_cached_too() {
        let (mut cache, now) = (AnswerCache::new(TTL, 10), Instant::now());
        cache.put(phone(1), None, now);
        assert_eq!(cache.get(&phone(1), now), Some(None));
    }

    #[test]
    fn an_answer_older_than_the_ttl_is_forgotten() {
        let (mut cache, now) = (AnswerCache::new(TTL, 10), Instant::now());
        cache.put(phone(1), client("CRM-1"), now);
        assert_eq!(cache.get(&phone(1), now + TTL), None);
        assert!(cache.is_empty());
    }

    #[test]
    fn beyond_the_capacity_the_oldest_answer_is_evicted() {
        let (mut cache, now) = (AnswerCache::new(TTL, 2), Instant::now());
        for n in 1..=3 {
            cache.put(phone(n), None, now);
        }
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.get(&phone(1), now), None);
        assert!(cache.get(&phone(3), now).is_some());
    }

    #[test]
    fn storing_an_identifier_again_refreshes_its_age() {
        let (mut cache, now) = (AnswerCache::new(TTL, 2), Instant::now());
        cache.put(phone(1), None, now);
        cache.put(phone(2), None, now);
        cache.put(phone(1), client("CRM-1"), now);
        cache.put(phone(3), None, now);
        assert_eq!(cache.get(&phone(1), now), Some(client("CRM-1")));
        assert_eq!(cache.get(&phone(2), now), None);
    }

    #[test]
    fn expired_entries_are_dropped_when_new_ones_arrive() {
        let (mut cache, now) = (AnswerCache::new(TTL, 10), Instant::now());
        cache.put(phone(1), None, now);
        cache.put(phone(2), None, now + TTL);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn a_zero_ttl_disables_the_cache() {
        let (mut cache, now) = (AnswerCache::new(Duration::ZERO, 10), Instant::now());
        cache.put(phone(1), None, now);
        assert_eq!(cache.get(&phone(1), now), None);
    }
}
