use std::sync::Arc;
use std::time::Duration;

use depot_registry::{Policy, Registry};

use crate::metrics::Metrics;

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
    /// How long a client may take to send a request's header: from the connection's opening (the
    /// TLS handshake included) or from its previous answer. Silent, slow and idle connections are
    /// closed after it.
    pub header_timeout: Duration,
    /// Client connections served at once; one more is closed as soon as it is accepted.
    pub max_connections: usize,
    /// The file of the key that seals environment values; `DATA.secrets.key` when `None`.
    pub secrets_key: Option<std::path::PathBuf>,
    /// The registry serves HTTPS: the dashboard's cookies are `Secure`.
    pub tls: bool,
}

impl ServerOptions {
    /// The part of the options that is the registry's policy, whatever the front-end.
    pub fn policy(&self) -> Policy {
        Policy {
            max_blob_size: self.max_blob_size,
            max_versions: self.max_versions,
            gc_grace: self.gc_grace,
            max_wait: self.max_wait,
        }
    }
}

/// Everything a handler can reach: the registry service, and what only HTTP needs. Cloning is
/// cheap.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub dashboard: depot_dashboard::Dashboard,
    pub options: Arc<ServerOptions>,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    pub fn new(registry: Registry, options: ServerOptions) -> Self {
        let dashboard = depot_dashboard::Dashboard::new(registry.clone(), options.tls);
        AppState { registry, dashboard, options: Arc::new(options), metrics: Arc::new(Metrics::new()) }
    }
}
