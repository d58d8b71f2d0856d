//! The test context: a temporary directory, a scrubbed environment, and helpers to run `depot`,
//! make trees and build archives (including hostile ones) byte by byte.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub struct TestContext {
    pub temp: tempfile::TempDir,
}

/// The outcome of one `depot` run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from(output: Output) -> Self {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(self.code, 0, "expected success\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Exit 1: a failed operation.
    #[track_caller]
    pub fn failure(self) -> Self {
        assert_eq!(self.code, 1, "expected exit 1\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Exit 2: a usage error.
    #[track_caller]
    pub fn usage_error(self) -> Self {
        assert_eq!(self.code, 2, "expected exit 2\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    #[track_caller]
    pub fn stderr_contains(self, needle: &str) -> Self {
        assert!(self.stderr.contains(needle), "stderr does not contain {needle:?}:\n{}", self.stderr);
        self
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", self.stdout))
    }
}

impl TestContext {
    pub fn new() -> Self {
        TestContext { temp: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.temp.path().join(rel)
    }

    /// The release root most tests use.
    pub fn root(&self) -> PathBuf {
        self.path("root")
    }

    pub fn root_str(&self) -> String {
        self.root().display().to_string()
    }

    /// `depot` with a clean environment (no `DEPOT_*` from the caller), run in the temp dir.
    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_depot"));
        for (key, _) in std::env::vars() {
            if key.starts_with("DEPOT_") {
                command.env_remove(key);
            }
        }
        command.current_dir(self.temp.path()).stdin(Stdio::null());
        command
    }

    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.command().args(args).output().expect("run depot"))
    }

    /// Writes a tree of text files (paths relative to `dir`).
    pub fn tree(&self, dir: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.path(dir);
        fs_err::create_dir_all(&root).unwrap();
        for (path, content) in files {
            let path = root.join(path);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, content).unwrap();
        }
        root
    }

    /// Packs `dir` with `depot pack` and returns the archive path.
    pub fn pack(&self, dir: &Path, version: &str) -> PathBuf {
        let output = self.path(&format!("{version}.tar.zst"));
        self.run(&["pack", &dir.display().to_string(), "--version", version, "-o", &output.display().to_string()])
            .success();
        output
    }

    /// Packs a tree of `files` as `version` and returns the archive.
    pub fn release(&self, version: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.tree(&format!("src-{version}"), files);
        self.pack(&dir, version)
    }

    /// `depot deploy --root R --version V --artifact-path A` plus `extra` flags.
    pub fn deploy(&self, version: &str, archive: &Path, extra: &[&str]) -> Run {
        let mut args = vec!["deploy", "--root"];
        let root = self.root_str();
        let archive = archive.display().to_string();
        args.push(&root);
        args.extend(["--version", version, "--artifact-path", &archive]);
        args.extend(extra);
        self.run(&args)
    }

    /// The version `R/releases/current` points to.
    pub fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.root().join("releases/current")).ok()?;
        Some(target.to_string_lossy().into_owned())
    }

    /// The names in `R/releases/`, sorted.
    pub fn release_dirs(&self) -> Vec<String> {
        self.release_dirs_of("root")
    }

    /// The names in `DIR/releases/` (DIR relative to the temp dir), sorted.
    pub fn release_dirs_of(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = match std::fs::read_dir(self.path(dir).join("releases")) {
            Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        names
    }

    /// Every regular file below `dir` with its content, for comparing whole trees.
    pub fn snapshot(&self, dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut files = BTreeMap::new();
        snapshot_into(dir, dir, &mut files);
        files
    }
}

fn snapshot_into(base: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(base).unwrap().to_string_lossy().into_owned();
        let file_type = entry.file_type().unwrap();
        if file_type.is_symlink() {
            files.insert(rel, format!("-> {}", std::fs::read_link(&path).unwrap().display()).into_bytes());
        } else if file_type.is_dir() {
            files.insert(format!("{rel}/"), Vec::new());
            snapshot_into(base, &path, files);
        } else {
            files.insert(rel, std::fs::read(&path).unwrap());
        }
    }
}

/// One entry of a hand-made tar archive. Paths and link names are written into the header as
/// they are, with none of the checks the `tar` crate's builder makes.
pub struct RawEntry {
    pub path: Vec<u8>,
    pub kind: tar::EntryType,
    pub mode: u32,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
}

impl RawEntry {
    pub fn file(path: &str, data: &str) -> Self {
        RawEntry { path: path.into(), kind: tar::EntryType::Regular, mode: 0o644, data: data.into(), link: Vec::new() }
    }
    pub fn dir(path: &str) -> Self {
        RawEntry { path: path.into(), kind: tar::EntryType::Directory, mode: 0o755, data: Vec::new(), link: Vec::new() }
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        RawEntry {
            path: path.into(),
            kind: tar::EntryType::Symlink,
            mode: 0o777,
            data: Vec::new(),
            link: target.into(),
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        RawEntry { path: path.into(), kind: tar::EntryType::Link, mode: 0o644, data: Vec::new(), link: target.into() }
    }
    pub fn with_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
    pub fn with_kind(mut self, kind: tar::EntryType) -> Self {
        self.kind = kind;
        self
    }
}

/// An uncompressed tar of `entries`, exactly as given.
pub fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        {
            let raw = header.as_old_mut();
            assert!(entry.path.len() <= 100 && entry.link.len() <= 100, "raw entries keep to 100-byte names");
            raw.name[..entry.path.len()].copy_from_slice(&entry.path);
            raw.linkname[..entry.link.len()].copy_from_slice(&entry.link);
        }
        header.set_entry_type(entry.kind);
        header.set_mode(entry.mode);
        header.set_size(entry.data.len() as u64);
        header.set_mtime(0);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&entry.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The sha256 of `data`, in hex.
pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn zstd_bytes(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

pub fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// A `.tar.zst` written as it is compressed, so that a bomb of GiBs costs the test no memory:
/// `header` (a raw tar header of `kind` named `name` declaring `size` bytes), then `size` bytes
/// of `fill`, then `rest` (raw tar, with its end-of-archive marker).
pub fn streamed_bomb(path: &Path, kind: tar::EntryType, name: &str, size: u64, rest: &[u8]) {
    use std::io::Write;
    let mut header = tar::Header::new_gnu();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_entry_type(kind);
    header.set_mode(0o644);
    header.set_size(size);
    header.set_mtime(0);
    header.set_cksum();
    let mut encoder = zstd::Encoder::new(fs_err::File::create(path).unwrap(), 1).unwrap();
    encoder.write_all(header.as_bytes()).unwrap();
    let chunk = vec![b'a'; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        encoder.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    encoder.write_all(&vec![0; (size.next_multiple_of(512) - size) as usize]).unwrap();
    encoder.write_all(rest).unwrap();
    encoder.finish().unwrap();
}
