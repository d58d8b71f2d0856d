//! Release manifests (`R/.depot/manifests/V.json`): any JSON read as a manifest; what reads
//! must write back to the same manifest, and its tree digest must not depend on the order of
//! its entries.
#![no_main]

use depot_release::manifest::{Manifest, tree_digest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<Manifest>(data) else { return };
    let written = serde_json::to_vec(&manifest).expect("a manifest serialises");
    let again: Manifest = serde_json::from_slice(&written).expect("a written manifest reads back");
    assert_eq!(serde_json::to_vec(&again).expect("serialises"), written);
    let _ = manifest.objects().count();
    // Paths are unique in a manifest depot writes; only then is the digest order-independent.
    let paths: std::collections::HashSet<&str> = manifest.entries.iter().map(|e| e.path.as_str()).collect();
    if paths.len() != manifest.entries.len() {
        return;
    }
    let mut reversed = manifest.entries.clone();
    reversed.reverse();
    let mut sorted = manifest.entries.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    reversed.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(tree_digest(&sorted), tree_digest(&reversed));
});
