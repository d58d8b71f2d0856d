use depot_api::{ErrorBody, ErrorCode, NameError};
use depot_store::StoreError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the registry did not do what it was asked. A front-end turns it into its own answer (an
/// HTTP status and JSON body, a console line) and adds the hint its users can act on: the
/// registry's hints name no command of any front-end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused (an unknown name, a conflict, a closed gate) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A rule of the registry refused the request: bad input, a missing permission.
    #[error("{}", .0.message)]
    Refused(ErrorBody),
    /// A failure that is not the caller's: logged by the front-end, not shown.
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Refused(ErrorBody::new(code, message))
    }

    /// The same refusal with a hint; other errors are returned as they are.
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        match self {
            Error::Refused(body) => Error::Refused(body.with_hint(hint)),
            other => other,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::refused(ErrorCode::InvalidRequest, message)
    }

    /// The refusal's code, if this is a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Refused(body) => Some(body.code),
            _ => None,
        }
    }
}

impl Error {
    /// The code a front-end answers with: a refusal's own, or the store error's
    /// ([`store_error_code`]).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Error::Refused(body) => body.code,
            Error::Store(error) => store_error_code(error),
            Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// The code of a store failure: what kind of refusal it is, for any front-end's status.
pub fn store_error_code(error: &StoreError) -> ErrorCode {
    match error {
        StoreError::UnknownComponent(_) => ErrorCode::UnknownComponent,
        StoreError::UnknownVersion { .. } => ErrorCode::UnknownVersion,
        StoreError::UnknownConfig(_) | StoreError::UnknownRevision { .. } => ErrorCode::UnknownConfig,
        StoreError::UnknownBlob(_) => ErrorCode::UnknownBlob,
        StoreError::UnknownToken(_) => ErrorCode::UnknownToken,
        StoreError::VersionExists { .. } => ErrorCode::VersionExists,
        StoreError::ConfigExists(_) => ErrorCode::ConfigExists,
        StoreError::TokenExists(_) => ErrorCode::TokenExists,
        StoreError::ConfigConflict { .. } => ErrorCode::ConfigConflict,
        StoreError::Rollout { .. } => ErrorCode::RolloutState,
        StoreError::InUse { .. } => ErrorCode::InUse,
        StoreError::KeyRotated { .. } => ErrorCode::Unavailable,
        StoreError::Unsigned { .. } => ErrorCode::SignatureRequired,
        StoreError::UnknownPipeline(_) => ErrorCode::UnknownPipeline,
        StoreError::PipelineExists(_) => ErrorCode::PipelineExists,
        StoreError::GateClosed { .. } => ErrorCode::GateClosed,
        StoreError::Invalid(_)
        | StoreError::PromotedOnly { .. }
        | StoreError::EnvComponent { .. }
        | StoreError::NoChannelYet { .. }
        | StoreError::IsStage { .. } => ErrorCode::InvalidRequest,
        StoreError::UnknownPromotion { .. } => ErrorCode::UnknownPromotion,
        StoreError::SelfApproval { .. } | StoreError::NotYourAgent { .. } => ErrorCode::Forbidden,
        StoreError::DigestMismatch { .. } => ErrorCode::DigestMismatch,
        StoreError::TooLarge { .. } => ErrorCode::TooLarge,
        StoreError::UnsupportedUrl(_)
        | StoreError::InvalidBlobUrl { .. }
        | StoreError::BlobStore { .. }
        | StoreError::Database(_)
        | StoreError::NoRows
        | StoreError::Io(_) => ErrorCode::Internal,
    }
}

impl From<NameError> for Error {
    fn from(error: NameError) -> Self {
        Error::refused(ErrorCode::InvalidName, error.to_string())
    }
}
