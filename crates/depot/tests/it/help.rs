//! The `--help` tree is a snapshot, so every change to the CLI shows in review.

use crate::common::*;

const COMMANDS: &[&str] = &[
    "pack",
    "deploy",
    "rollback",
    "releases",
    "prune",
    "verify",
    "serve",
    "agent",
    "release",
    "build",
    "pipeline",
    "promote",
    "approve",
    "env",
    "history",
    "completions",
    "man",
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

/// The bash completion script loads, and completes commands and their options.
#[test]
fn bash_completes_commands_and_options() {
    let ctx = TestContext::new();
    let script = ctx.run(&["completions", "bash"]).success().stdout;
    fs_err::write(ctx.path("depot.bash"), &script).unwrap();
    // As bash calls it: the words so far, and the function's arguments (command, word, previous word).
    let complete = |words: &str, cword: usize| {
        let list: Vec<&str> = words.split(' ').collect();
        let (current, previous) = (list[cword], list[cword - 1]);
        let program = format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={cword}; _depot depot {current} {previous}; echo \"${{COMPREPLY[@]}}\"",
            ctx.path("depot.bash").display()
        );
        let output = std::process::Command::new("bash").args(["-c", &program]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let commands = complete("depot con", 1);
    assert!(commands.split_whitespace().any(|w| w == "config") && commands.contains("configs"), "{commands}");
    let options = complete("depot deploy --artifact", 2);
    assert!(options.contains("--artifact-path") && options.contains("--artifact-url"), "{options}");
    ctx.run(&["completions", "tcsh"]).usage_error();
}

/// `depot man` writes a page per command that groff renders without a warning.
#[test]
fn the_manual_pages_render() {
    let ctx = TestContext::new();
    let page = ctx.run(&["man"]).success().stdout;
    assert!(page.contains(".TH depot 1"), "{page}");
    ctx.run(&["man", "--dir", ctx.path("man1").to_str().unwrap()]).success();
    for name in ["depot.1", "depot-deploy.1", "depot-config-set.1", "depot-admin-migrate.1"] {
        let path = ctx.path("man1").join(name);
        let output = std::process::Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let deploy = fs_err::read_to_string(ctx.path("man1/depot-deploy.1")).unwrap();
    assert!(deploy.contains("artifact\\-path"), "the options are documented: {deploy}");
}
