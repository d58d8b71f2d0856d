use std::process::ExitCode;

use anyhow::Context;
use depot_release::archive::{self, Compression, PackOptions};

use crate::cli::{Format, PackArgs};
use crate::printer::{Printer, human_bytes};

pub fn run(args: PackArgs, printer: &Printer) -> anyhow::Result<ExitCode> {
    let options = PackOptions {
        dir: args.dir.clone(),
        version: args.version,
        name: args.name,
        output: args.output,
        compression: match args.format {
            Format::Zst => Compression::Zstd,
            Format::Gz => Compression::Gzip,
        },
    };
    let progress = printer.progress();
    let result =
        archive::pack(&options, progress.as_ref()).with_context(|| format!("failed to pack {}", args.dir.display()))?;
    if printer.json {
        printer.json(&result);
    } else {
        printer.message(format!(
            "Packed {} files ({}) into {} ({})",
            result.files,
            human_bytes(result.bytes),
            result.path.display(),
            human_bytes(result.size)
        ));
        printer.data(format!("sha256:{}  {}", result.sha256, result.path.display()));
    }
    Ok(ExitCode::SUCCESS)
}
