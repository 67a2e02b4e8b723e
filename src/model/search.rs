//! What the read API's client search finds a card by: the terms of a card, written to the
//! store's search index in the batch that changed the card (so a committed card is found at
//! once), and the same folding applied to queries. Pure, so the API and the store agree.
//!
//! Terms are prefixed by kind: `n:` a name word, `t:` a trigram of a name word (typos),
//! `p:` a phone (E.164), `s:` a phone's digits reversed (its last digits), `e:` an e-mail,
//! `i:` any other identifier or value (external ID, CRM id, visitor ID, custom field),
//! case-folded. Prefix searches are range scans over one ordered index.

use std::collections::BTreeSet;

use super::Client;

/// Longest term kept: longer values are still found by their first characters.
pub const MAX_TERM: usize = 200;

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
        for w in words(name) {
            out.extend(trigrams(&w).iter().map(|t| term("t:", t, "name", name)));
            out.insert(term("n:", &w, "name", name));
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
    }

    #[test]
    fn an_absorbed_card_has_no_terms() {
        let mut c = Client::new("c1".into(), "acme".into(), ClientType::Channel, 0);
        c.doc.name = Some("Anna".into());
        c.merged_into = Some("c0".into());
        assert!(terms(&c).is_empty());
    }
}
