use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use depot_server::ServerOptions;

use crate::cli::ServeArgs;
use crate::printer::Printer;

const DEFAULT_LISTEN: &str = "127.0.0.1:7070";
const DEFAULT_DATA: &str = "depot-data";

/// `--config FILE`: the flags' settings, by the same names. Unknown keys are refused, so that a
/// misspelt setting is an error rather than silently ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data: Option<PathBuf>,
    metadata: Option<String>,
    blobs: Option<String>,
    redirect_downloads: Option<bool>,
    #[serde(default, deserialize_with = "size")]
    max_blob_size: Option<u64>,
    max_versions: Option<u64>,
    gc_grace: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    header_timeout: Option<String>,
    max_connections: Option<usize>,
    secrets_key: Option<PathBuf>,
}

/// A size in the settings file: a number of bytes, or a string such as `"10 GiB"`.
fn size<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match <Option<Size> as serde::Deserialize>::deserialize(deserializer)? {
        None => Ok(None),
        Some(Size::Bytes(bytes)) => Ok(Some(bytes)),
        Some(Size::Text(text)) => crate::cli::parse_bytes(&text).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Every setting, resolved: flags (and their environment variables) over the file over defaults.
#[derive(Debug)]
struct Settings {
    listen: String,
    data: PathBuf,
    metadata: Option<String>,
    /// The blob store's URL; files under DATA/blobs when `None`.
    blobs: Option<String>,
    options: ServerOptions,
    tls: Option<(PathBuf, PathBuf)>,
}

impl Settings {
    fn resolve(args: ServeArgs) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => read_settings(path)?,
            None => FileSettings::default(),
        };
        // Relative paths in the file are relative to the file, not to wherever depot was started.
        let base = args.config.as_deref().and_then(Path::parent).unwrap_or(Path::new(""));
        let from_file = |path: Option<PathBuf>| path.map(|p| base.join(p));
        let gc_grace = match (args.gc_grace, &file.gc_grace) {
            (Some(grace), _) => Some(grace),
            (None, Some(text)) => Some(
                depot_release::config::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("gc_grace in {}: {e}", display(&args.config)))?,
            ),
            (None, None) => None,
        };
        let header_timeout = match (args.header_timeout, &file.header_timeout) {
            (Some(timeout), _) => Some(timeout),
            (None, Some(text)) => Some(
                depot_release::config::parse_duration(text)
                    .map_err(|e| anyhow::anyhow!("header_timeout in {}: {e}", display(&args.config)))?,
            ),
            (None, None) => None,
        };
        let tls = match (args.tls_cert.or(from_file(file.tls_cert)), args.tls_key.or(from_file(file.tls_key))) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => anyhow::bail!(
                "TLS needs both a certificate and a key: set tls_cert and tls_key in {} (or --tls-cert and --tls-key)",
                display(&args.config)
            ),
        };
        let defaults = ServerOptions::default();
        let options = ServerOptions {
            tls: tls.is_some(),
            max_blob_size: args.max_blob_size.or(file.max_blob_size).unwrap_or(defaults.max_blob_size),
            max_versions: args.max_versions.or(file.max_versions).unwrap_or(defaults.max_versions),
            gc_grace: gc_grace.unwrap_or(defaults.gc_grace),
            redirect_downloads: args.redirect_downloads
                || file.redirect_downloads.unwrap_or(defaults.redirect_downloads),
            header_timeout: header_timeout.unwrap_or(defaults.header_timeout),
            max_connections: args.max_connections.or(file.max_connections).unwrap_or_else(default_max_connections),
            secrets_key: args.secrets_key.or(from_file(file.secrets_key)),
            ..defaults
        };
        Ok(Settings {
            listen: args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            data: args.data.or(from_file(file.data)).unwrap_or_else(|| PathBuf::from(DEFAULT_DATA)),
            metadata: args.metadata.or(file.metadata),
            blobs: args.blobs.or(file.blobs),
            options,
            tls,
        })
    }
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does): a shell's 1,024 would
/// otherwise cap the connections a registry serves far below what the system allows.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(hard), maximum: Some(hard) });
    }
}

/// Each connection may hold a file open besides its socket (an upload, a download), and the
/// registry keeps 128 descriptors for its database, its logs and its listener: so half of what
/// the open-file limit leaves. With the unit's `LimitNOFILE=65536`, 32,704.
fn default_max_connections() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current.unwrap_or(1 << 20);
    (limit.saturating_sub(128) / 2).max(16) as usize
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_deref().map_or_else(|| "the settings file".to_owned(), |p| p.display().to_string())
}

fn read_settings(path: &Path) -> anyhow::Result<FileSettings> {
    let text = fs_err::read_to_string(path).context("cannot read the settings file")?;
    toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a valid settings file: {}", path.display(), e.message()))
}

pub fn run(args: ServeArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log_level).map_err(|e| {
        crate::printer::hinted(
            format!("--log-level `{}` is not a log filter: {e}", args.log_level),
            "give a level (error, warn, info, debug, trace) or directives such as `info,depot_server=debug`",
        )
    })?;
    // Colour only for a person at a terminal: not in a file, a pipe or the journal.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    raise_open_file_limit();
    let ssh = args.ssh_listen.clone().map(|listen| (listen, args.ssh_max_sessions, args.ssh_lifetime));
    let settings = Settings::resolve(args)?;
    // Checked before anything is created or bound: a wrong file fails the start, not a handshake.
    let tls = match &settings.tls {
        Some((cert, key)) => Some(depot_server::tls::load(cert, key)?),
        None => None,
    };
    // The data directory holds the database and the blobs, hence every stage's environment
    // values: 0700, and an older one tightened (with a warning).
    depot_store::create_private_dir(&settings.data)?;
    let data = fs_err::canonicalize(&settings.data)?;
    let (state, first_start) =
        depot_server::open(&data, settings.metadata.as_deref(), settings.blobs.as_deref(), settings.options)
            .with_context(|| format!("failed to open the registry in {}", data.display()))?;
    let blobs = state.registry.blobs().describe();
    if state.options.redirect_downloads && !state.registry.blobs().can_presign() {
        return Err(crate::printer::hinted(
            format!("--redirect-downloads needs blobs in an S3-compatible bucket, not {blobs}"),
            "pass --blobs s3://BUCKET?endpoint=URL&region=REGION (or `blobs` in the settings file), or drop --redirect-downloads",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Err(e) = runtime.block_on(depot_server::check_storage(&state)) {
        return Err(crate::printer::hinted(
            format!("the registry cannot reach its blob store: {e}"),
            "check that the object store runs at that endpoint, that the bucket exists, and the AWS credentials \
             (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and ~/.aws/credentials)",
        ));
    }
    if let Some(first) = first_start {
        printer.message(format!(
            "Created the admin token (shown once; also in {}):\n  {}",
            first.token_file.display(),
            first.admin_token
        ));
    }
    let listener = bind(&settings.listen).with_context(|| format!("failed to listen on {}", settings.listen))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    printer.message(format!(
        "depot registry listening on {scheme}://{address} (data in {}, metadata in {}, blobs: {blobs})",
        data.display(),
        state.registry.engine()
    ));
    if tls.is_none() && !address.ip().is_loopback() {
        printer.message(format!(
            "warning: listening on {address} without TLS: tokens and environment values cross the network in the \
             clear\nhint: give --tls-cert and --tls-key, or listen on 127.0.0.1 behind a proxy that speaks TLS"
        ));
    }
    if let Some((listen, max_sessions, lifetime)) = ssh {
        let options = depot_ssh::SshOptions {
            data: data.clone(),
            max_sessions: max_sessions.unwrap_or(64),
            // As long as an HTTP client has to send its request header.
            handshake_timeout: state.options.header_timeout,
            lifetime: lifetime.unwrap_or(std::time::Duration::from_secs(30 * 60)),
        };
        let listener = bind(&listen).with_context(|| format!("failed to listen for SSH on {listen}"))?;
        listener.set_nonblocking(true)?;
        let server = {
            let _runtime = runtime.enter();
            depot_ssh::start(state.registry.clone(), tokio::net::TcpListener::from_std(listener)?, options)?
        };
        printer.message(format!("SSH console on {} (host key {})", server.address, server.fingerprint));
    }
    let shutdown = {
        let _runtime = runtime.enter();
        shutdown_signal()?
    };
    // Type=notify: systemd considers the registry started now (no-op outside systemd).
    notify(sd_notify::NotifyState::Ready);
    runtime.block_on(depot_server::serve(listener, state, tls, shutdown))?;
    printer.message("depot registry stopped");
    Ok(ExitCode::SUCCESS)
}

/// Ctrl-C or SIGTERM. The handlers are installed when this is called (in the runtime), so that a
/// signal sent as soon as the registry says it is ready is not lost to the default action.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let (mut terminate, mut interrupt) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        notify(sd_notify::NotifyState::Stopping);
    })
}

/// Tells systemd (a `Type=notify` unit) where the process stands; nothing outside systemd. A
/// failure is only said: the unit's start timeout then tells the rest.
fn notify(state: sd_notify::NotifyState<'_>) {
    if let Err(error) = sd_notify::notify(false, &[state]) {
        eprintln!("depot registry: could not notify systemd: {error}");
    }
}

/// The listening socket's accept queue. std's `TcpListener::bind` asks for 128, which a burst
/// of connections (agents reconnecting after a restart, a flood) overflows; the kernel then
/// drops SYNs and each client waits a second to retry. The kernel caps this at
/// `net.core.somaxconn` (4,096 by default).
const ACCEPT_QUEUE: i32 = 4096;

/// Binds `listen` (`host:port`) as std does (the first address that binds, `SO_REUSEADDR`), with
/// an accept queue of [`ACCEPT_QUEUE`].
fn bind(listen: &str) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut failed = None;
    for address in std::net::ToSocketAddrs::to_socket_addrs(listen)? {
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        match socket.bind(&address.into()) {
            Ok(()) => {
                socket.listen(ACCEPT_QUEUE)?;
                return Ok(socket.into());
            }
            Err(e) => failed = Some(e),
        }
    }
    Err(failed
        .unwrap_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the address resolves to nothing")))
}
