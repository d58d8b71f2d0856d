use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every failure of the release engine. Each variant names the thing it is about; [`Error::hint`]
/// says what the user can do next.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Io(#[from] std::io::Error),

    #[error("invalid version `{version}`: {reason}")]
    InvalidVersion { version: String, reason: &'static str },

    #[error("unsafe archive entry `{path}`: {reason}")]
    UnsafeEntry { path: String, reason: String },

    #[error("archive is not a readable tar, tar.gz or tar.zst file: {reason}")]
    CorruptArchive { reason: String },

    #[error("archive is {format}; depot reads .tar, .tar.gz and .tar.zst archives")]
    UnsupportedFormat { format: &'static str, fix: &'static str },

    #[error("archive exceeds the {what} limit of {limit}")]
    ArchiveTooLarge { what: &'static str, limit: u64 },

    #[error(
        "archive entry {entry} has headers (GNU long name or long link name, PAX extended header) larger than the limit of {limit} bytes"
    )]
    HeaderTooLarge { entry: u64, limit: u64 },

    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },

    #[error("release {version} already exists with different content")]
    ReleaseExists { version: String },

    #[error("release {version} has no archive to deploy")]
    NoLayers { version: String },

    #[error("release {version} is the current release and cannot be replaced")]
    ReplaceCurrent { version: String },

    #[error("release not found: {version}")]
    ReleaseNotFound { version: String, available: Vec<String> },

    #[error("no previous good release to roll back to")]
    NoPreviousRelease,

    #[error("the deploy of {version} was stopped {at}, before `current` was switched")]
    Stopped { version: String, at: &'static str },

    #[error("release root {path} does not exist")]
    NoRoot { path: PathBuf },

    #[error("{path} is not a release root: no depot command has deployed there")]
    NotARoot { path: PathBuf },

    #[error("timed out after {waited_secs} s waiting for the lock on {path} (held by {holder})")]
    LockTimeout { path: PathBuf, holder: String, waited_secs: u64 },

    #[error("download of {url} failed: {reason}")]
    Download { url: String, reason: String, hint: String },

    #[error("refusing to download {url} over plain http without the archive's sha256")]
    UnverifiedDownload { url: String },

    #[error("validate command failed for release {version}: {reason}")]
    ValidateFailed { version: String, reason: String, output: Vec<String> },

    #[error("release {version} failed after activation ({reason}); {outcome}")]
    ActivationFailed { version: String, reason: String, outcome: String, output: Vec<String> },

    #[error("cannot pack {path}: {reason}")]
    Pack { path: PathBuf, reason: String },

    #[error("invalid configuration in {path}: {reason}")]
    Config { path: PathBuf, reason: String },

    #[error("invalid state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
    #[error("the fetched frames of layer {sha256} cannot be staged: {reason}")]
    FramesUnusable { sha256: String, reason: String },
}

/// A version label refused by the one rule set the registry and hosts share.
impl From<depot_api::names::NameError> for Error {
    fn from(e: depot_api::names::NameError) -> Self {
        Error::InvalidVersion { version: e.value, reason: e.reason }
    }
}

impl Error {
    /// A short sentence telling the user how to get past this error, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Io(_) => None,
            Error::InvalidVersion { .. } => Some(
                "use a plain label such as 1.4.2 or v2026.11.23; `/`, `:`, a leading `-` or `.`, whitespace, control characters and `current` are not allowed"
                    .into(),
            ),
            Error::UnsafeEntry { .. } => Some(
                "the archive was refused as a whole and nothing was activated; rebuild it with `depot pack`".into(),
            ),
            Error::CorruptArchive { .. } => Some(
                "check that the file is complete (compare its sha256 with --sha256) and that it was made by `depot pack` or tar".into(),
            ),
            Error::UnsupportedFormat { fix, .. } => Some(format!("recompress it: {fix}")),
            Error::ArchiveTooLarge { .. } => Some(
                "raise the limit with --max-files / --max-bytes (or [limits] in R/config/depot.toml) if the archive is trusted".into(),
            ),
            Error::HeaderTooLarge { .. } => Some(
                "no real path, link name or set of attributes is that long: the archive is broken or hostile; rebuild it with `depot pack` or tar".into(),
            ),
            Error::DigestMismatch { .. } => Some(
                "the artifact is not the one you expected; download it again or check the --sha256 value".into(),
            ),
            Error::NoLayers { .. } => Some("give at least one archive".into()),
            Error::ReleaseExists { version } => Some(format!(
                "releases are immutable: deploy this content under a new version, or pass --force to replace {version} (it must not be current)"
            )),
            Error::ReplaceCurrent { .. } => Some(
                "deploy the new content under a new version, or roll back to another release first".into(),
            ),
            Error::ReleaseNotFound { available, .. } if available.is_empty() => {
                Some("there are no releases on this root yet; deploy one first".into())
            }
            Error::ReleaseNotFound { available, .. } => {
                Some(format!("available releases: {}", available.join(", ")))
            }
            Error::Stopped { .. } => {
                Some("nothing changed: the staged release was removed and `current` is as it was".into())
            }
            Error::NoRoot { .. } | Error::NotARoot { .. } => Some(
                "check --root (or `root` in the settings); `depot deploy` creates a root on its first release".into(),
            ),
            Error::NoPreviousRelease => Some(
                "list the releases with `depot releases` and pass one with --version".into(),
            ),
            Error::LockTimeout { .. } => Some(
                "another depot command is working on this root; wait for it or raise --lock-timeout".into(),
            ),
            Error::Download { hint, .. } => Some(hint.clone()),
            Error::FramesUnusable { .. } => Some("download the whole archive and deploy again".into()),
            Error::UnverifiedDownload { .. } => Some(
                "anyone on the way can change what plain http serves: pass --sha256 with the archive's sha256, or use an https URL".into(),
            ),
            Error::ValidateFailed { .. } => Some(
                "the staged release was removed and `current` is unchanged; see logs/releases.log for the command's output".into(),
            ),
            Error::ActivationFailed { .. } => {
                Some("see logs/releases.log for the hook and health check output".into())
            }
            Error::Pack { .. } => None,
            Error::Config { .. } => Some("fix the file, or remove it to use the defaults".into()),
            Error::State { .. } => None,
        }
    }

    /// The last lines of output of the hook or health check that failed, oldest first.
    pub fn hook_output(&self) -> Option<&[String]> {
        match self {
            Error::ValidateFailed { output, .. } | Error::ActivationFailed { output, .. } => Some(output),
            _ => None,
        }
    }

    /// An entry refused; its path is shortened (see [`shorten`]), as an archive's names may be
    /// up to a megabyte long and errors reach logs.
    pub(crate) fn unsafe_entry(path: impl AsRef<str>, reason: impl Into<String>) -> Self {
        Error::UnsafeEntry { path: shorten(path.as_ref()), reason: reason.into() }
    }

    pub(crate) fn corrupt(reason: impl std::fmt::Display) -> Self {
        Error::CorruptArchive { reason: reason.to_string() }
    }
}

/// An error and its sources on one line: `a: b: c`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Longest name, in characters, that an error quotes whole.
const QUOTED_NAME_LIMIT: usize = 120;

/// `name` as an error or a log line quotes it: whole up to 120 characters, otherwise its start
/// and end around an ellipsis, with its length, so that a hostile name cannot flood a log.
pub(crate) fn shorten(name: &str) -> String {
    let count = name.chars().count();
    if count <= QUOTED_NAME_LIMIT {
        return name.to_owned();
    }
    let head: String = name.chars().take(QUOTED_NAME_LIMIT - 20).collect();
    let tail: String = name.chars().skip(count - 20).collect();
    format!("{head}…{tail} ({} bytes)", name.len())
}
