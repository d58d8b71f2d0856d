//! Archives other tools make, deployed as `tar -xf` extracts them: sparse files in every format
//! GNU tar and bsdtar write, directory modes, bsdtar's v7 directories, and formats depot does not
//! read named in the error. Each archive is made here by the tool itself.

use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Runs `tool ARGS ARCHIVE -C DIR .`.
#[track_caller]
fn archive_with(tool: &[&str], archive: &Path, dir: &Path) {
    let output = Command::new(tool[0])
        .args(&tool[1..])
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .arg(".")
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", tool[0]));
    assert!(output.status.success(), "{tool:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A file of `size` bytes with data at `blocks` (offset, bytes) and holes elsewhere.
fn sparse_file(path: &Path, size: u64, blocks: &[(u64, &[u8])]) {
    let mut file = fs_err::File::create(path).unwrap();
    file.set_len(size).unwrap();
    for (offset, data) in blocks {
        file.seek(SeekFrom::Start(*offset)).unwrap();
        file.write_all(data).unwrap();
    }
}

/// A 20 MiB sparse file (three data blocks, the last at its very end) and a plain one, archived
/// by GNU tar in the old GNU format and in each PAX sparse version, and by bsdtar (PAX 1.0 is
/// its default), deploys byte for byte as the source, under its own name, and `depot verify`
/// agrees. Before, PAX sparse files deployed as `GNUSparseFile.0/…` holding the condensed data,
/// and old GNU sparse files were refused.
#[test]
fn sparse_files_from_gnu_tar_and_bsdtar_deploy_whole() {
    let ctx = TestContext::new();
    let tree = ctx.tree("sparse", &[("plain.txt", "plain\n")]);
    fs_err::create_dir(tree.join("data")).unwrap();
    let size = 20 * 1024 * 1024;
    let tail = b"the end\n";
    sparse_file(
        &tree.join("data/disk.img"),
        size,
        &[(0, b"head"), (8 * 1024 * 1024, &[7u8; 70_000]), (size - tail.len() as u64, tail)],
    );
    let source = fs_err::read(tree.join("data/disk.img")).unwrap();
    let tools: [(&str, &[&str]); 6] = [
        ("gnu.tar", &["tar", "--format=gnu", "-S", "-cf"]),
        ("pax00.tar", &["tar", "--format=posix", "-S", "--sparse-version=0.0", "-cf"]),
        ("pax01.tar", &["tar", "--format=posix", "-S", "--sparse-version=0.1", "-cf"]),
        ("pax10.tar.gz", &["tar", "--format=posix", "-S", "--sparse-version=1.0", "-czf"]),
        ("bsd.tar", &["bsdtar", "-cf"]),
        ("bsd.tar.zst", &["bsdtar", "--zstd", "-cf"]),
    ];
    for (index, (name, tool)) in tools.iter().enumerate() {
        let archive = ctx.path(name);
        archive_with(tool, &archive, &tree);
        let stored = fs_err::metadata(&archive).unwrap().len();
        assert!(
            stored < 1024 * 1024,
            "{name} holds the file sparse ({stored} bytes; is the temp directory's file system sparse-capable?)"
        );
        let version = format!("1.0.{index}");
        ctx.deploy(&version, &archive, &[]).success();
        let release = ctx.root().join("releases").join(&version);
        let deployed = fs_err::read(release.join("data/disk.img")).unwrap();
        assert!(deployed == source, "{name}: the deployed file differs from the source ({} bytes)", deployed.len());
        assert_eq!(fs_err::read_to_string(release.join("plain.txt")).unwrap(), "plain\n");
        let mut top: Vec<String> = fs_err::read_dir(release.join("data"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["disk.img"], "{name}: nothing but the file under its own name");
        ctx.run(&["verify", "--root", &ctx.root_str(), "--version", &version]).success();
    }
}

/// A sparse file's real size counts against --max-bytes: a 1 TiB hole in an archive of a few
/// KiB is refused before anything is written.
#[test]
fn a_sparse_file_past_max_bytes_is_refused() {
    let ctx = TestContext::new();
    let tree = ctx.tree("huge", &[("small.txt", "small\n")]);
    sparse_file(&tree.join("huge.img"), 1 << 40, &[(0, b"x")]);
    for (name, tool) in [("gnu.tar", &["tar", "--format=gnu", "-S", "-cf"][..]), ("bsd.tar", &["bsdtar", "-cf"])] {
        let archive = ctx.path(name);
        archive_with(tool, &archive, &tree);
        ctx.deploy("1.0.0", &archive, &["--max-bytes", "1GiB"]).failure().stderr_contains("uncompressed size limit");
        assert!(ctx.release_dirs().is_empty(), "{name}: nothing left behind: {:?}", ctx.release_dirs());
    }
}

/// Directory modes are kept for the owner's group and others' read and enter bits: 0700 stays
/// private and 0750 stays 0750. No one but the owner may write, and no special bits are kept, so
/// 1777 and 0777 become 0755. Before, every directory became 0755.
#[test]
fn directory_modes_are_kept_without_write_for_others() {
    let ctx = TestContext::new();
    let tree = ctx.tree("modes", &[("private/key", "k\n"), ("group/g", "g\n"), ("tmp/t", "t\n"), ("open/o", "o\n")]);
    for (dir, mode) in [("private", 0o700), ("group", 0o750), ("tmp", 0o1777), ("open", 0o777)] {
        fs_err::set_permissions(tree.join(dir), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let archive = ctx.path("modes.tar");
    archive_with(&["tar", "-cf"], &archive, &tree);
    ctx.deploy("1.0.0", &archive, &[]).success();
    let release = ctx.root().join("releases/1.0.0");
    let mode = |dir: &str| fs_err::metadata(release.join(dir)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        [mode("private"), mode("group"), mode("tmp"), mode("open")],
        [0o700, 0o750, 0o755, 0o755],
        "private, group, tmp, open"
    );
    // A second deploy of the same archive (staged again from the layer's listing) gives the
    // same modes.
    ctx.deploy("1.0.1", &archive, &[]).success();
    let again = ctx.root().join("releases/1.0.1");
    assert_eq!(fs_err::metadata(again.join("private")).unwrap().permissions().mode() & 0o7777, 0o700);
}

/// bsdtar `--format=v7` writes a directory as a regular file named `dir/`; GNU tar extracts it
/// as a directory, and so does depot. Before, the files below it were refused as "its parent is
/// a file".
#[test]
fn bsdtar_v7_directories_deploy() {
    let ctx = TestContext::new();
    let tree = ctx.tree("v7", &[("conf/app.toml", "a = 1\n"), ("bin/run", "#!/bin/sh\n")]);
    let archive = ctx.path("v7.tar");
    archive_with(&["bsdtar", "--format=v7", "-cf"], &archive, &tree);
    ctx.deploy("1.0.0", &archive, &[]).success();
    let release = ctx.root().join("releases/1.0.0");
    assert!(release.join("conf").is_dir());
    assert_eq!(fs_err::read_to_string(release.join("conf/app.toml")).unwrap(), "a = 1\n");
}

/// A directory entry that declares data: GNU tar, bsdtar and Python's tarfile read none and take
/// the next block as a header, so an archive whose directory "data" hides a header lists
/// `d/` and `a.txt` to them; depot refuses it rather than deploy something else.
#[test]
fn a_directory_entry_with_data_is_refused() {
    let ctx = TestContext::new();
    let hidden = raw_tar(&[RawEntry::file("hidden.txt", "hidden\n")]);
    let mut data = hidden[..512].to_vec();
    data.extend_from_slice(&hidden[512..1024]);
    let mut directory = RawEntry::dir("d/");
    directory.data = data;
    let archive = ctx.path("dirdata.tar");
    fs_err::write(&archive, raw_tar(&[directory, RawEntry::file("a.txt", "a\n")])).unwrap();
    let listed = Command::new("tar").arg("-tf").arg(&archive).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("hidden.txt"), "GNU tar reads the directory's data as the next header: {listed}");
    ctx.deploy("1.0.0", &archive, &[])
        .failure()
        .stderr_contains("`d/`")
        .stderr_contains("a directory entry with 1024 bytes of data");
    assert!(ctx.release_dirs().is_empty());
}

/// xz, bzip2 and zip archives are named in the error with the way to recompress them, not
/// quoted as binary.
#[test]
fn other_formats_are_named_with_a_fix() {
    let ctx = TestContext::new();
    let tree = ctx.tree("other", &[("a.txt", "a\n")]);
    for (name, tool, format) in
        [("a.tar.xz", &["tar", "-cJf"][..], "xz-compressed"), ("a.tar.bz2", &["tar", "-cjf"], "bzip2-compressed")]
    {
        let archive = ctx.path(name);
        archive_with(tool, &archive, &tree);
        let run = ctx.deploy("1.0.0", &archive, &[]).failure();
        assert!(
            run.stderr.contains(&format!("archive is {format}; depot reads .tar, .tar.gz and .tar.zst")),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("| zstd -o release.tar.zst"), "{}", run.stderr);
    }
    let zip = ctx.path("a.zip");
    let status = Command::new("python3")
        .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w').writestr('a.txt', 'a')"])
        .arg(&zip)
        .status()
        .unwrap();
    assert!(status.success());
    ctx.deploy("1.0.0", &zip, &[]).failure().stderr_contains("archive is a zip archive");
}

/// Every path below `dir` (relative, sorted) with what it is: a file's mode and content, a
/// directory's mode, a symlink's target.
fn tree_of(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        for entry in fs_err::read_dir(&current).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(dir).unwrap().display().to_string();
            let meta = fs_err::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.is_symlink() {
                format!("symlink {}", fs_err::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {:o}", (mode & 0o755) | 0o700)
            } else {
                let content = fs_err::read(&path).unwrap();
                format!("file {:o} {}", (mode & 0o555) | 0o400, digest(&content))
            };
            out.push((relative, what));
        }
    }
    out.sort();
    out
}

fn digest(data: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(data))
}

/// The release `version` holds what `tar -xpf` extracts from `archive`, modes as depot documents
/// them (files read-only, no special bits; directories writable by the owner only).
#[track_caller]
fn deploys_as_tar_extracts(ctx: &TestContext, archive: &Path, version: &str) {
    ctx.deploy(version, archive, &[]).success();
    let extracted = ctx.path(&format!("extracted-{version}"));
    fs_err::create_dir_all(&extracted).unwrap();
    let status = Command::new("tar").arg("-xpf").arg(archive).arg("-C").arg(&extracted).status().unwrap();
    assert!(status.success(), "tar -xpf {}", archive.display());
    let release = ctx.root().join("releases").join(version);
    let mut deployed = tree_of(&release);
    deployed.retain(|(path, _)| path != "VERSION" || extracted.join("VERSION").exists());
    assert_eq!(deployed, tree_of(&extracted), "{}", archive.display());
}

/// A `.crate` from `cargo package`, a tarball from `npm pack` and archives from Python's
/// `tarfile` in its GNU and PAX formats deploy as GNU tar extracts them.
#[test]
fn archives_from_cargo_npm_and_python_deploy_as_tar_extracts_them() {
    let ctx = TestContext::new();
    let krate = ctx.tree(
        "krate",
        &[
            ("Cargo.toml", "[package]\nname = \"sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\nlicense = \"MIT\"\ndescription = \"x\"\n\n[workspace]\n"),
            ("src/lib.rs", "pub fn f() {}\n"),
            ("README.md", "# sample\n"),
        ],
    );
    let output = Command::new("cargo")
        .args(["package", "--no-verify", "--allow-dirty", "--offline", "--quiet"])
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", krate.join("target"))
        .output()
        .unwrap();
    assert!(output.status.success(), "cargo package: {}", String::from_utf8_lossy(&output.stderr));
    deploys_as_tar_extracts(&ctx, &krate.join("target/package/sample-0.1.0.crate"), "1.0.0");

    let npm = ctx.tree(
        "npm",
        &[
            ("package.json", "{\"name\": \"sample\", \"version\": \"1.2.3\", \"bin\": {\"sample\": \"bin/cli.js\"}}\n"),
            ("bin/cli.js", "#!/usr/bin/env node\nconsole.log('hi')\n"),
            ("lib/index.js", "module.exports = 1\n"),
        ],
    );
    fs_err::set_permissions(npm.join("bin/cli.js"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = Command::new("npm")
        .args(["pack", "--silent", "--pack-destination"])
        .arg(ctx.path(""))
        .current_dir(&npm)
        .output()
        .unwrap();
    assert!(output.status.success(), "npm pack: {}", String::from_utf8_lossy(&output.stderr));
    deploys_as_tar_extracts(&ctx, &ctx.path("sample-1.2.3.tgz"), "1.0.1");

    let python =
        ctx.tree("python", &[("pkg/__init__.py", "x = 1\n"), ("pkg/data/table.csv", "a,b\n"), ("setup.cfg", "[x]\n")]);
    fs_err::set_permissions(python.join("pkg/data"), std::fs::Permissions::from_mode(0o750)).unwrap();
    for (index, format) in ["GNU_FORMAT", "PAX_FORMAT"].iter().enumerate() {
        let archive = ctx.path(&format!("python-{format}.tar.gz"));
        let script = format!(
            "import sys, tarfile\nwith tarfile.open(sys.argv[1], 'w:gz', format=tarfile.{format}) as t: t.add(sys.argv[2], arcname='sample-1.0')"
        );
        let status = Command::new("python3").args(["-c", &script]).arg(&archive).arg(&python).status().unwrap();
        assert!(status.success());
        deploys_as_tar_extracts(&ctx, &archive, &format!("1.0.{}", index + 2));
    }
}

/// Archives that GNU tar reads one way and a lenient reader another, written with Python's
/// `tarfile` and its PAX records: each is refused, never deployed as something else. A
/// directory whose PAX `size` record declares data (GNU tar reads the next entries from it), a
/// sparse map that ends before the file's size (GNU tar's file ends with the map), and a PAX
/// global header setting `path` for every entry.
#[test]
fn archives_tar_readers_disagree_on_are_refused() {
    let ctx = TestContext::new();
    let script = r#"
import io, sys, tarfile
def add(t, name, data=b"", kind=tarfile.REGTYPE, pax=None):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data)
    if pax:
        info.pax_headers = pax
    t.addfile(info, io.BytesIO(data) if data else None)
out = sys.argv[1]
with tarfile.open(out + "/dir-size.tar", "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "d/", kind=tarfile.DIRTYPE, pax={"size": "1024"})
    add(t, "hidden", b"h\n")
    add(t, "visible", b"v\n")
with tarfile.open(out + "/short-map.tar", "w", format=tarfile.PAX_FORMAT) as t:
    add(t, "f", b"abc", pax={"GNU.sparse.size": "10", "GNU.sparse.numblocks": "1", "GNU.sparse.map": "0,3"})
with tarfile.open(out + "/global-path.tar", "w", format=tarfile.PAX_FORMAT, pax_headers={"path": "evil"}) as t:
    add(t, "a", b"a\n")
"#;
    let status = Command::new("python3").args(["-c", script]).arg(ctx.path("")).status().unwrap();
    assert!(status.success());
    for (name, needle) in [
        ("dir-size.tar", "a directory entry with 1024 bytes of data"),
        ("short-map.tar", "the sparse map does not end at the file's size"),
        ("global-path.tar", "a PAX global header sets `path` for every later entry"),
    ] {
        ctx.deploy("1.0.0", &ctx.path(name), &[]).failure().stderr_contains(needle);
        assert!(ctx.release_dirs().is_empty(), "{name}: nothing left behind");
    }
}
