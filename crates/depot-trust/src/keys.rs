//! OpenSSH public keys as people keep them: one key line, or an authorized_keys file.

use ssh_key::{HashAlg, PublicKey};

use crate::Error;
use crate::allowed::{is_key_type, split_field};

/// One public key: its fingerprint, the line without options, and its comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLine {
    /// `SHA256:…`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    /// `KEYTYPE BASE64 [COMMENT]`.
    pub line: String,
    pub comment: String,
}

/// One OpenSSH public key line (`ssh-ed25519 AAAA… comment`).
pub fn public_key(text: &str) -> Result<KeyLine, String> {
    let text = text.trim();
    let key = PublicKey::from_openssh(text).map_err(|e| format!("not an OpenSSH public key: {e}"))?;
    Ok(KeyLine {
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        line: text.to_owned(),
        comment: key.comment().to_owned(),
    })
}

/// Every key of an authorized_keys file (`[OPTIONS] KEYTYPE BASE64 [COMMENT]` a line; blank
/// lines and `#` comments allowed; the options are not kept); `path` names it in errors.
pub fn authorized_keys(text: &str, path: &str) -> Result<Vec<KeyLine>, Error> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (first, rest) = split_field(line);
        let key = if is_key_type(first) { line } else { rest };
        keys.push(public_key(key).map_err(|message| Error::Line {
            path: path.to_owned(),
            line: index + 1,
            message,
        })?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #[test]
    fn authorized_keys_take_options_comments_and_blank_lines() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGa+ORmr2yYzo46C5HXaIsJqF+zQl3YUFbrJv4gQKpHo alice@laptop";
        let text = format!("# operators\n\n{key}\nno-pty,command=\"echo hi there\" {key}\n");
        let keys = super::authorized_keys(&text, "ops.keys").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0], keys[1], "options are dropped");
        assert_eq!(keys[0].comment, "alice@laptop");
        assert!(keys[0].fingerprint.starts_with("SHA256:"));
        let error = super::authorized_keys("ssh-ed25519 AAAAnotbase64\n", "ops.keys").unwrap_err().to_string();
        assert!(error.starts_with("ops.keys line 1: not an OpenSSH public key"), "{error}");
    }
}
