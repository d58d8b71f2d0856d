use std::sync::Arc;
use std::time::Duration;

use depot_store::{Blobs, Metadata};

use crate::metrics::Metrics;
use crate::watch::Watchers;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The largest blob an upload may carry.
    pub max_blob_size: u64,
    /// Versions kept per component (0: all).
    pub max_versions: u64,
    /// How old an unreferenced blob or an interrupted upload must be before collection.
    pub gc_grace: Duration,
    pub gc_interval: Duration,
    /// The longest a blocking query may wait.
    pub max_wait: Duration,
    /// Answer blob downloads with a redirect to a short-lived presigned URL of the blob store
    /// (S3 only), so that clients download from the bucket rather than through the registry.
    pub redirect_downloads: bool,
}

/// Everything a handler can reach. Cloning is cheap.
#[derive(Clone)]
pub struct AppState {
    pub metadata: Arc<Metadata>,
    pub blobs: Blobs,
    pub options: Arc<ServerOptions>,
    pub watchers: Arc<Watchers>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// The registry's state. Every change the store commits (through this process or, on
    /// PostgreSQL, any replica) reaches the blocking queries through one subscription: no
    /// handler announces a change itself.
    pub fn new(metadata: Metadata, blobs: Blobs, options: ServerOptions) -> Result<Self, depot_store::StoreError> {
        let metrics = Arc::new(Metrics::new());
        let watchers = Arc::new(Watchers::new(metrics.clone()));
        let reader = metadata.detached();
        let announce_to = watchers.clone();
        metadata.subscribe(Arc::new(move |change| announce_to.announce(&reader, change)))?;
        Ok(AppState { metadata: Arc::new(metadata), blobs, options: Arc::new(options), watchers, metrics })
    }

    /// The configuration as it stands, read off the async threads.
    pub async fn config(
        &self,
        name: &depot_api::ConfigName,
    ) -> Result<depot_api::types::Config, crate::error::ApiError> {
        let name = name.clone();
        self.blocking(move |state| Ok(state.metadata.config(&name)?)).await
    }

    /// Runs a store call off the async threads.
    pub async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&AppState) -> Result<T, crate::error::ApiError> + Send + 'static,
    ) -> Result<T, crate::error::ApiError> {
        let state = self.clone();
        tokio::task::spawn_blocking(move || call(&state))
            .await
            .map_err(|e| crate::error::ApiError::internal(e.to_string()))?
    }
}
