//! The typed HTTP client of `/api/v1` (feature `client`): one blocking method per route, each
//! returning the wire type of its response or a [`ClientError`].
//!
//! Blobs are streamed in both directions, never held in memory whole. Metadata requests time out
//! after [`METADATA_TIMEOUT`]; blob transfers get a deadline that grows with their size; a blocking
//! configuration query gets its wait plus a margin.

use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use reqwest::blocking::{Body, RequestBuilder, Response};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::error::{ErrorBody, ErrorCode};
use crate::names::{ComponentName, ConfigName, Digest, HostName, PipelineName, StageName, TokenName, VersionLabel};
use crate::pipeline::{
    CreatePipeline, EnvChange, EnvView, Gate, Pipeline, PipelineEvent, PipelineStatus, Promote, Promotion, SetGate,
};
use crate::types::{
    AgentReport, AgentStatus, BlobInfo, BumpLayer, BumpResult, ChannelInfo, ComponentSummary, Config, ConfigSummary,
    CreateConfig, CreateToken, DeprecateVersion, Deprecated, GcReport, HistoryEntry, PushVersion, ReplaceLayers,
    RollbackConfig, SetChannel, SetLayers, TokenCreated, TokenInfo, VersionInfo, WhoAmI,
};

/// How long a request that moves only metadata may take.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting to the registry may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A blob transfer may take this long plus one second per [`BLOB_MIN_RATE`] bytes.
pub const BLOB_TIMEOUT_BASE: Duration = Duration::from_secs(10 * 60);
/// The slowest average transfer rate, in bytes per second, before a blob transfer times out.
pub const BLOB_MIN_RATE: u64 = 256 * 1024;
/// What a blocking configuration query may take beyond its wait.
pub const WAIT_MARGIN: Duration = Duration::from_secs(30);
/// How often upload progress is reported.
const PROGRESS_TICK: Duration = Duration::from_millis(100);

/// A failed call: the registry's answer, or no usable answer at all.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The registry refused the request and said why (`{"code", "message", "hint"}`). Shown as
    /// the message followed by the code: `… already exists with digest sha256:… (version-exists)`.
    #[error("{} ({})", body.message, body.code)]
    Api { status: u16, body: ErrorBody },
    /// No answer: connection refused, timed out, reset, TLS failure, or a local read error while
    /// streaming a body.
    #[error("cannot reach the registry at {url}: {message}")]
    Transport { url: String, message: String },
    /// An answer that is not what the contract promises (a proxy's HTML page, a truncated body, a
    /// blob whose bytes do not match its digest).
    #[error("unexpected answer from {url} (HTTP {status}): {message}")]
    Decode { url: String, status: u16, message: String },
    /// The registry URL given to [`Client::new`] is not an http(s) URL.
    #[error("invalid registry URL `{url}`: {message}")]
    InvalidUrl { url: String, message: String },
    /// The CA certificates given to [`Client::with_ca_certificates`] are not PEM certificates.
    #[error("invalid CA certificate: {message}")]
    InvalidCertificate { message: String },
}

impl ClientError {
    /// The registry's error code, for an [`ClientError::Api`] error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api { body, .. } => Some(body.code),
            ClientError::Transport { .. }
            | ClientError::Decode { .. }
            | ClientError::InvalidUrl { .. }
            | ClientError::InvalidCertificate { .. } => None,
        }
    }

    /// What the user can do about it: the registry's hint, or one of ours.
    pub fn hint(&self) -> Option<String> {
        match self {
            ClientError::Api { body, .. } => body.hint.clone().or_else(|| match body.code {
                ErrorCode::Unauthorized => Some(
                    "pass --token or set DEPOT_TOKEN; the first admin token is in the registry's data directory, \
                     admin.token"
                        .to_owned(),
                ),
                ErrorCode::Forbidden => {
                    Some("ask an admin for a token with the role this needs (`depot token create`)".to_owned())
                }
                _ => None,
            }),
            ClientError::Transport { url, message } if url.starts_with("https:") && message.contains("certificate") => {
                Some(
                    "if the registry's certificate is signed by your own CA, pass --ca-cert FILE (or set DEPOT_CA_CERT) \
                     with that CA's certificate"
                        .to_owned(),
                )
            }
            ClientError::Transport { .. } => Some(
                "check that `depot serve` runs there, or point --registry (or DEPOT_REGISTRY) at the registry"
                    .to_owned(),
            ),
            ClientError::Decode { .. } => {
                Some("check that --registry points at a depot registry, not at a proxy or another service".to_owned())
            }
            ClientError::InvalidUrl { .. } => Some("use a URL such as http://127.0.0.1:7070".to_owned()),
            ClientError::InvalidCertificate { .. } => {
                Some("give a PEM file of one or more `-----BEGIN CERTIFICATE-----` blocks".to_owned())
            }
        }
    }
}

/// The result of an idempotent write: `created` is false when the registry already had it (HTTP
/// 200 rather than 201).
#[derive(Debug, Clone, PartialEq)]
pub struct Written<T> {
    pub value: T,
    pub created: bool,
}

/// A blocking client of one registry, with an optional bearer token.
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// A client of the registry at `base_url` (`http://127.0.0.1:7070`; a path prefix is kept).
    pub fn new(base_url: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::with_ca_certificates(base_url, token, None)
    }

    /// Like [`Client::new`], also trusting the CA certificates in `ca_pem` (a PEM bundle) for an
    /// https registry whose certificate a private CA signed.
    pub fn with_ca_certificates(
        base_url: &str,
        token: Option<String>,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, ClientError> {
        let invalid = |message: String| ClientError::InvalidUrl { url: base_url.to_owned(), message };
        let base = Url::parse(base_url).map_err(|e| invalid(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https".to_owned()));
        }
        if base.cannot_be_a_base() || base.host().is_none() {
            return Err(invalid("the URL has no host".to_owned()));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid("the URL must not have a query or a fragment".to_owned()));
        }
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("depot/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            // Every request sets its own deadline (see `send`).
            .timeout(None)
            .tcp_keepalive(Duration::from_secs(30));
        let http = match ca_pem {
            Some(pem) => {
                let certificates = reqwest::Certificate::from_pem_bundle(pem)
                    .map_err(|e| ClientError::InvalidCertificate { message: error_chain(&e) })?;
                if certificates.is_empty() {
                    return Err(ClientError::InvalidCertificate { message: "no certificate in the file".to_owned() });
                }
                certificates.into_iter().fold(http, |http, certificate| http.add_root_certificate(certificate))
            }
            None => http,
        };
        let http =
            http.build().map_err(|e| ClientError::Transport { url: base_url.to_owned(), message: error_chain(&e) })?;
        Ok(Client { base, token, http })
    }

    /// The registry's base URL.
    pub fn base_url(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /healthz` (no token needed).
    pub fn healthz(&self) -> Result<(), ClientError> {
        let url = self.url(&["healthz"]);
        let response = self.send(self.http.get(url.clone()), &url, METADATA_TIMEOUT)?;
        let status = response.status();
        let text = response.text().map_err(|e| decode_error(&url, status, &e))?;
        if text.trim() == "ok" {
            Ok(())
        } else {
            Err(ClientError::Decode { url: url.to_string(), status: status.as_u16(), message: snippet(&text) })
        }
    }

    /// `GET /api/v1/whoami`
    pub fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.get_json(&["api", "v1", "whoami"])
    }

    /// `HEAD /api/v1/blobs/{digest}`: the blob's size, or `None` when the registry does not have
    /// it.
    pub fn blob_size(&self, digest: &Digest) -> Result<Option<u64>, ClientError> {
        let url = self.url(&["api", "v1", "blobs", digest.as_str()]);
        let request = self.authorized(self.http.head(url.clone()));
        let result = request.timeout(METADATA_TIMEOUT).send();
        let response = result.map_err(|e| transport_error(&url, &e))?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            // A HEAD answer has no body: rebuild the error from the status.
            return Err(status_error(&url, status, format!("HEAD {digest}")));
        }
        // Not `content_length()`: for a HEAD answer that is the (empty) body's length.
        let length =
            response.headers().get(reqwest::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        match length {
            Some(size) => Ok(Some(size)),
            None => Err(ClientError::Decode {
                url: url.to_string(),
                status: status.as_u16(),
                message: "no Content-Length".to_owned(),
            }),
        }
    }

    /// `PUT /api/v1/blobs/{digest}`: streams `size` bytes from `reader` (never buffered whole).
    /// `progress` is called on another thread, about ten times a second, with the number of bytes
    /// sent since its last call.
    pub fn upload_blob(
        &self,
        digest: &Digest,
        reader: impl Read + Send + 'static,
        size: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Written<BlobInfo>, ClientError> {
        self.put_blob(self.url(&["api", "v1", "blobs", digest.as_str()]), reader, size, progress)
    }

    /// PUTs `size` bytes from `reader` to `url`, streamed, reporting progress.
    fn put_blob(
        &self,
        url: Url,
        reader: impl Read + Send + 'static,
        size: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Written<BlobInfo>, ClientError> {
        let sent = Arc::new(AtomicU64::new(0));
        let body = Body::sized(CountingReader { inner: reader, count: sent.clone() }, size);
        let request = self.http.put(url.clone()).header(reqwest::header::CONTENT_TYPE, "application/octet-stream");
        let response = reporting(&sent, progress, || self.send(request.body(body), &url, blob_timeout(size)))?;
        let created = response.status() == StatusCode::CREATED;
        let value = read_json(response, &url)?;
        Ok(Written { value, created })
    }

    /// `PUT /api/v1/blobs/{digest}/assembly`: `head` as one line of JSON, then `inline_len` bytes
    /// from `inline` (the bytes of the inline parts, in order), streamed. `progress` as for
    /// [`Client::upload_blob`].
    pub fn upload_blob_assembly(
        &self,
        digest: &Digest,
        head: &crate::types::Assembly,
        inline: impl Read + Send + 'static,
        inline_len: u64,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<Written<BlobInfo>, ClientError> {
        let url = self.url(&["api", "v1", "blobs", digest.as_str(), "assembly"]);
        let mut line = serde_json::to_vec(head).expect("an assembly serialises");
        line.push(b'\n');
        let size = line.len() as u64 + inline_len;
        self.put_blob(url, io::Cursor::new(line).chain(inline), size, progress)
    }

    /// `GET /api/v1/blobs/{digest}`: streams the blob into `writer`, checking its digest, and
    /// returns its size. `progress` gets the bytes written since its last call.
    ///
    /// A mismatched digest is an error, but the bytes were written: the caller discards them.
    pub fn download_blob(
        &self,
        digest: &Digest,
        writer: &mut dyn Write,
        progress: &(dyn Fn(u64) + Sync),
    ) -> Result<u64, ClientError> {
        let url = self.url(&["api", "v1", "blobs", digest.as_str()]);
        // The deadline grows with the size, which a HEAD tells first.
        let size = self.blob_size(digest)?.ok_or_else(|| ClientError::Api {
            status: ErrorCode::UnknownBlob.status(),
            body: ErrorBody::new(ErrorCode::UnknownBlob, format!("unknown blob {digest}")),
        })?;
        let mut response = self.send(self.http.get(url.clone()), &url, blob_timeout(size))?;
        let status = response.status();
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match response.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Transport { url: url.to_string(), message: error_chain(&e) }),
            };
            hasher.update(&buffer[..n]);
            writer.write_all(&buffer[..n]).map_err(|e| ClientError::Transport {
                url: url.to_string(),
                message: format!("cannot write the blob: {}", error_chain(&e)),
            })?;
            total += n as u64;
            progress(n as u64);
        }
        let actual: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        if actual != digest.hex() {
            return Err(ClientError::Decode {
                url: url.to_string(),
                status: status.as_u16(),
                message: format!("the blob's bytes have digest sha256:{actual}, not {digest}"),
            });
        }
        Ok(total)
    }

    /// Downloads `range` of blob `digest` into `writer` (`GET` with `Range`); returns how many
    /// bytes came. The caller checks what they are: a range has no digest of its own.
    pub fn download_blob_range(
        &self,
        digest: &Digest,
        range: std::ops::Range<u64>,
        writer: &mut dyn Write,
    ) -> Result<u64, ClientError> {
        let url = self.url(&["api", "v1", "blobs", digest.as_str()]);
        let length = range.end.saturating_sub(range.start);
        let request = self
            .http
            .get(url.clone())
            .header(reqwest::header::RANGE, format!("bytes={}-{}", range.start, range.end.saturating_sub(1)));
        let mut response = self.send(request, &url, blob_timeout(length))?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(ClientError::Decode {
                url: url.to_string(),
                status: response.status().as_u16(),
                message: format!("asked for bytes {}..{} and got the whole blob", range.start, range.end),
            });
        }
        let mut buffer = vec![0u8; 256 * 1024];
        let mut copied = 0u64;
        while copied < length {
            let want = (length - copied).min(buffer.len() as u64) as usize;
            let n = match response.read(&mut buffer[..want]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(ClientError::Transport { url: url.to_string(), message: error_chain(&e) }),
            };
            writer.write_all(&buffer[..n]).map_err(|e| ClientError::Transport {
                url: url.to_string(),
                message: format!("cannot write the blob: {}", error_chain(&e)),
            })?;
            copied += n as u64;
        }
        if copied != length {
            return Err(ClientError::Transport {
                url: url.to_string(),
                message: format!("the range ended after {copied} of {length} bytes"),
            });
        }
        Ok(copied)
    }

    /// `GET /api/v1/blobs/{digest}/frames`
    pub fn blob_frames(&self, digest: &Digest) -> Result<crate::types::BlobFrames, ClientError> {
        self.get_json(&["api", "v1", "blobs", digest.as_str(), "frames"])
    }

    /// `PUT /api/v1/components/{component}/versions/{version}/deprecation`
    pub fn deprecate(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        request: &DeprecateVersion,
    ) -> Result<Deprecated, ClientError> {
        let path = ["api", "v1", "components", component.as_str(), "versions", version.as_str(), "deprecation"];
        self.send_json(Method::PUT, &path, request)
    }

    /// `DELETE /api/v1/components/{component}/versions/{version}/deprecation`
    pub fn undeprecate(&self, component: &ComponentName, version: &VersionLabel) -> Result<VersionInfo, ClientError> {
        let url =
            self.url(&["api", "v1", "components", component.as_str(), "versions", version.as_str(), "deprecation"]);
        let response = self.send(self.http.delete(url.clone()), &url, METADATA_TIMEOUT)?;
        read_json(response, &url)
    }

    /// `PUT /api/v1/components/{component}/channels/{channel}`
    pub fn set_channel(
        &self,
        component: &ComponentName,
        channel: &VersionLabel,
        request: &SetChannel,
    ) -> Result<ChannelInfo, ClientError> {
        self.send_json(
            Method::PUT,
            &["api", "v1", "components", component.as_str(), "channels", channel.as_str()],
            request,
        )
    }

    /// `DELETE /api/v1/components/{component}/channels/{channel}`
    pub fn remove_channel(&self, component: &ComponentName, channel: &VersionLabel) -> Result<(), ClientError> {
        let url = self.url(&["api", "v1", "components", component.as_str(), "channels", channel.as_str()]);
        self.send(self.http.delete(url.clone()), &url, METADATA_TIMEOUT)?;
        Ok(())
    }

    /// `GET /api/v1/components/{component}/channels`
    pub fn channels(&self, component: &ComponentName) -> Result<Vec<ChannelInfo>, ClientError> {
        self.get_json(&["api", "v1", "components", component.as_str(), "channels"])
    }

    /// `GET /api/v1/components`
    pub fn components(&self) -> Result<Vec<ComponentSummary>, ClientError> {
        self.get_json(&["api", "v1", "components"])
    }

    /// `GET /api/v1/components/{component}/versions`, oldest first (semver precedence; other labels in push order, first).
    pub fn versions(&self, component: &ComponentName) -> Result<Vec<VersionInfo>, ClientError> {
        self.get_json(&["api", "v1", "components", component.as_str(), "versions"])
    }

    /// `GET /api/v1/components/{component}/versions/{version}`
    pub fn version(&self, component: &ComponentName, version: &VersionLabel) -> Result<VersionInfo, ClientError> {
        self.get_json(&["api", "v1", "components", component.as_str(), "versions", version.as_str()])
    }

    /// `PUT /api/v1/components/{component}/versions/{version}`: the same digest again is a
    /// success (`created: false`); another digest is `version-exists`.
    pub fn push_version(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        request: &PushVersion,
    ) -> Result<Written<VersionInfo>, ClientError> {
        let url = self.url(&["api", "v1", "components", component.as_str(), "versions", version.as_str()]);
        let response = self.send(self.http.put(url.clone()).json_body(request), &url, METADATA_TIMEOUT)?;
        let created = response.status() == StatusCode::CREATED;
        Ok(Written { value: read_json(response, &url)?, created })
    }

    /// `DELETE /api/v1/components/{component}/versions/{version}`; `in-use` while a
    /// configuration names it.
    pub fn delete_version(&self, component: &ComponentName, version: &VersionLabel) -> Result<(), ClientError> {
        self.delete(&["api", "v1", "components", component.as_str(), "versions", version.as_str()])
    }

    /// `DELETE /api/v1/components/{component}`; `in-use` while a configuration names it.
    pub fn delete_component(&self, component: &ComponentName) -> Result<(), ClientError> {
        self.delete(&["api", "v1", "components", component.as_str()])
    }

    /// `GET /api/v1/configs`
    pub fn configs(&self) -> Result<Vec<ConfigSummary>, ClientError> {
        self.get_json(&["api", "v1", "configs"])
    }

    /// `POST /api/v1/configs`
    pub fn create_config(&self, request: &CreateConfig) -> Result<Config, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "configs"], request)
    }

    /// `GET /api/v1/configs/{name}`. With `after` and `wait`, a blocking query: the registry
    /// answers when the revision exceeds `after`, or when `wait` ends (with the current revision).
    pub fn get_config(
        &self,
        name: &ConfigName,
        after: Option<u64>,
        wait: Option<Duration>,
    ) -> Result<Config, ClientError> {
        self.config_for(name, None, after, wait)
    }

    /// `GET /api/v1/configs/{name}?host=H`: the configuration host H may run now (a rollout
    /// decides which revision). With `after` and `wait`, a blocking query that answers when that
    /// revision differs from `after`, or when `wait` ends.
    pub fn config_for(
        &self,
        name: &ConfigName,
        host: Option<&HostName>,
        after: Option<u64>,
        wait: Option<Duration>,
    ) -> Result<Config, ClientError> {
        let mut url = self.url(&["api", "v1", "configs", name.as_str()]);
        let mut timeout = METADATA_TIMEOUT;
        if let Some(host) = host {
            url.query_pairs_mut().append_pair("host", host.as_str());
        }
        if let (Some(after), Some(wait)) = (after, wait) {
            // Milliseconds, so that a sub-second wait is not rounded to zero.
            url.query_pairs_mut()
                .append_pair("after", &after.to_string())
                .append_pair("wait", &format!("{}ms", wait.as_millis()));
            timeout = wait + WAIT_MARGIN;
        }
        let response = self.send(self.http.get(url.clone()), &url, timeout)?;
        read_json(response, &url)
    }

    /// `PUT /api/v1/configs/{name}/strategy`
    pub fn set_strategy(&self, name: &ConfigName, strategy: &crate::rollout::Strategy) -> Result<Config, ClientError> {
        self.send_json(Method::PUT, &["api", "v1", "configs", name.as_str(), "strategy"], strategy)
    }

    /// `GET /api/v1/configs/{name}/rollout`
    pub fn rollout(&self, name: &ConfigName) -> Result<crate::rollout::RolloutStatus, ClientError> {
        self.get_json(&["api", "v1", "configs", name.as_str(), "rollout"])
    }

    /// `POST /api/v1/configs/{name}/rollout`
    pub fn rollout_action(
        &self,
        name: &ConfigName,
        action: crate::rollout::RolloutAction,
    ) -> Result<crate::rollout::RolloutStatus, ClientError> {
        let request = crate::rollout::RolloutRequest { action };
        self.send_json(Method::POST, &["api", "v1", "configs", name.as_str(), "rollout"], &request)
    }

    /// `PATCH /api/v1/configs/{name}`
    pub fn set_layers(&self, name: &ConfigName, request: &SetLayers) -> Result<Config, ClientError> {
        self.send_json(Method::PATCH, &["api", "v1", "configs", name.as_str()], request)
    }

    /// `PUT /api/v1/configs/{name}`
    pub fn replace_layers(&self, name: &ConfigName, request: &ReplaceLayers) -> Result<Config, ClientError> {
        self.send_json(Method::PUT, &["api", "v1", "configs", name.as_str()], request)
    }

    /// `POST /api/v1/configs/{name}/bump`
    pub fn bump(&self, name: &ConfigName, request: &BumpLayer) -> Result<BumpResult, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "configs", name.as_str(), "bump"], request)
    }

    /// `POST /api/v1/configs/{name}/rollback`
    pub fn rollback(&self, name: &ConfigName, request: &RollbackConfig) -> Result<Config, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "configs", name.as_str(), "rollback"], request)
    }

    /// `POST /api/v1/components/{component}/versions/{version}/signatures`
    pub fn add_signature(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        request: &crate::types::AddSignature,
    ) -> Result<VersionInfo, ClientError> {
        let path = ["api", "v1", "components", component.as_str(), "versions", version.as_str(), "signatures"];
        self.send_json(Method::POST, &path, request)
    }

    /// `POST /api/v1/keys`
    pub fn add_ssh_key(&self, request: &crate::types::AddSshKey) -> Result<crate::types::SshKeyInfo, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "keys"], request)
    }

    /// `POST /api/v1/keys/import`
    pub fn import_ssh_keys(
        &self,
        request: &crate::types::ImportSshKeys,
    ) -> Result<Vec<crate::types::SshKeyInfo>, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "keys", "import"], request)
    }

    /// `GET /api/v1/keys`
    pub fn ssh_keys(&self) -> Result<Vec<crate::types::SshKeyInfo>, ClientError> {
        self.get_json(&["api", "v1", "keys"])
    }

    /// `DELETE /api/v1/keys/{name}`
    pub fn revoke_ssh_key(&self, name: &TokenName) -> Result<(), ClientError> {
        let url = self.url(&["api", "v1", "keys", name.as_str()]);
        self.send(self.http.delete(url.clone()), &url, METADATA_TIMEOUT)?;
        Ok(())
    }

    /// `POST /api/v1/components/{component}/versions/{version}/attestations`
    pub fn add_attestation(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        request: &crate::types::AddAttestation,
    ) -> Result<crate::types::AttestationInfo, ClientError> {
        let path = ["api", "v1", "components", component.as_str(), "versions", version.as_str(), "attestations"];
        self.send_json(Method::POST, &path, request)
    }

    /// `GET /api/v1/components/{component}/versions/{version}/attestations`
    pub fn attestations(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
    ) -> Result<Vec<crate::types::AttestationInfo>, ClientError> {
        self.get_json(&["api", "v1", "components", component.as_str(), "versions", version.as_str(), "attestations"])
    }

    /// `GET /api/v1/components/{component}/versions/{version}/attestations/{digest}`
    pub fn attestation(
        &self,
        component: &ComponentName,
        version: &VersionLabel,
        digest: &Digest,
    ) -> Result<crate::types::AttestationInfo, ClientError> {
        let path = [
            "api",
            "v1",
            "components",
            component.as_str(),
            "versions",
            version.as_str(),
            "attestations",
            digest.as_str(),
        ];
        self.get_json(&path)
    }

    /// `GET /api/v1/components/{component}/policy`; `None` when it has none.
    pub fn policy(&self, component: &ComponentName) -> Result<Option<crate::types::SignaturePolicy>, ClientError> {
        match self.get_json(&["api", "v1", "components", component.as_str(), "policy"]) {
            Err(error) if error.code() == Some(crate::ErrorCode::NotFound) => Ok(None),
            result => result.map(Some),
        }
    }

    /// `PUT /api/v1/components/{component}/policy`
    pub fn set_policy(
        &self,
        component: &ComponentName,
        request: &crate::types::SetPolicy,
    ) -> Result<crate::types::SignaturePolicy, ClientError> {
        self.send_json(Method::PUT, &["api", "v1", "components", component.as_str(), "policy"], request)
    }

    /// `DELETE /api/v1/components/{component}/policy`
    pub fn remove_policy(&self, component: &ComponentName) -> Result<(), ClientError> {
        let url = self.url(&["api", "v1", "components", component.as_str(), "policy"]);
        self.send(self.http.delete(url.clone()), &url, METADATA_TIMEOUT)?;
        Ok(())
    }

    /// `GET /api/v1/blobs/{digest}/signatures`
    pub fn blob_signatures(&self, digest: &Digest) -> Result<Vec<crate::types::BlobSignatures>, ClientError> {
        self.get_json(&["api", "v1", "blobs", digest.as_str(), "signatures"])
    }

    /// `GET /api/v1/configs/{name}/history`
    pub fn history(&self, name: &ConfigName) -> Result<Vec<HistoryEntry>, ClientError> {
        self.get_json(&["api", "v1", "configs", name.as_str(), "history"])
    }

    /// `PUT /api/v1/configs/{name}/agents/{host}`: an agent's report.
    pub fn report_agent(&self, config: &ConfigName, host: &HostName, report: &AgentReport) -> Result<(), ClientError> {
        let url = self.url(&["api", "v1", "configs", config.as_str(), "agents", host.as_str()]);
        self.send(self.http.put(url.clone()).json_body(report), &url, METADATA_TIMEOUT)?;
        Ok(())
    }

    /// `GET /api/v1/configs/{name}/agents`
    pub fn agents(&self, config: &ConfigName) -> Result<Vec<AgentStatus>, ClientError> {
        self.get_json(&["api", "v1", "configs", config.as_str(), "agents"])
    }

    /// `DELETE /api/v1/configs/{name}`
    /// `DELETE /api/v1/configs/{name}[?expect_revision=N]`
    pub fn delete_config(&self, name: &ConfigName, expect_revision: Option<u64>) -> Result<(), ClientError> {
        let mut url = self.url(&["api", "v1", "configs", name.as_str()]);
        if let Some(revision) = expect_revision {
            url.query_pairs_mut().append_pair("expect_revision", &revision.to_string());
        }
        self.send(self.http.delete(url.clone()), &url, METADATA_TIMEOUT)?;
        Ok(())
    }

    /// `GET /api/v1/pipelines`
    pub fn pipelines(&self) -> Result<Vec<Pipeline>, ClientError> {
        self.get_json(&["api", "v1", "pipelines"])
    }

    /// `POST /api/v1/pipelines`
    pub fn create_pipeline(&self, request: &CreatePipeline) -> Result<Pipeline, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "pipelines"], request)
    }

    /// `GET /api/v1/pipelines/{name}`
    pub fn pipeline(&self, name: &PipelineName) -> Result<PipelineStatus, ClientError> {
        self.get_json(&["api", "v1", "pipelines", name.as_str()])
    }

    /// `PUT /api/v1/pipelines/{name}/stages/{stage}/gate`
    pub fn set_gate(&self, name: &PipelineName, stage: &StageName, gate: Gate) -> Result<Pipeline, ClientError> {
        let path = ["api", "v1", "pipelines", name.as_str(), "stages", stage.as_str(), "gate"];
        self.send_json(Method::PUT, &path, &SetGate { gate })
    }

    /// `POST /api/v1/pipelines/{name}/promotions`: applied, unchanged, or pending approval.
    pub fn promote(&self, name: &PipelineName, request: &Promote) -> Result<Promotion, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "pipelines", name.as_str(), "promotions"], request)
    }

    /// `POST /api/v1/pipelines/{name}/promotions/{id}/approval`
    pub fn approve(&self, name: &PipelineName, id: u64) -> Result<Promotion, ClientError> {
        let id = id.to_string();
        let path = ["api", "v1", "pipelines", name.as_str(), "promotions", id.as_str(), "approval"];
        self.send_json(Method::POST, &path, &serde_json::json!({}))
    }

    /// `POST /api/v1/pipelines/{name}/promotions/{id}/rejection`
    pub fn reject(&self, name: &PipelineName, id: u64) -> Result<Promotion, ClientError> {
        let id = id.to_string();
        let path = ["api", "v1", "pipelines", name.as_str(), "promotions", id.as_str(), "rejection"];
        self.send_json(Method::POST, &path, &serde_json::json!({}))
    }

    /// `DELETE /api/v1/pipelines/{name}`: with its stages' configurations.
    pub fn delete_pipeline(&self, name: &PipelineName) -> Result<(), ClientError> {
        self.delete(&["api", "v1", "pipelines", name.as_str()])
    }

    /// `POST /api/v1/pipelines/{name}/stages/{stage}/rollback`
    pub fn rollback_stage(
        &self,
        name: &PipelineName,
        stage: &StageName,
        request: &RollbackConfig,
    ) -> Result<Config, ClientError> {
        let path = ["api", "v1", "pipelines", name.as_str(), "stages", stage.as_str(), "rollback"];
        self.send_json(Method::POST, &path, request)
    }

    /// `GET /api/v1/pipelines/{name}/stages/{stage}/env[?show=true]`
    pub fn env(&self, name: &PipelineName, stage: &StageName, show: bool) -> Result<EnvView, ClientError> {
        let mut url = self.url(&["api", "v1", "pipelines", name.as_str(), "stages", stage.as_str(), "env"]);
        if show {
            url.query_pairs_mut().append_pair("show", "true");
        }
        let response = self.send(self.http.get(url.clone()), &url, METADATA_TIMEOUT)?;
        read_json(response, &url)
    }

    /// `PATCH /api/v1/pipelines/{name}/stages/{stage}/env`
    pub fn set_env(&self, name: &PipelineName, stage: &StageName, change: &EnvChange) -> Result<Config, ClientError> {
        let path = ["api", "v1", "pipelines", name.as_str(), "stages", stage.as_str(), "env"];
        self.send_json(Method::PATCH, &path, change)
    }

    /// `GET /api/v1/pipelines/{name}/history[?stage=S]`
    pub fn pipeline_history(
        &self,
        name: &PipelineName,
        stage: Option<&StageName>,
    ) -> Result<Vec<PipelineEvent>, ClientError> {
        let mut url = self.url(&["api", "v1", "pipelines", name.as_str(), "history"]);
        if let Some(stage) = stage {
            url.query_pairs_mut().append_pair("stage", stage.as_str());
        }
        let response = self.send(self.http.get(url.clone()), &url, METADATA_TIMEOUT)?;
        read_json(response, &url)
    }

    /// `POST /api/v1/tokens`: the response holds the secret, shown once.
    pub fn create_token(&self, request: &CreateToken) -> Result<TokenCreated, ClientError> {
        self.send_json(Method::POST, &["api", "v1", "tokens"], request)
    }

    /// `GET /api/v1/tokens`
    pub fn tokens(&self) -> Result<Vec<TokenInfo>, ClientError> {
        self.get_json(&["api", "v1", "tokens"])
    }

    /// `DELETE /api/v1/tokens/{name}`
    pub fn revoke_token(&self, name: &TokenName) -> Result<(), ClientError> {
        self.delete(&["api", "v1", "tokens", name.as_str()])
    }

    /// `POST /api/v1/gc`
    pub fn gc(&self) -> Result<GcReport, ClientError> {
        let url = self.url(&["api", "v1", "gc"]);
        // Collection walks every blob: give it longer than a metadata call.
        let response = self.send(self.http.post(url.clone()), &url, BLOB_TIMEOUT_BASE)?;
        read_json(response, &url)
    }

    /// The base URL with `segments` appended, each percent-encoded (a version label may hold `%`,
    /// `?` or `#`).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked in Client::new: the URL can be a base").pop_if_empty().extend(segments);
        url
    }

    fn authorized(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends with the token and a deadline; a non-2xx answer becomes [`ClientError::Api`].
    fn send(&self, request: RequestBuilder, url: &Url, timeout: Duration) -> Result<Response, ClientError> {
        let response = self.authorized(request).timeout(timeout).send().map_err(|e| transport_error(url, &e))?;
        if response.status().is_success() { Ok(response) } else { Err(api_error(response, url)) }
    }

    fn get_json<T: DeserializeOwned>(&self, segments: &[&str]) -> Result<T, ClientError> {
        let url = self.url(segments);
        let response = self.send(self.http.get(url.clone()), &url, METADATA_TIMEOUT)?;
        read_json(response, &url)
    }

    fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: &impl serde::Serialize,
    ) -> Result<T, ClientError> {
        let url = self.url(segments);
        let response = self.send(self.http.request(method, url.clone()).json_body(body), &url, METADATA_TIMEOUT)?;
        read_json(response, &url)
    }

    fn delete(&self, segments: &[&str]) -> Result<(), ClientError> {
        let url = self.url(segments);
        self.send(self.http.delete(url.clone()), &url, METADATA_TIMEOUT)?;
        Ok(())
    }
}

/// `RequestBuilder::json` needs reqwest's `json` feature; this is the same in two lines.
trait JsonBody {
    fn json_body(self, body: &impl serde::Serialize) -> Self;
}

impl JsonBody for RequestBuilder {
    fn json_body(self, body: &impl serde::Serialize) -> Self {
        let bytes = serde_json::to_vec(body).expect("request types serialise");
        self.header(reqwest::header::CONTENT_TYPE, "application/json").body(bytes)
    }
}

/// The deadline of a blob transfer of `size` bytes.
fn blob_timeout(size: u64) -> Duration {
    BLOB_TIMEOUT_BASE + Duration::from_secs(size / BLOB_MIN_RATE)
}

fn read_json<T: DeserializeOwned>(response: Response, url: &Url) -> Result<T, ClientError> {
    let status = response.status();
    let bytes = response.bytes().map_err(|e| decode_error(url, status, &e))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        url: url.to_string(),
        status: status.as_u16(),
        message: format!("{e}: {}", snippet(&String::from_utf8_lossy(&bytes))),
    })
}

/// A non-2xx answer: the registry's error body, else one built from the status.
fn api_error(response: Response, url: &Url) -> ClientError {
    let status = response.status();
    let text = match response.text() {
        Ok(text) => text,
        Err(e) => return decode_error(url, status, &e),
    };
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => ClientError::Api { status: status.as_u16(), body },
        Err(_) => status_error(url, status, snippet(&text)),
    }
}

/// An error answer without a usable body: authentication and permission failures keep their
/// meaning (a proxy or a HEAD request may drop the body), anything else is undecodable.
fn status_error(url: &Url, status: StatusCode, detail: String) -> ClientError {
    let code = match status {
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        _ => return ClientError::Decode { url: url.to_string(), status: status.as_u16(), message: detail },
    };
    let message = match code {
        ErrorCode::Unauthorized => "the registry refused the token",
        _ => "the token's role does not allow this",
    };
    ClientError::Api { status: status.as_u16(), body: ErrorBody::new(code, message) }
}

fn transport_error(url: &Url, error: &reqwest::Error) -> ClientError {
    let mut message = error_chain(error);
    if error.is_timeout() {
        message = format!("timed out ({message})");
    }
    ClientError::Transport { url: url.to_string(), message }
}

fn decode_error(url: &Url, status: StatusCode, error: &reqwest::Error) -> ClientError {
    ClientError::Decode { url: url.to_string(), status: status.as_u16(), message: error_chain(error) }
}

/// An error and its causes on one line. reqwest's own message only says "error sending request";
/// the cause says "Connection refused".
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        let text = error.to_string();
        // reqwest repeats the URL in its own message; the caller already names it.
        let text = match text.split_once(" for url (") {
            Some((head, _)) => head.to_owned(),
            None => text,
        };
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        next = error.source();
    }
    parts.join(": ")
}

/// The first 200 characters of an unexpected body, on one line.
fn snippet(text: &str) -> String {
    let flat: String = text.trim().chars().map(|c| if c.is_control() { ' ' } else { c }).take(200).collect();
    if flat.is_empty() { "(empty body)".to_owned() } else { flat }
}

/// Counts the bytes read through it into a shared counter.
struct CountingReader<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Runs `work` while a scoped thread reports the growth of `counter` to `progress`. The request
/// body must be `'static`, so it cannot borrow the caller's callback; the counter bridges the two.
fn reporting<T>(counter: &AtomicU64, progress: &(dyn Fn(u64) + Sync), work: impl FnOnce() -> T) -> T {
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut reported = 0;
            loop {
                let done = !matches!(stopped.recv_timeout(PROGRESS_TICK), Err(RecvTimeoutError::Timeout));
                let now = counter.load(Ordering::Relaxed);
                if now > reported {
                    progress(now - reported);
                    reported = now;
                }
                if done {
                    break;
                }
            }
        });
        let result = work();
        drop(stop);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(base: &str) -> Client {
        Client::new(base, Some("ci.0123".to_owned())).unwrap()
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_segments() {
        let component = ComponentName::parse("web").unwrap();
        let version = VersionLabel::parse("1.0+build%2F?x#y").unwrap();
        let segments = ["api", "v1", "components", component.as_str(), "versions", version.as_str()];
        assert_eq!(
            client("http://registry:7070").url(&segments).as_str(),
            "http://registry:7070/api/v1/components/web/versions/1.0+build%252F%3Fx%23y"
        );
        assert_eq!(
            client("https://example.com/depot/").url(&["healthz"]).as_str(),
            "https://example.com/depot/healthz"
        );
        assert_eq!(client("https://example.com/depot").url(&["healthz"]).as_str(), "https://example.com/depot/healthz");
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in ["127.0.0.1:7070", "ftp://host", "http://host/?q=1", "not a url", "unix:/tmp/sock"] {
            assert!(matches!(Client::new(url, None), Err(ClientError::InvalidUrl { .. })), "{url}");
        }
    }

    #[test]
    fn debug_output_hides_the_token() {
        let debug = format!("{:?}", Client::new("http://h", Some("ci.secretsecret".to_owned())).unwrap());
        assert!(!debug.contains("secretsecret"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn api_errors_display_the_message_and_carry_the_hint() {
        let error = ClientError::Api {
            status: 409,
            body: ErrorBody::new(ErrorCode::VersionExists, "version 1.0 of web already exists").with_hint("bump it"),
        };
        assert_eq!(error.to_string(), "version 1.0 of web already exists (version-exists)");
        assert_eq!(error.hint().as_deref(), Some("bump it"));
        assert_eq!(error.code(), Some(ErrorCode::VersionExists));
        let forbidden = ClientError::Api { status: 403, body: ErrorBody::new(ErrorCode::Forbidden, "no") };
        assert!(forbidden.hint().unwrap().contains("depot token create"));
    }

    #[test]
    fn blob_deadlines_grow_with_size() {
        assert_eq!(blob_timeout(0), BLOB_TIMEOUT_BASE);
        assert_eq!(blob_timeout(10 * BLOB_MIN_RATE), BLOB_TIMEOUT_BASE + Duration::from_secs(10));
    }

    /// Answers one connection per response on `listener` (each `Connection: close`), and
    /// returns the head of each request it read.
    fn answer(listener: std::net::TcpListener, responses: Vec<Vec<u8>>) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let mut heads = Vec::new();
            for response in responses {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                heads.push(String::from_utf8_lossy(&head).into_owned());
                stream.write_all(&response).unwrap();
            }
            heads
        })
    }

    #[test]
    fn a_redirected_download_goes_without_the_token_and_its_digest_is_still_checked() {
        let data = b"the bytes of a blob".to_vec();
        let hex: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        let digest = Digest::from_hex(&hex).unwrap();
        for (served, verified) in [(data.clone(), true), (b"other bytes, same length".to_vec(), false)] {
            let registry = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let store = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let presigned =
                format!("http://{}/bucket/blobs/sha256/{hex}?X-Amz-Signature=abc", store.local_addr().unwrap());
            let registry_url = format!("http://{}", registry.local_addr().unwrap());
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len());
            let redirect = format!(
                "HTTP/1.1 307 Temporary Redirect\r\nLocation: {presigned}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let registry_seen = answer(registry, vec![head.into_bytes(), redirect.into_bytes()]);
            let mut blob = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", served.len())
                .into_bytes();
            blob.extend_from_slice(&served);
            let store_seen = answer(store, vec![blob]);

            let mut written = Vec::new();
            let result = Client::new(&registry_url, Some("ops.topsecret".to_owned())).unwrap().download_blob(
                &digest,
                &mut written,
                &|_| {},
            );
            let registry_seen = registry_seen.join().unwrap();
            let store_seen = store_seen.join().unwrap();
            assert!(registry_seen.iter().all(|head| head.contains("ops.topsecret")), "{registry_seen:?}");
            assert!(store_seen[0].starts_with("GET /bucket/blobs/sha256/"), "{store_seen:?}");
            assert!(
                !store_seen[0].to_lowercase().contains("authorization") && !store_seen[0].contains("topsecret"),
                "the token must not reach the object store: {}",
                store_seen[0]
            );
            match result {
                Ok(size) if verified => assert_eq!((size, written), (data.len() as u64, data.clone())),
                Err(ClientError::Decode { message, .. }) if !verified => {
                    assert!(message.contains(&format!("not {digest}")), "{message}")
                }
                other => panic!("verified={verified}: {other:?}"),
            }
        }
    }

    #[test]
    fn connection_refused_is_a_transport_error_with_a_hint() {
        // Bind and drop a listener: its port is closed now.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let error = Client::new(&format!("http://127.0.0.1:{port}"), None).unwrap().healthz().unwrap_err();
        assert!(matches!(error, ClientError::Transport { .. }), "{error:?}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
        assert!(error.hint().unwrap().contains("--registry"));
    }

    #[test]
    fn progress_reports_every_byte_once() {
        let counter = AtomicU64::new(0);
        let seen = AtomicU64::new(0);
        let result = reporting(
            &counter,
            &|n| {
                seen.fetch_add(n, Ordering::Relaxed);
            },
            || {
                for _ in 0..5 {
                    counter.fetch_add(1000, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(30));
                }
                7
            },
        );
        assert_eq!(result, 7);
        assert_eq!(seen.load(Ordering::Relaxed), 5000);
    }
}
