use std::process::ExitCode;

use depot_release::config::RootConfig;
use depot_release::deploy;
use depot_release::root::ReleaseRoot;

use super::{activation_options, lock_timeout, version_or_none};
use crate::cli::RollbackArgs;
use crate::printer::Printer;

pub fn run(args: RollbackArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let root = ReleaseRoot::new(args.root.as_deref().expect("clap requires --root without --stage"))?;
    let config = RootConfig::load(root.path())?;
    let options = activation_options(&args.activation, &config);
    let report = deploy::rollback(&root, args.version.as_ref(), &options, lock_timeout(args.lock_timeout, &config))?;
    if printer.json {
        printer.json(&report);
    } else if report.switched {
        printer.message(format!("Rolled back: current: {} -> {}", version_or_none(report.from.as_ref()), report.to));
    } else {
        printer.message(format!("{} is already the current release; nothing to do", report.to));
    }
    Ok(ExitCode::SUCCESS)
}
