//! `depot agent`: keeps a release root on a configuration of the registry (see `cycle`), and
//! `depot agent retry`. This file resolves the settings, holds the lock, and runs the loop: a
//! blocking query on its own thread, signals on another, both feeding one channel, so that
//! SIGTERM and SIGHUP are handled while the query waits. The query, the downloads and the reports
//! all go through one [`Registries`], which moves between the replicas of the registry.

mod cycle;
mod mask;
mod registries;
mod reporter;
mod settings;
mod state;

use std::cell::Cell;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use depot_api::client::ClientError;
use depot_api::types::Config;
use depot_api::{ConfigName, HostName};
use depot_release::config::RootConfig;
use depot_release::root::ReleaseRoot;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use self::cycle::{Agent, Cycle, Settings};
use self::registries::Registries;
use self::reporter::Reporter;
use self::settings::AgentSettings;
use self::state::AgentDir;
use super::{activation_options, keep, lock_timeout};
use crate::cli::{AgentArgs, AgentCommand, AgentRetryArgs};
use crate::client_config::ClientConfig;
use crate::printer::Printer;

/// How long one blocking query waits for a change.
const WATCH_WAIT: Duration = Duration::from_secs(60);
/// The first pause after the registry could not be reached; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub fn run(args: AgentArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(AgentCommand::Retry(retry_args)) => retry(retry_args, printer),
        None => follow(args, printer),
    }
}

enum Event {
    /// Boxed: a configuration is large, a signal small.
    Answer(Box<Result<Config, ClientError>>),
    Signal(i32),
}

fn follow(args: AgentArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let file = AgentSettings::load(args.settings.as_deref())?;
    let config = file.config(args.config)?;
    let root = ReleaseRoot::new(&file.root(args.root)?)?;
    let mut root_config = RootConfig::load(root.path())?;
    root_config.deploy = file.deploy.clone().or(root_config.deploy);
    let registry = &args.registry;
    // With a settings file, it replaces the user's ~/.config/depot/config.toml.
    let settings = file.path.as_ref().map(|_| file.registry());
    // Several URLs (the flag repeated, or commas) are joined as DEPOT_REGISTRY gives them.
    let urls = (!registry.registry.is_empty()).then(|| registry.registry.join(","));
    let clients =
        ClientConfig::load(urls.as_deref(), registry.token.as_ref(), registry.ca_cert.as_deref(), settings.as_ref())?
            .clients()?;
    let registries = Arc::new(Registries::new(clients));
    let host = match args.name.or(file.name.clone()) {
        Some(name) => name,
        None => host_name()?,
    };
    let dir = AgentDir::new(root.path());
    dir.create()?;
    let _lock = dir.lock(root.path())?;

    let (events, receiver) = mpsc::channel();
    let stopping = Arc::new(AtomicBool::new(false));
    watch_signals(events.clone(), stopping.clone())?;
    let trust_files =
        args.trust.or(file.trust.clone()).map(|path| (path, args.revoked_keys.or(file.revoked_keys.clone())));
    let trust = match &trust_files {
        Some((path, revoked)) => Some(depot_trust::Trust::load(path, revoked.as_deref())?),
        None => None,
    };
    let required = match args.require_attestation.is_empty() {
        true => file.require_attestations.clone(),
        false => args.require_attestation.clone(),
    };
    if !required.is_empty() && trust.is_none() {
        return Err(crate::printer::hinted(
            "requiring attestations needs the keys that sign them",
            "give --trust FILE (an allowed_signers file) with --require-attestation",
        ));
    }
    let require_attestations =
        required.iter().map(|name| depot_trust::attestation::predicate_type(name).to_owned()).collect();
    let settings = Settings {
        trust: std::cell::RefCell::new(trust),
        require_attestations,
        keep: keep(args.policy.keep, &root_config),
        limits: root_config.limits.resolve(None, None),
        validate: args.policy.validate.or(root_config.deploy.validate.clone()),
        activation: activation_options(&args.policy.activation, &root_config),
        lock_timeout: lock_timeout(args.lock_timeout, &root_config),
    };
    let reporter = Reporter::start(registries.clone(), config.clone(), host.clone(), dir.join("outbox.json"));
    let agent =
        Agent { root, dir, registries, config, settings, reporter, stopping, printer, last_report: Cell::new(None) };
    agent.clean_leftovers()?;

    if args.once {
        let config = agent.registries.call(|client| client.config_for(&agent.config, Some(&host), None, None))?;
        let cycle = match agent.cycle(&config)? {
            Cycle::Unreachable(e) => return Err(e),
            cycle => cycle,
        };
        if printer.json {
            printer.json(&serde_json::json!({
                "config": config.name,
                "revision": config.revision,
                "hash": config.hash,
                "release": cycle::release_id(&config)?.to_string(),
                "outcome": cycle.as_str(),
                "current": agent.root.current().map(|v| v.to_string()),
            }));
        }
        return Ok(match cycle {
            Cycle::Failed | Cycle::Unreachable(_) => ExitCode::FAILURE,
            Cycle::Unchanged | Cycle::Activated | Cycle::Stopped => ExitCode::SUCCESS,
        });
    }

    printer.message(format!(
        "depot agent: following configuration {} on {} as host {host} through {} (pid {})",
        agent.config,
        agent.root.path().display(),
        agent.registries.urls().iter().map(|url| url.trim_end_matches('/')).collect::<Vec<_>>().join(", then "),
        std::process::id()
    ));
    // Type=notify: systemd considers the agent started once it follows its configuration.
    if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        printer.message(format!("depot agent: could not notify systemd: {error}"));
    }
    // The revision the next query waits to pass; none asks for the configuration at once.
    let mut after = None;
    let mut last: Option<Config> = None;
    let mut querying = false;
    let mut next_query = Instant::now();
    let mut backoff = FIRST_BACKOFF;
    loop {
        if agent.stopping.load(Ordering::SeqCst) {
            printer.message("depot agent: stopped");
            return Ok(ExitCode::SUCCESS);
        }
        if !querying && Instant::now() >= next_query {
            spawn_query(agent.registries.clone(), agent.config.clone(), host.clone(), after, events.clone());
            querying = true;
        }
        let event = if querying {
            receiver.recv().expect("the signal thread keeps the channel open")
        } else {
            match receiver.recv_timeout(next_query.saturating_duration_since(Instant::now())) {
                Ok(event) => event,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => unreachable!("the signal thread keeps the channel open"),
            }
        };
        match event {
            Event::Signal(SIGHUP) => {
                printer.message("depot agent: SIGHUP, checking the configuration again");
                if let Some((path, revoked)) = &trust_files {
                    match depot_trust::Trust::load(path, revoked.as_deref()) {
                        Ok(trust) => *agent.settings.trust.borrow_mut() = Some(trust),
                        Err(error) => printer.message(format!("warning: {error}; the keys read before still apply")),
                    }
                }
                if let Some(config) = &last {
                    agent.cycle(config)?;
                }
            }
            Event::Signal(_) => {}
            Event::Answer(answer) => {
                querying = false;
                match *answer {
                    Ok(config) => {
                        backoff = FIRST_BACKOFF;
                        agent.reporter.nudge();
                        match agent.cycle(&config)? {
                            Cycle::Unreachable(e) => {
                                // Not settled: ask again (at once, not waiting for a change) after a pause.
                                after = None;
                                next_query = Instant::now() + pause(&mut backoff, printer, &e);
                            }
                            _ => {
                                after = Some(config.revision);
                                next_query = Instant::now();
                            }
                        }
                        last = Some(config);
                    }
                    Err(e) => next_query = Instant::now() + pause(&mut backoff, printer, &anyhow::Error::new(e)),
                }
            }
        }
    }
}

/// The pause before the next attempt (with up to a second of jitter, so that many agents do not
/// return in step), doubling the next one.
fn pause(backoff: &mut Duration, printer: &Printer, error: &anyhow::Error) -> Duration {
    let pause = *backoff + Duration::from_millis(rand::random_range(0..1000));
    printer.message(format!("warning: {error:#}; trying again in {:.1}s", pause.as_secs_f64()));
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    pause
}

/// The blocking query, on its own thread: it answers with the revision this host may run (a
/// rollout may hold it back, or send it back) once that differs from `after`. Moving to another
/// replica keeps `after`: the agent's own revision, so the new replica answers at once with a
/// revision written meanwhile.
fn spawn_query(
    registries: Arc<Registries>,
    config: ConfigName,
    host: HostName,
    after: Option<u64>,
    events: Sender<Event>,
) {
    std::thread::spawn(move || {
        let answer =
            registries.call(|client| client.config_for(&config, Some(&host), after, after.map(|_| WATCH_WAIT)));
        let _ = events.send(Event::Answer(Box::new(answer)));
    });
}

/// SIGTERM and SIGINT set `stopping` (checked at the cycle's safe points) and end the wait;
/// SIGHUP asks for a new check.
fn watch_signals(events: Sender<Event>, stopping: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if signal != SIGHUP {
                stopping.store(true, Ordering::SeqCst);
            }
            if events.send(Event::Signal(signal)).is_err() {
                break;
            }
        }
    });
    Ok(())
}

fn retry(args: AgentRetryArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let file = AgentSettings::load(args.settings.as_deref())?;
    let root = ReleaseRoot::new(&file.root(args.root)?)?;
    let dir = AgentDir::new(root.path());
    if !dir.path().is_dir() {
        return Err(crate::printer::hinted(
            format!("no agent has run on {}", root.path().display()),
            "check --root; `depot agent --config NAME --root R` starts one",
        ));
    }
    let cleared = dir.update_state(|state| std::mem::take(&mut state.failed_hashes))?;
    let agent = dir.running_agent()?;
    if let Some(pid) = agent {
        let pid = rustix::process::Pid::from_raw(pid as i32).filter(|_| pid > 0);
        if let Some(pid) = pid {
            rustix::process::kill_process(pid, rustix::process::Signal::HUP)
                .map_err(|e| anyhow::anyhow!("cannot wake the agent (pid {}): {e}", pid.as_raw_nonzero()))?;
        }
    }
    if printer.json {
        printer.json(&serde_json::json!({
            "root": root.path(),
            "cleared": cleared,
            "agent_pid": agent,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    if cleared.is_empty() {
        printer.message("no failed configuration to clear");
    } else {
        let hashes: Vec<&str> = cleared.iter().map(|h| h.get(..12).unwrap_or(h)).collect();
        printer.message(format!("cleared the failure of configuration hash {}", hashes.join(", ")));
    }
    match agent {
        Some(pid) => printer.message(format!("woke the agent (pid {pid}): it checks its configuration now")),
        None => printer.message(format!(
            "no agent runs on {}: the next `depot agent` tries the configuration again",
            root.path().display()
        )),
    }
    Ok(ExitCode::SUCCESS)
}

fn host_name() -> anyhow::Result<HostName> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    HostName::parse(&name)
        .map_err(|e| crate::printer::hinted(format!("the host name `{name}` cannot be used ({e})"), "pass --name HOST"))
}
