//! The whole route table. Each handler's first argument names the role it needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use axum::routing::{get, post, put};
use tower::Service;

use crate::handlers::{admin, agents, blobs, components, configs, pipelines, tokens};
use crate::metrics::{HttpMethod, Metrics, RequestLabels, RouteLabels};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/whoami", get(tokens::whoami))
        .route("/blobs/{digest}", put(blobs::upload).get(blobs::download).head(blobs::download))
        .route("/blobs/{digest}/signatures", get(blobs::signatures))
        .route("/blobs/{digest}/frames", get(blobs::frames))
        .route("/blobs/{digest}/assembly", put(blobs::assemble))
        .route("/components", get(components::list))
        .route("/components/{component}", axum::routing::delete(components::delete_component))
        .route("/components/{component}/versions", get(components::versions))
        .route(
            "/components/{component}/policy",
            get(components::policy).put(components::set_policy).delete(components::remove_policy),
        )
        .route(
            "/components/{component}/versions/{version}",
            put(components::push_version).get(components::version).delete(components::delete_version),
        )
        .route("/components/{component}/versions/{version}/signatures", post(components::add_signature))
        .route(
            "/components/{component}/versions/{version}/attestations",
            get(components::attestations)
                .post(components::add_attestation)
                .layer(axum::extract::DefaultBodyLimit::max(components::ATTESTATION_BODY_LIMIT)),
        )
        .route("/components/{component}/versions/{version}/attestations/{digest}", get(components::attestation))
        .route(
            "/components/{component}/versions/{version}/deprecation",
            put(components::deprecate).delete(components::undeprecate),
        )
        .route("/components/{component}/channels", get(components::channels))
        .route(
            "/components/{component}/channels/{channel}",
            put(components::set_channel).delete(components::remove_channel),
        )
        .route("/configs", get(configs::list).post(configs::create))
        .route(
            "/configs/{name}",
            get(configs::show).patch(configs::set_layers).put(configs::replace_layers).delete(configs::delete),
        )
        .route("/configs/{name}/bump", post(configs::bump))
        .route("/configs/{name}/rollback", post(configs::rollback))
        .route("/configs/{name}/history", get(configs::history))
        .route("/configs/{name}/strategy", put(configs::set_strategy))
        .route("/configs/{name}/rollout", get(configs::rollout).post(configs::rollout_action))
        .route("/configs/{name}/agents", get(agents::list))
        .route("/configs/{name}/agents/{host}", put(agents::report))
        .route("/pipelines", get(pipelines::list).post(pipelines::create))
        .route("/pipelines/{name}", get(pipelines::show).delete(pipelines::delete))
        .route("/pipelines/{name}/history", get(pipelines::history))
        .route("/pipelines/{name}/promotions", post(pipelines::promote))
        .route("/pipelines/{name}/promotions/{id}/approval", post(pipelines::approve))
        .route("/pipelines/{name}/promotions/{id}/rejection", post(pipelines::reject))
        .route("/pipelines/{name}/stages/{stage}/gate", put(pipelines::set_gate))
        .route("/pipelines/{name}/stages/{stage}/rollback", post(pipelines::rollback))
        .route("/pipelines/{name}/stages/{stage}/env", get(pipelines::env).patch(pipelines::set_env))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", axum::routing::delete(tokens::revoke))
        .route("/keys", get(tokens::keys).post(tokens::add_key))
        .route("/keys/import", post(tokens::import_keys))
        .route("/keys/{name}", axum::routing::delete(tokens::revoke_key))
        .route("/gc", post(admin::gc))
        .route("/openapi.json", get(crate::openapi::document));
    Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/metrics", get(admin::metrics))
        .nest("/api/v1", api)
        .merge(depot_dashboard::router(state.dashboard.clone()))
        .route("/ui", get(|| async { axum::response::Redirect::permanent("/ui/") }))
        .route("/", get(|| async { axum::response::Redirect::to("/ui/") }))
        .fallback(crate::extract::no_route)
        .method_not_allowed_fallback(crate::extract::wrong_method)
        .layer(tower::layer::layer_fn({
            let metrics = state.metrics.clone();
            move |inner| CountRequests { inner, metrics: metrics.clone() }
        }))
        .with_state(state)
}

/// Counts each request by method, route template and status in `http_requests`, and times it in
/// `http_request_duration_seconds`. A hand-written layer rather than
/// `middleware::from_fn`, whose boxed future (about 1.2 KiB) lives as long as the request does: a
/// blocking query may wait for minutes, and thousands may wait at once.
#[derive(Clone)]
struct CountRequests<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Service<Request> for CountRequests<S>
where
    S: Service<Request, Response = Response>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Counted<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Counted {
            method: HttpMethod::from(request.method()),
            route: request.extensions().get::<MatchedPath>().cloned(),
            started: Instant::now(),
            metrics: self.metrics.clone(),
            inner: self.inner.call(request),
        }
    }
}

struct Counted<F> {
    inner: F,
    method: HttpMethod,
    /// The route template (`/api/v1/configs/{name}`), never the path a client sent.
    route: Option<MatchedPath>,
    started: Instant,
    metrics: Arc<Metrics>,
}

impl<F, E> Future for Counted<F>
where
    F: Future<Output = Result<Response, E>> + Unpin,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let result = ready!(Pin::new(&mut this.inner).poll(cx));
        if let Ok(response) = &result {
            let route = this.route.as_ref().map_or("unmatched", |route| route.as_str()).to_owned();
            this.metrics
                .request_duration
                .get_or_create(&RouteLabels { method: this.method, route: route.clone() })
                .observe(this.started.elapsed().as_secs_f64());
            this.metrics
                .requests
                .get_or_create(&RequestLabels { method: this.method, route, status: response.status().as_u16() })
                .inc();
        }
        Poll::Ready(result)
    }
}
