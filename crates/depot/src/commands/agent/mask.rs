//! The values an agent masks in its reports. The registry masks every value a stage ever had in
//! the reports it stores, but a report arrives cut to size (4 KiB of error, 16 KiB of output),
//! and a value the cut splits is no longer a value it can find. So the agent masks first, with the
//! values it holds itself: those of the configuration's environment layer (read from the release
//! on disk, or from the layer's blob when the release was never staged, as when the validate hook
//! fails) and those of the release active before (whose hooks run again on a switch back).

use std::io::Read;
use std::path::Path;

use depot_api::pipeline::{ENV_FILE, env_component, parse_dotenv};
use depot_api::types::Config;
use depot_release::root::ReleaseRoot;

/// The most bytes read of a dotenv file, or decompressed from an environment layer's blob: the
/// registry writes a few KiB; this only bounds a damaged file.
const MAX_ENV_BYTES: u64 = 16 * 1024 * 1024;

/// The environment values that hooks of this cycle may print: `config`'s, from `release` on disk
/// or from `blob` (the layer's downloaded archive), and those of the release `current` names.
pub fn env_values(root: &ReleaseRoot, config: &Config, release_dir: &Path, blob: Option<&Path>) -> Vec<String> {
    let mut texts = Vec::new();
    let has_env_layer = config.layers.iter().any(|layer| layer.component == env_component(&config.name));
    if has_env_layer {
        match read_bounded(&release_dir.join(ENV_FILE)) {
            Some(text) => texts.push(text),
            None => texts.extend(blob.and_then(env_file_in_layer)),
        }
    }
    if let Some(current) = root.current() {
        texts.extend(read_bounded(&root.release_dir(&current).join(ENV_FILE)));
    }
    let mut values: Vec<String> = texts.iter().flat_map(|text| parse_dotenv(text)).map(|(_, value)| value).collect();
    values.sort();
    values.dedup();
    values
}

fn read_bounded(path: &Path) -> Option<String> {
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_ENV_BYTES).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `config/app.env` in an environment layer's archive (its only file, as the registry builds it).
fn env_file_in_layer(blob: &Path) -> Option<String> {
    let file = std::fs::File::open(blob).ok()?;
    let decoded = depot_release::archive::decoder(file).ok()?;
    let mut archive = tar::Archive::new(decoded.take(MAX_ENV_BYTES));
    for entry in archive.entries().ok()? {
        let entry = entry.ok()?;
        let is_env_file =
            entry.path().ok().is_some_and(|path| path.strip_prefix("./").unwrap_or(&path) == Path::new(ENV_FILE));
        if is_env_file && entry.header().entry_type().is_file() {
            let mut text = String::new();
            entry.take(MAX_ENV_BYTES).read_to_string(&mut text).ok()?;
            return Some(text);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use depot_api::pipeline::render_dotenv;

    #[test]
    fn the_env_file_is_read_back_from_a_layer_built_as_the_registry_builds_it() {
        let vars = BTreeMap::from([("TOKEN".to_owned(), "it's a \"secret\"\nof two lines".to_owned())]);
        let text = render_dotenv(&vars, "note");
        let archive = depot_release::archive::pack_files(&[(super::ENV_FILE, text.as_bytes(), 0o640)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs_err::write(&blob, archive).unwrap();
        assert_eq!(super::env_file_in_layer(&blob).as_deref(), Some(text.as_str()));
        fs_err::write(&blob, b"not an archive").unwrap();
        assert_eq!(super::env_file_in_layer(&blob), None);
    }
}
