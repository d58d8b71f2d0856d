//! Persistence for the registry: metadata (components, versions, configurations and their
//! history, tokens) and blobs (archives named by their sha256). This is the only crate that knows
//! SQL or how blobs are laid out. The backend is chosen in one place, [`open`], from URLs.

mod blobs;
mod copy;
pub mod db;
mod error;
mod metadata;
mod pipelines;
mod rows;
pub mod rules;

use std::path::PathBuf;

pub use blobs::{BlobWriter, FsBlobs, VerifiedUpload};
pub use copy::{TableCopy, copy_metadata, verify_metadata};
pub use db::{Change, Publish};
pub use error::{GateRemedy, Result, StoreError};
pub use metadata::{Added, Metadata, Retention};
pub use pipelines::BlobAccess;

/// Opens the metadata and blob stores named by `metadata_url` (`sqlite:///path/depot.db` or
/// `postgres://user:password@host:port/database`) and `blobs_url` (`file:///path/blobs`).
pub fn open(metadata_url: &str, blobs_url: &str) -> Result<(Metadata, FsBlobs)> {
    let metadata = open_metadata(metadata_url)?;
    let blobs = match blobs_url.strip_prefix("file://") {
        Some(path) => FsBlobs::open(&PathBuf::from(path))?,
        None => return Err(StoreError::UnsupportedUrl(blobs_url.to_owned())),
    };
    Ok((metadata, blobs))
}

/// Opens the metadata store named by `url`: `sqlite:///path/depot.db`, or
/// `postgres://user:password@host:port/database` (also `postgresql://`).
pub fn open_metadata(url: &str) -> Result<Metadata> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        Metadata::open_sqlite(&PathBuf::from(path))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Metadata::open_postgres(url)
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
}
