//! Rolling rollouts with real `depot agent` processes, each with its own root and `--name`: a
//! failing canary halts with nobody else touched, a failure in batch 2 reverts batches 1–2,
//! pause/resume/abort, a new revision superseding a rollout, an agent killed mid-batch, and a
//! registry restarted mid-rollout that goes on from its database.

use std::path::Path;
use std::time::Duration;

use crate::agent::{Agent, wait_until};
use crate::common::*;
use crate::registry::{Registry, tree};

const CONVERGE: Duration = Duration::from_secs(60);

/// A registry with web 1.0.0 (`good 1`), 1.1.0 (`bad`), 1.2.0 (`good 2`) and 1.3.0 (`good 3`),
/// the configuration web-prod on 1.0.0 with the rollout strategy `strategy`, and an agent token.
fn setup(ctx: &TestContext, strategy: &[&str]) -> (Registry, String) {
    let registry = Registry::start(ctx, &[]);
    for (version, text) in [("1.0.0", "good 1"), ("1.1.0", "bad"), ("1.2.0", "good 2"), ("1.3.0", "good 3")] {
        registry.run(ctx, &["push", "web", version, &tree(ctx, version, text)]).success();
    }
    registry.run(ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0"]).success();
    let mut args = vec!["config", "rollout", "web-prod"];
    args.extend(strategy);
    registry.run(ctx, &args).success();
    let token =
        registry.run(ctx, &["token", "create", "fleet", "--role", "agent", "--config", "web-*"]).success().stdout;
    (registry, token.trim().to_owned())
}

fn host(i: usize) -> String {
    format!("web-{i:02}")
}

/// The health check of a host that refuses the `bad` release.
fn refuses_bad() -> Vec<String> {
    vec!["--health-cmd".into(), "! grep -q bad app.txt".into(), "--health-timeout".into(), "2s".into()]
}

/// `count` agents of web-prod; `extra(i)` gives host i's flags.
fn agents(
    ctx: &TestContext,
    registry: &Registry,
    token: &str,
    count: usize,
    extra: impl Fn(usize) -> Vec<String>,
) -> Vec<Agent> {
    (0..count)
        .map(|i| {
            let flags = extra(i);
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            Agent::start_on(ctx, registry, token, &host(i), "web-prod", &flags)
        })
        .collect()
}

/// Each host's (state, revision) as `depot status` shows it.
fn states(ctx: &TestContext, registry: &Registry) -> Vec<(String, String, u64)> {
    let run = registry.run(ctx, &["status", "web-prod", "--json"]);
    if run.code != 0 {
        return Vec::new();
    }
    let agents = run.json();
    agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["host"].as_str().unwrap().to_owned(),
                a["state"].as_str().unwrap().to_owned(),
                a["revision"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn state_of(ctx: &TestContext, registry: &Registry, i: usize) -> Option<(String, u64)> {
    states(ctx, registry).into_iter().find(|(h, ..)| *h == host(i)).map(|(_, s, r)| (s, r))
}

/// Whether hosts `range` all report `state` on `revision`.
fn all_at(ctx: &TestContext, registry: &Registry, hosts: std::ops::Range<usize>, state: &str, revision: u64) -> bool {
    let states = states(ctx, registry);
    hosts.clone().all(|i| states.iter().any(|(h, s, r)| *h == host(i) && s == state && *r == revision))
}

fn rollout(ctx: &TestContext, registry: &Registry) -> serde_json::Value {
    registry.run(ctx, &["rollout", "status", "web-prod", "--json"]).success().json()
}

fn content(root: &Path) -> String {
    fs_err::read_to_string(root.join("releases/current/app.txt")).unwrap_or_default()
}

/// How many releases a host's root holds: 1 for a host no rollout touched.
fn releases(root: &Path) -> usize {
    fs_err::read_dir(root.join("releases"))
        .unwrap()
        .filter(|e| {
            e.as_ref().unwrap().file_name() != "current"
                && !e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.')
        })
        .count()
}

/// Waits until hosts `hosts` all report `state` on `revision`.
#[track_caller]
fn converge(
    ctx: &TestContext,
    registry: &Registry,
    fleet: &[Agent],
    hosts: std::ops::Range<usize>,
    state: &str,
    revision: u64,
) {
    let what = format!("hosts {hosts:?} {state} on revision {revision}");
    wait_until(
        &what,
        CONVERGE,
        || all_at(ctx, registry, hosts.clone(), state, revision),
        || format!("{:?}\n{}", states(ctx, registry), logs(fleet, registry)),
    );
}

/// The agents' and the registry's logs, for a failure's message.
fn logs(agents: &[Agent], registry: &Registry) -> String {
    let text = agents.iter().map(Agent::log).collect::<Vec<_>>().join("\n---\n");
    format!("{text}\n--- registry ---\n{}", registry.log())
}

#[test]
fn a_failing_canary_halts_the_rollout_and_no_other_host_is_touched() {
    let ctx = TestContext::new();
    let (registry, token) = setup(&ctx, &["--canary", "1", "--batch", "25%", "--bake", "2s"]);
    let fleet = agents(&ctx, &registry, &token, 20, |i| if i == 0 { refuses_bad() } else { Vec::new() });
    converge(&ctx, &registry, &fleet, 0..20, "active", 1);

    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    wait_until(
        "the rollout to halt",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "halted",
        || format!("{}\n{}", rollout(&ctx, &registry), logs(&fleet, &registry)),
    );
    let status = rollout(&ctx, &registry);
    let sizes: Vec<usize> =
        status["batches"].as_array().unwrap().iter().map(|b| b["hosts"].as_array().unwrap().len()).collect();
    assert_eq!(sizes, [1, 5, 5, 5, 4], "a canary, then 25% of 20 per batch: {status}");
    assert_eq!(status["started_batches"], 1);
    assert_eq!(status["batches"][0]["hosts"][0]["host"], "web-00");
    assert!(status["reason"].as_str().unwrap().contains("1 host(s) failed, more than the 0 allowed"), "{status}");
    assert_eq!(state_of(&ctx, &registry, 0), Some(("rolled-back".to_owned(), 2)));
    assert_eq!(content(&ctx.path("web-00")), "good 1", "the canary switched back by itself");
    // The 19 others: never told of revision 2, one release on disk, still active on revision 1.
    std::thread::sleep(Duration::from_secs(3));
    assert!(all_at(&ctx, &registry, 1..20, "active", 1), "{:?}", states(&ctx, &registry));
    for i in 1..20 {
        let root = ctx.path(&host(i));
        assert_eq!((content(&root), releases(&root)), ("good 1".to_owned(), 1), "{} untouched", host(i));
    }
    assert_eq!(rollout(&ctx, &registry)["phase"], "halted", "a halt stays until someone acts");

    let text = registry.run(&ctx, &["rollout", "status", "web-prod"]).success().stdout;
    assert!(text.contains("revision 1 → 2, halted, batch 1 of 5"), "{text}");
    assert!(text.contains("failed: rolled-back on revision 2"), "{text}");
    assert!(text.contains("waiting for its batch"), "{text}");
    let shown = registry.run(&ctx, &["config", "show", "web-prod"]).success().stdout;
    assert!(shown.contains("rolling: canary 1, batch 25%, bake 2s") && shown.contains("halted"), "{shown}");
}

#[test]
fn a_failure_in_batch_two_with_revert_sends_batches_one_and_two_back() {
    let ctx = TestContext::new();
    let (registry, token) = setup(&ctx, &["--canary", "1", "--batch", "2", "--bake", "1s", "--on-failure", "revert"]);
    // Batches: web-00 | web-01 web-02 | web-03 web-04 | web-05; web-02 refuses the bad release.
    let fleet = agents(&ctx, &registry, &token, 6, |i| if i == 2 { refuses_bad() } else { Vec::new() });
    converge(&ctx, &registry, &fleet, 0..6, "active", 1);

    registry.run(&ctx, &["config", "set", "web-prod", "web:1.1.0"]).success();
    wait_until(
        "the rollout to revert, and batches 1-2 back on revision 1",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "reverted" && all_at(&ctx, &registry, 0..2, "active", 1),
        || format!("{}\n{:?}\n{}", rollout(&ctx, &registry), states(&ctx, &registry), logs(&fleet, &registry)),
    );
    let status = rollout(&ctx, &registry);
    assert_eq!(status["started_batches"], 2, "{status}");
    assert_eq!(status["batches"][1]["hosts"][1]["failed"], "rolled-back on revision 2", "{status}");
    for i in 0..3 {
        let root = ctx.path(&host(i));
        assert_eq!(content(&root), "good 1", "{} back on the previous release", host(i));
    }
    assert_eq!(releases(&ctx.path("web-00")), 2, "the canary ran revision 2, then went back");
    std::thread::sleep(Duration::from_secs(2));
    for i in 3..6 {
        let root = ctx.path(&host(i));
        assert_eq!((content(&root), releases(&root)), ("good 1".to_owned(), 1), "{} never changed", host(i));
    }
    assert!(all_at(&ctx, &registry, 3..6, "active", 1));
    let text = registry.run(&ctx, &["rollout", "status", "web-prod"]).success().stdout;
    assert!(text.contains("reverted") && text.contains("reason: 1 host(s) failed"), "{text}");
}

#[test]
fn pause_holds_a_rollout_resume_finishes_it_and_abort_sends_every_host_back() {
    let ctx = TestContext::new();
    let (registry, token) = setup(&ctx, &["--canary", "1", "--batch", "1", "--bake", "1s"]);
    let mut fleet = agents(&ctx, &registry, &token, 3, |_| Vec::new());
    converge(&ctx, &registry, &fleet, 0..3, "active", 1);

    // Paused as it begins: the canary's batch has started and may finish; nothing else moves.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    let paused = registry.run(&ctx, &["rollout", "pause", "web-prod"]).success();
    assert!(paused.stderr.contains("Paused the rollout of web-prod to revision 2"), "{}", paused.stderr);
    converge(&ctx, &registry, &fleet, 0..1, "active", 2);
    std::thread::sleep(Duration::from_secs(3));
    let status = rollout(&ctx, &registry);
    assert_eq!((status["phase"].as_str(), status["started_batches"].as_u64()), (Some("paused"), Some(1)), "{status}");
    assert!(all_at(&ctx, &registry, 1..3, "active", 1));
    let again = registry.run(&ctx, &["rollout", "pause", "web-prod"]);
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("only a running rollout can be paused"), "{}", again.stderr);
    // A host that joins during the rollout runs the previous revision, in the last batch.
    fleet.push(Agent::start_on(&ctx, &registry, &token, &host(3), "web-prod", &[]));
    converge(&ctx, &registry, &fleet, 3..4, "active", 1);
    let status = rollout(&ctx, &registry);
    let last = status["batches"].as_array().unwrap().last().unwrap().clone();
    assert!(last["hosts"].as_array().unwrap().iter().any(|h| h["host"] == "web-03"), "{status}");

    registry.run(&ctx, &["rollout", "resume", "web-prod"]).success();
    wait_until(
        "the rollout to complete",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "completed" && all_at(&ctx, &registry, 0..4, "active", 2),
        || logs(&fleet, &registry),
    );

    // Aborted once the canary runs revision 3: every host back on (or still on) revision 2.
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.3.0"]).success();
    converge(&ctx, &registry, &fleet, 0..1, "active", 3);
    registry.run(&ctx, &["rollout", "abort", "web-prod"]).success();
    wait_until(
        "every host on revision 2",
        CONVERGE,
        || all_at(&ctx, &registry, 0..4, "active", 2),
        || format!("{:?}\n{}", states(&ctx, &registry), logs(&fleet, &registry)),
    );
    assert_eq!(rollout(&ctx, &registry)["phase"], "aborted");
    for i in 0..4 {
        assert_eq!(content(&ctx.path(&host(i))), "good 2");
    }
    let resume = registry.run(&ctx, &["rollout", "resume", "web-prod"]);
    assert_eq!(resume.code, 1, "an aborted rollout does not resume");
    assert!(resume.stderr.contains("not paused"), "{}", resume.stderr);
}

#[test]
fn a_new_revision_supersedes_a_rollout_from_where_each_host_is() {
    let ctx = TestContext::new();
    let (registry, token) = setup(&ctx, &["--canary", "1", "--batch", "1", "--bake", "4s"]);
    let fleet = agents(&ctx, &registry, &token, 3, |_| Vec::new());
    converge(&ctx, &registry, &fleet, 0..3, "active", 1);

    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    converge(&ctx, &registry, &fleet, 0..1, "active", 2);
    registry.run(&ctx, &["config", "set", "web-prod", "web:1.3.0"]).success();
    let status = rollout(&ctx, &registry);
    assert_eq!((status["from"].as_u64(), status["to"].as_u64()), (Some(1), Some(3)), "{status}");
    assert_eq!(status["batches"][1]["hosts"][0]["target"], 1, "web-01 stays where it was: {status}");
    wait_until(
        "the new rollout to complete",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "completed" && all_at(&ctx, &registry, 0..3, "active", 3),
        || logs(&fleet, &registry),
    );
    for i in 1..3 {
        let root = ctx.path(&host(i));
        assert_eq!((content(&root), releases(&root)), ("good 3".to_owned(), 2), "{} went from 1 to 3", host(i));
    }
    let log = registry.run(&ctx, &["rollout", "status", "web-prod"]).success().stdout;
    assert!(log.contains("revision 1 → 3, completed"), "{log}");
}

#[test]
fn an_agent_killed_mid_batch_is_timed_out_and_reported() {
    let ctx = TestContext::new();
    let (registry, token) = setup(&ctx, &["--canary", "1", "--batch", "1", "--bake", "1s", "--deadline", "3s"]);
    let mut fleet = agents(&ctx, &registry, &token, 3, |_| Vec::new());
    converge(&ctx, &registry, &fleet, 0..3, "active", 1);
    // web-01 (batch 2) dies before its batch starts.
    drop(fleet.remove(1));

    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    wait_until(
        "the rollout to halt on web-01's deadline",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "halted",
        || format!("{}\n{}", rollout(&ctx, &registry), logs(&fleet, &registry)),
    );
    let status = rollout(&ctx, &registry);
    assert_eq!(status["started_batches"], 2, "{status}");
    assert_eq!(status["batches"][1]["hosts"][0]["failed"], "did not report revision 2 active within 3s", "{status}");
    assert!(all_at(&ctx, &registry, 0..1, "active", 2));
    assert_eq!(state_of(&ctx, &registry, 2), Some(("active".to_owned(), 1)), "web-02 never started");
    let text = registry.run(&ctx, &["rollout", "status", "web-prod"]).success().stdout;
    assert!(text.contains("web-01") && text.contains("failed: did not report revision 2 active within 3s"), "{text}");

    // Continued: the host that left is no longer waited for, and the last batch goes ahead.
    registry.run(&ctx, &["rollout", "continue", "web-prod"]).success();
    wait_until(
        "the rollout to complete without web-01",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "completed" && all_at(&ctx, &registry, 2..3, "active", 2),
        || format!("{}\n{}", rollout(&ctx, &registry), logs(&fleet, &registry)),
    );
}

#[test]
fn a_registry_restarted_mid_rollout_goes_on_from_its_database() {
    let ctx = TestContext::new();
    let (registry, token) = setup(&ctx, &["--canary", "1", "--batch", "1", "--bake", "3s"]);
    let listen = registry.url.trim_start_matches("http://").to_owned();
    let fleet = agents(&ctx, &registry, &token, 3, |_| Vec::new());
    converge(&ctx, &registry, &fleet, 0..3, "active", 1);

    registry.run(&ctx, &["config", "set", "web-prod", "web:1.2.0"]).success();
    converge(&ctx, &registry, &fleet, 0..1, "active", 2);
    let before = rollout(&ctx, &registry);
    assert_eq!((before["phase"].as_str(), before["started_batches"].as_u64()), (Some("running"), Some(1)), "{before}");
    drop(registry);

    let registry = Registry::start_at(&ctx, &listen, &[]);
    let after = rollout(&ctx, &registry);
    assert_eq!(after["batches"], before["batches"], "the same batches, read from the database");
    assert_eq!(after["started_at"], before["started_at"]);
    wait_until(
        "the rollout to complete after the restart",
        CONVERGE,
        || rollout(&ctx, &registry)["phase"] == "completed" && all_at(&ctx, &registry, 0..3, "active", 2),
        || format!("{}\n{}", rollout(&ctx, &registry), logs(&fleet, &registry)),
    );
    for i in 0..3 {
        assert_eq!(content(&ctx.path(&host(i))), "good 2");
    }
}

/// A stage's strategy through `pipeline rollout`, shown by `pipeline show`; its rollout's steps in
/// `depot history`; require-healthy closed while it runs; `rollback --stage --now` and
/// `deprecate --now` past it.
#[test]
fn a_stage_rolls_out_and_now_skips_its_rollout() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    for (version, text) in [("1.0.0", "one"), ("1.1.0", "two"), ("1.2.0", "three")] {
        registry.run(&ctx, &["push", "web", version, &tree(&ctx, version, text)]).success();
    }
    registry
        .run(&ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "dev", "--stage", "prod"])
        .success();
    registry.run(&ctx, &["pipeline", "gate", "web", "prod", "require-healthy"]).success();
    let set = registry.run(&ctx, &["pipeline", "rollout", "web", "dev", "--canary", "1", "--batch", "50%"]).success();
    assert!(
        set.stderr.contains("New revisions of web/dev now reach its agents: rolling: canary 1, batch 50%"),
        "{}",
        set.stderr
    );
    let bad = registry.run(&ctx, &["pipeline", "rollout", "web", "dev", "--batch", "0"]);
    assert_eq!(bad.code, 1, "{}", bad.stderr);
    assert!(bad.stderr.contains("a batch holds at least one host"), "{}", bad.stderr);
    let token =
        registry.run(&ctx, &["token", "create", "fleet", "--role", "agent", "--config", "web-*"]).success().stdout;
    for host in ["d1", "d2", "d3"] {
        let root = ctx.path(host);
        let root = root.to_str().unwrap();
        registry
            .run_as(&ctx, token.trim(), &["agent", "--once", "--config", "web-dev", "--name", host, "--root", root])
            .success();
    }

    // dev's layer moves to 1.0.0 pinned: a rollout begins; only d1 may run it.
    registry.run(&ctx, &["config", "set", "web-dev", "web:1.0.0"]).success();
    let d2 = ctx.path("d2");
    let once = registry.run_as(
        &ctx,
        token.trim(),
        &["agent", "--once", "--config", "web-dev", "--name", "d2", "--root", d2.to_str().unwrap(), "--json"],
    );
    assert_eq!(once.success().json()["revision"], 1, "d2 waits for its batch");
    let shown = registry.run(&ctx, &["pipeline", "show", "web"]).success().stdout;
    assert!(shown.contains("dev: rolling: canary 1, batch 50%"), "{shown}");
    assert!(shown.contains("latest rollout: revision 1 → 2, running, batch 1 of 2"), "{shown}");
    let refused = registry.run(&ctx, &["promote", "web", "--to", "prod"]);
    assert_eq!(refused.code, 1);
    assert!(refused.stderr.contains("the rollout of web-dev to revision 2 is running"), "{}", refused.stderr);

    // --now: every host may run the rolled-back revision at once.
    registry.run(&ctx, &["rollback", "web", "--stage", "dev", "--now"]).success();
    let status = registry.run(&ctx, &["rollout", "status", "web-dev", "--json"]).success().json();
    assert_eq!((status["to"].as_u64(), status["phase"].as_str()), (Some(3), Some("completed")), "{status}");
    let once = registry.run_as(
        &ctx,
        token.trim(),
        &["agent", "--once", "--config", "web-dev", "--name", "d2", "--root", d2.to_str().unwrap(), "--json"],
    );
    assert_eq!(once.success().json()["revision"], 3);
    let history = registry.run(&ctx, &["history", "web"]).success().stdout;
    for line in ["rollout to revision 2 began: 3 host(s) in 2 batch(es)", "rollout to revision 3 skipped (--now)"] {
        assert!(history.contains(line), "{line}:\n{history}");
    }

    // Revision 3 tracks latest again (revision 1's layers): deprecating 1.2.0 --now moves it back
    // to 1.1.0 in revision 4, at once.
    registry.run(&ctx, &["deprecate", "web", "1.2.0", "--reason", "broken", "--now"]).success();
    let status = registry.run(&ctx, &["rollout", "status", "web-dev", "--json"]).success().json();
    assert_eq!((status["to"].as_u64(), status["phase"].as_str()), (Some(4), Some("completed")), "{status}");
    let steps: Vec<&str> = status["steps"].as_array().unwrap().iter().map(|s| s["summary"].as_str().unwrap()).collect();
    assert!(steps.iter().any(|s| s.contains("skipped (--now)")), "{steps:?}");
}
