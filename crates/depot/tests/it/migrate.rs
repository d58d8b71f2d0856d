//! `depot admin migrate`: an embedded registry (SQLite and files) filled through its real verbs
//! and an agent, moved to PostgreSQL and an S3 bucket (a real Garage) in one command; the new registry answers every read as the
//! old one did, and the agent keeps its revision.

use crate::common::*;
use crate::registry::{Registry, tree};
use crate::serve::{Server, s3_command, spawn_server};
use depot_testkit::garage::Garage;

/// Every read a user or an agent makes, as JSON, through `registry` (DEPOT_REGISTRY) with `token`.
fn reads(ctx: &TestContext, url: &str, token: &str) -> Vec<(String, serde_json::Value)> {
    let queries: &[&[&str]] = &[
        &["components"],
        &["versions", "web"],
        &["versions", "api"],
        &["channels", "web"],
        &["configs"],
        &["config", "show", "web-prod"],
        &["config", "history", "web-prod"],
        &["config", "show", "shop-prod"],
        &["pipeline", "list"],
        &["pipeline", "show", "shop"],
        &["history", "shop"],
        &["token", "list"],
        &["status", "web-prod"],
        &["env", "list", "shop/prod", "--show"],
    ];
    queries
        .iter()
        .map(|query| {
            let run = Run::from(
                ctx.command()
                    .env("DEPOT_REGISTRY", url)
                    .env("DEPOT_TOKEN", token)
                    .args(*query)
                    .arg("--json")
                    .output()
                    .unwrap(),
            )
            .success();
            let mut json = run.json();
            // Reading the values (the last query) is itself recorded; the migrated history has
            // the reads made before the migration, which the same query then did not.
            if let Some(events) = json.as_array_mut() {
                events.retain(|event| event["kind"] != "env-read");
            }
            (query.join(" "), json)
        })
        .collect()
}

fn once(ctx: &TestContext, url: &str, token: &str) -> Run {
    let root = ctx.path("host-1").display().to_string();
    Run::from(
        ctx.command()
            .env("DEPOT_REGISTRY", url)
            .env("DEPOT_TOKEN", token)
            .args(["agent", "--config", "web-prod", "--name", "host-1", "--once", "--root", &root])
            .output()
            .unwrap(),
    )
}

#[test]
fn an_embedded_registry_moves_to_postgres_and_answers_every_read_as_before() {
    let ctx = TestContext::new();
    let old = Registry::start(&ctx, &[]);
    // Versions, channels and a deprecation; a configuration tracking a channel with history; a
    // pipeline with a promotion and an environment; an agent token and the agent's report.
    for (component, version, content) in [("web", "1.0.0", "one"), ("web", "1.1.0", "two"), ("api", "2.0.0", "api")] {
        old.run(&ctx, &["push", component, version, &tree(&ctx, &format!("{component}-{version}"), content)]).success();
    }
    old.run(&ctx, &["config", "create", "web-prod", "--layer", "web:1.0.0", "--layer", "api:2.0.0"]).success();
    old.run(&ctx, &["config", "set", "web-prod", "web:latest"]).success();
    old.run(&ctx, &["deprecate", "web", "1.0.0", "--reason", "leaks memory"]).success();
    old.run(&ctx, &["pipeline", "create", "shop", "--component", "web", "--stage", "dev", "--stage", "prod"]).success();
    old.run(&ctx, &["promote", "shop", "--to", "prod"]).success();
    old.run(&ctx, &["env", "set", "shop/prod", "GREETING=hello"]).success();
    let agent = old.run(&ctx, &["token", "create", "host-1", "--role", "agent", "--config", "web-*"]).success();
    let agent = agent.stdout.trim().to_owned();
    once(&ctx, &old.url, &agent).success();
    let before = reads(&ctx, &old.url, &old.admin);
    let releases = ctx.release_dirs_of("host-1");
    let admin = old.admin.clone();
    drop(old);

    let database = depot_testkit::Postgres::fresh_database();
    let bucket = Garage::shared().bucket();
    let new_data = ctx.path("new-data");
    let to = format!("{database},{}", bucket.url());
    let migrate = || {
        Run::from(
            ctx.command()
                .envs(bucket.env())
                .args(["admin", "migrate", "--from", "registry-data", "--to", &to, "--json"])
                .output()
                .unwrap(),
        )
    };
    let migrated = migrate().success();
    assert!(migrated.stderr.contains("verified: every row of the source is in the target"), "{}", migrated.stderr);
    let report = migrated.json();
    assert_eq!(report["verified"], true);
    // The application's layers; the environment layer is kept sealed in the database, not among them.
    assert!(report["blobs_copied"].as_u64().unwrap() >= 3, "{report}");
    // Run again, it resumes: nothing left to copy, and still verified.
    let again = migrate().success().json();
    assert!(again["tables"].as_array().unwrap().iter().all(|t| t["copied"] == 0), "{again}");
    assert_eq!(again["blobs_copied"], 0);

    // The same secrets key: it opens the environment values the database holds sealed.
    let key = ctx.path("registry-data.secrets.key");
    let key = key.to_str().unwrap();
    let new: Server =
        spawn_server(s3_command(&ctx, &new_data, &bucket, &["--metadata", &database, "--secrets-key", key]));
    let url = format!("http://{}", new.address);
    let after = reads(&ctx, &url, &admin);
    for ((query, old), (_, new)) in before.iter().zip(&after) {
        assert_eq!(old, new, "`depot {query} --json` answers as before");
    }
    // The agent, with its old token, finds nothing to do: same revision, no new release.
    let run = once(&ctx, &url, &agent).success();
    assert_eq!(ctx.release_dirs_of("host-1"), releases, "{}", run.stderr);
    // And the new registry takes writes that continue the old history.
    let push = Run::from(
        ctx.command()
            .env("DEPOT_REGISTRY", &url)
            .env("DEPOT_TOKEN", &admin)
            .args(["push", "web", "1.2.0", &tree(&ctx, "web-1.2.0", "three")])
            .output()
            .unwrap(),
    )
    .success();
    drop(push);
    let history = Run::from(
        ctx.command()
            .env("DEPOT_REGISTRY", &url)
            .env("DEPOT_TOKEN", &admin)
            .args(["config", "history", "web-prod", "--json"])
            .output()
            .unwrap(),
    )
    .success()
    .json();
    let revisions: Vec<u64> = history.as_array().unwrap().iter().map(|h| h["revision"].as_u64().unwrap()).collect();
    assert_eq!(revisions, (1..=revisions.len() as u64).collect::<Vec<_>>(), "one history, no gap");
    assert!(revisions.len() > before_revisions(&before), "the push moved web-prod's channel");
}

fn before_revisions(reads: &[(String, serde_json::Value)]) -> usize {
    let history = reads.iter().find(|(query, _)| query == "config history web-prod").expect("read");
    history.1.as_array().unwrap().len()
}
