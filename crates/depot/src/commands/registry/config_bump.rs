use std::process::ExitCode;

use depot_api::types::BumpLayer;

use crate::cli::ConfigBumpArgs;
use crate::printer::Printer;

pub fn run(args: ConfigBumpArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let bumped =
        client.bump(&args.name, &BumpLayer { component: args.component, expect_revision: args.expect_revision })?;
    if printer.json {
        printer.json(&bumped);
        return Ok(ExitCode::SUCCESS);
    }
    let config = &bumped.config;
    if bumped.previous == bumped.current {
        printer.message(format!(
            "{} in {} is already at its newest version, {}; nothing changed (revision {})",
            bumped.component, config.name, bumped.current, config.revision
        ));
        return Ok(ExitCode::SUCCESS);
    }
    printer.message(format!(
        "Bumped {} in {}: {} -> {} (revision {}, hash {})",
        bumped.component,
        config.name,
        bumped.previous,
        bumped.current,
        config.revision,
        super::short_hash(&config.hash)
    ));
    printer.message("To undo:");
    // The undo command is the data of a bump: `undo=$(depot config bump …)` keeps it.
    printer.data(format!("depot config set {} {}:{}", config.name, bumped.component, bumped.previous));
    Ok(ExitCode::SUCCESS)
}
