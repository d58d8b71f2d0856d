use std::process::ExitCode;

use crate::cli::VersionsArgs;
use crate::printer::{Printer, human_bytes};

pub fn run(args: VersionsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    // An unknown component is the registry's `unknown-component` error, not an empty list.
    let versions = client.versions(&args.component)?;
    if printer.json {
        printer.json(&versions);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            let labels: Vec<String> = v.labels.iter().map(|(key, value)| format!("{key}={value}")).collect();
            vec![
                v.version.to_string(),
                super::short_digest(&v.digest).to_owned(),
                human_bytes(v.size),
                super::time(&v.created_at),
                v.creator.clone(),
                labels.join(","),
                v.deprecated.as_ref().map_or_else(String::new, |d| format!("deprecated: {}", d.reason)),
            ]
        })
        .collect();
    for line in super::table(&["VERSION", "DIGEST", "SIZE", "PUSHED", "BY", "LABELS", "NOTE"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}
