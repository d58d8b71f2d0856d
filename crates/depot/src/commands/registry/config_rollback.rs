use std::process::ExitCode;

use depot_api::types::RollbackConfig;

use crate::cli::ConfigRollbackArgs;
use crate::printer::Printer;

pub fn run(args: ConfigRollbackArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let request = RollbackConfig { to_revision: args.to_revision, expect_revision: args.expect_revision };
    let config = client.rollback(&args.name, &request)?;
    if printer.json {
        printer.json(&config);
        return Ok(ExitCode::SUCCESS);
    }
    let target = args.to_revision.map_or_else(|| "the previous revision".to_owned(), |n| format!("revision {n}"));
    let layers: Vec<String> = config.layers.iter().map(|l| format!("{}:{}", l.component, l.version)).collect();
    printer.message(format!(
        "Rolled {} back to the layers of {target}: {} (now revision {}, hash {})",
        config.name,
        if layers.is_empty() { "(none)".to_owned() } else { layers.join(" ") },
        config.revision,
        super::short_hash(&config.hash)
    ));
    Ok(ExitCode::SUCCESS)
}
