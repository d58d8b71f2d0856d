use std::process::ExitCode;

use crate::cli::ConfigsArgs;
use crate::printer::Printer;

pub fn run(args: ConfigsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let configs = client.configs()?;
    if printer.json {
        printer.json(&configs);
        return Ok(ExitCode::SUCCESS);
    }
    if configs.is_empty() {
        printer.message("No configurations yet; create one with `depot config create NAME --layer COMPONENT:VERSION`");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = configs
        .iter()
        .map(|c| {
            vec![
                c.name.to_string(),
                c.revision.to_string(),
                super::short_hash(&c.hash).to_owned(),
                c.layers.to_string(),
                super::time(&c.updated_at),
            ]
        })
        .collect();
    for line in super::table(&["CONFIG", "REVISION", "HASH", "LAYERS", "UPDATED"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
