use std::process::ExitCode;

use crate::cli::GcArgs;
use crate::printer::{Printer, human_bytes};

pub fn run(args: GcArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let report = client.gc()?;
    if printer.json {
        printer.json(&report);
        return Ok(ExitCode::SUCCESS);
    }
    printer.data(format!(
        "Freed {} ({} removed); {} past retention; {}",
        human_bytes(report.bytes_freed),
        super::plural(report.blobs_removed, "blob", "blobs"),
        super::plural(report.versions_removed.len() as u64, "version", "versions"),
        super::plural(report.uploads_removed, "interrupted upload", "interrupted uploads"),
    ));
    for layer in &report.versions_removed {
        printer.data(format!("  removed {layer}"));
    }
    Ok(ExitCode::SUCCESS)
}
