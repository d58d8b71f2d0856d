use std::process::ExitCode;

use crate::cli::ConfigShowArgs;
use crate::printer::Printer;

pub fn run(args: ConfigShowArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let config = client.get_config(&args.name, None, None)?;
    if printer.json {
        printer.json(&config);
        return Ok(ExitCode::SUCCESS);
    }
    printer.data(format!("config:   {}", config.name));
    printer.data(format!("revision: {}", config.revision));
    printer.data(format!("hash:     {}", config.hash));
    printer.data(format!("updated:  {}", super::time(&config.updated_at)));
    if let Some(stage) = &config.stage {
        printer.data(format!(
            "stage:    {} of pipeline {} (after {}); see `depot pipeline show {}`",
            stage.stage, stage.pipeline, stage.previous, stage.pipeline
        ));
    }
    printer.data(format!("rollout:  {}", config.strategy));
    if !config.strategy.is_all() {
        match client.rollout(&config.name) {
            Ok(rollout) => printer.data(format!("          {}", super::rollout::summary(&rollout))),
            // Never had one, or an agent's token, which may read its configuration but not the fleet.
            Err(error)
                if matches!(error.code(), Some(depot_api::ErrorCode::NotFound | depot_api::ErrorCode::Forbidden)) => {}
            Err(error) => return Err(error.into()),
        }
    }
    if config.layers.is_empty() {
        printer.data("layers:   (none)");
        return Ok(ExitCode::SUCCESS);
    }
    printer.data("layers:");
    let rows: Vec<Vec<String>> = config
        .layers
        .iter()
        .map(|layer| {
            let tracks = layer.channel.as_ref().map_or_else(|| "(pinned)".to_owned(), |c| c.to_string());
            vec![layer.component.to_string(), layer.version.to_string(), tracks, layer.digest.to_string()]
        })
        .collect();
    for line in super::table(&["COMPONENT", "VERSION", "TRACKS", "DIGEST"], &rows) {
        printer.data(format!("  {line}"));
    }
    for warning in super::deprecated_layers(&client, &config)? {
        printer.data(warning);
    }
    Ok(ExitCode::SUCCESS)
}
