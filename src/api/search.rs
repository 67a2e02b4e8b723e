//! `GET /v1/projects/{project}/clients?q=`: the cards most like what an operator typed (SPEC
//! "Read API", search). The query is read every way it could be meant at once: a phone in
//! any spelling or its last digits, an e-mail or its beginning, an identifier or field value,
//! a name whole (its words in one lookup, the last one as typed so far) or word by word. A
//! misspelt name word is first corrected against the project's vocabulary of name words,
//! then looked up as spelt. Each way is a bounded read of the store's search index; the
//! scores here rank what came back.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use crate::config::ProjectConfig;
use crate::identify::normalize;
use crate::model::search::{fold, likeness, reversed_digits, trigrams, words, MIN_TYPO_WORD};
use crate::store::{Hit, Match, Store, StoreResult};

/// Rows read per lookup: far more than 20 results need, few enough to stay cheap.
const PER_LOOKUP: usize = 200;
/// Vocabulary words read per trigram of a word that may be misspelt.
const PER_TRIGRAM: usize = 500;
/// Least likeness for a word of the vocabulary to be what a typo meant.
const LIKE: f64 = 0.75;
/// Longest query word corrected for typos.
const MAX_TYPO_WORD: usize = 32;
/// Corrections tried per query word.
const CORRECTIONS: usize = 2;
/// Whole-name lookups per query: the likeliest readings of its words.
const READINGS: usize = 8;
/// Query words a name is matched on.
const NAME_WORDS: usize = 4;

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

    /// Cards whose name matched every one of the query's `words`.
    fn named(&self, words: usize) -> usize {
        self.names.values().filter(|w| w.len() >= words).count()
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
    // An e-mail is found by its beginning, typed with or without the @.
    if q.contains('@') || (q.len() >= 3 && !q.contains(char::is_whitespace) && !looks_like_phone(q)) {
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
    // A name holds neither an @ nor only digits: such queries are contacts alone.
    let query_words: Vec<String> = if q.contains('@') || looks_like_phone(q) {
        Vec::new()
    } else {
        words(q).into_iter().take(NAME_WORDS).collect()
    };
    names(store, p, &mut scores, &query_words, limit).await?;
    Ok(scores.ranked(query_words.len(), limit))
}

/// One way to read a query word: as typed, or as a word of the vocabulary it misspells.
#[derive(Debug, Clone, PartialEq)]
struct Reading {
    word: String,
    /// What a card matching it scores for this word (the likeness of a correction).
    score: f64,
    corrected: bool,
}

/// A word as typed.
fn as_typed(word: &str) -> Reading {
    Reading { word: word.to_string(), score: 1.0, corrected: false }
}

/// A word as typed, then what it may misspell: the likeliest words of the project's names
/// sharing a trigram with it, when it is not itself one of them.
async fn readings(store: &Store, p: &str, word: &str) -> StoreResult<Vec<Reading>> {
    let mut out = vec![as_typed(word)];
    // A longer word is no name word's typo, and would cost a lookup per trigram.
    if !(MIN_TYPO_WORD..=MAX_TYPO_WORD).contains(&word.chars().count()) || store.has_word(p, word).await? {
        return Ok(out);
    }
    let mut vocabulary = BTreeSet::new();
    for t in trigrams(word) {
        vocabulary.extend(store.words_with_trigram(p, &t, PER_TRIGRAM).await?);
    }
    let mut alike: Vec<(f64, String)> =
        vocabulary.into_iter().map(|w| (likeness(word, &w), w)).filter(|(l, _)| *l >= LIKE).collect();
    alike.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    out.extend(alike.into_iter().take(CORRECTIONS).map(|(l, w)| Reading {
        word: w,
        score: 0.6 * l,
        corrected: true,
    }));
    Ok(out)
}

/// Every way to read the query, one reading per word, likeliest first, at most `n`.
fn combinations(per_word: &[Vec<Reading>], n: usize) -> Vec<Vec<Reading>> {
    let mut all: Vec<Vec<Reading>> = vec![Vec::new()];
    for readings in per_word {
        all = all
            .into_iter()
            .flat_map(|head| {
                readings.iter().map(move |r| {
                    let mut next = head.clone();
                    next.push(r.clone());
                    next
                })
            })
            .collect();
    }
    let total = |c: &[Reading]| c.iter().map(|r| r.score).sum::<f64>();
    all.sort_by(|a, b| total(b).total_cmp(&total(a)));
    all.truncate(n);
    all
}

/// The query's words against names: whole names first, then word by word for names that
/// hold the words apart or in another order. Corrections are looked for only when the words
/// as typed fill less than a page: a card matching a correction scores below every card
/// matching the words as typed, so it could not make the page.
async fn names(
    store: &Store,
    p: &str,
    scores: &mut Scores,
    words: &[String],
    limit: usize,
) -> StoreResult<()> {
    if words.is_empty() {
        return Ok(());
    }
    let typed: Vec<Reading> = words.iter().map(|w| as_typed(w)).collect();
    if words.len() > 1 {
        whole_name(store, p, scores, &typed).await?;
    }
    if words.len() == 1 || scores.named(words.len()) < limit {
        for (i, r) in typed.iter().enumerate() {
            name_word(store, p, scores, i, r).await?;
        }
    }
    if scores.named(words.len()) >= limit {
        return Ok(());
    }
    let mut per_word = Vec::with_capacity(words.len());
    for w in words {
        per_word.push(readings(store, p, w).await?);
    }
    let corrected = |combo: &[Reading]| combo.iter().any(|r| r.corrected);
    if words.len() > 1 {
        for combo in combinations(&per_word, READINGS).iter().filter(|c| corrected(c)) {
            whole_name(store, p, scores, combo).await?;
        }
    } else {
        for r in per_word[0].iter().filter(|r| r.corrected) {
            name_word(store, p, scores, 0, r).await?;
        }
    }
    Ok(())
}

/// Names holding these words in this order, the last one as typed so far.
async fn whole_name(store: &Store, p: &str, scores: &mut Scores, combo: &[Reading]) -> StoreResult<()> {
    let key = combo.iter().map(|r| r.word.as_str()).collect::<Vec<_>>().join(" ");
    for hit in store.search_terms(p, &format!("f:{key}"), Match::Prefix, PER_LOOKUP).await? {
        let rest = hit.term.get(2 + key.len()..).unwrap_or_default();
        let last_whole = rest.is_empty() || rest.starts_with(' ');
        for (i, r) in combo.iter().enumerate() {
            let (score, how) = match r {
                r if r.corrected => (r.score, "similar"),
                _ if i + 1 == combo.len() && !last_whole => (0.8, "prefix"),
                _ => (1.0, "exact"),
            };
            scores.name(hit.clone(), i, score, how);
        }
    }
    Ok(())
}

/// Names with a word starting with this reading of query word `i` (or equal to a correction).
async fn name_word(store: &Store, p: &str, scores: &mut Scores, i: usize, r: &Reading) -> StoreResult<()> {
    let how = if r.corrected { Match::Exact } else { Match::Prefix };
    for hit in store.search_terms(p, &format!("n:{}", r.word), how, PER_LOOKUP).await? {
        let (score, how) = match hit.term.len() == r.word.len() + 2 {
            _ if r.corrected => (r.score, "similar"),
            true => (1.0, "exact"),
            false => (0.8, "prefix"),
        };
        scores.name(hit, i, score, how);
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
    fn the_likeliest_readings_of_a_query_come_first() {
        let r = |w: &str, score: f64| Reading { word: w.into(), score, corrected: score < 1.0 };
        let per_word =
            vec![vec![r("anna", 1.0)], vec![r("smrinova", 1.0), r("smirnova", 0.52), r("smirnov", 0.4)]];
        let words = |c: &Vec<Reading>| c.iter().map(|r| r.word.clone()).collect::<Vec<_>>().join(" ");
        let combos: Vec<String> = combinations(&per_word, 2).iter().map(words).collect();
        assert_eq!(combos, ["anna smrinova", "anna smirnova"]);
    }

    #[test]
    fn phone_spellings_read_as_phones_and_names_do_not() {
        assert!(looks_like_phone("8 (999) 123-45-67"));
        assert!(looks_like_phone("4567"));
        assert!(!looks_like_phone("123"));
        assert!(!looks_like_phone("Anna 4567"));
    }
}
