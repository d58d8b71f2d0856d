use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::rollout::{RolloutRequest, RolloutStatus, Strategy};
use depot_api::types::{
    BumpLayer, BumpResult, Config, ConfigSummary, CreateConfig, HistoryEntry, ReplaceLayers, RollbackConfig, SetLayers,
};
use depot_api::{ConfigName, ErrorCode, HostName};

use crate::auth::{Operator, Reader, Viewer};
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::{Path, Query};
use crate::state::AppState;
use depot_api::ErrorBody;
use depot_registry::ConfigAnswer;

#[utoipa::path(get, path = "/api/v1/configs", tag = "configs", responses((status = 200, body = [ConfigSummary]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(Viewer(caller): Viewer, State(state): State<AppState>) -> Result<Json<Vec<ConfigSummary>>, ApiError> {
    Ok(Json(state.registry.configs(&caller).await?))
}

#[utoipa::path(post, path = "/api/v1/configs", tag = "configs", request_body = CreateConfig, responses((status = 201, body = Config), (status = 409, description = "config-exists, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn create(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Json(request): Json<CreateConfig>,
) -> Result<(StatusCode, Json<Config>), ApiError> {
    let config = state.registry.create_config(&caller, request.name, request.layers).await?;
    Ok((StatusCode::CREATED, Json(config)))
}

/// `?after=N&wait=30s`: a blocking query. It answers at once when the configuration has a
/// revision newer than N, else when one appears or the wait ends (with the current revision).
/// With `host=H`, the revision is the one host H may run now (a rollout decides it), and the
/// query answers when that differs from N.
#[derive(Debug, serde::Deserialize)]
pub struct WaitQuery {
    #[serde(default, deserialize_with = "depot_api::bounded::revision_opt")]
    after: Option<u64>,
    wait: Option<String>,
    host: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = depot_api::ConfigName, Path), ("after" = Option<u64>, Query, description = "blocking query: wait for a revision newer than this"), ("wait" = Option<String>, Query, pattern = "^[0-9]{1,6}(ms|s|m)?$", description = "how long to wait, e.g. 30s (at most 5m)"), ("host" = Option<depot_api::HostName>, Query, description = "the agent's host: answer with the revision this host may run now")), responses((status = 200, body = Config), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn show(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Response, ApiError> {
    let name = ConfigName::parse(&name)?;
    let wait = query.wait.as_deref().map(depot_release::config::parse_duration).transpose();
    let wait = wait.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("wait: {e}")))?;
    let host = query.host.as_deref().map(HostName::parse).transpose()?;
    let (Some(after), Some(wait)) = (query.after, wait) else {
        return Ok(Json(state.registry.config_for_host(&caller, &name, host.as_ref()).await?).into_response());
    };
    Ok(match state.registry.config_after(&caller, &name, host.as_ref(), after, wait).await? {
        ConfigAnswer::Config(config) => Json(config).into_response(),
        ConfigAnswer::Json(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
    })
}

#[utoipa::path(patch, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = depot_api::ConfigName, Path)), request_body = SetLayers, responses((status = 200, body = Config), (status = 409, description = "config-conflict, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_layers(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<SetLayers>,
) -> Result<Json<Config>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(state.registry.set_layers(&caller, name, request.layers, request.expect_revision).await?))
}

#[utoipa::path(put, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = depot_api::ConfigName, Path)), request_body = ReplaceLayers, responses((status = 200, body = Config), (status = 400, description = "invalid-request: a component twice, or a version that does not exist", body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "config-conflict, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn replace_layers(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<ReplaceLayers>,
) -> Result<Json<Config>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(state.registry.replace_layers(&caller, name, request.layers, request.expect_revision).await?))
}

#[utoipa::path(post, path = "/api/v1/configs/{name}/bump", tag = "configs", params(("name" = depot_api::ConfigName, Path)), request_body = BumpLayer, responses((status = 200, body = BumpResult), (status = 409, description = "config-conflict, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn bump(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<BumpLayer>,
) -> Result<Json<BumpResult>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(state.registry.bump(&caller, name, request.component, request.expect_revision).await?))
}

#[utoipa::path(post, path = "/api/v1/configs/{name}/rollback", tag = "configs", params(("name" = depot_api::ConfigName, Path)), request_body = RollbackConfig, responses((status = 200, body = Config), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn rollback(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<RollbackConfig>,
) -> Result<Json<Config>, ApiError> {
    let name = ConfigName::parse(&name)?;
    Ok(Json(
        state
            .registry
            .rollback_config(&caller, name, request.to_revision, request.expect_revision, request.now)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/configs/{name}/history", tag = "configs", params(("name" = depot_api::ConfigName, Path)), responses((status = 200, body = [HistoryEntry]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn history(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Vec<HistoryEntry>>, ApiError> {
    Ok(Json(state.registry.config_history(&caller, ConfigName::parse(&name)?).await?))
}

/// `?expect_revision=N`: delete only if the configuration is still at revision N.
#[derive(Debug, serde::Deserialize)]
pub struct DeleteQuery {
    #[serde(default, deserialize_with = "depot_api::bounded::revision_opt")]
    expect_revision: Option<u64>,
}

#[utoipa::path(delete, path = "/api/v1/configs/{name}", tag = "configs", params(("name" = depot_api::ConfigName, Path), ("expect_revision" = Option<u64>, Query, description = "refuse with config-conflict unless the configuration is at this revision")), responses((status = 204), (status = 404, body = ErrorBody), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<DeleteQuery>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete_config(&caller, ConfigName::parse(&name)?, query.expect_revision).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/v1/configs/{name}/strategy", tag = "configs", params(("name" = depot_api::ConfigName, Path)), request_body = Strategy, responses((status = 200, body = Config), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_strategy(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(strategy): Json<Strategy>,
) -> Result<Json<Config>, ApiError> {
    Ok(Json(state.registry.set_strategy(&caller, ConfigName::parse(&name)?, strategy).await?))
}

#[utoipa::path(get, path = "/api/v1/configs/{name}/rollout", tag = "configs", params(("name" = depot_api::ConfigName, Path)), responses((status = 200, body = RolloutStatus), (status = 404, description = "no such configuration, or it never had a rollout", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn rollout(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<RolloutStatus>, ApiError> {
    let name = ConfigName::parse(&name)?;
    match state.registry.rollout(&caller, name.clone()).await? {
        Some(status) => Ok(Json(status)),
        None => Err(ApiError::new(ErrorCode::NotFound, format!("configuration {name} has had no rollout"))
            .with_hint(format!("a rolling strategy (`depot config rollout {name} --canary 1 --batch 25%`) makes each new revision roll out"))),
    }
}

#[utoipa::path(post, path = "/api/v1/configs/{name}/rollout", tag = "configs", params(("name" = depot_api::ConfigName, Path)), request_body = RolloutRequest, responses((status = 200, body = RolloutStatus), (status = 404, body = ErrorBody), (status = 409, description = "rollout-state: not in a state that allows it", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn rollout_action(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<RolloutRequest>,
) -> Result<Json<RolloutStatus>, ApiError> {
    Ok(Json(state.registry.rollout_action(&caller, ConfigName::parse(&name)?, request.action).await?))
}
