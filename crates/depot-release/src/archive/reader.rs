//! Reading an untrusted tar stream with every decoded byte counted.
//!
//! The `tar` crate reads a GNU long name or long link name, and a PAX extended header, into
//! memory before it yields the entry they describe, and skips the data of entries nobody reads
//! (directories, PAX global headers) by reading through it. So limits on files alone bound
//! neither memory nor work: [`walk_entries`] puts a counting reader under the tar reader that
//! refuses to go past the current bound, and checks each entry's size before its data is read.
//!
//! The bounds, for one archive:
//! - the headers in front of one entry's data (its own header, GNU long name and long link
//!   name, PAX extended header) take at most [`ENTRY_HEADERS_LIMIT`] bytes, and so does a PAX
//!   global header: that is what the tar reader may hold in memory;
//! - the decoded stream up to the end-of-archive marker is at most `max_bytes` plus
//!   [`ENTRY_ALLOWANCE`] per entry for tar's own headers and padding; every entry's data counts,
//!   whether it is a file's or data that is skipped (a symlink's, a PAX global header's), and
//!   so do headers past the allowance. A directory that declares data is refused. After the marker, [`TRAILING_ALLOWANCE`] more (tar
//!   writers pad to a record size, 10 KiB for GNU tar);
//! - every entry counts against `max_files`, PAX global headers included.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use crate::stage::Limits;
use crate::{Error, Result};

/// The headers in front of one entry's data may take this many bytes (libarchive refuses
/// long names past 1 MiB too). No real path, link name or set of extended attributes comes
/// near it.
pub const ENTRY_HEADERS_LIMIT: u64 = 1024 * 1024;

/// Decoded bytes allowed per entry besides its data: tar's header blocks and the padding of
/// the data to a block, with room for a short long name or PAX header (GNU tar and bsdtar
/// write one for paths past 100 bytes, `--format=posix` for every entry).
pub const ENTRY_ALLOWANCE: u64 = 4 * 1024;

/// Decoded bytes allowed after the tar's end-of-archive marker even when `max_bytes` is
/// smaller.
pub const TRAILING_ALLOWANCE: u64 = 1024 * 1024;

const BLOCK: u64 = 512;

/// Walks the entries of the decoded tar stream `decoded` within `limits`, calling `each` for
/// every entry but PAX global headers (counted and skipped, as the tar reader ignores them),
/// then decodes the rest of the stream (within the same bound) so that a compressed stream's
/// trailer is checked. Returns the number of entries. Nothing past a bound is ever read.
pub fn walk_entries<R: Read>(
    decoded: R,
    limits: Limits,
    mut each: impl FnMut(tar::Entry<'_, CountedReader<R>>) -> Result<()>,
) -> Result<u64> {
    walk_entry_spans(decoded, limits, |entry, _| each(entry)).map(|walk| walk.entries)
}

/// What [`walk_entry_spans`] went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walk {
    pub entries: u64,
    /// Where the last entry's data ends (padded to a block) in the decoded stream: where the
    /// end-of-archive marker is, or the end of the stream when it has none.
    pub entries_end: u64,
    /// The length of the decoded stream.
    pub decoded_len: u64,
}

/// [`walk_entries`], telling `each` where the entry lies in the decoded stream: from the end of
/// the previous entry's data (where its first header starts) to the end of its own data,
/// padded to a block. (A PAX global header, which `each` does not see, takes a span too.)
pub fn walk_entry_spans<R: Read>(
    decoded: R,
    limits: Limits,
    mut each: impl FnMut(tar::Entry<'_, CountedReader<R>>, std::ops::Range<u64>) -> Result<()>,
) -> Result<Walk> {
    let budget = Rc::new(Budget::default());
    let mut archive = tar::Archive::new(CountedReader { inner: decoded, budget: Rc::clone(&budget) });
    let stream_limit = |entries: u64| limits.max_bytes.saturating_add(ENTRY_ALLOWANCE.saturating_mul(entries));
    let mut count = 0u64;
    // Where the data of the previous entry ends (padded to a block): its headers start there.
    let mut data_end = 0u64;
    {
        let mut entries = archive.entries().map_err(Error::corrupt)?;
        loop {
            // The next entry's headers, read (and held in memory) by the tar reader.
            let headers_end = data_end.saturating_add(ENTRY_HEADERS_LIMIT);
            let stream_end = stream_limit(count + 1);
            if headers_end < stream_end {
                budget.bound(headers_end, Bound::Headers { entry: count + 1 });
            } else {
                budget.bound(stream_end, Bound::Stream);
            }
            let Some(entry) = entries.next() else { break };
            let entry = entry.map_err(|e| budget.error_or(Error::corrupt(e), limits))?;
            count += 1;
            if count > limits.max_files {
                return Err(Error::ArchiveTooLarge { what: "entry count", limit: limits.max_files });
            }
            let entry_type = entry.header().entry_type();
            // The bytes stored in the archive, as the tar reader will skip them: the PAX `size`
            // record when there is one, and for an old GNU sparse file (whose `size()` is its
            // expanded size) the header's field. The data starts where the reader is now, after
            // every header the tar reader took for this entry (GNU sparse extensions included).
            let size = if entry_type.is_gnu_sparse() {
                entry.header().entry_size().map_err(Error::corrupt)?
            } else {
                entry.size()
            };
            let span_start = data_end;
            data_end = budget.position.get().saturating_add(size).saturating_add(BLOCK - 1) & !(BLOCK - 1);
            // The tar reader skips the data of entries it has no use for; GNU tar, bsdtar and
            // Python's tarfile read none for a directory, a link or a device, and take the next
            // block as a header. Rather than deploy what the others do not list, such an archive
            // is refused. Only files (and PAX global headers) carry data.
            let carries_data = is_file(&entry) || entry_type.is_pax_global_extensions();
            if size > 0 && !carries_data {
                return Err(Error::unsafe_entry(
                    String::from_utf8_lossy(&entry.path_bytes()),
                    format!(
                        "a {} entry with {size} bytes of data, which tar readers disagree on (GNU tar reads them as the next entries); re-create the archive",
                        if is_directory(&entry) { "directory" } else { "link or special" }
                    ),
                ));
            }
            let pax_global = entry_type.is_pax_global_extensions();
            // Refused from its header, before its data is decoded.
            if pax_global && size > ENTRY_HEADERS_LIMIT {
                return Err(Error::HeaderTooLarge { entry: count, limit: ENTRY_HEADERS_LIMIT });
            }
            let stream_end = stream_limit(count);
            if data_end > stream_end {
                return Err(Error::ArchiveTooLarge { what: "uncompressed size", limit: limits.max_bytes });
            }
            budget.bound(stream_end, Bound::Stream);
            if pax_global {
                check_global_header(entry)?;
                continue;
            }
            each(entry, span_start..data_end).map_err(|e| budget.error_or(e, limits))?;
        }
    }
    if count == 0 {
        return Err(Error::corrupt("the archive has no entries"));
    }
    // Decode to the end of the compressed stream: a truncated or corrupted .tar.gz or .tar.zst
    // only shows in its trailer (gzip's CRC and length, zstd's checksum), which comes after the
    // tar's end-of-archive marker. What follows the marker is padding, within the same bound.
    budget.bound(stream_limit(count).saturating_add(TRAILING_ALLOWANCE), Bound::Stream);
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| budget.error_or(Error::corrupt(e), limits))?;
    Ok(Walk { entries: count, entries_end: data_end, decoded_len: budget.position.get() })
}

/// Whether `entry` is a directory: its type says so, or (as old tar writers and bsdtar's
/// `--format=v7` mark them) it is a regular file whose name ends in `/`.
pub fn is_directory<R: Read>(entry: &tar::Entry<'_, R>) -> bool {
    let entry_type = entry.header().entry_type();
    entry_type.is_dir() || ((entry_type.is_file() || entry_type.is_contiguous()) && entry.path_bytes().ends_with(b"/"))
}

/// Whether `entry` is a file (regular, contiguous or old GNU sparse), not a `dir/` written as
/// one: the only entries whose data is content.
pub fn is_file<R: Read>(entry: &tar::Entry<'_, R>) -> bool {
    let entry_type = entry.header().entry_type();
    (entry_type.is_file() || entry_type.is_contiguous() || entry_type.is_gnu_sparse()) && !is_directory(entry)
}

/// A PAX global header sets records for every later entry. The tar reader ignores it; GNU tar
/// applies a global `path`, `linkpath`, `size` or `GNU.sparse.*` to the entries that follow, so
/// an archive whose global header holds one of those is refused rather than read otherwise.
/// (Its size was checked against [`ENTRY_HEADERS_LIMIT`] before.)
fn check_global_header<R: Read>(mut entry: tar::Entry<'_, R>) -> Result<()> {
    let mut data = Vec::new();
    entry.read_to_end(&mut data).map_err(Error::corrupt)?;
    let mut rest = &data[..];
    while let Some(space) = rest.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&rest[..space]).ok().and_then(|n| n.parse::<usize>().ok()) else { break };
        if len <= space || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len];
        let key = record.split(|&b| b == b'=').next().unwrap_or_default();
        if matches!(key, b"path" | b"linkpath" | b"size") || key.starts_with(b"GNU.sparse.") {
            return Err(Error::corrupt(format!(
                "a PAX global header sets `{}` for every later entry, which tar readers disagree on",
                String::from_utf8_lossy(key)
            )));
        }
        rest = &rest[len..];
    }
    Ok(())
}

/// What the bound in force stands for, to name it when it is reached.
#[derive(Debug, Clone, Copy)]
enum Bound {
    Stream,
    Headers { entry: u64 },
}

#[derive(Debug)]
struct Budget {
    position: Cell<u64>,
    limit: Cell<u64>,
    bound: Cell<Bound>,
    reached: Cell<Option<Bound>>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            position: Cell::new(0),
            limit: Cell::new(0),
            bound: Cell::new(Bound::Stream),
            reached: Cell::new(None),
        }
    }
}

impl Budget {
    fn bound(&self, limit: u64, bound: Bound) {
        self.limit.set(limit);
        self.bound.set(bound);
    }

    /// The limit's error when the reader stopped at a bound (the tar reader wraps the reader's
    /// error in its own words), `other` otherwise.
    fn error_or(&self, other: Error, limits: Limits) -> Error {
        match self.reached.get() {
            None => other,
            Some(Bound::Stream) => Error::ArchiveTooLarge { what: "uncompressed size", limit: limits.max_bytes },
            Some(Bound::Headers { entry }) => Error::HeaderTooLarge { entry, limit: ENTRY_HEADERS_LIMIT },
        }
    }
}

/// The decoded stream under the tar reader: counts what it hands out, and fails rather than
/// read past the bound in force.
pub struct CountedReader<R> {
    inner: R,
    budget: Rc<Budget>,
}

impl<R: Read> Read for CountedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let position = self.budget.position.get();
        let room = self.budget.limit.get().saturating_sub(position);
        if room == 0 {
            // At the bound: fine only if the stream ends here.
            let mut probe = [0u8; 1];
            let n = loop {
                match self.inner.read(&mut probe) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    other => break other?,
                }
            };
            if n == 0 {
                return Ok(0);
            }
            self.budget.reached.set(Some(self.budget.bound.get()));
            return Err(io::Error::other("the archive goes past its limits"));
        }
        let wanted = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..wanted])?;
        self.budget.position.set(position + n as u64);
        Ok(n)
    }
}
