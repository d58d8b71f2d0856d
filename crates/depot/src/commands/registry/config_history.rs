use std::process::ExitCode;

use crate::cli::ConfigHistoryArgs;
use crate::printer::Printer;

pub fn run(args: ConfigHistoryArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let history = client.history(&args.name)?;
    if printer.json {
        printer.json(&history);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|entry| {
            vec![
                entry.revision.to_string(),
                super::time(&entry.at),
                entry.actor.clone(),
                super::short_hash(&entry.hash).to_owned(),
                entry.change.clone(),
            ]
        })
        .collect();
    for line in super::table(&["REVISION", "AT", "BY", "HASH", "CHANGE"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
