//! Signatures of versions: attached once checked valid over the version's component, version
//! and digest with the key they name, and read by the hosts that decide whether they trust it.

use chrono::Utc;
use depot_api::types::{
    AddAttestation, AttestationInfo, BlobSignatures, SetPolicy, SignatureInfo, SignaturePolicy, VersionInfo,
};
use depot_api::{ComponentName, Digest, VersionLabel};

use crate::{Caller, Error, Need, Registry, Result};

impl Registry {
    /// Attaches an SSHSIG signature (namespace `depot`) to a version. It must be valid over
    /// [`depot_trust::message`] of this version with the key it names: a signature of another
    /// name, version or content is refused here, and would be by every host anyway.
    pub async fn add_signature(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
        pem: &str,
    ) -> Result<VersionInfo> {
        caller.require(Need::Operator)?;
        let info = self.version(caller, component.clone(), version.clone()).await?;
        let record = checked(caller, &component, &version, &info.digest, pem)?;
        self.store(move |metadata| metadata.add_signature(&component, &version, &record)).await
    }

    /// `component`'s signature policy, if it has one.
    pub async fn signature_policy(&self, caller: &Caller, component: ComponentName) -> Result<Option<SignaturePolicy>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.policy(&component)).await
    }

    /// Sets `component`'s signature policy (admins): from now on a version of it needs
    /// `require_signatures` valid signatures by different keys of `allowed_signers` to be pushed,
    /// or to be brought into a configuration.
    pub async fn set_signature_policy(
        &self,
        caller: &Caller,
        component: ComponentName,
        request: SetPolicy,
    ) -> Result<SignaturePolicy> {
        caller.require(Need::Admin)?;
        let actor = caller.name.clone();
        let set = self
            .store(move |metadata| {
                metadata.set_policy(&component, Some((request.require_signatures, &request.allowed_signers)), &actor)
            })
            .await?;
        Ok(set.expect("the policy just set"))
    }

    /// Removes `component`'s signature policy (admins); the policy removed, if it had one.
    pub async fn remove_signature_policy(
        &self,
        caller: &Caller,
        component: ComponentName,
    ) -> Result<Option<SignaturePolicy>> {
        caller.require(Need::Admin)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.set_policy(&component, None, &actor)).await
    }

    /// The signatures of the versions whose content is `digest`, for whoever may download it
    /// (an agent: the layers of its configurations).
    pub async fn blob_signatures(&self, caller: &Caller, digest: &Digest) -> Result<Vec<BlobSignatures>> {
        self.blob_for_download(caller, digest).await?;
        let digest = digest.clone();
        self.store(move |metadata| metadata.blob_signatures(&digest)).await
    }
}

/// The record of `pem`, once it is known to be a valid signature of `component` `version` with
/// content `digest` by the key it names.
pub(crate) fn checked(
    caller: &Caller,
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
    pem: &str,
) -> Result<SignatureInfo> {
    let message = depot_trust::message(component, version, digest);
    checked_over(caller, depot_trust::NAMESPACE, &message, pem, &format!("{component} {version} with digest {digest}"))
        .map_err(|e| e.with_hint(format!("sign the text of `depot sign {component} {version} --print-message`")))
}

/// The record of `pem`, once it is known to be a valid signature in `namespace` of `message` (which names
/// `what`) by the key it names.
fn checked_over(
    caller: &Caller,
    namespace: &'static str,
    message: &str,
    pem: &str,
    what: &str,
) -> Result<SignatureInfo> {
    let signature = depot_trust::Signature::parse_in(pem, namespace).map_err(|e| {
        Error::invalid(e.to_string()).with_hint(
            "sign with `depot sign`, or `ssh-keygen -Y sign -n depot` over the text of `depot sign --print-message`",
        )
    })?;
    if !signature.signs(message) {
        return Err(Error::invalid(format!("the signature by {} is not over {what}", signature.fingerprint())));
    }
    Ok(SignatureInfo {
        fingerprint: signature.fingerprint(),
        key_type: signature.key_type(),
        signature: signature.pem().to_owned(),
        added_by: caller.name.clone(),
        added_at: Utc::now(),
        signer: None,
    })
}

impl Registry {
    /// Attaches an attestation to a version: an in-toto statement whose subjects include the
    /// version's content, with signatures valid over it (each by the key it names; whether
    /// that key is trusted is for each host to decide).
    pub async fn add_attestation(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
        request: AddAttestation,
    ) -> Result<AttestationInfo> {
        caller.require(Need::Operator)?;
        let info = self.version(caller, component.clone(), version.clone()).await?;
        let statement = depot_trust::attestation::Statement::parse(request.statement.as_bytes()).map_err(|e| {
            Error::invalid(e.to_string())
                .with_hint("attach an in-toto statement, or a CycloneDX or SPDX JSON document (`depot attest`)")
        })?;
        if !statement.covers(&info.digest) {
            return Err(Error::invalid(format!(
                "the statement's subjects do not include {component} {version}'s content {}",
                info.digest
            )));
        }
        let message = depot_trust::attestation::message(
            &component,
            &version,
            &info.digest,
            &statement.digest,
            &statement.predicate_type,
        );
        let what = format!("attestation {} of {component} {version}", statement.digest);
        let signatures = request
            .signatures
            .iter()
            .map(|pem| checked_over(caller, depot_trust::attestation::NAMESPACE, &message, pem, &what))
            .collect::<Result<Vec<_>>>()?;
        let actor = caller.name.clone();
        self.store(move |metadata| {
            metadata.add_attestation(
                &component,
                &version,
                &statement.digest,
                &statement.predicate_type,
                &request.statement,
                &signatures,
                &actor,
            )
        })
        .await
    }

    /// A version's attestations, without their statements.
    pub async fn attestations(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
    ) -> Result<Vec<AttestationInfo>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.attestations(&component, &version, false)).await
    }

    /// One attestation of a version, with its statement: for whoever may read versions, and for
    /// the agents that may download the version's content (hosts that require attestations).
    pub async fn attestation(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
        digest: Digest,
    ) -> Result<Option<AttestationInfo>> {
        if caller.role == depot_api::types::Role::Agent {
            let info = self.store({
                let (component, version) = (component.clone(), version.clone());
                move |metadata| metadata.version(&component, &version)
            });
            self.blob_for_download(caller, &info.await?.digest).await?;
        } else {
            caller.require(Need::Viewer)?;
        }
        self.store(move |metadata| metadata.attestation(&component, &version, &digest)).await
    }
}
