//! Layer listings (`R/.depot/layers/SHA.json`): any JSON read as a listing and replayed into a
//! staging directory. Every entry goes through the path checks; nothing may be written outside
//! the staging directory, and no file may keep a write, setuid, setgid or sticky bit.
#![no_main]

use std::os::unix::fs::PermissionsExt;

use depot_release::manifest::{EntryKind, ManifestEntry};
use depot_release::stage::{Limits, Stager};
use depot_release::store::ContentStore;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_files: 200, max_bytes: 1024 * 1024 };

fuzz_target!(|data: &[u8]| {
    let Ok(listing) = serde_json::from_slice::<Vec<ManifestEntry>>(data) else { return };
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = ContentStore::new(&dir.path().join("store"));
    store.create_dirs().expect("the store's directories");
    // One object in the store, under every mode a listing may name, so that files get placed.
    let (sha256, _) = store.put_bytes(b"content", 0o444).expect("an object");
    for entry in &listing {
        if let EntryKind::File { mode, sha256: named, .. } = &entry.kind
            && *named == sha256
            && *mode <= 0o7777
        {
            let _ = store.put_bytes(b"content", *mode);
        }
    }
    let staging = dir.path().join("staging");
    let mut stager = Stager::create(&store, staging.clone(), LIMITS, true).expect("staging directory");
    if stager.replay_layer(&"0".repeat(64), &listing).and_then(|()| stager.finish()).is_ok() {
        for entry in walk(&staging) {
            let metadata = std::fs::symlink_metadata(&entry).expect("metadata");
            if metadata.is_file() {
                let mode = metadata.permissions().mode() & 0o7777;
                assert_eq!(mode & 0o7222, 0, "{} has mode {mode:o}", entry.display());
            }
        }
    }
    // Nothing outside the staging directory but the store.
    for entry in std::fs::read_dir(dir.path()).expect("the temporary directory") {
        let name = entry.expect("an entry").file_name();
        assert!(name == "store" || name == "staging", "{name:?} written outside the staging directory");
    }
});

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("a staged directory") {
            let path = entry.expect("an entry").path();
            if std::fs::symlink_metadata(&path).expect("metadata").is_dir() {
                pending.push(path.clone());
            }
            found.push(path);
        }
    }
    found
}
