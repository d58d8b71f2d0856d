use std::sync::Arc;
use std::time::Duration;

use depot_store::{Blobs, SqliteMetadata};

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
    pub metadata: Arc<SqliteMetadata>,
    pub blobs: Blobs,
    pub options: Arc<ServerOptions>,
    pub watchers: Arc<Watchers>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(metadata: SqliteMetadata, blobs: Blobs, options: ServerOptions) -> Self {
        let metrics = Arc::new(Metrics::new());
        AppState {
            metadata: Arc::new(metadata),
            blobs,
            options: Arc::new(options),
            watchers: Arc::new(Watchers::new(metrics.clone())),
            metrics,
        }
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
