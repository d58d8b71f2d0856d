//! Untrusted archives: every hostile archive is refused as a whole, with an `error:` line naming
//! the problem, nothing written outside the root, `current` and `R/releases/` exactly as before
//! and no staging directory left behind.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;

/// The version every hostile archive is deployed as.
const HOSTILE: &str = "2.0.0";

/// A root with release 1.0.0 deployed and current.
fn deployed() -> TestContext {
    let ctx = TestContext::new();
    let archive = ctx.release("1.0.0", &[("app.txt", "one\n"), ("bin/run", "#!/bin/sh\necho one\n")]);
    ctx.deploy("1.0.0", &archive, &[]).success();
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    ctx
}

/// The names in `dir`, sorted (empty when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

/// Whether anything (even a dangling symlink) is at `path`.
fn present(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// What a refused deploy must leave as it was.
#[derive(Debug, PartialEq)]
struct State {
    current: Option<String>,
    release_dirs: Vec<String>,
    /// Every file, directory and symlink below `R/releases/`, with content.
    releases: BTreeMap<String, Vec<u8>>,
    /// The top level of the root.
    root: Vec<String>,
    /// The top level of the temporary directory that holds the root: outside the root.
    outside: Vec<String>,
}

impl State {
    fn of(ctx: &TestContext) -> Self {
        State {
            current: ctx.current(),
            release_dirs: ctx.release_dirs(),
            releases: ctx.snapshot(&ctx.root().join("releases")),
            root: names(&ctx.root()),
            outside: names(ctx.temp.path()),
        }
    }
}

/// The places a path escaping the staging directory (`R/releases/.staging-V-pid/`) would land.
fn sentinels(ctx: &TestContext) -> Vec<PathBuf> {
    vec![
        ctx.path("escaped"),
        ctx.root().join("escaped"),
        ctx.root().join("releases/escaped"),
        ctx.path("abs-escaped"),
        PathBuf::from("/escaped"),
    ]
}

/// The `error:` line of a failed run.
fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|line| line.starts_with("error:"))
        .unwrap_or_else(|| panic!("no `error:` line in stderr:\n{}", run.stderr))
}

/// Deploys `bytes` (written to `name`) as HOSTILE with `extra` flags and checks that it was
/// refused with exit 1, an `error:` line holding every one of `needles`, and that nothing changed.
#[track_caller]
fn refused(ctx: &TestContext, name: &str, bytes: &[u8], extra: &[&str], needles: &[&str]) -> Run {
    let archive = ctx.path(name);
    fs_err::write(&archive, bytes).unwrap();
    refused_path(ctx, &archive, extra, needles)
}

#[track_caller]
fn refused_path(ctx: &TestContext, archive: &Path, extra: &[&str], needles: &[&str]) -> Run {
    let before = State::of(ctx);
    let sentinels_before: Vec<bool> = sentinels(ctx).iter().map(|p| present(p)).collect();
    let run = ctx.deploy(HOSTILE, archive, extra).failure();
    let line = error_line(&run);
    for needle in needles {
        assert!(line.contains(needle), "the error line does not contain {needle:?}:\n{}", run.stderr);
    }
    let after = State::of(ctx);
    assert!(
        !after.release_dirs.iter().any(|name| name.starts_with(".staging")),
        "a staging directory was left behind: {:?}",
        after.release_dirs
    );
    assert_eq!(after, before, "the refused deploy changed the root or wrote outside it");
    assert_eq!(ctx.current().as_deref(), Some("1.0.0"));
    assert!(!ctx.root().join("releases").join(HOSTILE).exists());
    let sentinels_after: Vec<bool> = sentinels(ctx).iter().map(|p| present(p)).collect();
    assert_eq!(sentinels_after, sentinels_before, "something was written at one of {:?}", sentinels(ctx));
    for sentinel in sentinels(ctx).iter().take(4) {
        assert!(!present(sentinel), "{} exists", sentinel.display());
    }
    run
}

/// A hostile raw tar, refused in each of the three formats.
#[track_caller]
fn refused_in_every_format(ctx: &TestContext, entries: &[RawEntry], needles: &[&str]) {
    let tar = raw_tar(entries);
    refused(ctx, "hostile.tar", &tar, &[], needles);
    refused(ctx, "hostile.tar.gz", &gzip_bytes(&tar), &[], needles);
    refused(ctx, "hostile.tar.zst", &zstd_bytes(&tar), &[], needles);
}

/// Deploys a raw tar as HOSTILE and expects success.
#[track_caller]
fn accepted(ctx: &TestContext, entries: &[RawEntry]) -> PathBuf {
    let archive = ctx.path("accepted.tar.zst");
    fs_err::write(&archive, zstd_bytes(&raw_tar(entries))).unwrap();
    ctx.deploy(HOSTILE, &archive, &[]).success();
    assert_eq!(ctx.current().as_deref(), Some(HOSTILE));
    ctx.root().join("releases").join(HOSTILE)
}

// --- paths ----------------------------------------------------------------------------------

#[test]
fn absolute_paths_are_refused() {
    let ctx = deployed();
    let tmp_x = Path::new("/tmp/x");
    let tmp_x_before = present(tmp_x).then(|| std::fs::symlink_metadata(tmp_x).unwrap().len());
    refused_in_every_format(
        &ctx,
        &[RawEntry::file("ok.txt", "fine\n"), RawEntry::file("/tmp/x", "pwned\n")],
        &["/tmp/x", "absolute paths are not allowed"],
    );
    assert_eq!(present(tmp_x).then(|| std::fs::symlink_metadata(tmp_x).unwrap().len()), tmp_x_before);

    let inside_temp = format!("{}", ctx.path("abs-escaped").display());
    assert!(inside_temp.starts_with('/'));
    refused_in_every_format(
        &ctx,
        &[RawEntry::file(&inside_temp, "pwned\n")],
        &[&inside_temp, "absolute paths are not allowed"],
    );
    assert!(!present(&ctx.path("abs-escaped")));

    // A directory entry at an absolute path, and `//` which is still absolute.
    refused_in_every_format(&ctx, &[RawEntry::dir(&format!("{inside_temp}/"))], &["absolute paths are not allowed"]);
    refused_in_every_format(
        &ctx,
        &[RawEntry::file(&format!("/{inside_temp}"), "pwned\n")],
        &["absolute paths are not allowed"],
    );
}

#[test]
fn dot_dot_components_are_refused() {
    let ctx = deployed();
    for path in ["../escaped", "../../escaped", "../../../escaped", "a/../../escaped", "a/../../../../escaped"] {
        refused(
            &ctx,
            "dotdot.tar.zst",
            &zstd_bytes(&raw_tar(&[RawEntry::file("ok.txt", "fine\n"), RawEntry::file(path, "pwned\n")])),
            &[],
            &[path, "`..` components are not allowed"],
        );
    }
    // `..` that would stay inside is refused too: the rule is by component, not by where it lands.
    refused(
        &ctx,
        "dotdot-inside.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::dir("a/"), RawEntry::file("a/../b", "x\n")])),
        &[],
        &["a/../b", "`..` components are not allowed"],
    );
    // A directory entry that climbs out.
    refused(
        &ctx,
        "dotdot-dir.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::dir("../../../escaped/")])),
        &[],
        &["`..` components are not allowed"],
    );
}

#[test]
fn entries_through_a_symlink_are_refused() {
    let ctx = deployed();
    // A symlink that stays inside, then a file written through it.
    refused_in_every_format(
        &ctx,
        &[
            RawEntry::dir("sub/"),
            RawEntry::file("sub/a", "a\n"),
            RawEntry::symlink("link", "sub"),
            RawEntry::file("link/file", "through the link\n"),
        ],
        &["link/file", "passes through the symlink `link`"],
    );
    // The same with a directory entry and with a hardlink.
    refused(
        &ctx,
        "through-dir.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::dir("sub/"), RawEntry::symlink("link", "sub"), RawEntry::dir("link/d/")])),
        &[],
        &["passes through the symlink `link`"],
    );
    refused(
        &ctx,
        "through-hardlink.tar.zst",
        &zstd_bytes(&raw_tar(&[
            RawEntry::dir("sub/"),
            RawEntry::file("sub/a", "a\n"),
            RawEntry::symlink("link", "sub"),
            RawEntry::hardlink("link/h", "sub/a"),
        ])),
        &[],
        &["passes through the symlink `link`"],
    );
    // A symlink to outside, then a file through it: refused at the symlink, before the file.
    let outside = format!("{}", ctx.temp.path().display());
    for target in [outside.as_str(), "../../..", "../../../"] {
        refused(
            &ctx,
            "through-outside.tar.zst",
            &zstd_bytes(&raw_tar(&[RawEntry::symlink("evil", target), RawEntry::file("evil/escaped", "pwned\n")])),
            &[],
            &["evil", "points outside the release"],
        );
    }
    // And a symlink below a directory.
    refused(
        &ctx,
        "through-nested.tar.zst",
        &zstd_bytes(&raw_tar(&[
            RawEntry::dir("a/"),
            RawEntry::symlink("a/evil", "../../../.."),
            RawEntry::file("a/evil/escaped", "pwned\n"),
        ])),
        &[],
        &["a/evil", "points outside the release"],
    );
}

#[test]
fn symlinks_pointing_outside_are_refused() {
    let ctx = deployed();
    refused_in_every_format(
        &ctx,
        &[RawEntry::file("ok.txt", "fine\n"), RawEntry::symlink("passwd", "/etc/passwd")],
        &["passwd", "absolute path `/etc/passwd` points outside the release"],
    );
    for (link, target) in [
        ("up", ".."),
        ("x", "../../x"),
        ("x", "../escaped"),
        ("sub/x", "../../x"),
        ("sub/x", "../sub/../../x"),
        ("sub/deeper/x", "../../../x"),
    ] {
        refused(
            &ctx,
            "outside.tar.zst",
            &zstd_bytes(&raw_tar(&[RawEntry::symlink(link, target)])),
            &[],
            &[link, &format!("`{target}` points outside the release")],
        );
    }
    refused(
        &ctx,
        "empty-target.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::symlink("empty", "")])),
        &[],
        &["`empty`", "target"],
    );
}

#[test]
fn symlink_chains_leading_outside_are_refused() {
    let ctx = deployed();
    let chain = "leads outside the release through other symlinks";
    // `s -> .` is harmless alone; `l -> s/../x` looks inside by its text but leaves through `s`.
    refused_in_every_format(
        &ctx,
        &[RawEntry::symlink("s", "."), RawEntry::symlink("l", "s/../escaped")],
        &["`l`", chain],
    );
    // The order of the entries does not matter.
    refused(
        &ctx,
        "chain-reversed.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::symlink("l", "s/../escaped"), RawEntry::symlink("s", ".")])),
        &[],
        &["`l`", chain],
    );
    // `d/up -> ..` points at the release root; `l -> d/up/..` then climbs above it.
    refused(
        &ctx,
        "chain-up.tar.zst",
        &zstd_bytes(&raw_tar(&[
            RawEntry::dir("d/"),
            RawEntry::symlink("d/up", ".."),
            RawEntry::symlink("l", "d/up/../escaped"),
        ])),
        &[],
        &["`l`", chain],
    );
    // Two hops: a -> b, b -> s/.., s -> .
    refused(
        &ctx,
        "chain-two-hops.tar.zst",
        &zstd_bytes(&raw_tar(&[
            RawEntry::symlink("s", "."),
            RawEntry::symlink("b", "s/.."),
            RawEntry::symlink("a", "b"),
        ])),
        &[],
        &[chain],
    );
    // A loop never resolves, so it cannot be shown to stay inside.
    refused(&ctx, "loop.tar.zst", &zstd_bytes(&raw_tar(&[RawEntry::symlink("loop", "loop/x")])), &[], &["loop", chain]);
}

#[test]
fn hardlinks_outside_or_to_missing_entries_are_refused() {
    let ctx = deployed();
    refused_in_every_format(
        &ctx,
        &[RawEntry::file("ok.txt", "fine\n"), RawEntry::hardlink("passwd", "/etc/passwd")],
        &["`passwd`", "hardlink target `/etc/passwd`", "absolute paths are not allowed"],
    );
    refused(
        &ctx,
        "hardlink-dotdot.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::hardlink("h", "../../../escaped")])),
        &[],
        &["`h`", "hardlink target `../../../escaped`", "`..` components are not allowed"],
    );
    for (entries, target) in [
        (vec![RawEntry::hardlink("h", "missing")], "missing"),
        // A hardlink to a file that only comes later.
        (vec![RawEntry::hardlink("h", "later"), RawEntry::file("later", "x\n")], "later"),
        // A hardlink to a directory or to a symlink.
        (vec![RawEntry::dir("d/"), RawEntry::hardlink("h", "d")], "d"),
        (vec![RawEntry::file("f", "x\n"), RawEntry::symlink("s", "f"), RawEntry::hardlink("h", "s")], "s"),
        // A hardlink to the archive root.
        (vec![RawEntry::hardlink("h", "./")], "./"),
    ] {
        let run = refused(&ctx, "hardlink.tar.zst", &zstd_bytes(&raw_tar(&entries)), &[], &["`h`"]);
        assert!(run.stderr.contains("hardlink"), "{target}: {}", run.stderr);
    }
}

#[test]
fn device_nodes_and_fifos_are_refused() {
    let ctx = deployed();
    for (kind, needle) in [
        (tar::EntryType::Char, "device nodes are not allowed"),
        (tar::EntryType::Block, "device nodes are not allowed"),
        (tar::EntryType::Fifo, "fifos are not allowed"),
    ] {
        refused_in_every_format(
            &ctx,
            &[RawEntry::file("ok.txt", "fine\n"), RawEntry::file("node", "").with_kind(kind).with_mode(0o666)],
            &["node", needle],
        );
    }
}

#[test]
fn duplicate_paths_are_refused() {
    let ctx = deployed();
    for (first, second) in [("a", "a"), ("a", "./a"), ("d/f", "d//f"), ("d/f", "./d/./f")] {
        refused(
            &ctx,
            "dup.tar.zst",
            &zstd_bytes(&raw_tar(&[RawEntry::file(first, "first\n"), RawEntry::file(second, "second\n")])),
            &[],
            &["appears twice in the archive"],
        );
    }
    // A file then a symlink or a directory at the same path.
    refused(
        &ctx,
        "dup-kinds.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::file("a", "x\n"), RawEntry::symlink("a", "b")])),
        &[],
        &["`a`", "appears twice"],
    );
    refused(
        &ctx,
        "dup-dir.tar.zst",
        &zstd_bytes(&raw_tar(&[RawEntry::file("a", "x\n"), RawEntry::dir("a/")])),
        &[],
        &["`a`", "appears twice"],
    );
}

// --- modes ----------------------------------------------------------------------------------

#[test]
fn setuid_and_setgid_bits_are_stripped_and_files_are_read_only() {
    let ctx = deployed();
    let release = accepted(
        &ctx,
        &[
            RawEntry::file("suid", "#!/bin/sh\n").with_mode(0o4755),
            RawEntry::file("sgid", "#!/bin/sh\necho g\n").with_mode(0o2755),
            RawEntry::file("both", "both\n").with_mode(0o6777),
            RawEntry::file("sticky", "sticky\n").with_mode(0o1644),
            RawEntry::file("writable", "w\n").with_mode(0o666),
            RawEntry::dir("d/").with_mode(0o7777),
        ],
    );
    let mode = |name: &str| std::fs::metadata(release.join(name)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o555);
    assert_eq!(mode("sgid"), 0o555);
    assert_eq!(mode("both"), 0o555);
    assert_eq!(mode("sticky"), 0o444);
    assert_eq!(mode("writable"), 0o444);
    for name in ["suid", "sgid", "both", "sticky", "writable"] {
        assert_eq!(mode(name) & 0o7000, 0, "{name} kept a setuid/setgid/sticky bit");
        assert_eq!(mode(name) & 0o222, 0, "{name} is writable");
    }
    assert_eq!(mode("d") & 0o7000, 0, "the directory kept a special bit");
    assert_eq!(fs_err::read_to_string(release.join("suid")).unwrap(), "#!/bin/sh\n");
}

#[test]
fn replayed_layer_listings_lose_setuid_bits_with_copy() {
    let ctx = deployed();
    let archive = ctx.path("tool.tar.zst");
    fs_err::write(&archive, zstd_bytes(&raw_tar(&[RawEntry::file("tool", "#!/bin/sh\n").with_mode(0o755)]))).unwrap();
    let sha256 = sha256_hex(&fs_err::read(&archive).unwrap());
    ctx.deploy("2.0.0", &archive, &["--copy", "--sha256", &sha256]).success();
    // A listing that names the file with its setuid bit, and a store object under that mode,
    // as a tampered root (or one written by another tool) may hold.
    let listing_path = ctx.root().join(format!(".depot/layers/{sha256}.json"));
    let mut listing: serde_json::Value = serde_json::from_slice(&fs_err::read(&listing_path).unwrap()).unwrap();
    let entry = &mut listing.as_array_mut().unwrap()[0];
    assert_eq!(entry["mode"], 0o555);
    entry["mode"] = serde_json::json!(0o4755);
    let file_sha256 = entry["sha256"].as_str().unwrap().to_owned();
    fs_err::write(&listing_path, serde_json::to_vec(&listing).unwrap()).unwrap();
    let objects = ctx.root().join(".depot/store/objects").join(&file_sha256[..2]);
    let setuid_object = objects.join(format!("{}-4755", &file_sha256[2..]));
    fs_err::copy(objects.join(format!("{}-555", &file_sha256[2..])), &setuid_object).unwrap();
    fs_err::set_permissions(&setuid_object, std::fs::Permissions::from_mode(0o4755)).unwrap();

    ctx.deploy("2.0.1", &archive, &["--copy", "--sha256", &sha256]).success();
    let tool = ctx.root().join("releases/2.0.1/tool");
    let mode = std::fs::metadata(&tool).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o555, "the replayed file has mode {mode:o}");
    assert_eq!(fs_err::read_to_string(&tool).unwrap(), "#!/bin/sh\n");
}

// --- limits ---------------------------------------------------------------------------------

/// Three files of 100 + 50 + 10 bytes.
fn three_files() -> Vec<u8> {
    zstd_bytes(&raw_tar(&[
        RawEntry::file("a", &"a".repeat(100)),
        RawEntry::file("b", &"b".repeat(50)),
        RawEntry::file("c", &"c".repeat(10)),
    ]))
}

#[test]
fn max_files_refuses_archives_with_more_entries() {
    let ctx = deployed();
    refused(&ctx, "three.tar.zst", &three_files(), &["--max-files", "2"], &["entry count limit of 2"]);
    refused(&ctx, "three.tar.zst", &three_files(), &["--max-files", "0"], &["entry count limit of 0"]);
    ctx.deploy(HOSTILE, &ctx.path("three.tar.zst"), &["--max-files", "3"]).success();
    assert_eq!(ctx.current().as_deref(), Some(HOSTILE));
}

#[test]
fn max_bytes_refuses_archives_with_more_uncompressed_bytes() {
    let ctx = deployed();
    refused(&ctx, "three.tar.zst", &three_files(), &["--max-bytes", "159"], &["uncompressed size limit of 159"]);
    // One huge file is refused before it is read: its header declares the size.
    let big = zstd_bytes(&raw_tar(&[RawEntry::file("big", &"z".repeat(64 * 1024))]));
    refused(&ctx, "big.tar.zst", &big, &["--max-bytes", "65535"], &["uncompressed size limit of 65535"]);
    // Hardlinks count as the bytes they make appear.
    let linked = zstd_bytes(&raw_tar(&[RawEntry::file("a", &"a".repeat(100)), RawEntry::hardlink("b", "a")]));
    refused(&ctx, "linked.tar.zst", &linked, &["--max-bytes", "150"], &["uncompressed size limit of 150"]);
    ctx.deploy(HOSTILE, &ctx.path("three.tar.zst"), &["--max-bytes", "160"]).success();
    assert_eq!(ctx.current().as_deref(), Some(HOSTILE));
}

#[test]
fn max_bytes_bounds_what_follows_the_end_of_the_archive() {
    let ctx = deployed();
    // Zeros after the end-of-archive marker are padding; a bomb of them is still refused.
    let mut bomb = raw_tar(&[RawEntry::file("a", "a\n")]);
    bomb.resize(bomb.len() + 4 * 1024 * 1024, 0);
    refused(&ctx, "padded-bomb.tar.zst", &zstd_bytes(&bomb), &["--max-bytes", "1000"], &["uncompressed size limit"]);
    // Ordinary padding (GNU tar pads to 10 KiB records) is fine even with a small limit.
    let mut padded = raw_tar(&[RawEntry::file("a", "a\n")]);
    padded.resize(20 * 512, 0);
    fs_err::write(ctx.path("padded.tar.gz"), gzip_bytes(&padded)).unwrap();
    ctx.deploy(HOSTILE, &ctx.path("padded.tar.gz"), &["--max-bytes", "10"]).success();
    assert_eq!(ctx.current().as_deref(), Some(HOSTILE));
}

/// Deploys `archive` as HOSTILE under `--max-bytes 1048576` with the address space capped at
/// 256 MiB (`prlimit --as`): refused with exit 1 and `needles` in the error line, nothing
/// changed, and `releases.log` holds no line longer than 4 KiB.
#[track_caller]
fn refused_within_memory(ctx: &TestContext, archive: &Path, extra: &[&str], needles: &[&str]) {
    let before = State::of(ctx);
    let root = ctx.root_str();
    let archive = archive.display().to_string();
    let mut args = vec!["--as=268435456", "--", env!("CARGO_BIN_EXE_depot"), "deploy", "--root", &root];
    args.extend(["--version", HOSTILE, "--artifact-path", &archive, "--max-bytes", "1048576"]);
    args.extend(extra);
    let mut prlimit = std::process::Command::new("prlimit");
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("DEPOT_")) {
        prlimit.env_remove(key);
    }
    let output = prlimit.args(&args).current_dir(ctx.temp.path()).stdin(std::process::Stdio::null()).output();
    let run = Run::from(output.expect("run depot under prlimit")).failure();
    let line = error_line(&run);
    for needle in needles {
        assert!(line.contains(needle), "the error line does not contain {needle:?}:\n{}", run.stderr);
    }
    assert!(run.stderr.len() < 4096, "stderr holds {} bytes", run.stderr.len());
    assert_eq!(State::of(ctx), before, "the refused deploy changed the root");
    let log = fs_err::read_to_string(ctx.root().join("logs/releases.log")).unwrap();
    let longest = log.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096, "releases.log has a line of {longest} bytes");
}

#[test]
fn a_gnu_long_name_of_a_gibibyte_is_refused_within_bounded_memory() {
    let ctx = deployed();
    // 1 GiB of long name in front of an ordinary file: a few tens of KB compressed.
    let archive = ctx.path("long-name.tar.zst");
    let rest = raw_tar(&[RawEntry::file("x", "x\n")]);
    streamed_bomb(&archive, tar::EntryType::GNULongName, "././@LongLink", 1 << 30, &rest);
    assert!(fs_err::metadata(&archive).unwrap().len() < 1 << 20);
    refused_within_memory(
        &ctx,
        &archive,
        &[],
        &["archive entry 1 has headers", "larger than the limit of 1048576 bytes"],
    );
    // A long link name and a PAX extended header are held to the same bound.
    let archive = ctx.path("long-link.tar.zst");
    streamed_bomb(&archive, tar::EntryType::GNULongLink, "././@LongLink", 64 << 20, &rest);
    refused_within_memory(&ctx, &archive, &[], &["larger than the limit of 1048576 bytes"]);
    let archive = ctx.path("pax-local.tar.zst");
    streamed_bomb(&archive, tar::EntryType::XHeader, "PaxHeaders/x", 64 << 20, &rest);
    refused_within_memory(&ctx, &archive, &[], &["larger than the limit of 1048576 bytes"]);
}

#[test]
fn long_names_are_refused_and_quoted_shortened() {
    let ctx = deployed();
    // A PAX header naming the next entry with 100,000 bytes: within the header limit, past
    // what Linux takes; the error and the log quote it shortened.
    let body = format!(" path={}\n", "n".repeat(100_000));
    let mut length = body.len();
    while length != body.len() + length.to_string().len() {
        length = body.len() + length.to_string().len();
    }
    let mut pax = RawEntry::file("PaxHeaders/x", "").with_kind(tar::EntryType::XHeader);
    pax.data = format!("{length}{body}").into_bytes();
    let archive = ctx.path("long-pax-name.tar.zst");
    fs_err::write(&archive, zstd_bytes(&raw_tar(&[pax, RawEntry::file("x", "x\n")]))).unwrap();
    refused_within_memory(&ctx, &archive, &[], &["the path is longer than 4096 bytes", "(100000 bytes)"]);
}

#[test]
fn pax_global_headers_and_skipped_data_count_against_the_limits() {
    let ctx = deployed();
    let rest = raw_tar(&[RawEntry::file("x", "x\n")]);
    // A PAX global header holding 256 MiB: refused from its header, before its data is decoded.
    let archive = ctx.path("pax-global.tar.zst");
    streamed_bomb(&archive, tar::EntryType::XGlobalHeader, "pax_global_header", 256 << 20, &rest);
    refused_within_memory(&ctx, &archive, &[], &["larger than the limit of 1048576 bytes"]);
    // A directory entry with 256 MiB of data: refused from its header (tar readers disagree on
    // what follows it).
    let archive = ctx.path("dir-data.tar.zst");
    streamed_bomb(&archive, tar::EntryType::Directory, "d/", 256 << 20, &rest);
    refused_within_memory(&ctx, &archive, &[], &["a directory entry with 268435456 bytes of data"]);
    // So is a symlink entry with 256 MiB of data.
    let archive = ctx.path("link-data.tar.zst");
    streamed_bomb(&archive, tar::EntryType::Symlink, "l", 256 << 20, &rest);
    refused_within_memory(&ctx, &archive, &[], &["a link or special entry with 268435456 bytes of data"]);
    // Skipped data counts: a 600 KiB PAX global header and a 600 KiB file pass 1 MiB together.
    let mut global =
        RawEntry::file("pax_global_header", &format!("{} comment={}\n", 600 * 1024, "c".repeat(600 * 1024 - 16)))
            .with_kind(tar::EntryType::XGlobalHeader);
    global.mode = 0o644;
    let two = zstd_bytes(&raw_tar(&[global, RawEntry::file("f", &"f".repeat(600 * 1024))]));
    refused(&ctx, "two.tar.zst", &two, &["--max-bytes", "1048576"], &["uncompressed size limit of 1048576"]);
    // A PAX global header is an entry like any other.
    let mut global = RawEntry::file("pax_global_header", "17 comment=hello\n").with_kind(tar::EntryType::XGlobalHeader);
    global.mode = 0o644;
    let counted = zstd_bytes(&raw_tar(&[global, RawEntry::file("x", "x\n")]));
    refused(&ctx, "counted.tar.zst", &counted, &["--max-files", "1"], &["entry count limit of 1"]);
    ctx.deploy(HOSTILE, &ctx.path("counted.tar.zst"), &["--max-files", "2"]).success();
}

#[test]
fn long_names_from_gnu_tar_and_bsdtar_still_deploy() {
    let ctx = deployed();
    // A path of 240 bytes, past ustar's 100-byte name field: GNU tar writes a long name
    // header, --format=posix and bsdtar a PAX extended header.
    let deep = format!("{}/{}/{}.txt", "d".repeat(80), "e".repeat(80), "f".repeat(70));
    let tree = ctx.tree("long", &[(&deep, "deep\n"), ("short.txt", "short\n")]);
    let link = tree.join(format!("{}-link", "l".repeat(120)));
    std::os::unix::fs::symlink(&deep, &link).unwrap();
    let tools: [(&str, &[&str]); 3] = [
        ("gnu.tar.gz", &["tar", "--format=gnu", "-czf"]),
        ("posix.tar", &["tar", "--format=posix", "-cf"]),
        ("bsd.tar.zst", &["bsdtar", "--zstd", "-cf"]),
    ];
    for (index, (name, tool)) in tools.iter().enumerate() {
        let archive = ctx.path(name);
        let status = std::process::Command::new(tool[0])
            .args(&tool[1..])
            .arg(&archive)
            .arg("-C")
            .arg(&tree)
            .arg(".")
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", tool[0]));
        assert!(status.success(), "{} failed", tool[0]);
        let version = format!("3.0.{index}");
        ctx.deploy(&version, &archive, &["--max-bytes", "1048576", "--max-files", "10"]).success();
        let release = ctx.root().join("releases").join(&version);
        assert_eq!(fs_err::read_to_string(release.join(&deep)).unwrap(), "deep\n", "{name}");
        let link_name = link.file_name().unwrap();
        assert_eq!(fs_err::read_link(release.join(link_name)).unwrap(), Path::new(&deep), "{name}");
    }
}

#[test]
fn limits_from_the_root_config_apply_and_flags_win() {
    let ctx = deployed();
    fs_err::write(ctx.root().join("config/depot.toml"), "[limits]\nmax_files = 2\n").unwrap();
    refused(&ctx, "three.tar.zst", &three_files(), &[], &["entry count limit of 2"]);
    fs_err::write(ctx.root().join("config/depot.toml"), "[limits]\nmax_bytes = 100\n").unwrap();
    refused(&ctx, "three.tar.zst", &three_files(), &[], &["uncompressed size limit of 100"]);
    // A flag overrides the file.
    fs_err::write(ctx.root().join("config/depot.toml"), "[limits]\nmax_files = 2\nmax_bytes = 100\n").unwrap();
    ctx.deploy(HOSTILE, &ctx.path("three.tar.zst"), &["--max-files", "3", "--max-bytes", "1000"]).success();
    assert_eq!(ctx.current().as_deref(), Some(HOSTILE));
}

// --- corrupt archives -----------------------------------------------------------------------

/// Deterministic noise that starts with neither the gzip nor the zstd magic.
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    bytes[0] = b'Q';
    bytes
}

#[test]
fn empty_and_random_files_are_refused() {
    let ctx = deployed();
    refused(&ctx, "empty.tar.zst", b"", &[], &["not a readable tar", "empty"]);
    refused(&ctx, "short.tar", &noise(100), &[], &["not a readable tar"]);
    refused(&ctx, "noise.tar", &noise(64 * 1024), &[], &["not a readable tar"]);
    // Magic bytes followed by garbage.
    let mut fake_zstd = vec![0x28, 0xb5, 0x2f, 0xfd];
    fake_zstd.extend(noise(4096));
    refused(&ctx, "fake.tar.zst", &fake_zstd, &[], &["not a readable tar"]);
    let mut fake_gzip = vec![0x1f, 0x8b];
    fake_gzip.extend(noise(4096));
    refused(&ctx, "fake.tar.gz", &fake_gzip, &[], &["not a readable tar"]);
    // A valid compressed stream of something that is not a tar.
    refused(&ctx, "text.tar.zst", &zstd_bytes(&noise(4096)), &[], &["not a readable tar"]);
    refused(&ctx, "text.tar.gz", &gzip_bytes(&noise(4096)), &[], &["not a readable tar"]);
}

/// A packed release big enough that truncation points fall in the middle of entries.
fn packed(ctx: &TestContext, format: &str) -> Vec<u8> {
    let dir = ctx.tree(
        &format!("src-packed-{format}"),
        &[
            ("a.txt", &"alpha ".repeat(2000)),
            ("b/c.txt", &"gamma\n".repeat(500)),
            ("d.bin", &String::from_utf8(noise(3000).iter().map(|b| b'a' + b % 26).collect()).unwrap()),
        ],
    );
    let output = ctx.path(&format!("packed.{format}"));
    ctx.run(&[
        "pack",
        &dir.display().to_string(),
        "--version",
        HOSTILE,
        "--format",
        format,
        "-o",
        &output.display().to_string(),
    ])
    .success();
    fs_err::read(output).unwrap()
}

#[test]
fn truncated_zstd_archives_are_refused() {
    let ctx = deployed();
    let whole = packed(&ctx, "zst");
    assert_eq!(&whole[..4], &[0x28, 0xb5, 0x2f, 0xfd]);
    for keep in [4, 20, whole.len() / 3, whole.len() / 2, whole.len() - 10, whole.len() - 4, whole.len() - 1] {
        refused(&ctx, "truncated.tar.zst", &whole[..keep], &[], &["not a readable tar"]);
    }
    // The whole archive deploys.
    fs_err::write(ctx.path("whole.tar.zst"), &whole).unwrap();
    ctx.deploy(HOSTILE, &ctx.path("whole.tar.zst"), &[]).success();
}

#[test]
fn truncated_gzip_archives_are_refused() {
    let ctx = deployed();
    let whole = packed(&ctx, "gz");
    assert_eq!(&whole[..2], &[0x1f, 0x8b]);
    for keep in [2, 10, 20, whole.len() / 3, whole.len() / 2, whole.len() - 10, whole.len() - 8, whole.len() - 1] {
        refused(&ctx, "truncated.tar.gz", &whole[..keep], &[], &["not a readable tar"]);
    }
    fs_err::write(ctx.path("whole.tar.gz"), &whole).unwrap();
    ctx.deploy(HOSTILE, &ctx.path("whole.tar.gz"), &[]).success();
}

#[test]
fn truncated_plain_tar_is_refused_mid_entry() {
    let ctx = deployed();
    let tar = raw_tar(&[RawEntry::file("a", &"a".repeat(3000)), RawEntry::file("b", "b\n")]);
    for keep in [100, 512 + 1000, 512 + 3000] {
        refused(&ctx, "truncated.tar", &tar[..keep], &[], &["not a readable tar"]);
    }
}

#[test]
fn corrupted_compressed_content_is_refused() {
    // A flipped byte in the middle of the compressed stream must not deploy silently: either the
    // decoder fails or the format's checksum does.
    let ctx = deployed();
    for format in ["zst", "gz"] {
        let whole = packed(&ctx, format);
        let mut corrupt = whole.clone();
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0x55;
        refused(&ctx, &format!("corrupt.{format}"), &corrupt, &[], &[]);
        // The last byte of the gzip length, or of the last zstd frame's checksum (the seek
        // table follows it: a skippable frame, which decoders pass over).
        let table = depot_release::archive::FrameTable::read(&mut std::io::Cursor::new(&whole), whole.len() as u64);
        let last = match table.unwrap() {
            Some(table) => table.frames.last().map(|frame| (frame.offset + frame.compressed - 1) as usize).unwrap(),
            None => whole.len() - 1,
        };
        let mut corrupt = whole;
        corrupt[last] ^= 0x01;
        refused(&ctx, &format!("corrupt-trailer.{format}"), &corrupt, &[], &[]);
    }
}

#[test]
fn wrong_sha256_is_refused() {
    let ctx = deployed();
    let archive = ctx.release(HOSTILE, &[("app.txt", "two\n")]);
    let wrong = "0".repeat(64);
    let run = refused_path(&ctx, &archive, &["--sha256", &wrong], &["sha256 mismatch"]);
    assert!(run.stderr.contains(&wrong), "{}", run.stderr);
    // The right digest deploys.
    let right = sha256_hex(&fs_err::read(&archive).unwrap());
    ctx.deploy(HOSTILE, &archive, &["--sha256", &right]).success();
    assert_eq!(ctx.current().as_deref(), Some(HOSTILE));
}

// --- formats --------------------------------------------------------------------------------

#[test]
fn formats_are_recognised_by_content_not_name() {
    let ctx = deployed();
    let dir = ctx.tree("src-formats", &[("app.txt", "formats\n"), ("bin/tool", "tool\n")]);
    let dir = dir.display().to_string();
    // (file name, what it holds, version)
    let cases = [
        ("x.zip", "gz", "3.0.0"),
        ("y.tar.zst", "zst", "4.0.0"),
        ("plain.tar", "tar", "5.0.0"),
        ("plain.tar.gz", "tar", "6.0.0"),
        ("zstd.tar.gz", "zst", "7.0.0"),
        ("no-extension", "gz", "8.0.0"),
    ];
    for (name, content, version) in cases {
        let packed = ctx.path(&format!("packed-{version}"));
        let format = if content == "gz" { "gz" } else { "zst" };
        ctx.run(&["pack", &dir, "--version", version, "--format", format, "-o", &packed.display().to_string()])
            .success();
        let mut bytes = fs_err::read(&packed).unwrap();
        match content {
            "gz" => assert_eq!(&bytes[..2], &[0x1f, 0x8b]),
            "zst" => assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd]),
            _ => bytes = zstd::decode_all(bytes.as_slice()).unwrap(),
        }
        let archive = ctx.path(name);
        fs_err::write(&archive, bytes).unwrap();
        ctx.deploy(version, &archive, &[]).success();
        assert_eq!(ctx.current().as_deref(), Some(version), "{name}");
        let release = ctx.root().join("releases").join(version);
        assert_eq!(fs_err::read_to_string(release.join("app.txt")).unwrap(), "formats\n", "{name}");
        assert_eq!(fs_err::read_to_string(release.join("bin/tool")).unwrap(), "tool\n", "{name}");
        assert_eq!(fs_err::read_to_string(release.join("VERSION")).unwrap(), format!("{version}\n"), "{name}");
    }
    let mut expected: Vec<&str> = cases.iter().map(|(_, _, version)| *version).collect();
    expected.extend(["current"]);
    // The default retention keeps five releases (current and the previous good one included).
    let dirs = ctx.release_dirs();
    assert!(dirs.iter().all(|d| d == "1.0.0" || expected.contains(&d.as_str())), "{dirs:?}");
    assert!(dirs.iter().any(|d| d == "8.0.0"));
}

// --- what is allowed ------------------------------------------------------------------------

#[test]
fn symlinks_that_stay_inside_are_accepted() {
    let ctx = deployed();
    let release = accepted(
        &ctx,
        &[
            RawEntry::file("lib.so.1", "elf\n"),
            RawEntry::symlink("lib.so", "lib.so.1"),
            RawEntry::dir("sub/"),
            RawEntry::symlink("sub/up", "../x"),
            RawEntry::file("x", "x\n"),
            RawEntry::symlink("here", "."),
            RawEntry::symlink("via", "here/lib.so"),
            RawEntry::dir("a/b/"),
            RawEntry::symlink("a/b/top", "../../sub/../x"),
            RawEntry::symlink("dangling", "not-there"),
        ],
    );
    let link = |name: &str| fs_err::read_link(release.join(name)).unwrap().display().to_string();
    assert_eq!(link("lib.so"), "lib.so.1");
    assert_eq!(link("sub/up"), "../x");
    assert_eq!(link("here"), ".");
    assert_eq!(link("via"), "here/lib.so");
    assert_eq!(link("a/b/top"), "../../sub/../x");
    assert_eq!(link("dangling"), "not-there");
    assert_eq!(fs_err::read_to_string(release.join("lib.so")).unwrap(), "elf\n");
    assert_eq!(fs_err::read_to_string(release.join("sub/up")).unwrap(), "x\n");
    assert_eq!(fs_err::read_to_string(release.join("via")).unwrap(), "elf\n");
    assert_eq!(fs_err::read_to_string(release.join("a/b/top")).unwrap(), "x\n");
    assert_eq!(ctx.release_dirs(), ["1.0.0", HOSTILE, "current"]);
}

#[test]
fn hardlinks_within_the_archive_are_accepted() {
    let ctx = deployed();
    let release = accepted(
        &ctx,
        &[
            RawEntry::dir("d/"),
            RawEntry::file("d/a", "shared\n"),
            RawEntry::hardlink("b", "d/a"),
            RawEntry::hardlink("c", "./d/a"),
        ],
    );
    for name in ["d/a", "b", "c"] {
        assert_eq!(fs_err::read_to_string(release.join(name)).unwrap(), "shared\n");
    }
}
