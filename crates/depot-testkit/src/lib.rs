//! Real servers for depot's tests: a PostgreSQL cluster made by `initdb` in a temporary directory
//! and started on a free loopback port, once per test process, with a fresh database per test
//! (a watchdog stops it when the test process ends, however it ends), and a one-node Garage, the
//! S3-compatible object store, with a bucket per test ([`garage`]).

pub mod garage;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL server: the one the tests of a process share ([`Postgres::shared`]),
/// or one of a test's own ([`Postgres::start`]) that it may stop and start again.
pub struct Postgres {
    port: u16,
    /// Whether a commit is on disk before it is acknowledged (PostgreSQL's defaults), as it
    /// must be for a server that a test stops abruptly; the shared server skips that for speed.
    durable: bool,
    bin: PathBuf,
    root: bool,
    dir: tempfile::TempDir,
}

static SERVER: OnceLock<Postgres> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Postgres {
    /// The server of this process, started on first use. Panics, saying what to install, when
    /// PostgreSQL is not on the machine: a test that needs it must not pass without it.
    pub fn shared() -> &'static Postgres {
        SERVER.get_or_init(|| Postgres::start_with(false))
    }

    /// A new, empty database on the shared server; returns its URL.
    pub fn fresh_database() -> String {
        Postgres::shared().database()
    }

    /// A new, empty database on this server; returns its URL.
    pub fn database(&self) -> String {
        let server = self;
        let name = format!("depot_test_{}_{}", std::process::id(), DATABASES.fetch_add(1, Ordering::Relaxed));
        let mut client = postgres::Client::connect(&server.url("postgres"), postgres::NoTls)
            .expect("connect to the test PostgreSQL server");
        client.batch_execute(&format!("CREATE DATABASE {name}")).expect("create a test database");
        server.url(&name)
    }

    /// The URL of `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://depot@127.0.0.1:{}/{database}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`), as a crash or a lost network
    /// would look to its clients.
    pub fn stop(&self) {
        let stop = format!("{} -D {} -m immediate stop", self.bin.join("pg_ctl").display(), self.data().display());
        run(&mut as_owner(self.root, &stop), "pg_ctl stop");
    }

    /// Starts a stopped server again, on the same port with the same data.
    pub fn restart(&self) {
        self.pg_ctl_start();
        self.wait_for_connections();
    }

    /// Turns TLS on with this certificate and key (PEM) and refuses every connection that is not
    /// TLS (`hostssl` only in pg_hba.conf), then restarts the server.
    pub fn require_tls(&self, cert_pem: &str, key_pem: &str) {
        let data = self.data();
        std::fs::write(data.join("server.crt"), cert_pem).expect("write server.crt");
        std::fs::write(data.join("server.key"), key_pem).expect("write server.key");
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read postgresql.conf");
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).expect("write postgresql.conf");
        let hba = data.join("pg_hba.conf");
        let rules: String = std::fs::read_to_string(&hba)
            .expect("read pg_hba.conf")
            .lines()
            .map(|line| match line.strip_prefix("host ") {
                Some(rest) => format!("hostssl {rest}\n"),
                None => format!("{line}\n"),
            })
            .collect();
        std::fs::write(&hba, rules).expect("write pg_hba.conf");
        let files = [data.join("server.crt"), data.join("server.key"), conf, hba];
        if self.root {
            run(Command::new("chown").arg("postgres:postgres").args(&files), "chown the TLS files");
        }
        run(Command::new("chmod").arg("600").arg(data.join("server.key")), "chmod server.key");
        self.stop();
        // `pg_ctl -w` waits until the server accepts connections: over TLS only, from now on.
        self.pg_ctl_start();
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) {
        let fast = if self.durable { "" } else { "-c fsync=off -c synchronous_commit=off -c full_page_writes=off" };
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c max_connections=300 {fast}",
            self.port,
            self.dir.path().display()
        );
        let start = format!(
            "{} -D {} -l {} -o '{options}' -w start",
            self.bin.join("pg_ctl").display(),
            self.data().display(),
            self.dir.path().join("log").display()
        );
        run(&mut as_owner(self.root, &start), "pg_ctl start");
    }

    fn wait_for_connections(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres::Client::connect(&self.url("postgres"), postgres::NoTls).is_err() {
            assert!(Instant::now() < deadline, "the test PostgreSQL server did not accept connections");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A server of the caller's own, in a temporary directory on a free loopback port, stopped
    /// when the process ends. Panics, saying what to install, when PostgreSQL is not on the
    /// machine: a test that needs it must not pass without it.
    pub fn start() -> Postgres {
        Postgres::start_with(true)
    }

    fn start_with(durable: bool) -> Postgres {
        let bin = binaries().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb and pg_ctl were not found (PATH, /usr/lib/postgresql/*/bin): \
                 install them with `apt-get install postgresql` (.ci/run does)"
            )
        });
        let dir = tempfile::Builder::new().prefix("depot-pg-").tempdir().expect("a temporary directory");
        let data = dir.path().join("data");
        let root = is_root();
        if root {
            // initdb refuses to run as root: the cluster belongs to the `postgres` user.
            run(Command::new("chown").arg("postgres:postgres").arg(dir.path()), "chown the cluster directory");
        }
        let initdb = format!(
            "{} -D {} -U depot --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync",
            bin.join("initdb").display(),
            data.display()
        );
        run(&mut as_owner(root, &initdb), "initdb");
        let server = Postgres { port: free_port(), durable, bin, root, dir };
        server.pg_ctl_start();
        watchdog(root, &server.bin.join("pg_ctl"), &server.data());
        server.wait_for_connections();
        server
    }
}

impl Drop for Postgres {
    /// A test's own server stops with it (the shared one, a static, stops with the process).
    fn drop(&mut self) {
        let stop = format!("{} -D {} -m immediate stop", self.bin.join("pg_ctl").display(), self.data().display());
        let _ = as_owner(self.root, &stop).output();
    }
}

/// Stops the server when this process ends: a shell that waits for our pid to go.
#[expect(clippy::zombie_processes, reason = "the watchdog outlives the test process by design")]
fn watchdog(root: bool, pg_ctl: &Path, data: &Path) {
    let stop = format!("{} -D {} -m immediate stop", pg_ctl.display(), data.display());
    let stop = if root { format!("runuser -u postgres -- {stop}") } else { stop };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = data.parent().expect("the data directory has a parent").display()
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the PostgreSQL watchdog");
}

fn binaries() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect::<Vec<_>>()).unwrap_or_default();
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path().join("bin")).collect())
        .unwrap_or_default();
    versions.sort();
    versions.reverse();
    on_path.into_iter().chain(versions).find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn as_owner(root: bool, command: &str) -> Command {
    let mut shell = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c"]);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c");
        c
    };
    shell.arg(command);
    shell
}

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("a local address").port()
}
