use std::process::ExitCode;

use depot_api::types::CreateToken;

use crate::cli::TokenCreateArgs;
use crate::printer::Printer;

pub fn run(args: TokenCreateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let request = CreateToken { name: args.name, role: args.access.role, config_pattern: args.access.config_pattern };
    let created = client.create_token(&request)?;
    if printer.json {
        printer.json(&created);
        return Ok(ExitCode::SUCCESS);
    }
    let scope = match &created.info.config_pattern {
        Some(pattern) => format!(", limited to configurations matching `{pattern}`"),
        None => String::new(),
    };
    printer.message(format!(
        "Created {} token {}{scope}. Store the secret now: the registry keeps only its hash.",
        created.info.role.as_str(),
        created.info.name
    ));
    printer.data(&created.token);
    Ok(ExitCode::SUCCESS)
}
