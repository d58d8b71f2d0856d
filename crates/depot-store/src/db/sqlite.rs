//! SQLite: WAL with synchronous=FULL, so that an acknowledged write survives a kill or a power
//! cut. One connection writes (`BEGIN IMMEDIATE`, behind a mutex: SQLite has one writer at a
//! time anyway); reads run on a pool of read-only connections, each transaction on a snapshot,
//! never waiting for the writer.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, TransactionBehavior};

use super::{Backend, Engine, Mode, Publish, Row, Tx, Value};
use crate::{Result, StoreError};

/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Read connections kept open: one per async worker is plenty on the machines depot serves from.
const READERS: u32 = 8;

pub(crate) struct Sqlite {
    writer: Mutex<Connection>,
    readers: r2d2::Pool<Readers>,
}

impl Sqlite {
    pub(crate) fn open(path: &Path) -> Result<Self> {
        // Environment values and token hashes live here: 0600 from the start (SQLite gives the
        // -wal and -shm files the database's mode), an older file tightened.
        if let Some(parent) = path.parent() {
            crate::private::create_missing_dirs(parent)?;
        }
        crate::private::create_private_file(path)?;
        for suffix in ["-wal", "-shm"] {
            let mut companion = path.as_os_str().to_owned();
            companion.push(suffix);
            crate::private::tighten(Path::new(&companion), crate::private::FILE_MODE);
        }
        let writer = Connection::open(path)?;
        writer.pragma_update(None, "journal_mode", "WAL")?;
        writer.pragma_update(None, "synchronous", "FULL")?;
        writer.pragma_update(None, "foreign_keys", "ON")?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        let readers = r2d2::Pool::builder()
            .max_size(READERS)
            .min_idle(Some(1))
            .build(Readers { path: path.to_owned() })
            .map_err(|e| StoreError::Database(format!("cannot open {}: {e}", path.display())))?;
        Ok(Sqlite { writer: Mutex::new(writer), readers })
    }
}

impl Backend for Sqlite {
    fn transaction(&self, mode: Mode, body: &mut dyn FnMut(&Tx<'_>) -> Result<()>) -> Result<Vec<String>> {
        let changed = match mode {
            Mode::Write => {
                let mut connection = self.writer.lock().expect("the writer lock is never poisoned");
                let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let engine = Transaction { transaction: &transaction, changed: RefCell::default() };
                body(&Tx::new(&engine))?;
                let changed = engine.changed.take();
                transaction.commit()?;
                changed
            }
            Mode::Read => {
                let mut connection = self.readers.get().map_err(|e| StoreError::Database(e.to_string()))?;
                let transaction = connection.transaction_with_behavior(TransactionBehavior::Deferred)?;
                let engine = Transaction { transaction: &transaction, changed: RefCell::default() };
                body(&Tx::new(&engine))?;
                transaction.commit()?;
                BTreeSet::new()
            }
        };
        Ok(changed.into_iter().collect())
    }

    fn engine_name(&self) -> &'static str {
        "sqlite"
    }

    fn listen(&self, _: Publish) -> Result<()> {
        Ok(())
    }
}

/// Opens the read connections of the pool.
struct Readers {
    path: PathBuf,
}

impl r2d2::ManageConnection for Readers {
    type Connection = Connection;
    type Error = rusqlite::Error;

    fn connect(&self) -> std::result::Result<Connection, rusqlite::Error> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "query_only", "ON")?;
        Ok(connection)
    }

    fn is_valid(&self, connection: &mut Connection) -> std::result::Result<(), rusqlite::Error> {
        connection.execute_batch("")
    }

    fn has_broken(&self, _: &mut Connection) -> bool {
        false
    }
}

struct Transaction<'a> {
    transaction: &'a rusqlite::Transaction<'a>,
    changed: RefCell<BTreeSet<String>>,
}

impl Engine for Transaction<'_> {
    fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(self.transaction.execute_batch(sql)?)
    }

    fn changed(&self, name: &str) -> Result<()> {
        self.changed.borrow_mut().insert(name.to_owned());
        Ok(())
    }

    fn columns(&self, table: &str) -> Result<Vec<String>> {
        let rows = self.query("SELECT name FROM pragma_table_info(?1) ORDER BY cid", &[Value::from(table)])?;
        rows.iter().map(|row| row.get(0)).collect()
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let mut statement = self.transaction.prepare_cached(sql)?;
        Ok(statement.execute(rusqlite::params_from_iter(params))?)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let mut statement = self.transaction.prepare_cached(sql)?;
        let columns = statement.column_count();
        let mut rows = statement.query(rusqlite::params_from_iter(params))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for index in 0..columns {
                values.push(match row.get_ref(index)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(number) => Value::Int(number),
                    ValueRef::Text(text) => {
                        Value::Text(String::from_utf8(text.to_vec()).map_err(|e| StoreError::Database(e.to_string()))?)
                    }
                    other => {
                        return Err(StoreError::Database(format!("unexpected column type {:?}", other.data_type())));
                    }
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(number) => ToSqlOutput::Borrowed(ValueRef::Integer(*number)),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
        })
    }
}
