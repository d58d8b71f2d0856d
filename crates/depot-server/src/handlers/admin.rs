use std::time::SystemTime;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::types::GcReport;

use crate::auth::Admin;
use crate::error::ApiError;
use crate::state::AppState;
use depot_api::ErrorBody;

/// `ok` when the registry can reach its database; 503 naming what failed otherwise, so that a
/// load balancer takes a replica that lost its database out of rotation.
#[utoipa::path(get, path = "/healthz", tag = "admin", responses((status = 200, description = "the registry is up and reaches its database", body = String), (status = 503, description = "the database cannot be reached", body = String)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let metadata = state.metadata.clone();
    match tokio::task::spawn_blocking(move || metadata.ping()).await {
        Ok(Ok(())) => "ok".into_response(),
        Ok(Err(error)) => {
            tracing::error!("health check: {error}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unavailable: the {} database: {error}\n", state.metadata.engine()),
            )
                .into_response()
        }
        Err(error) => (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {error}\n")).into_response(),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "admin", responses((status = 200, description = "Prometheus (OpenMetrics) text", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let (versions, configurations) = state
        .blocking(|state| {
            let versions: u64 = state.metadata.components()?.iter().map(|c| c.versions).sum();
            Ok((versions, state.metadata.configs()?.len() as u64))
        })
        .await?;
    state.metrics.versions.set(versions as i64);
    state.metrics.configurations.set(configurations as i64);
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render()))
}

#[utoipa::path(post, path = "/api/v1/gc", tag = "admin", responses((status = 200, body = GcReport), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn gc(Admin(_caller): Admin, State(state): State<AppState>) -> Result<Json<GcReport>, ApiError> {
    Ok(Json(state.blocking(collect).await?))
}

/// Retention, then a mark-and-sweep of blobs: a blob is deleted only when no version references
/// it and it is older than the grace period, so an upload whose version is about to be added is
/// safe. Blob files without a record (a crash between the rename and the record) and interrupted
/// uploads are deleted after the same grace period.
pub fn collect(state: &AppState) -> Result<GcReport, ApiError> {
    let grace = state.options.gc_grace;
    let retention = state.metadata.apply_retention(state.options.max_versions)?;
    let mut report = GcReport { versions_removed: retention.removed, ..GcReport::default() };
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
    for digest in state.metadata.unreferenced_blobs(cutoff)? {
        if state.metadata.forget_blob(&digest)? {
            report.bytes_freed += state.blobs.remove(&digest)?;
            report.blobs_removed += 1;
        }
    }
    let known = state.metadata.known_blobs()?;
    let now = SystemTime::now();
    for (digest, modified) in state.blobs.list()? {
        if !known.contains(digest.as_str()) && now.duration_since(modified).unwrap_or_default() >= grace {
            report.bytes_freed += state.blobs.remove(&digest)?;
            report.blobs_removed += 1;
        }
    }
    report.uploads_removed = state.blobs.clean_uploads(grace)?;
    Ok(report)
}
