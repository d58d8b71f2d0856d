//! The manifest of a release: every path in its tree with its kind, mode and content digest.
//! Written to `R/.depot/manifests/<version>.json` before the release directory appears, so every
//! release directory has a manifest (`depot verify` compares the tree with it).

use std::path::Path;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::digest::to_hex;
use crate::version::VersionLabel;
use crate::{Error, Result};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    #[serde(flatten)]
    pub summary: ManifestSummary,
    pub entries: Vec<ManifestEntry>,
}

/// The fields of a manifest other than its entries, for listings that do not need every entry.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ManifestSummary {
    pub version: VersionLabel,
    pub created_at: DateTime<Utc>,
    /// sha256 of each archive the release was built from, in layer order.
    pub archives: Vec<String>,
    /// sha256 over the canonical listing of the tree: same files, same digest.
    pub tree_digest: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    #[serde(flatten)]
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum EntryKind {
    File { mode: u32, sha256: String, size: u64 },
    Dir { mode: u32 },
    Symlink { target: String },
}

impl Manifest {
    pub fn new(version: VersionLabel, archives: Vec<String>, entries: Vec<ManifestEntry>) -> Self {
        let (files, bytes) = entries.iter().fold((0, 0), |(files, bytes), entry| match &entry.kind {
            EntryKind::File { size, .. } => (files + 1, bytes + size),
            _ => (files, bytes),
        });
        let summary = ManifestSummary {
            version,
            created_at: Utc::now(),
            archives,
            tree_digest: tree_digest(&entries),
            files,
            bytes,
        };
        Manifest { summary, entries }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let data = fs_err::read(path)?;
        serde_json::from_slice(&data).map_err(|e| Error::State { path: path.to_owned(), reason: e.to_string() })
    }

    pub fn read_summary(path: &Path) -> Result<ManifestSummary> {
        let data = fs_err::read(path)?;
        serde_json::from_slice(&data).map_err(|e| Error::State { path: path.to_owned(), reason: e.to_string() })
    }

    /// The store objects this release's files are hardlinks of.
    pub fn objects(&self) -> impl Iterator<Item = (&str, u32)> {
        self.entries.iter().filter_map(|entry| match &entry.kind {
            EntryKind::File { mode, sha256, .. } => Some((sha256.as_str(), *mode)),
            _ => None,
        })
    }
}

/// sha256 over one canonical line per entry, in path order.
pub fn tree_digest(entries: &[ManifestEntry]) -> String {
    let mut sorted: Vec<&ManifestEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut hasher = Sha256::new();
    for entry in sorted {
        let line = match &entry.kind {
            EntryKind::File { mode, sha256, size } => format!("file {mode:o} {sha256} {size} {}\n", entry.path),
            EntryKind::Dir { mode } => format!("dir {mode:o} {}\n", entry.path),
            EntryKind::Symlink { target } => format!("symlink {} -> {target}\n", entry.path),
        };
        hasher.update(line.as_bytes());
    }
    to_hex(&hasher.finalize())
}
