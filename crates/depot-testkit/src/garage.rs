//! A real S3-compatible object store for tests: a one-node Garage (`replication_factor = 1`,
//! SQLite metadata) in a temporary directory, on free loopback ports, with one access key. Each
//! test takes a bucket of its own with [`Garage::bucket`].
//!
//! [`Garage::shared`] starts one per test process; it stops when the process exits, however it
//! exits: Garage runs under a small shell that kills it when its standard input, a pipe this
//! process holds, closes, and then deletes its directory. A [`Garage::start`]ed one also stops
//! when dropped.
//!

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The region Garage answers for.
pub const REGION: &str = "garage";

/// A running Garage.
pub struct Garage {
    dir: tempfile::TempDir,
    config: PathBuf,
    binary: PathBuf,
    child: Child,
    /// The S3 API: `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

/// A bucket of its own for one test.
pub struct Bucket {
    pub name: String,
    pub endpoint: String,
    pub key_id: String,
    pub secret: String,
}

impl Bucket {
    /// The URL `depot serve --blobs` takes.
    pub fn url(&self) -> String {
        format!("s3://{}?endpoint={}&region={REGION}", self.name, self.endpoint)
    }

    /// The AWS environment variables that give the key.
    pub fn env(&self) -> [(&'static str, String); 2] {
        [("AWS_ACCESS_KEY_ID", self.key_id.clone()), ("AWS_SECRET_ACCESS_KEY", self.secret.clone())]
    }
}

static SHARED: OnceLock<Garage> = OnceLock::new();
static BUCKETS: AtomicU64 = AtomicU64::new(0);

impl Garage {
    /// One Garage for the whole test process, started on first use.
    pub fn shared() -> &'static Garage {
        SHARED.get_or_init(Garage::start)
    }

    /// Starts a Garage and waits until it takes requests.
    pub fn start() -> Garage {
        let binary = garage_binary();
        let dir = tempfile::tempdir().expect("a temporary directory for Garage");
        // Hold the ports until Garage is about to bind them, so that two Garages do not pick the same.
        let listeners: Vec<TcpListener> =
            (0..2).map(|_| TcpListener::bind("127.0.0.1:0").expect("a free loopback port")).collect();
        let [rpc, s3] = [0, 1].map(|i| listeners[i].local_addr().unwrap().port());
        let config = dir.path().join("garage.toml");
        fs_write(
            &config,
            &format!(
                r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"
"#,
                dir = dir.path().display(),
                secret = random_hex(32),
            ),
        );
        let log = dir.path().join("garage.log");
        drop(listeners);
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -c "$1" server >"$2" 2>&1 & server=$!; read -r line; kill $server; wait $server; rm -rf "$3""#)
            .arg(&binary)
            .arg(&config)
            .arg(&log)
            .arg(dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut garage = Garage {
            dir,
            config,
            binary,
            child,
            endpoint: format!("http://127.0.0.1:{s3}"),
            key_id: format!("GK{}", random_hex(12)),
            secret: random_hex(32),
        };
        garage.wait_until_up();
        let node = garage.cli(&["node", "id", "-q"]);
        let node = node.trim().split('@').next().unwrap_or_default().to_owned();
        garage.cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node]);
        garage.cli(&["layout", "apply", "--version", "1"]);
        garage.cli(&["key", "import", "--yes", "-n", "depot-tests", &garage.key_id, &garage.secret]);
        garage
    }

    /// A new empty bucket that the key may read and write.
    pub fn bucket(&self) -> Bucket {
        let name = format!("depot-{}-{}", std::process::id(), BUCKETS.fetch_add(1, Ordering::Relaxed));
        // Right after the layout is applied, Garage may still refuse writes for a moment.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_cli(&["bucket", "create", &name]) {
                Ok(_) => break,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e}"),
            }
        }
        self.cli(&["bucket", "allow", "--read", "--write", "--owner", &name, "--key", "depot-tests"]);
        Bucket { name, endpoint: self.endpoint.clone(), key_id: self.key_id.clone(), secret: self.secret.clone() }
    }

    /// The directory Garage keeps its data and log in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn wait_until_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_cli(&["status"]) {
                Ok(_) => return,
                Err(e) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("Garage exited ({status}):\n{}", self.log());
                    }
                    assert!(Instant::now() < deadline, "Garage did not start within 30 s: {e}\n{}", self.log());
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("garage.log")).unwrap_or_default()
    }

    /// `garage -c CONFIG ARGS`, which must succeed; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args).unwrap_or_else(|e| panic!("{e}\nGarage's log:\n{}", self.log()))
    }

    fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(format!(
                "`garage {}` failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for Garage {
    fn drop(&mut self) {
        // Closing the shell's standard input makes it stop Garage and wait for it.
        if let Some(mut stdin) = self.child.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

/// The `garage` binary: `$GARAGE_BIN`, else on the PATH, else in ~/.cargo/bin. A test that needs
/// it fails, rather than skipping, when it is missing.
fn garage_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("GARAGE_BIN") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>());
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo| cargo.join("bin"));
    on_path.chain(cargo_bin).map(|dir| dir.join("garage")).find(|path| path.is_file()).unwrap_or_else(|| {
        panic!(
            "the S3 tests need Garage, an S3-compatible object store, and `garage` is neither on the PATH nor in \
             ~/.cargo/bin\nhint: install it with `cargo install garage --locked` (about 10 minutes; .ci/run does it), \
             or point GARAGE_BIN at the binary"
        )
    })
}

fn random_hex(bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rand::random::<u8>())).collect()
}

fn fs_write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
