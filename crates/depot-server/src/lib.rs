//! `depot serve`: the registry. One route table (`router.rs`), handlers grouped by resource
//! (`handlers/`), permissions in each handler's signature (`auth.rs`), and a launch function that
//! takes a listener and a shutdown future so tests can bind port 0.

mod auth;
mod error;
mod handlers;
mod metrics;
mod openapi;
mod router;
mod state;
mod watch;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use state::{AppState, ServerOptions};

/// The admin token written on first start, when the registry has no token yet.
pub struct FirstStart {
    pub admin_token: String,
    pub token_file: PathBuf,
}

/// Opens (creating if needed) the registry under `data` and returns its state, plus the admin
/// token when this is the first start.
pub fn open(data: &Path, options: ServerOptions) -> Result<(AppState, Option<FirstStart>), depot_store::StoreError> {
    let (metadata, blobs) = depot_store::open(
        &format!("sqlite://{}", data.join("depot.db").display()),
        &format!("file://{}", data.join("blobs").display()),
    )?;
    let state = AppState::new(metadata, blobs, options);
    let first = auth::ensure_admin_token(&state, data)?;
    Ok((state, first))
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

/// Issues a token directly in the store (the first admin token, and tests).
pub fn issue_token(
    state: &AppState,
    name: &depot_api::TokenName,
    role: depot_api::types::Role,
    pattern: Option<&str>,
) -> Result<String, depot_store::StoreError> {
    let (token, hash) = auth::new_token(name);
    state.metadata.create_token(name, role, pattern, &hash, "depot serve")?;
    Ok(token)
}

/// Serves the API on `listener` until `shutdown` completes; background duties (garbage
/// collection) stop with it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let gc_state = state.clone();
    let gc = tokio::spawn(async move {
        let mut interval = tokio::time::interval(gc_state.options.gc_interval);
        interval.tick().await;
        loop {
            interval.tick().await;
            let state = gc_state.clone();
            match tokio::task::spawn_blocking(move || handlers::admin::collect(&state)).await {
                Ok(Ok(report)) => tracing::info!(?report, "garbage collection"),
                Ok(Err(e)) => tracing::error!("garbage collection failed: {}", e.0),
                Err(e) => tracing::error!("garbage collection panicked: {e}"),
            }
        }
    });
    let app = app(state);
    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    gc.abort();
    result
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
        }
    }
}
