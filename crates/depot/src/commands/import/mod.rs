//! `depot import docker|oci`: a container image into the registry, one component version per
//! layer (`IMAGE.l1`, `IMAGE.l2`, … from the bottom, versioned by the layer's digest) and a
//! configuration `IMAGE` of those layers in order, plus any `--layer` on top. A layer the
//! registry already has under that name is reused without reading it; the others are converted
//! ([`convert`]), checked against their digests, and pushed. The configuration is created, or
//! its layers replaced in one new revision (the history keeps the old list).

mod convert;
mod image;

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context;
use depot_api::types::{CreateConfig, LayerRef, PushVersion, ReplaceLayers};
use depot_api::{ComponentName, ConfigName, Digest, ErrorCode, VersionLabel};

use crate::cli::ImportCommand;
use crate::printer::{Printer, hinted, human_bytes};

pub fn run(command: ImportCommand, printer: &Printer) -> anyhow::Result<ExitCode> {
    let options = match &command {
        ImportCommand::Docker(args) => &args.options,
        ImportCommand::Oci(args) => &args.options,
    };
    // Before any work: a missing token or a bad URL fails at once.
    let client = super::registry::connect(&options.registry)?;
    let (source, _spool) = match &command {
        ImportCommand::Docker(args) => {
            // Read out of order, so kept in a file: standard input, or a compressed archive
            // (`docker save IMAGE | gzip`), is first written out as a plain tar.
            let spool = if args.file.as_os_str() == "-" {
                Some(spool(Box::new(std::io::stdin().lock()), "standard input", printer)?)
            } else if !fs_err::metadata(&args.file)?.is_file() || is_compressed(&args.file)? {
                let file = fs_err::File::open(&args.file)?;
                Some(spool(Box::new(file), &args.file.display().to_string(), printer)?)
            } else {
                None
            };
            let path = spool.as_ref().map_or(args.file.as_path(), |spool| spool.path());
            (image::Source::docker_archive(path)?, spool)
        }
        ImportCommand::Oci(args) => (image::Source::oci_layout(&args.dir)?, None),
    };
    let selector = image::Selector { image: options.image.as_deref(), platform: options.platform.as_deref() };
    let image = source.image(&selector)?;
    let name = match (&options.name, image.reference()) {
        (Some(name), _) => name.clone(),
        (None, Some(reference)) => image::short_name(reference)
            .with_context(|| format!("no configuration name can be made from `{reference}`: pass --name"))?,
        (None, None) => {
            return Err(hinted("the image has no name (no tag or ref.name)", "pass --name NAME"));
        }
    };
    let config = ConfigName::parse(&name).map_err(|e| hinted(e.to_string(), "pass --name NAME"))?;
    let components = (1..=image.layers.len())
        .map(|n| ComponentName::parse(&format!("{name}.l{n}")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| hinted(e.to_string(), "pass a shorter --name"))?;
    for extra in &options.layers {
        if components.contains(&extra.component) {
            return Err(hinted(
                format!("--layer {}:{} names a component of the image's own layers", extra.component, extra.version),
                "give the extra layer a component of its own",
            ));
        }
    }
    let reference = image.reference().unwrap_or("(unnamed)").to_owned();
    printer.message(format!(
        "Importing {reference}: {} as configuration {config}",
        super::registry::plural(image.layers.len() as u64, "layer", "layers")
    ));

    let work =
        tempfile::Builder::new().prefix("depot-import-").tempdir().context("failed to make a temporary directory")?;
    // First every layer is converted and checked, then the new ones are pushed: a bad layer
    // stops the import before anything reaches the registry.
    let mut imported = Vec::new();
    for (index, (layer, component)) in image.layers.iter().zip(&components).enumerate() {
        let version = VersionLabel::parse(&layer.diff_id).expect("64 hex digits are a version label");
        match client.version(component, &version) {
            Ok(info) => {
                check_reusable(&info, &layer.diff_id)?;
                printer.message(format!("{component} {} is in the registry already: reused", short(&layer.diff_id)));
                imported.push(ImportedLayer {
                    component: component.clone(),
                    version,
                    digest: info.digest,
                    reused: true,
                    converted: None,
                    archive: None,
                });
                continue;
            }
            Err(error) if matches!(error.code(), Some(ErrorCode::UnknownComponent | ErrorCode::UnknownVersion)) => {}
            Err(error) => return Err(error.into()),
        }
        let output = work.path().join(format!("{component}.tar.zst"));
        let progress = printer.progress();
        progress.start(&format!("Converting layer {}/{}", index + 1, image.layers.len()), Some(layer.size));
        let converted = convert::convert(
            source.open_layer(layer)?,
            layer.blob_sha256.as_deref(),
            &layer.diff_id,
            &output,
            progress.as_ref(),
        );
        progress.finish();
        let converted = converted.with_context(|| format!("layer {} ({component})", index + 1))?;
        for skipped in &converted.skipped {
            printer.message(format!(
                "warning: {component}: skipped {} ({}): a release holds no such entry",
                skipped.path, skipped.why
            ));
        }
        let digest = Digest::from_hex(&depot_release::digest::sha256_file(&output)?)?;
        imported.push(ImportedLayer {
            component: component.clone(),
            version,
            digest,
            reused: false,
            converted: Some(converted),
            archive: Some(output),
        });
    }
    check_stageable(&imported, work.path(), printer)?;
    let mut pushed = 0;
    for (index, layer) in imported.iter().enumerate() {
        let Some(archive) = &layer.archive else { continue };
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("image".to_owned(), reference.clone());
        labels.insert("layer".to_owned(), (index + 1).to_string());
        labels.insert("diff_id".to_owned(), format!("sha256:{}", layer.version));
        labels.insert("converted-by".to_owned(), CONVERTER.to_owned());
        let request = PushVersion {
            digest: layer.digest.clone(),
            labels,
            channels: Vec::new(),
            free_form: true,
            signatures: Vec::new(),
        };
        super::registry::push::register(&client, &layer.component, &layer.version, &request, archive, printer)
            .with_context(|| {
                format!(
                    "{pushed} of the image's new layers were pushed; configuration {config} was not changed \
                     (importing again reuses them)"
                )
            })?;
        pushed += 1;
    }

    let mut layers: Vec<LayerRef> =
        imported.iter().map(|l| LayerRef { component: l.component.clone(), version: l.version.clone() }).collect();
    layers.extend(options.layers.iter().cloned());
    let (config, verb) = match client.get_config(&config, None, None) {
        Ok(current) => {
            let replaced =
                client.replace_layers(&config, &ReplaceLayers { layers, expect_revision: Some(current.revision) })?;
            let verb = if replaced.revision == current.revision { "unchanged" } else { "replaced" };
            (replaced, verb)
        }
        Err(error) if error.code() == Some(ErrorCode::UnknownConfig) => {
            (client.create_config(&CreateConfig { name: config.clone(), layers })?, "created")
        }
        Err(error) => return Err(error.into()),
    };
    if printer.json {
        printer.json(&serde_json::json!({
            "image": reference,
            "config": config,
            "action": verb,
            "layers": imported,
        }));
    } else {
        let what = match verb {
            "created" => "Created configuration",
            "replaced" => "Replaced the layers of configuration",
            _ => "Configuration",
        };
        let unchanged = if verb == "unchanged" { " is unchanged" } else { "" };
        printer.message(format!(
            "{what} {}{unchanged} (revision {}, hash {}): {}",
            config.name,
            config.revision,
            super::registry::short_hash(&config.hash),
            config
                .layers
                .iter()
                .map(|l| format!("{}:{}", l.component, short(l.version.as_str())))
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct ImportedLayer {
    component: ComponentName,
    version: VersionLabel,
    digest: Digest,
    reused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    converted: Option<convert::Converted>,
    /// The converted archive, until it is pushed.
    #[serde(skip)]
    archive: Option<std::path::PathBuf>,
}

/// What made a layer's version, in its labels: a version is reused only when it came from the
/// same layer through this conversion.
const CONVERTER: &str = "depot-import/1";

/// Refuses to reuse a version of `NAME.lN` that was not made from this layer by this importer
/// (pushed by hand under the layer's digest, or by a conversion that has changed since).
fn check_reusable(info: &depot_api::types::VersionInfo, diff_id: &str) -> anyhow::Result<()> {
    let from_layer = info.labels.get("diff_id").is_some_and(|d| d == &format!("sha256:{diff_id}"));
    let converter = info.labels.get("converted-by").map(String::as_str);
    if from_layer && converter == Some(CONVERTER) {
        return Ok(());
    }
    Err(hinted(
        format!(
            "{} {} exists but was not imported from this layer by this depot (labels diff_id={}, converted-by={})",
            info.component,
            info.version,
            info.labels.get("diff_id").map_or("none", String::as_str),
            converter.unwrap_or("none"),
        ),
        "import under another --name, or delete that version first",
    ))
}

/// A staging failure: an entry a release cannot hold says so; anything else (a full disk) is
/// that error.
fn refused(what: &str, error: depot_release::Error) -> anyhow::Error {
    match error {
        depot_release::Error::UnsafeEntry { .. } | depot_release::Error::ArchiveTooLarge { .. } => hinted(
            format!("{what}: {error}"),
            "nothing was pushed: the image holds an entry a release cannot (fix the image, or skip the layer)",
        ),
        other => anyhow::Error::new(other).context(format!("{what}: nothing was pushed")),
    }
}

/// Stages the new layers, in order, into a scratch directory with the same rules as a
/// deploy: a layer an agent would refuse (a symlink leaving the tree, a path twice) stops the
/// import here, before it is pushed. Reused layers passed this check when they were imported.
fn check_stageable(layers: &[ImportedLayer], work: &std::path::Path, printer: &Printer) -> anyhow::Result<()> {
    use depot_release::stage::{Limits, Stager};
    let store = depot_release::store::ContentStore::new(&work.join("store"));
    store.create_dirs()?;
    let mut stager = Stager::create(&store, work.join("staged"), Limits::default(), false)?;
    let progress = printer.progress();
    for layer in layers {
        let Some(archive) = &layer.archive else { continue };
        progress.start(&format!("Checking {}", layer.component), fs_err::metadata(archive).ok().map(|m| m.len()));
        let staged = stager.add_layer(&mut fs_err::File::open(archive)?, progress.as_ref());
        progress.finish();
        staged.map_err(|e| refused(&format!("{} would not deploy", layer.component), e))?;
    }
    stager.finish().map_err(|e| refused("the image would not deploy", e))?;
    fs_err::remove_dir_all(work.join("staged"))?;
    fs_err::remove_dir_all(work.join("store"))?;
    Ok(())
}

/// The first 12 hex digits of a layer digest, for messages.
fn short(hex: &str) -> &str {
    &hex[..hex.len().min(12)]
}

/// Whether a file starts as gzip or zstd does.
fn is_compressed(path: &std::path::Path) -> anyhow::Result<bool> {
    let mut head = Vec::new();
    fs_err::File::open(path)?.take(4).read_to_end(&mut head)?;
    Ok(head.starts_with(&[0x1f, 0x8b]) || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]))
}

/// `input` (`what`) into a temporary file, decompressed if it is gzip or zstd.
fn spool(input: Box<dyn Read + '_>, what: &str, printer: &Printer) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut spool = tempfile::Builder::new().prefix("depot-import-").suffix(".tar").tempfile()?;
    let progress = printer.progress();
    progress.start(&format!("Reading {what}"), None);
    let copied = (|| -> anyhow::Result<u64> {
        let mut input = depot_release::progress::ProgressReader::new(input, progress.as_ref());
        let mut head = Vec::new();
        (&mut input).take(512).read_to_end(&mut head)?;
        if head.is_empty() {
            return Err(hinted(
                format!("{what} is empty"),
                "pipe an archive in: `docker save IMAGE | depot import docker -`",
            ));
        }
        let whole = std::io::Cursor::new(head).chain(input);
        let mut decoded = depot_release::archive::decoder(whole)
            .map_err(|e| anyhow::anyhow!("{what} is not a `docker save` archive: {e}"))?;
        Ok(std::io::copy(&mut decoded, spool.as_file_mut())?)
    })();
    progress.finish();
    let copied = copied.with_context(|| format!("failed to read the image from {what}"))?;
    printer.message(format!("Read {} from {what}", human_bytes(copied)));
    Ok(spool)
}
