use std::process::ExitCode;

use crate::cli::DeleteVersionArgs;
use crate::printer::Printer;

pub fn run(args: DeleteVersionArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    client.delete_version(&args.component, &args.version)?;
    if printer.json {
        printer.json(&serde_json::json!({ "deleted": { "component": args.component, "version": args.version } }));
    } else {
        printer.message(format!("Deleted version {} of {}", args.version, args.component));
    }
    Ok(ExitCode::SUCCESS)
}
