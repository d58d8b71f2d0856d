//! Release archives: `.tar`, `.tar.gz` and `.tar.zst`, recognised by content, never by name.

mod frames;
mod pack;
mod reader;
mod sparse;

use std::io::{BufRead, BufReader, Read};

pub use frames::{DecodedFrame, Frame, FrameEndsDecoder, FrameTable};
pub use pack::{PackOptions, PackResult, pack, pack_files};
pub use reader::{
    CountedReader, ENTRY_ALLOWANCE, ENTRY_HEADERS_LIMIT, TRAILING_ALLOWANCE, Walk, is_directory, is_file, walk_entries,
    walk_entry_spans,
};
pub use sparse::{PaxSparse, SparseReader};

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Formats people ship releases in that depot does not read, told apart by their first bytes so
/// that the error names them instead of quoting binary data. Each signature holds bytes no tar
/// header starts with (a file name of control characters or the bzip2 block magic).
struct OtherFormat {
    signature: fn(&[u8]) -> bool,
    name: &'static str,
    fix: &'static str,
}

const OTHER_FORMATS: &[OtherFormat] = &[
    OtherFormat {
        signature: |h| h.starts_with(b"\xfd7zXZ\0"),
        name: "xz-compressed",
        fix: "`xz -dc ARCHIVE | zstd -o release.tar.zst`",
    },
    OtherFormat {
        // `BZh`, the block size (1 to 9), then the first block's magic (or the end of an empty
        // stream).
        signature: |h| {
            h.len() >= 10
                && h.starts_with(b"BZh")
                && (b'1'..=b'9').contains(&h[3])
                && (&h[4..10] == b"1AY&SY" || &h[4..10] == b"\x17\x72\x45\x38\x50\x90")
        },
        name: "bzip2-compressed",
        fix: "`bzip2 -dc ARCHIVE | zstd -o release.tar.zst`",
    },
    OtherFormat {
        signature: |h| h.starts_with(b"LZIP\x01"),
        name: "lzip-compressed",
        fix: "`lzip -dc ARCHIVE | zstd -o release.tar.zst`",
    },
    OtherFormat {
        signature: |h| h.starts_with(b"\x04\x22\x4d\x18"),
        name: "lz4-compressed",
        fix: "`lz4 -dc ARCHIVE | zstd -o release.tar.zst`",
    },
    OtherFormat {
        signature: |h| h.starts_with(b"PK\x03\x04") || h.starts_with(b"PK\x05\x06"),
        name: "a zip archive",
        fix: "unzip it, then `depot pack` the directory",
    },
    OtherFormat {
        signature: |h| h.starts_with(b"7z\xbc\xaf\x27\x1c"),
        name: "a 7-Zip archive",
        fix: "extract it, then `depot pack` the directory",
    },
];

impl Compression {
    /// Looks at the first bytes of an archive.
    pub fn sniff(head: &[u8]) -> Result<Self> {
        if head.is_empty() {
            return Err(Error::corrupt("the file is empty"));
        }
        if head.starts_with(&ZSTD_MAGIC) {
            Ok(Compression::Zstd)
        } else if head.starts_with(&GZIP_MAGIC) {
            Ok(Compression::Gzip)
        } else if let Some(format) = OTHER_FORMATS.iter().find(|f| (f.signature)(head)) {
            Err(Error::UnsupportedFormat { format: format.name, fix: format.fix })
        } else if head.len() >= 512 {
            Ok(Compression::None)
        } else {
            Err(Error::corrupt("the file is too short to be a tar archive and is not gzip or zstd"))
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Compression::None => "tar",
            Compression::Gzip => "tar.gz",
            Compression::Zstd => "tar.zst",
        }
    }
}

/// Wraps `raw` (the archive file's bytes) in the decoder its content calls for, yielding tar.
pub fn decoder<'a>(raw: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let head = buffered.fill_buf()?;
    let head = head[..head.len().min(512)].to_vec();
    let decoded: Box<dyn Read + 'a> = match Compression::sniff(&head)? {
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(buffered).map_err(Error::corrupt)?),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::None => Box::new(buffered),
    };
    Ok(decoded)
}

/// What an archive entry is, for [`list`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    Directory,
    File,
    /// A link, a device, a sparse file, anything else.
    Other,
}

/// One entry as [`list`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The path staging would use (a sparse file's real name included), as written, with `./`
    /// and a trailing `/` removed.
    pub path: String,
    pub kind: EntryKind,
    /// A file's content (empty for anything else).
    pub data: Vec<u8>,
}

/// Every entry of an archive with its content, within `limits`, without writing anything: for
/// small archives whose every byte must be looked at (an environment layer).
pub fn list(raw: impl Read, limits: crate::stage::Limits) -> Result<Vec<Listed>> {
    let mut entries = Vec::new();
    walk_entries(decoder(raw)?, limits, |mut entry| {
        let sparse = PaxSparse::of(&mut entry)?;
        let path = match sparse.as_ref().and_then(|sparse| sparse.name.clone()) {
            Some(name) => name,
            None => entry.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
        };
        let path = path.trim_start_matches("./").trim_end_matches('/').to_owned();
        let gnu_sparse = entry.header().entry_type().is_gnu_sparse();
        let (kind, mut data) = (
            match () {
                _ if sparse.is_some() || gnu_sparse => EntryKind::Other,
                _ if is_directory(&entry) => EntryKind::Directory,
                _ if is_file(&entry) => EntryKind::File,
                _ => EntryKind::Other,
            },
            Vec::new(),
        );
        if kind == EntryKind::File {
            entry.read_to_end(&mut data).map_err(Error::corrupt)?;
        }
        entries.push(Listed { path, kind, data });
        Ok(())
    })?;
    Ok(entries)
}

/// Reads a whole archive without writing anything, within the same limits as unpacking it:
/// decodes it to its end (checking the gzip or zstd trailer), walks every entry, reads each
/// sparse file's map and counts every file at its real size against `max_bytes`. Returns the
/// number of entries.
pub fn check_readable(raw: impl Read, limits: crate::stage::Limits) -> Result<u64> {
    let mut bytes = 0u64;
    walk_entries(decoder(raw)?, limits, |mut entry| {
        let size = match PaxSparse::of(&mut entry)? {
            Some(sparse) => {
                let real = sparse.real_size;
                let stored = entry.size();
                sparse.reader(&mut entry, stored)?;
                real
            }
            None if is_file(&entry) => entry.size(),
            None => 0,
        };
        bytes = bytes.saturating_add(size);
        if bytes > limits.max_bytes {
            return Err(Error::ArchiveTooLarge { what: "uncompressed size", limit: limits.max_bytes });
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_formats_are_named_and_a_tar_is_not_taken_for_one() {
        let cases: [(&[u8], &str); 6] = [
            (b"\xfd7zXZ\0\0\x04", "xz-compressed"),
            (b"BZh91AY&SY\x01", "bzip2-compressed"),
            (b"LZIP\x01\x0c", "lzip-compressed"),
            (b"\x04\x22\x4d\x18\x64", "lz4-compressed"),
            (b"PK\x03\x04\x14\0", "a zip archive"),
            (b"7z\xbc\xaf\x27\x1c\0\x04", "a 7-Zip archive"),
        ];
        for (head, name) in cases {
            match Compression::sniff(head) {
                Err(Error::UnsupportedFormat { format, .. }) => assert_eq!(format, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        // A plain tar whose first file is named like a bzip2 stream.
        let mut tar = vec![0u8; 512];
        tar[..10].copy_from_slice(b"BZh9README");
        assert_eq!(Compression::sniff(&tar).unwrap(), Compression::None);
    }
}
