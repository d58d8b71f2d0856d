//! Release archives: `.tar`, `.tar.gz` and `.tar.zst`, recognised by content, never by name.

mod pack;
mod reader;

use std::io::{BufRead, BufReader, Read};

pub use pack::{PackOptions, PackResult, pack, pack_files};
pub use reader::{CountedReader, ENTRY_ALLOWANCE, ENTRY_HEADERS_LIMIT, TRAILING_ALLOWANCE, walk_entries};

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

/// Reads a whole archive without writing anything, within the same limits as unpacking it:
/// decodes it to its end (checking the gzip or zstd trailer) and walks every entry. Returns the
/// number of entries.
pub fn check_readable(raw: impl Read, limits: crate::stage::Limits) -> Result<u64> {
    walk_entries(decoder(raw)?, limits, |_entry| Ok(()))
}
