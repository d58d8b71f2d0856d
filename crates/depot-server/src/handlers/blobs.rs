use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::types::{BlobInfo, Role};
use depot_api::{Digest, ErrorCode};
use futures_util::StreamExt;
use tower::ServiceExt;

use crate::auth::{Operator, Reader};
use crate::error::ApiError;
use crate::state::AppState;
use depot_api::ErrorBody;

/// `PUT /api/v1/blobs/{digest}`: streams the body to a temporary file while hashing it, checks
/// the digest and that it is a readable archive, flushes it and renames it into place. The
/// response is sent only once the blob is durable.
#[utoipa::path(put, path = "/api/v1/blobs/{digest}", tag = "blobs", params(("digest" = String, Path, description = "sha256:<64 hex>")), request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the archive"), responses((status = 201, description = "stored", body = BlobInfo), (status = 200, description = "already stored", body = BlobInfo), (status = 400, description = "digest mismatch or not an archive", body = ErrorBody), (status = 413, description = "too large", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn upload(
    Operator(_caller): Operator,
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<BlobInfo>), ApiError> {
    let digest = Digest::parse(&digest)?;
    if state.blobs.exists(&digest)
        && let Some(size) = state.metadata.blob_size(&digest)?
    {
        return Ok((StatusCode::OK, Json(BlobInfo { digest, size })));
    }
    let mut writer = state.blobs.writer(state.options.max_blob_size)?;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::new(ErrorCode::InvalidRequest, format!("the upload was interrupted: {e}")))?;
        writer.write(&chunk)?;
        state.metrics.blob_bytes_in.inc_by(chunk.len() as u64);
    }
    let info = state
        .blocking(move |state| {
            let upload = writer.finish(&digest)?;
            let file = fs_err::File::open(upload.path()).map_err(ApiError::internal)?;
            depot_release::archive::check_readable(std::io::BufReader::with_capacity(1 << 20, file)).map_err(|e| {
                ApiError::new(ErrorCode::NotAnArchive, format!("{digest} is not a readable archive: {e}"))
                    .with_hint("push a .tar, .tar.gz or .tar.zst archive, such as one made by `depot pack`")
            })?;
            let size = upload.size;
            state.blobs.install(upload)?;
            state.metadata.record_blob(&digest, size)?;
            Ok(BlobInfo { digest, size })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(info)))
}

/// Bytes read from the file per chunk of a download (tower-http's default is 64 KiB).
const DOWNLOAD_CHUNK: usize = 1024 * 1024;

/// `GET|HEAD /api/v1/blobs/{digest}`, with `Range` and an `ETag` (the digest).
#[utoipa::path(method(get, head), path = "/api/v1/blobs/{digest}", tag = "blobs", params(("digest" = String, Path, description = "sha256:<64 hex>")), responses((status = 200, description = "the archive; Range and If-None-Match are honoured", content_type = "application/octet-stream", body = Vec<u8>), (status = 206, description = "part of the archive"), (status = 304, description = "not modified"), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn download(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(digest): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest)?;
    let path = state.blobs.path(&digest);
    if !path.is_file() {
        return Err(ApiError::new(ErrorCode::UnknownBlob, format!("unknown blob {digest}")));
    }
    // A blob no version names (an upload not pushed yet, a version deleted) is for operators. An
    // environment layer holds the values of a stage's variables: its agents and operators may
    // read it, viewers may not.
    let lookup = digest.clone();
    let access = state.blocking(move |state| Ok(state.metadata.blob_access(&lookup)?)).await?;
    let allowed = match caller.role {
        Role::Operator | Role::Admin => true,
        Role::Agent => {
            access.referenced
                && (access.env_stages.is_empty() || access.env_stages.iter().any(|c| caller.may_read_config(c)))
        }
        Role::Viewer => access.referenced && access.env_stages.is_empty(),
    };
    if !allowed {
        let why = match access.env_stages.first() {
            Some(stage) if access.referenced => format!("{digest} is the environment layer of {stage}"),
            _ => format!("no version names {digest}"),
        };
        return Err(ApiError::new(ErrorCode::Forbidden, format!("{why}; token {} may not read it", caller.name))
            .with_hint("operators, admins and the agents of the configurations using it may"));
    }
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).expect("a digest is a valid header value");
    let matches =
        request.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|tag| tag.trim() == etag.to_str().unwrap_or_default() || tag.trim() == "*")
        });
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let is_head = request.method() == axum::http::Method::HEAD;
    let mut response = tower_http::services::ServeFile::new(path)
        .with_buf_chunk_size(DOWNLOAD_CHUNK)
        .oneshot(request)
        .await
        .map_err(ApiError::internal)?;
    response.headers_mut().insert(header::ETAG, etag);
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if !is_head
        && let Some(length) =
            response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    {
        state.metrics.blob_bytes_out.inc_by(length);
    }
    Ok(response.map(Body::new))
}
