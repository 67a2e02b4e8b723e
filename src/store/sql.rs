//! SQL helpers shared by both backends: parameter binding, chunked multi-row statements, and
//! row ↔ domain conversions. Placeholders are written `$N`; [`Backend::statement`] spells
//! them for the backend.

pub use super::driver::Param;
use super::driver::{DbRow, Tx};
use super::{Backend, StoreError, StoreResult};
use crate::model::{Appeal, AppealStatus, Client, ClientType, Message, Millis, StoredMessage};

/// Statements of at most this many parameters stay prepared for reuse (see `Db::run`).
const PREPARED_PARAMS: usize = 64;

/// Rows per multi-row statement: far below both backends' parameter limits.
pub(super) const CHUNK_ROWS: usize = 400;

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

/// The rows as one list per column, text columns as [`Param::Texts`] and integer ones as
/// [`Param::Ints`]: any number of rows in a fixed number of parameters. The rows come back
/// as they were if a column holds both kinds.
fn column_arrays(rows: Vec<Vec<Param>>) -> Result<Vec<Param>, Vec<Vec<Param>>> {
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let mut columns: Vec<Param> = first
        .iter()
        .map(|p| match p {
            Param::Text(_) | Param::OptText(_) => Param::Texts(Vec::with_capacity(rows.len())),
            _ => Param::Ints(Vec::with_capacity(rows.len())),
        })
        .collect();
    let fits = |p: &Param, column: &Param| {
        matches!(
            (p, column),
            (Param::Text(_) | Param::OptText(_), Param::Texts(_))
                | (Param::Int(_) | Param::OptInt(_), Param::Ints(_))
        )
    };
    if !rows.iter().all(|r| r.len() == columns.len() && r.iter().zip(&columns).all(|(p, c)| fits(p, c))) {
        return Err(rows);
    }
    for row in rows {
        for (p, column) in row.into_iter().zip(columns.iter_mut()) {
            match (p, column) {
                (Param::Text(s), Param::Texts(v)) => v.push(Some(s)),
                (Param::OptText(s), Param::Texts(v)) => v.push(s),
                (Param::Int(n), Param::Ints(v)) => v.push(Some(n)),
                (Param::OptInt(n), Param::Ints(v)) => v.push(n),
                _ => unreachable!("every value was checked to fit its column"),
            }
        }
    }
    Ok(columns)
}

/// Whether each column of [`column_arrays`] is text.
fn text_columns(columns: &[Param]) -> Vec<bool> {
    columns.iter().map(|c| matches!(c, Param::Texts(_))).collect()
}

/// The keys as one [`Param::Texts`] when all are text (moved, not copied); otherwise the
/// keys back.
fn key_array(keys: Vec<Param>) -> Result<Param, Vec<Param>> {
    if !keys.iter().all(|k| matches!(k, Param::Text(_))) {
        return Err(keys);
    }
    let texts = keys.into_iter().filter_map(|k| match k {
        Param::Text(s) => Some(Some(s)),
        _ => None,
    });
    Ok(Param::Texts(texts.collect()))
}

/// The keys as a JSON array of strings, when all are text a JSON string can carry (PostgreSQL's
/// `jsonb` holds no NUL character; decode refuses them in ids and values anyway).
fn json_array(keys: &[Param]) -> Option<String> {
    serde_json::to_string(&texts(keys)?).ok()
}

/// The rows as a JSON array of arrays of strings, on the terms of [`json_array`].
fn json_rows(rows: &[Vec<Param>]) -> Option<String> {
    let rows: Option<Vec<Vec<&str>>> = rows.iter().map(|r| texts(r)).collect();
    serde_json::to_string(&rows?).ok()
}

fn texts(params: &[Param]) -> Option<Vec<&str>> {
    params
        .iter()
        .map(|k| match k {
            Param::Text(s) if !s.contains('\0') => Some(s.as_str()),
            _ => None,
        })
        .collect()
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

/// Bound parameters one combined statement carries at most: PostgreSQL takes 65,535.
const COMBINED_PARAMS: usize = 30_000;

/// A batch's transaction on its backend: every statement of a working set goes through it,
/// and statements over many rows or keys run in chunks of [`CHUNK_ROWS`].
///
/// While a commit writes, PostgreSQL writes are held and sent as one statement (each a
/// data-modifying `WITH` part): a batch's dozen writes cost one round trip instead of a
/// dozen, and round trips, not rows, are most of a small batch's time. The parts see the
/// same snapshot and none sees another's rows, so held writes must not depend on each other:
/// no two touch one row, a `DELETE` never meets an `INSERT` of the same key (see
/// `working_set::clients::write_index`). SQLite cannot put writes in `WITH` and has no
/// round trips to save: it runs each at once.
pub struct Db {
    tx: Tx,
    backend: Backend,
    /// Writes waiting for [`Db::release_writes`], while held.
    held: Option<Vec<Held>>,
}

/// A write waiting to be sent: `$N` placeholders numbered from 1.
struct Held {
    sql: String,
    params: Vec<Param>,
}

impl Db {
    pub fn new(tx: Tx, backend: Backend) -> Db {
        Db { tx, backend, held: None }
    }

    /// Holds the writes that follow until [`Db::release_writes`] (PostgreSQL only).
    pub fn hold_writes(&mut self) {
        if self.backend == Backend::Postgres && self.held.is_none() {
            self.held = Some(Vec::new());
        }
    }

    /// Sends the held writes and stops holding the writes that follow.
    pub async fn release_writes(&mut self) -> StoreResult<()> {
        self.send_held().await?;
        self.held = None;
        Ok(())
    }

    /// Sends the writes held so far, as few statements as the parameter limit allows; later
    /// writes are still held.
    async fn send_held(&mut self) -> StoreResult<()> {
        let Some(mut held) = self.held.as_mut().map(std::mem::take) else { return Ok(()) };
        while !held.is_empty() {
            let mut params = 0;
            let take = held
                .iter()
                .take_while(|h| {
                    params += h.params.len();
                    params <= COMBINED_PARAMS
                })
                .count()
                .max(1);
            let group: Vec<Held> = held.drain(..take).collect();
            self.run_combined(group).await?;
        }
        Ok(())
    }

    /// One statement of `group`'s writes.
    async fn run_combined(&mut self, mut group: Vec<Held>) -> StoreResult<()> {
        let (sql, params) = combine(&mut group);
        self.run(sql, params, "write batch").await.map(drop)
    }

    /// Runs a write, or holds it while writes are held.
    async fn write(&mut self, (sql, params): (String, Vec<Param>), context: &'static str) -> StoreResult<()> {
        if let Some(held) = &mut self.held {
            held.push(Held { sql, params });
            return Ok(());
        }
        self.run(sql, params, context).await.map(drop)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The transaction, for single statements.
    pub fn tx(&mut self) -> &mut Tx {
        &mut self.tx
    }

    /// Commits, after sending any writes still held.
    pub async fn commit(mut self, context: &'static str) -> StoreResult<()> {
        self.release_writes().await?;
        self.tx.commit().await.map_err(StoreError::new(context))
    }

    /// Runs one statement with these parameters, returning its rows.
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<DbRow>> {
        self.send_held().await?;
        self.run(sql.to_string(), params, context).await
    }

    async fn run(
        &mut self,
        sql: String,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<DbRow>> {
        let sql = self.backend.statement(sql);
        // A statement of many parameters is a multi-row one whose text changes with its row
        // count: kept prepared, it would only fill the connection's statement cache (100
        // statements each side, a batch's combined write alone hundreds of KB of text).
        let reused = params.len() <= PREPARED_PARAMS;
        self.tx.fetch_all(&sql, &params, reused).await.map_err(StoreError::from_sql(context))
    }

    /// Runs one statement per chunk of `items`, each built by `build` from its chunk (the
    /// statement with `$N` placeholders and its parameters), and collects the rows returned.
    pub async fn chunked<T>(
        &mut self,
        items: Vec<T>,
        mut build: impl FnMut(Vec<T>) -> (String, Vec<Param>),
        context: &'static str,
    ) -> StoreResult<Vec<DbRow>> {
        // A read sees every write before it.
        self.send_held().await?;
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
        let Some(cols) = rows.first().map(Vec::len) else { return Ok(()) };
        let rows = match self.array_rows(rows) {
            Ok((select, columns)) => {
                return self.write((format!("{head} {select} {tail}"), columns), context).await
            }
            Err(rows) => rows,
        };
        for chunk in chunks(rows) {
            let sql = format!("{head} VALUES {} {tail}", value_tuples(chunk.len(), cols, 1));
            self.write((sql, chunk.into_iter().flatten().collect()), context).await?;
        }
        Ok(())
    }

    /// Like [`Db::insert_rows`], returning the rows a `RETURNING` tail yields. Rows of text
    /// go as one JSON parameter (see [`Backend::json_rows`]); others as chunks of tuples.
    pub async fn insert_rows_returning(
        &mut self,
        head: &str,
        tail: &str,
        rows: Vec<Vec<Param>>,
        context: &'static str,
    ) -> StoreResult<Vec<DbRow>> {
        let Some(cols) = rows.first().map(Vec::len) else {
            return Ok(Vec::new());
        };
        let rows = match self.array_rows(rows) {
            Ok((select, columns)) => {
                self.send_held().await?;
                return self.run(format!("{head} {select} {tail}"), columns, context).await;
            }
            Err(rows) => rows,
        };
        if let Some(array) = json_rows(&rows) {
            self.send_held().await?;
            // `WHERE true`: SQLite would read the `ON` of an `ON CONFLICT` tail as a join's.
            let sql = format!("{head} {} WHERE true {tail}", self.backend.json_rows(1, cols));
            return self.run(sql, vec![Param::Text(array)], context).await;
        }
        let build = |chunk: Vec<Vec<Param>>| {
            let sql = format!("{head} VALUES {} {tail}", value_tuples(chunk.len(), cols, 1));
            (sql, chunk.into_iter().flatten().collect())
        };
        self.chunked(rows, build, context).await
    }

    /// Runs `<head> IN (<keys>) <tail>` after `fixed` leading parameters, returning the rows.
    /// Text keys go as one JSON array parameter (see [`Backend::json_keys`]); others as
    /// chunks of placeholders.
    pub async fn select_in(
        &mut self,
        head: &str,
        tail: &str,
        fixed: Vec<Param>,
        keys: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<Vec<DbRow>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = match self.array_keys(keys, fixed.len() + 1) {
            Ok((list, array)) => {
                self.send_held().await?;
                let sql = format!("{head} IN ({list}) {tail}");
                return self.run(sql, fixed.into_iter().chain([array]).collect(), context).await;
            }
            Err(keys) => keys,
        };
        if let Some(array) = json_array(&keys) {
            self.send_held().await?;
            let sql = format!("{head} IN ({}) {tail}", self.backend.json_keys(fixed.len() + 1));
            let params = fixed.into_iter().chain([Param::Text(array)]).collect();
            return self.run(sql, params, context).await;
        }
        let build = |chunk: Vec<Param>| {
            let sql = format!("{head} IN ({}) {tail}", list(chunk.len(), fixed.len() + 1));
            (sql, fixed.iter().cloned().chain(chunk).collect())
        };
        self.chunked(keys, build, context).await
    }

    /// Runs one write (held while writes are held).
    pub async fn execute(
        &mut self,
        sql: String,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<()> {
        self.write((sql, params), context).await
    }

    /// Runs one write now, after the writes held before it: for a write the held ones after
    /// it must see.
    pub async fn execute_apart(
        &mut self,
        sql: String,
        params: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<()> {
        self.send_held().await?;
        self.run(sql, params, context).await.map(drop)
    }

    /// Runs `<head> IN (<list>)` in chunks over `keys`, after `fixed` leading parameters.
    pub async fn execute_in(
        &mut self,
        head: &str,
        fixed: Vec<Param>,
        keys: Vec<Param>,
        context: &'static str,
    ) -> StoreResult<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys = match self.array_keys(keys, fixed.len() + 1) {
            Ok((list, array)) => {
                let sql = format!("{head} IN ({list})");
                return self.write((sql, fixed.into_iter().chain([array]).collect()), context).await;
            }
            Err(keys) => keys,
        };
        for chunk in chunks(keys) {
            let sql = format!("{head} IN ({})", list(chunk.len(), fixed.len() + 1));
            self.write((sql, fixed.iter().cloned().chain(chunk).collect()), context).await?;
        }
        Ok(())
    }

    /// A `SELECT` of `rows` from one array parameter per column, numbered from 1, with those
    /// parameters, where the backend binds arrays (see [`Backend::array_rows`]); otherwise
    /// the rows back.
    fn array_rows(&self, rows: Vec<Vec<Param>>) -> Result<(String, Vec<Param>), Vec<Vec<Param>>> {
        if !self.backend.binds_arrays() {
            return Err(rows);
        }
        let columns = column_arrays(rows)?;
        let select = self.backend.array_rows(&text_columns(&columns), 1);
        Ok((select, columns))
    }

    /// A subquery of the text `keys` bound as one array parameter `$n`, and that parameter,
    /// where the backend binds arrays (see [`Backend::array_keys`]); otherwise the keys back.
    fn array_keys(&self, keys: Vec<Param>, n: usize) -> Result<(String, Param), Vec<Param>> {
        if !self.backend.binds_arrays() {
            return Err(keys);
        }
        Ok((self.backend.array_keys(n), key_array(keys)?))
    }

    /// Writes a table's rows: (created by this batch, params). Existing rows are upserted
    /// by `upsert_tail`; created ones are plainly inserted, so a new card, appeal or message
    /// whose id another row holds (a crafted input) fails the batch with a unique violation,
    /// a clash the pipeline refuses (see [`StoreError::from_sql`]), and never overwrites that
    /// row.
    ///
    /// Why not `ON CONFLICT DO NOTHING RETURNING` and a check of the keys returned: that
    /// refuses the same rows, but PostgreSQL then probes each unique index before a
    /// speculative insertion and confirms it after; measured on a batch's 26,000 message
    /// rows, the plain insert took 0.4-0.6 of the time.
    pub async fn write_rows(
        &mut self,
        (head, upsert_tail): (&str, &str),
        rows: Vec<(bool, Vec<Param>)>,
        context: &'static str,
    ) -> StoreResult<()> {
        let (created, existing): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(new, _)| *new);
        self.insert_rows(head, upsert_tail, existing.into_iter().map(|r| r.1).collect(), context).await?;
        self.insert_rows(head, "", created.into_iter().map(|r| r.1).collect(), context).await
    }
}

/// `items` in chunks of at most [`CHUNK_ROWS`].
fn chunks<T>(items: Vec<T>) -> Vec<Vec<T>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(CHUNK_ROWS));
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        out.push(items.by_ref().take(CHUNK_ROWS).collect());
    }
    out
}

/// Held writes as one statement: `WITH w0 AS (...), w1 AS (...) SELECT 1`, each part's
/// placeholders moved past the parts before it. The parameters move out of `group` (they
/// hold documents).
fn combine(group: &mut [Held]) -> (String, Vec<Param>) {
    use std::fmt::Write;
    let mut sql = String::with_capacity(group.iter().map(|h| h.sql.len() + 16).sum::<usize>() + 64);
    let mut params = Vec::with_capacity(group.iter().map(|h| h.params.len()).sum());
    for (i, h) in group.iter_mut().enumerate() {
        sql.push_str(if i == 0 { "WITH " } else { ", " });
        write!(sql, "w{i} AS (").expect("writing to a String cannot fail");
        push_renumbered(&mut sql, &h.sql, params.len());
        sql.push(')');
        params.append(&mut h.params);
    }
    sql.push_str(" SELECT 1");
    (sql, params)
}

/// Appends `sql` with each `$N` written `$(N + by)`. Statements here never hold a `$` but in
/// placeholders: every value, input or not, is a bound parameter.
fn push_renumbered(out: &mut String, sql: &str, by: usize) {
    use std::fmt::Write;
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        if let Ok(n) = rest[at + 1..at + 1 + digits].parse::<usize>() {
            write!(out, "{}", n + by).expect("writing to a String cannot fail");
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
}

pub const CLIENT_COLS: &str = "id, project_id, kind, created_at, appeal_count, merged_into, doc";

pub fn client_from_row(row: &DbRow) -> StoreResult<Client> {
    let kind = row.try_str(2).map_err(StoreError::new("read client"))?;
    let doc = row.try_str(6).map_err(StoreError::new("read client"))?;
    Ok(Client {
        id: row.try_get(0).map_err(StoreError::new("read client"))?,
        project_id: row.try_get(1).map_err(StoreError::new("read client"))?,
        kind: match kind {
            "crm" => ClientType::Crm,
            "internal" => ClientType::Internal,
            _ => ClientType::Channel,
        },
        created_at: row.try_get(3).map_err(StoreError::new("read client"))?,
        appeal_count: row.try_get(4).map_err(StoreError::new("read client"))?,
        merged_into: row.try_get(5).map_err(StoreError::new("read client"))?,
        doc: serde_json::from_str(doc).map_err(|e| decode_error("client doc", e))?,
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
     last_message_at, partition_key, doc, close_deadline, conversation_key, idle_check_at";

pub fn appeal_from_row(row: &DbRow) -> StoreResult<Appeal> {
    let ctx = || StoreError::new("read appeal");
    let status = row.try_str(6).map_err(ctx())?;
    let doc = row.try_str(10).map_err(ctx())?;
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
        doc: serde_json::from_str(doc).map_err(|e| decode_error("appeal doc", e))?,
    })
}

/// The stored lower bound of an appeal's close deadline the idle sweep searches by
/// (column 13 of [`APPEAL_COLS`]).
pub fn appeal_idle_check_from_row(row: &DbRow) -> StoreResult<Option<Millis>> {
    row.try_get(13).map_err(StoreError::new("read appeal"))
}

/// An appeal's row; `idle_check_at` is the bound the sweep finds it by while it is open.
pub fn appeal_params(a: &Appeal, idle_check_at: Option<Millis>) -> Vec<Param> {
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
        idle_check_at.into(),
    ]
}

pub fn message_from_row(row: &DbRow) -> StoreResult<StoredMessage> {
    let ctx = || StoreError::new("read message");
    let doc = row.try_str(2).map_err(ctx())?;
    let message: Message = serde_json::from_str(doc).map_err(|e| decode_error("message doc", e))?;
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
    fn text_keys_travel_as_one_json_array_and_others_do_not() {
        let keys = vec![Param::from("a\"b"), Param::from("тест"), Param::from("x\\y")];
        let array = json_array(&keys).unwrap();
        assert_eq!(serde_json::from_str::<Vec<String>>(&array).unwrap(), ["a\"b", "тест", "x\\y"]);
        assert_eq!(json_array(&[Param::from("a"), Param::Int(1)]), None);
        assert_eq!(json_array(&[Param::from("a\0b")]), None, "jsonb holds no NUL");
        let rows =
            vec![vec![Param::from("p"), Param::from("i\"1")], vec![Param::from("q"), Param::from("2")]];
        assert_eq!(json_rows(&rows).unwrap(), r#"[["p","i\"1"],["q","2"]]"#);
        assert_eq!(json_rows(&[vec![Param::from("p"), Param::Int(2)]]), None);
    }

    #[test]
    fn rows_become_one_list_per_column_unless_a_column_holds_text_and_integers() {
        let rows = vec![
            vec![Param::from("a"), Param::Int(1), Param::OptText(None)],
            vec![Param::OptText(Some("b".into())), Param::OptInt(None), Param::from("c")],
        ];
        let columns = column_arrays(rows).unwrap();
        assert_eq!(
            columns,
            [
                Param::Texts(vec![Some("a".into()), Some("b".into())]),
                Param::Ints(vec![Some(1), None]),
                Param::Texts(vec![None, Some("c".into())]),
            ]
        );
        assert_eq!(text_columns(&columns), [true, false, true]);
        let mixed = vec![vec![Param::from("a")], vec![Param::Int(2)]];
        assert_eq!(column_arrays(mixed.clone()), Err(mixed), "given back as it came");
        assert_eq!(key_array(vec![Param::from("k")]), Ok(Param::Texts(vec![Some("k".into())])));
        let mixed_keys = vec![Param::from("k"), Param::Int(1)];
        assert_eq!(key_array(mixed_keys.clone()), Err(mixed_keys));
    }

    fn held(sql: &str, params: usize) -> Held {
        Held { sql: sql.into(), params: (0..params as i64).map(Param::Int).collect() }
    }

    #[test]
    fn held_writes_combine_into_one_statement_with_placeholders_numbered_on() {
        let mut group = [
            held("INSERT INTO a (x, y) VALUES ($1,$2),($3,$4)", 4),
            held("DELETE FROM b WHERE id IN ($1,$2)", 2),
            held("INSERT INTO c (id) VALUES ($1)", 1),
        ];
        let (sql, params) = combine(&mut group);
        assert_eq!(
            sql,
            "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1,$2),($3,$4)), \
             w1 AS (DELETE FROM b WHERE id IN ($5,$6)), \
             w2 AS (INSERT INTO c (id) VALUES ($7)) \
             SELECT 1"
        );
        assert_eq!(params.len(), 7);
        assert!(group.iter().all(|h| h.params.is_empty()), "the documents moved, not copied");
    }

    #[test]
    fn placeholders_past_nine_are_renumbered_whole() {
        let mut out = String::new();
        push_renumbered(&mut out, "($9,$10,$11)", 100);
        assert_eq!(out, "($109,$110,$111)");
    }

    #[test]
    fn value_tuples_number_placeholders_row_by_row() {
        assert_eq!(value_tuples(2, 2, 1), "($1,$2),($3,$4)");
        assert_eq!(list(3, 2), "$2,$3,$4");
    }
}
