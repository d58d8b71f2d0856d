//! Attestations of versions: in-toto statements kept as text (their bytes are what their digest
//! and signatures cover), with their signatures. The registry checks a statement and its
//! signatures before it calls [`Metadata::add_attestation`]; hosts decide whom to trust.

use depot_api::types::{AttestationInfo, SignatureInfo};
use depot_api::{ComponentName, Digest, VersionLabel};

use crate::db::{OptionalExtension, Tx, params};
use crate::rows::{from_json, now, parse, parse_time, resolve_version};
use crate::{Metadata, Result};

impl Metadata {
    /// Attaches `statement` (sha256 `digest`, of `predicate_type`) to a version with
    /// `signatures`; attached again, its signatures join the ones it has (one per key).
    #[allow(clippy::too_many_arguments)]
    pub fn add_attestation(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        digest: &Digest,
        predicate_type: &str,
        statement: &str,
        signatures: &[SignatureInfo],
        actor: &str,
    ) -> Result<AttestationInfo> {
        self.transaction(|tx| {
            resolve_version(tx, component, version)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT signatures FROM attestations WHERE component = ?1 AND version = ?2 AND digest = ?3",
                    params![component.as_str(), version.as_str(), digest.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            let mut all: Vec<SignatureInfo> = existing.map(|text| from_json(&text)).transpose()?.unwrap_or_default();
            for signature in signatures {
                all.retain(|s| s.fingerprint != signature.fingerprint);
                all.push(signature.clone());
            }
            let all = serde_json::to_string(&all).expect("signatures serialise");
            tx.execute(
                "INSERT INTO attestations (component, version, digest, predicate_type, statement, signatures, added_by, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (component, version, digest) DO UPDATE SET signatures = excluded.signatures",
                params![component.as_str(), version.as_str(), digest.as_str(), predicate_type, statement, all, actor, now()],
            )?;
            let found = of_version(tx, component, version, true)?;
            Ok(found.into_iter().find(|a| &a.digest == digest).expect("the attestation was just written"))
        })
    }

    /// A version's attestations, oldest first; with their statements' text when `statements`.
    pub fn attestations(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        statements: bool,
    ) -> Result<Vec<AttestationInfo>> {
        self.read(|tx| {
            resolve_version(tx, component, version)?;
            of_version(tx, component, version, statements)
        })
    }
}

/// The attestations of a version.
pub(crate) fn of_version(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    statements: bool,
) -> Result<Vec<AttestationInfo>> {
    let rows = tx.rows(
        "SELECT digest, predicate_type, statement, signatures, added_by, added_at FROM attestations
         WHERE component = ?1 AND version = ?2 ORDER BY added_at, digest",
        params![component.as_str(), version.as_str()],
    )?;
    let mut found = Vec::new();
    for row in rows {
        let statement: String = row.get(2)?;
        let signatures: String = row.get(3)?;
        let added_at: String = row.get(5)?;
        found.push(AttestationInfo {
            digest: parse(Digest::parse(&row.get::<_, String>(0)?))?,
            predicate_type: row.get(1)?,
            size: statement.len() as u64,
            signatures: from_json(&signatures)?,
            added_by: row.get(4)?,
            added_at: parse_time(&added_at)?,
            statement: statements.then_some(statement),
        });
    }
    Ok(found)
}
