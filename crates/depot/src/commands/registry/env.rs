//! `depot env set|unset|list APP/STAGE`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use depot_api::pipeline::{ENV_FILE, EnvChange};

use crate::cli::EnvCommand;
use crate::printer::Printer;

pub fn run(command: EnvCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        EnvCommand::Set(args) => {
            let (app, stage) = &args.stage;
            let mut set = BTreeMap::new();
            let mut from_stdin = None;
            for (key, mut value) in args.vars {
                if value == "-" {
                    if let Some(first) = from_stdin.replace(key.clone()) {
                        return Ok(super::usage_error(
                            printer,
                            &format!("{first} and {key} both read standard input"),
                            "give one variable as KEY=-, and the others on the command line",
                        ));
                    }
                    value = std::io::read_to_string(std::io::stdin())?;
                    if value.ends_with('\n') {
                        value.pop();
                    }
                    if let Err(refusal) = depot_api::pipeline::check_env(&key, Some(&value)) {
                        return Ok(super::usage_error(printer, &refusal, "fix the value on standard input"));
                    }
                }
                if set.insert(key.clone(), value).is_some() {
                    return Ok(super::usage_error(
                        printer,
                        &format!("{key} is given twice"),
                        "give each variable once",
                    ));
                }
            }
            let keys: Vec<String> = set.keys().cloned().collect();
            let change = EnvChange { set, unset: Vec::new() };
            let client = super::connect(&args.registry)?;
            let before = client.env(app, stage, false)?.revision;
            let config = client.set_env(app, stage, &change)?;
            changed(printer, &config, before, &format!("set {} in {app}/{stage}", keys.join(", ")));
        }
        EnvCommand::Unset(args) => {
            let (app, stage) = &args.stage;
            for key in &args.keys {
                if let Err(refusal) = depot_api::pipeline::check_env(key, None) {
                    return Ok(super::usage_error(printer, &refusal, "name variables as `depot env list` shows them"));
                }
            }
            let client = super::connect(&args.registry)?;
            let view = client.env(app, stage, false)?;
            let missing: Vec<&str> =
                args.keys.iter().filter(|k| !view.vars.contains_key(*k)).map(String::as_str).collect();
            if !missing.is_empty() {
                printer.message(format!("warning: {} not set in {app}/{stage}", missing.join(", ")));
            }
            let change = EnvChange { set: Default::default(), unset: args.keys.clone() };
            let config = client.set_env(app, stage, &change)?;
            changed(printer, &config, view.revision, &format!("unset {} in {app}/{stage}", args.keys.join(", ")));
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

/// What the change did: a new revision that the stage's agents deploy, or nothing.
fn changed(printer: &Printer, config: &depot_api::types::Config, before: u64, what: &str) {
    if printer.json {
        printer.json(config);
    } else if config.revision == before {
        printer.message(format!("{what}: no change; {} stays at revision {}", config.name, config.revision));
    } else {
        printer.message(format!("{what}: {} is at revision {}, and its agents redeploy", config.name, config.revision));
    }
}
