//! Pipelines: stages, gates, promotions, and each stage's environment layer.

use std::collections::BTreeMap;

use depot_api::pipeline::{
    CreatePipeline, ENV_FILE, EnvChange, EnvView, Gate, Pipeline, PipelineEvent, PipelineStatus, Promote, Promotion,
    check_env,
};
use depot_api::types::{Config, Role};
use depot_api::{Digest, ErrorCode, PipelineName, StageName, VersionLabel};
use depot_store::StoreError;

use crate::{Caller, Error, Need, Registry, Result};

/// The dotenv file's mode in the archive (the release drops write bits: 0440 on the host), so
/// that the values are not world-readable.
const ENV_FILE_MODE: u32 = 0o640;

/// How often an environment change is retried when another write lands between its read and
/// its write.
const ENV_ATTEMPTS: usize = 5;

impl Registry {
    pub async fn pipelines(&self, caller: &Caller) -> Result<Vec<Pipeline>> {
        caller.require(Need::Viewer)?;
        self.store(|metadata| metadata.pipelines()).await
    }

    /// Creates the pipeline and one configuration per stage.
    pub async fn create_pipeline(&self, caller: &Caller, request: CreatePipeline) -> Result<Pipeline> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        let (pipeline, _configs) = self.store(move |metadata| metadata.create_pipeline(&request, &actor)).await?;
        Ok(pipeline)
    }

    pub async fn pipeline_status(&self, caller: &Caller, name: PipelineName) -> Result<PipelineStatus> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.pipeline_status(&name)).await
    }

    /// Sets a stage's gate (admin).
    pub async fn set_gate(
        &self,
        caller: &Caller,
        name: PipelineName,
        stage: StageName,
        gate: Gate,
    ) -> Result<Pipeline> {
        caller.require(Need::Admin)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.set_gate(&name, &stage, gate, &actor)).await
    }

    /// Applies a promotion, or leaves it pending when the target stage's gate asks for approval.
    pub async fn promote(&self, caller: &Caller, name: PipelineName, request: Promote) -> Result<Promotion> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.promote(&name, &request, &actor)).await
    }

    /// Approves promotion `id`: anyone with the role but the one who asked for it.
    pub async fn approve(&self, caller: &Caller, name: PipelineName, id: u64) -> Result<Promotion> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.approve(&name, Some(id), &actor)).await
    }

    pub async fn reject(&self, caller: &Caller, name: PipelineName, id: u64) -> Result<Promotion> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.reject(&name, id, &actor)).await
    }

    /// Deletes the pipeline with its stages' configurations (admin).
    pub async fn delete_pipeline(&self, caller: &Caller, name: PipelineName) -> Result<()> {
        caller.require(Need::Admin)?;
        self.store(move |metadata| metadata.delete_pipeline(&name).map(drop)).await
    }

    /// Rolls a stage's configuration back to an earlier revision's layers.
    pub async fn rollback_stage(
        &self,
        caller: &Caller,
        name: PipelineName,
        stage: StageName,
        to_revision: Option<u64>,
        expect_revision: Option<u64>,
        now: bool,
    ) -> Result<Config> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| {
            let config = metadata.stage_config(&name, &stage)?;
            metadata.rollback(&config, to_revision, expect_revision, &actor, now)
        })
        .await
    }

    /// A stage's variables: their values for operators and admins when `show`, masked otherwise.
    pub async fn stage_env(
        &self,
        caller: &Caller,
        name: PipelineName,
        stage: StageName,
        show: bool,
    ) -> Result<EnvView> {
        caller.require(Need::Viewer)?;
        if show && !matches!(caller.role, Role::Operator | Role::Admin) {
            return Err(Error::refused(
                ErrorCode::Forbidden,
                format!(
                    "token {} ({}) may not read the values of {name}/{stage}'s variables",
                    caller.name,
                    caller.role.as_str()
                ),
            )
            .with_hint("operators and admins may; viewers may list the names"));
        }
        let actor = caller.name.clone();
        self.store(move |metadata| {
            let env = if show {
                metadata.read_stage_env(&name, &stage, &actor)?
            } else {
                metadata.stage_env(&name, &stage)?
            };
            let mut vars = env.vars;
            if !show {
                vars.values_mut().for_each(|value| *value = "********".to_owned());
            }
            Ok(EnvView {
                pipeline: name,
                stage,
                config: env.config,
                revision: env.revision,
                version: env.version.map(|v| VersionLabel::parse(&v.to_string()).expect("a number is a label")),
                masked: !show,
                vars,
            })
        })
        .await
    }

    /// Changes a stage's variables: a new environment layer (one dotenv file) stored as a blob
    /// and a new revision naming it, or the configuration as it is when nothing changes.
    pub async fn set_env(
        &self,
        caller: &Caller,
        name: PipelineName,
        stage: StageName,
        change: EnvChange,
    ) -> Result<Config> {
        caller.require(Need::Operator)?;
        for (key, value) in &change.set {
            check_env(key, Some(value)).map_err(Error::invalid)?;
        }
        for key in &change.unset {
            check_env(key, None).map_err(Error::invalid)?;
            if change.set.contains_key(key) {
                return Err(Error::invalid(format!("{key} is both set and unset")));
            }
        }
        // The blob is written off the database's thread, so the read and the write are two
        // transactions: when another write lands in between, read again.
        for _ in 0..ENV_ATTEMPTS {
            let (pipeline, stage_name) = (name.clone(), stage.clone());
            let current = self.store(move |metadata| metadata.stage_env(&pipeline, &stage_name)).await?;
            let mut vars = current.vars.clone();
            vars.extend(change.set.clone());
            for key in &change.unset {
                vars.remove(key);
            }
            // Nothing to change: the same variables, or removing what a stage without an
            // environment layer never had.
            if vars == current.vars && (current.version.is_some() || vars.is_empty()) {
                let config = current.config.clone();
                return self.store(move |metadata| metadata.config(&config)).await;
            }
            let (archive, digest) = env_archive(&vars)?;
            let (pipeline, stage_name, change, actor) =
                (name.clone(), stage.clone(), change.clone(), caller.name.clone());
            let written = self
                .store(move |metadata| {
                    metadata.record_blob(&digest, archive.len() as u64)?;
                    Ok(metadata.set_env(
                        &pipeline,
                        &stage_name,
                        current.revision,
                        &change,
                        &vars,
                        &archive,
                        &digest,
                        &actor,
                    ))
                })
                .await?;
            match written {
                Err(StoreError::ConfigConflict { .. }) => continue,
                other => return Ok(other?),
            }
        }
        Err(Error::refused(
            ErrorCode::ConfigConflict,
            format!("{name}/{stage} kept changing while its environment was written"),
        )
        .with_hint("try again"))
    }

    /// The pipeline's timeline, oldest first (with `stage`, only that stage's entries).
    pub async fn pipeline_history(
        &self,
        caller: &Caller,
        name: PipelineName,
        stage: Option<StageName>,
    ) -> Result<Vec<PipelineEvent>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.pipeline_history(&name, stage.as_ref())).await
    }
}

/// The environment layer (one dotenv file at [`ENV_FILE`]) and its digest. It is kept sealed in
/// the database with the variables, never in the blob store.
fn env_archive(vars: &BTreeMap<String, String>) -> Result<(Vec<u8>, Digest)> {
    // A random note makes the digest, which viewers see, useless for confirming guessed values.
    let nonce: [u8; 16] = rand::random();
    let note: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
    let text = depot_api::pipeline::render_dotenv(vars, &note);
    let archive = depot_release::archive::pack_files(&[(ENV_FILE, text.as_bytes(), ENV_FILE_MODE)])
        .map_err(|e| Error::Internal(format!("packing an environment layer: {e}")))?;
    let digest = Digest::from_hex(&depot_release::digest::sha256_hex(&archive)).expect("sha256 hex is a digest");
    Ok((archive, digest))
}
