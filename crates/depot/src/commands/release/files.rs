//! The files that hold a project's version, read and rewritten in place: only the version's
//! characters change, so comments, order and layout stay as they were.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `[package] version` or `[workspace.package] version`.
    Cargo,
    /// The top-level `"version"`.
    PackageJson,
    /// `[project] version`.
    Pyproject,
    /// A file holding only the version (`VERSION`).
    Plain,
}

impl Kind {
    fn of(path: &Path) -> Kind {
        match path.file_name().and_then(|n| n.to_str()) {
            Some("Cargo.toml") => Kind::Cargo,
            Some("package.json") => Kind::PackageJson,
            Some("pyproject.toml") => Kind::Pyproject,
            _ => Kind::Plain,
        }
    }
}

#[derive(Debug, Clone)]
pub struct VersionFile {
    /// Relative to the repository's root.
    pub path: PathBuf,
    pub kind: Kind,
    pub text: String,
    pub version: String,
}

/// The version files at `root`: the ones found by name, then those `depot.toml` lists under
/// `[release] files`. A listed file must hold a version; a found one may not (a `Cargo.toml`
/// whose version comes from the workspace).
pub fn discover(root: &Path) -> anyhow::Result<Vec<VersionFile>> {
    let mut files = Vec::new();
    for name in ["Cargo.toml", "package.json", "pyproject.toml"] {
        if root.join(name).is_file()
            && let Some(file) = read(root, Path::new(name))?
        {
            files.push(file);
        }
    }
    let manifest = root.join("depot.toml");
    if manifest.is_file() {
        let text = fs_err::read_to_string(&manifest)?;
        let doc: toml::Table =
            toml::from_str(&text).with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let listed = doc.get("release").and_then(|r| r.get("files")).and_then(|f| f.as_array());
        for entry in listed.into_iter().flatten() {
            let path = PathBuf::from(entry.as_str().context("[release] files holds paths")?);
            if files.iter().any(|f: &VersionFile| f.path == path) {
                continue;
            }
            let file = read(root, &path)?
                .with_context(|| format!("{} (listed in depot.toml) holds no version", path.display()))?;
            files.push(file);
        }
    }
    Ok(files)
}

fn read(root: &Path, path: &Path) -> anyhow::Result<Option<VersionFile>> {
    let text = fs_err::read_to_string(root.join(path))?;
    let kind = Kind::of(path);
    let version = match kind {
        Kind::Cargo | Kind::Pyproject => {
            let doc: toml_edit::DocumentMut =
                text.parse().with_context(|| format!("{} is not valid TOML", path.display()))?;
            toml_version(&doc, kind).map(str::to_owned)
        }
        Kind::PackageJson => json_version_span(&text).map(|(start, end)| text[start..end].to_owned()),
        Kind::Plain => Some(text.trim().to_owned()).filter(|v| !v.is_empty() && !v.contains(char::is_whitespace)),
    };
    Ok(version.map(|version| VersionFile { path: path.to_owned(), kind, text: text.clone(), version }))
}

fn toml_version(doc: &toml_edit::DocumentMut, kind: Kind) -> Option<&str> {
    let tables: &[&[&str]] = match kind {
        Kind::Cargo => &[&["package"], &["workspace", "package"]],
        _ => &[&["project"]],
    };
    tables.iter().find_map(|path| {
        let mut item = doc.as_item();
        for key in *path {
            item = item.get(key)?;
        }
        item.get("version")?.as_str()
    })
}

impl VersionFile {
    /// The file's text with `version` in place of the current one.
    pub fn with_version(&self, version: &str) -> anyhow::Result<String> {
        Ok(match self.kind {
            Kind::Cargo | Kind::Pyproject => {
                let mut doc: toml_edit::DocumentMut = self.text.parse()?;
                let tables: &[&[&str]] = match self.kind {
                    Kind::Cargo => &[&["package"], &["workspace", "package"]],
                    _ => &[&["project"]],
                };
                for path in tables {
                    if let Some(value) = version_value(doc.as_item_mut(), path) {
                        replace_string(value, &self.version, version)?;
                        break;
                    }
                }
                doc.to_string()
            }
            Kind::PackageJson => {
                let (start, end) = json_version_span(&self.text).context("package.json lost its version")?;
                format!("{}{version}{}", &self.text[..start], &self.text[end..])
            }
            Kind::Plain => self.text.replacen(&self.version, version, 1),
        })
    }
}

/// The string `version` of the table at `path`.
fn version_value<'a>(item: &'a mut toml_edit::Item, path: &[&str]) -> Option<&'a mut toml_edit::Value> {
    match path.split_first() {
        // Through the table: indexing an item inserts what is missing.
        Some((key, rest)) => version_value(item.as_table_like_mut()?.get_mut(key)?, rest),
        None => item.as_table_like_mut()?.get_mut("version")?.as_value_mut().filter(|v| v.is_str()),
    }
}

/// Replaces `old` by `new` inside a TOML string, keeping its quotes and the space around it.
fn replace_string(value: &mut toml_edit::Value, old: &str, new: &str) -> anyhow::Result<()> {
    let toml_edit::Value::String(formatted) = &*value else { anyhow::bail!("the version is not a string") };
    let repr = formatted.display_repr().replacen(old, new, 1);
    let mut replaced: toml_edit::Value = repr.parse().with_context(|| format!("cannot write {repr} as TOML"))?;
    *replaced.decor_mut() = value.decor().clone();
    *value = replaced;
    Ok(())
}

/// The byte span of the top-level `"version"` string's value in a JSON document.
fn json_version_span(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut key: Option<(usize, usize)> = None;
    let mut expecting = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if expecting && depth == 1 {
                    return Some((start, i));
                }
                key = Some((start, i));
            }
            b':' if depth == 1 => expecting = key.is_some_and(|(s, e)| &text[s..e] == "version"),
            b'{' | b'[' => {
                depth += 1;
                expecting = false;
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' => {
                expecting = false;
                key = None;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `Cargo.lock` with the workspace's own packages (no `source`) at `old` moved to `new`.
pub fn cargo_lock(text: &str, old: &str, new: &str) -> anyhow::Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("Cargo.lock is not valid TOML")?;
    if let Some(packages) = doc.get_mut("package").and_then(|p| p.as_array_of_tables_mut()) {
        for package in packages.iter_mut() {
            let local = package.get("source").is_none();
            if local && package.get("version").and_then(|v| v.as_str()) == Some(old) {
                let value = package.get_mut("version").and_then(|v| v.as_value_mut()).expect("a version");
                replace_string(value, old, new)?;
            }
        }
    }
    Ok(doc.to_string())
}

/// CHANGELOG.md (Keep a Changelog) with the Unreleased section now under `## [version] - date`
/// and a fresh, empty Unreleased section above it; `None` when it has no Unreleased section.
pub fn changelog(text: &str, version: &str, date: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + 64);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if !done && line.trim_end().eq_ignore_ascii_case("## [unreleased]") {
            out.push_str(line);
            if !line.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!("\n## [{version}] - {date}\n"));
            done = true;
        } else {
            out.push_str(line);
        }
    }
    done.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(kind: Kind, text: &str) -> VersionFile {
        let name = match kind {
            Kind::Cargo => "Cargo.toml",
            Kind::PackageJson => "package.json",
            Kind::Pyproject => "pyproject.toml",
            Kind::Plain => "VERSION",
        };
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join(name), text).unwrap();
        read(dir.path(), Path::new(name)).unwrap().expect("a version")
    }

    #[test]
    fn only_the_version_changes() {
        let cargo = "[package]\nname = \"app\" # the name\nversion = \"1.4.2\"   # bumped by depot release\n\n[dependencies]\nserde = { version = \"1.0.0\" }\n";
        let cargo = file(Kind::Cargo, cargo);
        assert_eq!(cargo.version, "1.4.2");
        assert_eq!(
            cargo.with_version("1.5.0").unwrap(),
            "[package]\nname = \"app\" # the name\nversion = \"1.5.0\"   # bumped by depot release\n\n[dependencies]\nserde = { version = \"1.0.0\" }\n"
        );
        let workspace = file(
            Kind::Cargo,
            "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\nversion = \"0.3.0\"\nedition = \"2024\"\n",
        );
        assert_eq!(
            workspace.with_version("0.4.0").unwrap(),
            "[workspace]\nmembers = [\"a\"]\n\n[workspace.package]\nversion = \"0.4.0\"\nedition = \"2024\"\n"
        );
        let json = "{\n  \"name\": \"app\",\n  \"dependencies\": { \"version\": \"9.9.9\" },\n  \"version\":  \"1.4.2\",\n  \"private\": true\n}\n";
        let json = file(Kind::PackageJson, json);
        assert_eq!(json.version, "1.4.2");
        assert_eq!(
            json.with_version("2.0.0").unwrap(),
            "{\n  \"name\": \"app\",\n  \"dependencies\": { \"version\": \"9.9.9\" },\n  \"version\":  \"2.0.0\",\n  \"private\": true\n}\n"
        );
        let py = file(Kind::Pyproject, "[project]\nname = 'app'\nversion = '1.4.2'\n");
        assert_eq!(py.with_version("1.4.3").unwrap(), "[project]\nname = 'app'\nversion = '1.4.3'\n", "quotes kept");
    }

    #[test]
    fn a_cargo_toml_without_its_own_version_holds_none() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("Cargo.toml"), "[package]\nname = \"a\"\nversion.workspace = true\n").unwrap();
        assert!(read(dir.path(), Path::new("Cargo.toml")).unwrap().is_none());
    }

    #[test]
    fn the_lock_and_the_changelog() {
        let lock = "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"1.4.2\"\n\n[[package]]\nname = \"serde\"\nversion = \"1.4.2\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n";
        let updated = cargo_lock(lock, "1.4.2", "1.5.0").unwrap();
        assert_eq!(updated, lock.replacen("version = \"1.4.2\"", "version = \"1.5.0\"", 1));
        let log = "# Changelog\n\n## [Unreleased]\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n";
        assert_eq!(
            changelog(log, "1.5.0", "2026-11-23").unwrap(),
            "# Changelog\n\n## [Unreleased]\n\n## [1.5.0] - 2026-11-23\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n"
        );
        assert!(changelog("# Changelog\n", "1.5.0", "2026-11-23").is_none());
    }
}
