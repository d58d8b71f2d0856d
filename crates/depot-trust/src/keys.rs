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

/// Every key of an authorized_keys file (`KEYTYPE BASE64 [COMMENT]` a line; blank lines and `#`
/// comments allowed); `path` names it in errors. A line with options (`from=`, `command=`,
/// `restrict`, …) is refused: depot would not keep them, and the key would do more than the
/// line allows.
pub fn authorized_keys(text: &str, path: &str) -> Result<Vec<KeyLine>, Error> {
    let mut keys = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let error = |message: String| Error::Line { path: path.to_owned(), line: index + 1, message };
        let (first, _) = split_field(line);
        if !is_key_type(first) {
            return Err(error(format!(
                "options (`{first}`) are not kept by depot, so the key would do more than this line allows; \
                 remove them and limit the key with --role and --config"
            )));
        }
        keys.push(public_key(line).map_err(error)?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #[test]
    fn authorized_keys_take_comments_and_blank_lines_and_refuse_options() {
        let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGa+ORmr2yYzo46C5HXaIsJqF+zQl3YUFbrJv4gQKpHo alice@laptop";
        let keys = super::authorized_keys(&format!("# operators\n\n{key}\n"), "ops.keys").unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].comment, "alice@laptop");
        let optioned = format!("{key}\nno-pty,command=\"echo hi there\" {key}\n");
        let error = super::authorized_keys(&optioned, "ops.keys").unwrap_err().to_string();
        assert!(error.starts_with("ops.keys line 2: options (`no-pty,command=\"echo hi there\"`)"), "{error}");
        assert!(keys[0].fingerprint.starts_with("SHA256:"));
        let error = super::authorized_keys("ssh-ed25519 AAAAnotbase64\n", "ops.keys").unwrap_err().to_string();
        assert!(error.starts_with("ops.keys line 1: not an OpenSSH public key"), "{error}");
    }
}
