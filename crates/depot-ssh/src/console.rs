//! Seed 001's console commands, with its flag syntax (Go's `flag`: `-name x`, `-name=x`,
//! `--name x`) and its output, run through the registry service like every other front-end: a
//! write here moves channels, keeps retention, reaches watchers and is in the history under the
//! key's name. Where the seed had a hole (an unknown component listed as nothing), depot says so.

use std::collections::BTreeMap;

use depot_api::types::{LayerRef, PushVersion};
use depot_api::{ComponentName, ConfigName, Digest, ErrorCode, VersionLabel};
use depot_registry::{Caller, Error, Registry};
use depot_store::StoreError;

/// What a command printed, and its exit status.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    pub text: String,
    pub status: u32,
}

impl Output {
    fn ok(text: String) -> Self {
        Output { text, status: 0 }
    }

    /// One error line, exit status 1.
    fn fail(line: impl Into<String>) -> Self {
        Output { text: format!("{}\n", line.into()), status: 1 }
    }
}

/// The commands, their flags (`name`, whether it takes a value, whether it repeats) and what
/// `help` says of them.
/// A command: its name, its flags and what `help` says of it.
type Command = (&'static str, &'static [(&'static str, Kind)], &'static str);

const COMMANDS: &[Command] = &[
    (
        "addver",
        &[("name", Kind::Value), ("version", Kind::Value), ("hash", Kind::Value)],
        "add new component version from previously uploaded file",
    ),
    (
        "addconf",
        &[("name", Kind::Value), ("layer", Kind::Repeated)],
        "add new configuration from existing component versions",
    ),
    (
        "bumpconf",
        &[("name", Kind::Value), ("component", Kind::Value)],
        "update single layer of configuration to most recent uploaded version",
    ),
    (
        "changeconf",
        &[("name", Kind::Value), ("component", Kind::Value), ("version", Kind::Value)],
        "update single layer of configuration to specific version",
    ),
    ("showconf", &[("name", Kind::Value), ("v", Kind::Bool)], "show configuration"),
    ("showcomp", &[("name", Kind::Value)], "show component versions"),
    ("components", &[], "list all known components"),
    ("configurations", &[], "list all known configurations"),
    ("delver", &[("name", Kind::Value), ("version", Kind::Value)], "delete component version"),
    ("delcomp", &[("name", Kind::Value)], "delete all component versions"),
    ("delconf", &[("name", Kind::Value), ("force", Kind::Bool)], "delete configuration"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Value,
    Repeated,
    Bool,
}

/// Flags as Go's `flag` package reads them; `-h` asks for the command's usage.
#[derive(Debug, Default)]
struct Flags {
    values: BTreeMap<String, Vec<String>>,
}

impl Flags {
    fn parse(spec: &[(&str, Kind)], args: &[String]) -> Result<Self, String> {
        let mut flags = Flags::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty()) else {
                // The first argument that is not a flag ends them, as in Go; the seed takes none.
                return Err(format!("unexpected argument {arg:?}"));
            };
            if body.starts_with('-') || body.starts_with('=') {
                return Err(format!("bad flag syntax: {arg}"));
            }
            let (name, inline) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (body, None),
            };
            if name == "h" || name == "help" {
                return Err("help".to_owned());
            }
            let Some((_, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                return Err(format!("flag provided but not defined: -{name}"));
            };
            let value = match (kind, inline) {
                (Kind::Bool, None) => "true".to_owned(),
                (Kind::Bool, Some(value)) => match value.as_str() {
                    "1" | "t" | "T" | "true" | "TRUE" | "True" => "true".to_owned(),
                    "0" | "f" | "F" | "false" | "FALSE" | "False" => "false".to_owned(),
                    _ => return Err(format!("invalid boolean value {value:?} for -{name}: parse error")),
                },
                (_, Some(value)) => value,
                (_, None) => args.next().cloned().ok_or_else(|| format!("flag needs an argument: -{name}"))?,
            };
            let values = flags.values.entry(name.to_owned()).or_default();
            if *kind != Kind::Repeated {
                values.clear();
            }
            values.push(value);
        }
        if let Some(extra) = args.next() {
            return Err(format!("unexpected argument {extra:?}"));
        }
        Ok(flags)
    }

    fn get(&self, name: &str) -> &str {
        self.values.get(name).and_then(|v| v.last()).map_or("", String::as_str)
    }

    fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    fn set(&self, name: &str) -> bool {
        self.get(name) == "true"
    }
}

/// Runs one console line as `caller`.
pub async fn run(registry: &Registry, caller: &Caller, line: &str) -> Output {
    let Some(words) = shlex::split(line) else {
        return Output::fail("unbalanced quotes");
    };
    let Some((command, args)) = words.split_first() else {
        return Output::default();
    };
    if command == "help" {
        return Output::ok(help());
    }
    let Some((_, spec, _)) = COMMANDS.iter().find(|(name, _, _)| name == command) else {
        return Output::fail(format!("unknown command {command:?}; run help for the list"));
    };
    let flags = match Flags::parse(spec, args) {
        Ok(flags) => flags,
        Err(help) if help == "help" => return Output::ok(usage(command, spec)),
        Err(error) => return Output::fail(error),
    };
    match execute(registry, caller, command, &flags).await {
        Ok(output) => output,
        Err(output) => output,
    }
}

fn help() -> String {
    let mut text = String::new();
    for (name, _, what) in COMMANDS {
        text.push_str(&format!("{name:<16}{what}\n"));
    }
    text.push_str("\nuse -h flag to get more help on a specific command\n");
    text
}

fn usage(command: &str, spec: &[(&str, Kind)]) -> String {
    let mut text = format!("Usage of {command}:\n");
    for (name, kind) in spec {
        let what = match kind {
            Kind::Bool => String::new(),
            Kind::Value => " string".to_owned(),
            Kind::Repeated => " value (repeatable)".to_owned(),
        };
        text.push_str(&format!("  -{name}{what}\n"));
    }
    text
}

type Run = Result<Output, Output>;

async fn execute(registry: &Registry, caller: &Caller, command: &str, flags: &Flags) -> Run {
    match command {
        "addver" => {
            let (component, version) = (component(flags.get("name"))?, version(flags.get("version"))?);
            let digest = Digest::from_hex(flags.get("hash").trim().trim_start_matches("sha256:"))
                .map_err(|_| Output::fail("no uploaded file with given hash found"))?;
            // The seed's labels are free-form (`v01`): kept as they are.
            let request = PushVersion {
                digest,
                labels: BTreeMap::new(),
                channels: Vec::new(),
                free_form: true,
                signatures: Vec::new(),
            };
            let exists = || Output::fail(format!("version {:?} already exists", version.as_str()));
            let pushed = registry.push_version(caller, component.clone(), version.clone(), request).await.map_err(
                |e| match e {
                    Error::Store(StoreError::VersionExists { .. }) => exists(),
                    Error::Store(StoreError::UnknownBlob(_)) => Output::fail("no uploaded file with given hash found"),
                    other => refused(other),
                },
            )?;
            // The seed refuses a version that exists, even with the same content.
            if !pushed.created {
                return Err(exists());
            }
            Ok(Output::default())
        }
        "delver" => {
            let (component, version) = (component(flags.get("name"))?, version(flags.get("version"))?);
            registry.delete_version(caller, component, version).await.map_err(|e| match e {
                Error::Store(StoreError::InUse { config, .. }) => {
                    Output::fail(format!("version is used by configuration {:?}", config.as_str()))
                }
                other => seed_error(other),
            })?;
            Ok(Output::default())
        }
        "delcomp" => {
            let component = component(flags.get("name"))?;
            registry.delete_component(caller, component).await.map_err(|e| match e {
                Error::Store(StoreError::InUse { config, .. }) => {
                    Output::fail(format!("component is used by configuration {:?}", config.as_str()))
                }
                other => seed_error(other),
            })?;
            Ok(Output::default())
        }
        "addconf" => {
            let name = config(flags.get("name"))?;
            let mut layers: Vec<LayerRef> = Vec::new();
            for text in flags.all("layer") {
                let (c, v) = text
                    .split_once(':')
                    .ok_or_else(|| Output::fail(format!("invalid layer {text:?}: expected component:version")))?;
                let layer = LayerRef { component: component(c)?, version: version(v)? };
                if layers.iter().any(|l| l.component == layer.component) {
                    return Err(Output::fail(format!("duplicate component {:?}", c)));
                }
                layers.push(layer);
            }
            if layers.is_empty() {
                return Err(Output::fail("no layers given: add -layer component:version"));
            }
            // Create, or replace (a new revision: the history keeps the old one).
            match registry.config(caller, &name).await {
                Ok(current) => {
                    registry.replace_layers(caller, name, layers, Some(current.revision)).await.map_err(seed_error)?
                }
                Err(Error::Store(StoreError::UnknownConfig(_))) => {
                    registry.create_config(caller, name, layers).await.map_err(seed_error)?
                }
                Err(other) => return Err(seed_error(other)),
            };
            Ok(Output::default())
        }
        "delconf" => {
            let name = config(flags.get("name"))?;
            registry.config(caller, &name).await.map_err(|e| match e {
                Error::Store(StoreError::UnknownConfig(_)) => {
                    Output::fail(format!("{:?} configuration not found", name.as_str()))
                }
                other => seed_error(other),
            })?;
            if !flags.set("force") {
                return Err(Output::fail("Run command with -force flag to confirm removal"));
            }
            registry.delete_config(caller, name, None).await.map_err(seed_error)?;
            Ok(Output::default())
        }
        "changeconf" => {
            let name = config(flags.get("name"))?;
            let (component, version) = (component(flags.get("component"))?, version(flags.get("version"))?);
            change_layer(registry, caller, &name, component, version).await?;
            Ok(Output::default())
        }
        "bumpconf" => {
            let name = config(flags.get("name"))?;
            let component = component(flags.get("component"))?;
            // The most recently pushed version, as the seed bumps (not semver's newest).
            let versions = registry.versions(caller, component.clone()).await.map_err(seed_error)?;
            let newest = versions
                .iter()
                .filter(|v| v.deprecated.is_none())
                .max_by_key(|v| v.created_at)
                .ok_or_else(|| Output::fail(format!("{:?} component not found", component.as_str())))?;
            let old = change_layer(registry, caller, &name, component.clone(), newest.version.clone()).await?;
            Ok(Output::ok(match old {
                Some(old) if old != newest.version => format!(
                    "to roll back run:\n\tchangeconf -name={:?} -component={:?} -version={:?}\n",
                    name.as_str(),
                    component.as_str(),
                    old.as_str()
                ),
                _ => String::new(),
            }))
        }
        "showconf" => {
            let name = config(flags.get("name"))?;
            let found = registry.config(caller, &name).await.map_err(seed_error)?;
            let mut text = String::new();
            if flags.set("v") {
                text.push_str(&format!(
                    "Name:\t{}\nMtime:\t{}\nHash:\t{}\n\n",
                    found.name,
                    rfc3339(&found.updated_at),
                    crate::seed::config_hash(&found)
                ));
            }
            let mut rows = Vec::new();
            for layer in &found.layers {
                let info = registry
                    .version(caller, layer.component.clone(), layer.version.clone())
                    .await
                    .map_err(seed_error)?;
                rows.push(vec![layer.component.to_string(), layer.version.to_string(), rfc3339(&info.created_at)]);
            }
            text.push_str(&table(&rows));
            Ok(Output::ok(text))
        }
        "showcomp" => {
            let component = component(flags.get("name"))?;
            let mut versions = registry.versions(caller, component.clone()).await.map_err(seed_error)?;
            versions.sort_by_key(|v| v.created_at);
            let rows: Vec<Vec<String>> =
                versions.iter().map(|v| vec![rfc3339(&v.created_at), v.version.to_string()]).collect();
            Ok(Output::ok(table(&rows)))
        }
        "components" => {
            let all = registry.components(caller).await.map_err(seed_error)?;
            let mut names: Vec<String> = all.iter().map(|c| c.name.to_string()).collect();
            names.sort();
            Ok(Output::ok(names.iter().map(|n| format!("{n}\n")).collect()))
        }
        "configurations" => {
            let all = registry.configs(caller).await.map_err(seed_error)?;
            let mut names: Vec<String> = all.iter().map(|c| c.name.to_string()).collect();
            names.sort();
            Ok(Output::ok(names.iter().map(|n| format!("{n}\n")).collect()))
        }
        _ => unreachable!("every command of COMMANDS is handled"),
    }
}

/// Pins `component`'s layer of `name` to `version`; the version it had.
async fn change_layer(
    registry: &Registry,
    caller: &Caller,
    name: &ConfigName,
    component: ComponentName,
    version: VersionLabel,
) -> Result<Option<VersionLabel>, Output> {
    let found = registry.config(caller, name).await.map_err(|e| match e {
        Error::Store(StoreError::UnknownConfig(_)) => {
            Output::fail(format!("configuration {:?} not found", name.as_str()))
        }
        other => seed_error(other),
    })?;
    let Some(old) = found.layers.iter().find(|l| l.component == component) else {
        return Err(Output::fail(format!("configuration has no layer for component {:?}", component.as_str())));
    };
    let old = old.version.clone();
    registry
        .set_layers(caller, name.clone(), vec![LayerRef { component, version }], Some(found.revision))
        .await
        .map_err(seed_error)?;
    Ok(Some(old))
}

/// Lines of cells padded to each column's width plus three spaces, the last cell included (Go's
/// tabwriter as the seed used it).
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        for (cell, width) in row.iter().zip(&widths) {
            text.push_str(&format!("{cell:<width$}   "));
        }
        text.push('\n');
    }
    text
}

fn rfc3339(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn component(text: &str) -> Result<ComponentName, Output> {
    ComponentName::parse(text).map_err(|e| Output::fail(format!("invalid component name {text:?}: {e}")))
}

fn version(text: &str) -> Result<VersionLabel, Output> {
    VersionLabel::parse(text).map_err(|e| Output::fail(format!("invalid version {text:?}: {e}")))
}

fn config(text: &str) -> Result<ConfigName, Output> {
    ConfigName::parse(text).map_err(|e| Output::fail(format!("invalid configuration name {text:?}: {e}")))
}

/// The seed's words for the errors it had; depot's own message for the rest.
fn seed_error(error: Error) -> Output {
    match error {
        Error::Store(StoreError::UnknownVersion { component, version }) => {
            Output::fail(format!("no version {:?} for component {:?} found", version.as_str(), component.as_str()))
        }
        Error::Store(StoreError::UnknownComponent(component)) => {
            Output::fail(format!("{:?} component not found", component.as_str()))
        }
        Error::Store(StoreError::UnknownConfig(name)) => {
            Output::fail(format!("{:?} configuration not found", name.as_str()))
        }
        Error::Store(StoreError::ConfigExists(name)) => {
            Output::fail(format!("configuration {:?} already exists", name.as_str()))
        }
        other => refused(other),
    }
}

/// Any other refusal, in depot's words.
fn refused(error: Error) -> Output {
    match error {
        Error::Refused(body) if body.code == ErrorCode::Forbidden => {
            Output::fail(format!("permission denied: {}", body.message))
        }
        Error::Refused(body) => Output::fail(body.message),
        Error::Store(store) => Output::fail(store.to_string()),
        Error::Internal(message) => {
            tracing::error!("console: {message}");
            Output::fail("internal error; see the registry's log")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(spec: &[(&str, Kind)], args: &[&str]) -> Result<Flags, String> {
        Flags::parse(spec, &args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_read_as_go_reads_them() {
        let spec = [("name", Kind::Value), ("layer", Kind::Repeated), ("force", Kind::Bool)];
        let flags = parse(&spec, &["-name", "web", "--layer=a:1", "-layer", "b:2", "-force"]).unwrap();
        assert_eq!(
            (flags.get("name"), flags.all("layer"), flags.set("force")),
            ("web", &["a:1".to_owned(), "b:2".to_owned()][..], true)
        );
        assert_eq!(parse(&spec, &["-name=x", "-name=y"]).unwrap().get("name"), "y", "the last wins");
        assert!(!parse(&spec, &["-force=false"]).unwrap().set("force"));
        assert_eq!(parse(&spec, &["-nope"]).unwrap_err(), "flag provided but not defined: -nope");
        assert_eq!(parse(&spec, &["-name"]).unwrap_err(), "flag needs an argument: -name");
        assert_eq!(parse(&spec, &["-h"]).unwrap_err(), "help");
        assert!(parse(&spec, &["stray"]).is_err());
    }

    #[test]
    fn tables_pad_every_cell_by_three() {
        let rows = vec![vec!["code".to_owned(), "v01".to_owned()], vec!["config".to_owned(), "v2".to_owned()]];
        assert_eq!(table(&rows), "code     v01   \nconfig   v2    \n");
    }
}
