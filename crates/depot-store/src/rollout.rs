//! A rolling rollout's decisions, as plain functions over plain data: how the hosts known at its
//! start form batches, which revision each host may run, and what the agents' reports do to it
//! (a batch baked, a host failed or timed out, a halt, a revert). The store keeps a [`Rollout`]
//! with its configuration, steps it when a report arrives or a deadline passes, and answers each
//! agent's blocking query with [`Rollout::revision_for`]; everything here is tested with no
//! database.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};
use depot_api::HostName;
use depot_api::rollout::{OnFailure, Rolling};
use depot_api::types::AgentState;

/// One rollout of a configuration from revision `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rollout {
    /// The revision hosts ran before, unless `baseline` names another for them.
    pub from: u64,
    pub to: u64,
    /// Hosts that ran another revision than `from` when this rollout began (it superseded a
    /// rollout that had not finished): each goes back to, or stays on, its own.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub baseline: BTreeMap<HostName, u64>,
    pub strategy: Rolling,
    /// Grows with every change the store writes, so that watchers can tell a newer state.
    #[serde(default)]
    pub seq: u64,
    pub started_at: DateTime<Utc>,
    /// The hosts in batches, canaries first; formed at the start, later joiners in the last.
    pub batches: Vec<Vec<HostName>>,
    /// How many batches have started (the hosts of those may run `to`).
    pub started: usize,
    /// When the newest started batch started.
    pub batch_started_at: DateTime<Utc>,
    /// Hosts counted as failed, with the reason.
    pub failed: BTreeMap<HostName, String>,
    /// Hosts that failed before a `continue`: left out of the checks from then on, and no
    /// longer counted against `max_failures`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub forgiven: BTreeSet<HostName>,
    /// Hosts that joined after the start, and when: their deadline and bake time count from
    /// then if their batch had already started.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub joined: BTreeMap<HostName, DateTime<Utc>>,
    pub phase: Phase,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "phase", rename_all = "lowercase")]
pub enum Phase {
    Running,
    Paused,
    /// Stopped by failures; the hosts changed stay on `to` (on-failure halt).
    Halted {
        reason: String,
    },
    /// Stopped by failures; every host is sent back to `from` (on-failure revert).
    Reverted {
        reason: String,
    },
    Aborted,
    Completed,
}

/// What an agent last reported: the revision it runs or tried, its state, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostReport {
    pub revision: u64,
    pub state: AgentState,
    pub since: DateTime<Utc>,
}

impl Rollout {
    /// Starts a rollout from `from` to `to` over `hosts` (the agents known now), in a stable
    /// order: the first `canary` hosts by name form a batch of their own, the rest follow in
    /// batches of `strategy.batch` (a percentage of all the hosts). The first batch starts now.
    pub fn start(
        from: u64,
        to: u64,
        strategy: Rolling,
        hosts: impl IntoIterator<Item = HostName>,
        now: DateTime<Utc>,
    ) -> Self {
        let hosts: Vec<HostName> = hosts.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        let canaries = (strategy.canary as usize).min(hosts.len());
        let size = strategy.batch.batch_of(hosts.len());
        let mut batches: Vec<Vec<HostName>> = Vec::new();
        if canaries > 0 {
            batches.push(hosts[..canaries].to_vec());
        }
        batches.extend(hosts[canaries..].chunks(size).map(<[HostName]>::to_vec));
        let phase = if batches.is_empty() { Phase::Completed } else { Phase::Running };
        Rollout {
            from,
            to,
            baseline: BTreeMap::new(),
            strategy,
            seq: 0,
            started_at: now,
            started: usize::from(!batches.is_empty()),
            batches,
            batch_started_at: now,
            failed: BTreeMap::new(),
            forgiven: BTreeSet::new(),
            joined: BTreeMap::new(),
            phase,
        }
    }

    /// The revision `host` ran when this rollout began.
    pub fn from_for(&self, host: &HostName) -> u64 {
        self.baseline.get(host).copied().unwrap_or(self.from)
    }

    /// The revision `host` may run now.
    pub fn revision_for(&self, host: &HostName) -> u64 {
        match self.phase {
            Phase::Reverted { .. } | Phase::Aborted => self.from_for(host),
            Phase::Completed => self.to,
            Phase::Running | Phase::Paused | Phase::Halted { .. } => {
                if self.in_started_batch(host) {
                    self.to
                } else {
                    self.from_for(host)
                }
            }
        }
    }

    /// Whether `host` is in a batch that has started.
    pub fn in_started_batch(&self, host: &HostName) -> bool {
        self.batches[..self.started].iter().any(|batch| batch.contains(host))
    }

    /// Every revision some host may be told to run under this rollout.
    pub fn revisions(&self) -> BTreeSet<u64> {
        let mut revisions: BTreeSet<u64> = self.baseline.values().copied().collect();
        revisions.extend([self.from, self.to]);
        revisions
    }

    /// Whether the rollout has ended, one way or another (nothing more moves by itself).
    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Reverted { .. } | Phase::Aborted | Phase::Completed)
    }

    /// Stops a running rollout where it is: started batches keep the new revision, nothing else
    /// moves until [`Rollout::resume`].
    pub fn pause(&mut self) -> Result<String, String> {
        match self.phase {
            Phase::Running => {
                self.phase = Phase::Paused;
                Ok(format!("rollout to revision {} paused in batch {}", self.to, self.started))
            }
            _ => Err(format!("the rollout is {}, not running: only a running rollout can be paused", self.phase)),
        }
    }

    /// Goes on with a paused rollout; the current batch's deadline and bake time start again.
    pub fn resume(&mut self, now: DateTime<Utc>) -> Result<String, String> {
        match self.phase {
            Phase::Paused => {
                self.phase = Phase::Running;
                self.batch_started_at = now;
                Ok(format!("rollout to revision {} resumed in batch {}", self.to, self.started))
            }
            _ => Err(format!(
                "the rollout is {}, not paused: `rollout resume` goes on after `rollout pause`",
                self.phase
            )),
        }
    }

    /// Ends a rollout that has not finished: every host goes back to (or stays on) the revision
    /// it ran before.
    pub fn abort(&mut self) -> Result<String, String> {
        if self.finished() {
            return Err(format!("the rollout is already {}", self.phase));
        }
        self.phase = Phase::Aborted;
        Ok(format!(
            "rollout to revision {} aborted in batch {}: every host goes back to the revision it ran before",
            self.to, self.started
        ))
    }

    /// A host that was not known at the start joins the last batch: it runs its starting
    /// revision until that batch starts, at once if it has (its deadline and bake time then
    /// count from now). A rollout that is not running, and whose last batch has started, gets a
    /// new last batch for it instead, so that a halt or a pause holds it back too. Returns
    /// whether it was added.
    pub fn join(&mut self, host: HostName, now: DateTime<Utc>) -> bool {
        if self.batches.iter().any(|batch| batch.contains(&host)) {
            return false;
        }
        let last_started = self.started == self.batches.len();
        if self.batches.is_empty() || (last_started && self.phase != Phase::Running) {
            self.batches.push(vec![host.clone()]);
        } else {
            self.batches.last_mut().expect("not empty").push(host.clone());
        }
        self.joined.insert(host, now);
        true
    }

    fn total(&self) -> usize {
        self.batches.iter().map(Vec::len).sum()
    }

    /// Moves a running rollout on from the agents' latest `reports` at `now`: fails the hosts of
    /// the started batch that reported a failure on `to` or have not reported it active within
    /// the deadline, halts (or reverts) past `max_failures`, and starts the next batch once every
    /// host of this one has been active on `to` for the bake time. Returns what happened, for
    /// the history; nothing when nothing did.
    pub fn step(&mut self, reports: &BTreeMap<HostName, HostReport>, now: DateTime<Utc>) -> Vec<String> {
        let mut events = Vec::new();
        loop {
            if self.phase != Phase::Running {
                return events;
            }
            let bake = seconds(self.strategy.bake_seconds);
            let batch = self.started - 1;
            let mut baked = true;
            for host in self.batches[batch].clone() {
                if self.failed.contains_key(&host) || self.forgiven.contains(&host) {
                    continue;
                }
                // A host that joined a started batch counts from when it joined.
                let start = self.joined.get(&host).map_or(self.batch_started_at, |&at| at.max(self.batch_started_at));
                let deadline = start + seconds(self.strategy.deadline_seconds);
                let report = reports.get(&host).filter(|r| r.revision == self.to);
                let failure = match report {
                    Some(r)
                        if matches!(r.state, AgentState::Failed | AgentState::RolledBack | AgentState::Untrusted) =>
                    {
                        Some(format!("{} on revision {}", r.state.as_str(), self.to))
                    }
                    Some(r) if r.state == AgentState::Active => {
                        baked &= now - r.since.max(start) >= bake;
                        None
                    }
                    _ if now >= deadline => Some(format!(
                        "did not report revision {} active within {}s",
                        self.to, self.strategy.deadline_seconds
                    )),
                    _ => {
                        baked = false;
                        None
                    }
                };
                if let Some(reason) = failure {
                    events.push(format!("host {host} failed in batch {}: {reason}", batch + 1));
                    self.failed.insert(host, reason);
                }
            }
            let allowed = self.strategy.max_failures.allowance_of(self.total());
            if self.failed.len() > allowed {
                let reason = format!(
                    "{} host(s) failed, more than the {} allowed (max-failures {})",
                    self.failed.len(),
                    allowed,
                    self.strategy.max_failures
                );
                events.push(match self.strategy.on_failure {
                    OnFailure::Halt => format!("rollout halted in batch {}: {reason}", batch + 1),
                    OnFailure::Revert => format!(
                        "rollout reverted in batch {}: {reason}; hosts of batches 1-{} go back to revision {}",
                        batch + 1,
                        batch + 1,
                        self.from
                    ),
                });
                self.phase = match self.strategy.on_failure {
                    OnFailure::Halt => Phase::Halted { reason },
                    OnFailure::Revert => Phase::Reverted { reason },
                };
                return events;
            }
            if !baked {
                return events;
            }
            if self.started == self.batches.len() {
                events.push(format!("rollout to revision {} completed", self.to));
                self.phase = Phase::Completed;
                return events;
            }
            self.started += 1;
            self.batch_started_at = now;
            events.push(format!(
                "batch {} of {} started: {}",
                self.started,
                self.batches.len(),
                self.batches[self.started - 1].iter().map(HostName::as_str).collect::<Vec<_>>().join(", ")
            ));
            // A batch of hosts that already run `to` (say, after a resume) may pass at once.
        }
    }

    /// Goes on past a halt (after a fix): the hosts failed so far are forgiven (left out of the
    /// checks, not counted against `max_failures`: a host that has left the fleet does not halt
    /// the rollout again) and the halted batch's deadline and bake time start again now.
    pub fn continue_after_halt(&mut self, now: DateTime<Utc>) -> Result<String, String> {
        if !matches!(self.phase, Phase::Halted { .. }) {
            return Err(format!("the rollout is {}, not halted: `rollout continue` goes on past a halt", self.phase));
        }
        let forgiven: Vec<String> = self.failed.keys().map(HostName::to_string).collect();
        self.forgiven.extend(std::mem::take(&mut self.failed).into_keys());
        self.batch_started_at = now;
        self.phase = Phase::Running;
        Ok(format!(
            "rollout to revision {} continued in batch {} (failures forgiven: {})",
            self.to,
            self.started,
            if forgiven.is_empty() { "none".to_owned() } else { forgiven.join(", ") }
        ))
    }
}

impl Phase {
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::Running => "running",
            Phase::Paused => "paused",
            Phase::Halted { .. } => "halted",
            Phase::Reverted { .. } => "reverted",
            Phase::Aborted => "aborted",
            Phase::Completed => "completed",
        }
    }

    /// Why the rollout stopped, when failures stopped it.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Phase::Halted { reason } | Phase::Reverted { reason } => Some(reason),
            _ => None,
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn seconds(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

#[cfg(test)]
mod tests {
    use depot_api::rollout::Share;

    use super::*;

    fn host(i: usize) -> HostName {
        HostName::parse(&format!("web-{i:02}")).unwrap()
    }

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn rolling(canary: u32, batch: Share, max_failures: Share, on_failure: OnFailure) -> Rolling {
        Rolling { canary, batch, bake_seconds: 2, deadline_seconds: 30, max_failures, on_failure }
    }

    fn report(revision: u64, state: AgentState, since: i64) -> HostReport {
        HostReport { revision, state, since: t(since) }
    }

    /// Every host of the started batches active on `to` since `since`.
    fn all_active(r: &Rollout, since: i64) -> BTreeMap<HostName, HostReport> {
        r.batches[..r.started].iter().flatten().map(|h| (h.clone(), report(r.to, AgentState::Active, since))).collect()
    }

    #[test]
    fn batches_put_canaries_alone_first_in_name_order() {
        let r = Rollout::start(
            1,
            2,
            rolling(1, Share::Percent(25), Share::Hosts(0), OnFailure::Halt),
            (0..20).rev().map(host),
            t(0),
        );
        let sizes: Vec<usize> = r.batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, [1, 5, 5, 5, 4], "a canary, then 25% of 20 hosts per batch");
        assert_eq!(r.batches[0], [host(0)]);
        assert_eq!(r.revision_for(&host(0)), 2);
        assert!((1..20).all(|i| r.revision_for(&host(i)) == 1), "nobody but the canary moves");
    }

    #[test]
    fn a_failing_canary_halts_the_rollout_with_no_other_host_touched() {
        let mut r = Rollout::start(
            1,
            2,
            rolling(1, Share::Percent(25), Share::Hosts(0), OnFailure::Halt),
            (0..20).map(host),
            t(0),
        );
        let reports = BTreeMap::from([(host(0), report(2, AgentState::RolledBack, 5))]);
        let events = r.step(&reports, t(6));
        assert!(matches!(r.phase, Phase::Halted { .. }), "{:?}", r.phase);
        assert!(events.iter().any(|e| e.contains("host web-00 failed in batch 1")), "{events:?}");
        assert!(events.iter().any(|e| e.contains("rollout halted in batch 1")), "{events:?}");
        assert!((1..20).all(|i| r.revision_for(&host(i)) == 1), "19 hosts never touched");
        assert_eq!(r.revision_for(&host(0)), 2, "halt leaves the canary where it is");
    }

    #[test]
    fn batches_start_after_the_bake_time_and_the_rollout_completes() {
        let mut r =
            Rollout::start(1, 2, rolling(1, Share::Hosts(2), Share::Hosts(0), OnFailure::Halt), (0..5).map(host), t(0));
        assert!(r.step(&all_active(&r, 1), t(2)).is_empty(), "active for 1s of 2: still baking");
        let events = r.step(&all_active(&r, 1), t(3));
        assert_eq!(events, ["batch 2 of 3 started: web-01, web-02"]);
        assert_eq!(r.revision_for(&host(1)), 2);
        assert_eq!(r.revision_for(&host(3)), 1);
        // An active report from before the batch started counts from the batch's start.
        let events = r.step(&all_active(&r, 0), t(5));
        assert_eq!(events, ["batch 3 of 3 started: web-03, web-04"]);
        let events = r.step(&all_active(&r, 5), t(7));
        assert_eq!(events, ["rollout to revision 2 completed"]);
        assert_eq!(r.phase, Phase::Completed);
        assert!((0..5).all(|i| r.revision_for(&host(i)) == 2));
    }

    #[test]
    fn a_failure_in_batch_two_with_revert_sends_batches_one_and_two_back() {
        let mut r = Rollout::start(
            1,
            2,
            rolling(1, Share::Percent(25), Share::Hosts(0), OnFailure::Revert),
            (0..20).map(host),
            t(0),
        );
        r.step(&all_active(&r, 0), t(2));
        assert_eq!(r.started, 2);
        let mut reports = all_active(&r, 2);
        let failing = r.batches[1][2].clone();
        reports.insert(failing.clone(), report(2, AgentState::Failed, 3));
        let events = r.step(&reports, t(4));
        assert!(matches!(r.phase, Phase::Reverted { .. }), "{:?}", r.phase);
        assert!(events.iter().any(|e| e.contains(&format!("host {failing} failed in batch 2"))), "{events:?}");
        assert!((0..20).all(|i| r.revision_for(&host(i)) == 1), "every host back on, or still on, revision 1");
    }

    #[test]
    fn a_host_that_does_not_report_within_the_deadline_fails_and_failures_within_the_allowance_pass() {
        let mut r =
            Rollout::start(1, 2, rolling(0, Share::Hosts(3), Share::Hosts(1), OnFailure::Halt), (0..6).map(host), t(0));
        let mut reports = all_active(&r, 1);
        reports.remove(&host(2)); // killed mid-batch: never reports
        assert!(r.step(&reports, t(10)).is_empty(), "waits for it until the deadline");
        let events = r.step(&reports, t(30));
        assert_eq!(events[0], "host web-02 failed in batch 1: did not report revision 2 active within 30s");
        assert_eq!(events[1], "batch 2 of 2 started: web-03, web-04, web-05", "one failure is allowed");
        let mut reports = all_active(&r, 31);
        reports.insert(host(4), report(2, AgentState::Failed, 31));
        let events = r.step(&reports, t(32));
        assert!(
            events.last().unwrap().starts_with("rollout halted in batch 2: 2 host(s) failed, more than the 1 allowed"),
            "{events:?}"
        );
    }

    #[test]
    fn a_report_on_another_revision_is_not_progress() {
        let mut r =
            Rollout::start(1, 2, rolling(1, Share::Hosts(1), Share::Hosts(0), OnFailure::Halt), (0..2).map(host), t(0));
        let stale = BTreeMap::from([(host(0), report(1, AgentState::Active, 0))]);
        assert!(r.step(&stale, t(10)).is_empty(), "still on revision 1: not baked");
        let failed_before = BTreeMap::from([(host(0), report(1, AgentState::Failed, 0))]);
        assert!(r.step(&failed_before, t(10)).is_empty(), "a failure of the previous revision is not this rollout's");
    }

    #[test]
    fn pause_holds_continue_forgives_and_joiners_wait_for_the_last_batch() {
        let mut r =
            Rollout::start(1, 2, rolling(1, Share::Hosts(2), Share::Hosts(0), OnFailure::Halt), (0..5).map(host), t(0));
        r.phase = Phase::Paused;
        assert!(r.step(&all_active(&r, 0), t(100)).is_empty(), "paused: nothing moves");
        r.phase = Phase::Running;
        assert!(r.join(host(9), t(0)));
        assert!(!r.join(host(9), t(0)), "once");
        assert_eq!(r.revision_for(&host(9)), 1, "a joiner runs the previous revision");
        let failing = BTreeMap::from([(host(0), report(2, AgentState::Failed, 1))]);
        r.step(&failing, t(2));
        assert!(matches!(r.phase, Phase::Halted { .. }));
        assert!(r.continue_after_halt(t(10)).is_ok());
        let events = r.step(&failing, t(11));
        assert_eq!(events, ["batch 2 of 3 started: web-01, web-02"], "the forgiven canary is left out");
        r.step(&all_active(&r, 11), t(12));
        assert_eq!(r.revision_for(&host(9)), 1, "in the last batch, not yet started");
        r.step(&all_active(&r, 11), t(13));
        assert_eq!(r.revision_for(&host(9)), 2, "the last batch started");
    }

    #[test]
    fn a_joiner_counts_from_when_it_joined_and_a_halt_holds_it_back() {
        let mut r =
            Rollout::start(1, 2, rolling(0, Share::Hosts(2), Share::Hosts(0), OnFailure::Halt), (0..2).map(host), t(0));
        assert_eq!(r.batches.len(), 1, "one batch, started");
        // web-09 joins at 25s, past the batch's 30s deadline only at 55s.
        assert!(r.join(host(9), t(25)));
        assert_eq!(r.revision_for(&host(9)), 2, "the last batch has started: it may run the new revision");
        let mut reports = all_active(&r, 1);
        reports.remove(&host(9));
        assert!(r.step(&reports, t(40)).is_empty(), "not failed at the batch's deadline");
        reports.insert(host(9), report(2, AgentState::Active, 41));
        assert!(r.step(&reports, t(42)).is_empty(), "its bake counts from its own report");
        assert_eq!(r.step(&reports, t(43)), ["rollout to revision 2 completed"]);

        // A halted rollout whose last batch has started holds a joiner back in a batch of its own.
        let mut r =
            Rollout::start(1, 2, rolling(0, Share::Hosts(2), Share::Hosts(0), OnFailure::Halt), (0..2).map(host), t(0));
        r.step(&BTreeMap::from([(host(0), report(2, AgentState::Failed, 1))]), t(1));
        assert!(matches!(r.phase, Phase::Halted { .. }));
        assert!(r.join(host(9), t(2)));
        assert_eq!(r.revision_for(&host(9)), 1, "not told the halted revision");
        assert_eq!(r.batches.len(), 2);
    }

    #[test]
    fn a_failure_reported_during_a_pause_counts_on_resume() {
        let mut r =
            Rollout::start(1, 2, rolling(0, Share::Hosts(1), Share::Hosts(0), OnFailure::Halt), (0..2).map(host), t(0));
        r.pause().unwrap();
        let failing = BTreeMap::from([(host(0), report(2, AgentState::Failed, 5))]);
        assert!(r.step(&failing, t(6)).is_empty());
        r.resume(t(10)).unwrap();
        let events = r.step(&failing, t(10));
        assert!(events[0].contains("failed on revision 2"), "{events:?}");
    }

    #[test]
    fn no_hosts_is_a_completed_rollout() {
        let r = Rollout::start(1, 2, Rolling::default(), [], t(0));
        assert_eq!(r.phase, Phase::Completed);
        assert_eq!(r.revision_for(&host(1)), 2);
    }
}
