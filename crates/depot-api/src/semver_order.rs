//! How version labels are ordered. A label that is strict SemVer 2.0.0 (optionally after one
//! leading `v`) is ordered by semver precedence, build metadata ignored; any other label keeps
//! push order, before every semver label. The registry lists, bumps and retains by this order.

use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The label as a semver version, if it is one: `1.2.3`, `v1.2.3-rc.1`, `1.2.3+build.5`.
/// Leading zeros (`01.2.3`, `1.2.3-rc.01`) and empty identifiers (`1.2.3-rc..1`) are not semver.
pub fn parse(label: &str) -> Option<semver::Version> {
    semver::Version::parse(label.strip_prefix('v').unwrap_or(label)).ok()
}

/// For a label that looks like a version (`1.2`, `01.2.3`, `V1.2.3`, `1.2.3.4`: an optional `v`,
/// two or more dot-separated numbers, then maybe `-…` or `+…`) but is not semver, and so would
/// move no channel: why, and the semver label that was probably meant, if there is one.
/// `None` for semver labels and for labels that do not look like versions (`nightly`,
/// `2026-11-23`, `abc123`).
pub fn almost_semver(label: &str) -> Option<(String, Option<String>)> {
    if parse(label).is_some() {
        return None;
    }
    let (prefix, rest) = match label.strip_prefix(['v', 'V']) {
        Some(rest) => ("v", rest),
        None => ("", label),
    };
    let split = rest.find(['-', '+']).unwrap_or(rest.len());
    let (core, suffix) = rest.split_at(split);
    let numbers: Vec<&str> = core.split('.').collect();
    if numbers.len() < 2 || numbers.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let why = match numbers.len() {
        2 => "it has two numbers where semver has three".to_owned(),
        n if n > 3 => format!("it has {n} numbers where semver has three"),
        _ if numbers.iter().any(|n| n.len() > 1 && n.starts_with('0')) => "a number has a leading zero".to_owned(),
        _ if label.starts_with('V') => "semver allows only a lowercase `v` before it".to_owned(),
        _ => "its pre-release or build part is not semver".to_owned(),
    };
    let meant = (numbers.len() <= 3)
        .then(|| {
            let mut parts: Vec<u64> = numbers.iter().filter_map(|n| n.parse().ok()).collect();
            parts.resize(3, 0);
            let core = format!("{prefix}{}.{}.{}", parts[0], parts[1], parts[2]);
            [format!("{core}{suffix}"), core].into_iter().find(|candidate| parse(candidate).is_some())
        })
        .flatten();
    Some((why, meant))
}

/// Sorts `items`, given in push order, from oldest to newest by their labels' order. The sort
/// is stable: labels of equal precedence (`1.0.0+a`, `1.0.0+b`) keep push order.
pub fn sort<T>(items: &mut [T], label: impl Fn(&T) -> &str) {
    items.sort_by(|a, b| compare(label(a), label(b)));
}

/// Non-semver labels before semver ones (push order among themselves: equal here), semver
/// labels by precedence.
pub fn compare(a: &str, b: &str) -> Ordering {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a.cmp_precedence(&b),
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (None, None) => Ordering::Equal,
    }
}

/// The version to cut instead of `refused`, a label that already exists with other content:
/// for a stable `X.Y.Z`, the patch after the highest `X.Y.*`; for a pre-release `X.Y.Z-rc.N`,
/// the next `rc` number of `X.Y.Z`. Keeps a leading `v`. `None` when `refused` is not semver.
pub fn next_after<'a>(existing: impl IntoIterator<Item = &'a str>, refused: &str) -> Option<String> {
    let wanted = parse(refused)?;
    let existing: Vec<semver::Version> = existing.into_iter().filter_map(parse).collect();
    let next = if wanted.pre.is_empty() {
        let patch = existing
            .iter()
            .filter(|v| v.pre.is_empty() && v.major == wanted.major && v.minor == wanted.minor)
            .map(|v| v.patch)
            .chain([wanted.patch])
            .max()
            .expect("at least the refused version");
        semver::Version::new(wanted.major, wanted.minor, patch + 1)
    } else {
        // `rc.3` → tag `rc`, number 3; a pre-release without a trailing number gets `.1`.
        let (tag, _) = split_pre(&wanted.pre);
        let number = existing
            .iter()
            .filter(|v| (v.major, v.minor, v.patch) == (wanted.major, wanted.minor, wanted.patch))
            .filter_map(|v| match split_pre(&v.pre) {
                (t, Some(n)) if t == tag => Some(n),
                (t, None) if t == tag => Some(0),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let mut next = semver::Version::new(wanted.major, wanted.minor, wanted.patch);
        next.pre = semver::Prerelease::new(&format!("{tag}.{}", number + 1)).expect("a valid pre-release");
        next
    };
    let prefix = if refused.starts_with('v') { "v" } else { "" };
    Some(format!("{prefix}{next}"))
}

/// The rolling channels of a component from its versions (deprecated ones left out by the
/// caller): `X.Y` → the highest stable `X.Y.*`, `X` → the highest stable `X.*.*` for X ≥ 1, and
/// `latest` → the highest stable version. Pre-releases and other labels move no channel.
pub fn rolling_channels<'a>(labels: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut best: BTreeMap<String, (semver::Version, &'a str)> = BTreeMap::new();
    for label in labels {
        let Some(version) = parse(label).filter(|v| v.pre.is_empty()) else { continue };
        let mut names = vec![format!("{}.{}", version.major, version.minor), "latest".to_owned()];
        if version.major >= 1 {
            names.push(version.major.to_string());
        }
        for name in names {
            let higher =
                best.get(&name).is_none_or(|(current, _)| version.cmp_precedence(current) == Ordering::Greater);
            if higher {
                best.insert(name, (version.clone(), label));
            }
        }
    }
    best.into_iter().map(|(name, (_, label))| (name, label.to_owned())).collect()
}

/// Who moves a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChannelKind {
    /// `latest`, `X.Y`, `X`: recomputed from the versions on every change.
    Rolling,
    /// `edge`, `nightly-YYYY-MM-DD`, `sha-<hex>`: set by `depot push --channel edge`.
    Build,
    /// Any other name, set and removed by an admin.
    Manual,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Rolling => "rolling",
            ChannelKind::Build => "build",
            ChannelKind::Manual => "manual",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [ChannelKind::Rolling, ChannelKind::Build, ChannelKind::Manual].into_iter().find(|k| k.as_str() == text)
    }
}

/// The stage names of a pipeline, which no channel may take.
pub const STAGE_NAMES: &[&str] = &["dev", "staging", "prod"];

/// What kind of channel a name is, by its shape.
pub fn channel_kind(name: &str) -> ChannelKind {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rolling = name == "latest"
        || digits(name)
        || name.split_once('.').is_some_and(|(major, minor)| digits(major) && digits(minor));
    let hex = |s: &str| (7..=40).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let build = name == "edge"
        || name
            .strip_prefix("nightly-")
            .is_some_and(|date| chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").is_ok())
        || name.strip_prefix("sha-").is_some_and(hex);
    if rolling {
        ChannelKind::Rolling
    } else if build {
        ChannelKind::Build
    } else {
        ChannelKind::Manual
    }
}

/// Why `name` cannot be a manual channel, if it cannot: semver versions, the rolling and build
/// names, and stage names are reserved.
pub fn check_manual_channel(name: &str) -> Result<(), String> {
    if parse(name).is_some() {
        return Err(format!("`{name}` is reserved: it is a version"));
    }
    match channel_kind(name) {
        ChannelKind::Rolling => Err(format!("`{name}` is reserved: a rolling channel, moved by stable pushes")),
        ChannelKind::Build => {
            Err(format!("`{name}` is reserved: a build channel, moved by `depot push --channel edge`"))
        }
        ChannelKind::Manual if STAGE_NAMES.contains(&name) => Err(format!("`{name}` is reserved: a stage name")),
        ChannelKind::Manual => Ok(()),
    }
}

/// `rc.3` → (`rc`, Some(3)); `beta` → (`beta`, None); `rc.1.2` → (`rc.1`, Some(2)).
fn split_pre(pre: &semver::Prerelease) -> (&str, Option<u64>) {
    match pre.as_str().rsplit_once('.') {
        Some((tag, number)) if number.bytes().all(|b| b.is_ascii_digit()) => (tag, number.parse().ok()),
        _ => (pre.as_str(), None),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn only_strict_semver_is_semver() {
        for label in ["1.2.3", "v1.2.3", "0.0.1", "1.2.3-rc.1", "1.2.3-rc.1+build.5", "10.20.30-alpha.beta-x.0"] {
            assert!(parse(label).is_some(), "{label}");
        }
        for label in
            ["01.2.3", "1.02.3", "1.2.03", "1.2.3-rc.01", "1.2.3-rc..1", "1.2.3-", "1.2.3+", "1.2", "vv1.2.3", "V1.2.3"]
        {
            assert!(parse(label).is_none(), "{label}");
        }
    }

    #[test]
    fn labels_that_look_like_versions_but_are_not_semver_are_named() {
        let meant = |label: &str| almost_semver(label).map(|(_, meant)| meant);
        assert_eq!(meant("01.2.3"), Some(Some("1.2.3".to_owned())));
        assert_eq!(meant("1.2"), Some(Some("1.2.0".to_owned())));
        assert_eq!(meant("V1.2.3"), Some(Some("v1.2.3".to_owned())));
        assert_eq!(meant("v1.02.0-rc.1"), Some(Some("v1.2.0-rc.1".to_owned())));
        assert_eq!(meant("1.2.3-rc.01"), Some(Some("1.2.3".to_owned())));
        assert_eq!(meant("1.2.3.4"), Some(None));
        for fine in ["1.2.3", "v1.2.3", "1.2.3-rc.1+b.5", "nightly", "2026-11-23", "abc123", "build-7", "1", "v2"] {
            assert_eq!(almost_semver(fine), None, "{fine}");
        }
    }

    #[test]
    fn semver_orders_by_precedence_and_others_by_push_order() {
        let mut labels = vec!["1.10.0", "nightly", "1.2.0", "1.10.0-rc.2", "v1.9.9", "1.10.0-rc.10", "build-7"];
        sort(&mut labels, |l| l);
        assert_eq!(labels, ["nightly", "build-7", "1.2.0", "v1.9.9", "1.10.0-rc.2", "1.10.0-rc.10", "1.10.0"]);
        let mut same = vec!["1.0.0+b", "1.0.0+a"];
        sort(&mut same, |l| l);
        assert_eq!(same, ["1.0.0+b", "1.0.0+a"], "build metadata is ignored: push order");
    }

    #[test]
    fn the_version_to_cut_instead() {
        let existing = ["1.3.9", "1.4.0", "1.4.1", "1.5.0-rc.1", "1.5.0-rc.2", "v2.0.0", "nightly"];
        let next = |refused: &str| next_after(existing, refused);
        assert_eq!(next("1.4.0").as_deref(), Some("1.4.2"));
        assert_eq!(next("1.3.9").as_deref(), Some("1.3.10"), "a maintenance line stays on its line");
        assert_eq!(next("1.5.0-rc.1").as_deref(), Some("1.5.0-rc.3"));
        assert_eq!(next("v2.0.0").as_deref(), Some("v2.0.1"));
        assert_eq!(next_after(["1.0.0-beta"], "1.0.0-beta").as_deref(), Some("1.0.0-beta.1"));
        assert_eq!(next("nightly"), None);
    }

    #[test]
    fn rolling_channels_follow_the_highest_stable_versions() {
        let channels = rolling_channels(["1.4.0", "1.3.9", "1.4.1", "1.5.0-rc.1", "0.9.0", "v2.0.0", "nightly"]);
        let expected: BTreeMap<String, String> = [
            ("0.9", "0.9.0"),
            ("1", "1.4.1"),
            ("1.3", "1.3.9"),
            ("1.4", "1.4.1"),
            ("2", "v2.0.0"),
            ("2.0", "v2.0.0"),
            ("latest", "v2.0.0"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect();
        assert_eq!(channels, expected, "no `0` channel, no pre-release, no other label");
    }

    #[test]
    fn channel_names_have_kinds_and_reserved_ones_are_refused() {
        for (name, kind) in [
            ("latest", ChannelKind::Rolling),
            ("1.4", ChannelKind::Rolling),
            ("2", ChannelKind::Rolling),
            ("edge", ChannelKind::Build),
            ("nightly-2026-11-23", ChannelKind::Build),
            ("sha-3f9c2e1", ChannelKind::Build),
            ("nightly-2026-13-01", ChannelKind::Manual),
            ("sha-xyz", ChannelKind::Manual),
            ("stable", ChannelKind::Manual),
        ] {
            assert_eq!(channel_kind(name), kind, "{name}");
        }
        assert!(check_manual_channel("stable").is_ok());
        for reserved in ["1.4.2", "v2.0.0-rc.1", "latest", "1.4", "edge", "sha-3f9c2e1", "prod", "staging"] {
            assert!(check_manual_channel(reserved).is_err(), "{reserved}");
        }
    }

    fn version() -> impl Strategy<Value = String> {
        (0u64..4, 0u64..4, 0u64..4, proptest::option::of(("(alpha|beta|rc)", 0u64..4)), any::<bool>()).prop_map(
            |(major, minor, patch, pre, v)| {
                let pre = pre.map(|(tag, n)| format!("-{tag}.{n}")).unwrap_or_default();
                format!("{}{major}.{minor}.{patch}{pre}", if v { "v" } else { "" })
            },
        )
    }

    proptest! {
        #[test]
        fn sorting_gives_precedence_order_and_keeps_everything(
            labels in proptest::collection::vec(prop_oneof![version(), "[a-z]{1,6}"], 0..30)
        ) {
            let mut sorted = labels.clone();
            sort(&mut sorted, |l| l.as_str());
            let mut a = sorted.clone();
            let mut b = labels.clone();
            a.sort();
            b.sort();
            prop_assert_eq!(a, b, "a permutation");
            for pair in sorted.windows(2) {
                prop_assert_ne!(compare(&pair[0], &pair[1]), Ordering::Greater, "{:?}", pair);
            }
            // Non-semver labels keep their push order.
            let others: Vec<&String> = labels.iter().filter(|l| parse(l).is_none()).collect();
            let sorted_others: Vec<&String> = sorted.iter().filter(|l| parse(l).is_none()).collect();
            prop_assert_eq!(others, sorted_others);
        }
    }
}
