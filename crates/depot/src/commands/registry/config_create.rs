use std::process::ExitCode;

use depot_api::types::CreateConfig;

use crate::cli::ConfigCreateArgs;
use crate::printer::Printer;

pub fn run(args: ConfigCreateArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let config = client.create_config(&CreateConfig { name: args.name, layers: args.layers })?;
    if printer.json {
        printer.json(&config);
    } else {
        printer.message(format!(
            "Created configuration {} with {} (revision {}, hash {})",
            config.name,
            super::plural(config.layers.len() as u64, "layer", "layers"),
            config.revision,
            super::short_hash(&config.hash)
        ));
    }
    Ok(ExitCode::SUCCESS)
}
