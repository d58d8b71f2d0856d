//! Blobs: uploads checked as they arrive, and who may download what.

use std::io::Read;

use bytes::Bytes;
use depot_api::types::{BlobInfo, Role};
use depot_api::{Digest, ErrorCode};
use depot_store::BlobWriter;
use futures_util::{Stream, StreamExt};

use crate::{Caller, Error, Need, Registry, Result};

/// An upload's outcome: stored now (`created`), or already stored.
#[derive(Debug)]
pub struct Upload {
    pub created: bool,
    pub info: BlobInfo,
}

impl Registry {
    /// Stores the blob named `digest` from `body`: streamed to the blob store while hashed and
    /// checked to be a readable archive (on a blocking thread, as the bytes arrive); the digest is
    /// checked, the blob made durable and visible under its name, and only then recorded.
    pub async fn upload<E: std::fmt::Display>(
        &self,
        caller: &Caller,
        digest: Digest,
        body: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    ) -> Result<Upload> {
        caller.require(Need::Operator)?;
        if self.inner.blobs.exists(&digest).await? {
            let lookup = digest.clone();
            // Recorded again, so that its grace before collection starts again: the push that
            // uploaded it is about to name it.
            let known = self
                .store(move |metadata| {
                    let size = metadata.blob_size(&lookup)?;
                    if let Some(size) = size {
                        metadata.record_blob(&lookup, size)?;
                    }
                    Ok(size)
                })
                .await?;
            // Collection deletes a record and its bytes in one transaction: recorded now, the
            // blob stays, unless collection took its bytes just before (then upload it again).
            if let Some(size) = known {
                if self.inner.blobs.exists(&digest).await? {
                    return Ok(Upload { created: false, info: BlobInfo { digest, size } });
                }
                let forget = digest.clone();
                self.store(move |metadata| metadata.forget_blob(&forget)).await?;
            }
        }
        let mut writer = self.inner.blobs.writer(&digest, self.inner.policy.max_blob_size).await?;
        let check = ArchiveCheck::start();
        if let Err(e) = receive(body, &mut writer, &check).await {
            writer.discard().await;
            return Err(e);
        }
        let upload = writer.verify().await?;
        if let Err(e) = check.finish().await {
            upload.discard().await;
            return Err(Error::refused(ErrorCode::NotAnArchive, format!("{digest} is not a readable archive: {e}"))
                .with_hint("push a .tar, .tar.gz or .tar.zst archive"));
        }
        let size = upload.size;
        upload.install().await?;
        let record = digest.clone();
        self.store(move |metadata| metadata.record_blob(&record, size)).await?;
        // Collection may have deleted these bytes after they were installed and before they were
        // recorded (it held the write transaction meanwhile): never acknowledge a record whose
        // bytes are gone.
        if !self.inner.blobs.exists(&digest).await? {
            let forget = digest.clone();
            self.store(move |metadata| metadata.forget_blob(&forget)).await?;
            return Err(Error::refused(
                ErrorCode::Unavailable,
                format!("{digest} was collected as garbage while it was uploaded"),
            )
            .with_hint("upload it again"));
        }
        Ok(Upload { created: true, info: BlobInfo { digest, size } })
    }

    /// What `caller` downloads as blob `digest`, if it may: a blob of the store (its size), or an
    /// environment layer, kept sealed in the database and opened here. A blob no version names
    /// (an upload not pushed yet, a version deleted) is for operators. Agents read the layers of
    /// the configurations their pattern matches (in any revision, so that one being deployed
    /// while the next is written stays readable), environment layers included; viewers read
    /// layers that are not environment layers.
    pub async fn blob_for_download(&self, caller: &Caller, digest: &Digest) -> Result<Download> {
        caller.require(Need::Reader)?;
        let lookup = digest.clone();
        let access = self.store(move |metadata| metadata.blob_access(&lookup)).await?;
        let allowed = match caller.role {
            Role::Operator | Role::Admin => true,
            Role::Agent => access.configs.iter().chain(&access.env_stages).any(|c| caller.may_read_config(c)),
            Role::Viewer => access.referenced && access.env_stages.is_empty(),
        };
        let sealed = if access.env_stages.is_empty() {
            None
        } else {
            let lookup = digest.clone();
            self.store(move |metadata| metadata.env_archive(&lookup)).await?
        };
        let download = match sealed {
            Some(archive) => Download::Sealed(Bytes::from(archive)),
            // Not an environment layer, or one written before layers were sealed.
            None => match self.inner.blobs.size(digest).await? {
                Some(size) => Download::Stored(size),
                None => return Err(Error::refused(ErrorCode::UnknownBlob, format!("unknown blob {digest}"))),
            },
        };
        if allowed {
            return Ok(download);
        }
        let why = match access.env_stages.first() {
            Some(stage) => format!("{digest} is the environment layer of {stage}"),
            None if access.referenced && caller.role == Role::Agent => {
                format!("{digest} is no layer of a configuration token {}'s pattern matches", caller.name)
            }
            None if access.referenced => format!("{digest} is a layer"),
            None => format!("no version names {digest}"),
        };
        Err(Error::refused(ErrorCode::Forbidden, format!("{why}; token {} may not read it", caller.name))
            .with_hint("operators, admins and the agents of the configurations using it may"))
    }
}

/// A blob to send: from the blob store, or an environment layer opened from its seal.
pub enum Download {
    Stored(u64),
    Sealed(Bytes),
}

/// Streams the body to the writer and to the archive check.
async fn receive<E: std::fmt::Display>(
    mut body: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    writer: &mut BlobWriter,
    check: &ArchiveCheck,
) -> Result<()> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::invalid(format!("the upload was interrupted: {e}")))?;
        check.feed(chunk.clone()).await;
        writer.write(chunk).await?;
    }
    Ok(())
}

/// `depot_release::archive::check_readable` over the bytes of an upload as they arrive: a
/// blocking thread reads them from a small queue, so the check runs beside the upload and the
/// blob is never read back from the store.
struct ArchiveCheck {
    chunks: tokio::sync::mpsc::Sender<Bytes>,
    result: tokio::task::JoinHandle<std::result::Result<u64, String>>,
}

impl ArchiveCheck {
    fn start() -> Self {
        let (chunks, receiver) = tokio::sync::mpsc::channel(4);
        let result = tokio::task::spawn_blocking(move || {
            let reader = ChunkReader { chunks: receiver, current: Bytes::new() };
            depot_release::archive::check_readable(
                std::io::BufReader::with_capacity(1 << 20, reader),
                depot_release::stage::Limits::default(),
            )
            .map_err(|e| e.to_string())
        });
        ArchiveCheck { chunks, result }
    }

    /// Hands a chunk to the check (once the check has failed, it takes no more).
    async fn feed(&self, chunk: Bytes) {
        let _ = self.chunks.send(chunk).await;
    }

    /// Ends the input and waits for the verdict.
    async fn finish(self) -> std::result::Result<u64, String> {
        drop(self.chunks);
        self.result.await.map_err(|e| format!("the archive check failed: {e}"))?
    }
}

/// A blocking reader over the chunks of an upload.
struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChunkReader {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buffer.len().min(self.current.len());
        buffer[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}
