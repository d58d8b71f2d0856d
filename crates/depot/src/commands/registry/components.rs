use std::process::ExitCode;

use crate::cli::ComponentsArgs;
use crate::printer::Printer;

pub fn run(args: ComponentsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let components = client.components()?;
    if printer.json {
        printer.json(&components);
        return Ok(ExitCode::SUCCESS);
    }
    if components.is_empty() {
        printer.message("No components yet; push one with `depot push COMPONENT VERSION DIR`");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = components
        .iter()
        .map(|c| {
            vec![
                c.name.to_string(),
                c.versions.to_string(),
                c.newest.as_ref().map_or("-".to_owned(), ToString::to_string),
            ]
        })
        .collect();
    for line in super::table(&["COMPONENT", "VERSIONS", "NEWEST"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
