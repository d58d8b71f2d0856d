//! Keep-N retention and the content store's garbage collection.

use std::time::Duration;

use crate::Result;
use crate::root::{ReleaseRoot, ReleaseStatus, Session};
use crate::version::VersionLabel;

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PruneReport {
    pub removed: Vec<VersionLabel>,
    pub kept: Vec<VersionLabel>,
    pub objects_removed: u64,
    pub bytes_freed: u64,
}

pub fn prune(root: &ReleaseRoot, keep: usize, lock_timeout: Duration) -> Result<PruneReport> {
    root.require()?;
    let session = root.begin("prune", lock_timeout)?;
    let report = prune_in(&session, keep)?;
    session.complete();
    Ok(report)
}

/// Removes releases beyond the `keep` most recently used, never the current release nor the
/// previous good one (the rollback target), failed releases first; then deletes the store
/// objects that no remaining release uses.
pub fn prune_in(session: &Session, keep: usize) -> Result<PruneReport> {
    let root = &session.root;
    let history = root.read_history()?;
    let releases = root.list()?;
    let current = root.current();
    let previous_good = history.previous_good(current.as_ref(), |v| root.release_dir(v).is_dir());
    let protected = |v: &VersionLabel| Some(v) == current.as_ref() || Some(v) == previous_good.as_ref();

    let mut candidates: Vec<_> = releases.iter().filter(|r| !protected(&r.version)).collect();
    candidates.sort_by_key(|r| {
        (r.status != ReleaseStatus::Failed, history.last_activated(&r.version).unwrap_or(r.created_at))
    });
    let excess = releases.len().saturating_sub(keep.max(1));
    let removed: Vec<VersionLabel> = candidates.iter().take(excess).map(|r| r.version.clone()).collect();
    for version in &removed {
        session.log.line(&format!("prune: removing release {version}"));
        session.remove_release(version)?;
    }
    let kept = releases.iter().map(|r| r.version.clone()).filter(|v| !removed.contains(v)).collect::<Vec<_>>();

    root.sweep_layer_listings()?;
    let (objects_removed, bytes_freed) = root.store().sweep(&root.referenced_objects()?)?;
    session.log.line(&format!(
        "prune: removed {} release(s), {objects_removed} store object(s), {bytes_freed} bytes",
        removed.len()
    ));
    Ok(PruneReport { removed, kept, objects_removed, bytes_freed })
}
