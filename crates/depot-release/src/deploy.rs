//! `deploy` and `rollback`: the steps that change which release is active.
//!
//! deploy: obtain the archive → stage it through the content store → validate in the staging
//! directory → flush the file system → write the manifest → rename staging to `releases/V` →
//! switch `current` → post-activate hook → health check → (on failure, switch back) → prune.
//! A kill at any step leaves `current` on a complete release; the next command's recovery removes
//! the rest.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::hooks::{self, CheckFailure, HealthCheck};
use crate::manifest::Manifest;
use crate::progress::Progress;
use crate::prune::{self, PruneReport};
use crate::root::{self, Outcome, ReleaseRoot, Session};
use crate::stage::{FrameRecord, Framed, Limits, StageStats, Stager};
use crate::version::VersionLabel;
use crate::{Error, Result, digest, fetch, killpoint};

#[derive(Debug, Clone)]
pub enum ArtifactSource {
    Path(PathBuf),
    Url(String),
}

/// What runs after `current` is switched.
#[derive(Debug, Clone)]
pub struct ActivationOptions {
    pub post_activate: Option<String>,
    pub health: Option<HealthCheck>,
    pub health_timeout: Duration,
    pub hook_timeout: Duration,
    /// More environment for the hooks of a given release, on top of the standard variables (the
    /// agent's `STATEFILE`, `LAYER_<i>_NAME`, …, which differ between the new and the previous
    /// release).
    pub release_env: BTreeMap<VersionLabel, Vec<(String, String)>>,
}

/// One archive of a release, with its expected sha256 (lowercase hex) when known.
#[derive(Debug, Clone)]
pub struct Layer {
    pub source: ArtifactSource,
    pub sha256: Option<String>,
    /// Set when `source` holds only some frames of the archive (the agent's fetch of the frames
    /// it lacks): the rest are replayed from frame records, and `sha256` is vouched for by
    /// whoever checked each fetched frame against the index it came with.
    pub frames: Option<FetchedFrames>,
}

/// The frames of an archive whose sha256 the host knows, and the sha256 of each frame's bytes,
/// from an index that named both. The file holds the bytes of every frame the host has no
/// usable record of ([`FetchedFrames::needed`]), each at its offset.
#[derive(Debug, Clone)]
pub struct FetchedFrames {
    pub table: crate::archive::FrameTable,
    pub shas: Vec<String>,
}

impl FetchedFrames {
    /// The frames a deploy will decode, which must therefore be fetched: every frame but those
    /// a record in `known` (as [`ReleaseRoot::frame_records`] gives) can replay from `store`,
    /// and the last, which holds the archive's end. The same rule as
    /// [`Stager::add_framed_layer`]'s.
    pub fn needed(&self, known: &HashMap<String, FrameRecord>, store: &crate::store::ContentStore) -> Vec<usize> {
        let last = self.table.frames.len().saturating_sub(1);
        (0..self.table.frames.len())
            .filter(|&index| {
                index == last
                    || !known
                        .get(&self.shas[index])
                        .is_some_and(|record| record.replayable(&self.table.frames[index], store))
            })
            .collect()
    }
}

#[derive(Debug, Clone)]
pub struct DeployOptions {
    pub version: VersionLabel,
    /// The release's archives, unpacked in order into one tree: a later layer's file replaces an
    /// earlier one's. `depot deploy` passes one; the agent one per configuration layer.
    pub layers: Vec<Layer>,
    /// Replace an existing release (not the current one) whose content differs.
    pub force: bool,
    /// Copy files out of the content store instead of hardlinking them.
    pub copy: bool,
    pub keep: usize,
    pub limits: Limits,
    /// How `ArtifactSource::Url` layers are downloaded.
    pub download: fetch::DownloadOptions,
    pub validate: Option<String>,
    pub activation: ActivationOptions,
    pub lock_timeout: Duration,
    /// The layers' files were checked against their sha256 when they were fetched (the agent's
    /// downloads, named by digest): a layer staged before is then replayed from its listing
    /// without reading its file. Otherwise such a file is hashed first, so that a wrong sha256 is
    /// still refused.
    pub sha256_verified: bool,
    /// Set (by a signal handler, say) to end the deploy at its next safe point before `current`
    /// is switched: after staging, after the validate hook. The staged tree goes, nothing else
    /// changes, and the deploy fails with [`Error::Stopped`]. Once `current` is switched, the
    /// hooks and the health check run to their end, whatever this says.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployAction {
    /// A new release was staged and activated.
    Deployed,
    /// The release existed with the same content and was activated again.
    Reactivated,
    /// The release existed with the same content and was already current.
    AlreadyActive,
}

impl DeployAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeployAction::Deployed => "deployed",
            DeployAction::Reactivated => "reactivated",
            DeployAction::AlreadyActive => "already-active",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeployReport {
    pub version: VersionLabel,
    pub previous: Option<VersionLabel>,
    pub action: DeployAction,
    /// The sha256 of each layer's archive, in order.
    pub archives: Vec<String>,
    pub stats: Option<StageStats>,
    pub pruned: Option<PruneReport>,
    pub duration_ms: u64,
}

pub fn deploy(root: &ReleaseRoot, options: &DeployOptions, progress: &dyn Progress) -> Result<DeployReport> {
    let started = Instant::now();
    // What can be checked without the root is checked first, so that a deploy refused at once
    // does not leave a new root's skeleton behind.
    if options.layers.is_empty() {
        return Err(Error::NoLayers { version: options.version.to_string() });
    }
    // A new root has no kept layer listings, so every local archive must be readable.
    if !root.exists() {
        for layer in &options.layers {
            if let ArtifactSource::Path(path) = &layer.source {
                fs_err::File::open(path)?;
            }
        }
    }
    let session = root.begin("deploy", options.lock_timeout)?;
    let version = &options.version;
    let log = &session.log;
    let sources: Vec<String> = options.layers.iter().map(|layer| describe(&layer.source)).collect();
    log.line(&format!("deploy {version}: started from {}", sources.join(", ")));
    let result = deploy_in(&session, options, progress, started);
    match &result {
        Ok(report) => {
            session.complete();
            log.line(&format!("deploy {version}: done ({}) in {} ms", report.action.as_str(), report.duration_ms))
        }
        Err(e) => log.line(&format!("deploy {version}: failed: {e}")),
    }
    result
}

fn deploy_in(
    session: &Session,
    options: &DeployOptions,
    progress: &dyn Progress,
    started: Instant,
) -> Result<DeployReport> {
    let root = &session.root;
    let version = &options.version;
    let previous = root.current();

    if options.layers.is_empty() {
        return Err(Error::NoLayers { version: version.to_string() });
    }
    // The archives: local paths as they are, URLs downloaded (and hashed) first.
    let mut downloads = Vec::new();
    let mut archives: Vec<(PathBuf, Option<String>)> = Vec::new();
    for layer in &options.layers {
        match &layer.source {
            ArtifactSource::Url(url) => {
                let limit = fetch::download_limit(&options.limits);
                let expected = layer.sha256.as_deref();
                let download = fetch::download(url, expected, limit, &options.download, &root.tmp_dir(), progress)?;
                if let Some(expected) = &layer.sha256 {
                    check_digest(expected, &download.sha256, &download.file)?;
                }
                archives.push((download.file.to_path_buf(), Some(download.sha256.clone())));
                downloads.push(download);
            }
            ArtifactSource::Path(path) => archives.push((path.clone(), None)),
        }
    }

    let report = |action, archives: Vec<String>, stats, pruned| DeployReport {
        version: version.clone(),
        previous: previous.clone(),
        action,
        archives,
        stats,
        pruned,
        duration_ms: started.elapsed().as_millis() as u64,
    };

    // An existing release with the same archives is activated again without unpacking anything.
    let existing = root.release_dir(version).is_dir().then(|| root.read_manifest(version).ok()).flatten();
    let exists = root.release_dir(version).is_dir();
    if let Some(manifest) = &existing {
        let mut digests = Vec::new();
        for ((path, known), layer) in archives.iter().zip(&options.layers) {
            // An expected digest that equals the manifest's names content already verified when
            // the release was staged: the archive need not be read (nor even be present).
            let sha256 = match (known, &layer.sha256) {
                (Some(sha256), _) => sha256.clone(),
                (None, Some(expected)) => expected.clone(),
                (None, None) => digest::sha256_file(path)?,
            };
            if let Some(expected) = &layer.sha256 {
                check_digest(expected, &sha256, path)?;
            }
            digests.push(sha256);
        }
        if manifest.summary.archives == digests {
            return reactivate(session, options, previous.as_ref()).map(|action| report(action, digests, None, None));
        }
    }

    // Stage the layers in order; on any failure the staging directory goes and nothing else changed.
    let store = root.store();
    let staging_dir = session.staging_dir(version);
    session.begin_object_writes()?;
    // Read only once an archive is to be unpacked: a deploy that replays listings needs none.
    let known = std::cell::OnceCell::new();
    let mut attempt = stage_layers(root, &store, &staging_dir, &archives, options, &known, true, progress);
    if let Ok(Staging::NotSelfContained { archive, reason }) = &attempt {
        // A seekable archive whose frames do not stand on their own: unpacked as one stream.
        session.log.line(&format!("{}: {reason}; unpacking it as one stream", archive.display()));
        root::remove_tree(&staging_dir)?;
        attempt = stage_layers(root, &store, &staging_dir, &archives, options, &known, false, progress);
    }
    let (staged, frame_records) = match attempt {
        Ok(Staging::Staged(staged, records)) => (staged, records),
        Ok(Staging::NotSelfContained { .. }) => unreachable!("the second attempt reads archives as one stream"),
        Err(e) => {
            root::remove_tree(&staging_dir)?;
            return Err(e);
        }
    };
    let archive_digests = staged.archives.clone();
    let manifest = Manifest::new(version.clone(), staged.archives.clone(), staged.entries);
    let frames = match staged.stats.frames_replayed {
        0 => String::new(),
        replayed => format!("; {replayed} frames replayed, {} decoded", staged.stats.frames_decoded),
    };
    session.log.line(&format!(
        "staged {version}: {} files, {} bytes; {} new objects ({} bytes) written to the store{frames}",
        staged.stats.files, staged.stats.bytes, staged.stats.objects_written, staged.stats.bytes_written
    ));
    killpoint::reached("staged");

    if exists {
        let same_tree = existing.as_ref().is_some_and(|m| m.summary.tree_digest == manifest.summary.tree_digest);
        if same_tree {
            // Objects staging wrote are kept (the operation completes): flush them first, as
            // any object the store keeps after a completed operation was.
            if staged.stats.objects_written > 0 {
                root::sync_filesystem(&staging_dir)?;
            }
            root::remove_tree(&staging_dir)?;
            return reactivate(session, options, previous.as_ref())
                .map(|action| report(action, archive_digests, None, None));
        }
        let refusal = if !options.force {
            Some(Error::ReleaseExists { version: version.to_string() })
        } else if previous.as_ref() == Some(version) {
            Some(Error::ReplaceCurrent { version: version.to_string() })
        } else {
            None
        };
        if let Some(refusal) = refusal {
            root::remove_tree(&staging_dir)?;
            return Err(refusal);
        }
    }

    stop_point(options, &staging_dir, "after staging")?;
    if let Some(command) = &options.validate {
        let env = hook_env(root, previous.as_ref(), version, &staging_dir, &options.activation);
        let outcome =
            hooks::run("validate", command, &staging_dir, &env, options.activation.hook_timeout, &session.log)?;
        if !outcome.success {
            root::remove_tree(&staging_dir)?;
            return Err(Error::ValidateFailed {
                version: version.to_string(),
                reason: outcome.summary(),
                output: outcome.tail,
            });
        }
    }

    stop_point(options, &staging_dir, "after the validate hook")?;
    // Make the tree durable before anything refers to it, then make it appear in one rename.
    root::sync_filesystem(&staging_dir)?;
    killpoint::reached("synced");
    if exists {
        session.log.line(&format!("replacing release {version} (--force)"));
        session.remove_release(version)?;
    }
    root::write_atomic(&root.manifest_path(version), &serde_json::to_vec(&manifest).expect("manifest serialises"))?;
    killpoint::reached("manifest-written");
    for (sha256, listing) in &staged.listings {
        // Only an optimisation for the next deploy: a failure costs that deploy an unpack.
        if let Err(e) = root.save_layer_listing(sha256, listing) {
            session.log.line(&format!("could not keep the listing of layer {sha256}: {e}"));
        }
    }
    for (sha256, records) in &frame_records {
        if let Err(e) = root.save_frame_records(sha256, records) {
            session.log.line(&format!("could not keep the frames of layer {sha256}: {e}"));
        }
    }
    fs_err::rename(&staging_dir, root.release_dir(version))?;
    root::sync_dir(&root.releases_dir())?;
    killpoint::reached("renamed");

    activate(session, version, "deploy", &options.activation)?;
    let pruned = prune_after(session, options.keep);
    drop(downloads);
    Ok(report(DeployAction::Deployed, archive_digests, Some(staged.stats), pruned))
}

enum Staging {
    /// The staged tree, and the frames of its seekable archives that a later deploy may replay.
    Staged(crate::stage::StagedTree, Vec<(String, Vec<FrameRecord>)>),
    NotSelfContained {
        archive: PathBuf,
        reason: String,
    },
}

/// Stages every layer in order: an archive staged before from its listing, a seekable archive
/// frame by frame when `framed` and at least a quarter of it is made of frames staged before
/// (see [`Stager::add_framed_layer`]), any other as one stream.
#[allow(clippy::too_many_arguments)]
fn stage_layers(
    root: &ReleaseRoot,
    store: &crate::store::ContentStore,
    staging_dir: &Path,
    archives: &[(PathBuf, Option<String>)],
    options: &DeployOptions,
    known: &std::cell::OnceCell<HashMap<String, FrameRecord>>,
    framed: bool,
    progress: &dyn Progress,
) -> Result<Staging> {
    let mut stager = Stager::create(store, staging_dir.to_owned(), options.limits, options.copy)?;
    let mut records = Vec::new();
    let count = archives.len();
    for (index, ((path, known_sha), layer)) in archives.iter().zip(&options.layers).enumerate() {
        // An archive staged before is staged again from its listing and the store, without
        // unpacking it (nor reading it when the caller verified it).
        if let Some(expected) = &layer.sha256
            && let Some(listing) = root.layer_listing(expected)
            && crate::stage::listing_is_replayable(&listing)
        {
            if !options.sha256_verified && known_sha.is_none() {
                check_digest(expected, &digest::sha256_file(path)?, path)?;
            }
            stager.replay_layer(expected, &listing)?;
            continue;
        }
        if let Some(fetched) = &layer.frames {
            let sha256 = layer.sha256.clone().expect("fetched frames come with their archive's sha256");
            let known = known.get_or_init(|| root.frame_records());
            let frames = stage_fetched(&mut stager, path, fetched, &sha256, options, known, progress)
                .map_err(|reason| Error::FramesUnusable { sha256: sha256.clone(), reason })?;
            records.push((sha256, frames));
            continue;
        }
        let mut file = fs_err::File::open(path)?;
        let len = file.metadata()?.len();
        let what = if count == 1 { "unpacking".to_owned() } else { format!("unpacking layer {}/{count}", index + 1) };
        progress.start(&what, Some(len));
        // A seekable archive of which the host holds frames is staged frame by frame; only a
        // .tar.zst has frames to note.
        // An archive of one frame has nothing to replay: the records are not even read.
        let zstd = is_zstd(file.file_mut())?;
        let table = match zstd && framed {
            true => crate::archive::FrameTable::read(file.file_mut(), len)?.filter(|table| table.frames.len() > 1),
            false => None,
        };
        let framed_sha = match table {
            Some(table) if !known.get_or_init(|| root.frame_records()).is_empty() => {
                let known = known.get().expect("read just above");
                stage_framed(&mut stager, &mut file, path, &table, layer, known_sha, options, known, progress)?
            }
            _ => None,
        };
        let sha256 = match framed_sha {
            Some(FramedStaging::Staged(sha256, frames)) => {
                records.push((sha256.clone(), frames));
                sha256
            }
            Some(FramedStaging::NotSelfContained(reason)) => {
                progress.finish();
                return Ok(Staging::NotSelfContained { archive: path.clone(), reason });
            }
            None if zstd => {
                file.rewind()?;
                let (sha256, frames) = stager.add_layer_noting_frames(&mut file, progress)?;
                records.push((sha256.clone(), frames));
                sha256
            }
            None => {
                file.rewind()?;
                stager.add_layer(&mut file, progress)?
            }
        };
        progress.finish();
        if let Some(expected) = &layer.sha256 {
            check_digest(expected, &sha256, path)?;
        }
    }
    Ok(Staging::Staged(stager.finish()?, records))
}

fn is_zstd(file: &mut std::fs::File) -> Result<bool> {
    let mut head = [0u8; 4];
    file.rewind()?;
    let read = file.read(&mut head)?;
    Ok(read == 4 && crate::archive::Compression::sniff(&head).ok() == Some(crate::archive::Compression::Zstd))
}

/// What [`stage_framed`] did: staged the archive (its sha256, and its frames a later deploy may
/// replay), or found a frame that does not stand on its own.
enum FramedStaging {
    Staged(String, Vec<FrameRecord>),
    NotSelfContained(String),
}

/// Stages a seekable archive frame by frame ([`Stager::add_framed_layer`]) when at least a
/// quarter of its content is in frames staged before; `None` when it is not worth it. The
/// archive's own sha256, when the caller does not vouch for it, is computed on another thread
/// meanwhile.
#[allow(clippy::too_many_arguments)]
fn stage_framed(
    stager: &mut Stager<'_>,
    file: &mut fs_err::File,
    path: &Path,
    table: &crate::archive::FrameTable,
    layer: &Layer,
    known_sha: &Option<String>,
    options: &DeployOptions,
    known: &HashMap<String, FrameRecord>,
    progress: &dyn Progress,
) -> Result<Option<FramedStaging>> {
    if table.decoded_len() > stream_bound(&options.limits) {
        return Ok(None);
    }
    // Every read of the archive goes through this one open file, so all of them see the same
    // file even if another is renamed over its path meanwhile.
    let shas = hash_frames(file.file(), table)?;
    let last = table.frames.len().saturating_sub(1);
    let replayable: u64 = table.frames[..last]
        .iter()
        .zip(&shas)
        .filter(|(frame, sha)| known.get(*sha).is_some_and(|record| record.decoded == frame.decoded))
        .map(|(frame, _)| frame.decoded)
        .sum();
    if replayable == 0 || replayable.saturating_mul(4) < table.decoded_len() {
        return Ok(None);
    }
    let verified = known_sha.clone().or(layer.sha256.clone().filter(|_| options.sha256_verified));
    let whole = file.file().try_clone()?;
    std::thread::scope(|scope| {
        let hashing = verified.is_none().then(|| scope.spawn(move || sha256_at(&whole)));
        let staged = stager.add_framed_layer(file.file_mut(), table, &shas, known, progress);
        let archive_sha = match (verified, hashing) {
            (Some(sha256), _) => sha256,
            (None, Some(hashing)) => hashing.join().expect("the hashing thread does not panic")?,
            (None, None) => unreachable!("hashed when not verified"),
        };
        if let Some(expected) = &layer.sha256 {
            check_digest(expected, &archive_sha, path)?;
        }
        Ok(Some(match staged? {
            Framed::Staged { frames } => {
                stager.finish_framed_layer(&archive_sha, true);
                FramedStaging::Staged(archive_sha, frames)
            }
            Framed::NotSelfContained { reason } => FramedStaging::NotSelfContained(reason),
        }))
    })
}

/// The most content a table may declare: what the stream's limits allow. Every frame decoded is
/// checked to decode to exactly what the table says, and every frame replayed to have the length
/// its record has.
fn stream_bound(limits: &Limits) -> u64 {
    limits
        .max_bytes
        .saturating_add(crate::archive::ENTRY_ALLOWANCE.saturating_mul(limits.max_files))
        .saturating_add(crate::archive::TRAILING_ALLOWANCE)
}

/// Stages a layer from fetched frames and frame records ([`Stager::add_framed_layer`]); the
/// reason when that cannot be done, for the caller to fetch the whole archive instead.
fn stage_fetched(
    stager: &mut Stager<'_>,
    path: &Path,
    fetched: &FetchedFrames,
    sha256: &str,
    options: &DeployOptions,
    known: &HashMap<String, FrameRecord>,
    progress: &dyn Progress,
) -> std::result::Result<Vec<FrameRecord>, String> {
    if fetched.table.decoded_len() > stream_bound(&options.limits) {
        return Err(format!("its frames declare {} bytes of content, over the limits", fetched.table.decoded_len()));
    }
    let mut file = fs_err::File::open(path).map_err(|e| e.to_string())?;
    progress.start("staging fetched frames", Some(fetched.table.frames.iter().map(|f| f.compressed).sum()));
    let staged = stager.add_framed_layer(file.file_mut(), &fetched.table, &fetched.shas, known, progress);
    progress.finish();
    match staged {
        Ok(Framed::Staged { frames }) => {
            // No listing: the archive's digest is vouched for by the index, not hashed here,
            // so a later deploy (one that requires signatures, say) must not take it for the
            // archive. The frame records, keyed by bytes hashed here, make the next fetch small.
            stager.finish_framed_layer(sha256, false);
            Ok(frames)
        }
        Ok(Framed::NotSelfContained { reason }) => Err(reason),
        Err(e) => Err(e.to_string()),
    }
}

/// The sha256 of each frame's compressed bytes, read at their offsets (the file's position is
/// left alone).
fn hash_frames(file: &std::fs::File, table: &crate::archive::FrameTable) -> Result<Vec<String>> {
    table.frames.iter().map(|frame| Ok(digest::sha256_range(file, frame.offset, frame.compressed)?)).collect()
}

/// The sha256 of the whole file, read at offsets.
fn sha256_at(file: &std::fs::File) -> Result<String> {
    Ok(digest::sha256_range(file, 0, file.metadata()?.len())?)
}

/// Ends the deploy here if it was asked to stop: the staged tree goes, nothing else changed.
fn stop_point(options: &DeployOptions, staging_dir: &Path, at: &'static str) -> Result<()> {
    if options.stop.as_ref().is_some_and(|stop| stop.load(std::sync::atomic::Ordering::SeqCst)) {
        root::remove_tree(staging_dir)?;
        return Err(Error::Stopped { version: options.version.to_string(), at });
    }
    Ok(())
}

fn reactivate(session: &Session, options: &DeployOptions, previous: Option<&VersionLabel>) -> Result<DeployAction> {
    if previous == Some(&options.version) {
        let history = session.root.read_history()?;
        let newest = history.activations.iter().rev().find(|a| a.version == options.version);
        if newest.is_none_or(|a| a.outcome == Outcome::Good) {
            session.log.line(&format!("{} is already the current release", options.version));
            return Ok(DeployAction::AlreadyActive);
        }
        // Its activation was cut short (a kill between the switch and the checks): run the hooks
        // and the health check now, falling back to the release that was good before it.
        let fallback = history.previous_good(Some(&options.version), |v| session.root.release_dir(v).is_dir());
        session.log.line(&format!(
            "{} is current but its activation did not finish; running its checks again",
            options.version
        ));
        activate_from(session, &options.version, fallback.as_ref(), "deploy", &options.activation)?;
        return Ok(DeployAction::Reactivated);
    }
    session.log.line(&format!("{} exists with the same content; activating it again", options.version));
    activate(session, &options.version, "deploy", &options.activation)?;
    Ok(DeployAction::Reactivated)
}

/// Prunes after a successful activation. A failure here does not undo the deploy: it is logged
/// and the next prune tries again.
fn prune_after(session: &Session, keep: usize) -> Option<PruneReport> {
    match prune::prune_in(session, keep) {
        Ok(report) => Some(report),
        Err(e) => {
            session.log.line(&format!("prune after deploy failed: {e}"));
            None
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RollbackReport {
    pub from: Option<VersionLabel>,
    pub to: VersionLabel,
    /// False when the target was already current.
    pub switched: bool,
}

/// Activates `target`, or the previous good release, with the same hooks and health check as a
/// deploy.
pub fn rollback(
    root: &ReleaseRoot,
    target: Option<&VersionLabel>,
    options: &ActivationOptions,
    lock_timeout: Duration,
) -> Result<RollbackReport> {
    root.require()?;
    let session = root.begin("rollback", lock_timeout)?;
    let current = root.current();
    let target = match target {
        Some(version) if root.release_dir(version).is_dir() => version.clone(),
        Some(version) => {
            let available = root.list()?.into_iter().map(|r| r.version.to_string()).collect();
            session.log.line(&format!("rollback to {version}: release not found"));
            return Err(Error::ReleaseNotFound { version: version.to_string(), available });
        }
        None => root
            .read_history()?
            .previous_good(current.as_ref(), |v| root.release_dir(v).is_dir())
            .ok_or(Error::NoPreviousRelease)?,
    };
    if current.as_ref() == Some(&target) {
        session.complete();
        session.log.line(&format!("rollback: {target} is already the current release"));
        return Ok(RollbackReport { from: current, to: target, switched: false });
    }
    session
        .log
        .line(&format!("rollback: {} -> {target}", current.as_ref().map_or("(none)".to_owned(), |v| v.to_string())));
    match activate(&session, &target, "rollback", options) {
        Ok(()) => {
            session.complete();
            session.log.line(&format!("rollback: {target} is active"));
            Ok(RollbackReport { from: current, to: target, switched: true })
        }
        Err(e) => {
            session.log.line(&format!("rollback: failed: {e}"));
            Err(e)
        }
    }
}

/// Switches `current` to `target`, runs the post-activate hook and the health check, and on a
/// failure switches back to what was current before (running its post-activate hook again).
fn activate(session: &Session, target: &VersionLabel, action: &str, options: &ActivationOptions) -> Result<()> {
    activate_from(session, target, session.root.current().as_ref(), action, options)
}

/// [`activate`], switching back to `previous` on a failure.
fn activate_from(
    session: &Session,
    target: &VersionLabel,
    previous: Option<&VersionLabel>,
    action: &str,
    options: &ActivationOptions,
) -> Result<()> {
    let root = &session.root;
    let previous = previous.cloned();
    let mut history = root.read_history()?;
    history.push(target, action);
    session.save_history_pending(&history)?;
    killpoint::reached("activation-recorded");
    session.switch_current(Some(target))?;
    session.log.line(&format!(
        "switched current: {} -> {target}",
        previous.as_ref().map_or("(none)".to_owned(), |v| v.to_string())
    ));
    killpoint::reached("switched");

    let failure = check_activation(session, previous.as_ref(), target, options)?;
    let Some(CheckFailure { reason, output }) = failure else {
        history.settle(Outcome::Good);
        session.save_history(&history)?;
        killpoint::reached("activated");
        return Ok(());
    };

    history.settle(Outcome::Failed { reason: reason.clone() });
    session.save_history(&history)?;
    session.switch_current(previous.as_ref())?;
    let outcome = match &previous {
        Some(previous) => {
            session.log.line(&format!("switched back: {target} -> {previous}"));
            history.push(previous, "switch-back");
            let hook = match &options.post_activate {
                Some(command) => {
                    let env = hook_env(root, Some(target), previous, &root.release_dir(previous), options);
                    Some(hooks::run(
                        "post-activate",
                        command,
                        &root.release_dir(previous),
                        &env,
                        options.hook_timeout,
                        &session.log,
                    )?)
                }
                None => None,
            };
            match hook {
                Some(hook) if !hook.success => {
                    history.settle(Outcome::Failed { reason: format!("post-activate hook {}", hook.summary()) });
                    format!("switched back to {previous}, but its post-activate hook {}", hook.summary())
                }
                _ => {
                    history.settle(Outcome::Good);
                    format!("switched back to {previous}")
                }
            }
        }
        None => {
            session.log.line("no previous release: removed `current`");
            "there was no previous release, so `current` was removed".to_owned()
        }
    };
    session.save_history(&history)?;
    Err(Error::ActivationFailed { version: target.to_string(), reason, outcome, output })
}

/// Runs the post-activate hook and the health check; `Some(failure)` when either fails.
fn check_activation(
    session: &Session,
    previous: Option<&VersionLabel>,
    target: &VersionLabel,
    options: &ActivationOptions,
) -> Result<Option<CheckFailure>> {
    let root = &session.root;
    let release_dir = root.release_dir(target);
    let env = hook_env(root, previous, target, &release_dir, options);
    if let Some(command) = &options.post_activate {
        let outcome = hooks::run("post-activate", command, &release_dir, &env, options.hook_timeout, &session.log)?;
        if !outcome.success {
            return Ok(Some(outcome.failure("post-activate hook")));
        }
    }
    if let Some(check) = &options.health
        && let Err(failure) = hooks::wait_healthy(check, &release_dir, &env, options.health_timeout, &session.log)?
    {
        return Ok(Some(failure));
    }
    Ok(None)
}

/// The environment every hook gets (seed 001's contract, plus depot's own).
fn hook_env(
    root: &ReleaseRoot,
    old: Option<&VersionLabel>,
    new: &VersionLabel,
    new_root: &Path,
    options: &ActivationOptions,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("OLDID".into(), old.map(|v| v.to_string()).unwrap_or_default()),
        ("OLDROOT".into(), old.map(|v| root.release_dir(v).display().to_string()).unwrap_or_default()),
        ("NEWID".into(), new.to_string()),
        ("NEWROOT".into(), new_root.display().to_string()),
        ("DEPOT_VERSION".into(), new.to_string()),
        ("DEPOT_ROOT".into(), root.path().display().to_string()),
    ];
    env.extend(options.release_env.get(new).into_iter().flatten().cloned());
    env
}

fn check_digest(expected: &str, actual: &str, path: &Path) -> Result<()> {
    if expected != actual {
        return Err(Error::DigestMismatch {
            what: path.display().to_string(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        });
    }
    Ok(())
}

fn describe(source: &ArtifactSource) -> String {
    match source {
        ArtifactSource::Path(path) => path.display().to_string(),
        ArtifactSource::Url(url) => url.clone(),
    }
}
