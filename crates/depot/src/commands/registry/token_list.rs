use std::process::ExitCode;

use crate::cli::TokenListArgs;
use crate::printer::Printer;

pub fn run(args: TokenListArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let tokens = client.tokens()?;
    if printer.json {
        printer.json(&tokens);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = tokens
        .iter()
        .map(|t| {
            vec![
                t.name.to_string(),
                t.role.as_str().to_owned(),
                t.config_pattern.clone().unwrap_or_else(|| "-".to_owned()),
                super::time(&t.created_at),
                t.created_by.clone(),
            ]
        })
        .collect();
    for line in super::table(&["TOKEN", "ROLE", "CONFIGS", "CREATED", "BY"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
