use std::process::ExitCode;

use depot_api::types::RollbackConfig;

use crate::cli::ConfigRollbackArgs;
use crate::printer::Printer;

pub fn run(args: ConfigRollbackArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let request =
        RollbackConfig { to_revision: args.to_revision, expect_revision: args.expect_revision, now: args.now };
    let config = client.rollback(&args.name, &request)?;
    if printer.json {
        printer.json(&config);
        return Ok(ExitCode::SUCCESS);
    }
    super::print_rollback(printer, &config.name.to_string(), args.to_revision, &config);
    Ok(ExitCode::SUCCESS)
}
