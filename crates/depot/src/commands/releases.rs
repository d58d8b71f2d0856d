use std::process::ExitCode;

use depot_release::root::ReleaseRoot;

use crate::cli::ReleasesArgs;
use crate::printer::Printer;

pub fn run(args: ReleasesArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let root = ReleaseRoot::new(&args.root)?;
    if !root.path().exists() {
        return Err(depot_release::Error::NoRoot { path: root.path().to_owned() }.into());
    }
    let releases = root.list()?;
    if printer.json {
        printer.json(&releases);
        return Ok(ExitCode::SUCCESS);
    }
    if releases.is_empty() {
        printer.data("No releases found");
        return Ok(ExitCode::SUCCESS);
    }
    let width = releases.iter().map(|r| r.version.as_str().len()).max().unwrap_or(0).max("VERSION".len());
    printer.data(format!("  {:width$}  {:20}  STATUS", "VERSION", "CREATED"));
    for release in &releases {
        let marker = if release.current { "*" } else { " " };
        let created = release.created_at.format("%Y-%m-%d %H:%M:%SZ");
        let note = if release.current { "  <- current" } else { "" };
        printer.data(format!("{marker} {:width$}  {created:20}  {}{note}", release.version.as_str(), release.status));
    }
    printer.data(format!("Total: {} release{}", releases.len(), if releases.len() == 1 { "" } else { "s" }));
    Ok(ExitCode::SUCCESS)
}
