use axum::extract::State;
use axum::http::StatusCode;
use depot_api::pipeline::{
    CreatePipeline, EnvChange, EnvView, Pipeline, PipelineEvent, PipelineStatus, Promote, Promotion, PromotionState,
    SetGate,
};
use depot_api::types::{Config, RollbackConfig};
use depot_api::{ErrorBody, PipelineName, StageName};

use crate::auth::{Admin, Operator, Viewer};
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::{Path, Query};
use crate::state::AppState;

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines", responses((status = 200, body = [Pipeline]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(Viewer(caller): Viewer, State(state): State<AppState>) -> Result<Json<Vec<Pipeline>>, ApiError> {
    Ok(Json(state.registry.pipelines(&caller).await?))
}

#[utoipa::path(post, path = "/api/v1/pipelines", tag = "pipelines", request_body = CreatePipeline, responses((status = 201, body = Pipeline), (status = 409, description = "pipeline-exists, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn create(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Json(request): Json<CreatePipeline>,
) -> Result<(StatusCode, Json<Pipeline>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.registry.create_pipeline(&caller, request).await?)))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(("name" = depot_api::PipelineName, Path)), responses((status = 200, body = PipelineStatus), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn show(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    Ok(Json(state.registry.pipeline_status(&caller, PipelineName::parse(&name)?).await?))
}

#[utoipa::path(put, path = "/api/v1/pipelines/{name}/stages/{stage}/gate", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("stage" = depot_api::StageName, Path)), request_body = SetGate, responses((status = 200, body = Pipeline), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_gate(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Json(request): Json<SetGate>,
) -> Result<Json<Pipeline>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    Ok(Json(state.registry.set_gate(&caller, name, stage, request.gate).await?))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/promotions", tag = "pipelines", params(("name" = depot_api::PipelineName, Path)), request_body = Promote, responses((status = 200, description = "applied, or unchanged: the target already runs these versions", body = Promotion), (status = 202, description = "pending: the target stage's gate asks for approval", body = Promotion), (status = 409, description = "gate-closed: the require-healthy gate refused; or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn promote(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<Promote>,
) -> Result<(StatusCode, Json<Promotion>), ApiError> {
    Ok(promoted(state.registry.promote(&caller, PipelineName::parse(&name)?, request).await?))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/promotions/{id}/approval", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("id" = u64, Path)), responses((status = 409, description = "gate-closed, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 200, body = Promotion), (status = 404, description = "unknown-promotion: nothing with this id waits", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this, or the caller asked for the promotion", body = ErrorBody)), security(("token" = [])))]
pub async fn approve(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<(StatusCode, Json<Promotion>), ApiError> {
    Ok(promoted(state.registry.approve(&caller, PipelineName::parse(&name)?, id).await?))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/promotions/{id}/rejection", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("id" = u64, Path)), responses((status = 200, body = Promotion), (status = 404, description = "unknown-promotion: nothing with this id waits", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn reject(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Json<Promotion>, ApiError> {
    Ok(Json(state.registry.reject(&caller, PipelineName::parse(&name)?, id).await?))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(("name" = depot_api::PipelineName, Path)), responses((status = 204, description = "deleted, with its stages' configurations"), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete_pipeline(&caller, PipelineName::parse(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn promoted(promotion: Promotion) -> (StatusCode, Json<Promotion>) {
    let status = if promotion.state == PromotionState::Pending { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, Json(promotion))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/stages/{stage}/rollback", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("stage" = depot_api::StageName, Path)), request_body = RollbackConfig, responses((status = 200, body = Config), (status = 404, body = ErrorBody), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn rollback(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Json(request): Json<RollbackConfig>,
) -> Result<Json<Config>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    Ok(Json(
        state
            .registry
            .rollback_stage(&caller, name, stage, request.to_revision, request.expect_revision, request.now)
            .await?,
    ))
}

/// `?show=true`: the values, for operators.
#[derive(Debug, serde::Deserialize)]
pub struct EnvQuery {
    #[serde(default)]
    show: bool,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/stages/{stage}/env", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("stage" = depot_api::StageName, Path), ("show" = Option<bool>, Query, description = "the values (operators and admins); masked otherwise")), responses((status = 200, body = EnvView), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn env(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Query(query): Query<EnvQuery>,
) -> Result<Json<EnvView>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    Ok(Json(state.registry.stage_env(&caller, name, stage, query.show).await?))
}

#[utoipa::path(patch, path = "/api/v1/pipelines/{name}/stages/{stage}/env", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("stage" = depot_api::StageName, Path)), request_body = EnvChange, responses((status = 200, description = "the stage's configuration: a new revision with a new environment layer, or the same one when nothing changed", body = Config), (status = 400, description = "a bad name or a platform variable", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_env(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Json(change): Json<EnvChange>,
) -> Result<Json<Config>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    Ok(Json(state.registry.set_env(&caller, name, stage, change).await?))
}

/// `?stage=S`: only that stage's entries.
#[derive(Debug, serde::Deserialize)]
pub struct HistoryQuery {
    stage: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/history", tag = "pipelines", params(("name" = depot_api::PipelineName, Path), ("stage" = Option<depot_api::StageName>, Query, description = "only this stage")), responses((status = 200, body = [PipelineEvent]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn history(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<PipelineEvent>>, ApiError> {
    let name = PipelineName::parse(&name)?;
    let stage = query.stage.as_deref().map(StageName::parse).transpose()?;
    Ok(Json(state.registry.pipeline_history(&caller, name, stage).await?))
}
