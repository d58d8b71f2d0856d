//! The registry's client verbs, one file per command. Each resolves the registry and token
//! (`client_config.rs`), makes its calls through `depot_api::client::Client`, and prints the API's
//! own types with `--json`. API errors reach `main.rs` as `ClientError`s, whose hint it prints.

pub mod attest;
pub mod channels;
pub mod components;
pub mod config_bump;
pub mod config_create;
pub mod config_history;
pub mod config_rollback;
pub mod config_set;
pub mod config_show;
pub mod configs;
pub mod delete_component;
pub mod delete_config;
pub mod delete_version;
pub mod deprecate;
pub mod env;
pub mod gc;
pub mod keys;
pub mod pipeline;
pub mod push;
pub mod rollout;
pub mod sign;
pub mod status;
pub mod token_create;
pub mod token_list;
pub mod token_revoke;
pub mod versions;

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use depot_api::Digest;
use depot_api::client::Client;

use crate::cli::{ConfigCommand, DeleteCommand, RegistryArgs, TokenCommand};
use crate::client_config::ClientConfig;
use crate::printer::Printer;

pub fn run_config(command: ConfigCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Create(args) => config_create::run(args, printer),
        ConfigCommand::Set(args) => config_set::run(args, printer),
        ConfigCommand::Bump(args) => config_bump::run(args, printer),
        ConfigCommand::Show(args) => config_show::run(args, printer),
        ConfigCommand::History(args) => config_history::run(args, printer),
        ConfigCommand::Rollback(args) => config_rollback::run(args, printer),
        ConfigCommand::Rollout(args) => rollout::config(args, printer),
    }
}

pub fn run_delete(command: DeleteCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        DeleteCommand::Version(args) => delete_version::run(args, printer),
        DeleteCommand::Component(args) => delete_component::run(args, printer),
        DeleteCommand::Config(args) => delete_config::run(args, printer),
    }
}

pub fn run_token(command: TokenCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create(args) => token_create::run(args, printer),
        TokenCommand::List(args) => token_list::run(args, printer),
        TokenCommand::Revoke(args) => token_revoke::run(args, printer),
    }
}

/// A client of the registry the flags, the environment or the user's file name, with a token.
pub(crate) fn connect(args: &RegistryArgs) -> anyhow::Result<Client> {
    ClientConfig::load(args.registry.as_deref(), args.token.as_ref(), args.ca_cert.as_deref(), None)?.client()
}

/// A warning for each layer of `config` on a deprecated version (a pinned layer: one tracking a
/// channel has moved off it), with the reason and the replacement.
/// A caller that may not read versions (an agent token) gets no warnings: they add to the
/// configuration, which it may read, and must not turn its answer into a failure.
fn deprecated_layers(client: &Client, config: &depot_api::types::Config) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    for layer in &config.layers {
        let version = match client.version(&layer.component, &layer.version) {
            Ok(version) => version,
            Err(error) if error.code() == Some(depot_api::ErrorCode::Forbidden) => return Ok(Vec::new()),
            Err(error) => return Err(error.into()),
        };
        if let Some(deprecation) = version.deprecated {
            let instead = deprecation.replacement.map(|r| format!("; use {r} instead")).unwrap_or_default();
            warnings.push(format!(
                "warning: {}:{} is deprecated ({}{instead})",
                layer.component, layer.version, deprecation.reason
            ));
        }
    }
    Ok(warnings)
}

/// `Rolled WHAT back to the layers of revision N: …`, for `config rollback` and `rollback --stage`.
fn print_rollback(printer: &Printer, what: &str, to_revision: Option<u64>, config: &depot_api::types::Config) {
    let target = to_revision.map_or_else(|| "the previous revision".to_owned(), |n| format!("revision {n}"));
    let layers: Vec<String> = config.layers.iter().map(|l| format!("{}:{}", l.component, l.version)).collect();
    printer.message(format!(
        "Rolled {what} back to the layers of {target}: {} (now revision {}, hash {})",
        if layers.is_empty() { "(none)".to_owned() } else { layers.join(" ") },
        config.revision,
        short_hash(&config.hash)
    ));
}

/// A usage error found after parsing: `error:` and `hint:` on stderr, exit 2, nothing done.
fn usage_error(printer: &Printer, message: &str, hint: &str) -> ExitCode {
    printer.message(format!("error: {message}"));
    printer.message(format!("hint: {hint}"));
    ExitCode::from(2)
}

/// The first 12 hex digits, enough to tell digests apart in a table.
fn short_digest(digest: &Digest) -> &str {
    &digest.hex()[..12]
}

pub(crate) fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

fn time(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

pub(crate) fn plural(count: u64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

/// Left-aligned columns, two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(cell);
                out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_owned()
    };
    let mut lines = vec![line(headers.to_vec())];
    lines.extend(rows.iter().map(|row| line(row.iter().map(String::as_str).collect())));
    lines
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use depot_api::types::Role;

    use super::*;
    use crate::cli::{Cli, Command, Format};

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("depot").chain(args.iter().copied())).map(|cli| cli.command)
    }

    #[test]
    fn push_takes_labels_format_and_registry_flags() {
        let Command::Push(args) = parse(&[
            "push",
            "web",
            "1.4.2",
            "./build",
            "--label",
            "git=3f9c",
            "--label",
            "note=a=b",
            "--format",
            "gz",
            "--registry",
            "http://r:1",
            "--token",
            "ci.abc",
        ])
        .unwrap() else {
            panic!("not push")
        };
        assert_eq!(args.component.as_str(), "web");
        assert_eq!(args.version.as_str(), "1.4.2");
        assert_eq!(args.labels, vec![("git".into(), "3f9c".into()), ("note".into(), "a=b".into())]);
        assert!(matches!(args.format, Some(Format::Gz)));
        assert_eq!(args.registry.registry.as_deref(), Some("http://r:1"));
        assert_eq!(args.registry.token.unwrap().expose(), "ci.abc");
    }

    #[test]
    fn invalid_names_and_labels_are_usage_errors() {
        for args in [
            &["push", "we/b", "1.0", "f"][..],
            &["push", "web", "current", "f"],
            &["push", "web", "1:0", "f"],
            &["push", "web", "1.0", "f", "--label", "novalue"],
            &["push", "web", "1.0", "f", "--format", "xz"],
            &["config", "create", "prod", "--layer", "web"],
            &["config", "set", "prod"],
            &["config", "set", "prod", "web:1", "--expect-revision", "soon"],
            &["token", "create", "ci"],
            &["token", "create", "ci", "--role", "root"],
            &["delete", "version", "web"],
            &["versions"],
        ] {
            let error = parse(args).map(|_| ()).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}: {error}");
        }
    }

    #[test]
    fn config_verbs_parse_layers_and_revisions() {
        let Command::Config(config) =
            parse(&["config", "set", "prod", "web:1.4.2", "settings@7", "--expect-revision", "12"]).unwrap()
        else {
            panic!("not config")
        };
        let crate::cli::ConfigCommand::Set(set) = config.command else { panic!("not set") };
        assert_eq!(set.layers.iter().map(ToString::to_string).collect::<Vec<_>>(), ["web:1.4.2", "settings:7"]);
        assert_eq!(set.expect_revision, Some(12));

        let Command::Config(config) =
            parse(&["config", "rollback", "prod", "--to-revision", "3", "--expect-revision", "5"]).unwrap()
        else {
            panic!("not config")
        };
        let crate::cli::ConfigCommand::Rollback(rollback) = config.command else { panic!("not rollback") };
        assert_eq!((rollback.to_revision, rollback.expect_revision), (Some(3), Some(5)));

        let Command::Config(config) = parse(&["config", "create", "prod", "--layer", "a:1", "--layer", "b:2"]).unwrap()
        else {
            panic!("not config")
        };
        let crate::cli::ConfigCommand::Create(create) = config.command else { panic!("not create") };
        assert_eq!(create.layers.len(), 2);
    }

    #[test]
    fn token_create_parses_the_role_and_pattern() {
        let Command::Token(token) =
            parse(&["token", "create", "web-01", "--role", "agent", "--config", "web-*"]).unwrap()
        else {
            panic!("not token")
        };
        let crate::cli::TokenCommand::Create(create) = token.command else { panic!("not create") };
        assert_eq!(create.access.role, Role::Agent);
        assert_eq!(create.access.config_pattern.as_deref(), Some("web-*"));
    }

    #[test]
    fn delete_config_parses_without_force_so_the_command_can_explain() {
        let Command::Delete(delete) = parse(&["delete", "config", "prod"]).unwrap() else { panic!("not delete") };
        let crate::cli::DeleteCommand::Config(args) = delete.command else { panic!("not config") };
        assert!(!args.force);
    }

    #[test]
    fn tables_align_columns() {
        let lines = table(&["NAME", "N"], &[vec!["web".into(), "10".into()], vec!["settings".into(), "2".into()]]);
        assert_eq!(lines, ["NAME      N", "web       10", "settings  2"]);
    }

    #[test]
    fn debug_of_parsed_arguments_hides_the_token() {
        let command = parse(&["components", "--token", "ci.0123456789abcdef"]).unwrap();
        let debug = format!("{command:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }
}
