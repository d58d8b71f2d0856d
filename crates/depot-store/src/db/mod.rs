//! The SQL layer under the metadata store: one set of queries, two engines. A [`Backend`] opens
//! transactions (SQLite in `sqlite.rs`, PostgreSQL in `postgres.rs`); each hands the store a
//! [`Tx`] that runs statements written once, with `?1`-style parameters and the SQL both engines
//! share (`INSERT … ON CONFLICT`, `RETURNING`). Values cross as [`Value`]s: integers and text,
//! nothing an engine would convert on its own.

pub(crate) mod migrations;
pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::sync::Arc;

use crate::{Result, StoreError};

/// A parameter or a column: the only types depot stores.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<&str> for Value {
    fn from(text: &str) -> Self {
        Value::Text(text.to_owned())
    }
}
impl From<String> for Value {
    fn from(text: String) -> Self {
        Value::Text(text)
    }
}
impl From<&String> for Value {
    fn from(text: &String) -> Self {
        Value::Text(text.clone())
    }
}
impl From<i64> for Value {
    fn from(number: i64) -> Self {
        Value::Int(number)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Value::Null, Into::into)
    }
}

/// Parameters of a statement: `params![a, b]`, `[text]`, or `()` for none.
pub trait Params {
    fn values(self) -> Vec<Value>;
}
impl Params for () {
    fn values(self) -> Vec<Value> {
        Vec::new()
    }
}
impl Params for Vec<Value> {
    fn values(self) -> Vec<Value> {
        self
    }
}
impl<T: Into<Value>, const N: usize> Params for [T; N] {
    fn values(self) -> Vec<Value> {
        self.into_iter().map(Into::into).collect()
    }
}

/// `params![a, b, …]`: values of different types for one statement.
macro_rules! params {
    // `to_owned` borrows: a variable passed stays usable after the statement.
    ($($value:expr),* $(,)?) => { vec![$($crate::db::Value::from(($value).to_owned())),*] };
}
pub(crate) use params;

/// A column read back as a Rust type.
pub trait FromValue: Sized {
    fn from_value(value: &Value) -> Option<Self>;
}
impl FromValue for i64 {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Int(number) => Some(*number),
            _ => None,
        }
    }
}
impl FromValue for String {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Text(text) => Some(text.clone()),
            _ => None,
        }
    }
}
impl<T: FromValue> FromValue for Option<T> {
    fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(None),
            other => T::from_value(other).map(Some),
        }
    }
}

/// A column's position (a trait, as in rusqlite, so that a literal is a `usize`).
pub trait RowIndex {
    fn index(self) -> usize;
}
impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row, read whole before the next statement runs.
#[derive(Debug)]
pub struct Row(pub(crate) Vec<Value>);

impl Row {
    pub fn get<I: RowIndex, T: FromValue>(&self, index: I) -> Result<T> {
        let index = index.index();
        let value = self.0.get(index).ok_or_else(|| StoreError::Database(format!("no column {index}")))?;
        T::from_value(value).ok_or_else(|| {
            StoreError::Database(format!("column {index} holds {value:?}, not a {}", std::any::type_name::<T>()))
        })
    }
}

/// What an engine's transaction does: run one statement.
pub(crate) trait Engine {
    /// Runs several statements with no parameters (a migration).
    fn execute_batch(&self, sql: &str) -> Result<()>;
    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize>;
    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>>;
    /// Records that configuration `name` changed (a new revision, or deleted), to be announced
    /// once the transaction commits: to this process, and on PostgreSQL to every replica.
    fn changed(&self, name: &str) -> Result<()>;
    /// The columns of `table`, in order.
    fn columns(&self, table: &str) -> Result<Vec<String>>;
}

/// A transaction, handed to the store's row operations. Its methods follow rusqlite's names.
#[derive(Clone, Copy)]
pub struct Tx<'a> {
    engine: &'a dyn Engine,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(engine: &'a dyn Engine) -> Self {
        Tx { engine }
    }

    /// Runs a statement; returns the number of rows it changed.
    pub fn execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        self.engine.execute(sql, &params.values())
    }

    /// The first row, mapped; [`StoreError::NoRows`] when there is none (see [`OptionalExtension`]).
    pub fn query_row<T>(&self, sql: &str, params: impl Params, map: impl FnOnce(&Row) -> Result<T>) -> Result<T> {
        let rows = self.engine.query(sql, &params.values())?;
        match rows.first() {
            Some(row) => map(row),
            None => Err(StoreError::NoRows),
        }
    }

    /// See [`Engine::columns`].
    pub(crate) fn columns(&self, table: &str) -> Result<Vec<String>> {
        self.engine.columns(table)
    }

    /// The rows of a query, whole.
    pub(crate) fn rows(&self, sql: &str, params: impl Params) -> Result<Vec<Row>> {
        self.engine.query(sql, &params.values())
    }

    /// See [`Engine::changed`].
    pub(crate) fn changed(&self, name: &str) -> Result<()> {
        self.engine.changed(name)
    }

    pub(crate) fn execute_batch(&self, sql: &str) -> Result<()> {
        self.engine.execute_batch(sql)
    }

    pub fn prepare(&self, sql: &str) -> Result<Statement<'a>> {
        Ok(Statement { engine: self.engine, sql: sql.to_owned() })
    }
}

/// A statement to run once or more.
pub struct Statement<'a> {
    engine: &'a dyn Engine,
    sql: String,
}

impl Statement<'_> {
    pub fn query_map<T>(
        &mut self,
        params: impl Params,
        map: impl FnMut(&Row) -> Result<T>,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let rows = self.engine.query(&self.sql, &params.values())?;
        Ok(rows.iter().map(map).collect::<Vec<_>>().into_iter())
    }

    pub fn exists(&mut self, params: impl Params) -> Result<bool> {
        Ok(!self.engine.query(&self.sql, &params.values())?.is_empty())
    }
}

/// `.optional()` on a [`Tx::query_row`]: no row is `None`.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}
impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(StoreError::NoRows) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// Whether a transaction writes. Writes are serialised across every process that shares the
/// database; reads run side by side on a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Read,
    Write,
}

/// A database engine: opens transactions. Object-safe, so that the store holds one `Arc<dyn
/// Backend>` chosen at start.
pub(crate) trait Backend: Send + Sync {
    /// Runs `body` in one transaction and commits it when `body` succeeds. Returns the names
    /// of the configurations it changed.
    fn transaction(&self, mode: Mode, body: &mut dyn FnMut(&Tx<'_>) -> Result<()>) -> Result<Vec<String>>;
    /// Which engine, for messages.
    fn engine_name(&self) -> &'static str;
    /// Starts passing the changes that other processes commit to `publish` (PostgreSQL's
    /// LISTEN); nothing to do where every writer is in this process (SQLite).
    fn listen(&self, publish: Publish) -> Result<()>;
}

/// A change committed to the metadata, for those who announce it (blocking queries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A configuration has a new revision, or is gone.
    Config(String),
    /// Changes may have been missed (the listening connection was lost): look at everything.
    Everything,
}

/// Where changes go: called on the thread that committed, or on the listener's thread.
pub type Publish = Arc<dyn Fn(Change) + Send + Sync>;

/// Runs `body` once in a transaction and returns its value and the configurations it changed.
pub(crate) fn run<T>(
    backend: &Arc<dyn Backend>,
    mode: Mode,
    body: impl FnOnce(&Tx<'_>) -> Result<T>,
) -> Result<(T, Vec<String>)> {
    let mut body = Some(body);
    let mut value = None;
    let changed = backend.transaction(mode, &mut |tx| {
        let body = body.take().expect("a transaction body runs once");
        value = Some(body(tx)?);
        Ok(())
    })?;
    Ok((value.expect("a committed transaction has its value"), changed))
}
