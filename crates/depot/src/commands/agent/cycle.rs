//! One cycle of the agent: read the configuration, download the layers this host lacks
//! (verified), deploy them as one release named after the configuration hash through the same
//! engine as `depot deploy`, report each step. A hash that failed is not tried again until the
//! configuration changes or `depot agent retry` clears it.
//!
//! Safe points: SIGTERM is honoured before each download, during one (the partial file is
//! dropped), before the deploy starts, and inside it after the unpack and after the validate hook
//! (the staged tree goes); once `current` is switched, the deploy runs to its end (its hooks have
//! timeouts), so `current` is never left on a release whose checks did not run.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use depot_api::client::ClientError;
use depot_api::pipeline::mask_env_values;
use depot_api::types::{AgentReport, AgentState, BlobFrames, Config, MAX_REPORT_ERROR, MAX_REPORT_OUTPUT};
use depot_api::{ConfigName, Digest};
use depot_release::archive::FrameTable;
use depot_release::deploy::{self, ArtifactSource, DeployOptions, FetchedFrames, Layer};
use depot_release::killpoint;
use depot_release::progress::NoProgress;
use depot_release::root::{ReleaseRoot, write_atomic};
use depot_release::stage::FrameRecord;
use depot_release::version::VersionLabel;

use super::mask;
use super::registries::{self, Registries};
use super::reporter::Reporter;
use super::state::AgentDir;
use crate::printer::Printer;

/// The result of one cycle.
#[derive(Debug)]
pub enum Cycle {
    Unchanged,
    Activated,
    Failed,
    /// SIGTERM arrived before the deploy began; nothing changed.
    Stopped,
    /// The registry could not be reached for a download; nothing changed, try again later.
    Unreachable(anyhow::Error),
}

impl Cycle {
    pub fn as_str(&self) -> &'static str {
        match self {
            Cycle::Unchanged => "unchanged",
            Cycle::Activated => "activated",
            Cycle::Failed => "failed",
            Cycle::Stopped => "stopped",
            Cycle::Unreachable(_) => "unreachable",
        }
    }
}

pub struct Agent<'a> {
    pub root: ReleaseRoot,
    pub dir: AgentDir,
    pub registries: Arc<Registries>,
    pub config: ConfigName,
    pub settings: Settings,
    pub reporter: Reporter,
    pub stopping: Arc<AtomicBool>,
    pub printer: &'a Printer,
    /// The revision and state this process reported last.
    pub last_report: Cell<Option<(u64, AgentState)>>,
}

/// What every deploy of the agent shares; the release and its layers come from the configuration.
pub struct Settings {
    /// Whose signatures a layer needs (`--trust`); none: any layer the registry names. Read
    /// again on SIGHUP (`depot agent retry`), so a key added or revoked counts without a restart.
    pub trust: std::cell::RefCell<Option<depot_trust::Trust>>,
    /// Predicate types of the attestations each layer needs (`--require-attestation`), each
    /// signed by a key `trust` holds.
    pub require_attestations: Vec<String>,
    pub keep: usize,
    pub limits: depot_release::stage::Limits,
    pub validate: Option<String>,
    pub activation: depot_release::deploy::ActivationOptions,
    pub lock_timeout: Duration,
}

/// A layer without a valid signature from a trusted key: refused before anything is unpacked.
#[derive(Debug, thiserror::Error)]
#[error("layer {component} {version} ({digest}) is not trusted: {reason}")]
struct Untrusted {
    component: depot_api::ComponentName,
    version: VersionLabel,
    digest: Digest,
    reason: String,
}

/// Variables no environment layer may set on a host with `--trust`: each makes a loader or an
/// interpreter run code of its choosing.
const LOADER_VARIABLES: &[&str] = &[
    "BASH_ENV",
    "ENV",
    "GCONV_PATH",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "NODE_OPTIONS",
    "PERL5LIB",
    "PERL5OPT",
    "PYTHONHOME",
    "PYTHONPATH",
    "PYTHONSTARTUP",
    "RUBYLIB",
    "RUBYOPT",
];

/// An environment layer must be what the registry writes: `config/app.env` (and its directory)
/// and nothing else, a dotenv file exactly as `render_dotenv` writes it, with names and values
/// `check_env` takes (so sourcing it runs nothing), and no loader variable (`LD_*`, …).
fn check_env_layer(entries: &[depot_release::archive::Listed]) -> Result<(), String> {
    use depot_release::archive::EntryKind;
    let mut file = None;
    for entry in entries {
        match (entry.path.as_str(), entry.kind) {
            ("config" | "", EntryKind::Directory) => {}
            ("config/app.env", EntryKind::File) if file.is_none() => file = Some(&entry.data),
            (path, _) => {
                return Err(format!(
                    "an environment layer may hold config/app.env alone, and this one holds {}",
                    if path.is_empty() { "an unnamed entry" } else { path }
                ));
            }
        }
    }
    let Some(data) = file else { return Err("an environment layer without config/app.env".to_owned()) };
    let text = std::str::from_utf8(data).map_err(|_| "config/app.env is not UTF-8".to_owned())?;
    let note = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# Generated by depot from `depot env set`; do not edit. "))
        .ok_or("config/app.env does not start as the registry writes it")?;
    let vars: std::collections::BTreeMap<String, String> =
        depot_api::pipeline::parse_dotenv(text).into_iter().collect();
    for (key, value) in &vars {
        depot_api::pipeline::check_env(key, Some(value)).map_err(|why| format!("config/app.env: {why}"))?;
        if key.starts_with("LD_") || LOADER_VARIABLES.contains(&key.as_str()) {
            return Err(format!("config/app.env sets {key}, which makes a loader or an interpreter run code"));
        }
    }
    if depot_api::pipeline::render_dotenv(&vars, note) != text {
        return Err("config/app.env is not exactly as the registry writes it".to_owned());
    }
    Ok(())
}

/// Why a deploy did not happen, when it is not the configuration's fault.
#[derive(Debug, thiserror::Error)]
enum NotTried {
    #[error("stopping (SIGTERM)")]
    Stopped,
    #[error("{0}")]
    Unreachable(ClientError),
    /// A layer the deploy was to stage from this host's listing lost it meanwhile (a prune in
    /// between): the next cycle downloads it.
    #[error("the kept listing of layer {0} went away during the deploy; it is downloaded next time")]
    ListingGone(Digest),
}

impl Agent<'_> {
    pub fn cycle(&self, config: &Config) -> anyhow::Result<Cycle> {
        if config.layers.is_empty() {
            // A configuration created ahead of its first version (a later stage of a pipeline).
            self.printer.message(format!(
                "configuration {} revision {} has no layers yet; nothing to deploy",
                config.name, config.revision
            ));
            return Ok(Cycle::Unchanged);
        }
        let state = self.dir.load_state()?;
        let release = release_id(config)?;
        if state.active_hash.as_deref() == Some(&config.hash) && self.root.current().as_ref() == Some(&release) {
            // A kill after the state was saved may have left the previous configuration's blobs.
            self.forget_blobs(config)?;
            // Back on a release that is already active (a new process, or a configuration that
            // returned to the content this host kept after a failure): say so once.
            if self.last_report.get() != Some((config.revision, AgentState::Active)) {
                self.report(config, AgentState::Active, None, None, &BTreeMap::new());
            }
            return Ok(Cycle::Unchanged);
        }
        if state.failed_hashes.contains(&config.hash) {
            let message = format!(
                "configuration {} revision {} (hash {}) failed on this host before; not tried again until the \
                 configuration changes or `depot agent retry`",
                config.name,
                config.revision,
                config.hash.get(..12).unwrap_or(&config.hash)
            );
            self.printer.message(&message);
            // A new revision with content that failed here before: the registry learns it is not
            // deployed. (A new process does not repeat it: the registry keeps the failure's report.)
            if self.last_report.get().is_some_and(|(revision, _)| revision != config.revision) {
                self.report(config, AgentState::Failed, Some(message), None, &BTreeMap::new());
            }
            return Ok(Cycle::Unchanged);
        }
        let started = Instant::now();
        let mut timings = BTreeMap::new();
        self.report(config, AgentState::Downloading, None, None, &timings);
        let outcome = self.deploy(config, &release, &mut timings);
        timings.insert("total".to_owned(), started.elapsed().as_millis() as u64);
        let error = match outcome {
            Ok(()) => {
                killpoint::reached("agent-deployed");
                self.dir.update_state(|state| {
                    state.active_hash = Some(config.hash.clone());
                    state.failed_hashes.clear();
                })?;
                killpoint::reached("agent-state-saved");
                self.forget_blobs(config)?;
                self.report(config, AgentState::Active, None, None, &timings);
                self.printer.message(format!(
                    "configuration {} revision {} is active as release {release} ({} ms)",
                    config.name, config.revision, timings["total"]
                ));
                return Ok(Cycle::Activated);
            }
            Err(error) => error,
        };
        let stopped_in_deploy = error.chain().any(|cause| {
            matches!(cause.downcast_ref::<depot_release::Error>(), Some(depot_release::Error::Stopped { .. }))
        });
        if stopped_in_deploy {
            self.printer.message(format!("depot agent: {error:#} (SIGTERM); nothing changed"));
            return Ok(Cycle::Stopped);
        }
        match error.downcast::<NotTried>() {
            Ok(NotTried::Stopped) => {
                self.printer.message("depot agent: stopping before the deploy (SIGTERM)");
                Ok(Cycle::Stopped)
            }
            Ok(NotTried::Unreachable(e)) => Ok(Cycle::Unreachable(e.into())),
            Ok(gone @ NotTried::ListingGone(_)) => Ok(Cycle::Unreachable(gone.into())),
            // Another depot command holds the root: not the configuration's fault; later.
            Err(error)
                if error.chain().any(|c| {
                    matches!(c.downcast_ref::<depot_release::Error>(), Some(depot_release::Error::LockTimeout { .. }))
                }) =>
            {
                Ok(Cycle::Unreachable(error))
            }
            Err(error) => self.fail(config, error, &timings),
        }
    }

    /// Marks the hash failed and reports why, with the failing hook's output.
    fn fail(&self, config: &Config, error: anyhow::Error, timings: &BTreeMap<String, u64>) -> anyhow::Result<Cycle> {
        let engine = error.chain().find_map(|cause| cause.downcast_ref::<depot_release::Error>());
        let rolled_back = matches!(engine, Some(depot_release::Error::ActivationFailed { .. }));
        let untrusted = error.chain().any(|cause| cause.downcast_ref::<Untrusted>().is_some());
        let output =
            engine.and_then(|e| e.hook_output()).filter(|lines| !lines.is_empty()).map(|lines| lines.join("\n"));
        self.dir.update_state(|state| {
            if !state.failed_hashes.contains(&config.hash) {
                state.failed_hashes.push(config.hash.clone());
            }
        })?;
        // Masked for the agent's own stderr too: a journal is read by more people than the root.
        let values = self.env_values(config);
        let reason = mask(format!("{error:#}"), &values);
        let state = match (rolled_back, untrusted) {
            (_, true) => AgentState::Untrusted,
            (true, false) => AgentState::RolledBack,
            (false, false) => AgentState::Failed,
        };
        self.report(config, state, Some(reason.clone()), output, timings);
        self.printer.message(format!(
            "error: configuration {} revision {} failed ({}): {reason}",
            config.name,
            config.revision,
            state.as_str()
        ));
        Ok(Cycle::Failed)
    }

    fn deploy(
        &self,
        config: &Config,
        release: &VersionLabel,
        timings: &mut BTreeMap<String, u64>,
    ) -> anyhow::Result<()> {
        // Before anything is unpacked, even for a release already on disk (the registry may name
        // old content under a new label).
        self.verify(config)?;
        let started = Instant::now();
        // A release already on disk needs no archive: its manifest records the verified digests.
        // Nor does a layer this host unpacked before and keeps the listing of: the deploy stages
        // it from the listing and the store (the environment layer is always read whole).
        // Of any other, only the frames this host has not staged before are fetched, when the
        // registry has an index of them and they spare much of the download.
        let mut from_listing = Vec::new();
        let mut fetched = HashMap::new();
        if !self.root.release_dir(release).is_dir() {
            let env = depot_api::pipeline::env_component(&config.name);
            let known = std::cell::OnceCell::new();
            for layer in &config.layers {
                let whole = self.blob_path(&layer.digest).is_file();
                if layer.component != env && !whole && self.holds_listing(&layer.digest) {
                    from_listing.push(layer.digest.clone());
                    continue;
                }
                if layer.component != env
                    && !whole
                    && let Some(frames) = self.fetch_frames(&layer.digest, &known)?
                {
                    fetched.insert(layer.digest.clone(), frames);
                    continue;
                }
                self.fetch(&layer.digest)?;
            }
        }
        timings.insert("download".to_owned(), started.elapsed().as_millis() as u64);
        killpoint::reached("agent-downloaded");
        self.check_stop()?;
        let state_file = self.config_file(release);
        write_atomic(&state_file, &serde_json::to_vec_pretty(config)?)?;
        self.report(config, AgentState::Deploying, None, None, timings);
        let started = Instant::now();
        let mut options = DeployOptions {
            version: release.clone(),
            layers: config
                .layers
                .iter()
                .map(|layer| match fetched.get(&layer.digest) {
                    Some(frames) => Layer {
                        source: ArtifactSource::Path(self.frames_path(&layer.digest)),
                        sha256: Some(layer.digest.hex().to_owned()),
                        frames: Some(frames.clone()),
                    },
                    None => Layer {
                        source: ArtifactSource::Path(self.blob_path(&layer.digest)),
                        sha256: Some(layer.digest.hex().to_owned()),
                        frames: None,
                    },
                })
                .collect(),
            force: false,
            copy: false,
            keep: self.settings.keep,
            limits: self.settings.limits,
            // Layers come from the registry's client, never from a URL.
            download: Default::default(),
            validate: self.settings.validate.clone(),
            activation: self.settings.activation.clone(),
            lock_timeout: self.settings.lock_timeout,
            // Each blob was checked against its digest when downloaded, and is named by it.
            sha256_verified: true,
            // SIGTERM during the unpack or the validate hook ends the deploy before the switch.
            stop: Some(self.stopping.clone()),
        };
        options.activation.release_env.insert(release.clone(), hook_env(config, &state_file));
        if let Some(previous) = self.root.current()
            && let Ok(text) = fs_err::read(self.config_file(&previous))
            && let Ok(previous_config) = serde_json::from_slice::<Config>(&text)
        {
            let env = hook_env(&previous_config, &self.config_file(&previous));
            options.activation.release_env.insert(previous, env);
        }
        let mut result = deploy::deploy(&self.root, &options, &NoProgress);
        if let Err(depot_release::Error::FramesUnusable { sha256, reason }) = &result {
            // Frames that do not make the archive the index said: the whole blobs, verified
            // against their digests, decide.
            self.printer.message(format!(
                "the fetched frames of layer sha256:{sha256} cannot be staged ({reason}); downloading the whole layers"
            ));
            for (layer, digest) in options.layers.iter_mut().zip(config.layers.iter().map(|l| &l.digest)) {
                if layer.frames.take().is_some() {
                    remove_if_present(&self.frames_path(digest))?;
                    self.fetch(digest)?;
                    layer.source = ArtifactSource::Path(self.blob_path(digest));
                }
            }
            result = deploy::deploy(&self.root, &options, &NoProgress);
        }
        timings.insert("deploy".to_owned(), started.elapsed().as_millis() as u64);
        if result.is_err()
            && let Some(gone) = from_listing.into_iter().find(|digest| !self.holds_listing(digest))
        {
            return Err(NotTried::ListingGone(gone).into());
        }
        result?;
        Ok(())
    }

    /// Whether the release root keeps a listing of the layer that a deploy can replay (every
    /// object it names in the store).
    fn holds_listing(&self, digest: &Digest) -> bool {
        self.root
            .layer_listing(digest.hex())
            .is_some_and(|listing| depot_release::stage::listing_is_replayable(&listing))
    }

    /// Each layer but the environment layer needs a signature by a key `--trust` holds, over its
    /// component, version and digest. The environment layer, which the registry writes and no
    /// key signs, is downloaded and read whole first, whatever is on disk: it must be one
    /// dotenv file as the registry writes it (see [`check_env_layer`]), so that a registry that
    /// labels other content as the environment layer gains nothing.
    fn verify(&self, config: &Config) -> anyhow::Result<()> {
        let trust = self.settings.trust.borrow();
        let Some(trust) = trust.as_ref() else { return Ok(()) };
        let env = depot_api::pipeline::env_component(&config.name);
        for layer in &config.layers {
            let untrusted = |reason: String| Untrusted {
                component: layer.component.clone(),
                version: layer.version.clone(),
                digest: layer.digest.clone(),
                reason,
            };
            if layer.component == env {
                self.fetch(&layer.digest)?;
                let entries = depot_release::archive::list(
                    fs_err::File::open(self.blob_path(&layer.digest))?,
                    self.settings.limits,
                )?;
                check_env_layer(&entries).map_err(untrusted)?;
                continue;
            }
            let found = match self.registries.call(|client| client.blob_signatures(&layer.digest)) {
                Ok(found) => found,
                Err(e) if transient(&e) => return Err(NotTried::Unreachable(e).into()),
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("cannot read the signatures of {}", layer.digest))
                    );
                }
            };
            let Some(this) = found.into_iter().find(|s| s.component == layer.component && s.version == layer.version)
            else {
                return Err(untrusted("it has no signature".to_owned()).into());
            };
            let signatures: Vec<String> = this.signatures.iter().map(|s| s.signature.clone()).collect();
            let message = depot_trust::message(&layer.component, &layer.version, &layer.digest);
            let now = chrono::Utc::now();
            let verified = trust.verify(&message, &signatures, now).map_err(untrusted)?;
            self.printer.message(format!(
                "layer {} {} is signed by {} ({})",
                layer.component, layer.version, verified.signer, verified.fingerprint
            ));
            for kind in &self.settings.require_attestations {
                // The registry's summary only picks the candidates (newest first, a few at most);
                // each is judged from its own statement, hashed and parsed here.
                let (mut reasons, mut attested) = (Vec::new(), None);
                for candidate in this.attestations.iter().rev().filter(|a| &a.predicate_type == kind).take(8) {
                    let call = |client: &depot_api::client::Client| {
                        client.attestation(&layer.component, &layer.version, &candidate.digest)
                    };
                    let fetched = match self.registries.call(call) {
                        Ok(fetched) => fetched,
                        Err(e) if transient(&e) => return Err(NotTried::Unreachable(e).into()),
                        Err(e) => {
                            reasons.push(format!("{}: {e}", candidate.digest));
                            continue;
                        }
                    };
                    match trust.verify_attestation(&layer.component, &layer.version, &layer.digest, &fetched, kind, now)
                    {
                        Ok(verified) => {
                            attested = Some(verified);
                            break;
                        }
                        Err(why) => reasons.push(format!("{}: {why}", candidate.digest)),
                    }
                }
                let Some(attested) = attested else {
                    let why = match reasons.is_empty() {
                        true => String::new(),
                        false => format!(" ({})", reasons.join("; ")),
                    };
                    return Err(untrusted(format!("it has no {kind} attestation signed by a trusted key{why}")).into());
                };
                self.printer.message(format!(
                    "layer {} {} has a {kind} attestation signed by {} ({})",
                    layer.component, layer.version, attested.signer, attested.fingerprint
                ));
            }
        }
        Ok(())
    }

    fn check_stop(&self) -> Result<(), NotTried> {
        if self.stopping.load(Ordering::SeqCst) { Err(NotTried::Stopped) } else { Ok(()) }
    }

    /// Downloads a blob unless the cache has it; the client checks its digest, and only a
    /// complete, verified file is renamed into the cache.
    fn fetch(&self, digest: &Digest) -> anyhow::Result<()> {
        let path = self.blob_path(digest);
        if path.is_file() {
            return Ok(());
        }
        self.check_stop()?;
        let mut file = tempfile::Builder::new().prefix(".partial-").tempfile_in(self.dir.join("blobs"))?;
        let download = self.registries.call(|client| {
            // A download cut short on one replica starts again from the first byte on the next.
            let restart = file.as_file_mut().rewind().and_then(|()| file.as_file().set_len(0));
            restart.map_err(|e| ClientError::Transport {
                url: client.base_url().to_owned(),
                message: format!("cannot write the blob: {e}"),
            })?;
            let mut writer = StopWriter { inner: file.as_file_mut(), stopping: &self.stopping };
            client.download_blob(digest, &mut writer, &|_| {})
        });
        match download {
            Ok(_) => {}
            Err(_) if self.stopping.load(Ordering::SeqCst) => return Err(NotTried::Stopped.into()),
            Err(e) if transient(&e) => return Err(NotTried::Unreachable(e).into()),
            Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot download layer {digest}"))),
        }
        file.as_file().sync_all()?;
        file.persist(&path).with_context(|| format!("cannot keep {}", path.display()))?;
        Ok(())
    }

    /// Fetches the frames of blob `digest` that this host cannot replay from its frame records
    /// into `B.frames` (a sparse file the size of the blob, each frame at its offset), checking
    /// each against the registry's index; `None` when the blob is better downloaded whole: no
    /// index (not a seekable archive, an older registry), an index that does not add up, too
    /// little known, a frame that does not match its index, or a host that requires signatures
    /// (they cover the archive's digest, which a host that fetches frames never hashes).
    /// Frames already in the file from an interrupted fetch, and matching, are not fetched again.
    fn fetch_frames(
        &self,
        digest: &Digest,
        known: &std::cell::OnceCell<HashMap<String, FrameRecord>>,
    ) -> anyhow::Result<Option<FetchedFrames>> {
        if self.settings.trust.borrow().is_some() {
            return Ok(None);
        }
        self.check_stop()?;
        // A host that has staged no frames has nothing to spare: not even the index is asked.
        let known = known.get_or_init(|| self.root.frame_records());
        if known.is_empty() {
            return Ok(None);
        }
        let index = match self.registries.call(|client| client.blob_frames(digest)) {
            Ok(index) => index,
            Err(_) if self.stopping.load(Ordering::SeqCst) => return Err(NotTried::Stopped.into()),
            // A registry without frame indexes, one slow to read it, a blob it cannot index:
            // fetched whole (which meets an unreachable registry as any download does).
            Err(_) => return Ok(None),
        };
        let Some(frames) = frames_of(&index, digest) else { return Ok(None) };
        let needed = frames.needed(known, &self.root.store());
        let table = &frames.table.frames;
        let needed_bytes: u64 = needed.iter().map(|&index| table[index].compressed).sum();
        // Worth it when it spares at least a quarter of the download.
        if needed_bytes.saturating_mul(4) > index.size.saturating_mul(3) {
            return Ok(None);
        }
        let path = self.frames_path(digest);
        // A failure of this host's disk here is not the configuration's: the blob is then
        // downloaded whole, which meets the same disk with the usual errors.
        let whole = |why: String| -> anyhow::Result<Option<FetchedFrames>> {
            self.printer.message(format!("cannot fetch the frames of layer {digest} ({why}); downloading it whole"));
            remove_if_present(&path)?;
            Ok(None)
        };
        let (file, resumed) = match sparse_file(&path, index.size) {
            Ok(opened) => opened,
            Err(e) => return whole(format!("{}: {e}", path.display())),
        };
        // Frames a fetch cut short already wrote, checked again.
        let holds = |index: usize| {
            let frame = &table[index];
            depot_release::digest::sha256_range(&file, frame.offset, frame.compressed).ok().as_ref()
                == Some(&frames.shas[index])
        };
        let missing: Vec<usize> = needed.into_iter().filter(|&index| !resumed || !holds(index)).collect();
        let runs = runs(table, &missing);
        let fetched_bytes: u64 = runs
            .iter()
            .map(|run| {
                let bytes = span(table, run);
                bytes.end - bytes.start
            })
            .sum();
        for run in runs {
            self.check_stop()?;
            let std::ops::Range { start, end } = span(table, &run);
            let fetch = self.registries.call(|client| {
                let mut writer =
                    StopWriter { inner: OffsetWriter { file: &file, at: start }, stopping: &self.stopping };
                client.download_blob_range(digest, start..end, &mut writer)
            });
            match fetch {
                Ok(_) => {}
                Err(_) if self.stopping.load(Ordering::SeqCst) => return Err(NotTried::Stopped.into()),
                Err(e) if transient(&e) => return Err(NotTried::Unreachable(e).into()),
                Err(e) => return whole(e.to_string()),
            }
            if let Some(index) = run.clone().find(|&index| !holds(index)) {
                return whole(format!("frame {index} does not match the registry's index"));
            }
            killpoint::reached("agent-frames-fetched");
        }
        self.printer.message(format!(
            "layer {digest}: fetched {} of {} frames ({fetched_bytes} of {} bytes); the rest is on this host",
            missing.len(),
            table.len(),
            index.size
        ));
        Ok(Some(frames))
    }

    /// Where the frames of a blob are fetched to.
    fn frames_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(format!("{}.frames", digest.hex()))
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

    /// Removes what a killed agent may have left: partial downloads. (The engine cleans its own
    /// leftovers in the root when it next runs.)
    pub fn clean_leftovers(&self) -> anyhow::Result<()> {
        for entry in fs_err::read_dir(self.dir.join("blobs"))? {
            let path = entry?.path();
            if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with('.')) {
                fs_err::remove_file(&path)?;
            }
        }
        Ok(())
    }

    /// Queues a report; the reporter sends it without holding up the deploy. The error and the
    /// hooks' output are masked (the stage's environment values), then cut to the sizes a report
    /// may carry: masking after the cut would miss a value the cut splits.
    fn report(
        &self,
        config: &Config,
        state: AgentState,
        error: Option<String>,
        output: Option<String>,
        timings: &BTreeMap<String, u64>,
    ) {
        self.last_report.set(Some((config.revision, state)));
        let values = if error.is_some() || output.is_some() { self.env_values(config) } else { Vec::new() };
        self.reporter.send(AgentReport {
            revision: config.revision,
            hash: config.hash.clone(),
            state,
            reported_at: Utc::now(),
            error: error.map(|e| head(&mask(e, &values), MAX_REPORT_ERROR).to_owned()),
            output_tail: output.map(|o| tail(&mask(o, &values), MAX_REPORT_OUTPUT).to_owned()),
            timings_ms: timings.clone(),
        });
    }

    /// The environment values this cycle's hooks may have printed (see [`mask::env_values`]).
    fn env_values(&self, config: &Config) -> Vec<String> {
        let Ok(release) = release_id(config) else { return Vec::new() };
        let blob = config
            .layers
            .iter()
            .find(|layer| layer.component == depot_api::pipeline::env_component(&config.name))
            .map(|layer| self.blob_path(&layer.digest));
        mask::env_values(&self.root, config, &self.root.release_dir(&release), blob.as_deref())
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join(digest.hex())
    }

    fn config_file(&self, release: &VersionLabel) -> PathBuf {
        self.dir.join("configs").join(format!("{release}.json"))
    }
}

/// The frames an index lists, checked to be one of a seekable archive of its blob (each frame a
/// sha256, the frames inside the blob); `None` when there are none or they do not add up.
fn frames_of(index: &BlobFrames, digest: &Digest) -> Option<FetchedFrames> {
    if index.digest != *digest || index.frames.is_empty() {
        return None;
    }
    let hex = |sha: &str| sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !index.frames.iter().all(|frame| hex(&frame.sha256)) {
        return None;
    }
    let frames_len = index.frames.iter().try_fold(0u64, |sum, frame| sum.checked_add(frame.compressed))?;
    // The seek table follows the frames: a skippable frame's header, 8 or 12 bytes a frame
    // (12 with checksums), and its footer.
    let count = index.frames.len() as u64;
    let table_len = index.size.checked_sub(frames_len)?;
    if ![8, 12].iter().any(|entry| table_len == 8 + FrameTable::FOOTER_LEN + count * entry) {
        return None;
    }
    let table = FrameTable::from_sizes(index.frames.iter().map(|frame| (frame.compressed, frame.decoded)), frames_len)?;
    Some(FetchedFrames { table, shas: index.frames.iter().map(|frame| frame.sha256.clone()).collect() })
}

/// Opens (or creates) the sparse file frames are fetched into, `size` bytes long; whether it
/// was there already at that size (frames a fetch cut short wrote may be in it).
fn sparse_file(path: &Path, size: u64) -> std::io::Result<(std::fs::File, bool)> {
    let file = fs_err::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
    let resumed = file.metadata()?.len() == size;
    if !resumed {
        file.set_len(0)?;
        file.set_len(size)?;
    }
    Ok((file.into_parts().0, resumed))
}

/// The frames to fetch (indexes, ascending) as runs of neighbours, each fetched with one range:
/// frames in between that are not needed join a run when they are small (cheaper than another
/// request), and a run stops growing at [`RUN_LIMIT`] bytes.
fn runs(table: &[depot_release::archive::Frame], needed: &[usize]) -> Vec<std::ops::Range<usize>> {
    let mut runs: Vec<std::ops::Range<usize>> = Vec::new();
    for &index in needed {
        if let Some(run) = runs.last_mut() {
            let gap: u64 = table[run.end..index].iter().map(|frame| frame.compressed).sum();
            let length = table[index].offset + table[index].compressed - table[run.start].offset;
            if gap <= RUN_GAP && length <= RUN_LIMIT {
                run.end = index + 1;
                continue;
            }
        }
        runs.push(index..index + 1);
    }
    runs
}

/// The bytes of the blob a run of frames covers.
fn span(table: &[depot_release::archive::Frame], run: &std::ops::Range<usize>) -> std::ops::Range<u64> {
    let last = &table[run.end - 1];
    table[run.start].offset..last.offset + last.compressed
}

/// Unneeded bytes a run of frames may take in to save a request.
const RUN_GAP: u64 = 16 * 1024;
/// The most one range request asks for (a run cut by a failure is fetched again whole).
const RUN_LIMIT: u64 = 16 * 1024 * 1024;

/// Writes at increasing offsets of a file, leaving its position alone.
struct OffsetWriter<'a> {
    file: &'a std::fs::File,
    at: u64,
}

impl Write for OffsetWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let written = self.file.write_at(buf, self.at)?;
        self.at += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match fs_err::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Fails the download at once when SIGTERM arrives.
struct StopWriter<'a, W> {
    inner: W,
    stopping: &'a AtomicBool,
}

impl<W: Write> Write for StopWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.stopping.load(Ordering::SeqCst) {
            return Err(std::io::Error::other("stopping (SIGTERM)"));
        }
        let written = self.inner.write(buf)?;
        killpoint::reached("agent-downloading");
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A failure of the network, of the registry or of the token, not of the configuration: the next
/// attempt may succeed. A blob whose bytes do not match its digest is not one of them.
fn transient(error: &ClientError) -> bool {
    // A token refused (revoked, or not yet allowed this configuration) is fixed by an admin.
    registries::unreachable(error) || matches!(error, ClientError::Api { status: 401 | 403, .. })
}

/// The release of a configuration: its name and hash, so that content seen before maps to the
/// release already on disk.
pub fn release_id(config: &Config) -> anyhow::Result<VersionLabel> {
    // The hash makes it unique; a long name is cut to leave room for it.
    let name: String = config.name.as_str().chars().take(64).collect();
    let short = config.hash.get(..12).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    let short = short.ok_or_else(|| {
        anyhow::anyhow!("the registry sent configuration hash `{}`, which is not one", config.hash.escape_debug())
    })?;
    Ok(VersionLabel::parse(&format!("{name}-{short}"))?)
}

/// Seed 001's hook variables for a configuration, and the platform's (`DEPOT_*`, which no
/// environment layer may set: `depot_api::pipeline::PLATFORM_VARIABLES`).
fn hook_env(config: &Config, state_file: &Path) -> Vec<(String, String)> {
    let stage = config.stage.as_ref();
    let mut env = vec![
        ("STATEFILE".to_owned(), state_file.display().to_string()),
        ("DEPOT_CONFIG".to_owned(), config.name.to_string()),
        ("DEPOT_REVISION".to_owned(), config.revision.to_string()),
        ("DEPOT_RELEASE_ID".to_owned(), release_id(config).map(|id| id.to_string()).unwrap_or_default()),
        ("DEPOT_PIPELINE".to_owned(), stage.map(|s| s.pipeline.to_string()).unwrap_or_default()),
        ("DEPOT_STAGE".to_owned(), stage.map(|s| s.stage.to_string()).unwrap_or_default()),
        ("DEPOT_PREVIOUS_STAGE".to_owned(), stage.map(|s| s.previous.clone()).unwrap_or_default()),
    ];
    for (index, layer) in config.layers.iter().enumerate() {
        env.push((format!("LAYER_{index}_NAME"), layer.component.to_string()));
        env.push((format!("LAYER_{index}_VERSION"), layer.version.to_string()));
    }
    env
}

/// `text` with `values` masked.
fn mask(text: String, values: &[String]) -> String {
    if values.is_empty() { text } else { mask_env_values(&text, values.iter().map(String::as_str)) }
}

/// At most the first `limit` bytes of `text`, cut after a whole line when one fits, else at a
/// character boundary. (The agent masks environment values before it cuts; the registry masks
/// again what it receives, and whole lines keep a value the agent does not know whole for it.)
fn head(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].rfind('\n').map_or(&text[..end], |newline| &text[..newline])
}

/// At most the last `limit` bytes of `text`, from the start of a whole line when one fits, else
/// from a character boundary.
fn tail(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut start = text.len() - limit;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].find('\n').map_or(&text[start..], |newline| &text[start + newline + 1..])
}

#[cfg(test)]
mod tests {
    use super::{RUN_GAP, RUN_LIMIT, frames_of, head, runs, tail};
    use depot_api::Digest;
    use depot_api::types::{BlobFrame, BlobFrames};
    use depot_release::archive::FrameTable;

    #[test]
    fn frames_are_fetched_in_runs_that_take_in_small_gaps_only() {
        let sizes = [4096, 4096, RUN_GAP + 1, 4096, 4096, RUN_LIMIT, 4096];
        let table = FrameTable::from_sizes(sizes.iter().map(|&size| (size, size)), sizes.iter().sum()).unwrap();
        // 0 and 1 touch; 3 and 6 are past gaps too large to take in; 5 and 6 make too long a run.
        assert_eq!(runs(&table.frames, &[0, 1, 3, 4, 6]), [0..2, 3..5, 6..7]);
        assert_eq!(runs(&table.frames, &[4, 5, 6]), [4..5, 5..6, 6..7]);
        // A small gap (frame 1) is fetched with its neighbours.
        assert_eq!(runs(&table.frames, &[0, 2]), vec![0..3]);
        assert!(runs(&table.frames, &[]).is_empty());
    }

    #[test]
    fn an_index_that_does_not_add_up_is_not_used() {
        let digest = Digest::parse(&format!("sha256:{}", "a".repeat(64))).unwrap();
        let frame = |compressed, sha256: &str| BlobFrame { compressed, decoded: 100, sha256: sha256.to_owned() };
        // Two frames of 90 bytes, then a seek table of 8 + 2 × 8 + 9 bytes.
        let index = |frames| BlobFrames { digest: digest.clone(), size: 213, frames };
        let good = "b".repeat(64);
        assert!(frames_of(&index(vec![frame(90, &good), frame(90, &good)]), &digest).is_some());
        // Frames that do not end where the table begins (past the blob's end, or short of it),
        // a frame too small to be one, a hash that is not one, none.
        assert!(frames_of(&index(vec![frame(150, &good), frame(90, &good)]), &digest).is_none());
        assert!(frames_of(&index(vec![frame(80, &good), frame(90, &good)]), &digest).is_none());
        assert!(frames_of(&index(vec![frame(90, &good)]), &digest).is_none());
        assert!(frames_of(&index(vec![frame(8, &good), frame(172, &good)]), &digest).is_none());
        assert!(frames_of(&index(vec![frame(90, &good), frame(90, &"B".repeat(64))]), &digest).is_none());
        assert!(frames_of(&index(vec![frame(90, &good), frame(90, "../x")]), &digest).is_none());
        assert!(frames_of(&index(vec![]), &digest).is_none());
        let other = Digest::parse(&format!("sha256:{}", "c".repeat(64))).unwrap();
        assert!(frames_of(&index(vec![frame(90, &good), frame(90, &good)]), &other).is_none());
    }

    #[test]
    fn reports_are_cut_between_lines() {
        let text = "first line\nTOKEN=s3cr3t\nlast line";
        assert_eq!(head(text, 100), text);
        assert_eq!(head(text, 18), "first line");
        assert_eq!(tail(text, 18), "last line");
        assert_eq!(tail(text, 9), "last line");
        // One line longer than the limit: cut at a character boundary.
        assert_eq!(head("ééé", 3), "é");
        assert_eq!(tail("ééé", 3), "é");
    }
}
