//! The `--help` tree is a snapshot, so every change to the CLI shows in review.

use crate::common::*;

const COMMANDS: &[&str] = &[
    "pack", "deploy", "rollback", "releases", "prune", "verify", "serve", "agent", "release", "build", "pipeline",
    "promote", "approve", "env", "history",
];

#[test]
fn help_tree() {
    let ctx = TestContext::new();
    let top = ctx.run(&["--help"]).success();
    insta::assert_snapshot!("depot", top.stdout);
    for command in COMMANDS {
        let run = ctx.run(&[command, "--help"]).success();
        assert!(run.stdout.contains("Examples:"), "`depot {command} --help` has examples");
        insta::assert_snapshot!(*command, run.stdout);
    }
    let run = ctx.run(&["admin", "migrate", "--help"]).success();
    assert!(run.stdout.contains("Examples:"), "`depot admin migrate --help` has examples");
    insta::assert_snapshot!("admin-migrate", run.stdout);
}

#[test]
fn usage_errors_exit_2_with_a_hint() {
    let ctx = TestContext::new();
    ctx.run(&[]).usage_error();
    ctx.run(&["deploy", "--root", "r", "--version", "1.0.0"]).usage_error().stderr_contains("--artifact-path");
    ctx.run(&["deploy", "--root", "r", "--version", "1.0.0", "--artifact-path", "a", "--sha256", "xyz"])
        .usage_error()
        .stderr_contains("sha256");
    ctx.run(&["deploy", "--root", "r", "--version", "1", "--artifact-path", "a", "--health-timeout", "soon"])
        .usage_error();
    ctx.run(&["frobnicate"]).usage_error();
    assert!(!ctx.path("r").exists(), "usage errors write nothing");
}

#[test]
fn failed_operations_exit_1_with_error_and_hint() {
    let ctx = TestContext::new();
    let run = ctx.run(&["deploy", "--root", "r", "--version", "1.0.0", "--artifact-path", "missing.tar.zst"]).failure();
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert!(run.stderr.contains("missing.tar.zst"), "the error names the file: {}", run.stderr);
    assert!(run.stdout.is_empty());
}
