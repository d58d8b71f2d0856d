//! `depot completions SHELL` and `depot man`: generated from the same command tree as `--help`.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::printer::Printer;

pub fn completions(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "depot", &mut script);
    print(&script)
}

pub fn man(args: ManArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let command = Cli::command();
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return print(&page);
    };
    fs_err::create_dir_all(&dir)?;
    clap_mangen::generate_to(command, &dir)?;
    printer.message(format!("Wrote the manual pages to {}", dir.display()));
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to stdout; a reader that stops early (`| head`) is not an error.
fn print(text: &[u8]) -> anyhow::Result<ExitCode> {
    match std::io::stdout().lock().write_all(text) {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => Ok(other.map(|()| ExitCode::SUCCESS)?),
    }
}
