//! Who a host trusts to say what it may run. A version is signed with an SSH key in OpenSSH's
//! SSHSIG format, namespace `depot`, over [`message`]: the component, the version and the blob
//! digest, so a signature cannot be moved to another name, version or content. Hosts check
//! signatures against an `allowed_signers` file (the format git and `ssh-keygen -Y verify` read,
//! with `namespaces`, `valid-after` and `valid-before`) and a file of revoked keys ([`Trust`]).
//! `ssh-keygen -Y verify -n depot` accepts what depot signs, and depot accepts what
//! `ssh-keygen -Y sign -n depot` signs over the same message.

mod allowed;
pub mod attestation;
pub mod keys;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use chrono::{DateTime, Utc};
use depot_api::{ComponentName, Digest, VersionLabel};
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

pub use allowed::{AllowedSigners, Signer};

/// The SSHSIG namespace of depot's signatures (`ssh-keygen -Y sign -n depot`).
pub const NAMESPACE: &str = "depot";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not an SSH signature (-----BEGIN SSH SIGNATURE-----): {0}")]
    NotASignature(String),
    #[error("the signature is for namespace `{0}`, not `{1}` (sign with `ssh-keygen -Y sign -n {1}`)")]
    Namespace(String, &'static str),
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("{path} line {line}: {message}")]
    Line { path: String, line: usize, message: String },
    #[error("the private key {0} is encrypted: add it to ssh-agent and give its public key (.pub) instead")]
    Encrypted(String),
    #[error("ssh-keygen could not sign with {key}: {message}")]
    SshKeygen { key: String, message: String },
    #[error("cannot sign: {0}")]
    Sign(String),
    #[error("not an attestation: {0}")]
    Statement(String),
}

/// The bytes a signature of `component` `version` with content `digest` covers.
pub fn message(component: &ComponentName, version: &VersionLabel, digest: &Digest) -> String {
    format!("depot signed version v1\ncomponent {component}\nversion {version}\ndigest {digest}\n")
}

/// One SSHSIG signature, in the namespace `depot`, with its PEM text.
#[derive(Debug, Clone)]
pub struct Signature {
    sig: SshSig,
    pem: String,
}

impl Signature {
    /// Reads the PEM text (`-----BEGIN SSH SIGNATURE-----`); the namespace must be `depot`.
    pub fn parse(pem: &str) -> Result<Self, Error> {
        Signature::parse_in(pem, NAMESPACE)
    }

    /// Reads the PEM text of a signature in `namespace`.
    pub fn parse_in(pem: &str, namespace: &'static str) -> Result<Self, Error> {
        let sig = SshSig::from_pem(pem.trim()).map_err(|e| Error::NotASignature(e.to_string()))?;
        if sig.namespace() != namespace {
            return Err(Error::Namespace(sig.namespace().to_owned(), namespace));
        }
        Ok(Signature { pem: sig.to_pem(LineEnding::LF).map_err(|e| Error::NotASignature(e.to_string()))?, sig })
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The signing key's `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.sig.public_key().fingerprint(HashAlg::Sha256).to_string()
    }

    /// The signing key's type (`ssh-ed25519`).
    pub fn key_type(&self) -> String {
        self.sig.public_key().algorithm().to_string()
    }

    fn public_key(&self) -> PublicKey {
        PublicKey::from(self.sig.public_key().clone())
    }

    /// Whether the signature is valid over `message` with the key it names (which says nothing
    /// of whether that key is trusted).
    pub fn signs(&self, message: &str) -> bool {
        self.public_key().verify(self.sig.namespace(), message.as_bytes(), &self.sig).is_ok()
    }
}

/// Signs `message` with the key at `path`: an unencrypted OpenSSH private key, or a public key
/// (`.pub`) whose private half ssh-agent holds, through OpenSSH's own `ssh-keygen -Y sign`.
pub fn sign_with(path: &Path, message: &str) -> Result<Signature, Error> {
    sign_with_in(path, NAMESPACE, message)
}

/// [`sign_with`] in `namespace`.
pub fn sign_with_in(path: &Path, namespace: &'static str, message: &str) -> Result<Signature, Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })?;
    if text.trim_start().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let key = PrivateKey::from_openssh(&text)
            .map_err(|e| Error::File { path: path.display().to_string(), message: e.to_string() })?;
        if key.is_encrypted() {
            return Err(Error::Encrypted(path.display().to_string()));
        }
        return sign_in(&key, namespace, message);
    }
    PublicKey::from_openssh(text.trim()).map_err(|e| Error::File {
        path: path.display().to_string(),
        message: format!("neither an OpenSSH private key nor a public key: {e}"),
    })?;
    sign_with_agent(path, namespace, message)
}

/// Signs with an in-memory key (SHA-512, as `ssh-keygen` does).
pub fn sign(key: &PrivateKey, message: &str) -> Result<Signature, Error> {
    sign_in(key, NAMESPACE, message)
}

/// [`sign`] in `namespace`.
pub fn sign_in(key: &PrivateKey, namespace: &str, message: &str) -> Result<Signature, Error> {
    let sig = key.sign(namespace, HashAlg::Sha512, message.as_bytes()).map_err(|e| Error::Sign(e.to_string()))?;
    let pem = sig.to_pem(LineEnding::LF).map_err(|e| Error::Sign(e.to_string()))?;
    Ok(Signature { sig, pem })
}

/// `ssh-keygen -Y sign -n depot -f KEY.pub`, the message on stdin: ssh-agent signs.
fn sign_with_agent(public: &Path, namespace: &'static str, message: &str) -> Result<Signature, Error> {
    let failed = |message: String| Error::SshKeygen { key: public.display().to_string(), message };
    let mut child = Command::new("ssh-keygen")
        .args(["-q", "-Y", "sign", "-n", namespace, "-f"])
        .arg(public)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(format!("cannot run ssh-keygen: {e}")))?;
    child.stdin.take().expect("piped").write_all(message.as_bytes()).map_err(|e| failed(e.to_string()))?;
    let output = child.wait_with_output().map_err(|e| failed(e.to_string()))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    let signature = Signature::parse_in(&String::from_utf8_lossy(&output.stdout), namespace)?;
    // What came back must be this key's signature of this message (ssh-keygen may fall back
    // to another key, or read a passphrase from the message).
    let key = PublicKey::read_openssh_file(public).map_err(|e| failed(e.to_string()))?;
    if signature.sig.public_key() != key.key_data() || !signature.signs(message) {
        return Err(failed("ssh-keygen returned a signature by another key, or of another text".to_owned()));
    }
    Ok(signature)
}

/// What a host trusts: the keys of an allowed_signers file, less the revoked ones.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    signers: AllowedSigners,
    revoked: Vec<PublicKey>,
}

/// A signature a trusted key made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The principals of the allowed_signers line that holds the key (the signer's name).
    pub signer: String,
    pub fingerprint: String,
}

impl Trust {
    pub fn new(signers: AllowedSigners, revoked: Vec<PublicKey>) -> Self {
        Trust { signers, revoked }
    }

    /// Reads the allowed_signers file at `path` and the revoked keys at `revoked` (one public key
    /// per line, `#` comments). Each must be writable by its owner alone: a trust file anyone
    /// may change trusts anyone.
    pub fn load(path: &Path, revoked: Option<&Path>) -> Result<Self, Error> {
        let signers = AllowedSigners::parse(&read_private(path)?, &path.display().to_string())?;
        let revoked = match revoked {
            Some(path) => parse_keys(&read_private(path)?, &path.display().to_string())?,
            None => Vec::new(),
        };
        Ok(Trust { signers, revoked })
    }

    /// The first of `signatures` that a trusted key, not revoked and valid at `now`, made over
    /// `message`; otherwise why none holds, one reason per signature.
    pub fn verify(&self, message: &str, signatures: &[String], now: DateTime<Utc>) -> Result<Verified, String> {
        if signatures.is_empty() {
            return Err("it has no signature".to_owned());
        }
        let (mut verified, reasons) = self.verify_all(message, signatures, now);
        match verified.is_empty() {
            false => Ok(verified.swap_remove(0)),
            true => Err(reasons.join("; ")),
        }
    }

    /// Every one of `signatures` that a trusted key, not revoked and valid at `now`, made over
    /// `message`, one per key (a key counts once however often it signed), and why each other
    /// signature does not count.
    pub fn verify_all(&self, message: &str, signatures: &[String], now: DateTime<Utc>) -> (Vec<Verified>, Vec<String>) {
        self.verify_all_in(NAMESPACE, message, signatures, now)
    }

    /// [`Trust::verify_all`] for signatures in `namespace`, by keys allowed to sign in it.
    pub fn verify_all_in(
        &self,
        namespace: &'static str,
        message: &str,
        signatures: &[String],
        now: DateTime<Utc>,
    ) -> (Vec<Verified>, Vec<String>) {
        let (mut verified, mut reasons): (Vec<Verified>, Vec<String>) = (Vec::new(), Vec::new());
        for text in signatures {
            match self.check(namespace, message, text, now) {
                Ok(found) if verified.iter().any(|v| v.fingerprint == found.fingerprint) => {}
                Ok(found) => verified.push(found),
                Err(reason) => reasons.push(reason),
            }
        }
        (verified, reasons)
    }

    fn check(
        &self,
        namespace: &'static str,
        message: &str,
        text: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, String> {
        let signature = Signature::parse_in(text, namespace).map_err(|e| e.to_string())?;
        let fingerprint = signature.fingerprint();
        let key = signature.sig.public_key();
        if self.revoked.iter().any(|revoked| revoked.key_data() == key) {
            return Err(format!("{fingerprint} is revoked"));
        }
        let signers: Vec<&Signer> = self.signers.for_key(key).collect();
        if signers.is_empty() {
            return Err(format!("{fingerprint} is not a trusted key"));
        }
        if !signature.signs(message) {
            return Err(format!("{fingerprint}'s signature is not over this component, version and digest"));
        }
        if let Some(signer) = signers.iter().find(|s| s.allows(namespace, now).is_ok()) {
            return Ok(Verified { signer: signer.principals.clone(), fingerprint });
        }
        let why: Vec<String> = signers.iter().filter_map(|s| s.allows(namespace, now).err()).collect();
        Err(format!("{fingerprint}: {}", why.join(", ")))
    }
}

/// A file's text, refused when anyone but its owner (root or this user) may change it: the
/// file (a symlink is followed) and the directory that holds it must be owned by root or by
/// this user, and not writable by group or others.
fn read_private(path: &Path) -> Result<String, Error> {
    use std::os::unix::fs::MetadataExt;
    let file = |message: String| Error::File { path: path.display().to_string(), message };
    let real = std::fs::canonicalize(path).map_err(|e| file(e.to_string()))?;
    let me = rustix::process::geteuid().as_raw();
    let mut checked = vec![real.clone()];
    checked.extend(real.parent().map(Path::to_path_buf));
    for each in &checked {
        let metadata = std::fs::metadata(each).map_err(|e| file(e.to_string()))?;
        if metadata.uid() != 0 && metadata.uid() != me {
            return Err(file(format!(
                "{} belongs to user {}, neither root nor this user: a trust file another user can change trusts anyone",
                each.display(),
                metadata.uid()
            )));
        }
        if metadata.mode() & 0o022 != 0 {
            return Err(file(format!(
                "others may write {} (mode {:o}): a trust file anyone can change trusts anyone; chmod go-w it",
                each.display(),
                metadata.mode() & 0o7777
            )));
        }
    }
    std::fs::read_to_string(&real).map_err(|e| file(e.to_string()))
}

/// Public keys, one per line (`ssh-ed25519 AAAA… comment`); blank lines and `#` comments allowed.
pub fn parse_keys(text: &str, path: &str) -> Result<Vec<PublicKey>, Error> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = PublicKey::from_openssh(line).map_err(|e| Error::Line {
            path: path.to_owned(),
            line: index + 1,
            message: format!("not a public key: {e}"),
        })?;
        keys.push(key);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PrivateKey {
        let keypair = ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]);
        PrivateKey::new(ssh_key::private::KeypairData::Ed25519(keypair), format!("key{seed}")).unwrap()
    }

    fn names(component: &str, version: &str, n: u8) -> String {
        message(
            &ComponentName::parse(component).unwrap(),
            &VersionLabel::parse(version).unwrap(),
            &Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap(),
        )
    }

    fn trust(lines: &str, revoked: Vec<PublicKey>) -> Trust {
        Trust::new(AllowedSigners::parse(lines, "allowed_signers").unwrap(), revoked)
    }

    fn line(principals: &str, options: &str, key: &PrivateKey) -> String {
        format!("{principals} {options} {}\n", key.public_key().to_openssh().unwrap())
    }

    #[test]
    fn a_trusted_key_verifies_and_nothing_else_does() {
        let (alice, mallory) = (key(1), key(2));
        let message = names("web", "1.0.0", 1);
        let signed = sign(&alice, &message).unwrap();
        let forged = sign(&mallory, &message).unwrap();
        let trust = trust(&line("alice@example.com", "", &alice), Vec::new());
        let now = Utc::now();
        let verified = trust.verify(&message, &[signed.pem().to_owned()], now).unwrap();
        assert_eq!(verified.signer, "alice@example.com");
        assert_eq!(verified.fingerprint, alice.public_key().fingerprint(HashAlg::Sha256).to_string());

        let why = trust.verify(&message, &[forged.pem().to_owned()], now).unwrap_err();
        assert!(why.contains("is not a trusted key"), "{why}");
        let why = trust.verify(&names("web", "1.0.1", 1), &[signed.pem().to_owned()], now).unwrap_err();
        assert!(why.contains("not over this component, version and digest"), "replayed onto 1.0.1: {why}");
        let why = trust.verify(&names("web", "1.0.0", 2), &[signed.pem().to_owned()], now).unwrap_err();
        assert!(why.contains("not over this"), "another digest: {why}");
        assert_eq!(trust.verify(&message, &[], now).unwrap_err(), "it has no signature");
        // Several signatures: one good one is enough.
        assert!(trust.verify(&message, &[forged.pem().to_owned(), signed.pem().to_owned()], now).is_ok());
        // Counting them, a key counts once however often it signed.
        let again = sign(&alice, &message).unwrap();
        let both = Trust::new(
            AllowedSigners::parse(&(line("alice", "", &alice) + &line("bob", "", &key(3))), "allowed_signers").unwrap(),
            Vec::new(),
        );
        let (valid, reasons) =
            both.verify_all(&message, &[signed.pem().to_owned(), again.pem().to_owned(), forged.pem().to_owned()], now);
        assert_eq!(valid.len(), 1, "alice once");
        assert_eq!(reasons.len(), 1, "mallory's: {reasons:?}");
        let bob = sign(&key(3), &message).unwrap();
        let (valid, _) = both.verify_all(&message, &[signed.pem().to_owned(), bob.pem().to_owned()], now);
        assert_eq!(valid.iter().map(|v| v.signer.as_str()).collect::<Vec<_>>(), ["alice", "bob"]);
    }

    #[test]
    fn namespaces_validity_and_revocation_hold() {
        let alice = key(1);
        let message = names("web", "1.0.0", 1);
        let signed = [sign(&alice, &message).unwrap().pem().to_owned()];
        let now = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").unwrap().with_timezone(&Utc);
        let only_git = trust(&line("alice", "namespaces=\"git\"", &alice), Vec::new());
        assert!(only_git.verify(&message, &signed, now).unwrap_err().contains("namespace"));
        let both = trust(&line("alice", "namespaces=\"git,depot\"", &alice), Vec::new());
        assert!(both.verify(&message, &signed, now).is_ok());
        let expired = trust(&line("alice", "valid-before=\"20260101Z\"", &alice), Vec::new());
        assert!(expired.verify(&message, &signed, now).unwrap_err().contains("expired"));
        let later = trust(&line("alice", "valid-after=\"20270101000000Z\"", &alice), Vec::new());
        assert!(later.verify(&message, &signed, now).unwrap_err().contains("not valid before"));
        let window = trust(&line("alice", "valid-after=\"20260101Z\",valid-before=\"20270101Z\"", &alice), Vec::new());
        assert!(window.verify(&message, &signed, now).is_ok());
        // A rotation: the old key's line expired, a new line for the same key is current.
        let rotated = format!(
            "{}{}",
            line("alice", "valid-before=\"20250101Z\"", &alice),
            line("alice", "valid-after=\"20250101Z\"", &alice)
        );
        assert!(trust(&rotated, Vec::new()).verify(&message, &signed, now).is_ok());
        let revoked = trust(&line("alice", "", &alice), vec![alice.public_key().clone()]);
        assert!(revoked.verify(&message, &signed, now).unwrap_err().contains("is revoked"));
    }

    #[test]
    fn a_signature_of_another_namespace_is_refused() {
        let alice = key(1);
        let sig = alice.sign("git", HashAlg::Sha512, b"x").unwrap().to_pem(LineEnding::LF).unwrap();
        assert!(matches!(Signature::parse(&sig), Err(Error::Namespace(ns, _)) if ns == "git"));
        assert!(matches!(Signature::parse("hello"), Err(Error::NotASignature(_))));
    }
}
