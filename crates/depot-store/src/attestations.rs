//! Attestations of versions: in-toto statements kept as text (their bytes are what their digest
//! and signatures cover), with their signatures. The registry checks a statement and its
//! signatures before it calls [`Metadata::add_attestation`]; hosts decide whom to trust.

use depot_api::types::{AttestationInfo, SignatureInfo};
use depot_api::{ComponentName, Digest, VersionLabel};

use crate::db::{OptionalExtension, Tx, params};
use crate::rows::{from_json, now, parse, parse_time, resolve_version};
use crate::{Metadata, Result, StoreError};

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
            crate::rows::refuse_env_component(tx, component)?;
            resolve_version(tx, component, version)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT signatures FROM attestations WHERE component = ?1 AND version = ?2 AND digest = ?3",
                    params![component.as_str(), version.as_str(), digest.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            if existing.is_none() {
                let count: i64 = tx.query_row(
                    "SELECT COUNT(*) FROM attestations WHERE component = ?1 AND version = ?2",
                    params![component.as_str(), version.as_str()],
                    |row| row.get(0),
                )?;
                if count as usize >= depot_trust::attestation::MAX_PER_VERSION {
                    return Err(StoreError::Invalid(format!(
                        "{component} {version} has {count} attestations, the most a version keeps"
                    )));
                }
            }
            let mut all: Vec<SignatureInfo> = existing.map(|text| from_json(&text)).transpose()?.unwrap_or_default();
            for signature in signatures {
                all.retain(|s| s.fingerprint != signature.fingerprint);
                all.push(signature.clone());
            }
            let all = serde_json::to_string(&all).expect("signatures serialise");
            tx.execute(
                "INSERT INTO attestations (component, version, digest, predicate_type, statement, size, signatures, added_by, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (component, version, digest) DO UPDATE SET signatures = excluded.signatures",
                params![component.as_str(), version.as_str(), digest.as_str(), predicate_type, statement, statement.len() as i64, all, actor, now()],
            )?;
            Ok(one(tx, component, version, digest, false)?.expect("the attestation was just written"))
        })
    }

    /// One attestation of a version, with its statement.
    pub fn attestation(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        digest: &Digest,
    ) -> Result<Option<AttestationInfo>> {
        self.read(|tx| {
            resolve_version(tx, component, version)?;
            one(tx, component, version, digest, true)
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

/// The attestations of a version; with their statements' text when `statements`.
pub(crate) fn of_version(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    statements: bool,
) -> Result<Vec<AttestationInfo>> {
    select(tx, "", params![component.as_str(), version.as_str()], statements)
}

fn one(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
    statements: bool,
) -> Result<Option<AttestationInfo>> {
    let found =
        select(tx, "AND digest = ?3", params![component.as_str(), version.as_str(), digest.as_str()], statements)?;
    Ok(found.into_iter().next())
}

/// The attestations of version `?1` of component `?2` that `filter` keeps; a statement's text is
/// read only when asked for.
fn select(tx: &Tx<'_>, filter: &str, params: Vec<crate::db::Value>, statements: bool) -> Result<Vec<AttestationInfo>> {
    let text = if statements { "statement" } else { "NULL" };
    let rows = tx.rows(
        &format!(
            "SELECT digest, predicate_type, size, signatures, added_by, added_at, {text} FROM attestations
             WHERE component = ?1 AND version = ?2 {filter} ORDER BY added_at, digest"
        ),
        params,
    )?;
    let mut found = Vec::new();
    for row in rows {
        let signatures: String = row.get(3)?;
        let added_at: String = row.get(5)?;
        found.push(AttestationInfo {
            digest: parse(Digest::parse(&row.get::<_, String>(0)?))?,
            predicate_type: row.get(1)?,
            size: row.get::<_, i64>(2)? as u64,
            signatures: from_json(&signatures)?,
            added_by: row.get(4)?,
            added_at: parse_time(&added_at)?,
            statement: row.get(6)?,
        });
    }
    Ok(found)
}
