//! `depot config rollout`, `depot pipeline rollout`, and `depot rollout status|pause|resume|abort|continue`.

use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use depot_api::ConfigName;
use depot_api::client::Client;
use depot_api::rollout::{Rolling, RolloutAction, RolloutPhase, RolloutStatus, Strategy};
use depot_api::types::Config;

use crate::cli::{
    ConfigRolloutArgs, PipelineRolloutArgs, RolloutActionArgs, RolloutCommand, RolloutStatusArgs, StrategyArgs,
};
use crate::printer::Printer;

/// How often `rollout status --watch` asks.
const WATCH_EVERY: Duration = Duration::from_secs(1);

pub fn run(command: RolloutCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    let (args, action) = match command {
        RolloutCommand::Status(args) => return status(args, printer),
        RolloutCommand::Pause(args) => (args, RolloutAction::Pause),
        RolloutCommand::Resume(args) => (args, RolloutAction::Resume),
        RolloutCommand::Abort(args) => (args, RolloutAction::Abort),
        RolloutCommand::Continue(args) => (args, RolloutAction::Continue),
    };
    act(args, action, printer)
}

pub fn config(args: ConfigRolloutArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    set(&client, &args.name, &args.name.to_string(), &args.strategy, printer)
}

pub fn pipeline(args: PipelineRolloutArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let pipeline = client.pipeline(&args.name)?;
    let Some(stage) = pipeline.stages.iter().find(|s| s.stage.name == args.stage) else {
        let stages: Vec<&str> = pipeline.stages.iter().map(|s| s.stage.name.as_str()).collect();
        return Ok(super::usage_error(
            printer,
            &format!("pipeline {} has no stage {}", args.name, args.stage),
            &format!("its stages: {}", stages.join(", ")),
        ));
    };
    set(&client, &stage.stage.config, &format!("{}/{}", args.name, args.stage), &args.strategy, printer)
}

/// Sets the strategy the flags describe (keeping the current values of the flags not given), or
/// shows it when no flag is given.
fn set(
    client: &Client,
    name: &ConfigName,
    what: &str,
    flags: &StrategyArgs,
    printer: &Printer,
) -> anyhow::Result<ExitCode> {
    let current = client.get_config(name, None, None)?;
    let given = flags.all
        || flags.canary.is_some()
        || flags.batch.is_some()
        || flags.bake.is_some()
        || flags.deadline.is_some()
        || flags.max_failures.is_some()
        || flags.on_failure.is_some();
    let config = if given { client.set_strategy(name, &strategy(&current, flags))? } else { current };
    if printer.json {
        printer.json(&config);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if given { "now reach" } else { "reach" };
    printer.message(format!("New revisions of {what} {verb} its agents: {}", config.strategy));
    Ok(ExitCode::SUCCESS)
}

fn strategy(current: &Config, flags: &StrategyArgs) -> Strategy {
    if flags.all {
        return Strategy::All;
    }
    let mut rolling = match &current.strategy {
        Strategy::Rolling(rolling) => rolling.clone(),
        Strategy::All => Rolling::default(),
    };
    if let Some(canary) = flags.canary {
        rolling.canary = canary;
    }
    if let Some(batch) = flags.batch {
        rolling.batch = batch;
    }
    if let Some(bake) = flags.bake {
        rolling.bake_seconds = bake.as_secs();
    }
    if let Some(deadline) = flags.deadline {
        rolling.deadline_seconds = deadline.as_secs();
    }
    if let Some(max_failures) = flags.max_failures {
        rolling.max_failures = max_failures;
    }
    if let Some(on_failure) = flags.on_failure {
        rolling.on_failure = on_failure;
    }
    Strategy::Rolling(rolling)
}

fn act(args: RolloutActionArgs, action: RolloutAction, printer: &Printer) -> anyhow::Result<ExitCode> {
    let status = super::connect(&args.registry)?.rollout_action(&args.name, action)?;
    if printer.json {
        printer.json(&status);
        return Ok(ExitCode::SUCCESS);
    }
    let done = match action {
        RolloutAction::Pause => "Paused",
        RolloutAction::Resume => "Resumed",
        RolloutAction::Abort => "Aborted",
        RolloutAction::Continue => "Continued",
    };
    printer.message(format!("{done} the rollout of {} to revision {}", status.config, status.to));
    for line in status_lines(&status) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}

fn status(args: RolloutStatusArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let mut last: Option<RolloutStatus> = None;
    loop {
        let status = client.rollout(&args.name)?;
        if last.as_ref() != Some(&status) {
            if printer.json {
                printer.json(&status);
            } else {
                if last.is_some() {
                    printer.data("");
                }
                for line in status_lines(&status) {
                    printer.data(line);
                }
            }
        }
        let ended = !matches!(status.phase, RolloutPhase::Running | RolloutPhase::Paused);
        if !args.watch || ended {
            // A watch that ends on a rollout stopped by failures, or aborted, fails.
            let failed = args.watch
                && matches!(status.phase, RolloutPhase::Halted | RolloutPhase::Reverted | RolloutPhase::Aborted);
            return Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS });
        }
        last = Some(status);
        std::thread::sleep(WATCH_EVERY);
    }
}

/// The summary line, the strategy, one row per host, and what is left.
fn status_lines(status: &RolloutStatus) -> Vec<String> {
    let elapsed = (Utc::now() - status.started_at).num_seconds().max(0);
    let in_batch = (Utc::now() - status.batch_started_at).num_seconds().max(0);
    let mut lines = vec![format!(
        "rollout of {}: revision {} → {}, {}, batch {} of {}, {} elapsed (this batch {})",
        status.config,
        status.from,
        status.to,
        status.phase.as_str(),
        status.started_batches,
        status.batches.len(),
        seconds(elapsed),
        seconds(in_batch)
    )];
    if let Some(reason) = &status.reason {
        lines.push(format!("reason: {reason}"));
    }
    lines.push(format!("strategy: {}", Strategy::Rolling(status.strategy.clone())));
    let rows: Vec<Vec<String>> = status
        .batches
        .iter()
        .flat_map(|batch| {
            batch.hosts.iter().map(move |host| {
                let reported = match (host.state, host.revision) {
                    (Some(state), Some(revision)) => format!("{} on {revision}", state.as_str()),
                    _ => "nothing yet".to_owned(),
                };
                let note = match (&host.failed, batch.started) {
                    (Some(failed), _) => format!("failed: {failed}"),
                    (None, false) => "waiting for its batch".to_owned(),
                    (None, true) => String::new(),
                };
                vec![batch.number.to_string(), host.host.to_string(), host.target.to_string(), reported, note]
            })
        })
        .collect();
    lines.extend(super::table(&["BATCH", "HOST", "MAY RUN", "REPORTED", "NOTE"], &rows));
    let waiting: Vec<_> = status.batches.iter().filter(|b| !b.started).collect();
    if !waiting.is_empty() && matches!(status.phase, RolloutPhase::Running | RolloutPhase::Paused) {
        let hosts: usize = waiting.iter().map(|b| b.hosts.len()).sum();
        lines.push(format!("left: {} batch(es), {hosts} host(s)", waiting.len()));
    }
    if !status.steps.is_empty() {
        lines.push("steps:".to_owned());
        for step in &status.steps {
            lines.push(format!("  {}  {}  {}", super::time(&step.at), step.actor, step.summary));
        }
    }
    lines
}

/// `latest rollout: revision 3 → 4, running, batch 2 of 5 (1 failed)`.
pub(crate) fn summary(status: &RolloutStatus) -> String {
    let failed = status.batches.iter().flat_map(|b| &b.hosts).filter(|h| h.failed.is_some()).count();
    format!(
        "latest rollout: revision {} → {}, {}, batch {} of {}{}",
        status.from,
        status.to,
        status.phase.as_str(),
        status.started_batches,
        status.batches.len(),
        if failed > 0 { format!(" ({failed} failed)") } else { String::new() }
    )
}

fn seconds(total: i64) -> String {
    match total {
        0..60 => format!("{total}s"),
        60..3600 => format!("{}m{:02}s", total / 60, total % 60),
        _ => format!("{}h{:02}m", total / 3600, total % 3600 / 60),
    }
}
