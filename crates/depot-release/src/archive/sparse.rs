//! Sparse files in PAX archives, as GNU tar (`-S --format=posix`, sparse versions 0.0, 0.1 and
//! 1.0) and bsdtar (its default, version 1.0) write them: a regular-file entry whose PAX header
//! carries `GNU.sparse.*` records. A reader that ignores them deploys the condensed data under
//! a made-up name (`GNUSparseFile.0/…`), so they are expanded here to what GNU tar extracts.
//! (The old GNU format, entry type `S`, is expanded by the `tar` crate itself.)
//!
//! A sparse file is written out whole: its holes become zeros on disk, counted against the
//! release's size limit at the file's real size.

use std::collections::VecDeque;
use std::io::{self, Read};

use crate::archive::ENTRY_HEADERS_LIMIT;
use crate::{Error, Result};

/// What an entry's PAX header says of a sparse file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaxSparse {
    /// The file's real name (`GNU.sparse.name`), when the header's path is a made-up one.
    pub name: Option<String>,
    /// The file's size with its holes.
    pub real_size: u64,
    /// Where the map is: in the PAX header (versions 0.0 and 0.1), or at the start of the
    /// entry's data (1.0).
    map: Map,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Map {
    Header(Vec<(u64, u64)>),
    InData,
}

impl PaxSparse {
    /// The sparse description in `entry`'s PAX header, if it has one.
    pub fn of<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Option<PaxSparse>> {
        let Some(extensions) = entry.pax_extensions().map_err(Error::corrupt)? else { return Ok(None) };
        let mut records = Vec::new();
        for extension in extensions {
            let extension = extension.map_err(Error::corrupt)?;
            let Ok(key) = extension.key() else { continue };
            if let Some(key) = key.strip_prefix("GNU.sparse.") {
                let value = extension.value().map_err(|_| Error::corrupt(format!("GNU.sparse.{key} is not UTF-8")))?;
                records.push((key.to_owned(), value.to_owned()));
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        // On anything but a regular file (an old GNU sparse file, a directory, a `dir/`), tar
        // readers disagree on what the records mean.
        if !entry.header().entry_type().is_file() || entry.path_bytes().ends_with(b"/") {
            return Err(Error::corrupt("GNU.sparse records on an entry that is not a regular file"));
        }
        Self::from_records(&records).map(Some)
    }

    /// Reads the records of the three PAX sparse versions (keys without `GNU.sparse.`).
    fn from_records(records: &[(String, String)]) -> Result<PaxSparse> {
        let last = |key: &str| records.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        let number = |key: &str, value: &str| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| Error::corrupt(format!("GNU.sparse.{key} `{value}` is not a number")))
        };
        let name = last("name").map(str::to_owned);
        // GNU tar reads `size` and `realsize` alike, the last one winning; bsdtar prefers one.
        // Two that disagree are read differently by different tools.
        if let (Some(size), Some(real)) = (last("size"), last("realsize"))
            && number("size", size)? != number("realsize", real)?
        {
            return Err(Error::corrupt("GNU.sparse.size and GNU.sparse.realsize disagree"));
        }
        let major = last("major").map(|v| number("major", v)).transpose()?;
        if let Some(major) = major {
            let minor = last("minor").map(|v| number("minor", v)).transpose()?.unwrap_or(0);
            if (major, minor) != (1, 0) {
                return Err(Error::corrupt(format!(
                    "sparse format {major}.{minor} is not supported (GNU tar writes 0.0, 0.1 and 1.0)"
                )));
            }
            let real_size = last("realsize")
                .ok_or_else(|| Error::corrupt("a sparse 1.0 entry has no GNU.sparse.realsize"))
                .and_then(|v| number("realsize", v))?;
            return Ok(PaxSparse { name, real_size, map: Map::InData });
        }
        let real_size = last("size")
            .or(last("realsize"))
            .ok_or_else(|| Error::corrupt("a sparse entry has no GNU.sparse.size"))
            .and_then(|v| number("size", v))?;
        let chunks = if let Some(map) = last("map") {
            // Version 0.1: `offset,size,offset,size,…`.
            let numbers: Vec<u64> =
                map.split(',').filter(|s| !s.is_empty()).map(|v| number("map", v)).collect::<Result<_>>()?;
            if !numbers.len().is_multiple_of(2) {
                return Err(Error::corrupt("GNU.sparse.map has an odd count of numbers"));
            }
            numbers.chunks(2).map(|pair| (pair[0], pair[1])).collect()
        } else {
            // Version 0.0: `offset` and `numbytes` records in turn.
            let mut chunks = Vec::new();
            let mut offset = None;
            for (key, value) in records {
                match key.as_str() {
                    "offset" => offset = Some(number(key, value)?),
                    "numbytes" => {
                        let start = offset.take().ok_or_else(|| {
                            Error::corrupt("GNU.sparse.numbytes comes without a GNU.sparse.offset before it")
                        })?;
                        chunks.push((start, number(key, value)?));
                    }
                    _ => {}
                }
            }
            chunks
        };
        // GNU tar drops every block past `numblocks` (and all of them without it).
        let count = last("numblocks")
            .ok_or_else(|| Error::corrupt("a sparse entry has no GNU.sparse.numblocks"))
            .and_then(|v| number("numblocks", v))?;
        if count != chunks.len() as u64 {
            return Err(Error::corrupt(format!(
                "GNU.sparse.numblocks says {count} blocks and the map has {}",
                chunks.len()
            )));
        }
        Ok(PaxSparse { name, real_size, map: Map::Header(chunks) })
    }

    /// The file's content with its holes, read from `data` (the entry's data, `stored` bytes).
    pub fn reader<R: Read>(self, mut data: R, stored: u64) -> Result<SparseReader<R>> {
        let (chunks, map_bytes) = match self.map {
            Map::Header(chunks) => (chunks, 0),
            Map::InData => read_map(&mut data, stored)?,
        };
        let mut end = 0u64;
        let mut total = 0u64;
        for &(offset, size) in &chunks {
            let chunk_end =
                offset.checked_add(size).filter(|&e| offset >= end && e <= self.real_size).ok_or_else(|| {
                    Error::corrupt("the sparse map's blocks overlap, are out of order or pass the file's size")
                })?;
            end = chunk_end;
            total += size;
        }
        // GNU tar's file ends where the last block ends (writers end the map with a block of
        // size 0 at the real size), and a map with no block is no sparse file to it at all.
        if end != self.real_size || chunks.is_empty() {
            return Err(Error::corrupt("the sparse map does not end at the file's size"));
        }
        if total != stored - map_bytes {
            return Err(Error::corrupt(format!(
                "the sparse map lists {total} bytes of data and the entry holds {}",
                stored - map_bytes
            )));
        }
        Ok(SparseReader { data, chunks: chunks.into(), position: 0, real_size: self.real_size })
    }
}

/// Reads the map in front of a 1.0 entry's data: decimal numbers, one per line (the count, then
/// offset and size pairs), padded with zeros to a 512-byte block. Returns the map and the bytes
/// it took.
fn read_map<R: Read>(data: &mut R, stored: u64) -> Result<(Vec<(u64, u64)>, u64)> {
    let mut consumed = 0u64;
    let mut next_number = |consumed: &mut u64| -> Result<u64> {
        let mut digits = String::new();
        loop {
            let mut byte = [0u8];
            if *consumed >= stored.min(ENTRY_HEADERS_LIMIT) {
                return Err(Error::corrupt("the sparse map is cut short or longer than 1 MiB"));
            }
            data.read_exact(&mut byte).map_err(Error::corrupt)?;
            *consumed += 1;
            match byte[0] {
                b'\n' => break,
                b @ b'0'..=b'9' if digits.len() < 20 => digits.push(b as char),
                _ => return Err(Error::corrupt("the sparse map holds something other than decimal numbers")),
            }
        }
        digits.parse().map_err(|_| Error::corrupt("the sparse map holds an empty line or too large a number"))
    };
    let count = next_number(&mut consumed)?;
    let mut chunks = Vec::new();
    for _ in 0..count {
        let offset = next_number(&mut consumed)?;
        let size = next_number(&mut consumed)?;
        chunks.push((offset, size));
    }
    let padded = consumed.div_ceil(512) * 512;
    if padded > stored {
        return Err(Error::corrupt("the sparse map is longer than the entry"));
    }
    io::copy(&mut data.take(padded - consumed), &mut io::sink()).map_err(Error::corrupt)?;
    Ok((chunks, padded))
}

/// A sparse file's content: zeros for its holes, the entry's data for its blocks.
pub struct SparseReader<R> {
    data: R,
    chunks: VecDeque<(u64, u64)>,
    position: u64,
    real_size: u64,
}

impl<R: Read> Read for SparseReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let (offset, size) = self.chunks.front().copied().unwrap_or((self.real_size, 0));
            if self.position < offset {
                let n = buf.len().min(usize::try_from(offset - self.position).unwrap_or(usize::MAX));
                buf[..n].fill(0);
                self.position += n as u64;
                return Ok(n);
            }
            let left = offset + size - self.position;
            if left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.data.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a sparse file's data is cut short"));
                }
                self.position += n as u64;
                return Ok(n);
            }
            if self.chunks.pop_front().is_none() {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn expand(sparse: PaxSparse, data: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        sparse.reader(data, data.len() as u64)?.read_to_end(&mut out).map_err(Error::corrupt)?;
        Ok(out)
    }

    #[test]
    fn versions_0_0_and_0_1_read_their_map_from_the_header() {
        let v00 = PaxSparse::from_records(&records(&[
            ("size", "10"),
            ("numblocks", "3"),
            ("offset", "2"),
            ("numbytes", "3"),
            ("offset", "8"),
            ("numbytes", "1"),
            ("offset", "10"),
            ("numbytes", "0"),
        ]))
        .unwrap();
        let v01 =
            PaxSparse::from_records(&records(&[("size", "10"), ("numblocks", "3"), ("map", "2,3,8,1,10,0")])).unwrap();
        assert_eq!(v00, v01);
        assert_eq!(expand(v00, b"abcd").unwrap(), b"\0\0abc\0\0\0d\0");
    }

    #[test]
    fn version_1_0_reads_its_map_from_the_data() {
        let sparse = PaxSparse::from_records(&records(&[
            ("major", "1"),
            ("minor", "0"),
            ("name", "disk.img"),
            ("realsize", "6"),
        ]))
        .unwrap();
        assert_eq!(sparse.name.as_deref(), Some("disk.img"));
        let mut data = b"3\n0\n1\n4\n2\n6\n0\n".to_vec();
        data.resize(512, 0);
        data.extend_from_slice(b"xyz");
        assert_eq!(expand(sparse, &data).unwrap(), b"x\0\0\0yz");
    }

    #[test]
    fn maps_that_disagree_with_the_data_are_refused() {
        let map = |m: &str| {
            let count = (m.split(',').count() / 2).to_string();
            PaxSparse::from_records(&records(&[("size", "10"), ("numblocks", &count), ("map", m)])).unwrap()
        };
        assert!(expand(map("0,3,10,0"), b"abc").is_ok());
        assert!(expand(map("0,4,10,0"), b"abc").is_err(), "more data listed than held");
        assert!(expand(map("0,2,10,0"), b"abc").is_err(), "less data listed than held");
        assert!(expand(map("4,2,0,1,10,0"), b"abc").is_err(), "out of order");
        assert!(expand(map("8,3"), b"abc").is_err(), "past the real size");
        assert!(expand(map("0,3"), b"abc").is_err(), "ends before the real size: GNU tar's file would be 3 bytes");
        assert!(PaxSparse::from_records(&records(&[("size", "10"), ("map", "0,1")])).is_err(), "no numblocks");
        assert!(PaxSparse::from_records(&records(&[("size", "10"), ("realsize", "20")])).is_err(), "two sizes");
        assert!(PaxSparse::from_records(&records(&[("size", "10"), ("numblocks", "3"), ("map", "0,1")])).is_err());
        assert!(PaxSparse::from_records(&records(&[("major", "2"), ("realsize", "1")])).is_err());
        let v10 = PaxSparse::from_records(&records(&[("major", "1"), ("realsize", "6")])).unwrap();
        assert!(expand(v10.clone(), b"1\n0\nx").is_err(), "a map cut short");
        assert!(expand(v10.clone(), &[b"0\n".as_slice(), &[0; 510]].concat()).is_err(), "a map with no block");
        assert!(expand(v10, b"1\n0\n-1\n").is_err(), "not a number");
    }
}
