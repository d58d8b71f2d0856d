use std::process::ExitCode;

use crate::cli::TokenRevokeArgs;
use crate::printer::Printer;

pub fn run(args: TokenRevokeArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    client.revoke_token(&args.name)?;
    if printer.json {
        printer.json(&serde_json::json!({ "revoked": args.name }));
    } else {
        printer.message(format!("Revoked token {}; it no longer works", args.name));
    }
    Ok(ExitCode::SUCCESS)
}
