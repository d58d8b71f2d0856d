use std::process::ExitCode;

use depot_api::types::SetLayers;

use crate::cli::ConfigSetArgs;
use crate::printer::Printer;

pub fn run(args: ConfigSetArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let set: Vec<String> = args.layers.iter().map(ToString::to_string).collect();
    let config =
        client.set_layers(&args.name, &SetLayers { layers: args.layers, expect_revision: args.expect_revision })?;
    if printer.json {
        printer.json(&config);
    } else {
        printer.message(format!(
            "Set {} in {} (revision {}, hash {})",
            set.join(" "),
            config.name,
            config.revision,
            super::short_hash(&config.hash)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
