use std::process::ExitCode;

use anyhow::Context;
use depot_release::config::RootConfig;
use depot_release::deploy::{self, ArtifactSource, DeployAction, DeployOptions, Layer};
use depot_release::fetch::{self, DownloadOptions};
use depot_release::root::ReleaseRoot;

use super::{activation_options, keep, lock_timeout, version_or_none};
use crate::cli::DeployArgs;
use crate::printer::{Printer, human_bytes};

/// Checks `--signature` against `--trust` for `--component`, `--version` and the archive's
/// digest, before anything is unpacked. A local file is first copied, as it is hashed, into
/// R/.depot/verified/, and the deploy reads that copy: a file changed after the check
/// cannot reach the release. A URL needs `--sha256`, which the download must then match.
/// Returns the digest the deploy must find, and the copy (kept until the deploy is done).
fn verify(
    args: &DeployArgs,
    trust: &std::path::Path,
    source: &ArtifactSource,
    root: &ReleaseRoot,
) -> anyhow::Result<(String, Option<tempfile::NamedTempFile>)> {
    let (hex, copy) = match (source, &args.sha256) {
        (ArtifactSource::Path(path), expected) => {
            // Beside the engine's own temporary directory, which it empties when it starts.
            let dir = root.path().join(".depot/verified");
            fs_err::create_dir_all(&dir)?;
            let mut copy = tempfile::Builder::new().prefix(".trusted-").tempfile_in(&dir)?;
            let mut hashing = depot_release::digest::HashingWriter::new(copy.as_file_mut());
            std::io::copy(&mut fs_err::File::open(path)?, &mut hashing)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (_, hex, _) = hashing.finish();
            if let Some(expected) = expected.as_ref().filter(|e| **e != hex) {
                anyhow::bail!("{} has sha256 {hex}, not the --sha256 {expected}; nothing was changed", path.display());
            }
            (hex, Some(copy))
        }
        (ArtifactSource::Url(_), Some(expected)) => (expected.clone(), None),
        (ArtifactSource::Url(url), None) => {
            return Err(crate::printer::hinted(
                format!("--trust needs the digest of {url} before downloading it"),
                "pass --sha256 (the digest the signature covers; `depot show-version --json` shows it)",
            ));
        }
    };
    let component = args.component.as_ref().expect("clap requires --component with --trust");
    let signature = args.signature.as_ref().expect("clap requires --signature with --trust");
    let text = fs_err::read_to_string(signature)?;
    let trust = depot_trust::Trust::load(trust, args.revoked_keys.as_deref())?;
    let digest = depot_api::Digest::from_hex(&hex).expect("sha256 hex is a digest");
    let message = depot_trust::message(component, &args.version, &digest);
    match trust.verify(&message, &[text], chrono::Utc::now()) {
        Ok(_) => Ok((hex, copy)),
        Err(reason) => Err(crate::printer::hinted(
            format!("{component} {} ({digest}) is not trusted: {reason}; nothing was unpacked", args.version),
            "deploy only what a key of the --trust file signed for this component and version",
        )),
    }
}

pub fn run(args: DeployArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let root = ReleaseRoot::new(&args.root.root)?;
    let config = RootConfig::load(root.path())?;
    let mut source = match (&args.artifact_path, &args.artifact_url) {
        (Some(path), _) => ArtifactSource::Path(path.clone()),
        (None, Some(url)) => ArtifactSource::Url(url.clone()),
        (None, None) => unreachable!("clap requires one artifact source"),
    };
    // A signed archive is checked before anything is unpacked; staging then checks the content
    // against the same digest.
    let (sha256, _copy) = match &args.trust {
        Some(trust) => {
            let (hex, copy) = verify(&args, trust, &source, &root)?;
            if let Some(copy) = &copy {
                source = ArtifactSource::Path(copy.path().to_owned());
            }
            (Some(hex), copy)
        }
        None => (args.sha256.clone(), None),
    };
    let ca_pem = match &args.ca_cert {
        Some(path) => Some(fs_err::read(path).context("cannot read the --ca-cert file")?),
        None => None,
    };
    let download = DownloadOptions { timeout: args.download_timeout.unwrap_or(fetch::DEFAULT_TIMEOUT), ca_pem };
    let options = DeployOptions {
        version: args.version,
        layers: vec![Layer { source, sha256, frames: None }],
        force: args.force,
        copy: args.copy,
        keep: keep(args.policy.keep, &config),
        limits: config.limits.resolve(args.max_files, args.max_bytes),
        download,
        validate: args.policy.validate.or(config.deploy.validate.clone()),
        activation: activation_options(&args.policy.activation, &config),
        lock_timeout: lock_timeout(args.root.lock_timeout, &config),
        // A local file is hashed before a layer listing stands in for it; a URL is hashed as
        // it downloads.
        sha256_verified: false,
        stop: None,
    };
    let progress = printer.progress();
    let report = deploy::deploy(&root, &options, progress.as_ref())?;
    if printer.json {
        printer.json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    let switch = format!("current: {} -> {}", version_or_none(report.previous.as_ref()), report.version);
    match (report.action, &report.stats) {
        (DeployAction::Deployed, Some(stats)) => printer.message(format!(
            "Deployed {} ({} files, {}; {} new in the store) in {:.2}s; {switch}",
            report.version,
            stats.files,
            human_bytes(stats.bytes),
            human_bytes(stats.bytes_written),
            report.duration_ms as f64 / 1000.0
        )),
        (DeployAction::AlreadyActive, _) => {
            printer.message(format!("{} is already the current release; nothing to do", report.version))
        }
        _ => printer
            .message(format!("Release {} exists with the same content; activated it again; {switch}", report.version)),
    }
    if let Some(pruned) = &report.pruned
        && !pruned.removed.is_empty()
    {
        let removed: Vec<String> = pruned.removed.iter().map(|v| v.to_string()).collect();
        printer.message(format!("Pruned {} ({} freed)", removed.join(", "), human_bytes(pruned.bytes_freed)));
    }
    Ok(ExitCode::SUCCESS)
}
