//! Seed 001's SSH interface, driven by OpenSSH's own `ssh` and `sftp`: every console command
//! with the seed's output and errors, uploads then `addver` (across a restart), the agents'
//! read-only tree, and who may do what.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::registry::Registry;

/// A registry with `--ssh-listen 127.0.0.1:0`, and the SSH port it printed.
fn start(ctx: &TestContext) -> (Registry, u16) {
    start_with(ctx, &[])
}

/// The same, with more flags for `depot serve`.
fn start_with(ctx: &TestContext, extra: &[&str]) -> (Registry, u16) {
    let mut flags = vec!["--ssh-listen", "127.0.0.1:0"];
    flags.extend(extra);
    let registry = Registry::start(ctx, &flags);
    let started = Instant::now();
    loop {
        if let Some(rest) = registry.log().split("SSH console on 127.0.0.1:").nth(1) {
            let port = rest.split_whitespace().next().unwrap().parse().unwrap();
            return (registry, port);
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no SSH line: {}", registry.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `ssh -T` (a console with no terminal) as USER, its standard streams piped.
fn spawn_console(port: u16, key: &Path, user: &str) -> std::process::Child {
    Command::new("ssh")
        .args(options(key))
        .args(["-T", "-p", &port.to_string(), &format!("{user}@127.0.0.1")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// `ssh-keygen -t ed25519` at keys/NAME (comment NAME@test), registered with `depot key add`.
fn key(ctx: &TestContext, registry: &Registry, name: &str, role: &str, pattern: Option<&str>) -> PathBuf {
    let path = ctx.path(&format!("keys/{name}"));
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", &format!("{name}@test"), "-f"])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
    let public = format!("{}.pub", path.display());
    let mut args = vec!["key", "add", name, "--role", role, "--public-key", &public];
    if let Some(pattern) = pattern {
        args.extend(["--config", pattern]);
    }
    registry.run(ctx, &args).success();
    path
}

fn options(key: &Path) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-i",
        key.to_str().unwrap(),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `ssh -p PORT USER@127.0.0.1 COMMAND`.
fn ssh(port: u16, key: &Path, user: &str, command: &str) -> Run {
    let output = Command::new("ssh")
        .args(options(key))
        .args(["-p", &port.to_string(), &format!("{user}@127.0.0.1"), command])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    Run::from(output)
}

/// `sftp -b -` with `batch` on its standard input; `-b` stops at the first command that fails.
fn sftp(port: u16, key: &Path, user: &str, batch: &str, dir: &Path) -> Run {
    let mut child = Command::new("sftp")
        .args(options(key))
        .args(["-P", &port.to_string(), "-b", "-", &format!("{user}@127.0.0.1")])
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(batch.as_bytes()).unwrap();
    Run::from(child.wait_with_output().unwrap())
}

/// A .tar.gz made by GNU tar holding `name` with `text`; its path and sha256.
fn archive(ctx: &TestContext, name: &str, text: &str) -> (PathBuf, String) {
    let dir = ctx.tree(&format!("src-{name}"), &[(name, text)]);
    let path = ctx.path(&format!("{name}.tar.gz"));
    let status = Command::new("tar").arg("czf").arg(&path).arg("-C").arg(&dir).arg(name).status().unwrap();
    assert!(status.success());
    let hex: String =
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(fs_err::read(&path).unwrap()))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
    (path, hex)
}

fn upload(ctx: &TestContext, port: u16, key: &Path, file: &Path) {
    let put = sftp(port, key, "ops", &format!("put {}\n", file.display()), &ctx.path(""));
    assert_eq!(put.code, 0, "sftp put: {}{}", put.stdout, put.stderr);
}

#[test]
fn the_console_speaks_seed_001s_commands_with_its_output_and_errors() {
    let ctx = TestContext::new();
    let (registry, port) = start(&ctx);
    let alice = key(&ctx, &registry, "alice", "operator", None);
    let run = |command: &str| ssh(port, &alice, "alice", command);
    let (code_v1, code_v1_hash) = archive(&ctx, "program.txt", "program body v1\n");
    let (config_v1, config_v1_hash) = archive(&ctx, "config.txt", "config v1\n");
    upload(&ctx, port, &alice, &code_v1);
    upload(&ctx, port, &alice, &config_v1);

    let added = run(&format!("addver -name code -version v01 -hash {code_v1_hash}"));
    assert_eq!((added.code, added.stdout.as_str()), (0, ""));
    run(&format!("addver -name=config -version=v01 -hash={config_v1_hash}")).success();
    let again = run(&format!("addver -name code -version v01 -hash {code_v1_hash}"));
    assert_eq!((again.code, again.stdout.as_str()), (1, "version \"v01\" already exists\n"));
    let missing = run(&format!("addver -name code -version v02 -hash {}", "ab".repeat(32)));
    assert_eq!((missing.code, missing.stdout.as_str()), (1, "no uploaded file with given hash found\n"));

    assert_eq!(run("components").success().stdout, "code\nconfig\n");
    let showcomp = run("showcomp -name config").success().stdout;
    let line = showcomp.lines().next().unwrap();
    assert!(line.ends_with("   v01   ") && line.len() == "2026-12-06T00:00:00Z   v01   ".len(), "{showcomp:?}");
    let unknown = run("showcomp -name nope");
    assert_eq!((unknown.code, unknown.stdout.as_str()), (1, "\"nope\" component not found\n"), "the seed's hole, said");

    let duplicate = run("addconf -name project1 -layer code:v01 -layer code:v01");
    assert_eq!((duplicate.code, duplicate.stdout.as_str()), (1, "duplicate component \"code\"\n"));
    run("addconf -name project1 -layer code:v01 -layer config:v01").success();
    assert_eq!(run("configurations").success().stdout, "project1\n");
    let showconf = run("showconf -name project1").success().stdout;
    let rows: Vec<&str> = showconf.lines().collect();
    assert_eq!(rows.len(), 2, "{showconf:?}");
    assert!(rows[0].starts_with("code     v01   20") && rows[0].ends_with("Z   "), "{showconf:?}");
    assert!(rows[1].starts_with("config   v01   20"), "{showconf:?}");
    let verbose = run("showconf -name project1 -v").success().stdout;
    let expected_hash = {
        let text = format!("{code_v1_hash}\n{config_v1_hash}\n");
        let digest = <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    assert!(verbose.starts_with("Name:\tproject1\nMtime:\t20"), "{verbose:?}");
    assert!(verbose.contains(&format!("\nHash:\t{expected_hash}\n\ncode     v01")), "the seed's hash: {verbose:?}");

    // A second version, then changeconf, bumpconf (its undo line, pasted back as it is).
    let (config_v2, config_v2_hash) = archive(&ctx, "config.txt", "config v2\n");
    upload(&ctx, port, &alice, &config_v2);
    run(&format!("addver -name config -version v02 -hash {config_v2_hash}")).success();
    let bumped = run("bumpconf -name project1 -component config").success().stdout;
    assert_eq!(bumped, "to roll back run:\n\tchangeconf -name=\"project1\" -component=\"config\" -version=\"v01\"\n");
    assert_eq!(run("bumpconf -name project1 -component config").success().stdout, "", "nothing changed");
    run(bumped.lines().nth(1).unwrap().trim()).success();
    assert!(run("showconf -name project1").success().stdout.contains("config   v01"));
    for (command, error) in [
        ("changeconf -name nope -component config -version v01", "configuration \"nope\" not found"),
        (
            "changeconf -name project1 -component other -version v01",
            "configuration has no layer for component \"other\"",
        ),
        (
            "changeconf -name project1 -component config -version v09",
            "no version \"v09\" for component \"config\" found",
        ),
        ("delver -name config -version v01", "version is used by configuration \"project1\""),
        ("delcomp -name code", "component is used by configuration \"project1\""),
        ("delcomp -name nope", "\"nope\" component not found"),
        ("delconf -name project1", "Run command with -force flag to confirm removal"),
        ("delconf -name nope -force", "\"nope\" configuration not found"),
        ("addver -name code -bogus 1", "flag provided but not defined: -bogus"),
        ("showconf -name", "flag needs an argument: -name"),
    ] {
        let refused = run(command);
        assert_eq!((refused.code, refused.stdout.as_str()), (1, format!("{error}\n").as_str()), "{command}");
    }
    // addconf on an existing name replaces it, as a new revision: the history keeps the old.
    run("addconf -name project1 -layer code:v01").success();
    assert!(!run("showconf -name project1").success().stdout.contains("config"));
    let history = registry.run(&ctx, &["config", "history", "project1", "--json"]).success().json();
    assert!(history.as_array().unwrap().len() >= 4, "{history}");
    assert!(history.to_string().contains("key:alice"), "the key's name in the history: {history}");
    run("delver -name config -version v02").success();
    run("delconf -name project1 -force").success();
    assert_eq!(run("configurations").success().stdout, "");
    run("delcomp -name config").success();
    assert_eq!(run("components").success().stdout, "code\n");
    let help = run("help").success().stdout;
    for command in
        ["addver", "addconf", "bumpconf", "changeconf", "showconf", "showcomp", "delver", "delcomp", "delconf"]
    {
        assert!(help.contains(command), "{help}");
    }

    // The interactive console: a prompt, a command, exit.
    let mut shell = Command::new("ssh")
        .args(options(&alice))
        .args(["-tt", "-p", &port.to_string(), "alice@127.0.0.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    shell.stdin.take().unwrap().write_all(b"components\rexit\r").unwrap();
    let output = shell.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("> components\r\ncode\r\n> "), "{text:?}");
}

#[test]
fn uploads_survive_a_restart_agents_read_only_their_tree_and_roles_hold() {
    let ctx = TestContext::new();
    let (registry, port) = start(&ctx);
    let alice = key(&ctx, &registry, "alice", "operator", None);
    let web = key(&ctx, &registry, "web-01", "agent", Some("web-*"));
    let viewer = key(&ctx, &registry, "auditor", "viewer", None);
    let (web_v1, web_hash) = archive(&ctx, "index.html", "web v1\n");
    let (db_v1, db_hash) = archive(&ctx, "schema.sql", "db v1\n");
    upload(&ctx, port, &alice, &web_v1);
    upload(&ctx, port, &alice, &db_v1);

    // A restart between upload and addver: the upload is kept.
    let mut registry = registry;
    registry.child.kill().unwrap();
    registry.child.wait().unwrap();
    let (registry, port) = start(&ctx);
    ssh(port, &alice, "alice", &format!("addver -name site -version v1 -hash {web_hash}")).success();
    ssh(port, &alice, "alice", &format!("addver -name db -version v1 -hash {db_hash}")).success();
    ssh(port, &alice, "alice", "addconf -name web-prod -layer site:v1").success();
    ssh(port, &alice, "alice", "addconf -name db-prod -layer db:v1").success();

    // The agent's tree: only what its pattern allows.
    let dir = ctx.path("agent");
    fs_err::create_dir_all(&dir).unwrap();
    let listing = sftp(port, &web, "deploy-agent", "ls configs\n", &dir);
    assert_eq!(listing.code, 0, "{}", listing.stderr);
    assert!(listing.stdout.contains("web-prod.json") && !listing.stdout.contains("db-prod"), "{}", listing.stdout);
    let got = sftp(port, &web, "deploy-agent", &format!("get configs/web-prod.json\nget files/{web_hash}\n"), &dir);
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(fs_err::read(dir.join(&web_hash)).unwrap(), fs_err::read(&web_v1).unwrap());
    let document: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.join("web-prod.json")).unwrap()).unwrap();
    assert_eq!(document["Name"], "web-prod");
    assert_eq!(document["Layers"][0]["File"], format!("files/{web_hash}"));
    assert_eq!(document["Layers"][0]["Version"], "v1");
    for (refused, why) in [
        (format!("get files/{db_hash}\n"), "not found"),
        ("get configs/db-prod.json\n".to_owned(), "not found"),
        (format!("put {}\n", web_v1.display()), "Permission denied"),
        ("mkdir x\n".to_owned(), "Permission denied"),
    ] {
        let run = sftp(port, &web, "deploy-agent", &refused, &dir);
        assert_ne!(run.code, 0, "{refused}: {}", run.stdout);
        assert!(run.stderr.contains(why), "{refused}: {}", run.stderr);
    }
    let exec = ssh(port, &web, "deploy-agent", "components");
    assert_eq!(exec.code, 1);
    assert!(exec.stdout.contains("run no command"), "{}", exec.stdout);
    // An agent key is an agent's only; an unknown key is nobody's.
    assert_eq!(ssh(port, &web, "ops", "components").code, 255);
    let stranger = ctx.path("keys/stranger");
    Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&stranger).status().unwrap();
    assert_eq!(ssh(port, &stranger, "ops", "components").code, 255);
    // A viewer reads, and writes nothing.
    assert_eq!(ssh(port, &viewer, "auditor", "components").success().stdout, "db\nsite\n");
    let refused = ssh(port, &viewer, "auditor", "addconf -name x -layer db:v1");
    assert_eq!(refused.code, 1);
    assert!(refused.stdout.contains("permission denied"), "{}", refused.stdout);
    let (other, _) = archive(&ctx, "other.txt", "other\n");
    let put = sftp(port, &viewer, "auditor", &format!("put {}\n", other.display()), &ctx.path(""));
    assert!(put.code != 0 && put.stderr.contains("Permission denied"), "refused at open: {}", put.stderr);
    // A revoked key is refused at once.
    registry.run(&ctx, &["key", "revoke", "alice"]).success();
    assert_eq!(ssh(port, &alice, "alice", "components").code, 255);
}

/// An agent written from seed 001's description alone (tests/it/fixtures/seed-agent.sh: shell
/// and sftp) converges on every change, made through the console or through HTTP.
#[test]
fn a_seed_001_agent_converges_on_changes_made_by_console_and_by_http() {
    let ctx = TestContext::new();
    let (registry, port) = start(&ctx);
    let alice = key(&ctx, &registry, "alice", "operator", None);
    let agent = key(&ctx, &registry, "host-1", "agent", Some("project1"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/fixtures/seed-agent.sh");
    let dir = ctx.path("host-1");
    let poll = || {
        let output = Command::new("bash")
            .arg(&script)
            .args([&port.to_string(), agent.to_str().unwrap(), "project1", dir.to_str().unwrap()])
            .output()
            .unwrap();
        let run = Run::from(output);
        assert_eq!(run.code, 0, "the seed agent: {}", run.stderr);
        run.stdout.trim().to_owned()
    };
    let current = |file: &str| fs_err::read_to_string(dir.join("current").join(file)).unwrap();

    let (code_v1, code_v1_hash) = archive(&ctx, "program.txt", "program body v1\n");
    let (config_v1, config_v1_hash) = archive(&ctx, "config.txt", "config v1\n");
    upload(&ctx, port, &alice, &code_v1);
    upload(&ctx, port, &alice, &config_v1);
    ssh(port, &alice, "alice", &format!("addver -name code -version v01 -hash {code_v1_hash}")).success();
    ssh(port, &alice, "alice", &format!("addver -name config -version v01 -hash {config_v1_hash}")).success();
    ssh(port, &alice, "alice", "addconf -name project1 -layer code:v01 -layer config:v01").success();
    assert!(poll().starts_with("deployed "));
    assert_eq!((current("program.txt"), current("config.txt")), ("program body v1\n".into(), "config v1\n".into()));
    assert_eq!(poll(), "unchanged");

    // Through the console: a new version of config.
    let (config_v2, config_v2_hash) = archive(&ctx, "config.txt", "config v2\n");
    upload(&ctx, port, &alice, &config_v2);
    ssh(port, &alice, "alice", &format!("addver -name config -version v02 -hash {config_v2_hash}")).success();
    ssh(port, &alice, "alice", "changeconf -name project1 -component config -version v02").success();
    assert!(poll().starts_with("deployed "));
    assert_eq!(current("config.txt"), "config v2\n");

    // Through HTTP: depot's own client, back to v01.
    registry.run(&ctx, &["config", "set", "project1", "config:v01"]).success();
    assert!(poll().starts_with("deployed "));
    assert_eq!(current("config.txt"), "config v1\n");
    // A label that changes nothing but the name keeps the seed's hash: nothing to do.
    ssh(port, &alice, "alice", &format!("addver -name config -version again -hash {config_v1_hash}")).success();
    ssh(port, &alice, "alice", "changeconf -name project1 -component config -version again").success();
    assert_eq!(poll(), "unchanged", "same content, same hash");
}

/// Keys come from authorized_keys files too (comments and blank lines, no options), never as
/// admins; a key revoked during a session stops at its next command; a console fed by a pipe
/// ends at its input's end; big files come whole.
#[test]
fn keys_import_revoke_mid_session_piped_consoles_and_big_files() {
    let ctx = TestContext::new();
    let (registry, port) = start(&ctx);
    let bob = ctx.path("keys/bob");
    fs_err::create_dir_all(bob.parent().unwrap()).unwrap();
    Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "bob@laptop", "-f"])
        .arg(&bob)
        .status()
        .unwrap();
    let public = fs_err::read_to_string(format!("{}.pub", bob.display())).unwrap();
    let file = ctx.path("operator.keys");
    fs_err::write(&file, format!("# the operators\n\n{public}")).unwrap();
    let file_arg = file.to_str().unwrap();
    let refused = registry.run(&ctx, &["key", "import", "--role", "admin", file_arg]).failure();
    assert!(refused.stderr.contains("operator, agent or viewer keys"), "{}", refused.stderr);
    let imported = registry.run(&ctx, &["key", "import", "--role", "operator", file_arg, "--json"]).success().json();
    assert_eq!(imported[0]["name"], "bob-laptop", "named after its comment: {imported}");
    fs_err::write(&file, format!("command=\"/bin/true\" {public}")).unwrap();
    let refused = registry.run(&ctx, &["key", "import", "--role", "operator", file_arg]).failure();
    assert!(refused.stderr.contains("options (`command=\"/bin/true\"`) are not kept"), "{}", refused.stderr);

    // A console fed by a pipe: each line runs, the end of input ends it.
    let (big, big_hash) = {
        let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
        let dir = ctx.path("big");
        fs_err::create_dir_all(&dir).unwrap();
        fs_err::write(dir.join("blob.bin"), &data).unwrap();
        let path = ctx.path("big.tar");
        assert!(
            Command::new("tar").arg("cf").arg(&path).arg("-C").arg(&dir).arg("blob.bin").status().unwrap().success()
        );
        let hex: String = <sha2::Sha256 as sha2::Digest>::digest(fs_err::read(&path).unwrap())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        (path, hex)
    };
    upload(&ctx, port, &bob, &big);
    let mut console = spawn_console(port, &bob, "bob");
    let mut input = console.stdin.take().unwrap();
    writeln!(input, "addver -name big -version v1 -hash {big_hash}").unwrap();
    writeln!(input, "addconf -name big -layer big:v1").unwrap();
    write!(input, "components").unwrap(); // no newline at the end
    drop(input);
    let output = console.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && text.contains("big\n"), "{text:?} {}", String::from_utf8_lossy(&output.stderr));

    // An agent downloads the 3 MiB blob whole (several store chunks, many SFTP reads).
    let agent = key(&ctx, &registry, "host-1", "agent", Some("big"));
    let dir = ctx.path("agent");
    fs_err::create_dir_all(&dir).unwrap();
    sftp(port, &agent, "deploy-agent", &format!("get files/{big_hash}\n"), &dir).success();
    assert_eq!(fs_err::read(dir.join(&big_hash)).unwrap(), fs_err::read(&big).unwrap());

    // Revoked during a session: the next command is refused, and the console ends.
    let mut console = spawn_console(port, &bob, "bob");
    let mut input = console.stdin.take().unwrap();
    writeln!(input, "configurations").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    registry.run(&ctx, &["key", "revoke", "bob-laptop"]).success();
    writeln!(input, "delconf -name big -force").unwrap();
    drop(input);
    let output = console.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("big\n") && text.contains("the key of this session was revoked"), "{text:?}");
    assert!(registry.run(&ctx, &["configs"]).success().stdout.contains("big"), "nothing deleted");
}

/// A client that never authenticates is cut at the handshake timeout; sessions past the cap are
/// closed as they arrive.
#[test]
fn silent_clients_are_cut_and_sessions_are_capped() {
    use std::io::Read;
    let ctx = TestContext::new();
    let (registry, port) =
        start_with(&ctx, &["--ssh-max-sessions", "1", "--header-timeout", "1s", "--ssh-lifetime", "3s"]);
    let alice = key(&ctx, &registry, "alice", "operator", None);
    // Silent: the server's version line, then nothing; closed after about a second.
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let opened = Instant::now();
    let mut buffer = [0u8; 4096];
    while silent.read(&mut buffer).map(|n| n > 0).unwrap_or(false) {}
    let waited = opened.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "cut after {waited:?}");
    // One session held open: a second is refused.
    let mut held = spawn_console(port, &alice, "alice");
    let mut input = held.stdin.take().unwrap();
    writeln!(input, "components").unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(ssh(port, &alice, "alice", "components").code, 255, "past the cap");
    drop(input);
    assert!(held.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(300));
    ssh(port, &alice, "alice", "components").success();
    // A connection past its lifetime (3 s here) is closed, idle or not.
    let opened = Instant::now();
    let mut idle = spawn_console(port, &alice, "alice");
    let _input = idle.stdin.take().unwrap();
    let status = idle.wait().unwrap();
    let lived = opened.elapsed();
    assert!(
        !status.success() && lived >= Duration::from_secs(2) && lived < Duration::from_secs(10),
        "{status:?} after {lived:?}"
    );
}

/// Ten connections from one address that have not authenticated are the most it may hold: the
/// eleventh is refused until they authenticate or are cut.
#[test]
fn one_address_holds_only_ten_unauthenticated_connections() {
    let ctx = TestContext::new();
    let (registry, port) = start_with(&ctx, &["--header-timeout", "2s"]);
    let alice = key(&ctx, &registry, "alice", "operator", None);
    let silent: Vec<std::net::TcpStream> =
        (0..10).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(ssh(port, &alice, "alice", "components").code, 255, "the eleventh waiting connection");
    drop(silent);
    std::thread::sleep(Duration::from_millis(300));
    ssh(port, &alice, "alice", "components").success();
}
