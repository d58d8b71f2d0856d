//! Bearer tokens. A token is `NAME.SECRET`; the registry stores only sha256(SECRET), finds the
//! token by name and compares the hashes in constant time. Each route's required role is its
//! handler's extractor: `Admin`, `Operator`, `Viewer` (viewer, operator or admin) or `Reader`
//! (any role, agents included).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use depot_api::types::Role;
use depot_api::{ConfigName, ErrorCode, TokenName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::FirstStart;
use crate::error::ApiError;
use crate::state::AppState;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// Agents may be limited to configurations matching this glob.
    pub config_pattern: Option<String>,
}

impl Principal {
    /// Whether this caller may read configuration `name`.
    pub fn may_read_config(&self, name: &ConfigName) -> bool {
        match (&self.role, &self.config_pattern) {
            (Role::Agent, Some(pattern)) => {
                globset::Glob::new(pattern).map(|g| g.compile_matcher().is_match(name.as_str())).unwrap_or(false)
            }
            _ => true,
        }
    }
}

/// A new random secret token for `name`, and the hash that is stored.
pub fn new_token(name: &TokenName) -> (String, String) {
    let secret: [u8; 32] = rand::random();
    let secret: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let hash = secret_hash(&secret);
    (format!("{name}.{secret}"), hash)
}

fn secret_hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

async fn authenticate(state: &AppState, parts: &Parts) -> Result<Principal, ApiError> {
    let unauthorized = |message: &str| {
        ApiError::new(ErrorCode::Unauthorized, message).with_hint(
            "pass --token or set DEPOT_TOKEN; the first admin token is in the registry's data directory, admin.token",
        )
    };
    let header = parts.headers.get(axum::http::header::AUTHORIZATION).ok_or_else(|| unauthorized("no token"))?;
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header is not `Bearer TOKEN`"))?;
    let (name, secret) = token.trim().rsplit_once('.').ok_or_else(|| unauthorized("malformed token"))?;
    let lookup = name.to_owned();
    let found = state.blocking(move |state| Ok(state.metadata.token(&lookup)?)).await?;
    let Some((info, stored_hash)) = found else {
        // Spend the same work as a real comparison.
        let _ = secret_hash(secret).as_bytes().ct_eq(&[0u8; 64]);
        return Err(unauthorized("unknown or revoked token"));
    };
    if !bool::from(secret_hash(secret).as_bytes().ct_eq(stored_hash.as_bytes())) {
        return Err(unauthorized("unknown or revoked token"));
    }
    Ok(Principal { name: info.name.to_string(), role: info.role, config_pattern: info.config_pattern })
}

macro_rules! role_extractor {
    ($(#[$doc:meta])* $name:ident, $allowed:expr, $needs:literal) => {
        $(#[$doc])*
        pub struct $name(pub Principal);

        impl FromRequestParts<AppState> for $name {
            type Rejection = ApiError;

            async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
                let principal = authenticate(state, parts).await?;
                let allowed: fn(Role) -> bool = $allowed;
                if !allowed(principal.role) {
                    return Err(ApiError::new(
                        ErrorCode::Forbidden,
                        format!("token {} has role {}; this needs {}", principal.name, principal.role.as_str(), $needs),
                    ));
                }
                Ok($name(principal))
            }
        }
    };
}

role_extractor!(
    /// Tokens and garbage collection.
    Admin, |role| role == Role::Admin, "admin"
);
role_extractor!(
    /// Push, configure, delete.
    Operator, |role| matches!(role, Role::Operator | Role::Admin), "operator or admin"
);
role_extractor!(
    /// Read everything but tokens.
    Viewer, |role| matches!(role, Role::Viewer | Role::Operator | Role::Admin), "viewer, operator or admin"
);
role_extractor!(
    /// Report an agent's status: agents (for the configurations their pattern allows) and admins.
    Reporter, |role| matches!(role, Role::Agent | Role::Admin), "agent or admin"
);
role_extractor!(
    /// Read configurations (agents: those matching their pattern) and blobs.
    Reader, |role| matches!(role, Role::Agent | Role::Viewer | Role::Operator | Role::Admin), "any role"
);

/// On first start (no token at all), creates the `admin` token and writes it to
/// `DATA/admin.token` with mode 0600.
pub fn ensure_admin_token(state: &AppState, data: &Path) -> Result<Option<FirstStart>, depot_store::StoreError> {
    if !state.metadata.tokens()?.is_empty() {
        return Ok(None);
    }
    let name = TokenName::parse("admin").expect("a valid name");
    let (token, hash) = new_token(&name);
    let token_file = data.join("admin.token");
    let mut file = std::fs::OpenOptions::new().create(true).write(true).truncate(true).mode(0o600).open(&token_file)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    match state.metadata.create_token(&name, Role::Admin, None, &hash, "depot serve (first start)") {
        Ok(_) => Ok(Some(FirstStart { admin_token: token, token_file })),
        // Another replica of a shared database started first and made the admin token.
        Err(depot_store::StoreError::TokenExists(_)) => {
            std::fs::remove_file(&token_file)?;
            Ok(None)
        }
        Err(error) => Err(error),
    }
}
