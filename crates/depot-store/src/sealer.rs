//! Secrets sealed at rest: a stage's environment values, and the environment layer that carries
//! them, are stored encrypted (XChaCha20-Poly1305) with a key that lives outside the data
//! directory, so that a copy of the database, its WAL, its backups or the blob store reveals
//! none of them. The registry unseals them to serve the stage's agents and the operators who
//! ask (`depot env list --show`).

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};

use crate::db::{OptionalExtension, Tx, params};
use crate::{Metadata, Result, StoreError};

/// What every sealed text starts with.
const PREFIX: &str = "sealed:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The key that seals and unseals.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(…)")
    }
}

impl Sealer {
    /// A new random key (tests, and the first start).
    pub fn generate() -> (Self, [u8; KEY_BYTES]) {
        let key: [u8; KEY_BYTES] = rand::random();
        (Sealer::from_key(&key), key)
    }

    fn from_key(key: &[u8; KEY_BYTES]) -> Self {
        // Names the key (in the database, and in errors) without revealing anything of it.
        let hash = Sha256::new().chain_update(b"depot secrets key id\n").chain_update(key).finalize();
        let id = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        Sealer { cipher: XChaCha20Poly1305::new(Key::from_slice(key)), id }
    }

    /// A short public name of the key: the database records which key seals it, so that a
    /// registry started with another key (or a stale one after a rotation) refuses at once.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads the key file at `path` (64 hex digits), creating it (mode 0600) when it does not
    /// exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        match Sealer::load(path)? {
            Some(sealer) => Ok((sealer, false)),
            None => Ok((Sealer::create(path)?, true)),
        }
    }

    /// Reads the key file at `path`, or `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<Self>> {
        let bad = |message: String| StoreError::Invalid(format!("secrets key {}: {message}", path.display()));
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(e.to_string())),
        };
        let text = text.trim();
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("expected 64 hex digits".to_owned()))?;
        let key: [u8; KEY_BYTES] = bytes.try_into().map_err(|_| bad("expected 64 hex digits (32 bytes)".to_owned()))?;
        Ok(Some(Sealer::from_key(&key)))
    }

    /// Writes a new random key to `path` (mode 0600; refused if the file exists). The key is
    /// written and synced under a temporary name first and then linked into place, so `path`
    /// never holds part of a key, whenever the process stops.
    pub fn create(path: &Path) -> Result<Self> {
        let bad = |message: String| StoreError::Invalid(format!("secrets key {}: {message}", path.display()));
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            fs_err::create_dir_all(parent).map_err(|e| bad(e.to_string()))?;
        }
        let (sealer, key) = Sealer::generate();
        let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let mut temp = path.as_os_str().to_owned();
        temp.push(".tmp");
        let temp = std::path::PathBuf::from(temp);
        let _ = std::fs::remove_file(&temp);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode_private()
            .open(&temp)
            .map_err(|e| bad(e.to_string()))?;
        file.write_all(format!("{hex}\n").as_bytes()).and_then(|()| file.sync_all()).map_err(|e| bad(e.to_string()))?;
        // A link, not a rename: it fails rather than replace a key that appeared meanwhile.
        let linked = std::fs::hard_link(&temp, path).map_err(|e| bad(e.to_string()));
        let _ = std::fs::remove_file(&temp);
        linked?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs_err::File::open(parent).and_then(|dir| dir.sync_all()).map_err(|e| bad(e.to_string()))?;
        }
        Ok(sealer)
    }

    /// `sealed:v1:` and the base64 of a random nonce followed by the ciphertext.
    pub fn seal(&self, plain: &[u8]) -> String {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed =
            self.cipher.encrypt(XNonce::from_slice(&nonce), plain).expect("XChaCha20-Poly1305 seals any length");
        let mut bytes = nonce.to_vec();
        bytes.extend(sealed);
        format!("{PREFIX}{}", STANDARD.encode(bytes))
    }

    /// The plain bytes of a sealed text.
    pub fn unseal(&self, text: &str) -> Result<Vec<u8>> {
        let corrupt = || {
            StoreError::Invalid(
                "a sealed value does not open with this secrets key (another key, or damaged)".to_owned(),
            )
        };
        let bytes = STANDARD.decode(text.strip_prefix(PREFIX).ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        if bytes.len() < NONCE_BYTES {
            return Err(corrupt());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        self.cipher.decrypt(XNonce::from_slice(nonce), sealed).map_err(|_| corrupt())
    }

    /// Whether `text` is sealed (rows written before sealing are plain).
    pub fn is_sealed(text: &str) -> bool {
        text.starts_with(PREFIX)
    }
}

/// The `settings` row naming the key the database is sealed with.
const KEY_ID: &str = "secrets-key-id";

/// What `depot admin rotate-key` re-sealed.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Resealed {
    /// Environment versions (each a stage's variables and its environment layer).
    pub env_versions: u64,
    /// Whether the database was sealed with the new key already (a rotation run again after
    /// an interruption): nothing was re-sealed.
    pub already: bool,
}

impl Metadata {
    /// Seals and unseals with `sealer` from now on, once it is known to be the key the database
    /// is sealed with: the one it records, or, for a database that records none yet, one that
    /// opens what it holds (and is recorded). A registry started with another key is refused
    /// here rather than at the first read of a value.
    pub fn use_sealer(&self, sealer: Sealer) -> Result<()> {
        self.transaction(|tx| {
            match recorded_key(tx)? {
                Some(id) if id == sealer.id() => {}
                Some(id) => return Err(wrong_key(&id, sealer.id())),
                None => {
                    let sealed: Option<String> = tx
                        .query_row("SELECT vars FROM env_versions WHERE vars LIKE 'sealed:%' LIMIT 1", (), |row| {
                            row.get(0)
                        })
                        .optional()?;
                    if let Some(text) = sealed {
                        sealer.unseal(&text)?;
                    }
                    record_key(tx, sealer.id())?;
                }
            }
            Ok(())
        })?;
        self.set_sealer(sealer);
        Ok(())
    }

    /// Re-seals every stage's values and environment layers with `new` (opening them with
    /// `old`), in one transaction that also records `new` as the database's key: a rotation
    /// interrupted before it commits changed nothing, and one run again after it committed
    /// finds the work done. Values stored before sealing existed are sealed too.
    pub fn reseal(&self, old: &Sealer, new: &Sealer) -> Result<Resealed> {
        self.transaction(|tx| {
            match recorded_key(tx)? {
                Some(id) if id == new.id() => return Ok(Resealed { env_versions: 0, already: true }),
                Some(id) if id != old.id() => return Err(wrong_key(&id, old.id())),
                _ => {}
            }
            let rows = tx.rows("SELECT config, version, vars, archive FROM env_versions", ())?;
            let mut resealed = 0;
            for row in rows {
                let (config, version): (String, i64) = (row.get(0)?, row.get(1)?);
                let vars: String = row.get(2)?;
                let archive: Option<String> = row.get(3)?;
                let vars = match Sealer::is_sealed(&vars) {
                    true => old.unseal(&vars)?,
                    false => vars.into_bytes(),
                };
                let archive = archive.map(|text| old.unseal(&text)).transpose()?;
                tx.execute(
                    "UPDATE env_versions SET vars = ?1, archive = ?2 WHERE config = ?3 AND version = ?4",
                    params![new.seal(&vars), archive.map(|a| new.seal(&a)), config, version],
                )?;
                resealed += 1;
            }
            record_key(tx, new.id())?;
            Ok(Resealed { env_versions: resealed, already: false })
        })
    }
}

/// `sealer.unseal(text)`, saying so when the key was rotated under this registry.
pub(crate) fn open(tx: &Tx<'_>, sealer: &Sealer, text: &str) -> Result<Vec<u8>> {
    sealer.unseal(text).or_else(|error| {
        check_key(tx, sealer)?;
        Err(error)
    })
}

/// Refuses a write sealed with a key the database no longer records: a registry still running
/// on the old key after `depot admin rotate-key`.
pub(crate) fn check_key(tx: &Tx<'_>, sealer: &Sealer) -> Result<()> {
    match recorded_key(tx)? {
        Some(id) if id != sealer.id() => Err(StoreError::KeyRotated { recorded: id, held: sealer.id().to_owned() }),
        _ => Ok(()),
    }
}

fn recorded_key(tx: &Tx<'_>) -> Result<Option<String>> {
    tx.query_row("SELECT value FROM settings WHERE name = ?1", [KEY_ID], |row| row.get(0)).optional()
}

fn record_key(tx: &Tx<'_>, id: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO settings (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        params![KEY_ID, id],
    )?;
    Ok(())
}

fn wrong_key(recorded: &str, given: &str) -> StoreError {
    StoreError::Invalid(format!(
        "the database is sealed with secrets key {recorded}, not with the key given ({given}); give the registry \
         the key file it was sealed with (--secrets-key), or, if `depot admin rotate-key` was interrupted, run it \
         again to finish"
    ))
}

/// A stage's variables as stored: sealed (or, written before sealing, plain JSON).
pub(crate) fn open_vars(
    tx: &Tx<'_>,
    sealer: Option<&Sealer>,
    text: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    if !Sealer::is_sealed(text) {
        return crate::rows::from_json(text);
    }
    let sealer = sealer.ok_or_else(no_key)?;
    let plain = open(tx, sealer, text)?;
    serde_json::from_slice(&plain).map_err(|e| StoreError::Invalid(format!("sealed variables: {e}")))
}

pub(crate) fn no_key() -> StoreError {
    StoreError::Invalid(
        "no secrets key: the registry seals stage environment values with --secrets-key FILE".to_owned(),
    )
}

trait ModePrivate {
    fn mode_private(&mut self) -> &mut Self;
}

impl ModePrivate for std::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_with_its_key_only_and_reveals_nothing() {
        let (sealer, _) = Sealer::generate();
        let sealed = sealer.seal(b"hunter2-secret");
        assert!(Sealer::is_sealed(&sealed) && !sealed.contains("hunter2"));
        assert_ne!(sealed, sealer.seal(b"hunter2-secret"), "a fresh nonce each time");
        assert_eq!(sealer.unseal(&sealed).unwrap(), b"hunter2-secret");
        let (other, _) = Sealer::generate();
        assert!(other.unseal(&sealed).is_err());
        let mut damaged = sealed.clone();
        damaged.pop();
        damaged.push('A');
        assert!(sealer.unseal(&damaged).is_err());
    }

    #[test]
    fn the_key_file_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secrets.key");
        let (first, created) = Sealer::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(fs_err::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let (second, created) = Sealer::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(second.unseal(&first.seal(b"x")).unwrap(), b"x");
        fs_err::write(&path, "nothex\n").unwrap();
        assert!(Sealer::load_or_create(&path).is_err());
    }
}
