//! `depot pack`: reproducible archives, the VERSION file, what may not be packed, `--json`,
//! `DIR/depot.toml`, compatibility with GNU tar, output names and version validation.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use crate::common::*;

/// One entry of an archive, as read back in the test.
#[derive(Debug, Clone, PartialEq)]
struct Listed {
    path: String,
    kind: tar::EntryType,
    mode: u32,
    data: Vec<u8>,
    link: Option<String>,
}

/// The tar stream of an archive, decompressed by its magic bytes.
fn decompress(archive: &Path) -> Vec<u8> {
    let raw = fs_err::read(archive).unwrap();
    if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(raw.as_slice()).unwrap()
    } else if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).unwrap();
        out
    } else {
        raw
    }
}

fn list(archive: &Path) -> Vec<Listed> {
    let tar = decompress(archive);
    let mut archive = tar::Archive::new(tar.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let mut entry = entry.unwrap();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            Listed {
                path: String::from_utf8(entry.path_bytes().into_owned()).unwrap(),
                kind: entry.header().entry_type(),
                mode: entry.header().mode().unwrap(),
                data,
                link: entry.link_name_bytes().map(|l| String::from_utf8(l.into_owned()).unwrap()),
            }
        })
        .collect()
}

fn paths(archive: &Path) -> Vec<String> {
    list(archive).into_iter().map(|e| e.path).collect()
}

fn find(archive: &Path, path: &str) -> Option<Listed> {
    list(archive).into_iter().find(|e| e.path == path)
}

/// `depot pack DIR --version V` plus `extra`.
fn pack(ctx: &TestContext, dir: &Path, version: &str, extra: &[&str]) -> Run {
    let dir = dir.display().to_string();
    let mut args = vec!["pack", dir.as_str(), "--version", version];
    args.extend(extra);
    ctx.run(&args)
}

/// Packs `dir` into `output` in `format`, returning the bytes.
fn pack_to(ctx: &TestContext, dir: &Path, version: &str, format: &str, output: &str) -> Vec<u8> {
    let output = ctx.path(output);
    pack(ctx, dir, version, &["--format", format, "-o", &output.display().to_string()]).success();
    fs_err::read(output).unwrap()
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs_err::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no `error:` line in stderr:\n{}", run.stderr))
}

/// Runs a failing pack and checks that it wrote nothing (no archive, no temporary file) and
/// that its `error:` line and causes hold every one of `needles`.
#[track_caller]
fn pack_refused(ctx: &TestContext, dir: &Path, version: &str, needles: &[&str]) -> Run {
    let before = names(ctx.temp.path());
    let output = ctx.path("refused.tar.zst");
    let run = pack(ctx, dir, version, &["-o", &output.display().to_string()]).failure();
    error_line(&run);
    for needle in needles {
        assert!(run.stderr.contains(needle), "stderr does not contain {needle:?}:\n{}", run.stderr);
    }
    assert!(!output.exists(), "a refused pack wrote its archive");
    assert_eq!(names(ctx.temp.path()), before, "a refused pack left a file behind");
    run
}

// --- reproducibility ------------------------------------------------------------------------

/// The files of the test tree: nested directories, names whose order depends on how paths are
/// compared, an executable, an empty file, a symlink and an empty directory.
const FILES: &[(&str, &str)] = &[
    ("README.md", "# app\n"),
    ("a-b", "dash\n"),
    ("a.b", "dot\n"),
    ("a/b", "slash\n"),
    ("a/z/deep.txt", "deep\n"),
    ("B", "upper\n"),
    ("bin/app", "#!/bin/sh\necho app\n"),
    ("empty", ""),
    ("lib/libx.so.1", "elf\n"),
    ("share/data.json", "{\"k\": 1}\n"),
];

fn set_mtime(path: &Path, time: SystemTime) {
    fs_err::File::open(path).unwrap().file().set_modified(time).unwrap();
}

/// Builds the tree in `dir`: in the given order, with file modes from `file_mode` (executables
/// get `exec_mode`) and every mtime set to `mtime`.
fn build_tree(
    ctx: &TestContext,
    dir: &str,
    reverse: bool,
    file_mode: u32,
    exec_mode: u32,
    mtime: SystemTime,
) -> PathBuf {
    let root = ctx.path(dir);
    fs_err::create_dir_all(&root).unwrap();
    let mut files: Vec<&(&str, &str)> = FILES.iter().collect();
    if reverse {
        files.reverse();
    }
    let mut link_made = false;
    for (i, (path, content)) in files.iter().enumerate() {
        // The symlink and the empty directory are made at different points in the two orders.
        if i == 3 && !link_made {
            std::os::unix::fs::symlink("libx.so.1", root.join("lib-link")).unwrap();
            fs_err::create_dir_all(root.join("var/empty")).unwrap();
            link_made = true;
        }
        let full = root.join(path);
        fs_err::create_dir_all(full.parent().unwrap()).unwrap();
        fs_err::write(&full, content).unwrap();
        let mode = if path.starts_with("bin/") { exec_mode } else { file_mode };
        fs_err::set_permissions(&full, std::fs::Permissions::from_mode(mode)).unwrap();
        // Other owners too, where the test may change them (as root).
        let _ = std::os::unix::fs::chown(&full, Some(1000 + i as u32), Some(2000 + i as u32));
    }
    fs_err::rename(root.join("lib-link"), root.join("lib/libx.so")).unwrap();
    for entry in walk(&root) {
        if !fs_err::symlink_metadata(&entry).unwrap().is_symlink() {
            set_mtime(&entry, mtime);
        }
    }
    root
}

/// Every path below `dir`, deepest first (so that setting a file's mtime does not touch its
/// directory's afterwards).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if fs_err::symlink_metadata(&path).unwrap().is_dir() {
            out.extend(walk(&path));
        }
        out.push(path);
    }
    out.push(dir.to_owned());
    out
}

#[test]
fn packing_the_same_tree_twice_is_byte_identical() {
    let ctx = TestContext::new();
    let dir = build_tree(&ctx, "tree", false, 0o644, 0o755, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    for format in ["zst", "gz"] {
        let first = pack_to(&ctx, &dir, "1.0.0", format, &format!("first.{format}"));
        let second = pack_to(&ctx, &dir, "1.0.0", format, &format!("second.{format}"));
        assert!(first == second, "{format}: two packs of the same tree differ");
        // Touching every file changes nothing either.
        for path in walk(&dir) {
            if !fs_err::symlink_metadata(&path).unwrap().is_symlink() {
                set_mtime(&path, SystemTime::now());
            }
        }
        let third = pack_to(&ctx, &dir, "1.0.0", format, &format!("third.{format}"));
        assert!(first == third, "{format}: new mtimes changed the archive");
    }
}

#[test]
fn a_copy_made_in_another_order_with_other_mtimes_packs_identically() {
    let ctx = TestContext::new();
    let one = build_tree(&ctx, "one", false, 0o644, 0o755, SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let two = build_tree(&ctx, "two", true, 0o600, 0o700, SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    assert_ne!(
        fs_err::metadata(one.join("a/b")).unwrap().modified().unwrap(),
        fs_err::metadata(two.join("a/b")).unwrap().modified().unwrap()
    );
    for format in ["zst", "gz"] {
        let a = pack_to(&ctx, &one, "1.0.0", format, &format!("one.{format}"));
        let b = pack_to(&ctx, &two, "1.0.0", format, &format!("two.{format}"));
        assert!(a == b, "{format}: the copy packs to different bytes");
        // A different version gives a different archive (VERSION differs): the comparison can fail.
        let c = pack_to(&ctx, &two, "1.0.1", format, &format!("three.{format}"));
        assert!(a != c, "{format}: the version is not in the archive");
    }
    // What was normalised: mtimes, owners, modes; entries sorted, parents first.
    let listed = list(&ctx.path("one.zst"));
    let entry_paths: Vec<&str> = listed.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        entry_paths,
        [
            "B",
            "README.md",
            "VERSION",
            "a/",
            "a/b",
            "a/z/",
            "a/z/deep.txt",
            "a-b",
            "a.b",
            "bin/",
            "bin/app",
            "empty",
            "lib/",
            "lib/libx.so",
            "lib/libx.so.1",
            "share/",
            "share/data.json",
            "var/",
            "var/empty/",
        ]
    );
    let tar = decompress(&ctx.path("one.zst"));
    let mut archive = tar::Archive::new(tar.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
        assert_eq!(header.mtime().unwrap(), 0, "{path}");
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0), "{path}");
        let expected_mode = match header.entry_type() {
            tar::EntryType::Directory => 0o755,
            tar::EntryType::Symlink => 0o777,
            _ if path == "bin/app" => 0o755,
            _ => 0o644,
        };
        assert_eq!(header.mode().unwrap(), expected_mode, "{path}");
    }
    assert_eq!(find(&ctx.path("one.zst"), "lib/libx.so").unwrap().link.as_deref(), Some("libx.so.1"));
}

#[test]
fn packing_into_the_directory_itself_leaves_the_archive_out() {
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("a.txt", "a\n")]);
    let run_in_dir = || {
        let output = ctx.command().current_dir(&dir).args(["pack", ".", "--version", "1.0.0"]).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        fs_err::read(dir.join("app-1.0.0.tar.zst")).unwrap()
    };
    let first = run_in_dir();
    let second = run_in_dir();
    assert!(first == second, "the second pack differs from the first");
    assert_eq!(paths(&dir.join("app-1.0.0.tar.zst")), ["VERSION", "a.txt"]);
}

// --- VERSION --------------------------------------------------------------------------------

#[test]
fn version_file_is_added_at_the_root_when_absent() {
    let ctx = TestContext::new();
    // A VERSION below the root is just a file.
    let dir = ctx.tree("app", &[("a.txt", "a\n"), ("sub/VERSION", "not the release\n")]);
    for format in ["zst", "gz"] {
        let output = ctx.path(&format!("app.{format}"));
        pack(&ctx, &dir, "1.2.3", &["--format", format, "-o", &output.display().to_string()]).success();
        let version = find(&output, "VERSION").expect("VERSION at the archive root");
        assert_eq!(version.kind, tar::EntryType::Regular);
        assert_eq!(version.mode, 0o644);
        assert_eq!(String::from_utf8(version.data).unwrap(), "1.2.3\n");
        assert_eq!(paths(&output).iter().filter(|p| p.ends_with("VERSION")).count(), 2);
        assert_eq!(find(&output, "sub/VERSION").unwrap().data, b"not the release\n");
    }
    // The tree itself was not changed.
    assert!(!dir.join("VERSION").exists());
    // GNU tar sees it too.
    if has_tools(&["tar", "zstd"]) {
        let listing = gnu_tar(&["-I", "zstd", "-tf", &ctx.path("app.zst").display().to_string()]);
        assert!(listing.lines().any(|l| l == "VERSION"), "{listing}");
    }
}

#[test]
fn a_version_file_that_differs_is_refused() {
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("a.txt", "a\n"), ("VERSION", "1.0.0\n")]);
    let run = pack_refused(&ctx, &dir, "2.0.0", &["VERSION", "1.0.0", "2.0.0"]);
    assert!(run.stderr.contains("error:"));
    // A VERSION that is not a regular file is refused as well.
    let dir = ctx.tree("linked", &[("a.txt", "2.0.0\n")]);
    std::os::unix::fs::symlink("a.txt", dir.join("VERSION")).unwrap();
    pack_refused(&ctx, &dir, "2.0.0", &["VERSION", "regular file"]);
}

#[test]
fn a_matching_version_file_is_accepted() {
    let ctx = TestContext::new();
    for (name, content) in [("nl", "2.0.0\n"), ("bare", "2.0.0")] {
        let dir = ctx.tree(name, &[("a.txt", "a\n"), ("VERSION", content)]);
        let output = ctx.path(&format!("{name}.tar.zst"));
        pack(&ctx, &dir, "2.0.0", &["-o", &output.display().to_string()]).success();
        assert_eq!(paths(&output), ["VERSION", "a.txt"]);
        assert_eq!(find(&output, "VERSION").unwrap().data, content.as_bytes());
    }
}

// --- what cannot be packed ------------------------------------------------------------------

#[test]
fn symlinks_pointing_outside_are_refused() {
    let ctx = TestContext::new();
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("abs", &[("passwd", "/etc/passwd")]),
        ("up", &[("up", "..")]),
        ("parent", &[("out", "../outside")]),
        ("nested", &[("sub/out", "../../outside")]),
        ("sneaky", &[("sub/out", "../sub/../../outside")]),
        // Chains: each link looks inside by its text, but one leads through another and out.
        ("chain-dot", &[("s", "."), ("l", "s/../outside")]),
        ("chain-up", &[("d/up", ".."), ("l", "d/up/../outside")]),
    ];
    for (name, links) in cases {
        let dir = ctx.tree(&format!("src-{name}"), &[("a.txt", "a\n"), ("d/keep", "")]);
        for (link, target) in *links {
            let path = dir.join(link);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(target, &path).unwrap();
        }
        let (link, _) = links.last().unwrap();
        pack_refused(&ctx, &dir, "1.0.0", &[&format!("src-{name}/{link}"), "outside the directory"]);
    }
}

#[test]
fn symlinks_that_stay_inside_are_packed() {
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("lib.so.1", "elf\n"), ("x", "x\n"), ("sub/keep", "")]);
    for (link, target) in [("lib.so", "lib.so.1"), ("sub/up", "../x"), ("here", "."), ("dangling", "nowhere")] {
        std::os::unix::fs::symlink(target, dir.join(link)).unwrap();
    }
    let output = ctx.path("app.tar.zst");
    pack(&ctx, &dir, "1.0.0", &["-o", &output.display().to_string()]).success();
    for (link, target) in [("lib.so", "lib.so.1"), ("sub/up", "../x"), ("here", "."), ("dangling", "nowhere")] {
        let entry = find(&output, link).unwrap_or_else(|| panic!("{link} is missing"));
        assert_eq!(entry.kind, tar::EntryType::Symlink);
        assert_eq!(entry.link.as_deref(), Some(target));
    }
    // And the archive deploys.
    ctx.deploy("1.0.0", &output, &[]).success();
    assert_eq!(fs_err::read_to_string(ctx.root().join("releases/1.0.0/sub/up")).unwrap(), "x\n");
}

#[test]
fn special_files_are_refused() {
    let ctx = TestContext::new();
    let dir = ctx.tree("fifo", &[("a.txt", "a\n")]);
    let status = Command::new("mkfifo").arg(dir.join("pipe")).status().expect("mkfifo");
    assert!(status.success());
    pack_refused(&ctx, &dir, "1.0.0", &["pipe", "special files"]);

    let dir = ctx.tree("socket", &[("a.txt", "a\n")]);
    let _listener = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
    pack_refused(&ctx, &dir, "1.0.0", &["sock", "special files"]);
}

#[test]
fn whiteout_names_are_refused_unless_excluded() {
    // Deploy would apply `.wh.x` as an OCI whiteout (remove `x`) instead of writing it: pack
    // never makes an archive whose release differs from the directory.
    let ctx = TestContext::new();
    let dir = ctx.tree("wh", &[("a.txt", "a\n"), ("sub/.wh.a.txt", "")]);
    pack_refused(&ctx, &dir, "1.0.0", &["sub/.wh.a.txt", "OCI whiteouts", "exclude"]);
    fs_err::write(dir.join("depot.toml"), "[package]\nexclude = [\"**/.wh.*\", \"depot.toml\"]\n").unwrap();
    ctx.run(&["pack", dir.to_str().unwrap(), "--version", "1.0.0"]).success();
}

// --- output ---------------------------------------------------------------------------------

#[test]
fn json_prints_one_document_describing_the_archive() {
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("a.txt", "hello\n"), ("b/c.txt", "world!\n")]);
    for (args, output) in [
        (vec!["--json", "pack"], ctx.path("app-1.0.0.tar.zst")),
        (vec!["pack", "--json", "--format", "gz"], ctx.path("app-1.0.0.tar.gz")),
    ] {
        let dir_arg = dir.display().to_string();
        let mut args = args;
        args.extend([dir_arg.as_str(), "--version", "1.0.0"]);
        let run = ctx.run(&args).success();
        // Exactly one document: serde_json refuses anything after it.
        let json = run.json();
        let path = PathBuf::from(json["path"].as_str().expect("path"));
        let path = if path.is_absolute() { path } else { ctx.temp.path().join(path) };
        assert_eq!(path, output);
        let bytes = fs_err::read(&path).unwrap();
        assert_eq!(json["sha256"].as_str().expect("sha256"), sha256_hex(&bytes));
        assert_eq!(json["size"].as_u64().expect("size"), bytes.len() as u64);
        assert_eq!(json["files"].as_u64().expect("files"), 3, "a.txt, b/c.txt and VERSION");
        assert_eq!(json["bytes"].as_u64().expect("bytes"), 6 + 7 + 6);
        assert_eq!(json["version"], "1.0.0");
        assert_eq!(json["name"], "app");
        assert!(!run.stdout.contains("sha256:"), "human output leaked into --json:\n{}", run.stdout);
    }
}

#[test]
fn text_output_names_the_archive_and_its_digest() {
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("a.txt", "hello\n")]);
    let run = pack(&ctx, &dir, "1.0.0", &[]).success();
    let digest = sha256_hex(&fs_err::read(ctx.path("app-1.0.0.tar.zst")).unwrap());
    assert_eq!(run.stdout.trim_end(), format!("sha256:{digest}  app-1.0.0.tar.zst"));
}

#[test]
fn default_output_name_is_dirname_dash_version() {
    let ctx = TestContext::new();
    ctx.tree("build", &[("a.txt", "a\n")]);
    // A relative DIR, resolved against the current directory.
    ctx.run(&["pack", "build", "--version", "1.4.2"]).success();
    assert_eq!(&fs_err::read(ctx.path("build-1.4.2.tar.zst")).unwrap()[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    ctx.run(&["pack", "./build/", "--version", "1.4.3", "--format", "gz"]).success();
    assert_eq!(&fs_err::read(ctx.path("build-1.4.3.tar.gz")).unwrap()[..2], &[0x1f, 0x8b]);
    // --name overrides the directory's name.
    ctx.run(&["pack", "build", "--version", "1.4.4", "--name", "my-app"]).success();
    assert!(ctx.path("my-app-1.4.4.tar.zst").is_file());
    assert_eq!(names(ctx.temp.path()), ["build", "build-1.4.2.tar.zst", "build-1.4.3.tar.gz", "my-app-1.4.4.tar.zst"]);
    // Archives are meant to be shared: not 0600 like a temporary file.
    let mode = fs_err::metadata(ctx.path("build-1.4.2.tar.zst")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
}

// --- DIR/depot.toml -------------------------------------------------------------------------

#[test]
fn depot_toml_name_and_exclude_are_honoured() {
    let ctx = TestContext::new();
    let dir = ctx.tree(
        "build",
        &[
            ("depot.toml", "[package]\nname = \"x\"\nexclude = [\"*.log\", \"tmp\", \"cache/**\"]\n"),
            ("bin/app", "app\n"),
            ("app.log", "log\n"),
            ("sub/debug.log", "log\n"),
            ("tmp/scratch", "tmp\n"),
            ("cache/entry", "cached\n"),
            ("keep.txt", "keep\n"),
        ],
    );
    pack(&ctx, &dir, "1.0.0", &[]).success();
    let output = ctx.path("x-1.0.0.tar.zst");
    assert!(output.is_file(), "the default name comes from [package] name");
    assert!(!ctx.path("build-1.0.0.tar.zst").exists());
    let listed = paths(&output);
    for present in ["bin/app", "keep.txt", "VERSION"] {
        assert!(listed.iter().any(|p| p == present), "{present} is missing: {listed:?}");
    }
    for absent in ["app.log", "sub/debug.log", "tmp/", "tmp/scratch", "cache/entry"] {
        assert!(!listed.iter().any(|p| p == absent), "{absent} was packed: {listed:?}");
    }
    // --name wins over the file.
    pack(&ctx, &dir, "1.0.0", &["--name", "y"]).success();
    assert!(ctx.path("y-1.0.0.tar.zst").is_file());
}

#[test]
fn depot_toml_include_is_honoured() {
    let ctx = TestContext::new();
    let dir = ctx.tree(
        "build",
        &[
            ("depot.toml", "[package]\nname = \"x\"\ninclude = [\"bin/*\", \"*.txt\"]\nexclude = [\"secret.txt\"]\n"),
            ("bin/app", "app\n"),
            ("notes.txt", "notes\n"),
            ("docs/guide.txt", "guide\n"),
            ("secret.txt", "secret\n"),
            ("src/main.rs", "fn main() {}\n"),
            ("other/data", "data\n"),
        ],
    );
    pack(&ctx, &dir, "1.0.0", &[]).success();
    let listed = paths(&ctx.path("x-1.0.0.tar.zst"));
    assert_eq!(listed, ["VERSION", "bin/", "bin/app", "docs/", "docs/guide.txt", "notes.txt"]);
}

#[test]
fn a_broken_depot_toml_is_refused() {
    let ctx = TestContext::new();
    let dir = ctx.tree("build", &[("depot.toml", "[package]\nnmae = \"x\"\n"), ("a", "a\n")]);
    pack_refused(&ctx, &dir, "1.0.0", &["depot.toml"]);
}

// --- GNU tar --------------------------------------------------------------------------------

fn has_tools(tools: &[&str]) -> bool {
    tools.iter().all(|tool| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success()))
}

fn gnu_tar(args: &[&str]) -> String {
    let output = Command::new("tar").args(args).output().expect("run tar");
    assert!(output.status.success(), "tar {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn gnu_tar_reads_both_formats() {
    if !has_tools(&["tar", "zstd", "gzip"]) {
        eprintln!("tar, zstd or gzip is not installed; skipping the GNU tar check");
        return;
    }
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("a.txt", "a\n"), ("bin/tool", "#!/bin/sh\n"), ("deep/er/file", "deep\n")]);
    fs_err::set_permissions(dir.join("bin/tool"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("../a.txt", dir.join("bin/link")).unwrap();
    let mut expected = ctx.snapshot(&dir);
    expected.insert("VERSION".into(), b"1.0.0\n".to_vec());

    for (format, list_flags, extract_flags) in
        [("zst", vec!["-I", "zstd", "-tf"], vec!["-I", "zstd", "-xf"]), ("gz", vec!["-tzf"], vec!["-xzf"])]
    {
        let archive = ctx.path(&format!("app.{format}")).display().to_string();
        pack(&ctx, &dir, "1.0.0", &["--format", format, "-o", &archive]).success();
        let mut args = list_flags.clone();
        args.push(&archive);
        let listing = gnu_tar(&args);
        let mut listed: Vec<&str> = listing.lines().collect();
        listed.sort();
        assert_eq!(
            listed,
            ["VERSION", "a.txt", "bin/", "bin/link", "bin/tool", "deep/", "deep/er/", "deep/er/file"],
            "{format}"
        );
        let out = ctx.path(&format!("out-{format}"));
        fs_err::create_dir(&out).unwrap();
        let out_arg = out.display().to_string();
        let mut args = extract_flags.clone();
        args.extend([archive.as_str(), "-C", out_arg.as_str()]);
        gnu_tar(&args);
        assert_eq!(ctx.snapshot(&out), expected, "{format}: GNU tar extracted something else");
        let mode = fs_err::metadata(out.join("bin/tool")).unwrap().permissions().mode();
        assert_ne!(mode & 0o100, 0, "{format}: the executable bit was lost");
    }
    // The command-line decompressors agree with the archive's integrity data.
    let status = Command::new("zstd").args(["-t", "-q"]).arg(ctx.path("app.zst")).status().unwrap();
    assert!(status.success());
    let status = Command::new("gzip").arg("-t").arg(ctx.path("app.gz")).status().unwrap();
    assert!(status.success());
}

// --- versions -------------------------------------------------------------------------------

const BAD_VERSIONS: &[&str] = &["..", ".", "current", "a/b", "-x", "", ".hidden", "a b", "../x"];

#[test]
fn invalid_versions_are_usage_errors_for_pack() {
    let ctx = TestContext::new();
    let dir = ctx.tree("app", &[("a.txt", "a\n")]);
    let dir = dir.display().to_string();
    let before = names(ctx.temp.path());
    for bad in BAD_VERSIONS {
        let joined = format!("--version={bad}");
        let run = ctx.run(&["pack", &dir, &joined]).usage_error();
        assert!(run.stderr.contains("invalid"), "{bad:?}: {}", run.stderr);
        ctx.run(&["pack", &dir, "--version", bad]).usage_error();
        ctx.run(&["pack", &dir, &joined, "-o", "out.tar.zst"]).usage_error();
    }
    assert_eq!(names(ctx.temp.path()), before, "a refused pack wrote a file");
}

#[test]
fn invalid_versions_are_usage_errors_for_deploy() {
    let ctx = TestContext::new();
    let archive = ctx.release("1.0.0", &[("a.txt", "a\n")]);
    let archive = archive.display().to_string();
    let root = ctx.root_str();
    for bad in BAD_VERSIONS {
        let joined = format!("--version={bad}");
        let run = ctx.run(&["deploy", "--root", &root, &joined, "--artifact-path", &archive]).usage_error();
        assert!(run.stderr.contains("invalid"), "{bad:?}: {}", run.stderr);
        ctx.run(&["deploy", "--root", &root, "--version", bad, "--artifact-path", &archive]).usage_error();
        assert!(!ctx.root().exists(), "{bad:?}: the root was created");
    }
    // The same archive with a valid version deploys.
    ctx.run(&["deploy", "--root", &root, "--version", "1.0.0", "--artifact-path", &archive]).success();
    assert_eq!(ctx.release_dirs(), ["1.0.0", "current"]);
}

#[test]
fn a_mapping_packs_outputs_under_new_paths_and_never_follows_a_symlink_out() {
    let ctx = TestContext::new();
    let dir = ctx.tree("proj", &[("target/release/server", "#!/bin/sh\n"), ("conf/app.conf", "port = 1\n")]);
    fs_err::write(
        dir.join("depot.toml"),
        "[package]\nname = \"svc\"\ninclude = { \"target/release/server\" = \"bin/server\", \"conf\" = \"config\" }\n",
    )
    .unwrap();
    let packed = ctx.run(&["pack", dir.to_str().unwrap(), "--version", "1.0.0", "--json"]).success().json();
    assert_eq!(packed["files"], 3, "bin/server, config/app.conf and VERSION: {packed}");

    // A symlink copied by one mapping, then written through by the next: refused, nothing outside.
    let outside = ctx.path("outside");
    fs_err::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("a-link")).unwrap();
    fs_err::write(
        dir.join("depot.toml"),
        "[package]\ninclude = { \"a-link\" = \"a\", \"conf/app.conf\" = \"a/authorized_keys\" }\n",
    )
    .unwrap();
    ctx.run(&["pack", dir.to_str().unwrap(), "--version", "1.0.1"]).failure().stderr_contains("symlink");
    assert_eq!(fs_err::read_dir(&outside).unwrap().count(), 0, "nothing written outside");

    // A source reached through a symlink: refused, nothing read from outside.
    fs_err::write(outside.join("id_rsa"), "secret").unwrap();
    fs_err::write(dir.join("depot.toml"), "[package]\ninclude = { \"a-link/id_rsa\" = \"k\" }\n").unwrap();
    ctx.run(&["pack", dir.to_str().unwrap(), "--version", "1.0.2"]).failure().stderr_contains("symlink");
    fs_err::write(dir.join("depot.toml"), "[package]\ninclude = { \"conf\" = \"../up\" }\n").unwrap();
    ctx.run(&["pack", dir.to_str().unwrap(), "--version", "1.0.3"]).failure().stderr_contains("relative path");
}
