//! SQL helpers shared by both backends: parameter binding, chunked multi-row statements, and
//! row ↔ domain conversions. Placeholders are written `$N`; [`Backend::statement`] spells
//! them for the backend.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use std::collections::BTreeSet;

use sqlx::{Any, Row, Transaction};

use super::{Backend, StoreError, StoreResult};
use crate::model::{Appeal, AppealStatus, Client, ClientType, Message, StoredMessage};

/// Rows per multi-row statement: far below both backends' parameter limits.
pub(super) const CHUNK_ROWS: usize = 400;

/// A bound value. `Any` supports few types; these are all the schema uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
}

impl From<&str> for Param {
    fn from(s: &str) -> Self {
        Param::Text(s.to_string())
    }
}
impl From<String> for Param {
    fn from(s: String) -> Self {
        Param::Text(s)
    }
}
impl From<i64> for Param {
    fn from(n: i64) -> Self {
        Param::Int(n)
    }
}
impl From<Option<String>> for Param {
    fn from(s: Option<String>) -> Self {
        Param::OptText(s)
    }
}
impl From<Option<i64>> for Param {
    fn from(n: Option<i64>) -> Self {
        Param::OptInt(n)
    }
}

pub fn bind_all<'q>(
    mut query: Query<'q, Any, AnyArguments<'q>>,
    params: Vec<Param>,
) -> Query<'q, Any, AnyArguments<'q>> {
    for p in params {
        query = match p {
            Param::Text(s) => query.bind(s),
            Param::Int(n) => query.bind(n),
            Param::OptText(s) => query.bind(s),
            Param::OptInt(n) => query.bind(n),
        };
    }
    query
}

/// `($1,$2),($3,$4)` for `rows` rows of `cols` columns, numbering from `first`.
pub fn value_tuples(rows: usize, cols: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * cols * 6);
    for r in 0..rows {
        if r > 0 {
            out.push(',');
        }
        out.push('(');
        push_list(&mut out, cols, first + r * cols);
        out.push(')');
    }
    out
}

/// `$first,...` for a list of `n` values.
pub fn list(n: usize, first: usize) -> String {
    let mut out = String::with_capacity(n * 6);
    push_list(&mut out, n, first);
    out
}

/// Appends `$first,...,$(first+n-1)`. A batch's statements carry thousands of placeholders:
/// writing them in place spares an allocation each.
fn push_list(out: &mut String, n: usize, first: usize) {
    use std::fmt::Write;
    for i in first..first + n {
        if i > first {
            out.push(',');
        }
        write!(out, "${i}").expect("writing to a String cannot fail");
    }
}

/// A batch's transaction on its backend: every statement of a working set goes through it,
/// and statements over many rows or keys run in chunks of [`CHUNK_ROWS`].
pub struct Db {
    tx: Transaction<'static, Any>,
    backend: Backend,
}

impl Db {
    pub fn new(tx: Transaction<'static, Any>, backend: Backend) -> Db {
        Db { tx, backend }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The transaction, for single statements.
    pub fn tx(&mut self) -> &mut Transaction<'static, Any> {
        &mut self.tx
    }

    pub async fn commit(self, context: &'static str) -> StoreResult<()> {
        self.tx.commit().await.map_err(StoreError::new(context))
    }

    /// Runs one statement with these parameters, returning its rows.
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<AnyRow>> {
        self.run(sql.to_string(), params, context).await
    }

    async fn run(
        &mut self,
        sql: String,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<AnyRow>> {
        let sql = self.backend.statement(sql);
        bind_all(sqlx::query(&sql), params).fetch_all(&mut *self.tx).await.map_err(StoreError::new(context))
    }

    /// Runs one statement per chunk of `items`, each built by `build` from its chunk (the
    /// statement with `$N` placeholders and its parameters), and collects the rows returned.
    pub async fn chunked<T>(
        &mut self,
        items: Vec<T>,
        mut build: impl FnMut(Vec<T>) -> (String, Vec<Param>),
        context: &'static str,
    ) -> StoreResult<Vec<AnyRow>> {
        let mut out = Vec::new();
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let (sql, params) = build(items.by_ref().take(CHUNK_ROWS).collect());
            out.extend(self.run(sql, params, context).await?);
        }
        Ok(out)
    }

    /// Runs `INSERT ... VALUES <tuples> <tail>` in chunks.
    pub async fn insert_rows(
        &mut self,
        head: &str,
        tail: &str,
        rows: Vec<Vec<Param>>,
        context: &'static str,
    ) -> StoreResult<()> {
        self.insert_rows_returning(head, tail, rows, context).await.map(drop)
    }

    /// Like [`Db::insert_rows`], returning the rows a `RETURNING` tail yields.
    pub async fn insert_rows_returning(
        &mut self,
        head: &str,
        tail: &str,
        rows: Vec<Vec<Param>>,
        context: &'static str,
    ) -> StoreResult<Vec<AnyRow>> {
        let Some(cols) = rows.first().map(Vec::len) else {
            return Ok(Vec::new());
        };
        let build = |chunk: Vec<Vec<Param>>| {
            let sql = format!("{head} VALUES {} {tail}", value_tuples(chunk.len(), cols, 1));
            (sql, chunk.into_iter().flatten().collect())
        };
        self.chunked(rows, build, context).await
    }

    /// Runs `<head> IN (<list>) <tail>` in chunks over `keys`, after `fixed` leading
    /// parameters, returning the rows.
    pub async fn select_in(
        &mut self,
        head: &str,
        tail: &str,
        fixed: Vec<Param>,
        keys: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<AnyRow>> {
        let build = |chunk: Vec<Param>| {
            let sql = format!("{head} IN ({}) {tail}", list(chunk.len(), fixed.len() + 1));
            (sql, fixed.iter().cloned().chain(chunk).collect())
        };
        self.chunked(keys, build, context).await
    }

    /// Runs `<head> IN (<list>)` in chunks over `keys`, after `fixed` leading parameters.
    pub async fn execute_in(
        &mut self,
        head: &str,
        fixed: Vec<Param>,
        keys: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<()> {
        self.select_in(head, "", fixed, keys, context).await.map(drop)
    }

    /// Writes a table's rows: (created by this batch, key, params). Existing rows are upserted
    /// by `upsert_tail`; created ones are inserted only where their key is free, so a new card,
    /// appeal or message whose id another row holds (a crafted input) is a clash the caller
    /// refuses, and never overwrites that row.
    pub async fn write_rows(
        &mut self,
        (head, upsert_tail, key): (&str, &str, &str),
        rows: Vec<(bool, String, Vec<Param>)>,
        context: &'static str,
    ) -> StoreResult<()> {
        let (created, existing): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(new, _, _)| *new);
        self.insert_rows(head, upsert_tail, existing.into_iter().map(|r| r.2).collect(), context).await?;
        let wanted: BTreeSet<String> = created.iter().map(|r| r.1.clone()).collect();
        let tail = format!("ON CONFLICT DO NOTHING RETURNING {key}");
        let params = created.into_iter().map(|r| r.2).collect();
        let written = self.insert_rows_returning(head, &tail, params, context).await?;
        let written: BTreeSet<String> = written.iter().map(|r| r.get(0)).collect();
        match wanted.difference(&written).next() {
            Some(taken) => Err(StoreError::clash(
                context,
                format!("id {:?} is already another row's", crate::text::shorten(taken)),
            )),
            None => Ok(()),
        }
    }
}

pub const CLIENT_COLS: &str = "id, project_id, kind, created_at, appeal_count, merged_into, doc";

pub fn client_from_row(row: &AnyRow) -> StoreResult<Client> {
    let kind: String = row.try_get(2).map_err(StoreError::new("read client"))?;
    let doc: String = row.try_get(6).map_err(StoreError::new("read client"))?;
    Ok(Client {
        id: row.try_get(0).map_err(StoreError::new("read client"))?,
        project_id: row.try_get(1).map_err(StoreError::new("read client"))?,
        kind: match kind.as_str() {
            "crm" => ClientType::Crm,
            "internal" => ClientType::Internal,
            _ => ClientType::Channel,
        },
        created_at: row.try_get(3).map_err(StoreError::new("read client"))?,
        appeal_count: row.try_get(4).map_err(StoreError::new("read client"))?,
        merged_into: row.try_get(5).map_err(StoreError::new("read client"))?,
        doc: serde_json::from_str(&doc).map_err(|e| decode_error("client doc", e))?,
    })
    .map(|mut c: Client| {
        c.doc.upgrade(c.created_at);
        c
    })
}

pub fn client_params(c: &Client) -> Vec<Param> {
    vec![
        c.id.clone().into(),
        c.project_id.clone().into(),
        c.kind.as_str().into(),
        c.created_at.into(),
        c.appeal_count.into(),
        c.merged_into.clone().into(),
        serde_json::to_string(&c.doc).expect("client doc serialises").into(),
    ]
}

pub const APPEAL_COLS: &str =
    "id, project_id, number, client_id, channel_id, visitor_id, status, opened_at, \
     last_message_at, partition_key, doc, close_deadline, conversation_key";

pub fn appeal_from_row(row: &AnyRow) -> StoreResult<Appeal> {
    let ctx = || StoreError::new("read appeal");
    let status: String = row.try_get(6).map_err(ctx())?;
    let doc: String = row.try_get(10).map_err(ctx())?;
    Ok(Appeal {
        id: row.try_get(0).map_err(ctx())?,
        project_id: row.try_get(1).map_err(ctx())?,
        number: row.try_get(2).map_err(ctx())?,
        client_id: row.try_get(3).map_err(ctx())?,
        channel_id: row.try_get(4).map_err(ctx())?,
        visitor_id: row.try_get(5).map_err(ctx())?,
        status: if status == "open" { AppealStatus::Open } else { AppealStatus::Closed },
        opened_at: row.try_get(7).map_err(ctx())?,
        last_message_at: row.try_get(8).map_err(ctx())?,
        partition: row.try_get(9).map_err(ctx())?,
        close_deadline: row.try_get(11).map_err(ctx())?,
        key: row.try_get(12).map_err(ctx())?,
        doc: serde_json::from_str(&doc).map_err(|e| decode_error("appeal doc", e))?,
    })
}

pub fn appeal_params(a: &Appeal) -> Vec<Param> {
    vec![
        a.id.clone().into(),
        a.project_id.clone().into(),
        a.number.into(),
        a.client_id.clone().into(),
        a.channel_id.clone().into(),
        a.visitor_id.clone().into(),
        (if a.is_open() { "open" } else { "closed" }).into(),
        a.opened_at.into(),
        a.last_message_at.into(),
        a.partition.clone().into(),
        serde_json::to_string(&a.doc).expect("appeal doc serialises").into(),
        a.close_deadline.filter(|_| a.is_open()).into(),
        a.key.clone().into(),
    ]
}

pub fn message_from_row(row: &AnyRow) -> StoreResult<StoredMessage> {
    let ctx = || StoreError::new("read message");
    let doc: String = row.try_get(2).map_err(ctx())?;
    let message: Message = serde_json::from_str(&doc).map_err(|e| decode_error("message doc", e))?;
    Ok(StoredMessage {
        project_id: row.try_get(0).map_err(ctx())?,
        appeal_id: row.try_get(1).map_err(ctx())?,
        message,
    })
}

fn decode_error(what: &'static str, e: serde_json::Error) -> StoreError {
    StoreError::new(what)(sqlx::Error::Decode(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_tuples_number_placeholders_row_by_row() {
        assert_eq!(value_tuples(2, 2, 1), "($1,$2),($3,$4)");
        assert_eq!(list(3, 2), "$2,$3,$4");
    }
}
