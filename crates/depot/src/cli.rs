//! The command-line interface. Doc comments are the help text.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};
use depot_api::pipeline::Gate;
use depot_api::types::{LayerRef, Role};
use depot_api::{ComponentName, ConfigName, PipelineName, StageName, TokenName, VersionLabel};

use crate::client_config::Token;

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
    Serve(ServeArgs),
    Push(PushArgs),
    Sign(SignArgs),
    Policy(PolicyArgs),
    Attest(AttestArgs),
    Import(ImportArgs),
    Attestations(AttestationsArgs),
    Components(ComponentsArgs),
    Versions(VersionsArgs),
    ShowVersion(ShowVersionArgs),
    Channels(ChannelsArgs),
    Channel(ChannelArgs),
    Deprecate(DeprecateArgs),
    Undeprecate(UndeprecateArgs),
    Configs(ConfigsArgs),
    Config(ConfigArgs),
    Delete(DeleteArgs),
    Token(TokenArgs),
    Key(KeyArgs),
    Gc(GcArgs),
    Status(StatusArgs),
    Agent(AgentArgs),
    Release(ReleaseArgs),
    Build(BuildArgs),
    Pipeline(PipelineArgs),
    Rollout(RolloutArgs),
    Promote(PromoteArgs),
    Approve(ApproveArgs),
    Reject(RejectArgs),
    Env(EnvArgs),
    History(HistoryArgs),
    Admin(AdminArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
}

/// Print a shell completion script.
///
/// Load it in the running shell, or install it where the shell looks for completions.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  source <(depot completions bash)
  depot completions bash > /etc/bash_completion.d/depot
  depot completions zsh > \"${fpath[1]}/_depot\"
  depot completions fish > ~/.config/fish/completions/depot.fish")]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Print the manual page, or write one page per command into a directory.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot man | man -l -
  depot man --dir /usr/local/share/man/man1     # depot.1, depot-deploy.1, depot-config-set.1, …")]
pub struct ManArgs {
    /// Write depot.1 and a page for each command (depot-deploy.1, …) into this directory.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
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
    pub version: VersionLabel,

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

/// What a deploy runs and keeps, for `depot deploy` and `depot agent` alike.
#[derive(Debug, Args)]
pub struct DeployPolicyArgs {
    /// Command run in the staged release before the switch; on failure nothing is activated.
    #[arg(long, value_name = "CMD")]
    pub validate: Option<String>,

    #[command(flatten)]
    pub activation: ActivationArgs,

    /// Releases to keep after a successful deploy (never the current or the previous good one) [default: 5].
    #[arg(long)]
    pub keep: Option<usize>,
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
/// renamed to releases/VERSION, and `current` is switched with one rename. What the release keeps
/// of the archive: paths, contents, symlinks and hardlinks as `tar -x` extracts them, sparse
/// files expanded; file modes without write, setuid, setgid or sticky bits; directory modes with
/// write for the owner only (0700 stays 0700, 1777 becomes 0755). Not kept: owners, times
/// (files are hardlinks into the store), device nodes and fifos (refused). If the post-activate
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
    pub version: VersionLabel,

    /// A local archive.
    #[arg(long, value_name = "PATH")]
    pub artifact_path: Option<PathBuf>,

    /// An archive to download: https, or plain http with --sha256. A redirect from https to
    /// http is refused, and the download may not exceed --max-bytes (plus 1/64 and 1 MiB for
    /// compression and tar framing).
    #[arg(long, value_name = "URL")]
    pub artifact_url: Option<String>,

    /// The archive's expected sha256; a mismatch changes nothing and exits 1.
    #[arg(long, value_parser = parse_sha256, value_name = "HEX")]
    pub sha256: Option<String>,

    /// Deploy only if --signature is a valid signature of the archive, by a key of this
    /// allowed_signers file, for --component and --version (as `depot sign` makes them); checked
    /// before anything is unpacked. An --artifact-url then needs --sha256.
    #[arg(long, value_name = "FILE", requires_all = ["signature", "component"])]
    pub trust: Option<PathBuf>,

    /// The signature to check with --trust (`ssh-keygen -Y sign -n depot`, or from `depot
    /// show-version --json`).
    #[arg(long, value_name = "FILE.sig", requires = "trust")]
    pub signature: Option<PathBuf>,

    /// The component the signature names, with --trust.
    #[arg(long, value_name = "NAME", requires = "trust")]
    pub component: Option<depot_api::ComponentName>,

    /// Public keys never to trust, with --trust.
    #[arg(long, value_name = "FILE", requires = "trust")]
    pub revoked_keys: Option<PathBuf>,

    /// How long --artifact-url may wait for the server (to connect, to answer, or between two
    /// reads) before the download fails [default: 30s].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "artifact_url")]
    pub download_timeout: Option<Duration>,

    /// A PEM file of CA certificates to trust, besides the built-in roots, for an https
    /// --artifact-url whose certificate your own CA signed.
    #[arg(long, value_name = "FILE", requires = "artifact_url")]
    pub ca_cert: Option<PathBuf>,

    /// Replace an existing release (not the current one) whose content differs.
    #[arg(long)]
    pub force: bool,

    /// Copy files into the release instead of hardlinking them from the content store.
    #[arg(long)]
    pub copy: bool,

    #[command(flatten)]
    pub policy: DeployPolicyArgs,

    /// The most entries an archive may hold [default: 1000000].
    #[arg(long)]
    pub max_files: Option<u64>,

    /// The most uncompressed bytes an archive may hold: `32GiB`, `500 MB`, `1048576`
    /// [default: 32 GiB]. It counts its files, and its decoded stream as a whole (data of any
    /// entry, read or skipped, and headers past 4 KiB an entry). An entry's headers (long names,
    /// PAX) are limited to 1 MiB whatever this is.
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_bytes: Option<u64>,
}

/// Switch `current` back to the previous good release, or to --version.
///
/// Without --version, the target is the most recently active release whose last activation
/// succeeded (failed releases are skipped). Runs the same post-activate hook and health check as
/// a deploy, and switches back if they fail.
///
/// With APP and --stage, rolls back a stage of a pipeline in the registry instead: a new revision
/// of the stage with the layers of an earlier one (default: the one before), its environment
/// layer included, which its agents then deploy. Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot rollback --root /opt/my-app
  depot rollback --root /opt/my-app --version 1.4.1 --post-activate 'systemctl restart my-app'
  depot rollback web --stage prod                    # the stage's previous revision
  depot rollback web --stage prod --to-revision 3")]
pub struct RollbackArgs {
    /// A pipeline whose stage to roll back (with --stage), instead of a root on this host.
    #[arg(requires = "stage")]
    pub app: Option<PipelineName>,

    /// The stage of APP to roll back.
    #[arg(long, requires = "app", conflicts_with_all = [
        "version", "lock_timeout", "post_activate", "health_cmd", "health_url", "health_timeout", "hook_timeout",
    ])]
    pub stage: Option<StageName>,

    /// With --stage: the revision whose layers to return to [default: the one before the current].
    #[arg(long, value_name = "N", requires = "stage")]
    pub to_revision: Option<u64>,

    /// With --stage: every agent of the stage at once, past its rolling strategy's rollout.
    #[arg(long, requires = "stage")]
    pub now: bool,

    /// The release root (holds releases/, config/, data/, logs/).
    #[arg(long, env = "DEPOT_ROOT", required_unless_present = "stage")]
    pub root: Option<PathBuf>,

    /// How long to wait for another depot command on this root [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,

    /// The release to activate [default: the previous good release].
    #[arg(long, value_parser = parse_version)]
    pub version: Option<VersionLabel>,

    #[command(flatten)]
    pub activation: ActivationArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
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
    pub version: Option<VersionLabel>,
}

fn parse_version(text: &str) -> Result<VersionLabel, String> {
    VersionLabel::parse(text).map_err(|e| e.to_string())
}

fn parse_digest(text: &str) -> Result<depot_api::Digest, String> {
    depot_api::Digest::parse(text.trim()).map_err(|e| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    depot_release::config::parse_duration(text)
}

fn parse_sha256(text: &str) -> Result<String, String> {
    depot_release::digest::normalize_sha256(text)
        .ok_or_else(|| format!("`{text}` is not a sha256 (64 hex digits, optionally prefixed by sha256:)"))
}

/// Run the registry.
///
/// With no flags it listens on 127.0.0.1:7070 and keeps everything under ./depot-data: metadata in
/// SQLite, blobs as files named by their sha256. On first start it creates an admin token, prints
/// it once and writes it to DATA/admin.token (mode 0600).
///
/// The same address serves the API under /api/v1/ and the dashboard under /ui/ (sign in with a
/// viewer, operator or admin token).
///
/// With --blobs s3://BUCKET?endpoint=URL&region=REGION the blobs live in an S3-compatible bucket
/// (AWS S3, Garage, MinIO, …); credentials come from the usual AWS environment variables
/// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, …) and files
/// (~/.aws/credentials, ~/.aws/config). The registry refuses to start when the bucket does not
/// answer, and /healthz fails while it does not.
///
/// Settings come from the flags (or their environment variables), then from the file given with
/// --config, then from the defaults. The file is TOML with the flags' names: listen, data, blobs,
/// redirect_downloads, max_blob_size, max_versions, gc_grace, tls_cert, tls_key; its relative
/// paths are relative to the file.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot serve
  depot serve --listen 0.0.0.0:7070 --data /var/lib/depot --max-versions 20
  depot serve --listen 0.0.0.0:7443 --tls-cert /etc/depot/cert.pem --tls-key /etc/depot/key.pem
  depot serve --blobs 's3://depot?endpoint=http://127.0.0.1:3900&region=garage' --redirect-downloads
  depot serve --config /etc/depot/serve.toml
  DEPOT_TOKEN=$(cat depot-data/admin.token) depot components")]
pub struct ServeArgs {
    /// The address to listen on (port 0 picks a free port) [default: 127.0.0.1:7070].
    #[arg(long, env = "DEPOT_LISTEN", value_name = "ADDRESS")]
    pub listen: Option<String>,

    /// Where the registry keeps its database, blobs and admin token [default: depot-data].
    #[arg(long, env = "DEPOT_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Where the blobs live: file:///DIR, or s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION for
    /// an S3-compatible bucket (endpoint and region may be left to the AWS settings) [default:
    /// files in DATA/blobs].
    #[arg(long, env = "DEPOT_BLOBS", value_name = "URL")]
    pub blobs: Option<String>,

    /// Answer blob downloads with a redirect (307) to a presigned URL of the bucket, valid for 5
    /// minutes, so that agents download from the object store and not
    /// through the registry; they still check each blob's sha256. Needs an s3:// --blobs.
    #[arg(long)]
    pub redirect_downloads: bool,

    /// A TOML file of settings; flags and environment variables override it.
    #[arg(long, env = "DEPOT_SERVE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// What the log (on stderr) shows: a level (error, warn, info, debug, trace) or per-module
    /// directives such as `info,depot_server=debug`. Coloured only on a terminal. The default
    /// leaves out the object store's note of each retry of a request to the bucket.
    #[arg(long, env = "DEPOT_LOG", value_name = "FILTER", default_value = "info,object_store=warn")]
    pub log_level: String,

    /// Where the metadata lives: `sqlite:///PATH` or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`
    /// [default: sqlite:// in the data directory]. Several registries on one PostgreSQL database
    /// (and one blob store) act as one: a change through any of them reaches every agent.
    #[arg(long, env = "DEPOT_METADATA", value_name = "URL")]
    pub metadata: Option<String>,

    /// The largest archive a push may upload: `10GiB`, `500 MB`, `1048576` [default: 10 GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub max_blob_size: Option<u64>,

    /// Versions kept per component; 0 keeps all [default: 10]. Versions used by a configuration's
    /// current or last 5 revisions, and the newest, are always kept.
    #[arg(long)]
    pub max_versions: Option<u64>,

    /// How old an unreferenced blob or an interrupted upload must be before it is collected [default: 30m].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub gc_grace: Option<Duration>,

    /// Serve HTTPS with this PEM certificate chain (server certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How long a client may take to send a request's header, counted from the connection's
    /// opening (TLS handshake included) or from its previous answer; silent, slow and idle
    /// connections are closed after it [default: 10s]. Uploads and blocking queries in progress
    /// are not cut.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub header_timeout: Option<Duration>,

    /// Client connections open at once. At the cap, a new connection takes the place of the
    /// oldest one with no request in progress (silent, slow, or idle between requests); it is
    /// closed as it arrives only when every one has a request in progress [default: half the
    /// open-file limit left after 128 for the registry's own files].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,

    /// The key that seals stage environment values at rest (in the database, its WAL and
    /// backups; environment layers are kept sealed there too, never in the blob store). Keep it
    /// outside the data directory and back it up apart from it: without it the values cannot be
    /// read. Created (0600) when missing. Replicas share one [default: DATA.secrets.key, beside
    /// the data directory].
    #[arg(long, env = "DEPOT_SECRETS_KEY", value_name = "FILE")]
    pub secrets_key: Option<PathBuf>,

    /// Also serve seed 001's SSH interface on this address (`127.0.0.1:2022`): console commands
    /// over `ssh`, uploads and seed 001's agents over `sftp`, with the keys of `depot key`. Its
    /// host key is made on the first start (DATA/ssh_host_ed25519_key) and its fingerprint
    /// printed [default: off].
    #[arg(long, env = "DEPOT_SSH_LISTEN", value_name = "ADDRESS")]
    pub ssh_listen: Option<String>,

    /// SSH sessions open at once; more are closed as they arrive [default: 64].
    #[arg(long, value_name = "N", requires = "ssh_listen")]
    pub ssh_max_sessions: Option<usize>,

    /// The longest an SSH connection lives; one with an upload in progress lives until the
    /// upload ends [default: 30m, as seed 001's -deadline].
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "ssh_listen")]
    pub ssh_lifetime: Option<Duration>,
}

// ---------------------------------------------------------------------------------------------
// Registry client verbs. Each talks to one registry (flags over DEPOT_REGISTRY / DEPOT_TOKEN over
// ~/.config/depot/config.toml) and prints the API's own types with `--json`.

/// Which registry to talk to, and with which token.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// The registry's URL [env: DEPOT_REGISTRY; else `registry` in ~/.config/depot/config.toml;
    /// else http://127.0.0.1:7070].
    #[arg(long, value_name = "URL")]
    pub registry: Option<String>,

    /// The access token, NAME.SECRET [env: DEPOT_TOKEN; else `token` in
    /// ~/.config/depot/config.toml]. Prefer the environment: arguments show in `ps`.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<Token>,

    /// A PEM file of CA certificates to trust for an https registry whose certificate your own
    /// CA signed [env: DEPOT_CA_CERT; else `ca_cert` in ~/.config/depot/config.toml].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// Upload a release archive, or a directory packed first, as a version of a component.
///
/// A directory is packed reproducibly, as `depot pack` does, into a temporary archive, so the same
/// tree always gives the same digest. The archive is uploaded unless the registry already has it,
/// then registered as COMPONENT VERSION. Versions are immutable: pushing the same content again
/// succeeds and changes nothing, other content under an existing version is refused. Prints the
/// archive's digest on stdout (`--json`: the version's record). Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot push web 1.4.2 ./build                        # packs ./build, uploads, prints sha256:…
  depot push web 1.4.2 web-1.4.2.tar.zst --label git=3f9c2e1 --label branch=main
  depot push web 1.4.2 ./build --format gz --json     # the version: digest, size, labels, …
  depot push web 1.5.0-dev.42 ./build --channel edge  # a main-branch build: edge, nightly-DATE, sha-…
  depot push web 1.4.2 ./build --sign ~/.ssh/id_ed25519 --attach sbom.cdx.json")]
pub struct PushArgs {
    /// The component (`web`, `config-prod`).
    pub component: ComponentName,

    /// The version label (`1.4.2`, `v2026.11.23`, `abc123`).
    pub version: VersionLabel,

    /// A release archive (.tar, .tar.gz or .tar.zst, recognised by content) or a directory to pack.
    #[arg(value_name = "FILE|DIR")]
    pub path: PathBuf,

    /// A label stored with the version; repeat for more.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,

    /// Compression when packing a directory: zstd or gzip [default: zst].
    #[arg(long, value_enum)]
    pub format: Option<Format>,

    /// A build of the main branch: the version also takes the channels `edge`,
    /// `nightly-YYYY-MM-DD` (today, UTC) and `sha-<short>` (from --git-sha, or from the git
    /// checkout it runs in). Never `latest` or a rolling channel.
    #[arg(long, value_name = "CHANNEL", value_parser = PossibleValuesParser::new(["edge"]))]
    pub channel: Option<String>,

    /// The commit the build comes from, for the `sha-<short>` channel [default: `git rev-parse HEAD`].
    #[arg(long, value_name = "SHA", requires = "channel", value_parser = parse_git_sha)]
    pub git_sha: Option<String>,

    /// Keep a version that looks like one but is not semver (`01.2.3`, `1.2`) as it is: it then
    /// moves no channel and sorts before every semver version. Without this it is refused.
    #[arg(long)]
    pub free_form: bool,

    /// Sign the version with this SSH key (see `depot sign`): an unencrypted OpenSSH private
    /// key, or a public key (.pub) whose private half ssh-agent holds. Repeat for several
    /// keys. The signatures go with the version, so a component whose policy requires them
    /// (`depot policy`) takes it.
    #[arg(long, value_name = "KEY")]
    pub sign: Vec<PathBuf>,

    /// Attach this signature made beforehand (`ssh-keygen -Y sign -n depot` over the text of
    /// `depot sign COMPONENT VERSION --digest DIGEST --print-message`). Repeatable.
    #[arg(long, value_name = "FILE")]
    pub signature: Vec<PathBuf>,

    /// Attach this attestation to the version (see `depot attest`): a CycloneDX or SPDX JSON
    /// SBOM, or an in-toto statement; signed with each --sign key. Repeatable.
    #[arg(long, value_name = "FILE")]
    pub attach: Vec<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Sign a version with an SSH key, so that hosts with `depot agent --trust` deploy it.
///
/// The signature is OpenSSH's SSHSIG, namespace `depot`, over the component, the version and
/// the digest (the text `--print-message` prints), so it holds for that content under that
/// name only. `ssh-keygen -Y verify -n depot` checks it against the allowed_signers files teams
/// keep for git. A version may carry several signatures (builder, release manager), one per key.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot sign web 1.4.2 --key ~/.ssh/id_ed25519
  depot sign web 1.4.2 --key ~/.ssh/id_ed25519.pub       # the private key in ssh-agent
  depot sign web 1.4.2 --print-message > msg && ssh-keygen -Y sign -n depot -f ~/.ssh/id_ed25519 msg
  depot sign web 1.4.2 --signature msg.sig               # attach a signature made elsewhere")]
pub struct SignArgs {
    pub component: ComponentName,

    pub version: VersionLabel,

    /// The SSH key to sign with: an unencrypted OpenSSH private key, or a public key (.pub)
    /// whose private half ssh-agent holds.
    #[arg(long, value_name = "KEY", required_unless_present_any = ["signature", "print_message"])]
    pub key: Option<PathBuf>,

    /// Attach this signature (`ssh-keygen -Y sign -n depot` over the text of --print-message).
    #[arg(long, value_name = "FILE", conflicts_with = "key")]
    pub signature: Option<PathBuf>,

    /// Print the text a signature of this version covers, and attach nothing.
    #[arg(long, conflicts_with_all = ["key", "signature"])]
    pub print_message: bool,

    /// With --print-message: the content's digest (`sha256:…`, as `depot pack` prints it), so
    /// that the text is printed without asking a registry, to sign a version before it is
    /// pushed.
    #[arg(long, requires = "print_message", value_parser = parse_digest)]
    pub digest: Option<depot_api::Digest>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Import a container image: one component version per layer, and a configuration of them.
///
/// Each layer becomes a version of the component `NAME.lN` (N counts from 1 at the bottom),
/// labelled with the layer's digest (the sha256 of its uncompressed tar), so importing the same
/// image again, or another image on the same base, reuses what the registry has. Layers are
/// checked against their digests and converted: whiteouts are kept (deploy applies them,
/// opaque directories included), absolute symlinks become relative to the image root, device
/// nodes and fifos are skipped with a warning. Then the configuration NAME is created, or its
/// layers replaced in one new revision. NAME defaults to the image's repository name
/// (`registry.example.com/team/app:1.0` → `app`). Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  docker save app:1.0 | depot import docker -
  depot import docker app.tar --image app:1.0 --layer app-settings:prod-3
  skopeo copy docker://debian:bookworm oci:debian-oci:bookworm
  depot import oci debian-oci --platform linux/amd64 --name debian")]
pub struct ImportArgs {
    #[command(subcommand)]
    pub command: ImportCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    Docker(ImportDockerArgs),
    Oci(ImportOciArgs),
}

/// Import an image from a `docker save` archive.
///
/// Both layouts `docker save` writes are read (Docker 25 and later write an OCI layout inside
/// the archive). An archive of several images needs --image.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  docker save app:1.0 | depot import docker -
  depot import docker images.tar --image app:1.0")]
pub struct ImportDockerArgs {
    /// The archive, or `-` to read it from standard input.
    #[arg(value_name = "FILE|-")]
    pub file: PathBuf,

    #[command(flatten)]
    pub options: ImportOptions,
}

/// Import an image from an OCI image layout directory.
///
/// As `skopeo copy … oci:DIR[:NAME]` and `buildah push … oci:DIR` write it. A layout of several
/// images (names, or platforms of one multi-platform image) needs --image or --platform.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  skopeo copy docker://debian:bookworm oci:debian-oci:bookworm
  depot import oci debian-oci --platform linux/amd64 --name debian")]
pub struct ImportOciArgs {
    /// The layout directory (it holds `oci-layout` and `index.json`).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub options: ImportOptions,
}

#[derive(Debug, Args)]
pub struct ImportOptions {
    /// Which image, when the source holds several: a tag (`app:1.0`), an OCI `ref.name`, or the
    /// short name depot would give it (`app`).
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,

    /// Which platform of a multi-platform image: OS/ARCH[/VARIANT] (`linux/amd64`, `linux/arm64/v8`).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,

    /// The configuration's name, and the prefix of the layers' components [default: the
    /// image's repository name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// A layer to add on top of the image's, COMPONENT:VERSION (settings, say); repeat in order.
    #[arg(long = "layer", value_name = "COMPONENT:VERSION", value_parser = parse_layer)]
    pub layers: Vec<LayerRef>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Attach an attestation to a version: an SBOM or an in-toto statement, signed like a version.
///
/// A CycloneDX JSON (`bomFormat`) or SPDX JSON (`spdxVersion`) document becomes the predicate of
/// an in-toto statement (predicate types https://cyclonedx.org/bom and https://spdx.dev/Document)
/// whose subject is the version's content; an in-toto statement (SLSA provenance from `depot
/// build`, or another tool's) is attached as it is, and its subjects must include the version's
/// sha256. Each --sign key signs it (SSHSIG, namespace `depot-attestation`, over the component,
/// version, content and the statement's sha256), and a host with `depot agent --trust FILE
/// --require-attestation TYPE` deploys only content with such an attestation by a trusted key
/// (one whose allowed_signers line names no namespaces, or `depot-attestation`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot attest web 1.4.2 sbom.cdx.json --sign ~/.ssh/id_ed25519
  depot attest web 1.4.2 web-1.4.2.provenance.json --sign ~/.ssh/id_ed25519.pub
  syft dir:./build -o spdx-json > sbom.spdx.json && depot attest web 1.4.2 sbom.spdx.json")]
pub struct AttestArgs {
    pub component: ComponentName,

    pub version: VersionLabel,

    /// The document: CycloneDX or SPDX JSON, or an in-toto statement.
    pub file: PathBuf,

    /// Sign it with this SSH key: an unencrypted OpenSSH private key, or a public key (.pub)
    /// whose private half ssh-agent holds. Repeatable.
    #[arg(long, value_name = "KEY")]
    pub sign: Vec<PathBuf>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List a version's attestations, or print one.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot attestations web 1.4.2
  depot attestations web 1.4.2 --get provenance > provenance.json
  depot attestations web 1.4.2 --get sha256:3f9c… --json")]
pub struct AttestationsArgs {
    pub component: ComponentName,

    pub version: VersionLabel,

    /// Print this attestation's statement: its digest (`sha256:…`), or its type (`provenance`,
    /// `cyclonedx`, `spdx`, or a predicate type URI; the newest of that type).
    #[arg(long, value_name = "DIGEST|TYPE")]
    pub get: Option<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// A component's signature policy: the signatures its versions need before the registry takes
/// them.
///
/// With a policy, a new version of the component is refused unless it comes with N valid
/// signatures by different keys of the policy's allowed_signers file, and so is any
/// configuration write (create, set, bump, promotion) that brings in a version without them
/// under the policy as it stands. Rollbacks, and channels that step back when a version is
/// deprecated, are never held. This protects the registry from a stolen operator token; hosts
/// do not rely on it and check signatures themselves (`depot agent --trust`).
#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    Set(PolicySetArgs),
    Show(PolicyShowArgs),
    Unset(PolicyShowArgs),
}

/// Require signatures on a component's versions (admin).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot policy set web --require-signatures 1 --trusted /etc/depot/allowed_signers
  depot policy set web --require-signatures 2 --trusted release-team.allowed_signers
  depot push web 1.4.2 ./dist --sign ~/.ssh/id_ed25519 --signature release-manager.sig")]
pub struct PolicySetArgs {
    pub component: ComponentName,

    /// Valid signatures each version needs, each by another trusted key.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub require_signatures: u32,

    /// The trusted keys: an allowed_signers file (`principals [options] key`, as git and
    /// `ssh-keygen -Y verify` read), with at least N keys.
    #[arg(long, value_name = "FILE")]
    pub trusted: PathBuf,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Show a component's signature policy (`policy show`), or remove it (`policy unset`, admin).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot policy show web
  depot policy show web --json
  depot policy unset web")]
pub struct PolicyShowArgs {
    pub component: ComponentName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Show one version: its digest, size, labels, creator, deprecation and signatures.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot show-version web 1.4.2
  depot show-version web 1.4.2 --json")]
pub struct ShowVersionArgs {
    pub component: ComponentName,

    pub version: VersionLabel,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn parse_git_sha(text: &str) -> Result<String, String> {
    let sha = text.trim().to_ascii_lowercase();
    if (7..=40).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(sha)
    } else {
        Err(format!("`{text}` is not a git commit (7 to 40 hex digits)"))
    }
}

/// List the registry's components with their number of versions and newest version.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot components
  depot components --json")]
pub struct ComponentsArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List the versions of a component, oldest first.
///
/// Semver labels (`1.4.2`, `v2.0.0-rc.1`) are ordered by semver precedence, build metadata ignored;
/// other labels come first, in push order.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot versions web
  depot versions web --json")]
pub struct VersionsArgs {
    /// The component.
    pub component: ComponentName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List the channels of a component (`latest`, `1.4`, `1`) with their version and history.
///
/// Pushing a stable semver version moves the rolling channels: `X.Y` names the highest `X.Y.*`,
/// `X` the highest `X.*.*` (for X ≥ 1), `latest` the highest stable version; deprecated versions
/// and pre-releases never count. A configuration layer written `web:latest` or `web:1.4` tracks
/// the channel and gets a new revision whenever it moves.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot channels web
  depot channels web --json    # [{\"name\", \"version\", \"updated_at\", \"history\": [{\"at\", \"from\", \"to\", \"actor\", \"reason\"}]}]")]
pub struct ChannelsArgs {
    /// The component.
    pub component: ComponentName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Set and remove manual channels of a component (admin only).
///
/// A manual channel (`stable`, `canary`) names the version an admin chose; layers may track it
/// like any channel. Names that are versions, rolling channels (`latest`, `X.Y`, `X`), build
/// channels (`edge`, `nightly-…`, `sha-…`) or stage names (`dev`, `staging`, `prod`) are reserved.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot channel set web stable 1.4.2
  depot channel rm web stable")]
pub struct ChannelArgs {
    #[command(subcommand)]
    pub command: ChannelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    Set(ChannelSetArgs),
    Rm(ChannelRmArgs),
}

/// Point a manual channel at a version; configurations tracking it move.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot channel set web stable 1.4.2
  depot channel set web stable 1.4.2 --json     # the channel: name, kind, version, history")]
pub struct ChannelSetArgs {
    /// The component.
    pub component: ComponentName,

    /// The channel.
    pub channel: VersionLabel,

    /// The version it names from now on.
    pub version: VersionLabel,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Remove a manual or build channel; configurations tracking it stay on their version.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot channel rm web stable")]
pub struct ChannelRmArgs {
    /// The component.
    pub component: ComponentName,

    /// The channel.
    pub channel: VersionLabel,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Withdraw a version from the channels, fleet-wide.
///
/// The version stays downloadable and is never removed by retention, but no rolling channel
/// names it any more: configurations tracking `latest` or `1.4` move back to the previous good
/// version, and their agents follow. When a channel has no other version, it is removed and the
/// configurations tracking it stay where they are. Build and manual channels (`edge`, `stable`)
/// are left as they are. Configurations on the version are flagged in `depot config show` and
/// `depot status`. Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot deprecate web 1.4.2 --reason \"crashes on start with TLS enabled\" --replacement 1.4.3
  depot undeprecate web 1.4.2")]
pub struct DeprecateArgs {
    /// The component.
    pub component: ComponentName,

    /// The version to withdraw.
    pub version: VersionLabel,

    /// Why, shown wherever the version is.
    #[arg(long)]
    pub reason: String,

    /// The version to use instead.
    #[arg(long, value_name = "VERSION")]
    pub replacement: Option<VersionLabel>,

    /// The configurations it moves take their new revision on every agent at once, past their
    /// rolling strategy.
    #[arg(long)]
    pub now: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Return a deprecated version to the channels.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot undeprecate web 1.4.2")]
pub struct UndeprecateArgs {
    /// The component.
    pub component: ComponentName,

    /// The version.
    pub version: VersionLabel,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List the configurations with their revision and hash.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot configs
  depot configs --json")]
pub struct ConfigsArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Create, change, show and roll back configurations (what agents deploy).
///
/// A configuration is an ordered list of component versions, its layers. Every change makes a new revision; `--expect-revision N` makes a change fail with
/// `config-conflict` when someone else changed the configuration since revision N.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config create web-prod --layer web:1.4.2 --layer settings:7
  depot config bump web-prod web
  depot config show web-prod")]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    Create(ConfigCreateArgs),
    Set(ConfigSetArgs),
    Bump(ConfigBumpArgs),
    Show(ConfigShowArgs),
    History(ConfigHistoryArgs),
    Rollback(ConfigRollbackArgs),
    Rollout(ConfigRolloutArgs),
}

/// Create a configuration from layers, in order (later layers overlay earlier ones).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config create web-prod --layer web:1.4.2
  depot config create web-prod --layer base:2.0.0 --layer web:1.4.2 --layer settings:7")]
pub struct ConfigCreateArgs {
    /// The configuration's name.
    pub name: ConfigName,

    /// A layer, COMPONENT:VERSION; repeat in order.
    #[arg(long = "layer", value_name = "COMPONENT:VERSION", value_parser = parse_layer)]
    pub layers: Vec<LayerRef>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Set the version of one or more layers, in one revision.
///
/// Each COMPONENT:VERSION replaces that component's layer, or is added at the end when the
/// configuration has no layer of that component.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config set web-prod web:1.4.2
  depot config set web-prod web:1.4.2 settings:8 --expect-revision 12")]
pub struct ConfigSetArgs {
    /// The configuration.
    pub name: ConfigName,

    /// The layers to set.
    #[arg(required = true, value_name = "COMPONENT:VERSION", value_parser = parse_layer)]
    pub layers: Vec<LayerRef>,

    /// Fail with `config-conflict` unless the configuration is at this revision.
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Move a component's layer to its newest version, and print the command that undoes it.
///
/// Newest by semver precedence; a layer on a stable version moves to the newest stable version,
/// never to a release candidate.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config bump web-prod web       # prints: depot config set web-prod web:1.4.1
  depot config bump web-prod web --expect-revision 12 --json")]
pub struct ConfigBumpArgs {
    /// The configuration.
    pub name: ConfigName,

    /// The component whose layer moves to its newest version.
    pub component: ComponentName,

    /// Fail with `config-conflict` unless the configuration is at this revision.
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Show a configuration: revision, hash and layers with their digests.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config show web-prod
  depot config show web-prod --json    # {\"name\", \"revision\", \"hash\", \"layers\": [{\"component\", \"version\", \"digest\"}], …}")]
pub struct ConfigShowArgs {
    /// The configuration.
    pub name: ConfigName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Keep this host's release root on a configuration of the registry.
///
/// Each cycle reads the configuration (a blocking query, so a change arrives at once), and when
/// its hash differs from the active one: downloads the layers this host lacks, verifying each
/// digest; unpacks them in order into one release named after the configuration hash (content
/// seen before reuses its release); runs --validate, switches `current`, runs --post-activate and
/// the health check, and switches back if they fail. A configuration hash that failed is not
/// tried again until the configuration changes or `depot agent retry` clears it. Every step is
/// reported to the registry (`depot status CONFIG`); reports the registry could not take are kept
/// in the root and sent when it answers again. Hooks also get STATEFILE (the configuration's
/// JSON), LAYER_<i>_NAME, LAYER_<i>_VERSION, DEPOT_CONFIG and DEPOT_REVISION.
///
/// Several registry URLs name replicas of one registry: the agent talks to one at a time and moves
/// to the next (round robin) when it cannot connect, times out or gets a 5xx, for the query, the
/// downloads and the reports alike. The revision it waits to pass is its own, so a move neither
/// misses a revision nor deploys one again.
///
/// Settings come from the flags, then DEPOT_* variables, then the settings file
/// (/etc/depot/agent.toml when it exists, or --settings FILE), then `[deploy]` in
/// R/config/depot.toml. SIGTERM or SIGINT stops the agent at a safe point: at once while it
/// waits or downloads, after the activation and its checks once a release has been switched to.
/// SIGHUP makes it check the configuration again.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Examples:
  depot agent --config web-prod --root /opt/web --post-activate 'systemctl restart web' \\
      --health-url http://127.0.0.1:8080/healthz
  depot agent --config web-prod --root /opt/web --once     # one cycle, for cron and tests
  depot agent --config web-prod --root /opt/web --registry https://depot-a:7070,https://depot-b:7070
  depot agent                                              # everything from /etc/depot/agent.toml
  depot agent retry --root /opt/web                        # try a failed configuration again

/etc/depot/agent.toml (every key optional; relative paths are relative to the file):
  config = \"web-prod\"
  root = \"/opt/web\"
  name = \"web-1\"
  registry = \"https://depot.example.com:7070\"
  # registry = [\"https://depot-a:7070\", \"https://depot-b:7070\"]   # replicas, tried in turn
  token = \"agent-web.SECRET\"         # keep the file mode 0600
  ca_cert = \"ca.pem\"
  trust = \"allowed_signers\"          # deploy only layers these keys signed
  revoked_keys = \"revoked_keys\"
  [deploy]                           # overrides [deploy] of R/config/depot.toml
  post_activate = \"systemctl restart web\"
  health_url = \"http://127.0.0.1:8080/healthz\"
  keep = 5"
)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,

    /// The configuration to follow [else `config` in the settings file].
    #[arg(long, env = "DEPOT_CONFIG")]
    pub config: Option<ConfigName>,

    /// The release root [else `root` in the settings file].
    #[arg(long, env = "DEPOT_ROOT")]
    pub root: Option<PathBuf>,

    /// The settings file [default: /etc/depot/agent.toml when it exists].
    #[arg(long, env = "DEPOT_AGENT_SETTINGS", value_name = "FILE")]
    pub settings: Option<PathBuf>,

    /// How long to wait for another depot command on this root [default: 60s].
    #[arg(long, value_parser = parse_duration)]
    pub lock_timeout: Option<Duration>,

    /// The name this host reports under [default: `name` in the settings file, else the host name].
    #[arg(long, env = "DEPOT_HOST_NAME", value_name = "HOST")]
    pub name: Option<depot_api::HostName>,

    /// Do one cycle and exit: 0 when the configuration is active (or failed before and is left
    /// alone), 1 when it failed now. With --json, prints {"config", "revision", "hash", "release",
    /// "outcome", "current"}.
    #[arg(long)]
    pub once: bool,

    /// Deploy only layers signed by a key of this allowed_signers file (the format of
    /// `ssh-keygen -Y verify` and git: principals, options namespaces/valid-after/valid-before,
    /// key). A layer without such a signature is refused before it is unpacked, and reported
    /// `untrusted`. The environment layer, which the registry writes, must be config/app.env
    /// alone, exactly as the registry writes it, with no loader variable (LD_*, BASH_ENV,
    /// NODE_OPTIONS, …) [else `trust` in the settings file].
    #[arg(long, value_name = "FILE")]
    pub trust: Option<PathBuf>,

    /// Public keys (one per line) never to trust, whatever --trust says [else `revoked_keys` in
    /// the settings file].
    #[arg(long, value_name = "FILE", requires = "trust")]
    pub revoked_keys: Option<PathBuf>,

    /// With --trust, each layer (but the environment layer) also needs an attestation of this
    /// type about its content, signed by a trusted key: `provenance` (SLSA provenance, as
    /// `depot build` records it), `cyclonedx`, `spdx`, or a predicate type URI. Repeatable
    /// [else `require_attestations` in the settings file].
    #[arg(long, value_name = "TYPE")]
    pub require_attestation: Vec<String>,

    #[command(flatten)]
    pub policy: DeployPolicyArgs,

    #[command(flatten)]
    pub registry: AgentRegistryArgs,
}

/// Which registry the agent follows (one, or several replicas of it), and with which token.
#[derive(Debug, Args)]
pub struct AgentRegistryArgs {
    /// The registry's URL; several, comma-separated or with the flag repeated, are replicas of
    /// one registry, tried in turn [env: DEPOT_REGISTRY; else `registry` in the settings file
    /// (without one, in ~/.config/depot/config.toml); else http://127.0.0.1:7070].
    #[arg(long, value_name = "URL", value_delimiter = ',')]
    pub registry: Vec<String>,

    /// The access token, NAME.SECRET [env: DEPOT_TOKEN; else `token` in the settings file
    /// (without one, in ~/.config/depot/config.toml)]. Prefer the environment or the file:
    /// arguments show in `ps`.
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<Token>,

    /// A PEM file of CA certificates to trust for an https registry whose certificate your own
    /// CA signed [env: DEPOT_CA_CERT; else `ca_cert` in the settings file (without one, in
    /// ~/.config/depot/config.toml)].
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    Retry(AgentRetryArgs),
}

/// Clear the failure of the configuration the agent of a root gave up on, so that it is tried
/// again now.
///
/// A configuration hash that failed (validate, hooks, health check, or a bad archive) is not tried
/// again until the configuration changes. This forgets those failures and wakes the running
/// agent (SIGHUP), which deploys the configuration at once; with no agent running, the next
/// start tries it.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot agent retry --root /opt/web
  depot agent retry --json          # {\"root\", \"cleared\": [hash, …], \"agent_pid\": 1234 | null}")]
pub struct AgentRetryArgs {
    /// The release root [else `root` in the settings file].
    #[arg(long, env = "DEPOT_ROOT")]
    pub root: Option<PathBuf>,

    /// The settings file [default: /etc/depot/agent.toml when it exists].
    #[arg(long, env = "DEPOT_AGENT_SETTINGS", value_name = "FILE")]
    pub settings: Option<PathBuf>,
}

/// Show every agent of a configuration: host, active revision and hash, state, last seen, and
/// whether it is on the configuration's current revision.
///
/// Failed and rolled-back agents are followed by their error and the end of their hooks' output.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot status web-prod
  depot status web-prod --json     # [{\"host\", \"revision\", \"hash\", \"state\", \"last_seen\", \"current\", …}]")]
pub struct StatusArgs {
    /// The configuration.
    pub config: ConfigName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List a configuration's revisions: when, by whom, what changed.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config history web-prod
  depot config history web-prod --json")]
pub struct ConfigHistoryArgs {
    /// The configuration.
    pub name: ConfigName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Give a configuration the layers of an earlier revision, as a new revision.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config rollback web-prod                   # back to the revision before the current one
  depot config rollback web-prod --to-revision 9 --expect-revision 12")]
pub struct ConfigRollbackArgs {
    /// The configuration.
    pub name: ConfigName,

    /// The revision whose layers to restore [default: the one before the current revision].
    #[arg(long, value_name = "N")]
    pub to_revision: Option<u64>,

    /// Fail with `config-conflict` unless the configuration is at this revision.
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,

    /// Every agent at once, past the configuration's rolling strategy.
    #[arg(long)]
    pub now: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Set how new revisions of a configuration reach its agents: all at once, or rolling.
///
/// Rolling: every new revision starts a rollout. The agents known at its start form batches in
/// name order: --canary hosts first, alone, then batches of --batch hosts (or a percentage of
/// them). A batch passes when each of its hosts has reported the new revision active for --bake;
/// a host that reports a failure, or nothing within --deadline, counts as failed. One failure
/// more than --max-failures stops the rollout: `halt` leaves the hosts changed as they are,
/// `revert` sends them back to the revision they ran before. Flags not given keep their current
/// value (or the default shown). A new strategy applies from the next revision: a rollout in
/// progress keeps its own. With no flag, shows the strategy. Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot config rollout web-prod --canary 1 --batch 25% --bake 2m
  depot config rollout web-prod --max-failures 10% --on-failure revert
  depot config rollout web-prod --all          # every agent at once again
  depot config rollout web-prod                # show the strategy")]
pub struct ConfigRolloutArgs {
    /// The configuration.
    pub name: ConfigName,

    #[command(flatten)]
    pub strategy: StrategyArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// A rollout strategy's flags, for `config rollout` and `pipeline rollout`.
#[derive(Debug, Args)]
pub struct StrategyArgs {
    /// Every agent at once (no rollout).
    #[arg(long, conflicts_with_all = ["canary", "batch", "bake", "deadline", "max_failures", "on_failure"])]
    pub all: bool,

    /// Hosts that take a new revision first, alone [default: 1].
    #[arg(long, value_name = "N")]
    pub canary: Option<u32>,

    /// Hosts per later batch: a number, or a percentage of the hosts (25%) [default: 25%].
    #[arg(long, value_name = "N|P%")]
    pub batch: Option<depot_api::rollout::Share>,

    /// How long a batch's hosts must stay active before the next batch starts: 30s, 5m [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub bake: Option<Duration>,

    /// How long a host of a started batch has to report the new revision active [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<Duration>,

    /// Failed hosts tolerated over the rollout: a number or a percentage [default: 0].
    #[arg(long, value_name = "N|P%")]
    pub max_failures: Option<depot_api::rollout::Share>,

    /// What a stopped rollout does to the hosts already changed: halt (they stay) or revert
    /// (they go back) [default: halt].
    #[arg(long, value_name = "halt|revert", value_parser = PossibleValuesParser::new(["halt", "revert"])
        .map(|text: String| if text == "revert" { depot_api::rollout::OnFailure::Revert } else { depot_api::rollout::OnFailure::Halt }))]
    pub on_failure: Option<depot_api::rollout::OnFailure>,
}

/// Follow and steer rollouts: status, pause, resume, abort, continue.
#[derive(Debug, Args)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    Status(RolloutStatusArgs),
    Pause(RolloutActionArgs),
    Resume(RolloutActionArgs),
    Abort(RolloutActionArgs),
    Continue(RolloutActionArgs),
}

/// Show a configuration's latest rollout: its batches, each host's state and reason, the time
/// elapsed, and what is left.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot rollout status web-prod
  depot rollout status web-prod --watch
  depot rollout status web-prod --json")]
pub struct RolloutStatusArgs {
    /// The configuration (a pipeline's stage is the configuration APP-STAGE).
    pub name: ConfigName,

    /// Print it again whenever it changes, until the rollout ends (Ctrl-C stops).
    #[arg(long)]
    pub watch: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Steer a configuration's rollout.
///
/// `pause` holds it where it is (started batches keep the new revision); `resume` goes on, with
/// the current batch's deadline and bake time counted again; `abort` ends it and sends every host
/// back to the revision it ran before; `continue` goes on past a halt, after a fix, forgiving the
/// failures so far. Each is recorded in the history. Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot rollout pause web-prod
  depot rollout resume web-prod
  depot rollout abort web-prod
  depot rollout continue web-prod")]
pub struct RolloutActionArgs {
    /// The configuration.
    pub name: ConfigName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Delete a version, a component or a configuration from the registry.
///
/// A version or component that a configuration uses is refused (`in-use`, naming the
/// configuration). The blobs are freed by the next garbage collection.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot delete version web 1.4.0
  depot delete component old-web
  depot delete config web-staging --force")]
pub struct DeleteArgs {
    #[command(subcommand)]
    pub command: DeleteCommand,
}

#[derive(Debug, Subcommand)]
pub enum DeleteCommand {
    Version(DeleteVersionArgs),
    Component(DeleteComponentArgs),
    Config(DeleteConfigArgs),
}

/// Delete one version of a component, unless a configuration uses it.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot delete version web 1.4.0")]
pub struct DeleteVersionArgs {
    /// The component.
    pub component: ComponentName,

    /// The version to delete.
    pub version: VersionLabel,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Delete a component and all its versions, unless a configuration uses one.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot delete component old-web")]
pub struct DeleteComponentArgs {
    /// The component.
    pub component: ComponentName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Delete a configuration and its history; agents following it get `unknown-config`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot delete config web-staging --force")]
pub struct DeleteConfigArgs {
    /// The configuration.
    pub name: ConfigName,

    /// Required: agents following this configuration stop receiving releases.
    #[arg(long)]
    pub force: bool,

    /// Fail with `config-conflict` unless the configuration is at this revision.
    #[arg(long, value_name = "N")]
    pub expect_revision: Option<u64>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Create, list and revoke the registry's access tokens (admin only).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot token create ci --role operator
  depot token create web-01 --role agent --config 'web-*'
  depot token list
  depot token revoke ci")]
pub struct TokenArgs {
    #[command(subcommand)]
    pub command: TokenCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    Create(TokenCreateArgs),
    List(TokenListArgs),
    Revoke(TokenRevokeArgs),
}

/// Create a token and print its secret, once, on stdout.
///
/// Roles: `admin` (everything, including tokens and gc), `operator` (push, configure, delete),
/// `viewer` (read everything but tokens), `agent` (read configurations and blobs; --config limits
/// which configurations).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot token create ci --role operator
  depot token create web-01 --role agent --config 'web-*'
  depot token create deploy --role operator --json   # {\"name\", \"role\", \"token\", …}")]
pub struct TokenCreateArgs {
    /// The token's name (`ci`, `web-01`); it prefixes the secret.
    pub name: TokenName,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// What a token or an SSH key may do.
#[derive(Debug, Args)]
pub struct AccessArgs {
    /// What the token or key may do (SSH keys: operator, agent or viewer).
    #[arg(long, value_parser = PossibleValuesParser::new(["admin", "operator", "agent", "viewer"])
        .map(|role| role.parse::<Role>().expect("a listed role")))]
    pub role: Role,

    /// For agents (required): the configurations they may read, with their layers and
    /// environment variables, as a glob (`web-*`; `*` for every configuration).
    #[arg(long = "config", value_name = "PATTERN", required_if_eq("role", "agent"))]
    pub config_pattern: Option<String>,
}

/// List the tokens: name, role, pattern, creation (never the secrets, which the registry does not
/// keep).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot token list
  depot token list --json")]
pub struct TokenListArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Revoke a token: it stops working at once.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot token revoke ci")]
pub struct TokenRevokeArgs {
    /// The token's name.
    pub name: TokenName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Add, import, list and revoke the SSH keys of the SSH front-end (admin only).
///
/// A key has a role like a token's. Over SSH (`depot serve --ssh-listen`), user `deploy-agent`
/// is an agent session (read-only SFTP of configs/ and files/, as seed 001's agents use it); any
/// other user name is an operator session (console commands, SFTP uploads). The history names
/// the key that did each thing (`key:NAME`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot key add alice --role operator --public-key ~/.ssh/id_ed25519.pub
  depot key add web-01 --role agent --config 'web-*' --public-key web-01.pub
  depot key import --role operator /etc/deploy-registry/operator.keys
  depot key import --role agent --config '*' /etc/deploy-registry/service.keys
  depot key list
  depot key revoke alice")]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    Add(KeyAddArgs),
    Import(KeyImportArgs),
    List(KeyListArgs),
    Revoke(KeyRevokeArgs),
}

/// List the SSH keys: name, role, pattern, fingerprint, creation.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot key list
  depot key list --json")]
pub struct KeyListArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Revoke an SSH key: sessions it opens from now on are refused.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot key revoke alice")]
pub struct KeyRevokeArgs {
    /// The key's name.
    pub name: TokenName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Add one SSH public key.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot key add alice --role operator --public-key ~/.ssh/id_ed25519.pub
  depot key add web-01 --role agent --config 'web-*' --public-key web-01.pub")]
pub struct KeyAddArgs {
    /// The key's name, as the history shows it (`key:NAME`).
    pub name: TokenName,

    #[command(flatten)]
    pub access: AccessArgs,

    /// The public key file (`id_ed25519.pub`: one OpenSSH key line).
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Add every key of an authorized_keys file, with one role: all of them, or none.
///
/// Blank lines, `#` comments and options before the key type are allowed (options are not
/// kept). Each key is named after its comment (`alice@laptop` → `alice-laptop`), or its
/// fingerprint when it has none.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot key import --role operator /etc/deploy-registry/operator.keys
  depot key import --role agent --config '*' /etc/deploy-registry/service.keys --json")]
pub struct KeyImportArgs {
    /// The authorized_keys file.
    pub file: PathBuf,

    #[command(flatten)]
    pub access: AccessArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Collect garbage now: old versions, unreferenced blobs, interrupted uploads.
///
/// Removes the versions past the registry's retention, the blobs no version references and
/// interrupted uploads. The registry also does this on its own every hour. Blobs younger than the grace period are
/// kept, so a push in progress is safe. Needs an admin token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot gc
  depot gc --json")]
pub struct GcArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Operate on a registry's storage directly (the registry need not run).
#[derive(Debug, Args)]
pub struct AdminArgs {
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    Migrate(MigrateArgs),
    RotateKey(RotateKeyArgs),
}

/// Copy a whole registry to other storage: from the embedded defaults to PostgreSQL, say.
///
/// Copies every component, version, channel, configuration with its full history, pipeline,
/// promotion, environment version, token and agent report, and every blob, then checks that the
/// target has every row of the source and every blob with its digest. Stop the source registry
/// first: the copy is of one moment of it. A copy that stops half-way is resumed by running the
/// same command again; what the target already has is skipped. Migrate into an empty
/// database, before any `depot serve` has started on it: a row the target holds differently
/// (the admin token of such a first start) fails the check, which names its table.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot admin migrate --from ./depot-data --to postgres://depot:secret@db.internal/depot
  depot admin migrate --from ./depot-data --to 'postgres://depot@db/depot,s3://depot?endpoint=http://s3.internal:3900&region=garage'
  depot admin migrate --from sqlite:///var/lib/depot/depot.db,file:///var/lib/depot/blobs --to postgres://… --json")]
pub struct MigrateArgs {
    /// The source: a data directory (its depot.db and blobs/), or its metadata and blob URLs,
    /// comma-separated.
    #[arg(long, value_name = "DIR|URLS")]
    pub from: String,

    /// The target's metadata URL (`postgres://…` or `sqlite:///…`) and, after a comma, its blob
    /// store URL (`file:///…` or `s3://BUCKET?endpoint=URL&region=REGION`) [default: the
    /// source's blob store, when only metadata moves].
    #[arg(long, value_name = "URLS")]
    pub to: String,
}

/// Replace the key that seals stage environment values, re-sealing every value with a new one.
///
/// Writes a new key to KEY.next (0600), re-seals every stage's values and environment layers
/// with it in one transaction that also records it as the database's key, then keeps the old
/// key as KEY.old-ID (ID: its public id) and moves the new one to KEY. Run it with the registry
/// stopped, then start every replica with the new KEY. A registry still running on the old key
/// refuses to write values and reports itself unhealthy, and one started with the old key
/// refuses to start, so nothing is ever sealed with a key the database does not record.
/// Interrupted at any point, the same command run again finishes the rotation. KEY.old-ID opens
/// backups taken before the rotation: delete it when none is needed (at once if the old key
/// leaked: a copy sealed with it is no longer safe in any case).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot admin rotate-key --data /var/lib/depot
  depot admin rotate-key --metadata postgres://depot@db.internal/depot --secrets-key /etc/depot/secrets.key --json")]
pub struct RotateKeyArgs {
    /// The registry's data directory [default: depot-data].
    #[arg(long, env = "DEPOT_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Where the metadata lives, as for `depot serve --metadata` [default: sqlite:// in the data
    /// directory].
    #[arg(long, env = "DEPOT_METADATA", value_name = "URL")]
    pub metadata: Option<String>,

    /// The key file the registry seals with [default: DATA.secrets.key, beside the data
    /// directory].
    #[arg(long, env = "DEPOT_SECRETS_KEY", value_name = "FILE")]
    pub secrets_key: Option<PathBuf>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

fn parse_layer(text: &str) -> Result<LayerRef, String> {
    LayerRef::parse(text)
}

/// Cut a semver release in a git repository: bump the version files, commit, tag, push.
///
/// Reads the current version from the version files at the repository's root: `Cargo.toml`
/// (`[package]` or `[workspace.package]`), `package.json`, `pyproject.toml` (`[project]` or
/// Poetry's `[tool.poetry]`), and the files listed in `depot.toml` under `[release] files` (one of
/// those kinds, or a plain file holding only the version). They must agree. Writes the new version
/// into every one of them, keeping their formatting. In a Cargo workspace (read with `cargo
/// metadata`) only the packages that take that version are released: every `path` dependency on
/// them, `[workspace.dependencies]` included, requires the new version in its own form (`0.3.34` →
/// `0.4.0`, `~2.4.0` → `~2.5.0`), and `Cargo.lock` moves them and nothing else. `package-lock.json`
/// follows `package.json`, and `uv.lock` the project's own entry. Moves CHANGELOG.md's `##
/// [Unreleased]` section under `## [X.Y.Z] - DATE` and its `[Unreleased]: …/compare/vA...HEAD` link
/// to the new tag, adding one for X.Y.Z. Commits `chore(release): vX.Y.Z` (a file git ignores, such
/// as an ignored `Cargo.lock`, is written but not committed), creates the annotated tag `vX.Y.Z`,
/// and with --push pushes the branch, then the tag. Refuses a dirty tree, an existing tag, a
/// version that is not above the current one, and a requirement that cannot follow it. Works from
/// any directory of the repository.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot release patch                 # 1.4.2 → 1.4.3, asks before changing anything
  depot release minor --pre rc -y     # 1.4.2 → 1.5.0-rc.1
  depot release rc -y                 # 1.5.0-rc.1 → 1.5.0-rc.2
  depot release final -y --push       # 1.5.0-rc.2 → 1.5.0, then pushes the branch and the tag
  depot release 2.0.0 --dry-run       # the whole plan (files and diffs, commit, tag, push); changes nothing")]
pub struct ReleaseArgs {
    /// patch, minor, major, rc (the next release candidate), final (drop the pre-release), or a
    /// version X.Y.Z.
    #[arg(value_parser = parse_release_target)]
    pub target: ReleaseTarget,

    /// Make it a pre-release of the bumped version: `--pre rc` → X.Y.Z-rc.1.
    #[arg(long, value_name = "ID", value_parser = parse_pre_id)]
    pub pre: Option<String>,

    /// Print the plan and every refusal; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,

    /// Do not ask for confirmation.
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Sign the tag (git tag -s, with git's own signing configuration).
    #[arg(long)]
    pub sign: bool,

    /// Push the branch, then the tag, to the branch's remote.
    #[arg(long)]
    pub push: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseTarget {
    Patch,
    Minor,
    Major,
    Rc,
    Final,
    Version(semver::Version),
}

fn parse_release_target(text: &str) -> Result<ReleaseTarget, String> {
    Ok(match text {
        "patch" => ReleaseTarget::Patch,
        "minor" => ReleaseTarget::Minor,
        "major" => ReleaseTarget::Major,
        "rc" => ReleaseTarget::Rc,
        "final" => ReleaseTarget::Final,
        other => ReleaseTarget::Version(depot_api::semver_order::parse(other).ok_or_else(|| {
            format!("`{other}` is not patch, minor, major, rc, final, or a semver version such as 1.4.2")
        })?),
    })
}

fn parse_pre_id(text: &str) -> Result<String, String> {
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    let numeric = text.bytes().all(|b| b.is_ascii_digit());
    if valid && !numeric {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a pre-release name such as rc, beta or alpha"))
    }
}

/// Build a project with `[build] command` from its depot.toml, pack the outputs, and push them.
///
/// The command runs in DIR through `sh -c` with VERSION set; its output streams to the terminal
/// and is kept in NAME-VERSION.build.log next to the archive. The archive is packed as `depot pack`
/// does, from `[package] include`: globs, or a table mapping build outputs to paths in the archive
/// (`"target/release/server" = "bin/server"`). A failed build packs nothing.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot build                                  # VERSION: $VERSION, else the git short sha, else a timestamp
  depot build --version 1.4.2 --push web       # build, pack and push web 1.4.2

DIR/depot.toml:
  [build]
  command = \"cargo build --release\"
  [package]
  name = \"web\"
  include = { \"target/release/server\" = \"bin/server\", \"config\" = \"config\" }")]
pub struct BuildArgs {
    /// The project directory, holding depot.toml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,

    /// The version [default: $VERSION, else the git short sha, else a UTC timestamp].
    #[arg(long, value_parser = parse_version)]
    pub version: Option<VersionLabel>,

    /// Where to write the archive [default: ./NAME-VERSION.tar.zst].
    #[arg(short, long)]
    pub output: Option<PathBuf>,

    /// Compression: zstd (default) or gzip for compatibility.
    #[arg(long, value_enum, default_value_t = Format::Zst)]
    pub format: Format,

    /// Push the archive as a version of this component, with its provenance attached.
    #[arg(long, value_name = "COMPONENT")]
    pub push: Option<ComponentName>,

    /// With --push: sign the version and its provenance with this SSH key (see `depot sign`).
    /// Repeatable.
    #[arg(long, value_name = "KEY", requires = "push")]
    pub sign: Vec<PathBuf>,

    /// The builder's id in the provenance: a URI naming this build system [default:
    /// urn:depot:builder:HOSTNAME].
    #[arg(long, value_name = "URI")]
    pub builder_id: Option<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Pipelines: an application's stages (dev → staging → prod), each a configuration `APP-STAGE`.
///
/// The first stage's layers track each component's `latest` channel (or `edge` with --track), so
/// a push reaches it by itself; later stages receive versions only by `depot promote`. Agents
/// track a stage's configuration like any other (`depot agent --config web-prod`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline create web --component web --stage dev --stage staging --stage prod
  depot pipeline show web
  depot pipeline gate web prod approval")]
pub struct PipelineArgs {
    #[command(subcommand)]
    pub command: PipelineCommand,
}

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    Create(PipelineCreateArgs),
    Show(PipelineShowArgs),
    List(PipelineListArgs),
    Gate(PipelineGateArgs),
    Rollout(PipelineRolloutArgs),
    Delete(PipelineDeleteArgs),
}

/// Create a pipeline: one configuration per stage, named APP-STAGE.
///
/// Each --stage follows the one given before it, unless --after (right after it) names another:
/// `--stage prod-eu --after staging --stage prod-us --after staging` gives two regions that
/// follow staging. Every component needs its tracked channel already (push a stable version
/// first, or --track edge with `depot push --channel edge`). Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline create web --component web --stage dev --stage staging --stage prod
  depot pipeline create shop --component api --component ui \\
      --stage dev --stage staging --stage prod-eu --after staging --stage prod-us --after staging
  depot pipeline create web --component web --stage dev --stage prod --track edge")]
pub struct PipelineCreateArgs {
    /// The pipeline (the application).
    pub name: PipelineName,

    /// A component whose versions go through the stages; repeat, in layer order.
    #[arg(long = "component", value_name = "COMPONENT", required = true)]
    pub components: Vec<ComponentName>,

    /// A stage, in order; repeat.
    #[arg(long = "stage", value_name = "STAGE", required = true)]
    pub stages: Vec<StageName>,

    /// The stage the --stage just before this flag follows [default: the stage given before it].
    #[arg(long = "after", value_name = "STAGE")]
    pub after: Vec<StageName>,

    /// The channel the first stage tracks.
    #[arg(long, value_name = "CHANNEL", default_value = "latest")]
    pub track: VersionLabel,

    /// Which stage each --after belongs to, filled from the command line's order (see `main.rs`).
    #[arg(skip)]
    pub after_of: Vec<Option<StageName>>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Show a pipeline: stages by components, with each stage's versions, revision, gate and agents.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline show web
  depot pipeline show web --json")]
pub struct PipelineShowArgs {
    /// The pipeline.
    pub name: PipelineName,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List pipelines with their stages.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline list")]
pub struct PipelineListArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Delete a pipeline with its stages' configurations, their history and environment layers
/// (admin only, since it also drops the gates).
///
/// Agents following a stage get `unknown-config`. The versions of the pipeline's components stay.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline delete web --force")]
pub struct PipelineDeleteArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// Required: agents following its stages stop receiving releases.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Set the gate of promotions into a stage (admin only).
///
/// `require-healthy`: refused unless every agent of the source stage (at least one) reports the
/// source's exact content active (`depot promote --force` overrides, recorded). `approval`: waits
/// until an operator other than the one who asked runs `depot approve`. `none`: applied at once.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline gate web staging require-healthy
  depot pipeline gate web prod approval")]
pub struct PipelineGateArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// The stage whose incoming promotions the gate guards.
    pub stage: StageName,

    /// require-healthy, approval or none.
    #[arg(value_parser = PossibleValuesParser::new(["require-healthy", "approval", "none"])
        .map(|text: String| Gate::parse(&text).expect("a possible value")))]
    pub gate: Gate,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Set how new revisions of a stage reach its agents (see `depot config rollout`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot pipeline rollout web prod --canary 1 --batch 25% --bake 5m --on-failure revert
  depot pipeline rollout web staging --all")]
pub struct PipelineRolloutArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// The stage.
    pub stage: StageName,

    #[command(flatten)]
    pub strategy: StrategyArgs,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Promote versions from one stage to the next, without rebuilding or uploading anything.
///
/// Copies the source stage's component versions (never its environment layer) into the target
/// stage as a new revision, recorded as `promoted from APP/SOURCE revision N`. Promoting what the
/// target already runs changes nothing. The target's gate applies (see `depot pipeline gate`),
/// and a deprecated version is not promoted. Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot promote web --to staging                     # from dev, the stage staging follows
  depot promote web --to prod --component web        # only the web layer
  depot promote web --to staging --force             # past a require-healthy gate, recorded")]
pub struct PromoteArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// The stage to promote into.
    #[arg(long, value_name = "STAGE")]
    pub to: StageName,

    /// The stage to promote from [default: the stage --to follows].
    #[arg(long, value_name = "STAGE")]
    pub from: Option<StageName>,

    /// Only this component's layer; repeat for several [default: all].
    #[arg(long = "component", value_name = "COMPONENT")]
    pub components: Vec<ComponentName>,

    /// Promote although the require-healthy gate refuses, a promoted version is deprecated, or
    /// past the stages between --from and --to; the reason is recorded.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Approve a promotion waiting at an approval gate, which then applies.
///
/// The approver must be another token than the one that asked. Without ID, approves the only
/// promotion waiting in the pipeline. Needs an operator token.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot approve web
  depot approve web 7")]
pub struct ApproveArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// The promotion, as `depot pipeline show` lists it.
    pub id: Option<u64>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Refuse a promotion waiting at an approval gate; it is never applied.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot reject web 7")]
pub struct RejectArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// The promotion, as `depot pipeline show` lists it.
    pub id: u64,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Environment variables of a stage, delivered as a layer: a dotenv file at config/app.env.
///
/// Each change writes a new version of the stage's environment layer and a new revision of the
/// stage, so its agents redeploy. Names are [A-Z_][A-Z0-9_]*; DEPOT_ names are the platform's.
/// Only operators, and agents whose token may read the stage's configuration, may read the
/// values: give each stage's hosts a token limited to it (`--config web-prod`, not `web-*`).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot env set web/prod DATABASE_URL=postgres://db/web LOG_LEVEL=info
  depot env unset web/prod LOG_LEVEL
  depot env list web/prod --show")]
pub struct EnvArgs {
    #[command(subcommand)]
    pub command: EnvCommand,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    Set(EnvSetArgs),
    Unset(EnvUnsetArgs),
    List(EnvListArgs),
}

/// Set variables of a stage (one new revision for all of them).
///
/// A value of `-` is read from standard input (one variable at most, a final newline dropped),
/// so that a secret never shows in `ps` or the shell's history.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot env set web/prod DATABASE_URL=postgres://db/web LOG_LEVEL=info
  depot env set web/prod DB_PASSWORD=- < /run/secrets/db-password")]
pub struct EnvSetArgs {
    /// APP/STAGE.
    #[arg(value_parser = parse_stage_path)]
    pub stage: (PipelineName, StageName),

    /// KEY=VALUE; repeat. KEY=- reads the value from standard input.
    #[arg(required = true, value_name = "KEY=VALUE", value_parser = parse_assignment)]
    pub vars: Vec<(String, String)>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Remove variables of a stage (one new revision for all of them).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot env unset web/prod LOG_LEVEL")]
pub struct EnvUnsetArgs {
    /// APP/STAGE.
    #[arg(value_parser = parse_stage_path)]
    pub stage: (PipelineName, StageName),

    /// KEY; repeat.
    #[arg(required = true, value_name = "KEY")]
    pub keys: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// List the variables a stage runs now, values masked unless --show (operators only).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot env list web/prod
  depot env list web/prod --show")]
pub struct EnvListArgs {
    /// APP/STAGE.
    #[arg(value_parser = parse_stage_path)]
    pub stage: (PipelineName, StageName),

    /// Print the values.
    #[arg(long)]
    pub show: bool,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// The timeline of a pipeline: pushes, promotions, environment changes, rollbacks,
/// deprecations and agents' outcomes, each with its time and actor.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  depot history web
  depot history web --stage prod --json")]
pub struct HistoryArgs {
    /// The pipeline.
    pub name: PipelineName,

    /// Only this stage's entries.
    #[arg(long)]
    pub stage: Option<StageName>,

    #[command(flatten)]
    pub registry: RegistryArgs,
}

fn parse_stage_path(text: &str) -> Result<(PipelineName, StageName), String> {
    let (app, stage) = text.split_once('/').ok_or_else(|| format!("`{text}` is not APP/STAGE"))?;
    Ok((PipelineName::parse(app).map_err(|e| e.to_string())?, StageName::parse(stage).map_err(|e| e.to_string())?))
}

fn parse_assignment(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    depot_api::pipeline::check_env(key, Some(value))?;
    Ok((key.to_owned(), value.to_owned()))
}

/// A size as people write it: `10GiB` or `10 GiB` (powers of 1024), `500MB` (powers of 1000),
/// or a number of bytes.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    parse_size::parse_size(text.trim())
        .map_err(|e| format!("`{text}` is not a size ({e}); write it as 10GiB, 10 GiB, 500MB or a number of bytes"))
}
