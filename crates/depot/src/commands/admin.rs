//! `depot admin migrate`: a registry's metadata and blobs, copied to other storage and checked.
//! `depot admin rotate-key`: the stages' values re-sealed with a new secrets key.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use depot_api::Digest;
use depot_release::killpoint;
use depot_store::Blobs;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};

use crate::cli::{MigrateArgs, RotateKeyArgs};
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

#[derive(serde::Serialize)]
struct RotationReport {
    key: std::path::PathBuf,
    key_id: String,
    old_key: std::path::PathBuf,
    old_key_id: String,
    #[serde(flatten)]
    resealed: depot_store::Resealed,
}

pub fn rotate_key(args: RotateKeyArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let data = args.data.unwrap_or_else(|| "depot-data".into());
    let key = args.secrets_key.unwrap_or_else(|| depot_server::default_secrets_key(&data));
    let metadata_url = match args.metadata {
        Some(url) => url,
        None => {
            let db = data.join("depot.db");
            if !db.is_file() {
                return Err(hinted(
                    format!("{} holds no depot.db", data.display()),
                    "name the registry's data directory with --data, or its database with --metadata",
                ));
            }
            format!("sqlite://{}", fs_err::canonicalize(db)?.display())
        }
    };
    let sibling = |suffix: &str| {
        let mut name = key.clone().into_os_string();
        name.push(suffix);
        std::path::PathBuf::from(name)
    };
    let next_path = sibling(".next");
    let old = depot_store::Sealer::load(&key)?.ok_or_else(|| {
        hinted(
            format!("there is no secrets key at {}", key.display()),
            "give the registry's key file with --secrets-key",
        )
    })?;
    // Each old key keeps a name of its own: rotating twice loses neither.
    let old_path = sibling(&format!(".old-{}", old.id()));
    // A key left by an interrupted rotation is the one to finish with: the database may be
    // sealed with it already.
    let new = match depot_store::Sealer::load(&next_path)? {
        Some(new) => {
            printer.message(format!("Finishing the rotation to the key in {}", next_path.display()));
            new
        }
        None => depot_store::Sealer::create(&next_path)?,
    };
    killpoint::reached("rotate-key-created");
    let metadata = depot_store::open_metadata(&metadata_url).context("cannot open the registry's metadata")?;
    let resealed = metadata.reseal(&old, &new).context("nothing was re-sealed")?;
    killpoint::reached("rotate-key-resealed");
    // The old key is kept (for backups sealed with it) before the new one replaces it; KEY
    // exists at every moment, holding the old key or the new.
    let link = sibling(&format!(".old-{}.tmp", old.id()));
    let _ = fs_err::remove_file(&link);
    fs_err::hard_link(&key, &link)?;
    fs_err::rename(&link, &old_path)?;
    // Run again after a kill, the old key may be there already: a rename between two links
    // of one file does nothing, and leaves the temporary name.
    let _ = std::fs::remove_file(&link);
    killpoint::reached("rotate-key-kept-old");
    fs_err::rename(&next_path, &key)?;
    if let Some(dir) = key.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::File::open(dir)?.sync_all()?;
    }
    let report = RotationReport {
        key: key.clone(),
        key_id: new.id().to_owned(),
        old_key: old_path.clone(),
        old_key_id: old.id().to_owned(),
        resealed,
    };
    if printer.json {
        printer.json(&report);
    } else {
        printer.data(format!(
            "Re-sealed {} environment versions with key {} in {}",
            report.resealed.env_versions,
            new.id(),
            key.display()
        ));
        printer.message(format!(
            "The old key {} is in {}: it opens backups taken before now; delete it when none is needed. Start every \
             replica with the new key.",
            old.id(),
            old_path.display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
