//! Release version labels: validated before any file-system change, ordered by semver precedence
//! where they are semver (an optional leading `v` is allowed).

use std::cmp::Ordering;
use std::fmt;

use crate::{Error, Result};

/// The longest version label accepted, in bytes.
pub const MAX_VERSION_LEN: usize = 128;

/// A version label that is safe to use as a directory name under `R/releases/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseVersion(String);

impl ReleaseVersion {
    pub fn parse(label: &str) -> Result<Self> {
        let refuse = |reason| Err(Error::InvalidVersion { version: label.escape_debug().to_string(), reason });
        if label.is_empty() {
            return refuse("it is empty");
        }
        if label.len() > MAX_VERSION_LEN {
            return refuse("it is longer than 128 bytes");
        }
        if label == "current" {
            return refuse("`current` is the name of the active-release symlink");
        }
        if label.starts_with('.') {
            return refuse("it starts with `.` (`.`, `..` and hidden names are reserved)");
        }
        if label.starts_with('-') {
            return refuse("it starts with `-`");
        }
        if label.contains('/') || label.contains('\\') {
            return refuse("it contains a path separator");
        }
        if label.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return refuse("it contains whitespace or control characters");
        }
        Ok(ReleaseVersion(label.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The semver reading of this label, if it is one (`1.2.3`, `v1.2.3-rc.1`).
    pub fn semver(&self) -> Option<semver::Version> {
        parse_semver(&self.0)
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ReleaseVersion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ReleaseVersion::parse(s)
    }
}

impl TryFrom<String> for ReleaseVersion {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ReleaseVersion::parse(&s)
    }
}

impl From<ReleaseVersion> for String {
    fn from(v: ReleaseVersion) -> String {
        v.0
    }
}

/// Strict SemVer 2.0.0 with an optional leading `v`.
pub fn parse_semver(label: &str) -> Option<semver::Version> {
    semver::Version::parse(label.strip_prefix('v').unwrap_or(label)).ok()
}

/// Orders labels from oldest to newest as the registry does (`depot_api::semver_order`): labels
/// that are not semver first, in the order given by `fallback` (creation), then semver labels by
/// precedence (build metadata ignored).
pub fn compare_labels(a: &str, b: &str, fallback: impl FnOnce() -> Ordering) -> Ordering {
    match (parse_semver(a), parse_semver(b)) {
        (Some(x), Some(y)) => x.cmp_precedence(&y).then_with(|| a.cmp(b)),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => fallback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_dangerous_labels() {
        for bad in ["", ".", "..", "current", "a/b", "../x", "-rf", ".hidden", "a\nb", "a b", "a\\b", &"x".repeat(129)]
        {
            assert!(ReleaseVersion::parse(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["1.0.0", "v1.10.0", "2026-11-23", "abc123", "1.0.0-rc.1+build.5"] {
            assert!(ReleaseVersion::parse(good).is_ok(), "{good:?} should be accepted");
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
            let got = compare_labels(&la, &lb, || unreachable!());
            if expected != Ordering::Equal {
                prop_assert_eq!(got, expected);
            }
        }

        #[test]
        fn accepted_labels_are_single_path_components(label in "\\PC{0,40}") {
            if let Ok(v) = ReleaseVersion::parse(&label) {
                let path = std::path::Path::new(v.as_str());
                let mut components = path.components();
                prop_assert!(matches!(components.next(), Some(std::path::Component::Normal(_))));
                prop_assert!(components.next().is_none());
                prop_assert!(v.as_str() != "current");
            }
        }
    }
}
