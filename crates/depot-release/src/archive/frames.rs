//! Seekable `.tar.zst`: independent zstd frames that begin and end at tar entry boundaries,
//! and a seek table after them that says how long each frame is, compressed and decoded.
//!
//! The table is zstd's seekable format (`contrib/seekable_format` in zstd's sources): a
//! skippable frame that every zstd decoder passes over, so `zstd -dc`, GNU tar and older depot
//! read the archive as one stream, as before. What the frames add is that a frame can be
//! decoded on its own, and that two archives with the same entries in a frame have the same
//! frame, byte for byte: a deploy can tell which parts of a new archive it has unpacked before
//! by hashing the compressed frames, without decoding them (see [`crate::stage`]).
//!
//! depot writes the frames itself rather than through a seekable-format crate because the
//! frames must end where tar entries end, which those crates (cutting by size) do not offer.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::mpsc;

use zstd::stream::raw::{Encoder, InBuffer, Operation, OutBuffer};
use zstd::zstd_safe::CParameter;

/// The seek table's footer ends with this number, little-endian.
const SEEKABLE_MAGIC: u32 = 0x8F92_EAB1;
/// The skippable frame that holds the seek table.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A5E;
/// Frame count (4 bytes), descriptor (1), seekable magic (4).
const FOOTER_LEN: u64 = 9;
/// Skippable frame header: magic and size.
const SKIPPABLE_HEADER_LEN: u64 = 8;
/// The descriptor's bit that says each table entry carries a checksum.
const CHECKSUM_FLAG: u8 = 0x80;
/// Bits the format reserves, which must be zero.
const RESERVED_BITS: u8 = 0x7c;
/// The smallest zstd frame: magic, frame header, one block header.
const SMALLEST_FRAME: u64 = 9;
/// Frames a table may list: one archive entry takes one at least, and a release has a million
/// entries at most by default. A table that lists more is not believed.
const MAX_FRAMES: u64 = 1 << 20;

/// Entries of up to this size share a frame with their neighbours until the frame holds this
/// much; a larger entry has a frame of its own.
pub const GROUP_LIMIT: u64 = 64 * 1024;
/// A frame's decoded size must fit the table's 32 bits; an entry larger than this continues in
/// a frame of its own, which then does not end at an entry boundary (and is always decoded).
const FRAME_DECODED_LIMIT: u64 = 1 << 31;

/// One frame of a seekable archive: where it is in the file, and where its content is in the
/// decoded stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub offset: u64,
    pub compressed: u64,
    pub decoded_offset: u64,
    pub decoded: u64,
}

/// The frames of a seekable archive, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTable {
    pub frames: Vec<Frame>,
}

impl FrameTable {
    /// The length of the footer that ends a seek table (see [`FrameTable::tail_len`]).
    pub const FOOTER_LEN: u64 = FOOTER_LEN;

    /// The seek table at the end of `file` (`len` bytes long), or `None` when the file does not
    /// end with one or its table does not describe the file: such an archive is read as one
    /// stream, as any other. The table is untrusted: it is only checked to add up here, and a
    /// frame that does not decode to what the table says is refused where it is decoded.
    pub fn read(file: &mut (impl Read + Seek), len: u64) -> io::Result<Option<FrameTable>> {
        if len < SKIPPABLE_HEADER_LEN + FOOTER_LEN {
            return Ok(None);
        }
        let mut footer = [0u8; FOOTER_LEN as usize];
        file.seek(SeekFrom::Start(len - FOOTER_LEN))?;
        file.read_exact(&mut footer)?;
        let Some(tail_len) = Self::tail_len(&footer, len) else { return Ok(None) };
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len))?;
        file.read_exact(&mut tail)?;
        Ok(Self::parse_tail(&tail, len))
    }

    /// How many bytes at the end of a file of `len` bytes hold its seek table (header, entries
    /// and footer), from its last [`FrameTable::FOOTER_LEN`] bytes; `None` when they are no seekable
    /// footer, or one that lists more frames than the file can hold (refused before anything is
    /// allocated for them).
    pub fn tail_len(footer: &[u8], len: u64) -> Option<u64> {
        let footer: &[u8; FOOTER_LEN as usize] = footer.try_into().ok()?;
        let count = u64::from(u32::from_le_bytes(footer[0..4].try_into().expect("4 bytes")));
        let descriptor = footer[4];
        if u32::from_le_bytes(footer[5..9].try_into().expect("4 bytes")) != SEEKABLE_MAGIC
            || descriptor & RESERVED_BITS != 0
            || count == 0
        {
            return None;
        }
        let entry_len: u64 = if descriptor & CHECKSUM_FLAG != 0 { 12 } else { 8 };
        let table_len = count * entry_len + FOOTER_LEN;
        if count > MAX_FRAMES || table_len + SKIPPABLE_HEADER_LEN + count * SMALLEST_FRAME > len {
            return None;
        }
        Some(table_len + SKIPPABLE_HEADER_LEN)
    }

    /// The table in `tail`, the last [`FrameTable::tail_len`] bytes of a file of `len` bytes;
    /// `None` when it does not describe the file.
    pub fn parse_tail(tail: &[u8], len: u64) -> Option<FrameTable> {
        let footer = tail.get(tail.len().checked_sub(FOOTER_LEN as usize)?..)?;
        if Self::tail_len(footer, len)? != tail.len() as u64 {
            return None;
        }
        let word = |at: usize| u32::from_le_bytes(tail[at..at + 4].try_into().expect("4 bytes"));
        let table_len = tail.len() as u64 - SKIPPABLE_HEADER_LEN;
        if word(0) != SKIPPABLE_MAGIC || u64::from(word(4)) != table_len {
            return None;
        }
        let entry_len = if footer[4] & CHECKSUM_FLAG != 0 { 12 } else { 8 };
        let count = (table_len - FOOTER_LEN) as usize / entry_len;
        let sizes = (0..count).map(|index| {
            let at = SKIPPABLE_HEADER_LEN as usize + index * entry_len;
            (u64::from(word(at)), u64::from(word(at + 4)))
        });
        Self::from_sizes(sizes, len - tail.len() as u64)
    }

    /// The table of frames of these sizes (compressed, decoded), in order, that fill the first
    /// `frames_len` bytes of a file exactly; `None` when they do not, or when a frame is too
    /// small to be one.
    pub fn from_sizes(sizes: impl ExactSizeIterator<Item = (u64, u64)>, frames_len: u64) -> Option<FrameTable> {
        if sizes.len() as u64 > MAX_FRAMES || sizes.len() == 0 {
            return None;
        }
        let mut frames = Vec::with_capacity(sizes.len());
        let (mut offset, mut decoded_offset) = (0u64, 0u64);
        for (compressed, decoded) in sizes {
            if compressed < SMALLEST_FRAME {
                return None;
            }
            frames.push(Frame { offset, compressed, decoded_offset, decoded });
            offset = offset.checked_add(compressed)?;
            decoded_offset = decoded_offset.checked_add(decoded)?;
        }
        (offset == frames_len).then_some(FrameTable { frames })
    }

    pub fn decoded_len(&self) -> u64 {
        self.frames.last().map_or(0, |frame| frame.decoded_offset + frame.decoded)
    }
}

/// Writes a tar stream as seekable zstd: the caller ends a frame with [`FramedWriter::end_frame`]
/// between entries (and says before a large entry with [`FramedWriter::begin_large`]), and
/// [`FramedWriter::finish`] writes the seek table. Small frames are compressed on worker
/// threads while the caller reads the next files, and written in order; a large entry is
/// compressed as it comes, by zstd's own workers. The output depends only on the bytes written
/// and where frames end (fixed level, fixed worker count for large frames).
pub struct FramedWriter<W: Write> {
    out: W,
    encoder: Encoder<'static>,
    buffer: Vec<u8>,
    /// The small frame being gathered.
    gathered: Vec<u8>,
    /// Whether the frame being written is a large entry's, streamed through `encoder`.
    streaming: bool,
    /// The frame being written: bytes in, and (streaming) bytes out.
    decoded: u64,
    compressed: u64,
    frames: Vec<(u32, u32)>,
    workers: Workers,
    /// Small frames handed to the workers, oldest first, with their decoded sizes.
    pending: std::collections::VecDeque<(mpsc::Receiver<io::Result<Vec<u8>>>, u64)>,
    pending_bytes: u64,
}

/// An entry up to this size is compressed whole by a worker; a larger one is streamed.
pub const STREAM_LIMIT: u64 = 8 * 1024 * 1024;
/// Frames (and their bytes) in flight at most: enough to keep the workers busy while the
/// caller reads, and a bound on the memory they take.
const PENDING_LIMIT: usize = 32;
const PENDING_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

type Job = (Vec<u8>, mpsc::SyncSender<io::Result<Vec<u8>>>);

/// Threads that compress whole small frames, each with its own context.
struct Workers {
    jobs: Option<mpsc::Sender<Job>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(level: i32, count: usize) -> Self {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(std::sync::Mutex::new(receiver));
        let threads = (0..count)
            .map(|_| {
                let receiver = std::sync::Arc::clone(&receiver);
                std::thread::spawn(move || {
                    let mut compressor = zstd::bulk::Compressor::new(level)
                        .and_then(|mut c| c.set_parameter(CParameter::ChecksumFlag(true)).map(|()| c));
                    loop {
                        let job = receiver.lock().map_err(|_| ()).and_then(|r| r.recv().map_err(|_| ()));
                        let Ok((data, reply)) = job else { break };
                        let result = match &mut compressor {
                            Ok(compressor) => compressor.compress(&data),
                            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                        };
                        let _ = reply.send(result);
                    }
                })
            })
            .collect();
        Workers { jobs: Some(jobs), threads }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.jobs.take();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

impl<W: Write> FramedWriter<W> {
    pub fn new(out: W, level: i32, workers: u32) -> io::Result<Self> {
        let mut encoder = Encoder::new(level)?;
        encoder.set_parameter(CParameter::NbWorkers(workers))?;
        encoder.set_parameter(CParameter::ChecksumFlag(true))?;
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 8);
        Ok(FramedWriter {
            out,
            encoder,
            buffer: vec![0u8; 1 << 17],
            gathered: Vec::new(),
            streaming: false,
            decoded: 0,
            compressed: 0,
            frames: Vec::new(),
            workers: Workers::start(level, threads),
            pending: std::collections::VecDeque::new(),
            pending_bytes: 0,
        })
    }

    /// Bytes in the frame being written.
    pub fn frame_len(&self) -> u64 {
        self.decoded
    }

    /// Ends the frame being written, and starts one that a large entry will have to itself.
    pub fn begin_large(&mut self) -> io::Result<()> {
        self.end_frame()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        self.streaming = true;
        Ok(())
    }

    /// Ends the frame being written, if it holds anything; the next is a small one.
    pub fn end_frame(&mut self) -> io::Result<()> {
        self.close_frame()?;
        self.streaming = false;
        Ok(())
    }

    fn close_frame(&mut self) -> io::Result<()> {
        if self.decoded == 0 {
            return Ok(());
        }
        if self.streaming {
            loop {
                let mut output = OutBuffer::around(&mut self.buffer[..]);
                let remaining = self.encoder.finish(&mut output, true)?;
                let written = output.pos();
                self.out.write_all(&self.buffer[..written])?;
                self.compressed += written as u64;
                if remaining == 0 {
                    break;
                }
            }
            self.record(self.compressed, self.decoded)?;
            self.encoder.reinit()?;
        } else {
            let (reply, receiver) = mpsc::sync_channel(1);
            let data = std::mem::take(&mut self.gathered);
            let jobs = self.workers.jobs.as_ref().expect("workers run until the writer goes");
            jobs.send((data, reply)).map_err(|_| io::Error::other("the compression workers stopped"))?;
            self.pending.push_back((receiver, self.decoded));
            self.pending_bytes += self.decoded;
            while self.pending.len() > PENDING_LIMIT || self.pending_bytes > PENDING_BYTES_LIMIT {
                self.write_oldest()?;
            }
        }
        self.decoded = 0;
        self.compressed = 0;
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some((receiver, decoded)) = self.pending.pop_front() else { return Ok(()) };
        self.pending_bytes -= decoded;
        let compressed = receiver.recv().map_err(|_| io::Error::other("a compression worker stopped"))??;
        self.out.write_all(&compressed)?;
        self.record(compressed.len() as u64, decoded)
    }

    fn record(&mut self, compressed: u64, decoded: u64) -> io::Result<()> {
        let (Ok(compressed), Ok(decoded)) = (u32::try_from(compressed), u32::try_from(decoded)) else {
            return Err(io::Error::other("a compressed frame does not fit the seek table"));
        };
        self.frames.push((compressed, decoded));
        Ok(())
    }

    /// Ends the last frame, writes the seek table, and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.end_frame()?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let count = u32::try_from(self.frames.len()).map_err(|_| io::Error::other("too many frames"))?;
        let table_len = u32::try_from(self.frames.len() as u64 * 8 + FOOTER_LEN)
            .map_err(|_| io::Error::other("the seek table is too large"))?;
        let mut table = Vec::with_capacity(table_len as usize + SKIPPABLE_HEADER_LEN as usize);
        table.extend_from_slice(&SKIPPABLE_MAGIC.to_le_bytes());
        table.extend_from_slice(&table_len.to_le_bytes());
        for (compressed, decoded) in &self.frames {
            table.extend_from_slice(&compressed.to_le_bytes());
            table.extend_from_slice(&decoded.to_le_bytes());
        }
        table.extend_from_slice(&count.to_le_bytes());
        table.push(0);
        table.extend_from_slice(&SEEKABLE_MAGIC.to_le_bytes());
        self.out.write_all(&table)?;
        Ok(self.out)
    }
}

impl<W: Write> Write for FramedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.decoded >= FRAME_DECODED_LIMIT {
            // An entry too large for one frame continues in another of its own.
            self.close_frame()?;
        }
        let take = buf.len().min((FRAME_DECODED_LIMIT - self.decoded) as usize);
        if !self.streaming {
            self.gathered.extend_from_slice(&buf[..take]);
            self.decoded += take as u64;
            return Ok(take);
        }
        let mut input = InBuffer::around(&buf[..take]);
        while input.pos() < take {
            let mut output = OutBuffer::around(&mut self.buffer[..]);
            self.encoder.run(&mut input, &mut output)?;
            let written = output.pos();
            self.out.write_all(&self.buffer[..written])?;
            self.compressed += written as u64;
        }
        self.decoded += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A frame as a decoder found it: where its content lies in the decoded stream, and the sha256
/// of its compressed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedFrame {
    pub decoded: std::ops::Range<u64>,
    pub sha256: String,
}

/// Decodes a zstd stream as any decoder does, and notes each frame that decoded to something:
/// where it really ends and the sha256 of its compressed bytes (no seek table is needed or
/// believed).
pub struct FrameEndsDecoder<R: io::BufRead> {
    inner: R,
    decoder: zstd::stream::raw::Decoder<'static>,
    hasher: sha2::Sha256,
    produced: u64,
    frame_start: u64,
    between_frames: bool,
    frames: Vec<DecodedFrame>,
}

impl<R: io::BufRead> FrameEndsDecoder<R> {
    pub fn new(inner: R) -> io::Result<Self> {
        let decoder = zstd::stream::raw::Decoder::new()?;
        Ok(FrameEndsDecoder {
            inner,
            decoder,
            hasher: sha2::Sha256::default(),
            produced: 0,
            frame_start: 0,
            between_frames: true,
            frames: Vec::new(),
        })
    }

    /// The frames decoded so far, in order.
    pub fn frames(&self) -> &[DecodedFrame] {
        &self.frames
    }
}

impl<R: io::BufRead> Read for FrameEndsDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let input = self.inner.fill_buf()?;
            if input.is_empty() {
                if !self.between_frames {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the zstd stream ends inside a frame"));
                }
                return Ok(0);
            }
            let mut in_buffer = InBuffer::around(input);
            let mut output = OutBuffer::around(&mut *buf);
            let hint = self.decoder.run(&mut in_buffer, &mut output)?;
            let (used, written) = (in_buffer.pos(), output.pos());
            sha2::Digest::update(&mut self.hasher, &input[..used]);
            self.inner.consume(used);
            self.produced += written as u64;
            // 0: a frame (or a skippable frame) ended and all of it was handed out.
            self.between_frames = hint == 0;
            if hint == 0 {
                let sha256 = crate::digest::to_hex(&sha2::Digest::finalize_reset(&mut self.hasher));
                // A skippable frame decodes to nothing: not a frame of the content.
                if self.produced > self.frame_start {
                    self.frames.push(DecodedFrame { decoded: self.frame_start..self.produced, sha256 });
                }
                self.frame_start = self.produced;
            }
            if written > 0 {
                return Ok(written);
            }
        }
    }
}

/// Whether a small entry at `path` closes its frame: a frame ends after a path whose hash has
/// its low bits zero, so that a file added or removed moves the boundaries of its own frame
/// only, not of every frame after it (as frames cut at a fixed size would).
pub fn closes_group(path: &str) -> bool {
    use sha2::Digest;
    sha2::Sha256::digest(path.as_bytes())[0] & 0x07 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_table_read_back_and_decode_as_one_stream() {
        let mut writer = FramedWriter::new(Vec::new(), 3, 0).unwrap();
        writer.write_all(b"hello ").unwrap();
        writer.end_frame().unwrap();
        writer.end_frame().unwrap(); // nothing to end
        writer.begin_large().unwrap();
        writer.write_all(&[b'x'; 100_000]).unwrap();
        let bytes = writer.finish().unwrap();
        let table = FrameTable::read(&mut io::Cursor::new(&bytes), bytes.len() as u64).unwrap().unwrap();
        assert_eq!(table.frames.len(), 2);
        assert_eq!((table.frames[0].decoded, table.frames[1].decoded_offset, table.decoded_len()), (6, 6, 100_006));
        let second = &bytes[table.frames[1].offset as usize..][..table.frames[1].compressed as usize];
        assert_eq!(zstd::decode_all(second).unwrap(), vec![b'x'; 100_000]);
        let all = zstd::decode_all(&bytes[..]).unwrap();
        assert_eq!((&all[..6], all.len()), (&b"hello "[..], 100_006));
        let mut decoder = FrameEndsDecoder::new(io::BufReader::with_capacity(100, &bytes[..])).unwrap();
        let mut decoded = Vec::new();
        decoder.read_to_end(&mut decoded).unwrap();
        assert_eq!(decoded, all);
        let found: Vec<_> = decoder.frames().iter().map(|frame| frame.decoded.clone()).collect();
        assert_eq!(found, [0..6, 6..100_006]);
        let second_sha = crate::digest::to_hex(&<sha2::Sha256 as sha2::Digest>::digest(second));
        assert_eq!(decoder.frames()[1].sha256, second_sha);
    }

    #[test]
    fn a_file_without_a_table_or_with_one_that_does_not_add_up_has_none() {
        let plain = zstd::encode_all(&b"data"[..], 3).unwrap();
        assert_eq!(FrameTable::read(&mut io::Cursor::new(&plain), plain.len() as u64).unwrap(), None);
        let mut writer = FramedWriter::new(Vec::new(), 3, 0).unwrap();
        writer.write_all(b"data").unwrap();
        let mut bytes = writer.finish().unwrap();
        // One byte more in front: the frames no longer fill the file up to the table.
        bytes.insert(0, 0);
        assert_eq!(FrameTable::read(&mut io::Cursor::new(&bytes), bytes.len() as u64).unwrap(), None);
    }
}
