//! The whole route table. Each handler's first argument names the role it needs.

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};

use crate::handlers::{admin, agents, blobs, components, configs, tokens};
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/whoami", get(tokens::whoami))
        .route("/blobs/{digest}", put(blobs::upload).get(blobs::download).head(blobs::download))
        .route("/components", get(components::list))
        .route("/components/{component}", axum::routing::delete(components::delete_component))
        .route("/components/{component}/versions", get(components::versions))
        .route(
            "/components/{component}/versions/{version}",
            put(components::push_version).get(components::version).delete(components::delete_version),
        )
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
        .route("/configs/{name}", get(configs::show).patch(configs::set_layers).delete(configs::delete))
        .route("/configs/{name}/bump", post(configs::bump))
        .route("/configs/{name}/rollback", post(configs::rollback))
        .route("/configs/{name}/history", get(configs::history))
        .route("/configs/{name}/agents", get(agents::list))
        .route("/configs/{name}/agents/{host}", put(agents::report))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{name}", axum::routing::delete(tokens::revoke))
        .route("/gc", post(admin::gc))
        .route("/openapi.json", get(crate::openapi::document));
    Router::new()
        .route("/healthz", get(admin::healthz))
        .route("/metrics", get(admin::metrics))
        .nest("/api/v1", api)
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let response = next.run(request).await;
    state
        .metrics
        .requests
        .get_or_create(&vec![
            ("method".to_owned(), method),
            ("status".to_owned(), response.status().as_u16().to_string()),
        ])
        .inc();
    response
}
