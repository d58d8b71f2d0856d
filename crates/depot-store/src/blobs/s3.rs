//! Blobs as objects in an S3-compatible bucket (AWS S3, Garage, MinIO, …), through `object_store`:
//! `PREFIX/sha256/<hex>`, PREFIX being the URL's path (`blobs` by default).
//!
//! An upload is buffered up to one part ([`PART_SIZE`]). A blob that fits is sent with one PUT
//! once its digest matched. A larger one goes up as a multipart upload to its final key, at most
//! [`PARTS_IN_FLIGHT`] parts at a time; S3 shows nothing under the key until the upload is
//! completed, which happens only once the digest matched, and a failed or dropped upload is
//! aborted. So a blob is whole under its name or absent, with no copy of the bytes.

use std::ops::Range;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use depot_api::Digest;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use super::{BlobBackend, ByteStream, UploadSink};
use crate::{Result, StoreError};

/// The size of each part of a multipart upload, and the most an upload buffers before it starts
/// one. S3 takes at most 10,000 parts, so blobs up to 78 GiB.
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent at once: the memory an upload holds is about (1 + this) × PART_SIZE.
const PARTS_IN_FLIGHT: usize = 2;
/// How long a request other than a download may take (one part is at most [`PART_SIZE`]).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long [`BlobBackend::check`] waits for the bucket to answer.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the blobs are: parsed from `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Location {
    pub bucket: String,
    /// Keys start with this (no leading or trailing `/`).
    pub prefix: String,
    /// The S3 API's URL, for a store other than AWS (`http://127.0.0.1:3900`); path-style requests.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// The access key; `None` takes it from the AWS environment variables and files (what a URL
    /// gives: credentials never belong in one).
    pub credentials: Option<S3Credentials>,
}

/// An S3 access key.
#[derive(Clone, PartialEq)]
pub struct S3Credentials {
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Credentials").field("key_id", &self.key_id).field("secret", &"<redacted>").finish()
    }
}

impl S3Location {
    /// Parses `s3://BUCKET[/PREFIX][?endpoint=URL][&region=REGION]`.
    pub fn parse(text: &str) -> Result<Self> {
        let invalid = |message: String| StoreError::InvalidBlobUrl { url: text.to_owned(), message };
        let url = url::Url::parse(text).map_err(|e| invalid(e.to_string()))?;
        if url.scheme() != "s3" {
            return Err(invalid("the scheme must be s3".to_owned()));
        }
        let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(|| invalid("no bucket".to_owned()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(
                "credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            ));
        }
        let prefix = url.path().trim_matches('/');
        let mut location = S3Location {
            bucket: bucket.to_owned(),
            prefix: if prefix.is_empty() { "blobs".to_owned() } else { prefix.to_owned() },
            endpoint: None,
            region: None,
            credentials: None,
        };
        for (key, value) in url.query_pairs() {
            match &*key {
                "endpoint" => location.endpoint = Some(value.trim_end_matches('/').to_owned()),
                "region" => location.region = Some(value.into_owned()),
                other => return Err(invalid(format!("unknown setting `{other}` (known: endpoint, region)"))),
            }
        }
        Ok(location)
    }

    fn describe(&self) -> String {
        match &self.endpoint {
            Some(endpoint) => format!("s3://{}/{} at {endpoint}", self.bucket, self.prefix),
            None => format!("s3://{}/{}", self.bucket, self.prefix),
        }
    }
}

pub(super) struct S3Blobs {
    location: S3Location,
    /// For every request but downloads, with a deadline.
    store: AmazonS3,
    /// For downloads, which last as long as the client reads: no overall deadline.
    downloads: AmazonS3,
}

impl S3Blobs {
    pub(super) fn open(location: S3Location) -> Result<Self> {
        let builder = builder(&location);
        let build = |options: ClientOptions| {
            builder
                .clone()
                .with_client_options(options)
                .build()
                .map_err(|e| StoreError::BlobStore { store: location.describe(), message: e.to_string() })
        };
        let options = ClientOptions::new().with_allow_http(allows_http(&location));
        let store = build(options.clone().with_timeout(REQUEST_TIMEOUT))?;
        let downloads = build(options.with_timeout_disabled())?;
        Ok(S3Blobs { location, store, downloads })
    }

    fn key(&self, digest: &Digest) -> Path {
        Path::from(format!("{}/sha256/{}", self.location.prefix, digest.hex()))
    }

    fn error(&self, error: object_store::Error) -> StoreError {
        StoreError::BlobStore { store: self.location.describe(), message: error.to_string() }
    }
}

fn allows_http(location: &S3Location) -> bool {
    location.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"))
}

/// Credentials and settings from the AWS environment variables (`AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`,
/// `AWS_ENDPOINT_URL`, web identity and container credentials), else from the shared files
/// (`~/.aws/credentials` and `~/.aws/config`, profile `AWS_PROFILE` or `default`), else the
/// instance metadata service; the URL's `endpoint` and `region` win over all of them.
fn builder(location: &S3Location) -> AmazonS3Builder {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&location.bucket);
    let from_env = |builder: &AmazonS3Builder, key| builder.get_config_value(&key).is_some();
    let profile = shared_profile();
    if let Some(credentials) = &location.credentials {
        builder = builder.with_access_key_id(&credentials.key_id).with_secret_access_key(&credentials.secret);
    } else if !from_env(&builder, AmazonS3ConfigKey::AccessKeyId)
        && let Some((id, secret, token)) = profile.credentials
    {
        builder = builder.with_access_key_id(id).with_secret_access_key(secret);
        if let Some(token) = token {
            builder = builder.with_token(token);
        }
    }
    let region = location.region.clone().or_else(|| std::env::var("AWS_REGION").ok()).or(profile.region);
    if let Some(region) = region {
        builder = builder.with_region(region);
    }
    if let Some(endpoint) = &location.endpoint {
        builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
    }
    builder
}

/// What the shared AWS files say for the selected profile.
#[derive(Default)]
struct SharedProfile {
    credentials: Option<(String, String, Option<String>)>,
    region: Option<String>,
}

fn shared_profile() -> SharedProfile {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".to_owned());
    let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
    let file = |variable: &str, name: &str| {
        std::env::var_os(variable)
            .map(std::path::PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
    };
    let load =
        |path: Option<std::path::PathBuf>| path.filter(|p| p.is_file()).and_then(|p| ini::Ini::load_from_file(p).ok());
    let mut shared = SharedProfile::default();
    if let Some(credentials) = load(file("AWS_SHARED_CREDENTIALS_FILE", "credentials"))
        && let Some(section) = credentials.section(Some(profile.as_str()))
        && let (Some(id), Some(secret)) = (section.get("aws_access_key_id"), section.get("aws_secret_access_key"))
    {
        shared.credentials =
            Some((id.to_owned(), secret.to_owned(), section.get("aws_session_token").map(str::to_owned)));
    }
    if let Some(config) = load(file("AWS_CONFIG_FILE", "config")) {
        // ~/.aws/config names every profile but the default `profile NAME`.
        let section = if profile == "default" { "default".to_owned() } else { format!("profile {profile}") };
        shared.region = config.section(Some(section)).and_then(|s| s.get("region")).map(str::to_owned);
    }
    shared
}

#[async_trait::async_trait]
impl BlobBackend for S3Blobs {
    fn describe(&self) -> String {
        self.location.describe()
    }

    fn can_presign(&self) -> bool {
        true
    }

    async fn size(&self, digest: &Digest) -> Result<Option<u64>> {
        match self.store.head(&self.key(digest)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn begin(&self, digest: &Digest) -> Result<Box<dyn UploadSink>> {
        Ok(Box::new(S3Upload {
            store: self.store.clone(),
            location: self.location.clone(),
            key: self.key(digest),
            buffered: Vec::new(),
            buffered_size: 0,
            multipart: None,
        }))
    }

    async fn read(&self, digest: &Digest, range: Range<u64>) -> Result<ByteStream> {
        if range.is_empty() {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range)), ..GetOptions::default() };
        let result = match self.downloads.get_opts(&self.key(digest), options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Err(StoreError::UnknownBlob(digest.clone())),
            Err(e) => return Err(self.error(e)),
        };
        let store = self.location.describe();
        Ok(result
            .into_stream()
            .map_err(move |e| StoreError::BlobStore { store: store.clone(), message: e.to_string() })
            .boxed())
    }

    async fn remove(&self, digest: &Digest) -> Result<u64> {
        let key = self.key(digest);
        let size = match self.store.head(&key).await {
            Ok(meta) => meta.size,
            Err(object_store::Error::NotFound { .. }) => return Ok(0),
            Err(e) => return Err(self.error(e)),
        };
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(size),
            Err(e) => Err(self.error(e)),
        }
    }

    async fn list(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let prefix = Path::from(format!("{}/sha256", self.location.prefix));
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await.map_err(|e| self.error(e))?;
        Ok(objects
            .into_iter()
            .filter_map(|meta| {
                let digest = Digest::from_hex(meta.location.filename()?).ok()?;
                Some((digest, SystemTime::from(meta.last_modified)))
            })
            .collect())
    }

    async fn clean_uploads(&self, _age: Duration) -> Result<u64> {
        // Uploads in progress are multipart uploads, which object_store cannot list: a failed or
        // dropped one is aborted at once, one a crash left is the bucket lifecycle's to abort.
        Ok(0)
    }

    async fn presigned_get(&self, digest: &Digest, ttl: Duration) -> Result<Option<String>> {
        let url = self.store.signed_url(http::Method::GET, &self.key(digest), ttl).await.map_err(|e| self.error(e))?;
        Ok(Some(url.to_string()))
    }

    async fn check(&self) -> Result<()> {
        // Listing the prefix fails for a missing bucket, bad credentials or a store that does not
        // answer; a HEAD of a missing key would not tell a missing bucket from a missing key.
        let prefix = Path::from(self.location.prefix.as_str());
        match tokio::time::timeout(CHECK_TIMEOUT, self.store.list_with_delimiter(Some(&prefix))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(StoreError::BlobStore {
                store: self.describe(),
                message: format!("no answer within {} s", CHECK_TIMEOUT.as_secs()),
            }),
        }
    }
}

/// An upload: buffered until it outgrows one part, then a multipart upload to the final key that
/// is completed only by [`UploadSink::commit`] and aborted when dropped before.
struct S3Upload {
    store: AmazonS3,
    location: S3Location,
    key: Path,
    buffered: Vec<Bytes>,
    buffered_size: usize,
    multipart: Option<WriteMultipart>,
}

impl S3Upload {
    fn error(&self, error: object_store::Error) -> StoreError {
        StoreError::BlobStore { store: self.location.describe(), message: error.to_string() }
    }
}

#[async_trait::async_trait]
impl UploadSink for S3Upload {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.multipart.is_none() {
            self.buffered_size += data.len();
            self.buffered.push(data);
            if self.buffered_size < PART_SIZE {
                return Ok(());
            }
            let upload = self.store.put_multipart(&self.key).await.map_err(|e| self.error(e))?;
            self.multipart = Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE));
            for data in std::mem::take(&mut self.buffered) {
                self.send(data).await?;
            }
            return Ok(());
        }
        self.send(data).await
    }

    async fn commit(mut self: Box<Self>, digest: &Digest) -> Result<()> {
        debug_assert_eq!(self.key.filename(), Some(digest.hex()));
        match self.multipart.take() {
            Some(multipart) => {
                multipart.finish().await.map_err(|e| self.error(e))?;
            }
            None => {
                let payload: PutPayload = std::mem::take(&mut self.buffered).into_iter().collect();
                self.store.put(&self.key, payload).await.map_err(|e| self.error(e))?;
            }
        }
        Ok(())
    }

    async fn discard(mut self: Box<Self>) {
        if let Some(multipart) = self.multipart.take()
            && let Err(e) = multipart.abort().await
        {
            tracing::warn!("could not abort the multipart upload of {}: {e}", self.key);
        }
    }
}

impl S3Upload {
    /// Hands `data` to the multipart upload, waiting while [`PARTS_IN_FLIGHT`] parts are on the way.
    async fn send(&mut self, data: Bytes) -> Result<()> {
        let multipart = self.multipart.as_mut().expect("a multipart upload is started before bytes are sent");
        if let Err(e) = multipart.wait_for_capacity(PARTS_IN_FLIGHT).await {
            return Err(self.error(e));
        }
        multipart.put(data);
        Ok(())
    }
}

impl Drop for S3Upload {
    fn drop(&mut self) {
        // Never completed: abort, so that the parts sent so far do not linger in the bucket.
        if let Some(multipart) = self.multipart.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let key = self.key.clone();
            runtime.spawn(async move {
                if let Err(e) = multipart.abort().await {
                    tracing::warn!("could not abort the multipart upload of {key}: {e}");
                }
            });
        }
    }
}
