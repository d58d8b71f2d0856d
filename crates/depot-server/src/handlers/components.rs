use axum::extract::State;
use axum::http::StatusCode;
use depot_api::types::{
    ChannelInfo, ComponentSummary, DeprecateVersion, Deprecated, PushVersion, SetChannel, VersionInfo,
};
use depot_api::{ComponentName, VersionLabel};

use crate::auth::{Admin, Operator, Reader, Viewer};
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::Path;
use crate::state::AppState;
use depot_api::ErrorBody;

#[utoipa::path(get, path = "/api/v1/components", tag = "components", responses((status = 200, body = [ComponentSummary]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
) -> Result<Json<Vec<ComponentSummary>>, ApiError> {
    Ok(Json(state.registry.components(&caller).await?))
}

#[utoipa::path(get, path = "/api/v1/components/{component}/versions", tag = "components", params(("component" = depot_api::ComponentName, Path)), responses((status = 200, description = "oldest first: labels that are not semver in push order, then semver labels by precedence", body = [VersionInfo]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn versions(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<Json<Vec<VersionInfo>>, ApiError> {
    Ok(Json(state.registry.versions(&caller, ComponentName::parse(&component)?).await?))
}

#[utoipa::path(get, path = "/api/v1/components/{component}/versions/{version}", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), responses((status = 200, body = VersionInfo), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn version(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<Json<VersionInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    Ok(Json(state.registry.version(&caller, component, version).await?))
}

/// `PUT …/versions/{version}`: the same digest again is a success (200); another is refused.
/// A new version may push the oldest unused ones out (retention).
#[utoipa::path(put, path = "/api/v1/components/{component}/versions/{version}", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), request_body = PushVersion, responses((status = 201, body = VersionInfo), (status = 200, description = "already there with this digest", body = VersionInfo), (status = 409, description = "version-exists, or signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn push_version(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
    Json(request): Json<PushVersion>,
) -> Result<(StatusCode, Json<VersionInfo>), ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    let pushed = state.registry.push_version(&caller, component, version, request).await?;
    let status = if pushed.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(pushed.info)))
}

/// `PUT …/versions/{version}/deprecation`: the version leaves the channels; configurations that
/// track a channel naming it move back. The answer names them, and those still running it.
#[utoipa::path(put, path = "/api/v1/components/{component}/versions/{version}/deprecation", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), request_body = DeprecateVersion, responses((status = 200, body = Deprecated), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn deprecate(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
    Json(request): Json<DeprecateVersion>,
) -> Result<Json<Deprecated>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    let deprecated = state
        .registry
        .deprecate(&caller, component, version, &request.reason, request.replacement, request.now)
        .await?;
    Ok(Json(deprecated))
}

/// `DELETE …/versions/{version}/deprecation`: the version returns to the channels.
#[utoipa::path(delete, path = "/api/v1/components/{component}/versions/{version}/deprecation", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), responses((status = 409, description = "signature-required: a version lacks the signatures its component's policy requires (a channel would move onto it)", body = ErrorBody), (status = 200, body = VersionInfo), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn undeprecate(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<Json<VersionInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    Ok(Json(state.registry.undeprecate(&caller, component, version).await?))
}

#[utoipa::path(get, path = "/api/v1/components/{component}/channels", tag = "components", params(("component" = depot_api::ComponentName, Path)), responses((status = 200, description = "by name, each with its history", body = [ChannelInfo]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn channels(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<Json<Vec<ChannelInfo>>, ApiError> {
    Ok(Json(state.registry.channels(&caller, ComponentName::parse(&component)?).await?))
}

#[utoipa::path(delete, path = "/api/v1/components/{component}/versions/{version}", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), responses((status = 204), (status = 409, description = "in-use", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete_version(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    state.registry.delete_version(&caller, component, version).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/api/v1/components/{component}", tag = "components", params(("component" = depot_api::ComponentName, Path)), responses((status = 204), (status = 409, description = "in-use", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn delete_component(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.delete_component(&caller, ComponentName::parse(&component)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `PUT …/channels/{channel}`: points a manual channel at a version (admin).
#[utoipa::path(put, path = "/api/v1/components/{component}/channels/{channel}", tag = "components", params(("component" = depot_api::ComponentName, Path), ("channel" = depot_api::VersionLabel, Path)), request_body = SetChannel, responses((status = 409, description = "signature-required: a version lacks the signatures its component's policy requires", body = ErrorBody), (status = 200, body = ChannelInfo), (status = 400, description = "a reserved name", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_channel(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path((component, channel)): Path<(String, String)>,
    Json(request): Json<SetChannel>,
) -> Result<Json<ChannelInfo>, ApiError> {
    let (component, channel) = (ComponentName::parse(&component)?, VersionLabel::parse(&channel)?);
    Ok(Json(state.registry.set_channel(&caller, component, channel, request.version).await?))
}

/// `DELETE …/channels/{channel}`: removes a build or manual channel (admin).
#[utoipa::path(delete, path = "/api/v1/components/{component}/channels/{channel}", tag = "components", params(("component" = depot_api::ComponentName, Path), ("channel" = depot_api::VersionLabel, Path)), responses((status = 204), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn remove_channel(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path((component, channel)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (component, channel) = (ComponentName::parse(&component)?, VersionLabel::parse(&channel)?);
    state.registry.remove_channel(&caller, component, channel).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST …/versions/{version}/signatures`: an SSHSIG signature of the version, checked valid
/// over its component, version and digest with the key it names.
#[utoipa::path(post, path = "/api/v1/components/{component}/versions/{version}/signatures", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), request_body = depot_api::types::AddSignature, responses((status = 200, description = "the version with every signature", body = VersionInfo), (status = 400, description = "not a depot signature of this version", body = ErrorBody), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn add_signature(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
    Json(request): Json<depot_api::types::AddSignature>,
) -> Result<Json<VersionInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    Ok(Json(state.registry.add_signature(&caller, component, version, &request.signature).await?))
}

/// `GET …/policy`: the component's signature policy; 404 when it has none.
#[utoipa::path(get, path = "/api/v1/components/{component}/policy", tag = "components", params(("component" = depot_api::ComponentName, Path)), responses((status = 200, body = depot_api::types::SignaturePolicy), (status = 404, description = "the component has no signature policy", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn policy(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<Json<depot_api::types::SignaturePolicy>, ApiError> {
    let component = ComponentName::parse(&component)?;
    match state.registry.signature_policy(&caller, component.clone()).await? {
        Some(policy) => Ok(Json(policy)),
        None => Err(ApiError::new(depot_api::ErrorCode::NotFound, format!("{component} has no signature policy"))),
    }
}

/// `PUT …/policy` (admin): the signatures each new version of the component needs, and the keys
/// that count, in the allowed_signers format.
#[utoipa::path(put, path = "/api/v1/components/{component}/policy", tag = "components", params(("component" = depot_api::ComponentName, Path)), request_body = depot_api::types::SetPolicy, responses((status = 200, body = depot_api::types::SignaturePolicy), (status = 400, description = "not allowed_signers text, or fewer keys than signatures required", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn set_policy(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(component): Path<String>,
    Json(request): Json<depot_api::types::SetPolicy>,
) -> Result<Json<depot_api::types::SignaturePolicy>, ApiError> {
    Ok(Json(state.registry.set_signature_policy(&caller, ComponentName::parse(&component)?, request).await?))
}

/// `DELETE …/policy` (admin): versions of the component need no signature any more.
#[utoipa::path(delete, path = "/api/v1/components/{component}/policy", tag = "components", params(("component" = depot_api::ComponentName, Path)), responses((status = 204, description = "removed, or there was none"), (status = 400, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn remove_policy(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(component): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.remove_signature_policy(&caller, ComponentName::parse(&component)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The largest attestation request: a statement of `MAX_STATEMENT_BYTES` escaped in JSON, and
/// its signatures.
pub const ATTESTATION_BODY_LIMIT: usize = 2 * depot_trust::attestation::MAX_STATEMENT_BYTES + 64 * 1024;

/// `POST …/versions/{version}/attestations`: an in-toto statement about the version (its
/// subjects must include the version's content), with signatures checked valid over it.
#[utoipa::path(post, path = "/api/v1/components/{component}/versions/{version}/attestations", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), request_body = depot_api::types::AddAttestation, responses((status = 200, description = "the attestation with every signature", body = depot_api::types::AttestationInfo), (status = 400, description = "not an in-toto statement about this version's content, or a signature not over it", body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, description = "the statement is larger than the registry keeps", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn add_attestation(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
    Json(request): Json<depot_api::types::AddAttestation>,
) -> Result<Json<depot_api::types::AttestationInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    Ok(Json(state.registry.add_attestation(&caller, component, version, request).await?))
}

/// `GET …/versions/{version}/attestations`: the version's attestations, without their statements.
#[utoipa::path(get, path = "/api/v1/components/{component}/versions/{version}/attestations", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path)), responses((status = 200, body = [depot_api::types::AttestationInfo]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn attestations(
    Viewer(caller): Viewer,
    State(state): State<AppState>,
    Path((component, version)): Path<(String, String)>,
) -> Result<Json<Vec<depot_api::types::AttestationInfo>>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    Ok(Json(state.registry.attestations(&caller, component, version).await?))
}

/// `GET …/versions/{version}/attestations/{digest}`: one attestation, with its statement (also
/// for the agents that may download the version's content).
#[utoipa::path(get, path = "/api/v1/components/{component}/versions/{version}/attestations/{digest}", tag = "components", params(("component" = depot_api::ComponentName, Path), ("version" = depot_api::VersionLabel, Path), ("digest" = depot_api::Digest, Path)), responses((status = 200, body = depot_api::types::AttestationInfo), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn attestation(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path((component, version, digest)): Path<(String, String, String)>,
) -> Result<Json<depot_api::types::AttestationInfo>, ApiError> {
    let (component, version) = (ComponentName::parse(&component)?, VersionLabel::parse(&version)?);
    let digest = depot_api::Digest::parse(&digest)?;
    match state.registry.attestation(&caller, component.clone(), version.clone(), digest.clone()).await? {
        Some(found) => Ok(Json(found)),
        None => Err(ApiError::new(
            depot_api::ErrorCode::NotFound,
            format!("{component} {version} has no attestation {digest}"),
        )),
    }
}
