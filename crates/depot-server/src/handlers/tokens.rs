use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use depot_api::types::{CreateToken, Role, TokenCreated, TokenInfo};
use depot_api::{ErrorCode, TokenName};

use crate::auth::{Admin, Reader, new_token};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, serde::Serialize)]
pub struct WhoAmI {
    name: String,
    role: Role,
    config_pattern: Option<String>,
}

pub async fn whoami(Reader(caller): Reader) -> Json<WhoAmI> {
    Json(WhoAmI { name: caller.name, role: caller.role, config_pattern: caller.config_pattern })
}

/// The secret is in this response and nowhere else: the registry keeps only its hash.
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

pub async fn list(Admin(_caller): Admin, State(state): State<AppState>) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    Ok(Json(state.blocking(|state| Ok(state.metadata.tokens()?)).await?))
}

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
