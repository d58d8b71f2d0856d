//! `depot key add|import|list|revoke`: the SSH front-end's keys.

use std::process::ExitCode;

use depot_api::types::{AddSshKey, ImportSshKeys, SshKeyInfo};

use crate::cli::KeyCommand;
use crate::printer::Printer;

pub fn run(command: KeyCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        KeyCommand::Add(args) => {
            let client = super::connect(&args.registry)?;
            let public_key = fs_err::read_to_string(&args.public_key)?;
            let request = AddSshKey {
                name: args.name,
                role: args.access.role,
                config_pattern: args.access.config_pattern,
                public_key,
            };
            let key = client.add_ssh_key(&request)?;
            printer.message(format!("Added SSH key {} ({}, {})", key.name, key.role.as_str(), key.fingerprint));
            show(&[key], printer);
        }
        KeyCommand::Import(args) => {
            let client = super::connect(&args.registry)?;
            let authorized_keys = fs_err::read_to_string(&args.file)?;
            let request =
                ImportSshKeys { role: args.access.role, config_pattern: args.access.config_pattern, authorized_keys };
            let keys = client.import_ssh_keys(&request)?;
            printer.message(format!("Imported {} SSH key(s) from {}", keys.len(), args.file.display()));
            show(&keys, printer);
        }
        KeyCommand::List(args) => show(&super::connect(&args.registry)?.ssh_keys()?, printer),
        KeyCommand::Revoke(args) => {
            super::connect(&args.registry)?.revoke_ssh_key(&args.name)?;
            printer.message(format!("Revoked SSH key {}", args.name));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(keys: &[SshKeyInfo], printer: &Printer) {
    if printer.json {
        printer.json(&keys);
        return;
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.name.to_string(),
                k.role.as_str().to_owned(),
                k.config_pattern.clone().unwrap_or_else(|| "-".to_owned()),
                k.fingerprint.clone(),
                super::time(&k.created_at),
                k.created_by.clone(),
            ]
        })
        .collect();
    for line in super::table(&["KEY", "ROLE", "CONFIGS", "FINGERPRINT", "CREATED", "BY"], &rows) {
        printer.data(line);
    }
}
