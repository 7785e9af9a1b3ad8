//! Small helpers for dynamic SQL over the `Any` driver: positional `$n`
//! placeholders (which both SQLite and PostgreSQL accept) and multi-row
//! inserts.

use sqlx::any::{Any, AnyArguments};
use sqlx::query::Query;

use crate::Dialect;

/// A value to bind.
#[derive(Debug, Clone)]
pub enum Val {
    I(i64),
    OI(Option<i64>),
    S(String),
    OS(Option<String>),
    B(Vec<u8>),
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::I(v)
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        Val::OI(v)
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::S(v)
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::S(v.to_string())
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        Val::OS(v)
    }
}
impl From<Vec<u8>> for Val {
    fn from(v: Vec<u8>) -> Self {
        Val::B(v)
    }
}

pub fn bind_all<'q>(mut q: Query<'q, Any, AnyArguments<'q>>, vals: Vec<Val>) -> Query<'q, Any, AnyArguments<'q>> {
    for v in vals {
        q = match v {
            Val::I(x) => q.bind(x),
            Val::OI(x) => q.bind(x),
            Val::S(x) => q.bind(x),
            Val::OS(x) => q.bind(x),
            Val::B(x) => q.bind(x),
        };
    }
    q
}

/// `n` placeholders for parameters `start..start+n`, comma separated.
///
/// Only for statements whose parameters are all bound in order: SQLite then
/// gets anonymous `?`, because sqlx resolves a numbered `$n` through
/// `sqlite3_bind_parameter_name`, which is linear in the number of
/// parameters (a 15,000-parameter insert spent most of its time there).
/// PostgreSQL gets `$n`.
pub fn placeholders(dialect: Dialect, start: usize, n: usize) -> String {
    let mut s = String::with_capacity(n * 4);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        match dialect {
            Dialect::Sqlite => s.push('?'),
            Dialect::Postgres => {
                s.push('$');
                s.push_str(&(start + i).to_string());
            }
        }
    }
    s
}

/// Most parameters we put in one statement (SQLite allows 32766,
/// PostgreSQL 65535).
pub const MAX_PARAMS: usize = 30_000;

/// Builds `INSERT INTO table (cols) VALUES (…), (…)` statements for rows,
/// split so none exceeds [`MAX_PARAMS`]. Returns (sql, values) pairs.
pub fn multi_insert(
    dialect: Dialect,
    table: &str,
    cols: &[&str],
    rows: Vec<Vec<Val>>,
    suffix: &str,
) -> Vec<(String, Vec<Val>)> {
    let per_row = cols.len();
    let rows_per_stmt = (MAX_PARAMS / per_row).max(1);
    let mut out = Vec::new();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(rows_per_stmt).collect();
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", cols.join(", "));
        let mut vals = Vec::with_capacity(chunk.len() * per_row);
        for (i, row) in chunk.into_iter().enumerate() {
            debug_assert_eq!(row.len(), per_row);
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            sql.push_str(&placeholders(dialect, i * per_row + 1, per_row));
            sql.push(')');
            vals.extend(row);
        }
        sql.push_str(suffix);
        out.push((sql, vals));
    }
    out
}

/// Columns of an `events` row, in the order the insert helpers bind them.
pub const EVENT_COLS: &[&str] = &["tenant_id", "message_id", "recipient", "type", "detail", "at"];

/// Rows for one table, inserted together.
struct Rows {
    table: &'static str,
    cols: &'static [&'static str],
    rows: Vec<Vec<Val>>,
    suffix: &'static str,
}

enum Step {
    Sql(String, Vec<Val>),
    Rows(Rows),
}

/// Statements that go to the database together where it can take them
/// together.
///
/// Over sqlx, every statement on SQLite is a round trip to the connection's
/// thread (two thread wake-ups), made while holding the only writer. SQLite
/// runs a string of several statements in one call, binding each
/// statement's anonymous `?` parameters in turn, so a batch is one round
/// trip there; rows become multi-row inserts. PostgreSQL's extended
/// protocol takes one statement per query: there the statements run one by
/// one. On SQLite's own writer ([`Batch::run_direct`]) each row is one
/// execution of a prepared statement kept across transactions, with no
/// SQL to parse.
pub struct Batch {
    dialect: Dialect,
    steps: Vec<Step>,
}

impl Batch {
    pub fn new(dialect: Dialect) -> Self {
        Self { dialect, steps: Vec::new() }
    }

    /// Adds one statement (no trailing `;`). Its placeholders must be what
    /// [`placeholders`] gives, bound in order.
    pub fn push(&mut self, (sql, vals): (String, Vec<Val>)) {
        self.steps.push(Step::Sql(sql, vals));
    }

    /// Adds `INSERT INTO table (cols) VALUES …suffix` for each of `rows`
    /// (nothing when there are none).
    pub fn insert(
        &mut self,
        table: &'static str,
        cols: &'static [&'static str],
        rows: Vec<Vec<Val>>,
        suffix: &'static str,
    ) {
        if !rows.is_empty() {
            self.steps.push(Step::Rows(Rows { table, cols, rows, suffix }));
        }
    }

    /// Runs the statements over sqlx, in the order they were added.
    pub async fn run(self, conn: &mut sqlx::AnyConnection) -> Result<(), sqlx::Error> {
        let dialect = self.dialect;
        let statements = self.steps.into_iter().flat_map(|step| match step {
            Step::Sql(sql, vals) => vec![(sql, vals)],
            Step::Rows(r) => multi_insert(dialect, r.table, r.cols, r.rows, r.suffix),
        });
        match dialect {
            Dialect::Sqlite => {
                let (mut sql, mut vals) = (String::new(), Vec::new());
                for (s, v) in statements {
                    if !sql.is_empty() {
                        sql.push_str(";\n");
                    }
                    sql.push_str(&s);
                    vals.extend(v);
                }
                if !sql.is_empty() {
                    // Not kept in the statement cache: the mix of statements and
                    // row counts differs from one batch to the next.
                    bind_all(sqlx::query(&sql), vals).persistent(false).execute(&mut *conn).await?;
                }
            }
            Dialect::Postgres => {
                for (sql, vals) in statements {
                    bind_all(sqlx::query(&sql), vals).execute(&mut *conn).await?;
                }
            }
        }
        Ok(())
    }

    /// Runs the statements on SQLite's own writer connection, in the order
    /// they were added: each statement prepared once per connection, each
    /// row one execution of it.
    pub fn run_direct(self, conn: &rusqlite::Connection) -> rusqlite::Result<()> {
        for step in self.steps {
            match step {
                Step::Sql(sql, vals) => {
                    conn.prepare_cached(&sql)?.execute(rusqlite::params_from_iter(vals.iter()))?;
                }
                Step::Rows(r) => {
                    let sql = format!(
                        "INSERT INTO {} ({}) VALUES ({}){}",
                        r.table,
                        r.cols.join(", "),
                        placeholders(Dialect::Sqlite, 1, r.cols.len()),
                        r.suffix
                    );
                    let mut statement = conn.prepare_cached(&sql)?;
                    for row in &r.rows {
                        statement.execute(rusqlite::params_from_iter(row.iter()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl rusqlite::ToSql for Val {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        use rusqlite::types::{ToSqlOutput, ValueRef};
        Ok(ToSqlOutput::Borrowed(match self {
            Val::I(x) | Val::OI(Some(x)) => ValueRef::Integer(*x),
            Val::OI(None) | Val::OS(None) => ValueRef::Null,
            Val::S(s) | Val::OS(Some(s)) => ValueRef::Text(s.as_bytes()),
            Val::B(b) => ValueRef::Blob(b),
        }))
    }
}
