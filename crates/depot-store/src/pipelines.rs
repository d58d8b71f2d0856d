//! Pipelines in SQLite: stages (each a configuration `APP-STAGE`), gates, promotions,
//! environment layers, and the history that joins them. Every method is one transaction.

use std::collections::{BTreeMap, HashSet};

use crate::db::{OptionalExtension, Tx, params};
use depot_api::pipeline::{
    CreatePipeline, EnvChange, EventKind, Gate, Pipeline, PipelineEvent, PipelineStatus, Promote, Promotion,
    PromotionState, Stage, StageStatus, env_component, stage_config,
};
use depot_api::types::{Config, Layer, LayerRef};
use depot_api::{ComponentName, ConfigName, Digest, PipelineName, StageName, VersionLabel};

use crate::metadata::Metadata;
use crate::rows::{
    agents_of, check_revision, current_config, delete_version_rows, env_owner, from_json, insert_version, now, parse,
    parse_time, record_event, resolve_layer, resolve_version, write_revision,
};
use crate::rules::{health, runs, skipped_stages, unhealthy, upstream_of};
use crate::{GateRemedy, Result, StoreError};

/// A stage's environment: its configuration, revision, and the variables of the environment
/// layer it runs (version and values), if it has one.
#[derive(Debug)]
pub struct StageEnv {
    pub config: ConfigName,
    pub revision: u64,
    pub version: Option<u64>,
    pub vars: BTreeMap<String, String>,
}

/// See [`Metadata::blob_access`].
#[derive(Debug)]
pub struct BlobAccess {
    /// A version names it.
    pub referenced: bool,
    /// The configurations whose revisions (any, not only the current one) have it as a layer.
    pub configs: Vec<ConfigName>,
    /// The stages whose environment layer it is.
    pub env_stages: Vec<ConfigName>,
}

impl Metadata {
    /// Creates the pipeline and one configuration per stage. The first stage's layers track the
    /// components' channel `track`; the others start empty and receive versions by promotion.
    /// Returns the pipeline and the configurations created.
    pub fn create_pipeline(&self, request: &CreatePipeline, actor: &str) -> Result<(Pipeline, Vec<Config>)> {
        let track = request.track.clone().unwrap_or_else(|| VersionLabel::parse("latest").expect("a valid label"));
        self.transaction(|tx| {
            let name = &request.name;
            let exists = tx.prepare("SELECT 1 FROM pipelines WHERE name = ?1")?.exists([name.as_str()])?;
            if exists {
                return Err(StoreError::PipelineExists(name.clone()));
            }
            check_shape(request)?;
            tx.execute(
                "INSERT INTO pipelines (name, components, track, created_at, created_by) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name.as_str(),
                    serde_json::to_string(&request.components).expect("names serialise"),
                    track.as_str(),
                    now(),
                    actor
                ],
            )?;
            let mut configs = Vec::new();
            for (position, spec) in request.stages.iter().enumerate() {
                let config = stage_config(name, &spec.name).map_err(|e| {
                    StoreError::Invalid(format!("stage {} of pipeline {name} cannot name its configuration: {e}", spec.name))
                })?;
                let env = ComponentName::parse(&format!("{config}.env")).map_err(|_| {
                    StoreError::Invalid(format!(
                        "stage {} of pipeline {name} needs the component {config}.env, longer than {} bytes: \
                         shorten the pipeline or stage name",
                        spec.name,
                        depot_api::names::MAX_NAME_LEN
                    ))
                })?;
                if tx.prepare("SELECT 1 FROM versions WHERE component = ?1")?.exists([env.as_str()])? {
                    return Err(StoreError::Invalid(format!(
                        "component {env} exists; stage {} would generate it from its environment \
                         (delete it, or choose another pipeline name)",
                        spec.name
                    )));
                }
                if tx.prepare("SELECT 1 FROM policies WHERE component = ?1")?.exists([env.as_str()])? {
                    return Err(StoreError::Invalid(format!(
                        "component {env} has a signature policy; stage {} would generate it from its environment, \
                         which no one signs (remove the policy, or choose another pipeline name)",
                        spec.name
                    )));
                }
                if tx.prepare("SELECT 1 FROM configs WHERE name = ?1")?.exists([config.as_str()])? {
                    return Err(StoreError::Invalid(format!(
                        "configuration {config} already exists; a pipeline's stages are configurations of their own \
                         (delete it, or choose another pipeline name)"
                    )));
                }
                let after = match (&spec.after, position) {
                    (_, 0) => None,
                    (Some(after), _) => Some(after.clone()),
                    (None, _) => Some(request.stages[position - 1].name.clone()),
                };
                tx.execute(
                    "INSERT INTO stages (pipeline, name, position, after, config, gate) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        name.as_str(),
                        spec.name.as_str(),
                        position as i64,
                        after.as_ref().map(|a| a.as_str()),
                        config.as_str(),
                        Gate::None.as_str()
                    ],
                )?;
                let layers = if position == 0 {
                    request
                        .components
                        .iter()
                        .map(|component| tracking_layer(tx, component, &track))
                        .collect::<Result<Vec<_>>>()?
                } else {
                    Vec::new()
                };
                tx.execute("INSERT INTO configs (name, revision) VALUES (?1, 0)", [config.as_str()])?;
                let change = match &after {
                    None => format!("created as stage {} of pipeline {name}, tracking {track}", spec.name),
                    Some(after) => format!("created as stage {} of pipeline {name}, after {after}", spec.name),
                };
                configs.push(write_revision(tx, &config, 1, &layers, &change, EventKind::Create, actor)?);
            }
            Ok((load_pipeline(tx, name)?, configs))
        })
    }

    pub fn pipeline(&self, name: &PipelineName) -> Result<Pipeline> {
        self.read(|tx| load_pipeline(tx, name))
    }

    pub fn pipelines(&self) -> Result<Vec<Pipeline>> {
        self.read(|tx| {
            let names: Vec<String> = tx
                .prepare("SELECT name FROM pipelines ORDER BY name")?
                .query_map((), |row| row.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            names.iter().map(|name| load_pipeline(tx, &parse(PipelineName::parse(name))?)).collect()
        })
    }

    /// Sets the gate of promotions into `stage`, recorded in the history.
    pub fn set_gate(&self, name: &PipelineName, stage: &StageName, gate: Gate, actor: &str) -> Result<Pipeline> {
        self.transaction(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            let current = find_stage(&pipeline, stage)?;
            if current.after.is_none() {
                return Err(StoreError::Invalid(format!(
                    "{stage} is the first stage of {name}: it follows the channel {} and takes no promotion to gate",
                    pipeline.track
                )));
            }
            if current.gate != gate {
                tx.execute(
                    "UPDATE stages SET gate = ?3 WHERE pipeline = ?1 AND name = ?2",
                    params![name.as_str(), stage.as_str(), gate.as_str()],
                )?;
                let summary = format!("gate of {stage}: {} → {}", current.gate.as_str(), gate.as_str());
                record_event(tx, EventKind::Gate, actor, None, Some(&current.config), None, &summary)?;
            }
            load_pipeline(tx, name)
        })
    }

    /// Every stage with what it runs and how its agents are, and the promotions waiting.
    pub fn pipeline_status(&self, name: &PipelineName) -> Result<PipelineStatus> {
        self.read(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            let mut stages = Vec::new();
            for stage in &pipeline.stages {
                let config = current_config(tx, &stage.config)?;
                let env = env_component(&stage.config);
                let env_version = config.layers.iter().find(|l| l.component == env).map(|l| l.version.clone());
                let layers = config.layers.iter().filter(|l| l.component != env).cloned().collect();
                stages.push(StageStatus {
                    stage: stage.clone(),
                    revision: config.revision,
                    hash: config.hash.clone(),
                    updated_at: config.updated_at,
                    layers,
                    env_version,
                    health: health(&config, &agents_of(tx, &stage.config)?),
                    strategy: config.strategy.clone(),
                    rollout: crate::rollouts::rollout_of(tx, &stage.config)?,
                });
            }
            let pending = promotions(tx, name, Some(PromotionState::Pending))?;
            Ok(PipelineStatus {
                name: pipeline.name,
                components: pipeline.components,
                track: pipeline.track,
                stages,
                pending,
            })
        })
    }

    /// Promotes the source stage's component versions (never its environment layer) into
    /// `request.to`, through the target's gate: applied at once, refused (`require-healthy`
    /// without `force`), or left pending (`approval`).
    pub fn promote(&self, name: &PipelineName, request: &Promote, actor: &str) -> Result<Promotion> {
        self.transaction(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            let target = find_stage(&pipeline, &request.to)?.clone();
            let from = match (&request.from, &target.after) {
                (Some(from), _) => from.clone(),
                (None, Some(after)) => after.clone(),
                (None, None) => {
                    return Err(StoreError::Invalid(format!(
                        "{} is the first stage of {name}: it follows the channel {} and takes no promotion",
                        target.name, pipeline.track
                    )));
                }
            };
            let source = find_stage(&pipeline, &from)?.clone();
            if !upstream_of(&pipeline, &target.name).contains(&source.name) {
                return Err(StoreError::Invalid(format!(
                    "{from} does not come before {} in pipeline {name}; promote along the pipeline",
                    target.name
                )));
            }
            // Skipping a stage goes around its gate: only with --force, and recorded.
            let skipped = skipped_stages(&pipeline, &source.name, &target.name);
            let mut notes = Vec::new();
            if !skipped.is_empty() {
                let names = skipped.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ");
                if !request.force {
                    return Err(StoreError::GateClosed {
                        message: format!("promoting {from} into {} skips {names}, and the gate into it", target.name),
                        remedy: GateRemedy::PromoteThrough { stages: skipped.clone() },
                    });
                }
                notes.push(format!("forced past {names}"));
            }
            let source_config = current_config(tx, &source.config)?;
            let mut layers = Vec::new();
            for layer in &source_config.layers {
                if env_owner(tx, &layer.component)?.is_none() {
                    layers.push(Layer { channel: None, ..layer.clone() });
                }
            }
            if !request.components.is_empty() {
                for component in &request.components {
                    if !layers.iter().any(|l| &l.component == component) {
                        return Err(StoreError::Invalid(format!("stage {from} of {name} has no layer of {component}")));
                    }
                }
                layers.retain(|l| request.components.contains(&l.component));
            }
            if layers.is_empty() {
                return Err(StoreError::Invalid(format!("stage {from} of {name} runs no versions yet")));
            }
            // What the target already runs passes every gate: nothing would be written.
            let target_config = current_config(tx, &target.config)?;
            if layers.iter().all(|l| runs(&target_config.layers, l)) {
                let source = (&from, source_config.revision);
                let id =
                    insert_promotion(tx, name, source, (&target.name, target_config.revision), &layers, actor, None)?;
                return apply(tx, &pipeline, id, None);
            }
            // A withdrawn version goes no further down the pipeline unless forced.
            let withdrawn = deprecated(tx, &layers, &target_config.layers, None)?;
            if !withdrawn.is_empty() {
                let list = withdrawn.join("; ");
                if !request.force {
                    return Err(StoreError::GateClosed {
                        message: format!("promotion into {} is refused: {list}", target.name),
                        remedy: GateRemedy::ReplaceDeprecated {
                            stage: from.clone(),
                            first_stage: source.after.is_none(),
                        },
                    });
                }
                notes.push(format!("forced past {list}"));
            }
            match target.gate {
                Gate::None => {}
                Gate::RequireHealthy => {
                    let rollout = crate::rollouts::rollout_of(tx, &source.config)?;
                    if let Some(refusal) = unhealthy(&source_config, &agents_of(tx, &source.config)?, rollout.as_ref())
                    {
                        let message =
                            format!("promotion into {} is refused by its require-healthy gate: {refusal}", target.name);
                        if !request.force {
                            return Err(StoreError::GateClosed {
                                message,
                                remedy: GateRemedy::WaitHealthy {
                                    stage: from.clone(),
                                    revision: source_config.revision,
                                },
                            });
                        }
                        notes.push(format!("forced past require-healthy: {refusal}"));
                    }
                }
                Gate::Approval => {
                    let id = insert_promotion(
                        tx,
                        name,
                        (&from, source_config.revision),
                        (&target.name, target_config.revision),
                        &layers,
                        actor,
                        (!notes.is_empty()).then(|| notes.join("; ")),
                    )?;
                    let summary = format!(
                        "promotion {id} from {name}/{from} revision {} ({}) waits for approval",
                        source_config.revision,
                        describe(&layers)
                    );
                    record_event(tx, EventKind::PromotionRequested, actor, None, Some(&target.config), None, &summary)?;
                    return load_promotion(tx, name, id);
                }
            }
            let source = (&from, source_config.revision);
            let forced = (!notes.is_empty()).then(|| notes.join("; "));
            let id =
                insert_promotion(tx, name, source, (&target.name, target_config.revision), &layers, actor, forced)?;
            apply(tx, &pipeline, id, None)
        })
    }

    /// Approves a pending promotion (`id`, or the only one) and applies it. The approver must not
    /// be the one who asked.
    pub fn approve(&self, name: &PipelineName, id: Option<u64>, actor: &str) -> Result<Promotion> {
        self.transaction(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            let pending: Vec<u64> =
                promotions(tx, name, Some(PromotionState::Pending))?.into_iter().map(|p| p.id).collect();
            let id = match (id, pending.as_slice()) {
                (Some(id), _) if pending.contains(&id) => id,
                (None, [only]) => *only,
                _ => {
                    let state = id.and_then(|id| load_promotion(tx, name, id).ok()).map(|p| p.state);
                    return Err(StoreError::UnknownPromotion { pipeline: name.clone(), id, pending, state });
                }
            };
            let promotion = load_promotion(tx, name, id)?;
            if promotion.requested_by == actor {
                return Err(StoreError::SelfApproval { id, actor: actor.to_owned() });
            }
            // The promoted components must be where they were when it was asked: approving it
            // after a rollback or another promotion of them would undo that.
            let target = find_stage(&pipeline, &promotion.to)?;
            let asked_at: i64 =
                tx.query_row("SELECT target_revision FROM promotions WHERE id = ?1", [id as i64], |row| row.get(0))?;
            let then: String = tx.query_row(
                "SELECT layers FROM config_revisions WHERE config = ?1 AND revision = ?2",
                params![target.config.as_str(), asked_at],
                |row| row.get(0),
            )?;
            let then: Vec<Layer> = from_json(&then)?;
            let now = current_config(tx, &target.config)?;
            let at = |layers: &[Layer], component: &ComponentName| {
                layers.iter().find(|l| &l.component == component).map(|l| (l.version.clone(), l.digest.clone()))
            };
            let moved: Vec<String> = promotion
                .layers
                .iter()
                .filter(|l| at(&then, &l.component) != at(&now.layers, &l.component))
                .map(|l| l.component.to_string())
                .collect();
            if !moved.is_empty() {
                return Err(StoreError::GateClosed {
                    message: format!(
                        "{} changed in {name}/{} since promotion {id} was asked (revision {asked_at} → {})",
                        moved.join(", "),
                        promotion.to,
                        now.revision
                    ),
                    remedy: GateRemedy::RejectAndPromoteAgain { pipeline: name.clone(), id, force: false },
                });
            }
            // A version deprecated while the promotion waited was never weighed by the one who asked;
            // one it was forced past was.
            let withdrawn = deprecated(tx, &promotion.layers, &now.layers, promotion.forced.as_deref())?;
            if !withdrawn.is_empty() {
                return Err(StoreError::GateClosed {
                    message: format!("since promotion {id} was asked, {}", withdrawn.join("; ")),
                    remedy: GateRemedy::RejectAndPromoteAgain { pipeline: name.clone(), id, force: true },
                });
            }
            tx.execute("UPDATE promotions SET approved_by = ?2 WHERE id = ?1", params![id as i64, actor])?;
            apply(tx, &pipeline, id, Some(actor))
        })
    }

    /// Refuses a pending promotion: it is never applied.
    pub fn reject(&self, name: &PipelineName, id: u64, actor: &str) -> Result<Promotion> {
        self.transaction(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            let pending: Vec<u64> =
                promotions(tx, name, Some(PromotionState::Pending))?.into_iter().map(|p| p.id).collect();
            if !pending.contains(&id) {
                let state = load_promotion(tx, name, id).ok().map(|p| p.state);
                return Err(StoreError::UnknownPromotion { pipeline: name.clone(), id: Some(id), pending, state });
            }
            let promotion = load_promotion(tx, name, id)?;
            tx.execute(
                "UPDATE promotions SET state = ?2, approved_by = ?3 WHERE id = ?1",
                params![id as i64, PromotionState::Rejected.as_str(), actor],
            )?;
            let target = find_stage(&pipeline, &promotion.to)?;
            let summary = format!("promotion {id} from {name}/{} rejected", promotion.from);
            record_event(tx, EventKind::PromotionRejected, actor, None, Some(&target.config), None, &summary)?;
            load_promotion(tx, name, id)
        })
    }

    /// Deletes a pipeline with its stages' configurations and history, promotions, and
    /// environment layers (whose blobs garbage collection then removes). Returns the
    /// configurations deleted.
    pub fn delete_pipeline(&self, name: &PipelineName) -> Result<Vec<ConfigName>> {
        self.transaction(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            let mut deleted = Vec::new();
            for stage in &pipeline.stages {
                let config = stage.config.as_str();
                let env = env_component(&stage.config);
                let versions: Vec<String> = tx
                    .prepare("SELECT version FROM versions WHERE component = ?1")?
                    .query_map([env.as_str()], |row| row.get(0))?
                    .collect::<std::result::Result<_, _>>()?;
                for version in versions {
                    delete_version_rows(tx, &env, &parse(VersionLabel::parse(&version))?)?;
                }
                for table in ["env_versions", "config_revisions", "agents", "events"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE config = ?1"), [config])?;
                }
                tx.execute("DELETE FROM configs WHERE name = ?1", [config])?;
                tx.changed(config)?;
                deleted.push(stage.config.clone());
            }
            tx.execute("DELETE FROM promotions WHERE pipeline = ?1", [name.as_str()])?;
            tx.execute("DELETE FROM stages WHERE pipeline = ?1", [name.as_str()])?;
            tx.execute("DELETE FROM pipelines WHERE name = ?1", [name.as_str()])?;
            Ok(deleted)
        })
    }

    /// A stage's configuration, for the verbs that act on it as a configuration (rollback).
    pub fn stage_config(&self, name: &PipelineName, stage: &StageName) -> Result<ConfigName> {
        self.read(|tx| Ok(find_stage(&load_pipeline(tx, name)?, stage)?.config.clone()))
    }

    /// The variables of the environment layer `stage` runs now.
    pub fn stage_env(&self, name: &PipelineName, stage: &StageName) -> Result<StageEnv> {
        self.read(|tx| {
            let config = find_stage(&load_pipeline(tx, name)?, stage)?.config.clone();
            stage_env(tx, &config, self.sealer())
        })
    }

    /// The stage's variables with their values, for `actor`: the read is recorded in the history
    /// (who read which stage's values, when), in the same transaction.
    pub fn read_stage_env(&self, name: &PipelineName, stage: &StageName, actor: &str) -> Result<StageEnv> {
        self.transaction(|tx| {
            let config = find_stage(&load_pipeline(tx, name)?, stage)?.config.clone();
            let env = stage_env(tx, &config, self.sealer())?;
            let summary = format!("{actor} read the values of {name}/{stage} (env {})", env.version.unwrap_or(0));
            record_event(tx, EventKind::EnvRead, actor, None, Some(&config), Some(env.revision), &summary)?;
            Ok(env)
        })
    }

    /// Writes a new version of the stage's environment layer (`archive`, whose digest is
    /// `digest`, already recorded, holding `vars`) and a revision of the stage using it. The
    /// variables and the archive are stored sealed, never in the blob store. `expect` is the
    /// revision the caller read the variables from: a write in between is a conflict, and the
    /// caller reads again.
    #[allow(clippy::too_many_arguments)]
    pub fn set_env(
        &self,
        name: &PipelineName,
        stage: &StageName,
        expect: u64,
        change: &EnvChange,
        vars: &BTreeMap<String, String>,
        archive: &[u8],
        digest: &Digest,
        actor: &str,
    ) -> Result<Config> {
        let sealer = self.sealer().ok_or_else(crate::sealer::no_key)?;
        let sealed_vars = sealer.seal(serde_json::to_string(vars).expect("variables serialise").as_bytes());
        let sealed_archive = sealer.seal(archive);
        self.transaction(|tx| {
            crate::sealer::check_key(tx, sealer)?;
            let config_name = find_stage(&load_pipeline(tx, name)?, stage)?.config.clone();
            let current = current_config(tx, &config_name)?;
            check_revision(&config_name, Some(expect), current.revision)?;
            let component = env_component(&config_name);
            let next: i64 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM env_versions WHERE config = ?1",
                [config_name.as_str()],
                |row| row.get(0),
            )?;
            let version = VersionLabel::parse(&next.to_string()).expect("a number is a version label");
            let labels = BTreeMap::from([("generated".to_owned(), "depot env".to_owned())]);
            insert_version(tx, &component, &version, digest, &labels, actor)?;
            tx.execute(
                "INSERT INTO env_versions (config, version, vars, digest, at, actor, archive)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![config_name.as_str(), next, sealed_vars, digest.as_str(), now(), actor, sealed_archive],
            )?;
            let layer = Layer { component: component.clone(), version, digest: digest.clone(), channel: None };
            let mut layers = current.layers.clone();
            match layers.iter_mut().find(|l| l.component == component) {
                Some(existing) => *existing = layer,
                None => layers.push(layer),
            }
            let mut parts = Vec::new();
            if !change.set.is_empty() {
                parts.push(format!("set {}", change.set.keys().cloned().collect::<Vec<_>>().join(", ")));
            }
            if !change.unset.is_empty() {
                parts.push(format!("unset {}", change.unset.join(", ")));
            }
            let summary = format!("env {next}: {}", parts.join("; "));
            write_revision(tx, &config_name, current.revision + 1, &layers, &summary, EventKind::Env, actor)
        })
    }

    /// The environment layer archive `digest`, unsealed, if it is one.
    pub fn env_archive(&self, digest: &Digest) -> Result<Option<Vec<u8>>> {
        self.read(|tx| {
            let sealed: Option<Option<String>> = tx
                .query_row("SELECT archive FROM env_versions WHERE digest = ?1 LIMIT 1", [digest.as_str()], |row| {
                    row.get(0)
                })
                .optional()?;
            match sealed.flatten() {
                Some(text) => {
                    Ok(Some(crate::sealer::open(tx, self.sealer().ok_or_else(crate::sealer::no_key)?, &text)?))
                }
                None => Ok(None),
            }
        })
    }

    /// Who may download a blob besides operators: whether a version names it, and the stages
    /// whose environment layers it is (only their agents may read those values).
    pub fn blob_access(&self, digest: &Digest) -> Result<BlobAccess> {
        self.read(|tx| {
            let names: Vec<String> = tx
                .prepare("SELECT DISTINCT config FROM env_versions WHERE digest = ?1")?
                .query_map([digest.as_str()], |row| row.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            let referenced = tx.prepare("SELECT 1 FROM versions WHERE digest = ?1")?.exists([digest.as_str()])?;
            let env_stages = names.iter().map(|name| parse(ConfigName::parse(name))).collect::<Result<_>>()?;
            // A layer's JSON holds its digest, which has no LIKE wildcard in it.
            let configs: Vec<String> = tx
                .prepare("SELECT DISTINCT config FROM config_revisions WHERE layers LIKE '%' || CAST(?1 AS TEXT) || '%' ORDER BY config")?
                .query_map([digest.as_str()], |row| row.get(0))?
                .collect::<std::result::Result<_, _>>()?;
            let configs = configs.iter().map(|name| parse(ConfigName::parse(name))).collect::<Result<_>>()?;
            Ok(BlobAccess { referenced, configs, env_stages })
        })
    }

    /// The pipeline's timeline, oldest first: its stages' revisions (promotions, environment
    /// changes, rollbacks, channel moves), its agents' outcomes, gate changes, and the pushes and
    /// deprecations of its components. With `stage`, only that stage's entries (and, for the
    /// first stage, the pushes and deprecations that move it).
    pub fn pipeline_history(&self, name: &PipelineName, stage: Option<&StageName>) -> Result<Vec<PipelineEvent>> {
        self.read(|tx| {
            let pipeline = load_pipeline(tx, name)?;
            if let Some(stage) = stage {
                find_stage(&pipeline, stage)?;
            }
            let stages: Vec<&Stage> =
                pipeline.stages.iter().filter(|s| stage.is_none_or(|wanted| &s.name == wanted)).collect();
            // (at, order within the same instant, event)
            let mut events: Vec<(String, i64, PipelineEvent)> = Vec::new();
            for stage in &stages {
                let revisions = "SELECT at, actor, kind, revision, change, revision FROM config_revisions \
                                 WHERE config = ?1 ORDER BY revision";
                events.extend(recorded(tx, revisions, stage.config.as_str(), Some(&stage.name), None)?);
                let config_events =
                    "SELECT at, actor, kind, revision, summary, seq FROM events WHERE config = ?1 ORDER BY seq";
                events.extend(recorded(tx, config_events, stage.config.as_str(), Some(&stage.name), None)?);
            }
            let first = pipeline.stages.first().map(|s| &s.name);
            if stage.is_none() || stage == first {
                let component_events =
                    "SELECT at, actor, kind, revision, summary, seq FROM events WHERE component = ?1 ORDER BY seq";
                for component in &pipeline.components {
                    events.extend(recorded(tx, component_events, component.as_str(), None, Some(component))?);
                }
            }
            // RFC 3339 with microseconds in UTC sorts as text.
            events.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
            Ok(events.into_iter().map(|(_, _, event)| event).collect())
        })
    }
}

fn check_shape(request: &CreatePipeline) -> Result<()> {
    let name = &request.name;
    if request.components.is_empty() {
        return Err(StoreError::Invalid(format!("pipeline {name} needs at least one --component")));
    }
    if request.stages.is_empty() {
        return Err(StoreError::Invalid(format!("pipeline {name} needs at least one --stage")));
    }
    let mut components = HashSet::new();
    for component in &request.components {
        if !components.insert(component) {
            return Err(StoreError::Invalid(format!("component {component} is given twice")));
        }
    }
    let mut seen = HashSet::new();
    for (position, stage) in request.stages.iter().enumerate() {
        if let Some(after) = &stage.after {
            if position == 0 {
                return Err(StoreError::Invalid(format!(
                    "{} is the first stage: it follows the channel, not another stage (drop --after {after})",
                    stage.name
                )));
            }
            if !seen.contains(after) {
                return Err(StoreError::Invalid(format!(
                    "stage {} follows {after}, which is not a stage given before it",
                    stage.name
                )));
            }
        }
        if !seen.insert(&stage.name) {
            return Err(StoreError::Invalid(format!("stage {} is given twice", stage.name)));
        }
    }
    Ok(())
}

/// A layer of `component` tracking channel `track`, refused when the component has no such
/// channel yet.
fn tracking_layer(tx: &Tx<'_>, component: &ComponentName, track: &VersionLabel) -> Result<Layer> {
    let layer = resolve_layer(tx, &LayerRef { component: component.clone(), version: track.clone() });
    match layer {
        Ok(layer) if layer.channel.is_some() => Ok(layer),
        Ok(_) | Err(StoreError::UnknownVersion { .. }) => {
            Err(StoreError::NoChannelYet { component: component.clone(), channel: track.clone() })
        }
        Err(other) => Err(other),
    }
}

fn load_pipeline(tx: &Tx<'_>, name: &PipelineName) -> Result<Pipeline> {
    let row: Option<(String, String, String, String)> = tx
        .query_row(
            "SELECT components, track, created_at, created_by FROM pipelines WHERE name = ?1",
            [name.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let (components, track, created_at, created_by) = row.ok_or_else(|| StoreError::UnknownPipeline(name.clone()))?;
    let mut statement =
        tx.prepare("SELECT name, after, config, gate FROM stages WHERE pipeline = ?1 ORDER BY position")?;
    let rows: Vec<(String, Option<String>, String, String)> = statement
        .query_map([name.as_str()], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut stages = Vec::new();
    for (stage, after, config, gate) in rows {
        stages.push(Stage {
            name: parse(StageName::parse(&stage))?,
            after: after.map(|a| parse(StageName::parse(&a))).transpose()?,
            config: parse(ConfigName::parse(&config))?,
            gate: Gate::parse(&gate).ok_or_else(|| StoreError::Invalid(format!("unknown gate `{gate}`")))?,
        });
    }
    Ok(Pipeline {
        name: name.clone(),
        components: from_json(&components)?,
        track: parse(VersionLabel::parse(&track))?,
        stages,
        created_at: parse_time(&created_at)?,
        created_by,
    })
}

fn find_stage<'p>(pipeline: &'p Pipeline, stage: &StageName) -> Result<&'p Stage> {
    pipeline.stages.iter().find(|s| &s.name == stage).ok_or_else(|| {
        let names: Vec<&str> = pipeline.stages.iter().map(|s| s.name.as_str()).collect();
        StoreError::Invalid(format!("pipeline {} has no stage {stage} (stages: {})", pipeline.name, names.join(", ")))
    })
}

/// The layers of `layers` that would bring a deprecated version into `target`, each as
/// `C V is deprecated: reason (replacement R)`; those a promotion was `forced` past (its note
/// holds that line) are left out.
fn deprecated(tx: &Tx<'_>, layers: &[Layer], target: &[Layer], forced: Option<&str>) -> Result<Vec<String>> {
    let mut withdrawn = Vec::new();
    for layer in layers {
        // What the target runs already goes no further by this promotion.
        if runs(target, layer) {
            continue;
        }
        let row: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT reason, replacement FROM deprecations WHERE component = ?1 AND version = ?2",
                params![layer.component.as_str(), layer.version.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        let Some((reason, replacement)) = row else { continue };
        let key = format!("{} {} is deprecated", layer.component, layer.version);
        if forced.is_some_and(|forced| forced.contains(&key)) {
            continue;
        }
        let mut line = format!("{key}: {reason}");
        if let Some(replacement) = replacement {
            line.push_str(&format!(" (replacement {replacement})"));
        }
        withdrawn.push(line);
    }
    Ok(withdrawn)
}

fn describe(layers: &[Layer]) -> String {
    layers.iter().map(|l| format!("{} {}", l.component, l.version)).collect::<Vec<_>>().join(", ")
}

/// Records a promotion, pending until [`apply`]: from (stage, revision) to (stage, the revision
/// it is at when asked).
fn insert_promotion(
    tx: &Tx<'_>,
    name: &PipelineName,
    (from, source_revision): (&StageName, u64),
    (to, target_revision): (&StageName, u64),
    layers: &[Layer],
    actor: &str,
    forced: Option<String>,
) -> Result<u64> {
    let id: i64 = tx.query_row(
        "INSERT INTO promotions (pipeline, from_stage, to_stage, source_revision, target_revision, layers, requested_by, requested_at, state, forced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) RETURNING id",
        params![
            name.as_str(),
            from.as_str(),
            to.as_str(),
            source_revision as i64,
            target_revision as i64,
            serde_json::to_string(layers).expect("layers serialise"),
            actor,
            now(),
            PromotionState::Pending.as_str(),
            forced
        ],
        |row| row.get(0),
    )?;
    Ok(id as u64)
}

/// Writes promotion `id` into its target stage: the promoted layers replace the target's layers
/// of the same components (others are kept, new ones are added before the environment layer,
/// which stays last). Nothing is written when the target already runs them.
fn apply(tx: &Tx<'_>, pipeline: &Pipeline, id: u64, approved_by: Option<&str>) -> Result<Promotion> {
    let promotion = load_promotion(tx, &pipeline.name, id)?;
    let target = find_stage(pipeline, &promotion.to)?;
    let current = current_config(tx, &target.config)?;
    let env = env_component(&target.config);
    let mut next: Vec<Layer> = current.layers.iter().filter(|l| l.component != env).cloned().collect();
    let mut changes = Vec::new();
    for layer in &promotion.layers {
        match next.iter_mut().find(|l| l.component == layer.component) {
            Some(existing) if existing.digest == layer.digest && existing.version == layer.version => {}
            Some(existing) => {
                changes.push(format!("{} {} → {}", layer.component, existing.version, layer.version));
                *existing = layer.clone();
            }
            None => {
                changes.push(format!("{} {}", layer.component, layer.version));
                next.push(layer.clone());
            }
        }
    }
    // The pipeline's order, so that every stage overlays its layers alike.
    next.sort_by_key(|l| pipeline.components.iter().position(|c| c == &l.component).unwrap_or(usize::MAX));
    next.extend(current.layers.iter().filter(|l| l.component == env).cloned());
    for layer in &promotion.layers {
        resolve_version(tx, &layer.component, &layer.version)?;
    }
    let (state, config) = if changes.is_empty() {
        (PromotionState::Unchanged, current)
    } else {
        let mut change = format!(
            "promoted from {}/{} revision {}: {}",
            pipeline.name,
            promotion.from,
            promotion.source_revision,
            changes.join("; ")
        );
        if let Some(approver) = approved_by {
            change.push_str(&format!(" (asked by {}, approved by {approver})", promotion.requested_by));
        }
        if let Some(forced) = &promotion.forced {
            change.push_str(&format!(" ({forced})"));
        }
        let actor = approved_by.unwrap_or(&promotion.requested_by);
        (
            PromotionState::Applied,
            write_revision(tx, &target.config, current.revision + 1, &next, &change, EventKind::Promote, actor)?,
        )
    };
    tx.execute(
        "UPDATE promotions SET state = ?2, result_revision = ?3 WHERE id = ?1",
        params![id as i64, state.as_str(), config.revision as i64],
    )?;
    if state == PromotionState::Applied {
        // What waited to go into this stage was asked against what it ran before.
        tx.execute(
            "UPDATE promotions SET state = ?3 WHERE pipeline = ?1 AND to_stage = ?2 AND state = ?4",
            params![
                pipeline.name.as_str(),
                promotion.to.as_str(),
                PromotionState::Superseded.as_str(),
                PromotionState::Pending.as_str()
            ],
        )?;
    }
    Ok(Promotion { state, config: Some(config), ..load_promotion(tx, &pipeline.name, id)? })
}

type PromotionRow =
    (i64, String, String, i64, String, String, String, String, Option<String>, Option<String>, Option<i64>);

const PROMOTION_COLUMNS: &str = "id, from_stage, to_stage, source_revision, layers, requested_by, requested_at, state, \
     approved_by, forced, result_revision FROM promotions";

fn promotion_row(row: &crate::db::Row) -> Result<PromotionRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
    ))
}

fn promotion(name: &PipelineName, raw: PromotionRow) -> Result<Promotion> {
    let (id, from, to, source_revision, layers, requested_by, requested_at, state, decided_by, forced, _) = raw;
    let state = PromotionState::parse(&state)
        .ok_or_else(|| StoreError::Invalid(format!("unknown promotion state `{state}`")))?;
    let (approved_by, rejected_by) =
        if state == PromotionState::Rejected { (None, decided_by) } else { (decided_by, None) };
    Ok(Promotion {
        id: id as u64,
        pipeline: name.clone(),
        from: parse(StageName::parse(&from))?,
        to: parse(StageName::parse(&to))?,
        source_revision: source_revision as u64,
        layers: from_json(&layers)?,
        requested_by,
        requested_at: parse_time(&requested_at)?,
        state,
        approved_by,
        rejected_by,
        forced,
        config: None,
    })
}

fn load_promotion(tx: &Tx<'_>, name: &PipelineName, id: u64) -> Result<Promotion> {
    let raw = tx
        .query_row(
            &format!("SELECT {PROMOTION_COLUMNS} WHERE pipeline = ?1 AND id = ?2"),
            params![name.as_str(), id as i64],
            promotion_row,
        )
        .optional()?
        .ok_or_else(|| StoreError::UnknownPromotion {
            pipeline: name.clone(),
            id: Some(id),
            pending: Vec::new(),
            state: None,
        })?;
    promotion(name, raw)
}

fn promotions(tx: &Tx<'_>, name: &PipelineName, state: Option<PromotionState>) -> Result<Vec<Promotion>> {
    let mut statement = tx.prepare(&format!(
        "SELECT {PROMOTION_COLUMNS} WHERE pipeline = ?1 AND (CAST(?2 AS TEXT) IS NULL OR state = ?2) ORDER BY id"
    ))?;
    let rows: Vec<PromotionRow> = statement
        .query_map(params![name.as_str(), state.map(|s| s.as_str())], promotion_row)?
        .collect::<std::result::Result<_, _>>()?;
    rows.into_iter().map(|raw| promotion(name, raw)).collect()
}

fn stage_env(tx: &Tx<'_>, config: &ConfigName, sealer: Option<&crate::Sealer>) -> Result<StageEnv> {
    let current = current_config(tx, config)?;
    let component = env_component(config);
    let version = current
        .layers
        .iter()
        .find(|l| l.component == component)
        .map(|l| {
            l.version
                .as_str()
                .parse::<u64>()
                .map_err(|_| StoreError::Invalid(format!("environment layer {component} has version {}", l.version)))
        })
        .transpose()?;
    let vars = match version {
        None => BTreeMap::new(),
        Some(version) => {
            let vars: String = tx.query_row(
                "SELECT vars FROM env_versions WHERE config = ?1 AND version = ?2",
                params![config.as_str(), version as i64],
                |row| row.get(0),
            )?;
            crate::sealer::open_vars(tx, sealer, &vars)?
        }
    };
    Ok(StageEnv { config: config.clone(), revision: current.revision, version, vars })
}

/// History entries as `query` (at, actor, kind, revision, summary, order) selects them for
/// `value`, each with its time and order for sorting.
fn recorded(
    tx: &Tx<'_>,
    query: &str,
    value: &str,
    stage: Option<&StageName>,
    component: Option<&ComponentName>,
) -> Result<Vec<(String, i64, PipelineEvent)>> {
    let mut statement = tx.prepare(query)?;
    let rows: Vec<(String, String, String, Option<i64>, String, i64)> = statement
        .query_map([value], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?, row.get(5)?)))?
        .collect::<std::result::Result<_, _>>()?;
    let mut events = Vec::new();
    for (at, actor, kind, revision, summary, seq) in rows {
        let event = PipelineEvent {
            at: parse_time(&at)?,
            actor,
            kind: event_kind(&kind)?,
            stage: stage.cloned(),
            component: component.cloned(),
            revision: revision.map(|r| r as u64),
            summary,
        };
        events.push((at, seq, event));
    }
    Ok(events)
}

fn event_kind(text: &str) -> Result<EventKind> {
    EventKind::parse(text).ok_or_else(|| StoreError::Invalid(format!("unknown history kind `{text}`")))
}
