//! Blobs as files named by their sha256 (`DIR/sha256/ab/cdef…`). Uploads stream to a temporary
//! file under `DIR/uploads/` while hashed, are verified, flushed, and renamed into place: nothing
//! is held only in memory, and a blob is either whole under its name or absent. Every
//! file-system call runs on tokio's blocking pool (tokio::fs or [`super::blocking`]).

use std::io;
use std::ops::Range;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use depot_api::Digest;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, BufWriter};

use super::{BlobBackend, ByteStream, UploadSink, blocking};
use crate::{Result, StoreError};

/// Bytes gathered before each write to an upload's file, and read per chunk of a download.
const CHUNK: usize = 1024 * 1024;
/// An upload's file is flushed to disk (`fdatasync`, on another thread) each time this much more
/// has been written, while the next bytes arrive: the disk works during the upload, and the
/// flush before the blob is acknowledged has little left to do.
const SYNC_EVERY: u64 = 64 * 1024 * 1024;

pub(super) struct FsBlobs {
    dir: PathBuf,
}

impl FsBlobs {
    pub(super) fn open(dir: &Path) -> Result<Self> {
        // Environment layers are blobs: the directories are 0700 and every blob file 0600.
        for dir in [dir, &dir.join("sha256"), &dir.join("uploads")] {
            crate::private::create_private_dir(dir)?;
        }
        Ok(FsBlobs { dir: dir.to_owned() })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        blob_path(&self.dir, digest)
    }
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    let hex = digest.hex();
    dir.join("sha256").join(&hex[..2]).join(hex)
}

#[async_trait::async_trait]
impl BlobBackend for FsBlobs {
    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }

    fn can_presign(&self) -> bool {
        false
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        match tokio::fs::metadata(self.path(digest)).await {
            Ok(metadata) if metadata.is_file() => Ok(Some(metadata.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn begin(&self, _digest: &Digest) -> Result<Box<dyn UploadSink>> {
        let uploads = self.dir.join("uploads");
        let temp = blocking(move || {
            Ok(tempfile::Builder::new()
                .prefix("upload-")
                .permissions(std::fs::Permissions::from_mode(crate::private::FILE_MODE))
                .tempfile_in(uploads)?)
        })
        .await?;
        let (file, temp) = temp.into_parts();
        Ok(Box::new(FsUpload {
            file: Some(BufWriter::with_capacity(CHUNK, tokio::fs::File::from_std(file))),
            temp: Some(temp),
            dir: self.dir.clone(),
            unsynced: 0,
            syncing: None,
        }))
    }

    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream> {
        let path = self.path(digest);
        let file = match blocking(move || Ok(fs_err::File::open(path)?.into_parts().0)).await {
            Ok(file) => std::sync::Arc::new(file),
            Err(StoreError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::UnknownBlob(digest.clone()));
            }
            Err(e) => return Err(e),
        };
        // Each chunk is read (at its offset, on the blocking pool) straight into the buffer that
        // is sent, the next one while hyper writes this one; no thread is held between chunks,
        // however slow the client.
        let starts = (range.start..range.end).step_by(CHUNK);
        let chunks = futures_util::stream::iter(starts)
            .map(move |start| {
                let (file, len) = (file.clone(), (range.end - start).min(CHUNK as u64) as usize);
                blocking(move || {
                    let mut chunk = Vec::with_capacity(len);
                    while chunk.len() < len {
                        let at = start + chunk.len() as u64;
                        let read = rustix::io::pread(&*file, rustix::buffer::spare_capacity(&mut chunk), at)
                            .map_err(io::Error::from)?;
                        if read == 0 {
                            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "the blob is shorter than its size");
                            return Err(eof.into());
                        }
                    }
                    // A capacity above `len` may have taken in bytes past the range.
                    chunk.truncate(len);
                    Ok(Bytes::from(chunk))
                })
            })
            .buffered(2);
        Ok(chunks.boxed())
    }

    async fn remove(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        blocking(move || match fs_err::metadata(&path) {
            Ok(metadata) => {
                fs_err::remove_file(&path)?;
                Ok(metadata.len())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        })
        .await
    }

    async fn list(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let dir = self.dir.join("sha256");
        blocking(move || {
            let mut blobs = Vec::new();
            for prefix in fs_err::read_dir(dir)? {
                for entry in fs_err::read_dir(prefix?.path())? {
                    let entry = entry?;
                    if let Ok(digest) = Digest::from_hex(&entry.file_name().to_string_lossy()) {
                        blobs.push((digest, entry.metadata()?.modified()?));
                    }
                }
            }
            Ok(blobs)
        })
        .await
    }

    async fn clean_uploads(&self, age: Duration) -> Result<u64> {
        let dir = self.dir.join("uploads");
        blocking(move || {
            let mut removed = 0;
            let now = SystemTime::now();
            for entry in fs_err::read_dir(dir)? {
                let entry = entry?;
                let modified = entry.metadata()?.modified()?;
                if now.duration_since(modified).unwrap_or_default() >= age {
                    fs_err::remove_file(entry.path())?;
                    removed += 1;
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn presigned_get(&self, _digest: &Digest, _ttl: Duration) -> Result<Option<String>> {
        Ok(None)
    }

    async fn check(&self) -> Result<()> {
        for sub in ["sha256", "uploads"] {
            let path = self.dir.join(sub);
            let metadata = tokio::fs::metadata(&path).await.map_err(|e| StoreError::BlobStore {
                store: self.describe(),
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            if !metadata.is_dir() {
                return Err(StoreError::BlobStore {
                    store: self.describe(),
                    message: format!("{} is not a directory", path.display()),
                });
            }
        }
        Ok(())
    }
}

/// An upload's temporary file in `DIR/uploads/`, deleted when dropped uncommitted.
struct FsUpload {
    file: Option<BufWriter<tokio::fs::File>>,
    temp: Option<tempfile::TempPath>,
    dir: PathBuf,
    /// Bytes written since the last flush to disk started.
    unsynced: u64,
    /// The flush to disk under way, if any (see [`SYNC_EVERY`]).
    syncing: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl FsUpload {
    /// Waits for the flush to disk under way, if any.
    async fn synced(&mut self) -> Result<()> {
        match self.syncing.take() {
            Some(syncing) => Ok(syncing.await.map_err(io::Error::other)??),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl UploadSink for FsUpload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        let file = self.file.as_mut().expect("an upload's file is open until it is committed");
        file.write_all(&data).await?;
        self.unsynced += data.len() as u64;
        // One flush at a time: while one runs, the next waits for the next threshold.
        if self.unsynced >= SYNC_EVERY && self.syncing.as_ref().is_none_or(|syncing| syncing.is_finished()) {
            self.synced().await?;
            let file = self.file.as_mut().expect("an upload's file is open until it is committed");
            file.flush().await?;
            let clone = file.get_ref().try_clone().await?;
            self.syncing = Some(tokio::spawn(async move { clone.sync_data().await }));
            self.unsynced = 0;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<()> {
        self.synced().await?;
        let mut file = self.file.take().expect("an upload's file is open until it is committed");
        file.flush().await?;
        file.into_inner().sync_all().await?;
        let temp = self.temp.take().expect("an upload's temporary file is kept until it is committed");
        let target = blob_path(&self.dir, digest);
        blocking(move || {
            if target.exists() {
                // Another upload of the same content won; this one's file is deleted on drop.
                return Ok(());
            }
            let parent = target.parent().expect("blob paths have a parent");
            crate::private::create_missing_dirs(parent)?;
            temp.persist(&target).map_err(|e| {
                io::Error::new(e.error.kind(), format!("failed to store {}: {}", target.display(), e.error))
            })?;
            fs_err::File::open(parent)?.sync_all()?;
            Ok(())
        })
        .await
    }

    async fn discard(mut self: Box<Self>) {
        let (file, temp) = (self.file.take(), self.temp.take());
        let deleted = blocking(move || {
            drop(file);
            match temp {
                Some(temp) => Ok(temp.close()?),
                None => Ok(()),
            }
        })
        .await;
        if let Err(e) = deleted {
            tracing::warn!("could not delete an upload's temporary file: {e}");
        }
    }
}

impl Drop for FsUpload {
    fn drop(&mut self) {
        // Deleting the temporary file is a system call: off the async threads when there are any.
        if let Some(temp) = self.temp.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let file = self.file.take();
            runtime.spawn_blocking(move || drop((file, temp)));
        }
    }
}
