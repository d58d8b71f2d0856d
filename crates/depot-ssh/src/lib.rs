//! `depot serve --ssh-listen`: seed 001's own interface over the registry service, so that teams
//! can point `deployctl`, `ssh`, `sftp` and seed 001's agents at depot unchanged. Public-key auth
//! only, with the keys the registry keeps (`depot key`). User `deploy-agent` is an agent session:
//! SFTP reading `configs/` and `files/` (see [`sftp::Tree`]), nothing else. Any other user is an
//! operator session: console commands by `exec` or an interactive `shell` ([`console`]), and
//! SFTP uploads ([`sftp::Uploads`]).
//!
//! Limits: a connection must authenticate within the handshake timeout; its lifetime ends it,
//! but never while an upload is in progress; sessions beyond the cap are closed as they arrive.

pub mod console;
mod seed;
mod session;
mod sftp;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use depot_registry::Registry;
use russh::keys::ssh_key::{HashAlg, LineEnding, PrivateKey};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;

pub use seed::config_hash;

/// How the SSH front-end runs.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// The registry's data directory: the host key and the upload spool live there.
    pub data: PathBuf,
    /// Sessions open at once; more are closed as they arrive.
    pub max_sessions: usize,
    /// Time to authenticate, from the connection's opening.
    pub handshake_timeout: Duration,
    /// A connection's longest life; one with an upload in progress lives until it ends.
    pub lifetime: Duration,
}

/// A running SSH front-end.
pub struct SshServer {
    pub address: SocketAddr,
    /// The host key's `SHA256:…` fingerprint, which seed 001's agents pin.
    pub fingerprint: String,
}

/// The host key under `data` (`ssh_host_ed25519_key`, 0600), generated on the first start.
pub fn host_key(data: &Path) -> anyhow::Result<PrivateKey> {
    let path = data.join("ssh_host_ed25519_key");
    match std::fs::read_to_string(&path) {
        Ok(text) => PrivateKey::from_openssh(text.trim())
            .with_context(|| format!("{} is not an OpenSSH private key", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed: [u8; 32] = rand::random();
            let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed));
            let text = key.to_openssh(LineEnding::LF).context("cannot encode the host key")?;
            write_private(&path, text.as_bytes())?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the host key {}", path.display())),
    }
}

/// Writes `bytes` to `path` whole (mode 0600): under a temporary name, synced, then linked in.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&temp);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&temp, path);
    let _ = std::fs::remove_file(&temp);
    linked.with_context(|| format!("cannot write {}", path.display()))
}

/// Starts serving on `listener`; the task runs until the process ends.
pub fn start(registry: Registry, listener: TcpListener, options: SshOptions) -> anyhow::Result<SshServer> {
    let key = host_key(&options.data)?;
    let fingerprint = key.public_key().fingerprint(HashAlg::Sha256).to_string();
    let spool = options.data.join("ssh-uploads");
    std::fs::create_dir_all(&spool)?;
    std::fs::set_permissions(&spool, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    // Uploads a crash interrupted: never acknowledged, so nothing depends on them.
    for entry in std::fs::read_dir(&spool)?.flatten() {
        let _ = std::fs::remove_file(entry.path());
    }
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        methods: russh::MethodSet::from(&[russh::MethodKind::PublicKey][..]),
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: Some(Duration::from_secs(600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        max_auth_attempts: 6,
        nodelay: true,
        ..Default::default()
    });
    let address = listener.local_addr()?;
    let sessions = Arc::new(tokio::sync::Semaphore::new(options.max_sessions));
    let unauthenticated = Arc::new(Unauthenticated::default());
    tokio::spawn(async move {
        loop {
            let (socket, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!("SSH accept: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // One address may hold only a few connections that have not authenticated yet, so
            // that silent clients from one place cannot take every session.
            let Some(pending) = unauthenticated.admit(peer.ip()) else {
                tracing::warn!(%peer, "SSH connection refused: {MAX_UNAUTHENTICATED_PER_ADDRESS} from this address have not authenticated yet");
                drop(socket);
                continue;
            };
            let Ok(permit) = sessions.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "SSH session refused: {} sessions are open (--ssh-max-sessions)", options.max_sessions);
                drop(socket);
                continue;
            };
            let _ = socket.set_nodelay(true);
            let (config, registry, options, spool) = (config.clone(), registry.clone(), options.clone(), spool.clone());
            tokio::spawn(async move {
                connection(config, registry, options, spool, socket, peer, pending).await;
                drop(permit);
            });
        }
    });
    Ok(SshServer { address, fingerprint })
}

async fn connection(
    config: Arc<russh::server::Config>,
    registry: Registry,
    options: SshOptions,
    spool: PathBuf,
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    pending: Pending,
) {
    let authenticated = Arc::new(AtomicBool::new(false));
    let uploads = Arc::new(Activity::default());
    let stream = Deadline {
        inner: socket,
        deadline: Box::pin(tokio::time::sleep(options.handshake_timeout)),
        authenticated: authenticated.clone(),
    };
    let handler = session::Session::new(registry, spool, peer, authenticated, uploads.clone(), Arc::new(pending));
    let running = match russh::server::run_stream(config, stream, handler).await {
        Ok(running) => running,
        Err(error) => {
            tracing::debug!(%peer, "SSH session did not start: {error}");
            return;
        }
    };
    let handle = running.handle();
    let lifetime = async {
        tokio::time::sleep(options.lifetime).await;
        // An upload in progress is never cut: the lifetime waits for it, as long as it moves.
        while uploads.busy() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    tokio::select! {
        ended = running => {
            if let Err(error) = ended {
                tracing::debug!(%peer, "SSH session ended: {error}");
            }
        }
        () = lifetime => {
            tracing::info!(%peer, "SSH connection reached its lifetime ({:?}); closing it", options.lifetime);
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "connection lifetime reached".to_owned(), "en".to_owned())
                .await;
        }
    }
}

/// Connections from one address that may be waiting to authenticate at once.
const MAX_UNAUTHENTICATED_PER_ADDRESS: usize = 10;

/// Connections that have not authenticated yet, by address.
#[derive(Debug, Default)]
struct Unauthenticated {
    counts: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

impl Unauthenticated {
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<Pending> {
        let mut counts = self.counts.lock().expect("the counts lock is never poisoned");
        let count = counts.entry(ip).or_default();
        if *count >= MAX_UNAUTHENTICATED_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(Pending { counts: self.clone(), ip, done: AtomicBool::new(false) })
    }
}

/// One connection not authenticated yet: released when it authenticates or ends.
#[derive(Debug)]
pub struct Pending {
    counts: Arc<Unauthenticated>,
    ip: std::net::IpAddr,
    done: AtomicBool,
}

impl Pending {
    pub fn release(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut counts = self.counts.counts.lock().expect("the counts lock is never poisoned");
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.release();
    }
}

/// The uploads of one connection: how many are open, and when one last received data.
#[derive(Debug, Default)]
pub struct Activity {
    open: AtomicUsize,
    /// Seconds since the Unix epoch of the last write.
    last: std::sync::atomic::AtomicU64,
}

/// An open upload that received nothing for this long no longer holds its connection open.
const IDLE_UPLOAD: Duration = Duration::from_secs(30);

impl Activity {
    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
    }

    pub fn begin(&self) {
        self.open.fetch_add(1, Ordering::SeqCst);
        self.touch();
    }

    pub fn touch(&self) {
        self.last.store(Self::now(), Ordering::SeqCst);
    }

    pub fn end(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether an upload is open and received data lately.
    fn busy(&self) -> bool {
        self.open.load(Ordering::SeqCst) > 0
            && Self::now().saturating_sub(self.last.load(Ordering::SeqCst)) < IDLE_UPLOAD.as_secs()
    }
}

/// A socket whose reads fail once the handshake timeout passes before authentication: a client
/// that never authenticates (or stalls in key exchange) holds no session for long.
struct Deadline<S> {
    inner: S,
    deadline: Pin<Box<tokio::time::Sleep>>,
    authenticated: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadline<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.authenticated.load(Ordering::SeqCst) && self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no authentication in time")));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadline<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
