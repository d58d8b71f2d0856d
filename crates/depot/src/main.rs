//! `depot`: one binary for every role. This file parses the command line, dispatches to
//! `commands/`, and turns errors into `error:` / `Caused by:` / `hint:` lines and exit codes
//! (0 success, 1 failed operation, 2 usage error).

mod cli;
mod client_config;
mod commands;
mod printer;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// jemalloc keeps its bookkeeping outside the blocks it hands out, so memory that is reserved but
/// never written stays out of the RSS. hyper reserves an 8 KiB read and an 8 KiB write buffer per
/// connection, which a waiting blocking query barely touches; glibc's malloc writes a header at
/// the start of each chunk and so makes a page of each resident (bench/registry: 13.7 KiB per
/// waiting watcher with glibc, 9.4 KiB with jemalloc).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let matches = cli::Cli::command().get_matches();
    let mut cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let cli::Command::Pipeline(cli::PipelineArgs { command: cli::PipelineCommand::Create(args) }) = &mut cli.command
        && let Some(create) = matches.subcommand_matches("pipeline").and_then(|m| m.subcommand_matches("create"))
    {
        args.after_of = stage_order(create, args.stages.len(), &args.after);
    }
    let printer = printer::Printer::new(cli.json);
    match commands::run(cli.command, &printer) {
        Ok(code) => code,
        Err(error) => {
            printer::print_error(&error);
            ExitCode::FAILURE
        }
    }
}

/// Which stage each `--after` follows: the `--stage` given just before it on the command line.
fn stage_order(
    matches: &clap::ArgMatches,
    stages: usize,
    after: &[depot_api::StageName],
) -> Vec<Option<depot_api::StageName>> {
    let stage_at: Vec<usize> = matches.indices_of("stages").map(|i| i.collect()).unwrap_or_default();
    let after_at: Vec<usize> = matches.indices_of("after").map(|i| i.collect()).unwrap_or_default();
    let mut order = vec![None; stages];
    for (index, name) in after_at.iter().zip(after) {
        if let Some(stage) = stage_at.iter().rposition(|at| at < index) {
            order[stage] = Some(name.clone());
        }
    }
    order
}
