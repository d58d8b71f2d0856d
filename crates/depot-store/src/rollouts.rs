//! Rollouts in the store: a configuration's strategy, its latest rollout (one row, the JSON of
//! [`Rollout`]), and the transactions that move it. Every new revision of a rolling configuration
//! begins a rollout in the transaction that writes it ([`begin`], from `write_revision`); every
//! agent report steps it in the transaction that records the report ([`after_report`]); a timer
//! steps the running ones for bake times and deadlines ([`Metadata::step_rollouts`]). Each change
//! to a rollout marks its configuration changed, so blocking queries wake and answer each host
//! with the revision it may run now ([`ConfigView`]).

use std::collections::BTreeMap;

use chrono::Utc;
use depot_api::pipeline::EventKind;
use depot_api::rollout::{BatchStatus, HostRollout, RolloutAction, RolloutPhase, RolloutStatus, RolloutStep, Strategy};
use depot_api::types::{AgentState, Config, Layer};
use depot_api::{ConfigName, HostName};

use crate::db::{OptionalExtension, Tx, params};
use crate::rollout::{HostReport, Phase, Rollout};
use crate::rows::{current_config, from_json, now, parse_time, record_event, stage_ref};
use crate::{Metadata, Result, StoreError};

/// Who the history names for the steps the registry takes by itself.
const REGISTRY: &str = "registry";

/// A configuration as its agents see it: the current revision, the rollout that decides which
/// hosts may run it, and every revision some host may be told to run.
#[derive(Debug, Clone)]
pub struct ConfigView {
    pub current: Config,
    /// The rollout of the current revision, when there is one.
    pub rollout: Option<Rollout>,
    /// The configuration at each revision the rollout may send a host to.
    pub revisions: BTreeMap<u64, Config>,
}

impl ConfigView {
    /// The revision `host` may run now (no host: the current one).
    pub fn revision_for(&self, host: Option<&HostName>) -> u64 {
        match (&self.rollout, host) {
            (Some(rollout), Some(host)) => rollout.revision_for(host),
            _ => self.current.revision,
        }
    }

    /// The configuration `host` may run now.
    pub fn config_for(&self, host: Option<&HostName>) -> &Config {
        let revision = self.revision_for(host);
        self.revisions.get(&revision).unwrap_or(&self.current)
    }

    /// Grows with every change a watcher must hear of: a revision, or a rollout's step.
    pub fn generation(&self) -> (u64, u64) {
        (self.current.revision, self.rollout.as_ref().map_or(0, |r| r.seq))
    }
}

impl Metadata {
    /// The configuration with what its agents may run; see [`ConfigView`].
    pub fn config_view(&self, name: &ConfigName) -> Result<ConfigView> {
        self.read(|tx| {
            let current = current_config(tx, name)?;
            let rollout = load(tx, name)?.filter(|r| r.to == current.revision);
            let mut revisions = BTreeMap::new();
            if let Some(rollout) = &rollout {
                for revision in rollout.revisions() {
                    if revision != current.revision
                        && let Some(config) = config_at(tx, name, revision)?
                    {
                        revisions.insert(revision, config);
                    }
                }
            }
            revisions.insert(current.revision, current.clone());
            Ok(ConfigView { current, rollout, revisions })
        })
    }

    /// Sets how new revisions of `name` reach its agents, from its next revision on: a rollout
    /// in progress keeps its own settings (pause, abort or continue it).
    pub fn set_strategy(&self, name: &ConfigName, strategy: &Strategy, actor: &str) -> Result<Config> {
        self.transaction(|tx| {
            let current = current_config(tx, name)?;
            if &current.strategy == strategy {
                return Ok(current);
            }
            let json = match strategy {
                Strategy::All => None,
                Strategy::Rolling(_) => Some(serde_json::to_string(strategy).expect("a strategy serializes")),
            };
            tx.execute("UPDATE configs SET strategy = ?2 WHERE name = ?1", params![name.as_str(), json])?;
            let summary = format!("rollout strategy of {name}: {strategy}");
            record_event(tx, EventKind::Strategy, actor, None, Some(name), Some(current.revision), &summary)?;
            current_config(tx, name)
        })
    }

    /// The latest rollout of `name` with each host's state; `None` when it never had one.
    pub fn rollout_status(&self, name: &ConfigName) -> Result<Option<RolloutStatus>> {
        self.read(|tx| {
            current_config(tx, name)?;
            rollout_of(tx, name)
        })
    }

    /// Pauses, resumes, aborts or continues the rollout of `name` (of its current revision).
    pub fn rollout_action(&self, name: &ConfigName, action: RolloutAction, actor: &str) -> Result<RolloutStatus> {
        self.transaction(|tx| {
            let current = current_config(tx, name)?;
            let mut rollout =
                load(tx, name)?.filter(|r| r.to == current.revision).ok_or_else(|| StoreError::Rollout {
                    config: name.clone(),
                    message: format!("configuration {name} has no rollout of its revision {}", current.revision),
                })?;
            let now = Utc::now();
            let done = match action {
                RolloutAction::Pause => rollout.pause(),
                RolloutAction::Resume => rollout.resume(now),
                RolloutAction::Abort => rollout.abort(),
                RolloutAction::Continue => rollout.continue_after_halt(now),
            };
            let summary = done.map_err(|why| StoreError::Rollout {
                config: name.clone(),
                message: format!("rollout of {name} to revision {}: {why}", rollout.to),
            })?;
            record_event(tx, EventKind::Rollout, actor, None, Some(name), Some(rollout.to), &summary)?;
            let reports = reports(tx, name)?;
            for event in rollout.step(&reports, now) {
                record_event(tx, EventKind::Rollout, REGISTRY, None, Some(name), Some(rollout.to), event.as_str())?;
            }
            save(tx, name, &mut rollout)?;
            let mut status = status(name, &rollout, &reports);
            status.steps = steps(tx, name, rollout.to)?;
            Ok(status)
        })
    }

    /// Steps every running rollout for the time that passed (bake times, deadlines). Returns how
    /// many moved.
    pub fn step_rollouts(&self) -> Result<usize> {
        let running: Vec<String> = self.read(|tx| {
            let mut statement = tx.prepare("SELECT config FROM rollouts WHERE phase = 'running' ORDER BY config")?;
            let rows = statement.query_map((), |row| row.get::<_, String>(0))?;
            rows.collect()
        })?;
        let mut moved = 0;
        for name in running {
            let Ok(name) = ConfigName::parse(&name) else { continue };
            if self.transaction(|tx| step(tx, &name))? {
                moved += 1;
            }
        }
        Ok(moved)
    }
}

/// Ends the rollout of `name`'s current revision at once (`--now`), in the transaction of the
/// write that began it, with a line in the history.
pub(crate) fn skip(tx: &Tx<'_>, name: &ConfigName, actor: &str) -> Result<()> {
    let current = current_config(tx, name)?;
    if let Some(mut rollout) = load(tx, name)?.filter(|r| r.to == current.revision && !r.finished()) {
        rollout.phase = Phase::Completed;
        let summary = format!("rollout to revision {} skipped (--now): every host may run it at once", rollout.to);
        record_event(tx, EventKind::Rollout, actor, None, Some(name), Some(rollout.to), &summary)?;
        save(tx, name, &mut rollout)?;
    }
    Ok(())
}

/// Begins the rollout of `revision`, just written after `previous`, when `name` rolls: its
/// batches are formed from the agents known now, and each host starts from the revision it may
/// run now (a rollout still going is superseded: each host starts from where it is).
pub(crate) fn begin(tx: &Tx<'_>, name: &ConfigName, previous: u64, revision: u64, strategy: &Strategy) -> Result<()> {
    let Strategy::Rolling(rolling) = strategy else { return Ok(()) };
    if previous == 0 {
        return Ok(());
    }
    let latest = load(tx, name)?;
    let old = latest.clone().filter(|r| r.to == previous);
    let mut reports = reports(tx, name)?;
    // Hosts an operator forgave in the last rollout (`continue`) and that have said nothing
    // since it began have left the fleet: they join again with their next report.
    if let Some(latest) = &latest {
        reports.retain(|host, report| !(latest.forgiven.contains(host) && report.since < latest.started_at));
    }
    // Where each host starts from: what it runs (its active report), else where the rollout
    // before left it.
    let default_from = match &old {
        Some(old) if old.phase != Phase::Completed => old.from,
        _ => previous,
    };
    let from_for = |host: &HostName, report: &HostReport| match (report.state, &old) {
        (AgentState::Active, _) => report.revision,
        (_, Some(old)) if old.phase == Phase::Completed => previous,
        (_, Some(old)) => old.from_for(host),
        (_, None) => previous,
    };
    let now = Utc::now();
    let mut rollout = Rollout::start(default_from, revision, rolling.clone(), reports.keys().cloned(), now);
    rollout.baseline = reports
        .iter()
        .map(|(host, report)| (host.clone(), from_for(host, report)))
        .filter(|(_, from)| *from != rollout.from)
        .collect();
    if let Some(old) = old.as_ref().filter(|old| !old.finished()) {
        let summary = format!("rollout to revision {} superseded by revision {revision}", old.to);
        record_event(tx, EventKind::Rollout, REGISTRY, None, Some(name), Some(old.to), &summary)?;
    }
    rollout.seq = old.map_or(0, |old| old.seq);
    let summary = match rollout.batches.first() {
        Some(first) => format!(
            "rollout to revision {revision} began: {} host(s) in {} batch(es); batch 1 started: {}",
            rollout.batches.iter().map(Vec::len).sum::<usize>(),
            rollout.batches.len(),
            first.iter().map(HostName::as_str).collect::<Vec<_>>().join(", ")
        ),
        None => format!("rollout to revision {revision}: no agent known yet, every host may run it"),
    };
    record_event(tx, EventKind::Rollout, REGISTRY, None, Some(name), Some(revision), &summary)?;
    save(tx, name, &mut rollout)
}

/// After an agent's report: a host the rollout does not know joins its last batch, and the
/// rollout steps on the new report.
pub(crate) fn after_report(tx: &Tx<'_>, name: &ConfigName, host: &HostName) -> Result<()> {
    let current = current_config(tx, name)?;
    let Some(mut rollout) = load(tx, name)?.filter(|r| r.to == current.revision && !r.finished()) else {
        return Ok(());
    };
    let joined = rollout.join(host.clone(), Utc::now());
    if joined {
        let summary = format!("host {host} joined the rollout to revision {} in its last batch", rollout.to);
        record_event(tx, EventKind::Rollout, REGISTRY, None, Some(name), Some(rollout.to), &summary)?;
    }
    let events = rollout.step(&reports(tx, name)?, Utc::now());
    for event in &events {
        record_event(tx, EventKind::Rollout, REGISTRY, None, Some(name), Some(rollout.to), event)?;
    }
    if joined || !events.is_empty() {
        save(tx, name, &mut rollout)?;
    }
    Ok(())
}

/// Steps the rollout of `name` if it runs; whether it moved.
fn step(tx: &Tx<'_>, name: &ConfigName) -> Result<bool> {
    let current = match current_config(tx, name) {
        Ok(current) => current,
        Err(StoreError::UnknownConfig(_)) => return Ok(false),
        Err(error) => return Err(error),
    };
    let Some(mut rollout) = load(tx, name)?.filter(|r| r.to == current.revision && r.phase == Phase::Running) else {
        return Ok(false);
    };
    let events = rollout.step(&reports(tx, name)?, Utc::now());
    for event in &events {
        record_event(tx, EventKind::Rollout, REGISTRY, None, Some(name), Some(rollout.to), event)?;
    }
    if events.is_empty() {
        return Ok(false);
    }
    save(tx, name, &mut rollout)?;
    Ok(true)
}

/// For each configuration, the revisions other than its current one that its rollout may send
/// a host to, with their layers: the versions they name must stay (deletion, retention).
pub(crate) fn held_revisions(tx: &Tx<'_>) -> Result<Vec<(ConfigName, u64, Vec<Layer>)>> {
    let mut statement = tx.prepare(
        "SELECT c.name, c.revision, r.state FROM rollouts r JOIN configs c ON c.name = r.config ORDER BY c.name",
    )?;
    let rows = statement
        .query_map((), |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?)))?;
    let mut held = Vec::new();
    for row in rows {
        let (name, current, state) = row?;
        let rollout: Rollout = from_json(&state)?;
        let Ok(name) = ConfigName::parse(&name) else { continue };
        if rollout.to != current as u64 {
            continue;
        }
        for revision in rollout.revisions() {
            if revision != rollout.to
                && let Some(config) = config_at(tx, &name, revision)?
            {
                held.push((name.clone(), revision, config.layers));
            }
        }
    }
    Ok(held)
}

/// The latest rollout of `name` with each host's state.
pub(crate) fn rollout_of(tx: &Tx<'_>, name: &ConfigName) -> Result<Option<RolloutStatus>> {
    let Some(rollout) = load(tx, name)? else { return Ok(None) };
    let mut status = status(name, &rollout, &reports(tx, name)?);
    status.steps = steps(tx, name, rollout.to)?;
    Ok(Some(status))
}

/// The history lines of the rollout to `revision`, oldest first.
fn steps(tx: &Tx<'_>, name: &ConfigName, revision: u64) -> Result<Vec<RolloutStep>> {
    let mut statement = tx.prepare(
        "SELECT at, actor, summary FROM events WHERE config = ?1 AND kind = 'rollout' AND revision = ?2 ORDER BY seq",
    )?;
    let rows = statement.query_map(params![name.as_str(), revision as i64], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?))
    })?;
    let mut steps = Vec::new();
    for row in rows {
        let (at, actor, summary) = row?;
        steps.push(RolloutStep { at: parse_time(&at)?, actor, summary });
    }
    Ok(steps)
}

/// The configuration's strategy as stored (NULL: all at once).
pub(crate) fn strategy_of(text: Option<String>) -> Result<Strategy> {
    text.map_or(Ok(Strategy::All), |text| from_json(&text))
}

pub(crate) fn load(tx: &Tx<'_>, name: &ConfigName) -> Result<Option<Rollout>> {
    let state: Option<String> =
        tx.query_row("SELECT state FROM rollouts WHERE config = ?1", [name.as_str()], |row| row.get(0)).optional()?;
    state.map(|state| from_json(&state)).transpose()
}

/// Writes the rollout (one newer than any before it) and wakes the configuration's watchers.
fn save(tx: &Tx<'_>, name: &ConfigName, rollout: &mut Rollout) -> Result<()> {
    rollout.seq += 1;
    let state = serde_json::to_string(rollout).expect("a rollout serializes");
    tx.execute(
        "INSERT INTO rollouts (config, phase, state, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (config) DO UPDATE SET phase = excluded.phase, state = excluded.state, updated_at = excluded.updated_at",
        params![name.as_str(), rollout.phase.as_str(), state, now()],
    )?;
    tx.changed(name.as_str())
}

/// Every agent's latest report on `name`, with since when (registry time) it has been so.
fn reports(tx: &Tx<'_>, name: &ConfigName) -> Result<BTreeMap<HostName, HostReport>> {
    let mut statement =
        tx.prepare("SELECT host, revision, state, COALESCE(since, last_seen) FROM agents WHERE config = ?1")?;
    let rows = statement.query_map([name.as_str()], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?, row.get::<_, String>(2)?, row.get::<_, String>(3)?))
    })?;
    let mut reports = BTreeMap::new();
    for row in rows {
        let (host, revision, state, since) = row?;
        let (Ok(host), Some(state)) = (HostName::parse(&host), agent_state(&state)) else { continue };
        reports.insert(host, HostReport { revision: revision as u64, state, since: parse_time(&since)? });
    }
    Ok(reports)
}

fn agent_state(text: &str) -> Option<AgentState> {
    serde_json::from_value(serde_json::Value::String(text.to_owned())).ok()
}

/// `name` at `revision`, if that revision is kept.
fn config_at(tx: &Tx<'_>, name: &ConfigName, revision: u64) -> Result<Option<Config>> {
    let row: Option<(String, String, String, Option<String>)> = tx
        .query_row(
            "SELECT r.hash, r.at, r.layers, c.strategy FROM config_revisions r JOIN configs c ON c.name = r.config
             WHERE r.config = ?1 AND r.revision = ?2",
            params![name.as_str(), revision as i64],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let Some((hash, at, layers, strategy)) = row else { return Ok(None) };
    let layers: Vec<Layer> = from_json(&layers)?;
    Ok(Some(Config {
        name: name.clone(),
        revision,
        hash,
        updated_at: parse_time(&at)?,
        layers,
        stage: stage_ref(tx, name)?,
        strategy: strategy_of(strategy)?,
    }))
}

/// The API's view of `rollout`, with each host's latest report.
pub(crate) fn status(name: &ConfigName, rollout: &Rollout, reports: &BTreeMap<HostName, HostReport>) -> RolloutStatus {
    let phase = match rollout.phase {
        Phase::Running => RolloutPhase::Running,
        Phase::Paused => RolloutPhase::Paused,
        Phase::Halted { .. } => RolloutPhase::Halted,
        Phase::Reverted { .. } => RolloutPhase::Reverted,
        Phase::Aborted => RolloutPhase::Aborted,
        Phase::Completed => RolloutPhase::Completed,
    };
    let batches = rollout
        .batches
        .iter()
        .enumerate()
        .map(|(i, hosts)| BatchStatus {
            number: i as u32 + 1,
            started: i < rollout.started,
            hosts: hosts
                .iter()
                .map(|host| {
                    let report = reports.get(host);
                    HostRollout {
                        host: host.clone(),
                        target: rollout.revision_for(host),
                        revision: report.map(|r| r.revision),
                        state: report.map(|r| r.state),
                        failed: rollout.failed.get(host).cloned(),
                    }
                })
                .collect(),
        })
        .collect();
    RolloutStatus {
        config: name.clone(),
        from: rollout.from,
        to: rollout.to,
        phase,
        reason: rollout.phase.reason().map(str::to_owned),
        strategy: rollout.strategy.clone(),
        started_at: rollout.started_at,
        batch_started_at: rollout.batch_started_at,
        started_batches: rollout.started as u32,
        batches,
        steps: Vec::new(),
    }
}
