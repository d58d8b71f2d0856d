//! Names that travel in URLs and bodies, validated by the same code on every side.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{value}`: {reason}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub reason: &'static str,
}

/// The longest name or label accepted, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Component, configuration and token names: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 bytes
/// (so never `:`, which separates component and version, nor `/`).
fn check_name(what: &'static str, value: &str) -> Result<(), NameError> {
    let refuse = |reason| Err(NameError { what, value: value.escape_debug().to_string(), reason });
    if value.is_empty() {
        return refuse("it is empty");
    }
    if value.len() > MAX_NAME_LEN {
        return refuse("it is longer than 128 bytes");
    }
    if !value.as_bytes()[0].is_ascii_alphanumeric() {
        return refuse("it must start with a letter or a digit");
    }
    if !value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return refuse("only letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

/// Version labels: anything that is safe as a directory name (see `check_version_label`).
pub fn check_version_label(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Err("it is empty");
    }
    if value.len() > MAX_NAME_LEN {
        return Err("it is longer than 128 bytes");
    }
    if value == "current" {
        return Err("`current` is the name of the active-release symlink");
    }
    if value.starts_with('.') {
        return Err("it starts with `.` (`.`, `..` and hidden names are reserved)");
    }
    if value.starts_with('-') {
        return Err("it starts with `-`");
    }
    if value.contains('/') || value.contains('\\') {
        return Err("it contains a path separator");
    }
    if value.contains(':') {
        return Err("it contains `:`, which separates a component from its version");
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it contains whitespace or control characters");
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $pattern:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = $pattern))]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, NameError> {
                let check: fn(&str) -> Result<(), NameError> = $check;
                check(value)?;
                Ok($name(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, NameError> {
                $name::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = NameError;
            fn try_from(s: String) -> Result<Self, NameError> {
                $name::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

// The `pattern` of each name in the OpenAPI document says what `parse` takes. Version labels:
// printable ASCII without `/`, `\` and `:`, not starting with `.` or `-`, never `current` (the
// registry also takes other Unicode letters, but no whitespace or control character).

name_type!(
    /// A component: a stream of versions of one archive (`web`, `config-prod`).
    ComponentName, "component name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", |v| check_name("component name", v)
);
name_type!(
    /// A configuration: an ordered list of component versions that agents deploy.
    ConfigName, "configuration name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", |v| check_name("configuration name", v)
);
name_type!(
    /// A pipeline: an application's stages (`web`), each a configuration named `APP-STAGE`.
    PipelineName, "pipeline name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", |v| check_name("pipeline name", v)
);
name_type!(
    /// A stage of a pipeline (`dev`, `staging`, `prod-eu`).
    StageName, "stage name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", |v| check_name("stage name", v)
);
name_type!(
    /// The name of an access token (`ci`, `web-01`).
    TokenName, "token name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", |v| check_name("token name", v)
);
name_type!(
    /// The name an agent reports under, by default its host name (`web-01`, `web-01.example.com`).
    HostName, "host name", "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", |v| check_name("host name", v)
);
name_type!(
    /// A version label of a component (`1.4.2`, `v2026.11.23`, `abc123`).
    VersionLabel, "version label", r"^(?!current$)[!-,0-9;-\[\]-~][!-.0-9;-\[\]-~]{0,127}$", |v| check_version_label(v)
        .map_err(|reason| NameError { what: "version label", value: v.escape_debug().to_string(), reason })
);
name_type!(
    /// A content digest, `sha256:` followed by 64 lowercase hex digits.
    Digest, "digest", "^sha256:[0-9a-f]{64}$", check_digest
);

fn check_digest(value: &str) -> Result<(), NameError> {
    let ok = value
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
    if ok {
        Ok(())
    } else {
        Err(NameError {
            what: "digest",
            value: value.escape_debug().to_string(),
            reason: "expected sha256: and 64 lowercase hex digits",
        })
    }
}

impl Digest {
    pub fn from_hex(hex: &str) -> Result<Self, NameError> {
        Digest::parse(&format!("sha256:{}", hex.to_ascii_lowercase()))
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }
}
