use std::process::ExitCode;

use depot_api::types::{DeprecateVersion, Deprecated};

use crate::cli::{DeprecateArgs, UndeprecateArgs};
use crate::printer::Printer;

pub fn run(args: DeprecateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let request = DeprecateVersion { reason: args.reason, replacement: args.replacement, now: args.now };
    let outcome = client.deprecate(&args.component, &args.version, &request)?;
    if printer.json {
        printer.json(&outcome);
        return Ok(ExitCode::SUCCESS);
    }
    for line in deprecation_lines(&outcome) {
        printer.message(line);
    }
    Ok(ExitCode::SUCCESS)
}

/// What a deprecation did: the channels, the configurations that moved back, and those still
/// running the version, which only an operator can move.
fn deprecation_lines(outcome: &Deprecated) -> Vec<String> {
    let (component, version) = (&outcome.version.component, &outcome.version.version);
    let mut lines = vec![if outcome.channels.is_empty() {
        format!("Deprecated {component} {version}: no channel names it now (`depot channels {component}`)")
    } else {
        let names: Vec<&str> = outcome.channels.iter().map(|c| c.as_str()).collect();
        format!(
            "Deprecated {component} {version}: the rolling channels left it; {} still name it (a build or manual \
             channel moves by a push or `depot channel set`)",
            names.join(", ")
        )
    }];
    if !outcome.moved.is_empty() {
        let names: Vec<&str> = outcome.moved.iter().map(|c| c.as_str()).collect();
        lines.push(format!("Moved back, tracking their channel: {}", names.join(", ")));
    }
    if !outcome.still_running.is_empty() {
        lines.push(format!("Still running {component} {version}:"));
        for user in &outcome.still_running {
            let why = match &user.channel {
                Some(channel) if outcome.channels.contains(channel) => {
                    format!("tracks {component}:{channel}, which still names it")
                }
                Some(channel) => format!("tracks {component}:{channel}, which names no other version"),
                None => "pinned".to_owned(),
            };
            lines.push(format!("  {} revision {} ({why})", user.config, user.revision));
        }
        let replacement = outcome.version.deprecated.as_ref().and_then(|d| d.replacement.as_ref());
        let to = replacement.map_or_else(|| "VERSION".to_owned(), |r| r.to_string());
        lines.push(format!(
            "hint: move each with `depot config set CONFIG {component}:{to}` (a pipeline's later stage: `depot promote`)"
        ));
    }
    lines
}

pub fn run_undeprecate(args: UndeprecateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let info = client.undeprecate(&args.component, &args.version)?;
    if printer.json {
        printer.json(&info);
        return Ok(ExitCode::SUCCESS);
    }
    printer.message(format!(
        "{} {} is back in the channels (`depot channels {}`)",
        info.component, info.version, info.component
    ));
    Ok(ExitCode::SUCCESS)
}
