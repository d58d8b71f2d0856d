use std::process::ExitCode;

use depot_release::config::RootConfig;
use depot_release::prune;
use depot_release::root::ReleaseRoot;

use super::{keep, lock_timeout};
use crate::cli::PruneArgs;
use crate::printer::{Printer, human_bytes};

pub fn run(args: PruneArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let root = ReleaseRoot::new(&args.root.root)?;
    let config = RootConfig::load(root.path())?;
    let report = prune::prune(&root, keep(args.keep, &config), lock_timeout(args.root.lock_timeout, &config))?;
    if printer.json {
        printer.json(&report);
    } else if report.removed.is_empty() {
        printer.message(format!(
            "Nothing to prune; {} release(s) kept; {} unused store object(s) removed",
            report.kept.len(),
            report.objects_removed
        ));
    } else {
        let removed: Vec<String> = report.removed.iter().map(|v| v.to_string()).collect();
        printer.message(format!(
            "Removed {} release(s): {}; {} store object(s), {} freed; {} kept",
            removed.len(),
            removed.join(", "),
            report.objects_removed,
            human_bytes(report.bytes_freed),
            report.kept.len()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
