//! `depot admin migrate`: a registry's metadata and blobs, copied to other storage and checked.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use depot_api::Digest;
use depot_store::Blobs;
use futures_util::StreamExt;
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
    let source_blobs = from.blobs.as_deref().map(depot_store::open_blobs).transpose().context("--from")?;
    let target_blobs = to.blobs.as_deref().map(depot_store::open_blobs).transpose().context("--to")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    let tables = depot_store::copy_metadata(&source, &target, &mut |table| {
        printer.message(format!("{:<18} {:>7} rows, {:>7} copied", table.table, table.rows, table.copied));
    })
    .context("copying the metadata failed; run the same command again to resume")?;

    let digests: Vec<Digest> = source
        .known_blobs()?
        .iter()
        .map(|d| Digest::parse(d).context("a blob digest in the source"))
        .collect::<anyhow::Result<_>>()?;
    let (mut copied, mut bytes) = (0, 0);
    if let (Some(source_blobs), Some(target_blobs)) = (&source_blobs, &target_blobs) {
        for digest in &digests {
            if runtime.block_on(target_blobs.exists(digest))? {
                continue;
            }
            bytes += runtime.block_on(copy_blob(source_blobs, target_blobs, digest))?;
            copied += 1;
        }
        printer.message(format!("blobs              {:>7}, {copied:>7} copied", digests.len()));
    }

    depot_store::verify_metadata(&source, &target).context("the target's metadata differs from the source's")?;
    if let Some(blobs) = target_blobs.as_ref().or(source_blobs.as_ref()) {
        for digest in &digests {
            runtime.block_on(verify_blob(blobs, digest))?;
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

/// Streams one blob into the target, which checks its digest before it takes it.
async fn copy_blob(from: &Blobs, to: &Blobs, digest: &Digest) -> anyhow::Result<u64> {
    let mut stream = from.read(digest, None).await.context("a blob the source's metadata names")?;
    let mut writer = to.writer(digest, u64::MAX).await?;
    while let Some(chunk) = stream.next().await {
        if let Err(error) = writer.write(chunk?).await {
            writer.discard().await;
            return Err(error.into());
        }
    }
    let upload = writer.verify().await?;
    let size = upload.size;
    upload.install().await?;
    Ok(size)
}

/// Reads a blob back and checks its sha256.
async fn verify_blob(blobs: &Blobs, digest: &Digest) -> anyhow::Result<()> {
    let mut stream =
        blobs.read(digest, None).await.with_context(|| format!("blob {digest}, which the metadata names"))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk?);
    }
    let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    anyhow::ensure!(actual == digest.hex(), "blob {digest} holds content whose sha256 is {actual}");
    Ok(())
}
