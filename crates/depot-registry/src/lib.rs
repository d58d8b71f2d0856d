//! The registry as a service: one [`Registry`] that every front-end calls (the HTTP API today;
//! the SSH console and the web dashboard next). It owns the rules: who may do what, pushes and
//! the channels they move, retention, configurations and their revisions, gates and promotions,
//! environment layers, agents' reports, garbage collection, and the blocking queries that
//! watchers wait on. Front-ends parse their input, call one method, and render the answer.
//!
//! Every method is async and never blocks an async worker: the store's calls run on the blocking
//! pool. The decisions themselves are plain functions over plain data (`depot_store::rules`),
//! unit-tested without a database; the store's transactions apply them atomically.

mod access;
mod blobs;
mod components;
mod configs;
mod error;
mod gc;
mod keys;
mod pipelines;
mod rollouts;
mod signatures;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use depot_store::{Blobs, Metadata, StoreError};

pub use access::{Caller, Need, new_token};
pub use blobs::{Download, Upload};
pub use components::Pushed;
pub use configs::ConfigAnswer;
pub use error::{Error, Result, store_error_code};
pub use rollouts::STEP_EVERY;

/// The limits and durations the registry applies.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The largest blob an upload may carry.
    pub max_blob_size: u64,
    /// Versions kept per component (0: all).
    pub max_versions: u64,
    /// How old an unreferenced blob or an interrupted upload must be before collection.
    pub gc_grace: Duration,
    /// The longest a blocking query may wait.
    pub max_wait: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            max_blob_size: 10 * 1024 * 1024 * 1024,
            max_versions: 10,
            gc_grace: Duration::from_secs(30 * 60),
            max_wait: Duration::from_secs(300),
        }
    }
}

/// The registry. Cloning is cheap: clones share the store, the blobs and the watchers.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    metadata: Metadata,
    blobs: Blobs,
    policy: Policy,
    watchers: Arc<watch::Watchers>,
    /// The blobs whose frame index is being read, each with a receiver that turns true once done.
    indexing: std::sync::Mutex<std::collections::HashMap<depot_api::Digest, tokio::sync::watch::Receiver<bool>>>,
}

impl Registry {
    /// The registry over `metadata` and `blobs`. Every change the store commits (through this
    /// process or, on PostgreSQL, any replica) reaches the blocking queries through one
    /// subscription: no operation announces a change itself.
    pub fn new(metadata: Metadata, blobs: Blobs, policy: Policy) -> Result<Self> {
        let watchers = Arc::new(watch::Watchers::default());
        let reader = metadata.detached();
        let announce_to = watchers.clone();
        metadata.subscribe(Arc::new(move |change| announce_to.announce(&reader, change)))?;
        Ok(Registry { inner: Arc::new(Inner { metadata, blobs, policy, watchers, indexing: Default::default() }) })
    }

    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// The blob store, for front-ends that stream a blob after [`Registry::blob_for_download`]
    /// allowed it.
    pub fn blobs(&self) -> &Blobs {
        &self.inner.blobs
    }

    /// The metadata engine's name (`sqlite`, `postgresql`).
    pub fn engine(&self) -> &'static str {
        self.inner.metadata.engine()
    }

    /// Runs a store call on the blocking pool.
    async fn store<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Metadata) -> std::result::Result<T, StoreError> + Send + 'static,
    ) -> Result<T> {
        let registry = self.clone();
        tokio::task::spawn_blocking(move || call(&registry.inner.metadata))
            .await
            .map_err(|e| Error::Internal(format!("a store call failed: {e}")))?
            .map_err(Error::from)
    }

    /// Whether the registry reaches its database and its blob store; what failed otherwise.
    pub async fn health(&self) -> std::result::Result<(), String> {
        let database = self
            .store(|metadata| metadata.ping())
            .await
            .map_err(|error| format!("the {} database: {}", self.engine(), error));
        let blobs = self.inner.blobs.check().await.map_err(|error| error.to_string());
        database.and(blobs)
    }

    /// Versions and configurations stored, for the metrics: two counts, no row read.
    pub async fn counts(&self) -> Result<(u64, u64)> {
        self.store(|metadata| metadata.counts()).await
    }

    /// Requests waiting in blocking queries now.
    pub fn waiting(&self) -> usize {
        self.inner.watchers.waiting()
    }

    /// Ends every blocking query, now and from now on (the registry is shutting down).
    pub fn close_waits(&self) {
        self.inner.watchers.close();
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A registry on SQLite and files in a temporary directory, and an admin caller.
    pub fn registry(policy: Policy) -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let metadata = Metadata::open_sqlite(&dir.path().join("depot.db")).unwrap();
        let blobs = Blobs::files(&dir.path().join("blobs")).unwrap();
        (dir, Registry::new(metadata, blobs, policy).unwrap())
    }

    pub fn caller(name: &str, role: depot_api::types::Role, pattern: Option<&str>) -> Caller {
        Caller { name: name.to_owned(), role, config_pattern: pattern.map(str::to_owned) }
    }
}
