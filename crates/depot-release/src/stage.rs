//! Safe extraction of untrusted archives into a staging directory, through the content store.
//!
//! Every entry's path is checked before anything is written: no absolute paths, no `..`, no path
//! that passes through a symlink, no symlink or hardlink that points outside the release, no
//! device nodes or fifos, no duplicate paths within one archive. setuid/setgid/sticky and write
//! bits are dropped. Entry count and uncompressed size are limited. Since the staging directory is
//! new and every symlink in it was checked, nothing can be written outside it.
//!
//! Several archives (layers) may be staged in order into one release: a later layer's entry
//! replaces an earlier layer's entry at the same path, and a layer removes what earlier layers
//! put somewhere with the whiteouts of OCI image layers: an empty file `DIR/.wh.NAME` removes
//! `DIR/NAME`, and `DIR/.wh..wh..opq` empties `DIR` of earlier layers' entries. Whiteouts only
//! ever touch earlier layers' entries (what the same layer puts stays), are never written, and
//! remove only entries of the staged tree, so they cannot reach outside it either.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::archive;
use crate::digest::HashingReader;
use crate::error::shorten;
use crate::manifest::{EntryKind, ManifestEntry};
use crate::progress::{Progress, ProgressReader};
use crate::store::{ContentStore, Put};
use crate::{Error, Result};

/// The longest path and the longest name in a path that Linux takes (`PATH_MAX`, `NAME_MAX`).
const PATH_MAX: usize = 4096;
const NAME_MAX: usize = 255;

/// Files up to this size are read into memory and hashed before touching the disk, so content
/// that the store already has costs no write at all.
const IN_MEMORY_LIMIT: u64 = 4 * 1024 * 1024;

/// Limits that stop decompression bombs: entries in a release (and in each archive), and bytes:
/// of files in the release, and of each archive's decoded stream as a whole (every entry's data,
/// headers past a small allowance per entry; see [`crate::archive::walk_entries`]).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    pub max_files: u64,
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_files: 1_000_000, max_bytes: 32 * 1024 * 1024 * 1024 }
    }
}

/// What staging wrote, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StageStats {
    pub files: u64,
    pub bytes: u64,
    pub objects_written: u64,
    pub bytes_written: u64,
    /// Frames of seekable archives applied again from a kept record, without decoding them.
    pub frames_replayed: u64,
    /// Frames of seekable archives decoded on their own.
    pub frames_decoded: u64,
}

/// Decoded chunks queued between the decoder thread and the staging thread.
const DECODED_QUEUE: usize = 16;
const DECODED_CHUNK: usize = 256 * 1024;

type Chunk = io::Result<Vec<u8>>;

/// The decoder thread: decompresses `raw` into chunks (an empty chunk marks the end), then hashes
/// whatever follows the compressed stream, and returns the archive file's sha256; `None` when
/// the staging side stopped reading first (it has its own error).
fn decode_into(
    raw: &mut (dyn Read + Send),
    progress: &dyn Progress,
    sender: mpsc::SyncSender<Chunk>,
    frames: Option<&mut Vec<archive::DecodedFrame>>,
) -> Result<Option<String>> {
    let mut hashing = HashingReader::new(ProgressReader::new(raw, progress));
    {
        let mut buffered = io::BufReader::with_capacity(256 * 1024, &mut hashing as &mut dyn Read);
        let zstd = match io::BufRead::fill_buf(&mut buffered) {
            Ok(head) => {
                archive::Compression::sniff(&head[..head.len().min(512)]).ok() == Some(archive::Compression::Zstd)
            }
            Err(_) => false,
        };
        let decoder = match frames.is_some() && zstd {
            // Each zstd frame is noted as it is decoded, for the frames a later deploy may replay.
            true => {
                archive::FrameEndsDecoder::new(buffered).map(|d| Decoding::Framed(Box::new(d))).map_err(Error::corrupt)
            }
            false => archive::decoder(buffered).map(Decoding::Plain),
        };
        let mut decoded = match decoder {
            Ok(decoded) => decoded,
            Err(e) => {
                let _ = sender.send(Err(io::Error::other(e.to_string())));
                return Err(e);
            }
        };
        loop {
            let mut chunk = vec![0u8; DECODED_CHUNK];
            let filled = match read_full(&mut decoded, &mut chunk) {
                Ok(filled) => filled,
                Err(e) => {
                    let _ = sender.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(Error::corrupt(e));
                }
            };
            chunk.truncate(filled);
            if sender.send(Ok(chunk)).is_err() {
                // Staging stopped (it has its own error to report): no point reading further.
                return Ok(None);
            }
            if filled == 0 {
                break;
            }
        }
        if let (Decoding::Framed(decoder), Some(frames)) = (&decoded, frames) {
            *frames = decoder.frames().to_vec();
        }
    }
    // Hash whatever follows the compressed stream too: the digest is the file's.
    io::copy(&mut hashing, &mut io::sink()).map_err(Error::corrupt)?;
    Ok(Some(hashing.finish().0))
}

enum Decoding<'a> {
    Plain(Box<dyn Read + 'a>),
    Framed(Box<archive::FrameEndsDecoder<io::BufReader<&'a mut dyn Read>>>),
}

impl Read for Decoding<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoding::Plain(decoder) => decoder.read(buf),
            Decoding::Framed(decoder) => decoder.read(buf),
        }
    }
}

fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The staging thread's view of the decoded stream.
struct DecodedReader {
    receiver: mpsc::Receiver<Chunk>,
    chunk: Vec<u8>,
    position: usize,
    ended: bool,
}

impl DecodedReader {
    fn new(receiver: mpsc::Receiver<Chunk>) -> Self {
        DecodedReader { receiver, chunk: Vec::new(), position: 0, ended: false }
    }
}

impl Read for DecodedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.position == self.chunk.len() {
            if self.ended {
                return Ok(0);
            }
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.ended = chunk.is_empty();
                    self.chunk = chunk;
                    self.position = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(io::Error::other("the decoder stopped before the end of the archive")),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.position);
        buf[..n].copy_from_slice(&self.chunk[self.position..self.position + n]);
        self.position += n;
        Ok(n)
    }
}

/// A fully staged tree, ready to become a release.
pub struct StagedTree {
    pub dir: PathBuf,
    pub archives: Vec<String>,
    pub entries: Vec<ManifestEntry>,
    pub stats: StageStats,
    /// What each layer unpacked from its archive did, in order, by archive sha256: a layer
    /// listing, with which a later deploy can stage the same archive again from the content
    /// store without reading it ([`Stager::replay_layer`]).
    pub listings: Vec<(String, Vec<ManifestEntry>)>,
}

pub struct Stager<'s> {
    store: &'s ContentStore,
    dir: PathBuf,
    limits: Limits,
    copy: bool,
    entries: BTreeMap<String, EntryKind>,
    archives: Vec<String>,
    stats: StageStats,
    entry_count: u64,
    buffer: Vec<u8>,
    /// The entries of the layer being unpacked, as they were applied.
    applied: Vec<ManifestEntry>,
    /// Set when the layer being unpacked hardlinks a file of an earlier layer: what it stages
    /// then depends on those layers, so its listing is not kept.
    depends_on_earlier: bool,
    listings: Vec<(String, Vec<ManifestEntry>)>,
    /// Where each entry of the layer being unpacked lay in its decoded stream, kept when the
    /// layer's archive is seekable, to find the frames a later deploy may replay.
    spans: Vec<Span>,
    /// What [`Stager::add_entry`] found about the entry it handled, for its span.
    entry_note: EntryNote,
    track_spans: bool,
}

/// One entry of a layer, for [`FrameRecord`]s: its span in the decoded stream and what it applied.
#[derive(Debug)]
struct Span {
    range: std::ops::Range<u64>,
    applied: std::ops::Range<usize>,
    note: EntryNote,
}

#[derive(Debug, Default)]
struct EntryNote {
    /// The entry's normalised path.
    path: Option<String>,
    /// A hardlink's target.
    link_target: Option<String>,
    /// A whiteout: what it does depends on what earlier layers staged.
    whiteout: bool,
}

/// A frame of a seekable archive (by the sha256 of its compressed bytes) that begins and ends
/// at entry boundaries and whose entries depend on nothing outside it (no whiteout, no hardlink
/// to an earlier frame): what staging it applied, which any later archive holding the same
/// frame applies again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FrameRecord {
    pub sha256: String,
    /// The length of the frame's content: a table that says otherwise of a frame with these
    /// bytes is not believed.
    pub decoded: u64,
    pub entries: Vec<ManifestEntry>,
}

impl FrameRecord {
    /// Whether this record can stand for `frame` (whose bytes have the record's sha256): the
    /// frame's declared content has the record's length, and the store holds every object.
    pub fn replayable(&self, frame: &archive::Frame, store: &ContentStore) -> bool {
        self.decoded == frame.decoded
            && self.entries.iter().all(|entry| match &entry.kind {
                EntryKind::File { mode, sha256, .. } => store.object_path(sha256, *mode).is_file(),
                _ => true,
            })
    }
}

/// The outcome of [`Stager::add_framed_layer`].
pub enum Framed {
    /// Staged: complete it with [`Stager::finish_framed_layer`].
    Staged { frames: Vec<FrameRecord> },
    /// A frame did not stand on its own (it did not decode alone, or split an entry): the archive
    /// must be unpacked as one stream, by a new stager.
    NotSelfContained { reason: String },
}

impl<'s> Stager<'s> {
    /// Creates the staging directory, which must not exist.
    pub fn create(store: &'s ContentStore, dir: PathBuf, limits: Limits, copy: bool) -> Result<Self> {
        fs_err::create_dir(&dir)?;
        Ok(Stager {
            store,
            dir,
            limits,
            copy,
            entries: BTreeMap::new(),
            archives: Vec::new(),
            stats: StageStats::default(),
            entry_count: 0,
            buffer: Vec::new(),
            applied: Vec::new(),
            depends_on_earlier: false,
            listings: Vec::new(),
            spans: Vec::new(),
            entry_note: EntryNote::default(),
            track_spans: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Extracts one archive on top of what is staged. Returns the archive's sha256.
    pub fn add_layer(&mut self, raw: &mut (dyn Read + Send), progress: &dyn Progress) -> Result<String> {
        self.track_spans = false;
        self.add_layer_stream(raw, progress, None)
    }

    /// [`Stager::add_layer`], which also returns the frames of a `.tar.zst` (as the decoder
    /// found them, whatever a seek table says) that a later deploy may replay.
    pub fn add_layer_noting_frames(
        &mut self,
        raw: &mut (dyn Read + Send),
        progress: &dyn Progress,
    ) -> Result<(String, Vec<FrameRecord>)> {
        self.track_spans = true;
        self.spans.clear();
        let mut frames = Vec::new();
        let sha256 = self.add_layer_stream(raw, progress, Some(&mut frames))?;
        let applied = self.listings.last().filter(|(archive, _)| *archive == sha256).map(|(_, applied)| applied);
        let records = match applied {
            Some(applied) => frames
                .into_iter()
                .filter_map(|frame| {
                    let decoded = frame.decoded.end - frame.decoded.start;
                    frame_entries(&self.spans, applied, frame.decoded).map(|entries| FrameRecord {
                        sha256: frame.sha256,
                        decoded,
                        entries,
                    })
                })
                .collect(),
            // A layer with whiteouts keeps no listing (nor frames).
            None => Vec::new(),
        };
        self.spans.clear();
        self.track_spans = false;
        Ok((sha256, records))
    }

    fn add_layer_stream(
        &mut self,
        raw: &mut (dyn Read + Send),
        progress: &dyn Progress,
        frames: Option<&mut Vec<archive::DecodedFrame>>,
    ) -> Result<String> {
        // Decompression runs on its own thread, ahead of the checks, hashing and writes here.
        std::thread::scope(|scope| {
            let (sender, receiver) = mpsc::sync_channel(DECODED_QUEUE);
            let decoder = scope.spawn(move || decode_into(raw, progress, sender, frames));
            let staged = self.add_entries(DecodedReader::new(receiver), &mut HashSet::new()).map(|_| ());
            // The decoder stops as soon as it finds the receiving side gone.
            let decoded = decoder.join().expect("the decoder thread does not panic");
            let sha256 = match (staged, decoded) {
                // A decoder that failed on its own (not a tar, a corrupt stream) holds the cause
                // of a staging side that found the stream unreadable; any other refusal by the
                // staging side is its own, whatever the decoder met further on.
                (Err(Error::CorruptArchive { .. }), Err(decoder)) => return Err(decoder),
                (Err(staging), _) => return Err(staging),
                (Ok(()), decoded) => {
                    decoded?.ok_or_else(|| Error::corrupt("staging stopped before the end of the archive"))?
                }
            };
            self.archives.push(sha256.clone());
            let applied = std::mem::take(&mut self.applied);
            if !std::mem::take(&mut self.depends_on_earlier) {
                self.listings.push((sha256.clone(), applied));
            }
            Ok(sha256)
        })
    }

    /// Stages an archive again from its listing (what [`Stager::add_layer`] applied when it
    /// unpacked it), with the content from the store: nothing is read or decompressed. Every
    /// entry goes through the same checks as when it came from the archive. The caller has
    /// checked that the store holds every object the listing names.
    pub fn replay_layer(&mut self, sha256: &str, listing: &[ManifestEntry]) -> Result<()> {
        self.replay_entries(listing, &mut HashSet::new())?;
        self.applied.clear();
        self.archives.push(sha256.to_owned());
        Ok(())
    }

    fn replay_entries(&mut self, listing: &[ManifestEntry], seen_in_layer: &mut HashSet<String>) -> Result<()> {
        for entry in listing {
            self.entry_count += 1;
            if self.entry_count > self.limits.max_files {
                return Err(Error::ArchiveTooLarge { what: "entry count", limit: self.limits.max_files });
            }
            let path = normalize_entry_path(&entry.path)?
                .ok_or_else(|| Error::unsafe_entry(&entry.path, "the archive root in a layer listing"))?;
            if !seen_in_layer.insert(path.clone()) {
                return Err(Error::unsafe_entry(&path, "the path appears twice in the archive"));
            }
            self.check_ancestors(&path)?;
            match &entry.kind {
                EntryKind::Dir { mode } => self.place_dir(path, dir_mode(*mode))?,
                EntryKind::Symlink { target } => {
                    check_symlink_target(&path, target)?;
                    self.place_symlink(path, target.clone())?;
                }
                EntryKind::File { mode, sha256, size } => {
                    self.count_bytes(*size)?;
                    self.place_file(path, file_mode(*mode), sha256.clone(), *size)?;
                }
            }
        }
        Ok(())
    }

    /// Stages a seekable archive frame by frame: a frame that a kept [`FrameRecord`] (in
    /// `known`, by the sha256 of its compressed bytes, which `shas` gives for each frame) has
    /// applied before, and whose objects the store holds, is applied again from the record
    /// without being decoded; any other frame is decoded on its own. Every entry goes through
    /// the same checks either way. The result is the tree the archive gives as one stream,
    /// provided every frame stands on its own: each frame but the last must begin and end at
    /// entry boundaries (a record is only kept for such a frame); when one does not, nothing
    /// here can be trusted to match the stream, and the caller unpacks the archive anew.
    pub fn add_framed_layer(
        &mut self,
        file: &mut std::fs::File,
        table: &archive::FrameTable,
        shas: &[String],
        known: &std::collections::HashMap<String, FrameRecord>,
        progress: &dyn Progress,
    ) -> Result<Framed> {
        use std::io::{BufRead, BufReader, Seek, SeekFrom};
        let mut seen_in_layer = HashSet::new();
        let mut records = Vec::new();
        self.applied.clear();
        self.depends_on_earlier = false;
        self.track_spans = true;
        let last = table.frames.len().saturating_sub(1);
        let not_alone =
            |index: usize, reason: String| Framed::NotSelfContained { reason: format!("frame {index}: {reason}") };
        for (index, (frame, sha)) in table.frames.iter().zip(shas).enumerate() {
            progress.advance(frame.compressed);
            if index < last
                && let Some(record) = known.get(sha).filter(|record| record.replayable(frame, self.store))
            {
                if let Err(e) = self.replay_entries(&record.entries, &mut seen_in_layer) {
                    return Ok(not_alone(index, e.to_string()));
                }
                self.stats.frames_replayed += 1;
                records.push(record.clone());
                continue;
            }
            file.seek(SeekFrom::Start(frame.offset))?;
            let mut raw = BufReader::new(HashingReader::new(Read::take(&mut *file, frame.compressed)));
            self.spans.clear();
            let applied_before = self.applied.len();
            let walked = (|| {
                let decoder =
                    zstd::stream::read::Decoder::with_buffer(&mut raw).map_err(Error::corrupt)?.single_frame();
                self.add_entries(decoder.take(frame.decoded.saturating_add(1)), &mut seen_in_layer)
            })();
            let walk = match walked {
                Ok(walk) => walk,
                Err(e) => return Ok(not_alone(index, e.to_string())),
            };
            let consumed_all = raw.fill_buf().map(|rest| rest.is_empty()).unwrap_or(false);
            if walk.decoded_len != frame.decoded || !consumed_all {
                return Ok(not_alone(index, "its size differs from the seek table's".into()));
            }
            // What was decoded is what was hashed to decide which frames to replay.
            let (frame_sha, _) = raw.into_inner().finish();
            if frame_sha != *sha {
                return Err(Error::corrupt("the archive changed while it was being read"));
            }
            if index < last && walk.entries_end != frame.decoded {
                return Ok(not_alone(index, "it does not end at an entry boundary".into()));
            }
            self.stats.frames_decoded += 1;
            let applied: Vec<ManifestEntry> = self.applied[applied_before..].to_vec();
            let spans: Vec<Span> = std::mem::take(&mut self.spans)
                .into_iter()
                .map(|span| Span {
                    applied: span.applied.start - applied_before..span.applied.end - applied_before,
                    ..span
                })
                .collect();
            if let Some(entries) = frame_entries(&spans, &applied, 0..frame.decoded) {
                records.push(FrameRecord { sha256: sha.clone(), decoded: frame.decoded, entries });
            }
        }
        self.track_spans = false;
        if self.depends_on_earlier {
            records.clear();
        }
        Ok(Framed::Staged { frames: records })
    }

    /// Completes [`Stager::add_framed_layer`] once the archive's sha256 is known. With `listed`,
    /// the layer's listing is kept for later deploys to replay in place of the archive: only
    /// when this host hashed the archive itself, since a listing stands for the archive's digest.
    pub fn finish_framed_layer(&mut self, archive_sha256: &str, listed: bool) {
        self.archives.push(archive_sha256.to_owned());
        let applied = std::mem::take(&mut self.applied);
        if !std::mem::take(&mut self.depends_on_earlier) && listed {
            self.listings.push((archive_sha256.to_owned(), applied));
        }
    }

    fn add_entries(&mut self, decoded: impl Read, seen_in_layer: &mut HashSet<String>) -> Result<archive::Walk> {
        archive::walk_entry_spans(decoded, self.limits, |entry, range| {
            let first = self.applied.len();
            self.entry_note = EntryNote::default();
            self.add_entry(entry, seen_in_layer)?;
            if self.track_spans {
                let note = std::mem::take(&mut self.entry_note);
                self.spans.push(Span { range, applied: first..self.applied.len(), note });
            }
            Ok(())
        })
    }

    /// The manifest entries and statistics of the staged tree, once every symlink has been
    /// resolved through the other symlinks of the tree and found to stay inside it.
    pub fn finish(self) -> Result<StagedTree> {
        for (path, kind) in &self.entries {
            if let EntryKind::Symlink { target } = kind
                && !resolves_inside(&self.entries, path, target)
            {
                return Err(Error::unsafe_entry(
                    path,
                    format!("symlink to `{}` leads outside the release through other symlinks", shorten(target)),
                ));
            }
        }
        let entries = self.entries.into_iter().map(|(path, kind)| ManifestEntry { path, kind }).collect();
        Ok(StagedTree { dir: self.dir, archives: self.archives, entries, stats: self.stats, listings: self.listings })
    }

    fn add_entry(&mut self, mut entry: tar::Entry<'_, impl Read>, seen_in_layer: &mut HashSet<String>) -> Result<()> {
        let sparse = archive::PaxSparse::of(&mut entry)?;
        let raw_path = match sparse.as_ref().and_then(|sparse| sparse.name.clone()) {
            Some(name) => name,
            None => String::from_utf8(entry.path_bytes().into_owned())
                .map_err(|e| Error::unsafe_entry(String::from_utf8_lossy(e.as_bytes()), "the path is not UTF-8"))?,
        };
        let entry_type = entry.header().entry_type();
        self.entry_count += 1;
        if self.entry_count > self.limits.max_files {
            return Err(Error::ArchiveTooLarge { what: "entry count", limit: self.limits.max_files });
        }
        let Some(path) = normalize_entry_path(&raw_path)? else {
            return Ok(()); // the archive's root directory (`./`)
        };
        if !seen_in_layer.insert(path.clone()) {
            return Err(Error::unsafe_entry(&path, "the path appears twice in the archive"));
        }
        if self.track_spans {
            self.entry_note.path = Some(path.clone());
        }
        if let Some((dir, _)) = path.rsplit_once('/')
            && dir.split('/').any(|part| part.starts_with(WHITEOUT_PREFIX))
        {
            return Err(Error::unsafe_entry(&path, "a directory named as an OCI whiteout (`.wh.` is reserved)"));
        }
        if let Some(whiteout) = Whiteout::of(&path) {
            if archive::is_directory(&entry) {
                return Err(Error::unsafe_entry(&path, "a directory named as an OCI whiteout (`.wh.` is reserved)"));
            }
            if let Whiteout::Remove(removed) = &whiteout
                && removed.rsplit('/').next().is_some_and(|name| name == "." || name == "..")
            {
                return Err(Error::unsafe_entry(&path, "a whiteout of `.` or `..` names nothing to remove"));
            }
            // What this layer stages now depends on what earlier layers staged: no listing.
            self.depends_on_earlier = true;
            self.entry_note.whiteout = true;
            return self.apply_whiteout(whiteout, seen_in_layer);
        }
        self.check_ancestors(&path)?;
        let mode = entry.header().mode().map_err(Error::corrupt)?;

        if archive::is_directory(&entry) {
            return self.place_dir(path, dir_mode(mode));
        }

        if entry_type.is_symlink() {
            let target = link_target(&entry, &path)?;
            check_symlink_target(&path, &target)?;
            return self.place_symlink(path, target);
        }

        if entry_type.is_hard_link() {
            let target = link_target(&entry, &path)?;
            // Refusals name this entry, not its target, which is not an entry of the archive.
            let target_path = normalize_entry_path(&target)
                .map_err(|e| match e {
                    Error::UnsafeEntry { reason, .. } => {
                        Error::unsafe_entry(&path, format!("hardlink target `{}`: {reason}", shorten(&target)))
                    }
                    other => other,
                })?
                .ok_or_else(|| Error::unsafe_entry(&path, "a hardlink to the archive root"))?;
            if !seen_in_layer.contains(&target_path) {
                self.depends_on_earlier = true;
            }
            if self.track_spans {
                self.entry_note.link_target = Some(target_path.clone());
            }
            let Some(EntryKind::File { mode, sha256, size }) = self.entries.get(&target_path).cloned() else {
                return Err(Error::unsafe_entry(
                    &path,
                    format!("hardlink target `{}` is not a file earlier in the archive", shorten(&target)),
                ));
            };
            self.count_bytes(size)?;
            return self.place_file(path, mode, sha256, size);
        }

        // The tar reader expands an old GNU sparse file (type `S`) itself.
        if archive::is_file(&entry) {
            let mode = file_mode(mode);
            return match sparse {
                Some(sparse) => {
                    let size = sparse.real_size;
                    self.count_bytes(size)?;
                    let stored = entry.size();
                    let mut content = sparse.reader(&mut entry, stored)?;
                    self.add_file(path, mode, size, &mut content)
                }
                None => {
                    let size = entry.size();
                    self.count_bytes(size)?;
                    self.add_file(path, mode, size, &mut entry)
                }
            };
        }

        let what = if entry_type.is_character_special() || entry_type.is_block_special() {
            "device nodes are not allowed"
        } else if entry_type.is_fifo() {
            "fifos are not allowed"
        } else {
            "this entry type is not supported"
        };
        Err(Error::unsafe_entry(&path, what))
    }

    /// Removes what a whiteout names, keeping whatever this layer put there (`seen_in_layer`).
    fn apply_whiteout(&mut self, whiteout: Whiteout<'_>, seen_in_layer: &HashSet<String>) -> Result<()> {
        match whiteout {
            // Whatever the order of the layer's entries: what this layer puts stays.
            Whiteout::Remove(path) => self.remove_earlier(&path, true, seen_in_layer)?,
            Whiteout::Nothing => {}
            Whiteout::Opaque(dir) => match dir {
                // The directory itself stays: the layer that makes it opaque has it (created
                // here if it does not say so; refused below a symlink or a file like any path).
                Some(dir) => {
                    self.check_ancestors(&format!("{dir}/"))?;
                    self.remove_earlier(dir, false, seen_in_layer)?;
                }
                None => {
                    let top: Vec<String> = self.entries.keys().filter(|p| !p.contains('/')).cloned().collect();
                    for path in top {
                        self.remove_earlier(&path, true, seen_in_layer)?;
                    }
                }
            },
        }
        Ok(())
    }

    /// Removes the entries below `path` (and `path` itself with `itself`) that earlier layers
    /// put, deepest first: an entry of this layer stays, and so do the directories above it.
    fn remove_earlier(&mut self, path: &str, itself: bool, seen_in_layer: &HashSet<String>) -> Result<()> {
        let mut doomed = self.paths_below(path);
        if itself && self.entries.contains_key(path) {
            doomed.insert(0, path.to_owned());
        }
        // Children sort after their directory (`a` < `a-b` < `a/b` is no trouble: reversed, every
        // child still comes before its parent).
        for victim in doomed.into_iter().rev() {
            if seen_in_layer.contains(&victim) {
                continue;
            }
            let kind = self.entries.get(&victim).cloned();
            match kind {
                Some(EntryKind::Dir { .. }) => {
                    let below = format!("{victim}/");
                    let kept = self.entries.range(below.clone()..).next().is_some_and(|(p, _)| p.starts_with(&below));
                    if !kept {
                        fs_err::remove_dir(self.dir.join(&victim))?;
                        self.entries.remove(&victim);
                    }
                }
                Some(_) => self.remove_existing(&victim)?,
                None => {}
            }
        }
        Ok(())
    }

    /// A file of `size` bytes read from `content` into the store and placed at `path`; the
    /// caller counted its bytes.
    fn add_file(&mut self, path: String, mode: u32, size: u64, content: &mut dyn Read) -> Result<()> {
        let (sha256, put, actual) = if size <= IN_MEMORY_LIMIT {
            self.buffer.clear();
            content.take(size.saturating_add(1)).read_to_end(&mut self.buffer).map_err(Error::corrupt)?;
            let (sha256, put) = self.store.put_bytes(&self.buffer, mode)?;
            (sha256, put, self.buffer.len() as u64)
        } else {
            let (sha256, actual, put) = self.store.put_reader(content, mode).map_err(|e| match e {
                Error::Io(io) if io.kind() != io::ErrorKind::StorageFull => Error::corrupt(io),
                other => other,
            })?;
            (sha256, put, actual)
        };
        if actual != size {
            return Err(Error::corrupt(format!("entry `{path}` is truncated")));
        }
        if put == Put::Written {
            self.stats.objects_written += 1;
            self.stats.bytes_written += size;
        }
        self.place_file(path, mode, sha256, size)
    }

    /// A directory at `path` with `mode` (an earlier layer's file or symlink there goes; an
    /// earlier directory takes the new mode).
    fn place_dir(&mut self, path: String, mode: u32) -> Result<()> {
        match self.entries.get(&path) {
            Some(EntryKind::Dir { .. }) => {}
            Some(_) => self.remove_existing(&path)?,
            None => {}
        }
        let full = self.dir.join(&path);
        if !self.entries.contains_key(&path) {
            fs_err::create_dir(&full)?;
        }
        fs_err::set_permissions(&full, std::fs::Permissions::from_mode(mode))?;
        self.record(&path, EntryKind::Dir { mode });
        Ok(())
    }

    /// A symlink at `path`, whose target the caller checked.
    fn place_symlink(&mut self, path: String, target: String) -> Result<()> {
        self.remove_existing(&path)?;
        std::os::unix::fs::symlink(&target, self.dir.join(&path))
            .map_err(|e| io::Error::new(e.kind(), format!("failed to create symlink {path}: {e}")))?;
        self.record(&path, EntryKind::Symlink { target });
        Ok(())
    }

    /// The store's object at `path`, replacing what an earlier layer put there; the caller
    /// counted its bytes.
    fn place_file(&mut self, path: String, mode: u32, sha256: String, size: u64) -> Result<()> {
        self.remove_existing(&path)?;
        self.store.materialise(&sha256, mode, &self.dir.join(&path), self.copy)?;
        self.stats.files += 1;
        self.stats.bytes += size;
        self.record(&path, EntryKind::File { mode, sha256, size });
        Ok(())
    }

    /// Enters `path` in the tree, and in the listing of the layer being unpacked.
    fn record(&mut self, path: &str, kind: EntryKind) {
        self.applied.push(ManifestEntry { path: path.to_owned(), kind: kind.clone() });
        self.entries.insert(path.to_owned(), kind);
    }

    fn count_bytes(&mut self, size: u64) -> Result<()> {
        if self.stats.bytes.saturating_add(size) > self.limits.max_bytes {
            return Err(Error::ArchiveTooLarge { what: "uncompressed size", limit: self.limits.max_bytes });
        }
        Ok(())
    }

    /// Refuses a path below a symlink or a file; creates missing parent directories.
    fn check_ancestors(&mut self, path: &str) -> Result<()> {
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            let ancestor = &path[..end + offset];
            match self.entries.get(ancestor) {
                Some(EntryKind::Symlink { .. }) => {
                    return Err(Error::unsafe_entry(
                        path,
                        format!("it passes through the symlink `{}`", shorten(ancestor)),
                    ));
                }
                Some(EntryKind::File { .. }) => {
                    return Err(Error::unsafe_entry(path, format!("its parent `{}` is a file", shorten(ancestor))));
                }
                Some(EntryKind::Dir { .. }) => {}
                None => {
                    let full = self.dir.join(ancestor);
                    fs_err::create_dir(&full)?;
                    fs_err::set_permissions(&full, std::fs::Permissions::from_mode(IMPLIED_DIR_MODE))?;
                    self.entries.insert(ancestor.to_owned(), EntryKind::Dir { mode: IMPLIED_DIR_MODE });
                }
            }
            end += offset + 1;
        }
        Ok(())
    }

    /// The staged paths below the directory `path`, in order.
    fn paths_below(&self, path: &str) -> Vec<String> {
        let prefix = format!("{path}/");
        self.entries.range(prefix.clone()..).map(|(p, _)| p).take_while(|p| p.starts_with(&prefix)).cloned().collect()
    }

    /// Removes what an earlier layer put at `path`, so a later layer can replace it.
    fn remove_existing(&mut self, path: &str) -> Result<()> {
        let Some(existing) = self.entries.remove(path) else { return Ok(()) };
        let full = self.dir.join(path);
        if let EntryKind::Dir { .. } = existing {
            for gone in self.paths_below(path) {
                if let Some(EntryKind::File { size, .. }) = self.entries.remove(&gone) {
                    self.stats.files -= 1;
                    self.stats.bytes -= size;
                }
            }
            fs_err::remove_dir_all(full)?;
        } else {
            if let EntryKind::File { size, .. } = existing {
                self.stats.files -= 1;
                self.stats.bytes -= size;
            }
            fs_err::remove_file(full)?;
        }
        Ok(())
    }
}

/// What the entries lying exactly in `range` of the decoded stream applied, when they fill it
/// (the first begins where it begins, each where the one before ends, the last ends where it
/// ends) and depend on nothing outside it: no whiteout, no hardlink to an entry before it.
fn frame_entries(spans: &[Span], applied: &[ManifestEntry], range: std::ops::Range<u64>) -> Option<Vec<ManifestEntry>> {
    let first = spans.partition_point(|span| span.range.start < range.start);
    let mut end = range.start;
    let mut paths = HashSet::new();
    let mut taken = first..first;
    for span in &spans[first..] {
        if span.range.start != end || span.range.end > range.end {
            break;
        }
        if span.note.whiteout || span.note.link_target.as_ref().is_some_and(|target| !paths.contains(target)) {
            return None;
        }
        if let Some(path) = &span.note.path {
            paths.insert(path.clone());
        }
        end = span.range.end;
        taken.end += 1;
    }
    if taken.is_empty() || end != range.end {
        return None;
    }
    let applied_range = spans[taken.start].applied.start..spans[taken.end - 1].applied.end;
    Some(applied[applied_range].to_vec())
}

/// An OCI whiteout entry: what it removes. Every name starting with `.wh.` is one (the prefix
/// is reserved by the OCI image format), and none is ever written.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Whiteout<'p> {
    /// `DIR/.wh.NAME`: `DIR/NAME` goes.
    Remove(String),
    /// `DIR/.wh..wh..opq`: what `DIR` (`None`: the root) held goes.
    Opaque(Option<&'p str>),
    /// Another `.wh..wh.` name (aufs' own bookkeeping, such as `.wh..wh.plnk`) or a bare `.wh.`:
    /// it removes nothing.
    Nothing,
}

/// The name prefix that marks a whiteout, and the name of an opaque one.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";

impl<'p> Whiteout<'p> {
    /// The whiteout a normalised path is, if its name says so.
    fn of(path: &'p str) -> Option<Self> {
        let (dir, name) = match path.rsplit_once('/') {
            Some((dir, name)) => (Some(dir), name),
            None => (None, path),
        };
        let removed = name.strip_prefix(WHITEOUT_PREFIX)?;
        Some(if name == OPAQUE_WHITEOUT {
            Whiteout::Opaque(dir)
        } else if removed.is_empty() || removed.starts_with(WHITEOUT_PREFIX) {
            Whiteout::Nothing
        } else {
            Whiteout::Remove(match dir {
                Some(dir) => format!("{dir}/{removed}"),
                None => removed.to_owned(),
            })
        })
    }
}

/// Whether a kept layer listing can be replayed: one written before whiteouts were applied may
/// list a whiteout as a file, and its archive must be unpacked again instead.
pub fn listing_is_replayable(listing: &[ManifestEntry]) -> bool {
    listing.iter().all(|entry| Whiteout::of(&entry.path).is_none())
}

/// A directory's mode in a release, from its mode in an archive or a listing: the owner (depot)
/// may always read, write and enter it; group and others keep their read and enter bits; no one
/// else may write, and setuid, setgid and sticky go (a release is not a place for shared
/// writable state: 1777 becomes 0755). So 0700 stays private.
pub(crate) fn dir_mode(mode: u32) -> u32 {
    (mode & 0o755) | 0o700
}

/// The mode of a directory an archive implies (a parent it does not list).
const IMPLIED_DIR_MODE: u32 = 0o755;

/// A file's mode in a release, from its mode in an archive or a listing: read for the owner,
/// never write, setuid, setgid or sticky.
pub(crate) fn file_mode(mode: u32) -> u32 {
    (mode & 0o555) | 0o400
}

fn link_target(entry: &tar::Entry<'_, impl Read>, path: &str) -> Result<String> {
    let target = entry.link_name_bytes().ok_or_else(|| Error::unsafe_entry(path, "a link without a target"))?;
    String::from_utf8(target.into_owned()).map_err(|_| Error::unsafe_entry(path, "the link target is not UTF-8"))
}

/// `./a//b/` → `a/b`; `None` for the archive root. Refuses absolute paths and `..`.
pub fn normalize_entry_path(raw: &str) -> Result<Option<String>> {
    if raw.starts_with('/') {
        return Err(Error::unsafe_entry(raw, "absolute paths are not allowed"));
    }
    if raw.contains('\0') {
        return Err(Error::unsafe_entry(raw.escape_debug().to_string(), "NUL in path"));
    }
    // Longer than Linux takes: refused here, before a system call's error quotes it whole.
    if raw.len() > PATH_MAX {
        return Err(Error::unsafe_entry(raw, format!("the path is longer than {PATH_MAX} bytes")));
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(Error::unsafe_entry(raw, "`..` components are not allowed")),
            part if part.len() > NAME_MAX => {
                return Err(Error::unsafe_entry(raw, format!("a name in the path is longer than {NAME_MAX} bytes")));
            }
            part => parts.push(part),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// A symlink at `path` with `target` must resolve inside the release, judged by its text alone.
fn check_symlink_target(path: &str, target: &str) -> Result<()> {
    if target.is_empty() {
        return Err(Error::unsafe_entry(path, "symlink with an empty target"));
    }
    if target.len() > PATH_MAX {
        return Err(Error::unsafe_entry(path, format!("symlink target longer than {PATH_MAX} bytes")));
    }
    if target.starts_with('/') {
        return Err(Error::unsafe_entry(
            path,
            format!("symlink to the absolute path `{}` points outside the release", shorten(target)),
        ));
    }
    let mut depth: Vec<&str> = path.split('/').collect();
    depth.pop(); // the link's own name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if depth.pop().is_none() {
                    return Err(Error::unsafe_entry(
                        path,
                        format!("symlink to `{}` points outside the release", shorten(target)),
                    ));
                }
            }
            part => depth.push(part),
        }
    }
    Ok(())
}

/// Follows `target` from the directory of `link` the way the kernel would, through the symlinks
/// of the staged tree; false if it ever climbs above the root or loops. `depot pack` uses it too,
/// so that it never makes an archive that deploy would refuse.
pub(crate) fn resolves_inside(entries: &BTreeMap<String, EntryKind>, link: &str, target: &str) -> bool {
    const MAX_HOPS: usize = 40;
    let mut stack: Vec<String> = link.split('/').map(str::to_owned).collect();
    stack.pop();
    let mut queue: std::collections::VecDeque<String> = target.split('/').map(str::to_owned).collect();
    let mut hops = 0;
    while let Some(part) = queue.pop_front() {
        match part.as_str() {
            "" | "." => {}
            ".." => {
                if stack.pop().is_none() {
                    return false;
                }
            }
            _ => {
                stack.push(part);
                if let Some(EntryKind::Symlink { target }) = entries.get(&stack.join("/")) {
                    hops += 1;
                    if hops > MAX_HOPS || target.starts_with('/') {
                        return false;
                    }
                    stack.pop();
                    for component in target.split('/').rev() {
                        queue.push_front(component.to_owned());
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_entry_path("./a//b/").unwrap().as_deref(), Some("a/b"));
        assert_eq!(normalize_entry_path("./").unwrap(), None);
        assert!(normalize_entry_path("/etc/passwd").is_err());
        assert!(normalize_entry_path("a/../../b").is_err());
        assert!(normalize_entry_path(&"n".repeat(255)).is_ok());
        assert!(normalize_entry_path(&"n".repeat(256)).is_err());
        assert!(normalize_entry_path(&["d"; 2048].join("/")).is_ok());
        assert!(normalize_entry_path(&["d"; 2049].join("/")).is_err());
    }

    #[test]
    fn errors_quote_long_names_shortened() {
        let Err(error) = normalize_entry_path(&format!("{}/x", "n".repeat(300_000))) else { panic!("accepted") };
        let message = error.to_string();
        assert!(message.len() < 400, "{message}");
        assert!(message.contains("(300002 bytes)"), "{message}");
        assert_eq!(crate::error::shorten("short"), "short");
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        assert!(check_symlink_target("a/link", "../b").is_ok());
        assert!(check_symlink_target("a/link", "../../b").is_err());
        assert!(check_symlink_target("link", "/etc").is_err());
        assert!(check_symlink_target("a/b/link", "../../x/../y").is_ok());
        assert!(check_symlink_target("link", "..").is_err());
    }

    #[test]
    fn symlink_chains_are_followed() {
        let mut entries = BTreeMap::new();
        entries.insert("s".to_owned(), EntryKind::Symlink { target: ".".into() });
        entries.insert("lib.so".to_owned(), EntryKind::Symlink { target: "lib.so.1".into() });
        assert!(!resolves_inside(&entries, "escape", "s/../etc"));
        assert!(resolves_inside(&entries, "ok", "s/lib.so"));
        entries.insert("loop".to_owned(), EntryKind::Symlink { target: "loop".into() });
        assert!(!resolves_inside(&entries, "l", "loop/x"));
    }
}
