//! deploy, rollback, releases, prune and verify on a real root.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use crate::common::*;

fn files(version: &str) -> Vec<(&'static str, String)> {
    vec![
        ("bin/server", format!("#!/bin/sh\necho {version}\n")),
        ("assets/shared.txt", "shared by every release\n".into()),
    ]
}

/// Packs a small release whose `bin/server` names the version.
fn release(ctx: &TestContext, version: &str) -> std::path::PathBuf {
    let files = files(version);
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    ctx.release(version, &borrowed)
}

fn deploy_ok(ctx: &TestContext, version: &str) {
    let archive = release(ctx, version);
    ctx.deploy(version, &archive, &["--keep", "100"]).success();
}

#[test]
fn deploy_creates_an_immutable_release_and_switches_current() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "1.0.0");
    ctx.deploy("1.0.0", &v1, &[]).success().stderr_contains("Deployed 1.0.0");
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"), "current is a relative symlink to the version");
    let root = ctx.root();
    assert_eq!(fs_err::read_to_string(root.join("releases/current/VERSION")).unwrap(), "1.0.0\n");
    for dir in ["config", "data", "logs", ".depot"] {
        assert!(root.join(dir).is_dir(), "{dir} is created");
    }
    let server = root.join("releases/1.0.0/bin/server");
    let mode = fs_err::metadata(&server).unwrap().permissions().mode();
    assert_eq!(mode & 0o222, 0, "release files are read-only");

    let v2 = release(&ctx, "1.1.0");
    ctx.deploy("1.1.0", &v2, &[]).success().stderr_contains("current: 1.0.0 -> 1.1.0");
    assert_eq!(ctx.current().as_deref(), Some("1.1.0"));
    assert_eq!(ctx.release_dirs(), ["1.0.0", "1.1.0", "current"]);

    let log = fs_err::read_to_string(root.join("logs/releases.log")).unwrap();
    assert!(log.lines().count() >= 6, "one line per step:\n{log}");
    for line in log.lines() {
        let stamp = line.split(' ').next().unwrap();
        assert!(
            stamp.len() == 20 && stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
            "ISO-8601 timestamp: {line}"
        );
    }
}

#[test]
fn persistent_directories_are_never_touched() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    let root = ctx.root();
    fs_err::write(root.join("config/app.env"), "KEY=1\n").unwrap();
    fs_err::write(root.join("data/db"), "rows\n").unwrap();
    let before = (ctx.snapshot(&root.join("config")), ctx.snapshot(&root.join("data")));
    for version in ["1.1.0", "1.2.0", "1.3.0"] {
        let archive = release(&ctx, version);
        ctx.deploy(version, &archive, &["--keep", "1"]).success();
    }
    ctx.run(&["rollback", "--root", &ctx.root_str()]).success();
    ctx.run(&["prune", "--root", &ctx.root_str(), "--keep", "1"]).success();
    assert_eq!(before, (ctx.snapshot(&root.join("config")), ctx.snapshot(&root.join("data"))));
}

#[test]
fn deploy_json_is_one_document() {
    let ctx = TestContext::new();
    let archive = release(&ctx, "1.0.0");
    let run = ctx.deploy("1.0.0", &archive, &["--json"]).success();
    let report = run.json();
    assert_eq!(report["version"], "1.0.0");
    assert_eq!(report["action"], "deployed");
    assert_eq!(report["stats"]["files"], 3, "two files and VERSION");
    assert!(report["archives"][0].as_str().unwrap().len() == 64);
}

#[test]
fn releases_lists_in_semver_order_with_status() {
    let ctx = TestContext::new();
    for version in ["v1.9.0", "v1.10.0", "v1.2.0"] {
        deploy_ok(&ctx, version);
    }
    let text = ctx.run(&["releases", "--root", &ctx.root_str()]).success().stdout;
    let order: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().find(|w| w.starts_with("v1."))).collect();
    assert_eq!(order, ["v1.2.0", "v1.9.0", "v1.10.0"], "semver order, not alphabetical:\n{text}");
    assert!(text.lines().any(|l| l.starts_with('*') && l.contains("v1.2.0") && l.contains("active")), "{text}");
    assert!(text.contains("Total: 3 releases"), "{text}");

    let json = ctx.run(&["releases", "--root", &ctx.root_str(), "--json"]).success().json();
    let list = json.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[2]["version"], "v1.10.0");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[0]["status"], "active");
    assert_eq!(list[1]["status"], "good");
    assert!(list[1]["created_at"].as_str().unwrap().starts_with("20"));
}

#[test]
fn releases_on_an_empty_root_says_so() {
    let ctx = TestContext::new();
    fs_err::create_dir_all(ctx.path("empty")).unwrap();
    let run = ctx.run(&["releases", "--root", &ctx.path("empty").display().to_string()]).success();
    assert_eq!(run.stdout.trim(), "No releases found");
    let json = ctx.run(&["releases", "--root", &ctx.path("empty").display().to_string(), "--json"]).success().json();
    assert_eq!(json, serde_json::json!([]));
    assert_eq!(fs_err::read_dir(ctx.path("empty")).unwrap().count(), 0, "listing creates nothing");
}

/// The local verbs say that a root does not exist, exit 1, and create nothing: neither those
/// that read it, nor those that change releases already there, nor a deploy refused at once.
#[test]
fn local_verbs_on_a_root_that_does_not_exist_say_so_and_create_nothing() {
    let ctx = TestContext::new();
    let nowhere = ctx.path("nowhere").display().to_string();
    for args in [
        vec!["releases", "--root", &nowhere],
        vec!["rollback", "--root", &nowhere],
        vec!["prune", "--root", &nowhere, "--keep", "1"],
    ] {
        ctx.run(&args).failure().stderr_contains(&format!("release root {nowhere} does not exist"));
        assert!(!ctx.path("nowhere").exists(), "{args:?} created the root");
    }
    let missing = ctx.path("missing.tar.zst").display().to_string();
    ctx.run(&["deploy", "--root", &nowhere, "--version", "1.0.0", "--artifact-path", &missing])
        .failure()
        .stderr_contains("missing.tar.zst");
    assert!(!ctx.path("nowhere").exists(), "a refused deploy created the root");
    // A directory no depot command has deployed to is not a root for rollback and prune.
    fs_err::create_dir_all(ctx.path("plain")).unwrap();
    let plain = ctx.path("plain").display().to_string();
    ctx.run(&["rollback", "--root", &plain]).failure().stderr_contains("is not a release root");
    assert_eq!(fs_err::read_dir(ctx.path("plain")).unwrap().count(), 0);
}

#[test]
fn releases_are_immutable() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "1.0.0");
    ctx.deploy("1.0.0", &v1, &[]).success();
    deploy_ok(&ctx, "2.0.0");

    // Same archive again: activated again, nothing unpacked.
    let run = ctx.deploy("1.0.0", &v1, &["--json"]).success();
    assert_eq!(run.json()["action"], "reactivated");
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    let again = ctx.deploy("1.0.0", &v1, &["--json"]).success();
    assert_eq!(again.json()["action"], "already-active");

    // Same tree, different archive bytes (gzip): still the same content.
    let gz = ctx.path("v1.tar.gz");
    ctx.run(&[
        "pack",
        &ctx.path("src-1.0.0").display().to_string(),
        "--version",
        "1.0.0",
        "--format",
        "gz",
        "-o",
        &gz.display().to_string(),
    ])
    .success();
    ctx.deploy("2.0.0", &release(&ctx, "2.0.0"), &[]).success();
    assert_eq!(ctx.deploy("1.0.0", &gz, &["--json"]).success().json()["action"], "reactivated");

    // Different content under an existing version: refused, nothing changes.
    let other = ctx.release("1.0.0-other", &[("bin/server", "something else\n")]);
    let before = ctx.snapshot(&ctx.root().join("releases"));
    ctx.deploy("1.0.0", &other, &[])
        .failure()
        .stderr_contains("already exists with different content")
        .stderr_contains("hint:");
    ctx.deploy("1.0.0", &other, &["--force"]).failure().stderr_contains("current release");
    assert_eq!(before, ctx.snapshot(&ctx.root().join("releases")));
    assert!(!ctx.release_dirs().iter().any(|d| d.starts_with('.')), "no staging left");

    // --force replaces a release that is not current.
    ctx.deploy("2.0.0", &release(&ctx, "2.0.0"), &[]).success();
    let tree = ctx.tree("forced", &[("bin/server", "forced\n")]);
    let forced = ctx.pack(&tree, "1.0.0");
    ctx.deploy("1.0.0", &forced, &["--force"]).success();
    assert_eq!(fs_err::read_to_string(ctx.root().join("releases/1.0.0/bin/server")).unwrap(), "forced\n");
}

#[test]
fn validate_failure_removes_the_staged_release() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    let v2 = release(&ctx, "2.0.0");
    let before = ctx.snapshot(&ctx.root().join("releases"));
    ctx.deploy("2.0.0", &v2, &["--validate", "echo checking; test -f no-such-file"])
        .failure()
        .stderr_contains("validate command failed for release 2.0.0");
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    assert_eq!(before, ctx.snapshot(&ctx.root().join("releases")));
    let log = fs_err::read_to_string(ctx.root().join("logs/releases.log")).unwrap();
    assert!(log.contains("validate| checking"), "hook output goes to the log:\n{log}");

    // The command runs inside the staged tree.
    ctx.deploy("2.0.0", &v2, &["--validate", "test -x bin/server || test -f bin/server"]).success();
    assert_eq!(ctx.current().as_deref(), Some("2.0.0"));
}

#[test]
fn failed_health_check_switches_back_and_marks_the_release_failed() {
    let ctx = TestContext::new();
    let hook_log = ctx.path("hooks.log");
    let hook = format!("echo \"$OLDID>$NEWID\" >> {}", hook_log.display());
    let v1 = release(&ctx, "1.0.0");
    ctx.deploy("1.0.0", &v1, &["--post-activate", &hook]).success();
    let v2 = release(&ctx, "2.0.0");
    let started = Instant::now();
    ctx.deploy(
        "2.0.0",
        &v2,
        &["--post-activate", &hook, "--health-cmd", "echo not ready; exit 3", "--health-timeout", "1s"],
    )
    .failure()
    .stderr_contains("switched back to 1.0.0")
    .stderr_contains("exited with status 3");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    assert_eq!(
        fs_err::read_to_string(&hook_log).unwrap(),
        ">1.0.0\n1.0.0>2.0.0\n2.0.0>1.0.0\n",
        "hook runs again for the previous release"
    );
    let json = ctx.run(&["releases", "--root", &ctx.root_str(), "--json"]).success().json();
    let status = |v: &str| json.as_array().unwrap().iter().find(|r| r["version"] == v).unwrap()["status"].clone();
    assert_eq!(status("2.0.0"), "failed");
    assert_eq!(status("1.0.0"), "active");
}

#[test]
fn failed_first_deploy_leaves_no_current() {
    let ctx = TestContext::new();
    let v1 = release(&ctx, "1.0.0");
    ctx.deploy("1.0.0", &v1, &["--health-cmd", "false", "--health-timeout", "300ms"])
        .failure()
        .stderr_contains("no previous release");
    assert_eq!(ctx.current(), None);
}

#[test]
fn hooks_get_the_release_environment_and_a_timeout() {
    let ctx = TestContext::new();
    let env_file = ctx.path("env.txt");
    let hook = format!("echo \"$OLDID|$OLDROOT|$NEWID|$NEWROOT|$DEPOT_VERSION|$PWD\" > {}", env_file.display());
    deploy_ok(&ctx, "1.0.0");
    let v2 = release(&ctx, "2.0.0");
    ctx.deploy("2.0.0", &v2, &["--post-activate", &hook]).success();
    let releases = ctx.root().join("releases");
    let expected = format!(
        "1.0.0|{}|2.0.0|{}|2.0.0|{}\n",
        releases.join("1.0.0").display(),
        releases.join("2.0.0").display(),
        releases.join("2.0.0").display()
    );
    assert_eq!(fs_err::read_to_string(&env_file).unwrap(), expected);

    let v3 = release(&ctx, "3.0.0");
    let started = Instant::now();
    ctx.deploy("3.0.0", &v3, &["--post-activate", "sleep 30", "--hook-timeout", "1s"])
        .failure()
        .stderr_contains("timed out after 1s");
    assert!(started.elapsed() < Duration::from_secs(10), "the hook was killed at its timeout");
    assert_eq!(ctx.current().as_deref(), Some("2.0.0"));
}

/// A one-thread HTTP server on loopback answering every request with `status` and `body`.
fn serve(status: u16, body: Vec<u8>, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{address}")
}

#[test]
fn health_url_must_answer_2xx() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    let healthy = serve(200, b"ok".to_vec(), 100);
    ctx.deploy("2.0.0", &release(&ctx, "2.0.0"), &["--health-url", &format!("{healthy}/healthz")]).success();
    let failing = serve(503, b"down".to_vec(), 100);
    ctx.deploy("3.0.0", &release(&ctx, "3.0.0"), &["--health-url", &failing, "--health-timeout", "1s"])
        .failure()
        .stderr_contains("503");
    assert_eq!(ctx.current().as_deref(), Some("2.0.0"));
}

#[test]
fn artifact_url_is_downloaded_and_checked() {
    let ctx = TestContext::new();
    let archive = release(&ctx, "1.0.0");
    let bytes = fs_err::read(&archive).unwrap();
    let url = serve(200, bytes.clone(), 10);
    let root = ctx.root_str();
    let sha256 = crate::serve::sha256_hex(&bytes);
    let url = format!("{url}/a.tar.zst");
    ctx.run(&["deploy", "--root", &root, "--version", "1.0.0", "--artifact-url", &url, "--sha256", &sha256]).success();
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));

    let wrong = "0".repeat(64);
    let v2 = release(&ctx, "2.0.0");
    let url2 = serve(200, fs_err::read(&v2).unwrap(), 10);
    let before = ctx.snapshot(&ctx.root().join("releases"));
    ctx.run(&["deploy", "--root", &root, "--version", "2.0.0", "--artifact-url", &url2, "--sha256", &wrong])
        .failure()
        .stderr_contains("sha256 mismatch");
    let missing = serve(404, b"no".to_vec(), 10);
    ctx.run(&["deploy", "--root", &root, "--version", "2.0.0", "--artifact-url", &missing, "--sha256", &wrong])
        .failure()
        .stderr_contains("404");
    let unreachable = ["--artifact-url", "http://127.0.0.1:1/x", "--sha256", &wrong];
    ctx.run(&[&["deploy", "--root", &root, "--version", "2.0.0"][..], &unreachable[..]].concat())
        .failure()
        .stderr_contains("download of");
    assert_eq!(before, ctx.snapshot(&ctx.root().join("releases")));
    assert_eq!(fs_err::read_dir(ctx.root().join(".depot/tmp")).unwrap().count(), 0, "no download left behind");
}

#[test]
fn rollback_goes_to_the_previous_good_release() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    deploy_ok(&ctx, "2.0.0");
    let v3 = release(&ctx, "3.0.0");
    ctx.deploy("3.0.0", &v3, &["--health-cmd", "false", "--health-timeout", "200ms"]).failure();
    assert_eq!(ctx.current().as_deref(), Some("2.0.0"));
    // 3.0.0 failed, 2.0.0 is current: the previous good release is 1.0.0.
    let started = Instant::now();
    ctx.run(&["rollback", "--root", &ctx.root_str()]).success().stderr_contains("current: 2.0.0 -> 1.0.0");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    ctx.run(&["rollback", "--root", &ctx.root_str()]).success();
    assert_eq!(ctx.current().as_deref(), Some("2.0.0"));
    ctx.run(&["rollback", "--root", &ctx.root_str(), "--version", "3.0.0"]).success();
    assert_eq!(ctx.current().as_deref(), Some("3.0.0"), "an explicit version may be a failed one");

    ctx.run(&["rollback", "--root", &ctx.root_str(), "--version", "9.9.9"])
        .failure()
        .stderr_contains("release not found: 9.9.9")
        .stderr_contains("1.0.0, 2.0.0, 3.0.0");
    let json = ctx.run(&["rollback", "--root", &ctx.root_str(), "--version", "1.0.0", "--json"]).success().json();
    assert_eq!(json["to"], "1.0.0");
    assert_eq!(json["from"], "3.0.0");
}

#[test]
fn rollback_runs_the_health_check_and_switches_back_on_failure() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    deploy_ok(&ctx, "2.0.0");
    ctx.run(&[
        "rollback",
        "--root",
        &ctx.root_str(),
        "--health-cmd",
        "grep -q 1.0.0 VERSION && false",
        "--health-timeout",
        "300ms",
    ])
    .failure()
    .stderr_contains("switched back to 2.0.0");
    assert_eq!(ctx.current().as_deref(), Some("2.0.0"));
}

#[test]
fn rollback_without_history_explains() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    ctx.run(&["rollback", "--root", &ctx.root_str()])
        .failure()
        .stderr_contains("no previous good release")
        .stderr_contains("hint:");
}

#[test]
fn prune_keeps_current_and_previous_good_and_removes_failed_first() {
    let ctx = TestContext::new();
    for version in ["1.0.0", "2.0.0", "3.0.0", "4.0.0"] {
        deploy_ok(&ctx, version);
    }
    ctx.run(&["rollback", "--root", &ctx.root_str(), "--version", "1.0.0"]).success();
    // current 1.0.0; previous good 4.0.0; keep 1 still keeps both.
    let report = ctx.run(&["prune", "--root", &ctx.root_str(), "--keep", "1", "--json"]).success().json();
    assert_eq!(report["removed"], serde_json::json!(["2.0.0", "3.0.0"]));
    assert_eq!(ctx.release_dirs(), ["1.0.0", "4.0.0", "current"]);

    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    deploy_ok(&ctx, "2.0.0");
    ctx.deploy(
        "3.0.0",
        &release(&ctx, "3.0.0"),
        &["--health-cmd", "false", "--health-timeout", "100ms", "--keep", "100"],
    )
    .failure();
    deploy_ok(&ctx, "4.0.0");
    // current 4.0.0, previous good 2.0.0; of 1.0.0 (oldest) and 3.0.0 (failed), the failed goes first.
    ctx.run(&["prune", "--root", &ctx.root_str(), "--keep", "3"]).success().stderr_contains("3.0.0");
    assert_eq!(ctx.release_dirs(), ["1.0.0", "2.0.0", "4.0.0", "current"]);
}

#[test]
fn deploy_keeps_five_releases_by_default_and_frees_store_objects() {
    let ctx = TestContext::new();
    for n in 1..=7 {
        let version = format!("1.0.{n}");
        let archive =
            ctx.release(&version, &[("unique.txt", &format!("only in {version}\n")), ("shared.txt", "same\n")]);
        ctx.deploy(&version, &archive, &[]).success();
    }
    assert_eq!(ctx.release_dirs(), ["1.0.3", "1.0.4", "1.0.5", "1.0.6", "1.0.7", "current"]);
    let objects = count_files(&ctx.root().join(".depot/store/objects"));
    // 5 releases × (unique.txt + VERSION) + shared.txt.
    assert_eq!(objects, 11, "objects of pruned releases are freed");

    let config = ctx.root().join("config/depot.toml");
    fs_err::write(&config, "[deploy]\nkeep = 2\n").unwrap();
    ctx.run(&["prune", "--root", &ctx.root_str()]).success();
    assert_eq!(ctx.release_dirs(), ["1.0.6", "1.0.7", "current"]);
}

fn count_files(dir: &std::path::Path) -> usize {
    let mut count = 0;
    for entry in fs_err::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            count += count_files(&entry.path());
        } else {
            count += 1;
        }
    }
    count
}

#[test]
fn content_store_shares_unchanged_files_between_releases() {
    let ctx = TestContext::new();
    let mut files: Vec<(String, String)> =
        (0..50).map(|i| (format!("lib/file{i}.txt"), format!("content {i}\n"))).collect();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let v1 = ctx.release("1.0.0", &refs);
    let first = ctx.deploy("1.0.0", &v1, &["--json"]).success().json();
    assert_eq!(first["stats"]["objects_written"], 51);

    files[7].1 = "changed\n".into();
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let v2 = ctx.release("1.1.0", &refs);
    let second = ctx.deploy("1.1.0", &v2, &["--json"]).success().json();
    assert_eq!(second["stats"]["objects_written"], 2, "only the changed file and VERSION are written");
    assert_eq!(second["stats"]["files"], 51);

    let releases = ctx.root().join("releases");
    let a = fs_err::metadata(releases.join("1.0.0/lib/file0.txt")).unwrap();
    let b = fs_err::metadata(releases.join("1.1.0/lib/file0.txt")).unwrap();
    assert_eq!(a.ino(), b.ino(), "unchanged files are the same inode");
    assert_ne!(
        fs_err::metadata(releases.join("1.0.0/lib/file7.txt")).unwrap().ino(),
        fs_err::metadata(releases.join("1.1.0/lib/file7.txt")).unwrap().ino()
    );

    // --copy makes independent files.
    let v3 = ctx.release("1.2.0", &refs);
    ctx.deploy("1.2.0", &v3, &["--copy"]).success();
    assert_eq!(fs_err::metadata(releases.join("1.2.0/lib/file0.txt")).unwrap().nlink(), 1);
}

#[test]
fn verify_reports_files_modified_in_place() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    ctx.run(&["verify", "--root", &ctx.root_str()]).success().stderr_contains("matches its manifest");
    let file = ctx.root().join("releases/1.0.0/assets/shared.txt");
    fs_err::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    fs_err::write(&file, "tampered\n").unwrap();
    fs_err::write(ctx.root().join("releases/1.0.0/extra"), "x").unwrap();
    let run = ctx.run(&["verify", "--root", &ctx.root_str(), "--version", "1.0.0"]).failure();
    assert!(run.stdout.contains("assets/shared.txt: modified"), "{}", run.stdout);
    assert!(run.stdout.contains("extra: not in the manifest"), "{}", run.stdout);
    let json = ctx.run(&["verify", "--root", &ctx.root_str(), "--json"]).failure().json();
    assert_eq!(json["problems"].as_array().unwrap().len(), 2);
    ctx.run(&["verify", "--root", &ctx.root_str(), "--version", "7.0.0"])
        .failure()
        .stderr_contains("release not found");
}

#[test]
fn operations_on_one_root_are_serialized_by_a_lock() {
    let ctx = TestContext::new();
    deploy_ok(&ctx, "1.0.0");
    let v2 = release(&ctx, "2.0.0");
    let mut slow = ctx
        .command()
        .args(["deploy", "--root", &ctx.root_str(), "--version", "2.0.0", "--artifact-path"])
        .arg(&v2)
        .args(["--validate", "sleep 3"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let v3 = release(&ctx, "3.0.0");
    ctx.deploy("3.0.0", &v3, &["--lock-timeout", "500ms"])
        .failure()
        .stderr_contains("waiting for the lock")
        .stderr_contains("pid");
    ctx.run(&["prune", "--root", &ctx.root_str(), "--keep", "1", "--lock-timeout", "300ms"])
        .failure()
        .stderr_contains("lock");
    // Waiting long enough gets the lock once the first command is done.
    ctx.deploy("3.0.0", &v3, &["--lock-timeout", "30s"]).success();
    assert!(slow.wait().unwrap().success());
    assert_eq!(ctx.current().as_deref(), Some("3.0.0"));
}

#[test]
fn root_config_supplies_defaults_and_flags_win() {
    let ctx = TestContext::new();
    let marker = ctx.path("post.txt");
    fs_err::create_dir_all(ctx.root().join("config")).unwrap();
    fs_err::write(
        ctx.root().join("config/depot.toml"),
        format!("[deploy]\npost_activate = \"echo from-config >> {}\"\nhealth_timeout = \"2s\"\n", marker.display()),
    )
    .unwrap();
    deploy_ok(&ctx, "1.0.0");
    assert_eq!(fs_err::read_to_string(&marker).unwrap(), "from-config\n");
    ctx.deploy(
        "2.0.0",
        &release(&ctx, "2.0.0"),
        &["--post-activate", &format!("echo from-flag >> {}", marker.display())],
    )
    .success();
    assert_eq!(fs_err::read_to_string(&marker).unwrap(), "from-config\nfrom-flag\n");

    fs_err::write(ctx.root().join("config/depot.toml"), "[deploy]\nkepp = 3\n").unwrap();
    ctx.deploy("3.0.0", &release(&ctx, "3.0.0"), &[])
        .failure()
        .stderr_contains("config/depot.toml")
        .stderr_contains("kepp");
}
