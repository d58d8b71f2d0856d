//! Downloads of `--artifact-url`: streamed to a temporary file under `R/.depot/tmp/` and hashed on
//! the way, so nothing is held in memory and an interrupted download leaves nothing behind.
//!
//! A download runs while the root's lock is held, from a server depot does not control, so it is
//! bounded: a server that sends nothing for [`DownloadOptions::timeout`] (to connect, to answer,
//! or between two reads of the body) fails it; no more bytes than [`download_limit`] are read; a
//! redirect from https to anything else is refused; and a plain http URL is taken only with the
//! archive's expected sha256, since anyone on the way could change what it serves.

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::digest::HashingWriter;
use crate::progress::{Progress, ProgressReader};
use crate::stage::Limits;
use crate::{Error, Result};

/// How long a download may wait for the server when nothing is said: `--download-timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Redirects followed before a download fails.
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// The longest wait to connect, for the answer's headers, and between two reads of its body.
    pub timeout: Duration,
    /// PEM certificates of CAs trusted besides the built-in roots (a private artifact server).
    pub ca_pem: Option<Vec<u8>>,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions { timeout: DEFAULT_TIMEOUT, ca_pem: None }
    }
}

pub struct Download {
    pub file: tempfile::TempPath,
    pub sha256: String,
    pub size: u64,
}

/// The most bytes an archive downloaded under `limits` may have: `max_bytes`, which bounds what
/// the archive unpacks to, plus 1/64 of it and 1 MiB for what compression and tar framing add
/// (zstd and deflate add well under 1% to data they cannot compress). An archive larger than
/// this would be refused by the staging anyway; the bound stops it before it fills the disk.
pub fn download_limit(limits: &Limits) -> u64 {
    limits.max_bytes.saturating_add(limits.max_bytes / 64).saturating_add(1 << 20)
}

/// Downloads `url` into a temporary file in `dir`, at most `max_size` bytes. A plain http URL
/// needs `expected_sha256` (which the caller checks against the returned digest).
pub fn download(
    url: &str,
    expected_sha256: Option<&str>,
    max_size: u64,
    options: &DownloadOptions,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<Download> {
    let failed = |reason: String, hint: &str| Error::Download { url: url.to_owned(), reason, hint: hint.to_owned() };
    let network_hint = "check the URL and the network, then run the command again";
    let timeout_hint = "the server stalled; check it, or give it longer with --download-timeout";
    let parsed = reqwest::Url::parse(url).map_err(|e| failed(format!("not a URL: {e}"), network_hint))?;
    match parsed.scheme() {
        "https" => {}
        "http" if expected_sha256.is_some() => {}
        "http" => return Err(Error::UnverifiedDownload { url: url.to_owned() }),
        other => return Err(failed(format!("`{other}` URLs are not supported"), "use an http or https URL")),
    }
    let mut client = reqwest::blocking::Client::builder()
        .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(options.timeout)
        // In the blocking client, this bounds the wait for the answer and each read of the body:
        // a slow download that keeps sending runs to its end, a stalled one fails.
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else if attempt.previous().iter().any(|u| u.scheme() == "https") && attempt.url().scheme() != "https" {
                let error = format!("refused a redirect from https to {}", attempt.url());
                attempt.error(error)
            } else {
                attempt.follow()
            }
        }));
    if let Some(pem) = &options.ca_pem {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| failed(format!("invalid CA certificates: {}", crate::error::chain(&e)), "give a PEM file"))?;
        if certificates.is_empty() {
            return Err(failed("no certificate in the CA file".to_owned(), "give a PEM file of CA certificates"));
        }
        for certificate in certificates {
            client = client.add_root_certificate(certificate);
        }
    }
    let client = client.build().map_err(|e| failed(crate::error::chain(&e), network_hint))?;
    let response = client.get(parsed).send().map_err(|e| {
        if e.is_timeout() {
            let waited = humantime::format_duration(options.timeout);
            return failed(format!("the server did not answer within {waited}"), timeout_hint);
        }
        let hint = if e.is_redirect() {
            "the server sent the download elsewhere than https, where it could be read or changed on the way; use a URL that stays on https"
        } else {
            network_hint
        };
        failed(crate::error::chain(&e), hint)
    })?;
    if !response.status().is_success() {
        return Err(failed(format!("the server answered {}", response.status()), network_hint));
    }
    let too_large = |size: String| {
        failed(
            format!("the archive is larger than the download limit of {max_size} bytes ({size})"),
            "the limit follows --max-bytes (or max_bytes under [limits] in R/config/depot.toml); raise it if the archive is trusted",
        )
    };
    if let Some(length) = response.content_length()
        && length > max_size
    {
        return Err(too_large(format!("the server announced {length}")));
    }
    progress.start("downloading", response.content_length());
    let temp = tempfile::Builder::new().prefix("download-").tempfile_in(dir)?;
    let mut writer = HashingWriter::new(BufWriter::with_capacity(1 << 20, temp.as_file()));
    let mut reader = ProgressReader::new(response, progress).take(max_size + 1);
    std::io::copy(&mut reader, &mut writer).map_err(|e| {
        let timed_out =
            e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(|e| e.is_timeout());
        if timed_out {
            failed(format!("the server sent nothing for {}", humantime::format_duration(options.timeout)), timeout_hint)
        } else {
            failed(crate::error::chain(&e), network_hint)
        }
    })?;
    let (mut buffered, sha256, size) = writer.finish();
    if size > max_size {
        return Err(too_large("it sent more".to_owned()));
    }
    buffered.flush()?;
    drop(buffered);
    progress.finish();
    Ok(Download { file: temp.into_temp_path(), sha256, size })
}
