//! `depot admin migrate`: a registry's metadata and blobs, copied to other storage and checked.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use depot_api::Digest;
use depot_store::FsBlobs;
use sha2::{Digest as _, Sha256};

use crate::cli::MigrateArgs;
use crate::printer::{Printer, hinted};

/// Where a registry keeps its metadata and blobs.
struct Storage {
    metadata: String,
    blobs: Option<String>,
}

impl Storage {
    /// A data directory, or `METADATA_URL[,BLOBS_URL]`.
    fn parse(text: &str, what: &str) -> anyhow::Result<Self> {
        if !text.contains("://") {
            let dir = Path::new(text);
            if !dir.join("depot.db").is_file() {
                return Err(hinted(
                    format!("{what}: {} holds no depot.db", dir.display()),
                    "name a registry's data directory (depot serve --data), or its URLs",
                ));
            }
            let dir = fs_err::canonicalize(dir)?;
            return Ok(Storage {
                metadata: format!("sqlite://{}", dir.join("depot.db").display()),
                blobs: Some(format!("file://{}", dir.join("blobs").display())),
            });
        }
        let mut urls = text.split(',').map(str::trim).filter(|u| !u.is_empty());
        let metadata = urls.next().unwrap_or_default().to_owned();
        let blobs = urls.next().map(str::to_owned);
        if let Some(extra) = urls.next() {
            anyhow::bail!("{what}: `{extra}` is one URL too many: give the metadata URL, then the blob store's");
        }
        Ok(Storage { metadata, blobs })
    }
}

#[derive(serde::Serialize)]
struct MigrationReport {
    tables: Vec<depot_store::TableCopy>,
    blobs: u64,
    blobs_copied: u64,
    blob_bytes_copied: u64,
    verified: bool,
}

pub fn migrate(args: MigrateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let from = Storage::parse(&args.from, "--from")?;
    let to = Storage::parse(&args.to, "--to")?;
    let source = depot_store::open_metadata(&from.metadata).context("cannot open the source's metadata")?;
    let target = depot_store::open_metadata(&to.metadata).context("cannot open the target's metadata")?;
    let source_blobs = blob_store(from.blobs.as_deref(), "--from")?;
    let target_blobs = match &to.blobs {
        Some(url) => Some(blob_store(Some(url), "--to")?.expect("a URL was given")),
        None => None,
    };

    let tables = depot_store::copy_metadata(&source, &target, &mut |table| {
        printer.message(format!("{:<18} {:>7} rows, {:>7} copied", table.table, table.rows, table.copied));
    })
    .context("copying the metadata failed; run the same command again to resume")?;

    let digests = source.known_blobs()?;
    let (mut copied, mut bytes) = (0, 0);
    if let (Some(source_blobs), Some(target_blobs)) = (&source_blobs, &target_blobs) {
        for digest in &digests {
            let digest = Digest::parse(digest).context("a blob digest in the source")?;
            if target_blobs.exists(&digest) {
                continue;
            }
            bytes += copy_blob(source_blobs, target_blobs, &digest)?;
            copied += 1;
        }
        printer.message(format!("blobs              {:>7}, {copied:>7} copied", digests.len()));
    }

    depot_store::verify_metadata(&source, &target).context("the target's metadata differs from the source's")?;
    let check = target_blobs.as_ref().or(source_blobs.as_ref());
    if let Some(blobs) = check {
        for digest in &digests {
            let digest = Digest::parse(digest)?;
            verify_blob(blobs, &digest)?;
        }
    }
    printer.message(format!(
        "verified: every row of the source is in the target, and {} blobs match their digests",
        digests.len()
    ));
    let report = MigrationReport {
        tables,
        blobs: digests.len() as u64,
        blobs_copied: copied,
        blob_bytes_copied: bytes,
        verified: true,
    };
    if printer.json {
        printer.json(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn blob_store(url: Option<&str>, what: &str) -> anyhow::Result<Option<FsBlobs>> {
    match url {
        None => Ok(None),
        Some(url) => match url.strip_prefix("file://") {
            Some(path) => Ok(Some(FsBlobs::open(Path::new(path))?)),
            None => anyhow::bail!("{what}: unsupported blob store URL `{url}` (use file:///path)"),
        },
    }
}

/// Streams one blob into the target, which checks its digest before it takes it.
fn copy_blob(from: &FsBlobs, to: &FsBlobs, digest: &Digest) -> anyhow::Result<u64> {
    let mut file = fs_err::File::open(from.path(digest)).context("a blob the source's metadata names")?;
    let mut writer = to.writer(u64::MAX)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        writer.write(&buffer[..read])?;
    }
    let upload = writer.finish(digest)?;
    let size = upload.size;
    to.install(upload)?;
    Ok(size)
}

fn verify_blob(blobs: &FsBlobs, digest: &Digest) -> anyhow::Result<()> {
    let mut file = fs_err::File::open(blobs.path(digest)).context("a blob the metadata names is missing")?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    anyhow::ensure!(actual == digest.hex(), "blob {digest} holds content whose sha256 is {actual}");
    Ok(())
}
