//! Blobs: archives named by their sha256, in one of two backends behind one cheap handle,
//! [`Blobs`]. Files under a directory (the default) or objects in an S3-compatible bucket; the
//! backend is chosen once, by [`crate::open_blobs`], from a URL.
//!
//! Every upload goes through a [`BlobWriter`] that hashes the bytes and enforces the size limit
//! as they arrive; the blob becomes visible under its name only after its digest matched
//! ([`BlobWriter::verify`]) and the caller installed it ([`VerifiedUpload::install`]). A writer
//! or a verified upload dropped before that leaves nothing under the blob's name.
//!
//! Every operation is async and none blocks an async worker thread: the file backend runs its
//! file-system calls on tokio's blocking pool, the S3 backend is async all the way down.

mod fs;
mod s3;

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use depot_api::Digest;
use futures_util::stream::BoxStream;
use sha2::{Digest as _, Sha256};

use crate::{Result, StoreError};

pub use s3::{PART_SIZE as S3_PART_SIZE, S3Credentials, S3Location};

/// The bytes of a blob (or of a range of it), in chunks.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

/// The blob store: a backend behind an `Arc`, cheap to clone.
#[derive(Clone)]
pub struct Blobs(Arc<dyn BlobBackend>);

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Blobs").field(&self.0.describe()).finish()
    }
}

/// What a backend does. Async trait methods are boxed (`async_trait`): the handle holds a
/// `dyn BlobBackend`, which native `async fn` in traits cannot be.
#[async_trait::async_trait]
trait BlobBackend: Send + Sync + 'static {
    /// Where the blobs are, for messages: `files in /var/lib/depot/blobs`, `s3://bucket/blobs`.
    fn describe(&self) -> String;
    /// Whether [`BlobBackend::presigned_get`] gives URLs.
    fn can_presign(&self) -> bool;
    /// The blob's size, or `None` when there is no such blob.
    async fn size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// A new upload of what should be the blob `digest`, not visible under any blob name until
    /// committed (and committed only once its bytes have that digest).
    async fn begin(&self, digest: &Digest) -> Result<Box<dyn UploadSink>>;
    /// The bytes in `range` (which lies within the blob); [`StoreError::UnknownBlob`] if absent.
    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream>;
    /// Deletes a blob; returns its size (0 if it was not there).
    async fn remove(&self, digest: &Digest) -> Result<u64>;
    /// Every blob with its modification time.
    async fn list(&self) -> Result<Vec<(Digest, SystemTime)>>;
    /// Deletes interrupted uploads older than `age`; returns how many.
    async fn clean_uploads(&self, age: Duration) -> Result<u64>;
    /// A URL that lets anyone holding it GET the blob for `ttl`, when the backend can sign one.
    async fn presigned_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>>;
    /// Fails when the store cannot be reached (a missing directory, a bucket that does not answer).
    async fn check(&self) -> Result<()>;
}

/// The backend's side of an upload. Dropped without [`UploadSink::commit`], it discards what it
/// received (a temporary file deleted, a multipart upload aborted) in the background;
/// [`UploadSink::discard`] does it before it returns.
#[async_trait::async_trait]
trait UploadSink: Send {
    async fn write(&mut self, data: Bytes) -> Result<()>;
    /// Makes the bytes durable and visible under `digest`, which the caller verified.
    async fn commit(self: Box<Self>, digest: &Digest) -> Result<()>;
    /// Deletes what was received (failures are logged: what is left is collected later).
    async fn discard(self: Box<Self>);
}

impl Blobs {
    /// Blobs as files under `dir` (created if needed).
    pub fn files(dir: &Path) -> Result<Self> {
        Ok(Blobs(Arc::new(fs::FsBlobs::open(dir)?)))
    }

    /// Blobs as objects in an S3-compatible bucket. Nothing is sent until the first call; see
    /// [`Blobs::check`].
    pub fn s3(location: S3Location) -> Result<Self> {
        Ok(Blobs(Arc::new(s3::S3Blobs::open(location)?)))
    }

    /// Where the blobs are, for messages.
    pub fn describe(&self) -> String {
        self.0.describe()
    }

    /// Whether [`Blobs::presigned_get`] can give URLs (S3 can, files cannot).
    pub fn can_presign(&self) -> bool {
        self.0.can_presign()
    }

    pub async fn exists(&self, digest: &Digest) -> Result<bool> {
        Ok(self.0.size(digest).await?.is_some())
    }

    /// The blob's size, or `None` when there is no such blob.
    pub async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.0.size(digest).await
    }

    /// A new upload of what the client says is the blob `digest`, refused past `limit` bytes.
    pub async fn writer(&self, digest: &Digest, limit: u64) -> Result<BlobWriter> {
        Ok(BlobWriter {
            sink: self.0.begin(digest).await?,
            expected: digest.clone(),
            hasher: Sha256::new(),
            size: 0,
            limit,
        })
    }

    /// Stores `data` as the blob `digest` (written, verified, made durable, then visible).
    pub async fn put(&self, digest: &Digest, data: Bytes, limit: u64) -> Result<()> {
        let mut writer = self.writer(digest, limit).await?;
        if let Err(e) = writer.write(data).await {
            writer.discard().await;
            return Err(e);
        }
        writer.verify().await?.install().await
    }

    /// The bytes of `range` of the blob (the whole blob with `None`); the range must lie within
    /// the blob's size. [`StoreError::UnknownBlob`] when there is no such blob.
    pub async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream> {
        let range = match range {
            Some(range) => range,
            None => 0..self.0.size(digest).await?.ok_or_else(|| StoreError::UnknownBlob(digest.clone()))?,
        };
        self.0.read(digest, range).await
    }

    /// Deletes a blob; returns its size (0 if it was not there).
    pub async fn remove(&self, digest: &Digest) -> Result<u64> {
        self.0.remove(digest).await
    }

    /// Every blob with its modification time, for collecting blobs that no record names (a crash
    /// between the install and the record).
    pub async fn list(&self) -> Result<Vec<(Digest, SystemTime)>> {
        self.0.list().await
    }

    /// Deletes interrupted uploads older than `age` (a crash or a dropped connection); returns
    /// how many. On S3 an interrupted multipart upload is aborted when the upload fails; one
    /// left by a crash is for the bucket's `AbortIncompleteMultipartUpload` lifecycle rule, since
    /// the registry cannot list them, so this returns 0 there.
    pub async fn clean_uploads(&self, age: Duration) -> Result<u64> {
        self.0.clean_uploads(age).await
    }

    /// A URL that lets its holder GET the blob, and nothing else, for `ttl`; `None` when the
    /// backend cannot sign one (files).
    pub async fn presigned_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        self.0.presigned_get(digest, ttl).await
    }

    /// Fails, naming the store, when it cannot be reached.
    pub async fn check(&self) -> Result<()> {
        self.0.check().await
    }
}

/// An upload in progress: hashes the bytes and enforces the size limit as they arrive. Dropped
/// before [`VerifiedUpload::install`], it leaves nothing behind under a blob's name; call
/// [`BlobWriter::discard`] on failure to delete what it received before answering.
pub struct BlobWriter {
    sink: Box<dyn UploadSink>,
    expected: Digest,
    hasher: Sha256,
    size: u64,
    limit: u64,
}

/// An upload whose digest matched, ready for [`VerifiedUpload::install`].
pub struct VerifiedUpload {
    pub digest: Digest,
    pub size: u64,
    sink: Box<dyn UploadSink>,
}

impl BlobWriter {
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.size += data.len() as u64;
        if self.size > self.limit {
            return Err(StoreError::TooLarge { limit: self.limit });
        }
        self.hasher.update(&data);
        self.sink.write(data).await
    }

    /// The number of bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the content against the digest the client declared. On a mismatch the upload is
    /// discarded.
    pub async fn verify(self) -> Result<VerifiedUpload> {
        let hex: String = self.hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let actual = Digest::from_hex(&hex).expect("a sha256 is a digest");
        if actual != self.expected {
            self.sink.discard().await;
            return Err(StoreError::DigestMismatch { expected: self.expected, actual });
        }
        Ok(VerifiedUpload { digest: actual, size: self.size, sink: self.sink })
    }

    /// Deletes what the upload received.
    pub async fn discard(self) {
        self.sink.discard().await
    }
}

impl VerifiedUpload {
    /// Makes the blob durable and visible under its digest (harmless if it is there already).
    pub async fn install(self) -> Result<()> {
        self.sink.commit(&self.digest).await
    }

    /// Deletes the upload instead (it failed a check of the caller's).
    pub async fn discard(self) {
        self.sink.discard().await
    }
}

/// Runs blocking file-system work on tokio's blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.map_err(|e| StoreError::Io(std::io::Error::other(e)))?
}
