//! What a client card holds (SPEC "Identity rules that users rely on" 2-5): values kept as
//! given and compared normalised, several per field, each with its source; the name with its
//! provenance; values that could not be read, kept for operators and never compared.
//!
//! Pure data and the small decisions over it (is this value new, which one is dropped at the
//! bound, which name wins). Merging whole cards is `matching::rules::merged_card`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};

use super::{Millis, Visitor};

/// At most this many values of one field (or contact type) per card; beyond it the oldest
/// automatic value is dropped (SPEC rule 3).
pub const MAX_VALUES_PER_FIELD: usize = 10;
/// Hand-added contacts of one type per card, on every operator path (SPEC rule 6).
pub const MAX_MANUAL_CONTACTS: usize = 3;
/// Name claims kept per card: the best ones; a card seen by thousands of visitors (a fixed
/// corporate client) must not grow without bound.
const MAX_NAME_CLAIMS: usize = 16;

/// The contact types that identify a person everywhere: values of these fields are contacts,
/// every other field a visitor, the bot or the CRM brings is a custom field.
pub const IDENTIFIER_TYPES: [&str; 3] = ["phone", "email", "crm_id"];

/// Whether values of `field` are contacts (phone, e-mail, CRM id) rather than custom fields.
pub fn is_identifier(field: &str) -> bool {
    IDENTIFIER_TYPES.contains(&field)
}

/// Where a value came from. Only `manual` values count towards the three-per-type limit.
#[derive(
    strum::IntoStaticStr, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Source {
    /// An operator (add_contact, create_client, set_client_field, identify_client).
    Manual,
    /// What a channel gateway sent (visitor attributes, a WhatsApp or e-mail visitor ID).
    Gateway,
    /// A client's answer to a bot question.
    Bot,
    /// The project's CRM.
    Crm,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One value of a field: normalised for comparison, with the spelling it arrived in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CardValue {
    /// The normalised form rules, guards and lookups compare (`+79991234567`).
    pub value: String,
    /// The spelling it arrived with, when it differs from `value` (`8 (999) 123-45-67`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    pub source: Source,
    /// Event time it was added: the oldest automatic value is the one dropped at the bound.
    pub at: Millis,
    /// The visitor handle (`v:channel:visitor`) it came through, kept on merged cards only:
    /// a split gives a restored card what arrived through its visitors after the merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

impl CardValue {
    pub fn new(value: String, display: &str, source: Source, at: Millis) -> Self {
        let display = (display != value).then(|| display.to_string());
        CardValue { value, display, source, at, via: None }
    }

    /// The same value, noted as having come through `handle` when `card` is a merged card.
    pub fn through(mut self, card: &ClientDoc, handle: String) -> Self {
        if card.group_size > 1 {
            self.via = Some(handle);
        }
        self
    }

    /// The value as it was given.
    pub fn display(&self) -> &str {
        self.display.as_deref().unwrap_or(&self.value)
    }

    fn is_manual(&self) -> bool {
        self.source == Source::Manual
    }
}

/// A card written by the first release stored each value as a plain (normalised) string:
/// it reads as a gateway value whose display is that string.
impl<'de> Deserialize<'de> for CardValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Full {
            value: String,
            #[serde(default)]
            display: Option<String>,
            source: Source,
            #[serde(default)]
            at: Millis,
            #[serde(default)]
            via: Option<String>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Plain(String),
            Full(Full),
        }
        Ok(match Repr::deserialize(d)? {
            Repr::Plain(value) => {
                CardValue { value, display: None, source: Source::Gateway, at: 0, via: None }
            }
            Repr::Full(f) => {
                CardValue { value: f.value, display: f.display, source: f.source, at: f.at, via: f.via }
            }
        })
    }
}

/// Values of one field, oldest first. The first release kept one string per custom field.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Vec<CardValue>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        One(String),
        Many(Vec<CardValue>),
    }
    let raw = BTreeMap::<String, Repr>::deserialize(d)?;
    let one = |value| CardValue { value, display: None, source: Source::Gateway, at: 0, via: None };
    Ok(raw
        .into_iter()
        .map(|(k, r)| match r {
            Repr::One(v) => (k, vec![one(v)]),
            Repr::Many(vs) => (k, vs),
        })
        .collect())
}

/// How much a name is worth (SPEC rule 2): an operator's word over the CRM's, over the name
/// that came with an external ID (the customer's own login), over any other profile name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameRank {
    Channel,
    ExternalId,
    Crm,
    Operator,
}

/// A name one source gave the card. The card's name is the best claim: highest rank, then
/// the most recently set. Each source (a visitor handle, `crm`, `operator`) holds one claim,
/// so a visitor repeating its profile name sets nothing, and two visitors of one card with
/// different names do not rename it at every message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NameClaim {
    pub name: String,
    pub rank: NameRank,
    pub source: String,
    pub at: Millis,
}

impl NameClaim {
    fn key(&self) -> (NameRank, Millis, std::cmp::Reverse<&str>) {
        (self.rank, self.at, std::cmp::Reverse(self.source.as_str()))
    }
}

/// A value that could not be read as its field (a phone that is no valid number): shown to
/// operators, never compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidValue {
    pub field: String,
    pub display: String,
    pub source: Source,
    pub at: Millis,
}

/// The mutable part of a client card, stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientDoc {
    /// The best of `names` (kept here too: every event's client summary shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<NameClaim>,
    /// Contacts by type (`phone`, `email`, `crm_id`, custom types such as `skype`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "one_or_many")]
    pub contacts: BTreeMap<String, Vec<CardValue>>,
    /// Custom fields, several values each.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "one_or_many")]
    pub fields: BTreeMap<String, Vec<CardValue>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_values: Vec<InvalidValue>,
    /// Tags on the client's dialogue (seed 003), in the order they were added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Comments on the client's dialogue: shown with every appeal of the card.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub comments: Vec<super::Comment>,

    /// The first release's list of hand-added contacts; [`ClientDoc::upgrade`] folds it into
    /// the values' sources.
    #[serde(default, skip_serializing)]
    pub manual_contacts: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub visitors: BTreeSet<Visitor>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub external_ids: BTreeSet<String>,
    /// Time of the client's last own message per visitor handle (`v:channel:visitor`): the
    /// messengers' reply window is per conversation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_inbound: BTreeMap<String, Millis>,
    /// Original cards this card stands for (1 + everything merged into it).
    #[serde(default = "one")]
    pub group_size: usize,
    /// Cards an operator split from this one: no rule, external ID or bot answer merges
    /// them again until an operator merges them or allows it (SPEC identity rule 9).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub blocked_merges: BTreeSet<String>,
    /// +1 on every change of the card an operator sees (SPEC identity rule 10); set by the
    /// store when a changed card is put, never by a stage. 0: a card stored before revisions.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub revision: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn one() -> usize {
    1
}

/// What [`ClientDoc::add_value`] did: added a new value, or found it there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    New,
    Known,
}

impl ClientDoc {
    /// Whether two versions of a card differ in what an operator sees of it: everything but
    /// the revision itself and the time of the client's last message (messages do not
    /// change the card).
    pub fn same_card(&self, other: &ClientDoc) -> bool {
        self.name == other.name
            && self.names == other.names
            && self.contacts == other.contacts
            && self.fields == other.fields
            && self.invalid_values == other.invalid_values
            && self.tags == other.tags
            && self.comments == other.comments
            && self.manual_contacts == other.manual_contacts
            && self.visitors == other.visitors
            && self.blocked_merges == other.blocked_merges
            && self.external_ids == other.external_ids
            && self.group_size == other.group_size
    }

    /// Brings a document written by the first release to this shape: hand-added contacts
    /// become `manual` values, a name with no claims becomes a profile name set when the card
    /// was created (so any later name of the same rank replaces it).
    pub fn upgrade(&mut self, created_at: Millis) {
        for (kind, values) in std::mem::take(&mut self.manual_contacts) {
            for v in self.contacts.entry(kind).or_default() {
                if values.contains(&v.value) {
                    v.source = Source::Manual;
                }
            }
        }
        if self.names.is_empty() {
            if let Some(name) = &self.name {
                let claim = NameClaim {
                    name: name.clone(),
                    rank: NameRank::Channel,
                    source: "legacy".into(),
                    at: created_at,
                };
                self.names.push(claim);
            }
        }
    }

    /// Normalised values of `field` a rule can see: contacts of that type and the custom
    /// field of that name.
    pub fn values(&self, field: &str) -> impl Iterator<Item = &str> {
        let contacts = self.contacts.get(field).into_iter().flatten();
        let fields = self.fields.get(field).into_iter().flatten();
        contacts.chain(fields).map(|v| v.value.as_str())
    }

    /// Adds a value to a contact type or custom field (by `contact`); a value the field
    /// already holds (normalised) is not added again.
    pub fn add_value(&mut self, contact: bool, field: &str, v: CardValue) -> Added {
        let map = if contact { &mut self.contacts } else { &mut self.fields };
        let values = map.entry(field.to_string()).or_default();
        if values.iter().any(|x| x.value == v.value) {
            return Added::Known;
        }
        values.push(v);
        bound(values);
        Added::New
    }

    /// Hand-added values of a contact type.
    pub fn manual_count(&self, kind: &str) -> usize {
        self.contacts.get(kind).map_or(0, |vs| vs.iter().filter(|v| v.is_manual()).count())
    }

    /// `set_client_field` on a custom field: the operator's value replaces the operator's
    /// previous one; values the gateways, the bot and the CRM brought stay.
    pub fn set_manual_field(&mut self, field: &str, v: CardValue) -> bool {
        let values = self.fields.entry(field.to_string()).or_default();
        let before = values.clone();
        values.retain(|x| !x.is_manual() && x.value != v.value);
        values.push(v);
        bound(values);
        *values != before
    }

    /// Removes a contact value; returns whether the card had it.
    pub fn remove_contact(&mut self, kind: &str, value: &str) -> bool {
        let Some(values) = self.contacts.get_mut(kind) else { return false };
        let before = values.len();
        values.retain(|v| v.value != value);
        let removed = values.len() != before;
        if values.is_empty() {
            self.contacts.remove(kind);
        }
        removed
    }

    /// Keeps a value that could not be read; a repeat of one already kept changes nothing.
    pub fn add_invalid(&mut self, v: InvalidValue) -> bool {
        let same = |x: &InvalidValue| x.field == v.field && x.display == v.display;
        if self.invalid_values.iter().any(same) {
            return false;
        }
        self.invalid_values.push(v);
        let field = self.invalid_values.last().map(|v| v.field.clone()).unwrap_or_default();
        while self.invalid_values.iter().filter(|x| x.field == field).count() > MAX_VALUES_PER_FIELD {
            let oldest = self.invalid_values.iter().position(|x| x.field == field).expect("counted above");
            self.invalid_values.remove(oldest);
        }
        true
    }

    /// Records a name a source gave; returns whether the card's name changed. A source holds
    /// one claim per rank: a visitor's name sent without its external ID does not withdraw
    /// the one it sent signed in.
    pub fn claim_name(&mut self, claim: NameClaim) -> bool {
        match self.names.iter_mut().find(|c| c.source == claim.source && c.rank == claim.rank) {
            Some(c) if c.name == claim.name => return false,
            Some(c) => *c = claim,
            None => self.names.push(claim),
        }
        self.settle_name()
    }

    /// Sets `name` to the best claim, keeping the bounded best few; returns whether it changed.
    pub fn settle_name(&mut self) -> bool {
        self.names.sort_by(|a, b| b.key().cmp(&a.key()));
        self.names.truncate(MAX_NAME_CLAIMS);
        let best = self.names.first().map(|c| c.name.clone());
        let changed = best != self.name;
        self.name = best;
        changed
    }
}

/// Holds a field to [`MAX_VALUES_PER_FIELD`] values: the oldest automatic value goes first,
/// and only a field of nothing but operators' values loses its oldest manual one.
pub fn bound(values: &mut Vec<CardValue>) {
    while values.len() > MAX_VALUES_PER_FIELD {
        let oldest = |manual: bool| {
            values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_manual() == manual)
                .min_by_key(|(_, v)| v.at)
                .map(|(i, _)| i)
        };
        let i = oldest(false).or_else(|| oldest(true)).expect("a full field has values");
        values.remove(i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gw(value: &str, at: Millis) -> CardValue {
        CardValue::new(value.into(), value, Source::Gateway, at)
    }

    #[test]
    fn a_value_keeps_its_spelling_and_is_compared_normalised() {
        let mut doc = ClientDoc::default();
        let v = CardValue::new("vip: call after 6 pm".into(), "VIP: call after 6 PM", Source::Manual, 1);
        assert_eq!(doc.add_value(false, "note", v), Added::New);
        let again = CardValue::new("vip: call after 6 pm".into(), "vip: CALL after 6 pm", Source::Gateway, 2);
        assert_eq!(doc.add_value(false, "note", again), Added::Known);
        assert_eq!(doc.fields["note"][0].display(), "VIP: call after 6 PM");
        assert_eq!(doc.values("note").collect::<Vec<_>>(), ["vip: call after 6 pm"]);
    }

    #[test]
    fn a_full_field_drops_its_oldest_automatic_value_and_keeps_the_operators() {
        let mut doc = ClientDoc::default();
        doc.add_value(false, "f", CardValue::new("manual".into(), "manual", Source::Manual, 0));
        for i in 1..=MAX_VALUES_PER_FIELD as i64 {
            doc.add_value(false, "f", gw(&format!("v{i}"), i));
        }
        let kept: Vec<&str> = doc.values("f").collect();
        assert_eq!(kept.len(), MAX_VALUES_PER_FIELD);
        assert!(kept.contains(&"manual"));
        assert!(!kept.contains(&"v1"), "the oldest automatic value went: {kept:?}");
    }

    #[test]
    fn the_operators_field_value_replaces_only_the_operators_previous_one() {
        let mut doc = ClientDoc::default();
        doc.add_value(false, "segment", gw("retail", 1));
        assert!(doc.set_manual_field("segment", CardValue::new("vip".into(), "VIP", Source::Manual, 2)));
        assert!(doc.set_manual_field("segment", CardValue::new("gold".into(), "Gold", Source::Manual, 3)));
        assert_eq!(doc.values("segment").collect::<Vec<_>>(), ["retail", "gold"]);
    }

    #[test]
    fn a_higher_rank_wins_and_equal_ranks_go_to_the_most_recently_set() {
        let mut doc = ClientDoc::default();
        let claim = |name: &str, rank, source: &str, at| NameClaim {
            name: name.into(),
            rank,
            source: source.into(),
            at,
        };
        assert!(doc.claim_name(claim("Guest 123", NameRank::Channel, "v:web:w1", 1)));
        assert!(doc.claim_name(claim("Dmitry Orlov", NameRank::ExternalId, "v:web:w1", 2)));
        assert!(
            !doc.claim_name(claim("dima", NameRank::Channel, "v:tg:t1", 3)),
            "a profile name ranks lower"
        );
        assert!(doc.claim_name(claim("Dmitry O.", NameRank::ExternalId, "v:app:a1", 4)));
        assert!(
            !doc.claim_name(claim("Dmitry Orlov", NameRank::ExternalId, "v:web:w1", 5)),
            "a repeat sets nothing"
        );
        assert_eq!(doc.name.as_deref(), Some("Dmitry O."));
        assert!(doc.claim_name(claim("Ivan Petrov", NameRank::Operator, "operator", 0)));
        assert_eq!(doc.name.as_deref(), Some("Ivan Petrov"));
    }

    #[test]
    fn a_first_release_document_reads_with_display_equal_to_the_stored_value() {
        let old = r#"{"name":"Alfred","contacts":{"phone":["+79991234567","+79990000001"]},
            "manual_contacts":{"phone":["+79990000001"]},"fields":{"contract_number":"d-100"},"group_size":1}"#;
        let mut doc: ClientDoc = serde_json::from_str(old).unwrap();
        doc.upgrade(7);
        let phones = &doc.contacts["phone"];
        assert_eq!((phones[0].display(), phones[0].source), ("+79991234567", Source::Gateway));
        assert_eq!(phones[1].source, Source::Manual);
        assert_eq!(doc.fields["contract_number"][0].display(), "d-100");
        assert_eq!(doc.names[0].at, 7);
        let again: ClientDoc = serde_json::from_str(&serde_json::to_string(&doc).unwrap()).unwrap();
        assert_eq!(again, doc, "the new shape reads back as written");
    }

    #[test]
    fn a_repeated_invalid_value_is_kept_once() {
        let mut doc = ClientDoc::default();
        let bad =
            InvalidValue { field: "phone".into(), display: "12345".into(), source: Source::Gateway, at: 1 };
        assert!(doc.add_invalid(bad.clone()));
        assert!(!doc.add_invalid(InvalidValue { at: 2, ..bad }));
    }
}
