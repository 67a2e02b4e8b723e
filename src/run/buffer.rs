//! What `run` holds of a partition before it is applied.

use std::collections::{BTreeMap, BTreeSet};

use super::plan;
use crate::source::{RawInput, SourcePos};

/// A partition's buffered inputs, with the projects they name counted (what groups
/// partitions into batches, see [`plan`]).
#[derive(Default)]
pub(super) struct Buffer {
    inputs: Vec<(RawInput, Option<String>)>,
    projects: BTreeMap<String, usize>,
}

impl Buffer {
    pub(super) fn push(&mut self, input: RawInput) {
        let project = crate::decode::project_of(&input.bytes);
        if let Some(p) = &project {
            *self.projects.entry(p.clone()).or_default() += 1;
        }
        self.inputs.push((input, project));
    }

    pub(super) fn len(&self) -> usize {
        self.inputs.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.inputs.is_empty()
    }

    pub(super) fn footprint(&self) -> plan::Footprint<'_> {
        self.projects.keys().map(String::as_str).collect()
    }

    /// The first `n` inputs and the projects they name.
    pub(super) fn take(&mut self, n: usize) -> (Vec<RawInput>, BTreeSet<String>) {
        let rest = self.inputs.split_off(self.inputs.len().min(n));
        let taken = std::mem::replace(&mut self.inputs, rest);
        let mut projects = BTreeSet::new();
        let inputs = taken
            .into_iter()
            .map(|(input, project)| {
                if let Some(p) = project {
                    self.forget(&p);
                    projects.insert(p);
                }
                input
            })
            .collect();
        (inputs, projects)
    }

    fn forget(&mut self, project: &str) {
        if let Some(n) = self.projects.get_mut(project) {
            *n -= 1;
            if *n == 0 {
                self.projects.remove(project);
            }
        }
    }

    /// Drops the inputs below `next` (applied by a batch that committed meanwhile).
    pub(super) fn drop_below(&mut self, next: i64) {
        let below = |i: &RawInput| matches!(i.pos, SourcePos::Kafka { offset, .. } if offset < next);
        let dropped: Vec<Option<String>> =
            self.inputs.extract_if(.., |(i, _)| below(i)).map(|(_, project)| project).collect();
        dropped.into_iter().flatten().for_each(|p| self.forget(&p));
    }
}
