//! Who is calling, and what each role may do. A token is `NAME.SECRET`; the registry stores only
//! sha256(SECRET), finds the token by name and compares the hashes in constant time.

use depot_api::types::{CreateToken, Role, TokenCreated, TokenInfo};
use depot_api::{ConfigName, ErrorCode, TokenName};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{Error, Registry, Result};

/// Who is calling: a token's name, role and, for agents, the configurations it is limited to.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    /// Agents are limited to configurations matching this glob (`*`: all).
    pub config_pattern: Option<String>,
}

/// What an operation needs of its caller's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Tokens, manual channels, gates, garbage collection.
    Admin,
    /// Push, configure, promote, delete.
    Operator,
    /// Read everything but tokens and values.
    Viewer,
    /// Report an agent's status: agents and admins.
    Reporter,
    /// Read configurations and blobs (agents: within their pattern): any role.
    Reader,
}

impl Need {
    pub fn allows(self, role: Role) -> bool {
        match self {
            Need::Admin => role == Role::Admin,
            Need::Operator => matches!(role, Role::Operator | Role::Admin),
            Need::Viewer => matches!(role, Role::Viewer | Role::Operator | Role::Admin),
            Need::Reporter => matches!(role, Role::Agent | Role::Admin),
            Need::Reader => true,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Need::Admin => "admin",
            Need::Operator => "operator or admin",
            Need::Viewer => "viewer, operator or admin",
            Need::Reporter => "agent or admin",
            Need::Reader => "any role",
        }
    }
}

impl Caller {
    /// Refuses unless the caller's role meets `need`.
    pub fn require(&self, need: Need) -> Result<()> {
        if need.allows(self.role) {
            return Ok(());
        }
        Err(Error::refused(
            ErrorCode::Forbidden,
            format!("token {} has role {}; this needs {}", self.name, self.role.as_str(), need.describe()),
        ))
    }

    /// Whether this caller may read configuration `name`: agents only those their pattern
    /// matches, every other role all.
    pub fn may_read_config(&self, name: &ConfigName) -> bool {
        match (&self.role, &self.config_pattern) {
            (Role::Agent, Some(pattern)) => pattern_matches(pattern, name),
            _ => true,
        }
    }

    /// Refuses unless this caller may read (or, for an agent, report on) configuration `name`.
    pub(crate) fn require_config(&self, name: &ConfigName, what: &str) -> Result<()> {
        if self.may_read_config(name) {
            return Ok(());
        }
        Err(Error::refused(ErrorCode::Forbidden, format!("token {} may not {what} configuration {name}", self.name)))
    }
}

/// Only agents are limited to a configuration pattern, and each must name one (`what` names the
/// token or key in the error).
pub(crate) fn check_pattern(what: &str, role: Role, pattern: Option<&str>) -> Result<()> {
    match (pattern, role) {
        (Some(_), role) if role != Role::Agent => {
            Err(Error::invalid("only agent tokens and keys are limited to configuration patterns"))
        }
        (None, Role::Agent) => Err(Error::invalid(format!("{what} names no configuration pattern")).with_hint(
            "give the configurations it may read, such as `web-*`; `*` lets it read every configuration, and with \
             them every stage's environment variables",
        )),
        (Some(pattern), _) => globset::Glob::new(pattern)
            .map(|_| ())
            .map_err(|e| Error::invalid(format!("invalid configuration pattern `{pattern}`: {e}"))),
        (None, _) => Ok(()),
    }
}

fn pattern_matches(pattern: &str, name: &ConfigName) -> bool {
    globset::Glob::new(pattern).map(|g| g.compile_matcher().is_match(name.as_str())).unwrap_or(false)
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

fn unauthorized(message: &str) -> Error {
    Error::refused(ErrorCode::Unauthorized, message)
}

impl Registry {
    /// The caller holding `token` (`NAME.SECRET`).
    pub async fn authenticate(&self, token: &str) -> Result<Caller> {
        let (name, secret) = token.trim().rsplit_once('.').ok_or_else(|| unauthorized("malformed token"))?;
        let lookup = name.to_owned();
        let found = self.store(move |metadata| metadata.token(&lookup)).await?;
        let Some((info, stored_hash)) = found else {
            // Spend the same work as a real comparison.
            let _ = secret_hash(secret).as_bytes().ct_eq(&[0u8; 64]);
            return Err(unauthorized("unknown or revoked token"));
        };
        if !bool::from(secret_hash(secret).as_bytes().ct_eq(stored_hash.as_bytes())) {
            return Err(unauthorized("unknown or revoked token"));
        }
        Ok(Caller { name: info.name.to_string(), role: info.role, config_pattern: info.config_pattern })
    }

    /// Creates a token (admin). An agent token names the configurations it may read: it can read
    /// their environment layers, so one for every configuration is asked for explicitly (`*`).
    pub async fn create_token(&self, caller: &Caller, request: CreateToken) -> Result<TokenCreated> {
        caller.require(Need::Admin)?;
        check_pattern(&format!("agent token {}", request.name), request.role, request.config_pattern.as_deref())?;
        let actor = caller.name.clone();
        self.store(move |metadata| {
            let (token, hash) = new_token(&request.name);
            let info =
                metadata.create_token(&request.name, request.role, request.config_pattern.as_deref(), &hash, &actor)?;
            Ok(TokenCreated { info, token })
        })
        .await
    }

    pub async fn tokens(&self, caller: &Caller) -> Result<Vec<TokenInfo>> {
        caller.require(Need::Admin)?;
        self.store(|metadata| metadata.tokens()).await
    }

    pub async fn revoke_token(&self, caller: &Caller, name: TokenName) -> Result<()> {
        caller.require(Need::Admin)?;
        if name.as_str() == caller.name {
            return Err(Error::invalid(format!("token {name} is the one making this request"))
                .with_hint("revoke it with another admin token"));
        }
        self.store(move |metadata| metadata.revoke_token(&name)).await
    }

    /// Records a token made with [`new_token`] directly, with no caller: the first admin token
    /// at start-up, and tests. It blocks: call it before serving, not on an async worker.
    pub fn record_token_now(
        &self,
        name: &TokenName,
        role: Role,
        pattern: Option<&str>,
        hash: &str,
        actor: &str,
    ) -> Result<TokenInfo> {
        Ok(self.inner.metadata.create_token(name, role, pattern, hash, actor)?)
    }

    /// Whether any token exists (blocks, like [`Registry::record_token_now`]).
    pub fn has_tokens_now(&self) -> Result<bool> {
        Ok(!self.inner.metadata.tokens()?.is_empty())
    }
}
