use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::{ErrorBody, ErrorCode, NameError};
use depot_store::{GateRemedy, StoreError};

/// The one error type of every handler: a stable code, a status, a message naming the object.
/// Internal errors are logged once here and returned as a plain 500.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }

    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        ApiError(self.0.with_hint(hint))
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        ApiError::new(ErrorCode::Internal, "internal error; see the registry's log")
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let body = store_error_body(&error);
        if body.code == ErrorCode::Internal {
            tracing::error!("internal error: {error}");
        }
        ApiError(body)
    }
}

/// A registry error as the API answers it: a refusal as it is (adding, for a missing token, the
/// hint a user of the CLI can act on), a store error with its CLI hint, an internal one logged.
impl From<depot_registry::Error> for ApiError {
    fn from(error: depot_registry::Error) -> Self {
        match error {
            depot_registry::Error::Store(error) => error.into(),
            depot_registry::Error::Refused(body) if body.code == ErrorCode::Unauthorized => ApiError(body)
                .with_hint(
                    "pass --token or set DEPOT_TOKEN; the first admin token is in the registry's data directory, admin.token",
                ),
            depot_registry::Error::Refused(body) => ApiError(body),
            depot_registry::Error::Internal(detail) => ApiError::internal(detail),
        }
    }
}

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        ApiError::new(ErrorCode::InvalidName, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if self.0.code == ErrorCode::Unauthorized {
            // RFC 9110: a 401 says how to authenticate.
            let challenge = [(header::WWW_AUTHENTICATE, r#"Bearer realm="depot""#)];
            return (status, challenge, Json(self.0)).into_response();
        }
        (status, Json(self.0)).into_response()
    }
}

/// The API error for a store failure, with the hint a user of the CLI can act on: the store
/// knows what went wrong, the front-end how to say what to do. Internal failures carry no
/// detail: they are logged.
pub fn store_error_body(error: &StoreError) -> ErrorBody {
    {
        let (code, hint) = match error {
            StoreError::UnknownComponent(_) => {
                (ErrorCode::UnknownComponent, Some("list components with `depot components`".to_owned()))
            }
            StoreError::UnknownVersion { component, .. } => {
                (ErrorCode::UnknownVersion, Some(format!("list versions with `depot versions {component}`")))
            }
            StoreError::UnknownConfig(_) | StoreError::UnknownRevision { .. } => {
                (ErrorCode::UnknownConfig, Some("list configurations with `depot configs`".to_owned()))
            }
            StoreError::UnknownBlob(_) => (ErrorCode::UnknownBlob, None),
            StoreError::UnknownToken(_) => {
                (ErrorCode::UnknownToken, Some("list tokens with `depot token list`".to_owned()))
            }
            StoreError::VersionExists { component, next, .. } => (
                ErrorCode::VersionExists,
                Some(match next {
                    Some(next) => format!(
                        "versions are immutable: push this content as a new version, such as `depot push {component} {next} …`"
                    ),
                    None => "versions are immutable: push this content as a new version".to_owned(),
                }),
            ),
            StoreError::ConfigExists(name) => {
                (ErrorCode::ConfigExists, Some(format!("change it with `depot config set {name} …`")))
            }
            StoreError::TokenExists(_) => {
                (ErrorCode::TokenExists, Some("revoke it first, or choose another name".to_owned()))
            }
            StoreError::ConfigConflict { config, .. } => (
                ErrorCode::ConfigConflict,
                Some(format!("someone else changed it: review `depot config show {config}` and try again")),
            ),
            StoreError::Rollout { config, .. } => {
                (ErrorCode::RolloutState, Some(format!("see where it is with `depot rollout status {config}`")))
            }
            StoreError::InUse { config, .. } => {
                (ErrorCode::InUse, Some(format!("change or delete configuration {config} first")))
            }
            StoreError::Invalid(_) => (ErrorCode::InvalidRequest, None),
            StoreError::KeyRotated { .. } => (
                ErrorCode::Unavailable,
                Some("restart this registry with the new secrets key file (--secrets-key)".to_owned()),
            ),
            StoreError::Unsigned { component, version, .. } => (
                ErrorCode::SignatureRequired,
                Some(format!(
                    "sign it with a key the policy trusts (`depot policy show {component}`): `depot sign {component} \
                     {version} --key KEY`, or push with --sign KEY"
                )),
            ),
            StoreError::UnknownPipeline(_) => {
                (ErrorCode::UnknownPipeline, Some("list pipelines with `depot pipeline list`".to_owned()))
            }
            StoreError::PipelineExists(name) => {
                (ErrorCode::PipelineExists, Some(format!("see it with `depot pipeline show {name}`")))
            }
            StoreError::GateClosed { remedy, .. } => (ErrorCode::GateClosed, Some(gate_hint(remedy))),
            StoreError::PromotedOnly { pipeline, stage, .. } => (
                ErrorCode::InvalidRequest,
                Some(format!("promote into it with `depot promote {pipeline} --to {stage}`")),
            ),
            StoreError::EnvComponent { stage, .. } => {
                (ErrorCode::InvalidRequest, Some(format!("change it with `depot env set {stage} KEY=VALUE`")))
            }
            StoreError::NoChannelYet { .. } => (
                ErrorCode::InvalidRequest,
                Some(
                    "push a stable version first (or track edge builds with --track edge and \
                     `depot push --channel edge`)"
                        .to_owned(),
                ),
            ),
            StoreError::IsStage { pipeline, .. } => (
                ErrorCode::InvalidRequest,
                Some(format!("delete the pipeline with `depot pipeline delete {pipeline} --force`")),
            ),
            StoreError::UnknownPromotion { pipeline, pending, .. } => (
                ErrorCode::UnknownPromotion,
                Some(match pending.as_slice() {
                    [] => format!("nothing waits for approval in {pipeline}"),
                    ids => format!(
                        "waiting: {}; name one with `depot approve {pipeline} ID`",
                        ids.iter().map(|id| id.to_string()).collect::<Vec<_>>().join(", ")
                    ),
                }),
            ),
            StoreError::SelfApproval { .. } => (
                ErrorCode::Forbidden,
                Some("an approval gate needs a second person: ask another operator to run `depot approve`".to_owned()),
            ),
            StoreError::NotYourAgent { .. } => (
                ErrorCode::Forbidden,
                Some("each host reports with its own agent token; check the agent's --name and --token".to_owned()),
            ),
            StoreError::DigestMismatch { .. } => (
                ErrorCode::DigestMismatch,
                Some("the upload was damaged or the digest is wrong; push again".to_owned()),
            ),
            StoreError::TooLarge { .. } => {
                (ErrorCode::TooLarge, Some("raise the registry's --max-blob-size".to_owned()))
            }
            StoreError::UnsupportedUrl(_)
            | StoreError::InvalidBlobUrl { .. }
            | StoreError::BlobStore { .. }
            | StoreError::Database(_)
            | StoreError::NoRows
            | StoreError::Io(_) => {
                return ErrorBody::new(ErrorCode::Internal, "internal error; see the registry's log");
            }
        };
        debug_assert_eq!(code, depot_registry::store_error_code(error), "one code for {error}");
        let body = ErrorBody::new(code, error.to_string());
        match hint {
            Some(hint) => body.with_hint(hint),
            None => body,
        }
    }
}

/// A closed gate's remedy as the CLI's commands.
fn gate_hint(remedy: &GateRemedy) -> String {
    const FORCE: &str = "or pass --force (recorded in the history)";
    match remedy {
        GateRemedy::PromoteThrough { stages } => {
            let names = stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
            format!("promote through {names} first, {FORCE}")
        }
        GateRemedy::ReplaceDeprecated { stage, first_stage: true } => {
            format!("push or pin a replacement in {stage} and promote that, {FORCE}")
        }
        GateRemedy::ReplaceDeprecated { stage, first_stage: false } => {
            format!("promote a replacement into {stage} and promote that, {FORCE}")
        }
        GateRemedy::WaitHealthy { stage, revision } => {
            format!("wait until every agent of {stage} is active on revision {revision}, {FORCE}")
        }
        GateRemedy::RejectAndPromoteAgain { pipeline, id, force: false } => {
            format!("approving it now could undo that change: `depot reject {pipeline} {id}` and promote again")
        }
        GateRemedy::RejectAndPromoteAgain { pipeline, id, force: true } => {
            format!("`depot reject {pipeline} {id}`, and promote a replacement (or promote again with --force)")
        }
    }
}

#[cfg(test)]
mod tests {
    use depot_api::{ComponentName, Digest, PipelineName, StageName, VersionLabel};

    use super::*;

    #[test]
    fn store_errors_get_their_code_and_the_cli_hint() {
        let exists = StoreError::VersionExists {
            component: ComponentName::parse("web").unwrap(),
            version: VersionLabel::parse("1.10.0").unwrap(),
            existing: Digest::from_hex(&"ab".repeat(32)).unwrap(),
            next: Some("1.10.1".to_owned()),
        };
        let body = store_error_body(&exists);
        assert_eq!(body.code.as_str(), "version-exists");
        assert!(body.hint.unwrap().contains("`depot push web 1.10.1 …`"));
        let skipped = StoreError::GateClosed {
            message: "skips staging".to_owned(),
            remedy: GateRemedy::PromoteThrough { stages: vec![StageName::parse("staging").unwrap()] },
        };
        let body = store_error_body(&skipped);
        assert_eq!(body.code.status(), 409);
        assert_eq!(body.hint.unwrap(), "promote through staging first, or pass --force (recorded in the history)");
        let stage = StoreError::IsStage {
            config: depot_api::ConfigName::parse("web-prod").unwrap(),
            pipeline: PipelineName::parse("web").unwrap(),
            stage: StageName::parse("prod").unwrap(),
        };
        assert!(store_error_body(&stage).hint.unwrap().contains("depot pipeline delete web --force"));
        let internal = store_error_body(&StoreError::Database("secret detail".to_owned()));
        assert_eq!(internal.code.as_str(), "internal");
        assert!(!internal.message.contains("secret"), "internal details stay in the log");
    }
}
