//! Schema migrations: numbered steps, applied in order, each in the transaction that records it
//! in `schema_migrations`. A database newer than this depot is refused. The two engines share
//! every statement the store runs, but not their DDL: PostgreSQL has stricter types (BIGINT,
//! identity columns), and text sorts bytewise in both (`COLLATE "C"`), as names are listed.

use super::{Backend, Mode, OptionalExtension, Tx, params, run};
use crate::{Result, StoreError};
use std::sync::Arc;

/// One step: its number and its SQL for SQLite and PostgreSQL.
struct Migration {
    version: i64,
    sqlite: &'static str,
    postgres: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, sqlite: SQLITE_1, postgres: POSTGRES_1 },
    Migration { version: 2, sqlite: SQLITE_2, postgres: POSTGRES_2 },
    Migration { version: 3, sqlite: SQLITE_3, postgres: POSTGRES_3 },
    Migration { version: 4, sqlite: SQLITE_4, postgres: POSTGRES_4 },
    Migration { version: 5, sqlite: SQLITE_5, postgres: POSTGRES_5 },
    Migration { version: 6, sqlite: SQLITE_6, postgres: POSTGRES_6 },
    Migration { version: 7, sqlite: SQLITE_7, postgres: POSTGRES_7 },
    Migration { version: 8, sqlite: SQLITE_8, postgres: POSTGRES_8 },
    Migration { version: 9, sqlite: SQLITE_9, postgres: POSTGRES_9 },
];

/// Brings the database to the newest schema this depot knows.
pub(crate) fn migrate(backend: &Arc<dyn Backend>) -> Result<()> {
    let postgres = backend.engine_name() == "postgres";
    for migration in MIGRATIONS {
        run(backend, Mode::Write, |tx| {
            tx.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL)",
            )?;
            let newest: Option<i64> =
                tx.query_row("SELECT MAX(version) FROM schema_migrations", (), |row| row.get(0))?;
            let newest = newest.unwrap_or(0);
            let known = MIGRATIONS.last().map_or(0, |m| m.version);
            if newest > known {
                return Err(StoreError::Invalid(format!(
                    "the database is at schema version {newest}, newer than this depot knows ({known}); \
                     run the depot that made it, or a newer one"
                )));
            }
            let applied = tx
                .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [migration.version], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()?;
            if applied.is_some() {
                return Ok(());
            }
            if postgres {
                tx.execute_batch(migration.postgres)?;
            } else {
                tx.execute_batch(migration.sqlite)?;
                if migration.version == 1 {
                    adopt_unversioned_sqlite(tx)?;
                }
            }
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![migration.version, crate::rows::now()],
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

/// Databases made before migrations were numbered have every table of migration 1 (its
/// `CREATE TABLE IF NOT EXISTS` leaves them as they are) except, in the oldest, the `kind`
/// column of `config_revisions`. This runs once, inside migration 1.
fn adopt_unversioned_sqlite(tx: &Tx<'_>) -> Result<()> {
    let has_kind = tx.prepare("SELECT 1 FROM pragma_table_info('config_revisions') WHERE name = 'kind'")?.exists(())?;
    if !has_kind {
        tx.execute("ALTER TABLE config_revisions ADD COLUMN kind TEXT NOT NULL DEFAULT 'set'", ())?;
    }
    Ok(())
}

const SQLITE_1: &str = "
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES blobs(digest),
    created_at TEXT NOT NULL,
    creator TEXT NOT NULL,
    labels TEXT NOT NULL,
    UNIQUE (component, version)
);
CREATE TABLE IF NOT EXISTS configs (
    name TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS config_revisions (
    config TEXT NOT NULL REFERENCES configs(name) ON DELETE CASCADE,
    revision INTEGER NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    change TEXT NOT NULL,
    hash TEXT NOT NULL,
    layers TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'set',
    PRIMARY KEY (config, revision)
);
CREATE TABLE IF NOT EXISTS agents (
    config TEXT NOT NULL REFERENCES configs(name) ON DELETE CASCADE,
    host TEXT NOT NULL,
    reporter TEXT NOT NULL,
    revision INTEGER NOT NULL,
    hash TEXT NOT NULL,
    state TEXT NOT NULL,
    reported_at TEXT NOT NULL,
    last_seen TEXT NOT NULL,
    report TEXT NOT NULL,
    PRIMARY KEY (config, host)
);
CREATE TABLE IF NOT EXISTS deprecations (
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    reason TEXT NOT NULL,
    replacement TEXT,
    at TEXT NOT NULL,
    by TEXT NOT NULL,
    PRIMARY KEY (component, version)
);
CREATE TABLE IF NOT EXISTS channels (
    component TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    version TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (component, name)
);
CREATE TABLE IF NOT EXISTS channel_moves (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    component TEXT NOT NULL,
    name TEXT NOT NULL,
    at TEXT NOT NULL,
    from_version TEXT,
    to_version TEXT,
    actor TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    components TEXT NOT NULL,
    track TEXT NOT NULL,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    pipeline TEXT NOT NULL REFERENCES pipelines(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position INTEGER NOT NULL,
    after TEXT,
    config TEXT NOT NULL UNIQUE,
    gate TEXT NOT NULL,
    PRIMARY KEY (pipeline, name)
);
CREATE TABLE IF NOT EXISTS env_versions (
    config TEXT NOT NULL,
    version INTEGER NOT NULL,
    vars TEXT NOT NULL,
    digest TEXT NOT NULL,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    PRIMARY KEY (config, version)
);
CREATE TABLE IF NOT EXISTS promotions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    pipeline TEXT NOT NULL,
    from_stage TEXT NOT NULL,
    to_stage TEXT NOT NULL,
    source_revision INTEGER NOT NULL,
    layers TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    state TEXT NOT NULL,
    approved_by TEXT,
    forced TEXT,
    target_revision INTEGER NOT NULL,
    result_revision INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    kind TEXT NOT NULL,
    component TEXT,
    config TEXT,
    revision INTEGER,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_config ON events (config);
CREATE INDEX IF NOT EXISTS env_versions_by_digest ON env_versions (digest);
CREATE INDEX IF NOT EXISTS versions_by_digest ON versions (digest);
CREATE INDEX IF NOT EXISTS events_by_component ON events (component);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT PRIMARY KEY,
    hash TEXT NOT NULL,
    role TEXT NOT NULL,
    config_pattern TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
";

const POSTGRES_1: &str = r#"
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT COLLATE "C" PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    component TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL REFERENCES blobs(digest),
    created_at TEXT COLLATE "C" NOT NULL,
    creator TEXT COLLATE "C" NOT NULL,
    labels TEXT COLLATE "C" NOT NULL,
    UNIQUE (component, version)
);
CREATE TABLE IF NOT EXISTS configs (
    name TEXT COLLATE "C" PRIMARY KEY,
    revision BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS config_revisions (
    config TEXT COLLATE "C" NOT NULL REFERENCES configs(name) ON DELETE CASCADE,
    revision BIGINT NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    change TEXT COLLATE "C" NOT NULL,
    hash TEXT COLLATE "C" NOT NULL,
    layers TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL DEFAULT 'set',
    PRIMARY KEY (config, revision)
);
CREATE TABLE IF NOT EXISTS agents (
    config TEXT COLLATE "C" NOT NULL REFERENCES configs(name) ON DELETE CASCADE,
    host TEXT COLLATE "C" NOT NULL,
    reporter TEXT COLLATE "C" NOT NULL,
    revision BIGINT NOT NULL,
    hash TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    reported_at TEXT COLLATE "C" NOT NULL,
    last_seen TEXT COLLATE "C" NOT NULL,
    report TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (config, host)
);
CREATE TABLE IF NOT EXISTS deprecations (
    component TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    replacement TEXT COLLATE "C",
    at TEXT COLLATE "C" NOT NULL,
    by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (component, version)
);
CREATE TABLE IF NOT EXISTS channels (
    component TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (component, name)
);
CREATE TABLE IF NOT EXISTS channel_moves (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    component TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    from_version TEXT COLLATE "C",
    to_version TEXT COLLATE "C",
    actor TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT COLLATE "C" PRIMARY KEY,
    components TEXT COLLATE "C" NOT NULL,
    track TEXT COLLATE "C" NOT NULL,
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS stages (
    pipeline TEXT COLLATE "C" NOT NULL REFERENCES pipelines(name) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    position BIGINT NOT NULL,
    after TEXT COLLATE "C",
    config TEXT COLLATE "C" NOT NULL UNIQUE,
    gate TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (pipeline, name)
);
CREATE TABLE IF NOT EXISTS env_versions (
    config TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    vars TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (config, version)
);
CREATE TABLE IF NOT EXISTS promotions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    pipeline TEXT COLLATE "C" NOT NULL,
    from_stage TEXT COLLATE "C" NOT NULL,
    to_stage TEXT COLLATE "C" NOT NULL,
    source_revision BIGINT NOT NULL,
    layers TEXT COLLATE "C" NOT NULL,
    requested_by TEXT COLLATE "C" NOT NULL,
    requested_at TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    approved_by TEXT COLLATE "C",
    forced TEXT COLLATE "C",
    target_revision BIGINT NOT NULL,
    result_revision BIGINT
);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at TEXT COLLATE "C" NOT NULL,
    actor TEXT COLLATE "C" NOT NULL,
    kind TEXT COLLATE "C" NOT NULL,
    component TEXT COLLATE "C",
    config TEXT COLLATE "C",
    revision BIGINT,
    summary TEXT COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_config ON events (config);
CREATE INDEX IF NOT EXISTS env_versions_by_digest ON env_versions (digest);
CREATE INDEX IF NOT EXISTS versions_by_digest ON versions (digest);
CREATE INDEX IF NOT EXISTS events_by_component ON events (component);
CREATE TABLE IF NOT EXISTS tokens (
    name TEXT COLLATE "C" PRIMARY KEY,
    hash TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    config_pattern TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);
"#;

/// Rollouts: a configuration's strategy (NULL: all at once), its latest rollout (the JSON of
/// `depot_store::rollout::Rollout`), and since when (registry time) each agent has been in the
/// state it last reported, which bake times count from.
const SQLITE_2: &str = "
ALTER TABLE configs ADD COLUMN strategy TEXT;
ALTER TABLE agents ADD COLUMN since TEXT;
CREATE TABLE rollouts (
    config TEXT PRIMARY KEY REFERENCES configs(name) ON DELETE CASCADE,
    phase TEXT NOT NULL,
    state TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
";

const POSTGRES_2: &str = r#"
ALTER TABLE configs ADD COLUMN strategy TEXT COLLATE "C";
ALTER TABLE agents ADD COLUMN since TEXT COLLATE "C";
CREATE TABLE rollouts (
    config TEXT COLLATE "C" PRIMARY KEY REFERENCES configs(name) ON DELETE CASCADE,
    phase TEXT COLLATE "C" NOT NULL,
    state TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
"#;

/// Signatures: SSHSIG texts attached to versions, one per key.
const SQLITE_3: &str = "
CREATE TABLE signatures (
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    key_type TEXT NOT NULL,
    signature TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (component, version, fingerprint)
);
";

const POSTGRES_3: &str = r#"
CREATE TABLE signatures (
    component TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    key_type TEXT COLLATE "C" NOT NULL,
    signature TEXT COLLATE "C" NOT NULL,
    added_by TEXT COLLATE "C" NOT NULL,
    added_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (component, version, fingerprint)
);
"#;

/// Environment layers kept sealed in the database instead of the blob store (with the secrets
/// key), so that no copy of the blob store holds a stage's values.
const SQLITE_4: &str = "ALTER TABLE env_versions ADD COLUMN archive TEXT;";

const POSTGRES_4: &str = r#"ALTER TABLE env_versions ADD COLUMN archive TEXT COLLATE "C";"#;

/// The registry's own settings, one value per name: `secrets-key-id`, the id of the key the
/// stages' values are sealed with.
const SQLITE_5: &str = "CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);";

const POSTGRES_5: &str =
    r#"CREATE TABLE settings (name TEXT COLLATE "C" PRIMARY KEY, value TEXT COLLATE "C" NOT NULL);"#;

/// Signature policies: the signatures a component's versions need, and the keys that count.
const SQLITE_6: &str = "
CREATE TABLE policies (
    component TEXT PRIMARY KEY,
    require_signatures INTEGER NOT NULL,
    allowed_signers TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
";

const POSTGRES_6: &str = r#"
CREATE TABLE policies (
    component TEXT COLLATE "C" PRIMARY KEY,
    require_signatures BIGINT NOT NULL,
    allowed_signers TEXT COLLATE "C" NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL,
    updated_at TEXT COLLATE "C" NOT NULL
);
"#;

/// Attestations: in-toto statements about versions, with their signatures (JSON).
const SQLITE_7: &str = "
CREATE TABLE attestations (
    component TEXT NOT NULL,
    version TEXT NOT NULL,
    digest TEXT NOT NULL,
    predicate_type TEXT NOT NULL,
    statement TEXT NOT NULL,
    size INTEGER NOT NULL,
    signatures TEXT NOT NULL,
    added_by TEXT NOT NULL,
    added_at TEXT NOT NULL,
    PRIMARY KEY (component, version, digest)
);
";

const POSTGRES_7: &str = r#"
CREATE TABLE attestations (
    component TEXT COLLATE "C" NOT NULL,
    version TEXT COLLATE "C" NOT NULL,
    digest TEXT COLLATE "C" NOT NULL,
    predicate_type TEXT COLLATE "C" NOT NULL,
    statement TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL,
    signatures TEXT COLLATE "C" NOT NULL,
    added_by TEXT COLLATE "C" NOT NULL,
    added_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (component, version, digest)
);
"#;

/// SSH keys (the SSH front-end's operators and agents): like tokens, with a role and, for agents,
/// a configuration pattern; found by their SHA256 fingerprint.
const SQLITE_8: &str = "
CREATE TABLE ssh_keys (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    role TEXT NOT NULL,
    config_pattern TEXT,
    created_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
";

const POSTGRES_8: &str = r#"
CREATE TABLE ssh_keys (
    name TEXT COLLATE "C" PRIMARY KEY,
    fingerprint TEXT COLLATE "C" NOT NULL UNIQUE,
    public_key TEXT COLLATE "C" NOT NULL,
    role TEXT COLLATE "C" NOT NULL,
    config_pattern TEXT COLLATE "C",
    created_at TEXT COLLATE "C" NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);
"#;

/// Frame indexes of seekable blobs (JSON), read from each blob once, when first asked for.
const SQLITE_9: &str = "
CREATE TABLE blob_frames (
    digest TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    frames TEXT NOT NULL
);
";

const POSTGRES_9: &str = r#"
CREATE TABLE blob_frames (
    digest TEXT COLLATE "C" PRIMARY KEY,
    size BIGINT NOT NULL,
    frames TEXT COLLATE "C" NOT NULL
);
"#;
