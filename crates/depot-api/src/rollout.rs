//! How a configuration's new revisions reach its agents: all at once, or rolling (canaries
//! first, then batches, each gated on the agents' health).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::types::AgentState;
use crate::{ConfigName, HostName};

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
    #[serde(deserialize_with = "crate::bounded::count")]
    pub canary: u32,
    /// The size of each later batch: hosts (`3`) or a percentage of them (`25%`).
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9]{1,9}%?$", example = "25%"))]
    pub batch: Share,
    /// How long every host of a batch must stay active on the new revision before the next
    /// batch starts, in seconds.
    #[serde(deserialize_with = "crate::bounded::revision")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub bake_seconds: u64,
    /// How long a host of a started batch has to report the new revision active, in seconds;
    /// past it, the host counts as failed.
    #[serde(deserialize_with = "crate::bounded::revision")]
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64, minimum = 0))]
    pub deadline_seconds: u64,
    /// Failed hosts tolerated over the whole rollout (`0`, `10%`); one more halts it.
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9]{1,9}%?$", example = "0"))]
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

/// The longest bake time or deadline a rolling strategy may set: a week.
pub const MAX_ROLLOUT_SECONDS: u64 = 7 * 24 * 3600;

impl Rolling {
    /// What is wrong with these settings, if anything.
    pub fn check(&self) -> Result<(), String> {
        for (what, share) in [("batch", self.batch), ("max-failures", self.max_failures)] {
            if let Share::Percent(p) = share
                && !(1..=100).contains(&p)
            {
                return Err(format!("{what} {p}%: a percentage is 1% to 100%"));
            }
        }
        if self.batch == Share::Hosts(0) {
            return Err("batch 0: a batch holds at least one host".to_owned());
        }
        if self.deadline_seconds == 0 {
            return Err("deadline 0s: hosts need some time to deploy".to_owned());
        }
        for (what, seconds) in [("bake", self.bake_seconds), ("deadline", self.deadline_seconds)] {
            if seconds > MAX_ROLLOUT_SECONDS {
                return Err(format!("{what} {seconds}s: at most {MAX_ROLLOUT_SECONDS}s (a week)"));
            }
        }
        Ok(())
    }
}

/// A number of hosts (`3`), or a percentage of the hosts a rollout started with (`25%`), as
/// the command line writes them.
/// (In the OpenAPI document: a string, `^[0-9]{1,9}%?$`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Share {
    Hosts(u32),
    /// 1 to 100 (checked with the rest of the strategy).
    Percent(u32),
}

impl Share {
    /// How many of `total` hosts this is as a batch size: a percentage rounds up, and a batch
    /// holds at least one host.
    pub fn batch_of(self, total: usize) -> usize {
        match self {
            Share::Hosts(n) => n as usize,
            Share::Percent(p) => (total * p.min(100) as usize).div_ceil(100),
        }
        .max(1)
    }

    /// How many of `total` hosts this is as a failure allowance: a percentage rounds down, so
    /// `10%` of 5 hosts tolerates none.
    pub fn allowance_of(self, total: usize) -> usize {
        match self {
            Share::Hosts(n) => n as usize,
            Share::Percent(p) => total * p.min(100) as usize / 100,
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

impl TryFrom<String> for Share {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<Share> for String {
    fn from(share: Share) -> String {
        share.to_string()
    }
}

impl FromStr for Share {
    type Err = String;

    /// `3` (hosts) or `25%` (of the hosts the rollout starts with, 1 to 100).
    fn from_str(s: &str) -> Result<Self, String> {
        match s.strip_suffix('%') {
            // Any percentage parses; `Rolling::check` says which are allowed (1% to 100%).
            Some(p) => p.parse::<u32>().map(Share::Percent).map_err(|_| format!("`{s}`: a percentage is 1% to 100%")),
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

impl Strategy {
    pub fn is_all(&self) -> bool {
        matches!(self, Strategy::All)
    }
}

impl fmt::Display for Strategy {
    /// `all`, or `rolling: canary 1, batch 25%, bake 60s, deadline 600s, max-failures 0, on-failure halt`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::All => f.write_str("all (every agent at once)"),
            Strategy::Rolling(r) => write!(
                f,
                "rolling: canary {}, batch {}, bake {}s, deadline {}s, max-failures {}, on-failure {}",
                r.canary,
                r.batch,
                r.bake_seconds,
                r.deadline_seconds,
                r.max_failures,
                match r.on_failure {
                    OnFailure::Halt => "halt",
                    OnFailure::Revert => "revert",
                }
            ),
        }
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RolloutPhase {
    /// Batches start as the ones before them bake.
    Running,
    /// Held by `depot rollout pause`.
    Paused,
    /// Stopped by failures; the hosts changed stay on the new revision.
    Halted,
    /// Stopped by failures; every host is back on the revision it ran before.
    Reverted,
    /// Ended by `depot rollout abort`; every host is back on the revision it ran before.
    Aborted,
    /// Every batch baked: every host may run the new revision.
    Completed,
}

impl RolloutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutPhase::Running => "running",
            RolloutPhase::Paused => "paused",
            RolloutPhase::Halted => "halted",
            RolloutPhase::Reverted => "reverted",
            RolloutPhase::Aborted => "aborted",
            RolloutPhase::Completed => "completed",
        }
    }
}

/// `GET /api/v1/configs/{name}/rollout`: a configuration's latest rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutStatus {
    pub config: ConfigName,
    /// The revision the hosts ran before (each host's own, after a rollout it superseded).
    pub from: u64,
    /// The revision being rolled out.
    pub to: u64,
    pub phase: RolloutPhase,
    /// Why failures stopped it (halted or reverted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub strategy: Rolling,
    pub started_at: DateTime<Utc>,
    /// When the newest started batch started.
    pub batch_started_at: DateTime<Utc>,
    /// Batches started so far.
    pub started_batches: u32,
    pub batches: Vec<BatchStatus>,
    /// What happened, oldest first: batches started, hosts failed, halts, reverts, actions.
    #[serde(default)]
    pub steps: Vec<RolloutStep>,
}

/// One line of a rollout's history.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RolloutStep {
    pub at: DateTime<Utc>,
    /// Who: a token's name, or `registry` for the steps it takes by itself.
    pub actor: String,
    pub summary: String,
}

/// One batch of a rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchStatus {
    /// From 1; the canaries' batch comes first.
    pub number: u32,
    pub started: bool,
    pub hosts: Vec<HostRollout>,
}

/// One host in a rollout.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostRollout {
    pub host: HostName,
    /// The revision the registry lets this host run now.
    pub target: u64,
    /// The revision the host last reported, and its state then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<AgentState>,
    /// Why the rollout counts this host as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// `POST /api/v1/configs/{name}/rollout`: what to do to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RolloutAction {
    Pause,
    Resume,
    Abort,
    /// Go on past a halt, forgiving the failures so far.
    Continue,
}

/// The body of `POST /api/v1/configs/{name}/rollout`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    pub action: RolloutAction,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_parse_and_round_as_documented() {
        assert_eq!("3".parse::<Share>().unwrap(), Share::Hosts(3));
        assert_eq!("25%".parse::<Share>().unwrap(), Share::Percent(25));
        for bad in ["x", "-1", "%", "1.5%"] {
            assert!(bad.parse::<Share>().is_err(), "{bad}");
        }
        assert_eq!(serde_json::to_string(&Share::Percent(25)).unwrap(), "\"25%\"");
        assert_eq!(serde_json::from_str::<Share>("\"3\"").unwrap(), Share::Hosts(3));
        let strategy = r#"{"kind":"rolling","canary":1,"batch":"25%","bake_seconds":0,"deadline_seconds":9,
            "max_failures":"0","on_failure":"halt"}"#;
        assert!(serde_json::from_str::<Strategy>(strategy).is_ok(), "{strategy}");
        assert_eq!(Share::Percent(25).batch_of(19), 5, "rounds up");
        assert_eq!(Share::Percent(1).batch_of(3), 1, "at least one host");
        assert_eq!(Share::Hosts(0).batch_of(3), 1, "at least one host");
        assert_eq!(Share::Percent(10).allowance_of(5), 0, "rounds down");
        assert_eq!(Share::Percent(10).allowance_of(20), 2);
        assert_eq!(Share::Percent(25).to_string(), "25%");
    }
}
