//! The registry's client verbs (`push`, `versions`, `config …`, `delete …`, `token …`, `gc`)
//! against a real `depot serve` on port 0.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::common::*;

/// A `depot serve` child process, killed on drop.
pub(crate) struct Registry {
    pub child: Child,
    pub url: String,
    pub admin: String,
    /// Everything it wrote on stderr so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts `depot serve --data DIR --listen 127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(ctx: &TestContext, extra: &[&str]) -> Self {
        Self::start_at(ctx, "127.0.0.1:0", extra)
    }

    /// The same, listening on `listen` (to restart a registry on the address its clients know).
    pub fn start_at(ctx: &TestContext, listen: &str, extra: &[&str]) -> Self {
        let data = ctx.path("registry-data");
        let mut child = ctx
            .command()
            .args(["serve", "--listen", listen, "--data"])
            .arg(&data)
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn depot serve");
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr"));
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            let read = reader.read_line(&mut line).expect("read depot serve's stderr");
            assert!(read > 0, "depot serve exited before listening:\n{seen}");
            seen.push_str(&line);
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().expect("an address").to_owned();
            }
        };
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        // Keep draining stderr so that the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(seen.into_bytes()));
        let drained = log.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n @ 1..) = std::io::Read::read(&mut reader, &mut buffer) {
                drained.lock().unwrap().extend_from_slice(&buffer[..n]);
            }
        });
        let admin = fs_err::read_to_string(data.join("admin.token")).expect("DATA/admin.token").trim().to_owned();
        Registry { child, url, admin, log }
    }

    /// What the registry has written on stderr so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// `depot ARGS` with DEPOT_REGISTRY and DEPOT_TOKEN set to the admin token.
    pub fn run(&self, ctx: &TestContext, args: &[&str]) -> Run {
        self.run_as(ctx, &self.admin, args)
    }

    pub fn run_as(&self, ctx: &TestContext, token: &str, args: &[&str]) -> Run {
        let mut command = ctx.command();
        command.env("DEPOT_REGISTRY", &self.url).env("DEPOT_TOKEN", token).args(args);
        run_command(command)
    }
}

fn run_command(mut command: std::process::Command) -> Run {
    Run::from(command.output().expect("run depot"))
}

/// A directory holding one file, to push.
pub(crate) fn tree(ctx: &TestContext, name: &str, content: &str) -> String {
    ctx.tree(name, &[("app.txt", content)]).display().to_string()
}

/// The `sha256:…` line a push prints on stdout.
#[track_caller]
fn pushed_digest(run: &Run) -> String {
    let digest = run.stdout.trim().to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71 && !digest.contains('\n'),
        "push prints one digest on stdout: {:?}",
        run.stdout
    );
    digest
}

#[test]
fn push_configure_bump_and_roll_back() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let v1 = tree(&ctx, "v1", "one");
    let v2 = tree(&ctx, "v2", "two");
    let v3 = tree(&ctx, "v3", "three");

    let d1 = pushed_digest(&registry.run(&ctx, &["push", "web", "1.0.0", &v1]).success());
    // The same tree again: packing is reproducible, so the same digest, and a success.
    let again = registry.run(&ctx, &["push", "web", "1.0.0", &v1]).success();
    assert_eq!(pushed_digest(&again), d1);
    assert!(again.stderr.contains("already pushed"), "{}", again.stderr);
    let d2 = pushed_digest(&registry.run(&ctx, &["push", "web", "1.1.0", &v2, "--label", "git=3f9c2e1"]).success());
    assert_ne!(d1, d2);

    let versions = registry.run(&ctx, &["versions", "web", "--json"]).success().json();
    let versions = versions.as_array().expect("an array");
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["version"], "1.0.0", "push order");
    assert_eq!(versions[0]["digest"], d1.as_str());
    assert_eq!(versions[1]["version"], "1.1.0");
    assert_eq!(versions[1]["labels"]["git"], "3f9c2e1");
    let table = registry.run(&ctx, &["versions", "web"]).success();
    assert!(table.stdout.contains("1.0.0") && table.stdout.contains("1.1.0"), "{}", table.stdout);
    assert!(table.stdout.contains("git=3f9c2e1"), "{}", table.stdout);

    // create (revision 1) → set (2) → push 1.2.0 → bump (3) → undo (4)
    registry.run(&ctx, &["config", "create", "prod", "--layer", "web:1.0.0"]).success();
    registry.run(&ctx, &["config", "set", "prod", "web:1.1.0"]).success();
    let d3 = pushed_digest(&registry.run(&ctx, &["push", "web", "1.2.0", &v3]).success());
    let bump = registry.run(&ctx, &["config", "bump", "prod", "web"]).success();
    assert!(bump.stderr.contains("1.1.0 -> 1.2.0"), "{}", bump.stderr);
    let undo = bump.stdout.trim();
    assert_eq!(undo, "depot config set prod web:1.1.0", "bump prints the command that undoes it");
    let shown = registry.run(&ctx, &["config", "show", "prod", "--json"]).success().json();
    assert_eq!(shown["revision"], 3);
    assert_eq!(shown["layers"][0]["version"], "1.2.0");
    let undo_args: Vec<&str> = undo.split_whitespace().skip(1).collect();
    registry.run(&ctx, &undo_args).success();

    let shown = registry.run(&ctx, &["config", "show", "prod", "--json"]).success().json();
    assert_eq!(shown["name"], "prod");
    assert_eq!(shown["revision"], 4);
    assert_eq!(shown["layers"], serde_json::json!([{ "component": "web", "version": "1.1.0", "digest": d2 }]));
    let expected_hash = sha256_hex(format!("{}\n", d2.trim_start_matches("sha256:")).as_bytes());
    assert_eq!(shown["hash"], expected_hash.as_str(), "the hash is over the layers' digests");
    let text = registry.run(&ctx, &["config", "show", "prod"]).success();
    assert!(text.stdout.contains(&expected_hash) && text.stdout.contains(&d2), "{}", text.stdout);

    let history = registry.run(&ctx, &["config", "history", "prod", "--json"]).success().json();
    let revisions: Vec<u64> = history.as_array().unwrap().iter().map(|e| e["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions.len(), 4);
    assert_eq!(revisions.iter().copied().min(), Some(1));
    assert_eq!(revisions.iter().copied().max(), Some(4));
    let text = registry.run(&ctx, &["config", "history", "prod"]).success();
    assert!(text.stdout.starts_with("REVISION"), "{}", text.stdout);
    assert_eq!(text.stdout.lines().count(), 5, "a header and four revisions:\n{}", text.stdout);

    // Rollback without a target: the layers of the revision before (3, web 1.2.0), as revision 5.
    let rolled = registry.run(&ctx, &["config", "rollback", "prod", "--json"]).success().json();
    assert_eq!(rolled["revision"], 5);
    assert_eq!(rolled["layers"][0]["digest"], d3.as_str());
    let rolled = registry.run(&ctx, &["config", "rollback", "prod", "--to-revision", "1", "--json"]).success().json();
    assert_eq!(rolled["revision"], 6);
    assert_eq!(rolled["layers"][0]["version"], "1.0.0");
    assert_eq!(rolled["layers"][0]["digest"], d1.as_str());

    let configs = registry.run(&ctx, &["configs", "--json"]).success().json();
    assert_eq!(configs[0]["name"], "prod");
    assert_eq!(configs[0]["revision"], 6);
    let text = registry.run(&ctx, &["configs"]).success();
    assert!(text.stdout.lines().any(|l| l.starts_with("prod ") && l.contains(" 6 ")), "{}", text.stdout);
    let components = registry.run(&ctx, &["components", "--json"]).success().json();
    assert_eq!(components[0]["name"], "web");
    assert_eq!(components[0]["versions"], 3);
}

#[test]
fn an_archive_file_is_pushed_as_it_is() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let archive = ctx.release("2.0.0", &[("app.txt", "packed")]);
    let run = registry.run(&ctx, &["push", "web", "2.0.0", &archive.display().to_string(), "--json"]).success();
    let info = run.json();
    let expected = format!("sha256:{}", sha256_hex(&fs_err::read(&archive).unwrap()));
    assert_eq!(info["digest"], expected.as_str());
    assert_eq!(info["component"], "web");
    assert_eq!(info["version"], "2.0.0");
    assert_eq!(info["size"], fs_err::metadata(&archive).unwrap().len());

    // Not an archive: refused before any upload.
    fs_err::write(ctx.path("notes.txt"), "hello").unwrap();
    registry
        .run(&ctx, &["push", "web", "2.0.1", &ctx.path("notes.txt").display().to_string()])
        .failure()
        .stderr_contains("not a release archive");
    // --format is for directories only.
    registry.run(&ctx, &["push", "web", "2.0.1", &archive.display().to_string(), "--format", "gz"]).usage_error();
    registry.run(&ctx, &["push", "web", "2.0.1", "missing.tar.zst"]).failure().stderr_contains("missing.tar.zst");
}

/// Sizes are given as `--help` shows them: `1 KiB`, `1KiB`, or bytes.
#[test]
fn sizes_are_written_as_the_help_shows_them() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &["--max-blob-size", "1 KiB"]);
    let big = ctx.tree("big", &[("app.txt", "x")]);
    let noise: Vec<u8> = (0..8192u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs_err::write(big.join("noise.bin"), noise).unwrap();
    registry.run(&ctx, &["push", "web", "1.0.0", big.to_str().unwrap()]).failure().stderr_contains("1024");
    ctx.run(&["serve", "--max-blob-size", "10 parsecs"]).usage_error().stderr_contains("10GiB");
    let archive = ctx.release("1.0.0", &[("app.txt", "a few bytes")]);
    ctx.deploy("1.0.0", &archive, &["--max-bytes", "1KiB"]).success();
    ctx.deploy("1.0.1", &archive, &["--max-bytes", "10B"]).failure().stderr_contains("size limit");
}

/// The log shows what `--log-level` asks for, without colour codes when it is not a terminal.
#[test]
fn the_log_level_is_an_option_and_colour_is_for_terminals_only() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &["--log-level", "info"]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:latest"]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "v2", "v2")]).success();
    let moved = || registry.log().contains("a tracked channel moved");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !moved() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let log = registry.log();
    assert!(moved(), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a piped log: {log:?}");
    ctx.run(&["serve", "--log-level", "depot=[", "--data", ctx.path("other").to_str().unwrap()])
        .failure()
        .stderr_contains("--log-level");
}

#[test]
fn a_version_is_immutable() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let first = tree(&ctx, "first", "one");
    let second = tree(&ctx, "second", "something else");
    let digest = pushed_digest(&registry.run(&ctx, &["push", "web", "1.0.0", &first]).success());
    registry.run(&ctx, &["push", "web", "1.0.0", &first]).success();

    let refused = registry.run(&ctx, &["push", "web", "1.0.0", &second]).failure();
    assert!(refused.stderr.starts_with("error: ") || refused.stderr.contains("\nerror: "), "{}", refused.stderr);
    assert!(refused.stderr.contains("version-exists"), "{}", refused.stderr);
    assert!(refused.stderr.contains(&digest), "the error names the existing digest: {}", refused.stderr);
    assert!(refused.stderr.contains("hint: "), "{}", refused.stderr);
    assert!(refused.stdout.is_empty(), "{}", refused.stdout);

    let versions = registry.run(&ctx, &["versions", "web", "--json"]).success().json();
    assert_eq!(versions.as_array().unwrap().len(), 1);
    assert_eq!(versions[0]["digest"], digest.as_str());
}

#[test]
fn a_stale_expected_revision_is_a_conflict() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "a", "a")]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "b", "b")]).success();
    registry.run(&ctx, &["config", "create", "prod", "--layer", "web:1.0.0"]).success();
    registry.run(&ctx, &["config", "set", "prod", "web:1.1.0", "--expect-revision", "1"]).success();

    for args in [
        &["config", "set", "prod", "web:1.0.0", "--expect-revision", "1"][..],
        &["config", "bump", "prod", "web", "--expect-revision", "1"],
        &["config", "rollback", "prod", "--expect-revision", "1"],
    ] {
        let run = registry.run(&ctx, args).failure();
        assert!(run.stderr.contains("config-conflict"), "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains("hint: "), "{args:?}: {}", run.stderr);
    }
    let shown = registry.run(&ctx, &["config", "show", "prod", "--json"]).success().json();
    assert_eq!(shown["revision"], 2, "refused writes change nothing");
    assert_eq!(shown["layers"][0]["version"], "1.1.0");
}

#[test]
fn deletes_refuse_what_a_configuration_uses() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "a", "a")]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "b", "b")]).success();
    registry.run(&ctx, &["config", "create", "prod", "--layer", "web:1.0.0"]).success();

    let run = registry.run(&ctx, &["delete", "version", "web", "1.0.0"]).failure();
    assert!(run.stderr.contains("in-use") && run.stderr.contains("prod"), "{}", run.stderr);
    let run = registry.run(&ctx, &["delete", "component", "web"]).failure();
    assert!(run.stderr.contains("in-use") && run.stderr.contains("prod"), "{}", run.stderr);

    // An unused version goes.
    registry.run(&ctx, &["delete", "version", "web", "1.1.0"]).success();
    let versions = registry.run(&ctx, &["versions", "web", "--json"]).success().json();
    assert_eq!(versions.as_array().unwrap().len(), 1);

    // Deleting a configuration needs --force: a usage error that changes nothing.
    let run = registry.run(&ctx, &["delete", "config", "prod"]).usage_error();
    assert!(run.stderr.contains("--force") && run.stderr.contains("hint: "), "{}", run.stderr);
    registry.run(&ctx, &["config", "show", "prod"]).success();
    // A stale revision guards a delete like any other write.
    let revision =
        registry.run(&ctx, &["config", "show", "prod", "--json"]).success().json()["revision"].as_u64().unwrap();
    let stale = (revision - 1).to_string();
    registry
        .run(&ctx, &["delete", "config", "prod", "--force", "--expect-revision", &stale])
        .failure()
        .stderr_contains("config-conflict");
    registry.run(&ctx, &["config", "show", "prod"]).success();
    registry.run(&ctx, &["delete", "config", "prod", "--force", "--expect-revision", &revision.to_string()]).success();
    registry.run(&ctx, &["config", "show", "prod"]).failure().stderr_contains("unknown-config");

    // Now nothing uses web.
    registry.run(&ctx, &["delete", "component", "web"]).success();
    registry.run(&ctx, &["versions", "web"]).failure().stderr_contains("unknown-component");
}

#[test]
fn an_unknown_component_is_an_error_not_an_empty_list() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let run = registry.run(&ctx, &["versions", "nope"]).failure();
    assert!(run.stderr.contains("unknown-component") && run.stderr.contains("nope"), "{}", run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    let run = registry.run(&ctx, &["versions", "nope", "--json"]).failure();
    assert!(run.stdout.is_empty(), "no JSON document on failure: {}", run.stdout);
    // An empty registry lists nothing, successfully.
    assert_eq!(registry.run(&ctx, &["components", "--json"]).success().json(), serde_json::json!([]));
    assert_eq!(registry.run(&ctx, &["configs", "--json"]).success().json(), serde_json::json!([]));
}

#[test]
fn tokens_are_created_listed_and_revoked_and_roles_hold() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let operator = registry.run(&ctx, &["token", "create", "ci", "--role", "operator"]).success();
    let operator = operator.stdout.trim().to_owned();
    let (name, secret) = operator.split_once('.').expect("NAME.SECRET");
    assert_eq!(name, "ci");
    assert!(secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_hexdigit()), "{operator}");
    let viewer =
        registry.run(&ctx, &["token", "create", "dash", "--role", "viewer"]).success().stdout.trim().to_owned();
    let agent = registry
        .run(&ctx, &["token", "create", "web-01", "--role", "agent", "--config", "web-*", "--json"])
        .success()
        .json();
    assert_eq!(agent["name"], "web-01");
    assert_eq!(agent["role"], "agent");
    assert_eq!(agent["config_pattern"], "web-*");
    assert!(agent["token"].as_str().unwrap().starts_with("web-01."));

    let list = registry.run(&ctx, &["token", "list", "--json"]).success().json();
    let roles: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["name"].as_str().unwrap().to_owned(), t["role"].as_str().unwrap().to_owned()))
        .collect();
    for expected in [("admin", "admin"), ("ci", "operator"), ("dash", "viewer"), ("web-01", "agent")] {
        assert!(roles.contains(&(expected.0.to_owned(), expected.1.to_owned())), "{expected:?} in {roles:?}");
    }
    let text = registry.run(&ctx, &["token", "list"]).success();
    assert!(!text.stdout.contains(secret), "the list never shows secrets");

    // A viewer reads but cannot push, configure or manage tokens.
    let dir = tree(&ctx, "a", "a");
    registry.run_as(&ctx, &viewer, &["components"]).success();
    let run = registry.run_as(&ctx, &viewer, &["push", "web", "1.0.0", &dir]).failure();
    assert!(run.stderr.contains("forbidden") && run.stderr.contains("hint: "), "{}", run.stderr);
    registry.run_as(&ctx, &viewer, &["token", "list"]).failure().stderr_contains("forbidden");
    registry.run_as(&ctx, &viewer, &["gc"]).failure().stderr_contains("forbidden");
    // The operator pushes.
    registry.run_as(&ctx, &operator, &["push", "web", "1.0.0", &dir]).success();
    registry.run_as(&ctx, &operator, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();

    registry.run(&ctx, &["token", "revoke", "dash"]).success();
    let run = registry.run_as(&ctx, &viewer, &["components"]).failure();
    assert!(run.stderr.contains("unauthorized") && run.stderr.contains("hint: "), "{}", run.stderr);
    let list = registry.run(&ctx, &["token", "list", "--json"]).success().json();
    assert!(list.as_array().unwrap().iter().all(|t| t["name"] != "dash"));
}

#[test]
fn gc_reports_what_it_freed() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &["--gc-grace", "0s"]);
    let a = ctx.release("1.0.0", &[("app.txt", "a")]).display().to_string();
    let b = ctx.release("1.1.0", &[("app.txt", "b")]).display().to_string();
    registry.run(&ctx, &["push", "web", "1.0.0", &a]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &b]).success();
    registry.run(&ctx, &["delete", "version", "web", "1.0.0"]).success();
    let report = registry.run(&ctx, &["gc", "--json"]).success().json();
    assert_eq!(report["blobs_removed"], 1, "{report}");
    assert_eq!(report["bytes_freed"], fs_err::metadata(&a).unwrap().len(), "{report}");
    let text = registry.run(&ctx, &["gc"]).success();
    assert!(text.stdout.starts_with("Freed 0 B (0 blobs removed)"), "{}", text.stdout);
    // The blob still used was kept: the same archive under another version is not uploaded again.
    let kept = registry.run(&ctx, &["push", "web", "2.0.0", &b]).success();
    assert!(!kept.stderr.contains("Uploaded"), "{}", kept.stderr);
    let freed = registry.run(&ctx, &["push", "web", "2.0.1", &a]).success();
    assert!(freed.stderr.contains("Uploaded"), "{}", freed.stderr);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn registry_and_token_resolve_from_flags_environment_and_file() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let home = ctx.path("home");
    fs_err::create_dir_all(&home).unwrap();
    let bare = || {
        let mut command = ctx.command();
        command.env("HOME", &home).env_remove("XDG_CONFIG_HOME");
        command
    };

    // No token anywhere: an error that says where to find one.
    let run = run_command({
        let mut c = bare();
        c.args(["components", "--registry", &registry.url]);
        c
    })
    .failure();
    assert!(run.stderr.contains("no token"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: ") && run.stderr.contains("DEPOT_TOKEN"), "{}", run.stderr);
    assert!(run.stderr.contains("admin.token"), "{}", run.stderr);

    // Flags alone.
    run_command({
        let mut c = bare();
        c.args(["components", "--registry", &registry.url, "--token", &registry.admin]);
        c
    })
    .success();

    // The user's file alone.
    let file = home.join(".config/depot/config.toml");
    fs_err::create_dir_all(file.parent().unwrap()).unwrap();
    fs_err::write(&file, format!("registry = \"{}\"\ntoken = \"{}\"\n", registry.url, registry.admin)).unwrap();
    run_command({
        let mut c = bare();
        c.arg("components");
        c
    })
    .success();

    // The environment beats the file: a bad token from DEPOT_TOKEN is used, and refused.
    let run_env = run_command({
        let mut c = bare();
        c.env("DEPOT_TOKEN", "admin.0000").arg("components");
        c
    })
    .failure();
    assert!(run_env.stderr.contains("unauthorized"), "{}", run_env.stderr);

    // A flag beats the environment: an unreachable registry from --registry is used.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let closed = format!("http://{closed}");
    let run_flag = run_command({
        let mut c = bare();
        c.env("DEPOT_REGISTRY", &registry.url).args(["components", "--registry", &closed]);
        c
    })
    .failure();
    assert!(run_flag.stderr.contains("cannot reach the registry"), "{}", run_flag.stderr);
    assert!(run_flag.stderr.contains("hint: "), "{}", run_flag.stderr);

    // Loading never writes: the file is as it was, and nothing else appeared in HOME.
    assert_eq!(
        fs_err::read_to_string(&file).unwrap(),
        format!("registry = \"{}\"\ntoken = \"{}\"\n", registry.url, registry.admin)
    );
    assert_eq!(walk(&home), vec![file]);
}

const REGISTRY_COMMANDS: &[&[&str]] = &[
    &["push"],
    &["components"],
    &["versions"],
    &["channels"],
    &["channel"],
    &["channel", "set"],
    &["channel", "rm"],
    &["deprecate"],
    &["undeprecate"],
    &["configs"],
    &["config"],
    &["config", "create"],
    &["config", "set"],
    &["config", "bump"],
    &["config", "show"],
    &["config", "history"],
    &["config", "rollback"],
    &["delete"],
    &["delete", "version"],
    &["delete", "component"],
    &["delete", "config"],
    &["token"],
    &["token", "create"],
    &["token", "list"],
    &["token", "revoke"],
    &["gc"],
    &["status"],
    &["agent", "retry"],
];

#[test]
fn registry_help_tree() {
    let ctx = TestContext::new();
    for command in REGISTRY_COMMANDS {
        let mut args = command.to_vec();
        args.push("--help");
        let run = ctx.run(&args).success();
        assert!(run.stdout.contains("Examples:"), "`depot {} --help` has examples", command.join(" "));
        insta::assert_snapshot!(command.join("-"), run.stdout);
    }
}

/// An agent's report, as `depot agent` will send it: `PUT /api/v1/configs/{config}/agents/{host}`.
fn report(registry: &Registry, token: &str, config: &str, host: &str, body: &serde_json::Value) -> u16 {
    put(registry, token, &format!("/api/v1/configs/{config}/agents/{host}"), body).0
}

/// `PUT path` with a JSON body over a plain TCP connection, as a client other than depot's
/// would send it: the status and the whole answer.
fn put(registry: &Registry, token: &str, path: &str, body: &serde_json::Value) -> (u16, String) {
    use std::io::{Read, Write};
    let address = registry.url.trim_start_matches("http://");
    let body = body.to_string();
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    (response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0), response)
}

#[test]
fn status_shows_every_agent_of_a_configuration() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "a", "a")]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "b", "b")]).success();
    let config =
        registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0", "--json"]).success().json();
    let hash = config["hash"].as_str().unwrap().to_owned();
    let empty = registry.run(&ctx, &["status", "web-prod"]).success().stdout;
    assert!(empty.contains("No agent has reported"), "{empty}");
    let token = |host: &str| {
        registry
            .run(&ctx, &["token", "create", host, "--role", "agent", "--config", "web-*"])
            .success()
            .stdout
            .trim()
            .to_owned()
    };
    let (one, two) = (token("web-01"), token("web-02"));
    let at = |seconds: u32| format!("2026-01-01T00:00:{seconds:02}Z");
    let active = serde_json::json!({"revision": 1, "hash": hash, "state": "active", "reported_at": at(1), "timings_ms": {"download": 12}});
    assert_eq!(report(&registry, &one, "web-prod", "web-01", &active), 204);
    let failed = serde_json::json!({
        "revision": 1, "hash": hash, "state": "rolled-back", "reported_at": at(2),
        "error": "health check failed: http://127.0.0.1:8080/health answered 503", "output_tail": "restarting web\nweb: port in use"
    });
    assert_eq!(report(&registry, &two, "web-prod", "web-02", &failed), 204);
    assert_eq!(
        report(&registry, &one, "web-prod", "web-02", &active),
        403,
        "a token writes only the hosts it reports for"
    );
    assert_eq!(report(&registry, &two, "db-prod", "web-02", &active), 403, "nor outside its configurations");

    let json = registry.run(&ctx, &["status", "web-prod", "--json"]).success().json();
    let agents = json.as_array().unwrap();
    assert_eq!(agents.len(), 2);
    for key in ["host", "revision", "hash", "state", "last_seen", "current"] {
        assert!(agents[0].get(key).is_some(), "{key} in {}", agents[0]);
    }
    assert_eq!((agents[0]["host"].as_str(), agents[0]["state"].as_str()), (Some("web-01"), Some("active")));
    assert_eq!(agents[1]["state"], "rolled-back");
    assert_eq!(agents[0]["current"], true);

    let text = registry.run(&ctx, &["status", "web-prod"]).success().stdout;
    assert!(text.contains("web-02 rolled-back: health check failed") && text.contains("| web: port in use"), "{text}");
    assert!(text.contains("1 of 2 agents active on the current revision"), "{text}");

    // A new revision: nobody is on it until they report it.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    let json = registry.run(&ctx, &["status", "web-prod", "--json"]).success().json();
    assert!(json.as_array().unwrap().iter().all(|a| a["current"] == false), "{json}");
    registry.run(&ctx, &["status", "nope"]).failure().stderr_contains("unknown-config");
}

#[test]
fn an_agent_follows_its_configuration_and_reports_each_step() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "a", "a")]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "b", "b")]).success();
    registry.run(&ctx, &["push", "web", "1.2.0", &tree(&ctx, "c", "c")]).success();
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let token =
        registry.run(&ctx, &["token", "create", "host-1", "--role", "agent", "--config", "web-*"]).success().stdout;
    let token = token.trim().to_owned();
    let root = ctx.path("host-1");
    let agent = |extra: &[&str]| {
        let mut args = vec!["agent", "--config", "web-prod", "--root", root.to_str().unwrap(), "--name", "host-1"];
        args.extend_from_slice(extra);
        registry.run_as(&ctx, &token, &args)
    };
    let content = || fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap();
    let status = || registry.run(&ctx, &["status", "web-prod", "--json"]).success().json()[0].clone();

    let env_file = ctx.path("hook-env");
    let hook = format!(
        "echo \"$DEPOT_REVISION $LAYER_0_NAME $LAYER_0_VERSION $(grep -c web-prod $STATEFILE)\" > {}",
        env_file.display()
    );
    agent(&["--once", "--post-activate", &hook]).success();
    assert_eq!(content(), "a");
    assert_eq!(fs_err::read_to_string(&env_file).unwrap(), "1 web 1.0.0 1\n", "seed 001's hook variables");
    let first = status();
    assert_eq!((first["state"].as_str(), first["current"].as_bool()), (Some("active"), Some(true)), "{first}");
    let first_release = fs_err::read_link(root.join("releases/current")).unwrap();
    assert!(first_release.to_str().unwrap().starts_with("web-prod-"), "{first_release:?}");

    // A change is deployed; the same configuration again is nothing to do.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    let once = agent(&["--once", "--json"]).success().json();
    assert_eq!((once["outcome"].as_str(), once["revision"].as_u64()), (Some("activated"), Some(2)), "{once}");
    assert_eq!(content(), "b");
    assert_eq!(status()["revision"], 2);
    let log_before = fs_err::read_to_string(root.join("logs/releases.log")).unwrap();
    agent(&["--once"]).success();
    assert_eq!(fs_err::read_to_string(root.join("logs/releases.log")).unwrap(), log_before, "nothing done");

    // A failing health check: switched back, reported, and not retried for the same hash.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    let run = agent(&["--once", "--health-cmd", "false", "--health-timeout", "1s"]).failure();
    assert!(run.stderr.contains("rolled-back"), "{}", run.stderr);
    assert_eq!(content(), "b", "the previous release is active again");
    let failed = status();
    assert_eq!(failed["state"], "rolled-back");
    assert!(failed["error"].as_str().unwrap().contains("health"), "{failed}");
    agent(&["--once"]).success().stderr_contains("failed on this host before");
    assert_eq!(status()["state"], "rolled-back", "the failure's report stays");
    assert_eq!(content(), "b");

    // Back to earlier content: the release on disk is reused, without downloading.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.0.0"]).success();
    agent(&["--once"]).success();
    assert_eq!(content(), "a");
    assert_eq!(fs_err::read_link(root.join("releases/current")).unwrap(), first_release);

    // One agent per root.
    let mut running = ctx.command();
    running.env("DEPOT_REGISTRY", &registry.url).env("DEPOT_TOKEN", &token);
    running.args(["agent", "--config", "web-prod", "--root", root.to_str().unwrap(), "--name", "host-1"]);
    let mut running = running.stderr(Stdio::null()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    agent(&["--once"]).failure().stderr_contains("another depot agent");
    let _ = running.kill();
    let _ = running.wait();
}

/// A label that looks like a version but is not semver would move no channel: it is refused,
/// naming the semver meant, unless pushed as free-form; one with a `v` is semver and moves them.
/// Local releases list in the registry's order.
#[test]
fn version_like_labels_must_be_semver_or_free_form() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let v1 = tree(&ctx, "v1", "v1");
    registry.run(&ctx, &["push", "web", "01.2.3", &v1]).usage_error().stderr_contains("did you mean 1.2.3?");
    registry.run(&ctx, &["push", "web", "1.2", &v1]).usage_error().stderr_contains("did you mean 1.2.0?");
    registry.run(&ctx, &["push", "web", "v1.2.3", &v1]).success();
    let channels = registry.run(&ctx, &["channels", "web", "--json"]).success().json();
    let latest = channels.as_array().unwrap().iter().find(|c| c["name"] == "latest").expect("latest");
    assert_eq!(latest["version"], "v1.2.3");
    registry.run(&ctx, &["push", "web", "01.2.3", &tree(&ctx, "v2", "v2"), "--free-form"]).success();
    let versions = registry.run(&ctx, &["versions", "web", "--json"]).success().json();
    let order: Vec<&str> = versions.as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(order, ["01.2.3", "v1.2.3"], "free-form labels sort before semver ones");
    // The API refuses it too, for clients other than the CLI.
    let blob = versions[0]["digest"].as_str().unwrap();
    let body = serde_json::json!({ "digest": blob });
    let (status, answer) = put(&registry, &registry.admin, "/api/v1/components/web/versions/1.2", &body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("did you mean 1.2.0?"), "{answer}");
    // depot releases lists local releases in the same order as depot versions.
    let archive = ctx.release("x", &[("app.txt", "a")]);
    for version in ["v1.2.3", "01.2.3"] {
        ctx.deploy(version, &archive, &[]).success();
    }
    let releases = ctx.run(&["releases", "--root", &ctx.root_str(), "--json"]).success().json();
    let local: Vec<&str> = releases.as_array().unwrap().iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!(local, order);
}

#[test]
fn edge_builds_take_build_channels_and_admins_set_manual_ones() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "a", "a")]).success();

    // A main-branch build pushed from a git checkout.
    let checkout = ctx.path("checkout");
    fs_err::create_dir_all(&checkout).unwrap();
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&checkout)
            .stdout(Stdio::null())
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["commit", "-q", "--allow-empty", "-m", "build"]);
    let head = std::process::Command::new("git").args(["rev-parse", "HEAD"]).current_dir(&checkout).output().unwrap();
    let sha = String::from_utf8_lossy(&head.stdout).trim()[..7].to_owned();
    let build = tree(&ctx, "b", "b");
    let mut command = ctx.command();
    command.env("DEPOT_REGISTRY", &registry.url).env("DEPOT_TOKEN", &registry.admin).current_dir(&checkout);
    command.args(["push", "web", "1.1.0-dev.7", &build, "--channel", "edge"]);
    let pushed = run_command(command);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let channels = registry.run(&ctx, &["channels", "web", "--json"]).success().json();
    let names: BTreeMap<String, (String, String)> = channels
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let name = c["name"].as_str().unwrap().to_owned();
            (name, (c["kind"].as_str().unwrap().to_owned(), c["version"].as_str().unwrap().to_owned()))
        })
        .collect();
    let today = format!("nightly-{}", chrono::Utc::now().format("%Y-%m-%d"));
    for build in ["edge".to_owned(), today, format!("sha-{sha}")] {
        assert_eq!(names.get(&build), Some(&("build".to_owned(), "1.1.0-dev.7".to_owned())), "{build}: {names:?}");
    }
    assert_eq!(names["latest"].1, "1.0.0", "a build never moves latest");
    registry.run(&ctx, &["push", "web", "1.2.0", &tree(&ctx, "c", "c"), "--git-sha", "abc"]).usage_error();

    // Manual channels: admins only, and not under a reserved name.
    let operator = registry.run(&ctx, &["token", "create", "ci", "--role", "operator"]).success().stdout;
    registry
        .run_as(&ctx, operator.trim(), &["channel", "set", "web", "stable", "1.0.0"])
        .failure()
        .stderr_contains("forbidden");
    registry.run(&ctx, &["channel", "set", "web", "stable", "1.0.0"]).success();
    for reserved in ["latest", "1.0", "prod", "2.0.0"] {
        registry.run(&ctx, &["channel", "set", "web", reserved, "1.0.0"]).failure().stderr_contains("reserved");
    }
    registry.run(&ctx, &["config", "create", "web-canary", "--layer", "web:stable"]).success();
    registry.run(&ctx, &["channel", "set", "web", "stable", "1.1.0-dev.7"]).success();
    let history = registry.run(&ctx, &["config", "history", "web-canary"]).success().stdout;
    assert!(history.contains("channel web:stable moved 1.0.0 → 1.1.0-dev.7"), "{history}");
    registry.run(&ctx, &["channel", "rm", "web", "latest"]).failure().stderr_contains("rolling");
    registry.run(&ctx, &["channel", "rm", "web", "stable"]).success();
}
