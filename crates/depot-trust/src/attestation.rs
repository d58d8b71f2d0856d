//! Attestations: in-toto statements about a version (an SBOM, SLSA provenance), stored with it
//! and signed like it. A statement binds itself to the content by its subjects' sha256 digests;
//! a signature binds the statement (by its own sha256) to the component, the version and the
//! content with [`message`], so it cannot be moved to another version, nor the statement edited.

use depot_api::{ComponentName, Digest, VersionLabel};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::{Error, Signature, Trust, Verified};

/// in-toto's statement layer, version 1 (`_type`).
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance, version 1 (`predicateType`).
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// A CycloneDX SBOM as a predicate, as cosign and the in-toto attestation registry name it.
pub const CYCLONEDX: &str = "https://cyclonedx.org/bom";
/// An SPDX document as a predicate.
pub const SPDX: &str = "https://spdx.dev/Document";

/// The SSHSIG namespace of attestation signatures: an allowed_signers line with
/// `namespaces="depot-attestation"` trusts a key (a build system's) to attest but not to release,
/// and `namespaces="depot"` the other way round; a line without `namespaces` trusts both.
pub const NAMESPACE: &str = "depot-attestation";

/// The most attestations a version keeps.
pub const MAX_PER_VERSION: usize = 32;

/// The largest statement the registry keeps (an SBOM of a large tree runs to megabytes).
pub const MAX_STATEMENT_BYTES: usize = 16 * 1024 * 1024;

/// The bytes a signature of the attestation `statement` (its sha256) of `component` `version`
/// with content `digest` covers.
pub fn message(
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
    statement: &Digest,
    predicate_type: &str,
) -> String {
    format!(
        "depot signed attestation v1\ncomponent {component}\nversion {version}\ndigest {digest}\nstatement \
         {statement}\npredicate-type {predicate_type}\n"
    )
}

/// The predicate type a short name stands for (`provenance`, `cyclonedx`, `spdx`), or the name
/// itself (a URI).
pub fn predicate_type(name: &str) -> &str {
    match name {
        "provenance" | "slsa-provenance" | "slsa" => SLSA_PROVENANCE_V1,
        "cyclonedx" | "sbom-cyclonedx" => CYCLONEDX,
        "spdx" | "sbom-spdx" => SPDX,
        other => other,
    }
}

/// What depot reads of an in-toto statement.
#[derive(Debug, Clone)]
pub struct Statement {
    pub predicate_type: String,
    /// The sha256 digests of its subjects.
    pub subjects: Vec<String>,
    /// The sha256 of the statement's bytes.
    pub digest: Digest,
}

impl Statement {
    /// Reads an in-toto statement (v1, or v0.1 as older tools write it).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        let bad = |message: String| Error::Statement(message);
        if bytes.len() > MAX_STATEMENT_BYTES {
            return Err(bad(format!("it is {} bytes, more than the {MAX_STATEMENT_BYTES} kept", bytes.len())));
        }
        let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let kind = value.get("_type").and_then(Value::as_str).unwrap_or_default();
        if kind != STATEMENT_V1 && kind != "https://in-toto.io/Statement/v0.1" {
            return Err(bad(format!("`_type` is `{kind}`, not {STATEMENT_V1}")));
        }
        let predicate_type = value.get("predicateType").and_then(Value::as_str).unwrap_or_default();
        if predicate_type.is_empty() || predicate_type.len() > 512 || predicate_type.chars().any(char::is_whitespace) {
            return Err(bad("`predicateType` must be a URI".to_owned()));
        }
        let subjects: Vec<String> = value
            .get("subject")
            .and_then(Value::as_array)
            .map(|subjects| {
                subjects
                    .iter()
                    .filter_map(|s| s.get("digest")?.get("sha256")?.as_str())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        if subjects.is_empty() {
            return Err(bad("it names no subject with a sha256 digest".to_owned()));
        }
        Ok(Statement { predicate_type: predicate_type.to_owned(), subjects, digest: sha256(bytes) })
    }

    /// Whether one of its subjects is the content `digest`.
    pub fn covers(&self, digest: &Digest) -> bool {
        self.subjects.iter().any(|s| s == digest.hex())
    }
}

/// The sha256 of `bytes`, as a digest.
pub fn sha256(bytes: &[u8]) -> Digest {
    let hex: String = Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
    Digest::from_hex(&hex).expect("64 hex digits")
}

/// The statement to attach for `document`: an in-toto statement as it is; a CycloneDX or SPDX
/// JSON document wrapped as the predicate of a statement whose subject is `name` with content
/// `digest`. Anything else is refused, saying what is taken.
pub fn statement_for(document: &[u8], name: &str, digest: &Digest) -> Result<Vec<u8>, Error> {
    let value: Value = serde_json::from_slice(document).map_err(|e| {
        Error::Statement(format!("not JSON ({e}): attach CycloneDX or SPDX JSON, or an in-toto statement"))
    })?;
    if value.get("_type").is_some() {
        Statement::parse(document)?;
        return Ok(document.to_vec());
    }
    let predicate_type = if value.get("bomFormat").and_then(Value::as_str) == Some("CycloneDX") {
        CYCLONEDX
    } else if value.get("spdxVersion").and_then(Value::as_str).is_some_and(|v| v.starts_with("SPDX-")) {
        SPDX
    } else {
        return Err(Error::Statement(
            "neither CycloneDX JSON (`bomFormat`), SPDX JSON (`spdxVersion`) nor an in-toto statement (`_type`)"
                .to_owned(),
        ));
    };
    let statement = json!({
        "_type": STATEMENT_V1,
        "subject": [{ "name": name, "digest": { "sha256": digest.hex() } }],
        "predicateType": predicate_type,
        "predicate": value,
    });
    Ok(serde_json::to_vec_pretty(&statement).expect("JSON serialises"))
}

impl Trust {
    /// Whether `attestation` (with the statement text the registry served) is of type
    /// `predicate_type` about the content `digest`, signed over `component` `version` by a
    /// trusted key: the key that did, or why not.
    pub fn verify_attestation(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        digest: &Digest,
        attestation: &depot_api::types::AttestationInfo,
        predicate_type: &str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Verified, String> {
        let statement = attestation.statement.as_deref().ok_or("the registry sent no statement")?;
        let parsed = Statement::parse(statement.as_bytes()).map_err(|e| e.to_string())?;
        if parsed.predicate_type != predicate_type {
            return Err(format!("it is a {}, not a {predicate_type}", parsed.predicate_type));
        }
        if !parsed.covers(digest) {
            return Err(format!("its subjects do not include {digest}"));
        }
        let message = message(component, version, digest, &parsed.digest, predicate_type);
        let signatures: Vec<String> = attestation.signatures.iter().map(|s| s.signature.clone()).collect();
        if signatures.is_empty() {
            return Err("it has no signature".to_owned());
        }
        let (mut verified, reasons) = self.verify_all_in(NAMESPACE, &message, &signatures, now);
        match verified.is_empty() {
            false => Ok(verified.swap_remove(0)),
            true => Err(reasons.join("; ")),
        }
    }
}

/// Signs attestation `statement` of `component` `version` (content `digest`) with the key at
/// `key`, as [`crate::sign_with`] does, in the namespace [`NAMESPACE`].
pub fn sign_statement(
    key: &std::path::Path,
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
    statement: &[u8],
) -> Result<Signature, Error> {
    let parsed = Statement::parse(statement)?;
    crate::sign_with_in(key, NAMESPACE, &message(component, version, digest, &parsed.digest, &parsed.predicate_type))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AllowedSigners;
    use chrono::Utc;
    use depot_api::types::{AttestationInfo, SignatureInfo};
    use ssh_key::PrivateKey;

    fn key(seed: u8) -> PrivateKey {
        PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]))
    }

    fn names() -> (ComponentName, VersionLabel) {
        (ComponentName::parse("web").unwrap(), VersionLabel::parse("1.0.0").unwrap())
    }

    /// `statement`, with `signatures` in PEM, as the registry serves it.
    fn served(statement: &[u8], signatures: &[String]) -> AttestationInfo {
        AttestationInfo {
            digest: sha256(statement),
            predicate_type: Statement::parse(statement).map(|s| s.predicate_type).unwrap_or_default(),
            size: statement.len() as u64,
            signatures: signatures
                .iter()
                .map(|pem| SignatureInfo {
                    fingerprint: String::new(),
                    key_type: String::new(),
                    signature: pem.clone(),
                    added_by: "ci".to_owned(),
                    added_at: Utc::now(),
                    signer: None,
                })
                .collect(),
            added_by: "ci".to_owned(),
            added_at: Utc::now(),
            statement: Some(String::from_utf8(statement.to_vec()).unwrap()),
        }
    }

    #[test]
    fn a_host_takes_an_attestation_only_as_signed_over_that_statement_version_and_content() {
        let (web, v1) = names();
        let alice = key(1);
        let line = |options: &str| format!("alice {options} {}", alice.public_key().to_openssh().unwrap());
        let trust = Trust::new(AllowedSigners::parse(&line(""), "allowed").unwrap(), Vec::new());
        let provenance = br#"{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"web","digest":{"sha256":"0101010101010101010101010101010101010101010101010101010101010101"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}"#;
        let statement = Statement::parse(provenance).unwrap();
        let sign = |version: &VersionLabel, digest: &Digest, namespace: &str| {
            let text = message(&web, version, digest, &statement.digest, SLSA_PROVENANCE_V1);
            crate::sign_in(&alice, namespace, &text).unwrap().pem().to_owned()
        };
        let good = [sign(&v1, &digest(1), NAMESPACE)];
        let check = |info: &AttestationInfo, version: &VersionLabel, content: &Digest, kind: &str| {
            trust.verify_attestation(&web, version, content, info, kind, Utc::now())
        };
        assert_eq!(check(&served(provenance, &good), &v1, &digest(1), SLSA_PROVENANCE_V1).unwrap().signer, "alice");

        // Another type asked for; other content; another version (the signature names 1.0.0).
        let why = check(&served(provenance, &good), &v1, &digest(1), CYCLONEDX).unwrap_err();
        assert!(why.contains("not a https://cyclonedx.org/bom"), "{why}");
        let why = check(&served(provenance, &good), &v1, &digest(2), SLSA_PROVENANCE_V1).unwrap_err();
        assert!(why.contains("subjects do not include"), "{why}");
        let v2 = VersionLabel::parse("2.0.0").unwrap();
        let why = check(&served(provenance, &good), &v2, &digest(1), SLSA_PROVENANCE_V1).unwrap_err();
        assert!(why.contains("not over"), "replayed onto 2.0.0: {why}");
        // The statement edited under its signatures (the registry's digest is not believed).
        let edited =
            String::from_utf8(provenance.to_vec()).unwrap().replace("\"predicate\":{}", "\"predicate\":{\"x\":1}");
        let mut info = served(edited.as_bytes(), &good);
        info.digest = statement.digest.clone();
        let why = check(&info, &v1, &digest(1), SLSA_PROVENANCE_V1).unwrap_err();
        assert!(why.contains("not over"), "edited: {why}");
        // A version's signature (namespace depot) does not count as an attestation's.
        let version_signature = crate::sign(&alice, &crate::message(&web, &v1, &digest(1))).unwrap().pem().to_owned();
        let why = check(&served(provenance, &[version_signature]), &v1, &digest(1), SLSA_PROVENANCE_V1).unwrap_err();
        assert!(why.contains("namespace `depot`, not `depot-attestation`"), "{why}");
        // A key allowed to release but not to attest.
        let release_only =
            Trust::new(AllowedSigners::parse(&line("namespaces=\"depot\""), "allowed").unwrap(), Vec::new());
        let why = release_only
            .verify_attestation(&web, &v1, &digest(1), &served(provenance, &good), SLSA_PROVENANCE_V1, Utc::now())
            .unwrap_err();
        assert!(why.contains("namespaces depot"), "{why}");
    }

    fn digest(n: u8) -> Digest {
        Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
    }

    #[test]
    fn sboms_are_wrapped_statements_kept_and_anything_else_refused() {
        let cyclonedx = br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#;
        let wrapped = statement_for(cyclonedx, "web@1.0.0", &digest(1)).unwrap();
        let statement = Statement::parse(&wrapped).unwrap();
        assert_eq!(statement.predicate_type, CYCLONEDX);
        assert!(statement.covers(&digest(1)) && !statement.covers(&digest(2)));
        let spdx = br#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT"}"#;
        assert_eq!(Statement::parse(&statement_for(spdx, "x", &digest(1)).unwrap()).unwrap().predicate_type, SPDX);
        // A statement is kept byte for byte (its digest is what signatures cover).
        assert_eq!(statement_for(&wrapped, "other", &digest(9)).unwrap(), wrapped);
        for refused in [&b"{}"[..], b"not json", br#"{"_type":"x","subject":[]}"#] {
            assert!(statement_for(refused, "x", &digest(1)).is_err());
        }
        let no_subject = br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"x","subject":[]}"#;
        assert!(Statement::parse(no_subject).unwrap_err().to_string().contains("no subject"));
    }
}
