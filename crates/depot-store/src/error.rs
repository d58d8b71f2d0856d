use depot_api::{ComponentName, ConfigName, Digest, PipelineName, StageName, VersionLabel};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What would open a closed gate, for each front-end to say in its own words (a command, a
/// button). Every remedy but the last may also be overridden by forcing, which is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateRemedy {
    /// Promote through these skipped stages first.
    PromoteThrough { stages: Vec<StageName> },
    /// Bring a replacement for the deprecated versions into the source stage: pushed or pinned
    /// in the first stage, promoted into a later one.
    ReplaceDeprecated { stage: StageName, first_stage: bool },
    /// Wait until every agent of the source stage is active on its revision.
    WaitHealthy { stage: StageName, revision: u64 },
    /// Reject the waiting promotion and promote again; `force` when only a forced promotion
    /// would now pass (a version deprecated since it was asked).
    RejectAndPromoteAgain { pipeline: PipelineName, id: u64, force: bool },
}

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
    /// The rollout of `config` cannot do this now.
    #[error("{message}")]
    Rollout { config: ConfigName, message: String },
    #[error("{what} is used by configuration {config}")]
    InUse { what: String, config: ConfigName },
    #[error("{0}")]
    Invalid(String),
    /// This registry holds a secrets key the database no longer records: it was rotated while
    /// the registry ran. Another replica (restarted with the new key) can answer.
    #[error("the secrets key was rotated: the database is sealed with key {recorded}, this registry holds key {held}")]
    KeyRotated { recorded: String, held: String },
    /// The component's signature policy refused a version that lacks signatures.
    #[error("{message}")]
    Unsigned { component: ComponentName, version: VersionLabel, message: String },
    #[error("{config} is stage {stage} of pipeline {pipeline}: it receives versions by promotion, through its gate")]
    PromotedOnly { config: ConfigName, pipeline: PipelineName, stage: StageName },
    /// `stage` is `APP/STAGE`.
    #[error("{component} is the environment layer of {stage}")]
    EnvComponent { component: ComponentName, stage: String },
    #[error("component {component} has no channel `{channel}` yet")]
    NoChannelYet { component: ComponentName, channel: VersionLabel },
    #[error("configuration {config} is stage {stage} of pipeline {pipeline}; it goes with the pipeline")]
    IsStage { config: ConfigName, pipeline: PipelineName, stage: StageName },
    #[error("unknown pipeline {0}")]
    UnknownPipeline(PipelineName),
    #[error("pipeline {0} already exists")]
    PipelineExists(PipelineName),
    /// A gate refused a promotion or an approval; `remedy` says what would open it.
    #[error("{message}")]
    GateClosed { message: String, remedy: GateRemedy },
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
        "unsupported store URL `{0}` (use sqlite:///path or postgres://user@host/database, and file:///path or \
         s3://BUCKET?endpoint=URL&region=REGION)"
    )]
    UnsupportedUrl(String),
    #[error("invalid blob store URL `{url}`: {message}")]
    InvalidBlobUrl { url: String, message: String },
    /// The blob store failed or could not be reached (the S3 service's own words).
    #[error("blob store {store}: {message}")]
    BlobStore { store: String, message: String },
    #[error("database error: {0}")]
    Database(String),
    /// A query expected a row and found none (see `db::OptionalExtension`).
    #[error("database error: no row where one was expected")]
    NoRows,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Database(format!("SQLite: {error}"))
    }
}

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        match error.as_db_error() {
            Some(db) => StoreError::Database(format!("PostgreSQL: {}: {}", db.code().code(), db.message())),
            None => StoreError::Database(format!("PostgreSQL: {error}")),
        }
    }
}
