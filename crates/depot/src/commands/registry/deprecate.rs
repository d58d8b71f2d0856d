use std::process::ExitCode;

use depot_api::types::DeprecateVersion;

use crate::cli::{DeprecateArgs, UndeprecateArgs};
use crate::printer::Printer;

pub fn run(args: DeprecateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let request = DeprecateVersion { reason: args.reason, replacement: args.replacement };
    let info = client.deprecate(&args.component, &args.version, &request)?;
    if printer.json {
        printer.json(&info);
        return Ok(ExitCode::SUCCESS);
    }
    printer.message(format!(
        "Deprecated {} {}: no channel names it now; configurations tracking a channel moved back \
         (`depot channels {}`)",
        info.component, info.version, info.component
    ));
    Ok(ExitCode::SUCCESS)
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
