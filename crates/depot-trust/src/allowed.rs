//! The allowed_signers file of `ssh-keygen -Y verify` (see ssh-keygen(1), "ALLOWED SIGNERS"):
//! one key per line, `PRINCIPALS [OPTIONS] KEYTYPE BASE64 [COMMENT]`, with the options
//! `namespaces="…"`, `valid-after="…"`, `valid-before="…"` and `cert-authority`. Times are
//! `YYYYMMDD[HHMM[SS]]`, in UTC with a trailing `Z`, local time otherwise.

use chrono::{DateTime, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use ssh_key::PublicKey;
use ssh_key::public::KeyData;

use crate::Error;

/// The lines of an allowed_signers file.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    signers: Vec<Signer>,
}

/// One line: a key, who it is, and what it may sign when.
#[derive(Debug, Clone)]
pub struct Signer {
    /// The principals field as written (`alice@example.com,release-team`).
    pub principals: String,
    key: PublicKey,
    /// `namespaces="…"`: the namespaces it may sign in (none: all).
    namespaces: Option<Vec<String>>,
    valid_after: Option<DateTime<Utc>>,
    valid_before: Option<DateTime<Utc>>,
    /// `cert-authority`: the key signs certificates, which depot does not take; never matches.
    cert_authority: bool,
}

impl Signer {
    /// Whether the key may sign in `namespace` at some time: not a certificate authority, and
    /// not limited to other namespaces.
    pub fn signs_in(&self, namespace: &str) -> bool {
        !self.cert_authority && self.namespaces.as_ref().is_none_or(|n| n.iter().any(|n| n == namespace))
    }

    /// The key's `SHA256:…` fingerprint.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(ssh_key::HashAlg::Sha256).to_string()
    }

    /// Whether the key may sign in `namespace` at `now`; why not otherwise.
    pub fn allows(&self, namespace: &str, now: DateTime<Utc>) -> Result<(), String> {
        if let Some(namespaces) = &self.namespaces
            && !namespaces.iter().any(|n| n == namespace)
        {
            return Err(format!(
                "its allowed_signers line for {} limits it to namespaces {}",
                self.principals,
                namespaces.join(",")
            ));
        }
        if let Some(after) = self.valid_after
            && now < after
        {
            return Err(format!("the key of {} is not valid before {after}", self.principals));
        }
        if let Some(before) = self.valid_before
            && now >= before
        {
            return Err(format!("the key of {} expired at {before}", self.principals));
        }
        Ok(())
    }
}

impl AllowedSigners {
    /// Parses the file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, Error> {
        let mut signers = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| Error::Line { path: path.to_owned(), line: index + 1, message };
            signers.push(parse_line(line).map_err(error)?);
        }
        Ok(AllowedSigners { signers })
    }

    /// The lines that hold `key` (certificate authorities left out).
    pub fn for_key<'a>(&'a self, key: &'a KeyData) -> impl Iterator<Item = &'a Signer> + 'a {
        self.signers.iter().filter(move |s| !s.cert_authority && s.key.key_data() == key)
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }

    /// Every line, in the file's order.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }
}

/// A key type as the first word of an OpenSSH public key.
pub(crate) fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-") || word.starts_with("ecdsa-sha2-") || word.starts_with("sk-")
}

fn parse_line(line: &str) -> Result<Signer, String> {
    let (principals, rest) = split_field(line);
    if principals.is_empty() || rest.is_empty() {
        return Err("expected PRINCIPALS [OPTIONS] KEYTYPE KEY".to_owned());
    }
    let (first, after_first) = split_field(rest);
    let (options, key_text) = if is_key_type(first) { ("", rest) } else { (first, after_first) };
    let key = PublicKey::from_openssh(key_text).map_err(|e| format!("not a public key: {e}"))?;
    let mut signer = Signer {
        principals: principals.to_owned(),
        key,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        cert_authority: false,
    };
    for option in split_options(options) {
        let (name, value) = match option.split_once('=') {
            Some((name, value)) => (name.to_ascii_lowercase(), Some(unquote(value)?)),
            None => (option.to_ascii_lowercase(), None),
        };
        match (name.as_str(), value) {
            ("cert-authority", None) => signer.cert_authority = true,
            ("namespaces", Some(value)) => {
                signer.namespaces = Some(value.split(',').map(|n| n.trim().to_owned()).collect())
            }
            ("valid-after", Some(value)) => signer.valid_after = Some(parse_time(&value)?),
            ("valid-before", Some(value)) => signer.valid_before = Some(parse_time(&value)?),
            (name, _) => return Err(format!("unknown option `{name}`")),
        }
    }
    Ok(signer)
}

/// The first field (up to whitespace outside double quotes) and the rest, trimmed.
pub(crate) fn split_field(text: &str) -> (&str, &str) {
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return (&text[..i], text[i..].trim_start()),
            _ => {}
        }
    }
    (text, "")
}

/// Options split at commas outside double quotes.
fn split_options(options: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut start) = (false, 0);
    for (i, c) in options.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&options[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < options.len() {
        parts.push(&options[start..]);
    }
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

fn unquote(value: &str) -> Result<String, String> {
    match value.strip_prefix('"') {
        Some(inner) => {
            inner.strip_suffix('"').map(str::to_owned).ok_or_else(|| format!("unterminated quote in {value}"))
        }
        None => Ok(value.to_owned()),
    }
}

/// `YYYYMMDD`, `YYYYMMDDHHMM` or `YYYYMMDDHHMMSS`; UTC with a trailing `Z`, local time otherwise.
fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let (digits, utc) = match text.strip_suffix(['Z', 'z']) {
        Some(digits) => (digits, true),
        None => (text, false),
    };
    let bad = || format!("`{text}` is not a time (YYYYMMDD[HHMM[SS]][Z])");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let naive: NaiveDateTime = match digits.len() {
        8 => NaiveDate::parse_from_str(digits, "%Y%m%d").map_err(|_| bad())?.and_hms_opt(0, 0, 0).ok_or_else(bad)?,
        12 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M").map_err(|_| bad())?,
        14 => NaiveDateTime::parse_from_str(digits, "%Y%m%d%H%M%S").map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if utc {
        Ok(Utc.from_utc_datetime(&naive))
    } else {
        Local.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc)).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEqdDyUCrDwqPiZb4uGAVKuOj4u2ngh33bj9mOgZV0cA";

    #[test]
    fn lines_as_ssh_keygen_reads_them() {
        let text = format!(
            "# release signers\n\nalice@example.com {KEY} alice's laptop\n\
             bob,release namespaces=\"depot,git\",valid-after=\"20260101Z\" {KEY}\n\
             ca@example.com cert-authority {KEY}\n"
        );
        let signers = AllowedSigners::parse(&text, "allowed_signers").unwrap();
        assert_eq!(signers.signers.len(), 3);
        assert_eq!(signers.signers[1].principals, "bob,release");
        assert_eq!(signers.signers[1].namespaces.as_deref(), Some(&["depot".to_owned(), "git".to_owned()][..]));
        assert!(signers.signers[1].valid_after.is_some());
        let key = PublicKey::from_openssh(KEY).unwrap();
        assert_eq!(signers.for_key(key.key_data()).count(), 2, "the certificate authority never matches a plain key");
    }

    #[test]
    fn bad_lines_are_named() {
        for (line, expect) in [
            (format!("alice {}", "ssh-ed25519 AAAA"), "not a public key"),
            (format!("alice unknown=\"x\" {KEY}"), "unknown option `unknown`"),
            (format!("alice valid-before=\"2026\" {KEY}"), "is not a time"),
            ("alice".to_owned(), "expected PRINCIPALS"),
        ] {
            let error = AllowedSigners::parse(&format!("# ok\n{line}\n"), "trust").unwrap_err().to_string();
            assert!(error.starts_with("trust line 2: ") && error.contains(expect), "{error}");
        }
    }
}
