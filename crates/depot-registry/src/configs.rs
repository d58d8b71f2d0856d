//! Configurations, their revisions, the blocking queries agents wait on, and agents' reports.

use std::time::Duration;

use bytes::Bytes;
use depot_api::types::{
    AgentReport, AgentStatus, BumpResult, Config, ConfigSummary, HistoryEntry, LayerRef, MAX_REPORT_ERROR,
    MAX_REPORT_OUTPUT,
};
use depot_api::{ComponentName, ConfigName, HostName};

use crate::{Caller, Error, Need, Registry, Result};

/// A configuration as a blocking query answers it: read from the store, or the JSON of the
/// revision that woke the wait, shared by every request it woke.
pub enum ConfigAnswer {
    Config(Config),
    Json(Bytes),
}

impl Registry {
    pub async fn configs(&self, caller: &Caller) -> Result<Vec<ConfigSummary>> {
        caller.require(Need::Viewer)?;
        self.store(|metadata| metadata.configs()).await
    }

    /// The configurations `caller` may read: every one, or for an agent those its pattern
    /// matches.
    pub async fn readable_configs(&self, caller: &Caller) -> Result<Vec<ConfigSummary>> {
        caller.require(Need::Reader)?;
        let all = self.store(|metadata| metadata.configs()).await?;
        Ok(all.into_iter().filter(|c| caller.may_read_config(&c.name)).collect())
    }

    /// The versions of `config`'s layers, for whoever may read the configuration (an agent
    /// reads no version list, but may know when the layers it runs were pushed).
    pub async fn layer_versions(&self, caller: &Caller, config: &Config) -> Result<Vec<depot_api::types::VersionInfo>> {
        caller.require(Need::Reader)?;
        caller.require_config(&config.name, "read")?;
        let layers = config.layers.clone();
        self.store(move |metadata| layers.iter().map(|l| metadata.version(&l.component, &l.version)).collect()).await
    }

    pub async fn create_config(&self, caller: &Caller, name: ConfigName, layers: Vec<LayerRef>) -> Result<Config> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.create_config(&name, &layers, &actor)).await
    }

    /// The configuration as it stands (agents: one their pattern matches).
    pub async fn config(&self, caller: &Caller, name: &ConfigName) -> Result<Config> {
        caller.require(Need::Reader)?;
        caller.require_config(name, "read")?;
        let name = name.clone();
        self.store(move |metadata| metadata.config(&name)).await
    }

    /// A blocking query: the configuration `host` may run (see [`depot_store::ConfigView`]) at
    /// once when it differs from revision `after` (with no host: when the configuration has a
    /// newer revision), else when that changes or `wait` (at most the policy's longest wait)
    /// ends. A name that does not exist is refused at once and leaves nothing behind.
    pub async fn config_after(
        &self,
        caller: &Caller,
        name: &ConfigName,
        host: Option<&HostName>,
        after: u64,
        wait: Duration,
    ) -> Result<ConfigAnswer> {
        caller.require(Need::Reader)?;
        caller.require_config(name, "read")?;
        let wait = wait.min(self.inner.policy.max_wait);
        let mut waiting = self.inner.watchers.subscribe(name);
        let view = self.config_view(name).await?;
        if crate::watch::answer(&view, host, after).is_some() {
            return Ok(ConfigAnswer::Config(view.config_for(host).clone()));
        }
        drop(view);
        if let Some(json) = waiting.until_answer(host, after, tokio::time::Instant::now() + wait).await {
            return Ok(ConfigAnswer::Json(json));
        }
        drop(waiting);
        // The wait ended with no change for this host, or the configuration was deleted (not-found).
        Ok(ConfigAnswer::Config(self.config_view(name).await?.config_for(host).clone()))
    }

    /// The configuration `host` may run now (no host: the current revision).
    pub async fn config_for_host(&self, caller: &Caller, name: &ConfigName, host: Option<&HostName>) -> Result<Config> {
        caller.require(Need::Reader)?;
        caller.require_config(name, "read")?;
        Ok(self.config_view(name).await?.config_for(host).clone())
    }

    /// What the configuration's agents may run now, read from the store (nothing serialized:
    /// only the watchers' announcements share JSON).
    async fn config_view(&self, name: &ConfigName) -> Result<depot_store::ConfigView> {
        let name = name.clone();
        self.store(move |metadata| metadata.config_view(&name)).await
    }

    pub async fn set_layers(
        &self,
        caller: &Caller,
        name: ConfigName,
        layers: Vec<LayerRef>,
        expect_revision: Option<u64>,
    ) -> Result<Config> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.set_layers(&name, &layers, expect_revision, &actor)).await
    }

    /// Replaces every layer of `name` with `layers`, in one new revision.
    pub async fn replace_layers(
        &self,
        caller: &Caller,
        name: ConfigName,
        layers: Vec<LayerRef>,
        expect_revision: Option<u64>,
    ) -> Result<Config> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.replace_layers(&name, &layers, expect_revision, &actor)).await
    }

    pub async fn bump(
        &self,
        caller: &Caller,
        name: ConfigName,
        component: ComponentName,
        expect_revision: Option<u64>,
    ) -> Result<BumpResult> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.bump(&name, &component, expect_revision, &actor)).await
    }

    pub async fn rollback_config(
        &self,
        caller: &Caller,
        name: ConfigName,
        to_revision: Option<u64>,
        expect_revision: Option<u64>,
        now: bool,
    ) -> Result<Config> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.rollback(&name, to_revision, expect_revision, &actor, now)).await
    }

    pub async fn config_history(&self, caller: &Caller, name: ConfigName) -> Result<Vec<HistoryEntry>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.history(&name)).await
    }

    pub async fn delete_config(&self, caller: &Caller, name: ConfigName, expect_revision: Option<u64>) -> Result<()> {
        caller.require(Need::Operator)?;
        self.store(move |metadata| metadata.delete_config(&name, expect_revision)).await
    }

    /// Records an agent's report on `config` from `host`. Values of the configuration's
    /// environment are masked before it is stored.
    pub async fn report_agent(
        &self,
        caller: &Caller,
        config: ConfigName,
        host: HostName,
        report: AgentReport,
    ) -> Result<()> {
        caller.require(Need::Reporter)?;
        caller.require_config(&config, "report for")?;
        let too_long = |what: &str, text: &Option<String>, limit: usize| match text {
            Some(text) if text.len() > limit => Err(Error::invalid(format!("{what} is longer than {limit} bytes"))),
            _ => Ok(()),
        };
        too_long("error", &report.error, MAX_REPORT_ERROR)?;
        too_long("output_tail", &report.output_tail, MAX_REPORT_OUTPUT)?;
        let reporter = caller.name.clone();
        self.store(move |metadata| metadata.report_agent(&config, &host, &reporter, &report)).await
    }

    pub async fn agents(&self, caller: &Caller, config: ConfigName) -> Result<Vec<AgentStatus>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.agents(&config)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{caller, registry};
    use depot_api::types::Role;
    use depot_store::StoreError;

    /// Whether `error` says that a configuration does not exist.
    fn is_unknown_config(error: &Error) -> bool {
        matches!(error, Error::Store(StoreError::UnknownConfig(_)))
    }

    /// A blocking query for a configuration that does not exist is refused at once and leaves no
    /// channel behind, however many are asked for.
    #[tokio::test]
    async fn waiting_on_names_that_do_not_exist_leaves_nothing() {
        let (_dir, registry) = registry(crate::Policy::default());
        let admin = caller("admin", Role::Admin, None);
        for n in 0..1000 {
            let name = ConfigName::parse(&format!("made-up-{n}")).unwrap();
            let answer = registry.config_after(&admin, &name, None, 0, Duration::from_secs(30)).await;
            assert!(answer.as_ref().is_err_and(is_unknown_config), "{n}");
        }
        assert_eq!(registry.inner.watchers.channels(), 0);
        assert_eq!(registry.waiting(), 0);
    }

    /// A wait that ends (by time or by deletion) removes its configuration's channel.
    #[tokio::test]
    async fn channels_live_only_while_someone_waits() {
        let (_dir, registry) = registry(crate::Policy::default());
        let admin = caller("admin", Role::Admin, None);
        let name = ConfigName::parse("web").unwrap();
        registry.create_config(&admin, name.clone(), vec![]).await.unwrap();
        let waiter = {
            let (registry, admin, name) = (registry.clone(), admin.clone(), name.clone());
            tokio::spawn(async move { registry.config_after(&admin, &name, None, 1, Duration::from_secs(30)).await })
        };
        while registry.waiting() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(registry.inner.watchers.channels(), 1);
        registry.delete_config(&admin, name.clone(), None).await.unwrap();
        let answer = waiter.await.unwrap();
        assert!(answer.as_ref().is_err_and(is_unknown_config));
        assert_eq!(registry.inner.watchers.channels(), 0);
        assert_eq!(registry.waiting(), 0);
    }

    /// An agent limited to `a-*` may not wait on, read or report for `b-cfg`.
    #[tokio::test]
    async fn agents_stay_within_their_pattern() {
        let (_dir, registry) = registry(crate::Policy::default());
        let admin = caller("admin", Role::Admin, None);
        let agent = caller("a-agent", Role::Agent, Some("a-*"));
        let name = ConfigName::parse("b-cfg").unwrap();
        registry.create_config(&admin, name.clone(), vec![]).await.unwrap();
        let refused = registry.config_after(&agent, &name, None, 0, Duration::from_secs(1)).await;
        assert!(matches!(refused, Err(Error::Refused(ref body)) if body.code == depot_api::ErrorCode::Forbidden));
        assert_eq!(registry.inner.watchers.channels(), 0);
    }
}
