//! Automatic (CRM) identification, the CRM side: a client for the Search Client API
//! (`docs/crm.md`) and an in-process test double of it.
//!
//! A search always comes back as an [`Answer`] (found, not found, or failed with a stable
//! reason) within the configured budget, so the pipeline can proceed unidentified when the CRM
//! is slow or down. Layers, outermost first: answer cache ([`cache`]), per-project concurrency
//! limit, circuit breaker ([`breaker`]), HTTP with a timeout per attempt and bounded retries
//! ([`client`]). Cache and breaker are pure state with the time passed in; only `client` does
//! I/O.

pub mod answer;
pub mod breaker;
pub mod cache;
pub mod client;
pub mod double;
pub mod lookups;
pub mod protocol;

use std::collections::HashMap;

pub use crate::config::IdentifierType;
pub use answer::{Answer, FailReason};
pub use client::{check_certificate, CrmClient, CrmError};
pub use protocol::{Contact, FoundClient, Identifier};

use crate::config::Config;

/// One [`CrmClient`] per project that has `[projects.crm]`; built once at start-up.
#[derive(Clone, Default)]
pub struct CrmDirectory {
    clients: HashMap<String, CrmClient>,
}

impl CrmDirectory {
    pub fn from_config(config: &Config) -> Result<Self, CrmError> {
        let mut clients = HashMap::new();
        for project in &config.projects {
            if let Some(crm) = &project.crm {
                clients.insert(project.id.clone(), CrmClient::new(&project.id, crm)?);
            }
        }
        Ok(Self { clients })
    }

    /// The project's CRM client; `None` when the project has no CRM configured.
    pub fn get(&self, project_id: &str) -> Option<&CrmClient> {
        self.clients.get(project_id)
    }

    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_projects_with_a_crm_get_a_client() {
        let config = Config::from_toml(
            "[[projects]]\nid = \"a\"\n[projects.crm]\nurl = \"http://127.0.0.1:1\"\n[[projects]]\nid = \"b\"\n",
        )
        .unwrap();
        let directory = CrmDirectory::from_config(&config).unwrap();
        assert_eq!(directory.get("a").map(CrmClient::project_id), Some("a"));
        assert!(directory.get("b").is_none());
    }
}
