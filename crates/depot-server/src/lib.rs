//! `depot serve`: the registry's HTTP front-end over the `depot_registry::Registry` service. One
//! route table (`router.rs`), handlers grouped by resource (`handlers/`) that parse, call the
//! registry and answer, roles checked early by each handler's extractor (`auth.rs`), and a launch
//! function that takes a listener and a shutdown future so tests can bind port 0, over HTTP or
//! HTTPS (`tls.rs`).

mod auth;
mod connections;
mod error;
mod extract;
mod handlers;
mod metrics;
mod openapi;
mod router;
mod state;
pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use state::{AppState, ServerOptions};

/// The admin token written on first start, when the registry has no token yet.
pub struct FirstStart {
    pub admin_token: String,
    pub token_file: PathBuf,
}

/// Opens (creating if needed) the registry under `data`, its metadata where `metadata_url` says
/// (`sqlite://…` or `postgres://…`; SQLite in `data` when `None`) and its blobs where
/// `blobs_url` says (`file://…` or `s3://…`; files under `data/blobs` when `None`), and returns
/// its state, plus the admin token when this is the first start. Nothing is sent to an S3 store
/// yet: see [`check_storage`].
pub fn open(
    data: &Path,
    metadata_url: Option<&str>,
    blobs_url: Option<&str>,
    options: ServerOptions,
) -> Result<(AppState, Option<FirstStart>), depot_registry::Error> {
    let metadata_url = match metadata_url {
        Some(url) => url.to_owned(),
        None => format!("sqlite://{}", data.join("depot.db").display()),
    };
    let blobs_url = match blobs_url {
        Some(url) => url.to_owned(),
        None => format!("file://{}", data.join("blobs").display()),
    };
    let (metadata, blobs) = depot_store::open(&metadata_url, &blobs_url)?;
    let key = options.secrets_key.clone().unwrap_or_else(|| default_secrets_key(data));
    let (sealer, created) = depot_store::Sealer::load_or_create(&key)?;
    if created {
        tracing::warn!(
            "created the secrets key {} (0600): it seals the stages' environment values; back it up apart from the \
             data directory, and give every replica the same one (--secrets-key)",
            key.display()
        );
    }
    metadata
        .use_sealer(sealer)
        .map_err(|e| depot_store::StoreError::Invalid(format!("secrets key {}: {e}", key.display())))?;
    let registry = depot_registry::Registry::new(metadata, blobs, options.policy())?;
    let first = auth::ensure_admin_token(&registry, data)?;
    Ok((AppState::new(registry, options), first))
}

/// `DATA.secrets.key`, beside the data directory (not in it: a copy of the data directory
/// must not carry the key to what it seals).
pub fn default_secrets_key(data: &Path) -> std::path::PathBuf {
    let name = data.file_name().map_or_else(|| "depot-data".into(), |n| n.to_string_lossy().into_owned());
    data.with_file_name(format!("{name}.secrets.key"))
}

/// Checks that the blob store answers (what `/healthz` checks), for a start that fails at once
/// rather than at the first push.
pub async fn check_storage(state: &AppState) -> Result<(), depot_store::StoreError> {
    state.registry.blobs().check().await
}

/// The application with every route, for serving or for tests that call it without a socket.
pub fn app(state: AppState) -> axum::Router {
    router::router(state)
}

/// The OpenAPI document served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::OpenApi;
    openapi::ApiDoc::openapi()
}

/// Issues a token directly in the store (tests).
pub fn issue_token(
    state: &AppState,
    name: &depot_api::TokenName,
    role: depot_api::types::Role,
    pattern: Option<&str>,
) -> Result<String, depot_registry::Error> {
    let (token, hash) = depot_registry::new_token(name);
    state.registry.record_token_now(name, role, pattern, &hash, "depot serve")?;
    Ok(token)
}

/// How long a shutdown waits for requests in flight (an upload, say) before closing them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves the API on `listener` (HTTPS when `tls` is given) until `shutdown` completes, then ends
/// every blocking query at once and lets other requests finish for up to 30 s. Background duties
/// (garbage collection every `gc_interval`, rollouts stepped every second) run alongside.
pub async fn serve(
    listener: std::net::TcpListener,
    state: AppState,
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gc_state = state.clone();
    let gc = tokio::spawn(async move {
        let mut interval = tokio::time::interval(gc_state.options.gc_interval);
        interval.tick().await;
        loop {
            interval.tick().await;
            match gc_state.registry.collect().await {
                Ok(report) => tracing::info!(?report, "garbage collection"),
                Err(e) => tracing::error!("garbage collection failed: {e}"),
            }
        }
    });
    let rollouts = state.registry.spawn_rollout_timer();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let registry = state.registry.clone();
    let dashboard = state.dashboard.clone();
    let stop = tokio::spawn(async move {
        shutdown.await;
        registry.close_waits();
        dashboard.close();
        stopper.graceful_shutdown(Some(SHUTDOWN_GRACE));
    });
    let header_timeout = state.options.header_timeout;
    let limit = connections::ConnectionLimit::new(state.options.max_connections, header_timeout, state.metrics.clone());
    let app = app(state).into_make_service();
    let result = match tls {
        // HTTP/1 only over plain TCP (where only a client with prior knowledge speaks HTTP/2):
        // protocol detection hands hyper the first bytes of a request apart, and hyper then grows
        // the connection's read buffer from 8 to 16 KiB with a realloc that copies, and so makes
        // resident, the first 8 KiB. Every waiting blocking query paid for that. HTTPS still
        // offers HTTP/2 through ALPN.
        None => {
            let server = axum_server::from_tcp(listener)?.acceptor(limit).http1_only();
            limit_slow_clients(server, header_timeout).handle(handle).serve(app).await
        }
        Some(config) => {
            let config = axum_server::tls_rustls::RustlsConfig::from_config(config);
            let acceptor =
                axum_server::tls_rustls::RustlsAcceptor::new(config).handshake_timeout(header_timeout).acceptor(limit);
            let server = axum_server::from_tcp(listener)?.acceptor(acceptor);
            limit_slow_clients(server, header_timeout).handle(handle).serve(app).await
        }
    };
    gc.abort();
    rollouts.abort();
    stop.abort();
    result
}

/// A connection must send its first request within `header_timeout` of being accepted (after the
/// TLS handshake, itself bounded by the same time), and over HTTP/1 each request's header within
/// `header_timeout` of the connection's previous answer: a silent connection, a half-sent header
/// and an idle keep-alive connection are closed then. An HTTP/2 connection is pinged when idle
/// and closed when its peer stops answering. A request in progress (an upload, a blocking query)
/// is not cut by these.
fn limit_slow_clients<A: axum_server::Address, Acc>(
    mut server: axum_server::Server<A, Acc>,
    header_timeout: Duration,
) -> axum_server::Server<A, Acc> {
    let builder = server.http_builder();
    builder.http1().header_read_timeout(header_timeout);
    builder.http2().keep_alive_interval(header_timeout).keep_alive_timeout(header_timeout);
    server.first_request_timeout(header_timeout)
}

/// Defaults for [`ServerOptions`].
impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_blob_size: 10 * 1024 * 1024 * 1024,
            max_versions: 10,
            gc_grace: Duration::from_secs(30 * 60),
            gc_interval: Duration::from_secs(60 * 60),
            max_wait: Duration::from_secs(300),
            redirect_downloads: false,
            header_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            secrets_key: None,
            tls: false,
        }
    }
}
