//! Rollouts: a configuration's strategy, its rollout's status, the operators' actions on it, and
//! the timer that moves running rollouts on for bake times and deadlines.

use std::time::Duration;

use depot_api::ConfigName;
use depot_api::rollout::{RolloutAction, RolloutStatus, Strategy};
use depot_api::types::Config;

use crate::{Caller, Error, Need, Registry, Result};

/// How often running rollouts are stepped for the time that passed.
pub const STEP_EVERY: Duration = Duration::from_secs(1);

impl Registry {
    pub async fn set_strategy(&self, caller: &Caller, name: ConfigName, strategy: Strategy) -> Result<Config> {
        caller.require(Need::Operator)?;
        if let Strategy::Rolling(rolling) = &strategy {
            rolling.check().map_err(Error::invalid)?;
        }
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.set_strategy(&name, &strategy, &actor)).await
    }

    /// The latest rollout of `name`, if it ever had one.
    pub async fn rollout(&self, caller: &Caller, name: ConfigName) -> Result<Option<RolloutStatus>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.rollout_status(&name)).await
    }

    pub async fn rollout_action(
        &self,
        caller: &Caller,
        name: ConfigName,
        action: RolloutAction,
    ) -> Result<RolloutStatus> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.rollout_action(&name, action, &actor)).await
    }

    /// Steps running rollouts every [`STEP_EVERY`] until the registry is dropped. Replicas
    /// sharing a database may all do it: each step is one write transaction, and a step with
    /// nothing to do writes nothing.
    pub fn spawn_rollout_timer(&self) -> tokio::task::JoinHandle<()> {
        let registry = std::sync::Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(STEP_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(inner) = registry.upgrade() else { return };
                let registry = Registry { inner };
                if let Err(error) = registry.store(|metadata| metadata.step_rollouts()).await {
                    tracing::warn!("stepping rollouts failed (tried again in {STEP_EVERY:?}): {error}");
                }
            }
        })
    }
}
