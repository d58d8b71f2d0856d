//! The registry's decisions, as plain functions over plain data: which rolling channels move,
//! what a configuration tracking a moved channel becomes, which version a bump lands on, which
//! versions retention may drop, and whether a promotion may pass. The store reads the rows,
//! asks these, and writes what they decide; they are tested here with no database.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use depot_api::pipeline::{Pipeline, StageHealth};
use depot_api::rollout::{RolloutPhase, RolloutStatus};
use depot_api::semver_order;
use depot_api::types::{AgentState, AgentStatus, Config, Layer, VersionInfo};
use depot_api::{ComponentName, StageName, VersionLabel};

/// The rolling channels that must change for a component whose live (not deprecated) versions
/// are `live` and whose rolling channels are now `current` (name → version): each name with
/// the version it must name, or `None` when it must go.
pub fn rolling_moves<'a>(
    current: &BTreeMap<String, String>,
    live: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, Option<String>> {
    let wanted = semver_order::rolling_channels(live);
    let names: BTreeSet<&String> = current.keys().chain(wanted.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let to = wanted.get(name);
            (current.get(name) != to).then(|| (name.clone(), to.cloned()))
        })
        .collect()
}

/// What a configuration whose layers are `layers` becomes when `component`'s channels `moved`
/// (name → version): its new layers and the change to record, or `None` when it tracks none of
/// them (or already runs their versions). `versions` are the component's versions.
pub fn follow(
    layers: &[Layer],
    component: &ComponentName,
    moved: &BTreeMap<String, String>,
    versions: &[VersionInfo],
) -> Option<(Vec<Layer>, String)> {
    let mut next = layers.to_vec();
    let mut changes = Vec::new();
    for layer in next.iter_mut().filter(|l| &l.component == component) {
        let Some(channel) = &layer.channel else { continue };
        let Some(to) = moved.get(channel.as_str()) else { continue };
        if layer.version.as_str() == to {
            continue;
        }
        let Some(info) = versions.iter().find(|v| v.version.as_str() == to) else { continue };
        changes.push(format!("channel {component}:{channel} moved {} → {to}", layer.version));
        layer.version = info.version.clone();
        layer.digest = info.digest.clone();
    }
    (!changes.is_empty()).then(|| (next, changes.join("; ")))
}

/// The version a bump of a layer on `previous` lands on: the newest live version, and the
/// newest stable one when `previous` is stable, so that a bump never lands on a release
/// candidate by surprise. `versions` are in [`semver_order`]; `None` when none is live.
pub fn bump_target<'v>(versions: &'v [VersionInfo], previous: &VersionLabel) -> Option<&'v VersionInfo> {
    let stable = |label: &str| semver_order::parse(label).is_some_and(|v| v.pre.is_empty());
    let stable_only = stable(previous.as_str());
    let live: Vec<&VersionInfo> = versions.iter().filter(|v| v.deprecated.is_none()).collect();
    live.iter().rev().find(|v| !stable_only || stable(v.version.as_str())).or(live.last()).copied()
}

/// The versions retention drops from a component whose versions are `versions` (in
/// [`semver_order`], oldest first) to keep at most `max`: the oldest first, never the newest,
/// a deprecated one (the record of what was withdrawn and why), nor one in `protected`
/// (component, version): used by a recent revision, named by a channel, or the last pushed.
pub fn retention_victims<'v>(
    component: &ComponentName,
    versions: &'v [VersionInfo],
    protected: &HashSet<(String, String)>,
    max: u64,
) -> Vec<&'v VersionInfo> {
    let mut excess = (versions.len() as u64).saturating_sub(max);
    let newest = versions.last().map(|v| &v.version);
    let mut victims = Vec::new();
    for version in versions {
        if excess == 0 {
            break;
        }
        if Some(&version.version) == newest
            || version.deprecated.is_some()
            || protected.contains(&(component.to_string(), version.version.to_string()))
        {
            continue;
        }
        victims.push(version);
        excess -= 1;
    }
    victims
}

/// The stages `stage` follows in `pipeline`, nearest first.
pub fn upstream_of(pipeline: &Pipeline, stage: &StageName) -> Vec<StageName> {
    let mut chain = Vec::new();
    let mut next = pipeline.stages.iter().find(|s| &s.name == stage).and_then(|s| s.after.clone());
    while let Some(name) = next {
        if chain.contains(&name) {
            break;
        }
        next = pipeline.stages.iter().find(|s| s.name == name).and_then(|s| s.after.clone());
        chain.push(name);
    }
    chain
}

/// The stages a promotion from `source` into `target` goes around (and so around their gates).
pub fn skipped_stages(pipeline: &Pipeline, source: &StageName, target: &StageName) -> Vec<StageName> {
    upstream_of(pipeline, target).into_iter().take_while(|s| s != source).collect()
}

/// A stage's agents, counted: active on the stage's exact hash, failed, or on the way.
pub fn health(config: &Config, agents: &[AgentStatus]) -> StageHealth {
    let mut health = StageHealth { agents: agents.len() as u64, ..StageHealth::default() };
    for agent in agents {
        match agent.report.state {
            AgentState::Active if agent.report.hash == config.hash => health.active += 1,
            AgentState::Failed | AgentState::RolledBack | AgentState::Untrusted => health.failed += 1,
            _ => health.pending += 1,
        }
    }
    health
}

/// Why the source stage is not healthy enough for a require-healthy gate, if it is not: the
/// rollout of its revision (if it rolls) must have completed, and every agent (at least one)
/// must report the source's exact hash active.
pub fn unhealthy(source: &Config, agents: &[AgentStatus], rollout: Option<&RolloutStatus>) -> Option<String> {
    if let Some(rollout) = rollout.filter(|r| r.to == source.revision && r.phase != RolloutPhase::Completed) {
        return Some(format!(
            "the rollout of {} to revision {} is {} (batch {} of {})",
            source.name,
            rollout.to,
            rollout.phase.as_str(),
            rollout.started_batches,
            rollout.batches.len()
        ));
    }
    if agents.is_empty() {
        return Some(format!("no agent reports for {} (it needs at least one, active)", source.name));
    }
    let behind: Vec<String> = agents
        .iter()
        .filter(|a| !(a.report.state == AgentState::Active && a.report.hash == source.hash))
        .map(|a| format!("{} is {} on revision {}", a.host, a.report.state.as_str(), a.report.revision))
        .collect();
    (!behind.is_empty()).then(|| {
        let count = if behind.len() == 1 { "1 agent".to_owned() } else { format!("{} agents", behind.len()) };
        format!("{count} of {} at revision {}: {}", source.name, source.revision, behind.join("; "))
    })
}

/// Whether `layers` hold `layer`'s component at its version and digest.
pub fn runs(layers: &[Layer], layer: &Layer) -> bool {
    layers.iter().any(|l| l.component == layer.component && l.version == layer.version && l.digest == layer.digest)
}

#[cfg(test)]
mod tests {
    use depot_api::Digest;
    use depot_api::types::Deprecation;

    use super::*;

    fn info(version: &str, n: u8) -> VersionInfo {
        VersionInfo {
            component: ComponentName::parse("web").unwrap(),
            version: VersionLabel::parse(version).unwrap(),
            digest: Digest::from_hex(&format!("{n:02x}").repeat(32)).unwrap(),
            size: 1,
            created_at: chrono::DateTime::UNIX_EPOCH,
            creator: "ci".to_owned(),
            labels: BTreeMap::new(),
            deprecated: None,
            signatures: Vec::new(),
        }
    }

    fn deprecated(mut version: VersionInfo) -> VersionInfo {
        version.deprecated = Some(Deprecation {
            reason: "bad".to_owned(),
            replacement: None,
            at: chrono::DateTime::UNIX_EPOCH,
            by: "ops".to_owned(),
        });
        version
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn rolling_channels_move_only_where_the_live_versions_say() {
        let current = map(&[("latest", "1.1.0"), ("1", "1.1.0"), ("1.1", "1.1.0"), ("1.0", "1.0.0")]);
        // A push of 1.2.0 moves latest, 1 and adds 1.2; 1.1 and 1.0 stay.
        let moves = rolling_moves(&current, ["1.0.0", "1.1.0", "1.2.0"]);
        assert_eq!(
            moves,
            BTreeMap::from([
                ("1".to_owned(), Some("1.2.0".to_owned())),
                ("1.2".to_owned(), Some("1.2.0".to_owned())),
                ("latest".to_owned(), Some("1.2.0".to_owned())),
            ])
        );
        // Deprecating the only 1.0.x removes its channel.
        let moves = rolling_moves(&current, ["1.1.0"]);
        assert_eq!(moves, BTreeMap::from([("1.0".to_owned(), None)]));
        // Nothing changed: nothing moves.
        assert!(rolling_moves(&current, ["1.0.0", "1.1.0"]).is_empty());
    }

    #[test]
    fn a_configuration_follows_only_the_channels_it_tracks() {
        let versions = [info("1.0.0", 1), info("1.1.0", 2)];
        let web = ComponentName::parse("web").unwrap();
        let tracking = Layer { channel: Some(VersionLabel::parse("latest").unwrap()), ..layer(&versions[0]) };
        let pinned = layer(&versions[0]);
        let moved = map(&[("latest", "1.1.0")]);
        let (next, change) = follow(std::slice::from_ref(&tracking), &web, &moved, &versions).expect("it moves");
        assert_eq!(next[0].version.as_str(), "1.1.0");
        assert_eq!(next[0].digest, versions[1].digest);
        assert_eq!(next[0].channel, tracking.channel, "it keeps tracking");
        assert_eq!(change, "channel web:latest moved 1.0.0 → 1.1.0");
        assert!(follow(&[pinned], &web, &moved, &versions).is_none(), "a pinned layer never moves");
        assert!(follow(&next, &web, &moved, &versions).is_none(), "already there");
    }

    fn layer(version: &VersionInfo) -> Layer {
        Layer {
            component: version.component.clone(),
            version: version.version.clone(),
            digest: version.digest.clone(),
            channel: None,
        }
    }

    #[test]
    fn a_bump_lands_on_the_newest_live_version_and_stays_stable_from_stable() {
        let versions = [info("1.0.0", 1), deprecated(info("1.1.0", 2)), info("1.2.0-rc.1", 3)];
        let from =
            |label: &str| bump_target(&versions, &VersionLabel::parse(label).unwrap()).map(|v| v.version.as_str());
        assert_eq!(from("1.0.0"), Some("1.0.0"), "stable stays stable; the deprecated 1.1.0 is skipped");
        assert_eq!(from("1.0.0-rc.1"), Some("1.2.0-rc.1"), "a release candidate may move to a newer one");
        assert_eq!(bump_target(&[deprecated(info("1.0.0", 1))], &VersionLabel::parse("1.0.0").unwrap()), None);
    }

    #[test]
    fn retention_drops_the_oldest_but_never_the_newest_a_deprecated_or_a_protected_one() {
        let web = ComponentName::parse("web").unwrap();
        let versions =
            [info("1.0.0", 1), deprecated(info("1.1.0", 2)), info("1.2.0", 3), info("1.3.0", 4), info("1.4.0", 5)];
        let protected = HashSet::from([("web".to_owned(), "1.2.0".to_owned())]);
        let labels = |max| {
            retention_victims(&web, &versions, &protected, max)
                .iter()
                .map(|v| v.version.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(labels(3), ["1.0.0", "1.3.0"]);
        assert_eq!(labels(1), ["1.0.0", "1.3.0"], "what is left cannot go");
        assert!(labels(5).is_empty());
    }
}
