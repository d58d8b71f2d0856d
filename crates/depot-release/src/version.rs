//! Release version labels: validated before any file-system change, ordered by semver precedence
//! where they are semver (an optional leading `v` is allowed).

use std::cmp::Ordering;

/// A version label that is safe to use as a directory name under `R/releases/`: the registry's
/// own type, so that a label a host accepts is one the registry accepts, and the other way round.
pub use depot_api::names::VersionLabel;
pub use depot_api::semver_order::parse as parse_semver;

/// Orders labels from oldest to newest as the registry does (`depot_api::semver_order`): labels
/// that are not semver first, then semver labels by precedence (build metadata ignored); labels
/// of equal rank in the order given by `fallback` (creation), as the registry keeps push order.
pub fn compare_labels(a: &str, b: &str, fallback: impl FnOnce() -> Ordering) -> Ordering {
    depot_api::semver_order::compare(a, b).then_with(fallback)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_dangerous_labels() {
        for bad in [
            "",
            ".",
            "..",
            "current",
            "a/b",
            "../x",
            "-rf",
            ".hidden",
            "a\nb",
            "a b",
            "a\\b",
            "web:1.0.0",
            &"x".repeat(129),
        ] {
            assert!(VersionLabel::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["1.0.0", "v1.10.0", "2026-11-23", "abc123", "1.0.0-rc.1+build.5"] {
            assert!(VersionLabel::parse(good).is_ok(), "{good:?} should be accepted");
        }
    }

    /// The same labels in the same order as the registry lists them (`depot versions`).
    #[test]
    fn labels_that_are_not_semver_come_first_as_in_the_registry() {
        let mut labels = vec!["2.0.0", "nightly", "01.2.3", "1.0.0", "v1.5.0"];
        labels.sort_by(|a, b| compare_labels(a, b, || Ordering::Equal));
        assert_eq!(labels, ["nightly", "01.2.3", "1.0.0", "v1.5.0", "2.0.0"]);
    }

    #[test]
    fn semver_order_is_numeric_not_alphabetic() {
        let mut labels = vec!["v1.10.0", "v1.9.0", "v1.9.0-rc.1", "v2.0.0", "v1.0.0"];
        labels.sort_by(|a, b| compare_labels(a, b, || a.cmp(b)));
        assert_eq!(labels, ["v1.0.0", "v1.9.0-rc.1", "v1.9.0", "v1.10.0", "v2.0.0"]);
    }

    proptest! {
        #[test]
        fn semver_order_matches_numeric_triples(a in (0u64..30, 0u64..30, 0u64..30), b in (0u64..30, 0u64..30, 0u64..30)) {
            let la = format!("v{}.{}.{}", a.0, a.1, a.2);
            let lb = format!("{}.{}.{}", b.0, b.1, b.2);
            let expected = a.cmp(&b);
            let got = compare_labels(&la, &lb, || Ordering::Equal);
            if expected != Ordering::Equal {
                prop_assert_eq!(got, expected);
            }
        }

        #[test]
        fn accepted_labels_are_single_path_components(label in "\\PC{0,40}") {
            if let Ok(v) = VersionLabel::parse(&label) {
                let path = std::path::Path::new(v.as_str());
                let mut components = path.components();
                prop_assert!(matches!(components.next(), Some(std::path::Component::Normal(_))));
                prop_assert!(components.next().is_none());
                prop_assert!(v.as_str() != "current");
            }
        }
    }
}
