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
    AgentReport, AgentState, AgentStatus, BumpResult, ChannelInfo, ComponentSummary, Config, ConfigSummary, Deprecated,
    HistoryEntry, Layer, LayerRef, Role, TokenInfo, VersionInfo,
};
use depot_api::{ComponentName, ConfigName, Digest, HostName, TokenName, VersionLabel};

use crate::rows::{
    agents_of, channels_of, check_manual_change, check_one_layer_per_component, check_revision, current_config,
    current_user, current_users, delete_version_rows, describe_layers, env_owner, find_version, follow_channels,
    from_json, insert_version, layer_version, mask_report, move_channel, now, parse, parse_time, protected_versions,
    record_event, refuse_env_component, resolve_layer, resolve_version, set_build_channels, token_info,
    update_channels, versions_of, write_revision,
};
use crate::{Result, StoreError, rules};

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
    /// The key environment values are sealed with ([`Metadata::use_sealer`]).
    sealer: Arc<std::sync::OnceLock<crate::Sealer>>,
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
        Ok(Metadata { backend, subscribers: Arc::default(), sealer: Arc::default() })
    }

    /// The same database, without this handle's subscribers: for a subscriber that reads what
    /// changed (holding the handle itself would keep it alive forever).
    pub fn detached(&self) -> Metadata {
        Metadata { backend: self.backend.clone(), subscribers: Arc::default(), sealer: self.sealer.clone() }
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

    /// Seals with `sealer` from now on (once; later calls are ignored): see
    /// [`Metadata::use_sealer`], which checks it first.
    pub(crate) fn set_sealer(&self, sealer: crate::Sealer) {
        let _ = self.sealer.set(sealer);
    }

    pub(crate) fn sealer(&self) -> Option<&crate::Sealer> {
        self.sealer.get()
    }

    /// `sqlite` or `postgres`.
    pub fn engine(&self) -> &'static str {
        self.backend.engine_name()
    }

    /// Checks that the database answers, and records the secrets key this handle seals with
    /// (a replica left with a rotated-out key is not healthy).
    pub fn ping(&self) -> Result<()> {
        self.read(|tx| {
            tx.query_row("SELECT 1", (), |_| Ok(()))?;
            match self.sealer() {
                Some(sealer) => crate::sealer::check_key(tx, sealer),
                None => Ok(()),
            }
        })
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
                // Uploaded again: its grace before collection starts again, so that garbage
                // collection does not take a blob a push is about to name.
                "INSERT INTO blobs (digest, size, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO UPDATE SET created_at = excluded.created_at",
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
            let rows = statement.query_map([cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)], |row| {
                row.get::<_, String>(0)
            })?;
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
            tx.execute("DELETE FROM blob_frames WHERE digest = ?1", [digest.as_str()])?;
            Ok(removed > 0)
        })
    }

    /// Collects blob `digest`: with `cutoff`, forgets its record if no version references it and
    /// it was recorded (or recorded again) before `cutoff`; without, only if it has no record at
    /// all. Then runs `remove` (which deletes its bytes) inside the same write transaction, so
    /// that an upload recording the blob meanwhile either came first (and the blob is kept) or
    /// waits until the bytes are gone, and then finds them gone. The bytes `remove` freed, or
    /// `None` when the blob is kept.
    pub fn collect_blob(
        &self,
        digest: &Digest,
        cutoff: Option<DateTime<Utc>>,
        remove: impl FnOnce() -> Result<u64>,
    ) -> Result<Option<u64>> {
        self.transaction(|tx| {
            let collectable = match cutoff {
                Some(cutoff) => {
                    tx.execute(
                        "DELETE FROM blobs WHERE digest = ?1 AND created_at < ?2 \
                         AND digest NOT IN (SELECT digest FROM versions)",
                        params![digest.as_str(), cutoff.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)],
                    )? > 0
                }
                None => !tx.prepare("SELECT 1 FROM blobs WHERE digest = ?1")?.exists([digest.as_str()])?,
            };
            if !collectable {
                return Ok(None);
            }
            tx.execute("DELETE FROM blob_frames WHERE digest = ?1", [digest.as_str()])?;
            remove().map(Some)
        })
    }

    /// The frame index of a blob (JSON, see `depot_api::types::BlobFrames`) as
    /// [`Metadata::record_blob_frames`] kept it, with the size of the blob it was read from.
    pub fn blob_frames(&self, digest: &Digest) -> Result<Option<(u64, String)>> {
        self.read(|tx| {
            let row: Option<(i64, String)> = tx
                .query_row("SELECT size, frames FROM blob_frames WHERE digest = ?1", [digest.as_str()], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?;
            Ok(row.map(|(size, frames)| (size as u64, frames)))
        })
    }

    /// Keeps the frame index the registry read from a blob of `size` bytes (replacing an older
    /// one). It goes when the blob is collected.
    pub fn record_blob_frames(&self, digest: &Digest, size: u64, frames: &str) -> Result<()> {
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO blob_frames (digest, size, frames) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (digest) DO UPDATE SET size = excluded.size, frames = excluded.frames",
                params![digest.as_str(), size as i64, frames],
            )?;
            Ok(())
        })
    }

    /// The blobs the blob store holds, by the metadata: every one recorded but the environment
    /// layers kept sealed in the database.
    pub fn known_blobs(&self) -> Result<HashSet<String>> {
        self.read(|tx| {
            let mut statement = tx.prepare(
                "SELECT digest FROM blobs WHERE digest NOT IN (SELECT digest FROM env_versions WHERE archive IS NOT NULL)",
            )?;
            let rows = statement.query_map((), |row| row.get::<_, String>(0))?;
            rows.collect::<std::result::Result<_, _>>()
        })
    }

    // Components and versions.

    /// Adds a version; the same digest again is a no-op (`created` false), another digest is
    /// refused. A stable semver version moves the component's rolling channels, and with them the
    /// configurations that track them.
    #[allow(clippy::too_many_arguments)]
    pub fn add_version(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        digest: &Digest,
        labels: &BTreeMap<String, String>,
        build_channels: &[VersionLabel],
        signatures: &[depot_api::types::SignatureInfo],
        creator: &str,
    ) -> Result<Added> {
        self.transaction(|tx| {
            refuse_env_component(tx, component)?;
            if let Some(existing) = find_version(tx, component, version)? {
                if &existing.digest == digest {
                    // Pushed again (a retried CI job): its build channels still move, and its
                    // signatures join the version's.
                    for signature in signatures {
                        crate::signatures::insert(tx, component, version, signature)?;
                    }
                    let moved = set_build_channels(tx, component, version, build_channels, creator)?;
                    let mut info = [find_version(tx, component, version)?.expect("the version exists")];
                    crate::signatures::attach(tx, &mut info)?;
                    let [info] = info;
                    return Ok(Added { info, created: false, moved });
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
            for signature in signatures {
                crate::signatures::insert(tx, component, version, signature)?;
            }
            crate::policies::require_signed(tx, component, version, digest)?;
            let mut info = [find_version(tx, component, version)?.expect("the version was just inserted")];
            crate::signatures::attach(tx, &mut info)?;
            let [info] = info;
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
            let mut versions = versions_of(tx, component)?;
            if versions.is_empty() {
                return Err(StoreError::UnknownComponent(component.clone()));
            }
            crate::signatures::attach(tx, &mut versions)?;
            Ok(versions)
        })
    }

    pub fn version(&self, component: &ComponentName, version: &VersionLabel) -> Result<VersionInfo> {
        self.read(|tx| {
            let mut info = [resolve_version(tx, component, version)?];
            crate::signatures::attach(tx, &mut info)?;
            let [info] = info;
            Ok(info)
        })
    }

    /// Deletes a version that no configuration's current revision uses.
    pub fn delete_version(&self, component: &ComponentName, version: &VersionLabel) -> Result<()> {
        self.transaction(|tx| {
            refuse_env_component(tx, component)?;
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
            refuse_env_component(tx, component)?;
            if versions_of(tx, component)?.is_empty() {
                return Err(StoreError::UnknownComponent(component.clone()));
            }
            if let Some(config) = current_user(tx, component, None)? {
                return Err(StoreError::InUse { what: format!("component {component}"), config });
            }
            let removed = tx.execute("DELETE FROM versions WHERE component = ?1", [component.as_str()])? as u64;
            for table in ["deprecations", "channels", "channel_moves", "signatures", "attestations"] {
                tx.execute(&format!("DELETE FROM {table} WHERE component = ?1"), [component.as_str()])?;
            }
            Ok(removed)
        })
    }

    /// Withdraws a version from the channels (it stays downloadable and is never removed by
    /// retention); the configurations tracking a channel that named it move back (with
    /// `at_once`, on every host now, past a rolling strategy's rollout). Returns the version with the
    /// configurations moved and those still running it, and the moved ones.
    pub fn deprecate(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        reason: &str,
        replacement: Option<&VersionLabel>,
        actor: &str,
        at_once: bool,
    ) -> Result<(Deprecated, Vec<Config>)> {
        self.transaction(|tx| {
            refuse_env_component(tx, component)?;
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
            if at_once {
                for config in &moved {
                    crate::rollouts::skip(tx, &config.name, actor)?;
                }
            }
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
            refuse_env_component(tx, component)?;
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
                refuse_env_component(tx, &layer.component)?;
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

    /// How many versions and configurations are stored (for the metrics), counted by the
    /// database without reading a row into the process.
    pub fn counts(&self) -> Result<(u64, u64)> {
        self.read(|tx| {
            let (versions, configs) =
                tx.query_row("SELECT (SELECT COUNT(*) FROM versions), (SELECT COUNT(*) FROM configs)", (), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })?;
            Ok((versions as u64, configs as u64))
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
            check_manual_change(tx, name, &components)?;
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

    /// Replaces the whole list of layers with `layers`, in that order, in one new revision (seed
    /// 001's `addconf` on an existing name): nothing changes when it is the same list.
    pub fn replace_layers(
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
            let mut components: Vec<&ComponentName> = layers.iter().map(|l| &l.component).collect();
            components.extend(current.layers.iter().map(|l| &l.component));
            check_manual_change(tx, name, &components)?;
            let next = layers.iter().map(|layer| resolve_layer(tx, layer)).collect::<Result<Vec<_>>>()?;
            if next == current.layers {
                return Ok(current);
            }
            let change =
                format!("layers replaced: {}", next.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", "));
            write_revision(tx, name, current.revision + 1, &next, &change, EventKind::Set, actor)
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
            check_manual_change(tx, name, &[component])?;
            let Some(position) = current.layers.iter().position(|l| &l.component == component) else {
                return Err(StoreError::Invalid(format!("configuration {name} has no layer of component {component}")));
            };
            let previous = current.layers[position].version.clone();
            let versions = versions_of(tx, component)?;
            let newest = rules::bump_target(&versions, &previous)
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
    /// current). The versions must still exist. With `at_once`, every host may run it now, past
    /// a rolling strategy's rollout.
    pub fn rollback(
        &self,
        name: &ConfigName,
        to: Option<u64>,
        expect: Option<u64>,
        actor: &str,
        at_once: bool,
    ) -> Result<Config> {
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
            let config = write_revision(tx, name, current.revision + 1, &layers, &change, EventKind::Rollback, actor)?;
            if at_once {
                crate::rollouts::skip(tx, name, actor)?;
            }
            Ok(config)
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
            let stored: Option<(String, String, i64, String, String, Option<String>)> = tx
                .query_row(
                    "SELECT reporter, reported_at, revision, hash, state, since FROM agents WHERE config = ?1 AND host = ?2",
                    [config.as_str(), host.as_str()],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)),
                )
                .optional()?;
            let outcome = matches!(
                report.state,
                AgentState::Active | AgentState::Failed | AgentState::RolledBack | AgentState::Untrusted
            );
            let same_as_stored = stored.as_ref().is_some_and(|(_, _, revision, hash, state, _)| {
                *revision as u64 == report.revision && hash == &report.hash && state == report.state.as_str()
            });
            let at = now();
            // Since when the host has been in this state, by the registry's clock.
            let since = match &stored {
                Some((.., Some(since))) if same_as_stored => since.clone(),
                _ => at.clone(),
            };
            let stored = stored.map(|(owner, reported_at, ..)| (owner, reported_at));
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
                    let report = &mask_report(tx, config, report, self.sealer())?;
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
                        "INSERT INTO agents (config, host, reporter, revision, hash, state, reported_at, last_seen, report, since)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                         ON CONFLICT (config, host) DO UPDATE SET reporter = excluded.reporter,
                         revision = excluded.revision, hash = excluded.hash, state = excluded.state,
                         reported_at = excluded.reported_at, last_seen = excluded.last_seen, report = excluded.report,
                         since = excluded.since",
                        params![
                            config.as_str(),
                            host.as_str(),
                            reporter,
                            report.revision as i64,
                            report.hash,
                            report.state.as_str(),
                            report.reported_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                            at,
                            json,
                            since
                        ],
                    )?;
                    crate::rollouts::after_report(tx, config, host)
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
                if env_owner(tx, &component)?.is_some() {
                    continue;
                }
                let versions = versions_of(tx, &component)?;
                let victims = rules::retention_victims(&component, &versions, &protected, max_versions);
                for version in &victims {
                    delete_version_rows(tx, &component, &version.version)?;
                    retention.removed.push(LayerRef { component: component.clone(), version: version.version.clone() });
                }
                if !victims.is_empty() {
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
