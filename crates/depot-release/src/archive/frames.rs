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
        let count = u64::from(u32::from_le_bytes(footer[0..4].try_into().expect("4 bytes")));
        let descriptor = footer[4];
        if u32::from_le_bytes(footer[5..9].try_into().expect("4 bytes")) != SEEKABLE_MAGIC
            || descriptor & RESERVED_BITS != 0
            || count == 0
        {
            return Ok(None);
        }
        let entry_len: u64 = if descriptor & CHECKSUM_FLAG != 0 { 12 } else { 8 };
        let table_len = count * entry_len + FOOTER_LEN;
        if table_len + SKIPPABLE_HEADER_LEN > len {
            return Ok(None);
        }
        let start = len - table_len - SKIPPABLE_HEADER_LEN;
        file.seek(SeekFrom::Start(start))?;
        let mut table = vec![0u8; (table_len + SKIPPABLE_HEADER_LEN) as usize];
        file.read_exact(&mut table)?;
        let word = |at: usize| u32::from_le_bytes(table[at..at + 4].try_into().expect("4 bytes"));
        if word(0) != SKIPPABLE_MAGIC || u64::from(word(4)) != table_len {
            return Ok(None);
        }
        let mut frames = Vec::with_capacity(count as usize);
        let (mut offset, mut decoded_offset) = (0u64, 0u64);
        for index in 0..count as usize {
            let at = SKIPPABLE_HEADER_LEN as usize + index * entry_len as usize;
            let (compressed, decoded) = (u64::from(word(at)), u64::from(word(at + 4)));
            if compressed == 0 {
                return Ok(None);
            }
            frames.push(Frame { offset, compressed, decoded_offset, decoded });
            offset += compressed;
            decoded_offset += decoded;
        }
        // The frames fill the file up to the table, exactly.
        if offset != start {
            return Ok(None);
        }
        Ok(Some(FrameTable { frames }))
    }

    pub fn decoded_len(&self) -> u64 {
        self.frames.last().map_or(0, |frame| frame.decoded_offset + frame.decoded)
    }
}

/// Writes a tar stream as seekable zstd: the caller ends a frame with [`FramedWriter::end_frame`]
/// between entries, and [`FramedWriter::finish`] writes the seek table. The output depends only
/// on the bytes written and where frames end (fixed level and worker count).
pub struct FramedWriter<W: Write> {
    out: W,
    encoder: Encoder<'static>,
    buffer: Vec<u8>,
    /// The frame being written: bytes in, bytes out.
    decoded: u64,
    compressed: u64,
    frames: Vec<(u32, u32)>,
}

impl<W: Write> FramedWriter<W> {
    pub fn new(out: W, level: i32, workers: u32) -> io::Result<Self> {
        let mut encoder = Encoder::new(level)?;
        encoder.set_parameter(CParameter::NbWorkers(workers))?;
        encoder.set_parameter(CParameter::ChecksumFlag(true))?;
        Ok(FramedWriter { out, encoder, buffer: vec![0u8; 1 << 17], decoded: 0, compressed: 0, frames: Vec::new() })
    }

    /// Bytes in the frame being written.
    pub fn frame_len(&self) -> u64 {
        self.decoded
    }

    /// Ends the frame being written, if it holds anything.
    pub fn end_frame(&mut self) -> io::Result<()> {
        if self.decoded == 0 {
            return Ok(());
        }
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
        let sizes = (u32::try_from(self.compressed), u32::try_from(self.decoded));
        let (Ok(compressed), Ok(decoded)) = sizes else {
            return Err(io::Error::other("a compressed frame does not fit the seek table"));
        };
        self.frames.push((compressed, decoded));
        self.encoder.reinit()?;
        self.decoded = 0;
        self.compressed = 0;
        Ok(())
    }

    /// Ends the last frame, writes the seek table, and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.end_frame()?;
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
            self.end_frame()?;
        }
        let take = buf.len().min((FRAME_DECODED_LIMIT - self.decoded) as usize);
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

/// Decodes a zstd stream as any decoder does, and notes where each frame really ends,
/// compressed and decoded: what a seek table claims is believed only where it agrees.
pub struct FrameEndsDecoder<R: io::BufRead> {
    inner: R,
    decoder: zstd::stream::raw::Decoder<'static>,
    consumed: u64,
    produced: u64,
    between_frames: bool,
    ends: Vec<(u64, u64)>,
}

impl<R: io::BufRead> FrameEndsDecoder<R> {
    pub fn new(inner: R) -> io::Result<Self> {
        let decoder = zstd::stream::raw::Decoder::new()?;
        Ok(FrameEndsDecoder { inner, decoder, consumed: 0, produced: 0, between_frames: true, ends: Vec::new() })
    }

    /// Where each frame that decoded to something ends: (compressed end, decoded end).
    pub fn frame_ends(&self) -> &[(u64, u64)] {
        &self.ends
    }

    pub fn into_inner(self) -> R {
        self.inner
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
            let mut input = InBuffer::around(input);
            let mut output = OutBuffer::around(&mut *buf);
            let hint = self.decoder.run(&mut input, &mut output)?;
            let (used, written) = (input.pos(), output.pos());
            self.inner.consume(used);
            self.consumed += used as u64;
            self.produced += written as u64;
            // 0: a frame (or a skippable frame) ended and all of it was handed out.
            self.between_frames = hint == 0;
            if hint == 0 && self.ends.last().is_none_or(|&(_, decoded)| decoded != self.produced) {
                self.ends.push((self.consumed, self.produced));
            }
            if written > 0 {
                return Ok(written);
            }
        }
    }
}

impl FrameTable {
    /// Whether the frames end where a decoder found they do (see [`FrameEndsDecoder`]).
    pub fn agrees_with(&self, ends: &[(u64, u64)]) -> bool {
        self.frames.len() == ends.len()
            && self
                .frames
                .iter()
                .zip(ends)
                .all(|(frame, &end)| (frame.offset + frame.compressed, frame.decoded_offset + frame.decoded) == end)
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
        assert!(table.agrees_with(decoder.frame_ends()), "{:?} {:?}", table, decoder.frame_ends());
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
