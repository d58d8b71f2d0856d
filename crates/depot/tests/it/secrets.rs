//! Secrets stay with their owner: the registry's data (environment values, token hashes,
//! environment layers) and a host's release log (hooks' output) are not readable by other local
//! users, from the first start and after an upgrade from looser modes; and the agent masks a
//! stage's environment values in its reports before it cuts them to size.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::common::*;
use crate::serve::{kill9, push, start_with, token};

fn mode(path: &Path) -> u32 {
    fs_err::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Every path below `dir` (and `dir`) with its mode.
fn modes(dir: &Path) -> Vec<(String, u32)> {
    let mut found = vec![(dir.display().to_string(), mode(dir))];
    for entry in walk(dir) {
        found.push((entry.display().to_string(), mode(&entry)));
    }
    found
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            paths.extend(walk(&path));
        }
        paths.push(path);
    }
    paths
}

#[test]
fn the_registry_keeps_its_data_to_its_user_from_the_start_and_tightens_an_older_data_directory() {
    let ctx = TestContext::new();
    let data = ctx.path("data");
    let server = start_with(&ctx, &data, &[]);
    let archive = fs_err::read(ctx.release("1.0.0", &[("a.txt", "a\n")])).unwrap();
    push(&server.address, &token(&data), &archive, "1.0.0");
    for file in ["depot.db", "depot.db-wal", "depot.db-shm"] {
        assert!(data.join(file).is_file(), "{file} exists while the registry runs");
    }
    let found = modes(&data);
    assert!(found.iter().any(|(path, _)| path.contains("/blobs/sha256/")), "{found:?}");
    for (path, mode) in &found {
        let is_dir = Path::new(path).is_dir();
        let expected = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(*mode, expected, "{path} is {mode:04o}, not {expected:04o}; all: {found:?}");
    }
    assert!(!server.stderr.contains("open to other users"), "nothing to tighten on a first start: {}", server.stderr);
    let mut server = server;
    kill9(&mut server);

    // A data directory from before: everything readable by all.
    for (path, _) in &found {
        set_mode(Path::new(path), if Path::new(path).is_dir() { 0o755 } else { 0o644 });
    }
    let server = start_with(&ctx, &data, &[]);
    // What the registry opens is tightened: the data directory, the database and its companions,
    // the blob store's directories. The blob files and fan-out directories below are not walked
    // (a store may hold millions): the 0700 directories above them keep other users out.
    let blobs = data.join("blobs");
    for tightened in [&data, &blobs, &blobs.join("sha256"), &blobs.join("uploads")] {
        assert_eq!(mode(tightened), 0o700, "{}", tightened.display());
    }
    for file in ["depot.db", "depot.db-wal", "depot.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    for tightened in [&data, &data.join("depot.db"), &blobs] {
        let notice = format!("{} was open to other users (mode 0", tightened.display());
        assert!(server.stderr.contains(&notice), "a warning names {}: {}", tightened.display(), server.stderr);
    }
}

#[test]
fn the_release_log_is_private_from_the_start_and_an_older_one_is_tightened() {
    let ctx = TestContext::new();
    let archive = ctx.release("1.0.0", &[("a.txt", "a\n")]);
    ctx.deploy("1.0.0", &archive, &["--post-activate", "echo SECRET=hunter2-value"]).success();
    let log = ctx.root().join("logs/releases.log");
    assert!(fs_err::read_to_string(&log).unwrap().contains("hunter2-value"), "the log records the hook's output");
    assert_eq!(mode(&log), 0o600);

    // A log from before: readable by all, then tightened by the next command, which says so.
    set_mode(&log, 0o644);
    ctx.deploy("2.0.0", &ctx.release("2.0.0", &[("a.txt", "b\n")]), &[]).success();
    assert_eq!(mode(&log), 0o640, "others lose read access; the owner's group keeps what it had");
    let text = fs_err::read_to_string(&log).unwrap();
    assert!(
        text.contains("logs/releases.log was open to other users (mode 0644); changed to 0640"),
        "the log says so:\n{text}"
    );
    // A mode given on purpose within the rule (group readable) stays, with no notice.
    ctx.run(&["rollback", "--root", &ctx.root_str()]).success();
    assert_eq!(mode(&log), 0o640);
    assert_eq!(fs_err::read_to_string(&log).unwrap().matches("was open to other users").count(), 1);
}
