//! Real servers for depot's tests: a PostgreSQL cluster made by `initdb` in a temporary directory
//! and started on a free loopback port, once per test process, with a fresh database per test.
//! A watchdog stops the server when the test process ends, however it ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL server, shared by the tests of one process.
pub struct Postgres {
    port: u16,
    _dir: tempfile::TempDir,
}

static SERVER: OnceLock<Postgres> = OnceLock::new();
static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Postgres {
    /// The server of this process, started on first use. Panics, saying what to install, when
    /// PostgreSQL is not on the machine: a test that needs it must not pass without it.
    pub fn shared() -> &'static Postgres {
        SERVER.get_or_init(Postgres::start)
    }

    /// A new, empty database on the shared server; returns its URL.
    pub fn fresh_database() -> String {
        let server = Postgres::shared();
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

    fn start() -> Postgres {
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
        let port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            dir.path().display()
        );
        let start = format!(
            "{} -D {} -l {} -o '{options}' -w start",
            bin.join("pg_ctl").display(),
            data.display(),
            dir.path().join("log").display()
        );
        run(&mut as_owner(root, &start), "pg_ctl start");
        watchdog(root, &bin.join("pg_ctl"), &data);
        let server = Postgres { port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(30);
        while postgres::Client::connect(&server.url("postgres"), postgres::NoTls).is_err() {
            assert!(Instant::now() < deadline, "the test PostgreSQL server did not accept connections");
            std::thread::sleep(Duration::from_millis(100));
        }
        server
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
