use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use depot_api::types::{
    BumpLayer, BumpResult, Config, ConfigSummary, CreateConfig, HistoryEntry, RollbackConfig, SetLayers,
};
use depot_api::{ConfigName, ErrorCode};

use crate::auth::{Operator, Reader, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

pub async fn list(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<ConfigSummary>>, ApiError> {
    Ok(Json(state.blocking(|state| Ok(state.metadata.configs()?)).await?))
}

pub async fn create(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Json(request): Json<CreateConfig>,
) -> Result<(StatusCode, Json<Config>), ApiError> {
    let config = state
        .blocking(move |state| Ok(state.metadata.create_config(&request.name, &request.layers, &caller.name)?))
        .await?;
    state.watchers.notify(&config.name, config.revision);
    Ok((StatusCode::CREATED, Json(config)))
}

/// `?after=N&wait=30s`: a blocking query. It answers at once when the configuration has a
/// revision newer than N, else when one appears or the wait ends (with the current revision).
#[derive(Debug, serde::Deserialize)]
pub struct WaitQuery {
    after: Option<u64>,
    wait: Option<String>,
}

pub async fn show(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<Config>, ApiError> {
    let name = ConfigName::parse(&name)?;
    if !caller.may_read_config(&name) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {} may not read configuration {name}", caller.name),
        ));
    }
    let (Some(after), Some(wait)) = (query.after, query.wait.as_deref()) else {
        return Ok(Json(state.metadata.config(&name)?));
    };
    let wait = depot_release::config::parse_duration(wait)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("wait: {e}")))?
        .min(state.options.max_wait);
    let mut waiting = state.watchers.subscribe(&name);
    let config = state.metadata.config(&name)?;
    if config.revision > after {
        return Ok(Json(config));
    }
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Ok(())) = tokio::time::timeout_at(deadline, waiting.receiver.changed()).await {
        if *waiting.receiver.borrow_and_update() > after {
            break;
        }
    }
    drop(waiting);
    // Deleted while waiting: not-found, like any other read.
    Ok(Json(state.metadata.config(&name)?))
}

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
    state.watchers.notify(&config.name, config.revision);
    Ok(Json(config))
}

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
    state.watchers.notify(&result.config.name, result.config.revision);
    Ok(Json(result))
}

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
    state.watchers.notify(&config.name, config.revision);
    Ok(Json(config))
}

pub async fn history(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.history(&name)?)).await?))
}

pub async fn delete(
    Operator(_caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = ConfigName::parse(&name)?;
    let deleted = name.clone();
    state.blocking(move |state| Ok(state.metadata.delete_config(&deleted)?)).await?;
    state.watchers.notify(&name, u64::MAX);
    Ok(StatusCode::NO_CONTENT)
}
