//! What the read API's client search finds a card by: the terms of a card, written to the
//! store's search index in the batch that changed the card (so a committed card is found at
//! once), and the same folding applied to queries. Pure, so the API and the store agree.
//!
//! Terms are prefixed by kind: `n:` a name word, `f:` the whole name from each of its first
//! words on (`anna smirnova`, `smirnova anna`: the words of a query meet in one lookup however
//! common each is alone), `p:` a phone (E.164), `s:` a phone's digits reversed (its last
//! digits), `e:` an e-mail, `i:` any other identifier or value (external ID, CRM id, visitor
//! ID, custom field), case-folded. Prefix searches are range scans over one ordered index.
//!
//! Typos are not indexed per card: the project's vocabulary of name words, by trigram
//! ([`vocabulary`]), corrects a query word to words that exist, which are then looked up.

use std::collections::BTreeSet;

use super::Client;

/// Longest term kept: longer values are still found by their first characters.
pub const MAX_TERM: usize = 200;

/// Rotations of a name indexed whole: a name is looked up from any of its first words.
const MAX_ROTATIONS: usize = 4;
/// Shortest word a typo is looked for in: shorter ones have too many look-alikes.
pub const MIN_TYPO_WORD: usize = 4;

/// Lower-cased and trimmed, at most [`MAX_TERM`] bytes (on a character boundary).
pub fn fold(s: &str) -> String {
    let mut out = s.trim().to_lowercase();
    if out.len() > MAX_TERM {
        let mut end = MAX_TERM;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
    }
    out
}

/// The words of a name or query: letters and digits of any script, folded.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(fold).take(16).collect()
}

/// The trigrams of a word (by characters); a shorter word is its own.
pub fn trigrams(word: &str) -> BTreeSet<String> {
    let chars: Vec<char> = word.chars().collect();
    if chars.len() < 3 {
        return BTreeSet::from([word.to_string()]);
    }
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// How alike two words are by their trigrams (shared over all), 0 to 1.
pub fn similarity(a: &str, b: &str) -> f64 {
    let (ta, tb) = (trigrams(a), trigrams(b));
    let shared = ta.intersection(&tb).count() as f64;
    shared / (ta.len() + tb.len()) as f64 * 2.0
}

/// A phone's digits reversed: a suffix search becomes a prefix search.
pub fn reversed_digits(phone: &str) -> String {
    phone.chars().rev().filter(char::is_ascii_digit).collect()
}

/// One entry of the index: the term, and the field and value it stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Term {
    pub term: String,
    pub field: String,
    pub value: String,
}

fn term(prefix: &str, key: &str, field: &str, value: &str) -> Term {
    Term { term: format!("{prefix}{key}"), field: field.to_string(), value: value.to_string() }
}

/// Every term a live card is found by (an absorbed card has none: its survivor holds them).
pub fn terms(c: &Client) -> BTreeSet<Term> {
    let mut out = BTreeSet::new();
    if c.merged_into.is_some() {
        return out;
    }
    if let Some(name) = &c.doc.name {
        let ws = words(name);
        for w in &ws {
            out.insert(term("n:", w, "name", name));
        }
        if ws.len() > 1 {
            for first in 0..ws.len().min(MAX_ROTATIONS) {
                let rotated: Vec<&str> = ws[first..].iter().chain(&ws[..first]).map(String::as_str).collect();
                out.insert(term("f:", &rotated.join(" "), "name", name));
            }
        }
    }
    for (field, values) in c.doc.contacts.iter().chain(c.doc.fields.iter()) {
        for v in values {
            match field.as_str() {
                "phone" => {
                    out.insert(term("p:", &v.value, field, &v.value));
                    out.insert(term("s:", &reversed_digits(&v.value), field, &v.value));
                }
                "email" => {
                    out.insert(term("e:", &fold(&v.value), field, &v.value));
                }
                _ => {
                    out.insert(term("i:", &fold(&v.value), field, &v.value));
                }
            }
        }
    }
    for x in &c.doc.external_ids {
        out.insert(term("i:", &fold(x), "external_id", x));
    }
    for v in &c.doc.visitors {
        out.insert(term("i:", &fold(&v.visitor_id), "visitor_id", &v.visitor_id));
    }
    out
}

/// The card's name words under each of their trigrams: rows of the project's vocabulary,
/// shared by every card with that word.
pub fn vocabulary(c: &Client) -> BTreeSet<(String, String)> {
    let Some(name) = c.doc.name.as_ref().filter(|_| c.merged_into.is_none()) else {
        return BTreeSet::new();
    };
    words(name)
        .into_iter()
        .filter(|w| w.chars().count() >= MIN_TYPO_WORD)
        .flat_map(|w| trigrams(&w).into_iter().map(move |t| (t, w.clone())))
        .collect()
}

/// How alike a typed word is to a word that exists, 0 to 1: one minus the edit distance
/// (a swap of neighbours counts once) over the longer length.
pub fn likeness(typed: &str, word: &str) -> f64 {
    strsim::normalized_damerau_levenshtein(typed, word)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CardValue, ClientType, Source};

    #[test]
    fn names_are_found_by_words_and_trigrams_in_any_script() {
        let mut c = Client::new("c1".into(), "acme".into(), ClientType::Channel, 0);
        c.doc.name = Some("Алексей ПЕТРОВ-Smith".into());
        let t: Vec<String> = terms(&c).into_iter().map(|t| t.term).filter(|t| t.starts_with("n:")).collect();
        assert_eq!(t, ["n:smith", "n:алексей", "n:петров"]);
    }

    #[test]
    fn a_phone_is_found_whole_and_by_its_last_digits() {
        let mut c = Client::new("c1".into(), "acme".into(), ClientType::Channel, 0);
        c.add_contact("phone", CardValue::new("+79991234567".into(), "8 999", Source::Gateway, 0));
        let t: Vec<String> = terms(&c).into_iter().map(|t| t.term).collect();
        assert_eq!(t, ["p:+79991234567", "s:76543219997"]);
    }

    #[test]
    fn a_typo_still_looks_like_the_word() {
        assert!(similarity("alfrd", "alfred") >= 0.4, "{}", similarity("alfrd", "alfred"));
        assert!(similarity("boris", "alfred") < 0.1);
        assert!(likeness("smrinova", "smirnova") >= 0.85, "a swap of neighbours is one edit");
        assert!(likeness("alfrd", "alfred") >= 0.8);
        assert!(likeness("smirnov", "petrova") < 0.5);
    }

    #[test]
    fn a_name_is_indexed_whole_from_each_of_its_words() {
        let mut c = Client::new("c1".into(), "acme".into(), ClientType::Channel, 0);
        c.doc.name = Some("Анна Смирнова-Кузнецова".into());
        let t: Vec<String> = terms(&c).into_iter().map(|t| t.term).filter(|t| t.starts_with("f:")).collect();
        assert_eq!(
            t,
            ["f:анна смирнова кузнецова", "f:кузнецова анна смирнова", "f:смирнова кузнецова анна"]
        );
        let v = vocabulary(&c);
        assert!(v.contains(&("мир".to_string(), "смирнова".to_string())));
        assert_eq!(v.iter().filter(|(_, w)| w == "анна").count(), 2, "анн, нна");
    }

    #[test]
    fn an_absorbed_card_has_no_terms() {
        let mut c = Client::new("c1".into(), "acme".into(), ClientType::Channel, 0);
        c.doc.name = Some("Anna".into());
        c.merged_into = Some("c0".into());
        assert!(terms(&c).is_empty());
    }
}
