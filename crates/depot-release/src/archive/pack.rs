//! `depot pack`: a reproducible archive of a directory.
//!
//! The same tree gives the same bytes whatever the files' mtimes, owners or creation order:
//! entries are sorted by path, every header has mtime 0, uid/gid 0 and no user or group name,
//! modes are reduced to 0755 (directories and executables) or 0644, and the compressor's settings
//! are fixed (zstd with a fixed worker count, whose output does not depend on scheduling).
//!
//! A `.tar.zst` is seekable: its frames end between entries, where [`super::frames`] says, so a
//! deploy can skip the parts of a new version it unpacked before.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::Compression;
use super::frames::{FramedWriter, GROUP_LIMIT, STREAM_LIMIT, closes_group};
use crate::config::{Include, PackConfig};
use crate::digest::OffThreadHashingWriter;
use crate::manifest::EntryKind;
use crate::progress::Progress;
use crate::stage::resolves_inside;
use crate::version::VersionLabel;
use crate::{Error, Result};

/// zstd level and worker count. Fixed so that the output is the same on every machine.
const ZSTD_LEVEL: i32 = 3;
const ZSTD_WORKERS: u32 = 4;

#[derive(Debug, Clone)]
pub struct PackOptions {
    pub dir: PathBuf,
    pub version: VersionLabel,
    /// Overrides `[package] name` in DIR/depot.toml and the directory's name.
    pub name: Option<String>,
    /// Defaults to `./NAME-VERSION.tar.zst` (or `.tar.gz`).
    pub output: Option<PathBuf>,
    pub compression: Compression,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PackResult {
    pub path: PathBuf,
    pub name: String,
    pub version: VersionLabel,
    pub sha256: String,
    /// Archive size in bytes.
    pub size: u64,
    /// Regular files in the archive.
    pub files: u64,
    /// Uncompressed bytes of those files.
    pub bytes: u64,
    pub format: Compression,
}

enum Item {
    Dir,
    File { size: u64, executable: bool },
    Symlink(PathBuf),
    Version(Vec<u8>),
}

pub fn pack(options: &PackOptions, progress: &dyn Progress) -> Result<PackResult> {
    let dir = fs_err::canonicalize(&options.dir)?;
    if !dir.is_dir() {
        return Err(Error::Pack { path: dir, reason: "not a directory".into() });
    }
    let config = PackConfig::load(&dir)?;
    let name = options
        .name
        .clone()
        .or(config.name.clone())
        .or_else(|| dir.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "release".into());
    let output = match &options.output {
        Some(path) => path.clone(),
        None => PathBuf::from(format!("{name}-{}.{}", options.version, options.compression.extension())),
    };
    let output_abs = std::path::absolute(&output)?;

    // A mapping is packed from a staging directory laid out as the archive will be.
    let _staging;
    let (dir, globs) = match &config.include {
        Include::Globs(globs) => (dir, globs.clone()),
        Include::Map(map) => {
            let staging = tempfile::Builder::new().prefix(".depot-pack-").tempdir()?;
            stage_mapping(&dir, map, staging.path())?;
            let staged = staging.path().to_owned();
            _staging = staging;
            (staged, Vec::new())
        }
    };
    let items = collect(&dir, &options.version, &globs, &config.exclude, &output_abs)?;
    let total: u64 = items.iter().map(|(_, item)| if let Item::File { size, .. } = item { *size } else { 0 }).sum();
    progress.start("packing", Some(total));

    let out_dir = output_abs.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
    let temp = tempfile::Builder::new().prefix(".depot-pack-").tempfile_in(&out_dir)?;
    // The archive is hashed and written on a thread of its own, beside the compression.
    let writer = OffThreadHashingWriter::new(temp.as_file().try_clone()?);
    let (writer, files, bytes) = match options.compression {
        Compression::Zstd => {
            let framed = FramedWriter::new(writer, ZSTD_LEVEL, ZSTD_WORKERS)?;
            let (framed, files, bytes) = write_tar(&dir, &items, framed, progress)?;
            (framed.finish()?, files, bytes)
        }
        Compression::Gzip => {
            let encoder = flate2::GzBuilder::new().mtime(0).write(writer, flate2::Compression::default());
            let (encoder, files, bytes) = write_tar(&dir, &items, encoder, progress)?;
            (encoder.finish()?, files, bytes)
        }
        Compression::None => write_tar(&dir, &items, writer, progress)?,
    };
    let (sha256, size) = writer.finish()?;
    // A temporary file is created 0600; an archive is meant to be shared. Like tar, pack does not
    // fsync its output (a build step is rerun after a crash); the rename means that no partial
    // archive ever stands under the final name.
    temp.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    temp.into_temp_path().persist(&output_abs).map_err(|e| e.error)?;
    progress.finish();
    Ok(PackResult {
        path: output,
        name,
        version: options.version.clone(),
        sha256,
        size,
        files,
        bytes,
        format: options.compression,
    })
}

/// Where a writer may cut its output between entries: only the seekable zstd writer does.
trait EntryBoundaries: Write {
    fn before_entry(&mut self, _size: u64) -> io::Result<()> {
        Ok(())
    }
    fn after_entry(&mut self, _path: &str, _size: u64) -> io::Result<()> {
        Ok(())
    }
}

impl EntryBoundaries for OffThreadHashingWriter {}
impl<W: Write> EntryBoundaries for flate2::write::GzEncoder<W> {}

/// A large entry has a frame of its own; small ones share one (see [`super::frames`]).
impl<W: Write> EntryBoundaries for FramedWriter<W> {
    fn before_entry(&mut self, size: u64) -> io::Result<()> {
        match size {
            _ if size > STREAM_LIMIT => self.begin_large(),
            _ if size > GROUP_LIMIT => self.end_frame(),
            _ => Ok(()),
        }
    }
    fn after_entry(&mut self, path: &str, size: u64) -> io::Result<()> {
        if size > GROUP_LIMIT || self.frame_len() >= GROUP_LIMIT || closes_group(path) {
            self.end_frame()
        } else {
            Ok(())
        }
    }
}

fn write_tar<W: EntryBoundaries>(
    dir: &Path,
    items: &[(String, Item)],
    writer: W,
    progress: &dyn Progress,
) -> Result<(W, u64, u64)> {
    let mut builder = tar::Builder::new(writer);
    builder.mode(tar::HeaderMode::Deterministic);
    let (mut files, mut bytes) = (0u64, 0u64);
    for (index, (path, item)) in items.iter().enumerate() {
        let size = match item {
            Item::File { size, .. } => *size,
            Item::Version(content) => content.len() as u64,
            Item::Dir | Item::Symlink(_) => 0,
        };
        builder.get_mut().before_entry(size)?;
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match item {
            Item::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, format!("{path}/"), io::empty())?;
            }
            Item::File { size, executable } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(if *executable { 0o755 } else { 0o644 });
                header.set_size(*size);
                let file = fs_err::File::open(dir.join(path))?;
                let reader = ExactReader { inner: file.take(*size), remaining: *size, path: dir.join(path), progress };
                builder.append_data(&mut header, path, reader)?;
                files += 1;
                bytes += size;
            }
            Item::Version(content) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(0o644);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, content.as_slice())?;
                files += 1;
                bytes += content.len() as u64;
            }
            Item::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
        }
        // The end-of-archive marker stays in the last entry's frame: alone, a frame of zeros
        // would not stand on its own.
        if index + 1 < items.len() {
            builder.get_mut().after_entry(path, size)?;
        }
    }
    Ok((builder.into_inner()?, files, bytes))
}

/// Reads exactly `remaining` bytes: a file that shrank while being packed is an error, not a
/// corrupt archive.
struct ExactReader<'p, R> {
    inner: R,
    remaining: u64,
    path: PathBuf,
    progress: &'p dyn Progress,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} changed size while being packed", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Copies each mapped source (a file or a directory, inside `dir`) to its destination under
/// `staging`. Destinations are relative paths without `..`; sources must exist. No symlink is
/// followed on the way to a source or a destination (a link is copied as a link, and pack then
/// refuses one that leaves the tree), and no destination is written twice, so nothing is read
/// from or written to outside `dir` and `staging`.
fn stage_mapping(dir: &Path, map: &std::collections::BTreeMap<String, String>, staging: &Path) -> Result<()> {
    use std::path::Component;
    let config_error = |reason: String| Error::Config { path: dir.join("depot.toml"), reason };
    for (source, destination) in map {
        let dest = Path::new(destination);
        if destination.is_empty() || !dest.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(config_error(format!(
                "[package] include maps {source} to `{destination}`: use a relative path inside the archive"
            )));
        }
        let src = Path::new(source);
        if source.is_empty() || !src.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(config_error(format!("[package] include names `{source}`, outside {}", dir.display())));
        }
        no_symlink_above(dir, src)?;
        let from = dir.join(src);
        let metadata = fs_err::symlink_metadata(&from).map_err(|_| Error::Pack {
            path: from.clone(),
            reason: "not found: the build did not produce it, or [package] include names the wrong path".into(),
        })?;
        no_symlink_above(staging, dest)?;
        let to = staging.join(dest);
        if fs_err::symlink_metadata(&to).is_ok() {
            return Err(config_error(format!("[package] include writes `{destination}` twice")));
        }
        if metadata.is_dir() {
            for entry in walkdir::WalkDir::new(&from).follow_links(false) {
                let entry = entry.map_err(|e| Error::Pack { path: from.clone(), reason: e.to_string() })?;
                let rel = entry.path().strip_prefix(&from).expect("below its root");
                copy_entry(entry.path(), &to.join(rel))?;
            }
        } else {
            copy_entry(&from, &to)?;
        }
    }
    Ok(())
}

/// Refuses a symlink among the existing parents of `base/rel` (below `base`).
fn no_symlink_above(base: &Path, rel: &Path) -> Result<()> {
    let mut path = base.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for component in &parents[..parents.len().saturating_sub(1)] {
        path.push(component);
        match fs_err::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                return Err(Error::Pack {
                    path,
                    reason: "[package] include goes through a symlink; name the real path".into(),
                });
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    Ok(())
}

/// A directory (created), a file (copied into a new file with its mode) or a symlink (recreated).
fn copy_entry(from: &Path, to: &Path) -> Result<()> {
    let metadata = fs_err::symlink_metadata(from)?;
    if let Some(parent) = to.parent() {
        fs_err::create_dir_all(parent)?;
    }
    if metadata.is_dir() {
        fs_err::create_dir_all(to)?;
    } else if metadata.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs_err::read_link(from)?, to)?;
    } else if metadata.is_file() {
        // create_new: never through an existing name (a symlink included).
        let mut out = fs_err::OpenOptions::new().write(true).create_new(true).open(to)?;
        std::io::copy(&mut fs_err::File::open(from)?, &mut out)?;
        out.set_permissions(std::fs::Permissions::from_mode(metadata.permissions().mode() & 0o777))?;
    } else {
        return Err(Error::Pack {
            path: from.to_owned(),
            reason: "special files (devices, fifos, sockets) cannot be packed".into(),
        });
    }
    Ok(())
}

fn glob_set(patterns: &[String], dir: &Path) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let glob =
            Glob::new(pattern).map_err(|e| Error::Config { path: dir.join("depot.toml"), reason: e.to_string() })?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|e| Error::Config { path: dir.join("depot.toml"), reason: e.to_string() })
}

/// The entries of the archive, sorted by path, parents before children.
fn collect(
    dir: &Path,
    version: &VersionLabel,
    include: &[String],
    exclude: &[String],
    output: &Path,
) -> Result<Vec<(String, Item)>> {
    let include = glob_set(include, dir)?;
    let exclude = glob_set(exclude, dir)?;
    let mut items: BTreeMap<PathBuf, Item> = BTreeMap::new();
    let mut walker = walkdir::WalkDir::new(dir).follow_links(false).sort_by_file_name().min_depth(1).into_iter();
    while let Some(entry) = walker.next() {
        let entry =
            entry.map_err(|e| Error::Pack { path: e.path().unwrap_or(dir).to_owned(), reason: e.to_string() })?;
        let rel = entry.path().strip_prefix(dir).expect("walkdir stays below its root").to_owned();
        if rel.to_str().is_none() {
            return Err(Error::Pack { path: entry.path().to_owned(), reason: "the path is not UTF-8".into() });
        }
        if entry.path() == output {
            continue;
        }
        if exclude.as_ref().is_some_and(|set| set.is_match(&rel)) {
            if entry.file_type().is_dir() {
                walker.skip_current_dir();
            }
            continue;
        }
        if entry.file_name().to_str().is_some_and(|name| name.starts_with(".wh.")) {
            return Err(Error::Pack {
                path: entry.path().to_owned(),
                reason: "names starting with `.wh.` are OCI whiteouts, which deploy applies instead of writing \
                         them: rename it, or list it in `exclude` under [package] in depot.toml"
                    .into(),
            });
        }
        let file_type = entry.file_type();
        if file_type.is_dir() {
            if include.is_none() {
                items.insert(rel, Item::Dir);
            }
            continue;
        }
        if include.as_ref().is_some_and(|set| !set.is_match(&rel)) {
            continue;
        }
        let item = if file_type.is_file() {
            let metadata =
                entry.metadata().map_err(|e| Error::Pack { path: entry.path().to_owned(), reason: e.to_string() })?;
            Item::File { size: metadata.len(), executable: metadata.permissions().mode() & 0o111 != 0 }
        } else if file_type.is_symlink() {
            let target = fs_err::read_link(entry.path())?;
            if target.to_str().is_none() {
                return Err(Error::Pack {
                    path: entry.path().to_owned(),
                    reason: "the symlink target is not UTF-8".into(),
                });
            }
            check_link_inside(dir, &rel, &target)?;
            Item::Symlink(target)
        } else {
            return Err(Error::Pack {
                path: entry.path().to_owned(),
                reason: "special files (devices, fifos, sockets) cannot be packed".into(),
            });
        };
        // Parents of included files are included even when a filter left them out.
        for ancestor in rel.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                items.entry(ancestor.to_owned()).or_insert(Item::Dir);
            }
        }
        items.insert(rel, item);
    }

    check_link_chains(dir, &items)?;

    let version_file = PathBuf::from("VERSION");
    match items.get(&version_file) {
        Some(Item::File { .. }) => {
            let existing = fs_err::read_to_string(dir.join("VERSION"))?;
            if existing.trim() != version.as_str() {
                return Err(Error::Pack {
                    path: dir.join("VERSION"),
                    reason: format!(
                        "it holds `{}` but --version is `{version}`; update the file or pass the same version",
                        existing.trim()
                    ),
                });
            }
        }
        Some(_) => {
            return Err(Error::Pack { path: dir.join("VERSION"), reason: "VERSION must be a regular file".into() });
        }
        None => {
            items.insert(version_file, Item::Version(format!("{version}\n").into_bytes()));
        }
    }
    Ok(items.into_iter().map(|(path, item)| (path.to_string_lossy().into_owned(), item)).collect())
}

/// Each symlink's text stays inside DIR (checked as it was found), but one can lead through
/// another and out (`s -> .`, `l -> s/../x`): follow every symlink through the others that are
/// packed, as deploy will.
fn check_link_chains(dir: &Path, items: &BTreeMap<PathBuf, Item>) -> Result<()> {
    let links: BTreeMap<String, EntryKind> = items
        .iter()
        .filter_map(|(path, item)| match item {
            Item::Symlink(target) => Some((
                path.to_string_lossy().into_owned(),
                EntryKind::Symlink { target: target.to_string_lossy().into_owned() },
            )),
            _ => None,
        })
        .collect();
    for (path, kind) in &links {
        if let EntryKind::Symlink { target } = kind
            && !resolves_inside(&links, path, target)
        {
            return Err(Error::Pack {
                path: dir.join(path),
                reason: format!("symlink to `{target}` leads outside the directory through other symlinks"),
            });
        }
    }
    Ok(())
}

fn check_link_inside(dir: &Path, rel: &Path, target: &Path) -> Result<()> {
    let refuse = || Error::Pack {
        path: dir.join(rel),
        reason: format!("symlink to `{}` points outside the directory", target.display()),
    };
    if target.is_absolute() {
        return Err(refuse());
    }
    let mut depth = rel.components().count() - 1;
    for component in target.components() {
        match component {
            std::path::Component::ParentDir => depth = depth.checked_sub(1).ok_or_else(refuse)?,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    Ok(())
}

/// A reproducible tar archive (no compression) of files given in memory, `(path, content, mode)`,
/// with their parent directories: how the registry builds a generated layer, such as a stage's
/// environment file.
pub fn pack_files(files: &[(&str, &[u8], u32)]) -> Result<Vec<u8>> {
    let mut dirs = std::collections::BTreeSet::new();
    for (path, _, _) in files {
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(dir.to_string_lossy().into_owned());
            parent = dir.parent();
        }
    }
    let mut builder = tar::Builder::new(Vec::new());
    builder.mode(tar::HeaderMode::Deterministic);
    let header = |kind, mode, size| {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_size(size);
        header
    };
    for dir in dirs {
        builder.append_data(&mut header(tar::EntryType::Directory, 0o755, 0), format!("{dir}/"), io::empty())?;
    }
    let mut sorted: Vec<_> = files.to_vec();
    sorted.sort_by_key(|(path, _, _)| *path);
    for (path, content, mode) in sorted {
        builder.append_data(&mut header(tar::EntryType::Regular, mode, content.len() as u64), path, content)?;
    }
    Ok(builder.into_inner()?)
}
