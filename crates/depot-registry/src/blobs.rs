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

/// A blob whose seek table lists more frames than one per this many bytes gets no index: it is
/// fetched whole. The index is then never much larger than the blob (a frame takes about 100
/// bytes of JSON), whatever a pusher put in its table.
const BYTES_PER_INDEXED_FRAME: u64 = 128;

impl Registry {
    /// The frame index of blob `digest` (see [`BlobFrames`]), for whoever may download it: read
    /// from the blob the first time it is asked for (its seek table, then every frame hashed in
    /// one pass), then kept in the database. An environment layer, or a blob without a seek table
    /// that adds up, has no frames.
    pub async fn blob_frames(&self, caller: &Caller, digest: &Digest) -> Result<BlobFrames> {
        let size = match self.blob_for_download(caller, digest).await? {
            Download::Stored(size) => size,
            Download::Sealed(archive) => {
                return Ok(BlobFrames { digest: digest.clone(), size: archive.len() as u64, frames: Vec::new() });
            }
        };
        let lookup = digest.clone();
        if let Some(kept) = self.store(move |metadata| metadata.blob_frames(&lookup)).await?
            && let Ok(frames) = serde_json::from_str::<BlobFrames>(&kept)
            && frames.digest == *digest
            && frames.size == size
        {
            return Ok(frames);
        }
        let frames = self.read_frames(digest, size).await?;
        let (record, json) =
            (digest.clone(), serde_json::to_string(&frames).map_err(|e| Error::Internal(e.to_string()))?);
        self.store(move |metadata| metadata.record_blob_frames(&record, &json)).await?;
        Ok(frames)
    }

    /// Reads the seek table at the end of the blob, then hashes each frame it lists, reading
    /// the blob once (on a blocking thread, as the bytes arrive).
    async fn read_frames(&self, digest: &Digest, size: u64) -> Result<BlobFrames> {
        let none = BlobFrames { digest: digest.clone(), size, frames: Vec::new() };
        let footer_len = FrameTable::FOOTER_LEN;
        if size < footer_len {
            return Ok(none);
        }
        let footer = self.read_range(digest, size - footer_len..size).await?;
        let Some(tail_len) = FrameTable::tail_len(&footer, size) else { return Ok(none) };
        let tail = self.read_range(digest, size - tail_len..size).await?;
        let Some(table) = FrameTable::parse_tail(&tail, size) else { return Ok(none) };
        if (table.frames.len() as u64).saturating_mul(BYTES_PER_INDEXED_FRAME) > size {
            return Ok(none);
        }
        let (chunks, receiver) = tokio::sync::mpsc::channel(4);
        let lengths: Vec<u64> = table.frames.iter().map(|frame| frame.compressed).collect();
        let hashing = tokio::task::spawn_blocking(move || {
            let mut reader = ChunkReader { chunks: receiver, current: Bytes::new() };
            let mut shas = Vec::with_capacity(lengths.len());
            for length in lengths {
                let mut hasher = Sha256::new();
                let copied = std::io::copy(&mut (&mut reader).take(length), &mut hasher)?;
                if copied != length {
                    return Err(std::io::Error::other("the blob ended before its last frame"));
                }
                shas.push(depot_release::digest::to_hex(&hasher.finalize()));
            }
            Ok(shas)
        });
        let mut stream = self.inner.blobs.read(digest, Some(0..size - tail_len)).await?;
        while let Some(chunk) = stream.next().await {
            if chunks.send(chunk?).await.is_err() {
                break;
            }
        }
        drop(chunks);
        let shas = hashing
            .await
            .map_err(|e| Error::Internal(format!("hashing the frames of {digest} failed: {e}")))?
            .map_err(|e| Error::Internal(format!("cannot read the frames of {digest}: {e}")))?;
        let frames = table
            .frames
            .iter()
            .zip(shas)
            .map(|(frame, sha256)| BlobFrame { compressed: frame.compressed, decoded: frame.decoded, sha256 })
            .collect();
        Ok(BlobFrames { digest: digest.clone(), size, frames })
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

/// The most bytes the head of an assembly (its JSON line) may take.
pub const MAX_ASSEMBLY_HEAD: usize = 8 << 20;

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
        let mut total = 0u64;
        let mut sizes = std::collections::HashMap::new();
        for part in &assembly.parts {
            total = total.saturating_add(part.length);
            let Some(from) = &part.from else { continue };
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
        self.upload(caller, digest, Box::pin(stream)).await
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
