//! The two native sqlx drivers behind one pool, one transaction and one row type. Every
//! statement of the store goes through [`Pool::fetch_all`] or [`Tx::fetch_all`], which bind
//! [`Param`]s the same way on both; a row decodes its columns straight from the driver's
//! buffer (a document is read as `&str`, never copied into an intermediate value first, as
//! `sqlx::Any` did).

use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Decode, Postgres, Row, Sqlite, Transaction, Type};

/// A bound value: every type the schema uses.
#[derive(Debug, Clone, PartialEq)]
pub enum Param {
    Text(String),
    Int(i64),
    OptText(Option<String>),
    OptInt(Option<i64>),
    /// A column's values, or a list of keys, in one parameter (see `sql::column_arrays`).
    Texts(Vec<Option<String>>),
    Ints(Vec<Option<i64>>),
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

/// A type a column of either backend decodes into: `String`, `i64` and their `Option`s.
pub trait Value:
    for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Value for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// `sqlx::query(sql)` with `params` bound by reference (a batch's combined write carries
/// every changed row's document: hundreds of KB). A macro, not a function: the query's type
/// is each driver's own. PostgreSQL binds a list as an array (sent in binary); SQLite, which
/// has no arrays, as the JSON array of its values.
macro_rules! bound {
    ($sql:expr, $params:expr, $list:ident) => {{
        let mut query = sqlx::query($sql);
        for p in $params {
            query = match p {
                Param::Text(s) => query.bind(s.as_str()),
                Param::Int(n) => query.bind(*n),
                Param::OptText(s) => query.bind(s.as_deref()),
                Param::OptInt(n) => query.bind(*n),
                Param::Texts(v) => bound!(@$list query, v),
                Param::Ints(v) => bound!(@$list query, v),
            };
        }
        query
    }};
    (@array $query:ident, $values:expr) => {
        $query.bind($values.as_slice())
    };
    (@json $query:ident, $values:expr) => {
        $query.bind(serde_json::to_string($values).expect("a list of strings or integers serialises"))
    };
}

/// A store's connection pool on its driver.
#[derive(Clone, Debug)]
pub enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// Runs one statement outside any transaction (`persistent`: kept prepared for reuse).
    pub async fn fetch_all(&self, sql: &str, params: &[Param], persistent: bool) -> sqlx::Result<Vec<DbRow>> {
        match self {
            Pool::Sqlite(pool) => {
                let rows = bound!(sql, params, json).persistent(persistent).fetch_all(pool).await?;
                Ok(rows.into_iter().map(DbRow::Sqlite).collect())
            }
            Pool::Postgres(pool) => {
                let rows = bound!(sql, params, array).persistent(persistent).fetch_all(pool).await?;
                Ok(rows.into_iter().map(DbRow::Postgres).collect())
            }
        }
    }

    pub async fn begin(&self) -> sqlx::Result<Tx> {
        Ok(match self {
            Pool::Sqlite(pool) => Tx::Sqlite(pool.begin().await?),
            Pool::Postgres(pool) => Tx::Postgres(pool.begin().await?),
        })
    }

    pub async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// A transaction on its driver.
pub enum Tx {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Runs one statement in the transaction (`persistent`: kept prepared for reuse).
    pub async fn fetch_all(
        &mut self,
        sql: &str,
        params: &[Param],
        persistent: bool,
    ) -> sqlx::Result<Vec<DbRow>> {
        match self {
            Tx::Sqlite(tx) => {
                let rows = bound!(sql, params, json).persistent(persistent).fetch_all(&mut **tx).await?;
                Ok(rows.into_iter().map(DbRow::Sqlite).collect())
            }
            Tx::Postgres(tx) => {
                let rows = bound!(sql, params, array).persistent(persistent).fetch_all(&mut **tx).await?;
                Ok(rows.into_iter().map(DbRow::Postgres).collect())
            }
        }
    }

    pub async fn commit(self) -> sqlx::Result<()> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// A row as its driver returned it.
pub enum DbRow {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl DbRow {
    /// Column `i`, or why it cannot be read as a `T`.
    pub fn try_get<T: Value>(&self, i: usize) -> sqlx::Result<T> {
        match self {
            DbRow::Sqlite(row) => row.try_get(i),
            DbRow::Postgres(row) => row.try_get(i),
        }
    }

    /// Column `i` of a statement whose result columns are ours to know; panics otherwise,
    /// as sqlx's `Row::get` does.
    pub fn get<T: Value>(&self, i: usize) -> T {
        self.try_get(i).unwrap_or_else(|e| panic!("column {i}: {e}"))
    }

    /// Text column `i`, borrowed from the row: a document is parsed where the driver holds it.
    pub fn try_str(&self, i: usize) -> sqlx::Result<&str> {
        match self {
            DbRow::Sqlite(row) => row.try_get(i),
            DbRow::Postgres(row) => row.try_get(i),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sqlite_receives_a_list_as_the_json_array_of_its_values() {
        let pool = Pool::Sqlite(SqlitePool::connect("sqlite::memory:").await.unwrap());
        let texts = [Param::Texts(vec![Some("a\"b".into()), None])];
        let rows = pool.fetch_all("SELECT value FROM json_each(?)", &texts, false).await.unwrap();
        let got: Vec<Option<String>> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(got, [Some("a\"b".to_string()), None]);
        let ints = [Param::Ints(vec![Some(7), None])];
        let rows = pool.fetch_all("SELECT value FROM json_each(?)", &ints, false).await.unwrap();
        let got: Vec<Option<i64>> = rows.iter().map(|r| r.get(0)).collect();
        assert_eq!(got, [Some(7), None]);
    }
}
