//! The SFTP side. Operators may only upload: any file name, written to a private spool file
//! and hashed as it arrives, then stored in the blob store under its sha256 at close (checked
//! to be an archive, kept across a restart, collected after the grace period if no `addver`
//! names it). Agents (`deploy-agent`) may only read seed 001's virtual tree: `configs/NAME.json`
//! for the configurations their key may read, and `files/SHA256` for the layers of those.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use depot_api::Digest;
use depot_registry::{Caller, Download, Registry};
use futures_util::StreamExt;
use russh_sftp::protocol::{Attrs, Data, File, FileAttributes, Handle, Name, OpenFlags, Status, StatusCode, Version};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

fn status(id: u32) -> Status {
    Status { id, status_code: StatusCode::Ok, error_message: "Ok".to_owned(), language_tag: "en-US".to_owned() }
}

fn dir_attrs() -> FileAttributes {
    FileAttributes { permissions: Some(0o040555), ..FileAttributes::empty() }
}

fn file_attrs(size: u64, writable: bool) -> FileAttributes {
    let mode = if writable { 0o100644 } else { 0o100444 };
    FileAttributes { size: Some(size), permissions: Some(mode), ..FileAttributes::empty() }
}

/// `/a/./b/../c` → `/a/c`; the result always starts with `/`.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Files an operator's session may have open for upload at once.
const MAX_OPEN_UPLOADS: usize = 16;

/// An operator's session: uploads only.
pub struct Uploads {
    registry: Registry,
    caller: Caller,
    /// The key's fingerprint: checked again at each open, so that a revoked key uploads nothing more.
    fingerprint: String,
    spool: PathBuf,
    activity: Arc<crate::Activity>,
    files: HashMap<String, Upload>,
    next: u64,
}

struct Upload {
    name: String,
    path: PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    /// A write failed or went past the size limit: the upload is discarded at close.
    failed: Option<String>,
}

impl Uploads {
    pub fn new(
        registry: Registry,
        caller: Caller,
        fingerprint: String,
        spool: PathBuf,
        activity: Arc<crate::Activity>,
    ) -> Self {
        Uploads { registry, caller, fingerprint, spool, activity, files: HashMap::new(), next: 0 }
    }

    fn refuse(&self) -> StatusCode {
        StatusCode::PermissionDenied
    }

    async fn finish(&mut self, upload: Upload) -> Result<Digest, String> {
        let path = upload.path.clone();
        let result = self.store(upload).await;
        // Stored or not, the spool file goes.
        let _ = tokio::fs::remove_file(&path).await;
        result
    }

    async fn store(&mut self, upload: Upload) -> Result<Digest, String> {
        let Upload { name, path, mut file, hasher, size, failed } = upload;
        if let Some(why) = failed {
            return Err(why);
        }
        file.flush().await.map_err(|e| e.to_string())?;
        file.sync_all().await.map_err(|e| e.to_string())?;
        drop(file);
        let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let digest = Digest::from_hex(&hex).expect("64 hex digits");
        let body = tokio::fs::File::open(&path).await.map_err(|e| e.to_string())?;
        let stream = tokio_util_stream(body);
        let stored = self.registry.upload(&self.caller, digest.clone(), stream).await;
        match stored {
            Ok(_) => {
                tracing::info!(upload = %name, %digest, size, by = %self.caller.name, "stored an SFTP upload");
                Ok(digest)
            }
            Err(error) => Err(error.to_string()),
        }
    }
}

/// A file read as a stream of chunks.
fn tokio_util_stream(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Unpin + Send + 'static {
    Box::pin(futures_util::stream::unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buffer = vec![0u8; 256 * 1024];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    }))
}

impl russh_sftp::server::Handler for Uploads {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported
    }

    async fn init(&mut self, _version: u32, _extensions: HashMap<String, String>) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name { id, files: vec![File::dummy(normalize(&path))] })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        match normalize(&path).as_str() {
            "/" => Ok(Attrs { id, attrs: dir_attrs() }),
            // Nothing uploaded can be read back: every other name is free to write.
            _ => Err(StatusCode::NoSuchFile),
        }
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        match normalize(&path).as_str() {
            "/" => Ok(Handle { id, handle: "dir".to_owned() }),
            _ => Err(StatusCode::NoSuchFile),
        }
    }

    async fn readdir(&mut self, _id: u32, _handle: String) -> Result<Name, Self::Error> {
        Err(StatusCode::Eof)
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        if !pflags.contains(OpenFlags::WRITE) || pflags.contains(OpenFlags::READ) {
            return Err(self.refuse());
        }
        // Checked before a byte is spooled: the key still known, and allowed to push.
        match self.registry.authenticate_ssh_key(&self.fingerprint).await {
            Ok(Some(caller)) if caller.require(depot_registry::Need::Operator).is_ok() => self.caller = caller,
            _ => return Err(self.refuse()),
        }
        if self.files.len() >= MAX_OPEN_UPLOADS {
            return Err(StatusCode::Failure);
        }
        self.next += 1;
        let handle = format!("upload-{}", self.next);
        let path = self.spool.join(format!("{}-{}.part", std::process::id(), rand::random::<u64>()));
        let file =
            tokio::fs::OpenOptions::new().write(true).create_new(true).mode_private().open(&path).await.map_err(
                |e| {
                    tracing::error!("cannot spool an SFTP upload in {}: {e}", path.display());
                    StatusCode::Failure
                },
            )?;
        self.activity.begin();
        let upload = Upload { name: filename, path, file, hasher: Sha256::new(), size: 0, failed: None };
        self.files.insert(handle.clone(), upload);
        Ok(Handle { id, handle })
    }

    async fn write(&mut self, id: u32, handle: String, offset: u64, data: Vec<u8>) -> Result<Status, Self::Error> {
        let limit = self.registry.policy().max_blob_size;
        let upload = self.files.get_mut(&handle).ok_or(StatusCode::Failure)?;
        self.activity.touch();
        let why = if upload.failed.is_some() {
            None
        } else if offset != upload.size {
            // Hashed as it arrives: written in order, as `put` does.
            Some(format!("writes arrived out of order (at {offset}, expected {})", upload.size))
        } else if upload.size + data.len() as u64 > limit {
            Some(format!("the upload is larger than the registry takes ({limit} bytes, --max-blob-size)"))
        } else if let Err(error) = upload.file.write_all(&data).await {
            Some(format!("cannot spool the upload: {error}"))
        } else {
            upload.hasher.update(&data);
            upload.size += data.len() as u64;
            return Ok(status(id));
        };
        if let Some(why) = why {
            upload.failed = Some(why);
            // Nothing more of it is kept.
            let _ = upload.file.set_len(0).await;
        }
        Err(StatusCode::Failure)
    }

    async fn fsetstat(&mut self, id: u32, _handle: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Ok(status(id))
    }

    async fn setstat(&mut self, id: u32, _path: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Ok(status(id))
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let upload = self.files.get(&handle).ok_or(StatusCode::Failure)?;
        Ok(Attrs { id, attrs: file_attrs(upload.size, true) })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        let Some(upload) = self.files.remove(&handle) else {
            return Ok(status(id));
        };
        let result = self.finish(upload).await;
        self.activity.end();
        match result {
            Ok(digest) => Ok(Status { error_message: format!("stored as {digest}"), ..status(id) }),
            Err(message) => Ok(Status {
                id,
                status_code: StatusCode::Failure,
                error_message: message,
                language_tag: "en-US".to_owned(),
            }),
        }
    }

    async fn remove(&mut self, _id: u32, _filename: String) -> Result<Status, Self::Error> {
        Err(self.refuse())
    }

    async fn mkdir(&mut self, _id: u32, _path: String, _attrs: FileAttributes) -> Result<Status, Self::Error> {
        Err(self.refuse())
    }

    async fn rename(&mut self, _id: u32, _old: String, _new: String) -> Result<Status, Self::Error> {
        Err(self.refuse())
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // A connection gone mid-upload: its spool files go, nothing was stored.
        for (_, upload) in self.files.drain() {
            let _ = std::fs::remove_file(&upload.path);
            self.activity.end();
        }
    }
}

trait ModePrivate {
    fn mode_private(&mut self) -> &mut Self;
}

impl ModePrivate for tokio::fs::OpenOptions {
    fn mode_private(&mut self) -> &mut Self {
        self.mode(0o600)
    }
}

/// An agent's session: seed 001's tree, read only.
pub struct Tree {
    pub registry: Registry,
    pub caller: Caller,
    open: HashMap<String, Reader>,
    dirs: HashMap<String, Option<Vec<File>>>,
    next: u64,
}

enum Reader {
    /// A configuration document, made at open.
    Bytes(Bytes),
    /// A blob of the store, read in order (a read elsewhere starts a new range). The mutex only
    /// makes the stream `Sync`; it is reached through `get_mut`, never locked.
    Blob { digest: Digest, size: u64, stream: Option<(u64, std::sync::Mutex<depot_store::ByteStream>, Bytes)> },
}

impl Tree {
    pub fn new(registry: Registry, caller: Caller) -> Self {
        Tree { registry, caller, open: HashMap::new(), dirs: HashMap::new(), next: 0 }
    }

    /// The configurations this key may read, by name.
    async fn configs(&self) -> Vec<String> {
        let Ok(all) = self.registry.readable_configs(&self.caller).await else { return Vec::new() };
        all.into_iter().map(|c| c.name.to_string()).collect()
    }

    async fn document(&self, name: &str) -> Result<Vec<u8>, StatusCode> {
        let name = depot_api::ConfigName::parse(name).map_err(|_| StatusCode::NoSuchFile)?;
        if !self.caller.may_read_config(&name) {
            return Err(StatusCode::NoSuchFile);
        }
        let config = self.registry.config(&self.caller, &name).await.map_err(|_| StatusCode::NoSuchFile)?;
        crate::seed::document(&self.registry, &self.caller, &config).await.map_err(|_| StatusCode::Failure)
    }

    async fn blob(&self, hex: &str) -> Result<(Digest, Download), StatusCode> {
        let digest = Digest::from_hex(hex).map_err(|_| StatusCode::NoSuchFile)?;
        match self.registry.blob_for_download(&self.caller, &digest).await {
            Ok(download) => Ok((digest, download)),
            Err(_) => Err(StatusCode::NoSuchFile),
        }
    }

    async fn attrs(&self, path: &str) -> Result<FileAttributes, StatusCode> {
        match path {
            "/" | "/configs" | "/files" => Ok(dir_attrs()),
            _ => {
                if let Some(name) = path.strip_prefix("/configs/").and_then(|n| n.strip_suffix(".json")) {
                    return Ok(file_attrs(self.document(name).await?.len() as u64, false));
                }
                if let Some(hex) = path.strip_prefix("/files/") {
                    let size = match self.blob(hex).await?.1 {
                        Download::Stored(size) => size,
                        Download::Sealed(bytes) => bytes.len() as u64,
                    };
                    return Ok(file_attrs(size, false));
                }
                Err(StatusCode::NoSuchFile)
            }
        }
    }
}

impl russh_sftp::server::Handler for Tree {
    type Error = StatusCode;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::PermissionDenied
    }

    async fn init(&mut self, _version: u32, _extensions: HashMap<String, String>) -> Result<Version, Self::Error> {
        Ok(Version::new())
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(Name { id, files: vec![File::dummy(normalize(&path))] })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        Ok(Attrs { id, attrs: self.attrs(&normalize(&path)).await? })
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        self.stat(id, path).await
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let path = normalize(&path);
        let entries = match path.as_str() {
            "/" => vec![File::new("configs", dir_attrs()), File::new("files", dir_attrs())],
            "/configs" => {
                let mut entries = Vec::new();
                for name in self.configs().await {
                    let size = self.document(&name).await.map(|d| d.len() as u64).unwrap_or(0);
                    entries.push(File::new(format!("{name}.json"), file_attrs(size, false)));
                }
                entries
            }
            "/files" => {
                let mut entries: Vec<File> = Vec::new();
                for name in self.configs().await {
                    let Ok(config) = self
                        .registry
                        .config(&self.caller, &depot_api::ConfigName::parse(&name).map_err(|_| StatusCode::Failure)?)
                        .await
                    else {
                        continue;
                    };
                    for layer in config.layers {
                        let hex = layer.digest.hex().to_owned();
                        if !entries.iter().any(|e| e.filename == hex) {
                            entries.push(File::new(hex, file_attrs(0, false)));
                        }
                    }
                }
                entries
            }
            _ => return Err(StatusCode::NoSuchFile),
        };
        self.next += 1;
        let handle = format!("dir-{}", self.next);
        self.dirs.insert(handle.clone(), Some(entries));
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        match self.dirs.get_mut(&handle).and_then(Option::take) {
            Some(files) => Ok(Name { id, files }),
            None => Err(StatusCode::Eof),
        }
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        _attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        if pflags.intersects(OpenFlags::WRITE | OpenFlags::APPEND | OpenFlags::CREATE | OpenFlags::TRUNCATE) {
            return Err(StatusCode::PermissionDenied);
        }
        let path = normalize(&filename);
        let reader = if let Some(name) = path.strip_prefix("/configs/").and_then(|n| n.strip_suffix(".json")) {
            Reader::Bytes(Bytes::from(self.document(name).await?))
        } else if let Some(hex) = path.strip_prefix("/files/") {
            match self.blob(hex).await? {
                (_, Download::Sealed(bytes)) => Reader::Bytes(bytes),
                (digest, Download::Stored(size)) => Reader::Blob { digest, size, stream: None },
            }
        } else {
            return Err(StatusCode::NoSuchFile);
        };
        self.next += 1;
        let handle = format!("file-{}", self.next);
        self.open.insert(handle.clone(), reader);
        Ok(Handle { id, handle })
    }

    async fn read(&mut self, id: u32, handle: String, offset: u64, len: u32) -> Result<Data, Self::Error> {
        let blobs = self.registry.blobs().clone();
        let reader = self.open.get_mut(&handle).ok_or(StatusCode::Failure)?;
        let data = match reader {
            Reader::Bytes(bytes) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                let end = (start + len as usize).min(bytes.len());
                bytes.slice(start..end)
            }
            Reader::Blob { digest, size, stream } => {
                if offset >= *size {
                    return Err(StatusCode::Eof);
                }
                if stream.as_ref().is_none_or(|(at, _, _)| *at != offset) {
                    let opened = blobs.read(digest, Some(offset..*size)).await.map_err(|_| StatusCode::Failure)?;
                    *stream = Some((offset, std::sync::Mutex::new(opened), Bytes::new()));
                }
                let (at, body, pending) = stream.as_mut().expect("opened above");
                let body = body.get_mut().map_err(|_| StatusCode::Failure)?;
                // A whole reply: a short one makes the client ask again further on, which would
                // open the blob again.
                let mut reply = bytes::BytesMut::new();
                while reply.len() < len as usize {
                    if pending.is_empty() {
                        match body.next().await {
                            Some(Ok(chunk)) => *pending = chunk,
                            Some(Err(_)) => return Err(StatusCode::Failure),
                            None => break,
                        }
                    }
                    let take = pending.len().min(len as usize - reply.len());
                    reply.extend_from_slice(&pending.split_to(take));
                }
                *at += reply.len() as u64;
                reply.freeze()
            }
        };
        if data.is_empty() {
            return Err(StatusCode::Eof);
        }
        Ok(Data { id, data: data.to_vec() })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let size = match self.open.get(&handle).ok_or(StatusCode::Failure)? {
            Reader::Bytes(bytes) => bytes.len() as u64,
            Reader::Blob { size, .. } => *size,
        };
        Ok(Attrs { id, attrs: file_attrs(size, false) })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        self.open.remove(&handle);
        self.dirs.remove(&handle);
        Ok(status(id))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_normalise_and_never_climb_above_the_root() {
        assert_eq!(super::normalize("."), "/");
        assert_eq!(super::normalize("configs/../files/./x"), "/files/x");
        assert_eq!(super::normalize("/../../etc/passwd"), "/etc/passwd");
    }
}
