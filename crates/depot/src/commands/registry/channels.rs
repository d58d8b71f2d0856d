use std::process::ExitCode;

use crate::cli::ChannelsArgs;
use crate::printer::Printer;

pub fn run(args: ChannelsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let channels = client.channels(&args.component)?;
    if printer.json {
        printer.json(&channels);
        return Ok(ExitCode::SUCCESS);
    }
    if channels.is_empty() {
        printer.message(format!(
            "{} has no channel yet: a stable semver version (1.0.0) creates `latest`, `1.0` and `1`",
            args.component
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            let last = c.history.last().map_or_else(String::new, |m| m.reason.clone());
            vec![c.name.to_string(), c.version.to_string(), super::time(&c.updated_at), last]
        })
        .collect();
    for line in super::table(&["CHANNEL", "VERSION", "MOVED", "WHY"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
