//! `depot agent` against a real `depot serve`: several agents following one configuration, a
//! failing health check on one of them, a registry that stops and comes back, `kill -9` at every
//! step of a cycle, SIGTERM, a full disk, and the settings file.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use crate::crash::{DEPLOY_STEPS, assert_no_leftovers};
use crate::registry::{Registry, tree};

/// A `depot agent` following a configuration, killed on drop; its stderr goes to HOST.log.
pub(crate) struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    /// An agent of web-prod with root HOST.
    fn start(ctx: &TestContext, registry: &Registry, token: &str, host: &str, extra: &[&str]) -> Self {
        Self::start_on(ctx, registry, token, host, "web-prod", extra)
    }

    /// An agent of `config` with root HOST.
    pub(crate) fn start_on(
        ctx: &TestContext,
        registry: &Registry,
        token: &str,
        host: &str,
        config: &str,
        extra: &[&str],
    ) -> Self {
        let log = ctx.path(&format!("{host}.log"));
        let root = ctx.path(host);
        let child = ctx
            .command()
            .env("DEPOT_REGISTRY", &registry.url)
            .env("DEPOT_TOKEN", token)
            .args(["agent", "--config", config, "--name", host, "--root"])
            .arg(&root)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs_err::File::create(&log).unwrap().into_parts().0)
            .spawn()
            .expect("spawn depot agent");
        Agent { child, log }
    }

    pub(crate) fn log(&self) -> String {
        fs_err::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the agent to exit, at most `timeout`.
    fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `check` every 50 ms until it holds; fails with `context()` after `timeout`.
#[track_caller]
pub(crate) fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}\n{}", context());
}

fn status(ctx: &TestContext, registry: &Registry) -> Vec<serde_json::Value> {
    let run = registry.run(ctx, &["status", "web-prod", "--json"]);
    if run.code != 0 {
        return Vec::new();
    }
    run.json().as_array().cloned().unwrap_or_default()
}

/// The host's (state, revision) as `depot status` shows it.
fn host_state(agents: &[serde_json::Value], host: &str) -> Option<(String, u64)> {
    let agent = agents.iter().find(|a| a["host"] == host)?;
    Some((agent["state"].as_str()?.to_owned(), agent["revision"].as_u64()?))
}

fn content(root: &Path) -> String {
    fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap_or_default()
}

fn agent_token(ctx: &TestContext, registry: &Registry, host: &str) -> String {
    let run = registry.run(ctx, &["token", "create", host, "--role", "agent", "--config", "web-*"]).success();
    run.stdout.trim().to_owned()
}

/// A registry with web 1.0.0 (content `v1`) and the configuration web-prod on it, and the
/// agent token of host-1.
fn web_prod(ctx: &TestContext) -> (Registry, String) {
    web_prod_with(ctx, &[])
}

/// [`web_prod`] on a registry started with `extra` flags.
fn web_prod_with(ctx: &TestContext, extra: &[&str]) -> (Registry, String) {
    let registry = Registry::start(ctx, extra);
    registry.run(ctx, &["push", "web", "1.0.0", &tree(ctx, "v1", "v1")]).success();
    registry.run(ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let token = agent_token(ctx, &registry, "host-1");
    (registry, token)
}

/// The arguments of one cycle of host-1's agent on web-prod in `root`, then `extra`.
fn once_args(root: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> =
        ["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root"].map(String::from).to_vec();
    args.push(root.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// `depot agent --once` (see [`once_args`]) with host-1's token.
fn once(ctx: &TestContext, registry: &Registry, token: &str, root: &Path, extra: &[&str]) -> Run {
    let args = once_args(root, extra);
    registry.run_as(ctx, token, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

const HOSTS: [&str; 3] = ["host-1", "host-2", "host-3"];
const CONVERGE: Duration = Duration::from_secs(30);

#[test]
fn three_agents_converge_one_rolls_back_alone_and_they_ride_out_a_registry_restart() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    let listen = registry.url.trim_start_matches("http://").to_owned();
    for (version, text) in [("1.0.0", "good 1"), ("1.1.0", "good 2"), ("1.2.0", "bad"), ("1.3.0", "good 3")] {
        registry.run(&ctx, &["push", "web", version, &tree(&ctx, version, text)]).success();
    }
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let tokens: Vec<String> = HOSTS.iter().map(|host| agent_token(&ctx, &registry, host)).collect();
    // host-3 alone checks its health: content "bad" fails unless the marker file exists.
    let marker = ctx.path("healthy-3");
    let health = format!("echo \"checking $NEWID\"; test -e {} || ! grep -q bad app.txt", marker.display());
    let extra: [&[&str]; 3] = [&[], &[], &["--health-cmd", &health, "--health-timeout", "1s"]];
    let agents: Vec<Agent> = (0..3).map(|i| Agent::start(&ctx, &registry, &tokens[i], HOSTS[i], extra[i])).collect();
    let logs = || agents.iter().map(|a| a.log()).collect::<Vec<_>>().join("\n---\n");
    let all_at = |registry: &Registry, revision: u64, states: [&str; 3]| {
        let agents = status(&ctx, registry);
        (0..3).all(|i| host_state(&agents, HOSTS[i]) == Some((states[i].to_owned(), revision)))
    };

    // Created: all three become active.
    wait_until("all three active at revision 1", CONVERGE, || all_at(&registry, 1, ["active"; 3]), logs);
    for host in HOSTS {
        assert_eq!(content(&ctx.path(host)), "good 1");
    }

    // Changed: all three switch.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    wait_until("all three active at revision 2", CONVERGE, || all_at(&registry, 2, ["active"; 3]), logs);
    for host in HOSTS {
        assert_eq!(content(&ctx.path(host)), "good 2");
    }

    // A release whose health check fails on host-3 only: it switches back, the others keep it.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    wait_until(
        "host-3 rolled back, the others active, at revision 3",
        CONVERGE,
        || all_at(&registry, 3, ["active", "active", "rolled-back"]),
        logs,
    );
    assert_eq!(content(&ctx.path("host-1")), "bad");
    assert_eq!(content(&ctx.path("host-3")), "good 2", "host-3 switched back");
    let host3 = status(&ctx, &registry).into_iter().find(|a| a["host"] == "host-3").unwrap();
    assert!(host3["error"].as_str().unwrap().contains("health"), "the reason: {host3}");
    let tail = host3["output_tail"].as_str().expect("the health command's output");
    assert!(tail.contains("checking web-prod-"), "{tail}");
    let text = registry.run(&ctx, &["status", "web-prod"]).success().stdout;
    assert!(text.contains("rolled-back") && text.contains("checking web-prod-"), "{text}");
    // Not retried by itself: the hash failed.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(host_state(&status(&ctx, &registry), "host-3"), Some(("rolled-back".into(), 3)));

    // Back to the content of revision 2: host-3 already runs it and says so; the bad content
    // again: host-3 reports that it failed there before, and keeps what it runs.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    wait_until("all three active at revision 4", CONVERGE, || all_at(&registry, 4, ["active"; 3]), logs);
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    wait_until("host-3 not trying revision 5", CONVERGE, || all_at(&registry, 5, ["active", "active", "failed"]), logs);
    assert_eq!(content(&ctx.path("host-3")), "good 2");
    let host3 = status(&ctx, &registry).into_iter().find(|a| a["host"] == "host-3").unwrap();
    assert!(host3["error"].as_str().unwrap().contains("failed on this host before"), "{host3}");

    // The registry stops. The fix arrives on host-3 and an operator retries: host-3 deploys
    // without the registry and keeps its report until the registry answers again.
    drop(registry);
    fs_err::write(&marker, "").unwrap();
    let root3 = ctx.path("host-3");
    let retry = ctx.run(&["agent", "retry", "--root", root3.to_str().unwrap(), "--json"]).success().json();
    assert_eq!(retry["cleared"].as_array().unwrap().len(), 1, "{retry}");
    assert!(retry["agent_pid"].as_u64().is_some(), "the running agent was woken: {retry}");
    let outbox = root3.join(".depot/agent/outbox.json");
    wait_until(
        "host-3 active on the retried release, its report kept",
        CONVERGE,
        || content(&root3) == "bad" && fs_err::read_to_string(&outbox).is_ok_and(|t| t.contains("\"active\"")),
        logs,
    );
    for host in &HOSTS[..2] {
        assert_eq!(content(&ctx.path(host)), "bad", "{host} keeps its release");
    }

    // Back: the kept report arrives, and the agents follow the next change.
    let registry = Registry::start_at(&ctx, &listen, &[]);
    wait_until("host-3's kept report to arrive", CONVERGE, || all_at(&registry, 5, ["active"; 3]), logs);
    wait_until("the outbox to empty", CONVERGE, || !outbox.exists(), logs);
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.3.0"]).success();
    wait_until("all three active at revision 6", CONVERGE, || all_at(&registry, 6, ["active"; 3]), logs);
    for host in HOSTS {
        assert_eq!(content(&ctx.path(host)), "good 3");
    }
    let log = logs();
    assert!(log.contains("trying again in"), "the agents noticed the outage:\n{log}");
}

/// Every step of a cycle at which a `kill -9` can land: in the download, after it, the engine's
/// steps of a deploy, and the agent's state save.
fn agent_steps() -> Vec<&'static str> {
    let mut steps = vec!["agent-downloading", "agent-downloaded"];
    steps.extend_from_slice(DEPLOY_STEPS);
    steps.extend(["agent-deployed", "agent-state-saved"]);
    steps
}

#[test]
fn a_kill_at_any_step_of_a_cycle_leaves_a_complete_release_and_the_next_run_converges() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    let root = ctx.root();
    // The hook records each release it ran for: a kill between the switch and the checks must
    // not leave a release active whose hook never ran.
    let hook = format!("echo $NEWID >> {}", ctx.path("hook.log").display());
    let args = |extra: &[&str]| once_args(&root, &[&["--post-activate", hook.as_str()], extra].concat());
    let agent =
        |extra: &[&str]| once(&ctx, &registry, &token, &root, &[&["--post-activate", hook.as_str()], extra].concat());
    let mut previous = agent(&["--json"]).success().json()["release"].as_str().unwrap().to_owned();

    for (i, step) in agent_steps().into_iter().enumerate() {
        let version = format!("2.{i}.0");
        registry.run(&ctx, &["push", "web", &version, &tree(&ctx, &version, &version)]).success();
        registry.run(&ctx, &["config", "set", "web-prod", &format!("web:{version}")]).success();
        let mut killed = ctx.command();
        killed.env("DEPOT_REGISTRY", &registry.url).env("DEPOT_TOKEN", &token);
        let output = killed.args(args(&[])).env("DEPOT_TEST_KILL_AT", step).output().unwrap();
        assert_eq!(output.status.signal(), Some(9), "killed at {step}: {}", String::from_utf8_lossy(&output.stderr));

        // Whatever the step, `current` names a complete release: the old one or the new one.
        let current = ctx.current().expect("current exists");
        ctx.run(&["verify", "--root", &ctx.root_str(), "--version", &current]).success();
        let old_content = if i == 0 { "v1".to_owned() } else { format!("2.{}.0", i - 1) };
        assert!([old_content.as_str(), version.as_str()].contains(&content(&root).as_str()), "after {step}");

        // The next run finishes the job and leaves nothing behind.
        let once = agent(&["--json"]).success().json();
        let release = once["release"].as_str().unwrap().to_owned();
        assert_ne!(release, previous);
        assert_eq!(ctx.current().as_deref(), Some(release.as_str()), "after {step}");
        assert_eq!(content(&root), version, "after {step}");
        let hooks = fs_err::read_to_string(ctx.path("hook.log")).unwrap();
        assert_eq!(hooks.lines().last(), Some(release.as_str()), "the post-activate hook ran after {step}");
        ctx.run(&["verify", "--root", &ctx.root_str(), "--version", &release]).success();
        assert_no_leftovers(&root);
        let blobs: Vec<String> = fs_err::read_dir(root.join(".depot/agent/blobs"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(blobs.len(), 1, "only the active configuration's blob is cached, no partial file: {blobs:?}");
        let state: serde_json::Value =
            serde_json::from_str(&fs_err::read_to_string(root.join(".depot/agent/state.json")).unwrap()).unwrap();
        assert_eq!(state["active_hash"], once["hash"], "after {step}");
        let agents = status(&ctx, &registry);
        assert_eq!(host_state(&agents, "host-1"), Some(("active".into(), once["revision"].as_u64().unwrap())));
        previous = release;
    }
}

#[test]
fn sigterm_stops_a_waiting_agent_at_once_and_a_deploying_one_after_its_checks() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    registry.run(&ctx, &["push", "web", "2.0.0", &tree(&ctx, "v2", "v2")]).success();
    let root = ctx.path("host-1");

    // Waiting in its blocking query: it stops at once.
    let mut agent = Agent::start(&ctx, &registry, &token, "host-1", &[]);
    wait_until("v1 active", CONVERGE, || content(&root) == "v1", || agent.log());
    agent.signal(rustix::process::Signal::TERM);
    let exit = agent.wait(Duration::from_secs(5)).unwrap_or_else(|| panic!("still running:\n{}", agent.log()));
    assert_eq!(exit.code(), Some(0), "{}", agent.log());
    assert!(agent.log().contains("stopped"), "{}", agent.log());

    // In the post-activate hook: the hook and the health check finish, the state is saved, then it stops.
    let hook_done = ctx.path("hook-done");
    let hook = format!("sleep 2; touch {}", hook_done.display());
    let mut agent = Agent::start(&ctx, &registry, &token, "host-1", &["--post-activate", &hook]);
    std::thread::sleep(Duration::from_millis(300));
    registry.run(&ctx, &["config", "set", "web-prod", "web:2.0.0"]).success();
    wait_until("the switch to v2", CONVERGE, || content(&root) == "v2", || agent.log());
    agent.signal(rustix::process::Signal::TERM);
    let exit = agent.wait(Duration::from_secs(10)).unwrap_or_else(|| panic!("still running:\n{}", agent.log()));
    assert_eq!(exit.code(), Some(0), "{}", agent.log());
    assert!(hook_done.exists(), "the hook ran to its end:\n{}", agent.log());
    let state = fs_err::read_to_string(root.join(".depot/agent/state.json")).unwrap();
    let config = registry.run(&ctx, &["config", "show", "web-prod", "--json"]).success().json();
    assert!(state.contains(config["hash"].as_str().unwrap()), "the state was saved: {state}");
    assert_eq!(host_state(&status(&ctx, &registry), "host-1"), Some(("active".into(), 2)));
}

/// SIGTERM while the validate hook runs: the hook finishes (it has its timeout), then the deploy
/// stops before the switch: `current` stays, the staged tree goes, the hash is not marked failed.
#[test]
fn sigterm_during_the_validate_hook_stops_before_the_switch() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    registry.run(&ctx, &["push", "web", "2.0.0", &tree(&ctx, "v2", "v2")]).success();
    let root = ctx.path("host-1");
    let started = ctx.path("validate-started");
    let validate = format!("touch {}; sleep 2", started.display());
    let mut agent = Agent::start(&ctx, &registry, &token, "host-1", &["--validate", &validate]);
    wait_until("v1 active", CONVERGE, || content(&root) == "v1", || agent.log());
    fs_err::remove_file(&started).unwrap();
    registry.run(&ctx, &["config", "set", "web-prod", "web:2.0.0"]).success();
    wait_until("the validate hook of v2", CONVERGE, || started.exists(), || agent.log());
    agent.signal(rustix::process::Signal::TERM);
    let exit = agent.wait(Duration::from_secs(15)).unwrap_or_else(|| panic!("still running:\n{}", agent.log()));
    assert_eq!(exit.code(), Some(0), "{}", agent.log());
    assert_eq!(content(&root), "v1", "current was not switched:\n{}", agent.log());
    assert!(agent.log().contains("stopped after the validate hook"), "{}", agent.log());
    let leftovers: Vec<String> = fs_err::read_dir(root.join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".staging"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let state = fs_err::read_to_string(root.join(".depot/agent/state.json")).unwrap();
    let config = registry.run(&ctx, &["config", "show", "web-prod", "--json"]).success().json();
    assert!(!state.contains(config["hash"].as_str().unwrap()), "not marked failed: {state}");
    // Started again, it deploys the revision it was stopped on.
    let mut again = Agent::start(&ctx, &registry, &token, "host-1", &[]);
    wait_until("v2 active", CONVERGE, || content(&root) == "v2", || again.log());
    again.signal(rustix::process::Signal::TERM);
    again.wait(Duration::from_secs(10));
}

#[test]
fn a_full_disk_fails_the_deploy_cleanly_and_keeps_the_active_release() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    // 16 MiB of zeros: a tiny archive that cannot be unpacked into a 4 MiB file system.
    let big = ctx.tree("v2", &[("app.txt", "v2")]);
    fs_err::write(big.join("zeros.bin"), vec![0u8; 16 << 20]).unwrap();
    registry.run(&ctx, &["push", "web", "2.0.0", big.to_str().unwrap()]).success();
    let root = ctx.path("small-disk");
    fs_err::create_dir_all(&root).unwrap();
    let out = ctx.path("out");
    fs_err::create_dir_all(&out).unwrap();

    // A 4 MiB tmpfs in a private mount namespace (as root; otherwise in a user namespace), so
    // that it disappears with the script.
    let script = r#"
        set -u
        mount -t tmpfs -o size=4m tmpfs "$ROOT" || exit 90
        agent() { "$DEPOT" agent --config web-prod --root "$ROOT" --name host-1 --once; }
        agent 2> "$OUT/first.err"; echo $? > "$OUT/first.code"
        df -k "$ROOT" | tail -1 | awk '{print $3}' > "$OUT/used-before"
        DEPOT_TOKEN="$ADMIN" "$DEPOT" config set web-prod web:2.0.0 > /dev/null || exit 91
        agent 2> "$OUT/second.err"; echo $? > "$OUT/second.code"
        df -k "$ROOT" | tail -1 | awk '{print $3}' > "$OUT/used-after"
        readlink "$ROOT/releases/current" > "$OUT/current"
        cat "$ROOT/releases/current/app.txt" > "$OUT/content"
        ls -A "$ROOT/releases" > "$OUT/releases"
        ls -A "$ROOT/.depot/store/tmp" "$ROOT/.depot/tmp" > "$OUT/tmp"
    "#;
    let mut command = std::process::Command::new("unshare");
    if !rustix::process::geteuid().is_root() {
        command.arg("--map-root-user");
    }
    let exit = command
        .args(["--mount", "sh", "-c", script])
        .env("ROOT", &root)
        .env("OUT", &out)
        .env("DEPOT", env!("CARGO_BIN_EXE_depot"))
        .env("DEPOT_REGISTRY", &registry.url)
        .env("DEPOT_TOKEN", &token)
        .env("ADMIN", &registry.admin)
        .env_remove("DEPOT_TEST_KILL_AT")
        .status()
        .expect("unshare (util-linux) runs");
    assert_eq!(exit.code(), Some(0), "the script could not mount a tmpfs (needs root or user namespaces)");
    let read = |name: &str| fs_err::read_to_string(out.join(name)).unwrap_or_default().trim().to_owned();
    assert_eq!(read("first.code"), "0", "{}", read("first.err"));
    assert_eq!(read("second.code"), "1", "{}\n{}", read("second.err"), read("releases"));
    assert!(read("second.err").contains("No space left on device"), "{}", read("second.err"));
    assert_eq!(read("content"), "v1", "the active release stays");
    let releases: Vec<String> = read("releases").lines().map(str::to_owned).collect();
    assert_eq!(releases.len(), 2, "the old release and current, no staging directory: {releases:?}");
    assert!(releases.contains(&"current".to_owned()) && releases.contains(&read("current")));
    assert_eq!(read("tmp").lines().filter(|l| !l.is_empty() && !l.ends_with(':')).count(), 0, "{}", read("tmp"));
    let (before, after): (u64, u64) = (read("used-before").parse().unwrap(), read("used-after").parse().unwrap());
    assert!(
        after <= before + 64,
        "the failed deploy's files were removed: {before} KiB used before, {after} KiB after"
    );
    let agents = status(&ctx, &registry);
    assert_eq!(host_state(&agents, "host-1"), Some(("failed".into(), 2)));
    assert!(agents[0]["error"].as_str().unwrap().contains("No space left"), "{}", agents[0]);
}

#[test]
fn the_settings_file_configures_the_agent_and_a_bad_one_is_named() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    let etc = ctx.path("etc");
    fs_err::create_dir_all(&etc).unwrap();
    let settings = etc.join("agent.toml");
    fs_err::write(
        &settings,
        format!(
            "config = \"web-prod\"\nroot = \"../srv\"\nname = \"host-1\"\nregistry = \"{}\"\ntoken = \"{token}\"\n\n\
             [deploy]\npost_activate = \"echo $DEPOT_CONFIG > ../../activated\"\n",
            registry.url
        ),
    )
    .unwrap();
    let settings = settings.to_str().unwrap();
    let once = ctx.run(&["agent", "--settings", settings, "--once", "--json"]).success().json();
    assert_eq!(once["outcome"], "activated", "{once}");
    let root = ctx.path("srv");
    assert_eq!(content(&root), "v1");
    assert_eq!(fs_err::read_to_string(root.join("activated")).unwrap(), "web-prod\n", "the [deploy] hook ran");
    assert_eq!(host_state(&status(&ctx, &registry), "host-1"), Some(("active".into(), 1)));

    // The environment still beats the file.
    let mut command = ctx.command();
    command.env("DEPOT_AGENT_SETTINGS", settings).env("DEPOT_CONFIG", "other").args(["agent", "--once"]);
    let output = command.output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("other"), "{}", String::from_utf8_lossy(&output.stderr));

    fs_err::write(ctx.path("etc/bad.toml"), "config = \"web-prod\"\nhealth = \"yes\"\n").unwrap();
    let bad = ctx.path("etc/bad.toml");
    ctx.run(&["agent", "--settings", bad.to_str().unwrap(), "--once"])
        .failure()
        .stderr_contains("bad.toml")
        .stderr_contains("hint:");
    fs_err::write(ctx.path("etc/empty.toml"), "").unwrap();
    let empty = ctx.path("etc/empty.toml");
    ctx.run(&["agent", "--settings", empty.to_str().unwrap(), "--once"])
        .failure()
        .stderr_contains("no configuration to follow")
        .stderr_contains("DEPOT_CONFIG");
}

#[test]
fn a_layer_whose_bytes_do_not_match_its_digest_is_never_deployed() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    let pushed = registry.run(&ctx, &["push", "web", "2.0.0", &tree(&ctx, "v2", "v2")]).success();
    let root = ctx.root();
    let agent = || once(&ctx, &registry, &token, &root, &[]);
    agent().success();

    // The registry's copy of 2.0.0 rots on disk (same size, other bytes).
    let hex = pushed.stdout.trim().trim_start_matches("sha256:").to_owned();
    let blob = ctx.path("registry-data").join("blobs/sha256").join(&hex[..2]).join(&hex);
    let mut bytes = fs_err::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs_err::write(&blob, bytes).unwrap();
    registry.run(&ctx, &["config", "set", "web-prod", "web:2.0.0"]).success();

    let run = agent().failure();
    assert!(run.stderr.contains("digest"), "{}", run.stderr);
    assert_eq!(content(&root), "v1", "nothing was deployed");
    let blobs: Vec<String> = fs_err::read_dir(root.join(".depot/agent/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!blobs.contains(&hex) && blobs.iter().all(|b| !b.starts_with('.')), "nothing kept: {blobs:?}");
    let agents = status(&ctx, &registry);
    assert_eq!(host_state(&agents, "host-1"), Some(("failed".into(), 2)));
    assert!(agents[0]["error"].as_str().unwrap().contains("digest"), "{}", agents[0]);
}

#[test]
fn an_agent_tracking_latest_moves_forward_on_a_stable_push_ignores_an_rc_and_moves_back_on_deprecation() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "1.0.0")]).success();
    registry.run(&ctx, &["config", "create", "web-prod", "--layer", "web:latest"]).success();
    registry.run(&ctx, &["config", "create", "web-pinned", "--layer", "web:1.0.0"]).success();
    let token = agent_token(&ctx, &registry, "host-1");
    let root = ctx.path("host-1");
    let agent = Agent::start(&ctx, &registry, &token, "host-1", &[]);
    let on = |expected: &str| {
        wait_until(&format!("host-1 on {expected}"), CONVERGE, || content(&root) == expected, || agent.log())
    };
    on("1.0.0");
    let show = registry.run(&ctx, &["config", "show", "web-prod"]).success().stdout;
    assert!(show.contains("latest"), "the layer tracks latest:\n{show}");

    // A stable push moves latest, the configuration and the host.
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "v2", "1.1.0")]).success();
    on("1.1.0");
    let history = registry.run(&ctx, &["config", "history", "web-prod"]).success().stdout;
    assert!(history.contains("channel web:latest moved 1.0.0 → 1.1.0"), "{history}");

    // A release candidate moves nothing.
    registry.run(&ctx, &["push", "web", "1.2.0-rc.1", &tree(&ctx, "rc", "1.2.0-rc.1")]).success();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(content(&root), "1.1.0");
    assert_eq!(registry.run(&ctx, &["config", "show", "web-prod", "--json"]).success().json()["revision"], 2);

    // Deprecation moves the fleet back; the version stays, marked, and a pinned configuration is flagged.
    registry.run(&ctx, &["push", "web", "1.0.1", &tree(&ctx, "v3", "1.0.1")]).success();
    registry
        .run(&ctx, &["deprecate", "web", "1.1.0", "--reason", "crashes on start", "--replacement", "1.0.1"])
        .success()
        .stderr_contains("Moved back, tracking their channel: web-prod");
    on("1.0.1");
    let channels = registry.run(&ctx, &["channels", "web", "--json"]).success().json();
    let latest = channels.as_array().unwrap().iter().find(|c| c["name"] == "latest").unwrap();
    assert_eq!(latest["version"], "1.0.1", "{latest}");
    let text = registry.run(&ctx, &["channels", "web"]).success().stdout;
    assert!(text.contains("deprecated 1.1.0: crashes on start"), "{text}");
    let versions = registry.run(&ctx, &["versions", "web"]).success().stdout;
    assert!(versions.contains("deprecated: crashes on start"), "{versions}");
    let deprecated = registry.run(&ctx, &["deprecate", "web", "1.0.0", "--reason", "old"]).success().stderr;
    assert!(deprecated.contains("Still running web 1.0.0:\n  web-pinned revision 1 (pinned)"), "{deprecated}");
    let pinned = registry.run(&ctx, &["config", "show", "web-pinned"]).success().stdout;
    assert!(pinned.contains("warning: web:1.0.0 is deprecated (old)"), "{pinned}");
    let flagged = registry.run(&ctx, &["status", "web-pinned"]).success().stdout;
    assert!(flagged.contains("warning: web:1.0.0 is deprecated (old)"), "{flagged}");
    assert_eq!(host_state(&status(&ctx, &registry), "host-1").map(|s| s.0), Some("active".into()));

    registry.run(&ctx, &["undeprecate", "web", "1.1.0"]).success();
    on("1.1.0");
}

#[test]
fn a_configuration_without_layers_is_nothing_to_deploy_yet() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    registry.run(&ctx, &["config", "create", "web-prod"]).success();
    let token = agent_token(&ctx, &registry, "host-1");
    let root = ctx.root();
    once(&ctx, &registry, &token, &root, &[]).success().stderr_contains("no layers yet");
    assert!(ctx.current().is_none());
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.0.0"]).success();
    once(&ctx, &registry, &token, &root, &[]).success();
    assert_eq!(content(&root), "v1");
}

#[test]
fn a_root_busy_with_another_command_is_tried_again_not_marked_failed() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    let root = ctx.root();
    // A manual deploy whose validate hook holds the root's lock for 3 s.
    let archive = ctx.release("0.9.0", &[("app.txt", "manual")]);
    let mut busy = ctx
        .command()
        .args(["deploy", "--root", &ctx.root_str(), "--version", "0.9.0", "--artifact-path"])
        .arg(&archive)
        .args(["--validate", "sleep 3"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let agent = || once(&ctx, &registry, &token, &root, &["--lock-timeout", "1s"]);
    agent().failure().stderr_contains("lock");
    assert!(busy.wait().unwrap().success());
    let state = fs_err::read_to_string(root.join(".depot/agent/state.json")).unwrap_or_default();
    assert!(
        !state.contains(
            &registry.run(&ctx, &["config", "show", "web-prod", "--json"]).success().json()["hash"]
                .as_str()
                .unwrap()
                .to_owned()
        ),
        "not marked failed: {state}"
    );
    agent().success();
    assert_eq!(content(&root), "v1");
}

/// Two replicas of one registry: `depot serve` twice on one PostgreSQL database (started by
/// depot-testkit) and one blob directory.
fn replicas(ctx: &TestContext) -> (Registry, Registry, String) {
    let database = depot_testkit::Postgres::fresh_database();
    let (a, token) = web_prod_with(ctx, &["--metadata", &database]);
    let b = Registry::start(ctx, &["--metadata", &database]);
    assert_eq!(a.admin, b.admin, "one registry, one admin token");
    (a, b, token)
}

/// The revisions the post-activate hook of HOST ran for, in order.
fn activated_revisions(ctx: &TestContext, host: &str) -> Vec<String> {
    let log = fs_err::read_to_string(ctx.path(&format!("{host}.revisions"))).unwrap_or_default();
    log.lines().map(str::to_owned).collect()
}

#[test]
fn killing_the_replica_an_agent_talks_to_leaves_it_converging_through_another() {
    let ctx = TestContext::new();
    let (a, b, token) = replicas(&ctx);
    registry_push(&ctx, &b, "2.0.0", "v2");
    registry_push(&ctx, &b, "3.0.0", "v3");
    let root = ctx.path("host-1");
    let hook = format!("echo $DEPOT_REVISION >> {}", ctx.path("host-1.revisions").display());
    let urls = format!("{},{}", a.url, b.url);
    let agent = Agent::start(&ctx, &a, &token, "host-1", &["--registry", &urls, "--post-activate", &hook]);
    let (ctx_ref, b_ref) = (&ctx, &b);
    let at = move |revision: u64| {
        move || host_state(&status(ctx_ref, b_ref), "host-1") == Some(("active".to_owned(), revision))
    };
    wait_until("host-1 active at revision 1", CONVERGE, at(1), || agent.log());
    assert!(agent.log().contains(&format!("through {}, then {}", a.url, b.url)), "{}", agent.log());
    assert!(!agent.log().contains("moving to"), "A answered:\n{}", agent.log());

    // A dies while the agent waits on it, and a change is written through B before the agent
    // notices (it is paused meanwhile): B answers the agent's revision at once.
    agent.signal(rustix::process::Signal::STOP);
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    b.run(&ctx, &["config", "set", "web-prod", "web:2.0.0"]).success();
    agent.signal(rustix::process::Signal::CONT);
    wait_until("host-1 active at revision 2, reported through B", CONVERGE, at(2), || agent.log());
    assert_eq!(content(&root), "v2");
    let log = agent.log();
    assert!(log.contains(&format!("moving to the registry at {}", b.url)), "{log}");

    // It stays on B, waits there, and a change through B wakes it.
    b.run(&ctx, &["config", "set", "web-prod", "web:3.0.0"]).success();
    wait_until("host-1 active at revision 3", CONVERGE, at(3), || agent.log());
    assert_eq!(content(&root), "v3");

    // Each revision was deployed once: no revision missed, none repeated by the move.
    assert_eq!(activated_revisions(&ctx, "host-1"), ["1", "2", "3"], "{}", agent.log());
    let history: serde_json::Value =
        serde_json::from_str(&fs_err::read_to_string(root.join(".depot/history.json")).unwrap()).unwrap();
    let activations = history["activations"].as_array().unwrap();
    assert_eq!(activations.len(), 3, "{history}");
    assert!(activations.iter().all(|a| a["outcome"]["state"] == "good"), "{history}");
    for revision in 1..=3 {
        let active = format!("revision {revision} is active as release");
        assert_eq!(agent.log().matches(&active).count(), 1, "{}", agent.log());
    }
    assert_eq!(agent.log().matches("moving to").count(), 1, "one move:\n{}", agent.log());
}

fn registry_push(ctx: &TestContext, registry: &Registry, version: &str, text: &str) {
    registry.run(ctx, &["push", "web", version, &tree(ctx, text, text)]).success();
}

#[test]
fn an_unreachable_first_registry_falls_through_to_the_next_at_start() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    // Bind and drop a listener: its port is closed now.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let closed = format!("http://127.0.0.1:{port}");
    let moved = format!("moving to the registry at {}", registry.url);

    // The flag repeated.
    let root = ctx.root();
    let run = once(&ctx, &registry, &token, &root, &["--registry", &closed, "--registry", &registry.url, "--json"]);
    let run = run.success();
    assert_eq!(run.json()["outcome"], "activated", "{}", run.stderr);
    assert!(run.stderr.contains(&closed) && run.stderr.contains(&moved), "{}", run.stderr);
    assert_eq!(content(&root), "v1");
    assert_eq!(host_state(&status(&ctx, &registry), "host-1"), Some(("active".into(), 1)), "the report arrived");

    // DEPOT_REGISTRY with commas, on another host.
    let mut command = ctx.command();
    command.env("DEPOT_REGISTRY", format!("{closed},{}", registry.url)).env("DEPOT_TOKEN", &token);
    let other = ctx.path("host-2");
    let args = ["agent", "--config", "web-prod", "--name", "host-2", "--once", "--root", other.to_str().unwrap()];
    let run = Run::from(command.args(args).output().unwrap()).success().stderr_contains(&moved);
    assert_eq!(content(&other), "v1", "{}", run.stderr);

    // An array in the settings file.
    let settings = ctx.path("agent.toml");
    let text = format!(
        "config = \"web-prod\"\nroot = \"host-3\"\nname = \"host-3\"\nregistry = [\"{closed}\", \"{}\"]\ntoken = \"{token}\"\n",
        registry.url
    );
    fs_err::write(&settings, text).unwrap();
    ctx.run(&["agent", "--settings", settings.to_str().unwrap(), "--once"]).success().stderr_contains(&moved);
    assert_eq!(content(&ctx.path("host-3")), "v1");
    let agents = status(&ctx, &registry);
    assert!(["host-1", "host-2", "host-3"].iter().all(|h| host_state(&agents, h) == Some(("active".into(), 1))));

    // Every registry down: the error names the last one tried, and nothing changed.
    let url = registry.url.clone();
    drop(registry);
    let mut command = ctx.command();
    command.env("DEPOT_TOKEN", &token).args(once_args(&root, &["--registry", &format!("{closed},{url}")]));
    let run = Run::from(command.output().unwrap()).failure();
    assert!(run.stderr.contains(&format!("error: cannot reach the registry at {url}/")), "{}", run.stderr);
    run.stderr_contains("hint:");
    assert_eq!(content(&root), "v1");

    // The other verbs talk to one registry, and say so.
    let run = ctx.run(&["status", "web-prod", "--token", &token, "--registry", "http://a:1,http://b:2"]);
    run.failure().stderr_contains("several registry URLs").stderr_contains("only `depot agent`");
}

/// An agent token may read its configuration: `depot config show` prints it and succeeds, even
/// though the token may not read the versions behind the deprecation warnings.
#[test]
fn an_agent_token_shows_its_configuration() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    let mut command = ctx.command();
    command.env("DEPOT_REGISTRY", &registry.url).env("DEPOT_TOKEN", &token).args(["config", "show", "web-prod"]);
    let shown = Run::from(command.output().unwrap()).success();
    assert!(shown.stdout.contains("web") && shown.stdout.contains("1.0.0"), "{}", shown.stdout);
}

#[test]
fn a_layer_the_host_unpacked_before_is_not_downloaded_again() {
    let ctx = TestContext::new();
    let (registry, token) = web_prod(&ctx);
    let root = ctx.root();
    let agent = || once(&ctx, &registry, &token, &root, &[]);
    agent().success();
    let blobs = ctx.path("registry-data").join("blobs/sha256");
    let first: Vec<_> = fs_err::read_dir(&blobs)
        .unwrap()
        .flat_map(|dir| fs_err::read_dir(dir.unwrap().path()).unwrap().map(|blob| blob.unwrap().path()))
        .collect();
    assert_eq!(first.len(), 1, "web 1.0.0's blob: {first:?}");

    // 2.0.0 goes out, and the host forgets 1.0.0's blob (it keeps the release and its listing).
    registry.run(&ctx, &["push", "web", "2.0.0", &tree(&ctx, "v2", "v2")]).success();
    registry.run(&ctx, &["config", "set", "web-prod", "web:2.0.0"]).success();
    agent().success();
    assert_eq!(content(&root), "v2");

    // A new configuration of 1.0.0 and a new component: only the new one's blob is needed. The
    // registry has lost 1.0.0's blob, so a download of it would fail.
    let extra = ctx.tree("extra", &[("extra.txt", "extra\n")]);
    registry.run(&ctx, &["push", "extra", "1.0.0", &extra.display().to_string()]).success();
    fs_err::remove_file(&first[0]).unwrap();
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.0.0", "extra:1.0.0"]).success();
    let run = agent().success();
    assert_eq!(content(&root), "v1", "{}", run.stderr);
    assert_eq!(fs_err::read_to_string(root.join("releases/current/extra.txt")).unwrap(), "extra\n");
}
