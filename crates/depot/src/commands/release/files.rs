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
    /// `[project] version`, or Poetry's `[tool.poetry] version` (both when both hold it).
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
    let tables = version_tables(kind);
    tables.iter().find_map(|path| {
        let mut item = doc.as_item();
        for key in *path {
            item = item.get(key)?;
        }
        item.get("version")?.as_str()
    })
}

/// The tables whose `version` a file of this kind holds, first the one that counts.
fn version_tables(kind: Kind) -> &'static [&'static [&'static str]] {
    match kind {
        Kind::Cargo => &[&["package"], &["workspace", "package"]],
        _ => &[&["project"], &["tool", "poetry"]],
    }
}

impl VersionFile {
    /// The file's text with `version` in place of the current one.
    pub fn with_version(&self, version: &str) -> anyhow::Result<String> {
        Ok(match self.kind {
            Kind::Cargo | Kind::Pyproject => {
                let mut doc: toml_edit::DocumentMut = self.text.parse()?;
                for path in version_tables(self.kind) {
                    if let Some(value) = version_value(doc.as_item_mut(), path)
                        && value.as_str() == Some(self.version.as_str())
                    {
                        replace_string(value, &self.version, version)?;
                        // A package's own version, not the one its workspace gives its members.
                        if self.kind == Kind::Cargo {
                            break;
                        }
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
pub(super) fn replace_string(value: &mut toml_edit::Value, old: &str, new: &str) -> anyhow::Result<()> {
    let toml_edit::Value::String(formatted) = &*value else { anyhow::bail!("the version is not a string") };
    let repr = formatted.display_repr().replacen(old, new, 1);
    let mut replaced: toml_edit::Value = repr.parse().with_context(|| format!("cannot write {repr} as TOML"))?;
    *replaced.decor_mut() = value.decor().clone();
    *value = replaced;
    Ok(())
}

/// The byte span of the top-level `"version"` string's value in a JSON document.
fn json_version_span(text: &str) -> Option<(usize, usize)> {
    json_string_span(text, &["version"])
}

/// The byte span of the string at `path` (object keys from the top) in a JSON document, inside
/// its quotes; `None` when there is none or the document is not JSON.
fn json_string_span(text: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut scanner = JsonScanner { bytes: text.as_bytes(), at: 0, found: None };
    scanner.value(Some(path));
    scanner.found
}

struct JsonScanner<'a> {
    bytes: &'a [u8],
    at: usize,
    found: Option<(usize, usize)>,
}

impl JsonScanner<'_> {
    fn skip_space(&mut self) {
        while self.bytes.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    /// Scans a string from its opening quote; the span of its content.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.at + 1;
        self.at = start;
        while let Some(&byte) = self.bytes.get(self.at) {
            match byte {
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at - 1));
                }
                b'\\' => self.at += 2,
                _ => self.at += 1,
            }
        }
        None
    }

    /// Scans one value; `wanted` is what is left of the sought path when this value is on it.
    fn value(&mut self, wanted: Option<&[&str]>) -> Option<()> {
        self.skip_space();
        match *self.bytes.get(self.at)? {
            b'"' => {
                let span = self.string()?;
                if wanted.is_some_and(<[&str]>::is_empty) && self.found.is_none() {
                    self.found = Some(span);
                }
            }
            b'{' => {
                self.at += 1;
                loop {
                    self.skip_space();
                    match *self.bytes.get(self.at)? {
                        b'}' => break,
                        b',' => self.at += 1,
                        b'"' => {
                            let (start, end) = self.string()?;
                            let key = &self.bytes[start..end];
                            self.skip_space();
                            (*self.bytes.get(self.at)? == b':').then_some(())?;
                            self.at += 1;
                            let inner = wanted
                                .and_then(|w| w.split_first())
                                .filter(|(first, _)| first.as_bytes() == key)
                                .map(|(_, rest)| rest);
                            self.value(inner)?;
                        }
                        _ => return None,
                    }
                }
                self.at += 1;
            }
            b'[' => {
                self.at += 1;
                loop {
                    self.skip_space();
                    match *self.bytes.get(self.at)? {
                        b']' => break,
                        b',' => self.at += 1,
                        _ => self.value(None)?,
                    }
                }
                self.at += 1;
            }
            _ => {
                let length = self.bytes[self.at..].iter().position(|b| matches!(b, b',' | b'}' | b']'))?;
                (length > 0).then_some(())?;
                self.at += length;
            }
        }
        Some(())
    }
}

/// `package-lock.json` (or `npm-shrinkwrap.json`) as `npm version` leaves it: the top-level
/// `"version"` and the root package's (`packages[""].version`, lockfile v2 and v3) moved from
/// `old` to `new`, each only where it held `old`; every other byte as it was.
pub fn npm_lock(text: &str, old: &str, new: &str) -> String {
    let mut text = text.to_owned();
    for path in [&["version"][..], &["packages", "", "version"]] {
        if let Some((start, end)) = json_string_span(&text, path)
            && &text[start..end] == old
        {
            text.replace_range(start..end, new);
        }
    }
    text
}

/// `uv.lock` with the project's own entry (the package at `source = { editable = "." }` or
/// `{ virtual = "." }` named as the project) moved from `old` to `new`, as `uv version` leaves it;
/// a stale entry makes `uv sync --locked` and `uv lock --check` fail. Nothing else changes.
pub fn uv_lock(text: &str, pyproject: &str, old: &str, new: &str) -> anyhow::Result<String> {
    let project: toml::Table = toml::from_str(pyproject).context("pyproject.toml is not valid TOML")?;
    let name = project
        .get("project")
        .and_then(|p| p.get("name"))
        .or_else(|| project.get("tool")?.get("poetry")?.get("name"))
        .and_then(|n| n.as_str());
    let Some(name) = name else { return Ok(text.to_owned()) };
    // PEP 503 normalisation, as uv writes names.
    let normalise = |name: &str| {
        name.to_ascii_lowercase().split(['-', '_', '.']).filter(|part| !part.is_empty()).collect::<Vec<_>>().join("-")
    };
    let mut doc: toml_edit::DocumentMut = text.parse().context("uv.lock is not valid TOML")?;
    for package in
        doc.get_mut("package").and_then(|p| p.as_array_of_tables_mut()).into_iter().flat_map(|p| p.iter_mut())
    {
        let source = package.get("source").and_then(|s| s.as_inline_table());
        let root = source.is_some_and(|s| {
            ["editable", "virtual"].iter().any(|kind| s.get(kind).and_then(|v| v.as_str()) == Some("."))
        });
        let named = package.get("name").and_then(|n| n.as_str()).is_some_and(|n| normalise(n) == normalise(name));
        if root
            && named
            && let Some(value) = package.get_mut("version").and_then(|v| v.as_value_mut())
            && value.as_str() == Some(old)
        {
            replace_string(value, old, new)?;
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

/// CHANGELOG.md's link definitions (Keep a Changelog) for a release tagged `tag`:
/// `[Unreleased]: …/compare/PREVIOUS...HEAD` becomes `…/compare/TAG...HEAD` (HEAD or a branch), and
/// `[VERSION]: …/compare/PREVIOUS...TAG` is added under it. `Ok(None)` when the file defines no
/// Unreleased link; `Err` with the line when it is not of that form (left as it is).
pub fn changelog_links(text: &str, version: &str, tag: &str) -> Result<Option<String>, String> {
    let mut out = String::with_capacity(text.len() + 128);
    let mut found = None;
    for line in text.split_inclusive('\n') {
        let content = line.trim_end_matches(['\n', '\r']);
        let ending = &line[content.len()..];
        let definition = content
            .split_once("]:")
            .filter(|(label, _)| found.is_none() && label.trim_start().eq_ignore_ascii_case("[unreleased"));
        let Some((label, url)) = definition else {
            out.push_str(line);
            continue;
        };
        let url = url.trim();
        // `…/compare/PREVIOUS...HEAD` (or `..`, or a branch in place of HEAD).
        let moved = url.rsplit_once('/').and_then(|(prefix, range)| {
            let (previous, separator, head) = ["...", ".."]
                .iter()
                .find_map(|separator| range.split_once(separator).map(|(a, b)| (a, *separator, b)))?;
            (!previous.is_empty() && !head.is_empty()).then_some((prefix, previous, separator, head))
        });
        let Some((prefix, previous, separator, head)) = moved else {
            return Err(content.to_owned());
        };
        let ending = if ending.is_empty() { "\n" } else { ending };
        out.push_str(&format!("{label}]: {prefix}/{tag}{separator}{head}{ending}"));
        out.push_str(&format!("[{version}]: {prefix}/{previous}{separator}{tag}{ending}"));
        found = Some(());
    }
    Ok(found.map(|()| out))
}

/// Where the version of a `pyproject.toml` that declares it dynamic (`dynamic = ["version"]`)
/// lives, and what to do about it; `None` when it is not dynamic.
pub fn dynamic_pyproject(text: &str) -> Option<(String, String)> {
    let doc: toml::Table = toml::from_str(text).ok()?;
    let project = doc.get("project")?;
    let dynamic = project.get("dynamic")?.as_array()?;
    if project.get("version").is_some() || !dynamic.iter().any(|d| d.as_str() == Some("version")) {
        return None;
    }
    let tool = doc.get("tool");
    let get = |path: &[&str]| path.iter().try_fold(tool?, |item, key| item.get(key));
    let requires: Vec<&str> = doc
        .get("build-system")
        .and_then(|b| b.get("requires"))
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str())
        .collect();
    let backend = doc.get("build-system").and_then(|b| b.get("build-backend")).and_then(|b| b.as_str());
    let needs = |name: &str| requires.iter().any(|r| r.replace('_', "-").to_ascii_lowercase().starts_with(name));
    let from_tags = |who: &str| {
        (
            format!("{who} takes it from the git tags"),
            "the tag is the release here: tag with `git tag -a vX.Y.Z -m vX.Y.Z` (depot release bumps version \
             files, and this project has none)"
                .to_owned(),
        )
    };
    let from_attribute = |who: &str, place: &str| {
        (
            format!("{who} reads it from {place}"),
            format!(
                "depot release rewrites files that hold only the version: change {place} there by hand and tag, or \
                 keep the version in a file of its own (such as VERSION) that the build reads, listed in depot.toml \
                 under [release] files = [\"VERSION\"]"
            ),
        )
    };
    let setuptools = get(&["setuptools", "dynamic", "version"]);
    let (place, hint) = if let Some(attr) = setuptools.and_then(|v| v.get("attr")).and_then(|a| a.as_str()) {
        from_attribute("setuptools", &format!("the attribute `{attr}`"))
    } else if let Some(file) = setuptools.and_then(|v| v.get("file")) {
        let file = file.as_str().or_else(|| file.as_array()?.first()?.as_str()).unwrap_or("a file");
        (
            format!("setuptools reads it from the file {file}"),
            format!("list {file} in depot.toml under [release] files = [\"{file}\"]"),
        )
    } else if get(&["hatch", "version", "source"]).and_then(|s| s.as_str()) == Some("vcs") {
        from_tags("hatch-vcs")
    } else if let Some(path) = get(&["hatch", "version", "path"]).and_then(|p| p.as_str()) {
        from_attribute("hatch", &format!("`__version__` in {path}"))
    } else if get(&["pdm", "version", "source"]).and_then(|s| s.as_str()) == Some("scm") {
        from_tags("pdm")
    } else if let Some(path) = get(&["pdm", "version", "path"]).and_then(|p| p.as_str()) {
        from_attribute("pdm", &format!("`__version__` in {path}"))
    } else if get(&["setuptools_scm"]).or(get(&["setuptools-scm"])).is_some() || needs("setuptools-scm") {
        from_tags("setuptools-scm")
    } else if get(&["poetry-dynamic-versioning"]).is_some() || needs("poetry-dynamic-versioning") {
        from_tags("poetry-dynamic-versioning")
    } else if needs("versioningit") || needs("hatch-vcs") || needs("uv-dynamic-versioning") {
        from_tags("the build's versioning plugin")
    } else if backend.is_some_and(|b| b.starts_with("flit")) {
        from_attribute("flit", "the module's `__version__`")
    } else {
        from_attribute(&format!("its build backend ({})", backend.unwrap_or("setuptools")), "its own configuration")
    };
    Some((format!("pyproject.toml declares the version dynamic (`dynamic = [\"version\"]`): {place}"), hint))
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
        let poetry =
            "[tool.poetry]\nname = \"app\"\nversion = \"1.4.2\"\n\n[tool.poetry.dependencies]\npython = \"^3.9\"\n";
        assert_eq!(file(Kind::Pyproject, poetry).with_version("1.5.0").unwrap(), poetry.replace("1.4.2", "1.5.0"));
        let both = "[project]\nname = \"app\"\nversion = \"1.4.2\"\n\n[tool.poetry]\nversion = \"1.4.2\"\n";
        assert_eq!(file(Kind::Pyproject, both).with_version("1.5.0").unwrap(), both.replace("1.4.2", "1.5.0"));
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
    fn the_changelog() {
        let log = "# Changelog\n\n## [Unreleased]\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n";
        assert_eq!(
            changelog(log, "1.5.0", "2026-11-23").unwrap(),
            "# Changelog\n\n## [Unreleased]\n\n## [1.5.0] - 2026-11-23\n### Added\n- channels\n\n## [1.4.2] - 2026-11-01\n"
        );
        assert!(changelog("# Changelog\n", "1.5.0", "2026-11-23").is_none());
    }

    #[test]
    fn json_strings_are_found_by_their_path_and_nowhere_else() {
        let text = "{\"a\": [1, {\"version\": \"x\"}], \"esc\\\"version\": \"y\", \"packages\": {\"node_modules/b\": {\"version\": \"2.0.0\"}, \"\": {\"version\": \"1.0.0\"}}, \"version\": \"1.0.0\"}";
        let at = |path: &[&str]| json_string_span(text, path).map(|(start, end)| (start, &text[start..end]));
        assert_eq!(at(&["version"]).map(|(_, v)| v), Some("1.0.0"));
        assert_eq!(at(&["packages", "", "version"]).map(|(_, v)| v), Some("1.0.0"));
        assert_eq!(at(&["packages", "node_modules/b", "version"]).map(|(_, v)| v), Some("2.0.0"));
        assert_eq!(json_string_span("{\"version\": 1}", &["version"]), None, "not a string");
        assert_eq!(json_string_span("{\"version\": \"1", &["version"]), None, "not JSON");
        // A lockfile v1 has no `packages`: only the top-level version moves; a dependency's never.
        let v1 = "{\n  \"name\": \"app\",\n  \"version\": \"1.4.2\",\n  \"lockfileVersion\": 1,\n  \"dependencies\": {\n    \"b\": {\n      \"version\": \"1.4.2\"\n    }\n  }\n}\n";
        assert_eq!(npm_lock(v1, "1.4.2", "1.5.0"), v1.replacen("1.4.2", "1.5.0", 1));
    }

    #[test]
    fn changelog_links_in_their_usual_forms() {
        let gitlab = "## [1.4.2]\n\n[unreleased]: https://gitlab.com/acme/app/-/compare/1.4.2..HEAD\r\n[1.4.2]: https://gitlab.com/acme/app/-/tags/1.4.2\r\n";
        assert_eq!(
            changelog_links(gitlab, "1.5.0", "v1.5.0").unwrap().unwrap(),
            "## [1.4.2]\n\n[unreleased]: https://gitlab.com/acme/app/-/compare/v1.5.0..HEAD\r\n[1.5.0]: https://gitlab.com/acme/app/-/compare/1.4.2..v1.5.0\r\n[1.4.2]: https://gitlab.com/acme/app/-/tags/1.4.2\r\n",
            "case, separator and line endings kept"
        );
        let branch = "[Unreleased]: https://github.com/acme/app/compare/v1.4.2...main\n";
        assert_eq!(
            changelog_links(branch, "1.5.0", "v1.5.0").unwrap().unwrap(),
            "[Unreleased]: https://github.com/acme/app/compare/v1.5.0...main\n[1.5.0]: https://github.com/acme/app/compare/v1.4.2...v1.5.0\n"
        );
        assert_eq!(changelog_links("# Changelog\n", "1.5.0", "v1.5.0"), Ok(None));
        let first = "[Unreleased]: https://github.com/acme/app/commits/main\n";
        assert_eq!(changelog_links(first, "1.5.0", "v1.5.0"), Err(first.trim_end().to_owned()));
    }
}
