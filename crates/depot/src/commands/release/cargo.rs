//! A Cargo workspace's side of a release: which packages the bumped version files release, the
//! requirements other manifests hold on them through `path` dependencies (which must follow the
//! new version, or the workspace no longer resolves), and their entries in `Cargo.lock`. Only the
//! released packages change: a member with a version of its own keeps it, even when it is equal.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use semver::{Version, VersionReq};

use super::files::{Kind, VersionFile, replace_string};
use crate::printer::hinted;

/// One package of a workspace, as `cargo metadata` lists it.
#[derive(Debug, Clone)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// Relative to the repository's root.
    pub manifest: PathBuf,
    /// Canonical; how a `path` dependency is matched to it.
    dir: PathBuf,
}

/// The workspaces the Cargo version files belong to, and the packages they release.
#[derive(Debug, Default)]
pub struct Release {
    /// The manifests of every workspace concerned (members and roots), relative to the repository.
    pub manifests: Vec<PathBuf>,
    pub released: Vec<Package>,
    /// Each workspace's `Cargo.lock`, relative to the repository (it may not exist).
    pub locks: Vec<PathBuf>,
}

/// Reads the workspaces of the `Cargo.toml` version files with `cargo metadata` (so that member
/// globs, `exclude` and implicit members are cargo's own reading), and picks the packages whose
/// version is the one being bumped: the package of a `[package] version`, or every member that
/// says `version.workspace = true` for a `[workspace.package] version`.
pub fn release(root: &Path, files: &[VersionFile]) -> anyhow::Result<Release> {
    let mut release = Release::default();
    let repository = fs_err::canonicalize(root)?;
    let mut released_dirs = BTreeSet::new();
    for file in files.iter().filter(|f| f.kind == Kind::Cargo) {
        let manifest = root.join(&file.path);
        let (workspace_root, packages) = metadata(&repository, &manifest)?;
        let manifests =
            std::iter::once(workspace_root.join("Cargo.toml")).chain(packages.iter().map(|p| p.manifest.clone()));
        let lock = workspace_root.join("Cargo.lock");
        if !release.locks.contains(&lock) {
            release.locks.push(lock);
        }
        for manifest in manifests {
            if !release.manifests.contains(&manifest) {
                release.manifests.push(manifest);
            }
        }
        let doc: toml_edit::DocumentMut = file.text.parse()?;
        let own = doc.get("package").and_then(|p| p.get("version")).and_then(|v| v.as_str()).is_some();
        let file_dir = canonical_dir(&manifest)?;
        for package in packages {
            let is_released = if own {
                package.dir == file_dir
            } else {
                // The `[workspace.package] version`: the members that inherit it.
                let text = fs_err::read_to_string(root.join(&package.manifest))?;
                let member: toml_edit::DocumentMut =
                    text.parse().with_context(|| format!("{} is not valid TOML", package.manifest.display()))?;
                let version = member.get("package").and_then(|p| p.get("version"));
                version.and_then(|v| v.get("workspace")).and_then(|w| w.as_bool()) == Some(true)
            };
            if is_released && released_dirs.insert(package.dir.clone()) {
                release.released.push(package);
            }
        }
    }
    Ok(release)
}

/// The members of the virtual workspace at `root` (a `Cargo.toml` with `[workspace]` and no version
/// of its own), with their versions; `None` when it is not one or cargo cannot read it.
pub fn virtual_members(root: &Path) -> Option<Vec<(PathBuf, String)>> {
    let manifest = root.join("Cargo.toml");
    let doc: toml_edit::DocumentMut = fs_err::read_to_string(&manifest).ok()?.parse().ok()?;
    if doc.get("workspace").is_none() || doc.get("package").is_some() {
        return None;
    }
    let (_, packages) = metadata(&fs_err::canonicalize(root).ok()?, &manifest).ok()?;
    Some(packages.into_iter().map(|p| (p.manifest, p.version)).collect())
}

/// The workspace's root and members of the package at `manifest`.
fn metadata(repository: &Path, manifest: &Path) -> anyhow::Result<(PathBuf, Vec<Package>)> {
    let output = Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline", "--color", "never", "--manifest-path"])
        .arg(manifest)
        .output()
        .map_err(|e| {
            hinted(
                format!("cannot run cargo: {e}"),
                "depot release reads a Cargo workspace with `cargo metadata`: install cargo (rustup.rs)",
            )
        })?;
    if !output.status.success() {
        return Err(hinted(
            format!(
                "`cargo metadata` cannot read the workspace of {}: {}",
                manifest.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            "fix the manifest (`cargo metadata --no-deps` must succeed), then run depot release again",
        ));
    }
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).context("cargo metadata's output")?;
    let workspace_root = PathBuf::from(metadata["workspace_root"].as_str().context("cargo metadata: workspace_root")?);
    let mut packages = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let manifest = PathBuf::from(package["manifest_path"].as_str().context("cargo metadata: manifest_path")?);
        let dir = canonical_dir(&manifest)?;
        let relative = match dir.strip_prefix(repository) {
            Ok(dir) => dir.join("Cargo.toml"),
            Err(_) => manifest.clone(),
        };
        packages.push(Package {
            name: package["name"].as_str().unwrap_or_default().to_owned(),
            version: package["version"].as_str().unwrap_or_default().to_owned(),
            manifest: relative,
            dir,
        });
    }
    let workspace_root = fs_err::canonicalize(&workspace_root)?;
    let workspace_root = workspace_root.strip_prefix(repository).map(Path::to_owned).unwrap_or(workspace_root);
    Ok((workspace_root, packages))
}

fn canonical_dir(manifest: &Path) -> anyhow::Result<PathBuf> {
    Ok(fs_err::canonicalize(manifest.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")))?)
}

/// The manifest's text with every `path` dependency on a released package (in `[dependencies]`,
/// `[dev-dependencies]`, `[build-dependencies]`, their `[target.*]` forms and
/// `[workspace.dependencies]`) requiring `new` in place of what it required, in the same form
/// (`0.3.34` → `0.4.0`, `~2.4.0` → `~2.5.0`, `0.3` → `0.4`). Errors name a requirement that
/// cannot follow (`<0.4`) and would no longer admit the new version: refusals, returned after it.
pub fn follow_requirements(
    root: &Path,
    manifest: &Path,
    text: &str,
    released: &[Package],
    new: &Version,
) -> anyhow::Result<(String, Vec<String>)> {
    let mut refusals = Vec::new();
    let mut doc: toml_edit::DocumentMut =
        text.parse().with_context(|| format!("{} is not valid TOML", manifest.display()))?;
    let dir = canonical_dir(&root.join(manifest))?;
    let mut tables: Vec<&mut toml_edit::Item> = Vec::new();
    for (key, item) in doc.as_table_mut().iter_mut() {
        match key.get() {
            "dependencies" | "dev-dependencies" | "dev_dependencies" | "build-dependencies" | "build_dependencies" => {
                tables.push(item)
            }
            "workspace" => {
                if let Some(deps) = item.get_mut("dependencies") {
                    tables.push(deps);
                }
            }
            "target" => {
                for (_, target) in item.as_table_like_mut().into_iter().flat_map(|t| t.iter_mut()) {
                    for (key, deps) in target.as_table_like_mut().into_iter().flat_map(|t| t.iter_mut()) {
                        if key.get().contains("dependencies") {
                            tables.push(deps);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    for table in tables {
        let Some(table) = table.as_table_like_mut() else { continue };
        for (key, dependency) in table.iter_mut() {
            let Some(dependency) = dependency.as_table_like_mut() else { continue };
            let Some(path) = dependency.get("path").and_then(|p| p.as_str()) else { continue };
            let Ok(target) = fs_err::canonicalize(dir.join(path)) else { continue };
            if !released.iter().any(|p| p.dir == target) {
                continue;
            }
            let Some(value) = dependency.get_mut("version").and_then(|v| v.as_value_mut()) else { continue };
            let Some(requirement) = value.as_str().map(str::to_owned) else { continue };
            let Some(followed) = follow(&requirement, new) else {
                refusals.push(format!(
                    "{}: the requirement {} = \"{requirement}\" would not admit {new}, and depot release cannot \
                     move it; write it as \"{new}\" (or ^, ~, =, >= and a version) first",
                    manifest.display(),
                    key.get()
                ));
                continue;
            };
            if followed != requirement {
                replace_string(value, &requirement, &followed)?;
            }
        }
    }
    Ok((doc.to_string(), refusals))
}

/// `requirement` moved to `new` keeping its operator and precision, or kept when it is a form that
/// cannot move and still admits `new`; `None` when it no longer would.
fn follow(requirement: &str, new: &Version) -> Option<String> {
    let trimmed = requirement.trim();
    let single = !trimmed.contains(',') && !trimmed.contains('*') && !trimmed.contains(['x', 'X']);
    let start = trimmed.find(|c: char| c.is_ascii_digit())?;
    let operator = trimmed[..start].trim_end();
    if single && matches!(operator, "" | "^" | "~" | "=" | ">=") {
        let old = &trimmed[start..];
        let numbers = old.split(['-', '+']).next().unwrap_or(old).split('.').count();
        let moved = if !new.pre.is_empty() || old.contains('-') || numbers >= 3 {
            format!("{}.{}.{}{}", new.major, new.minor, new.patch, if new.pre.is_empty() { "" } else { "-" })
                + new.pre.as_str()
        } else if numbers == 2 {
            format!("{}.{}", new.major, new.minor)
        } else {
            new.major.to_string()
        };
        let followed = format!("{}{moved}", &trimmed[..start]);
        let followed = requirement.replacen(trimmed, &followed, 1);
        return VersionReq::parse(&followed).ok().filter(|r| r.matches(new)).map(|_| followed);
    }
    VersionReq::parse(trimmed).ok().filter(|r| r.matches(new)).map(|_| requirement.to_owned())
}

/// `Cargo.lock` with the released packages (local: no `source`) at their old version moved to
/// `new`, and the references to them (`"name old"`, written when two versions of a name are locked)
/// with them. Every other entry is left as it is, byte for byte.
pub fn lock(text: &str, released: &[Package], new: &str) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("Cargo.lock is not valid TOML")?;
    let is_released = |name: &str, version: &str| released.iter().any(|p| p.name == name && p.version == version);
    if let Some(packages) = doc.get_mut("package").and_then(|p| p.as_array_of_tables_mut()) {
        for package in packages.iter_mut() {
            let local = package.get("source").is_none();
            let name = package.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
            if let Some(value) = package.get_mut("version").and_then(|v| v.as_value_mut())
                && let Some(old) = value.as_str().map(str::to_owned)
                && local
                && is_released(&name, &old)
            {
                replace_string(value, &old, new)?;
            }
            let Some(dependencies) = package.get_mut("dependencies").and_then(|d| d.as_array_mut()) else {
                continue;
            };
            for reference in dependencies.iter_mut() {
                let Some(text) = reference.as_str().map(str::to_owned) else { continue };
                let mut parts = text.split(' ');
                if let (Some(name), Some(old), None) = (parts.next(), parts.next(), parts.next())
                    && is_released(name, old)
                {
                    replace_string(reference, &text, &format!("{name} {new}"))?;
                }
            }
        }
    }
    Ok(doc.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_requirement_follows_in_its_own_form() {
        let to = |req: &str, new: &str| follow(req, &Version::parse(new).unwrap());
        assert_eq!(to("0.3.34", "0.4.0").as_deref(), Some("0.4.0"));
        assert_eq!(to("0.3.34", "0.3.35").as_deref(), Some("0.3.35"));
        assert_eq!(to("~2.4.0", "2.5.0").as_deref(), Some("~2.5.0"));
        assert_eq!(to("=1.2.3", "1.3.0").as_deref(), Some("=1.3.0"));
        assert_eq!(to(">= 1.2", "2.0.0").as_deref(), Some(">= 2.0"));
        assert_eq!(to("0.3", "0.3.35").as_deref(), Some("0.3"), "still the same precision");
        assert_eq!(to("1", "2.0.0").as_deref(), Some("2"));
        assert_eq!(to("^1.4.2", "1.5.0-rc.1").as_deref(), Some("^1.5.0-rc.1"));
        assert_eq!(to(">=1, <3", "2.0.0").as_deref(), Some(">=1, <3"), "a range that still admits it stays");
        assert_eq!(to("<0.4", "0.4.0"), None, "one that does not is refused");
        assert_eq!(to("0.3.*", "0.4.0"), None);
    }

    #[test]
    fn only_the_released_packages_move_in_the_lock() {
        let package = |name: &str, version: &str| Package {
            name: name.to_owned(),
            version: version.to_owned(),
            manifest: PathBuf::from(format!("{name}/Cargo.toml")),
            dir: PathBuf::from(format!("/{name}")),
        };
        let text = "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.0.0\"\ndependencies = [\n \"b 1.0.0\",\n \"b 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)\",\n \"c\",\n]\n\n[[package]]\nname = \"b\"\nversion = \"1.0.0\"\n\n[[package]]\nname = \"b\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"c\"\nversion = \"1.0.0\"\n";
        let moved = lock(text, &[package("a", "1.0.0"), package("b", "1.0.0")], "1.1.0").unwrap();
        assert_eq!(
            moved,
            "version = 4\n\n[[package]]\nname = \"a\"\nversion = \"1.1.0\"\ndependencies = [\n \"b 1.1.0\",\n \"b 1.0.0 (registry+https://github.com/rust-lang/crates.io-index)\",\n \"c\",\n]\n\n[[package]]\nname = \"b\"\nversion = \"1.1.0\"\n\n[[package]]\nname = \"b\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"c\"\nversion = \"1.0.0\"\n",
            "not the registry's b, not c (a member with its own version)"
        );
    }
}
