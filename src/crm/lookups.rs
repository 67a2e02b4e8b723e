//! The CRM answers a batch may use, gathered before its transaction began (see
//! `identify::crm` for why), and the lookups it wanted but did not have.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use super::{Answer, Identifier};

/// (project, identifier): what one CRM search is about.
pub type Lookup = (String, Identifier);

/// The CRM answers a batch may use, and the lookups it wanted but did not have.
#[derive(Default)]
pub struct CrmLookups {
    answers: BTreeMap<Lookup, Answer>,
    /// A Mutex, not a RefCell, only because the batch future must be `Send`; one batch
    /// applies its inputs one at a time, so it is never contended.
    missing: Mutex<BTreeSet<Lookup>>,
}

impl CrmLookups {
    pub fn extend(&mut self, answers: impl IntoIterator<Item = (Lookup, Answer)>) {
        self.answers.extend(answers);
    }

    /// The answer for an identifier; `None` records it as missing (the batch is re-applied
    /// once it has been looked up).
    pub fn answer(&self, project_id: &str, id: &Identifier) -> Option<&Answer> {
        let key = (project_id.to_string(), id.clone());
        let answer = self.answers.get(&key);
        if answer.is_none() {
            self.missing.lock().expect("lookups").insert(key);
        }
        answer
    }

    pub fn take_missing(&self) -> BTreeSet<Lookup> {
        std::mem::take(&mut self.missing.lock().expect("lookups"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_nobody_looked_up_is_recorded_as_missing_once() {
        let lookups = CrmLookups::default();
        let id = Identifier::normalise(crate::crm::IdentifierType::Phone, "+79991234567", "RU").unwrap();
        assert!(lookups.answer("acme", &id).is_none());
        assert!(lookups.answer("acme", &id).is_none());
        assert_eq!(lookups.take_missing().len(), 1);
        assert!(lookups.take_missing().is_empty());
    }
}
