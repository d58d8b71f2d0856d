//! Reading container images: a `docker save` archive (a tar holding `manifest.json`, each
//! image's config and its layers, in Docker's older layout or the OCI layout Docker 25 writes)
//! or an OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/…`, as
//! `skopeo copy … oci:DIR` writes). Everything is read by digest and checked against it; the
//! layers themselves are checked as they are converted ([`super::convert`]).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::printer::hinted;

/// The largest JSON document (manifest, index, config) read from an image.
const MAX_JSON: u64 = 16 * 1024 * 1024;

/// How deep image indexes may nest (an index of indexes…), and how many images a layout may
/// list in all.
const MAX_INDEX_DEPTH: usize = 4;
const MAX_DESCRIPTORS: usize = 1024;

/// Docker's media types for manifests and lists, which OCI layouts copied from Docker keep.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// The annotation that names an image in an OCI layout.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One image of the source, chosen.
pub struct Image {
    /// What the source calls it (`app:1.0`, `registry.example.com/team/app:1.0`), if anything.
    pub reference: Option<String>,
    pub layers: Vec<Layer>,
}

/// One layer: where its bytes are and what they must hash to.
pub struct Layer {
    /// The sha256 (hex) of the uncompressed tar: the config's `rootfs.diff_ids` entry, the
    /// same whatever compression the layer travels in.
    pub diff_id: String,
    /// The sha256 (hex) of the bytes as stored, when the source names it (OCI blobs).
    pub blob_sha256: Option<String>,
    pub size: u64,
    location: Location,
}

enum Location {
    /// A member of the docker archive: offset and size of its data.
    Member {
        offset: u64,
    },
    File(PathBuf),
}

/// Where images are read from.
pub enum Source {
    DockerArchive { path: PathBuf, members: HashMap<String, Member> },
    OciLayout { dir: PathBuf },
}

#[derive(Clone)]
pub enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// What picks one image out of several.
pub struct Selector<'a> {
    pub image: Option<&'a str>,
    /// `OS/ARCH[/VARIANT]`.
    pub platform: Option<&'a str>,
}

/// A candidate image before it is chosen: its name, platform and how to get its manifest.
struct Candidate {
    /// Its names: an OCI `ref.name`, or every tag `docker save` was given (the first shown).
    names: Vec<String>,
    platform: Option<String>,
    manifest: ManifestSource,
}

enum ManifestSource {
    /// A docker archive's `manifest.json` entry: config path and layer paths.
    Docker {
        config: String,
        layers: Vec<String>,
    },
    Oci(Box<Descriptor>),
}

impl Source {
    /// Indexes a docker archive's members (one pass; nothing is extracted).
    pub fn docker_archive(path: &Path) -> anyhow::Result<Source> {
        let file = fs_err::File::open(path)?;
        let mut archive = tar::Archive::new(std::io::BufReader::new(file));
        let mut members = HashMap::new();
        let not_tar = || {
            hinted(
                format!("{} is not a `docker save` archive: it is not a readable tar", path.display()),
                "make one with `docker save IMAGE -o FILE` (or `skopeo copy … docker-archive:FILE`)",
            )
        };
        for entry in archive.entries().map_err(|_| not_tar())? {
            let entry = entry.map_err(|_| not_tar())?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).trim_start_matches("./").to_owned();
            let kind = entry.header().entry_type();
            if kind.is_file() {
                members.insert(name, Member::File { offset: entry.raw_file_position(), size: entry.size() });
            } else if kind.is_symlink() || kind.is_hard_link() {
                let target = entry.link_name_bytes().map(|t| String::from_utf8_lossy(&t).into_owned());
                if let Some(target) = target {
                    // Docker's older layout links a repeated layer to the first copy.
                    let target = if kind.is_symlink() { resolve_relative(&name, &target) } else { target };
                    members.insert(name, Member::Link(target.trim_start_matches("./").to_owned()));
                }
            }
        }
        if !members.contains_key("manifest.json") {
            return Err(hinted(
                format!("{} has no manifest.json: it is not a `docker save` archive", path.display()),
                "make one with `docker save IMAGE -o FILE` (or `skopeo copy … docker-archive:FILE`); for an OCI \
                 layout directory use `depot import oci DIR`",
            ));
        }
        Ok(Source::DockerArchive { path: path.to_owned(), members })
    }

    pub fn oci_layout(dir: &Path) -> anyhow::Result<Source> {
        let layout = dir.join("oci-layout");
        let text = fs_err::read_to_string(&layout).map_err(|_| {
            hinted(
                format!("{} is not an OCI image layout: it has no oci-layout file", dir.display()),
                "make one with `skopeo copy docker://IMAGE oci:DIR:NAME`; for a `docker save` archive use \
                 `depot import docker FILE`",
            )
        })?;
        let version: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", layout.display()))?;
        if version["imageLayoutVersion"] != "1.0.0" {
            bail!("{}: unsupported imageLayoutVersion {}", layout.display(), version["imageLayoutVersion"]);
        }
        Ok(Source::OciLayout { dir: dir.to_owned() })
    }

    /// The image `selector` picks: the only one, or the one it names.
    pub fn image(&self, selector: &Selector<'_>) -> anyhow::Result<Image> {
        let candidates = self.candidates()?;
        let chosen: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| selector.image.is_none_or(|name| c.answers_to(name)))
            .filter(|c| {
                selector
                    .platform
                    .is_none_or(|want| self.platform_of(c).is_some_and(|have| platform_matches(&have, want)))
            })
            .collect();
        let described = || {
            candidates
                .iter()
                .map(|c| {
                    let name = c.names.first().map_or("(no name)", String::as_str);
                    match &c.platform {
                        Some(platform) => format!("{name} ({platform})"),
                        None => name.to_owned(),
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let candidate = match chosen.as_slice() {
            [one] => *one,
            [] if candidates.is_empty() => bail!("the source holds no image"),
            [] => {
                return Err(hinted(
                    "no image in the source matches --image/--platform",
                    format!("it holds: {}", described()),
                ));
            }
            _ => {
                return Err(hinted(
                    format!("the source holds {} images", chosen.len()),
                    format!("pick one with --image NAME (or --platform OS/ARCH): {}", described()),
                ));
            }
        };
        self.load(candidate)
    }

    fn candidates(&self) -> anyhow::Result<Vec<Candidate>> {
        match self {
            Source::DockerArchive { .. } => {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "PascalCase")]
                struct Entry {
                    config: String,
                    #[serde(default)]
                    repo_tags: Option<Vec<String>>,
                    layers: Vec<String>,
                }
                let entries: Vec<Entry> = serde_json::from_slice(&self.read_member("manifest.json")?)
                    .context("manifest.json is not a docker image manifest")?;
                let mut candidates = Vec::new();
                for entry in entries {
                    let manifest = ManifestSource::Docker { config: entry.config, layers: entry.layers };
                    // An image saved under several tags is one image: --image may give any.
                    let names = entry.repo_tags.unwrap_or_default();
                    candidates.push(Candidate { names, platform: None, manifest });
                }
                Ok(candidates)
            }
            Source::OciLayout { dir } => {
                let index: ImageIndex = serde_json::from_slice(&read_limited(&dir.join("index.json"))?)
                    .context("index.json is not an OCI image index")?;
                let mut candidates = Vec::new();
                self.walk_index(&index, None, 0, &mut candidates)?;
                Ok(candidates)
            }
        }
    }

    fn walk_index(
        &self,
        index: &ImageIndex,
        reference: Option<&str>,
        depth: usize,
        candidates: &mut Vec<Candidate>,
    ) -> anyhow::Result<()> {
        if depth > MAX_INDEX_DEPTH {
            bail!("image indexes nest deeper than {MAX_INDEX_DEPTH} levels");
        }
        for descriptor in index.manifests() {
            if candidates.len() + depth > MAX_DESCRIPTORS {
                bail!("the layout lists more than {MAX_DESCRIPTORS} images");
            }
            let name =
                descriptor.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str).or(reference);
            let platform = descriptor.platform().as_ref().map(|p| {
                let mut text = format!("{}/{}", p.os(), p.architecture());
                if let Some(variant) = p.variant() {
                    text = format!("{text}/{variant}");
                }
                text
            });
            // Build attestations (buildx) sit in indexes as manifests for platform unknown/unknown.
            if platform.as_deref() == Some("unknown/unknown") {
                continue;
            }
            match descriptor.media_type() {
                MediaType::ImageIndex => {
                    let nested: ImageIndex = serde_json::from_slice(&self.read_blob(descriptor)?)
                        .context("a nested image index is not valid")?;
                    self.walk_index(&nested, name, depth + 1, candidates)?;
                }
                MediaType::Other(other) if other == DOCKER_MANIFEST_LIST => {
                    let nested: ImageIndex = serde_json::from_slice(&self.read_blob(descriptor)?)
                        .context("a nested manifest list is not valid")?;
                    self.walk_index(&nested, name, depth + 1, candidates)?;
                }
                MediaType::ImageManifest => candidates.push(Candidate {
                    names: name.map(str::to_owned).into_iter().collect(),
                    platform,
                    manifest: ManifestSource::Oci(Box::new(descriptor.clone())),
                }),
                MediaType::Other(other) if other == DOCKER_MANIFEST => candidates.push(Candidate {
                    names: name.map(str::to_owned).into_iter().collect(),
                    platform,
                    manifest: ManifestSource::Oci(Box::new(descriptor.clone())),
                }),
                _ => {}
            }
        }
        Ok(())
    }

    /// A candidate's platform, `OS/ARCH[/VARIANT]`: from its index entry, else its config.
    fn platform_of(&self, candidate: &Candidate) -> Option<String> {
        if let Some(platform) = &candidate.platform {
            return Some(platform.clone());
        }
        let config: ImageConfiguration = match &candidate.manifest {
            ManifestSource::Docker { config, .. } => serde_json::from_slice(&self.read_member(config).ok()?).ok()?,
            ManifestSource::Oci(descriptor) => {
                let manifest: ImageManifest = serde_json::from_slice(&self.read_blob(descriptor).ok()?).ok()?;
                serde_json::from_slice(&self.read_blob(manifest.config()).ok()?).ok()?
            }
        };
        let mut platform = format!("{}/{}", config.os(), config.architecture());
        if let Some(variant) = config.variant() {
            platform = format!("{platform}/{variant}");
        }
        Some(platform)
    }

    fn load(&self, candidate: &Candidate) -> anyhow::Result<Image> {
        let (config, layers): (ImageConfiguration, Vec<(Location, Option<String>, u64)>) = match &candidate.manifest {
            ManifestSource::Docker { config, layers } => {
                let config = serde_json::from_slice(&self.read_member(config)?)
                    .with_context(|| format!("{config} is not an image configuration"))?;
                let layers = layers
                    .iter()
                    .map(|path| {
                        let (offset, size) = self.member(path)?;
                        // The newer layout names blobs by digest: check that too.
                        let sha256 = path.strip_prefix("blobs/sha256/").map(str::to_owned);
                        Ok((Location::Member { offset }, sha256, size))
                    })
                    .collect::<anyhow::Result<_>>()?;
                (config, layers)
            }
            ManifestSource::Oci(descriptor) => {
                let manifest: ImageManifest =
                    serde_json::from_slice(&self.read_blob(descriptor)?).context("the image manifest is not valid")?;
                let config = serde_json::from_slice(&self.read_blob(manifest.config())?)
                    .context("the image configuration is not valid")?;
                let layers = manifest
                    .layers()
                    .iter()
                    .map(|layer| {
                        let (path, sha256) = self.blob_path(layer)?;
                        Ok((Location::File(path), Some(sha256), layer.size()))
                    })
                    .collect::<anyhow::Result<_>>()?;
                (config, layers)
            }
        };
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != layers.len() {
            bail!(
                "the image configuration lists {} layer digests (rootfs.diff_ids) for {} layers",
                diff_ids.len(),
                layers.len()
            );
        }
        let layers = layers
            .into_iter()
            .zip(diff_ids)
            .map(|((location, blob_sha256, size), diff_id)| {
                let diff_id = depot_release::digest::normalize_sha256(diff_id)
                    .filter(|_| diff_id.starts_with("sha256:"))
                    .with_context(|| format!("layer digest `{diff_id}` is not a sha256 digest"))?;
                Ok(Layer { diff_id, blob_sha256, size, location })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Image { reference: candidate.names.first().cloned(), layers })
    }

    /// The bytes of one layer as stored (maybe compressed).
    pub fn open_layer(&self, layer: &Layer) -> anyhow::Result<Box<dyn Read + Send>> {
        Ok(match (&layer.location, self) {
            (Location::Member { offset }, Source::DockerArchive { path, .. }) => {
                let mut file = fs_err::File::open(path)?;
                file.seek(SeekFrom::Start(*offset))?;
                Box::new(file.take(layer.size))
            }
            (Location::File(path), _) => Box::new(fs_err::File::open(path)?),
            (Location::Member { .. }, Source::OciLayout { .. }) => unreachable!("members come from docker archives"),
        })
    }

    /// The offset and size of a docker archive member, through links.
    fn member(&self, name: &str) -> anyhow::Result<(u64, u64)> {
        let Source::DockerArchive { members, .. } = self else { unreachable!("only docker archives have members") };
        let mut name = name.trim_start_matches("./").to_owned();
        for _ in 0..8 {
            match members.get(&name) {
                Some(Member::File { offset, size }) => return Ok((*offset, *size)),
                Some(Member::Link(target)) => name = target.clone(),
                None => bail!("the archive has no member {name}, which its manifest.json names"),
            }
        }
        bail!("the archive's member {name} is a chain of links")
    }

    fn read_member(&self, name: &str) -> anyhow::Result<Vec<u8>> {
        let Source::DockerArchive { path, .. } = self else { unreachable!("only docker archives have members") };
        let (offset, size) = self.member(name)?;
        if size > MAX_JSON {
            bail!("{name} is larger than {MAX_JSON} bytes");
        }
        let mut file = fs_err::File::open(path)?;
        file.seek(SeekFrom::Start(offset))?;
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(size).read_to_end(&mut bytes)?;
        if let Some(hex) = name.strip_prefix("blobs/sha256/").or_else(|| name.strip_suffix(".json")) {
            // Both layouts name configs by the sha256 of their bytes.
            if hex.len() == 64 && depot_release::digest::sha256_hex(&bytes) != hex {
                bail!("{name} does not match its digest: the archive is damaged");
            }
        }
        Ok(bytes)
    }

    /// `DIR/blobs/sha256/HEX` for a descriptor, and HEX.
    fn blob_path(&self, descriptor: &Descriptor) -> anyhow::Result<(PathBuf, String)> {
        let Source::OciLayout { dir } = self else { unreachable!("only OCI layouts have blobs") };
        let Some(hex) = descriptor.as_digest_sha256() else {
            bail!("{} is not a sha256 digest: only sha256 is supported", descriptor.digest());
        };
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{} is not a sha256 digest", descriptor.digest());
        }
        let path = dir.join("blobs/sha256").join(hex);
        if !path.is_file() {
            return Err(hinted(
                format!("blob {} is missing from {}", descriptor.digest(), dir.display()),
                "copy the image again with `skopeo copy`; foreign (non-distributable) layers are not in a layout",
            ));
        }
        Ok((path, hex.to_owned()))
    }

    /// A small blob (manifest, index, config), checked against its digest and size.
    fn read_blob(&self, descriptor: &Descriptor) -> anyhow::Result<Vec<u8>> {
        let (path, hex) = self.blob_path(descriptor)?;
        let bytes = read_limited(&path)?;
        if depot_release::digest::sha256_hex(&bytes) != hex || bytes.len() as u64 != descriptor.size() {
            bail!("blob {} does not match its digest or size: the layout is damaged", descriptor.digest());
        }
        Ok(bytes)
    }
}

impl Candidate {
    /// Whether `--image NAME` means this image: one of its names, or the short name depot
    /// derives from one.
    fn answers_to(&self, wanted: &str) -> bool {
        self.names.iter().any(|name| name == wanted || short_name(name).as_deref() == Some(wanted))
    }
}

impl Image {
    /// What the source calls the image (its first tag).
    pub fn reference(&self) -> Option<&str> {
        self.reference.as_deref()
    }
}

/// The name depot gives an image by default: the last path element of its reference without
/// tag or digest (`registry.example.com/team/app:1.0` → `app`), with any character a component
/// name cannot hold replaced by `-`.
pub fn short_name(reference: &str) -> Option<String> {
    let reference = reference.split('@').next().unwrap_or(reference);
    let last = reference.rsplit('/').next().unwrap_or(reference);
    let repository = last.split(':').next().unwrap_or(last);
    let name: String = repository
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '-' })
        .collect();
    let name = name.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    (!name.is_empty()).then(|| name.to_owned())
}

/// Whether an image of platform `have` is what `--platform want` asks for (`linux/arm64` takes
/// `linux/arm64/v8`).
fn platform_matches(have: &str, want: &str) -> bool {
    have == want || have.strip_prefix(want).is_some_and(|rest| rest.starts_with('/'))
}

/// `target` of a symlink at `link`, as a path from the archive's root.
fn resolve_relative(link: &str, target: &str) -> String {
    if let Some(absolute) = target.strip_prefix('/') {
        return absolute.to_owned();
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

fn read_limited(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file = fs_err::File::open(path)?;
    if file.metadata()?.len() > MAX_JSON {
        bail!("{} is larger than {MAX_JSON} bytes", path.display());
    }
    let mut bytes = Vec::new();
    file.take(MAX_JSON).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names() {
        assert_eq!(short_name("registry.example.com:5000/team/app:1.0").as_deref(), Some("app"));
        assert_eq!(short_name("app@sha256:abc").as_deref(), Some("app"));
        assert_eq!(short_name("debian").as_deref(), Some("debian"));
        assert_eq!(short_name("_x+y").as_deref(), Some("x-y"));
        assert_eq!(short_name(":"), None);
        assert_eq!(resolve_relative("a/b/layer.tar", "../c/layer.tar"), "a/c/layer.tar");
    }
}
