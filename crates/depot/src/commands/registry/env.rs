//! `depot env set|unset|list APP/STAGE`.

use std::process::ExitCode;

use depot_api::pipeline::{ENV_FILE, EnvChange};

use crate::cli::EnvCommand;
use crate::printer::Printer;

pub fn run(command: EnvCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        EnvCommand::Set(args) => {
            let (app, stage) = &args.stage;
            let keys: Vec<String> = args.vars.iter().map(|(k, _)| k.clone()).collect();
            let change = EnvChange { set: args.vars.into_iter().collect(), unset: Vec::new() };
            let config = super::connect(&args.registry)?.set_env(app, stage, &change)?;
            changed(printer, &config, &format!("set {} in {app}/{stage}", keys.join(", ")));
        }
        EnvCommand::Unset(args) => {
            let (app, stage) = &args.stage;
            for key in &args.keys {
                depot_api::pipeline::check_env(key, None).map_err(anyhow::Error::msg)?;
            }
            let change = EnvChange { set: Default::default(), unset: args.keys.clone() };
            let config = super::connect(&args.registry)?.set_env(app, stage, &change)?;
            changed(printer, &config, &format!("unset {} in {app}/{stage}", args.keys.join(", ")));
        }
        EnvCommand::List(args) => {
            let (app, stage) = &args.stage;
            let view = super::connect(&args.registry)?.env(app, stage, args.show)?;
            if printer.json {
                printer.json(&view);
                return Ok(ExitCode::SUCCESS);
            }
            if view.vars.is_empty() {
                printer.message(format!(
                    "{app}/{stage} has no variables; set some with `depot env set {app}/{stage} KEY=VALUE`"
                ));
            }
            for (key, value) in &view.vars {
                printer.data(format!("{key}={value}"));
            }
            if let Some(version) = &view.version {
                printer.message(format!(
                    "(environment layer v{version} in revision {} of {}, at {ENV_FILE} in the release{})",
                    view.revision,
                    view.config,
                    if view.masked { "; values masked, --show prints them" } else { "" }
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn changed(printer: &Printer, config: &depot_api::types::Config, what: &str) {
    if printer.json {
        printer.json(config);
    } else {
        printer.message(format!("{what}: {} is at revision {}, and its agents redeploy", config.name, config.revision));
    }
}
