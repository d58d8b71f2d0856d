//! Retention and garbage collection. Safe with every replica running it: each step is its own
//! transaction, a blob's record is forgotten (by one replica) before its bytes are deleted, and
//! only blobs older than the grace period go.

use std::time::SystemTime;

use depot_api::types::GcReport;

use crate::{Caller, Need, Registry, Result};

impl Registry {
    /// Collects garbage now (admin).
    pub async fn gc(&self, caller: &Caller) -> Result<GcReport> {
        caller.require(Need::Admin)?;
        self.collect().await
    }

    /// Retention, then a mark-and-sweep of blobs: a blob is deleted only when no version references
    /// it and it is older than the grace period, so an upload whose version is about to be added is
    /// safe. Blobs without a record (a crash between the install and the record) and interrupted
    /// uploads are deleted after the same grace period. The registry runs this on its own.
    pub async fn collect(&self) -> Result<GcReport> {
        let grace = self.inner.policy.gc_grace;
        let max_versions = self.inner.policy.max_versions;
        let retention = self.store(move |metadata| metadata.apply_retention(max_versions)).await?;
        let mut report = GcReport { versions_removed: retention.removed, ..GcReport::default() };
        let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
        let unreferenced = self.store(move |metadata| metadata.unreferenced_blobs(cutoff)).await?;
        let blobs = &self.inner.blobs;
        for digest in unreferenced {
            let forget = digest.clone();
            if self.store(move |metadata| metadata.forget_blob(&forget)).await? {
                report.bytes_freed += blobs.remove(&digest).await?;
                report.blobs_removed += 1;
            }
        }
        let known = self.store(|metadata| metadata.known_blobs()).await?;
        let now = SystemTime::now();
        for (digest, modified) in blobs.list().await? {
            if !known.contains(digest.as_str()) && now.duration_since(modified).unwrap_or_default() >= grace {
                report.bytes_freed += blobs.remove(&digest).await?;
                report.blobs_removed += 1;
            }
        }
        report.uploads_removed = blobs.clean_uploads(grace).await?;
        Ok(report)
    }
}
