//! Components, their immutable versions, and the channels that move with them.

use depot_api::semver_order::{ChannelKind, channel_kind, check_manual_channel};
use depot_api::types::{ChannelInfo, ComponentSummary, Config, Deprecated, PushVersion, VersionInfo};
use depot_api::{ComponentName, ErrorCode, VersionLabel};

use crate::{Caller, Error, Need, Registry, Result};

/// A version pushed: whether it is new, and what it is now.
#[derive(Debug)]
pub struct Pushed {
    pub created: bool,
    pub info: VersionInfo,
}

impl Registry {
    pub async fn components(&self, caller: &Caller) -> Result<Vec<ComponentSummary>> {
        caller.require(Need::Viewer)?;
        self.store(|metadata| metadata.components()).await
    }

    /// Oldest first: labels that are not semver in push order, then semver labels by precedence.
    pub async fn versions(&self, caller: &Caller, component: ComponentName) -> Result<Vec<VersionInfo>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.versions(&component)).await
    }

    pub async fn version(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
    ) -> Result<VersionInfo> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.version(&component, &version)).await
    }

    /// Adds `version` of `component` naming a stored blob. The same digest again is a success
    /// (not created); another is refused. Only build channels may be named: rolling channels move
    /// by themselves. A new version may push the oldest unused ones out (retention).
    pub async fn push_version(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
        request: PushVersion,
    ) -> Result<Pushed> {
        caller.require(Need::Operator)?;
        if !request.free_form
            && let Some((why, meant)) = depot_api::semver_order::almost_semver(version.as_str())
        {
            let meant = meant.map(|m| format!("did you mean {m}? ")).unwrap_or_default();
            return Err(Error::refused(
                ErrorCode::InvalidName,
                format!("version `{version}` of {component} looks like a version but is not semver: {why}"),
            )
            .with_hint(format!(
                "{meant}a label that is not semver moves no channel and sorts before every semver version; \
                 push it as free-form to keep it as it is"
            )));
        }
        for channel in &request.channels {
            if channel_kind(channel.as_str()) != ChannelKind::Build {
                return Err(Error::invalid(format!(
                    "`{channel}` is not a build channel (edge, nightly-YYYY-MM-DD, sha-<hex>)"
                ))
                .with_hint(
                    "rolling channels (latest, X.Y, X) move by themselves; an admin points other channels by hand",
                ));
            }
        }
        let signatures = request
            .signatures
            .iter()
            .map(|pem| crate::signatures::checked(caller, &component, &version, &request.digest, pem))
            .collect::<Result<Vec<_>>>()?;
        // A blob recorded whose bytes the store has lost (restored from an older backup, a
        // bucket emptied by hand) is asked for, so that pushing again heals it.
        if !self.inner.blobs.exists(&request.digest).await? {
            return Err(Error::from(depot_store::StoreError::UnknownBlob(request.digest.clone())));
        }
        let (actor, max_versions) = (caller.name.clone(), self.inner.policy.max_versions);
        let (pushed, moved) = self
            .store(move |metadata| {
                let added = metadata.add_version(
                    &component,
                    &version,
                    &request.digest,
                    &request.labels,
                    &request.channels,
                    &signatures,
                    &actor,
                )?;
                let mut moved = added.moved;
                if added.created {
                    let retention = metadata.apply_retention(max_versions)?;
                    if !retention.removed.is_empty() {
                        tracing::info!(removed = ?retention.removed, "retention removed old versions");
                    }
                    moved.extend(retention.moved);
                }
                Ok((Pushed { created: added.created, info: added.info }, moved))
            })
            .await?;
        log_moves(&moved);
        Ok(pushed)
    }

    /// The version leaves the channels; configurations that track a channel naming it move back.
    /// The answer names them, and those still running it.
    pub async fn deprecate(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
        reason: &str,
        replacement: Option<VersionLabel>,
        now: bool,
    ) -> Result<Deprecated> {
        caller.require(Need::Operator)?;
        let reason = reason.trim().to_owned();
        if reason.is_empty() {
            return Err(Error::invalid("a deprecation needs a reason")
                .with_hint("say why, e.g. \"crashes on start with TLS enabled\""));
        }
        let actor = caller.name.clone();
        let (info, moved) = self
            .store(move |metadata| metadata.deprecate(&component, &version, &reason, replacement.as_ref(), &actor, now))
            .await?;
        log_moves(&moved);
        Ok(info)
    }

    /// The version returns to the channels.
    pub async fn undeprecate(
        &self,
        caller: &Caller,
        component: ComponentName,
        version: VersionLabel,
    ) -> Result<VersionInfo> {
        caller.require(Need::Operator)?;
        let actor = caller.name.clone();
        let (info, moved) = self.store(move |metadata| metadata.undeprecate(&component, &version, &actor)).await?;
        log_moves(&moved);
        Ok(info)
    }

    /// By name, each with its history.
    pub async fn channels(&self, caller: &Caller, component: ComponentName) -> Result<Vec<ChannelInfo>> {
        caller.require(Need::Viewer)?;
        self.store(move |metadata| metadata.channels(&component)).await
    }

    pub async fn delete_version(&self, caller: &Caller, component: ComponentName, version: VersionLabel) -> Result<()> {
        caller.require(Need::Operator)?;
        self.store(move |metadata| metadata.delete_version(&component, &version)).await
    }

    pub async fn delete_component(&self, caller: &Caller, component: ComponentName) -> Result<()> {
        caller.require(Need::Operator)?;
        self.store(move |metadata| metadata.delete_component(&component).map(drop)).await
    }

    /// Points a manual channel at a version (admin).
    pub async fn set_channel(
        &self,
        caller: &Caller,
        component: ComponentName,
        channel: VersionLabel,
        version: VersionLabel,
    ) -> Result<ChannelInfo> {
        caller.require(Need::Admin)?;
        check_manual_channel(channel.as_str()).map_err(|reason| {
            Error::refused(ErrorCode::InvalidName, reason).with_hint(
                "choose another name, such as `stable` or `canary`; rolling and build channels move by themselves",
            )
        })?;
        let actor = caller.name.clone();
        let (info, moved) =
            self.store(move |metadata| metadata.set_channel(&component, &channel, &version, &actor)).await?;
        log_moves(&moved);
        Ok(info)
    }

    /// Removes a build or manual channel (admin).
    pub async fn remove_channel(&self, caller: &Caller, component: ComponentName, channel: VersionLabel) -> Result<()> {
        caller.require(Need::Admin)?;
        let actor = caller.name.clone();
        self.store(move |metadata| metadata.remove_channel(&component, &channel, &actor)).await
    }
}

/// The store announces every new revision to the blocking queries; this only logs why.
fn log_moves(moved: &[Config]) {
    for config in moved {
        tracing::info!(config = %config.name, revision = config.revision, "a tracked channel moved");
    }
}
