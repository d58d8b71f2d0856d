use axum::extract::State;
use axum::http::StatusCode;
use depot_api::TokenName;
use depot_api::types::{CreateToken, TokenCreated, TokenInfo, WhoAmI};

use crate::auth::{Admin, Reader};
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::Path;
use crate::state::AppState;
use depot_api::ErrorBody;

#[utoipa::path(get, path = "/api/v1/whoami", tag = "tokens", responses((status = 200, body = WhoAmI), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn whoami(Reader(caller): Reader) -> Json<WhoAmI> {
    Json(WhoAmI { name: caller.name, role: caller.role, config_pattern: caller.config_pattern })
}

/// The secret is in this response and nowhere else: the registry keeps only its hash.
#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken, responses((status = 201, description = "the secret is in this response only", body = TokenCreated), (status = 409, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn create(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Json(request): Json<CreateToken>,
) -> Result<(StatusCode, Json<TokenCreated>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.registry.create_token(&caller, request).await?)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = [TokenInfo]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(Admin(caller): Admin, State(state): State<AppState>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(state.registry.tokens(&caller).await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", params(("name" = depot_api::TokenName, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn revoke(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.revoke_token(&caller, TokenName::parse(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/keys` (admin): an SSH key for the SSH front-end, with a role like a token's.
#[utoipa::path(post, path = "/api/v1/keys", tag = "tokens", request_body = depot_api::types::AddSshKey, responses((status = 201, body = depot_api::types::SshKeyInfo), (status = 400, description = "not an OpenSSH public key, a name or key already known, or a pattern on a key that is not an agent's", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn add_key(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Json(request): Json<depot_api::types::AddSshKey>,
) -> Result<(StatusCode, Json<depot_api::types::SshKeyInfo>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.registry.add_ssh_key(&caller, request).await?)))
}

/// `POST /api/v1/keys/import` (admin): every key of an authorized_keys file, all or none.
#[utoipa::path(post, path = "/api/v1/keys/import", tag = "tokens", request_body = depot_api::types::ImportSshKeys, responses((status = 201, body = [depot_api::types::SshKeyInfo]), (status = 400, description = "a line that is not a public key, a key already known, or no key at all", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn import_keys(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Json(request): Json<depot_api::types::ImportSshKeys>,
) -> Result<(StatusCode, Json<Vec<depot_api::types::SshKeyInfo>>), ApiError> {
    Ok((StatusCode::CREATED, Json(state.registry.import_ssh_keys(&caller, request).await?)))
}

#[utoipa::path(get, path = "/api/v1/keys", tag = "tokens", responses((status = 200, body = [depot_api::types::SshKeyInfo]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn keys(
    Admin(caller): Admin,
    State(state): State<AppState>,
) -> Result<Json<Vec<depot_api::types::SshKeyInfo>>, ApiError> {
    Ok(Json(state.registry.ssh_keys(&caller).await?))
}

#[utoipa::path(delete, path = "/api/v1/keys/{name}", tag = "tokens", params(("name" = depot_api::TokenName, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn revoke_key(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.registry.revoke_ssh_key(&caller, TokenName::parse(&name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}
