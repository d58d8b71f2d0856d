//! `depot build`: the project's build command, its outputs packed by mapping, pushed.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use crate::common::*;
use crate::registry::Registry;

const DEPOT_TOML: &str = r#"
[build]
command = "mkdir -p out && printf 'server %s\n' \"$VERSION\" > out/server && chmod +x out/server && echo building $VERSION"

[package]
name = "svc"
include = { "out/server" = "bin/server", "conf" = "config" }
"#;

fn project(ctx: &TestContext, toml: &str) -> std::path::PathBuf {
    let dir = ctx.tree("proj", &[("conf/app.conf", "port = 8080\n"), ("src/main.c", "int main() {}\n")]);
    fs_err::write(dir.join("depot.toml"), toml).unwrap();
    dir
}

/// Path → (mode, content) of every file in a .tar.zst.
fn entries(archive: &std::path::Path) -> BTreeMap<String, (u32, String)> {
    let file = fs_err::File::open(archive).unwrap();
    let mut tar = tar::Archive::new(zstd::Decoder::new(file).unwrap());
    let mut out = BTreeMap::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type().is_file() {
            let path = entry.path().unwrap().display().to_string();
            let mode = entry.header().mode().unwrap();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            out.insert(path, (mode & 0o777, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    out
}

#[test]
fn a_build_runs_the_command_packs_the_mapped_outputs_and_pushes() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let dir = project(&ctx, DEPOT_TOML);
    let build = registry.run(&ctx, &["build", dir.to_str().unwrap(), "--version", "1.2.3", "--push", "svc"]).success();
    assert!(build.stderr.contains("building 1.2.3"), "the output streams: {}", build.stderr);
    let archive = ctx.path("svc-1.2.3.tar.zst");
    let files = entries(&archive);
    let paths: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(paths, ["VERSION", "bin/server", "config/app.conf"], "only the mapped outputs");
    assert_eq!(files["bin/server"], (0o755, "server 1.2.3\n".to_owned()));
    let log = fs_err::read_to_string(ctx.path("svc-1.2.3.build.log")).unwrap();
    assert!(log.contains("building 1.2.3"), "{log}");
    let sha = build.stdout.split_whitespace().next().unwrap().to_owned();
    let versions = registry.run(&ctx, &["versions", "svc", "--json"]).success().json();
    assert_eq!(versions[0]["digest"], sha.as_str(), "{versions}");

    // With the defaults (DIR ., archive and log in .), the log is not packed.
    let mut command = ctx.command();
    command.current_dir(&dir).args(["build", "--version", "1.2.4"]);
    Run::from(command.output().unwrap()).success();
    assert!(dir.join("svc-1.2.4.build.log").is_file());
    fs_err::write(
        dir.join("depot.toml"),
        DEPOT_TOML
            .replace("include = { \"out/server\" = \"bin/server\", \"conf\" = \"config\" }", "exclude = [\"src\"]"),
    )
    .unwrap();
    let mut command = ctx.command();
    command.current_dir(&dir).args(["build", "--version", "1.2.5"]);
    Run::from(command.output().unwrap()).success();
    let globbed: Vec<String> = entries(&dir.join("svc-1.2.5.tar.zst")).into_keys().collect();
    assert!(!globbed.contains(&"svc-1.2.5.build.log".to_owned()), "its own log is not packed: {globbed:?}");
    fs_err::write(dir.join("depot.toml"), DEPOT_TOML).unwrap();

    // Built again later: the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let again = ctx.run(&["build", dir.to_str().unwrap(), "--version", "1.2.3", "-o", "again.tar.zst"]).success();
    assert_eq!(again.stdout.split_whitespace().next().unwrap(), sha, "reproducible");
    let mode = fs_err::metadata(dir.join("out/server")).unwrap().permissions().mode();
    assert_eq!(mode & 0o111, 0o111);
}

#[test]
fn a_failed_build_packs_nothing_and_names_its_log() {
    let ctx = TestContext::new();
    let dir = project(&ctx, &DEPOT_TOML.replace("mkdir -p out &&", "echo oops; exit 3; "));
    let run = ctx.run(&["build", dir.to_str().unwrap(), "--version", "1.0.0"]).failure();
    assert!(run.stderr.contains("failed (status 3)") && run.stderr.contains("svc-1.0.0.build.log"), "{}", run.stderr);
    assert!(!ctx.path("svc-1.0.0.tar.zst").exists());
    assert!(fs_err::read_to_string(ctx.path("svc-1.0.0.build.log")).unwrap().contains("oops"));

    let bare = project(&ctx, "[package]\nname = \"svc\"\n");
    ctx.run(&["build", bare.to_str().unwrap()]).failure().stderr_contains("[build]").stderr_contains("hint:");
}

#[test]
fn the_version_comes_from_the_environment_then_git() {
    let ctx = TestContext::new();
    let dir = project(&ctx, DEPOT_TOML);
    let mut command = ctx.command();
    command.env("VERSION", "2.0.0").args(["build", dir.to_str().unwrap()]);
    assert!(Run::from(command.output().unwrap()).success().stderr.contains("building 2.0.0"));

    let git = |args: &[&str]| {
        let output = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "x"]);
    let short = git(&["rev-parse", "--short", "HEAD"]);
    let run = ctx.run(&["build", dir.to_str().unwrap()]).success();
    assert!(run.stderr.contains(&format!("building {short}")), "{}", run.stderr);
    assert!(ctx.path(&format!("svc-{short}.tar.zst")).is_file());
}
