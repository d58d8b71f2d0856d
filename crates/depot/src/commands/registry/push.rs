use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use depot_api::client::Client;
use depot_api::types::{Assembly, AssemblyPart, PushVersion};
use depot_api::{Digest, ErrorCode, VersionLabel};
use depot_release::archive::{self, Compression, PackOptions};
use depot_release::digest::HashingReader;
use depot_release::progress::ProgressReader;

use crate::cli::{Format, PushArgs};
use crate::printer::{Printer, human_bytes};

pub fn run(args: PushArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let mut labels = BTreeMap::new();
    for (key, value) in args.labels {
        if labels.insert(key.clone(), value).is_some() {
            return Ok(super::usage_error(printer, &format!("--label {key} is given twice"), "give each key once"));
        }
    }
    // Before any upload: the registry would refuse it too.
    if !args.free_form
        && let Some((why, meant)) = depot_api::semver_order::almost_semver(args.version.as_str())
    {
        let meant = meant.map(|m| format!("did you mean {m}? ")).unwrap_or_default();
        return Ok(super::usage_error(
            printer,
            &format!("version `{}` looks like a version but is not semver: {why}", args.version),
            &format!(
                "{meant}a label that is not semver moves no channel and sorts before every semver version; \
                 pass --free-form to keep it as it is"
            ),
        ));
    }
    let metadata = fs_err::metadata(&args.path)?;
    if !metadata.is_dir() && args.format.is_some() {
        return Ok(super::usage_error(
            printer,
            "--format applies only when pushing a directory",
            "a file is pushed as it is; pack it with `depot pack --format` first, or push the directory",
        ));
    }
    // Before the work of packing: a missing token or a bad URL fails at once.
    let client = super::connect(&args.registry)?;

    // Keeps the temporary archive of a packed directory until the upload is done.
    let _packed_dir: Option<tempfile::TempDir>;
    let (archive, digest) = if metadata.is_dir() {
        let temp =
            tempfile::Builder::new().prefix("depot-push-").tempdir().context("failed to make a temporary directory")?;
        let (archive, digest) = pack(&args.path, &args.component, &args.version, args.format, temp.path(), printer)?;
        _packed_dir = Some(temp);
        (archive, digest)
    } else {
        _packed_dir = None;
        let digest = hash_archive(&args.path, printer)?;
        (args.path.clone(), digest)
    };

    let channels = match &args.channel {
        Some(_) => build_channels(args.git_sha.as_deref(), printer)?,
        None => Vec::new(),
    };
    let signatures = super::sign::signatures(&args.component, &args.version, &digest, &args.sign, &args.signature)?;
    let attestations = args
        .attach
        .iter()
        .map(|file| super::attest::prepare(&args.component, &args.version, &digest, file, &args.sign))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let request = PushVersion { digest: digest.clone(), labels, channels, free_form: args.free_form, signatures };
    let info = &register(&client, &args.component, &args.version, &request, &archive, printer)?;
    for pem in &request.signatures {
        // A registry that predates signed pushes drops them without a word.
        let fingerprint = depot_trust::Signature::parse(pem)?.fingerprint();
        if !info.signatures.iter().any(|s| s.fingerprint == fingerprint) {
            return Err(crate::printer::hinted(
                format!(
                    "the registry did not keep the signature by {fingerprint} of {} {}",
                    info.component, info.version
                ),
                format!(
                    "it may be older than this depot: attach it with `depot sign {} {} --key KEY`",
                    info.component, info.version
                ),
            ));
        }
    }
    if !request.signatures.is_empty() {
        printer.message(format!(
            "Signed {} {} with {}",
            info.component,
            info.version,
            info.signatures.iter().map(|s| s.fingerprint.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    for (file, attestation) in args.attach.iter().zip(&attestations) {
        super::attest::send(&client, &info.component, &info.version, file, attestation, printer)?;
    }
    if printer.json {
        printer.json(info);
    } else {
        printer.data(info.digest.as_str());
    }
    Ok(ExitCode::SUCCESS)
}

/// Registers the version, uploading the archive first if the registry lacks its blob, and says
/// what happened. Shared by `depot push` and `depot build --push`.
pub(crate) fn register(
    client: &Client,
    component: &depot_api::ComponentName,
    version: &VersionLabel,
    request: &PushVersion,
    archive: &Path,
    printer: &Printer,
) -> anyhow::Result<depot_api::types::VersionInfo> {
    // Register first: the registry answers for the version before it looks for the blob, so
    // content it already has (or a version that exists with other content) costs no upload.
    let pushed = match client.push_version(component, version, request) {
        Err(error) if error.code() == Some(ErrorCode::UnknownBlob) => {
            if !upload_delta(client, component, &request.digest, archive, printer)? {
                upload(client, &request.digest, archive, printer)
                    .with_context(|| format!("failed to upload {}", archive.display()))?;
            }
            client.push_version(component, version, request)?
        }
        result => result?,
    };
    let info = pushed.value;
    if pushed.created {
        printer.message(format!(
            "Pushed {} {} ({}, {})",
            info.component,
            info.version,
            info.digest,
            human_bytes(info.size)
        ));
    } else {
        printer.message(format!(
            "{} {} was already pushed with this content; nothing changed",
            info.component, info.version
        ));
    }
    Ok(info)
}

fn upload(client: &Client, digest: &Digest, archive: &Path, printer: &Printer) -> anyhow::Result<()> {
    let file = fs_err::File::open(archive)?;
    let size = file.metadata()?.len();
    let progress = printer.progress();
    progress.start("Uploading", Some(size));
    let uploaded = client.upload_blob(digest, file, size, &|bytes| progress.advance(bytes));
    progress.finish();
    let uploaded = uploaded?;
    printer.message(format!("Uploaded {} ({})", uploaded.value.digest, human_bytes(uploaded.value.size)));
    Ok(())
}

/// Earlier versions of the component whose frames a new archive may share.
const DELTA_BASES: usize = 3;

/// Uploads a seekable archive as an assembly (`PUT /api/v1/blobs/{digest}/assembly`): each of
/// its frames that a blob of one of the component's newest versions holds byte for byte (by the
/// sha256 the registry's frame index gives) is named there, and only the others are sent. The
/// registry checks the result as any upload. `false` when that does not apply (not a seekable
/// archive, a new component, less than a quarter in common, a registry without assemblies) or
/// fails short of a refusal of the token: the caller then uploads the archive whole.
fn upload_delta(
    client: &Client,
    component: &depot_api::ComponentName,
    digest: &Digest,
    archive: &Path,
    printer: &Printer,
) -> anyhow::Result<bool> {
    let mut file = fs_err::File::open(archive)?;
    let size = file.metadata()?.len();
    let Some(table) = archive::FrameTable::read(file.file_mut(), size)? else { return Ok(false) };
    let Ok(mut versions) = client.versions(component) else { return Ok(false) };
    versions.sort_by_key(|version| std::cmp::Reverse(version.created_at));
    // Where the registry holds each frame it has: (blob, offset), by the sha256 of its bytes.
    let mut held: HashMap<String, (Digest, u64)> = HashMap::new();
    let mut bases = Vec::new();
    for version in versions.iter().filter(|v| v.digest != *digest).take(DELTA_BASES) {
        let Ok(index) = client.blob_frames(&version.digest) else { continue };
        let mut offset = 0u64;
        for frame in &index.frames {
            held.entry(frame.sha256.clone()).or_insert((version.digest.clone(), offset));
            offset += frame.compressed;
        }
        bases.push(format!("{} {}", version.component, version.version));
    }
    if held.is_empty() {
        return Ok(false);
    }
    let mut parts: Vec<AssemblyPart> = Vec::new();
    let mut inline = Vec::new();
    let mut push = |part: AssemblyPart| match parts.last_mut() {
        Some(last) if last.from == part.from && (part.from.is_none() || last.offset + last.length == part.offset) => {
            last.length += part.length;
        }
        _ => parts.push(part),
    };
    for frame in &table.frames {
        let sha256 = depot_release::digest::sha256_range(file.file(), frame.offset, frame.compressed)?;
        match held.get(&sha256) {
            Some((from, offset)) => {
                push(AssemblyPart { from: Some(from.clone()), offset: *offset, length: frame.compressed })
            }
            None => {
                inline.push(frame.offset..frame.offset + frame.compressed);
                push(AssemblyPart { from: None, offset: 0, length: frame.compressed });
            }
        }
    }
    let frames_end = table.frames.last().map_or(0, |frame| frame.offset + frame.compressed);
    inline.push(frames_end..size);
    push(AssemblyPart { from: None, offset: 0, length: size - frames_end });
    let inline_len: u64 = inline.iter().map(|range| range.end - range.start).sum();
    // Worth it when it spares at least a quarter of the upload.
    if inline_len.saturating_mul(4) > size.saturating_mul(3) {
        return Ok(false);
    }
    let progress = printer.progress();
    progress.start("Uploading the new frames", Some(inline_len));
    let reader = RangesReader { file: file.into_parts().0, ranges: inline.into(), at: 0 };
    let head = Assembly { parts };
    let uploaded = client.upload_blob_assembly(digest, &head, reader, inline_len, &|bytes| progress.advance(bytes));
    progress.finish();
    match uploaded {
        Ok(uploaded) => {
            printer.message(format!(
                "Uploaded {} ({}): sent {} of its frames; the registry had the rest in {}",
                uploaded.value.digest,
                human_bytes(uploaded.value.size),
                human_bytes(inline_len),
                bases.join(", ")
            ));
            Ok(true)
        }
        Err(e) if matches!(e.code(), Some(ErrorCode::Unauthorized | ErrorCode::Forbidden)) => Err(e.into()),
        Err(e) => {
            printer.message(format!("cannot upload {digest} as new frames only ({e}); uploading it whole"));
            Ok(false)
        }
    }
}

/// Reads the given ranges of a file one after the other.
struct RangesReader {
    file: std::fs::File,
    ranges: std::collections::VecDeque<std::ops::Range<u64>>,
    at: u64,
}

impl Read for RangesReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        while let Some(range) = self.ranges.front() {
            let left = range.end - range.start - self.at;
            if left == 0 {
                self.ranges.pop_front();
                self.at = 0;
                continue;
            }
            let want = buffer.len().min(left as usize);
            let read = self.file.read_at(&mut buffer[..want], range.start + self.at)?;
            if read == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the archive got shorter"));
            }
            self.at += read as u64;
            return Ok(read);
        }
        Ok(0)
    }
}

/// Packs `dir` reproducibly into `into` and returns the archive and its digest.
fn pack(
    dir: &Path,
    component: &depot_api::ComponentName,
    version: &VersionLabel,
    format: Option<Format>,
    into: &Path,
    printer: &Printer,
) -> anyhow::Result<(PathBuf, Digest)> {
    let compression = match format.unwrap_or(Format::Zst) {
        Format::Zst => Compression::Zstd,
        Format::Gz => Compression::Gzip,
    };
    let options = PackOptions {
        dir: dir.to_owned(),
        version: version.clone(),
        name: Some(component.to_string()),
        output: Some(into.join(format!("{component}-{version}.{}", compression.extension()))),
        compression,
    };
    let progress = printer.progress();
    let packed =
        archive::pack(&options, progress.as_ref()).with_context(|| format!("failed to pack {}", dir.display()))?;
    printer.message(format!(
        "Packed {} files ({}) from {} ({})",
        packed.files,
        human_bytes(packed.bytes),
        dir.display(),
        human_bytes(packed.size)
    ));
    let digest = Digest::from_hex(&packed.sha256).context("pack returned a malformed digest")?;
    Ok((packed.path, digest))
}

/// Checks that `path` looks like a release archive (the registry checks it fully) and hashes it.
fn hash_archive(path: &Path, printer: &Printer) -> anyhow::Result<Digest> {
    let mut file = fs_err::File::open(path)?;
    let mut head = Vec::with_capacity(512);
    (&mut file).take(512).read_to_end(&mut head)?;
    // Not `?`: the engine's hint for a bad archive speaks of `deploy --sha256`.
    if let Err(error) = Compression::sniff(&head) {
        anyhow::bail!("{} is not a release archive (.tar, .tar.gz or .tar.zst): {error}", path.display());
    }

    let file = fs_err::File::open(path)?;
    let size = file.metadata()?.len();
    let progress = printer.progress();
    progress.start("Hashing", Some(size));
    let mut reader = HashingReader::new(ProgressReader::new(file, progress.as_ref()));
    std::io::copy(&mut reader, &mut std::io::sink()).with_context(|| format!("failed to read {}", path.display()))?;
    progress.finish();
    let (hex, _) = reader.finish();
    Ok(Digest::from_hex(&hex)?)
}

/// `edge`, `nightly-YYYY-MM-DD` (UTC) and, when the commit is known, `sha-<7 hex digits>`.
fn build_channels(git_sha: Option<&str>, printer: &Printer) -> anyhow::Result<Vec<VersionLabel>> {
    let mut names = vec!["edge".to_owned(), format!("nightly-{}", chrono::Utc::now().format("%Y-%m-%d"))];
    let sha = match git_sha {
        Some(sha) => Some(sha.to_owned()),
        None => {
            let output = std::process::Command::new("git").args(["rev-parse", "HEAD"]).output();
            match output {
                Ok(output) if output.status.success() => {
                    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
                }
                _ => {
                    printer.message("note: not in a git checkout and no --git-sha: no sha-… channel");
                    None
                }
            }
        }
    };
    if let Some(sha) = sha {
        names.push(format!("sha-{}", &sha[..7.min(sha.len())]));
    }
    names.into_iter().map(|name| Ok(VersionLabel::parse(&name)?)).collect()
}
