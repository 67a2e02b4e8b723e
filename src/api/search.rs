//! `GET /v1/projects/{project}/clients?q=`: the cards most like what an operator typed (SPEC
//! "Read API", search). The query is read every way it could be meant at once: a phone in
//! any spelling or its last digits, an e-mail or its beginning, an identifier or field value,
//! a name by word prefixes and, for typos, by trigrams. Each way looks up the store's search
//! index (bounded reads); the scores here rank what came back.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::config::ProjectConfig;
use crate::identify::normalize;
use crate::model::search::{fold, reversed_digits, similarity, trigrams, words};
use crate::store::{Hit, Match, Store, StoreResult};

/// Rows read per lookup: far more than 20 results need, few enough to stay cheap.
const PER_LOOKUP: usize = 200;
/// Least trigram similarity for a word to count as a typo of another.
const SIMILAR: f64 = 0.4;

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Matched {
    pub field: String,
    pub value: String,
    /// `exact`, `prefix`, `suffix` or `similar`.
    #[schema(value_type = String)]
    pub how: &'static str,
}

/// A card found, before its summary is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub client_id: String,
    pub score: f64,
    pub matched: Vec<Matched>,
}

#[derive(Default)]
struct Scores {
    /// Card → its best identifier match.
    ids: HashMap<String, (f64, Matched)>,
    /// Card → per query word, its best name match.
    names: HashMap<String, BTreeMap<usize, (f64, Matched)>>,
}

impl Scores {
    fn identifier(&mut self, hit: Hit, score: f64, how: &'static str) {
        let matched = Matched { field: hit.field, value: hit.value, how };
        let best = self.ids.entry(hit.client_id).or_insert((0.0, matched.clone()));
        if score > best.0 {
            *best = (score, matched);
        }
    }

    fn name(&mut self, hit: Hit, word: usize, score: f64, how: &'static str) {
        let matched = Matched { field: hit.field, value: hit.value, how };
        let words = self.names.entry(hit.client_id).or_default();
        let best = words.entry(word).or_insert((0.0, matched.clone()));
        if score > best.0 {
            *best = (score, matched);
        }
    }

    /// Cards ranked: the better of a card's identifier match and its name match (every query
    /// word must match a word of the name), ties by id.
    fn ranked(self, query_words: usize, limit: usize) -> Vec<Found> {
        let mut by_card: HashMap<String, Found> = HashMap::new();
        for (id, (score, matched)) in self.ids {
            by_card.insert(id.clone(), Found { client_id: id, score, matched: vec![matched] });
        }
        for (id, words) in self.names {
            if words.len() < query_words {
                continue;
            }
            let score = words.values().map(|(s, _)| s).sum::<f64>() / query_words as f64;
            let mut matched: Vec<Matched> = Vec::new();
            for (_, m) in words.into_values() {
                if !matched.contains(&m) {
                    matched.push(m);
                }
            }
            let found =
                by_card.entry(id.clone()).or_insert(Found { client_id: id, score: 0.0, matched: vec![] });
            if score > found.score {
                found.score = score;
            }
            found.matched.extend(matched);
        }
        let mut out: Vec<Found> = by_card.into_values().collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.client_id.cmp(&b.client_id)));
        out.truncate(limit);
        for f in &mut out {
            f.score = (f.score * 1000.0).round() / 1000.0;
        }
        out
    }
}

/// Whether a query reads as a phone: digits and the punctuation phones are written with.
fn looks_like_phone(q: &str) -> bool {
    let digits = q.chars().filter(char::is_ascii_digit).count();
    digits >= 4 && q.chars().all(|c| c.is_ascii_digit() || " +-().".contains(c))
}

/// The cards of a project most like `q`, best first.
pub async fn search(
    store: &Store,
    project: &ProjectConfig,
    q: &str,
    limit: usize,
) -> StoreResult<Vec<Found>> {
    let p = project.id.as_str();
    let folded = fold(q);
    let mut scores = Scores::default();
    for hit in store.search_terms(p, &format!("i:{folded}"), Match::Exact, PER_LOOKUP).await? {
        scores.identifier(hit, 1.0, "exact");
    }
    if q.contains('@') {
        for hit in store.search_terms(p, &format!("e:{folded}"), Match::Prefix, PER_LOOKUP).await? {
            let exact = hit.term == format!("e:{folded}");
            scores.identifier(hit, if exact { 1.0 } else { 0.8 }, if exact { "exact" } else { "prefix" });
        }
    }
    if looks_like_phone(q) {
        if let Ok(phone) = normalize::phone(q, &project.default_region) {
            for hit in store.search_terms(p, &format!("p:{phone}"), Match::Exact, PER_LOOKUP).await? {
                scores.identifier(hit, 1.0, "exact");
            }
        }
        let tail = format!("s:{}", reversed_digits(q));
        for hit in store.search_terms(p, &tail, Match::Prefix, PER_LOOKUP).await? {
            scores.identifier(hit, 0.7, "suffix");
        }
    }
    let query_words = words(q);
    for (i, word) in query_words.iter().enumerate() {
        name_word(store, p, &mut scores, (i, word)).await?;
    }
    Ok(scores.ranked(query_words.len(), limit))
}

/// One query word against the names: word prefixes, then trigram look-alikes.
async fn name_word(store: &Store, p: &str, scores: &mut Scores, (i, word): (usize, &str)) -> StoreResult<()> {
    for hit in store.search_terms(p, &format!("n:{word}"), Match::Prefix, PER_LOOKUP).await? {
        let exact = hit.term.len() == word.len() + 2;
        scores.name(hit, i, if exact { 1.0 } else { 0.8 }, if exact { "exact" } else { "prefix" });
    }
    if word.chars().count() < 3 {
        return Ok(());
    }
    let mut seen: HashMap<String, Hit> = HashMap::new();
    for t in trigrams(word) {
        for hit in store.search_terms(p, &format!("t:{t}"), Match::Exact, PER_LOOKUP).await? {
            seen.entry(hit.client_id.clone()).or_insert(hit);
        }
    }
    for hit in seen.into_values() {
        let best = words(&hit.value).iter().map(|w| similarity(word, w)).fold(0.0, f64::max);
        if best >= SIMILAR {
            scores.name(hit, i, 0.6 * best, "similar");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: &str, field: &str, value: &str) -> Hit {
        Hit { client_id: id.into(), term: String::new(), field: field.into(), value: value.into() }
    }

    #[test]
    fn every_query_word_must_match_the_name_and_better_matches_rank_first() {
        let mut s = Scores::default();
        s.name(hit("a", "name", "Alfred Hitchcock"), 0, 0.6, "similar");
        s.name(hit("a", "name", "Alfred Hitchcock"), 1, 0.8, "prefix");
        s.name(hit("b", "name", "Alfred Brown"), 0, 1.0, "exact");
        s.identifier(hit("c", "phone", "+79991234567"), 0.7, "suffix");
        let ranked: Vec<(String, f64)> =
            s.ranked(2, 20).into_iter().map(|f| (f.client_id, f.score)).collect();
        assert_eq!(ranked, [("a".to_string(), 0.7), ("c".to_string(), 0.7)], "ties by id; b misses a word");
    }

    #[test]
    fn phone_spellings_read_as_phones_and_names_do_not() {
        assert!(looks_like_phone("8 (999) 123-45-67"));
        assert!(looks_like_phone("4567"));
        assert!(!looks_like_phone("123"));
        assert!(!looks_like_phone("Anna 4567"));
    }
}
