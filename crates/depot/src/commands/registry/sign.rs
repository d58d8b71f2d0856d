//! `depot sign` and `depot show-version`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use depot_api::client::Client;
use depot_api::types::{AddSignature, VersionInfo};

use crate::cli::{PolicyCommand, ShowVersionArgs, SignArgs};
use crate::printer::Printer;

pub fn run(args: SignArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    if let Some(digest) = &args.digest {
        // Before the version exists: the text is known from its name and content alone.
        print!("{}", depot_trust::message(&args.component, &args.version, digest));
        return Ok(ExitCode::SUCCESS);
    }
    let client = super::connect(&args.registry)?;
    let info = client.version(&args.component, &args.version)?;
    if args.print_message {
        // Exactly the bytes signed: `ssh-keygen -Y sign -n depot` over them makes a signature
        // `depot sign --signature` attaches.
        print!("{}", depot_trust::message(&info.component, &info.version, &info.digest));
        return Ok(ExitCode::SUCCESS);
    }
    let info = match (&args.key, &args.signature) {
        (Some(key), _) => sign(&client, &info, key, printer)?,
        (None, Some(file)) => {
            let text = fs_err::read_to_string(file)?;
            let info = client.add_signature(&info.component, &info.version, &AddSignature { signature: text })?;
            printer.message(format!(
                "Attached the signature in {} to {} {}",
                file.display(),
                info.component,
                info.version
            ));
            info
        }
        (None, None) => unreachable!("clap requires --key, --signature or --print-message"),
    };
    if printer.json {
        printer.json(&info);
    }
    Ok(ExitCode::SUCCESS)
}

/// The signatures a push sends with a version: made now with each of `keys`, and read from each
/// of `files` (made beforehand over the same text).
pub(crate) fn signatures(
    component: &depot_api::ComponentName,
    version: &depot_api::VersionLabel,
    digest: &depot_api::Digest,
    keys: &[std::path::PathBuf],
    files: &[std::path::PathBuf],
) -> anyhow::Result<Vec<String>> {
    let message = depot_trust::message(component, version, digest);
    let mut signatures = Vec::new();
    for key in keys {
        let signature = depot_trust::sign_with(key, &message)
            .with_context(|| format!("cannot sign {component} {version} with {}", key.display()))?;
        signatures.push(signature.pem().to_owned());
    }
    for file in files {
        signatures.push(fs_err::read_to_string(file)?);
    }
    Ok(signatures)
}

/// Signs `info` with `key` and attaches the signature; the version with all its signatures.
pub(crate) fn sign(client: &Client, info: &VersionInfo, key: &Path, printer: &Printer) -> anyhow::Result<VersionInfo> {
    let message = depot_trust::message(&info.component, &info.version, &info.digest);
    let signature = depot_trust::sign_with(key, &message)
        .with_context(|| format!("cannot sign {} {}", info.component, info.version))?;
    let fingerprint = signature.fingerprint();
    let signed = client.add_signature(
        &info.component,
        &info.version,
        &AddSignature { signature: signature.pem().to_owned() },
    )?;
    printer.message(format!("Signed {} {} with {fingerprint}", info.component, info.version));
    Ok(signed)
}

pub fn show(args: ShowVersionArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let info = super::connect(&args.registry)?.version(&args.component, &args.version)?;
    if printer.json {
        printer.json(&info);
        return Ok(ExitCode::SUCCESS);
    }
    printer.data(format!("component: {}", info.component));
    printer.data(format!("version:   {}", info.version));
    printer.data(format!("digest:    {}", info.digest));
    printer.data(format!("size:      {} B", info.size));
    printer.data(format!("pushed:    {} by {}", super::time(&info.created_at), info.creator));
    for (key, value) in &info.labels {
        printer.data(format!("label:     {key}={value}"));
    }
    if let Some(deprecated) = &info.deprecated {
        printer.data(format!(
            "deprecated: {} (by {} at {})",
            deprecated.reason,
            deprecated.by,
            super::time(&deprecated.at)
        ));
    }
    if info.signatures.is_empty() {
        printer.data("signatures: none");
    }
    for signature in &info.signatures {
        let signer = signature.signer.as_ref().map(|s| format!(" {s}")).unwrap_or_default();
        printer.data(format!(
            "signature: {} {}{signer} (added by {} at {})",
            signature.key_type,
            signature.fingerprint,
            signature.added_by,
            super::time(&signature.added_at)
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `depot policy set|show|unset`.
pub fn policy(command: PolicyCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Set(args) => {
            let client = super::connect(&args.registry)?;
            let allowed_signers = fs_err::read_to_string(&args.trusted)?;
            let request = depot_api::types::SetPolicy { require_signatures: args.require_signatures, allowed_signers };
            let policy = client.set_policy(&args.component, &request)?;
            printer.message(format!(
                "{} now requires {} signature(s) from {} trusted key(s) on each new version",
                policy.component,
                policy.require_signatures,
                policy.keys.len()
            ));
            show_policy(&policy, printer);
        }
        PolicyCommand::Show(args) => {
            let client = super::connect(&args.registry)?;
            match client.policy(&args.component)? {
                Some(policy) => show_policy(&policy, printer),
                None if printer.json => printer.json(&serde_json::Value::Null),
                None => printer.data(format!("{} has no signature policy: versions need no signature", args.component)),
            }
        }
        PolicyCommand::Unset(args) => {
            let client = super::connect(&args.registry)?;
            client.remove_policy(&args.component)?;
            printer.message(format!("{} has no signature policy now: versions need no signature", args.component));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_policy(policy: &depot_api::types::SignaturePolicy, printer: &Printer) {
    if printer.json {
        printer.json(policy);
        return;
    }
    printer.data(format!("component:          {}", policy.component));
    printer.data(format!("require signatures: {}", policy.require_signatures));
    for key in &policy.keys {
        printer.data(format!("trusted key:        {}  {}", key.fingerprint, key.principals));
    }
    printer.data(format!("set:                {} by {}", super::time(&policy.updated_at), policy.updated_by));
}
