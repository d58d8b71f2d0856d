//! The agent's settings file, `/etc/depot/agent.toml` unless `--settings` (or
//! `DEPOT_AGENT_SETTINGS`) names another. It fills what the flags and the environment leave
//! unset; its `[deploy]` table overrides the root's `R/config/depot.toml`.

use std::path::{Path, PathBuf};

use depot_api::{ConfigName, HostName};
use depot_release::config::DeployDefaults;

use crate::client_config::FileConfig;
use crate::printer::hinted;

pub const DEFAULT_PATH: &str = "/etc/depot/agent.toml";

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    pub config: Option<ConfigName>,
    pub root: Option<PathBuf>,
    pub name: Option<HostName>,
    /// One URL, several comma-separated, or an array of them: replicas of one registry.
    pub registry: Option<Urls>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    /// An allowed_signers file: deploy only layers its keys signed.
    pub trust: Option<PathBuf>,
    /// Public keys never to trust.
    pub revoked_keys: Option<PathBuf>,
    /// Attestation types each layer needs, signed by a trusted key.
    #[serde(default)]
    pub require_attestations: Vec<String>,
    #[serde(default)]
    pub deploy: DeployDefaults,
    /// Where it was read from; none when there is no file.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

/// `registry = "URL"` (commas allowed) or `registry = ["URL", …]`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Urls {
    One(String),
    Several(Vec<String>),
}

impl Urls {
    /// The URLs joined by commas, as `--registry` and DEPOT_REGISTRY give them.
    fn joined(&self) -> String {
        match self {
            Urls::One(url) => url.clone(),
            Urls::Several(urls) => urls.join(","),
        }
    }
}

impl AgentSettings {
    /// Reads `explicit`, which must exist, or else the default file when it exists.
    pub fn load(explicit: Option<&Path>) -> anyhow::Result<Self> {
        let path = match explicit {
            Some(path) => path.to_owned(),
            None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
            None => return Ok(AgentSettings::default()),
        };
        let text = fs_err::read_to_string(&path)?;
        let mut settings: AgentSettings = toml::from_str(&text).map_err(|e| {
            hinted(
                format!("{} is not valid: {}", path.display(), e.message()),
                "the keys are config, root, name, registry, token, ca_cert, trust, revoked_keys, \
                 require_attestations and a [deploy] table \
                 (see `depot agent --help`)",
            )
        })?;
        // Relative paths are relative to the file.
        let base = path.parent().unwrap_or(Path::new("."));
        settings.root = settings.root.map(|root| base.join(root));
        settings.ca_cert = settings.ca_cert.map(|ca| base.join(ca));
        settings.trust = settings.trust.map(|trust| base.join(trust));
        settings.revoked_keys = settings.revoked_keys.map(|revoked| base.join(revoked));
        settings.path = Some(path);
        Ok(settings)
    }

    /// The registry settings, for [`crate::client_config::ClientConfig::load`].
    pub fn registry(&self) -> FileConfig {
        FileConfig {
            registry: self.registry.as_ref().map(Urls::joined),
            token: self.token.clone(),
            ca_cert: self.ca_cert.clone(),
        }
    }

    /// The root from the flag or the environment, else from this file.
    pub fn root(&self, flag: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        flag.or_else(|| self.root.clone()).ok_or_else(|| {
            hinted(
                "no release root",
                format!("pass --root, set DEPOT_ROOT, or set `root` in {}", self.file().display()),
            )
        })
    }

    /// The configuration from the flag or the environment, else from this file.
    pub fn config(&self, flag: Option<ConfigName>) -> anyhow::Result<ConfigName> {
        flag.or_else(|| self.config.clone()).ok_or_else(|| {
            hinted(
                "no configuration to follow",
                format!("pass --config, set DEPOT_CONFIG, or set `config` in {}", self.file().display()),
            )
        })
    }

    fn file(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(DEFAULT_PATH))
    }
}
