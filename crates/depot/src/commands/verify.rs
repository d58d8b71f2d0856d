use std::process::ExitCode;

use anyhow::bail;
use depot_release::root::ReleaseRoot;
use depot_release::verify;

use crate::cli::VerifyArgs;
use crate::printer::Printer;

pub fn run(args: VerifyArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let root = ReleaseRoot::new(&args.root)?;
    let version = match args.version.or_else(|| root.current()) {
        Some(version) => version,
        None => bail!("there is no current release on {}; pass --version", root.path().display()),
    };
    let report = verify::verify(&root, &version)?;
    if printer.json {
        printer.json(&report);
    } else {
        for problem in &report.problems {
            printer.data(format!("{}: {}", problem.path, problem.problem));
        }
    }
    if report.problems.is_empty() {
        if !printer.json {
            printer.message(format!(
                "Release {version} matches its manifest ({} entries checked)",
                report.entries_checked
            ));
        }
        Ok(ExitCode::SUCCESS)
    } else {
        printer.message(format!(
            "error: release {version} differs from its manifest in {} place(s)",
            report.problems.len()
        ));
        Ok(ExitCode::FAILURE)
    }
}
