//! Retention and garbage collection. Safe with every replica running it: a blob's record and its
//! bytes are deleted in one write transaction (one replica at a time), only when nothing names
//! it and it is older than the grace period.

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
        for digest in unreferenced {
            if let Some(freed) = self.collect_blob(digest, Some(cutoff)).await? {
                report.bytes_freed += freed;
                report.blobs_removed += 1;
            }
        }
        let known = self.store(|metadata| metadata.known_blobs()).await?;
        let now = SystemTime::now();
        for (digest, modified) in self.inner.blobs.list().await? {
            if !known.contains(digest.as_str())
                && now.duration_since(modified).unwrap_or_default() >= grace
                && let Some(freed) = self.collect_blob(digest, None).await?
            {
                report.bytes_freed += freed;
                report.blobs_removed += 1;
            }
        }
        report.uploads_removed = self.inner.blobs.clean_uploads(grace).await?;
        Ok(report)
    }

    /// Deletes blob `digest`'s record (see `Metadata::collect_blob` for `cutoff`) and its bytes
    /// in one write transaction, so that no upload can record the blob between the two: an
    /// upload that records it after finds the bytes gone ([`Registry::upload`] checks). The
    /// bytes freed, or `None` when the blob is kept.
    async fn collect_blob(
        &self,
        digest: depot_api::Digest,
        cutoff: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Option<u64>> {
        let (blobs, runtime) = (self.inner.blobs.clone(), tokio::runtime::Handle::current());
        self.store(move |metadata| metadata.collect_blob(&digest, cutoff, || runtime.block_on(blobs.remove(&digest))))
            .await
    }
}
