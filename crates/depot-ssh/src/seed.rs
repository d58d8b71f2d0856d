//! Seed 001's configuration document, as its agents read it over SFTP at `configs/NAME.json`:
//! `{Name, Mtime, Hash, Layers: [{Name, Version, File: "files/<sha256>", Hash, Ctime}]}`.

use depot_api::types::Config;
use depot_registry::{Caller, Registry};
use sha2::{Digest as _, Sha256};

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Document {
    name: String,
    mtime: String,
    hash: String,
    layers: Vec<Layer>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Layer {
    name: String,
    version: String,
    file: String,
    hash: String,
    ctime: String,
}

/// The seed's configuration hash: sha256 over each layer's blob hash followed by `\n`, in layer
/// order, so that the same content gives the same hash whatever its version labels.
pub fn config_hash(config: &Config) -> String {
    let mut hasher = Sha256::new();
    for layer in &config.layers {
        hasher.update(layer.digest.hex().as_bytes());
        hasher.update(b"\n");
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The document of `config`, as `caller` may read it.
pub async fn document(registry: &Registry, caller: &Caller, config: &Config) -> Result<Vec<u8>, depot_registry::Error> {
    let versions = registry.layer_versions(caller, config).await?;
    let mut layers = Vec::new();
    for (layer, info) in config.layers.iter().zip(&versions) {
        let ctime = info.created_at;
        layers.push(Layer {
            name: layer.component.to_string(),
            version: layer.version.to_string(),
            file: format!("files/{}", layer.digest.hex()),
            hash: layer.digest.hex().to_owned(),
            ctime: ctime.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
    }
    let document = Document {
        name: config.name.to_string(),
        mtime: config.updated_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        hash: config_hash(config),
        layers,
    };
    Ok(serde_json::to_vec_pretty(&document).expect("the document serialises"))
}
