use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use depot_api::{ErrorBody, ErrorCode, NameError};
use depot_store::StoreError;

/// The one error type of every handler: a stable code, a status, a message naming the object.
/// Internal errors are logged once here and returned as a plain 500.
#[derive(Debug)]
pub struct ApiError(pub ErrorBody);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(ErrorBody::new(code, message))
    }

    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        ApiError(self.0.with_hint(hint))
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        ApiError::new(ErrorCode::Internal, "internal error; see the registry's log")
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let body = error.to_api();
        if body.code == ErrorCode::Internal {
            tracing::error!("internal error: {error}");
        }
        ApiError(body)
    }
}

impl From<NameError> for ApiError {
    fn from(error: NameError) -> Self {
        ApiError::new(ErrorCode::InvalidName, error.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}
