use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use depot_api::types::{CreateToken, Role, TokenCreated, TokenInfo, WhoAmI};
use depot_api::{ErrorCode, TokenName};

use crate::auth::{Admin, Reader, new_token};
use crate::error::ApiError;
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
    if let Some(pattern) = &request.config_pattern {
        if request.role != Role::Agent {
            return Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "only agent tokens are limited to configuration patterns",
            ));
        }
        globset::Glob::new(pattern).map_err(|e| {
            ApiError::new(ErrorCode::InvalidRequest, format!("invalid configuration pattern `{pattern}`: {e}"))
        })?;
    }
    let created = state
        .blocking(move |state| {
            let (token, hash) = new_token(&request.name);
            let info = state.metadata.create_token(
                &request.name,
                request.role,
                request.config_pattern.as_deref(),
                &hash,
                &caller.name,
            )?;
            Ok(TokenCreated { info, token })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens", responses((status = 200, body = [TokenInfo]), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn list(Admin(_caller): Admin, State(state): State<AppState>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(state.blocking(|state| Ok(state.metadata.tokens()?)).await?))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{name}", tag = "tokens", params(("name" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn revoke(
    Admin(caller): Admin,
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let name = TokenName::parse(&name)?;
    if name.as_str() == caller.name {
        return Err(ApiError::new(ErrorCode::InvalidRequest, format!("token {name} is the one making this request"))
            .with_hint("revoke it with another admin token"));
    }
    state.blocking(move |state| Ok(state.metadata.revoke_token(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}
