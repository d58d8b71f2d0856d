use depot_api::{ComponentName, ConfigName, Digest, ErrorBody, ErrorCode, PipelineName, VersionLabel};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Store failures, mapped to meaning at the boundary: not-found is not-found on every backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unknown component {0}")]
    UnknownComponent(ComponentName),
    #[error("unknown version {version} of {component}")]
    UnknownVersion { component: ComponentName, version: VersionLabel },
    #[error("unknown configuration {0}")]
    UnknownConfig(ConfigName),
    #[error("configuration {config} has no revision {revision}")]
    UnknownRevision { config: ConfigName, revision: u64 },
    #[error("unknown blob {0}; upload it first")]
    UnknownBlob(Digest),
    #[error("unknown token {0}")]
    UnknownToken(String),
    #[error("version {version} of {component} already exists with digest {existing}")]
    VersionExists {
        component: ComponentName,
        version: VersionLabel,
        existing: Digest,
        /// The version to cut instead (`depot_api::semver_order::next_after`), when the label is semver.
        next: Option<String>,
    },
    #[error("configuration {0} already exists")]
    ConfigExists(ConfigName),
    #[error("token {0} already exists")]
    TokenExists(String),
    #[error("configuration {config} is at revision {actual}, not {expected}")]
    ConfigConflict { config: ConfigName, expected: u64, actual: u64 },
    #[error("{what} is used by configuration {config}")]
    InUse { what: String, config: ConfigName },
    #[error("{0}")]
    Invalid(String),
    #[error("unknown pipeline {0}")]
    UnknownPipeline(PipelineName),
    #[error("pipeline {0} already exists")]
    PipelineExists(PipelineName),
    /// A `require-healthy` gate refused, or the promotion is not pending.
    #[error("{message}")]
    GateClosed { message: String, hint: String },
    #[error("pipeline {pipeline} has {}", match (id, state) {
        (Some(id), Some(state)) => format!("promotion {id}, but it is {}, not waiting for approval", state.as_str()),
        (Some(id), None) => format!("no promotion {id}"),
        (None, _) => "no single promotion waiting for approval".to_owned(),
    })]
    UnknownPromotion {
        pipeline: PipelineName,
        id: Option<u64>,
        pending: Vec<u64>,
        state: Option<depot_api::pipeline::PromotionState>,
    },
    #[error("{actor} asked for promotion {id}; another operator must approve it")]
    SelfApproval { id: u64, actor: String },
    #[error("agent {host} of configuration {config} reports with token {reporter}, not {caller}")]
    NotYourAgent { config: ConfigName, host: String, reporter: String, caller: String },
    #[error("the upload's sha256 is {actual}, not the declared {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(
        "unsupported store URL `{0}` (use sqlite:///path, and file:///path or s3://BUCKET?endpoint=URL&region=REGION)"
    )]
    UnsupportedUrl(String),
    #[error("invalid blob store URL `{url}`: {message}")]
    InvalidBlobUrl { url: String, message: String },
    /// The blob store failed or could not be reached (the S3 service's own words).
    #[error("blob store {store}: {message}")]
    BlobStore { store: String, message: String },
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The API error for this failure. Internal failures carry no detail: they are logged.
    pub fn to_api(&self) -> ErrorBody {
        let (code, hint) = match self {
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
            StoreError::InUse { config, .. } => {
                (ErrorCode::InUse, Some(format!("change or delete configuration {config} first")))
            }
            StoreError::Invalid(_) => (ErrorCode::InvalidRequest, None),
            StoreError::UnknownPipeline(_) => {
                (ErrorCode::UnknownPipeline, Some("list pipelines with `depot pipeline list`".to_owned()))
            }
            StoreError::PipelineExists(name) => {
                (ErrorCode::PipelineExists, Some(format!("see it with `depot pipeline show {name}`")))
            }
            StoreError::GateClosed { hint, .. } => (ErrorCode::GateClosed, Some(hint.clone())),
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
            | StoreError::Io(_) => {
                return ErrorBody::new(ErrorCode::Internal, "internal error; see the registry's log");
            }
        };
        let body = ErrorBody::new(code, self.to_string());
        match hint {
            Some(hint) => body.with_hint(hint),
            None => body,
        }
    }
}
