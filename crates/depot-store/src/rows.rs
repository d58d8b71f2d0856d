//! The row operations that the metadata's methods (`metadata.rs`) and the pipelines' methods
//! (`pipelines.rs`) share: reading and writing versions, channels, configurations and their
//! revisions, agents, stages and events inside a transaction. Both import from here and neither
//! from the other.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use depot_api::pipeline::{EventKind, StageRef, mask_env_values};
use depot_api::semver_order::{self, ChannelKind};
use depot_api::types::{
    AgentReport, AgentStatus, ChannelInfo, ChannelMove, Config, Deprecation, Layer, LayerRef, TokenInfo, VersionInfo,
    VersionUse, config_hash,
};
use depot_api::{ComponentName, ConfigName, Digest, HostName, PipelineName, StageName, TokenName, VersionLabel};

use crate::db::{self, OptionalExtension, Tx, params};
use crate::{Result, StoreError, rules};

/// How many earlier revisions of a configuration keep their versions from retention, so that
/// `depot config rollback` keeps working.
pub const PROTECTED_REVISIONS: u64 = 5;

pub(crate) fn insert_version(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    digest: &Digest,
    labels: &BTreeMap<String, String>,
    creator: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO versions (component, version, digest, created_at, creator, labels) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            component.as_str(),
            version.as_str(),
            digest.as_str(),
            now(),
            creator,
            serde_json::to_string(labels).expect("labels serialise")
        ],
    )?;
    Ok(())
}

/// Appends to the audit trail of `depot history` what no configuration revision records: pushes,
/// deprecations, agents' outcomes, promotions waiting for approval.
pub(crate) fn record_event(
    tx: &Tx<'_>,
    kind: EventKind,
    actor: &str,
    component: Option<&ComponentName>,
    config: Option<&ConfigName>,
    revision: Option<u64>,
    summary: &str,
) -> Result<()> {
    tx.execute(
        "INSERT INTO events (at, actor, kind, component, config, revision, summary) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            now(),
            actor,
            kind.as_str(),
            component.map(|c| c.as_str()),
            config.map(|c| c.as_str()),
            revision.map(|r| r as i64),
            summary
        ],
    )?;
    Ok(())
}

/// Decodes JSON the store wrote itself (layers, labels, reports).
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Invalid(e.to_string()))
}

pub(crate) fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Invalid(format!("bad time `{text}` in the database: {e}")))
}

pub(crate) fn parse<T>(value: std::result::Result<T, depot_api::NameError>) -> Result<T> {
    value.map_err(|e| StoreError::Invalid(format!("invalid name in the database: {e}")))
}

pub(crate) fn token_info(name: &str, role: &str, pattern: Option<String>, at: &str, by: String) -> Result<TokenInfo> {
    Ok(TokenInfo {
        name: parse(TokenName::parse(name))?,
        role: role.parse().map_err(StoreError::Invalid)?,
        config_pattern: pattern,
        created_at: parse_time(at)?,
        created_by: by,
    })
}

/// A row of `channel_moves`: at, from, to, actor, reason.
pub(crate) type MoveRow = (String, Option<String>, Option<String>, String, String);

/// A row of [`VERSION_COLUMNS`], as SQLite gives it.
pub(crate) struct VersionRow {
    component: String,
    version: String,
    digest: String,
    size: i64,
    created_at: String,
    creator: String,
    labels: String,
    /// reason, replacement, at, by
    deprecated: Option<(String, Option<String>, String, String)>,
}

pub(crate) fn version_row(row: &db::Row) -> Result<VersionRow> {
    let reason: Option<String> = row.get(7)?;
    let deprecated = match reason {
        Some(reason) => Some((reason, row.get(8)?, row.get(9)?, row.get(10)?)),
        None => None,
    };
    Ok(VersionRow {
        component: row.get(0)?,
        version: row.get(1)?,
        digest: row.get(2)?,
        size: row.get(3)?,
        created_at: row.get(4)?,
        creator: row.get(5)?,
        labels: row.get(6)?,
        deprecated,
    })
}

pub(crate) fn version_info(raw: VersionRow) -> Result<VersionInfo> {
    let deprecated = match raw.deprecated {
        Some((reason, replacement, at, by)) => Some(Deprecation {
            reason,
            replacement: replacement.map(|r| parse(VersionLabel::parse(&r))).transpose()?,
            at: parse_time(&at)?,
            by,
        }),
        None => None,
    };
    Ok(VersionInfo {
        component: parse(ComponentName::parse(&raw.component))?,
        version: parse(VersionLabel::parse(&raw.version))?,
        digest: parse(Digest::parse(&raw.digest))?,
        size: raw.size as u64,
        created_at: parse_time(&raw.created_at)?,
        creator: raw.creator,
        labels: from_json(&raw.labels)?,
        deprecated,
        signatures: Vec::new(),
    })
}

pub(crate) const VERSION_COLUMNS: &str = "v.component, v.version, v.digest, b.size, v.created_at, v.creator, v.labels, \
     d.reason, d.replacement, d.at, d.by FROM versions v JOIN blobs b ON b.digest = v.digest \
     LEFT JOIN deprecations d ON d.component = v.component AND d.version = v.version";

pub(crate) fn find_version(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
) -> Result<Option<VersionInfo>> {
    let raw = tx
        .query_row(
            &format!("SELECT {VERSION_COLUMNS} WHERE v.component = ?1 AND v.version = ?2"),
            params![component.as_str(), version.as_str()],
            version_row,
        )
        .optional()?;
    raw.map(version_info).transpose()
}

/// A component's versions, oldest first: push order, then sorted by [`semver_order`].
pub(crate) fn versions_of(tx: &Tx<'_>, component: &ComponentName) -> Result<Vec<VersionInfo>> {
    let mut statement = tx.prepare(&format!("SELECT {VERSION_COLUMNS} WHERE v.component = ?1 ORDER BY v.seq"))?;
    let rows = statement.query_map([component.as_str()], version_row)?;
    let mut versions = rows.map(|row| version_info(row?)).collect::<Result<Vec<_>>>()?;
    semver_order::sort(&mut versions, |v| v.version.as_str());
    Ok(versions)
}

pub(crate) fn resolve_version(tx: &Tx<'_>, component: &ComponentName, version: &VersionLabel) -> Result<VersionInfo> {
    match find_version(tx, component, version)? {
        Some(info) => Ok(info),
        None if versions_of(tx, component)?.is_empty() => Err(StoreError::UnknownComponent(component.clone())),
        None => Err(StoreError::UnknownVersion { component: component.clone(), version: version.clone() }),
    }
}

/// `web:1.4.2` pins a version; `web:latest` or `web:1.4` names a channel of the component, and
/// the layer tracks it. A channel wins over a version of the same name.
pub(crate) fn resolve_layer(tx: &Tx<'_>, layer: &LayerRef) -> Result<Layer> {
    let channel: Option<String> = tx
        .query_row(
            "SELECT version FROM channels WHERE component = ?1 AND name = ?2",
            params![layer.component.as_str(), layer.version.as_str()],
            |row| row.get(0),
        )
        .optional()?;
    let (version, tracked) = match channel {
        Some(version) => (parse(VersionLabel::parse(&version))?, Some(layer.version.clone())),
        None => (layer.version.clone(), None),
    };
    let info = resolve_version(tx, &layer.component, &version)?;
    Ok(Layer { component: info.component, version: info.version, digest: info.digest, channel: tracked })
}

/// `1.4.2`, or `1.4 (1.4.2)` for a layer tracking a channel.
pub(crate) fn layer_version(layer: &Layer) -> String {
    match &layer.channel {
        Some(channel) => format!("{channel} ({})", layer.version),
        None => layer.version.to_string(),
    }
}

pub(crate) fn delete_version_rows(tx: &Tx<'_>, component: &ComponentName, version: &VersionLabel) -> Result<()> {
    for table in ["signatures", "attestations"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE component = ?1 AND version = ?2"),
            params![component.as_str(), version.as_str()],
        )?;
    }
    // Build and manual channels naming it go with it (rolling ones are recomputed by the caller).
    let mut statement =
        tx.prepare("SELECT name FROM channels WHERE component = ?1 AND version = ?2 AND kind != 'rolling'")?;
    let names: Vec<String> = statement
        .query_map(params![component.as_str(), version.as_str()], |row| row.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    for name in names {
        move_channel(tx, component, &name, ChannelKind::Manual, None, "", &format!("deleted {version}"))?;
    }
    for table in ["versions", "deprecations"] {
        tx.execute(
            &format!("DELETE FROM {table} WHERE component = ?1 AND version = ?2"),
            params![component.as_str(), version.as_str()],
        )?;
    }
    Ok(())
}

/// Recomputes the component's rolling channels from its versions that are not deprecated
/// ([`semver_order::rolling_channels`]), and moves the configurations tracking those that moved.
pub(crate) fn update_channels(
    tx: &Tx<'_>,
    component: &ComponentName,
    actor: &str,
    reason: &str,
) -> Result<Vec<Config>> {
    let versions = versions_of(tx, component)?;
    let mut statement = tx.prepare("SELECT name, version FROM channels WHERE component = ?1 AND kind = 'rolling'")?;
    let current: BTreeMap<String, String> = statement
        .query_map([component.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let live = versions.iter().filter(|v| v.deprecated.is_none()).map(|v| v.version.as_str());
    let mut moved = BTreeMap::new();
    for (name, to) in rules::rolling_moves(&current, live) {
        move_channel(tx, component, &name, ChannelKind::Rolling, to.as_deref(), actor, reason)?;
        if let Some(to) = to {
            moved.insert(name, to);
        }
    }
    follow_channels(tx, component, &moved, actor)
}

/// Points the build channels of a push at its version, and moves the configurations tracking them.
pub(crate) fn set_build_channels(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: &VersionLabel,
    names: &[VersionLabel],
    actor: &str,
) -> Result<Vec<Config>> {
    let reason = format!("pushed {version}");
    let mut moved = BTreeMap::new();
    for name in names {
        if move_channel(tx, component, name.as_str(), ChannelKind::Build, Some(version.as_str()), actor, &reason)? {
            moved.insert(name.to_string(), version.to_string());
        }
    }
    follow_channels(tx, component, &moved, actor)
}

/// Points channel `name` at `to` (or removes it), recording the move; false when it already
/// named `to`.
pub(crate) fn move_channel(
    tx: &Tx<'_>,
    component: &ComponentName,
    name: &str,
    kind: ChannelKind,
    to: Option<&str>,
    actor: &str,
    reason: &str,
) -> Result<bool> {
    let from: Option<String> = tx
        .query_row(
            "SELECT version FROM channels WHERE component = ?1 AND name = ?2",
            params![component.as_str(), name],
            |row| row.get(0),
        )
        .optional()?;
    if from.as_deref() == to {
        return Ok(false);
    }
    let at = now();
    match to {
        Some(to) => tx.execute(
            "INSERT INTO channels (component, name, kind, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (component, name) DO UPDATE SET kind = excluded.kind, version = excluded.version,
             updated_at = excluded.updated_at",
            params![component.as_str(), name, kind.as_str(), to, at],
        )?,
        None => {
            tx.execute("DELETE FROM channels WHERE component = ?1 AND name = ?2", params![component.as_str(), name])?
        }
    };
    tx.execute(
        "INSERT INTO channel_moves (component, name, at, from_version, to_version, actor, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![component.as_str(), name, at, from, to, actor, reason],
    )?;
    Ok(true)
}

/// Gives every configuration whose current revision tracks one of the `moved` channels (name →
/// version) a new revision on the channel's version. Returns those configurations.
pub(crate) fn follow_channels(
    tx: &Tx<'_>,
    component: &ComponentName,
    moved: &BTreeMap<String, String>,
    actor: &str,
) -> Result<Vec<Config>> {
    if moved.is_empty() {
        return Ok(Vec::new());
    }
    let versions = versions_of(tx, component)?;
    let mut statement = tx.prepare(
        "SELECT c.name, c.revision, r.layers FROM configs c JOIN config_revisions r ON r.config = c.name AND r.revision = c.revision ORDER BY c.name",
    )?;
    let rows: Vec<(String, i64, String)> = statement
        .query_map((), |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut changed = Vec::new();
    for (name, revision, layers) in rows {
        let layers: Vec<Layer> = from_json(&layers)?;
        if let Some((layers, change)) = rules::follow(&layers, component, moved, &versions) {
            let name = parse(ConfigName::parse(&name))?;
            changed.push(write_revision(tx, &name, revision as u64 + 1, &layers, &change, EventKind::Channel, actor)?);
        }
    }
    Ok(changed)
}

pub(crate) fn check_one_layer_per_component(layers: &[LayerRef]) -> Result<()> {
    let mut seen = HashSet::new();
    for layer in layers {
        if !seen.insert(&layer.component) {
            return Err(StoreError::Invalid(format!(
                "component {} appears twice; a configuration has one layer per component",
                layer.component
            )));
        }
    }
    Ok(())
}

pub(crate) fn check_revision(name: &ConfigName, expect: Option<u64>, actual: u64) -> Result<()> {
    match expect {
        Some(expected) if expected != actual => {
            Err(StoreError::ConfigConflict { config: name.clone(), expected, actual })
        }
        _ => Ok(()),
    }
}

/// A component's channels by name, each with its kind and history.
pub(crate) fn channels_of(tx: &Tx<'_>, component: &ComponentName) -> Result<Vec<ChannelInfo>> {
    let mut statement =
        tx.prepare("SELECT name, kind, version, updated_at FROM channels WHERE component = ?1 ORDER BY name")?;
    let rows: Vec<(String, String, String, String)> = statement
        .query_map([component.as_str()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut moves = tx.prepare(
        "SELECT at, from_version, to_version, actor, reason FROM channel_moves WHERE component = ?1 AND name = ?2 ORDER BY seq",
    )?;
    let label = |text: Option<String>| text.map(|t| parse(VersionLabel::parse(&t))).transpose();
    let mut channels = Vec::new();
    for (name, kind, version, updated_at) in rows {
        let raw: Vec<MoveRow> = moves
            .query_map(params![component.as_str(), name], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
            })?
            .collect::<std::result::Result<_, _>>()?;
        let mut history = Vec::new();
        for (at, from, to, actor, reason) in raw {
            history.push(ChannelMove { at: parse_time(&at)?, from: label(from)?, to: label(to)?, actor, reason });
        }
        channels.push(ChannelInfo {
            name: parse(VersionLabel::parse(&name))?,
            kind: ChannelKind::parse(&kind)
                .ok_or_else(|| StoreError::Invalid(format!("unknown channel kind `{kind}`")))?,
            version: parse(VersionLabel::parse(&version))?,
            updated_at: parse_time(&updated_at)?,
            history,
        });
    }
    Ok(channels)
}

pub(crate) fn describe_layers(layers: &[Layer]) -> String {
    layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
}

pub(crate) fn current_config(tx: &Tx<'_>, name: &ConfigName) -> Result<Config> {
    let row = tx
        .query_row(
            "SELECT c.revision, r.hash, r.at, r.layers, c.strategy FROM configs c JOIN config_revisions r ON r.config = c.name AND r.revision = c.revision WHERE c.name = ?1",
            [name.as_str()],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?, row.get::<_, Option<String>>(4)?)),
        )
        .optional()?;
    let (revision, hash, at, layers, strategy) = row.ok_or_else(|| StoreError::UnknownConfig(name.clone()))?;
    Ok(Config {
        name: name.clone(),
        revision: revision as u64,
        hash,
        updated_at: parse_time(&at)?,
        layers: from_json(&layers)?,
        stage: stage_ref(tx, name)?,
        strategy: crate::rollouts::strategy_of(strategy)?,
    })
}

/// Writes revision `revision` of `name`; `kind` says for `depot history` what made it. A rolling
/// configuration begins the new revision's rollout here, for every kind of write alike.
pub(crate) fn write_revision(
    tx: &Tx<'_>,
    name: &ConfigName,
    revision: u64,
    layers: &[Layer],
    change: &str,
    kind: EventKind,
    actor: &str,
) -> Result<Config> {
    let before: Vec<Layer> = match revision {
        1 => Vec::new(),
        _ => tx
            .query_row(
                "SELECT layers FROM config_revisions WHERE config = ?1 AND revision = ?2",
                params![name.as_str(), revision as i64 - 1],
                |row| row.get::<_, String>(0),
            )
            .optional()?
            .map(|text| from_json(&text))
            .transpose()?
            .unwrap_or_default(),
    };
    crate::policies::require_signed_layers(tx, kind, &before, layers)?;
    let hash = config_hash(layers);
    let at = now();
    tx.execute(
        "INSERT INTO config_revisions (config, revision, at, actor, change, hash, layers, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![name.as_str(), revision as i64, at, actor, change, hash, serde_json::to_string(layers).expect("layers serialise"), kind.as_str()],
    )?;
    tx.execute("UPDATE configs SET revision = ?2 WHERE name = ?1", params![name.as_str(), revision as i64])?;
    tx.changed(name.as_str())?;
    let strategy: Option<String> =
        tx.query_row("SELECT strategy FROM configs WHERE name = ?1", [name.as_str()], |row| row.get(0))?;
    let strategy = crate::rollouts::strategy_of(strategy)?;
    crate::rollouts::begin(tx, name, revision - 1, revision, &strategy)?;
    Ok(Config {
        name: name.clone(),
        revision,
        hash,
        updated_at: parse_time(&at)?,
        layers: layers.to_vec(),
        stage: stage_ref(tx, name)?,
        strategy,
    })
}

/// The last report of every agent of `config`, by host name.
pub(crate) fn agents_of(tx: &Tx<'_>, config: &ConfigName) -> Result<Vec<AgentStatus>> {
    let current = current_config(tx, config)?;
    let mut statement =
        tx.prepare("SELECT host, reporter, last_seen, report FROM agents WHERE config = ?1 ORDER BY host")?;
    let rows = statement.query_map([config.as_str()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?))
    })?;
    let mut agents = Vec::new();
    for row in rows {
        let (host, reporter, last_seen, report) = row?;
        let report: AgentReport = from_json(&report)?;
        agents.push(AgentStatus {
            host: HostName::parse(&host).map_err(|e| StoreError::Invalid(e.to_string()))?,
            config: config.clone(),
            last_seen: parse_time(&last_seen)?,
            reporter,
            current: report.revision == current.revision && report.hash == current.hash,
            report,
        });
    }
    Ok(agents)
}

/// A configuration whose current revision uses the component (or that version of it).
pub(crate) fn current_user(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: Option<&VersionLabel>,
) -> Result<Option<ConfigName>> {
    Ok(current_users(tx, component, version)?.into_iter().next().map(|u| u.config))
}

/// The configurations whose current revision has a layer of `component` (at `version`, when
/// given), by name.
pub(crate) fn current_users(
    tx: &Tx<'_>,
    component: &ComponentName,
    version: Option<&VersionLabel>,
) -> Result<Vec<VersionUse>> {
    let mut statement = tx.prepare(
        "SELECT c.name, c.revision, r.layers FROM configs c JOIN config_revisions r ON r.config = c.name AND r.revision = c.revision ORDER BY c.name",
    )?;
    let rows = statement
        .query_map((), |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?)))?;
    let mut runs = Vec::new();
    for row in rows {
        let (name, revision, layers) = row?;
        runs.push((parse(ConfigName::parse(&name))?, revision as u64, from_json::<Vec<Layer>>(&layers)?));
    }
    // A revision a rollout still holds hosts on is in use too.
    runs.extend(crate::rollouts::held_revisions(tx)?);
    let mut users = Vec::new();
    for (config, revision, layers) in runs {
        if let Some(layer) =
            layers.into_iter().find(|l| &l.component == component && version.is_none_or(|v| &l.version == v))
        {
            users.push(VersionUse { config, revision, channel: layer.channel });
        }
    }
    Ok(users)
}

/// (component, version) pairs used by any configuration's current or last protected revisions.
pub(crate) fn protected_versions(tx: &Tx<'_>) -> Result<HashSet<(String, String)>> {
    let mut statement = tx.prepare(
        "SELECT r.layers FROM config_revisions r JOIN configs c ON c.name = r.config WHERE r.revision + ?1 >= c.revision",
    )?;
    let rows = statement.query_map([PROTECTED_REVISIONS as i64], |row| row.get::<_, String>(0))?;
    let mut protected = HashSet::new();
    for row in rows {
        let layers: Vec<Layer> = from_json(&row?)?;
        protected.extend(layers.into_iter().map(|l| (l.component.to_string(), l.version.to_string())));
    }
    for (_, _, layers) in crate::rollouts::held_revisions(tx)? {
        protected.extend(layers.into_iter().map(|l| (l.component.to_string(), l.version.to_string())));
    }
    // A version a channel names, and the newest pushed of each component (a label that sorts
    // low, such as a git sha, must survive the push that created it).
    let mut statement = tx.prepare(
        "SELECT component, version FROM channels
         UNION SELECT component, version FROM versions WHERE seq IN (SELECT MAX(seq) FROM versions GROUP BY component)",
    )?;
    let rows = statement.query_map((), |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
    for row in rows {
        protected.insert(row?);
    }
    Ok(protected)
}

/// The stage a configuration is, if any, for [`Config::stage`].
pub(crate) fn stage_ref(tx: &Tx<'_>, config: &ConfigName) -> Result<Option<StageRef>> {
    let row: Option<(String, String, Option<String>, String)> = tx
        .query_row(
            "SELECT s.pipeline, s.name, s.after, p.track FROM stages s JOIN pipelines p ON p.name = s.pipeline WHERE s.config = ?1",
            [config.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    row.map(|(pipeline, stage, after, track)| {
        Ok(StageRef {
            pipeline: parse(PipelineName::parse(&pipeline))?,
            stage: parse(StageName::parse(&stage))?,
            previous: after.unwrap_or(track),
        })
    })
    .transpose()
}

/// Refuses a hand-made change (`config set`, `config bump`) of `components` in `config` that
/// would go around a pipeline: any stage's environment layer (`depot env set` writes those), and
/// any layer of a stage that receives promotions (through its gate). The first stage may be
/// pinned by hand.
pub(crate) fn check_manual_change(tx: &Tx<'_>, config: &ConfigName, components: &[&ComponentName]) -> Result<()> {
    for component in components {
        refuse_env_component(tx, component)?;
    }
    let Some(stage) = stage_ref(tx, config)? else { return Ok(()) };
    let (pipeline, name) = (&stage.pipeline, &stage.stage);
    let position: i64 = tx.query_row(
        "SELECT position FROM stages WHERE pipeline = ?1 AND name = ?2",
        params![pipeline.as_str(), name.as_str()],
        |row| row.get(0),
    )?;
    if position > 0 {
        return Err(StoreError::PromotedOnly {
            config: config.clone(),
            pipeline: pipeline.clone(),
            stage: name.clone(),
        });
    }
    Ok(())
}

/// Refuses to act by hand on a stage's generated environment component: only `depot env set`
/// writes its versions, and only its stage uses them.
pub(crate) fn refuse_env_component(tx: &Tx<'_>, component: &ComponentName) -> Result<()> {
    match env_owner(tx, component)? {
        Some(stage) => Err(StoreError::EnvComponent { component: component.clone(), stage }),
        None => Ok(()),
    }
}

/// `APP/STAGE` when `component` is the generated environment layer of a stage.
pub(crate) fn env_owner(tx: &Tx<'_>, component: &ComponentName) -> Result<Option<String>> {
    let Some(config) = component.as_str().strip_suffix(".env") else { return Ok(None) };
    let row: Option<(String, String)> = tx
        .query_row("SELECT pipeline, name FROM stages WHERE config = ?1", [config], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(row.map(|(pipeline, stage)| format!("{pipeline}/{stage}")))
}

/// `report` with the values of the configuration's environment layers masked in its error and
/// output, which viewers read in `depot status` and the history. Every version's values: the
/// agent may run an older one than the stage's latest.
pub(crate) fn mask_report(
    tx: &Tx<'_>,
    config: &ConfigName,
    report: &AgentReport,
    sealer: Option<&crate::Sealer>,
) -> Result<AgentReport> {
    let mut masked = report.clone();
    if report.error.is_none() && report.output_tail.is_none() {
        return Ok(masked);
    }
    let mut statement = tx.prepare("SELECT vars FROM env_versions WHERE config = ?1")?;
    let mut values = BTreeSet::new();
    for vars in statement.query_map([config.as_str()], |row| row.get::<_, String>(0))? {
        values.extend(crate::sealer::open_vars(tx, sealer, &vars?)?.into_values());
    }
    if values.is_empty() {
        return Ok(masked);
    }
    let mask = |text: &mut Option<String>| {
        if let Some(text) = text {
            *text = mask_env_values(text, values.iter().map(String::as_str));
        }
    };
    mask(&mut masked.error);
    mask(&mut masked.output_tail);
    Ok(masked)
}
