//! The metadata store's contract. Each test takes a fresh store from `backends()`; a new backend
//! joins by being added there.

use std::collections::BTreeMap;

use depot_api::types::{LayerRef, Role};
use depot_api::{ComponentName, ConfigName, Digest, TokenName, VersionLabel};
use depot_store::{Metadata, StoreError};

struct Fresh {
    _dir: tempfile::TempDir,
    store: Metadata,
}

/// A fresh store on each engine: SQLite in a temporary directory, and a new database on the
/// test PostgreSQL server (started once per test process by `depot-testkit`).
fn backends() -> Vec<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Metadata::open_sqlite(&dir.path().join("depot.db")).unwrap();
    let postgres = Metadata::open_postgres(&depot_testkit::Postgres::fresh_database()).unwrap();
    for store in [&sqlite, &postgres] {
        store.use_sealer(depot_store::Sealer::generate().0).unwrap();
    }
    vec![Fresh { _dir: dir, store: sqlite }, Fresh { _dir: tempfile::tempdir().unwrap(), store: postgres }]
}

fn component(name: &str) -> ComponentName {
    ComponentName::parse(name).unwrap()
}
fn version(label: &str) -> VersionLabel {
    VersionLabel::parse(label).unwrap()
}
fn config(name: &str) -> ConfigName {
    ConfigName::parse(name).unwrap()
}
fn digest(n: u8) -> Digest {
    Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap()
}
fn layer(text: &str) -> LayerRef {
    LayerRef::parse(text).unwrap()
}

/// Records blob `n` and pushes it as `component:label`.
fn push(store: &Metadata, component_name: &str, label: &str, n: u8) {
    store.record_blob(&digest(n), 100 + n as u64).unwrap();
    store
        .add_version(&component(component_name), &version(label), &digest(n), &BTreeMap::new(), &[], &[], "ci")
        .unwrap();
}

#[test]
fn versions_are_immutable() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        let again = store
            .add_version(&component("web"), &version("1.0.0"), &digest(1), &BTreeMap::new(), &[], &[], "ci")
            .unwrap();
        assert!(!again.created, "the same digest again is a no-op");
        assert_eq!(again.info.digest, digest(1));
        store.record_blob(&digest(2), 5).unwrap();
        let error = store
            .add_version(&component("web"), &version("1.0.0"), &digest(2), &BTreeMap::new(), &[], &[], "ci")
            .unwrap_err();
        assert!(matches!(error, StoreError::VersionExists { .. }), "{error}");
        // The error names the version to cut instead: the next patch of the refused version's
        // line for a stable version, the next rc for a release candidate.
        push(&store, "web", "1.10.0", 3);
        push(&store, "web", "1.9.0", 4);
        push(&store, "web", "1.11.0-rc.1", 6);
        store.record_blob(&digest(5), 5).unwrap();
        let hint = |label: &str| {
            let error = store
                .add_version(&component("web"), &version(label), &digest(5), &BTreeMap::new(), &[], &[], "ci")
                .unwrap_err();
            match error {
                StoreError::VersionExists { next, .. } => next.unwrap(),
                other => panic!("{other}"),
            }
        };
        assert_eq!(hint("1.10.0"), "1.10.1");
        assert_eq!(hint("1.9.0"), "1.9.1");
        assert_eq!(hint("1.11.0-rc.1"), "1.11.0-rc.2");
        let unknown = store
            .add_version(&component("web"), &version("2.0.0"), &digest(9), &BTreeMap::new(), &[], &[], "ci")
            .unwrap_err();
        assert!(matches!(unknown, StoreError::UnknownBlob(_)));
    }
}

#[test]
fn versions_keep_labels_creator_and_their_order() {
    for Fresh { store, .. } in backends() {
        store.record_blob(&digest(1), 10).unwrap();
        let labels = BTreeMap::from([("git_sha".to_owned(), "abc123".to_owned())]);
        store.add_version(&component("web"), &version("b"), &digest(1), &labels, &[], &[], "alice").unwrap();
        push(&store, "web", "a", 2);
        let versions = store.versions(&component("web")).unwrap();
        assert_eq!(versions.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["b", "a"], "push order");
        assert_eq!(versions[0].labels, labels);
        assert_eq!(versions[0].creator, "alice");
        assert_eq!(versions[0].size, 10);
        assert!(matches!(store.versions(&component("nope")), Err(StoreError::UnknownComponent(_))));
        let components = store.components().unwrap();
        assert_eq!(components.len(), 1);
        assert_eq!(components[0].versions, 2);
        assert_eq!(components[0].newest.as_ref().unwrap().as_str(), "a");

        // Semver labels by precedence, after the others, whatever the push order.
        for (n, label) in ["1.10.0", "1.2.0", "v1.9.0", "1.10.0-rc.1"].into_iter().enumerate() {
            push(&store, "web", label, 3 + n as u8);
        }
        let versions = store.versions(&component("web")).unwrap();
        let order: Vec<&str> = versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(order, ["b", "a", "1.2.0", "v1.9.0", "1.10.0-rc.1", "1.10.0"]);
        assert_eq!(store.components().unwrap()[0].newest.as_ref().unwrap().as_str(), "1.10.0");
    }
}

#[test]
fn configurations_have_revisions_history_and_a_content_hash() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        push(&store, "web", "1.1.0", 2);
        push(&store, "cfg", "a", 3);
        let created = store.create_config(&config("prod"), &[layer("web:1.0.0"), layer("cfg:a")], "alice").unwrap();
        assert_eq!(created.revision, 1);
        assert!(matches!(
            store.create_config(&config("prod"), &[layer("web:1.0.0")], "bob"),
            Err(StoreError::ConfigExists(_))
        ));

        let set = store.set_layers(&config("prod"), &[layer("web:1.1.0")], Some(1), "bob").unwrap();
        assert_eq!(set.revision, 2);
        assert_eq!(set.layers[0].version.as_str(), "1.1.0");
        assert_eq!(set.layers[1].component.as_str(), "cfg", "order is kept");

        let conflict = store.set_layers(&config("prod"), &[layer("web:1.0.0")], Some(1), "carol").unwrap_err();
        assert!(matches!(conflict, StoreError::ConfigConflict { expected: 1, actual: 2, .. }), "{conflict}");

        let rolled = store.rollback(&config("prod"), None, None, "alice", false).unwrap();
        assert_eq!(rolled.revision, 3);
        assert_eq!(rolled.hash, created.hash, "same content, same hash");

        let history = store.history(&config("prod")).unwrap();
        assert_eq!(history.iter().map(|h| h.revision).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(history.iter().map(|h| h.actor.as_str()).collect::<Vec<_>>(), ["alice", "bob", "alice"]);
        assert!(history[1].change.contains("web 1.0.0 → 1.1.0"), "{}", history[1].change);
        assert!(history[2].change.contains("revision 1"));
    }
}

#[test]
fn bump_moves_to_the_newest_version_by_semver() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.9.9", 1);
        push(&store, "web", "2.0.0", 2);
        push(&store, "web", "1.9.10", 3); // pushed last, but not the newest
        push(&store, "web", "2.1.0-rc.1", 4);
        store.create_config(&config("prod"), &[layer("web:1.9.9")], "a").unwrap();
        let bumped = store.bump(&config("prod"), &component("web"), None, "a").unwrap();
        assert_eq!(bumped.previous.as_str(), "1.9.9");
        assert_eq!(bumped.current.as_str(), "2.0.0", "a stable layer moves to the newest stable version");
        assert_eq!(bumped.config.revision, 2);
        let again = store.bump(&config("prod"), &component("web"), None, "a").unwrap();
        assert_eq!(again.config.revision, 2, "already newest: no new revision");
        // A layer on a release candidate moves to the newest of all.
        store.create_config(&config("staging"), &[layer("web:1.9.9")], "a").unwrap();
        store.set_layers(&config("staging"), &[layer("web:2.1.0-rc.1")], None, "a").unwrap();
        push(&store, "web", "2.1.0-rc.2", 5);
        let bumped = store.bump(&config("staging"), &component("web"), None, "a").unwrap();
        assert_eq!(bumped.current.as_str(), "2.1.0-rc.2");
    }
}

#[test]
fn deleting_what_a_configuration_uses_is_refused() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        push(&store, "web", "1.1.0", 2);
        store.create_config(&config("prod"), &[layer("web:1.0.0")], "a").unwrap();
        let error = store.delete_version(&component("web"), &version("1.0.0")).unwrap_err();
        assert!(matches!(&error, StoreError::InUse { config, .. } if config.as_str() == "prod"), "{error}");
        assert!(error.to_string().contains("prod"));
        assert!(matches!(store.delete_component(&component("web")), Err(StoreError::InUse { .. })));
        store.delete_version(&component("web"), &version("1.1.0")).unwrap();
        let conflict = store.delete_config(&config("prod"), Some(7)).unwrap_err();
        assert!(matches!(conflict, StoreError::ConfigConflict { expected: 7, actual: 1, .. }), "{conflict}");
        store.delete_config(&config("prod"), Some(1)).unwrap();
        assert_eq!(store.delete_component(&component("web")).unwrap(), 1);
        assert!(matches!(store.config(&config("prod")), Err(StoreError::UnknownConfig(_))));
    }
}

#[test]
fn retention_keeps_newest_and_recently_configured_versions() {
    for Fresh { store, .. } in backends() {
        for n in 1..=6u8 {
            push(&store, "web", &format!("1.0.{n}"), n);
        }
        store.create_config(&config("prod"), &[layer("web:1.0.1")], "a").unwrap();
        store.set_layers(&config("prod"), &[layer("web:1.0.2")], None, "a").unwrap();
        let removed = store.apply_retention(2).unwrap().removed;
        let removed: Vec<String> = removed.iter().map(|r| r.to_string()).collect();
        // 1.0.1 (an earlier revision) and 1.0.2 (current) are protected; 1.0.6 is the newest.
        assert_eq!(removed, ["web:1.0.3", "web:1.0.4", "web:1.0.5"]);
        assert!(store.apply_retention(0).unwrap().removed.is_empty(), "0 turns retention off");
        let blobs = store.unreferenced_blobs(chrono::Utc::now() + chrono::Duration::seconds(1)).unwrap();
        assert_eq!(blobs.len(), 3);
        assert!(
            store.unreferenced_blobs(chrono::Utc::now() - chrono::Duration::hours(1)).unwrap().is_empty(),
            "grace period"
        );
    }
}

#[test]
fn tokens_are_stored_by_hash() {
    for Fresh { store, .. } in backends() {
        let name = TokenName::parse("web-01").unwrap();
        store.create_token(&name, Role::Agent, Some("web-*"), "hash", "admin").unwrap();
        assert!(matches!(store.create_token(&name, Role::Agent, None, "h2", "admin"), Err(StoreError::TokenExists(_))));
        let (info, hash) = store.token("web-01").unwrap().unwrap();
        assert_eq!(info.role, Role::Agent);
        assert_eq!(info.config_pattern.as_deref(), Some("web-*"));
        assert_eq!(hash, "hash");
        assert_eq!(store.tokens().unwrap().len(), 1);
        store.revoke_token(&name).unwrap();
        assert!(store.token("web-01").unwrap().is_none());
        assert!(matches!(store.revoke_token(&name), Err(StoreError::UnknownToken(_))));
    }
}

#[test]
fn everything_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depot.db");
    {
        let store = Metadata::open_sqlite(&path).unwrap();
        push(&store, "web", "1.0.0", 1);
        store.create_config(&config("prod"), &[layer("web:1.0.0")], "a").unwrap();
    }
    let store = Metadata::open_sqlite(&path).unwrap();
    assert_eq!(store.config(&config("prod")).unwrap().revision, 1);
    assert_eq!(store.versions(&component("web")).unwrap().len(), 1);
}

fn report(revision: u64, hash: &str, state: depot_api::types::AgentState, at: &str) -> depot_api::types::AgentReport {
    depot_api::types::AgentReport {
        revision,
        hash: hash.to_owned(),
        state,
        reported_at: chrono::DateTime::parse_from_rfc3339(at).unwrap().with_timezone(&chrono::Utc),
        error: None,
        output_tail: None,
        timings_ms: BTreeMap::new(),
    }
}

#[test]
fn agents_report_their_own_status_and_late_reports_do_not_win() {
    use depot_api::types::AgentState;
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        push(&store, "web", "1.1.0", 2);
        let first = store.create_config(&config("prod"), &[layer("web:1.0.0")], "a").unwrap();
        let host = depot_api::HostName::parse("web-01").unwrap();
        store
            .report_agent(
                &config("prod"),
                &host,
                "fleet",
                &report(1, &first.hash, AgentState::Active, "2026-01-01T00:00:10Z"),
            )
            .unwrap();
        let agents = store.agents(&config("prod")).unwrap();
        assert_eq!(agents.len(), 1);
        assert!(agents[0].current && agents[0].report.state == AgentState::Active && agents[0].reporter == "fleet");

        // Another token may not write this host's status.
        let error = store
            .report_agent(
                &config("prod"),
                &host,
                "intruder",
                &report(1, &first.hash, AgentState::Failed, "2026-01-01T00:00:20Z"),
            )
            .unwrap_err();
        assert!(matches!(error, StoreError::NotYourAgent { .. }), "{error}");

        // A report queued during an outage and sent late does not replace a newer one.
        store
            .report_agent(
                &config("prod"),
                &host,
                "fleet",
                &report(1, &first.hash, AgentState::Deploying, "2026-01-01T00:00:05Z"),
            )
            .unwrap();
        assert_eq!(store.agents(&config("prod")).unwrap()[0].report.state, AgentState::Active);

        // A new revision makes the agent not current until it reports it.
        store.set_layers(&config("prod"), &[layer("web:1.1.0")], None, "a").unwrap();
        assert!(!store.agents(&config("prod")).unwrap()[0].current);

        assert!(matches!(
            store.report_agent(
                &config("nope"),
                &host,
                "fleet",
                &report(1, "x", AgentState::Active, "2026-01-01T00:00:30Z")
            ),
            Err(StoreError::UnknownConfig(_))
        ));
        store.delete_config(&config("prod"), None).unwrap();
        store.create_config(&config("prod"), &[layer("web:1.0.0")], "a").unwrap();
        assert!(store.agents(&config("prod")).unwrap().is_empty(), "deleting a configuration forgets its agents");
    }
}

#[test]
fn retention_removes_the_lowest_semver_versions_first() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "2.0.0", 1);
        push(&store, "web", "1.0.0", 2); // pushed after 2.0.0, but older by semver
        push(&store, "web", "1.0.1", 3);
        push(&store, "web", "1.5.0", 4);
        let removed = store.apply_retention(2).unwrap().removed;
        assert_eq!(removed.iter().map(|l| l.version.as_str()).collect::<Vec<_>>(), ["1.0.0"]);
        // The others are each named by a channel (1.0, 1.5 and 1, 2.0 and latest).
        let left = store.versions(&component("web")).unwrap();
        assert_eq!(left.iter().map(|v| v.version.as_str()).collect::<Vec<_>>(), ["1.0.1", "1.5.0", "2.0.0"]);
    }
}

/// The channels as name → version.
fn channel_map(store: &Metadata, name: &str) -> BTreeMap<String, String> {
    store.channels(&component(name)).unwrap().into_iter().map(|c| (c.name.to_string(), c.version.to_string())).collect()
}

fn layer_of(store: &Metadata, name: &str) -> (u64, String, Option<String>) {
    let config = store.config(&config(name)).unwrap();
    (config.revision, config.layers[0].version.to_string(), config.layers[0].channel.as_ref().map(|c| c.to_string()))
}

#[test]
fn channels_follow_stable_pushes_and_tracking_configurations_follow_them() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.4.0", 1);
        let expected = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        assert_eq!(channel_map(&store, "web"), expected(&[("1", "1.4.0"), ("1.4", "1.4.0"), ("latest", "1.4.0")]));
        store.create_config(&config("prod"), &[layer("web:latest")], "a").unwrap();
        store.create_config(&config("minor"), &[layer("web:1.4")], "a").unwrap();
        store.create_config(&config("pinned"), &[layer("web:1.4.0")], "a").unwrap();
        assert_eq!(layer_of(&store, "prod"), (1, "1.4.0".into(), Some("latest".into())));
        assert_eq!(layer_of(&store, "pinned"), (1, "1.4.0".into(), None));

        // A stable push moves the channels, and the configurations tracking them.
        store.record_blob(&digest(2), 5).unwrap();
        let added = store
            .add_version(&component("web"), &version("1.4.1"), &digest(2), &BTreeMap::new(), &[], &[], "ci")
            .unwrap();
        let moved: Vec<&str> = added.moved.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(moved, ["minor", "prod"]);
        assert_eq!(layer_of(&store, "prod"), (2, "1.4.1".into(), Some("latest".into())));
        assert_eq!(layer_of(&store, "minor"), (2, "1.4.1".into(), Some("1.4".into())));
        assert_eq!(layer_of(&store, "pinned"), (1, "1.4.0".into(), None), "pinned layers never move");
        let history = store.history(&config("prod")).unwrap();
        assert_eq!(history[1].change, "channel web:latest moved 1.4.0 → 1.4.1");

        // A maintenance release moves its own line only; a release candidate moves nothing.
        push(&store, "web", "1.3.9", 3);
        push(&store, "web", "1.5.0-rc.1", 4);
        assert_eq!(
            channel_map(&store, "web"),
            expected(&[("1", "1.4.1"), ("1.3", "1.3.9"), ("1.4", "1.4.1"), ("latest", "1.4.1")])
        );
        assert_eq!(layer_of(&store, "prod").0, 2);

        // Deprecation: the channels and the fleets tracking them move back; the version stays.
        let (info, moved) = store
            .deprecate(&component("web"), &version("1.4.1"), "crashes on start", Some(&version("1.4.0")), "ops", false)
            .unwrap();
        assert_eq!(info.moved.len(), 2);
        assert!(info.still_running.is_empty(), "{info:?}");
        let deprecation = info.version.deprecated.expect("deprecated");
        assert_eq!((deprecation.reason.as_str(), deprecation.by.as_str()), ("crashes on start", "ops"));
        assert_eq!(moved.len(), 2);
        assert_eq!(layer_of(&store, "prod"), (3, "1.4.0".into(), Some("latest".into())));
        assert_eq!(channel_map(&store, "web")["1.4"], "1.4.0");
        let latest =
            store.channels(&component("web")).unwrap().into_iter().find(|c| c.name.as_str() == "latest").unwrap();
        let reasons: Vec<&str> = latest.history.iter().map(|m| m.reason.as_str()).collect();
        assert_eq!(reasons, ["pushed 1.4.0", "pushed 1.4.1", "deprecated 1.4.1: crashes on start"]);
        assert!(store.version(&component("web"), &version("1.4.1")).unwrap().deprecated.is_some());
        assert!(store.apply_retention(1).unwrap().removed.iter().all(|r| r.version.as_str() != "1.4.1"), "kept");

        // Undeprecated: forward again.
        let (_, moved) = store.undeprecate(&component("web"), &version("1.4.1"), "ops").unwrap();
        assert_eq!(moved.len(), 2);
        assert_eq!(layer_of(&store, "prod").1, "1.4.1");
        assert!(matches!(
            store.deprecate(&component("web"), &version("9.9.9"), "x", None, "ops", false),
            Err(StoreError::UnknownVersion { .. })
        ));
    }
}

mod channel_rules {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Op {
        Push(usize),
        Deprecate(usize),
        Undeprecate(usize),
    }

    const LABELS: &[&str] = &[
        "0.9.0",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "1.1.0-rc.1",
        "v1.2.0",
        "1.2.1",
        "2.0.0-beta.1",
        "2.0.0",
        "2.1.0",
        "nightly",
    ];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..LABELS.len()).prop_map(Op::Push),
            1 => (0..LABELS.len()).prop_map(Op::Deprecate),
            1 => (0..LABELS.len()).prop_map(Op::Undeprecate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever the order of pushes and deprecations, the channels are those a recomputation
        /// from scratch gives, and a configuration tracking `latest` is on it.
        #[test]
        fn channels_match_a_recomputation_from_scratch(ops in proptest::collection::vec(op(), 1..25)) {
            let Fresh { store, .. } = backends().pop().unwrap();
            let mut tracking = false;
            for op in ops {
                match op {
                    Op::Push(i) => push(&store, "web", LABELS[i], i as u8),
                    Op::Deprecate(i) => {
                        let _ = store.deprecate(&component("web"), &version(LABELS[i]), "bad", None, "ops", false);
                    }
                    Op::Undeprecate(i) => {
                        let _ = store.undeprecate(&component("web"), &version(LABELS[i]), "ops");
                    }
                }
                let Ok(versions) = store.versions(&component("web")) else { continue };
                let live = versions.iter().filter(|v| v.deprecated.is_none()).map(|v| v.version.as_str());
                let expected = depot_api::semver_order::rolling_channels(live);
                let actual = channel_map(&store, "web");
                prop_assert_eq!(&actual, &expected);
                if !tracking && expected.contains_key("latest") {
                    store.create_config(&config("prod"), &[layer("web:latest")], "a").unwrap();
                    tracking = true;
                }
                if tracking && let Some(latest) = expected.get("latest") {
                    prop_assert_eq!(&layer_of(&store, "prod").1, latest);
                }
            }
        }
    }
}

#[test]
fn build_and_manual_channels_are_kept_apart_from_the_rolling_ones() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        store.record_blob(&digest(2), 5).unwrap();
        let edge = [version("edge"), version("sha-3f9c2e1")];
        store
            .add_version(&component("web"), &version("1.1.0-dev.1"), &digest(2), &BTreeMap::new(), &edge, &[], "ci")
            .unwrap();
        // The same push again (a retried job) moves its build channels all the same.
        store.record_blob(&digest(7), 5).unwrap();
        store
            .add_version(&component("web"), &version("1.1.0-dev.2"), &digest(7), &BTreeMap::new(), &[], &[], "ci")
            .unwrap();
        let again = [version("edge")];
        store
            .add_version(&component("web"), &version("1.1.0-dev.2"), &digest(7), &BTreeMap::new(), &again, &[], "ci")
            .unwrap();
        assert_eq!(channel_map(&store, "web")["edge"], "1.1.0-dev.2");
        store
            .add_version(&component("web"), &version("1.1.0-dev.1"), &digest(2), &BTreeMap::new(), &edge, &[], "ci")
            .unwrap();
        let channels = store.channels(&component("web")).unwrap();
        let kinds: BTreeMap<String, (String, String)> = channels
            .iter()
            .map(|c| (c.name.to_string(), (c.kind.as_str().to_owned(), c.version.to_string())))
            .collect();
        assert_eq!(kinds["edge"], ("build".to_owned(), "1.1.0-dev.1".to_owned()));
        assert_eq!(kinds["latest"], ("rolling".to_owned(), "1.0.0".to_owned()), "a build never moves latest");

        // A manual channel, tracked by a configuration, moves it when set.
        push(&store, "web", "1.0.1", 3);
        store.set_channel(&component("web"), &version("stable"), &version("1.0.0"), "admin").unwrap();
        store.create_config(&config("canary"), &[layer("web:stable")], "a").unwrap();
        let (channel, moved) =
            store.set_channel(&component("web"), &version("stable"), &version("1.0.1"), "admin").unwrap();
        assert_eq!((channel.version.as_str(), moved.len()), ("1.0.1", 1));
        assert_eq!(layer_of(&store, "canary"), (2, "1.0.1".into(), Some("stable".into())));

        // Deprecations recompute the rolling channels only.
        store.deprecate(&component("web"), &version("1.0.1"), "bad", None, "ops", false).unwrap();
        assert_eq!(channel_map(&store, "web")["stable"], "1.0.1", "an admin's choice stays");
        assert_eq!(channel_map(&store, "web")["latest"], "1.0.0");

        // Rolling channels cannot be removed; others can, and go with their version.
        assert!(store.remove_channel(&component("web"), &version("latest"), "admin").is_err());
        store.remove_channel(&component("web"), &version("stable"), "admin").unwrap();
        store.delete_version(&component("web"), &version("1.1.0-dev.1")).unwrap();
        let left: Vec<String> = channel_map(&store, "web").into_keys().collect();
        assert_eq!(left, ["1", "1.0", "latest"]);
    }
}

#[test]
fn retention_keeps_the_version_just_pushed_and_those_channels_name_and_bump_skips_deprecated() {
    for Fresh { store, .. } in backends() {
        for (n, label) in ["1.0.0", "1.1.0", "1.2.0"].into_iter().enumerate() {
            push(&store, "web", label, n as u8 + 1);
        }
        push(&store, "web", "3f9c2e1", 9); // a git-sha label: sorts below every semver version
        let removed: Vec<String> =
            store.apply_retention(2).unwrap().removed.iter().map(|l| l.version.to_string()).collect();
        // 1.2.0 is named by latest/1.2/1, 3f9c2e1 was pushed last, 1.0 and 1.1 name the others.
        assert!(removed.is_empty(), "{removed:?}");
        assert!(store.version(&component("web"), &version("3f9c2e1")).is_ok());

        store.deprecate(&component("web"), &version("1.2.0"), "bad", None, "ops", false).unwrap();
        store.create_config(&config("prod"), &[layer("web:1.0.0")], "a").unwrap();
        let bumped = store.bump(&config("prod"), &component("web"), None, "a").unwrap();
        assert_eq!(bumped.current.as_str(), "1.1.0", "never to a deprecated version");
    }
}

/// A database written before pipelines (no `kind` on revisions) opens, keeps its history, and
/// takes new revisions.
#[test]
fn a_database_from_before_pipelines_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depot.db");
    {
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE configs (name TEXT PRIMARY KEY, revision INTEGER NOT NULL);
             CREATE TABLE config_revisions (config TEXT NOT NULL REFERENCES configs(name) ON DELETE CASCADE,
                 revision INTEGER NOT NULL, at TEXT NOT NULL, actor TEXT NOT NULL, change TEXT NOT NULL,
                 hash TEXT NOT NULL, layers TEXT NOT NULL, PRIMARY KEY (config, revision));
             INSERT INTO configs VALUES ('prod', 1);
             INSERT INTO config_revisions VALUES ('prod', 1, '2026-01-01T00:00:00.000000Z', 'ci', 'created', 'h', '[]');",
        )
        .unwrap();
    }
    let store = Metadata::open_sqlite(&path).unwrap();
    assert_eq!(store.history(&config("prod")).unwrap().len(), 1);
    push(&store, "web", "1.0.0", 1);
    let next = store.set_layers(&config("prod"), &[layer("web:1.0.0")], None, "ci").unwrap();
    assert_eq!(next.revision, 2);
    drop(store);
    // Opening again is a no-op.
    let store = Metadata::open_sqlite(&path).unwrap();
    assert_eq!(store.history(&config("prod")).unwrap().len(), 2);
}

fn pipeline_request(name: &str, components: &[&str], stages: &[&str]) -> depot_api::pipeline::CreatePipeline {
    depot_api::pipeline::CreatePipeline {
        name: depot_api::PipelineName::parse(name).unwrap(),
        components: components.iter().map(|c| component(c)).collect(),
        stages: stages
            .iter()
            .map(|s| depot_api::pipeline::StageSpec { name: depot_api::StageName::parse(s).unwrap(), after: None })
            .collect(),
        track: None,
    }
}

#[test]
fn promotion_keeps_the_pipelines_layer_order_and_retention_keeps_environment_layers() {
    use depot_api::pipeline::{EnvChange, Promote};
    use depot_api::{PipelineName, StageName};
    for Fresh { store, .. } in backends() {
        push(&store, "api", "1.0.0", 1);
        push(&store, "ui", "1.0.0", 2);
        store.create_pipeline(&pipeline_request("shop", &["api", "ui"], &["dev", "prod"]), "ci").unwrap();
        let shop = PipelineName::parse("shop").unwrap();
        let prod = StageName::parse("prod").unwrap();
        for only in ["ui", "api"] {
            let request = Promote { to: prod.clone(), from: None, components: vec![component(only)], force: false };
            store.promote(&shop, &request, "ci").unwrap();
        }
        let layers: Vec<String> =
            store.config(&config("shop-prod")).unwrap().layers.iter().map(|l| l.component.to_string()).collect();
        assert_eq!(layers, ["api", "ui"], "the order of dev, whatever the order of promotions");

        // Twelve environment versions, retention at 2: all stay, so any revision can come back.
        for n in 0..12u8 {
            store.record_blob(&digest(100 + n), 10).unwrap();
            let revision = store.config(&config("shop-prod")).unwrap().revision;
            let change = EnvChange { set: [("N".to_owned(), n.to_string())].into(), unset: Vec::new() };
            let vars = change.set.clone();
            store.set_env(&shop, &prod, revision, &change, &vars, b"archive", &digest(100 + n), "ci").unwrap();
        }
        let removed = store.apply_retention(2).unwrap().removed;
        assert!(removed.iter().all(|r| r.component.as_str() != "shop-prod.env"), "{removed:?}");
        // Revisions: 1 created, 2 and 3 the promotions, 4 the first environment (N=0).
        store.rollback(&config("shop-prod"), Some(4), None, "ci", false).unwrap();
        assert_eq!(store.stage_env(&shop, &prod).unwrap().vars["N"], "0");
    }
}

#[test]
fn pipelines_refuse_names_their_environment_component_cannot_take() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        // APP-STAGE fits in 128 bytes, APP-STAGE.env does not.
        let long = "a".repeat(120);
        let error = store.create_pipeline(&pipeline_request(&long, &["web"], &["dev", "prod"]), "ci").unwrap_err();
        assert!(error.to_string().contains("shorten"), "{error}");
        // A component already named like a stage's environment layer.
        push(&store, "web-prod.env", "1", 2);
        let error = store.create_pipeline(&pipeline_request("web", &["web"], &["dev", "prod"]), "ci").unwrap_err();
        assert!(error.to_string().contains("component web-prod.env exists"), "{error}");
        assert!(store.pipelines().unwrap().is_empty(), "nothing is left half-created");
        assert!(store.configs().unwrap().is_empty());
    }
}

#[test]
fn a_deprecated_version_is_promoted_only_with_force_and_a_waiting_promotion_of_one_is_not_approved() {
    use depot_api::pipeline::{Gate, Promote, PromotionState};
    use depot_api::{PipelineName, StageName};
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        store.create_pipeline(&pipeline_request("shop", &["web"], &["dev", "prod"]), "ci").unwrap();
        let shop = PipelineName::parse("shop").unwrap();
        let prod = StageName::parse("prod").unwrap();
        let request = |force| Promote { to: prod.clone(), from: None, components: Vec::new(), force };

        // Deprecated while it waited for approval: the approver is refused and nothing changes.
        store.set_gate(&shop, &prod, Gate::Approval, "admin").unwrap();
        let waiting = store.promote(&shop, &request(false), "alice").unwrap();
        assert_eq!(waiting.state, PromotionState::Pending);
        push(&store, "web", "1.1.0", 2);
        store
            .deprecate(&component("web"), &version("1.0.0"), "leaks memory", Some(&version("1.1.0")), "ops", false)
            .unwrap();
        let error = store.approve(&shop, Some(waiting.id), "bob").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("web 1.0.0 is deprecated: leaks memory (replacement 1.1.0)"), "{text}");
        assert_eq!(store.config(&config("shop-prod")).unwrap().revision, 1);
        store.reject(&shop, waiting.id, "bob").unwrap();

        // dev pinned by hand to the deprecated version: promoting it is refused, --force records why.
        store.set_gate(&shop, &prod, Gate::None, "admin").unwrap();
        store.set_layers(&config("shop-dev"), &[layer("web:1.0.0")], None, "ci").unwrap();
        let error = store.promote(&shop, &request(false), "alice").unwrap_err();
        assert!(matches!(error, StoreError::GateClosed { .. }), "{error}");
        assert!(error.to_string().contains("web 1.0.0 is deprecated"), "{error}");
        assert_eq!(store.config(&config("shop-prod")).unwrap().revision, 1, "nothing written");
        let forced = store.promote(&shop, &request(true), "alice").unwrap();
        assert_eq!(forced.state, PromotionState::Applied);
        assert!(forced.forced.as_deref().is_some_and(|f| f.contains("web 1.0.0 is deprecated")), "{forced:?}");
        // Already there: a no-op, which needs no force.
        assert_eq!(store.promote(&shop, &request(false), "alice").unwrap().state, PromotionState::Unchanged);
    }
}

/// A hook that prints its environment must not carry the stage's values to the viewers of
/// `depot status` and `depot history`.
#[test]
fn agent_reports_keep_the_stages_environment_values_masked() {
    use depot_api::pipeline::EnvChange;
    use depot_api::types::AgentState;
    use depot_api::{PipelineName, StageName};
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        store.create_pipeline(&pipeline_request("shop", &["web"], &["dev", "prod"]), "ci").unwrap();
        let shop = PipelineName::parse("shop").unwrap();
        let dev = StageName::parse("dev").unwrap();
        // Two versions of the environment: the agent may still run the older one.
        for (n, value) in ["old-secret-1", "new-secret-2"].into_iter().enumerate() {
            store.record_blob(&digest(100 + n as u8), 10).unwrap();
            let revision = store.config(&config("shop-dev")).unwrap().revision;
            let vars: BTreeMap<String, String> = [("TOKEN".to_owned(), value.to_owned())].into();
            let change = EnvChange { set: vars.clone(), unset: Vec::new() };
            store.set_env(&shop, &dev, revision, &change, &vars, b"archive", &digest(100 + n as u8), "ci").unwrap();
        }
        let hash = store.config(&config("shop-dev")).unwrap().hash;
        let mut failed = report(3, &hash, AgentState::Failed, "2026-01-01T00:00:10Z");
        failed.error = Some("post-activate failed: TOKEN=old-secret-1 refused".to_owned());
        failed.output_tail = Some("TOKEN=new-secret-2\nLOG=on".to_owned());
        let host = depot_api::HostName::parse("web-01").unwrap();
        store.report_agent(&config("shop-dev"), &host, "fleet", &failed).unwrap();

        let stored = &store.agents(&config("shop-dev")).unwrap()[0].report;
        assert_eq!(stored.error.as_deref(), Some("post-activate failed: TOKEN=*** refused"));
        assert_eq!(stored.output_tail.as_deref(), Some("TOKEN=***\nLOG=on"));
        let history = store.pipeline_history(&shop, Some(&dev)).unwrap();
        let text = format!("{history:?}");
        assert!(text.contains("TOKEN=***") && !text.contains("secret"), "{text}");
    }
}

/// Deprecating the only version of a channel moves nobody: the answer names who still runs it.
#[test]
fn a_deprecation_names_the_configurations_still_running_the_version() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        store.set_channel(&component("web"), &version("stable"), &version("1.0.0"), "ops").unwrap();
        store.create_config(&config("follows"), &[layer("web:latest")], "a").unwrap();
        store.create_config(&config("pinned"), &[layer("web:1.0.0")], "a").unwrap();
        store.create_config(&config("stable"), &[layer("web:stable")], "a").unwrap();
        let (outcome, moved) =
            store.deprecate(&component("web"), &version("1.0.0"), "bad", None, "ops", false).unwrap();
        assert!(moved.is_empty() && outcome.moved.is_empty(), "{outcome:?}");
        let still: Vec<(&str, Option<&str>)> =
            outcome.still_running.iter().map(|u| (u.config.as_str(), u.channel.as_ref().map(|c| c.as_str()))).collect();
        assert_eq!(still, [("follows", Some("latest")), ("pinned", None), ("stable", Some("stable"))]);
        // A manual channel is not moved by a deprecation: the answer says it still names the version.
        assert_eq!(outcome.channels, [version("stable")]);
        // The answer reads as the version for a client that knows only that.
        let json = serde_json::to_string(&outcome).unwrap();
        let as_version: depot_api::types::VersionInfo = serde_json::from_str(&json).unwrap();
        assert_eq!(as_version, outcome.version);
    }
}

/// A deprecated version the target already runs goes no further by a promotion of something
/// else; one a promotion was forced past does not block its approval.
#[test]
fn deprecation_refuses_only_what_a_promotion_would_bring_and_force_survives_approval() {
    use depot_api::pipeline::{Gate, Promote, PromotionState};
    use depot_api::{PipelineName, StageName};
    for Fresh { store, .. } in backends() {
        push(&store, "api", "1.0.0", 1);
        push(&store, "web", "1.0.0", 2);
        store.create_pipeline(&pipeline_request("shop", &["api", "web"], &["dev", "prod"]), "ci").unwrap();
        let shop = PipelineName::parse("shop").unwrap();
        let prod = StageName::parse("prod").unwrap();
        let request = |force| Promote { to: prod.clone(), from: None, components: Vec::new(), force };
        store.promote(&shop, &request(false), "alice").unwrap();

        // api 1.0.0 is withdrawn everywhere (no other version: dev keeps it); web moves on.
        store.deprecate(&component("api"), &version("1.0.0"), "slow", None, "ops", false).unwrap();
        push(&store, "web", "1.1.0", 3);
        let promoted = store.promote(&shop, &request(false), "alice").unwrap();
        assert_eq!(promoted.state, PromotionState::Applied, "{promoted:?}");
        assert!(promoted.forced.is_none());

        // A deprecated api 1.1.0 behind an approval gate: forced when asked, approved as asked.
        store.set_gate(&shop, &prod, Gate::Approval, "admin").unwrap();
        push(&store, "api", "1.1.0", 4);
        store.deprecate(&component("api"), &version("1.1.0"), "leaks", None, "ops", false).unwrap();
        assert_eq!(store.config(&config("shop-dev")).unwrap().layers[0].version.as_str(), "1.1.0");
        let error = store.promote(&shop, &request(false), "alice").unwrap_err();
        assert!(error.to_string().contains("api 1.1.0 is deprecated: leaks"), "{error}");
        let waiting = store.promote(&shop, &request(true), "alice").unwrap();
        assert_eq!(waiting.state, PromotionState::Pending);
        // Deprecated again with a replacement named: still what alice forced past.
        store.deprecate(&component("api"), &version("1.1.0"), "leaks", Some(&version("1.0.0")), "ops", false).unwrap();
        assert_eq!(store.approve(&shop, Some(waiting.id), "bob").unwrap().state, PromotionState::Applied);
    }
}

/// Migrations are numbered and recorded; a database that a newer depot migrated further is
/// refused with a message that says so, on both engines, and opening twice applies nothing twice.
#[test]
fn migrations_are_recorded_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("depot.db");
    Metadata::open_sqlite(&path).unwrap();
    Metadata::open_sqlite(&path).unwrap();
    let connection = rusqlite::Connection::open(&path).unwrap();
    let versions: i64 = connection.query_row("SELECT COUNT(*) FROM schema_migrations", [], |row| row.get(0)).unwrap();
    assert_eq!(versions, 9);
    connection.execute("INSERT INTO schema_migrations VALUES (999, 'later')", []).unwrap();
    let error = Metadata::open_sqlite(&path).err().expect("a newer schema is refused").to_string();
    assert!(error.contains("schema version 999, newer than this depot knows"), "{error}");

    let url = depot_testkit::Postgres::fresh_database();
    Metadata::open_postgres(&url).unwrap();
    Metadata::open_postgres(&url).unwrap();
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: i64 = client.query_one("SELECT COUNT(*) FROM schema_migrations", &[]).unwrap().get(0);
    assert_eq!(versions, 9);
    client.batch_execute("INSERT INTO schema_migrations VALUES (999, 'later')").unwrap();
    let error = Metadata::open_postgres(&url).err().expect("a newer schema is refused").to_string();
    assert!(error.contains("schema version 999, newer than this depot knows"), "{error}");
}

/// A blob uploaded again starts its grace again: garbage collection, which takes unreferenced
/// blobs recorded before a cutoff, must not take one that a push is about to name.
#[test]
fn recording_a_blob_again_restarts_its_grace() {
    for Fresh { store, .. } in backends() {
        store.record_blob(&digest(1), 10).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let cutoff = chrono::Utc::now();
        assert_eq!(store.unreferenced_blobs(cutoff).unwrap(), [digest(1)]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        store.record_blob(&digest(1), 10).unwrap();
        assert!(store.unreferenced_blobs(cutoff).unwrap().is_empty(), "uploaded again after the cutoff");
    }
}

#[test]
fn blob_access_names_every_configuration_whose_revisions_use_the_blob() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        push(&store, "web", "2.0.0", 2);
        store.record_blob(&digest(3), 3).unwrap();
        store.create_config(&config("a-cfg"), &[layer("web:1.0.0")], "ci").unwrap();
        store.create_config(&config("b-cfg"), &[layer("web:2.0.0")], "ci").unwrap();
        // a-cfg moves on: its earlier revision still names the first blob.
        store.set_layers(&config("a-cfg"), &[layer("web:2.0.0")], None, "ci").unwrap();
        let access = store.blob_access(&digest(1)).unwrap();
        assert!(access.referenced);
        assert_eq!(access.configs, vec![config("a-cfg")]);
        assert!(access.env_stages.is_empty());
        assert_eq!(store.blob_access(&digest(2)).unwrap().configs, vec![config("a-cfg"), config("b-cfg")]);
        let unused = store.blob_access(&digest(3)).unwrap();
        assert!(!unused.referenced && unused.configs.is_empty());
    }
}

/// Collection takes a blob's record and bytes in one write transaction, and only a record older
/// than its cutoff: a blob recorded again since (an upload about to be pushed) is kept, and an
/// upload recording the blob while its bytes are being deleted waits for the deletion to end.
#[test]
fn collection_keeps_blobs_recorded_again_and_holds_off_uploads_while_it_deletes() {
    for Fresh { store, .. } in backends() {
        store.record_blob(&digest(1), 10).unwrap();
        let chosen_at = chrono::Utc::now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Uploaded again after collection chose it: kept.
        store.record_blob(&digest(1), 10).unwrap();
        let kept = store.collect_blob(&digest(1), Some(chosen_at), || panic!("the bytes of a kept blob")).unwrap();
        assert_eq!(kept, None);
        assert_eq!(store.blob_size(&digest(1)).unwrap(), Some(10));
        // Named by a version: kept, whatever its age.
        push(&store, "web", "1.0.0", 2);
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        assert_eq!(store.collect_blob(&digest(2), Some(later), || panic!("a version's blob")).unwrap(), None);
        // Without a cutoff, only a blob with no record at all is collected.
        assert_eq!(store.collect_blob(&digest(1), None, || panic!("a recorded blob")).unwrap(), None);
        // An upload recording the blob while collection deletes its bytes waits until it is done.
        let recorder = store.clone();
        let (started, done) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let freed = store
            .collect_blob(&digest(1), Some(later), || {
                let (tell_started, tell_done) = (started.0.clone(), done.0.clone());
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    tell_started.send(()).unwrap();
                    recorder.record_blob(&digest(1), 10).unwrap();
                    tell_done.send(()).unwrap();
                });
                started.1.recv().unwrap();
                let waited = done.1.recv_timeout(std::time::Duration::from_millis(300));
                assert!(waited.is_err(), "the upload's record went in while the bytes were being deleted");
                Ok(10)
            })
            .unwrap();
        assert_eq!(freed, Some(10));
        done.1.recv_timeout(std::time::Duration::from_secs(10)).expect("the upload records once collection is done");
        assert_eq!(store.blob_size(&digest(1)).unwrap(), Some(10), "recorded after, so its upload checks the bytes");
    }
}

/// A rolling configuration: each new revision begins a rollout in the write's transaction, each
/// report steps it, the view answers each host with its own revision, an action is refused in
/// the wrong phase, and a stage whose rollout has not completed does not pass require-healthy.
#[test]
fn rollouts_begin_with_each_revision_step_on_reports_and_gate_promotions() {
    use depot_api::HostName;
    use depot_api::pipeline::{Gate, Promote};
    use depot_api::rollout::{OnFailure, Rolling, RolloutAction, RolloutPhase, Share, Strategy};
    use depot_api::types::AgentState;
    use depot_api::{PipelineName, StageName};
    let rolling = Strategy::Rolling(Rolling {
        canary: 1,
        batch: Share::Hosts(1),
        bake_seconds: 0,
        deadline_seconds: 600,
        max_failures: Share::Hosts(0),
        on_failure: OnFailure::Halt,
    });
    let hosts: Vec<HostName> = (0..3).map(|i| HostName::parse(&format!("web-{i}")).unwrap()).collect();
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        push(&store, "web", "1.1.0", 2);
        let prod = config("prod");
        let first = store.create_config(&prod, &[layer("web:1.0.0")], "ci").unwrap();
        assert_eq!(store.set_strategy(&prod, &rolling, "ops").unwrap().strategy, rolling);
        let at = |i: u64| format!("2026-01-01T00:00:{i:02}Z");
        for host in &hosts {
            store.report_agent(&prod, host, "fleet", &report(1, &first.hash, AgentState::Active, &at(1))).unwrap();
        }
        assert!(store.rollout_status(&prod).unwrap().is_none(), "no rollout for a first revision");

        let second = store.set_layers(&prod, &[layer("web:1.1.0")], None, "ci").unwrap();
        let status = store.rollout_status(&prod).unwrap().expect("revision 2 rolls out");
        assert_eq!((status.from, status.to, status.phase), (1, 2, RolloutPhase::Running));
        let view = store.config_view(&prod).unwrap();
        let revisions: Vec<u64> = hosts.iter().map(|h| view.revision_for(Some(h))).collect();
        assert_eq!(revisions, [2, 1, 1], "only the canary may run revision 2");
        assert_eq!(view.config_for(Some(&hosts[1])).hash, first.hash);
        assert_eq!(view.revision_for(None), 2, "a query with no host sees the current revision");

        // The canary active (no bake time): batch 2 starts; its host fails: the rollout halts.
        store.report_agent(&prod, &hosts[0], "fleet", &report(2, &second.hash, AgentState::Active, &at(2))).unwrap();
        assert_eq!(store.config_view(&prod).unwrap().revision_for(Some(&hosts[1])), 2);
        store.report_agent(&prod, &hosts[1], "fleet", &report(2, &second.hash, AgentState::Failed, &at(3))).unwrap();
        let status = store.rollout_status(&prod).unwrap().unwrap();
        assert_eq!(status.phase, RolloutPhase::Halted);
        assert_eq!(status.batches[1].hosts[0].failed.as_deref(), Some("failed on revision 2"));
        assert_eq!(store.config_view(&prod).unwrap().revision_for(Some(&hosts[2])), 1);
        let refused = store.rollout_action(&prod, RolloutAction::Pause, "ops").unwrap_err();
        assert!(matches!(refused, StoreError::Rollout { .. }), "{refused}");

        // Continued after a fix: the failure is forgiven, and the rollout completes.
        store.rollout_action(&prod, RolloutAction::Continue, "ops").unwrap();
        store.report_agent(&prod, &hosts[1], "fleet", &report(2, &second.hash, AgentState::Active, &at(4))).unwrap();
        store.report_agent(&prod, &hosts[2], "fleet", &report(2, &second.hash, AgentState::Active, &at(5))).unwrap();
        assert_eq!(store.rollout_status(&prod).unwrap().unwrap().phase, RolloutPhase::Completed);
        let view = store.config_view(&prod).unwrap();
        assert!(hosts.iter().all(|h| view.revision_for(Some(h)) == 2));

        // A rollback with --now skips the rollout it begins.
        store.rollback(&prod, None, None, "ops", true).unwrap();
        let status = store.rollout_status(&prod).unwrap().unwrap();
        assert_eq!((status.to, status.phase), (3, RolloutPhase::Completed));

        // A stage that rolls is not healthy for require-healthy until its rollout completes.
        store.create_pipeline(&pipeline_request("shop", &["web"], &["dev", "live"]), "ci").unwrap();
        let (shop, live) = (PipelineName::parse("shop").unwrap(), StageName::parse("live").unwrap());
        let dev = config("shop-dev");
        store.set_gate(&shop, &live, Gate::RequireHealthy, "admin").unwrap();
        store.set_strategy(&dev, &rolling, "ops").unwrap();
        let dev1 = store.config(&dev).unwrap();
        for host in &hosts[..2] {
            store
                .report_agent(&dev, host, "fleet", &report(dev1.revision, &dev1.hash, AgentState::Active, &at(6)))
                .unwrap();
        }
        store.set_layers(&dev, &[layer("web:1.0.0")], None, "ci").unwrap();
        let request = Promote { to: live.clone(), from: None, components: Vec::new(), force: false };
        let refused = store.promote(&shop, &request, "alice").unwrap_err().to_string();
        assert!(refused.contains("the rollout of shop-dev to revision 2 is running (batch 1 of 2)"), "{refused}");
        let events = store.pipeline_history(&shop, None).unwrap();
        assert!(
            events.iter().any(|e| e.summary.starts_with("rollout to revision 2 began: 2 host(s) in 2 batch(es)")),
            "{events:?}"
        );
    }
}

/// A rollout that supersedes another starts each host from what it runs (a canary that failed
/// the revision before goes back to what it ran, not to the revision that failed on it); the
/// versions of a revision a rollout holds hosts on cannot be deleted; and a host forgiven by
/// `continue` after it left is not waited for by the next rollout, until it reports again.
#[test]
fn rollouts_start_hosts_from_what_they_run_hold_their_versions_and_forget_hosts_that_left() {
    use depot_api::HostName;
    use depot_api::rollout::{OnFailure, Rolling, RolloutAction, RolloutPhase, Share, Strategy};
    use depot_api::types::AgentState;
    let rolling = |deadline_seconds| {
        Strategy::Rolling(Rolling {
            canary: 1,
            batch: Share::Hosts(1),
            bake_seconds: 0,
            deadline_seconds,
            max_failures: Share::Hosts(0),
            on_failure: OnFailure::Halt,
        })
    };
    let host = |name: &str| HostName::parse(name).unwrap();
    let at = "2026-01-01T00:00:01Z";
    for Fresh { store, .. } in backends() {
        for (n, label) in [(1, "1.0.0"), (2, "1.1.0"), (3, "1.2.0")] {
            push(&store, "web", label, n);
        }
        let prod = config("prod");
        let first = store.create_config(&prod, &[layer("web:1.0.0")], "ci").unwrap();
        store.set_strategy(&prod, &rolling(600), "ops").unwrap();
        for name in ["h0", "h1"] {
            store.report_agent(&prod, &host(name), "fleet", &report(1, &first.hash, AgentState::Active, at)).unwrap();
        }
        let second = store.set_layers(&prod, &[layer("web:1.1.0")], None, "ci").unwrap();
        store.report_agent(&prod, &host("h0"), "fleet", &report(2, &second.hash, AgentState::RolledBack, at)).unwrap();
        assert_eq!(store.rollout_status(&prod).unwrap().unwrap().phase, RolloutPhase::Halted);
        store.set_layers(&prod, &[layer("web:1.2.0")], None, "ci").unwrap();
        store.rollout_action(&prod, RolloutAction::Abort, "ops").unwrap();
        let view = store.config_view(&prod).unwrap();
        assert_eq!(view.revision_for(Some(&host("h0"))), 1, "back to what it ran, not to revision 2");
        assert_eq!(view.revision_for(Some(&host("h1"))), 1);
        let refused = store.delete_version(&component("web"), &version("1.0.0")).unwrap_err();
        assert!(matches!(refused, StoreError::InUse { .. }), "revision 1 still runs on every host: {refused}");

        // edge: its canary leaves; after `continue`, the next rollout does not wait for it.
        let edge = config("edge");
        let first = store.create_config(&edge, &[layer("web:1.0.0")], "ci").unwrap();
        store.set_strategy(&edge, &rolling(1), "ops").unwrap();
        for name in ["e0", "e1"] {
            store.report_agent(&edge, &host(name), "fleet", &report(1, &first.hash, AgentState::Active, at)).unwrap();
        }
        store.set_layers(&edge, &[layer("web:1.1.0")], None, "ci").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        store.step_rollouts().unwrap();
        let status = store.rollout_status(&edge).unwrap().unwrap();
        assert_eq!(status.phase, RolloutPhase::Halted, "{status:?}");
        store.rollout_action(&edge, RolloutAction::Continue, "ops").unwrap();
        let second = store.config(&edge).unwrap();
        store.report_agent(&edge, &host("e1"), "fleet", &report(2, &second.hash, AgentState::Active, at)).unwrap();
        assert_eq!(store.rollout_status(&edge).unwrap().unwrap().phase, RolloutPhase::Completed);
        store.set_layers(&edge, &[layer("web:1.2.0")], None, "ci").unwrap();
        let status = store.rollout_status(&edge).unwrap().unwrap();
        let hosts: Vec<&str> = status.batches.iter().flat_map(|b| &b.hosts).map(|h| h.host.as_str()).collect();
        assert_eq!(hosts, ["e1"], "e0 left: {status:?}");
        let later = "2026-01-01T00:00:09Z";
        store.report_agent(&edge, &host("e0"), "fleet", &report(1, &first.hash, AgentState::Active, later)).unwrap();
        let status = store.rollout_status(&edge).unwrap().unwrap();
        assert!(status.batches.iter().flat_map(|b| &b.hosts).any(|h| h.host.as_str() == "e0"), "it joins again");
    }
}

#[test]
fn rotating_the_secrets_key_reseals_everything_and_refuses_the_old_key() {
    use depot_api::pipeline::EnvChange;
    use depot_api::{PipelineName, StageName};
    use depot_store::Sealer;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("depot.db");
    let postgres = depot_testkit::Postgres::fresh_database();
    let open = |engine: usize| match engine {
        0 => Metadata::open_sqlite(&sqlite).unwrap(),
        _ => Metadata::open_postgres(&postgres).unwrap(),
    };
    for engine in 0..2 {
        let (old, new) = (Sealer::generate().0, Sealer::generate().0);
        let running = open(engine);
        running.use_sealer(old.clone()).unwrap();
        push(&running, "api", "1.0.0", 1);
        running.create_pipeline(&pipeline_request("shop", &["api"], &["dev", "prod"]), "ci").unwrap();
        let (shop, dev) = (PipelineName::parse("shop").unwrap(), StageName::parse("dev").unwrap());
        let change = EnvChange { set: [("TOKEN".to_owned(), "s3cret".to_owned())].into(), unset: Vec::new() };
        running.record_blob(&digest(100), 13).unwrap();
        running.record_blob(&digest(101), 1).unwrap();
        let revision = running.config(&config("shop-dev")).unwrap().revision;
        running.set_env(&shop, &dev, revision, &change, &change.set, b"TOKEN=s3cret\n", &digest(100), "ci").unwrap();

        let rotating = open(engine);
        let done = rotating.reseal(&old, &new).unwrap();
        assert_eq!((done.env_versions, done.already), (1, false));
        let again = rotating.reseal(&old, &new).unwrap();
        assert!(again.already, "a rotation run again after it committed finds the work done");

        // A registry still holding the old key writes nothing sealed with it.
        let revision = running.config(&config("shop-dev")).unwrap().revision;
        let error = running.set_env(&shop, &dev, revision, &change, &change.set, b"x", &digest(101), "ci").unwrap_err();
        assert!(error.to_string().contains("secrets key was rotated"), "{error}");
        // One started with the old key is refused; the new key opens every value.
        let error = open(engine).use_sealer(old.clone()).unwrap_err();
        assert!(error.to_string().contains(&format!("sealed with secrets key {}", new.id())), "{error}");
        let restarted = open(engine);
        restarted.use_sealer(new.clone()).unwrap();
        assert_eq!(restarted.stage_env(&shop, &dev).unwrap().vars["TOKEN"], "s3cret");
        assert_eq!(restarted.env_archive(&digest(100)).unwrap().unwrap(), b"TOKEN=s3cret\n");
        // The old key opens nothing any more.
        let error = rotating.reseal(&old, &Sealer::generate().0).unwrap_err();
        assert!(error.to_string().contains("not with the key given"), "{error}");
    }
}

/// A signature of `component` `label` (content `digest(n)`) by the ed25519 key of `seed`, as the
/// registry records it once checked.
fn signed(seed: u8, component_name: &str, label: &str, n: u8) -> depot_api::types::SignatureInfo {
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]));
    let message = depot_trust::message(&component(component_name), &version(label), &digest(n));
    let signature = depot_trust::sign(&key, &message).unwrap();
    depot_api::types::SignatureInfo {
        fingerprint: signature.fingerprint(),
        key_type: signature.key_type(),
        signature: signature.pem().to_owned(),
        added_by: "ci".to_owned(),
        added_at: chrono::Utc::now(),
        signer: None,
    }
}

fn allowed_signer(seed: u8, name: &str) -> String {
    let key = ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]));
    format!("{name} {}", key.public_key().to_openssh().unwrap())
}

#[test]
fn a_signature_policy_holds_pushes_and_promotions_but_not_channels_stepping_back() {
    use depot_api::pipeline::Promote;
    use depot_api::{PipelineName, StageName};
    for Fresh { store, .. } in backends() {
        push(&store, "api", "1.0.0", 1);
        store.create_pipeline(&pipeline_request("shop", &["api"], &["dev", "prod"]), "ci").unwrap();
        let (shop, prod) = (PipelineName::parse("shop").unwrap(), StageName::parse("prod").unwrap());
        let promote = Promote { to: prod.clone(), from: None, components: Vec::new(), force: false };
        let policy = allowed_signer(1, "alice");
        store.set_policy(&component("api"), Some((1, &policy)), "admin").unwrap();

        // Pushed: unsigned or signed by a stranger, refused whole; signed by alice, taken.
        store.record_blob(&digest(2), 10).unwrap();
        let add = |signatures: &[depot_api::types::SignatureInfo]| {
            store.add_version(&component("api"), &version("1.1.0"), &digest(2), &BTreeMap::new(), &[], signatures, "ci")
        };
        for signatures in [vec![], vec![signed(9, "api", "1.1.0", 2)], vec![signed(1, "api", "1.0.0", 2)]] {
            let error = add(&signatures).unwrap_err();
            assert!(matches!(error, StoreError::Unsigned { .. }), "{error}");
            assert_eq!(store.versions(&component("api")).unwrap().len(), 1, "nothing half-made");
        }
        let added = add(&[signed(1, "api", "1.1.0", 2)]).unwrap();
        assert_eq!(added.info.signatures.len(), 1);
        assert_eq!(store.config(&config("shop-dev")).unwrap().layers[0].version, version("1.1.0"), "dev follows");
        store.promote(&shop, &promote, "ci").unwrap();
        assert_eq!(store.config(&config("shop-prod")).unwrap().layers[0].version, version("1.1.0"));

        // An unsigned version pushed while no policy held reaches dev by its channel, but is
        // not promoted once the policy is back.
        store.set_policy(&component("api"), None, "admin").unwrap();
        push(&store, "api", "1.2.0", 3);
        store.set_policy(&component("api"), Some((1, &policy)), "admin").unwrap();
        assert_eq!(store.config(&config("shop-dev")).unwrap().layers[0].version, version("1.2.0"));
        let error = store.promote(&shop, &promote, "ci").unwrap_err();
        assert!(error.to_string().contains("api 1.2.0 has 0 valid signature(s)"), "{error}");
        assert_eq!(store.config(&config("shop-prod")).unwrap().layers[0].version, version("1.1.0"));
        // Going back is never held: a deprecation steps the channel back onto unsigned 1.0.0.
        store.set_policy(&component("api"), None, "admin").unwrap();
        push(&store, "api", "1.3.0", 4);
        store.set_policy(&component("api"), Some((1, &policy)), "admin").unwrap();
        for label in ["1.3.0", "1.2.0", "1.1.0"] {
            store.deprecate(&component("api"), &version(label), "bad", None, "ci", false).unwrap();
        }
        assert_eq!(store.config(&config("shop-dev")).unwrap().layers[0].version, version("1.0.0"));
        // Forward is held, by channel too: undeprecating unsigned 1.3.0 would move dev onto it.
        let error = store.undeprecate(&component("api"), &version("1.3.0"), "ci").unwrap_err();
        assert!(matches!(error, StoreError::Unsigned { .. }), "{error}");
        assert_eq!(store.config(&config("shop-dev")).unwrap().layers[0].version, version("1.0.0"));
    }
}

#[test]
fn attestations_are_kept_whole_capped_per_version_and_go_with_their_version() {
    for Fresh { store, .. } in backends() {
        push(&store, "web", "1.0.0", 1);
        let statement = |n: usize| {
            format!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","subject":[{{"digest":{{"sha256":"{}"}}}}],"predicateType":"urn:test:{n}"}}"#,
                digest(1).hex()
            )
        };
        let attach = |n: usize| {
            let text = statement(n);
            let parsed = depot_trust::attestation::Statement::parse(text.as_bytes()).unwrap();
            store.add_attestation(
                &component("web"),
                &version("1.0.0"),
                &parsed.digest,
                &parsed.predicate_type,
                &text,
                &[],
                "ci",
            )
        };
        let first = attach(0).unwrap();
        assert_eq!(first.size, statement(0).len() as u64);
        assert_eq!(first.statement, None, "the answer to an attach is short");
        let read = store.attestation(&component("web"), &version("1.0.0"), &first.digest).unwrap().unwrap();
        assert_eq!(read.statement.as_deref(), Some(statement(0).as_str()), "byte for byte");
        assert_eq!(attach(0).unwrap().digest, first.digest, "attached again: the same one");
        for n in 1..depot_trust::attestation::MAX_PER_VERSION {
            attach(n).unwrap();
        }
        let error = attach(999).unwrap_err();
        assert!(error.to_string().contains("the most a version keeps"), "{error}");
        let listed = store.attestations(&component("web"), &version("1.0.0"), false).unwrap();
        assert_eq!(listed.len(), depot_trust::attestation::MAX_PER_VERSION);
        assert!(listed.iter().all(|a| a.statement.is_none()));

        // Gone with the component: pushed again, the version has none.
        store.delete_component(&component("web")).unwrap();
        push(&store, "web", "1.0.0", 1);
        assert!(store.attestations(&component("web"), &version("1.0.0"), false).unwrap().is_empty());
    }
}
