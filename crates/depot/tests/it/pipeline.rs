//! Pipelines against a real `depot serve` and real agents: a push reaches dev by itself,
//! promotion moves it on through gates, an environment change redeploys one stage, a stage
//! rolls back, and `pipeline show` and `history` tell the story.

use std::path::Path;
use std::time::Duration;

use crate::agent::{Agent, wait_until};
use crate::common::*;
use crate::registry::{Registry, tree};

const CONVERGE: Duration = Duration::from_secs(30);

/// `"a b c"` → `["a", "b", "c"]`.
fn words(text: &str) -> Vec<&str> {
    text.split(' ').collect()
}

fn token(ctx: &TestContext, registry: &Registry, name: &str, role: &str) -> String {
    let mut args = vec!["token", "create", name, "--role", role];
    if role == "agent" {
        args.extend(["--config", "web-*"]);
    }
    registry.run(ctx, &args).success().stdout.trim().to_owned()
}

/// The host's (state, revision) on `config`, as `depot status` reports it.
fn state(ctx: &TestContext, registry: &Registry, config: &str, host: &str) -> Option<(String, u64)> {
    let run = registry.run(ctx, &["status", config, "--json"]);
    if run.code != 0 {
        return None;
    }
    let agents = run.json();
    let agent = agents.as_array()?.iter().find(|a| a["host"] == host)?.clone();
    Some((agent["state"].as_str()?.to_owned(), agent["revision"].as_u64()?))
}

fn revision(ctx: &TestContext, registry: &Registry, config: &str) -> u64 {
    registry.run(ctx, &["config", "show", config, "--json"]).success().json()["revision"].as_u64().unwrap()
}

#[track_caller]
fn wait_for(ctx: &TestContext, registry: &Registry, config: &str, host: &str, want: (&str, u64), agent: &Agent) {
    wait_until(
        &format!("{host} {} on {config} revision {}", want.0, want.1),
        CONVERGE,
        || state(ctx, registry, config, host).is_some_and(|(s, r)| s == want.0 && r == want.1),
        || format!("status: {:?}\n{host}'s log:\n{}", state(ctx, registry, config, host), agent.log()),
    );
}

fn current_file(root: &Path, file: &str) -> Option<String> {
    fs_err::read_to_string(root.join("releases/current").join(file)).ok()
}

#[test]
fn a_push_goes_dev_to_staging_to_prod_through_gates_with_an_environment_and_a_rollback() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    registry
        .run(&ctx, &words("pipeline create web --component web --stage dev --stage staging --stage prod"))
        .success();
    registry.run(&ctx, &["pipeline", "gate", "web", "staging", "require-healthy"]).success();

    // One agent per stage. dev's health check passes only once the file `dev-healthy` exists;
    // every agent's post-activate hook records the platform variables it was given.
    let hook = |host: &str| format!("env | grep ^DEPOT_ | sort > {}", ctx.path(&format!("{host}.env")).display());
    let health = format!("test -f {}", ctx.path("dev-healthy").display());
    let agents: Vec<(&str, &str, Agent)> = [("web-dev", "dev-1"), ("web-staging", "staging-1"), ("web-prod", "prod-1")]
        .into_iter()
        .map(|(config, host)| {
            let token = token(&ctx, &registry, host, "agent");
            let mut extra = vec!["--post-activate".to_owned(), hook(host)];
            if host == "dev-1" {
                extra.extend([
                    "--health-cmd".to_owned(),
                    health.clone(),
                    "--health-timeout".to_owned(),
                    "1s".to_owned(),
                ]);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            (config, host, Agent::start_on(&ctx, &registry, &token, host, config, &extra))
        })
        .collect();
    let [(_, _, dev), (_, _, staging), (_, _, prod)] = &agents[..] else { unreachable!() };

    // The push reached dev by itself (dev tracks latest), whose health check fails.
    wait_until(
        "dev-1 to fail its health check",
        CONVERGE,
        || state(&ctx, &registry, "web-dev", "dev-1").is_some_and(|(s, _)| s == "failed" || s == "rolled-back"),
        || dev.log(),
    );
    let refused = registry.run(&ctx, &["promote", "web", "--to", "staging"]).failure();
    assert!(refused.stderr.contains("require-healthy") && refused.stderr.contains("dev-1"), "{}", refused.stderr);
    assert!(refused.stderr.contains("--force"), "the hint names the override: {}", refused.stderr);
    assert_eq!(revision(&ctx, &registry, "web-staging"), 1, "a refused promotion writes nothing");

    fs_err::write(ctx.path("dev-healthy"), "").unwrap();
    ctx.run(&["agent", "retry", "--root", ctx.path("dev-1").to_str().unwrap()]).success();
    wait_for(&ctx, &registry, "web-dev", "dev-1", ("active", 1), dev);
    let promoted = registry.run(&ctx, &["promote", "web", "--to", "staging", "--json"]).success().json();
    assert_eq!(promoted["state"], "applied");
    assert_eq!(promoted["config"]["revision"], 2);
    wait_for(&ctx, &registry, "web-staging", "staging-1", ("active", 2), staging);
    assert_eq!(current_file(&ctx.path("staging-1"), "app.txt").as_deref(), Some("v1"));
    let variables = fs_err::read_to_string(ctx.path("staging-1.env")).unwrap();
    let release = fs_err::read_link(ctx.path("staging-1/releases/current")).unwrap();
    for expected in [
        "DEPOT_CONFIG=web-staging".to_owned(),
        "DEPOT_PIPELINE=web".to_owned(),
        "DEPOT_STAGE=staging".to_owned(),
        "DEPOT_PREVIOUS_STAGE=dev".to_owned(),
        "DEPOT_REVISION=2".to_owned(),
        format!("DEPOT_RELEASE_ID={}", release.file_name().unwrap().to_str().unwrap()),
    ] {
        assert!(variables.lines().any(|l| l == expected), "{expected} in\n{variables}");
    }
    assert!(fs_err::read_to_string(ctx.path("dev-1.env")).unwrap().contains("DEPOT_PREVIOUS_STAGE=latest\n"));
    // Promoting what staging runs is a no-op.
    let again = registry.run(&ctx, &["promote", "web", "--to", "staging", "--json"]).success().json();
    assert_eq!(again["state"], "unchanged");
    assert_eq!(revision(&ctx, &registry, "web-staging"), 2);

    // A new push moves dev only; prod receives staging's version, not dev's.
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "v2", "v2")]).success();
    wait_for(&ctx, &registry, "web-dev", "dev-1", ("active", 2), dev);
    assert_eq!(current_file(&ctx.path("dev-1"), "app.txt").as_deref(), Some("v2"));
    registry.run(&ctx, &["promote", "web", "--to", "prod"]).success().stderr_contains("web 1.0.0");
    wait_for(&ctx, &registry, "web-prod", "prod-1", ("active", 2), prod);
    assert_eq!(current_file(&ctx.path("prod-1"), "app.txt").as_deref(), Some("v1"));

    // An environment change redeploys prod, and only prod.
    let before: Vec<u64> = ["web-dev", "web-staging"].iter().map(|c| revision(&ctx, &registry, c)).collect();
    registry.run(&ctx, &["env", "set", "web/prod", "GREETING=hello \"world\"", "LOG_LEVEL=info"]).success();
    wait_for(&ctx, &registry, "web-prod", "prod-1", ("active", 3), prod);
    let dotenv = current_file(&ctx.path("prod-1"), "config/app.env").expect("config/app.env in prod's release");
    assert!(dotenv.contains("GREETING='hello \"world\"'\n") && dotenv.contains("LOG_LEVEL='info'\n"), "{dotenv}");
    assert_eq!(current_file(&ctx.path("prod-1"), "app.txt").as_deref(), Some("v1"));
    let after: Vec<u64> = ["web-dev", "web-staging"].iter().map(|c| revision(&ctx, &registry, c)).collect();
    assert_eq!(before, after, "dev and staging get no revision");
    assert_eq!(current_file(&ctx.path("staging-1"), "config/app.env"), None);
    // The platform's variables cannot be set, and values are masked unless asked for.
    registry.run(&ctx, &["env", "set", "web/prod", "DEPOT_STAGE=dev"]).usage_error().stderr_contains("reserved");
    let masked = registry.run(&ctx, &["env", "list", "web/prod"]).success();
    assert!(masked.stdout.contains("GREETING=********") && !masked.stdout.contains("hello"), "{}", masked.stdout);
    let viewer = token(&ctx, &registry, "viewer", "viewer");
    registry.run_as(&ctx, &viewer, &["env", "list", "web/prod", "--show"]).failure().stderr_contains("may not read");
    let shown = registry.run(&ctx, &["env", "list", "web/prod", "--show", "--json"]).success().json();
    assert_eq!(shown["vars"]["LOG_LEVEL"], "info");
    // A secret from standard input never shows on a command line; it redeploys prod like any change.
    let mut piped = ctx.command();
    piped.env("DEPOT_REGISTRY", &registry.url).env("DEPOT_TOKEN", &registry.admin);
    piped.args(["env", "set", "web/prod", "DB_PASSWORD=-"]).stdin(std::process::Stdio::piped());
    piped.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = piped.spawn().unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"s3 cr'et\n").unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    let shown = registry.run(&ctx, &["env", "list", "web/prod", "--show", "--json"]).success().json();
    assert_eq!(shown["vars"]["DB_PASSWORD"], "s3 cr'et");
    wait_for(&ctx, &registry, "web-prod", "prod-1", ("active", 4), prod);
    let dotenv = current_file(&ctx.path("prod-1"), "config/app.env").unwrap();
    assert!(dotenv.contains("DB_PASSWORD=\"s3 cr'et\"\n"), "{dotenv}");
    // A promotion into prod keeps prod's environment layer; one from staging never carries one.
    registry.run(&ctx, &["env", "set", "web/staging", "GREETING=staging"]).success();
    wait_for(&ctx, &registry, "web-staging", "staging-1", ("active", 3), staging);
    registry.run(&ctx, &["promote", "web", "--to", "prod"]).success().stderr_contains("nothing to do");
    assert_eq!(revision(&ctx, &registry, "web-prod"), 4);

    // Rollback of prod: back to revision 2's layers (no environment layer).
    registry
        .run(&ctx, &["rollback", "web", "--stage", "prod", "--to-revision", "2"])
        .success()
        .stderr_contains("revision 5");
    wait_for(&ctx, &registry, "web-prod", "prod-1", ("active", 5), prod);
    assert_eq!(current_file(&ctx.path("prod-1"), "config/app.env"), None);
    assert_eq!(current_file(&ctx.path("prod-1"), "app.txt").as_deref(), Some("v1"));

    // `pipeline show`: one table of stages × components with revisions and health.
    let show = registry.run(&ctx, &["pipeline", "show", "web", "--json"]).success().json();
    let stages = show["stages"].as_array().unwrap();
    let summary: Vec<(String, u64, String, String)> = stages
        .iter()
        .map(|s| {
            let health = s["health"].clone();
            (
                s["name"].as_str().unwrap().to_owned(),
                s["revision"].as_u64().unwrap(),
                s["layers"][0]["version"].as_str().unwrap().to_owned(),
                format!("{}/{}", health["active"], health["agents"]),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("dev".to_owned(), 2, "1.1.0".to_owned(), "1/1".to_owned()),
            ("staging".to_owned(), 3, "1.0.0".to_owned(), "1/1".to_owned()),
            ("prod".to_owned(), 5, "1.0.0".to_owned(), "1/1".to_owned()),
        ]
    );
    let table = registry.run(&ctx, &["pipeline", "show", "web"]).success().stdout;
    let prod_line = table.lines().find(|l| l.starts_with("prod ")).unwrap();
    assert!(prod_line.contains("1.0.0") && prod_line.contains("1/1 active"), "{table}");
    assert!(table.lines().next().unwrap().contains("web"), "a column per component: {table}");

    // `history`: the whole story, in order, with actors.
    let history = registry.run(&ctx, &["history", "web", "--json"]).success().json();
    let entries: Vec<(String, String, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["stage"].as_str().or(e["component"].as_str()).unwrap_or_default().to_owned(),
                e["summary"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let position = |kind: &str, place: &str, text: &str| {
        entries
            .iter()
            .position(|(k, p, s)| k == kind && p == place && s.contains(text))
            .unwrap_or_else(|| panic!("no {kind} of {place} with `{text}` in {entries:#?}"))
    };
    let story = [
        position("push", "web", "web 1.0.0"),
        position("agent", "dev", "dev-1: rolled-back on revision 1: release web-dev-"),
        position("agent", "dev", "dev-1: active on revision 1"),
        position("promote", "staging", "promoted from web/dev revision 1"),
        position("agent", "staging", "staging-1: active on revision 2"),
        position("push", "web", "web 1.1.0"),
        position("channel", "dev", "1.0.0 → 1.1.0"),
        position("promote", "prod", "promoted from web/staging revision 2"),
        position("env", "prod", "set GREETING, LOG_LEVEL"),
        position("agent", "prod", "prod-1: active on revision 3"),
        position("rollback", "prod", "rolled back to revision 2"),
        position("agent", "prod", "prod-1: active on revision 5"),
    ];
    assert!(story.windows(2).all(|w| w[0] < w[1]), "in order: {story:?}\n{entries:#?}");
    assert!(history.as_array().unwrap().iter().all(|e| e["actor"].as_str().is_some_and(|a| !a.is_empty())));
    let text = registry.run(&ctx, &["history", "web", "--stage", "prod"]).success().stdout;
    assert!(text.contains("rolled back to revision 2") && !text.contains("staging-1"), "{text}");
    assert!(!text.contains("hello") && !text.contains("s3 cr"), "the history never shows values: {text}");
}

#[test]
fn approval_needs_a_second_operator_and_force_is_recorded() {
    let ctx = TestContext::new();
    let registry = Registry::start(&ctx, &[]);
    // A pipeline needs its channel: none yet.
    registry.run(&ctx, &["push", "web", "0.1.0-rc.1", &tree(&ctx, "rc", "rc")]).success();
    registry
        .run(&ctx, &["pipeline", "create", "web", "--component", "web", "--stage", "dev", "--stage", "prod"])
        .failure()
        .stderr_contains("no channel `latest`");
    registry.run(&ctx, &["push", "web", "1.0.0", &tree(&ctx, "v1", "v1")]).success();
    let create = words(
        "pipeline create web --component web --stage dev --stage qa --stage prod-eu --after qa --stage prod-us --after qa",
    );
    let pipeline = registry.run(&ctx, &[&create[..], &["--json"]].concat()).success().json();
    let after: Vec<&str> =
        pipeline["stages"].as_array().unwrap().iter().map(|s| s["after"].as_str().unwrap_or("-")).collect();
    assert_eq!(after, ["-", "dev", "qa", "qa"]);
    registry.run(&ctx, &create).failure().stderr_contains("already exists");
    let shown = registry.run(&ctx, &["config", "show", "web-prod-us"]).success().stdout;
    assert!(shown.contains("stage:    prod-us of pipeline web (after qa)"), "{shown}");
    registry
        .run(&ctx, &["pipeline", "create", "x", "--component", "web", "--after", "dev", "--stage", "dev"])
        .usage_error();
    // A stage's configuration goes with its pipeline, and its environment layer is not pushed by hand.
    registry.run(&ctx, &["delete", "config", "web-dev", "--force"]).failure().stderr_contains("pipeline web");
    registry
        .run(&ctx, &["push", "web-prod-eu.env", "9", &tree(&ctx, "e", "e")])
        .failure()
        .stderr_contains("depot env set");

    let alice = token(&ctx, &registry, "alice", "operator");
    let bob = token(&ctx, &registry, "bob", "operator");
    registry
        .run_as(&ctx, &alice, &["pipeline", "gate", "web", "prod-eu", "approval"])
        .failure()
        .stderr_contains("admin");
    registry.run(&ctx, &["pipeline", "gate", "web", "prod-eu", "approval"]).success();
    registry.run(&ctx, &["pipeline", "gate", "web", "qa", "require-healthy"]).success();

    // require-healthy with no agent at all refuses; --force goes through and says why.
    registry.run_as(&ctx, &alice, &["promote", "web", "--to", "qa"]).failure().stderr_contains("no agent reports");
    registry.run_as(&ctx, &alice, &["promote", "web", "--to", "qa", "--force"]).success().stderr_contains("forced");
    registry
        .run_as(&ctx, &alice, &["promote", "web", "--to", "prod-eu", "--from", "prod-us"])
        .failure()
        .stderr_contains("does not come before");
    // Skipping qa skips its gate: only with --force, recorded.
    registry
        .run_as(&ctx, &alice, &["promote", "web", "--to", "prod-us", "--from", "dev"])
        .failure()
        .stderr_contains("skips qa");

    // Approval: alice asks, alice cannot approve, bob can.
    let asked = registry.run_as(&ctx, &alice, &["promote", "web", "--to", "prod-eu", "--json"]).success().json();
    assert_eq!(asked["state"], "pending");
    let id = asked["id"].as_u64().unwrap().to_string();
    assert_eq!(revision(&ctx, &registry, "web-prod-eu"), 1, "nothing is written before approval");
    let show = registry.run(&ctx, &["pipeline", "show", "web"]).success().stdout;
    assert!(show.contains("Waiting for approval") && show.contains(&format!("depot approve web {id}")), "{show}");
    // An empty stage: its agents (if any) have nothing to report.
    let prod_us = show.lines().find(|l| l.starts_with("prod-us ")).unwrap();
    assert!(prod_us.trim_end().ends_with("nothing to run yet"), "{show}");
    registry.run_as(&ctx, &alice, &["approve", "web"]).failure().stderr_contains("another operator");
    // Removing a variable a stage never had writes nothing.
    registry.run(&ctx, &["env", "unset", "web/prod-eu", "NEVER_SET"]).success().stderr_contains("no change");
    registry.run(&ctx, &["env", "unset", "web/prod-eu", "lower"]).usage_error();
    assert_eq!(revision(&ctx, &registry, "web-prod-eu"), 1, "unsetting what was never set writes nothing");
    let approved = registry.run_as(&ctx, &bob, &["approve", "web", &id, "--json"]).success().json();
    assert_eq!(approved["state"], "applied");
    assert_eq!(approved["approved_by"], "bob");
    assert_eq!(revision(&ctx, &registry, "web-prod-eu"), 2);
    registry.run_as(&ctx, &bob, &["approve", "web", &id]).failure().stderr_contains("it is applied");

    // Going around the pipeline is refused: stages after the first take versions by promotion,
    // and environment layers by `depot env set`; the first stage has no gate.
    registry
        .run(&ctx, &["config", "set", "web-qa", "web:1.0.0"])
        .failure()
        .stderr_contains("depot promote web --to qa");
    registry.run(&ctx, &["config", "bump", "web-prod-us", "web"]).failure().stderr_contains("by promotion");
    registry.run(&ctx, &["pipeline", "gate", "web", "dev", "approval"]).failure().stderr_contains("first stage");
    registry.run(&ctx, &["env", "set", "web/dev", "A=1"]).success();
    registry.run(&ctx, &["config", "set", "web-dev", "web-dev.env:1"]).failure().stderr_contains("depot env set");
    registry.run(&ctx, &["config", "create", "other", "--layer", "web-dev.env:1"]).failure().stderr_contains("env");
    registry.run(&ctx, &["delete", "version", "web-dev.env", "1"]).failure().stderr_contains("depot env set");
    // The first stage may be pinned by hand, and set to track its channel again.
    registry.run(&ctx, &["config", "set", "web-dev", "web:1.0.0"]).success();
    let show = registry.run(&ctx, &["pipeline", "show", "web"]).success().stdout;
    assert!(show.lines().any(|l| l.starts_with("dev ") && l.contains("1.0.0 (pinned)")), "{show}");
    registry.run(&ctx, &["config", "set", "web-dev", "web:latest"]).success();

    // A waiting promotion survives an environment change of its target, not a change of the
    // components it promotes (a rollback here): that one can only be rejected. An applied
    // promotion supersedes the others waiting for the same stage.
    registry.run(&ctx, &["push", "web", "1.1.0", &tree(&ctx, "v2", "v2")]).success();
    registry.run_as(&ctx, &alice, &["promote", "web", "--to", "qa", "--force"]).success();
    let stale = registry.run_as(&ctx, &alice, &["promote", "web", "--to", "prod-eu", "--json"]).success().json();
    registry.run(&ctx, &["env", "set", "web/prod-eu", "B=2"]).success();
    let stale_id = stale["id"].to_string();
    registry.run_as(&ctx, &bob, &["approve", "web", &stale_id]).success();
    assert_eq!(revision(&ctx, &registry, "web-prod-eu"), 4, "an env change does not stand in the way");
    registry.run(&ctx, &["push", "web", "1.2.0", &tree(&ctx, "v3", "v3")]).success();
    registry.run_as(&ctx, &alice, &["promote", "web", "--to", "qa", "--force"]).success();
    let asked = registry.run_as(&ctx, &alice, &["promote", "web", "--to", "prod-eu", "--json"]).success().json();
    let stale_id = asked["id"].to_string();
    registry.run(&ctx, &["rollback", "web", "--stage", "prod-eu"]).success();
    registry.run_as(&ctx, &bob, &["approve", "web", &stale_id]).failure().stderr_contains("changed in web/prod-eu");
    registry.run_as(&ctx, &bob, &["reject", "web", &stale_id]).success().stderr_contains("Rejected");
    registry.run_as(&ctx, &bob, &["approve", "web", &stale_id]).failure().stderr_contains("it is rejected");
    registry.run_as(&ctx, &bob, &["reject", "web", &stale_id]).failure().stderr_contains("it is rejected");
    let first = registry.run_as(&ctx, &alice, &["promote", "web", "--to", "prod-eu", "--json"]).success().json();
    let second = registry.run_as(&ctx, &bob, &["promote", "web", "--to", "prod-eu", "--json"]).success().json();
    registry.run_as(&ctx, &alice, &["approve", "web", &second["id"].to_string()]).success();
    let first_id = first["id"].to_string();
    registry.run_as(&ctx, &bob, &["approve", "web", &first_id]).failure().stderr_contains("it is superseded");
    let prod_eu = registry.run(&ctx, &["config", "show", "web-prod-eu", "--json"]).success().json();
    let layers: Vec<&str> =
        prod_eu["layers"].as_array().unwrap().iter().map(|l| l["component"].as_str().unwrap()).collect();
    assert_eq!(layers, ["web", "web-prod-eu.env"], "the environment layer stays last");
    assert_eq!(prod_eu["layers"][0]["version"], "1.2.0");
    let again = registry.run_as(&ctx, &alice, &["promote", "web", "--to", "prod-eu", "--json"]).success().json();
    assert_eq!(again["state"], "unchanged", "what the target runs passes the gate: {again}");
    let show = registry.run(&ctx, &["pipeline", "show", "web", "--json"]).success().json();
    assert_eq!(show["pending"], serde_json::json!([]));

    let history = registry.run(&ctx, &["history", "web"]).success().stdout;
    for expected in [
        "forced past require-healthy",
        "gate of prod-eu: none → approval",
        "waits for approval",
        "asked by alice, approved by bob",
    ] {
        assert!(history.contains(expected), "{expected} in\n{history}");
    }
    let line = history.lines().find(|l| l.contains("approved by bob")).unwrap();
    assert!(line.contains(" bob "), "the approver is the actor: {line}");
    assert!(history.contains(&format!("promotion {stale_id} from web/qa rejected")), "{history}");

    // --track edge: the first stage follows the edge builds.
    registry.run(&ctx, &["push", "api", "0.1.0-dev.1", &tree(&ctx, "edge", "edge"), "--channel", "edge"]).success();
    registry.run(&ctx, &words("pipeline create edgy --component api --stage dev --stage prod --track edge")).success();
    let dev = registry.run(&ctx, &["config", "show", "edgy-dev", "--json"]).success().json();
    assert_eq!(
        (dev["layers"][0]["channel"].as_str(), dev["layers"][0]["version"].as_str()),
        (Some("edge"), Some("0.1.0-dev.1"))
    );

    // Deleting the pipeline takes its stages with it, environment layers included.
    registry.run(&ctx, &["pipeline", "delete", "web"]).usage_error().stderr_contains("--force");
    registry.run_as(&ctx, &alice, &["pipeline", "delete", "web", "--force"]).failure().stderr_contains("admin");
    registry.run(&ctx, &["pipeline", "delete", "web", "--force"]).success();
    registry.run(&ctx, &["config", "show", "web-prod-eu"]).failure().stderr_contains("unknown configuration");
    registry.run(&ctx, &["versions", "web-prod-eu.env"]).failure();
    registry.run(&ctx, &["versions", "web"]).success();
    registry.run(&ctx, &create).success();
    let history = registry.run(&ctx, &["history", "web"]).success().stdout;
    assert!(!history.contains("approved by bob"), "a new pipeline starts a new history: {history}");
}
