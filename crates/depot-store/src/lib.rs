//! Persistence for the registry: metadata (components, versions, configurations and their
//! history, tokens) and blobs (archives named by their sha256). This is the only crate that knows
//! SQL or how blobs are laid out. The backend is chosen in one place, [`open`], from URLs.

mod attestations;
mod blobs;
mod copy;
pub mod db;
mod error;
mod metadata;
mod pipelines;
mod policies;
mod private;
pub mod rollout;
mod rollouts;
mod rows;
pub mod rules;
mod sealer;
mod signatures;
mod ssh_keys;

use std::path::PathBuf;

pub use blobs::{BlobWriter, Blobs, ByteStream, S3_PART_SIZE, S3Credentials, S3Location, VerifiedUpload};
pub use copy::{TableCopy, copy_metadata, verify_metadata};
pub use db::{Change, Publish};
pub use error::{GateRemedy, Result, StoreError};
pub use metadata::{Added, Metadata, Retention};
pub use pipelines::{BlobAccess, StageEnv};
pub use private::create_private_dir;
pub use rollouts::ConfigView;
pub use sealer::{Resealed, Sealer};

/// Opens the metadata and blob stores named by `metadata_url` (see [`open_metadata`]) and
/// `blobs_url` (see [`open_blobs`]).
pub fn open(metadata_url: &str, blobs_url: &str) -> Result<(Metadata, Blobs)> {
    Ok((open_metadata(metadata_url)?, open_blobs(blobs_url)?))
}

/// Opens the blob store named by `url`: `file:///path/blobs` (files, the directory created if
/// needed) or `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION` (an S3-compatible bucket, with
/// credentials from the AWS environment variables and files). Nothing is sent to S3 yet: call
/// [`Blobs::check`] to know that the bucket answers.
pub fn open_blobs(url: &str) -> Result<Blobs> {
    if let Some(path) = url.strip_prefix("file://") {
        Blobs::files(&PathBuf::from(path))
    } else if url.starts_with("s3://") {
        Blobs::s3(S3Location::parse(url)?)
    } else {
        Err(StoreError::UnsupportedUrl(url.to_owned()))
    }
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
