//! Persistence for the registry: metadata (components, versions, configurations and their
//! history, tokens) and blobs (archives named by their sha256). This is the only crate that knows
//! SQL or how blobs are laid out. The backend is chosen in one place, [`open`], from URLs.

mod blobs;
mod error;
mod pipelines;
mod sqlite;

use std::path::PathBuf;

pub use blobs::{BlobWriter, FsBlobs, VerifiedUpload};
pub use error::{Result, StoreError};
pub use pipelines::BlobAccess;
pub use sqlite::{Added, Retention, SqliteMetadata};

/// Opens the metadata and blob stores named by `metadata_url` (`sqlite:///path/depot.db`) and
/// `blobs_url` (`file:///path/blobs`).
pub fn open(metadata_url: &str, blobs_url: &str) -> Result<(SqliteMetadata, FsBlobs)> {
    let metadata = match metadata_url.strip_prefix("sqlite://") {
        Some(path) => SqliteMetadata::open(&PathBuf::from(path))?,
        None => return Err(StoreError::UnsupportedUrl(metadata_url.to_owned())),
    };
    let blobs = match blobs_url.strip_prefix("file://") {
        Some(path) => FsBlobs::open(&PathBuf::from(path))?,
        None => return Err(StoreError::UnsupportedUrl(blobs_url.to_owned())),
    };
    Ok((metadata, blobs))
}
