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
        ("crates/app/src/lib.rs", ""),
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
    let refused = repo.release(&ctx, &["patch", "-y"]).failure().stderr_contains("not clean");
    assert_eq!(refused.stdout, "", "a refused release prints no plan as if it were happening");
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

/// `cargo ARGS` in `dir`, offline; its stdout.
fn cargo(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO")).args(args).arg("--offline").current_dir(dir).output().expect("cargo runs");
    assert!(output.status.success(), "cargo {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The workspace resolves with its lockfile as it is (`--locked`: cargo would change nothing).
fn assert_resolves_as_locked(dir: &Path) {
    cargo(dir, &["metadata", "--format-version", "1", "--locked"]);
}

/// A futures-rs style workspace: members inherit `[workspace.package] version` and require each
/// other with `path` + `version`; one member (`futures-tool`) has a version of its own, equal by
/// chance; an old copy of `futures-core` is vendored, so Cargo.lock names `"futures-core 0.3.34"`.
fn futures_workspace() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "Cargo.toml",
            "[workspace]\nmembers = [\"futures\", \"futures-core\", \"futures-util\", \"futures-tool\"]\nexclude = [\"vendor\"]\nresolver = \"2\"\n\n[workspace.package]\nversion = \"0.3.34\"\nedition = \"2021\"\n",
        ),
        (
            "futures-core/Cargo.toml",
            "[package]\nname = \"futures-core\"\nversion.workspace = true\nedition.workspace = true\n",
        ),
        (
            "futures-util/Cargo.toml",
            "[package]\nname = \"futures-util\"\nversion.workspace = true\nedition.workspace = true\n\n[dependencies]\nfutures-core = { path = \"../futures-core\", version = \"0.3.34\", default-features = false }\n",
        ),
        (
            "futures/Cargo.toml",
            "[package]\nname = \"futures\"\nversion.workspace = true\nedition.workspace = true\n\n[dependencies]\nfutures-core = { version = \"0.3.34\", path = \"../futures-core\" }\n\n[dependencies.futures-util]\nversion = \"0.3.34\"  # in step\npath = \"../futures-util\"\n\n[target.'cfg(unix)'.dev-dependencies]\nfutures-util = { path = \"../futures-util\", version = \"=0.3.34\" }\n",
        ),
        (
            "futures-tool/Cargo.toml",
            "[package]\nname = \"futures-tool\"\nversion = \"0.3.34\"\nedition = \"2021\"\n\n[dependencies]\nfutures-core = { path = \"../futures-core\", version = \"0.3\" }\nold-core = { package = \"futures-core\", path = \"../vendor/futures-core-0.2\" }\n",
        ),
        (
            "vendor/futures-core-0.2/Cargo.toml",
            "[package]\nname = \"futures-core\"\nversion = \"0.2.1\"\nedition = \"2021\"\n",
        ),
        ("futures/src/lib.rs", ""),
        ("futures-core/src/lib.rs", ""),
        ("futures-util/src/lib.rs", ""),
        ("futures-tool/src/lib.rs", ""),
        ("vendor/futures-core-0.2/src/lib.rs", ""),
    ]
}

#[test]
fn a_workspace_release_moves_the_requirements_on_its_members_and_only_their_lock_entries() {
    let ctx = TestContext::new();
    let files = futures_workspace();
    let repo = Repo::new(&ctx, &files);
    // Cargo.lock as cargo writes it, committed with the rest.
    cargo(&repo.root, &["generate-lockfile"]);
    repo.git(&["add", "Cargo.lock"]);
    repo.git(&["commit", "-q", "-m", "lock"]);
    let lock = repo.read("Cargo.lock");
    assert!(lock.contains("\"futures-core 0.3.34\""), "two versions of futures-core are locked:\n{lock}");

    repo.release(&ctx, &["minor", "-y"]).success();
    let file = |path: &str| files.iter().find(|(p, _)| *p == path).unwrap().1;
    assert_eq!(repo.read("futures-util/Cargo.toml"), file("futures-util/Cargo.toml").replace("0.3.34", "0.4.0"));
    assert_eq!(
        repo.read("futures/Cargo.toml"),
        file("futures/Cargo.toml").replace("0.3.34", "0.4.0"),
        "inline, table and target forms, comment kept"
    );
    assert_eq!(
        repo.read("futures-tool/Cargo.toml"),
        file("futures-tool/Cargo.toml").replace("version = \"0.3\" }", "version = \"0.4\" }"),
        "its requirement follows in its own precision; its own version stays"
    );
    // Only the released packages move: not futures-tool (its own 0.3.34), not the vendored copy.
    let expected = lock
        .replace("name = \"futures\"\nversion = \"0.3.34\"", "name = \"futures\"\nversion = \"0.4.0\"")
        .replace("name = \"futures-core\"\nversion = \"0.3.34\"", "name = \"futures-core\"\nversion = \"0.4.0\"")
        .replace("name = \"futures-util\"\nversion = \"0.3.34\"", "name = \"futures-util\"\nversion = \"0.4.0\"")
        .replace("\"futures-core 0.3.34\"", "\"futures-core 0.4.0\"");
    assert_eq!(repo.read("Cargo.lock"), expected);
    assert!(expected.contains("name = \"futures-tool\"\nversion = \"0.3.34\""));
    assert_resolves_as_locked(&repo.root);
    assert_eq!(repo.git(&["status", "--porcelain"]), "");

    // A patch release: `0.4.0` → `0.4.1`, and `0.4` still admits it, so it stays.
    repo.release(&ctx, &["patch", "-y"]).success();
    assert!(repo.read("futures-util/Cargo.toml").contains("version = \"0.4.1\""));
    assert!(repo.read("futures-tool/Cargo.toml").contains("version = \"0.4\" }"));
    assert_resolves_as_locked(&repo.root);

    // A requirement that cannot follow is refused before anything changes.
    let tool = repo.read("futures-tool/Cargo.toml").replace("version = \"0.4\" }", "version = \"<0.5\" }");
    fs_err::write(repo.root.join("futures-tool/Cargo.toml"), tool).unwrap();
    repo.git(&["commit", "-q", "-am", "a range"]);
    let head = repo.git(&["rev-parse", "HEAD"]);
    let refused = repo.release(&ctx, &["minor", "-y"]).failure();
    assert!(
        refused.stderr.contains("futures-tool/Cargo.toml") && refused.stderr.contains("<0.5"),
        "{}",
        refused.stderr
    );
    assert_eq!((repo.git(&["rev-parse", "HEAD"]), repo.git(&["status", "--porcelain"])), (head, String::new()));
}

#[test]
fn an_icu4x_style_workspace_whose_lock_git_ignores_is_released_and_the_dry_run_says_so() {
    let ctx = TestContext::new();
    let root = "[workspace]\nmembers = [\"components/*\"]\nresolver = \"2\"\n\n[workspace.package]\nversion = \"2.4.0\"\nedition = \"2021\"\n\n[workspace.dependencies]\nicu_locale = { version = \"~2.4.0\", path = \"components/locale\", default-features = false }\nicu_calendar = { version = \"~2.4.0\", path = \"components/calendar\" }\n";
    let calendar = "[package]\nname = \"icu_calendar\"\nversion.workspace = true\nedition.workspace = true\n\n[dependencies]\nicu_locale = { workspace = true }\n";
    let locale = "[package]\nname = \"icu_locale\"\nversion.workspace = true\nedition.workspace = true\n";
    let repo = Repo::new(
        &ctx,
        &[
            (".gitignore", "/target\nCargo.lock\n"),
            ("Cargo.toml", root),
            ("components/calendar/Cargo.toml", calendar),
            ("components/calendar/src/lib.rs", ""),
            ("components/locale/Cargo.toml", locale),
            ("components/locale/src/lib.rs", ""),
        ],
    );
    cargo(&repo.root, &["generate-lockfile"]);
    assert_eq!(repo.git(&["status", "--porcelain"]), "", "Cargo.lock is ignored");

    let dry = repo.release(&ctx, &["minor", "-n"]).success();
    assert!(dry.stdout.contains("+icu_locale = { version = \"~2.5.0\""), "{}", dry.stdout);
    assert!(dry.stdout.contains("Cargo.lock (ignored by git: written, not committed)"), "{}", dry.stdout);

    repo.release(&ctx, &["minor", "-y"]).success().stderr_contains("committed");
    assert_eq!(repo.read("Cargo.toml"), root.replace("2.4.0", "2.5.0"));
    assert_eq!(repo.read("components/calendar/Cargo.toml"), calendar);
    let lock = repo.read("Cargo.lock");
    assert!(lock.contains("name = \"icu_locale\"\nversion = \"2.5.0\"") && !lock.contains("2.4.0"), "{lock}");
    assert_resolves_as_locked(&repo.root);
    assert_eq!(repo.git(&["show", "--format=", "--name-only", "HEAD"]), "Cargo.toml", "the lock is not committed");
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    assert_eq!(repo.git(&["describe", "--tags"]), "v2.5.0");
}

/// `package-lock.json` as `npm install --package-lock-only` writes it (npm 11) for a package with
/// no dependencies.
const NPM_LOCK: &str = "{\n  \"name\": \"app\",\n  \"version\": \"1.4.2\",\n  \"lockfileVersion\": 3,\n  \"requires\": true,\n  \"packages\": {\n    \"\": {\n      \"name\": \"app\",\n      \"version\": \"1.4.2\"\n    }\n  }\n}\n";

#[test]
fn package_lock_json_follows_package_json() {
    let ctx = TestContext::new();
    let package = "{\n  \"name\": \"app\",\n  \"version\": \"1.4.2\"\n}\n";
    let repo = Repo::new(&ctx, &[("package.json", package), ("package-lock.json", NPM_LOCK)]);
    repo.release(&ctx, &["minor", "-y"]).success();
    assert_eq!(repo.read("package-lock.json"), NPM_LOCK.replace("1.4.2", "1.5.0"));
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
    // npm itself, where it is installed, finds the lock as it would write it.
    if let Ok(output) = Command::new("npm")
        .args(["install", "--package-lock-only", "--offline", "--no-audit", "--no-fund"])
        .current_dir(&repo.root)
        .output()
    {
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(repo.read("package-lock.json"), NPM_LOCK.replace("1.4.2", "1.5.0"), "npm changed nothing");
    }
}

#[test]
fn the_changelogs_link_definitions_follow_the_release() {
    let ctx = TestContext::new();
    let changelog = "# Changelog\n\n## [Unreleased]\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n### Fixed\n- a leak\n\n[Unreleased]: https://github.com/acme/app/compare/v1.4.2...HEAD\n[1.4.2]: https://github.com/acme/app/compare/v1.4.1...v1.4.2\n";
    let repo = Repo::new(&ctx, &[("package.json", PACKAGE), ("CHANGELOG.md", changelog)]);
    repo.release(&ctx, &["minor", "-y"]).success();
    let date = chrono::Utc::now().format("%Y-%m-%d");
    assert_eq!(
        repo.read("CHANGELOG.md"),
        format!(
            "# Changelog\n\n## [Unreleased]\n\n## [1.5.0] - {date}\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n### Fixed\n- a leak\n\n[Unreleased]: https://github.com/acme/app/compare/v1.5.0...HEAD\n[1.5.0]: https://github.com/acme/app/compare/v1.4.2...v1.5.0\n[1.4.2]: https://github.com/acme/app/compare/v1.4.1...v1.4.2\n"
        )
    );
}

#[test]
fn a_dynamic_pyproject_version_is_named_with_where_it_lives() {
    let cases = [
        (
            "[build-system]\nrequires = [\"setuptools>=64\", \"setuptools-scm>=8\"]\nbuild-backend = \"setuptools.build_meta\"\n\n[project]\nname = \"app\"\ndynamic = [\"version\"]\n\n[tool.setuptools_scm]\n",
            "setuptools-scm takes it from the git tags",
        ),
        (
            "[project]\nname = \"app\"\ndynamic = [\"version\"]\n\n[tool.setuptools.dynamic]\nversion = { attr = \"app.__version__\" }\n",
            "setuptools reads it from the attribute `app.__version__`",
        ),
        (
            "[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n\n[project]\nname = \"app\"\ndynamic = [\"version\"]\n\n[tool.hatch.version]\npath = \"src/app/__about__.py\"\n",
            "hatch reads it from `__version__` in src/app/__about__.py",
        ),
        (
            "[project]\nname = \"app\"\ndynamic = [\"version\"]\n\n[tool.setuptools.dynamic]\nversion = { file = \"VERSION\" }\n",
            "list VERSION in depot.toml",
        ),
    ];
    for (pyproject, expected) in cases {
        let ctx = TestContext::new();
        let repo = Repo::new(&ctx, &[("pyproject.toml", pyproject)]);
        let run = repo.release(&ctx, &["patch", "-y"]).failure().stderr_contains("declares the version dynamic");
        assert!(run.stderr.contains(expected) && !run.stderr.contains("no version file"), "{}", run.stderr);
    }
}

#[test]
fn a_virtual_workspace_whose_members_have_their_own_versions_is_named_then_released_as_listed() {
    // futures-rs itself: no version at the root, each member with its own `version = "0.3.31"`.
    let ctx = TestContext::new();
    let core = "[package]\nname = \"futures-core\"\nversion = \"0.3.31\"\nedition = \"2018\"\n";
    let futures = "[package]\nname = \"futures\"\nversion = \"0.3.31\"\nedition = \"2018\"\n\n[dependencies]\nfutures-core = { path = \"../futures-core\", version = \"0.3.31\", default-features = false }\n";
    let repo = Repo::new(
        &ctx,
        &[
            ("Cargo.toml", "[workspace]\nmembers = [\"futures\", \"futures-core\"]\nresolver = \"2\"\n"),
            ("futures/Cargo.toml", futures),
            ("futures/src/lib.rs", ""),
            ("futures-core/Cargo.toml", core),
            ("futures-core/src/lib.rs", ""),
        ],
    );
    cargo(&repo.root, &["generate-lockfile"]);
    repo.git(&["add", "Cargo.lock"]);
    repo.git(&["commit", "-q", "-m", "lock"]);
    let refused = repo.release(&ctx, &["minor", "-y"]).failure().stderr_contains("virtual workspace");
    assert!(
        refused.stderr.contains("futures-core/Cargo.toml has 0.3.31")
            && refused.stderr.contains("[release] files = [\"futures/Cargo.toml\", \"futures-core/Cargo.toml\"]"),
        "{}",
        refused.stderr
    );

    fs_err::write(
        repo.root.join("depot.toml"),
        "[release]\nfiles = [\"futures/Cargo.toml\", \"futures-core/Cargo.toml\"]\n",
    )
    .unwrap();
    repo.git(&["add", "depot.toml"]);
    repo.git(&["commit", "-q", "-m", "release together"]);
    repo.release(&ctx, &["minor", "-y"]).success();
    assert_eq!(repo.read("futures/Cargo.toml"), futures.replace("0.3.31", "0.4.0"));
    assert_eq!(repo.read("futures-core/Cargo.toml"), core.replace("0.3.31", "0.4.0"));
    assert!(!repo.read("Cargo.lock").contains("0.3.31"));
    assert_resolves_as_locked(&repo.root);
}

#[test]
fn a_poetry_project_keeps_its_version_in_tool_poetry() {
    let ctx = TestContext::new();
    let pyproject = "[tool.poetry]\nname = \"app\"\nversion = \"1.4.2\"\ndescription = \"\"\n\n[tool.poetry.dependencies]\npython = \"^3.9\"\n\n[build-system]\nrequires = [\"poetry-core\"]\nbuild-backend = \"poetry.core.masonry.api\"\n";
    let repo = Repo::new(&ctx, &[("pyproject.toml", pyproject)]);
    repo.release(&ctx, &["patch", "-y"]).success();
    assert_eq!(repo.read("pyproject.toml"), pyproject.replace("1.4.2", "1.4.3"));
    assert_eq!(repo.git(&["describe", "--tags"]), "v1.4.3");
}

/// `uv.lock` as `uv lock` writes it (uv 0.13) for a project with no dependencies and a build
/// backend, next to a uv workspace member of the same version that is not released.
const UV_LOCK: &str = "version = 1\nrevision = 5\nrequires-python = \">=3.9\"\n\n[manifest]\nmembers = [\n    \"my-app\",\n    \"plugin\",\n]\n\n[[package]]\nname = \"my-app\"\nversion = \"1.4.2\"\nsource = { editable = \".\" }\ndependencies = [\n    { name = \"plugin\" },\n]\n\n[package.metadata]\nrequires-dist = [{ name = \"plugin\", editable = \"plugin\" }]\n\n[[package]]\nname = \"plugin\"\nversion = \"1.4.2\"\nsource = { editable = \"plugin\" }\n";

#[test]
fn uv_lock_follows_the_projects_version() {
    let ctx = TestContext::new();
    let pyproject = "[project]\nname = \"My_App\"\nversion = \"1.4.2\"\nrequires-python = \">=3.9\"\ndependencies = [\"plugin\"]\n\n[tool.uv.sources]\nplugin = { workspace = true }\n\n[tool.uv.workspace]\nmembers = [\"plugin\"]\n\n[build-system]\nrequires = [\"hatchling\"]\nbuild-backend = \"hatchling.build\"\n";
    let repo = Repo::new(&ctx, &[("pyproject.toml", pyproject), ("uv.lock", UV_LOCK)]);
    repo.release(&ctx, &["minor", "-y"]).success();
    assert_eq!(
        repo.read("uv.lock"),
        UV_LOCK.replacen("version = \"1.4.2\"", "version = \"1.5.0\"", 1),
        "the project's entry, not the workspace member's"
    );
    assert_eq!(repo.git(&["status", "--porcelain"]), "");
}
