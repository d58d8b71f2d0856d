//! Signed versions and hosts that verify them: interoperability with OpenSSH's `ssh-keygen -Y`,
//! and every way a layer can be untrustworthy (unsigned, a stranger's key, an expired or revoked
//! key, a signature replayed onto another version, a registry that swaps the content behind a
//! signed version), each refused before anything is unpacked.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sha2::Digest as _;

use crate::common::*;
use crate::registry::{Registry, tree};

/// `ssh-keygen -t ed25519 -N ''`: the private key's path (the public one is `.pub` beside it).
fn keygen(ctx: &TestContext, name: &str) -> PathBuf {
    let path = ctx.path(&format!("keys/{name}"));
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen (OpenSSH) is installed");
    assert!(status.success());
    path
}

/// `ssh-keygen -Y sign -n depot -f KEY FILE`, OpenSSH's own signature of FILE: `FILE.sig`.
fn ssh_keygen_sign(key: &Path, file: &Path) -> PathBuf {
    let sign =
        Command::new("ssh-keygen").args(["-q", "-Y", "sign", "-n", "depot", "-f"]).arg(key).arg(file).output().unwrap();
    assert!(sign.status.success(), "{}", String::from_utf8_lossy(&sign.stderr));
    PathBuf::from(format!("{}.sig", file.display()))
}

fn public(key: &Path) -> String {
    fs_err::read_to_string(key.with_extension("pub")).unwrap().trim().to_owned()
}

/// A file of `lines`, mode 0600 (a trust file others may write is refused).
fn private_file(ctx: &TestContext, name: &str, lines: &[String]) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = ctx.path(name);
    fs_err::write(&path, lines.join("\n") + "\n").unwrap();
    fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn agent_token(ctx: &TestContext, registry: &Registry) -> String {
    registry
        .run(ctx, &["token", "create", "hosts", "--role", "agent", "--config", "web-*"])
        .success()
        .stdout
        .trim()
        .to_owned()
}

/// One agent cycle on web-prod in ROOT with `--trust TRUST` and `extra`.
fn once(ctx: &TestContext, registry: &Registry, token: &str, root: &Path, trust: &Path, extra: &[&str]) -> Run {
    let mut args = vec!["agent", "--config", "web-prod", "--name", "host-1", "--once", "--json", "--root"];
    let (root, trust) = (root.to_str().unwrap(), trust.to_str().unwrap());
    args.extend([root, "--trust", trust]);
    args.extend(extra);
    registry.run_as(ctx, token, &args)
}

/// The releases under ROOT/releases (not `current`).
fn releases(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "current")
        .collect();
    names.sort();
    names
}

fn host_status(ctx: &TestContext, registry: &Registry) -> serde_json::Value {
    let agents = registry.run(ctx, &["status", "web-prod", "--json"]).success().json();
    agents.as_array().unwrap().iter().find(|a| a["host"] == "host-1").cloned().unwrap()
}

#[test]
fn signatures_made_by_depot_verify_with_ssh_keygen_and_the_other_way_round() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let (alice, bob) = (keygen(&ctx, "alice"), keygen(&ctx, "bob"));
    let pushed = registry
        .run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "one"), "--sign", alice.to_str().unwrap()])
        .success();
    assert!(pushed.stderr.contains("Signed web 1.0.0 with SHA256:"), "{}", pushed.stderr);

    // depot's signature, checked by OpenSSH.
    let message = registry.run(&ctx, &["sign", "web", "1.0.0", "--print-message"]).success().stdout;
    fs_err::write(ctx.path("message"), &message).unwrap();
    let shown = registry.run(&ctx, &["show-version", "web", "1.0.0", "--json"]).success().json();
    let signature = shown["signatures"][0]["signature"].as_str().unwrap();
    fs_err::write(ctx.path("message.sig"), signature).unwrap();
    let allowed =
        private_file(&ctx, "allowed_signers", &[format!("alice@example.com namespaces=\"depot\" {}", public(&alice))]);
    let verify = Command::new("ssh-keygen")
        .args(["-Y", "verify", "-n", "depot", "-I", "alice@example.com", "-f"])
        .arg(&allowed)
        .arg("-s")
        .arg(ctx.path("message.sig"))
        .stdin(fs_err::File::open(ctx.path("message")).unwrap().into_parts().0)
        .output()
        .unwrap();
    assert!(verify.status.success(), "ssh-keygen -Y verify: {}", String::from_utf8_lossy(&verify.stderr));
    let text = registry.run(&ctx, &["show-version", "web", "1.0.0"]).success().stdout;
    assert!(text.contains("signature: ssh-ed25519 SHA256:"), "{text}");

    // OpenSSH's signature, attached and trusted by a host.
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "v2", "two")]).success();
    let message = registry.run(&ctx, &["sign", "web", "1.1.0", "--print-message"]).success().stdout;
    fs_err::write(ctx.path("m2"), &message).unwrap();
    ssh_keygen_sign(&bob, &ctx.path("m2"));
    let sig = ctx.path("m2.sig");
    registry.run(&ctx, &["sign", "web", "1.1.0", "--signature", sig.to_str().unwrap()]).success();
    // The same signature on another version is refused by the registry.
    let replayed = registry.run(&ctx, &["sign", "web", "1.0.0", "--signature", sig.to_str().unwrap()]);
    assert_eq!(replayed.code, 1);
    assert!(replayed.stderr.contains("is not over web 1.0.0"), "{}", replayed.stderr);

    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.1.0"]).success();
    let token = agent_token(&ctx, &registry);
    let trust = private_file(&ctx, "host-trust", &[format!("bob@example.com {}", public(&bob))]);
    let root = ctx.path("host-1");
    let run = once(&ctx, &registry, &token, &root, &trust, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["outcome"], "activated");
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "two");
}

#[test]
fn a_host_refuses_every_layer_it_cannot_trust_before_unpacking_it() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let keys: Vec<PathBuf> = ["alice", "mallory", "old", "carol"].iter().map(|k| keygen(&ctx, k)).collect();
    let [alice, mallory, old, carol] = [&keys[0], &keys[1], &keys[2], &keys[3]];
    let trust = private_file(
        &ctx,
        "allowed_signers",
        &[
            format!("alice@example.com {}", public(alice)),
            format!("old@example.com valid-before=\"20200101Z\" {}", public(old)),
            format!("carol@example.com {}", public(carol)),
        ],
    );
    let revoked = private_file(&ctx, "revoked_keys", &[public(carol)]);
    let versions: [(&str, Option<&PathBuf>, &str); 5] = [
        ("1.0.0", Some(alice), "good"),
        ("1.0.1", None, "unsigned"),
        ("1.0.2", Some(mallory), "a stranger's"),
        ("1.0.3", Some(old), "expired"),
        ("1.0.4", Some(carol), "revoked"),
    ];
    for (version, key, text) in versions {
        let mut args = vec!["push".to_owned(), "web".into(), version.into(), tree(&ctx, version, text)];
        if let Some(key) = key {
            args.extend(["--sign".into(), key.display().to_string()]);
        }
        registry.run(&ctx, &args.iter().map(String::as_str).collect::<Vec<_>>()).success();
    }
    registry.run(&ctx, &["push", "web", "1.0.5", &tree(&ctx, "1.0.5", "replayed")]).success();
    registry.run(&ctx, &["push", "web", "1.0.6", &tree(&ctx, "1.0.6", "evil")]).success();
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let token = agent_token(&ctx, &registry);
    let root = ctx.path("host-1");
    let revoked_flag = ["--revoked-keys", revoked.to_str().unwrap()];
    let run = once(&ctx, &registry, &token, &root, &trust, &revoked_flag);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let good = releases(&root);
    assert_eq!(good.len(), 1);

    let refused = |version: &str, reason: &str| {
        registry.run(&ctx, &["config", "set", "web-prod", &format!("web:{version}")]).success();
        let run = once(&ctx, &registry, &token, &root, &trust, &revoked_flag);
        assert_eq!(run.code, 1, "{version}: {}", run.stderr);
        let status = host_status(&ctx, &registry);
        assert_eq!(status["state"], "untrusted", "{version}: {status}");
        let error = status["error"].as_str().unwrap();
        assert!(error.contains(&format!("layer web {version}")) && error.contains(reason), "{version}: {error}");
        assert_eq!(releases(&root), good, "{version}: nothing new under releases/");
        assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "good");
        let blobs = fs_err::read_dir(root.join(".depot/agent/blobs")).unwrap().count();
        assert!(blobs <= 1, "{version}: nothing downloaded for it ({blobs} blobs cached)");
    };
    refused("1.0.1", "it has no signature");
    refused("1.0.2", "is not a trusted key");
    refused("1.0.3", "expired at 2020-01-01");
    refused("1.0.4", "is revoked");

    // A registry that lies. Its database is edited behind its back, as whoever owns its disk could.
    let db = rusqlite::Connection::open(ctx.path("registry-data/depot.db")).unwrap();
    // alice's signature of 1.0.0, replayed onto 1.0.5.
    db.execute(
        "INSERT INTO signatures (component, version, fingerprint, key_type, signature, added_by, added_at)
         SELECT component, '1.0.5', fingerprint, key_type, signature, added_by, added_at FROM signatures WHERE version = '1.0.0'",
        [],
    )
    .unwrap();
    refused("1.0.5", "is not over this component, version and digest");
    // Version 1.0.0 now names other content (1.0.6's), with alice's signature still beside it.
    let bad: String =
        db.query_row("SELECT digest FROM versions WHERE version = '1.0.6'", [], |row| row.get(0)).unwrap();
    db.execute("UPDATE versions SET digest = ?1 WHERE version = '1.0.0'", [&bad]).unwrap();
    let hex = bad.trim_start_matches("sha256:");
    let hash: String = sha2::Sha256::digest(format!("{hex}\n")).iter().map(|b| format!("{b:02x}")).collect();
    let layers = format!(r#"[{{"component":"web","version":"1.0.0","digest":"{bad}"}}]"#);
    db.execute(
        "INSERT INTO config_revisions (config, revision, at, actor, change, hash, layers, kind)
         SELECT config, revision + 1, at, 'mallory', 'swapped', ?1, ?2, 'set' FROM config_revisions
         WHERE config = 'web-prod' ORDER BY revision DESC LIMIT 1",
        [&hash, &layers],
    )
    .unwrap();
    db.execute("UPDATE configs SET revision = revision + 1 WHERE name = 'web-prod'", []).unwrap();
    drop(db);
    let run = once(&ctx, &registry, &token, &root, &trust, &revoked_flag);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let error = host_status(&ctx, &registry)["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains("layer web 1.0.0") && error.contains("is not over this component, version and digest"),
        "{error}"
    );
    assert_eq!(releases(&root), good, "the swapped content was never unpacked");

    // A trust file others may write is refused at start.
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(&trust, std::fs::Permissions::from_mode(0o666)).unwrap();
    let run = once(&ctx, &registry, &token, &root, &trust, &[]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("others may write"), "{}", run.stderr);
}

/// The text a signature covers, as `depot sign --print-message` prints it.
fn message(component: &str, version: &str, file: &Path) -> String {
    let hex: String = sha2::Sha256::digest(fs_err::read(file).unwrap()).iter().map(|b| format!("{b:02x}")).collect();
    format!("depot signed version v1\ncomponent {component}\nversion {version}\ndigest sha256:{hex}\n")
}

#[test]
fn a_local_deploy_with_trust_takes_only_a_signed_archive() {
    let ctx = TestContext::new();
    let key = keygen(&ctx, "release");
    let trust = private_file(&ctx, "allowed_signers", &[format!("release@example.com {}", public(&key))]);
    let tar = |name: &str, text: &str| {
        let dir = ctx.tree(name, &[("app.txt", text)]);
        let archive = ctx.path(&format!("{name}.tar.gz"));
        let status = Command::new("tar").arg("-czf").arg(&archive).arg("-C").arg(&dir).arg(".").status().unwrap();
        assert!(status.success());
        archive
    };
    let (good, evil) = (tar("good", "good"), tar("evil", "evil"));
    fs_err::write(ctx.path("msg"), message("app", "1.0.0", &good)).unwrap();
    ssh_keygen_sign(&key, &ctx.path("msg"));
    let root = ctx.path("root");
    let deploy = |archive: &Path, component: &str| {
        ctx.run(&[
            "deploy",
            "--root",
            root.to_str().unwrap(),
            "--version",
            "1.0.0",
            "--artifact-path",
            archive.to_str().unwrap(),
            "--trust",
            trust.to_str().unwrap(),
            "--signature",
            ctx.path("msg.sig").to_str().unwrap(),
            "--component",
            component,
        ])
    };
    // Another archive under the same signature, or the signature under another name: refused.
    let refused = deploy(&evil, "app");
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("is not trusted") && refused.stderr.contains("not over this"),
        "{}",
        refused.stderr
    );
    let refused = deploy(&good, "other");
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(!root.join("releases/1.0.0").exists() && !root.join("releases/current").exists(), "nothing unpacked");
    deploy(&good, "app").success();
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "good");
}

/// Adds to web-prod, behind the registry's back, a revision whose one layer is `digest` labelled
/// as the stage's environment layer, with the configuration hash of that content.
fn relabel_as_env(ctx: &TestContext, digest: &str) {
    let db = rusqlite::Connection::open(ctx.path("registry-data/depot.db")).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let hash: String = sha2::Sha256::digest(format!("{hex}\n")).iter().map(|b| format!("{b:02x}")).collect();
    let layers = format!(r#"[{{"component":"web-prod.env","version":"1","digest":"{digest}"}}]"#);
    db.execute(
        "INSERT INTO config_revisions (config, revision, at, actor, change, hash, layers, kind)
         SELECT config, revision + 1, at, 'mallory', 'relabelled', ?1, ?2, 'set' FROM config_revisions
         WHERE config = 'web-prod' ORDER BY revision DESC LIMIT 1",
        [&hash, &layers],
    )
    .unwrap();
    db.execute("UPDATE configs SET revision = revision + 1 WHERE name = 'web-prod'", []).unwrap();
}

#[test]
fn a_real_environment_layer_passes_and_nothing_else_passes_as_one() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let alice = keygen(&ctx, "alice");
    let trust = private_file(&ctx, "allowed_signers", &[format!("alice@example.com {}", public(&alice))]);
    let token = agent_token(&ctx, &registry);
    let root = ctx.path("host-1");
    let key = alice.to_str().unwrap();

    // A stage with variables: the signed application layer and the registry's environment layer.
    registry.run(&ctx, &["push", "app", "1.0.0", &tree(&ctx, "app", "signed app"), "--sign", key]).success();
    registry.run(&ctx, &["pipeline", "create", "web", "--component", "app", "--stage", "prod"]).success();
    registry.run(&ctx, &["env", "set", "web/prod", "GREETING=hello world", "QUOTE=it's fine"]).success();
    let run = once(&ctx, &registry, &token, &root, &trust, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        fs_err::read_to_string(root.join("releases/current/config/app.env"))
            .unwrap()
            .contains("GREETING='hello world'")
    );

    // An old release of unsigned content, deployed before the host trusted keys, then labelled
    // as the environment layer (with the hash of that content, so the release id matches).
    registry.run(&ctx, &["push", "old", "1.0.0", &tree(&ctx, "old", "old unsigned")]).success();
    let old = registry.run(&ctx, &["show-version", "old", "1.0.0", "--json"]).success().json();
    let old = old["digest"].as_str().unwrap().to_owned();
    relabel_as_env(&ctx, &old);
    let host0 = ctx.path("host-0");
    let args = ["agent", "--config", "web-prod", "--name", "host-0", "--once", "--root", host0.to_str().unwrap()];
    let run = registry.run_as(&ctx, &token, &args);
    assert_eq!(run.code, 0, "without --trust a host takes what the registry names: {}", run.stderr);
    let run = once(&ctx, &registry, &token, &root, &trust, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("may hold config/app.env alone, and this one holds"), "{}", run.stderr);
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "signed app");

    // An archive of config/app.env alone whose text would run a command when sourced.
    let evil = ctx.tree(
        "evil",
        &[("config/app.env", "# Generated by depot from `depot env set`; do not edit. x\nX=$(touch /tmp/pwned)\n")],
    );
    let payload = ctx.path("payload.tar.gz");
    let status = Command::new("tar").arg("-czf").arg(&payload).arg("-C").arg(&evil).arg("config").status().unwrap();
    assert!(status.success());
    registry.run(&ctx, &["push", "payload", "1.0.0", payload.to_str().unwrap()]).success();
    let payload = registry.run(&ctx, &["show-version", "payload", "1.0.0", "--json"]).success().json();
    relabel_as_env(&ctx, payload["digest"].as_str().unwrap());
    let run = once(&ctx, &registry, &token, &root, &trust, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("config/app.env is not exactly as the registry writes it"), "{}", run.stderr);
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "signed app");
}

/// A key added to the trust file counts after `depot agent retry` (SIGHUP), with no restart.
#[test]
fn a_running_agent_reads_its_trust_file_again_on_retry() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let (alice, bob) = (keygen(&ctx, "alice"), keygen(&ctx, "bob"));
    let trust = private_file(&ctx, "allowed_signers", &[format!("alice@example.com {}", public(&alice))]);
    registry
        .run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "by bob"), "--sign", bob.to_str().unwrap()])
        .success();
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let token = agent_token(&ctx, &registry);
    let agent = crate::agent::Agent::start_on(
        &ctx,
        &registry,
        &token,
        "host-1",
        "web-prod",
        &["--trust", trust.to_str().unwrap()],
    );
    let state = || registry.run(&ctx, &["status", "web-prod", "--json"]).json()[0]["state"].as_str().map(str::to_owned);
    crate::agent::wait_until(
        "host-1 untrusted",
        Duration::from_secs(30),
        || state().as_deref() == Some("untrusted"),
        || agent.log(),
    );

    fs_err::write(&trust, format!("alice@example.com {}\nbob@example.com {}\n", public(&alice), public(&bob))).unwrap();
    let root = ctx.path("host-1");
    ctx.run(&["agent", "retry", "--root", root.to_str().unwrap()]).success();
    crate::agent::wait_until(
        "host-1 active",
        Duration::from_secs(30),
        || state().as_deref() == Some("active"),
        || agent.log(),
    );
    assert_eq!(fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap(), "by bob");
    assert!(agent.log().contains("is signed by bob@example.com"), "{}", agent.log());
}

/// `depot policy set` makes the registry refuse versions, and configuration writes that bring
/// one in, without N valid signatures by different trusted keys; going back is never held.
#[test]
fn a_signature_policy_refuses_versions_and_writes_without_enough_trusted_signatures() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let (alice, bob, carol) = (keygen(&ctx, "alice"), keygen(&ctx, "bob"), keygen(&ctx, "carol"));
    let key = |path: &PathBuf| path.to_str().unwrap().to_owned();
    // Before the policy: an unsigned version, in a configuration.
    registry.run(&ctx, &["push", "web", "0.9.0", &tree(&ctx, "v0", "zero")]).success();
    registry.run(&ctx, &["config", "create", "site", "--layer", "web:0.9.0"]).success();
    registry
        .run(&ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "dev", "--stage", "prod"])
        .success();

    let trusted = private_file(
        &ctx,
        "team.allowed_signers",
        &[format!("alice@example.com {}", public(&alice)), format!("bob@example.com {}", public(&bob))],
    );
    let operator = registry.run(&ctx, &["token", "create", "ci", "--role", "operator"]).success().stdout;
    let set = ["policy", "set", "web", "--require-signatures", "2", "--trusted", trusted.to_str().unwrap()];
    let refused = registry.run_as(&ctx, operator.trim(), &set).failure();
    assert!(refused.stderr.contains("forbidden") || refused.stderr.contains("role"), "{}", refused.stderr);
    let too_many = ["policy", "set", "web", "--require-signatures", "3", "--trusted", trusted.to_str().unwrap()];
    let refused = registry.run(&ctx, &too_many).failure();
    assert!(refused.stderr.contains("namespace depot (2 given)"), "{}", refused.stderr);
    registry.run(&ctx, &set).success();
    let shown = registry.run(&ctx, &["policy", "show", "web", "--json"]).success().json();
    assert_eq!(shown["require_signatures"], 2);
    assert_eq!(shown["keys"].as_array().unwrap().len(), 2, "{shown}");

    // Refused, with nothing created: unsigned; one key; one key twice; a stranger's key.
    let v1 = tree(&ctx, "v1", "one");
    for (signers, why) in [
        (vec![], "has 0 valid signature(s) from keys its policy trusts, of the 2 it requires"),
        (vec![key(&alice)], "has 1 valid signature(s) (by alice@example.com)"),
        (vec![key(&alice), key(&alice)], "has 1 valid signature(s) (by alice@example.com)"),
        (vec![key(&alice), key(&carol)], "is not a trusted key"),
    ] {
        let mut args = vec!["push", "web", "1.0.0", v1.as_str()];
        for signer in &signers {
            args.extend(["--sign", signer.as_str()]);
        }
        let refused = registry.run(&ctx, &args).failure();
        assert!(refused.stderr.contains(why), "{signers:?}: {}", refused.stderr);
        assert!(refused.stderr.contains("depot policy show web"), "the hint: {}", refused.stderr);
    }
    let versions = registry.run(&ctx, &["versions", "web", "--json"]).success().json();
    assert_eq!(versions.as_array().unwrap().len(), 1, "only 0.9.0: {versions}");

    // Bob signs beforehand with OpenSSH, over the text depot prints without asking the registry.
    let archive = ctx.path("web.tar.zst");
    let archive = archive.to_str().unwrap();
    let packed = registry.run(&ctx, &["pack", v1.as_str(), "--version", "1.0.0", "-o", archive]);
    let digest = packed.success().stdout.split_whitespace().next().unwrap().to_owned();
    let message = ctx.run(&["sign", "web", "1.0.0", "--digest", &digest, "--print-message"]).success().stdout;
    fs_err::write(ctx.path("bob.msg"), &message).unwrap();
    ssh_keygen_sign(&bob, &ctx.path("bob.msg"));
    let bob_sig = ctx.path("bob.msg.sig");
    let pushed = registry
        .run(&ctx, &["push", "web", "1.0.0", archive, "--sign", &key(&alice), "--signature", bob_sig.to_str().unwrap()])
        .success();
    assert!(pushed.stderr.contains("Pushed web 1.0.0"), "{}", pushed.stderr);
    let shown = registry.run(&ctx, &["show-version", "web", "1.0.0", "--json"]).success().json();
    let mut signers: Vec<&str> =
        shown["signatures"].as_array().unwrap().iter().map(|s| s["signer"].as_str().unwrap()).collect();
    signers.sort();
    assert_eq!(signers, ["alice@example.com", "bob@example.com"], "named by the policy: {shown}");

    // Configuration writes: a signed version comes in; an unsigned one does not, by set or
    // create; a rollback to it is not held.
    registry.run(&ctx, &["config", "set", "site", "web:1.0.0"]).success();
    let refused = registry.run(&ctx, &["config", "set", "site", "web:0.9.0"]).failure();
    assert!(refused.stderr.contains("web 0.9.0 has 0 valid signature(s)"), "{}", refused.stderr);
    let refused = registry.run(&ctx, &["config", "create", "other", "--layer", "web:0.9.0"]).failure();
    assert!(refused.stderr.contains("signature"), "{}", refused.stderr);
    registry.run(&ctx, &["config", "rollback", "site"]).success();
    let site = registry.run(&ctx, &["config", "show", "site", "--json"]).success().json();
    assert_eq!(site["layers"][0]["version"], "0.9.0", "rolled back: {site}");

    // A promotion of a signed version passes.
    registry.run(&ctx, &["promote", "web", "--to", "prod"]).success();
    let prod = registry.run(&ctx, &["config", "show", "web-prod", "--json"]).success().json();
    assert_eq!(prod["layers"][0]["version"], "1.0.0", "{prod}");

    let history = registry.run(&ctx, &["history", "web"]).success().stdout;
    assert!(history.contains("policy of web: 2 signature(s) required, from 2 trusted key(s)"), "{history}");
    registry.run(&ctx, &["policy", "unset", "web"]).success();
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "v2", "two")]).success();
    let shown = registry.run(&ctx, &["policy", "show", "web"]).success().stdout;
    assert!(shown.contains("no signature policy"), "{shown}");
}

/// `git init`, add everything and commit in `dir`; the commit's sha.
fn git_commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "user.name=ci", "-c", "user.email=ci@example.com", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "source"]);
    git(&["rev-parse", "HEAD"])
}

/// `depot build` records SLSA provenance and pushes it signed; SBOMs attach as in-toto
/// statements; a host that requires provenance deploys only content with provenance a trusted
/// key signed, and refuses the rest before unpacking.
#[test]
fn attestations_are_recorded_signed_listed_and_required_by_hosts() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let (alice, carol) = (keygen(&ctx, "alice"), keygen(&ctx, "carol"));
    let key = |path: &PathBuf| path.to_str().unwrap().to_owned();
    let dir = ctx.tree("proj", &[("src/app.txt", "one\n")]);
    fs_err::write(
        dir.join("depot.toml"),
        "[build]\ncommand = \"mkdir -p out && cp src/app.txt out/app.txt\"\n\n[package]\nname = \"web\"\ninclude = { \"out/app.txt\" = \"app.txt\" }\n",
    )
    .unwrap();
    let commit = git_commit(&dir);
    let built = registry
        .run(&ctx, &["build", dir.to_str().unwrap(), "--version", "1.0.0", "--push", "web", "--sign", &key(&alice)])
        .success();
    assert!(built.stderr.contains("Attached"), "{}", built.stderr);

    // The provenance: the archive as subject, the commit and depot.toml as inputs.
    let provenance = fs_err::read_to_string(ctx.path("web-1.0.0.provenance.json")).unwrap();
    let statement: serde_json::Value = serde_json::from_str(&provenance).unwrap();
    let archive = fs_err::read(ctx.path("web-1.0.0.tar.zst")).unwrap();
    let archive_hex: String = sha2::Sha256::digest(&archive).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], archive_hex.as_str());
    let inputs = &statement["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(inputs[0]["digest"]["gitCommit"], commit.as_str(), "{statement}");
    assert_eq!(inputs[1]["name"], "depot.toml");
    assert_eq!(statement["predicate"]["buildDefinition"]["internalParameters"]["dirty"], false);
    let listed = registry.run(&ctx, &["attestations", "web", "1.0.0", "--json"]).success().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["signatures"].as_array().unwrap().len(), 1);
    let fetched = registry.run(&ctx, &["attestations", "web", "1.0.0", "--get", "provenance"]).success().stdout;
    assert_eq!(fetched.trim_end(), provenance.trim_end(), "the statement byte for byte");

    // SBOMs: CycloneDX and SPDX wrapped as statements; anything else refused before the push.
    let cyclonedx = ctx.path("sbom.cdx.json");
    fs_err::write(&cyclonedx, r#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[]}"#).unwrap();
    let spdx = ctx.path("sbom.spdx.json");
    fs_err::write(&spdx, r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","name":"web"}"#).unwrap();
    let v2 = tree(&ctx, "v2", "two");
    let junk = ctx.path("junk.json");
    fs_err::write(&junk, r#"{"hello":"world"}"#).unwrap();
    let refused = registry.run(&ctx, &["push", "web", "1.1.0", &v2, "--attach", junk.to_str().unwrap()]).failure();
    assert!(refused.stderr.contains("neither CycloneDX JSON"), "{}", refused.stderr);
    assert!(registry.run(&ctx, &["show-version", "web", "1.1.0"]).code != 0, "nothing pushed");
    let attach = ["--attach", cyclonedx.to_str().unwrap(), "--attach", spdx.to_str().unwrap()];
    let alice_key = key(&alice);
    let mut args = vec!["push", "web", "1.1.0", v2.as_str(), "--sign", alice_key.as_str()];
    args.extend(attach);
    registry.run(&ctx, &args).success();
    let listed = registry.run(&ctx, &["attestations", "web", "1.1.0"]).success().stdout;
    assert!(listed.contains("https://cyclonedx.org/bom") && listed.contains("https://spdx.dev/Document"), "{listed}");

    // Hosts that require provenance.
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let token = agent_token(&ctx, &registry);
    let trust = private_file(&ctx, "host-trust", &[format!("alice@example.com {}", public(&alice))]);
    let root = ctx.path("host-1");
    let require = ["--require-attestation", "provenance"];
    let run = once(&ctx, &registry, &token, &root, &trust, &require);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("has a https://slsa.dev/provenance/v1 attestation signed by alice@example.com"),
        "{}",
        run.stderr
    );
    let before = releases(&root);

    // 1.1.0 is signed, with SBOMs, but no provenance; then provenance by an untrusted key.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    let run = once(&ctx, &registry, &token, &root, &trust, &require);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr.contains("has no https://slsa.dev/provenance/v1 attestation signed by a trusted key"),
        "{}",
        run.stderr
    );
    assert_eq!(releases(&root), before, "nothing unpacked");
    assert_eq!(host_status(&ctx, &registry)["state"], "untrusted");
    let v2_digest = registry.run(&ctx, &["show-version", "web", "1.1.0", "--json"]).success().json()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let claim = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "web", "digest": { "sha256": v2_digest.trim_start_matches("sha256:") } }],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": { "buildDefinition": { "buildType": "urn:example:forged" } },
    });
    let forged = ctx.path("forged.json");
    fs_err::write(&forged, claim.to_string()).unwrap();
    registry.run(&ctx, &["attest", "web", "1.1.0", forged.to_str().unwrap(), "--sign", &key(&carol)]).success();
    ctx.run(&["agent", "retry", "--root", root.to_str().unwrap()]).success();
    let run = once(&ctx, &registry, &token, &root, &trust, &require);
    assert!(run.stderr.contains("is not a trusted key"), "{}", run.stderr);
    assert_eq!(releases(&root), before, "nothing unpacked");
    // A statement about other content is refused by the registry.
    let refused = registry.run(&ctx, &["attest", "web", "1.0.0", forged.to_str().unwrap()]).failure();
    assert!(refused.stderr.contains("subjects do not include"), "{}", refused.stderr);
    // Without a trust file, requiring attestations is refused at start.
    let refused = registry.run_as(
        &ctx,
        &token,
        &[
            "agent",
            "--config",
            "web-prod",
            "--once",
            "--root",
            root.to_str().unwrap(),
            "--require-attestation",
            "provenance",
        ],
    );
    assert!(refused.stderr.contains("needs the keys that sign them"), "{}", refused.stderr);
}
