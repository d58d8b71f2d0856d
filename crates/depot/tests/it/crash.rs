//! A `kill -9` at any moment of deploy, rollback or prune leaves `current` on a complete release,
//! and the next command cleans what was left behind.
//!
//! `DEPOT_TEST_KILL_AT=<step>` makes the real binary send itself SIGKILL at that step (see
//! `depot_release::killpoint`); the random-moment test kills it from outside.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

pub(crate) const DEPLOY_STEPS: &[&str] = &[
    "staged",
    "synced",
    "manifest-written",
    "renamed",
    "activation-recorded",
    "symlink-created",
    "switched",
    "activated",
];

fn many_files(version: &str, count: usize) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = (0..count)
        .map(|i| (format!("dir{}/file{i}.txt", i % 10), format!("{version} file {i}\n").repeat(20)))
        .collect();
    files.push(("bin/server".into(), format!("#!/bin/sh\necho {version}\n")));
    files
}

fn release(ctx: &TestContext, version: &str, count: usize) -> std::path::PathBuf {
    let files = many_files(version, count);
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    ctx.release(version, &refs)
}

/// Runs `depot args` with the kill point set and checks that it really was killed there.
fn run_killed_at(ctx: &TestContext, step: &str, args: &[&str]) {
    let output = ctx.command().args(args).env("DEPOT_TEST_KILL_AT", step).output().unwrap();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "depot should have been killed at {step}; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `current` points at a complete release that matches its manifest.
#[track_caller]
fn assert_current_is_complete(ctx: &TestContext, allowed: &[&str]) -> String {
    let current = ctx.current().expect("current exists");
    assert!(allowed.contains(&current.as_str()), "current is {current}, expected one of {allowed:?}");
    let version = fs_err::read_to_string(ctx.root().join("releases/current/VERSION")).unwrap();
    assert_eq!(version.trim(), current);
    ctx.run(&["verify", "--root", &ctx.root_str(), "--version", &current]).success();
    current
}

#[track_caller]
pub(crate) fn assert_no_leftovers(root: &Path) {
    let hidden: Vec<String> = fs_err::read_dir(root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(hidden.is_empty(), "leftovers in releases/: {hidden:?}");
    assert_eq!(fs_err::read_dir(root.join(".depot/store/tmp")).unwrap().count(), 0, "store tmp is empty");
    assert_eq!(fs_err::read_dir(root.join(".depot/tmp")).unwrap().count(), 0, "tmp is empty");
    let temps: Vec<String> = fs_err::read_dir(root.join(".depot"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "temporary state files left: {temps:?}");
    let releases = fs_err::read_dir(root.join("releases")).unwrap().count() - 1; // current
    let manifests = fs_err::read_dir(root.join(".depot/manifests")).unwrap().count();
    assert_eq!(releases, manifests, "one manifest per release, none orphaned");
}

#[test]
fn deploy_killed_at_every_step_leaves_a_complete_current_and_recovers() {
    for step in DEPLOY_STEPS {
        let ctx = TestContext::new();
        let v1 = release(&ctx, "1.0.0", 50);
        ctx.deploy("1.0.0", &v1, &[]).success();
        let v2 = release(&ctx, "2.0.0", 50);
        let root = ctx.root_str();
        let v2_path = v2.display().to_string();
        let args = ["deploy", "--root", &root, "--version", "2.0.0", "--artifact-path", &v2_path, "--validate", "true"];
        run_killed_at(&ctx, step, &args);
        let current = assert_current_is_complete(&ctx, &["1.0.0", "2.0.0"]);
        if DEPLOY_STEPS.iter().position(|s| s == step) < DEPLOY_STEPS.iter().position(|s| *s == "switched") {
            assert_eq!(current, "1.0.0", "killed at {step}, before the switch");
        }

        // The next command cleans up and the deploy goes through.
        ctx.deploy("2.0.0", &v2, &[]).success();
        assert_eq!(ctx.current().as_deref(), Some("2.0.0"), "after kill at {step}");
        assert_current_is_complete(&ctx, &["2.0.0"]);
        assert_no_leftovers(&ctx.root());
        let json = ctx.run(&["releases", "--root", &root, "--json"]).success().json();
        assert_eq!(json.as_array().unwrap().len(), 2, "after kill at {step}: {json}");
    }
}

#[test]
fn rollback_killed_at_every_step_leaves_a_complete_current() {
    for step in ["activation-recorded", "symlink-created", "switched", "activated"] {
        let ctx = TestContext::new();
        for version in ["1.0.0", "2.0.0"] {
            let archive = release(&ctx, version, 20);
            ctx.deploy(version, &archive, &[]).success();
        }
        let root = ctx.root_str();
        run_killed_at(&ctx, step, &["rollback", "--root", &root]);
        assert_current_is_complete(&ctx, &["1.0.0", "2.0.0"]);
        ctx.run(&["rollback", "--root", &root, "--version", "1.0.0"]).success();
        assert_current_is_complete(&ctx, &["1.0.0"]);
        assert_no_leftovers(&ctx.root());
    }
}

#[test]
fn prune_killed_while_removing_a_release_recovers() {
    let ctx = TestContext::new();
    for version in ["1.0.0", "2.0.0", "3.0.0"] {
        let archive = release(&ctx, version, 20);
        ctx.deploy(version, &archive, &[]).success();
    }
    let root = ctx.root_str();
    run_killed_at(&ctx, "release-trashed", &["prune", "--root", &root, "--keep", "1"]);
    assert!(
        fs_err::read_dir(ctx.root().join("releases")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".trash-")),
        "the kill happened with a release half-removed"
    );
    assert_current_is_complete(&ctx, &["3.0.0"]);
    ctx.run(&["prune", "--root", &root, "--keep", "1"]).success();
    assert_no_leftovers(&ctx.root());
    assert_eq!(ctx.release_dirs(), ["2.0.0", "3.0.0", "current"], "current and the previous good release stay");
}

#[test]
fn deploy_killed_at_random_moments_never_breaks_current() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "1.0.0", 300);
    ctx.deploy("1.0.0", &v1, &[]).success();

    // How long an uninterrupted deploy takes here, to spread the kills over it.
    let scratch = TestContext::new();
    let probe = release(&scratch, "0.0.1", 300);
    let started = Instant::now();
    scratch.deploy("0.0.1", &probe, &[]).success();
    let duration = started.elapsed().max(Duration::from_millis(20));

    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut killed_midway = 0;
    let mut allowed = vec!["1.0.0".to_owned()];
    for i in 0..8 {
        let version = format!("2.0.{i}");
        let archive = release(&ctx, &version, 300);
        allowed.push(version.clone());
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = duration.mul_f64((seed >> 11) as f64 / (1u64 << 53) as f64);
        let mut child = ctx
            .command()
            .args(["deploy", "--root", &ctx.root_str(), "--version", &version, "--keep", "3", "--artifact-path"])
            .arg(&archive)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        if child.wait().unwrap().signal() == Some(9) {
            killed_midway += 1;
        }
        let refs: Vec<&str> = allowed.iter().map(String::as_str).collect();
        assert_current_is_complete(&ctx, &refs);
    }
    assert!(killed_midway > 0, "at least one kill landed while depot was running");
    let last = release(&ctx, "3.0.0", 300);
    ctx.deploy("3.0.0", &last, &[]).success();
    assert_current_is_complete(&ctx, &["3.0.0"]);
    assert_no_leftovers(&ctx.root());
}

fn store_objects(root: &Path) -> usize {
    fs_err::read_dir(root.join(".depot/store/objects"))
        .unwrap()
        .map(|prefix| fs_err::read_dir(prefix.unwrap().path()).unwrap().count())
        .sum()
}

/// Objects are flushed once, before a manifest refers to them; an operation that did not finish
/// may have left unflushed ones, which a power cut could turn into garbage under a valid name. The
/// next operation deletes every object no manifest references.
#[test]
fn objects_left_by_an_unfinished_operation_are_swept() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "1.0.0", 20);
    ctx.deploy("1.0.0", &v1, &[]).success();
    let marker = ctx.root().join(".depot/unfinished");
    assert!(!marker.exists(), "a completed deploy leaves no marker");
    let referenced = store_objects(&ctx.root());

    let v2 = release(&ctx, "2.0.0", 20);
    ctx.deploy("2.0.0", &v2, &["--validate", "false"]).failure();
    assert!(store_objects(&ctx.root()) > referenced, "the failed deploy wrote objects");
    assert!(marker.exists(), "a failed deploy leaves the marker");

    let root = ctx.root_str();
    run_killed_at(
        &ctx,
        "staged",
        &["deploy", "--root", &root, "--version", "2.0.0", "--artifact-path", &v2.display().to_string()],
    );
    ctx.deploy("1.0.0", &v1, &[]).success().stderr_contains("already the current release");
    assert_eq!(store_objects(&ctx.root()), referenced, "unreferenced objects are gone");
    assert!(!marker.exists());
}
