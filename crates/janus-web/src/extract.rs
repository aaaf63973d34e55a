//! Extractors whose rejections are the project's JSON error ([`WebError`]), axum's extractor-rejection
//! pattern: a malformed body, query or path on `/api/v1` answers `{"error", "code", "field"}` like every
//! other error instead of axum's plain-text rejection.
//!
//! Handlers that must check something first (e.g. "admins only" before looking at the body, so a
//! non-admin learns nothing from a 422) take `Result<Json<T>, WebError>` and apply `?` after the check.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::response::{IntoResponse, Response};

use crate::error::WebError;

/// A JSON body; a malformed one is a 422 naming `body`, an oversized one a 413 (see
/// `From<JsonRejection> for WebError`). Also a JSON response, like `axum::Json`.
#[derive(Debug, Clone, Copy, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(WebError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A query string; a malformed one is a 422 naming `query`.
#[derive(Debug, Clone, Copy, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(WebError))]
pub struct Query<T>(pub T);

/// Path parameters; undecodable ones (e.g. percent-escapes that are not UTF-8) are a 422 naming `path`.
#[derive(Debug, Clone, Copy, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(WebError))]
pub struct Path<T>(pub T);

/// An optional JSON body: no body at all (no `Content-Type: application/json`) is `T::default()`, e.g. an
/// approval without fields; a body that is there must be valid JSON of `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonOrDefault<T>(pub T);

impl<T, S> FromRequest<S> for JsonOrDefault<T>
where
    T: serde::de::DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = WebError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(_)) => Ok(Self(T::default())),
            Err(e) => Err(e.into()),
        }
    }
}

impl From<QueryRejection> for WebError {
    fn from(e: QueryRejection) -> Self {
        Self::invalid("query", e.body_text())
    }
}

impl From<PathRejection> for WebError {
    fn from(e: PathRejection) -> Self {
        // A route declared with parameters its handler does not match is our bug, not the caller's.
        if e.status().is_server_error() {
            Self::Internal(e.body_text())
        } else {
            Self::invalid("path", e.body_text())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::http::{StatusCode, header};
    use axum::routing::{get, post};
    use serde::Deserialize;
    use tower::ServiceExt as _;

    #[derive(Deserialize, Default, serde::Serialize)]
    struct Input {
        n: i64,
    }

    async fn body_of(r: Response) -> (StatusCode, serde_json::Value) {
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        )
    }

    fn app() -> Router {
        Router::new()
            .route("/json", post(|Json(i): Json<Input>| async move { Json(i) }))
            .route(
                "/optional",
                post(|JsonOrDefault(i): JsonOrDefault<Input>| async move { Json(i) }),
            )
            .route("/query", get(|Query(i): Query<Input>| async move { Json(i) }))
            .route("/path/{n}", get(|Path(n): Path<i64>| async move { Json(Input { n }) }))
            .layer(axum::extract::DefaultBodyLimit::max(64))
    }

    async fn call(req: axum::http::Request<Body>) -> (StatusCode, serde_json::Value) {
        match app().oneshot(req).await {
            Ok(r) => body_of(r).await,
            Err(e) => match e {},
        }
    }

    fn post_json(uri: &str, body: &'static str) -> axum::http::Request<Body> {
        axum::http::Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn malformed_json_is_the_project_error() {
        let (s, v) = call(post_json("/json", "{\"n\": \"x\"}")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v["code"], "invalid");
        assert_eq!(v["field"], "body");
        let (s, v) = call(post_json("/json", "{not json")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(v["field"], "body");
        let (s, v) = call(post_json("/json", "{\"n\": 1}")).await;
        assert_eq!((s, v["n"].as_i64()), (StatusCode::OK, Some(1)));
    }

    #[tokio::test]
    async fn missing_content_type_and_oversized_bodies() {
        let req = axum::http::Request::post("/json")
            .body(Body::from("{\"n\":1}"))
            .unwrap();
        let (s, v) = call(req).await;
        assert_eq!(
            (s, &v["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!("body"))
        );
        let big: &'static str = Box::leak(format!("{{\"n\": 1, \"pad\": \"{}\"}}", "x".repeat(200)).into_boxed_str());
        let (s, v) = call(post_json("/json", big)).await;
        assert_eq!(
            (s, &v["code"]),
            (StatusCode::PAYLOAD_TOO_LARGE, &serde_json::json!("too_large"))
        );
    }

    #[tokio::test]
    async fn optional_body_defaults_only_when_absent() {
        let req = axum::http::Request::post("/optional").body(Body::empty()).unwrap();
        let (s, v) = call(req).await;
        assert_eq!((s, v["n"].as_i64()), (StatusCode::OK, Some(0)));
        let (s, v) = call(post_json("/optional", "{\"n\": 7}")).await;
        assert_eq!((s, v["n"].as_i64()), (StatusCode::OK, Some(7)));
        let (s, v) = call(post_json("/optional", "[]")).await;
        assert_eq!(
            (s, &v["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!("body"))
        );
    }

    #[tokio::test]
    async fn malformed_query_and_path_are_the_project_error() {
        let req = axum::http::Request::get("/query?n=abc").body(Body::empty()).unwrap();
        let (s, v) = call(req).await;
        assert_eq!(
            (s, &v["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!("query"))
        );
        let req = axum::http::Request::get("/query?n=3").body(Body::empty()).unwrap();
        assert_eq!(call(req).await.1["n"].as_i64(), Some(3));
        let req = axum::http::Request::get("/path/abc").body(Body::empty()).unwrap();
        let (s, v) = call(req).await;
        assert_eq!(
            (s, &v["field"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!("path"))
        );
        let req = axum::http::Request::get("/path/%FF").body(Body::empty()).unwrap();
        let (s, v) = call(req).await;
        assert_eq!(
            (s, &v["code"]),
            (StatusCode::UNPROCESSABLE_ENTITY, &serde_json::json!("invalid"))
        );
    }
}
