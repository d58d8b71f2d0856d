//! Blobs: uploads checked as they arrive, and who may download what.

use std::io::Read;

use bytes::Bytes;
use depot_api::types::{Assembly, AssemblyPart, BlobFrame, BlobFrames, BlobInfo, Role};
use depot_api::{Digest, ErrorCode};
use depot_release::archive::FrameTable;
use depot_store::BlobWriter;
use futures_util::{Stream, StreamExt};
use sha2::{Digest as _, Sha256};

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
        let body = body.map(|chunk| chunk.map_err(|e| Error::invalid(format!("the upload was interrupted: {e}"))));
        self.store_upload(caller, digest, body).await
    }

    /// [`Registry::upload`] of a stream whose failures are the registry's own errors (a blob an
    /// assembly reads that is gone, a store that fails), passed on as they are.
    async fn store_upload(
        &self,
        caller: &Caller,
        digest: Digest,
        body: impl Stream<Item = Result<Bytes>> + Unpin,
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

/// A blob whose seek table lists more frames than one per this many bytes, or more than
/// [`MAX_INDEXED_FRAMES`], gets no index (it is fetched whole): the index (about 100 bytes of JSON
/// a frame) stays a tenth of the blob and a few tens of MiB at most, whatever a pusher put in
/// its table. A `depot pack` archive has about one frame per 64 KiB of content.
const BYTES_PER_INDEXED_FRAME: u64 = 1024;
const MAX_INDEXED_FRAMES: usize = 1 << 18;
/// How long a request for an index not read yet waits for it before it is answered without
/// frames (the host then downloads the blob whole; the reading goes on for the next one).
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl Registry {
    /// The frame index of blob `digest` (a [`BlobFrames`], as JSON), for whoever may download it.
    /// The first request starts reading it from the blob (the seek table, then every frame and
    /// the whole blob hashed in one pass; one reading per blob at a time, on a task of its own)
    /// and waits [`INDEX_WAIT`] at most for it; it is kept in the database. An environment
    /// layer, a blob without a seek table that adds up, or one whose index is not ready has no
    /// frames.
    pub async fn blob_frames(&self, caller: &Caller, digest: &Digest) -> Result<String> {
        let size = match self.blob_for_download(caller, digest).await? {
            Download::Stored(size) => size,
            Download::Sealed(archive) => return Ok(frames_json(digest, archive.len() as u64, Vec::new())),
        };
        if let Some(kept) = self.kept_frames(digest, size).await? {
            return Ok(kept);
        }
        let _ = tokio::time::timeout(INDEX_WAIT, self.index_in_background(digest, size)).await;
        Ok(self.kept_frames(digest, size).await?.unwrap_or_else(|| frames_json(digest, size, Vec::new())))
    }

    async fn kept_frames(&self, digest: &Digest, size: u64) -> Result<Option<String>> {
        let lookup = digest.clone();
        let kept = self.store(move |metadata| metadata.blob_frames(&lookup)).await?;
        Ok(kept.filter(|(kept_size, _)| *kept_size == size).map(|(_, json)| json))
    }

    /// Starts reading the index of `digest` on a task of its own unless one is at it; the
    /// returned future ends when that reading does.
    fn index_in_background(&self, digest: &Digest, size: u64) -> impl std::future::Future<Output = ()> + use<> {
        let mut indexing = self.inner.indexing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut done = match indexing.get(digest) {
            Some(done) => done.clone(),
            None => {
                let (finished, done) = tokio::sync::watch::channel(false);
                indexing.insert(digest.clone(), done.clone());
                let (registry, digest) = (self.clone(), digest.clone());
                tokio::spawn(async move {
                    match registry.read_frames(&digest, size).await {
                        Ok(frames) => {
                            let (record, json) = (digest.clone(), frames_json(&digest, size, frames));
                            if let Err(e) =
                                registry.store(move |metadata| metadata.record_blob_frames(&record, size, &json)).await
                            {
                                tracing::warn!(%digest, "cannot keep the frame index: {e}");
                            }
                        }
                        Err(e) => tracing::warn!(%digest, "cannot read the frame index: {e}"),
                    }
                    registry.inner.indexing.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&digest);
                    let _ = finished.send(true);
                });
                done
            }
        };
        async move {
            let _ = done.wait_for(|finished| *finished).await;
        }
    }

    /// Reads the seek table at the end of the blob, then hashes each frame it lists and the
    /// whole blob, reading it once (on a blocking thread, as the bytes arrive). A blob whose bytes
    /// no longer have its digest has no index.
    async fn read_frames(&self, digest: &Digest, size: u64) -> Result<Vec<BlobFrame>> {
        let footer_len = FrameTable::FOOTER_LEN;
        if size < footer_len {
            return Ok(Vec::new());
        }
        let footer = self.read_range(digest, size - footer_len..size).await?;
        let Some(tail_len) = FrameTable::tail_len(&footer, size) else { return Ok(Vec::new()) };
        let tail = self.read_range(digest, size - tail_len..size).await?;
        let Some(table) = FrameTable::parse_tail(&tail, size) else { return Ok(Vec::new()) };
        if table.frames.len() > MAX_INDEXED_FRAMES
            || (table.frames.len() as u64).saturating_mul(BYTES_PER_INDEXED_FRAME) > size
        {
            return Ok(Vec::new());
        }
        let (chunks, receiver) = tokio::sync::mpsc::channel(4);
        let lengths: Vec<u64> = table.frames.iter().map(|frame| frame.compressed).collect();
        let hashing = tokio::task::spawn_blocking(move || {
            let mut reader = ChunkReader { chunks: receiver, current: Bytes::new() };
            let mut whole = Sha256::new();
            let mut shas = Vec::with_capacity(lengths.len());
            for length in lengths {
                let mut frame = Sha256::new();
                let mut left = length;
                while left > 0 {
                    let chunk = reader.next_chunk(left as usize);
                    if chunk.is_empty() {
                        return Err("the blob ended before its last frame".to_owned());
                    }
                    frame.update(&chunk);
                    whole.update(&chunk);
                    left -= chunk.len() as u64;
                }
                shas.push(depot_release::digest::to_hex(&frame.finalize()));
            }
            whole.update(&tail);
            Ok((shas, depot_release::digest::to_hex(&whole.finalize())))
        });
        let mut stream = self.inner.blobs.read(digest, Some(0..size - tail_len)).await?;
        while let Some(chunk) = stream.next().await {
            if chunks.send(chunk?).await.is_err() {
                break;
            }
        }
        drop(chunks);
        let (shas, whole) = hashing
            .await
            .map_err(|e| Error::Internal(format!("hashing the frames of {digest} failed: {e}")))?
            .map_err(|e| Error::Internal(format!("cannot read the frames of {digest}: {e}")))?;
        if whole != digest.hex() {
            return Err(Error::Internal(format!("the bytes of {digest} have digest sha256:{whole}")));
        }
        Ok(table
            .frames
            .iter()
            .zip(shas)
            .map(|(frame, sha256)| BlobFrame { compressed: frame.compressed, decoded: frame.decoded, sha256 })
            .collect())
    }

    async fn read_range(&self, digest: &Digest, range: std::ops::Range<u64>) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity((range.end - range.start) as usize);
        let mut stream = self.inner.blobs.read(digest, Some(range)).await?;
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk?);
        }
        Ok(bytes)
    }
}

fn frames_json(digest: &Digest, size: u64, frames: Vec<BlobFrame>) -> String {
    serde_json::to_string(&BlobFrames { digest: digest.clone(), size, frames }).expect("an index serialises")
}

/// The most bytes the head of an assembly (its JSON line) may take.
pub const MAX_ASSEMBLY_HEAD: usize = 8 << 20;
/// The most parts an assembly may have (neighbouring frames of one blob make one part).
pub const MAX_ASSEMBLY_PARTS: usize = 1 << 16;

impl Registry {
    /// Stores the blob named `digest` from an assembly (see [`Assembly`]): `body` is its head,
    /// a newline, then the inline bytes. Each range of another blob is one the caller may
    /// download; the parts stream into the new blob exactly as an upload's body does, so the
    /// digest, the archive check and the size limit hold as for [`Registry::upload`].
    pub async fn assemble<E: std::fmt::Display + Send + 'static>(
        &self,
        caller: &Caller,
        digest: Digest,
        body: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin + Send + 'static,
    ) -> Result<Upload> {
        caller.require(Need::Operator)?;
        let (head, rest, body) = read_head(body).await?;
        let assembly: Assembly = serde_json::from_slice(&head)
            .map_err(|e| Error::invalid(format!("the assembly's head is not one: {e}")))?;
        if assembly.parts.len() > MAX_ASSEMBLY_PARTS {
            return Err(Error::invalid(format!(
                "the assembly has {} parts; {MAX_ASSEMBLY_PARTS} at most",
                assembly.parts.len()
            )));
        }
        let mut total = 0u64;
        let mut sizes = std::collections::HashMap::new();
        for part in &assembly.parts {
            total = total.saturating_add(part.length);
            let Some(from) = &part.from else {
                if part.offset != 0 {
                    return Err(Error::invalid("an inline part has no offset: it is the next bytes of the body"));
                }
                continue;
            };
            let size = match sizes.get(from) {
                Some(size) => *size,
                None => {
                    let size = match self.blob_for_download(caller, from).await? {
                        Download::Stored(size) => size,
                        Download::Sealed(_) => {
                            return Err(Error::invalid(format!(
                                "{from} is an environment layer, not a blob to build on"
                            )));
                        }
                    };
                    sizes.insert(from.clone(), size);
                    size
                }
            };
            if part.offset.checked_add(part.length).is_none_or(|end| end > size) {
                return Err(Error::invalid(format!(
                    "bytes {}..+{} are not within {from} ({size} bytes)",
                    part.offset, part.length
                )));
            }
        }
        if total > self.inner.policy.max_blob_size {
            return Err(Error::from(depot_store::StoreError::TooLarge { limit: self.inner.policy.max_blob_size }));
        }
        let assembling = Assembling {
            registry: self.clone(),
            parts: assembly.parts.into_iter(),
            pending: rest,
            body,
            current: None,
            done: false,
        };
        let stream = futures_util::stream::unfold(assembling, Assembling::next);
        self.store_upload(caller, digest, Box::pin(stream)).await
    }
}

/// Reads the body up to its first newline (within [`MAX_ASSEMBLY_HEAD`] bytes): the head, what
/// followed it in the last chunk, and the rest of the body.
async fn read_head<E: std::fmt::Display, B: Stream<Item = std::result::Result<Bytes, E>> + Unpin>(
    mut body: B,
) -> Result<(Vec<u8>, Bytes, B)> {
    let mut head = Vec::new();
    loop {
        let chunk = match body.next().await {
            Some(chunk) => chunk.map_err(|e| Error::invalid(format!("the upload was interrupted: {e}")))?,
            None => return Err(Error::invalid("the assembly has no newline after its head")),
        };
        match chunk.iter().position(|&b| b == b'\n') {
            Some(at) if head.len() + at <= MAX_ASSEMBLY_HEAD => {
                head.extend_from_slice(&chunk[..at]);
                return Ok((head, chunk.slice(at + 1..), body));
            }
            None if head.len() + chunk.len() <= MAX_ASSEMBLY_HEAD => head.extend_from_slice(&chunk),
            _ => return Err(Error::invalid(format!("the assembly's head is over {MAX_ASSEMBLY_HEAD} bytes"))),
        }
    }
}

/// The bytes of an assembly, part after part, as one stream.
struct Assembling<B> {
    registry: Registry,
    parts: std::vec::IntoIter<AssemblyPart>,
    /// Bytes of the body received and not yet used.
    pending: Bytes,
    body: B,
    current: Option<Part>,
    done: bool,
}

enum Part {
    Stored(depot_store::ByteStream),
    Inline(u64),
}

impl<E: std::fmt::Display, B: Stream<Item = std::result::Result<Bytes, E>> + Unpin> Assembling<B> {
    async fn next(mut self) -> Option<(Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        let item = self.step().await;
        self.done = matches!(item, None | Some(Err(_)));
        item.map(|item| (item, self))
    }

    async fn step(&mut self) -> Option<Result<Bytes>> {
        loop {
            match self.current.take() {
                Some(Part::Stored(mut stream)) => match stream.next().await {
                    Some(Ok(chunk)) => {
                        self.current = Some(Part::Stored(stream));
                        return Some(Ok(chunk));
                    }
                    Some(Err(e)) => return Some(Err(e.into())),
                    None => continue,
                },
                Some(Part::Inline(0)) => continue,
                Some(Part::Inline(left)) => {
                    if self.pending.is_empty() {
                        self.pending = match self.body.next().await {
                            Some(Ok(chunk)) => chunk,
                            Some(Err(e)) => {
                                return Some(Err(Error::invalid(format!("the upload was interrupted: {e}"))));
                            }
                            None => {
                                return Some(Err(Error::invalid(format!(
                                    "the body ended {left} bytes before the end of its inline parts"
                                ))));
                            }
                        };
                    }
                    let chunk = self.pending.split_to(self.pending.len().min(left as usize));
                    self.current = Some(Part::Inline(left - chunk.len() as u64));
                    return Some(Ok(chunk));
                }
                None => match self.parts.next() {
                    Some(AssemblyPart { from: Some(from), offset, length }) => {
                        match self.registry.inner.blobs.read(&from, Some(offset..offset + length)).await {
                            Ok(stream) => self.current = Some(Part::Stored(stream)),
                            Err(e) => return Some(Err(e.into())),
                        }
                    }
                    Some(AssemblyPart { from: None, length, .. }) => self.current = Some(Part::Inline(length)),
                    None => {
                        while self.pending.is_empty() {
                            match self.body.next().await {
                                Some(Ok(chunk)) => self.pending = chunk,
                                Some(Err(e)) => {
                                    return Some(Err(Error::invalid(format!("the upload was interrupted: {e}"))));
                                }
                                None => return None,
                            }
                        }
                        return Some(Err(Error::invalid("the body holds more bytes than its inline parts")));
                    }
                },
            }
        }
    }
}

/// A blob to send: from the blob store, or an environment layer opened from its seal.
pub enum Download {
    Stored(u64),
    Sealed(Bytes),
}

/// Streams the body to the writer and to the archive check.
async fn receive(
    mut body: impl Stream<Item = Result<Bytes>> + Unpin,
    writer: &mut BlobWriter,
    check: &ArchiveCheck,
) -> Result<()> {
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
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

impl ChunkReader {
    /// The next bytes of the upload, `limit` at most, without a copy; empty at its end.
    fn next_chunk(&mut self, limit: usize) -> Bytes {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Bytes::new(),
            }
        }
        self.current.split_to(limit.min(self.current.len()))
    }
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
