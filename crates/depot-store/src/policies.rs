//! Signature policies: a component whose policy requires N signatures takes a new version only
//! with N valid signatures by different keys its policy trusts, and a configuration write that
//! brings in one of its versions (created, set, bumped, promoted) only when that version has
//! them, under the policy as it is now. Moves back to what ran before (rollbacks, channels that
//! step back on a deprecation) are not held: a policy never stands in the way of undoing.
//! Hosts never rely on this; they check signatures themselves.

use chrono::Utc;
use depot_api::pipeline::EventKind;
use depot_api::types::{Layer, SignaturePolicy, TrustedKey};
use depot_api::{ComponentName, Digest, VersionLabel};
use depot_trust::{AllowedSigners, Trust};

use crate::db::{OptionalExtension, Tx, params};
use crate::rows::{now, parse_time, record_event};
use crate::{Metadata, Result, StoreError};

impl Metadata {
    /// Sets `component`'s policy and returns it; or, with `None`, removes it and returns the one
    /// removed. Each change has a line in the history.
    pub fn set_policy(
        &self,
        component: &ComponentName,
        policy: Option<(u32, &str)>,
        actor: &str,
    ) -> Result<Option<SignaturePolicy>> {
        if let Some((required, text)) = policy {
            let keys = trusted_keys(text)?;
            if !(1..=100).contains(&required) || keys.len() < required as usize {
                return Err(StoreError::Invalid(format!(
                    "a policy requiring {required} signatures needs from 1 to 100, and as many distinct keys that may \
                     sign in namespace depot ({} given)",
                    keys.len()
                )));
            }
        }
        self.transaction(|tx| {
            crate::rows::refuse_env_component(tx, component)?;
            let summary = match policy {
                Some((required, text)) => {
                    tx.execute(
                        "INSERT INTO policies (component, require_signatures, allowed_signers, updated_by, updated_at)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (component) DO UPDATE SET require_signatures = excluded.require_signatures,
                         allowed_signers = excluded.allowed_signers, updated_by = excluded.updated_by,
                         updated_at = excluded.updated_at",
                        params![component.as_str(), required as i64, text, actor, now()],
                    )?;
                    let keys = trusted_keys(text)?.len();
                    format!("policy of {component}: {required} signature(s) required, from {keys} trusted key(s)")
                }
                None => {
                    let Some(old) = policy_of(tx, component)? else { return Ok(None) };
                    tx.execute("DELETE FROM policies WHERE component = ?1", [component.as_str()])?;
                    let summary = format!("policy of {component} removed: no signature required");
                    record_event(tx, EventKind::Policy, actor, Some(component), None, None, &summary)?;
                    return Ok(Some(old));
                }
            };
            record_event(tx, EventKind::Policy, actor, Some(component), None, None, &summary)?;
            policy_of(tx, component)
        })
    }

    /// `component`'s policy, if it has one.
    pub fn policy(&self, component: &ComponentName) -> Result<Option<SignaturePolicy>> {
        self.read(|tx| policy_of(tx, component))
    }
}

/// Each key of an allowed_signers text that may sign depot's signatures, once (a key listed
/// twice, a certificate authority or a key limited to other namespaces would count for nothing).
fn trusted_keys(text: &str) -> Result<Vec<TrustedKey>> {
    let signers =
        AllowedSigners::parse(text, "the policy's allowed_signers").map_err(|e| StoreError::Invalid(e.to_string()))?;
    let mut keys: Vec<TrustedKey> = Vec::new();
    for signer in signers.signers().iter().filter(|s| s.signs_in(depot_trust::NAMESPACE)) {
        let fingerprint = signer.fingerprint();
        if !keys.iter().any(|k| k.fingerprint == fingerprint) {
            keys.push(TrustedKey { principals: signer.principals.clone(), fingerprint });
        }
    }
    Ok(keys)
}

pub(crate) fn policy_of(tx: &Tx<'_>, component: &ComponentName) -> Result<Option<SignaturePolicy>> {
    let row = tx
        .query_row(
            "SELECT require_signatures, allowed_signers, updated_by, updated_at FROM policies WHERE component = ?1",
            [component.as_str()],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((required, allowed_signers, updated_by, updated_at)) = row else { return Ok(None) };
    Ok(Some(SignaturePolicy {
        component: component.clone(),
        require_signatures: required as u32,
        keys: trusted_keys(&allowed_signers)?,
        allowed_signers,
        updated_by,
        updated_at: parse_time(&updated_at)?,
    }))
}

/// Refuses `component` `version` (content `digest`) unless it has the signatures its policy
/// requires.
pub(crate) fn require_signed(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
) -> Result<()> {
    let Some(policy) = policy_of(tx, component)? else { return Ok(()) };
    let signers = AllowedSigners::parse(&policy.allowed_signers, "the policy's allowed_signers")
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
    let signatures: Vec<String> =
        crate::signatures::of_version(tx, component, version)?.into_iter().map(|s| s.signature).collect();
    let message = depot_trust::message(component, version, digest);
    let (valid, reasons) = Trust::new(signers, Vec::new()).verify_all(&message, &signatures, Utc::now());
    if valid.len() >= policy.require_signatures as usize {
        return Ok(());
    }
    let signed_by = match valid.as_slice() {
        [] => String::new(),
        valid => format!(" (by {})", valid.iter().map(|v| v.signer.as_str()).collect::<Vec<_>>().join(", ")),
    };
    let others = match reasons.as_slice() {
        [] => String::new(),
        reasons => format!("; {}", reasons.join("; ")),
    };
    Err(StoreError::Unsigned {
        component: component.clone(),
        version: version.clone(),
        message: format!(
            "{component} {version} has {} valid signature(s){signed_by} from keys its policy trusts, of the {} it \
             requires{others}",
            valid.len(),
            policy.require_signatures
        ),
    })
}

/// Refuses a configuration write of `kind` that brings in (against `before`) a version without
/// the signatures its component's policy requires. Going back is not held (see the module's
/// documentation): a rollback, and a channel move onto a version pushed before the one the
/// configuration had; every other write, channel moves forward included, is.
pub(crate) fn require_signed_layers(tx: &Tx<'_>, kind: EventKind, before: &[Layer], layers: &[Layer]) -> Result<()> {
    if matches!(kind, EventKind::Rollback | EventKind::Env) {
        return Ok(());
    }
    for layer in layers {
        let had = before.iter().find(|b| b.component == layer.component);
        if had.is_some_and(|b| b.version == layer.version) {
            continue;
        }
        if kind == EventKind::Channel
            && let Some(had) = had
            && pushed_order(tx, &layer.component, &layer.version)? < pushed_order(tx, &had.component, &had.version)?
        {
            continue;
        }
        require_signed(tx, &layer.component, &layer.version, &layer.digest)?;
    }
    Ok(())
}

/// Where a version stands in its component's push order (0 if it is gone).
fn pushed_order(tx: &Tx<'_>, component: &ComponentName, version: &VersionLabel) -> Result<i64> {
    let seq: Option<i64> = tx
        .query_row(
            "SELECT seq FROM versions WHERE component = ?1 AND version = ?2",
            params![component.as_str(), version.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0))
}
