use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use depot_api::semver_order::{ChannelKind, channel_kind, check_manual_channel};
use depot_api::types::{
    ChannelInfo, ComponentSummary, Config, DeprecateVersion, Deprecated, PushVersion, SetChannel, VersionInfo,
};
use depot_api::{ComponentName, ErrorCode, VersionLabel};

use crate::auth::{Admin, Operator, Viewer};
use crate::error::ApiError;
use crate::state::AppState;
use depot_api::ErrorBody;

#[utoipa::path(get, path = "/api/v1/components", tag = "components", responses((status = 200, body = [ComponentSummary]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<ComponentSummary>>, ApiError> {
    Ok(Json(state.blocking(|state| Ok(state.metadata.components()?)).await?))
}

#[utoipa::path(get, path = "/api/v1/components/{component}/versions", tag = "components", params(("component" = String, Path)), responses((status = 200, description = "oldest first: labels that are not semver in push order, then semver labels by precedence", body = [VersionInfo]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn versions(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<Json<Vec<VersionInfo>>, ApiError> {
    let component = ComponentName::parse(&component)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.versions(&component)?)).await?))
}

#[utoipa::path(get, path = "/api/v1/components/{component}/versions/{version}", tag = "components", params(("component" = String, Path), ("version" = String, Path)), responses((status = 200, body = VersionInfo), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn version(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<Json<VersionInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    Ok(Json(state.blocking(move |state| Ok(state.metadata.version(&component, &version)?)).await?))
}

/// `PUT …/versions/{version}`: the same digest again is a success (200); another is refused.
/// A new version may push the oldest unused ones out (retention).
#[utoipa::path(put, path = "/api/v1/components/{component}/versions/{version}", tag = "components", params(("component" = String, Path), ("version" = String, Path)), request_body = PushVersion, responses((status = 201, body = VersionInfo), (status = 200, description = "already there with this digest", body = VersionInfo), (status = 409, description = "version-exists", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn push_version(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
    Json(request): Json<PushVersion>,
) -> Result<(StatusCode, Json<VersionInfo>), ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    let digest = request.digest;
    for channel in &request.channels {
        if channel_kind(channel.as_str()) != ChannelKind::Build {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("`{channel}` is not a build channel (edge, nightly-YYYY-MM-DD, sha-<hex>)"),
            )
            .with_hint("rolling channels (latest, X.Y, X) move by themselves; an admin sets other channels with `depot channel set`"));
        }
    }
    let (status, info, moved) = state
        .blocking(move |state| {
            let added = state.metadata.add_version(
                &component,
                &version,
                &digest,
                &request.labels,
                &request.channels,
                &caller.name,
            )?;
            if !added.created {
                return Ok((StatusCode::OK, added.info, added.moved));
            }
            let mut moved = added.moved;
            let retention = state.metadata.apply_retention(state.options.max_versions)?;
            if !retention.removed.is_empty() {
                tracing::info!(removed = ?retention.removed, "retention removed old versions");
            }
            moved.extend(retention.moved);
            Ok((StatusCode::CREATED, added.info, moved))
        })
        .await?;
    log_moves(&moved);
    Ok((status, Json(info)))
}

/// The store announces every new revision to the blocking queries; this only logs why.
fn log_moves(moved: &[Config]) {
    for config in moved {
        tracing::info!(config = %config.name, revision = config.revision, "a tracked channel moved");
    }
}

/// `PUT …/versions/{version}/deprecation`: the version leaves the channels; configurations that
/// track a channel naming it move back. The answer names them, and those still running it.
#[utoipa::path(put, path = "/api/v1/components/{component}/versions/{version}/deprecation", tag = "components", params(("component" = String, Path), ("version" = String, Path)), request_body = DeprecateVersion, responses((status = 200, body = Deprecated), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn deprecate(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
    Json(request): Json<DeprecateVersion>,
) -> Result<Json<Deprecated>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    if request.reason.trim().is_empty() {
        return Err(ApiError::new(ErrorCode::InvalidRequest, "a deprecation needs a reason")
            .with_hint("say why, e.g. --reason \"crashes on start with TLS enabled\""));
    }
    let (info, moved) = state
        .blocking(move |state| {
            Ok(state.metadata.deprecate(
                &component,
                &version,
                request.reason.trim(),
                request.replacement.as_ref(),
                &caller.name,
            )?)
        })
        .await?;
    log_moves(&moved);
    Ok(Json(info))
}

/// `DELETE …/versions/{version}/deprecation`: the version returns to the channels.
#[utoipa::path(delete, path = "/api/v1/components/{component}/versions/{version}/deprecation", tag = "components", params(("component" = String, Path), ("version" = String, Path)), responses((status = 200, body = VersionInfo), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn undeprecate(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<Json<VersionInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    let (info, moved) =
        state.blocking(move |state| Ok(state.metadata.undeprecate(&component, &version, &caller.name)?)).await?;
    log_moves(&moved);
    Ok(Json(info))
}

#[utoipa::path(get, path = "/api/v1/components/{component}/channels", tag = "components", params(("component" = String, Path)), responses((status = 200, description = "by name, each with its history", body = [ChannelInfo]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn channels(
    Viewer(_caller): Viewer,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<Json<Vec<ChannelInfo>>, ApiError> {
    let component = ComponentName::parse(&component)?;
    Ok(Json(state.blocking(move |state| Ok(state.metadata.channels(&component)?)).await?))
}

#[utoipa::path(delete, path = "/api/v1/components/{component}/versions/{version}", tag = "components", params(("component" = String, Path), ("version" = String, Path)), responses((status = 204), (status = 409, description = "in-use", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete_version(
    Operator(_caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    state.blocking(move |state| Ok(state.metadata.delete_version(&component, &version)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/components/{component}", tag = "components", params(("component" = String, Path)), responses((status = 204), (status = 409, description = "in-use", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete_component(
    Operator(_caller): Operator,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<StatusCode, ApiError> {
    let component = ComponentName::parse(&component)?;
    state.blocking(move |state| Ok(state.metadata.delete_component(&component)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT …/channels/{channel}`: points a manual channel at a version (admin).
#[utoipa::path(put, path = "/api/v1/components/{component}/channels/{channel}", tag = "components", params(("component" = String, Path), ("channel" = String, Path)), request_body = SetChannel, responses((status = 200, body = ChannelInfo), (status = 400, description = "a reserved name", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_channel(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path((component, channel)): Path<(String, String)>,
    Json(request): Json<SetChannel>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let (component, channel) = (ComponentName::parse(&component)?, VersionLabel::parse(&channel)?);
    check_manual_channel(channel.as_str()).map_err(|reason| {
        ApiError::new(ErrorCode::InvalidName, reason).with_hint(
            "choose another name, such as `stable` or `canary`; rolling and build channels move by themselves",
        )
    })?;
    let (info, moved) = state
        .blocking(move |state| Ok(state.metadata.set_channel(&component, &channel, &request.version, &caller.name)?))
        .await?;
    log_moves(&moved);
    Ok(Json(info))
}

/// `DELETE …/channels/{channel}`: removes a build or manual channel (admin).
#[utoipa::path(delete, path = "/api/v1/components/{component}/channels/{channel}", tag = "components", params(("component" = String, Path), ("channel" = String, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn remove_channel(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path((component, channel)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (component, channel) = (ComponentName::parse(&component)?, VersionLabel::parse(&channel)?);
    state.blocking(move |state| Ok(state.metadata.remove_channel(&component, &channel, &caller.name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
