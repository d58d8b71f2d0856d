//! `depot build`: seed 000's builder. Runs the project's build command, packs the outputs
//! reproducibly, records their SLSA provenance (an in-toto statement), and optionally pushes
//! them with it, signed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use depot_api::types::PushVersion;
use depot_api::{Digest, VersionLabel};
use depot_release::archive::{self, Compression, PackOptions};

use crate::cli::{BuildArgs, Format};
use crate::printer::{Printer, hinted, human_bytes};

pub fn run(args: BuildArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let dir = fs_err::canonicalize(&args.dir)?;
    let command = build_command(&dir)?;
    // Before the build: a missing token or a bad URL fails at once.
    let client = args.push.as_ref().map(|_| super::registry::connect(&args.registry)).transpose()?;
    let version = match args.version {
        Some(version) => version,
        None => default_version(&dir)?,
    };
    let out_dir = match &args.output {
        Some(path) => std::path::absolute(path)?.parent().map(Path::to_owned).unwrap_or_else(|| PathBuf::from(".")),
        None => std::env::current_dir()?,
    };
    let name = depot_release::config::PackConfig::load(&dir)?
        .name
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "release".to_owned());
    let log = out_dir.join(format!("{name}-{version}.build.log"));

    printer.message(format!("Building {name} {version}: `{command}` (output kept in {})", log.display()));
    let started = chrono::Utc::now();
    let source = Source::of(&dir);
    if source.dirty {
        printer.message("The checkout has changes not committed: its provenance says so (internalParameters.dirty)");
    }
    // The log is written outside DIR while the build runs and packs, so it is never packed.
    let temp_log = tempfile::Builder::new().prefix("depot-build-").suffix(".log").tempfile()?;
    let keep_log = || -> anyhow::Result<()> {
        fs_err::copy(temp_log.path(), &log)
            .with_context(|| format!("cannot keep the build log in {}", log.display()))?;
        Ok(())
    };
    if let Err(error) = run_logged(&command, &dir, &version, temp_log.path(), &log) {
        keep_log()?;
        return Err(error);
    }

    let options = PackOptions {
        dir: dir.clone(),
        version: version.clone(),
        name: None,
        output: args.output.clone(),
        compression: match args.format {
            Format::Zst => Compression::Zstd,
            Format::Gz => Compression::Gzip,
        },
    };
    let progress = printer.progress();
    let packed =
        archive::pack(&options, progress.as_ref()).with_context(|| format!("failed to pack {}", dir.display()));
    keep_log()?;
    let packed = packed?;
    printer.message(format!(
        "Packed {} files ({}) into {} ({})",
        packed.files,
        human_bytes(packed.bytes),
        packed.path.display(),
        human_bytes(packed.size)
    ));
    let digest = Digest::from_hex(&packed.sha256)?;
    let provenance = Provenance {
        command: &command,
        version: &version,
        source: &source,
        depot_toml: &dir.join("depot.toml"),
        log: &log,
        builder_id: args.builder_id.clone().unwrap_or_else(default_builder_id),
        started,
    }
    .statement(&packed.path, &digest)?;
    let provenance_path = out_dir.join(format!("{name}-{version}.provenance.json"));
    fs_err::write(&provenance_path, &provenance)?;
    printer.message(format!("Recorded its provenance in {}", provenance_path.display()));
    let pushed = match (&args.push, &client) {
        (Some(component), Some(client)) => {
            let signatures = super::registry::sign::signatures(component, &version, &digest, &args.sign, &[])?;
            let attestation =
                super::registry::attest::prepare(component, &version, &digest, &provenance_path, &args.sign)?;
            let request =
                PushVersion { digest, labels: BTreeMap::new(), channels: Vec::new(), free_form: false, signatures };
            let info = super::registry::push::register(client, component, &version, &request, &packed.path, printer)?;
            super::registry::attest::send(client, component, &version, &provenance_path, &attestation, printer)?;
            Some(info)
        }
        _ => None,
    };
    if printer.json {
        printer.json(&serde_json::json!({
            "archive": packed, "log": log, "provenance": provenance_path, "pushed": pushed
        }));
    } else {
        printer.data(format!("sha256:{}  {}", packed.sha256, packed.path.display()));
    }
    Ok(ExitCode::SUCCESS)
}

fn build_command(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join("depot.toml");
    let missing = || {
        hinted(
            format!("{} has no [build] command", path.display()),
            "add `[build]` with `command = \"make release\"` (run in that directory with VERSION set)",
        )
    };
    let text = match fs_err::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(e.into()),
    };
    let doc: toml::Table = toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    doc.get("build").and_then(|b| b.get("command")).and_then(|c| c.as_str()).map(str::to_owned).ok_or_else(missing)
}

/// $VERSION, else the git short sha of DIR's checkout, else a UTC timestamp.
fn default_version(dir: &Path) -> anyhow::Result<VersionLabel> {
    if let Ok(text) = std::env::var("VERSION")
        && !text.trim().is_empty()
    {
        return VersionLabel::parse(text.trim()).with_context(|| format!("$VERSION `{text}` cannot be a version"));
    }
    let sha = Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(dir).output();
    let text = match sha {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_owned(),
        _ => chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
    };
    Ok(VersionLabel::parse(&text)?)
}

/// Runs `sh -c command` in `dir`, each line of its output going to stderr and to `log`.
/// `log` is where the output goes while the command runs; `kept` where it ends up.
fn run_logged(command: &str, dir: &Path, version: &VersionLabel, log: &Path, kept: &Path) -> anyhow::Result<()> {
    let file = Arc::new(Mutex::new(
        fs_err::File::create(log).with_context(|| format!("cannot write the build log {}", log.display()))?,
    ));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .env("VERSION", version.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `sh -c {command}`"))?;
    let pipes: Vec<Box<dyn Read + Send>> =
        vec![Box::new(child.stdout.take().expect("piped")), Box::new(child.stderr.take().expect("piped"))];
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|pipe| {
            let file = file.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).split(b'\n').map_while(Result::ok) {
                    let mut stderr = std::io::stderr().lock();
                    let _ = stderr.write_all(&line);
                    let _ = stderr.write_all(b"\n");
                    let mut file = file.lock().expect("the log lock is never poisoned");
                    let _ = file.write_all(&line);
                    let _ = file.write_all(b"\n");
                }
            })
        })
        .collect();
    let status = child.wait()?;
    for reader in readers {
        let _ = reader.join();
    }
    if !status.success() {
        let code = status.code().map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
        return Err(hinted(
            format!("the build command `{command}` failed ({code}); nothing was packed"),
            format!("its output is in {}", kept.display()),
        ));
    }
    Ok(())
}

/// Where the build's source came from: the git checkout holding DIR, if it is one.
#[derive(Debug, Default)]
struct Source {
    /// The remote `origin`'s URL, as `git+URL`; else the checkout's path.
    uri: Option<String>,
    commit: Option<String>,
    /// DIR within the checkout.
    path: Option<String>,
    /// Whether the checkout had changes not committed (then the commit does not say it all).
    dirty: bool,
}

impl Source {
    fn of(dir: &Path) -> Self {
        let git = |args: &[&str]| -> Option<String> {
            let output = Command::new("git").args(args).current_dir(dir).stderr(Stdio::null()).output().ok()?;
            output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        };
        let Some(commit) = git(&["rev-parse", "HEAD"]) else { return Source::default() };
        let top = git(&["rev-parse", "--show-toplevel"]);
        let uri = git(&["remote", "get-url", "origin"])
            .map(|url| remote_uri(&url))
            .or(top.map(|t| format!("git+file://{t}")));
        let path = git(&["rev-parse", "--show-prefix"]).map(|p| p.trim_end_matches('/').to_owned());
        let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
        Source { uri, commit: Some(commit), path, dirty }
    }
}

/// A remote's URL as a URI for the provenance, without credentials: `https://user:TOKEN@host/x`
/// (as CI systems set `origin`) becomes `git+https://host/x`, and scp-like `git@host:org/x`
/// becomes `git+ssh://git@host/org/x`.
fn remote_uri(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
            let scheme = scheme.strip_prefix("git+").unwrap_or(scheme);
            format!("git+{scheme}://{host}/{path}")
        }
        None => match url.split_once(':') {
            Some((host, path)) if !host.contains('/') => format!("git+ssh://{host}/{}", path.trim_start_matches('/')),
            _ => format!("git+file://{url}"),
        },
    }
}

/// `urn:depot:builder:HOSTNAME`.
fn default_builder_id() -> String {
    format!("urn:depot:builder:{}", rustix::system::uname().nodename().to_string_lossy())
}

/// What SLSA provenance (v1) says of a build.
struct Provenance<'a> {
    command: &'a str,
    version: &'a VersionLabel,
    source: &'a Source,
    depot_toml: &'a Path,
    log: &'a Path,
    builder_id: String,
    started: chrono::DateTime<chrono::Utc>,
}

impl Provenance<'_> {
    /// The in-toto statement: the archive as its subject, the source commit and depot.toml as
    /// its inputs (by digest), the log as a byproduct.
    fn statement(&self, archive: &Path, digest: &Digest) -> anyhow::Result<Vec<u8>> {
        let file_digest = |path: &Path| -> anyhow::Result<String> {
            Ok(depot_trust::attestation::sha256(&fs_err::read(path)?).hex().to_owned())
        };
        let mut dependencies = Vec::new();
        if let (Some(uri), Some(commit)) = (&self.source.uri, &self.source.commit) {
            dependencies.push(serde_json::json!({ "uri": uri, "digest": { "gitCommit": commit } }));
        }
        dependencies.push(serde_json::json!({
            "name": "depot.toml", "digest": { "sha256": file_digest(self.depot_toml)? }
        }));
        let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        // Only what is known: a build outside a git checkout names no source.
        let mut source = serde_json::Map::new();
        for (key, value) in [("uri", &self.source.uri), ("commit", &self.source.commit), ("path", &self.source.path)] {
            if let Some(value) = value {
                source.insert(key.to_owned(), value.clone().into());
            }
        }
        let statement = serde_json::json!({
            "_type": depot_trust::attestation::STATEMENT_V1,
            "subject": [{ "name": name, "digest": { "sha256": digest.hex() } }],
            "predicateType": depot_trust::attestation::SLSA_PROVENANCE_V1,
            "predicate": {
                "buildDefinition": {
                    "buildType": "urn:depot:build:v1",
                    "externalParameters": {
                        "command": self.command,
                        "version": self.version.as_str(),
                        "source": source,
                    },
                    "internalParameters": { "dirty": self.source.dirty },
                    "resolvedDependencies": dependencies,
                },
                "runDetails": {
                    "builder": { "id": self.builder_id, "version": { "depot": env!("CARGO_PKG_VERSION") } },
                    "metadata": {
                        "startedOn": self.started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        "finishedOn": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    },
                    "byproducts": [{
                        "name": self.log.file_name().map(|n| n.to_string_lossy().into_owned()),
                        "digest": { "sha256": file_digest(self.log)? },
                    }],
                },
            },
        });
        Ok(serde_json::to_vec_pretty(&statement)?)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_remote_is_named_without_its_credentials() {
        for (url, uri) in [
            (
                "https://gitlab-ci-token:glcbt-SECRET@gitlab.example.com/org/app.git",
                "git+https://gitlab.example.com/org/app.git",
            ),
            ("https://github.com/org/app", "git+https://github.com/org/app"),
            ("ssh://git@host:2222/org/app.git", "git+ssh://host:2222/org/app.git"),
            ("git@github.com:org/app.git", "git+ssh://git@github.com/org/app.git"),
            ("/srv/git/app.git", "git+file:///srv/git/app.git"),
        ] {
            assert_eq!(super::remote_uri(url), uri, "{url}");
        }
    }
}
