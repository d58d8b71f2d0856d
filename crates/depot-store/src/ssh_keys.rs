//! SSH keys of the SSH front-end: a name, a role (and for agents a configuration pattern), and
//! the public key, found at login by its fingerprint.

use depot_api::TokenName;
use depot_api::types::SshKeyInfo;

use crate::db::{OptionalExtension, Row, Tx, params};
use crate::rows::{now, parse, parse_time};
use crate::{Metadata, Result, StoreError};

const COLUMNS: &str = "name, fingerprint, public_key, role, config_pattern, created_at, created_by";

impl Metadata {
    /// Adds `keys` in one transaction: all or none. A name or a key already known is refused.
    pub fn add_ssh_keys(&self, keys: &[SshKeyInfo]) -> Result<Vec<SshKeyInfo>> {
        self.transaction(|tx| {
            for key in keys {
                let taken = tx
                    .query_row(
                        "SELECT name FROM ssh_keys WHERE name = ?1 OR fingerprint = ?2",
                        params![key.name.as_str(), key.fingerprint],
                        |row| row.get::<_, String>(0),
                    )
                    .optional()?;
                if let Some(taken) = taken {
                    return Err(StoreError::Invalid(match taken == key.name.as_str() {
                        true => format!("an SSH key named {taken} exists"),
                        false => format!("the key {} is already known as {taken}", key.fingerprint),
                    }));
                }
                tx.execute(
                    &format!("INSERT INTO ssh_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                    params![
                        key.name.as_str(),
                        key.fingerprint,
                        key.public_key,
                        key.role.as_str(),
                        key.config_pattern.as_deref(),
                        now(),
                        key.created_by
                    ],
                )?;
            }
            keys.iter().map(|key| Ok(find(tx, "name = ?1", key.name.as_str())?.expect("just added"))).collect()
        })
    }

    pub fn ssh_keys(&self) -> Result<Vec<SshKeyInfo>> {
        self.read(|tx| {
            tx.rows(&format!("SELECT {COLUMNS} FROM ssh_keys ORDER BY name"), ())?.iter().map(info).collect()
        })
    }

    /// The key with this `SHA256:…` fingerprint.
    pub fn ssh_key_by_fingerprint(&self, fingerprint: &str) -> Result<Option<SshKeyInfo>> {
        self.read(|tx| find(tx, "fingerprint = ?1", fingerprint))
    }

    /// Removes a key; whether it existed.
    pub fn revoke_ssh_key(&self, name: &TokenName) -> Result<bool> {
        self.transaction(|tx| Ok(tx.execute("DELETE FROM ssh_keys WHERE name = ?1", [name.as_str()])? > 0))
    }
}

fn find(tx: &Tx<'_>, filter: &str, value: &str) -> Result<Option<SshKeyInfo>> {
    tx.rows(&format!("SELECT {COLUMNS} FROM ssh_keys WHERE {filter}"), [value])?.first().map(info).transpose()
}

fn info(row: &Row) -> Result<SshKeyInfo> {
    let role: String = row.get(3)?;
    let created_at: String = row.get(5)?;
    Ok(SshKeyInfo {
        name: parse(TokenName::parse(&row.get::<_, String>(0)?))?,
        fingerprint: row.get(1)?,
        public_key: row.get(2)?,
        role: role.parse().map_err(StoreError::Invalid)?,
        config_pattern: row.get(4)?,
        created_at: parse_time(&created_at)?,
        created_by: row.get(6)?,
    })
}
