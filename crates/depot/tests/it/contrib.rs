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
