//! Which registry the client verbs talk to, with which token, trusting which extra CA: flags over
//! the environment (`DEPOT_REGISTRY`, `DEPOT_TOKEN`, `DEPOT_CA_CERT`) over the user's file (`$XDG_CONFIG_HOME/depot/config.toml`,
//! else `~/.config/depot/config.toml`) over the default registry, `http://127.0.0.1:7070`.
//!
//! Loading reads at most that one file and never writes. The token never appears in Debug output.

use std::path::{Path, PathBuf};

use depot_api::client::Client;

pub const DEFAULT_REGISTRY: &str = "http://127.0.0.1:7070";

/// A secret token (`NAME.SECRET`). Debug output shows only its name.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty()).then(|| Token(text.to_owned()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The part before the `.`: the token's name, which is not secret.
    pub fn name(&self) -> &str {
        self.0.rsplit_once('.').map_or("?", |(name, _)| name)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}.<redacted>)", self.name())
    }
}

impl std::str::FromStr for Token {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Token::new(text).ok_or_else(|| "the token is empty".to_owned())
    }
}

/// Errors of loading, each with a hint.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no token for the registry at {registry}")]
    MissingToken { registry: String },
    #[error("several registry URLs ({registry}), but this command talks to one")]
    SeveralRegistries { registry: String },
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not valid: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

impl ConfigError {
    pub fn hint(&self) -> Option<String> {
        match self {
            ConfigError::MissingToken { .. } => Some(
                "pass --token or set DEPOT_TOKEN (or `token = \"…\"` in ~/.config/depot/config.toml); \
                 the registry's first admin token is in its data directory, DATA/admin.token"
                    .to_owned(),
            ),
            ConfigError::SeveralRegistries { .. } => Some(
                "pass one of them with --registry; only `depot agent` moves between the replicas of a registry"
                    .to_owned(),
            ),
            ConfigError::Read { .. } => None,
            ConfigError::Parse { .. } => {
                Some(
                    "the file holds `registry = \"http://…\"`, `token = \"NAME.SECRET\"` and `ca_cert = \"/path/ca.pem\"`, \
                     all optional"
                        .to_owned(),
                )
            }
        }
    }
}

/// The user's `config.toml`. Unknown keys are allowed, for settings of later versions.
/// The registry settings a file holds: the user's config.toml, or the agent's settings file.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct FileConfig {
    pub registry: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
}

/// The resolved registry and token.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub registry: String,
    pub token: Option<Token>,
    /// A PEM file of CA certificates to trust besides the built-in roots.
    pub ca_cert: Option<PathBuf>,
}

impl ClientConfig {
    /// Resolves from the flags, the process environment, then `settings` (the agent's settings
    /// file) when there is one, else the user's file.
    pub fn load(
        registry_flag: Option<&str>,
        token_flag: Option<&Token>,
        ca_cert_flag: Option<&Path>,
        settings: Option<&FileConfig>,
    ) -> Result<Self, ConfigError> {
        Self::resolve(registry_flag, token_flag, ca_cert_flag, settings, &|name| std::env::var(name).ok())
    }

    /// Resolves with `env` standing for the environment (tests pass their own).
    pub fn resolve(
        registry_flag: Option<&str>,
        token_flag: Option<&Token>,
        ca_cert_flag: Option<&Path>,
        settings: Option<&FileConfig>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env_value = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let mut registry = registry_flag.map(|r| r.trim().to_owned()).or_else(|| env_value("DEPOT_REGISTRY"));
        let mut token = token_flag.cloned().or_else(|| env_value("DEPOT_TOKEN").and_then(|t| Token::new(&t)));
        let mut ca_cert = ca_cert_flag.map(Path::to_owned).or_else(|| env_value("DEPOT_CA_CERT").map(PathBuf::from));
        let fill = |registry: &mut Option<String>,
                    token: &mut Option<Token>,
                    ca_cert: &mut Option<PathBuf>,
                    file: &FileConfig| {
            if registry.is_none() {
                *registry = file.registry.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(str::to_owned);
            }
            if token.is_none() {
                *token = file.token.as_deref().and_then(Token::new);
            }
            if ca_cert.is_none() {
                ca_cert.clone_from(&file.ca_cert);
            }
        };
        // The agent's settings file takes the place of the user's: an agent running as root must
        // not borrow root's personal token for a registry its own file names.
        if let Some(settings) = settings {
            fill(&mut registry, &mut token, &mut ca_cert, settings);
        }
        // The user's file is read only when it has something to add.
        if settings.is_none()
            && (registry.is_none() || token.is_none() || ca_cert.is_none())
            && let Some(path) = config_file(env)
            && let Some(file) = read_file(&path)?
        {
            fill(&mut registry, &mut token, &mut ca_cert, &file);
        }
        let registry = registry.unwrap_or_else(|| DEFAULT_REGISTRY.to_owned());
        Ok(ClientConfig { registry, token, ca_cert })
    }

    /// The registry URLs: `registry` split at its commas. Only the agent takes several (replicas
    /// of one registry); an empty list stands for the text as it is, which is then refused.
    pub fn urls(&self) -> Vec<&str> {
        let urls: Vec<&str> = self.registry.split(',').map(str::trim).filter(|url| !url.is_empty()).collect();
        if urls.is_empty() { vec![self.registry.as_str()] } else { urls }
    }

    /// A client with the token; no token is an error with a hint, since every API route needs one.
    pub fn client(&self) -> anyhow::Result<Client> {
        match self.clients()? {
            clients if clients.len() == 1 => Ok(clients.into_iter().next().expect("one client")),
            _ => Err(ConfigError::SeveralRegistries { registry: self.registry.clone() }.into()),
        }
    }

    /// One client per URL (see [`ClientConfig::urls`]), each with the token and the CA.
    pub fn clients(&self) -> anyhow::Result<Vec<Client>> {
        let token = self.token.as_ref().ok_or_else(|| ConfigError::MissingToken { registry: self.registry.clone() })?;
        let ca_pem = match &self.ca_cert {
            Some(path) => {
                Some(std::fs::read(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?)
            }
            None => None,
        };
        let mut clients = Vec::new();
        for url in self.urls() {
            clients.push(Client::with_ca_certificates(url, Some(token.expose().to_owned()), ca_pem.as_deref())?);
        }
        Ok(clients)
    }
}

/// `$XDG_CONFIG_HOME/depot/config.toml` (when set to an absolute path, as the XDG spec asks),
/// else `$HOME/.config/depot/config.toml`.
pub fn config_file(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let non_empty = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = non_empty("XDG_CONFIG_HOME")
        .filter(|p| p.is_absolute())
        .or_else(|| non_empty("HOME").map(|home| home.join(".config")))?;
    Some(base.join("depot").join("config.toml"))
}

/// The file's settings, or `None` when it does not exist.
fn read_file(path: &Path) -> Result<Option<FileConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.message().to_owned() })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Home {
        dir: tempfile::TempDir,
        env: HashMap<&'static str, String>,
    }

    impl Home {
        /// A temporary HOME, optionally with a `~/.config/depot/config.toml`.
        fn new(file: Option<&str>) -> Self {
            let dir = tempfile::tempdir().unwrap();
            if let Some(text) = file {
                let path = dir.path().join(".config/depot/config.toml");
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
            let env = HashMap::from([("HOME", dir.path().display().to_string())]);
            Home { dir, env }
        }

        fn with(mut self, name: &'static str, value: &str) -> Self {
            self.env.insert(name, value.to_owned());
            self
        }

        fn resolve(&self, registry: Option<&str>, token: Option<&str>) -> Result<ClientConfig, ConfigError> {
            let token = token.map(|t| Token::new(t).unwrap());
            ClientConfig::resolve(registry, token.as_ref(), None, None, &|name| self.env.get(name).cloned())
        }

        fn file(&self) -> PathBuf {
            self.dir.path().join(".config/depot/config.toml")
        }
    }

    const FILE: &str = "registry = \"http://file:1\"\ntoken = \"file.aaaa\"\n";

    #[test]
    fn defaults_without_anything() {
        let config = Home::new(None).resolve(None, None).unwrap();
        assert_eq!(config.registry, DEFAULT_REGISTRY);
        assert!(config.token.is_none());
        let error = config.client().unwrap_err();
        let error = error.downcast_ref::<ConfigError>().expect("a ConfigError");
        assert!(matches!(error, ConfigError::MissingToken { .. }));
        let hint = error.hint().unwrap();
        assert!(hint.contains("DEPOT_TOKEN") && hint.contains("--token") && hint.contains("admin.token"), "{hint}");
    }

    #[test]
    fn an_agent_settings_file_takes_the_place_of_the_users_file() {
        let home = Home::new(Some(FILE));
        let settings = FileConfig { registry: Some("http://agent:4".into()), token: None, ca_cert: None };
        let config =
            ClientConfig::resolve(None, None, None, Some(&settings), &|name| home.env.get(name).cloned()).unwrap();
        assert_eq!(config.registry, "http://agent:4");
        assert!(config.token.is_none(), "not the user's token, meant for another registry");
    }

    #[test]
    fn the_file_is_used_when_nothing_else_is_set() {
        let home = Home::new(Some(FILE));
        let config = home.resolve(None, None).unwrap();
        assert_eq!(config.registry, "http://file:1");
        assert_eq!(config.token.unwrap().expose(), "file.aaaa");
    }

    #[test]
    fn the_environment_beats_the_file() {
        let home = Home::new(Some(FILE)).with("DEPOT_REGISTRY", "http://env:2").with("DEPOT_TOKEN", "env.bbbb");
        let config = home.resolve(None, None).unwrap();
        assert_eq!(config.registry, "http://env:2");
        assert_eq!(config.token.unwrap().expose(), "env.bbbb");
    }

    #[test]
    fn the_ca_certificate_comes_from_the_flag_the_environment_or_the_file() {
        let file = format!("{FILE}ca_cert = \"/etc/file-ca.pem\"\n");
        let home = Home::new(Some(&file));
        assert_eq!(home.resolve(None, None).unwrap().ca_cert, Some(PathBuf::from("/etc/file-ca.pem")));
        let home = home.with("DEPOT_CA_CERT", "/etc/env-ca.pem");
        assert_eq!(home.resolve(None, None).unwrap().ca_cert, Some(PathBuf::from("/etc/env-ca.pem")));
        let config = ClientConfig::resolve(None, None, Some(Path::new("/etc/flag-ca.pem")), None, &|name| {
            home.env.get(name).cloned()
        })
        .unwrap();
        assert_eq!(config.ca_cert, Some(PathBuf::from("/etc/flag-ca.pem")));
        // A file that cannot be read is named in the error.
        let error = config.client().unwrap_err();
        assert!(error.to_string().contains("/etc/flag-ca.pem"), "{error}");
    }

    #[test]
    fn flags_beat_the_environment_and_the_file() {
        let home = Home::new(Some(FILE)).with("DEPOT_REGISTRY", "http://env:2").with("DEPOT_TOKEN", "env.bbbb");
        let config = home.resolve(Some("http://flag:3"), Some("flag.cccc")).unwrap();
        assert_eq!(config.registry, "http://flag:3");
        assert_eq!(config.token.unwrap().expose(), "flag.cccc");
    }

    #[test]
    fn each_value_resolves_on_its_own() {
        // The registry from a flag, the token from the file.
        let home = Home::new(Some(FILE));
        let config = home.resolve(Some("http://flag:3"), None).unwrap();
        assert_eq!(config.registry, "http://flag:3");
        assert_eq!(config.token.unwrap().expose(), "file.aaaa");
        // The token from the environment, the registry from the file.
        let config = Home::new(Some(FILE)).with("DEPOT_TOKEN", "env.bbbb").resolve(None, None).unwrap();
        assert_eq!(config.registry, "http://file:1");
        assert_eq!(config.token.unwrap().expose(), "env.bbbb");
    }

    #[test]
    fn empty_environment_values_count_as_unset() {
        let home = Home::new(Some(FILE)).with("DEPOT_REGISTRY", "").with("DEPOT_TOKEN", "  ");
        let config = home.resolve(None, None).unwrap();
        assert_eq!(config.registry, "http://file:1");
        assert_eq!(config.token.unwrap().expose(), "file.aaaa");
    }

    #[test]
    fn xdg_config_home_beats_home() {
        let home = Home::new(Some(FILE));
        let xdg = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(xdg.path().join("depot")).unwrap();
        std::fs::write(xdg.path().join("depot/config.toml"), "registry = \"http://xdg:4\"\n").unwrap();
        let home = home.with("XDG_CONFIG_HOME", &xdg.path().display().to_string());
        let config = home.resolve(None, None).unwrap();
        assert_eq!(config.registry, "http://xdg:4");
        assert!(config.token.is_none(), "only one file is read");
        // A relative XDG_CONFIG_HOME is ignored, as the spec says.
        let config = Home::new(Some(FILE)).with("XDG_CONFIG_HOME", "relative/dir").resolve(None, None).unwrap();
        assert_eq!(config.registry, "http://file:1");
    }

    #[test]
    fn several_urls_are_for_the_agent_alone() {
        let home = Home::new(None).with("DEPOT_TOKEN", "ci.abcd");
        let config = home.resolve(Some(" http://a:1/, http://b:2 ,"), None).unwrap();
        assert_eq!(config.urls(), ["http://a:1/", "http://b:2"]);
        let clients = config.clients().unwrap();
        assert_eq!(clients.iter().map(Client::base_url).collect::<Vec<_>>(), ["http://a:1/", "http://b:2/"]);
        let error = config.client().unwrap_err();
        let error = error.downcast_ref::<ConfigError>().expect("a ConfigError");
        assert!(matches!(error, ConfigError::SeveralRegistries { .. }), "{error}");
        assert!(error.hint().unwrap().contains("depot agent"));
        // One URL with a stray comma is one URL; nothing but commas is not a URL.
        let config = home.resolve(Some("http://a:1,"), None).unwrap();
        assert_eq!(config.client().unwrap().base_url(), "http://a:1/");
        let error = home.resolve(Some(","), None).unwrap().client().unwrap_err();
        assert!(error.to_string().contains("invalid registry URL `,`"), "{error}");
    }

    #[test]
    fn tokens_are_trimmed_so_a_copied_admin_token_works() {
        let config = Home::new(None).with("DEPOT_TOKEN", "admin.abcd\n").resolve(None, None).unwrap();
        assert_eq!(config.token.unwrap().expose(), "admin.abcd");
    }

    #[test]
    fn a_broken_file_is_an_error_naming_it() {
        let home = Home::new(Some("registry = [unclosed"));
        let error = home.resolve(None, None).unwrap_err();
        assert!(error.to_string().contains(&home.file().display().to_string()), "{error}");
        assert!(error.hint().is_some());
        // Not read at all when flags give everything.
        let token = Token::new("flag.cccc").unwrap();
        ClientConfig::resolve(Some("http://flag:3"), Some(&token), Some(Path::new("/ca.pem")), None, &|name| {
            home.env.get(name).cloned()
        })
        .unwrap();
    }

    #[test]
    fn loading_writes_nothing() {
        let home = Home::new(None);
        home.resolve(None, None).unwrap();
        assert_eq!(std::fs::read_dir(home.dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let config = Home::new(None).with("DEPOT_TOKEN", "ci.0123456789abcdef").resolve(None, None).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(debug.contains("ci.<redacted>"), "{debug}");
        let client = config.client().unwrap();
        assert!(!format!("{client:?}").contains("0123456789abcdef"));
    }
}
