//! The one error body every API failure returns, with a stable code per kind of failure.

/// Stable, kebab-case error codes. Clients match on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// No token, or a token the registry does not know.
    Unauthorized,
    /// The token's role does not allow this.
    Forbidden,
    InvalidRequest,
    InvalidName,
    UnknownComponent,
    UnknownVersion,
    UnknownConfig,
    UnknownBlob,
    UnknownToken,
    UnknownPipeline,
    UnknownPromotion,
    /// The version exists with another digest: versions are immutable.
    VersionExists,
    ConfigExists,
    TokenExists,
    PipelineExists,
    /// A stage's gate refused a promotion (`require-healthy`), or a promotion that is not pending.
    GateClosed,
    /// The configuration's revision is not the one the write expected.
    ConfigConflict,
    /// A configuration uses what was to be deleted.
    InUse,
    /// The rollout is not in a state that allows this (pause a rollout that is not running).
    RolloutState,
    /// The component's signature policy requires signatures the version lacks.
    SignatureRequired,
    DigestMismatch,
    NotAnArchive,
    TooLarge,
    /// Not now: the same request again later may succeed (a blob collected while it was uploaded).
    Unavailable,
    Internal,
    /// No route has this path.
    NotFound,
    /// The path exists, not with this method.
    MethodNotAllowed,
    /// The body is not of the content type the operation takes (`application/json`).
    UnsupportedMediaType,
    /// The body is JSON of the wrong shape, or a value out of range.
    InvalidBody,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::InvalidRequest => "invalid-request",
            ErrorCode::InvalidName => "invalid-name",
            ErrorCode::UnknownComponent => "unknown-component",
            ErrorCode::UnknownVersion => "unknown-version",
            ErrorCode::UnknownConfig => "unknown-config",
            ErrorCode::UnknownBlob => "unknown-blob",
            ErrorCode::UnknownToken => "unknown-token",
            ErrorCode::UnknownPipeline => "unknown-pipeline",
            ErrorCode::UnknownPromotion => "unknown-promotion",
            ErrorCode::VersionExists => "version-exists",
            ErrorCode::ConfigExists => "config-exists",
            ErrorCode::TokenExists => "token-exists",
            ErrorCode::PipelineExists => "pipeline-exists",
            ErrorCode::GateClosed => "gate-closed",
            ErrorCode::ConfigConflict => "config-conflict",
            ErrorCode::InUse => "in-use",
            ErrorCode::RolloutState => "rollout-state",
            ErrorCode::SignatureRequired => "signature-required",
            ErrorCode::DigestMismatch => "digest-mismatch",
            ErrorCode::NotAnArchive => "not-an-archive",
            ErrorCode::TooLarge => "too-large",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
            ErrorCode::NotFound => "not-found",
            ErrorCode::MethodNotAllowed => "method-not-allowed",
            ErrorCode::UnsupportedMediaType => "unsupported-media-type",
            ErrorCode::InvalidBody => "invalid-body",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Unauthorized => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidName
            | ErrorCode::DigestMismatch
            | ErrorCode::NotAnArchive => 400,
            ErrorCode::UnknownComponent
            | ErrorCode::UnknownVersion
            | ErrorCode::UnknownConfig
            | ErrorCode::UnknownBlob
            | ErrorCode::UnknownToken
            | ErrorCode::UnknownPipeline
            | ErrorCode::UnknownPromotion
            | ErrorCode::NotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::InvalidBody => 422,
            ErrorCode::VersionExists
            | ErrorCode::ConfigExists
            | ErrorCode::TokenExists
            | ErrorCode::PipelineExists
            | ErrorCode::GateClosed
            | ErrorCode::ConfigConflict
            | ErrorCode::InUse
            | ErrorCode::RolloutState
            | ErrorCode::SignatureRequired => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"code": "version-exists", "message": "…", "hint": "…"}`
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, thiserror::Error)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[error("{message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Names the object: `version 1.4.2 of web already exists with digest sha256:…`.
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody { code, message: message.into(), hint: None }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
