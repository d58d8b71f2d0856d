use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::types::GcReport;

use crate::auth::Admin;
use crate::error::ApiError;
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

#[utoipa::path(get, path = "/metrics", tag = "admin", responses((status = 200, description = "Prometheus (OpenMetrics) text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (versions, configurations) = state.registry.counts().await?;
    state.metrics.versions.set(versions as i64);
    state.metrics.configurations.set(configurations as i64);
    state.metrics.watchers.set(state.registry.waiting() as i64);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render()))
}

#[utoipa::path(post, path = "/api/v1/gc", tag = "admin", responses((status = 200, body = GcReport), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn gc(Admin(caller): Admin, State(state): State<AppState>) -> Result<Json<GcReport>, ApiError> {
    Ok(Json(state.registry.gc(&caller).await?))
}
