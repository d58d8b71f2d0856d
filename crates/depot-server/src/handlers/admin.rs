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

/// `ok` when the registry reaches its database and its blob store; 503 naming what failed
/// otherwise, so that a load balancer takes such a replica out of rotation.
#[utoipa::path(get, path = "/healthz", tag = "admin", responses((status = 200, description = "the registry is up and reaches its database and blob store: `ok`", body = String), (status = 503, description = "the database or the blob store cannot be reached: what failed", body = String)))]
pub async fn healthz(State(state): State<AppState>) -> Response {
    let metadata = state.metadata.clone();
    let database = match tokio::task::spawn_blocking(move || metadata.ping()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("the {} database: {error}", state.metadata.engine())),
        Err(error) => Err(error.to_string()),
    };
    let blobs = state.blobs.check().await.map_err(|error| error.to_string());
    match database.and(blobs) {
        Ok(()) => "ok".into_response(),
        Err(error) => {
            tracing::warn!("health check: {error}");
            (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {error}\n")).into_response()
        }
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
    Ok(Json(collect(&state).await?))
}

/// Retention, then a mark-and-sweep of blobs: a blob is deleted only when no version references
/// it and it is older than the grace period, so an upload whose version is about to be added is
/// safe. Blobs without a record (a crash between the install and the record) and interrupted
/// uploads are deleted after the same grace period.
pub async fn collect(state: &AppState) -> Result<GcReport, ApiError> {
    let grace = state.options.gc_grace;
    let max_versions = state.options.max_versions;
    let retention = state.blocking(move |state| Ok(state.metadata.apply_retention(max_versions)?)).await?;
    let mut report = GcReport { versions_removed: retention.removed, ..GcReport::default() };
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(grace).unwrap_or_default();
    let unreferenced = state.blocking(move |state| Ok(state.metadata.unreferenced_blobs(cutoff)?)).await?;
    for digest in unreferenced {
        let forget = digest.clone();
        if state.blocking(move |state| Ok(state.metadata.forget_blob(&forget)?)).await? {
            report.bytes_freed += state.blobs.remove(&digest).await?;
            report.blobs_removed += 1;
        }
    }
    let known = state.blocking(|state| Ok(state.metadata.known_blobs()?)).await?;
    let now = SystemTime::now();
    for (digest, modified) in state.blobs.list().await? {
        if !known.contains(digest.as_str()) && now.duration_since(modified).unwrap_or_default() >= grace {
            report.bytes_freed += state.blobs.remove(&digest).await?;
            report.blobs_removed += 1;
        }
    }
    report.uploads_removed = state.blobs.clean_uploads(grace).await?;
    Ok(report)
}
