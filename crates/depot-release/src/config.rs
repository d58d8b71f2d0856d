//! Two optional files: `DIR/depot.toml` gives `depot pack` its defaults, `R/config/depot.toml`
//! gives deploy, rollback and prune theirs. Flags always win. Loading never writes a file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::stage::Limits;
use crate::{Error, Result};

/// `[package]` of `DIR/depot.toml`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    pub name: Option<String>,
    /// What to pack: globs (relative to DIR; only matching files), or a table mapping paths in DIR
    /// to paths in the archive (`"target/release/server" = "bin/server"`).
    #[serde(default)]
    pub include: Include,
    /// Globs of files and directories to leave out.
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// `[package] include`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(untagged)]
pub enum Include {
    Globs(Vec<String>),
    /// Source (a file or a directory, relative to DIR) → destination in the archive.
    Map(std::collections::BTreeMap<String, String>),
}

impl Default for Include {
    fn default() -> Self {
        Include::Globs(Vec::new())
    }
}

#[derive(Debug, Default, serde::Deserialize)]
struct ProjectFile {
    package: Option<PackConfig>,
}

impl PackConfig {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("depot.toml");
        let Some(text) = read_optional(&path)? else { return Ok(PackConfig::default()) };
        let file: ProjectFile = toml::from_str(&text).map_err(|e| Error::Config { path, reason: e.to_string() })?;
        Ok(file.package.unwrap_or_default())
    }
}

/// `R/config/depot.toml`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootConfig {
    #[serde(default)]
    pub deploy: DeployDefaults,
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// `[deploy]`: defaults for the hook, health check and retention flags.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployDefaults {
    pub validate: Option<String>,
    pub post_activate: Option<String>,
    pub health_cmd: Option<String>,
    pub health_url: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    pub health_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub hook_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    pub lock_timeout: Option<Duration>,
    pub keep: Option<usize>,
}

impl DeployDefaults {
    /// These values, with `fallback`'s where these have none.
    pub fn or(self, fallback: DeployDefaults) -> DeployDefaults {
        // Health is one choice: a command or a URL, taken together from one side.
        let (health_cmd, health_url) = if self.health_cmd.is_some() || self.health_url.is_some() {
            (self.health_cmd, self.health_url)
        } else {
            (fallback.health_cmd, fallback.health_url)
        };
        DeployDefaults {
            validate: self.validate.or(fallback.validate),
            post_activate: self.post_activate.or(fallback.post_activate),
            health_cmd,
            health_url,
            health_timeout: self.health_timeout.or(fallback.health_timeout),
            hook_timeout: self.hook_timeout.or(fallback.hook_timeout),
            lock_timeout: self.lock_timeout.or(fallback.lock_timeout),
            keep: self.keep.or(fallback.keep),
        }
    }
}

/// `[limits]`: what an archive may hold.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub max_files: Option<u64>,
    pub max_bytes: Option<u64>,
}

impl LimitsConfig {
    pub fn resolve(&self, max_files: Option<u64>, max_bytes: Option<u64>) -> Limits {
        let defaults = Limits::default();
        Limits {
            max_files: max_files.or(self.max_files).unwrap_or(defaults.max_files),
            max_bytes: max_bytes.or(self.max_bytes).unwrap_or(defaults.max_bytes),
        }
    }
}

impl RootConfig {
    pub fn path(root: &Path) -> PathBuf {
        root.join("config").join("depot.toml")
    }

    pub fn load(root: &Path) -> Result<Self> {
        let path = Self::path(root);
        let Some(text) = read_optional(&path)? else { return Ok(RootConfig::default()) };
        toml::from_str(&text).map_err(|e| Error::Config { path, reason: e.to_string() })
    }
}

fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs_err::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Parses `30s`, `2m`, `500ms`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("`{text}` is not a duration like 30s, 2m or 500ms: {e}"))
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Option::<Raw>::deserialize(deserializer)? {
            None => Ok(None),
            Some(Raw::Seconds(secs)) => Ok(Some(Duration::from_secs(secs))),
            Some(Raw::Text(text)) => super::parse_duration(&text).map(Some).map_err(serde::de::Error::custom),
        }
    }
}
