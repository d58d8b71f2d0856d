use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use depot_api::pipeline::{
    CreatePipeline, ENV_FILE, EnvChange, EnvView, Gate, Pipeline, PipelineEvent, PipelineStatus, Promote, Promotion,
    PromotionState, SetGate, check_env,
};
use depot_api::types::{Config, Role, RollbackConfig};
use depot_api::{Digest, ErrorBody, ErrorCode, PipelineName, StageName, VersionLabel};
use depot_store::StoreError;

use crate::auth::{Admin, Operator, Viewer};
use crate::error::ApiError;
use crate::state::AppState;

/// The dotenv file's mode in the archive (the release drops write bits: 0440 on the host), so
/// that the values are not world-readable.
const ENV_FILE_MODE: u32 = 0o640;

/// How often an environment change is retried when another write lands between its read and
/// its write.
const ENV_ATTEMPTS: usize = 5;

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines", responses((status = 200, body = [Pipeline]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(Viewer(_caller): Viewer, State(state): State<AppState>) -> Result<Json<Vec<Pipeline>>, ApiError> {
    Ok(Json(state.blocking(|state| Ok(state.metadata.pipelines()?)).await?))
}

#[utoipa::path(post, path = "/api/v1/pipelines", tag = "pipelines", request_body = CreatePipeline, responses((status = 201, body = Pipeline), (status = 409, description = "pipeline-exists", body = ErrorBody), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn create(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Json(request): Json<CreatePipeline>,
) -> Result<(StatusCode, Json<Pipeline>), ApiError> {
    let (pipeline, _configs) =
        state.blocking(move |state| Ok(state.metadata.create_pipeline(&request, &caller.name)?)).await?;
    Ok((StatusCode::CREATED, Json(pipeline)))
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path)), responses((status = 200, body = PipelineStatus), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn show(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PipelineStatus>, ApiError> {
    let name = PipelineName::parse(&name)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.pipeline_status(&name)?)).await?))
}

#[utoipa::path(put, path = "/api/v1/pipelines/{name}/stages/{stage}/gate", tag = "pipelines", params(("name" = String, Path), ("stage" = String, Path)), request_body = SetGate, responses((status = 200, body = Pipeline), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_gate(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Json(request): Json<SetGate>,
) -> Result<Json<Pipeline>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    let gate: Gate = request.gate;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.set_gate(&name, &stage, gate, &caller.name)?)).await?))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/promotions", tag = "pipelines", params(("name" = String, Path)), request_body = Promote, responses((status = 200, description = "applied, or unchanged: the target already runs these versions", body = Promotion), (status = 202, description = "pending: the target stage's gate asks for approval", body = Promotion), (status = 409, description = "gate-closed: the require-healthy gate refused", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn promote(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Json(request): Json<Promote>,
) -> Result<(StatusCode, Json<Promotion>), ApiError> {
    let name = PipelineName::parse(&name)?;
    let promotion = state.blocking(move |state| Ok(state.metadata.promote(&name, &request, &caller.name)?)).await?;
    Ok(promoted(promotion))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/promotions/{id}/approval", tag = "pipelines", params(("name" = String, Path), ("id" = u64, Path)), responses((status = 200, body = Promotion), (status = 404, description = "unknown-promotion: nothing with this id waits", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this, or the caller asked for the promotion", body = ErrorBody)), security(("token" = [])))]
pub async fn approve(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<(StatusCode, Json<Promotion>), ApiError> {
    let name = PipelineName::parse(&name)?;
    let promotion = state.blocking(move |state| Ok(state.metadata.approve(&name, Some(id), &caller.name)?)).await?;
    Ok(promoted(promotion))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/promotions/{id}/rejection", tag = "pipelines", params(("name" = String, Path), ("id" = u64, Path)), responses((status = 200, body = Promotion), (status = 404, description = "unknown-promotion: nothing with this id waits", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn reject(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, id)): Path<(String, u64)>,
) -> Result<Json<Promotion>, ApiError> {
    let name = PipelineName::parse(&name)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.reject(&name, id, &caller.name)?)).await?))
}

#[utoipa::path(delete, path = "/api/v1/pipelines/{name}", tag = "pipelines", params(("name" = String, Path)), responses((status = 204, description = "deleted, with its stages' configurations"), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete(
    Admin(_caller): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = PipelineName::parse(&name)?;
    state.blocking(move |state| Ok(state.metadata.delete_pipeline(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn promoted(promotion: Promotion) -> (StatusCode, Json<Promotion>) {
    let status = if promotion.state == PromotionState::Pending { StatusCode::ACCEPTED } else { StatusCode::OK };
    (status, Json(promotion))
}

#[utoipa::path(post, path = "/api/v1/pipelines/{name}/stages/{stage}/rollback", tag = "pipelines", params(("name" = String, Path), ("stage" = String, Path)), request_body = RollbackConfig, responses((status = 200, body = Config), (status = 404, body = ErrorBody), (status = 409, description = "config-conflict", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn rollback(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Json(request): Json<RollbackConfig>,
) -> Result<Json<Config>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    let config = state
        .blocking(move |state| {
            let config = state.metadata.stage_config(&name, &stage)?;
            Ok(state.metadata.rollback(&config, request.to_revision, request.expect_revision, &caller.name)?)
        })
        .await?;
    Ok(Json(config))
}

/// `?show=true`: the values, for operators.
#[derive(Debug, serde::Deserialize)]
pub struct EnvQuery {
    #[serde(default)]
    show: bool,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/stages/{stage}/env", tag = "pipelines", params(("name" = String, Path), ("stage" = String, Path), ("show" = Option<bool>, Query, description = "the values (operators and admins); masked otherwise")), responses((status = 200, body = EnvView), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn env(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Query(query): Query<EnvQuery>,
) -> Result<Json<EnvView>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    if query.show && !matches!(caller.role, Role::Operator | Role::Admin) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "token {} ({}) may not read the values of {name}/{stage}'s variables",
                caller.name,
                caller.role.as_str()
            ),
        )
        .with_hint("operators and admins may; list the names without --show"));
    }
    let view = state
        .blocking(move |state| {
            let env = state.metadata.stage_env(&name, &stage)?;
            let mut vars = env.vars;
            if !query.show {
                vars.values_mut().for_each(|value| *value = "********".to_owned());
            }
            Ok(EnvView {
                pipeline: name,
                stage,
                config: env.config,
                revision: env.revision,
                version: env.version.map(|v| VersionLabel::parse(&v.to_string()).expect("a number is a label")),
                masked: !query.show,
                vars,
            })
        })
        .await?;
    Ok(Json(view))
}

#[utoipa::path(patch, path = "/api/v1/pipelines/{name}/stages/{stage}/env", tag = "pipelines", params(("name" = String, Path), ("stage" = String, Path)), request_body = EnvChange, responses((status = 200, description = "the stage's configuration: a new revision with a new environment layer, or the same one when nothing changed", body = Config), (status = 400, description = "a bad name or a platform variable", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_env(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((name, stage)): Path<(String, String)>,
    Json(change): Json<EnvChange>,
) -> Result<Json<Config>, ApiError> {
    let (name, stage) = (PipelineName::parse(&name)?, StageName::parse(&stage)?);
    for (key, value) in &change.set {
        check_env(key, Some(value)).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
    }
    for key in &change.unset {
        check_env(key, None).map_err(|e| ApiError::new(ErrorCode::InvalidRequest, e))?;
        if change.set.contains_key(key) {
            return Err(ApiError::new(ErrorCode::InvalidRequest, format!("{key} is both set and unset")));
        }
    }
    let (config, _changed) = set_env_with_retries(&state, name, stage, change, caller.name).await?;
    Ok(Json(config))
}

/// Reads the stage's variables, writes the new environment layer's blob, and records the new
/// revision, again when another write landed in between (the blob is written off the database's
/// thread, so the read and the write are two transactions).
async fn set_env_with_retries(
    state: &AppState,
    name: PipelineName,
    stage: StageName,
    change: EnvChange,
    actor: String,
) -> Result<(Config, bool), ApiError> {
    for _ in 0..ENV_ATTEMPTS {
        let (pipeline, stage_name) = (name.clone(), stage.clone());
        let current = state.blocking(move |state| Ok(state.metadata.stage_env(&pipeline, &stage_name)?)).await?;
        let mut vars = current.vars.clone();
        vars.extend(change.set.clone());
        for key in &change.unset {
            vars.remove(key);
        }
        // Nothing to change: the same variables, or removing what a stage without an
        // environment layer never had.
        if vars == current.vars && (current.version.is_some() || vars.is_empty()) {
            let config = current.config.clone();
            return Ok((state.blocking(move |state| Ok(state.metadata.config(&config)?)).await?, false));
        }
        let (digest, size) = store_env_blob(state, &vars).await?;
        let (pipeline, stage_name, change, actor) = (name.clone(), stage.clone(), change.clone(), actor.clone());
        let written = state
            .blocking(move |state| {
                state.metadata.record_blob(&digest, size)?;
                Ok(state.metadata.set_env(&pipeline, &stage_name, current.revision, &change, &vars, &digest, &actor))
            })
            .await?;
        match written {
            Err(StoreError::ConfigConflict { .. }) => continue,
            other => return Ok((other?, true)),
        }
    }
    Err(ApiError::new(
        ErrorCode::ConfigConflict,
        format!("{name}/{stage} kept changing while its environment was written"),
    )
    .with_hint("try again"))
}

/// Builds the environment layer (one dotenv file at [`ENV_FILE`]) and stores it as a blob, as an
/// upload would: written, verified, made durable, then visible. The caller records it.
async fn store_env_blob(state: &AppState, vars: &BTreeMap<String, String>) -> Result<(Digest, u64), ApiError> {
    // A random note makes the digest, which viewers see, useless for confirming guessed values.
    let nonce: [u8; 16] = rand::random();
    let note: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let text = depot_api::pipeline::render_dotenv(vars, &note);
    let archive = depot_release::archive::pack_files(&[(ENV_FILE, text.as_bytes(), ENV_FILE_MODE)])
        .map_err(ApiError::internal)?;
    let digest = depot_release::digest::sha256_hex(&archive);
    let digest = Digest::from_hex(&digest).expect("sha256 hex is a digest");
    let size = archive.len() as u64;
    state.blobs.put(&digest, archive.into(), state.options.max_blob_size).await?;
    Ok((digest, size))
}

/// `?stage=S`: only that stage's entries.
#[derive(Debug, serde::Deserialize)]
pub struct HistoryQuery {
    stage: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/pipelines/{name}/history", tag = "pipelines", params(("name" = String, Path), ("stage" = Option<String>, Query, description = "only this stage")), responses((status = 200, body = [PipelineEvent]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn history(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<Vec<PipelineEvent>>, ApiError> {
    let name = PipelineName::parse(&name)?;
    let stage = query.stage.as_deref().map(StageName::parse).transpose()?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.pipeline_history(&name, stage.as_ref())?)).await?))
}
