//! The archive reader: any bytes, unpacked into a staging directory the way `depot deploy`
//! does, and checked the way the registry checks an upload, within small limits. Nothing may
//! panic, hang or hold more memory than the limits allow (libFuzzer's -rss_limit_mb).
#![no_main]

use depot_release::progress::NoProgress;
use depot_release::stage::{Limits, Stager};
use depot_release::store::ContentStore;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_files: 200, max_bytes: 1024 * 1024 };

fuzz_target!(|data: &[u8]| {
    let checked = depot_release::archive::check_readable(data, LIMITS);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = ContentStore::new(&dir.path().join("store"));
    store.create_dirs().expect("the store's directories");
    let mut stager = Stager::create(&store, dir.path().join("staging"), LIMITS, false).expect("staging directory");
    let staged = stager.add_layer(&mut &data[..], &NoProgress).and_then(|_| stager.finish());
    // Whatever unpacks was readable: the registry's check never refuses what a host accepts.
    if staged.is_ok() {
        assert!(checked.is_ok(), "unpacked but refused by the check: {checked:?}");
    }
});
