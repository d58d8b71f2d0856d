//! The release root `R`: its layout, the lock that serialises operations on it, the recovery that
//! cleans what an interrupted operation left, the activation history and the release log.
//!
//! ```text
//! R/releases/<version>/      immutable release trees (files are read-only hardlinks of the store)
//! R/releases/current         relative symlink to the active release
//! R/config/  R/data/         persistent, never touched by depot
//! R/logs/releases.log        one timestamped line per operation step and result
//! R/.depot/store/            content store (objects/, tmp/)
//! R/.depot/manifests/        one manifest per release
//! R/.depot/history.json      activation history
//! R/.depot/lock              the lock
//! R/.depot/tmp/              downloads in progress
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::manifest::{Manifest, ManifestSummary};
use crate::store::ContentStore;
use crate::version::{VersionLabel, compare_labels};
use crate::{Error, Result, killpoint};

pub const CURRENT: &str = "current";
const STAGING_PREFIX: &str = ".staging-";
const TRASH_PREFIX: &str = ".trash-";
const LINK_TEMP_PREFIX: &str = ".current-";
const ATOMIC_TEMP_PREFIX: &str = ".tmp-";

#[derive(Debug, Clone)]
pub struct ReleaseRoot {
    root: PathBuf,
}

impl ReleaseRoot {
    /// The root at `path`, made absolute. Nothing is created until [`ReleaseRoot::begin`].
    pub fn new(path: &Path) -> Result<Self> {
        Ok(ReleaseRoot { root: std::path::absolute(path)? })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
    pub fn releases_dir(&self) -> PathBuf {
        self.root.join("releases")
    }
    pub fn release_dir(&self, version: &VersionLabel) -> PathBuf {
        self.releases_dir().join(version.as_str())
    }
    pub fn current_link(&self) -> PathBuf {
        self.releases_dir().join(CURRENT)
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("logs").join("releases.log")
    }
    fn depot_dir(&self) -> PathBuf {
        self.root.join(".depot")
    }
    pub fn manifest_path(&self, version: &VersionLabel) -> PathBuf {
        self.depot_dir().join("manifests").join(format!("{version}.json"))
    }
    pub fn tmp_dir(&self) -> PathBuf {
        self.depot_dir().join("tmp")
    }
    fn listings_dir(&self) -> PathBuf {
        self.depot_dir().join("layers")
    }
    fn listing_path(&self, archive_sha256: &str) -> PathBuf {
        self.listings_dir().join(format!("{archive_sha256}.json"))
    }
    fn history_path(&self) -> PathBuf {
        self.depot_dir().join("history.json")
    }
    pub fn store(&self) -> ContentStore {
        ContentStore::new(&self.depot_dir().join("store"))
    }

    /// Whether the root has been initialised by a depot command.
    pub fn exists(&self) -> bool {
        self.depot_dir().is_dir()
    }

    /// Refuses a root that does not exist, or that no depot command has initialised, for the
    /// verbs that work on releases already there (they must not create one).
    pub fn require(&self) -> Result<()> {
        if !self.root.exists() {
            return Err(Error::NoRoot { path: self.root.clone() });
        }
        if !self.exists() {
            return Err(Error::NotARoot { path: self.root.clone() });
        }
        Ok(())
    }

    /// Creates the layout if needed, takes the lock (waiting up to `lock_timeout`), and cleans
    /// what an interrupted operation left behind. Everything that changes a root goes through the
    /// returned session.
    pub fn begin(&self, operation: &'static str, lock_timeout: Duration) -> Result<Session> {
        for dir in [
            self.releases_dir(),
            self.root.join("config"),
            self.root.join("data"),
            self.root.join("logs"),
            self.depot_dir().join("manifests"),
            self.listings_dir(),
            self.tmp_dir(),
        ] {
            fs_err::create_dir_all(&dir)?;
        }
        self.store().create_dirs()?;
        let lock = RootLock::acquire(&self.depot_dir().join("lock"), lock_timeout)?;
        let log = ReleaseLog::open(&self.log_file(), operation)?;
        let session = Session { root: self.clone(), log, _lock: lock };
        session.recover()?;
        Ok(session)
    }

    /// Present while an operation that writes store objects runs; left behind by one that did
    /// not finish cleanly.
    fn unfinished_marker(&self) -> PathBuf {
        self.depot_dir().join("unfinished")
    }

    /// The store objects that some release's manifest references, by their store names.
    fn manifest_objects(&self) -> Result<std::collections::HashSet<String>> {
        let mut live = std::collections::HashSet::new();
        for version in self.release_versions()? {
            if let Ok(manifest) = self.read_manifest(&version) {
                live.extend(manifest.objects().map(|(sha256, mode)| ContentStore::object_name(sha256, mode)));
            }
        }
        Ok(live)
    }

    /// The store objects that some release's manifest references, or a kept layer listing (a
    /// file a later layer replaced is in the listing, not the manifest), by their store names.
    pub fn referenced_objects(&self) -> Result<std::collections::HashSet<String>> {
        let mut live = self.manifest_objects()?;
        if let Ok(entries) = fs_err::read_dir(self.listings_dir()) {
            for entry in entries {
                let Ok(text) = fs_err::read(entry?.path()) else { continue };
                let Ok(listing) = serde_json::from_slice::<Vec<crate::manifest::ManifestEntry>>(&text) else {
                    continue;
                };
                live.extend(listing.iter().filter_map(|entry| match &entry.kind {
                    crate::manifest::EntryKind::File { mode, sha256, .. } => {
                        Some(ContentStore::object_name(sha256, *mode))
                    }
                    _ => None,
                }));
            }
        }
        Ok(live)
    }

    /// The listing of an archive staged before (what unpacking it applied, in order), if one is
    /// kept and the store still holds every object it names; None means: unpack the archive.
    pub fn layer_listing(&self, archive_sha256: &str) -> Option<Vec<crate::manifest::ManifestEntry>> {
        if archive_sha256.len() != 64 || !archive_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let text = fs_err::read(self.listing_path(archive_sha256)).ok()?;
        let listing: Vec<crate::manifest::ManifestEntry> = serde_json::from_slice(&text).ok()?;
        let store = self.store();
        let mut paths = std::collections::HashSet::new();
        // Anything a listing depot wrote would not hold means: unpack the archive instead.
        let usable = listing.iter().all(|entry| {
            well_formed(entry)
                && paths.insert(entry.path.as_str())
                && match &entry.kind {
                    crate::manifest::EntryKind::File { mode, sha256, .. } => store.object_path(sha256, *mode).is_file(),
                    _ => true,
                }
        });
        usable.then_some(listing)
    }

    /// Keeps the listing of an archive just staged, for the next deploy that uses it. Written
    /// after the release's manifest: every object it names was flushed with the tree.
    pub fn save_layer_listing(&self, archive_sha256: &str, listing: &[crate::manifest::ManifestEntry]) -> Result<()> {
        write_atomic(&self.listing_path(archive_sha256), &serde_json::to_vec(listing).expect("listings serialise"))
    }

    fn frames_path(&self, archive_sha256: &str) -> PathBuf {
        self.listings_dir().join(format!("{archive_sha256}.frames.json"))
    }

    /// Keeps the frames of a seekable archive just staged that a later deploy may replay
    /// ([`crate::stage::FrameRecord`]), as [`ReleaseRoot::save_layer_listing`] keeps listings.
    pub fn save_frame_records(&self, archive_sha256: &str, records: &[crate::stage::FrameRecord]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        write_atomic(&self.frames_path(archive_sha256), &serde_json::to_vec(records).expect("records serialise"))
    }

    /// Every kept frame record, by the sha256 of the frame's compressed bytes. A record that
    /// is not what depot writes is left out (its frame is decoded instead).
    pub fn frame_records(&self) -> HashMap<String, crate::stage::FrameRecord> {
        let mut known = HashMap::new();
        let Ok(entries) = fs_err::read_dir(self.listings_dir()) else { return known };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().ends_with(".frames.json") {
                continue;
            }
            let Ok(text) = fs_err::read(entry.path()) else { continue };
            let Ok(records) = serde_json::from_slice::<Vec<crate::stage::FrameRecord>>(&text) else { continue };
            for record in records {
                if record.entries.iter().all(well_formed) {
                    known.insert(record.sha256.clone(), record);
                }
            }
        }
        known
    }

    /// Removes the listings (and anything else in their directory) of archives no release's
    /// manifest names. Listings only spare work: an entry that cannot be removed is left.
    pub fn sweep_layer_listings(&self) -> Result<u64> {
        let mut live = std::collections::HashSet::new();
        for version in self.release_versions()? {
            // The summary alone: the entries are skipped, not built.
            if let Ok(summary) = crate::manifest::Manifest::read_summary(&self.manifest_path(&version)) {
                for archive in summary.archives {
                    live.insert(format!("{archive}.frames.json"));
                    live.insert(format!("{archive}.json"));
                }
            }
        }
        let mut removed = 0;
        if let Ok(entries) = fs_err::read_dir(self.listings_dir()) {
            for entry in entries.flatten() {
                if !live.contains(&*entry.file_name().to_string_lossy()) && remove_tree(&entry.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// The active release, if `current` exists.
    pub fn current(&self) -> Option<VersionLabel> {
        let target = std::fs::read_link(self.current_link()).ok()?;
        VersionLabel::parse(target.file_name()?.to_str()?).ok()
    }

    /// The release directories, in no particular order (hidden and `current` left out).
    pub fn release_versions(&self) -> Result<Vec<VersionLabel>> {
        let dir = self.releases_dir();
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut versions = Vec::new();
        for entry in fs_err::read_dir(&dir)? {
            let entry = entry?;
            if !entry.file_type()?.is_dir() {
                continue;
            }
            if let Some(version) = entry.file_name().to_str().and_then(|n| VersionLabel::parse(n).ok()) {
                versions.push(version);
            }
        }
        Ok(versions)
    }

    pub fn read_manifest(&self, version: &VersionLabel) -> Result<Manifest> {
        Manifest::read(&self.manifest_path(version))
    }

    pub fn read_history(&self) -> Result<History> {
        let path = self.history_path();
        match fs_err::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|e| Error::State { path, reason: e.to_string() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(History::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every release with its status, oldest first (semver order where versions are semver).
    pub fn list(&self) -> Result<Vec<ReleaseInfo>> {
        let history = self.read_history()?;
        let current = self.current();
        let mut releases = Vec::new();
        for version in self.release_versions()? {
            let summary: Option<ManifestSummary> = Manifest::read_summary(&self.manifest_path(&version)).ok();
            let created_at = match &summary {
                Some(summary) => summary.created_at,
                None => fs_err::metadata(self.release_dir(&version))?.modified().map(DateTime::<Utc>::from)?,
            };
            let status = history.status(&version, current.as_ref());
            releases.push(ReleaseInfo {
                current: current.as_ref() == Some(&version),
                status,
                created_at,
                files: summary.as_ref().map(|s| s.files),
                bytes: summary.as_ref().map(|s| s.bytes),
                version,
            });
        }
        releases.sort_by(|a, b| {
            compare_labels(a.version.as_str(), b.version.as_str(), || {
                a.created_at.cmp(&b.created_at).then_with(|| a.version.cmp(&b.version))
            })
        });
        Ok(releases)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ReleaseInfo {
    pub version: VersionLabel,
    pub current: bool,
    pub status: ReleaseStatus,
    pub created_at: DateTime<Utc>,
    pub files: Option<u64>,
    pub bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// `current` points at it.
    Active,
    /// Its last activation passed its hooks and health check.
    Good,
    /// Its last activation failed; depot switched away from it.
    Failed,
    /// Staged but never activated, or its activation was interrupted.
    Inactive,
}

impl std::fmt::Display for ReleaseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReleaseStatus::Active => "active",
            ReleaseStatus::Good => "good",
            ReleaseStatus::Failed => "failed",
            ReleaseStatus::Inactive => "inactive",
        })
    }
}

/// One operation's hold on a root: the lock, the log, and the steps that change the root.
pub struct Session {
    pub root: ReleaseRoot,
    pub log: ReleaseLog,
    _lock: RootLock,
}

impl Session {
    /// Must be called, durably, before the first store object is written: until
    /// [`Session::complete`], the next operation will distrust unreferenced objects.
    pub fn begin_object_writes(&self) -> Result<()> {
        write_atomic(&self.root.unfinished_marker(), b"objects may be unflushed\n")
    }

    /// Marks the operation as finished with everything it wrote flushed: the next one need not
    /// distrust the store.
    pub fn complete(&self) {
        let _ = std::fs::remove_file(self.root.unfinished_marker());
    }

    /// Removes leftovers of an interrupted operation: staging and trash directories, temporary
    /// symlinks and store files, downloads, manifests without a release. An activation that never
    /// finished is recorded as interrupted. After an operation that did not complete, store objects
    /// that no manifest references are deleted: they may have been written without being flushed
    /// (objects are flushed once, with the whole file system, before a manifest refers to them),
    /// so after a power cut they could hold anything under their digest's name.
    fn recover(&self) -> Result<()> {
        let root = &self.root;
        for entry in fs_err::read_dir(root.releases_dir())? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX) {
                self.log.line(&format!("recovery: removing leftover {name}"));
                remove_tree(&entry.path())?;
            } else if name.starts_with(LINK_TEMP_PREFIX) {
                fs_err::remove_file(entry.path())?;
            }
        }
        for entry in fs_err::read_dir(root.depot_dir())? {
            let entry = entry?;
            if entry.file_name().to_string_lossy().starts_with(ATOMIC_TEMP_PREFIX) {
                fs_err::remove_file(entry.path())?;
            }
        }
        root.store().clean_tmp()?;
        for entry in fs_err::read_dir(root.tmp_dir())? {
            remove_tree(&entry?.path())?;
        }
        for entry in fs_err::read_dir(root.depot_dir().join("manifests"))? {
            let path = entry?.path();
            let version = path.file_stem().and_then(|s| s.to_str()).and_then(|s| VersionLabel::parse(s).ok());
            let orphan = match (&version, path.extension().and_then(|e| e.to_str())) {
                (Some(version), Some("json")) => !root.release_dir(version).is_dir(),
                _ => true,
            };
            if orphan {
                fs_err::remove_file(&path)?;
            }
        }
        if root.unfinished_marker().exists() {
            // Only what manifests name was flushed for sure: an object a listing alone names may
            // have been written by the operation that did not finish. Such a listing is then
            // incomplete, and its archive is unpacked again.
            root.sweep_layer_listings()?;
            let (objects, bytes) = root.store().sweep(&root.manifest_objects()?)?;
            if objects > 0 {
                self.log.line(&format!("recovery: removed {objects} unreferenced store object(s), {bytes} bytes"));
            }
            remove_tree(&root.unfinished_marker())?;
        }
        let mut history = root.read_history()?;
        if history.interrupt_pending() {
            self.log.line("recovery: the last activation was interrupted");
            self.save_history(&history)?;
        }
        Ok(())
    }

    /// Writes the history atomically and durably.
    pub fn save_history(&self, history: &History) -> Result<()> {
        let data = serde_json::to_vec_pretty(history).expect("history serialises");
        write_atomic(&self.root.history_path(), &data)
    }

    /// Writes the history atomically, without waiting for the disk: for the `pending` record of an
    /// activation, which only recovery after a kill reads (a power cut may lose it; the outcome
    /// record that follows is durable).
    pub fn save_history_pending(&self, history: &History) -> Result<()> {
        let data = serde_json::to_vec_pretty(history).expect("history serialises");
        replace_file(&self.root.history_path(), &data)
    }

    /// A fresh, unique staging directory path inside `R/releases/`.
    pub fn staging_dir(&self, version: &VersionLabel) -> PathBuf {
        self.root.releases_dir().join(format!("{STAGING_PREFIX}{version}-{}", std::process::id()))
    }

    /// Makes a release directory disappear in one rename, then deletes it.
    pub fn remove_release(&self, version: &VersionLabel) -> Result<()> {
        let trash = self.root.releases_dir().join(format!("{TRASH_PREFIX}{version}-{}", std::process::id()));
        fs_err::rename(self.root.release_dir(version), &trash)?;
        sync_dir(&self.root.releases_dir())?;
        killpoint::reached("release-trashed");
        let manifest = self.root.manifest_path(version);
        if manifest.exists() {
            fs_err::remove_file(manifest)?;
        }
        remove_tree(&trash)
    }

    /// Points `current` at `version` atomically: a temporary symlink renamed over it, then the
    /// directory fsynced. `None` removes `current`.
    pub fn switch_current(&self, version: Option<&VersionLabel>) -> Result<()> {
        let releases = self.root.releases_dir();
        match version {
            Some(version) => {
                let temp = releases.join(format!("{LINK_TEMP_PREFIX}{}.tmp", std::process::id()));
                let _ = std::fs::remove_file(&temp);
                std::os::unix::fs::symlink(version.as_str(), &temp).map_err(|e| {
                    io::Error::new(e.kind(), format!("failed to create symlink {}: {e}", temp.display()))
                })?;
                killpoint::reached("symlink-created");
                fs_err::rename(&temp, self.root.current_link())?;
            }
            None => match fs_err::remove_file(self.root.current_link()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            },
        }
        sync_dir(&releases)
    }
}

/// Whether an entry of a kept listing or frame record is one depot would have written: a
/// normalised path, and for a file a mode staging gives and a sha256 in lowercase hex.
fn well_formed(entry: &crate::manifest::ManifestEntry) -> bool {
    let normal = matches!(crate::stage::normalize_entry_path(&entry.path), Ok(Some(p)) if p == entry.path);
    normal
        && match &entry.kind {
            crate::manifest::EntryKind::File { mode, sha256, .. } => {
                *mode == crate::stage::file_mode(*mode)
                    && sha256.len() == 64
                    && sha256.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            }
            _ => true,
        }
}

/// Deletes a tree whose files may be read-only.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(fs_err::remove_dir_all(path)?),
        Ok(_) => Ok(fs_err::remove_file(path)?),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io::Error::new(e.kind(), format!("failed to sync {}: {e}", dir.display())))?;
    Ok(())
}

/// Flushes everything written to the file system that holds `path` (one call instead of an
/// fsync per file).
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let dir = File::open(path)?;
    rustix::fs::syncfs(&dir).map_err(|e| io::Error::from_raw_os_error(e.raw_os_error()))?;
    Ok(())
}

/// Writes `path` through a temporary file, fsync and rename, then fsyncs the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_replacing(path, data, true)
}

/// Replaces `path` in one rename (readers see the old or the new content, never a mix), without
/// waiting for the disk.
pub fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    write_replacing(path, data, false)
}

fn write_replacing(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().expect("state files have a parent");
    let mut temp = tempfile::Builder::new().prefix(ATOMIC_TEMP_PREFIX).tempfile_in(dir)?;
    temp.write_all(data)?;
    if durable {
        temp.as_file().sync_all()?;
    }
    temp.persist(path)
        .map_err(|e| io::Error::new(e.error.kind(), format!("failed to write {}: {}", path.display(), e.error)))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The exclusive lock on a root, held for one operation.
struct RootLock {
    _file: File,
}

impl RootLock {
    fn acquire(path: &Path, timeout: Duration) -> Result<Self> {
        let mut file =
            fs_err::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path)?.into_parts().0;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {
                    if started.elapsed() >= timeout {
                        let holder = std::fs::read_to_string(path).unwrap_or_default();
                        let holder = if holder.trim().is_empty() {
                            "another process".to_owned()
                        } else {
                            holder.trim().to_owned()
                        };
                        return Err(Error::LockTimeout {
                            path: path.to_owned(),
                            holder,
                            waited_secs: timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e.into()),
            }
        }
        file.set_len(0)?;
        write!(file, "pid {}", std::process::id())?;
        Ok(RootLock { _file: file })
    }
}

/// `R/logs/releases.log`: one line per step, `2026-11-23T10:00:00Z [deploy] message`.
pub struct ReleaseLog {
    file: std::sync::Mutex<File>,
    operation: &'static str,
}

/// The most the release log's mode allows: the hooks' output it records may show secret values
/// (a hook that prints its environment), so it is created 0600, and an older log that others may
/// read is tightened to at most 0640 (a group given read access on purpose keeps it).
const LOG_MODE: u32 = 0o640;

impl ReleaseLog {
    fn open(path: &Path, operation: &'static str) -> Result<Self> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("failed to open {}: {e}", path.display())))?;
        let mode = file.metadata()?.permissions().mode() & 0o7777;
        let log = ReleaseLog { file: std::sync::Mutex::new(file), operation };
        if mode & !LOG_MODE != 0 {
            let tightened = mode & LOG_MODE;
            let file = log.file.lock().expect("log lock");
            let changed = file.set_permissions(std::fs::Permissions::from_mode(tightened));
            drop(file);
            log.line(&match changed {
                Ok(()) => format!(
                    "logs/releases.log was open to other users (mode {mode:04o}); changed to {tightened:04o}: \
                     it records the hooks' output, which may show secret values"
                ),
                Err(e) => format!("logs/releases.log is open to other users (mode {mode:04o}) and stays so: {e}"),
            });
        }
        Ok(log)
    }

    pub fn line(&self, message: &str) {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
        let mut text = String::new();
        for line in message.lines() {
            text.push_str(&format!("{now} [{}] {line}\n", self.operation));
        }
        // The log is a record, not a step: a full disk must not turn a deploy into a failure.
        let _ = self.file.lock().expect("log lock").write_all(text.as_bytes());
    }
}

/// The activation history of a root, newest last.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct History {
    pub activations: Vec<Activation>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Activation {
    pub at: DateTime<Utc>,
    pub version: VersionLabel,
    pub action: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum Outcome {
    Pending,
    Good,
    Failed { reason: String },
    Interrupted,
}

/// The history keeps the last `HISTORY_RECENT` activations, plus the newest activation of each of
/// the last `HISTORY_VERSIONS` versions seen, so that every kept release still has its status and
/// order. It is rewritten on every activation, so its size bounds the cost of a rollback.
const HISTORY_RECENT: usize = 64;
const HISTORY_VERSIONS: usize = 64;

impl History {
    pub fn push(&mut self, version: &VersionLabel, action: &str) {
        self.activations.push(Activation {
            at: Utc::now(),
            version: version.clone(),
            action: action.to_owned(),
            outcome: Outcome::Pending,
        });
        self.trim();
    }

    fn trim(&mut self) {
        let len = self.activations.len();
        if len <= HISTORY_RECENT {
            return;
        }
        let recent = len - HISTORY_RECENT;
        // Per version: whether its newest settled (good or failed) activation has been kept.
        let mut versions: std::collections::HashMap<&VersionLabel, bool> = std::collections::HashMap::new();
        let keep: Vec<bool> = (0..len)
            .rev()
            .map(|i| {
                let activation = &self.activations[i];
                let settled = matches!(activation.outcome, Outcome::Good | Outcome::Failed { .. });
                let tracked = versions.len();
                let needed = match versions.entry(&activation.version) {
                    std::collections::hash_map::Entry::Vacant(entry) if tracked < HISTORY_VERSIONS => {
                        entry.insert(settled);
                        true
                    }
                    std::collections::hash_map::Entry::Occupied(mut entry) if !*entry.get() && settled => {
                        entry.insert(true);
                        true
                    }
                    _ => false,
                };
                i >= recent || needed
            })
            .collect();
        let mut keep = keep.into_iter().rev();
        self.activations.retain(|_| keep.next().unwrap_or(false));
    }

    pub fn settle(&mut self, outcome: Outcome) {
        if let Some(last) = self.activations.last_mut() {
            last.outcome = outcome;
        }
    }

    fn interrupt_pending(&mut self) -> bool {
        match self.activations.last_mut() {
            Some(last) if last.outcome == Outcome::Pending => {
                last.outcome = Outcome::Interrupted;
                true
            }
            _ => false,
        }
    }

    fn last_settled(&self, version: &VersionLabel) -> Option<&Outcome> {
        self.activations
            .iter()
            .rev()
            .filter(|a| &a.version == version)
            .map(|a| &a.outcome)
            .find(|o| matches!(o, Outcome::Good | Outcome::Failed { .. }))
    }

    pub fn status(&self, version: &VersionLabel, current: Option<&VersionLabel>) -> ReleaseStatus {
        if current == Some(version) {
            return ReleaseStatus::Active;
        }
        match self.last_settled(version) {
            Some(Outcome::Good) => ReleaseStatus::Good,
            Some(Outcome::Failed { .. }) => ReleaseStatus::Failed,
            _ => ReleaseStatus::Inactive,
        }
    }

    /// The most recently activated release, other than `current`, whose last activation was good
    /// and that still exists.
    pub fn previous_good(
        &self,
        current: Option<&VersionLabel>,
        exists: impl Fn(&VersionLabel) -> bool,
    ) -> Option<VersionLabel> {
        self.activations
            .iter()
            .rev()
            .map(|a| &a.version)
            .filter(|v| Some(*v) != current)
            .find(|v| self.last_settled(v) == Some(&Outcome::Good) && exists(v))
            .cloned()
    }

    /// When a release was last activated, for pruning the least recently used first.
    pub fn last_activated(&self, version: &VersionLabel) -> Option<DateTime<Utc>> {
        self.activations.iter().rev().find(|a| &a.version == version).map(|a| a.at)
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    fn version(label: &str) -> VersionLabel {
        VersionLabel::parse(label).unwrap()
    }

    #[test]
    fn the_history_stays_bounded_and_keeps_every_release_status() {
        let mut history = History::default();
        history.push(&version("0.9.0"), "deploy");
        history.settle(Outcome::Failed { reason: "health".to_owned() });
        history.push(&version("1.0.0"), "deploy");
        history.settle(Outcome::Good);
        history.push(&version("1.0.0"), "rollback");
        history.settle(Outcome::Interrupted);
        for n in 0..1000 {
            let label = if n % 2 == 0 { "2.0.0" } else { "2.1.0" };
            history.push(&version(label), "rollback");
            history.settle(Outcome::Good);
        }
        assert!(history.activations.len() <= HISTORY_RECENT + HISTORY_VERSIONS, "{}", history.activations.len());
        assert_eq!(history.status(&version("0.9.0"), None), ReleaseStatus::Failed);
        assert_eq!(history.status(&version("1.0.0"), None), ReleaseStatus::Good, "its last settled outcome is kept");
        assert_eq!(history.previous_good(Some(&version("2.1.0")), |_| true), Some(version("2.0.0")));
        assert_eq!(history.previous_good(Some(&version("2.1.0")), |v| v.as_str() != "2.0.0"), Some(version("1.0.0")));
    }
}
