//! Registry metadata over [`crate::db`]: the same statements on SQLite and PostgreSQL. Every
//! method is one transaction.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::db::{self, Backend, Change, Mode, OptionalExtension, Publish, Tx, params};
use chrono::{DateTime, Utc};
use depot_api::pipeline::EventKind;
use depot_api::semver_order::{self, ChannelKind};
use depot_api::types::{
    AgentReport, AgentState, AgentStatus, BumpResult, ChannelInfo, ChannelMove, ComponentSummary, Config,
    ConfigSummary, Deprecated, Deprecation, HistoryEntry, Layer, LayerRef, Role, TokenInfo, VersionInfo, VersionUse,
    config_hash,
};
use depot_api::{ComponentName, ConfigName, Digest, HostName, TokenName, VersionLabel};

use crate::{Result, StoreError};

/// How many earlier revisions of a configuration keep their versions from retention, so that
/// `depot config rollback` keeps working.
pub const PROTECTED_REVISIONS: u64 = 5;

/// A version added: whether it is new, and the configurations whose tracked channels it moved.
#[derive(Debug)]
pub struct Added {
    pub info: VersionInfo,
    pub created: bool,
    pub moved: Vec<Config>,
}

/// What retention removed, and the configurations whose tracked channels moved because of it.
#[derive(Debug, Default)]
pub struct Retention {
    pub removed: Vec<LayerRef>,
    pub moved: Vec<Config>,
}

/// The registry's metadata on one of the SQL engines ([`crate::db`]). Cloning is cheap; every
/// method is one transaction and blocks, so async callers run it off their worker threads.
#[derive(Clone)]
pub struct Metadata {
    backend: Arc<dyn Backend>,
    subscribers: Arc<Mutex<Vec<Publish>>>,
}

impl Metadata {
    /// Opens (creating if needed) the SQLite database at `path`.
    pub fn open_sqlite(path: &Path) -> Result<Self> {
        Self::with_backend(Arc::new(db::sqlite::Sqlite::open(path)?))
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host:port/db`).
    pub fn open_postgres(url: &str) -> Result<Self> {
        Self::with_backend(Arc::new(db::postgres::Postgres::open(url)?))
    }

    fn with_backend(backend: Arc<dyn Backend>) -> Result<Self> {
        db::migrations::migrate(&backend)?;
        Ok(Metadata { backend, subscribers: Arc::default() })
    }

    /// The same database, without this handle's subscribers: for a subscriber that reads what
    /// changed (holding the handle itself would keep it alive forever).
    pub fn detached(&self) -> Metadata {
        Metadata { backend: self.backend.clone(), subscribers: Arc::default() }
    }

    /// Calls `publish` with every change committed from now on: each configuration that gets a
    /// new revision or is deleted, through this process or (PostgreSQL) any other sharing the
    /// database. Called on the committing thread or a listener's thread, after the commit; the
    /// same change may come twice.
    pub fn subscribe(&self, publish: Publish) -> Result<()> {
        let first = {
            let mut subscribers = self.subscribers.lock().expect("the subscribers lock is never poisoned");
            subscribers.push(publish);
            subscribers.len() == 1
        };
        if first {
            let subscribers = Arc::downgrade(&self.subscribers);
            self.backend.listen(Arc::new(move |change| {
                if let Some(subscribers) = subscribers.upgrade() {
                    publish_to(&subscribers, &change);
                }
            }))?;
        }
        Ok(())
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        self.backend.engine_name()
    }

    /// Checks that the database answers.
    pub fn ping(&self) -> Result<()> {
        self.read(|tx| tx.query_row("SELECT 1", (), |_| Ok(())))
    }

    /// One write transaction: writes run one at a time, across every process that shares the
    /// database.
    pub(crate) fn transaction<T>(&self, body: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        let (value, changed) = db::run(&self.backend, Mode::Write, body)?;
        for name in changed {
            publish_to(&self.subscribers, &Change::Config(name));
        }
        Ok(value)
    }

    /// One read-only transaction on a snapshot; it never waits for a writer.
    pub(crate) fn read<T>(&self, body: impl FnOnce(&Tx<'_>) -> Result<T>) -> Result<T> {
        Ok(db::run(&self.backend, Mode::Read, body)?.0)
    }

    // Blobs.

    pub fn record_blob(&self, digest: &Digest, size: u64) -> Result<()> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (digest) DO NOTHING",
                params![digest.as_str(), size as i64, now()],
            )?;
            Ok(())
        })
    }

    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.read(|tx| {
            let size: Option<i64> = tx
                .query_row("SELECT size FROM blobs WHERE digest = ?1", [digest.as_str()], |row| row.get(0))
                .optional()?;
            Ok(size.map(|s| s as u64))
        })
    }

    /// Blobs no version references, recorded before `cutoff` (so an upload whose version is about
    /// to be added is never collected).
    pub fn unreferenced_blobs(&self, cutoff: DateTime<Utc>) -> Result<Vec<Digest>> {
        self.read(|tx| {
            let mut statement = tx.prepare(
                "SELECT digest FROM blobs WHERE created_at < ?1 AND digest NOT IN (SELECT digest FROM versions)",
            )?;
            let rows = statement.query_map([cutoff.to_rfc3339()], |row| row.get::<_, String>(0))?;
            let mut digests = Vec::new();
            for row in rows {
                digests.push(parse(Digest::parse(&row?))?);
            }
            Ok(digests)
        })
    }

    /// Forgets a blob that no version references; false if one does by now.
    pub fn forget_blob(&self, digest: &Digest) -> Result<bool> {
        self.transaction(|tx| {
            let removed = tx.execute(
                "DELETE FROM blobs WHERE digest = ?1 AND digest NOT IN (SELECT digest FROM versions)",
                [digest.as_str()],
            )?;
            Ok(removed > 0)
        })
    }

    pub fn known_blobs(&self) -> Result<HashSet<String>> {
        self.read(|tx| {
            let mut statement = tx.prepare("SELECT digest FROM blobs")?;
            let rows = statement.query_map((), |row| row.get::<_, String>(0))?;
            rows.collect::<std::result::Result<_, _>>()
        })
    }

    // Components and versions.

    /// Adds a version; the same digest again is a no-op (`created` false), another digest is
    /// refused. A stable semver version moves the component's rolling channels, and with them the
    /// configurations that track them.
    pub fn add_version(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        digest: &Digest,
        labels: &BTreeMap<String, String>,
        build_channels: &[VersionLabel],
        creator: &str,
    ) -> Result<Added> {
        self.transaction(|tx| {
            crate::pipelines::refuse_env_component(tx, component)?;
            if let Some(existing) = find_version(tx, component, version)? {
                if &existing.digest == digest {
                    // Pushed again (a retried CI job): its build channels still move.
                    let moved = set_build_channels(tx, component, version, build_channels, creator)?;
                    return Ok(Added { info: existing, created: false, moved });
                }
                let mut statement = tx.prepare("SELECT version FROM versions WHERE component = ?1")?;
                let labels = statement
                    .query_map([component.as_str()], |row| row.get::<_, String>(0))?
                    .collect::<std::result::Result<Vec<_>, _>>()?;
                return Err(StoreError::VersionExists {
                    component: component.clone(),
                    version: version.clone(),
                    existing: existing.digest,
                    next: semver_order::next_after(labels.iter().map(String::as_str), version.as_str()),
                });
            }
            let known: Option<i64> = tx
                .query_row("SELECT size FROM blobs WHERE digest = ?1", [digest.as_str()], |row| row.get(0))
                .optional()?;
            if known.is_none() {
                return Err(StoreError::UnknownBlob(digest.clone()));
            }
            insert_version(tx, component, version, digest, labels, creator)?;
            let info = find_version(tx, component, version)?.expect("the version was just inserted");
            let summary = format!("pushed {component} {version} ({})", &digest.hex()[..12]);
            record_event(tx, EventKind::Push, creator, Some(component), None, None, &summary)?;
            let mut moved = update_channels(tx, component, creator, &format!("pushed {version}"))?;
            moved.extend(set_build_channels(tx, component, version, build_channels, creator)?);
            Ok(Added { info, created: true, moved })
        })
    }

    pub fn components(&self) -> Result<Vec<ComponentSummary>> {
        self.read(|tx| {
            let mut statement = tx.prepare("SELECT DISTINCT component FROM versions ORDER BY component")?;
            let names: Vec<String> =
                statement.query_map((), |row| row.get(0))?.collect::<std::result::Result<_, _>>()?;
            let mut components = Vec::new();
            for name in names {
                let name = parse(ComponentName::parse(&name))?;
                let versions = versions_of(tx, &name)?;
                components.push(ComponentSummary {
                    versions: versions.len() as u64,
                    newest: versions.last().map(|v| v.version.clone()),
                    name,
                });
            }
            Ok(components)
        })
    }

    /// The versions of a component, oldest first ([`semver_order`]). An unknown component is an error.
    pub fn versions(&self, component: &ComponentName) -> Result<Vec<VersionInfo>> {
        self.read(|tx| {
            let versions = versions_of(tx, component)?;
            if versions.is_empty() {
                return Err(StoreError::UnknownComponent(component.clone()));
            }
            Ok(versions)
        })
    }

    pub fn version(&self, component: &ComponentName, version: &VersionLabel) -> Result<VersionInfo> {
        self.read(|tx| resolve_version(tx, component, version))
    }

    /// Deletes a version that no configuration's current revision uses.
    pub fn delete_version(&self, component: &ComponentName, version: &VersionLabel) -> Result<()> {
        self.transaction(|tx| {
            crate::pipelines::refuse_env_component(tx, component)?;
            resolve_version(tx, component, version)?;
            if let Some(config) = current_user(tx, component, Some(version))? {
                return Err(StoreError::InUse { what: format!("version {version} of {component}"), config });
            }
            delete_version_rows(tx, component, version)?;
            // No configuration uses it, so none tracks a channel naming it: only channels move.
            update_channels(tx, component, "", &format!("deleted {version}"))?;
            Ok(())
        })
    }

    /// Deletes every version of a component that no configuration uses. Returns how many.
    pub fn delete_component(&self, component: &ComponentName) -> Result<u64> {
        self.transaction(|tx| {
            crate::pipelines::refuse_env_component(tx, component)?;
            if versions_of(tx, component)?.is_empty() {
                return Err(StoreError::UnknownComponent(component.clone()));
            }
            if let Some(config) = current_user(tx, component, None)? {
                return Err(StoreError::InUse { what: format!("component {component}"), config });
            }
            let removed = tx.execute("DELETE FROM versions WHERE component = ?1", [component.as_str()])? as u64;
            for table in ["deprecations", "channels", "channel_moves"] {
                tx.execute(&format!("DELETE FROM {table} WHERE component = ?1"), [component.as_str()])?;
            }
            Ok(removed)
        })
    }

    /// Withdraws a version from the channels (it stays downloadable and is never removed by
    /// retention); the configurations tracking a channel that named it move back. Returns the
    /// version with the configurations moved and those still running it, and the moved ones.
    pub fn deprecate(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        reason: &str,
        replacement: Option<&VersionLabel>,
        actor: &str,
    ) -> Result<(Deprecated, Vec<Config>)> {
        self.transaction(|tx| {
            crate::pipelines::refuse_env_component(tx, component)?;
            resolve_version(tx, component, version)?;
            if let Some(replacement) = replacement {
                resolve_version(tx, component, replacement)?;
            }
            tx.execute(
                "INSERT INTO deprecations (component, version, reason, replacement, at, by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (component, version) DO UPDATE SET reason = excluded.reason,
                 replacement = excluded.replacement, at = excluded.at, by = excluded.by",
                params![component.as_str(), version.as_str(), reason, replacement.map(|r| r.as_str()), now(), actor],
            )?;
            let summary = format!("deprecated {component} {version}: {reason}");
            record_event(tx, EventKind::Deprecate, actor, Some(component), None, None, &summary)?;
            let moved = update_channels(tx, component, actor, &format!("deprecated {version}: {reason}"))?;
            let deprecated = Deprecated {
                version: resolve_version(tx, component, version)?,
                moved: moved.iter().map(|c| c.name.clone()).collect(),
                still_running: current_users(tx, component, Some(version))?,
                channels: tx
                    .prepare("SELECT name FROM channels WHERE component = ?1 AND version = ?2 ORDER BY name")?
                    .query_map([component.as_str(), version.as_str()], |row| row.get::<_, String>(0))?
                    .map(|name| parse(VersionLabel::parse(&name?)))
                    .collect::<Result<_>>()?,
            };
            Ok((deprecated, moved))
        })
    }

    /// Returns a deprecated version to the channels (a no-op for one that is not deprecated).
    pub fn undeprecate(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        actor: &str,
    ) -> Result<(VersionInfo, Vec<Config>)> {
        self.transaction(|tx| {
            resolve_version(tx, component, version)?;
            let removed = tx.execute(
                "DELETE FROM deprecations WHERE component = ?1 AND version = ?2",
                params![component.as_str(), version.as_str()],
            )?;
            if removed > 0 {
                let summary = format!("undeprecated {component} {version}");
                record_event(tx, EventKind::Undeprecate, actor, Some(component), None, None, &summary)?;
            }
            let moved = update_channels(tx, component, actor, &format!("undeprecated {version}"))?;
            Ok((resolve_version(tx, component, version)?, moved))
        })
    }

    /// Points a manual channel at a version (an admin's choice); configurations tracking it move.
    /// The caller checked the name ([`semver_order::check_manual_channel`]).
    pub fn set_channel(
        &self,
        component: &ComponentName,
        name: &VersionLabel,
        version: &VersionLabel,
        actor: &str,
    ) -> Result<(ChannelInfo, Vec<Config>)> {
        self.transaction(|tx| {
            crate::pipelines::refuse_env_component(tx, component)?;
            resolve_version(tx, component, version)?;
            let reason = format!("set to {version}");
            let mut moved = BTreeMap::new();
            if move_channel(tx, component, name.as_str(), ChannelKind::Manual, Some(version.as_str()), actor, &reason)?
            {
                moved.insert(name.to_string(), version.to_string());
            }
            let configs = follow_channels(tx, component, &moved, actor)?;
            let channel = channels_of(tx, component)?.into_iter().find(|c| &c.name == name).expect("just set");
            Ok((channel, configs))
        })
    }

    /// Removes a build or manual channel; configurations tracking it stay on their version.
    pub fn remove_channel(&self, component: &ComponentName, name: &VersionLabel, actor: &str) -> Result<()> {
        self.transaction(|tx| {
            let kind: Option<String> = tx
                .query_row(
                    "SELECT kind FROM channels WHERE component = ?1 AND name = ?2",
                    params![component.as_str(), name.as_str()],
                    |row| row.get(0),
                )
                .optional()?;
            match kind.as_deref().and_then(ChannelKind::parse) {
                None => Err(StoreError::Invalid(format!("{component} has no channel {name}"))),
                Some(ChannelKind::Rolling) => Err(StoreError::Invalid(format!(
                    "{name} is a rolling channel of {component}: it follows the versions (deprecate one to move it)"
                ))),
                Some(kind) => {
                    move_channel(tx, component, name.as_str(), kind, None, actor, "removed")?;
                    Ok(())
                }
            }
        })
    }

    /// The component's channels, by name, each with its history.
    pub fn channels(&self, component: &ComponentName) -> Result<Vec<ChannelInfo>> {
        self.read(|tx| {
            if versions_of(tx, component)?.is_empty() {
                return Err(StoreError::UnknownComponent(component.clone()));
            }
            channels_of(tx, component)
        })
    }

    // Configurations.

    pub fn create_config(&self, name: &ConfigName, layers: &[LayerRef], actor: &str) -> Result<Config> {
        self.transaction(|tx| {
            let exists: Option<i64> = tx
                .query_row("SELECT revision FROM configs WHERE name = ?1", [name.as_str()], |row| row.get(0))
                .optional()?;
            if exists.is_some() {
                return Err(StoreError::ConfigExists(name.clone()));
            }
            check_one_layer_per_component(layers)?;
            for layer in layers {
                crate::pipelines::refuse_env_component(tx, &layer.component)?;
            }
            let resolved = layers.iter().map(|layer| resolve_layer(tx, layer)).collect::<Result<Vec<_>>>()?;
            tx.execute("INSERT INTO configs (name, revision) VALUES (?1, 0)", [name.as_str()])?;
            let change = format!("created with {}", describe_layers(&resolved));
            write_revision(tx, name, 1, &resolved, &change, EventKind::Create, actor)
        })
    }

    pub fn config(&self, name: &ConfigName) -> Result<Config> {
        self.read(|tx| current_config(tx, name))
    }

    /// The configuration's current revision, if it is newer than `after`.
    pub fn config_after(&self, name: &ConfigName, after: u64) -> Result<Option<Config>> {
        self.read(|tx| {
            let config = current_config(tx, name)?;
            Ok((config.revision > after).then_some(config))
        })
    }

    pub fn configs(&self) -> Result<Vec<ConfigSummary>> {
        self.read(|tx| {
            let mut statement = tx.prepare(
                "SELECT c.name, c.revision, r.hash, r.at, r.layers FROM configs c
                 JOIN config_revisions r ON r.config = c.name AND r.revision = c.revision ORDER BY c.name",
            )?;
            let rows = statement.query_map((), |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?;
            let mut configs = Vec::new();
            for row in rows {
                let (name, revision, hash, at, layers) = row?;
                let layers: Vec<Layer> = from_json(&layers)?;
                configs.push(ConfigSummary {
                    name: parse(ConfigName::parse(&name))?,
                    revision: revision as u64,
                    hash,
                    updated_at: parse_time(&at)?,
                    layers: layers.len() as u64,
                });
            }
            Ok(configs)
        })
    }

    /// Sets one or several layers (replacing each component's layer, or adding it at the end) in
    /// one new revision. A write that expects another revision is refused.
    pub fn set_layers(
        &self,
        name: &ConfigName,
        layers: &[LayerRef],
        expect: Option<u64>,
        actor: &str,
    ) -> Result<Config> {
        self.transaction(|tx| {
            let current = current_config(tx, name)?;
            check_revision(name, expect, current.revision)?;
            check_one_layer_per_component(layers)?;
            let components: Vec<&ComponentName> = layers.iter().map(|l| &l.component).collect();
            crate::pipelines::check_manual_change(tx, name, &components)?;
            let mut next = current.layers.clone();
            let mut changes = Vec::new();
            for layer in layers {
                let resolved = resolve_layer(tx, layer)?;
                match next.iter_mut().find(|l| l.component == layer.component) {
                    Some(existing) if existing.version == resolved.version && existing.channel == resolved.channel => {}
                    Some(existing) => {
                        changes.push(format!(
                            "{} {} → {}",
                            layer.component,
                            layer_version(existing),
                            layer_version(&resolved)
                        ));
                        *existing = resolved;
                    }
                    None => {
                        changes.push(format!("added {resolved}"));
                        next.push(resolved);
                    }
                }
            }
            if changes.is_empty() {
                return Ok(current);
            }
            write_revision(tx, name, current.revision + 1, &next, &changes.join("; "), EventKind::Set, actor)
        })
    }

    /// Moves one layer to the component's newest version ([`semver_order`]) that is not
    /// deprecated: the newest stable one when the layer is on a stable version, so that a bump
    /// never lands on a release candidate by surprise. The layer is pinned to it.
    pub fn bump(
        &self,
        name: &ConfigName,
        component: &ComponentName,
        expect: Option<u64>,
        actor: &str,
    ) -> Result<BumpResult> {
        self.transaction(|tx| {
            let current = current_config(tx, name)?;
            check_revision(name, expect, current.revision)?;
            crate::pipelines::check_manual_change(tx, name, &[component])?;
            let Some(position) = current.layers.iter().position(|l| &l.component == component) else {
                return Err(StoreError::Invalid(format!("configuration {name} has no layer of component {component}")));
            };
            let previous = current.layers[position].version.clone();
            let stable_only = semver_order::parse(previous.as_str()).is_some_and(|v| v.pre.is_empty());
            let versions = versions_of(tx, component)?;
            let live: Vec<&VersionInfo> = versions.iter().filter(|v| v.deprecated.is_none()).collect();
            let newest = live
                .iter()
                .rev()
                .find(|v| !stable_only || semver_order::parse(v.version.as_str()).is_some_and(|v| v.pre.is_empty()))
                .or(live.last())
                .copied()
                .cloned()
                .ok_or_else(|| StoreError::UnknownComponent(component.clone()))?;
            if newest.version == previous {
                return Ok(BumpResult {
                    config: current,
                    component: component.clone(),
                    previous: previous.clone(),
                    current: previous,
                });
            }
            let mut next = current.layers.clone();
            next[position] = Layer {
                component: component.clone(),
                version: newest.version.clone(),
                digest: newest.digest.clone(),
                channel: None,
            };
            let change = format!("{component} {previous} → {} (bump)", newest.version);
            let config = write_revision(tx, name, current.revision + 1, &next, &change, EventKind::Bump, actor)?;
            Ok(BumpResult { config, component: component.clone(), previous, current: newest.version })
        })
    }

    pub fn history(&self, name: &ConfigName) -> Result<Vec<HistoryEntry>> {
        self.read(|tx| {
            current_config(tx, name)?;
            let mut statement = tx.prepare(
                "SELECT revision, at, actor, change, hash, layers FROM config_revisions WHERE config = ?1 ORDER BY revision",
            )?;
            let rows = statement.query_map([name.as_str()], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?, row.get::<_, String>(4)?, row.get::<_, String>(5)?))
            })?;
            let mut entries = Vec::new();
            for row in rows {
                let (revision, at, actor, change, hash, layers) = row?;
                entries.push(HistoryEntry {
                    revision: revision as u64,
                    at: parse_time(&at)?,
                    actor,
                    change,
                    hash,
                    layers: from_json(&layers)?,
                });
            }
            Ok(entries)
        })
    }

    /// Writes a new revision whose layers are those of revision `to` (default: the one before the
    /// current). The versions must still exist.
    pub fn rollback(&self, name: &ConfigName, to: Option<u64>, expect: Option<u64>, actor: &str) -> Result<Config> {
        self.transaction(|tx| {
            let current = current_config(tx, name)?;
            check_revision(name, expect, current.revision)?;
            let target = to.unwrap_or(current.revision.saturating_sub(1));
            if target == 0 || target > current.revision {
                return Err(StoreError::UnknownRevision { config: name.clone(), revision: target });
            }
            let layers: Option<String> = tx
                .query_row(
                    "SELECT layers FROM config_revisions WHERE config = ?1 AND revision = ?2",
                    params![name.as_str(), target as i64],
                    |row| row.get(0),
                )
                .optional()?;
            let layers: Vec<Layer> = serde_json::from_str(
                &layers.ok_or_else(|| StoreError::UnknownRevision { config: name.clone(), revision: target })?,
            )
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
            for layer in &layers {
                resolve_version(tx, &layer.component, &layer.version)?;
            }
            let change = format!("rolled back to revision {target}");
            write_revision(tx, name, current.revision + 1, &layers, &change, EventKind::Rollback, actor)
        })
    }

    /// Deletes a configuration and its history; `expect` guards it like any other write.
    pub fn delete_config(&self, name: &ConfigName, expect: Option<u64>) -> Result<()> {
        self.transaction(|tx| {
            let current = current_config(tx, name)?;
            check_revision(name, expect, current.revision)?;
            if let Some(stage) = &current.stage {
                return Err(StoreError::IsStage {
                    config: name.clone(),
                    pipeline: stage.pipeline.clone(),
                    stage: stage.stage.clone(),
                });
            }
            tx.execute("DELETE FROM config_revisions WHERE config = ?1", [name.as_str()])?;
            tx.execute("DELETE FROM agents WHERE config = ?1", [name.as_str()])?;
            tx.execute("DELETE FROM configs WHERE name = ?1", [name.as_str()])?;
            tx.changed(name.as_str())?;
            Ok(())
        })
    }

    // Agents.

    /// Records an agent's report. The first token to report for a host owns it; a report older
    /// than the one stored (sent late, after an outage) only updates `last_seen`.
    pub fn report_agent(
        &self,
        config: &ConfigName,
        host: &HostName,
        reporter: &str,
        report: &AgentReport,
    ) -> Result<()> {
        self.transaction(|tx| {
            current_config(tx, config)?;
            let stored: Option<(String, String, i64, String, String)> = tx
                .query_row(
                    "SELECT reporter, reported_at, revision, hash, state FROM agents WHERE config = ?1 AND host = ?2",
                    [config.as_str(), host.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?)),
                )
                .optional()?;
            let outcome = matches!(report.state, AgentState::Active | AgentState::Failed | AgentState::RolledBack);
            let same_as_stored = stored.as_ref().is_some_and(|(_, _, revision, hash, state)| {
                *revision as u64 == report.revision && hash == &report.hash && state == report.state.as_str()
            });
            let stored = stored.map(|(owner, reported_at, ..)| (owner, reported_at));
            let at = now();
            match stored {
                Some((owner, _)) if owner != reporter => Err(StoreError::NotYourAgent {
                    config: config.clone(),
                    host: host.to_string(),
                    reporter: owner,
                    caller: reporter.to_owned(),
                }),
                Some((_, reported_at)) if parse_time(&reported_at)? > report.reported_at => {
                    tx.execute(
                        "UPDATE agents SET last_seen = ?3 WHERE config = ?1 AND host = ?2",
                        params![config.as_str(), host.as_str(), at],
                    )?;
                    Ok(())
                }
                _ => {
                    let report = &crate::pipelines::mask_report(tx, config, report)?;
                    let json = serde_json::to_string(report).map_err(|e| StoreError::Invalid(e.to_string()))?;
                    if outcome && !same_as_stored {
                        let mut summary = format!("{host}: {} on revision {}", report.state.as_str(), report.revision);
                        if let Some(error) = &report.error {
                            let first = error.lines().next().unwrap_or_default();
                            summary.push_str(&format!(": {}", first.chars().take(200).collect::<String>()));
                        }
                        let revision = Some(report.revision);
                        record_event(tx, EventKind::Agent, host.as_str(), None, Some(config), revision, &summary)?;
                    }
                    tx.execute(
                        "INSERT INTO agents (config, host, reporter, revision, hash, state, reported_at, last_seen, report)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (config, host) DO UPDATE SET reporter = excluded.reporter,
                         revision = excluded.revision, hash = excluded.hash, state = excluded.state,
                         reported_at = excluded.reported_at, last_seen = excluded.last_seen, report = excluded.report",
                        params![
                            config.as_str(),
                            host.as_str(),
                            reporter,
                            report.revision as i64,
                            report.hash,
                            report.state.as_str(),
                            report.reported_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            at,
                            json
                        ],
                    )?;
                    Ok(())
                }
            }
        })
    }

    /// The last report of every agent of `config`, by host name.
    pub fn agents(&self, config: &ConfigName) -> Result<Vec<AgentStatus>> {
        self.read(|tx| agents_of(tx, config))
    }

    // Tokens.

    pub fn create_token(
        &self,
        name: &TokenName,
        role: Role,
        pattern: Option<&str>,
        secret_hash: &str,
        creator: &str,
    ) -> Result<TokenInfo> {
        self.transaction(|tx| {
            let exists: Option<String> =
                tx.query_row("SELECT name FROM tokens WHERE name = ?1", [name.as_str()], |row| row.get(0)).optional()?;
            if exists.is_some() {
                return Err(StoreError::TokenExists(name.to_string()));
            }
            let at = now();
            tx.execute(
                "INSERT INTO tokens (name, hash, role, config_pattern, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name.as_str(), secret_hash, role.as_str(), pattern, at, creator],
            )?;
            Ok(TokenInfo { name: name.clone(), role, config_pattern: pattern.map(str::to_owned), created_at: parse_time(&at)?, created_by: creator.to_owned() })
        })
    }

    /// The token and the hash of its secret, for the caller to compare in constant time.
    pub fn token(&self, name: &str) -> Result<Option<(TokenInfo, String)>> {
        self.read(|tx| {
            let row = tx
                .query_row(
                    "SELECT name, role, config_pattern, created_at, created_by, hash FROM tokens WHERE name = ?1",
                    [name],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, Option<String>>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, String>(4)?,
                            row.get::<_, String>(5)?,
                        ))
                    },
                )
                .optional()?;
            row.map(|(name, role, pattern, at, by, hash)| Ok((token_info(&name, &role, pattern, &at, by)?, hash)))
                .transpose()
        })
    }

    pub fn tokens(&self) -> Result<Vec<TokenInfo>> {
        self.read(|tx| {
            let mut statement =
                tx.prepare("SELECT name, role, config_pattern, created_at, created_by FROM tokens ORDER BY name")?;
            let rows = statement.query_map((), |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?;
            let mut tokens = Vec::new();
            for row in rows {
                let (name, role, pattern, at, by) = row?;
                tokens.push(token_info(&name, &role, pattern, &at, by)?);
            }
            Ok(tokens)
        })
    }

    pub fn revoke_token(&self, name: &TokenName) -> Result<()> {
        self.transaction(|tx| {
            if tx.execute("DELETE FROM tokens WHERE name = ?1", [name.as_str()])? == 0 {
                return Err(StoreError::UnknownToken(name.to_string()));
            }
            Ok(())
        })
    }

    // Retention.

    /// Keeps at most `max_versions` versions of each component (0: no limit), never deleting the
    /// newest version nor one used by a configuration's current or last
    /// [`PROTECTED_REVISIONS`] revisions, nor one a channel names, nor the last one pushed, nor a
    /// deprecated one. The oldest ([`semver_order`]) go first. Returns what was deleted.
    pub fn apply_retention(&self, max_versions: u64) -> Result<Retention> {
        if max_versions == 0 {
            return Ok(Retention::default());
        }
        self.transaction(|tx| {
            let protected = protected_versions(tx)?;
            let mut retention = Retention::default();
            let mut statement = tx.prepare("SELECT DISTINCT component FROM versions")?;
            let components: Vec<String> =
                statement.query_map((), |row| row.get(0))?.collect::<std::result::Result<_, _>>()?;
            for component in components {
                let component = parse(ComponentName::parse(&component))?;
                // Environment layers are a few bytes each, and a stage's rollback needs them.
                if crate::pipelines::env_owner(tx, &component)?.is_some() {
                    continue;
                }
                let versions = versions_of(tx, &component)?;
                let mut excess = (versions.len() as u64).saturating_sub(max_versions);
                let newest = versions.last().map(|v| v.version.clone());
                let before = retention.removed.len();
                for version in &versions {
                    if excess == 0 {
                        break;
                    }
                    // Deprecated versions stay: they are the record of what was withdrawn and why.
                    if Some(&version.version) == newest.as_ref()
                        || version.deprecated.is_some()
                        || protected.contains(&(component.to_string(), version.version.to_string()))
                    {
                        continue;
                    }
                    delete_version_rows(tx, &component, &version.version)?;
                    retention.removed.push(LayerRef { component: component.clone(), version: version.version.clone() });
                    excess -= 1;
                }
                if retention.removed.len() > before {
                    retention.moved.extend(update_channels(tx, &component, "retention", "retention")?);
                }
            }
            Ok(retention)
        })
    }
}

fn publish_to(subscribers: &Mutex<Vec<Publish>>, change: &Change) {
    let subscribers = subscribers.lock().expect("the subscribers lock is never poisoned").clone();
    for publish in subscribers {
        publish(change.clone());
    }
}

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

fn token_info(name: &str, role: &str, pattern: Option<String>, at: &str, by: String) -> Result<TokenInfo> {
    Ok(TokenInfo {
        name: parse(TokenName::parse(name))?,
        role: role.parse().map_err(StoreError::Invalid)?,
        config_pattern: pattern,
        created_at: parse_time(at)?,
        created_by: by,
    })
}

/// A row of `channel_moves`: at, from, to, actor, reason.
type MoveRow = (String, Option<String>, Option<String>, String, String);

/// A row of [`VERSION_COLUMNS`], as SQLite gives it.
struct VersionRow {
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

fn version_row(row: &db::Row) -> Result<VersionRow> {
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

fn version_info(raw: VersionRow) -> Result<VersionInfo> {
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
    })
}

const VERSION_COLUMNS: &str = "v.component, v.version, v.digest, b.size, v.created_at, v.creator, v.labels, \
     d.reason, d.replacement, d.at, d.by FROM versions v JOIN blobs b ON b.digest = v.digest \
     LEFT JOIN deprecations d ON d.component = v.component AND d.version = v.version";

fn find_version(tx: &Tx<'_>, component: &ComponentName, version: &VersionLabel) -> Result<Option<VersionInfo>> {
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
fn update_channels(tx: &Tx<'_>, component: &ComponentName, actor: &str, reason: &str) -> Result<Vec<Config>> {
    let versions = versions_of(tx, component)?;
    let wanted =
        semver_order::rolling_channels(versions.iter().filter(|v| v.deprecated.is_none()).map(|v| v.version.as_str()));
    let mut statement = tx.prepare("SELECT name FROM channels WHERE component = ?1 AND kind = 'rolling'")?;
    let current: Vec<String> =
        statement.query_map([component.as_str()], |row| row.get(0))?.collect::<std::result::Result<_, _>>()?;
    let names: std::collections::BTreeSet<&String> = current.iter().chain(wanted.keys()).collect();
    let mut moved = BTreeMap::new();
    for name in names {
        let to = wanted.get(name).map(String::as_str);
        if move_channel(tx, component, name, ChannelKind::Rolling, to, actor, reason)?
            && let Some(to) = to
        {
            moved.insert(name.clone(), to.to_owned());
        }
    }
    follow_channels(tx, component, &moved, actor)
}

/// Points the build channels of a push at its version, and moves the configurations tracking them.
fn set_build_channels(
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
fn move_channel(
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
fn follow_channels(
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
        let mut layers: Vec<Layer> = from_json(&layers)?;
        let mut changes = Vec::new();
        for layer in layers.iter_mut().filter(|l| &l.component == component) {
            let Some(channel) = &layer.channel else { continue };
            let Some(to) = moved.get(channel.as_str()) else { continue };
            if layer.version.as_str() == to {
                continue;
            }
            let info = versions.iter().find(|v| v.version.as_str() == to).expect("a channel names a version");
            changes.push(format!("channel {component}:{channel} moved {} → {to}", layer.version));
            layer.version = info.version.clone();
            layer.digest = info.digest.clone();
        }
        if !changes.is_empty() {
            let name = parse(ConfigName::parse(&name))?;
            let change = changes.join("; ");
            changed.push(write_revision(tx, &name, revision as u64 + 1, &layers, &change, EventKind::Channel, actor)?);
        }
    }
    Ok(changed)
}

fn check_one_layer_per_component(layers: &[LayerRef]) -> Result<()> {
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
fn channels_of(tx: &Tx<'_>, component: &ComponentName) -> Result<Vec<ChannelInfo>> {
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

fn describe_layers(layers: &[Layer]) -> String {
    layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
}

pub(crate) fn current_config(tx: &Tx<'_>, name: &ConfigName) -> Result<Config> {
    let row = tx
        .query_row(
            "SELECT c.revision, r.hash, r.at, r.layers FROM configs c JOIN config_revisions r ON r.config = c.name AND r.revision = c.revision WHERE c.name = ?1",
            [name.as_str()],
            |row| Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?)),
        )
        .optional()?;
    let (revision, hash, at, layers) = row.ok_or_else(|| StoreError::UnknownConfig(name.clone()))?;
    Ok(Config {
        name: name.clone(),
        revision: revision as u64,
        hash,
        updated_at: parse_time(&at)?,
        layers: from_json(&layers)?,
        stage: crate::pipelines::stage_ref(tx, name)?,
    })
}

/// Writes revision `revision` of `name`; `kind` says for `depot history` what made it.
pub(crate) fn write_revision(
    tx: &Tx<'_>,
    name: &ConfigName,
    revision: u64,
    layers: &[Layer],
    change: &str,
    kind: EventKind,
    actor: &str,
) -> Result<Config> {
    let hash = config_hash(layers);
    let at = now();
    tx.execute(
        "INSERT INTO config_revisions (config, revision, at, actor, change, hash, layers, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![name.as_str(), revision as i64, at, actor, change, hash, serde_json::to_string(layers).expect("layers serialise"), kind.as_str()],
    )?;
    tx.execute("UPDATE configs SET revision = ?2 WHERE name = ?1", params![name.as_str(), revision as i64])?;
    tx.changed(name.as_str())?;
    Ok(Config {
        name: name.clone(),
        revision,
        hash,
        updated_at: parse_time(&at)?,
        layers: layers.to_vec(),
        stage: crate::pipelines::stage_ref(tx, name)?,
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
fn current_user(tx: &Tx<'_>, component: &ComponentName, version: Option<&VersionLabel>) -> Result<Option<ConfigName>> {
    Ok(current_users(tx, component, version)?.into_iter().next().map(|u| u.config))
}

/// The configurations whose current revision has a layer of `component` (at `version`, when
/// given), by name.
fn current_users(tx: &Tx<'_>, component: &ComponentName, version: Option<&VersionLabel>) -> Result<Vec<VersionUse>> {
    let mut statement = tx.prepare(
        "SELECT c.name, c.revision, r.layers FROM configs c JOIN config_revisions r ON r.config = c.name AND r.revision = c.revision ORDER BY c.name",
    )?;
    let rows = statement
        .query_map((), |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?)))?;
    let mut users = Vec::new();
    for row in rows {
        let (name, revision, layers) = row?;
        let layers: Vec<Layer> = from_json(&layers)?;
        if let Some(layer) =
            layers.into_iter().find(|l| &l.component == component && version.is_none_or(|v| &l.version == v))
        {
            users.push(VersionUse {
                config: parse(ConfigName::parse(&name))?,
                revision: revision as u64,
                channel: layer.channel,
            });
        }
    }
    Ok(users)
}

/// (component, version) pairs used by any configuration's current or last protected revisions.
fn protected_versions(tx: &Tx<'_>) -> Result<HashSet<(String, String)>> {
    let mut statement = tx.prepare(
        "SELECT r.layers FROM config_revisions r JOIN configs c ON c.name = r.config WHERE r.revision + ?1 >= c.revision",
    )?;
    let rows = statement.query_map([PROTECTED_REVISIONS as i64], |row| row.get::<_, String>(0))?;
    let mut protected = HashSet::new();
    for row in rows {
        let layers: Vec<Layer> = from_json(&row?)?;
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
