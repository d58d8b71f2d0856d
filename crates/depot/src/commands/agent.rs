//! `depot agent`: keeps a release root on a configuration of the registry. One cycle: read the
//! configuration, download the layers this host lacks (verified), deploy them as one release
//! named after the configuration hash through the same engine as `depot deploy`, report each
//! step. A hash that failed is not tried again until the configuration changes.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use depot_api::client::Client;
use depot_api::types::{AgentReport, AgentState, Config};
use depot_api::{ConfigName, HostName};
use depot_release::config::RootConfig;
use depot_release::deploy::{self, ArtifactSource, DeployOptions, Layer};
use depot_release::progress::NoProgress;
use depot_release::root::{ReleaseRoot, write_atomic};
use depot_release::version::ReleaseVersion;

use super::{activation_options, keep, lock_timeout};
use crate::cli::AgentArgs;
use crate::printer::Printer;

/// How long one blocking query waits for a change.
const WATCH_WAIT: Duration = Duration::from_secs(60);
/// The longest pause between attempts while the registry cannot be reached.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the agent remembers between cycles and restarts, in R/.depot/agent/state.json.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct State {
    /// The configuration hash whose release is active.
    active_hash: Option<String>,
    /// Hashes that failed, not tried again until the configuration moves to another hash.
    failed_hashes: Vec<String>,
}

/// The result of one cycle.
#[derive(Debug, PartialEq, Eq)]
enum Cycle {
    Unchanged,
    Activated,
    Failed,
}

struct Agent<'a> {
    root: ReleaseRoot,
    dir: PathBuf,
    client: Client,
    config: ConfigName,
    host: HostName,
    settings: Settings,
    printer: &'a Printer,
}

/// What every deploy of the agent shares; the release and its layers come from the configuration.
struct Settings {
    keep: usize,
    limits: depot_release::stage::Limits,
    validate: Option<String>,
    activation: depot_release::deploy::ActivationOptions,
    lock_timeout: Duration,
}

pub fn run(args: AgentArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let root = ReleaseRoot::new(&args.root.root)?;
    let root_config = RootConfig::load(root.path())?;
    let client = super::registry::connect(&args.registry)?;
    let host = match args.name {
        Some(name) => name,
        None => host_name()?,
    };
    let dir = root.path().join(".depot").join("agent");
    fs_err::create_dir_all(dir.join("blobs"))?;
    fs_err::create_dir_all(dir.join("configs"))?;
    let lock = File::create(dir.join("lock"))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another depot agent already runs on {} (one agent per root; it holds {})",
            root.path().display(),
            dir.join("lock").display()
        );
    }
    let settings = Settings {
        keep: keep(args.keep, &root_config),
        limits: root_config.limits.resolve(None, None),
        validate: args.validate.or(root_config.deploy.validate.clone()),
        activation: activation_options(&args.activation, &root_config),
        lock_timeout: lock_timeout(args.root.lock_timeout, &root_config),
    };
    let agent = Agent { root, dir, client, config: args.config, host, settings, printer };

    if args.once {
        let config = agent.client.get_config(&agent.config, None, None)?;
        let cycle = agent.cycle(&config)?;
        if printer.json {
            printer.json(&serde_json::json!({
                "config": config.name,
                "revision": config.revision,
                "hash": config.hash,
                "release": release_id(&config)?.to_string(),
                "outcome": match cycle {
                    Cycle::Unchanged => "unchanged",
                    Cycle::Activated => "activated",
                    Cycle::Failed => "failed",
                },
                "current": agent.root.current().map(|v| v.to_string()),
            }));
        }
        return Ok(match cycle {
            Cycle::Failed => ExitCode::from(1),
            Cycle::Unchanged | Cycle::Activated => ExitCode::SUCCESS,
        });
    }
    let mut after = 0;
    let mut backoff = Duration::from_secs(1);
    loop {
        match agent.client.get_config(&agent.config, Some(after), Some(WATCH_WAIT)) {
            Ok(config) => {
                backoff = Duration::from_secs(1);
                after = config.revision;
                agent.cycle(&config)?;
            }
            Err(e) => {
                // Up to a second of jitter, so that many agents do not return in step.
                let pause = backoff + Duration::from_millis(rand::random_range(0..1000));
                printer.message(format!("warning: {e}; trying again in {:.1}s", pause.as_secs_f64()));
                std::thread::sleep(pause);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Agent<'_> {
    fn cycle(&self, config: &Config) -> anyhow::Result<Cycle> {
        let mut state = self.load_state()?;
        let release = release_id(config)?;
        if state.active_hash.as_deref() == Some(&config.hash) && self.root.current().as_ref() == Some(&release) {
            return Ok(Cycle::Unchanged);
        }
        if state.failed_hashes.contains(&config.hash) {
            self.printer.message(format!(
                "configuration {} revision {} (hash {}) failed before; waiting for it to change",
                config.name,
                config.revision,
                &config.hash[..12]
            ));
            return Ok(Cycle::Unchanged);
        }
        let started = Instant::now();
        let mut timings = BTreeMap::new();
        self.report(config, AgentState::Downloading, None, &timings);
        let outcome = self.deploy(config, &release, &mut timings);
        timings.insert("total".to_owned(), started.elapsed().as_millis() as u64);
        match outcome {
            Ok(()) => {
                state.active_hash = Some(config.hash.clone());
                state.failed_hashes.clear();
                self.save_state(&state)?;
                self.forget_blobs(config)?;
                self.report(config, AgentState::Active, None, &timings);
                self.printer.message(format!(
                    "configuration {} revision {} is active as release {release}",
                    config.name, config.revision
                ));
                Ok(Cycle::Activated)
            }
            Err(e) => {
                let rolled_back = e
                    .chain()
                    .any(|cause| matches!(cause.downcast_ref(), Some(depot_release::Error::ActivationFailed { .. })));
                state.failed_hashes.push(config.hash.clone());
                self.save_state(&state)?;
                let reason = format!("{e:#}");
                let state = if rolled_back { AgentState::RolledBack } else { AgentState::Failed };
                self.report(config, state, Some(reason.clone()), &timings);
                self.printer.message(format!(
                    "error: configuration {} revision {} failed ({}): {reason}",
                    config.name,
                    config.revision,
                    state.as_str()
                ));
                Ok(Cycle::Failed)
            }
        }
    }

    fn deploy(
        &self,
        config: &Config,
        release: &ReleaseVersion,
        timings: &mut BTreeMap<String, u64>,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        // A release already on disk needs no archive: its manifest records the verified digests.
        if !self.root.release_dir(release).is_dir() {
            for layer in &config.layers {
                self.fetch(&layer.digest)?;
            }
        }
        timings.insert("download".to_owned(), started.elapsed().as_millis() as u64);
        let state_file = self.config_file(release);
        write_atomic(&state_file, &serde_json::to_vec_pretty(config)?)?;
        self.report(config, AgentState::Deploying, None, timings);
        let started = Instant::now();
        let mut options = DeployOptions {
            version: release.clone(),
            layers: config
                .layers
                .iter()
                .map(|layer| Layer {
                    source: ArtifactSource::Path(self.blob_path(&layer.digest)),
                    sha256: Some(layer.digest.hex().to_owned()),
                })
                .collect(),
            force: false,
            copy: false,
            keep: self.settings.keep,
            limits: self.settings.limits,
            validate: self.settings.validate.clone(),
            activation: self.settings.activation.clone(),
            lock_timeout: self.settings.lock_timeout,
        };
        options.activation.release_env.insert(release.clone(), hook_env(config, &state_file));
        if let Some(previous) = self.root.current()
            && let Ok(text) = fs_err::read(self.config_file(&previous))
            && let Ok(previous_config) = serde_json::from_slice::<Config>(&text)
        {
            let env = hook_env(&previous_config, &self.config_file(&previous));
            options.activation.release_env.insert(previous, env);
        }
        let result = deploy::deploy(&self.root, &options, &NoProgress);
        timings.insert("deploy".to_owned(), started.elapsed().as_millis() as u64);
        result?;
        Ok(())
    }

    /// Downloads a blob unless the cache has it; the client checks its digest, and only a
    /// complete, verified file is renamed into the cache.
    fn fetch(&self, digest: &depot_api::Digest) -> anyhow::Result<()> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        let mut file = tempfile::NamedTempFile::new_in(self.dir.join("blobs"))?;
        self.client.download_blob(digest, file.as_file_mut(), &|_| {})?;
        file.as_file().sync_all()?;
        file.persist(&path).with_context(|| format!("cannot keep {}", path.display()))?;
        Ok(())
    }

    /// Keeps only the blobs of `config`: a release already on disk needs none.
    fn forget_blobs(&self, config: &Config) -> anyhow::Result<()> {
        let keep: Vec<PathBuf> = config.layers.iter().map(|layer| self.blob_path(&layer.digest)).collect();
        for entry in fs_err::read_dir(self.dir.join("blobs"))? {
            let path = entry?.path();
            if !keep.contains(&path) {
                fs_err::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Sends a report; a registry that cannot be reached does not stop the deploy.
    fn report(&self, config: &Config, state: AgentState, error: Option<String>, timings: &BTreeMap<String, u64>) {
        let report = AgentReport {
            revision: config.revision,
            hash: config.hash.clone(),
            state,
            reported_at: Utc::now(),
            error: error.map(|e| truncate(e, depot_api::types::MAX_REPORT_ERROR)),
            output_tail: None,
            timings_ms: timings.clone(),
        };
        if let Err(e) = self.client.report_agent(&self.config, &self.host, &report) {
            self.printer.message(format!("warning: cannot report {} to the registry: {e}", state.as_str()));
        }
    }

    fn blob_path(&self, digest: &depot_api::Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.hex())
    }

    fn config_file(&self, release: &ReleaseVersion) -> PathBuf {
        self.dir.join("configs").join(format!("{release}.json"))
    }

    fn load_state(&self) -> anyhow::Result<State> {
        let path = self.dir.join("state.json");
        match fs_err::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e.into()),
        }
    }

    fn save_state(&self, state: &State) -> anyhow::Result<()> {
        write_atomic(&self.dir.join("state.json"), &serde_json::to_vec_pretty(state)?)?;
        Ok(())
    }
}

/// The release of a configuration: its name and hash, so that content seen before maps to the
/// release already on disk.
fn release_id(config: &Config) -> anyhow::Result<ReleaseVersion> {
    Ok(ReleaseVersion::parse(&format!("{}-{}", config.name, &config.hash[..12]))?)
}

/// Seed 001's hook variables for a configuration, and depot's.
fn hook_env(config: &Config, state_file: &Path) -> Vec<(String, String)> {
    let mut env = vec![
        ("STATEFILE".to_owned(), state_file.display().to_string()),
        ("DEPOT_CONFIG".to_owned(), config.name.to_string()),
        ("DEPOT_REVISION".to_owned(), config.revision.to_string()),
    ];
    for (index, layer) in config.layers.iter().enumerate() {
        env.push((format!("LAYER_{index}_NAME"), layer.component.to_string()));
        env.push((format!("LAYER_{index}_VERSION"), layer.version.to_string()));
    }
    env
}

fn host_name() -> anyhow::Result<HostName> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    HostName::parse(&name).map_err(|e| anyhow::anyhow!("the host name `{name}` cannot be used ({e}); pass --name"))
}

fn truncate(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut end = limit;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}
