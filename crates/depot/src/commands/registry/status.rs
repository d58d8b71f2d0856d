use std::process::ExitCode;

use depot_api::types::AgentState;

use crate::cli::StatusArgs;
use crate::printer::Printer;

pub fn run(args: StatusArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let client = super::connect(&args.registry)?;
    let agents = client.agents(&args.config)?;
    if printer.json {
        printer.json(&agents);
        return Ok(ExitCode::SUCCESS);
    }
    let config = client.get_config(&args.config, None, None)?;
    for warning in super::deprecated_layers(&client, &config)? {
        printer.data(warning);
    }
    if agents.is_empty() {
        printer.data(format!("No agent has reported for configuration {}", args.config));
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|agent| {
            vec![
                agent.host.to_string(),
                agent.report.revision.to_string(),
                super::short_hash(&agent.report.hash).to_owned(),
                agent.report.state.as_str().to_owned(),
                super::time(&agent.last_seen),
                if agent.current { "yes" } else { "no" }.to_owned(),
            ]
        })
        .collect();
    for line in super::table(&["HOST", "REVISION", "HASH", "STATE", "LAST SEEN", "CURRENT"], &rows) {
        printer.data(line);
    }
    for agent in agents
        .iter()
        .filter(|a| matches!(a.report.state, AgentState::Failed | AgentState::RolledBack | AgentState::Untrusted))
    {
        printer.data(format!(
            "\n{} {}: {}",
            agent.host,
            agent.report.state.as_str(),
            agent.report.error.as_deref().unwrap_or("no reason given")
        ));
        if let Some(tail) = &agent.report.output_tail {
            for line in tail.lines() {
                printer.data(format!("  | {line}"));
            }
        }
    }
    let current = agents.iter().filter(|a| a.current && a.report.state == AgentState::Active).count();
    printer.data(format!("\n{current} of {} agents active on the current revision", agents.len()));
    Ok(ExitCode::SUCCESS)
}
