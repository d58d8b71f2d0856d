//! `depot`: one binary for every role. This file parses the command line, dispatches to
//! `commands/`, and turns errors into `error:` / `Caused by:` / `hint:` lines and exit codes
//! (0 success, 1 failed operation, 2 usage error).

mod cli;
mod client_config;
mod commands;
mod printer;

use std::process::ExitCode;

use clap::Parser;

/// jemalloc keeps its bookkeeping outside the blocks it hands out, so memory that is reserved but
/// never written stays out of the RSS. hyper reserves an 8 KiB read and an 8 KiB write buffer per
/// connection, which a waiting blocking query barely touches; glibc's malloc writes a header at
/// the start of each chunk and so makes a page of each resident (bench/registry: 13.7 KiB per
/// waiting watcher with glibc, 9.4 KiB with jemalloc).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
