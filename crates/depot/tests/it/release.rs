//! `depot release` in real git repositories with a local bare remote.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

struct Repo {
    root: PathBuf,
    remote: PathBuf,
}

impl Repo {
    /// A repository on `main` with `files` committed and pushed to a bare remote.
    fn new(ctx: &TestContext, files: &[(&str, &str)]) -> Self {
        let root = ctx.path("repo");
        let remote = ctx.path("remote.git");
        fs_err::create_dir_all(&root).unwrap();
        git(&ctx.path(""), &["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()]);
        git(&root, &["init", "-q", "-b", "main"]);
        for (path, text) in files {
            let path = root.join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, text).unwrap();
        }
        git(&root, &["add", "."]);
        git(&root, &["commit", "-q", "-m", "init"]);
        git(&root, &["remote", "add", "origin", remote.to_str().unwrap()]);
        git(&root, &["push", "-q", "-u", "origin", "main"]);
        Repo { root, remote }
    }

    fn read(&self, path: &str) -> String {
        fs_err::read_to_string(self.root.join(path)).unwrap()
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.root, args)
    }

    /// `depot release ARGS` run in `dir` (relative to the root), answering `input` to the prompt.
    fn release_in(&self, ctx: &TestContext, dir: &str, args: &[&str], input: &str) -> Run {
        let mut command = ctx.command();
        command.current_dir(self.root.join(dir)).arg("release").args(args).envs(identity());
        command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        Run::from(child.wait_with_output().unwrap())
    }

    fn release(&self, ctx: &TestContext, args: &[&str]) -> Run {
        self.release_in(ctx, "", args, "")
    }
}

fn identity() -> [(&'static str, &'static str); 4] {
    [
        ("GIT_AUTHOR_NAME", "Release Bot"),
        ("GIT_AUTHOR_EMAIL", "release@example.com"),
        ("GIT_COMMITTER_NAME", "Release Bot"),
        ("GIT_COMMITTER_EMAIL", "release@example.com"),
    ]
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git").args(args).current_dir(dir).envs(identity()).output().expect("git runs");
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

const CARGO: &str = "[workspace]\nmembers = [\"crates/app\"]\n\n[workspace.package]\nversion = \"1.4.2\"  # the release\nedition = \"2021\"\n";
const MEMBER: &str = "[package]\nname = \"app\"\nversion.workspace = true\n";
const LOCK: &str = "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"1.4.2\"\n\n[[package]]\nname = \"serde\"\nversion = \"1.4.2\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"abc\"\n";
const PACKAGE: &str =
    "{\n  \"name\": \"app\",\n  \"version\": \"1.4.2\",\n  \"scripts\": { \"version\": \"echo\" }\n}\n";
const PYPROJECT: &str = "[project]\nname = 'app'\nversion = '1.4.2'  # keep in step\n";
const CHANGELOG: &str = "# Changelog\n\n## [Unreleased]\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n";

fn project() -> Vec<(&'static str, &'static str)> {
    vec![
        ("Cargo.toml", CARGO),
        ("crates/app/Cargo.toml", MEMBER),
        ("Cargo.lock", LOCK),
        ("package.json", PACKAGE),
        ("pyproject.toml", PYPROJECT),
        ("CHANGELOG.md", CHANGELOG),
    ]
}

#[test]
fn a_release_bumps_every_version_file_in_place_commits_tags_and_pushes() {
    let ctx = TestContext::new();
    let repo = Repo::new(&ctx, &project());
    let run = repo.release_in(&ctx, "crates/app", &["minor", "-y", "--push"], "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);

    assert_eq!(repo.read("Cargo.toml"), CARGO.replace("1.4.2", "1.5.0"), "only the version changed");
    assert_eq!(repo.read("crates/app/Cargo.toml"), MEMBER);
    assert_eq!(repo.read("Cargo.lock"), LOCK.replacen("1.4.2", "1.5.0", 1), "the workspace's entry, not serde's");
    assert_eq!(repo.read("package.json"), PACKAGE.replace("1.4.2", "1.5.0"));
    assert_eq!(repo.read("pyproject.toml"), PYPROJECT.replace("1.4.2", "1.5.0"), "quotes and comment kept");
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert_eq!(
        repo.read("CHANGELOG.md"),
        format!(
            "# Changelog\n\n## [Unreleased]\n\n## [1.5.0] - {date}\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n"
        )
    );
    assert_eq!(repo.git(&["log", "-1", "--format=%s"]), "chore(release): v1.5.0");
    assert_eq!(repo.git(&["cat-file", "-t", "v1.5.0"]), "tag", "an annotated tag");
    assert_eq!(repo.git(&["status", "--porcelain"]), "", "everything committed");
    use std::os::unix::fs::PermissionsExt;
    let mode = fs_err::metadata(repo.root.join("package.json")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "the file keeps its mode");
    let head = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(git(&repo.remote, &["rev-parse", "main"]), head, "the branch was pushed");
    assert_eq!(git(&repo.remote, &["rev-parse", "v1.5.0^{commit}"]), head, "the tag was pushed");
}

#[test]
fn release_candidates_then_final_and_a_dry_run_that_changes_nothing() {
    let ctx = TestContext::new();
    let repo = Repo::new(&ctx, &[("package.json", PACKAGE), ("CHANGELOG.md", CHANGELOG)]);
    let head = repo.git(&["rev-parse", "HEAD"]);
    let dry = repo.release(&ctx, &["minor", "--pre", "rc", "--dry-run"]).success();
    assert!(
        dry.stdout.contains("-  \"version\": \"1.4.2\",") && dry.stdout.contains("+  \"version\": \"1.5.0-rc.1\","),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("commit \"chore(release): v1.5.0-rc.1\"") && dry.stdout.contains("tag    v1.5.0-rc.1"));
    assert_eq!((repo.read("package.json").as_str(), repo.git(&["rev-parse", "HEAD"])), (PACKAGE, head.clone()));
    assert_eq!(repo.git(&["tag"]), "");

    repo.release(&ctx, &["minor", "--pre", "rc", "-y"]).success();
    repo.release(&ctx, &["rc", "-y"]).success();
    assert!(repo.read("package.json").contains("\"1.5.0-rc.2\""));
    assert_eq!(repo.read("CHANGELOG.md"), CHANGELOG, "release candidates leave the changelog alone");
    repo.release(&ctx, &["final", "-y"]).success();
    assert!(repo.read("package.json").contains("\"version\": \"1.5.0\""));
    assert!(repo.read("CHANGELOG.md").contains("## [Unreleased]\n\n## [1.5.0] - "), "the final release takes it");
    assert_eq!(repo.git(&["tag"]).lines().collect::<Vec<_>>(), ["v1.5.0", "v1.5.0-rc.1", "v1.5.0-rc.2"]);
    assert_eq!(repo.git(&["log", "--format=%s"]).lines().next(), Some("chore(release): v1.5.0"));
    repo.release(&ctx, &["final", "-y"]).failure().stderr_contains("not a release candidate");
}

#[test]
fn every_refusal_is_reported_and_changes_nothing() {
    let ctx = TestContext::new();
    let repo = Repo::new(
        &ctx,
        &[("package.json", PACKAGE), ("VERSION", "1.4.2\n"), ("depot.toml", "[release]\nfiles = [\"VERSION\"]\n")],
    );
    repo.release(&ctx, &["1.4.1", "-y"]).failure().stderr_contains("not above the current version 1.4.2");
    repo.release(&ctx, &["1.2", "-y"]).usage_error();
    repo.release(&ctx, &["minor", "--pre", "007"]).usage_error();
    repo.git(&["tag", "v1.4.3"]);
    repo.release(&ctx, &["patch", "-y"]).failure().stderr_contains("the tag v1.4.3 exists already");

    // A dirty tree: refused, and a dry run still shows the plan and every refusal.
    fs_err::write(repo.root.join("notes.txt"), "wip").unwrap();
    repo.release(&ctx, &["patch", "-y"]).failure().stderr_contains("not clean");
    let dry = repo.release(&ctx, &["patch", "--dry-run"]).failure();
    assert!(dry.stdout.contains("+1.4.3"), "the plan: {}", dry.stdout);
    assert!(dry.stderr.contains("not clean") && dry.stderr.contains("exists already"), "{}", dry.stderr);
    fs_err::remove_file(repo.root.join("notes.txt")).unwrap();

    // Asked, and declined; then accepted.
    let declined = repo.release_in(&ctx, "", &["minor"], "n\n");
    assert_eq!(declined.code, 1, "{}", declined.stderr);
    assert!(declined.stderr.contains("[y/N]") && declined.stderr.contains("cancelled"), "{}", declined.stderr);
    assert_eq!(repo.read("VERSION"), "1.4.2\n");
    repo.release_in(&ctx, "", &["minor"], "y\n").success();
    assert_eq!((repo.read("VERSION").as_str(), repo.git(&["describe", "--tags"]).as_str()), ("1.5.0\n", "v1.5.0"));

    // Files that disagree, and a branch that is not the default one.
    fs_err::write(repo.root.join("VERSION"), "9.9.9\n").unwrap();
    repo.git(&["commit", "-q", "-am", "drift"]);
    repo.release(&ctx, &["patch", "-y"]).failure().stderr_contains("disagree");
    fs_err::write(repo.root.join("VERSION"), "1.5.0\n").unwrap();
    repo.git(&["commit", "-q", "-am", "fix"]);
    repo.git(&["checkout", "-q", "-b", "hotfix"]);
    repo.release(&ctx, &["patch", "-y"]).success().stderr_contains("not from the default branch main");
}

#[test]
fn a_signed_tag_uses_gits_own_signing_configuration_and_a_detached_head_is_refused() {
    let ctx = TestContext::new();
    let repo = Repo::new(&ctx, &[("package.json", PACKAGE)]);
    let key = ctx.path("signing-key");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f", key.to_str().unwrap()])
        .status()
        .expect("ssh-keygen (openssh-client) runs");
    assert!(status.success());
    repo.git(&["config", "gpg.format", "ssh"]);
    repo.git(&["config", "user.signingkey", key.to_str().unwrap()]);
    repo.release(&ctx, &["patch", "-y", "--sign"]).success();
    let tag = repo.git(&["cat-file", "tag", "v1.4.3"]);
    assert!(tag.contains("-----BEGIN SSH SIGNATURE-----"), "{tag}");

    let head = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", &head]);
    repo.release(&ctx, &["patch", "-y"]).failure().stderr_contains("detached");
}
