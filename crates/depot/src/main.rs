//! `depot`: one binary for every role. This file parses the command line, dispatches to
//! `commands/`, and turns errors into `error:` / `Caused by:` / `hint:` lines and exit codes
//! (0 success, 1 failed operation, 2 usage error).

mod cli;
mod client_config;
mod commands;
mod printer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let printer = printer::Printer::new(cli.json);
    match commands::run(cli.command, &printer) {
        Ok(code) => code,
        Err(error) => {
            printer::print_error(&error);
            ExitCode::FAILURE
        }
    }
}
