use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::types::{
    BumpLayer, BumpResult, Config, ConfigSummary, CreateConfig, HistoryEntry, RollbackConfig, SetLayers,
};
use depot_api::{ConfigName, ErrorCode};

use crate::auth::{Operator, Reader, Viewer};
use crate::error::ApiError;
use crate::state::AppState;
use depot_api::ErrorBody;

#[utoipa::path(get, path = "/api/v1/configs", tag = "configs", responses((status = 200, body = [ConfigSummary]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<ConfigSummary>>, ApiError> {
    Ok(Json(state.blocking(|state| Ok(state.metadata.configs()?)).await?))
}

#[utoipa::path(post, path = "/api/v1/configs", tag = "configs", request_body = CreateConfig, responses((status = 201, body = Config), (status = 409, description = "config-exists", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn create(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Json(request): Json<CreateConfig>,
) -> Result<(StatusCode, Json<Config>), ApiError> {
    let config = state
        .blocking(move |state| Ok(state.metadata.create_config(&request.name, &request.layers, &caller.name)?))
        .await?;
    Ok((StatusCode::CREATED, Json(config)))
}

/// `?after=N&wait=30s`: a blocking query. It answers at once when the configuration has a
/// revision newer than N, else when one appears or the wait ends (with the current revision).
#[derive(Debug, serde::Deserialize)]
pub struct WaitQuery {
    after: Option<u64>,
    wait: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = String, Path), ("after" = Option<u64>, Query, description = "blocking query: wait for a revision newer than this"), ("wait" = Option<String>, Query, description = "how long to wait, e.g. 30s (at most 5m)")), responses((status = 200, body = Config), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn show(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let name = ConfigName::parse(&name)?;
    if !caller.may_read_config(&name) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {} may not read configuration {name}", caller.name),
        ));
    }
    let (Some(after), Some(wait)) = (query.after, query.wait.as_deref()) else {
        return Ok(Json(state.config(&name).await?).into_response());
    };
    let wait = depot_release::config::parse_duration(wait)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("wait: {e}")))?
        .min(state.options.max_wait);
    let mut waiting = state.watchers.subscribe(&name);
    let config = state.config(&name).await?;
    if config.revision > after {
        return Ok(Json(config).into_response());
    }
    drop(config);
    if let Some(json) = waiting.until_newer(after, tokio::time::Instant::now() + wait).await {
        return Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response());
    }
    drop(waiting);
    // The wait ended with no newer revision, or the configuration was deleted (not-found).
    Ok(Json(state.config(&name).await?).into_response())
}

#[utoipa::path(patch, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = String, Path)), request_body = SetLayers, responses((status = 200, body = Config), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_layers(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<SetLayers>,
) -> Result<Json<Config>, ApiError> {
    let name = ConfigName::parse(&name)?;
    let config = state
        .blocking(move |state| {
            Ok(state.metadata.set_layers(&name, &request.layers, request.expect_revision, &caller.name)?)
        })
        .await?;
    Ok(Json(config))
}

#[utoipa::path(post, path = "/api/v1/configs/{name}/bump", tag = "configs", params(("name" = String, Path)), request_body = BumpLayer, responses((status = 200, body = BumpResult), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn bump(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<BumpLayer>,
) -> Result<Json<BumpResult>, ApiError> {
    let name = ConfigName::parse(&name)?;
    let result = state
        .blocking(move |state| {
            Ok(state.metadata.bump(&name, &request.component, request.expect_revision, &caller.name)?)
        })
        .await?;
    Ok(Json(result))
}

#[utoipa::path(post, path = "/api/v1/configs/{name}/rollback", tag = "configs", params(("name" = String, Path)), request_body = RollbackConfig, responses((status = 200, body = Config), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn rollback(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<RollbackConfig>,
) -> Result<Json<Config>, ApiError> {
    let name = ConfigName::parse(&name)?;
    let config = state
        .blocking(move |state| {
            Ok(state.metadata.rollback(&name, request.to_revision, request.expect_revision, &caller.name)?)
        })
        .await?;
    Ok(Json(config))
}

#[utoipa::path(get, path = "/api/v1/configs/{name}/history", tag = "configs", params(("name" = String, Path)), responses((status = 200, body = [HistoryEntry]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn history(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.history(&name)?)).await?))
}

/// `?expect_revision=N`: delete only if the configuration is still at revision N.
#[derive(Debug, serde::Deserialize)]
pub struct DeleteQuery {
    expect_revision: Option<u64>,
}

#[utoipa::path(delete, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = String, Path), ("expect_revision" = Option<u64>, Query, description = "refuse with config-conflict unless the configuration is at this revision")), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete(
    Operator(_caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    let name = ConfigName::parse(&name)?;
    let deleted = name.clone();
    state.blocking(move |state| Ok(state.metadata.delete_config(&deleted, query.expect_revision)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
