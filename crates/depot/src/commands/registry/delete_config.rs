use std::process::ExitCode;

use crate::cli::DeleteConfigArgs;
use crate::printer::Printer;

pub fn run(args: DeleteConfigArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    if !args.force {
        return Ok(super::usage_error(
            printer,
            &format!("refusing to delete configuration {} without --force", args.name),
            "agents following it stop receiving releases; add --force if that is what you want",
        ));
    }
    let client = super::connect(&args.registry)?;
    client.delete_config(&args.name, args.expect_revision)?;
    if printer.json {
        printer.json(&serde_json::json!({ "deleted": { "config": args.name } }));
    } else {
        printer.message(format!("Deleted configuration {} and its history", args.name));
    }
    Ok(ExitCode::SUCCESS)
}
