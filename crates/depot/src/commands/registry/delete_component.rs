use std::process::ExitCode;

use crate::cli::DeleteComponentArgs;
use crate::printer::Printer;

pub fn run(args: DeleteComponentArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    client.delete_component(&args.component)?;
    if printer.json {
        printer.json(&serde_json::json!({ "deleted": { "component": args.component } }));
    } else {
        printer.message(format!("Deleted component {} and its versions", args.component));
    }
    Ok(ExitCode::SUCCESS)
}
