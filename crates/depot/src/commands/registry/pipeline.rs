//! `depot pipeline create|show|list|gate`, `depot promote`, `depot approve`, `depot rollback APP
//! --stage`, `depot history`.

use std::process::ExitCode;

use depot_api::pipeline::{CreatePipeline, PipelineStatus, Promote, Promotion, PromotionState, StageSpec};
use depot_api::types::RollbackConfig;

use crate::cli::{
    ApproveArgs, HistoryArgs, PipelineCommand, PipelineCreateArgs, PipelineShowArgs, PromoteArgs, RejectArgs,
    RollbackArgs,
};
use crate::printer::Printer;

pub fn run(command: PipelineCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        PipelineCommand::Create(args) => create(args, printer),
        PipelineCommand::Show(args) => show(args, printer),
        PipelineCommand::List(args) => {
            let pipelines = super::connect(&args.registry)?.pipelines()?;
            if printer.json {
                printer.json(&pipelines);
                return Ok(ExitCode::SUCCESS);
            }
            let rows: Vec<Vec<String>> = pipelines
                .iter()
                .map(|p| {
                    let components: Vec<&str> = p.components.iter().map(|c| c.as_str()).collect();
                    vec![p.name.to_string(), stage_chain(&p.stages), components.join(", ")]
                })
                .collect();
            for line in super::table(&["PIPELINE", "STAGES", "COMPONENTS"], &rows) {
                printer.data(line);
            }
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Delete(args) => {
            if !args.force {
                return Ok(super::usage_error(
                    printer,
                    &format!("refusing to delete pipeline {} without --force", args.name),
                    "its stages' configurations go with it, and their agents stop receiving releases",
                ));
            }
            super::connect(&args.registry)?.delete_pipeline(&args.name)?;
            if printer.json {
                printer.json(&serde_json::json!({ "deleted": { "pipeline": args.name } }));
            } else {
                printer.message(format!("Deleted pipeline {} with its stages' configurations", args.name));
            }
            Ok(ExitCode::SUCCESS)
        }
        PipelineCommand::Rollout(args) => super::rollout::pipeline(args, printer),
        PipelineCommand::Gate(args) => {
            let pipeline = super::connect(&args.registry)?.set_gate(&args.name, &args.stage, args.gate)?;
            if printer.json {
                printer.json(&pipeline);
            } else {
                printer.message(format!(
                    "promotions into {}/{} now pass gate {}",
                    args.name,
                    args.stage,
                    args.gate.as_str()
                ));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn create(args: PipelineCreateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    if args.after_of.iter().flatten().count() != args.after.len() {
        return Ok(super::usage_error(
            printer,
            "each --after must come after the --stage it belongs to, once per stage",
            "write --stage prod-eu --after staging",
        ));
    }
    let stages = args
        .stages
        .iter()
        .zip(args.after_of.iter().chain(std::iter::repeat(&None)))
        .map(|(name, after)| StageSpec { name: name.clone(), after: after.clone() })
        .collect();
    let request = CreatePipeline { name: args.name, components: args.components, stages, track: Some(args.track) };
    let pipeline = super::connect(&args.registry)?.create_pipeline(&request)?;
    if printer.json {
        printer.json(&pipeline);
        return Ok(ExitCode::SUCCESS);
    }
    printer.message(format!("Created pipeline {}: {}", pipeline.name, stage_chain(&pipeline.stages)));
    for stage in &pipeline.stages {
        let source = match &stage.after {
            None => format!("tracks {}", pipeline.track),
            Some(after) => format!("promoted from {after}"),
        };
        printer.message(format!("  {:<10} configuration {} ({source})", stage.name.as_str(), stage.config));
    }
    printer.message(format!("Agents track a stage with `depot agent --config {}`", pipeline.stages[0].config));
    Ok(ExitCode::SUCCESS)
}

/// `dev → staging → prod-eu, prod-us`
fn stage_chain(stages: &[depot_api::pipeline::Stage]) -> String {
    let mut out = String::new();
    for (index, stage) in stages.iter().enumerate() {
        if index > 0 {
            let follows_previous = stage.after.as_ref() == Some(&stages[index - 1].name);
            out.push_str(if follows_previous { " → " } else { ", " });
        }
        out.push_str(stage.name.as_str());
        if let Some(after) = &stage.after
            && index > 0
            && stage.after.as_ref() != Some(&stages[index - 1].name)
            && stages[index - 1].after.as_ref() != Some(after)
        {
            out.push_str(&format!(" (after {after})"));
        }
    }
    out
}

fn show(args: PipelineShowArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let status = super::connect(&args.registry)?.pipeline(&args.name)?;
    if printer.json {
        printer.json(&status);
        return Ok(ExitCode::SUCCESS);
    }
    for line in status_lines(&status) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}

/// One table, stages × components, then what waits for approval.
fn status_lines(status: &PipelineStatus) -> Vec<String> {
    let mut headers = vec!["STAGE", "AFTER", "GATE", "REV"];
    headers.extend(status.components.iter().map(|c| c.as_str()));
    headers.extend(["ENV", "AGENTS"]);
    let rows: Vec<Vec<String>> = status
        .stages
        .iter()
        .map(|stage| {
            let mut row = vec![
                stage.stage.name.to_string(),
                stage.stage.after.as_ref().map_or_else(|| format!("({})", status.track), |a| a.to_string()),
                stage.stage.gate.as_str().to_owned(),
                stage.revision.to_string(),
            ];
            for component in &status.components {
                row.push(stage.layers.iter().find(|l| &l.component == component).map_or_else(
                    || "-".to_owned(),
                    // The first stage tracks its channel unless someone pinned a layer.
                    |l| match (&stage.stage.after, &l.channel) {
                        (None, None) => format!("{} (pinned)", l.version),
                        _ => l.version.to_string(),
                    },
                ));
            }
            row.push(stage.env_version.as_ref().map_or_else(|| "-".to_owned(), |v| format!("v{v}")));
            // Agents report nothing on an empty configuration: whether any track it is unknown.
            let empty = stage.layers.is_empty() && stage.env_version.is_none() && stage.health.agents == 0;
            row.push(if empty { "nothing to run yet".to_owned() } else { stage.health.to_string() });
            row
        })
        .collect();
    let mut lines = super::table(&headers, &rows);
    let rolling: Vec<_> = status.stages.iter().filter(|s| !s.strategy.is_all()).collect();
    if !rolling.is_empty() {
        lines.push(String::new());
        for stage in rolling {
            lines.push(format!("{}: {}", stage.stage.name, stage.strategy));
            if let Some(rollout) = &stage.rollout {
                lines.push(format!("  {}", super::rollout::summary(rollout)));
            }
        }
    }
    if !status.pending.is_empty() {
        lines.push(String::new());
        lines.push("Waiting for approval:".to_owned());
        for promotion in &status.pending {
            lines.push(format!(
                "  {} {} → {} ({}), asked by {} at {}: depot approve {} {}",
                promotion.id,
                promotion.from,
                promotion.to,
                describe(&promotion.layers),
                promotion.requested_by,
                super::time(&promotion.requested_at),
                status.name,
                promotion.id
            ));
        }
    }
    lines
}

fn describe(layers: &[depot_api::types::Layer]) -> String {
    layers.iter().map(|l| format!("{} {}", l.component, l.version)).collect::<Vec<_>>().join(", ")
}

pub fn promote(args: PromoteArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let request = Promote { to: args.to, from: args.from, components: args.components, force: args.force };
    let promotion = super::connect(&args.registry)?.promote(&args.name, &request)?;
    report_promotion(&promotion, printer);
    Ok(ExitCode::SUCCESS)
}

pub fn approve(args: ApproveArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let id = match args.id {
        Some(id) => id,
        None => {
            let pending = client.pipeline(&args.name)?.pending;
            match pending.as_slice() {
                [only] => only.id,
                [] => anyhow::bail!(crate::printer::hinted(
                    format!("nothing waits for approval in pipeline {}", args.name),
                    "promotions into a stage with an approval gate wait here; see `depot pipeline show`"
                )),
                many => anyhow::bail!(crate::printer::hinted(
                    format!("{} promotions wait for approval in pipeline {}", many.len(), args.name),
                    format!(
                        "name one: {}",
                        many.iter()
                            .map(|p| format!("`depot approve {} {}`", args.name, p.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                )),
            }
        }
    };
    let promotion = client.approve(&args.name, id)?;
    report_promotion(&promotion, printer);
    Ok(ExitCode::SUCCESS)
}

pub fn reject(args: RejectArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let promotion = super::connect(&args.registry)?.reject(&args.name, args.id)?;
    if printer.json {
        printer.json(&promotion);
    } else {
        printer.message(format!(
            "Rejected promotion {} of {} into {}/{}",
            promotion.id,
            describe(&promotion.layers),
            promotion.pipeline,
            promotion.to
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn report_promotion(promotion: &Promotion, printer: &Printer) {
    if printer.json {
        printer.json(promotion);
        return;
    }
    let what = describe(&promotion.layers);
    let from = format!("{}/{} revision {}", promotion.pipeline, promotion.from, promotion.source_revision);
    match (promotion.state, &promotion.config) {
        (PromotionState::Pending, _) => {
            printer.message(format!(
                "Promotion {} of {what} from {from} into {}/{} waits for approval",
                promotion.id, promotion.pipeline, promotion.to
            ));
            printer.message(format!(
                "hint: another operator approves it with `depot approve {} {}`",
                promotion.pipeline, promotion.id
            ));
        }
        (PromotionState::Unchanged, Some(config)) => printer.message(format!(
            "{}/{} already runs {what} (revision {}); nothing to do",
            promotion.pipeline, promotion.to, config.revision
        )),
        (PromotionState::Superseded | PromotionState::Rejected, _) => printer.message(format!(
            "Promotion {} into {}/{} is {}",
            promotion.id,
            promotion.pipeline,
            promotion.to,
            promotion.state.as_str()
        )),
        (_, config) => {
            printer.message(format!(
                "Promoted {what} from {from} into {}/{}: revision {}",
                promotion.pipeline,
                promotion.to,
                config.as_ref().map_or(0, |c| c.revision)
            ));
            if let Some(forced) = &promotion.forced {
                printer.message(format!("warning: {forced}"));
            }
        }
    }
}

/// `depot rollback APP --stage STAGE [--to-revision N]`.
pub fn rollback(args: RollbackArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let (Some(app), Some(stage)) = (&args.app, &args.stage) else { unreachable!("clap requires both") };
    let request = RollbackConfig { to_revision: args.to_revision, expect_revision: None, now: args.now };
    let config = super::connect(&args.registry)?.rollback_stage(app, stage, &request)?;
    if printer.json {
        printer.json(&config);
        return Ok(ExitCode::SUCCESS);
    }
    super::print_rollback(printer, &format!("{app}/{stage}"), args.to_revision, &config);
    Ok(ExitCode::SUCCESS)
}

pub fn history(args: HistoryArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let events = super::connect(&args.registry)?.pipeline_history(&args.name, args.stage.as_ref())?;
    if printer.json {
        printer.json(&events);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let place = match (&e.stage, &e.component, e.revision) {
                (Some(stage), _, Some(revision)) => format!("{stage} r{revision}"),
                (Some(stage), _, None) => stage.to_string(),
                (None, Some(component), _) => component.to_string(),
                (None, None, _) => String::new(),
            };
            vec![super::time(&e.at), place, e.kind.as_str().to_owned(), e.actor.clone(), e.summary.clone()]
        })
        .collect();
    for line in super::table(&["TIME", "WHERE", "WHAT", "WHO", "DETAIL"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
