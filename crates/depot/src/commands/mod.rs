//! One file per command. Each takes resolved values and the printer, never clap types beyond its
//! own argument struct, and returns the exit code.

mod admin;
mod agent;
mod build;
mod deploy;
mod import;
mod manual;
mod pack;
mod prune;
pub(crate) mod registry;
mod release;
mod releases;
mod rollback;
mod serve;
mod verify;

use std::process::ExitCode;
use std::time::Duration;

use depot_release::config::RootConfig;
use depot_release::deploy::ActivationOptions;
use depot_release::hooks::HealthCheck;

use crate::cli::{ActivationArgs, Command};
use crate::printer::Printer;

pub fn run(command: Command, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        Command::Pack(args) => pack::run(args, printer),
        Command::Deploy(args) => deploy::run(args, printer),
        Command::Rollback(args) if args.stage.is_some() => registry::pipeline::rollback(args, printer),
        Command::Rollback(args) => rollback::run(args, printer),
        Command::Releases(args) => releases::run(args, printer),
        Command::Prune(args) => prune::run(args, printer),
        Command::Verify(args) => verify::run(args, printer),
        Command::Serve(args) => serve::run(args, printer),
        Command::Push(args) => registry::push::run(args, printer),
        Command::Components(args) => registry::components::run(args, printer),
        Command::Versions(args) => registry::versions::run(args, printer),
        Command::Channels(args) => registry::channels::run(args, printer),
        Command::Channel(args) => registry::channels::run_channel(args.command, printer),
        Command::Deprecate(args) => registry::deprecate::run(args, printer),
        Command::Undeprecate(args) => registry::deprecate::run_undeprecate(args, printer),
        Command::Configs(args) => registry::configs::run(args, printer),
        Command::Config(args) => registry::run_config(args.command, printer),
        Command::Delete(args) => registry::run_delete(args.command, printer),
        Command::Token(args) => registry::run_token(args.command, printer),
        Command::Key(args) => registry::keys::run(args.command, printer),
        Command::Gc(args) => registry::gc::run(args, printer),
        Command::Status(args) => registry::status::run(args, printer),
        Command::Agent(args) => agent::run(args, printer),
        Command::Release(args) => release::run(args, printer),
        Command::Build(args) => build::run(args, printer),
        Command::Pipeline(args) => registry::pipeline::run(args.command, printer),
        Command::Sign(args) => registry::sign::run(args, printer),
        Command::Policy(args) => registry::sign::policy(args.command, printer),
        Command::Attest(args) => registry::attest::run(args, printer),
        Command::Import(args) => import::run(args.command, printer),
        Command::Attestations(args) => registry::attest::list(args, printer),
        Command::ShowVersion(args) => registry::sign::show(args, printer),
        Command::Rollout(args) => registry::rollout::run(args.command, printer),
        Command::Promote(args) => registry::pipeline::promote(args, printer),
        Command::Approve(args) => registry::pipeline::approve(args, printer),
        Command::Reject(args) => registry::pipeline::reject(args, printer),
        Command::Env(args) => registry::env::run(args.command, printer),
        Command::History(args) => registry::pipeline::history(args, printer),
        Command::Completions(args) => manual::completions(args),
        Command::Man(args) => manual::man(args, printer),
        Command::Admin(args) => match args.command {
            crate::cli::AdminCommand::Migrate(args) => admin::migrate(args, printer),
            crate::cli::AdminCommand::RotateKey(args) => admin::rotate_key(args, printer),
        },
    }
}

const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(300);
const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_KEEP: usize = 5;

/// Flags over `[deploy]` in R/config/depot.toml over built-in defaults.
fn activation_options(args: &ActivationArgs, config: &RootConfig) -> ActivationOptions {
    let defaults = &config.deploy;
    let health = match (&args.health_cmd, &args.health_url) {
        (Some(command), _) => Some(HealthCheck::Command(command.clone())),
        (None, Some(url)) => Some(HealthCheck::Url(url.clone())),
        (None, None) => match (&defaults.health_cmd, &defaults.health_url) {
            (Some(command), _) => Some(HealthCheck::Command(command.clone())),
            (None, Some(url)) => Some(HealthCheck::Url(url.clone())),
            (None, None) => None,
        },
    };
    ActivationOptions {
        post_activate: args.post_activate.clone().or(defaults.post_activate.clone()),
        health,
        health_timeout: args.health_timeout.or(defaults.health_timeout).unwrap_or(DEFAULT_HEALTH_TIMEOUT),
        hook_timeout: args.hook_timeout.or(defaults.hook_timeout).unwrap_or(DEFAULT_HOOK_TIMEOUT),
        release_env: Default::default(),
    }
}

fn lock_timeout(flag: Option<Duration>, config: &RootConfig) -> Duration {
    flag.or(config.deploy.lock_timeout).unwrap_or(DEFAULT_LOCK_TIMEOUT)
}

fn keep(flag: Option<usize>, config: &RootConfig) -> usize {
    flag.or(config.deploy.keep).unwrap_or(DEFAULT_KEEP)
}

fn version_or_none(version: Option<&depot_release::version::VersionLabel>) -> String {
    version.map_or_else(|| "(none)".to_owned(), |v| v.to_string())
}
