//! SSH keys: the SSH front-end's credentials, kept like tokens (a name, a role, for agents a
//! configuration pattern) and managed by admins. A session acts as `key:NAME` in the history.

use depot_api::TokenName;
use depot_api::types::{AddSshKey, ImportSshKeys, Role, SshKeyInfo};

use crate::access::check_pattern;
use crate::{Caller, Error, Need, Registry, Result};

impl Registry {
    /// Adds one key (admins).
    pub async fn add_ssh_key(&self, caller: &Caller, request: AddSshKey) -> Result<SshKeyInfo> {
        caller.require(Need::Admin)?;
        refuse_admin(request.role)?;
        check_pattern(&format!("agent key {}", request.name), request.role, request.config_pattern.as_deref())?;
        let key = depot_trust::keys::public_key(&request.public_key).map_err(Error::invalid)?;
        let info = key_info(caller, request.name, request.role, request.config_pattern, key);
        let mut added = self.store(move |metadata| metadata.add_ssh_keys(&[info])).await?;
        Ok(added.remove(0))
    }

    /// Adds every key of an authorized_keys file (admins), all or none, each named after its
    /// comment (`alice@laptop` → `alice-laptop`) or, without one, its fingerprint.
    pub async fn import_ssh_keys(&self, caller: &Caller, request: ImportSshKeys) -> Result<Vec<SshKeyInfo>> {
        caller.require(Need::Admin)?;
        refuse_admin(request.role)?;
        check_pattern("an agent key", request.role, request.config_pattern.as_deref())?;
        let keys = depot_trust::keys::authorized_keys(&request.authorized_keys, "the authorized_keys file")
            .map_err(|e| Error::invalid(e.to_string()))?;
        if keys.is_empty() {
            return Err(Error::invalid("the authorized_keys file holds no key"));
        }
        let mut infos: Vec<SshKeyInfo> = Vec::new();
        for key in keys {
            if infos.iter().any(|i| i.fingerprint == key.fingerprint) {
                continue;
            }
            let base = name_from(&key.comment, &key.fingerprint);
            let mut name = base.clone();
            let mut n = 2;
            while infos.iter().any(|i| i.name.as_str() == name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            let name = TokenName::parse(&name).map_err(|e| Error::invalid(e.to_string()))?;
            infos.push(key_info(caller, name, request.role, request.config_pattern.clone(), key));
        }
        self.store(move |metadata| metadata.add_ssh_keys(&infos)).await
    }

    pub async fn ssh_keys(&self, caller: &Caller) -> Result<Vec<SshKeyInfo>> {
        caller.require(Need::Admin)?;
        self.store(|metadata| metadata.ssh_keys()).await
    }

    pub async fn revoke_ssh_key(&self, caller: &Caller, name: TokenName) -> Result<()> {
        caller.require(Need::Admin)?;
        let lookup = name.clone();
        if !self.store(move |metadata| metadata.revoke_ssh_key(&lookup)).await? {
            return Err(Error::refused(depot_api::ErrorCode::UnknownToken, format!("unknown SSH key {name}"))
                .with_hint("list them with `depot key list`"));
        }
        Ok(())
    }

    /// The caller an SSH key with this `SHA256:…` fingerprint logs in as, if the registry knows
    /// the key.
    pub async fn authenticate_ssh_key(&self, fingerprint: &str) -> Result<Option<Caller>> {
        let fingerprint = fingerprint.to_owned();
        let found = self.store(move |metadata| metadata.ssh_key_by_fingerprint(&fingerprint)).await?;
        Ok(found.map(|key| Caller {
            name: format!("key:{}", key.name),
            role: key.role,
            config_pattern: key.config_pattern,
        }))
    }
}

/// Keys run the console, upload, or read as agents: tokens and gates stay with admin tokens.
fn refuse_admin(role: Role) -> Result<()> {
    match role {
        Role::Admin => Err(Error::invalid("SSH keys are operator, agent or viewer keys")
            .with_hint("manage tokens, keys and gates with an admin token over HTTP")),
        _ => Ok(()),
    }
}

fn key_info(
    caller: &Caller,
    name: TokenName,
    role: Role,
    config_pattern: Option<String>,
    key: depot_trust::keys::KeyLine,
) -> SshKeyInfo {
    SshKeyInfo {
        name,
        fingerprint: key.fingerprint,
        public_key: key.line,
        role,
        config_pattern,
        created_at: chrono::Utc::now(),
        created_by: caller.name.clone(),
    }
}

/// A key's name from its comment (letters, digits, `.`, `_`, `-` kept, the rest `-`), or from
/// its fingerprint when the comment gives none.
fn name_from(comment: &str, fingerprint: &str) -> String {
    let name: String =
        comment.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' }).collect();
    let name = name.trim_matches(|c: char| !c.is_ascii_alphanumeric()).chars().take(64).collect::<String>();
    match name.is_empty() {
        false => name,
        true => {
            let hash: String = fingerprint
                .trim_start_matches("SHA256:")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(12)
                .collect();
            format!("key-{hash}")
        }
    }
}
