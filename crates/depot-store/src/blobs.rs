//! Blobs as files named by their sha256 (`DIR/sha256/ab/cdef…`). Uploads stream to a temporary
//! file under `DIR/uploads/` while hashed, are verified, flushed, and renamed into place: nothing
//! is held only in memory, and a blob is either whole under its name or absent.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use depot_api::Digest;
use sha2::{Digest as _, Sha256};

use crate::{Result, StoreError};

pub struct FsBlobs {
    dir: PathBuf,
}

impl FsBlobs {
    pub fn open(dir: &Path) -> Result<Self> {
        fs_err::create_dir_all(dir.join("sha256"))?;
        fs_err::create_dir_all(dir.join("uploads"))?;
        Ok(FsBlobs { dir: dir.to_owned() })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.dir.join("sha256").join(&hex[..2]).join(hex)
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// A new upload, refused past `limit` bytes.
    pub fn writer(&self, limit: u64) -> Result<BlobWriter> {
        let temp = tempfile::Builder::new().prefix("upload-").tempfile_in(self.dir.join("uploads"))?;
        Ok(BlobWriter { temp, hasher: Sha256::new(), size: 0, limit, head: Vec::new() })
    }

    /// Moves a finished upload into place under its digest (a no-op if the blob is there).
    pub fn install(&self, upload: VerifiedUpload) -> Result<()> {
        let target = self.path(&upload.digest);
        if target.exists() {
            return Ok(());
        }
        let parent = target.parent().expect("blob paths have a parent");
        fs_err::create_dir_all(parent)?;
        upload.temp.persist(&target).map_err(|e| {
            io::Error::new(e.error.kind(), format!("failed to store {}: {}", target.display(), e.error))
        })?;
        std::fs::File::open(parent)?.sync_all()?;
        Ok(())
    }

    /// Deletes a blob's file; returns its size (0 if it was not there).
    pub fn remove(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        match fs_err::metadata(&path) {
            Ok(metadata) => {
                fs_err::remove_file(&path)?;
                Ok(metadata.len())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// Every blob file, for collecting files that no record names (a crash between the rename and
    /// the record).
    pub fn list(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let mut blobs = Vec::new();
        for prefix in fs_err::read_dir(self.dir.join("sha256"))? {
            for entry in fs_err::read_dir(prefix?.path())? {
                let entry = entry?;
                if let Ok(digest) = Digest::from_hex(&entry.file_name().to_string_lossy()) {
                    blobs.push((digest, entry.metadata()?.modified()?));
                }
            }
        }
        Ok(blobs)
    }

    /// Deletes uploads older than `age` (interrupted by a crash or a dropped connection).
    pub fn clean_uploads(&self, age: Duration) -> Result<u64> {
        let mut removed = 0;
        let now = SystemTime::now();
        for entry in fs_err::read_dir(self.dir.join("uploads"))? {
            let entry = entry?;
            let modified = entry.metadata()?.modified()?;
            if now.duration_since(modified).unwrap_or_default() >= age {
                fs_err::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// An upload in progress. Dropped without [`BlobWriter::finish`], its temporary file is deleted.
pub struct BlobWriter {
    temp: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
    limit: u64,
    head: Vec<u8>,
}

/// An upload whose digest matched, flushed to disk, ready for [`FsBlobs::install`].
pub struct VerifiedUpload {
    pub digest: Digest,
    pub size: u64,
    temp: tempfile::NamedTempFile,
}

impl VerifiedUpload {
    /// The uploaded file, for checks before it is installed.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }
}

impl BlobWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        if self.head.len() < 512 {
            let take = (512 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        self.hasher.update(data);
        self.temp.write_all(data)?;
        Ok(())
    }

    /// Checks the content against the digest the client declared and flushes it.
    pub fn finish(mut self, expected: &Digest) -> Result<VerifiedUpload> {
        let actual = Digest::from_hex(&self.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect::<String>())
            .expect("a sha256 is a digest");
        if &actual != expected {
            return Err(StoreError::DigestMismatch { expected: expected.clone(), actual });
        }
        self.temp.flush()?;
        self.temp.as_file().sync_all()?;
        Ok(VerifiedUpload { digest: actual, size: self.size, temp: self.temp })
    }
}
