//! Signatures attached to versions: the PEM text of each, one per key. The registry checks a
//! signature's validity before it calls [`Metadata::add_signature`]; hosts decide whom to trust.

use depot_api::types::{BlobSignatures, SignatureInfo, VersionInfo};
use depot_api::{ComponentName, Digest, VersionLabel};

use crate::db::{Tx, params};
use crate::rows::{now, parse, parse_time, resolve_version};
use crate::{Metadata, Result};

impl Metadata {
    /// Attaches a signature to a version (replacing the one of the same key), and returns the
    /// version with all its signatures.
    pub fn add_signature(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        signature: &SignatureInfo,
    ) -> Result<VersionInfo> {
        self.transaction(|tx| {
            resolve_version(tx, component, version)?;
            insert(tx, component, version, signature)?;
            let mut info = [resolve_version(tx, component, version)?];
            attach(tx, &mut info)?;
            let [info] = info;
            Ok(info)
        })
    }

    /// The signatures of every version whose content is `digest`.
    pub fn blob_signatures(&self, digest: &Digest) -> Result<Vec<BlobSignatures>> {
        self.read(|tx| {
            let mut statement =
                tx.prepare("SELECT component, version FROM versions WHERE digest = ?1 ORDER BY component, version")?;
            let rows = statement
                .query_map([digest.as_str()], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
            let mut found = Vec::new();
            for row in rows {
                let (component, version) = row?;
                let (component, version) =
                    (parse(ComponentName::parse(&component))?, parse(VersionLabel::parse(&version))?);
                let signatures = of_version(tx, &component, &version)?;
                let attestations = crate::attestations::of_version(tx, &component, &version, false)?;
                found.push(BlobSignatures { component, version, signatures, attestations });
            }
            Ok(found)
        })
    }
}

/// Attaches `signature` to a version (replacing the one of the same key).
pub(crate) fn insert(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    signature: &SignatureInfo,
) -> Result<()> {
    tx.execute(
        "INSERT INTO signatures (component, version, fingerprint, key_type, signature, added_by, added_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (component, version, fingerprint) DO UPDATE SET key_type = excluded.key_type,
         signature = excluded.signature, added_by = excluded.added_by, added_at = excluded.added_at",
        params![
            component.as_str(),
            version.as_str(),
            signature.fingerprint,
            signature.key_type,
            signature.signature,
            signature.added_by,
            now()
        ],
    )?;
    Ok(())
}

/// Fills in each version's signatures.
pub(crate) fn attach(tx: &Tx<'_>, versions: &mut [VersionInfo]) -> Result<()> {
    for info in versions {
        info.signatures = of_version(tx, &info.component, &info.version)?;
    }
    Ok(())
}

pub(crate) fn of_version(tx: &Tx<'_>, component: &ComponentName, version: &VersionLabel) -> Result<Vec<SignatureInfo>> {
    let mut statement = tx.prepare(
        "SELECT fingerprint, key_type, signature, added_by, added_at FROM signatures
         WHERE component = ?1 AND version = ?2 ORDER BY added_at, fingerprint",
    )?;
    let rows = statement.query_map(params![component.as_str(), version.as_str()], |row| {
        Ok((
            row.get::<_, String>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, String>(3)?,
            row.get::<_, String>(4)?,
        ))
    })?;
    let mut signatures = Vec::new();
    for row in rows {
        let (fingerprint, key_type, signature, added_by, added_at) = row?;
        signatures.push(SignatureInfo {
            fingerprint,
            key_type,
            signature,
            added_by,
            added_at: parse_time(&added_at)?,
            signer: None,
        });
    }
    if let Some(policy) = crate::policies::policy_of(tx, component)? {
        for signature in &mut signatures {
            let key = policy.keys.iter().find(|k| k.fingerprint == signature.fingerprint);
            signature.signer = key.map(|k| k.principals.clone());
        }
    }
    Ok(signatures)
}
