//! `depot verify`: re-hashes a release against its manifest.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;

use crate::digest::sha256_file;
use crate::manifest::EntryKind;
use crate::root::ReleaseRoot;
use crate::version::VersionLabel;
use crate::{Error, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub version: VersionLabel,
    pub entries_checked: usize,
    pub problems: Vec<Problem>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub problem: String,
}

pub fn verify(root: &ReleaseRoot, version: &VersionLabel) -> Result<VerifyReport> {
    let dir = root.release_dir(version);
    if !dir.is_dir() {
        let available = root.list()?.into_iter().map(|r| r.version.to_string()).collect();
        return Err(Error::ReleaseNotFound { version: version.to_string(), available });
    }
    let manifest = root.read_manifest(version)?;
    let mut problems = Vec::new();
    let mut problem = |path: &str, text: String| problems.push(Problem { path: path.to_owned(), problem: text });
    for entry in &manifest.entries {
        let path = dir.join(&entry.path);
        let metadata = match fs_err::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                problem(&entry.path, "missing".into());
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match &entry.kind {
            EntryKind::File { mode, sha256, size } => {
                if !metadata.is_file() {
                    problem(&entry.path, "is no longer a regular file".into());
                } else if metadata.len() != *size || sha256_file(&path)? != *sha256 {
                    problem(&entry.path, "modified (content differs from the manifest)".into());
                } else if metadata.permissions().mode() & 0o7777 != *mode {
                    problem(
                        &entry.path,
                        format!("mode changed from {mode:o} to {:o}", metadata.permissions().mode() & 0o7777),
                    );
                }
            }
            EntryKind::Dir { .. } if !metadata.is_dir() => problem(&entry.path, "is no longer a directory".into()),
            EntryKind::Dir { .. } => {}
            EntryKind::Symlink { target } => match fs_err::read_link(&path) {
                Ok(actual) if actual.as_os_str() == target.as_str() => {}
                Ok(actual) => {
                    problem(&entry.path, format!("symlink now points to `{}`, not `{target}`", actual.display()))
                }
                Err(_) => problem(&entry.path, "is no longer a symlink".into()),
            },
        }
    }
    let known: HashSet<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
    for entry in walkdir::WalkDir::new(&dir).min_depth(1).follow_links(false) {
        let entry = entry.map_err(|e| io::Error::other(e.to_string()))?;
        let rel = entry.path().strip_prefix(&dir).expect("below the release").to_string_lossy().into_owned();
        if !known.contains(rel.as_str()) {
            problem(&rel, "not in the manifest (added after deploy)".into());
        }
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(VerifyReport { version: version.clone(), entries_checked: manifest.entries.len(), problems })
}
