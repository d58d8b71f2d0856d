//! Bearer tokens over HTTP. Each route's required role is its handler's extractor: `Admin`,
//! `Operator`, `Viewer` (viewer, operator or admin), `Reporter` (agents and admins) or `Reader`
//! (any role). The registry checks the same roles again in each operation: the extractors answer
//! 401/403 before a body is read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use depot_api::types::Role;
use depot_api::{ErrorCode, TokenName};
use depot_registry::{Caller, Need, Registry};

use crate::FirstStart;
use crate::error::ApiError;
use crate::state::AppState;

async fn authenticate(state: &AppState, parts: &Parts) -> Result<Caller, ApiError> {
    let unauthorized = |message: &str| ApiError::from(depot_registry::Error::refused(ErrorCode::Unauthorized, message));
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| unauthorized("no token"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    Ok(state.registry.authenticate(token).await?)
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $need:expr) => {
        $(#[$doc])*
        pub struct $name(pub Caller);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                let caller = authenticate(state, parts).await?;
                caller.require($need)?;
                Ok($name(caller))
            }
        }
    };
}

role_extractor!(
    /// Tokens, manual channels, gates and garbage collection.
    Admin, Need::Admin
);
role_extractor!(
    /// Push, configure, delete.
    Operator, Need::Operator
);
role_extractor!(
    /// Read everything but tokens.
    Viewer, Need::Viewer
);
role_extractor!(
    /// Report an agent's status: agents (for the configurations their pattern allows) and admins.
    Reporter, Need::Reporter
);
role_extractor!(
    /// Read configurations (agents: those matching their pattern) and blobs.
    Reader, Need::Reader
);

/// On first start (no token at all), creates the `admin` token and writes it to
/// `DATA/admin.token` with mode 0600.
pub fn ensure_admin_token(registry: &Registry, data: &Path) -> Result<Option<FirstStart>, depot_registry::Error> {
    if registry.has_tokens_now()? {
        return Ok(None);
    }
    let name = TokenName::parse("admin").expect("a valid name");
    let (token, hash) = depot_registry::new_token(&name);
    // The file first: a token recorded whose secret nobody holds would lock the registry's owner out.
    let token_file = data.join("admin.token");
    let write = || -> std::io::Result<()> {
        let mut file =
            std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&token_file)?;
        file.write_all(format!("{token}\n").as_bytes())?;
        file.sync_all()
    };
    write().map_err(|e| depot_registry::Error::Store(e.into()))?;
    match registry.record_token_now(&name, Role::Admin, None, &hash, "depot serve (first start)") {
        Ok(_) => Ok(Some(FirstStart { admin_token: token, token_file })),
        // Another replica of a shared database started first and made the admin token.
        Err(depot_registry::Error::Store(depot_store::StoreError::TokenExists(_))) => {
            std::fs::remove_file(&token_file).map_err(|e| depot_registry::Error::Store(e.into()))?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}
