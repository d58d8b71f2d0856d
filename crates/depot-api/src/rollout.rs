//! How a configuration's new revisions reach its agents: all at once, or rolling (canaries
//! first, then batches, each gated on the agents' health).

use std::fmt;
use std::str::FromStr;

/// A configuration's rollout strategy.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Strategy {
    /// Every agent may run a new revision as soon as it is written.
    #[default]
    All,
    /// Canaries first, then batches.
    Rolling(Rolling),
}

/// A rolling rollout's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rolling {
    /// Hosts that take a new revision first, alone, as a batch of their own.
    pub canary: u32,
    /// The size of each later batch.
    pub batch: Share,
    /// How long every host of a batch must stay active on the new revision before the next
    /// batch starts, in seconds.
    pub bake_seconds: u64,
    /// How long a host of a started batch has to report the new revision active, in seconds;
    /// past it, the host counts as failed.
    pub deadline_seconds: u64,
    /// Failed hosts tolerated over the whole rollout; one more halts it.
    pub max_failures: Share,
    /// What a halt does to the hosts already changed.
    pub on_failure: OnFailure,
}

impl Default for Rolling {
    fn default() -> Self {
        Rolling {
            canary: 1,
            batch: Share::Percent(25),
            bake_seconds: 60,
            deadline_seconds: 600,
            max_failures: Share::Hosts(0),
            on_failure: OnFailure::Halt,
        }
    }
}

/// A number of hosts, or a percentage of the hosts a rollout started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Share {
    Hosts(u32),
    Percent(u8),
}

impl Share {
    /// How many of `total` hosts this is as a batch size: a percentage rounds up, and a batch
    /// holds at least one host.
    pub fn batch_of(self, total: usize) -> usize {
        match self {
            Share::Hosts(n) => n as usize,
            Share::Percent(p) => (total * usize::from(p)).div_ceil(100),
        }
        .max(1)
    }

    /// How many of `total` hosts this is as a failure allowance: a percentage rounds down, so
    /// `10%` of 5 hosts tolerates none.
    pub fn allowance_of(self, total: usize) -> usize {
        match self {
            Share::Hosts(n) => n as usize,
            Share::Percent(p) => total * usize::from(p) / 100,
        }
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Share::Hosts(n) => write!(f, "{n}"),
            Share::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for Share {
    type Err = String;

    /// `3` (hosts) or `25%` (of the hosts the rollout starts with, 1 to 100).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_suffix('%') {
            Some(p) => match p.parse::<u8>() {
                Ok(p @ 1..=100) => Ok(Share::Percent(p)),
                _ => Err(format!("`{s}`: a percentage is 1% to 100%")),
            },
            None => s
                .parse()
                .map(Share::Hosts)
                .map_err(|_| format!("`{s}`: give a number of hosts (3) or a percentage (25%)")),
        }
    }
}

/// What a halted rollout does to the hosts it already changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum OnFailure {
    /// They stay on the new revision; the others stay where they are until `rollout continue`.
    Halt,
    /// They are sent back to the previous revision.
    Revert,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_and_round_as_documented() {
        assert_eq!("3".parse::<Share>().unwrap(), Share::Hosts(3));
        assert_eq!("25%".parse::<Share>().unwrap(), Share::Percent(25));
        for bad in ["0%", "101%", "x", "-1", "%"] {
            assert!(bad.parse::<Share>().is_err(), "{bad}");
        }
        assert_eq!(Share::Percent(25).batch_of(19), 5, "rounds up");
        assert_eq!(Share::Percent(1).batch_of(3), 1, "at least one host");
        assert_eq!(Share::Hosts(0).batch_of(3), 1, "at least one host");
        assert_eq!(Share::Percent(10).allowance_of(5), 0, "rounds down");
        assert_eq!(Share::Percent(10).allowance_of(20), 2);
        assert_eq!(Share::Percent(25).to_string(), "25%");
    }
}
