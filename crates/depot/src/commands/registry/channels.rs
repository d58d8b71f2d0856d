use std::process::ExitCode;

use depot_api::types::SetChannel;

use crate::cli::{ChannelCommand, ChannelsArgs};
use crate::printer::Printer;

pub fn run(args: ChannelsArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let channels = client.channels(&args.component)?;
    if printer.json {
        printer.json(&channels);
        return Ok(ExitCode::SUCCESS);
    }
    if channels.is_empty() {
        printer.message(format!(
            "{} has no channel yet: a stable semver version (1.0.0) creates `latest`, `1.0` and `1`",
            args.component
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = channels
        .iter()
        .map(|c| {
            let last = c.history.last().map_or_else(String::new, |m| m.reason.clone());
            vec![
                c.name.to_string(),
                c.kind.as_str().to_owned(),
                c.version.to_string(),
                super::time(&c.updated_at),
                last,
            ]
        })
        .collect();
    for line in super::table(&["CHANNEL", "KIND", "VERSION", "MOVED", "WHY"], &rows) {
        printer.data(line);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_channel(command: ChannelCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        ChannelCommand::Set(args) => {
            let client = super::connect(&args.registry)?;
            let channel = client.set_channel(&args.component, &args.channel, &SetChannel { version: args.version })?;
            if printer.json {
                printer.json(&channel);
            } else {
                printer.message(format!("{}:{} names {} now", args.component, channel.name, channel.version));
            }
        }
        ChannelCommand::Rm(args) => {
            let client = super::connect(&args.registry)?;
            client.remove_channel(&args.component, &args.channel)?;
            printer.message(format!("removed channel {}:{}", args.component, args.channel));
        }
    }
    Ok(ExitCode::SUCCESS)
}
