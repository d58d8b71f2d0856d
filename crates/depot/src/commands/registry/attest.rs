//! `depot attest` and `depot attestations`: in-toto statements about versions (SBOMs, SLSA
//! provenance), signed like versions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use depot_api::client::Client;
use depot_api::types::{AddAttestation, AttestationInfo};
use depot_api::{ComponentName, Digest, VersionLabel};

use crate::cli::{AttestArgs, AttestationsArgs};
use crate::printer::{Printer, hinted, human_bytes};

pub fn run(args: AttestArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let info = client.version(&args.component, &args.version)?;
    let request = prepare(&args.component, &args.version, &info.digest, &args.file, &args.sign)?;
    let attached = send(&client, &args.component, &args.version, &args.file, &request, printer)?;
    if printer.json {
        printer.json(&attached);
    } else {
        printer.data(attached.digest.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// The attestation of `file` for `component` `version` (content `digest`), signed with each of
/// `keys`: made before anything is sent, so that a document that cannot be attached stops a
/// push before it registers the version.
pub(crate) fn prepare(
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
    file: &Path,
    keys: &[PathBuf],
) -> anyhow::Result<AddAttestation> {
    let document = fs_err::read(file)?;
    let statement = depot_trust::attestation::statement_for(&document, &format!("{component}@{version}"), digest)
        .with_context(|| format!("cannot attach {}", file.display()))?;
    let mut signatures = Vec::new();
    for key in keys {
        let signature = depot_trust::attestation::sign_statement(key, component, version, digest, &statement)
            .with_context(|| format!("cannot sign {} with {}", file.display(), key.display()))?;
        signatures.push(signature.pem().to_owned());
    }
    let statement = String::from_utf8(statement).context("the statement is not UTF-8 text")?;
    Ok(AddAttestation { statement, signatures })
}

/// Attaches a prepared attestation of `file`, and says so.
pub(crate) fn send(
    client: &Client,
    component: &ComponentName,
    version: &VersionLabel,
    file: &Path,
    request: &AddAttestation,
    printer: &Printer,
) -> anyhow::Result<AttestationInfo> {
    let attached = client.add_attestation(component, version, request)?;
    let signed = match attached.signatures.len() {
        0 => "unsigned".to_owned(),
        n => format!("{n} signature(s)"),
    };
    printer.message(format!(
        "Attached {} to {component} {version}: {} {} ({}, {signed})",
        file.display(),
        attached.predicate_type,
        attached.digest,
        human_bytes(attached.size)
    ));
    Ok(attached)
}

pub fn list(args: AttestationsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let all = client.attestations(&args.component, &args.version)?;
    let Some(wanted) = &args.get else {
        if printer.json {
            printer.json(&all);
        } else if all.is_empty() {
            printer.message(format!("{} {} has no attestation", args.component, args.version));
        } else {
            for attestation in &all {
                let signers: Vec<&str> = attestation.signatures.iter().map(|s| s.fingerprint.as_str()).collect();
                let signers = if signers.is_empty() { "unsigned".to_owned() } else { signers.join(", ") };
                printer.data(format!(
                    "{}  {}  {}  {}  {signers}",
                    attestation.digest,
                    attestation.predicate_type,
                    human_bytes(attestation.size),
                    super::time(&attestation.added_at)
                ));
            }
        }
        return Ok(ExitCode::SUCCESS);
    };
    let digest = match Digest::parse(wanted) {
        Ok(digest) => digest,
        Err(_) => {
            let kind = depot_trust::attestation::predicate_type(wanted);
            // The newest signed one of that type, else the newest.
            let of_kind = || all.iter().rev().filter(|a| a.predicate_type == kind);
            let newest =
                of_kind().find(|a| !a.signatures.is_empty()).or_else(|| of_kind().next()).ok_or_else(|| {
                    hinted(
                        format!("{} {} has no attestation of type {kind}", args.component, args.version),
                        format!("list them with `depot attestations {} {}`", args.component, args.version),
                    )
                })?;
            newest.digest.clone()
        }
    };
    let found = client.attestation(&args.component, &args.version, &digest)?;
    let statement = found.statement.as_deref().unwrap_or_default();
    if depot_trust::attestation::sha256(statement.as_bytes()) != digest {
        anyhow::bail!("the registry served a statement that is not {digest}: it does not hash to its digest");
    }
    if printer.json {
        printer.json(&found);
    } else {
        printer.data(statement.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
