//! The dashboard `depot serve` answers under `/ui/`: server-rendered HTML (maud) over the same
//! [`Registry`] service as the HTTP API and the SSH console, so every action passes the same
//! rules and lands in the same history under the signed-in token's name.
//!
//! - **Sessions** ([`session`]): sign in with a token (never an agent's); the browser holds a
//!   random session id in an HttpOnly, SameSite=Strict cookie (Secure over TLS) that expires;
//!   the registry holds the token in memory and authenticates it again on every request, so a
//!   revoked token ends its sessions at once. Every form carries the session's CSRF token, and
//!   a POST from another origin is refused before it is read.
//! - **Pages** ([`pages`]) read without JavaScript. `ui.js` (vendored, a few kilobytes) only
//!   opens `/ui/events`, which renders the page's main part again every 800 ms and sends it
//!   when it changed.
//! - **Actions** ([`actions`]) ask for confirmation on a page of their own that says what will
//!   happen, then call the registry.
//! - Everything is in the binary; the Content-Security-Policy allows this origin's script and
//!   style only, no inline script.

// Errors here are whole pages (`Response`), answered on the spot: their size does not matter.
#![allow(clippy::result_large_err)]

mod actions;
mod pages;
mod session;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use depot_registry::Registry;

pub use session::Sessions;

/// What every dashboard handler reaches.
#[derive(Clone)]
pub struct Dashboard {
    registry: Registry,
    sessions: Arc<Sessions>,
    /// Cookies carry `Secure` (the registry serves HTTPS).
    secure: bool,
    /// Set when the registry shuts down: live streams end.
    closing: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Dashboard {
    pub fn new(registry: Registry, secure: bool) -> Self {
        Dashboard {
            registry,
            sessions: Arc::new(Sessions::new(session::SESSION_LIFETIME)),
            secure,
            closing: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    /// Ends every live stream, now and from now on (the registry is shutting down).
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.closing.subscribe()
    }
}

const CSS: &str = include_str!("assets/ui.css");
const JS: &str = include_str!("assets/ui.js");

/// The routes, all under `/ui/`, for any application state (the dashboard keeps its own).
pub fn router<S: Clone + Send + Sync + 'static>(dashboard: Dashboard) -> Router<S> {
    Router::new()
        .route("/ui/", get(pages::view))
        .route("/ui/sign-in", get(session::sign_in_page).post(session::sign_in))
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/configs/{name}", get(pages::view))
        .route("/ui/components", get(pages::view))
        .route("/ui/components/{name}", get(pages::view))
        .route("/ui/pipelines/{name}/history", get(pages::view))
        .route("/ui/tokens", get(pages::view).post(actions::create_token))
        .route("/ui/tokens/{name}/revoke", post(actions::revoke_token))
        .route("/ui/pipelines/{name}/promote", post(actions::promote))
        .route("/ui/pipelines/{name}/promotions/{id}/{decision}", post(actions::decide))
        .route("/ui/configs/{name}/rollback", post(actions::rollback))
        .route("/ui/configs/{name}/bump", post(actions::bump))
        .route("/ui/configs/{name}/rollout", post(actions::rollout))
        .route("/ui/components/{name}/versions/{version}/deprecation", post(actions::deprecation))
        .route("/ui/events", get(pages::events))
        .route("/ui/static/ui.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
        .route("/ui/static/ui.js", get(|| async { asset(JS, "text/javascript; charset=utf-8") }))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(dashboard)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// The policy every page is served under: this origin's script and style only, no inline
/// script, no framing, forms posting only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}
