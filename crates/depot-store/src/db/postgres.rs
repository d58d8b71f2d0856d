//! PostgreSQL, for registries that outgrow one machine: several `depot serve` replicas share one
//! database. Writes take one transaction-scoped advisory lock first, so that they run one at a
//! time across every replica, as on SQLite: the store's read-then-write steps (the next
//! revision, the channel a push moves) never race, and no transaction has to be retried. Reads
//! run side by side at REPEATABLE READ, each on one snapshot.
//!
//! TLS: with `sslmode=require` (or `verify-ca`, `verify-full`) in the URL, every connection is
//! encrypted and the server's certificate is verified against `sslrootcert=FILE` (PEM), else the
//! public roots, and must name the host: what libpq calls verify-full. Without, connections are
//! plain, as before.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{IsNull, ToSql, Type};
use postgres::{IsolationLevel, Statement};

use super::{Backend, Change, Engine, Mode, Publish, Row, Tx, Value};
use crate::{Result, StoreError};

/// The advisory lock every write transaction takes: "depot" in ASCII.
const WRITE_LOCK: i64 = 0x0064_6570_6f74;
/// Connections per replica.
const CONNECTIONS: u32 = 16;
/// How long a new connection may take: a database that does not answer by then is down, and
/// `/healthz` should say so before a load balancer's own timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request waits for a free connection of the pool before failing.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);

/// The channel of `NOTIFY`: a configuration's name each time it changes.
const CHANGES: &str = "depot_changes";
/// The longest pause between attempts to listen again after the connection was lost.
const MAX_LISTEN_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Postgres {
    config: postgres::Config,
    tls: Tls,
    /// `None` only while dropping (see the `Drop` impl).
    pool: Option<r2d2::Pool<Connections>>,
}

impl Drop for Postgres {
    /// The synchronous client closes a connection by blocking on its own runtime, which panics
    /// on an async worker thread, where the registry's state is dropped at shutdown: the pool
    /// is dropped on a thread of its own.
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            let _ = std::thread::spawn(move || drop(pool)).join();
        }
    }
}

impl Postgres {
    /// Connects to `url` (`postgres://user:password@host:port/database[?sslmode=require&sslrootcert=FILE]`).
    pub(crate) fn open(url: &str) -> Result<Self> {
        let (url, tls) = tls_of(url)?;
        let mut config: postgres::Config =
            url.parse().map_err(|e| StoreError::Database(format!("invalid PostgreSQL URL: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("depot");
        // The server's notices (`… already exists, skipping`) are not the registry's news.
        config.options("-c client_min_messages=warning");
        config.keepalives(true).keepalives_idle(Duration::from_secs(10));
        if let Tls::On(_) = tls {
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        // One connection first, so that a refusal (a password, TLS, a certificate) is said at
        // once and in full, rather than after the pool's wait as a time-out.
        tls.connect(&config)
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {}", causes(&e))))?;
        let pool = r2d2::Pool::builder()
            .max_size(CONNECTIONS)
            .min_idle(Some(1))
            .connection_timeout(POOL_TIMEOUT)
            .build(Connections { config: config.clone(), tls: tls.clone() })
            .map_err(|e| StoreError::Database(format!("cannot connect to PostgreSQL: {e}")))?;
        Ok(Postgres { config, tls, pool: Some(pool) })
    }
}

/// An error with its causes, `: `-separated (the client library's own message leaves them out).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text = format!("{text}: {message}");
        }
        source = cause.source();
    }
    text
}

/// How connections are made: plain, or TLS with the server's certificate verified.
#[derive(Clone)]
enum Tls {
    Off,
    On(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Tls {
    fn connect(&self, config: &postgres::Config) -> std::result::Result<postgres::Client, postgres::Error> {
        match self {
            Tls::Off => config.connect(postgres::NoTls),
            Tls::On(tls) => config.connect(tls.clone()),
        }
    }
}

/// Takes `sslmode` and `sslrootcert` out of the URL's query (the client library knows only
/// some of libpq's values, and none of its files) and returns the rest with the TLS to use.
fn tls_of(url: &str) -> Result<(String, Tls)> {
    let invalid = |e: &dyn std::fmt::Display| StoreError::Database(format!("invalid PostgreSQL URL: {e}"));
    let mut parsed = url::Url::parse(url).map_err(|e| invalid(&e))?;
    let (mut mode, mut root_cert) = (None, None);
    let rest: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(key, value)| match key.as_ref() {
            "sslmode" => {
                mode = Some(value.to_string());
                false
            }
            "sslrootcert" => {
                root_cert = Some(value.to_string());
                false
            }
            _ => true,
        })
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    parsed.set_query(None);
    if !rest.is_empty() {
        parsed.query_pairs_mut().extend_pairs(rest);
    }
    let tls = match mode.as_deref() {
        None | Some("disable" | "allow" | "prefer") => {
            if root_cert.is_some() {
                return Err(invalid(&"sslrootcert is given but sslmode does not ask for TLS (sslmode=require)"));
            }
            Tls::Off
        }
        Some("require" | "verify-ca" | "verify-full") => Tls::On(rustls_connector(root_cert.as_deref())?),
        Some(other) => {
            return Err(invalid(&format!(
                "sslmode={other} is not one of disable, prefer, require, verify-ca, verify-full"
            )));
        }
    };
    Ok((parsed.to_string(), tls))
}

/// A rustls client that trusts the certificates in `root_cert` (PEM), else the public roots.
fn rustls_connector(root_cert: Option<&str>) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| StoreError::Database(format!("cannot read sslrootcert {path}: {e}")))?;
            if certificates.is_empty() {
                return Err(StoreError::Database(format!("sslrootcert {path} holds no PEM certificate")));
            }
            for certificate in certificates {
                roots.add(certificate).map_err(|e| StoreError::Database(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Database(format!("TLS to PostgreSQL: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

impl Backend for Postgres {
    fn transaction(&self, mode: Mode, body: &mut dyn FnMut(&Tx<'_>) -> Result<()>) -> Result<Vec<String>> {
        let pool = self.pool.as_ref().expect("the pool lives until the backend is dropped");
        let mut connection = pool.get().map_err(|e| StoreError::Database(format!("PostgreSQL: {e}")))?;
        let Connection { client, statements } = &mut *connection;
        let mut builder = client.build_transaction();
        builder = match mode {
            Mode::Write => builder.isolation_level(IsolationLevel::ReadCommitted),
            Mode::Read => builder.isolation_level(IsolationLevel::RepeatableRead).read_only(true),
        };
        let transaction = builder.start()?;
        let engine = Transaction {
            transaction: RefCell::new(transaction),
            statements: RefCell::new(statements),
            changed: RefCell::default(),
        };
        if mode == Mode::Write {
            engine.execute("SELECT pg_advisory_xact_lock(?1)", &[Value::Int(WRITE_LOCK)])?;
        }
        body(&Tx::new(&engine))?;
        let changed = engine.changed.take();
        engine.transaction.into_inner().commit()?;
        Ok(changed.into_iter().collect())
    }

    fn engine_name(&self) -> &'static str {
        "postgres"
    }

    fn listen(&self, publish: Publish) -> Result<()> {
        let (config, tls) = (self.config.clone(), self.tls.clone());
        std::thread::Builder::new().name("depot-listen".to_owned()).spawn(move || listen(&config, &tls, &publish))?;
        Ok(())
    }
}

/// Passes every configuration name notified on [`CHANGES`] to `publish`, for as long as the
/// process lives. When the connection is lost it connects again, with backoff, and then
/// publishes [`Change::Everything`]: notifications sent meanwhile are gone.
fn listen(config: &postgres::Config, tls: &Tls, publish: &Publish) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listen_once(config, tls, publish) {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!("listening for changes in PostgreSQL failed ({error}); again in {backoff:?}");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_LISTEN_BACKOFF);
            }
        }
    }
}

fn listen_once(config: &postgres::Config, tls: &Tls, publish: &Publish) -> std::result::Result<(), postgres::Error> {
    let mut client = tls.connect(config)?;
    client.batch_execute(&format!("LISTEN {CHANGES}"))?;
    publish(Change::Everything);
    let mut notifications = client.notifications();
    let mut iter = notifications.blocking_iter();
    while let Some(notification) = iter.next()? {
        publish(Change::Config(notification.payload().to_owned()));
    }
    Ok(())
}

/// A pooled connection and the statements prepared on it, by their SQL: each statement is
/// parsed once per connection, so that a call is one round trip, not two.
struct Connection {
    client: postgres::Client,
    statements: HashMap<String, Statement>,
}

/// Opens the pool's connections.
struct Connections {
    config: postgres::Config,
    tls: Tls,
}

impl r2d2::ManageConnection for Connections {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Connection, postgres::Error> {
        Ok(Connection { client: self.tls.connect(&self.config)?, statements: HashMap::new() })
    }

    fn is_valid(&self, connection: &mut Connection) -> std::result::Result<(), postgres::Error> {
        connection.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, connection: &mut Connection) -> bool {
        connection.client.is_closed()
    }
}

struct Transaction<'a> {
    transaction: RefCell<postgres::Transaction<'a>>,
    statements: RefCell<&'a mut HashMap<String, Statement>>,
    changed: RefCell<BTreeSet<String>>,
}

impl Transaction<'_> {
    /// The prepared statement for `sql` (written with `?N`), prepared on first use.
    fn statement(&self, sql: &str) -> Result<Statement> {
        let mut statements = self.statements.borrow_mut();
        if let Some(statement) = statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.transaction.borrow_mut().prepare(&numbered_parameters(sql))?;
        statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }
}

impl Transaction<'_> {
    /// A statement prepared before the schema changed under this connection (another replica
    /// migrated it, a column changed type) fails with `cached plan must not change result type`;
    /// one a pooler discarded, with `prepared statement … does not exist`. The transaction fails
    /// (PostgreSQL has aborted it), and this connection's statements are prepared anew from the
    /// next one on, so the replica recovers rather than failing for as long as it runs.
    fn stale_statements<T>(&self, result: std::result::Result<T, postgres::Error>) -> Result<T> {
        if let Err(error) = &result
            && matches!(
                error.code(),
                Some(
                    &postgres::error::SqlState::FEATURE_NOT_SUPPORTED
                        | &postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME
                )
            )
        {
            tracing::warn!("PostgreSQL: {error}; preparing this connection's statements again");
            self.statements.borrow_mut().clear();
        }
        Ok(result?)
    }
}

impl Engine for Transaction<'_> {
    fn columns(&self, table: &str) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND table_name = ?1 ORDER BY ordinal_position",
            &[Value::from(table)],
        )?;
        rows.iter().map(|row| row.get(0)).collect()
    }

    fn changed(&self, name: &str) -> Result<()> {
        if self.changed.borrow_mut().insert(name.to_owned()) {
            // Delivered to every listening replica when, and only if, the transaction commits.
            self.execute("SELECT pg_notify(?1, ?2)", &[Value::from(CHANGES), Value::from(name)])?;
        }
        Ok(())
    }

    fn execute_batch(&self, sql: &str) -> Result<()> {
        Ok(self.transaction.borrow_mut().batch_execute(sql)?)
    }

    fn execute(&self, sql: &str, params: &[Value]) -> Result<usize> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let result = self.transaction.borrow_mut().execute(&statement, &params);
        Ok(self.stale_statements(result)? as usize)
    }

    fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>> {
        let statement = self.statement(sql)?;
        let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let result = self.transaction.borrow_mut().query(&statement, &params);
        self.stale_statements(result)?.iter().map(row).collect()
    }
}

/// The store writes parameters as `?1`; PostgreSQL numbers them `$1`.
fn numbered_parameters(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted && chars.peek().is_some_and(char::is_ascii_digit) => out.push('$'),
            _ => out.push(c),
        }
    }
    out
}

fn row(row: &postgres::Row) -> Result<Row> {
    let mut values = Vec::with_capacity(row.len());
    for (index, column) in row.columns().iter().enumerate() {
        let ty = column.type_();
        values.push(if *ty == Type::INT8 {
            row.try_get::<_, Option<i64>>(index)?.map_or(Value::Null, Value::Int)
        } else if *ty == Type::INT4 {
            row.try_get::<_, Option<i32>>(index)?.map_or(Value::Null, |n| Value::Int(n.into()))
        } else if *ty == Type::INT2 {
            row.try_get::<_, Option<i16>>(index)?.map_or(Value::Null, |n| Value::Int(n.into()))
        } else if *ty == Type::BOOL {
            row.try_get::<_, Option<bool>>(index)?.map_or(Value::Null, |b| Value::Int(b.into()))
        } else if *ty == Type::TEXT || *ty == Type::VARCHAR || *ty == Type::NAME || *ty == Type::BPCHAR {
            row.try_get::<_, Option<String>>(index)?.map_or(Value::Null, Value::Text)
        } else {
            return Err(StoreError::Database(format!("column {} has the unexpected type {ty}", column.name())));
        });
    }
    Ok(Row(values))
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut postgres::types::private::BytesMut,
    ) -> std::result::Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        let text = [Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty);
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(_) if text => Err(format!("an integer for a column of type {ty}").into()),
            Value::Text(_) if !text => Err(format!("text for a column of type {ty}").into()),
            Value::Int(number) if *ty == Type::INT4 => i32::try_from(*number)?.to_sql(ty, out),
            Value::Int(number) if *ty == Type::INT2 => i16::try_from(*number)?.to_sql(ty, out),
            Value::Int(number) => number.to_sql(ty, out),
            Value::Text(text) => text.as_str().to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::INT4, Type::INT2, Type::TEXT, Type::VARCHAR, Type::NAME, Type::BPCHAR].contains(ty)
    }

    postgres::types::to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::numbered_parameters;

    #[test]
    fn parameters_are_numbered_outside_quotes() {
        assert_eq!(
            numbered_parameters("SELECT a FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT a FROM t WHERE a = $1 AND b = $12"
        );
        assert_eq!(numbered_parameters("SELECT '?1', ?2"), "SELECT '?1', $2");
    }
}
