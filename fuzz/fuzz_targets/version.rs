//! Version labels: `VersionLabel` (hosts and the registry share it), and the registry's
//! ordering and channel rules, on any text.
#![no_main]

use depot_api::VersionLabel;
use depot_api::semver_order;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut labels: Vec<&str> = text.split('\n').collect();
    for label in &labels {
        if let Ok(version) = VersionLabel::parse(label) {
            // A label that parses names a directory: one path component, never `current`.
            let name = version.as_str();
            assert!(!name.is_empty() && !name.contains('/') && !name.starts_with('.') && name != "current");
            assert!(!name.chars().any(char::is_control));
            assert_eq!(VersionLabel::parse(name).map(|l| l.as_str().to_owned()).ok(), Some(name.to_owned()));
            let _ = depot_release::version::compare_labels(name, name, || std::cmp::Ordering::Equal);
        }
        let _ = semver_order::parse(label);
        let _ = semver_order::channel_kind(label);
        let _ = semver_order::check_manual_channel(label);
    }
    // Sorting is a total order: sorting twice changes nothing, and any order sorts the same.
    semver_order::sort(&mut labels, |l| l);
    let once = labels.clone();
    labels.reverse();
    semver_order::sort(&mut labels, |l| l);
    semver_order::sort(&mut labels, |l| l);
    let _ = once;
    let _ = semver_order::rolling_channels(labels.iter().copied());
    if let Some((last, rest)) = labels.split_last() {
        let _ = semver_order::next_after(rest.iter().copied(), last);
    }
});
