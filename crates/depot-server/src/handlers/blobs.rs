use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use depot_api::Digest;
use depot_api::types::BlobInfo;
use depot_registry::Download;
use futures_util::StreamExt;

use crate::auth::{Operator, Reader};
use crate::error::ApiError;
use crate::extract::Json;
use crate::extract::Path;
use crate::state::AppState;
use depot_api::ErrorBody;

/// How long a presigned download URL stays valid (`--redirect-downloads`): enough to start the
/// download; S3 checks the expiry when a request starts, not while the body streams.
pub const PRESIGNED_TTL: Duration = Duration::from_secs(5 * 60);

/// `PUT /api/v1/blobs/{digest}`: streams the body to the blob store while hashing it and checking
/// that it is a readable archive (on a blocking thread, as the bytes arrive), checks the digest,
/// makes the blob durable and visible under its name, then records it. The response is sent only
/// once the blob is durable.
#[utoipa::path(put, path = "/api/v1/blobs/{digest}", tag = "blobs", params(("digest" = depot_api::Digest, Path, description = "sha256:<64 hex>")), request_body(content = crate::openapi::Archive, content_type = "application/octet-stream", description = "the archive"), responses((status = 201, description = "stored", body = BlobInfo), (status = 200, description = "already stored", body = BlobInfo), (status = 400, description = "digest mismatch or not an archive", body = ErrorBody), (status = 413, description = "too large", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn upload(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<BlobInfo>), ApiError> {
    let upload = state.registry.upload(&caller, Digest::parse(&digest)?, counted(&state, body)).await?;
    Ok(stored(upload))
}

/// The body's bytes, counted as blob bytes received as they arrive.
fn counted(
    state: &AppState,
    body: Body,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin + Send + 'static {
    let metrics = state.metrics.clone();
    body.into_data_stream().inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            metrics.blob_received.inc_by(chunk.len() as u64);
        }
    })
}

/// 201 for a blob stored now, 200 for one that was there.
fn stored(upload: depot_registry::Upload) -> (StatusCode, Json<BlobInfo>) {
    let status = if upload.created { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(upload.info))
}

/// `PUT /api/v1/blobs/{digest}/assembly`: stores the blob from parts of blobs the registry holds
/// and bytes in the body (see `depot_api::types::Assembly`): `depot push` sends only the frames of
/// a new archive that no earlier version of the component has. The parts stream through the
/// same checks as an upload's body; the response is sent once the blob is durable.
#[utoipa::path(put, path = "/api/v1/blobs/{digest}/assembly", tag = "blobs", params(("digest" = depot_api::Digest, Path, description = "sha256:<64 hex>")), request_body(content = crate::openapi::Archive, content_type = "application/octet-stream", description = "one line of JSON (an Assembly), a newline, then the bytes of its inline parts in order"), responses((status = 201, description = "stored", body = BlobInfo), (status = 200, description = "already stored", body = BlobInfo), (status = 400, description = "a malformed assembly, a range outside its blob, a body that does not match its parts, a digest mismatch, or not an archive", body = ErrorBody), (status = 404, description = "a blob a part names is unknown", body = ErrorBody), (status = 413, description = "too large", body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn assemble(
    Operator(caller): Operator,
    State(state): State<AppState>,
    Path(digest): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<BlobInfo>), ApiError> {
    let upload = state.registry.assemble(&caller, Digest::parse(&digest)?, counted(&state, body)).await?;
    Ok(stored(upload))
}

/// `GET|HEAD /api/v1/blobs/{digest}`, with `Range` and an `ETag` (the digest). With
/// `--redirect-downloads`, a GET is answered with a redirect to a presigned URL of the bucket.
#[utoipa::path(method(get, head), path = "/api/v1/blobs/{digest}", tag = "blobs", params(("digest" = depot_api::Digest, Path, description = "sha256:<64 hex>")), responses((status = 200, description = "the archive; Range and If-None-Match are honoured", content_type = "application/octet-stream", body = crate::openapi::Archive), (status = 206, description = "part of the archive"), (status = 304, description = "not modified"), (status = 307, description = "download it from the presigned URL in Location, valid for 5 minutes (`depot serve --redirect-downloads`)"), (status = 404, body = ErrorBody), (status = 416, description = "the range is not satisfiable"), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn download(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(digest): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let digest = Digest::parse(&digest)?;
    let download = state.registry.blob_for_download(&caller, &digest).await?;
    let etag = HeaderValue::from_str(&format!("\"{digest}\"")).expect("a digest is a valid header value");
    let matches =
        request.headers().get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|tag| tag.trim() == etag.to_str().unwrap_or_default() || tag.trim() == "*")
        });
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    let is_head = request.method() == axum::http::Method::HEAD;
    let size = match download {
        Download::Stored(size) => size,
        // An environment layer, opened from its seal: small, and sent whole (never redirected
        // to the blob store, which does not hold it).
        Download::Sealed(archive) => {
            let length = archive.len() as u64;
            let body = if is_head { Body::empty() } else { Body::from(archive) };
            let response = Response::builder()
                .header(header::ETAG, etag)
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, length)
                .header(header::CACHE_CONTROL, "no-store")
                .body(body);
            return response.map_err(ApiError::internal);
        }
    };
    // HEAD stays here: a presigned URL is signed for GET only, and the size is at hand.
    if !is_head
        && state.options.redirect_downloads
        && let Some(url) = state.registry.blobs().presigned_get(&digest, PRESIGNED_TTL).await?
    {
        let location = HeaderValue::from_str(&url).map_err(ApiError::internal)?;
        let headers = [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))];
        return Ok((StatusCode::TEMPORARY_REDIRECT, headers).into_response());
    }
    let range = match request.headers().get(header::RANGE) {
        None => None,
        Some(value) => match single_range(value, size) {
            Some(range) => Some(range),
            None => {
                let unsatisfiable = HeaderValue::from_str(&format!("bytes */{size}")).expect("a valid header value");
                return Ok(
                    (StatusCode::RANGE_NOT_SATISFIABLE, [(header::CONTENT_RANGE, unsatisfiable)]).into_response()
                );
            }
        },
    };
    let (status, length) = match &range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.end - range.start),
        None => (StatusCode::OK, size),
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::ETAG, etag)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_LENGTH, length);
    if let Some(range) = &range {
        response = response.header(header::CONTENT_RANGE, format!("bytes {}-{}/{size}", range.start, range.end - 1));
    }
    let body = if is_head {
        Body::empty()
    } else {
        state.metrics.blob_sent.inc_by(length);
        Body::from_stream(state.registry.blobs().read(&digest, Some(range.unwrap_or(0..size))).await?)
    };
    response.body(body).map_err(ApiError::internal)
}

/// The one range of a `Range: bytes=…` header that lies within `size` bytes, as a half-open
/// range; `None` for a malformed, unsatisfiable or multi-part one (which is refused, as
/// a file server refuses it).
fn single_range(value: &HeaderValue, size: u64) -> Option<std::ops::Range<u64>> {
    let ranges = http_range_header::parse_range_header(value.to_str().ok()?).ok()?.validate(size).ok()?;
    match ranges.as_slice() {
        [range] => Some(*range.start()..*range.end() + 1),
        _ => None,
    }
}

/// `GET /api/v1/blobs/{digest}/signatures`: the signatures of the versions with this content,
/// for whoever may download it (an agent checks them before it unpacks the layer).
#[utoipa::path(get, path = "/api/v1/blobs/{digest}/signatures", tag = "blobs", params(("digest" = depot_api::Digest, Path)), responses((status = 200, body = [depot_api::types::BlobSignatures]), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn signatures(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Json<Vec<depot_api::types::BlobSignatures>>, ApiError> {
    Ok(Json(state.registry.blob_signatures(&caller, &Digest::parse(&digest)?).await?))
}

/// `GET /api/v1/blobs/{digest}/frames`: the frames of a seekable archive, each with the sha256 of
/// its bytes, for whoever may download it. A host fetches the frames it lacks as ranges of
/// `GET /api/v1/blobs/{digest}` and checks each against its sha256.
#[utoipa::path(get, path = "/api/v1/blobs/{digest}/frames", tag = "blobs", params(("digest" = depot_api::Digest, Path)), responses((status = 200, body = depot_api::types::BlobFrames), (status = 404, body = ErrorBody), (status = 401, description = "no or unknown token", body = ErrorBody), (status = 403, description = "the role does not allow this", body = ErrorBody)), security(("token" = [])))]
pub async fn frames(
    Reader(caller): Reader,
    State(state): State<AppState>,
    Path(digest): Path<String>,
) -> Result<Response, ApiError> {
    // Sent as the registry kept it: an index is parsed by no one but the host that uses it.
    let json = state.registry.blob_frames(&caller, &Digest::parse(&digest)?).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}
