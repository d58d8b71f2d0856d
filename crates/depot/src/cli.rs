//! The command-line interface. Doc comments are the help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use depot_release::version::ReleaseVersion;

#[derive(Debug, Parser)]
#[command(
    name = "depot",
    version,
    about = "Release registry and deployment agent for long-lived servers",
    long_about = "depot packs, ships and activates releases on long-lived servers: immutable release \
directories, an atomic `current` switch, health checks with automatic switch-back, and rollback in \
milliseconds.",
    after_help = "Examples:
  depot pack ./build --version 1.4.2
  depot deploy --root /opt/my-app --version 1.4.2 --artifact-path my-app-1.4.2.tar.zst
  depot rollback --root /opt/my-app
  depot releases --root /opt/my-app"
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Pack(PackArgs),
    Deploy(DeployArgs),
    Rollback(RollbackArgs),
    Releases(ReleasesArgs),
    Prune(PruneArgs),
    Verify(VerifyArgs),
}

/// Pack a directory into a reproducible release archive.
///
/// The same tree always gives byte-identical output, whatever the files' mtimes, owners or
/// creation order. A `VERSION` file holding the version is added at the archive root when the
/// directory has none; one that holds another version is refused. Defaults (name, include and
/// exclude globs) are read from `[package]` in DIR/depot.toml.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pack ./build --version 1.4.2                 # → build-1.4.2.tar.zst
  depot pack ./build --version 1.4.2 --name my-app --format gz -o dist/my-app.tar.gz
  depot pack ./build --version 1.4.2 --json          # {\"path\", \"sha256\", \"size\", \"files\", …}")]
pub struct PackArgs {
    /// The directory to pack.
    pub dir: PathBuf,

    /// The release version, written to VERSION.
    #[arg(long, value_parser = parse_version)]
    pub version: ReleaseVersion,

    /// The archive's base name [default: `[package] name`, else the directory's name].
    #[arg(long)]
    pub name: Option<String>,

    /// Where to write the archive [default: ./NAME-VERSION.tar.zst].
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Compression: zstd (default) or gzip for compatibility.
    #[arg(long, value_enum, default_value_t = Format::Zst)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Zst,
    Gz,
}

#[derive(Debug, Args)]
pub struct RootArgs {
    /// The release root (holds releases/, config/, data/, logs/).
    #[arg(long, env = "DEPOT_ROOT")]
    pub root: PathBuf,

    /// How long to wait for another depot command on this root [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,
}

/// Hooks and health check run after `current` is switched.
#[derive(Debug, Args)]
pub struct ActivationArgs {
    /// Command run in the new release after the switch, e.g. `systemctl restart my-app`.
    #[arg(long, value_name = "CMD")]
    pub post_activate: Option<String>,

    /// Command that exits 0 when the new release is healthy; retried until --health-timeout.
    #[arg(long, value_name = "CMD", conflicts_with = "health_url")]
    pub health_cmd: Option<String>,

    /// URL that answers 2xx when the new release is healthy; retried until --health-timeout.
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,

    /// How long the health check may take to pass [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub health_timeout: Option<Duration>,

    /// How long any one hook may run before it is killed [default: 5m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub hook_timeout: Option<Duration>,
}

/// Unpack an archive into a new release and switch `current` to it atomically.
///
/// The archive (.tar, .tar.gz or .tar.zst, recognised by content) is unpacked into a staging
/// directory through the content store, checked (no path may leave the release), validated, then
/// renamed to releases/VERSION, and `current` is switched with one rename. If the post-activate
/// hook or the health check fails, depot switches back to the previous release, marks the new one
/// failed and exits 1. Defaults for every flag can live in R/config/depot.toml under [deploy].
/// Hooks get OLDID, OLDROOT, NEWID, NEWROOT, DEPOT_VERSION and DEPOT_ROOT in their environment.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot deploy --root /opt/my-app --version 1.4.2 --artifact-path my-app-1.4.2.tar.zst
  depot deploy --root /opt/my-app --version 1.4.2 \\
      --artifact-url https://releases.example.com/my-app-1.4.2.tar.zst --sha256 9f2c… \\
      --validate 'bin/server --validate-config' \\
      --post-activate 'systemctl restart my-app' --health-url http://127.0.0.1:8080/healthz")]
#[command(group = clap::ArgGroup::new("artifact").required(true).args(["artifact_path", "artifact_url"]))]
pub struct DeployArgs {
    #[command(flatten)]
    pub root: RootArgs,

    /// The release version (becomes releases/VERSION).
    #[arg(long, value_parser = parse_version)]
    pub version: ReleaseVersion,

    /// A local archive.
    #[arg(long, value_name = "PATH")]
    pub artifact_path: Option<PathBuf>,

    /// An archive to download (http or https).
    #[arg(long, value_name = "URL")]
    pub artifact_url: Option<String>,

    /// The archive's expected sha256; a mismatch changes nothing and exits 1.
    #[arg(long, value_parser = parse_sha256, value_name = "HEX")]
    pub sha256: Option<String>,

    /// Replace an existing release (not the current one) whose content differs.
    #[arg(long)]
    pub force: bool,

    /// Copy files into the release instead of hardlinking them from the content store.
    #[arg(long)]
    pub copy: bool,

    /// Command run in the staged release before the switch; on failure nothing is activated.
    #[arg(long, value_name = "CMD")]
    pub validate: Option<String>,

    #[command(flatten)]
    pub activation: ActivationArgs,

    /// Releases to keep after a successful deploy (never the current or the previous good one) [default: 5].
    #[arg(long)]
    pub keep: Option<usize>,

    /// The most entries an archive may hold [default: 1000000].
    #[arg(long)]
    pub max_files: Option<u64>,

    /// The most uncompressed bytes an archive may hold [default: 32 GiB].
    #[arg(long)]
    pub max_bytes: Option<u64>,
}

/// Switch `current` back to the previous good release, or to --version.
///
/// Without --version, the target is the most recently active release whose last activation
/// succeeded (failed releases are skipped). Runs the same post-activate hook and health check as
/// a deploy, and switches back if they fail.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot rollback --root /opt/my-app
  depot rollback --root /opt/my-app --version 1.4.1 --post-activate 'systemctl restart my-app'")]
pub struct RollbackArgs {
    #[command(flatten)]
    pub root: RootArgs,

    /// The release to activate [default: the previous good release].
    #[arg(long, value_parser = parse_version)]
    pub version: Option<ReleaseVersion>,

    #[command(flatten)]
    pub activation: ActivationArgs,
}

/// List the releases of a root with their date and status.
///
/// Versions that are semver are listed in semver order (v1.10.0 after v1.9.0). Status is
/// `active` (current), `good` (its last activation passed), `failed` (its last activation failed
/// and depot switched away) or `inactive` (never activated).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot releases --root /opt/my-app
  depot releases --root /opt/my-app --json")]
pub struct ReleasesArgs {
    /// The release root.
    #[arg(long, env = "DEPOT_ROOT")]
    pub root: PathBuf,
}

/// Remove old releases and the store objects nothing uses any more.
///
/// Never removes the current release or the previous good one; failed releases go first, then
/// the least recently used.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot prune --root /opt/my-app --keep 3")]
pub struct PruneArgs {
    #[command(flatten)]
    pub root: RootArgs,

    /// How many releases to keep [default: [deploy] keep in R/config/depot.toml, else 5].
    #[arg(long)]
    pub keep: Option<usize>,
}

/// Re-hash a release against its manifest and report files modified in place.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot verify --root /opt/my-app
  depot verify --root /opt/my-app --version 1.4.1 --json")]
pub struct VerifyArgs {
    /// The release root.
    #[arg(long, env = "DEPOT_ROOT")]
    pub root: PathBuf,

    /// The release to check [default: the current release].
    #[arg(long, value_parser = parse_version)]
    pub version: Option<ReleaseVersion>,
}

fn parse_version(text: &str) -> Result<ReleaseVersion, String> {
    ReleaseVersion::parse(text).map_err(|e| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    depot_release::config::parse_duration(text)
}

fn parse_sha256(text: &str) -> Result<String, String> {
    depot_release::digest::normalize_sha256(text)
        .ok_or_else(|| format!("`{text}` is not a sha256 (64 hex digits, optionally prefixed by sha256:)"))
}
