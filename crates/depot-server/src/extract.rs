//! axum's extractors with the API's error body: a body that is not JSON (415), JSON of the wrong
//! shape or out of range (422), a body past the limit (413), a path or a query that does not parse
//! (400) are answered with `{code, message, hint}` like every other error, not axum's plain text.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use depot_api::ErrorCode;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body (`Content-Type: application/json`), and a JSON answer.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters.
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) => Err(path_rejection(rejection)),
        }
    }
}

/// Query parameters.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let text = rejection.body_text();
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(ErrorCode::UnsupportedMediaType, text)
            .with_hint("send the body as JSON with `Content-Type: application/json`"),
        JsonRejection::JsonDataError(_) => ApiError::new(ErrorCode::InvalidBody, text)
            .with_hint("see the operation's request body in /api/v1/openapi.json"),
        JsonRejection::JsonSyntaxError(_) => ApiError::new(ErrorCode::InvalidRequest, text),
        other if other.status().as_u16() == 413 => {
            ApiError::new(ErrorCode::TooLarge, text).with_hint("a JSON request body is at most 2 MiB")
        }
        _ => ApiError::new(ErrorCode::InvalidRequest, text),
    }
}

fn path_rejection(rejection: PathRejection) -> ApiError {
    match rejection {
        PathRejection::MissingPathParams(error) => ApiError::internal(error.body_text()),
        other => ApiError::new(ErrorCode::InvalidRequest, other.body_text()),
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(ErrorCode::InvalidRequest, rejection.body_text())
}

/// The answer for a path no route has.
pub async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no such path: {}", uri.path()))
        .with_hint("the API's paths are listed in /api/v1/openapi.json")
}

/// The answer for a method a route does not take (axum adds `Allow`).
pub async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{} does not take {method}", uri.path()))
        .with_hint("the methods it takes are in the Allow header")
}
