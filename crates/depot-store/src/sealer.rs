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

use crate::{Result, StoreError};

/// What every sealed text starts with.
const PREFIX: &str = "sealed:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;

/// The key that seals and unseals.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
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
        Sealer { cipher: XChaCha20Poly1305::new(Key::from_slice(key)) }
    }

    /// Reads the key file at `path` (64 hex digits), creating it (mode 0600) when it does not
    /// exist. Returns whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool)> {
        let bad = |message: String| StoreError::Invalid(format!("secrets key {}: {message}", path.display()));
        match fs_err::read_to_string(path) {
            Ok(text) => {
                let text = text.trim();
                let bytes: Vec<u8> = (0..text.len())
                    .step_by(2)
                    .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("expected 64 hex digits".to_owned()))?;
                let key: [u8; KEY_BYTES] =
                    bytes.try_into().map_err(|_| bad("expected 64 hex digits (32 bytes)".to_owned()))?;
                Ok((Sealer::from_key(&key), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
                    fs_err::create_dir_all(parent).map_err(|e| bad(e.to_string()))?;
                }
                let (sealer, key) = Sealer::generate();
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode_private()
                    .open(path)
                    .map_err(|e| bad(e.to_string()))?;
                file.write_all(format!("{hex}\n").as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| bad(e.to_string()))?;
                Ok((sealer, true))
            }
            Err(e) => Err(bad(e.to_string())),
        }
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

/// A stage's variables as stored: sealed (or, written before sealing, plain JSON).
pub(crate) fn open_vars(sealer: Option<&Sealer>, text: &str) -> Result<std::collections::BTreeMap<String, String>> {
    if !Sealer::is_sealed(text) {
        return crate::rows::from_json(text);
    }
    let sealer = sealer.ok_or_else(no_key)?;
    let plain = sealer.unseal(text)?;
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
