use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::types::GcReport;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::Json;
use crate::state::AppState;
use depot_api::ErrorBody;

/// `ok` when the registry reaches its database and its blob store; 503 naming what failed
/// otherwise, so that a load balancer takes such a replica out of rotation.
#[utoipa::path(get, path = "/healthz", tag = "admin", responses((status = 200, description = "the registry is up and reaches its database and blob store: `ok`", body = String), (status = 503, description = "the database or the blob store cannot be reached: what failed", body = String)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.registry.health().await {
        Ok(()) => "ok".into_response(),
        Err(error) => {
            tracing::warn!("health check: {error}");
            (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {error}\n")).into_response()
        }
    }
}

/// The counts of stored versions and configurations are read (two `COUNT(*)`, on the blocking
/// pool) at most every [`crate::metrics::COUNTS_MAX_AGE`], however often `/metrics` is asked for:
/// it needs no token.
#[utoipa::path(get, path = "/metrics", tag = "admin", responses((status = 200, description = "Prometheus metrics: the classic text format (0.0.4), or OpenMetrics 1.0 when `Accept` prefers `application/openmetrics-text`", content((String = "text/plain"), (String = "application/openmetrics-text")))))]
pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if state.metrics.counts_are_stale() {
        let (versions, configurations) = state.registry.counts().await?;
        state.metrics.versions.set(versions as i64);
        state.metrics.configurations.set(configurations as i64);
    }
    state.metrics.watchers.set(state.registry.waiting() as i64);
    let accept = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()).map(str::to_owned);
    // Rendering reads the process's figures from /proc: on the blocking pool.
    let metrics = state.metrics.clone();
    let (content_type, text) =
        tokio::task::spawn_blocking(move || metrics.render(accept.as_deref())).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}

#[utoipa::path(post, path = "/api/v1/gc", tag = "admin", responses((status = 200, body = GcReport), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn gc(Admin(caller): Admin, State(state): State<AppState>) -> Result<Json<GcReport>, ApiError> {
    Ok(Json(state.registry.gc(&caller).await?))
}
