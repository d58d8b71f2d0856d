//! `contrib/systemd/`: the unit files pass `systemd-analyze verify`, and the example settings
//! files they point at are read by the real binary.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;

use crate::common::*;

fn contrib() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/systemd")
}

#[test]
fn the_unit_files_verify() {
    let ctx = TestContext::new();
    for unit in ["depot-registry.service", "depot-agent.service"] {
        let text = fs_err::read_to_string(contrib().join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/local/bin/depot "), "{unit}");
        if unit == "depot-registry.service" {
            // The connection cap is derived from it: without it, a shell's 1,024 would apply.
            assert!(text.contains("\nLimitNOFILE=65536\n"), "{unit} sets LimitNOFILE");
        }
        // verify checks that the command exists: point it at the binary under test.
        let copy = ctx.path(unit);
        fs_err::write(&copy, text.replace("/usr/local/bin/depot", env!("CARGO_BIN_EXE_depot"))).unwrap();
        let output = std::process::Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .expect("systemd-analyze runs (.ci/run installs systemd when it is missing)");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success() && !stderr.contains(unit), "{unit}: {stderr}");
    }
}

#[test]
fn the_example_settings_files_are_read() {
    let ctx = TestContext::new();
    // The registry's: flags override its listen address and data directory.
    let mut serve = ctx
        .command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(ctx.path("data"))
        .arg("--config")
        .arg(contrib().join("registry.toml"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    let started = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on") => break true,
            Some(Ok(line)) => seen.push_str(&line),
            _ => break false,
        }
    };
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(started, "depot serve with registry.toml: {seen}");

    // The agent's: `retry` reads it and then finds no agent on the root it was given.
    let root = ctx.path("no-agent-here");
    let settings = contrib().join("agent.toml");
    ctx.run(&["agent", "retry", "--settings", settings.to_str().unwrap(), "--root", root.to_str().unwrap()])
        .failure()
        .stderr_contains("no agent has run on");
}

/// The overall exposure `systemd-analyze security` gives a unit file, on its 0–10 scale.
fn exposure(ctx: &TestContext, unit: &str) -> f64 {
    let text = fs_err::read_to_string(contrib().join(unit)).unwrap();
    let copy = ctx.path(unit);
    fs_err::write(&copy, text.replace("/usr/local/bin/depot", env!("CARGO_BIN_EXE_depot"))).unwrap();
    let output = std::process::Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs (.ci/install installs systemd when it is missing)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_else(|| panic!("{stdout}"));
    line.split(": ").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap().parse().unwrap()
}

/// Both units are sandboxed: the registry needs only its state directory and the network; the
/// agent runs hooks as root, with the exceptions its unit names.
#[test]
fn the_units_are_sandboxed() {
    let ctx = TestContext::new();
    let registry = exposure(&ctx, "depot-registry.service");
    assert!(registry <= 1.5, "depot-registry.service: exposure {registry}");
    let agent = exposure(&ctx, "depot-agent.service");
    assert!(agent <= 4.0, "depot-agent.service: exposure {agent}");
}

/// `Type=notify`: the registry says READY=1 once it listens and STOPPING=1 on SIGTERM; the agent
/// says READY=1 once it follows its configuration.
#[test]
fn the_registry_and_the_agent_tell_systemd_they_are_ready() {
    let ctx = TestContext::new();
    let socket_path = ctx.path("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let receive = || {
        let mut buffer = [0u8; 256];
        let n = socket.recv(&mut buffer).expect("a notification");
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    };
    let mut serve = ctx
        .command()
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(ctx.path("data"))
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert_eq!(receive().trim(), "READY=1");
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(serve.id() as i32).unwrap(),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(receive().trim(), "STOPPING=1");
    serve.wait().unwrap();

    let log = fs_err::File::create(ctx.path("agent.log")).unwrap();
    let mut agent = ctx
        .command()
        .args(["agent", "--config", "web-prod", "--name", "host-1", "--registry", "http://127.0.0.1:9", "--root"])
        .arg(ctx.path("root"))
        .env("DEPOT_TOKEN", "agent.secret")
        .env("NOTIFY_SOCKET", &socket_path)
        .stderr(Stdio::from(log.into_parts().0))
        .spawn()
        .unwrap();
    let mut buffer = [0u8; 256];
    let ready = socket.recv(&mut buffer).map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned());
    let _ = agent.kill();
    let _ = agent.wait();
    let log = fs_err::read_to_string(ctx.path("agent.log")).unwrap_or_default();
    assert_eq!(ready.as_deref().map(str::trim).ok(), Some("READY=1"), "the agent said:\n{log}");
}

/// Listening beyond this machine without TLS is said at start.
#[test]
fn listening_on_every_interface_without_tls_is_warned_about() {
    let ctx = TestContext::new();
    let mut serve = ctx
        .command()
        .args(["serve", "--listen", "0.0.0.0:0", "--data"])
        .arg(ctx.path("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(Ok(line)) = lines.next() {
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("hint:") {
            break;
        }
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(seen.contains("warning: listening on 0.0.0.0") && seen.contains("without TLS"), "{seen}");
}
