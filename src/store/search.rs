//! The client search index: built for cards stored before it existed, and read by the API.
//! Batches keep it current (`working_set::clients`).

use super::sql::{self, Db, Param};
use super::{Store, StoreError, StoreResult};

/// Cards indexed per transaction while building the index of an existing store.
const BUILD_PAGE: i64 = 1_000;

/// How one term is looked up: equal to it, or starting with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact,
    Prefix,
}

/// A card a search term led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub client_id: String,
    pub term: String,
    pub field: String,
    pub value: String,
}

/// The first string after every string starting with `prefix` (in byte order).
fn after_prefix(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

impl Store {
    /// Indexes the live cards of a store written before the search index existed, page by
    /// page, once; a store created with it has nothing to do.
    pub(super) async fn build_search_index(&self) -> StoreResult<()> {
        let done = "SELECT value FROM store_meta WHERE key = 'search_index'";
        let rows = self.fetch_all(done, vec![], "read store meta").await?;
        if !rows.is_empty() {
            return Ok(());
        }
        let mut after = String::new();
        let mut cards = 0usize;
        loop {
            let tx = self.pool.begin().await.map_err(StoreError::new("build search index"))?;
            let mut db = Db::new(tx, self.backend);
            let select = format!(
                "SELECT {} FROM clients WHERE merged_into IS NULL AND id > $1 ORDER BY id LIMIT {BUILD_PAGE}",
                sql::CLIENT_COLS
            );
            let rows = db.fetch_all(&select, vec![after.clone().into()], "build search index").await?;
            let page = rows.iter().map(sql::client_from_row).collect::<StoreResult<Vec<_>>>()?;
            let Some(last) = page.last() else {
                let mark =
                    "INSERT INTO store_meta (key, value) VALUES ('search_index', '1') ON CONFLICT DO NOTHING";
                db.fetch_all(mark, vec![], "build search index").await?;
                db.commit("build search index").await?;
                break;
            };
            after = last.id.clone();
            cards += page.len();
            super::working_set::write_search_terms(&mut db, &page.iter().collect::<Vec<_>>()).await?;
            db.commit("build search index").await?;
        }
        if cards > 0 {
            tracing::info!(cards, "search index built for the cards stored before it");
        }
        Ok(())
    }

    /// Drops the search index and its mark, as a store written before it existed has neither
    /// (for tests of the upgrade).
    pub async fn forget_search_index(&self) -> StoreResult<()> {
        let clear = [
            "DELETE FROM search_terms",
            "DELETE FROM search_words",
            "DELETE FROM store_meta WHERE key = 'search_index'",
        ];
        for sql in clear {
            self.fetch_all(sql, vec![], "forget search index").await?;
        }
        Ok(())
    }

    /// The cards of a project a term leads to, at most `limit` rows.
    pub async fn search_terms(
        &self,
        project: &str,
        term: &str,
        how: Match,
        limit: usize,
    ) -> StoreResult<Vec<Hit>> {
        let (filter, params): (&str, Vec<Param>) = match how {
            Match::Exact => ("term = $2", vec![project.into(), term.into()]),
            Match::Prefix => {
                ("term >= $2 AND term < $3", vec![project.into(), term.into(), after_prefix(term).into()])
            }
        };
        let sql = format!(
            "SELECT client_id, term, field, value FROM search_terms WHERE project_id = $1 AND {filter} \
             ORDER BY term, client_id, field, value LIMIT {limit}"
        );
        let rows = self.fetch_all(&sql, params, "search clients").await?;
        Ok(rows
            .iter()
            .map(|r| Hit { client_id: r.get(0), term: r.get(1), field: r.get(2), value: r.get(3) })
            .collect())
    }

    /// Whether a word is in a project's vocabulary of name words (under any of its trigrams,
    /// as each word is stored under all of them).
    pub async fn has_word(&self, project: &str, word: &str) -> StoreResult<bool> {
        let Some(trigram) = crate::model::search::trigrams(word).into_iter().next() else { return Ok(false) };
        let sql = "SELECT 1 FROM search_words WHERE project_id = $1 AND trigram = $2 AND word = $3";
        let params = vec![project.into(), trigram.into(), word.into()];
        Ok(!self.fetch_all(sql, params, "search name words").await?.is_empty())
    }

    /// Name words of a project that share `trigram`, at most `limit`: where a typo is
    /// corrected from.
    pub async fn words_with_trigram(
        &self,
        project: &str,
        trigram: &str,
        limit: usize,
    ) -> StoreResult<Vec<String>> {
        let sql = format!(
            "SELECT word FROM search_words WHERE project_id = $1 AND trigram = $2 ORDER BY word LIMIT {limit}"
        );
        let rows = self.fetch_all(&sql, vec![project.into(), trigram.into()], "search name words").await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
