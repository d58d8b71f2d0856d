//! `depot build`: seed 000's builder. Runs the project's build command, packs the outputs
//! reproducibly, and optionally pushes them.

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
    let pushed = match (&args.push, &client) {
        (Some(component), Some(client)) => {
            let request = PushVersion {
                digest: Digest::from_hex(&packed.sha256)?,
                labels: BTreeMap::new(),
                channels: Vec::new(),
                free_form: false,
                signatures: Vec::new(),
            };
            Some(super::registry::push::register(client, component, &version, &request, &packed.path, printer)?)
        }
        _ => None,
    };
    if printer.json {
        printer.json(&serde_json::json!({ "archive": packed, "log": log, "pushed": pushed }));
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
