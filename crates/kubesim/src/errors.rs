//! Kubernetes `Status` errors with the reasons, codes and wording of the real API server.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::resources::GroupResource;

/// An API error that renders as a `metav1.Status` body.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, …).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// Optional `details` object.
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429 and some 5xx).
    pub retry_after: Option<u64>,
    /// `metadata.continue` of the Status: the fresh token of an expired paged list (boxed: errors
    /// travel in every `Result`, so they stay small).
    pub list_continue: Option<Box<str>>,
}

impl ApiError {
    /// A generic error with a code, reason and message.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
            retry_after: None,
            list_continue: None,
        }
    }

    fn with_details(mut self, gr: &GroupResource, name: &str) -> Self {
        let mut d = json!({ "name": name, "kind": gr.resource });
        if !gr.group.is_empty() {
            d["group"] = json!(gr.group);
        }
        self.details = Some(d);
        self
    }

    /// `404 NotFound`: `pods "x" not found`.
    pub fn not_found(gr: &GroupResource, name: &str) -> Self {
        Self::new(404, "NotFound", format!("{gr} \"{name}\" not found")).with_details(gr, name)
    }

    /// `409 AlreadyExists`.
    pub fn already_exists(gr: &GroupResource, name: &str) -> Self {
        Self::new(409, "AlreadyExists", format!("{gr} \"{name}\" already exists")).with_details(gr, name)
    }

    /// `409 Conflict` for a stale resourceVersion.
    pub fn conflict(gr: &GroupResource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {gr} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(gr, name)
    }

    /// `422 Invalid` with field causes given as (field, message); each cause's reason follows from
    /// its message (`Required value…` is `FieldValueRequired`, and so on).
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<(String, String)>) -> Self {
        Self::invalid_causes(
            kind,
            group,
            name,
            causes.into_iter().map(|(f, m)| Cause::inferred(f, m)).collect(),
        )
    }

    /// `422 Invalid` with causes as `apierrors.NewInvalid` builds it: the message lists every
    /// distinct `field: message`, bracketed when there are several.
    pub fn invalid_causes(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let mut msgs: Vec<String> = Vec::with_capacity(causes.len());
        for c in &causes {
            let m = format!("{}: {}", c.field, c.message);
            // An aggregate error lists each distinct message once.
            if !msgs.contains(&m) {
                msgs.push(m);
            }
        }
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = if msgs.len() == 1 {
            format!("{qualified} \"{name}\" is invalid: {}", msgs[0])
        } else {
            format!("{qualified} \"{name}\" is invalid: [{}]", msgs.join(", "))
        };
        let mut e = Self::new(422, "Invalid", message);
        e.details = Some(json!({
            "name": name,
            "group": group,
            "kind": kind,
            "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
        }));
        e
    }

    /// `400 BadRequest`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// `401 Unauthorized`.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// `403 Forbidden` in the wording of the RBAC authorizer.
    pub fn forbidden(
        user: &str,
        verb: &str,
        gr: &GroupResource,
        sub: Option<&str>,
        name: Option<&str>,
        ns: Option<&str>,
    ) -> Self {
        let res = match sub {
            Some(s) => format!("{}/{}", gr.resource, s),
            None => gr.resource.clone(),
        };
        let group = if gr.group.is_empty() {
            "\"\"".to_string()
        } else {
            format!("\"{}\"", gr.group)
        };
        let named = match name {
            Some(n) => format!("{} \"{}\"", gr, n),
            None => gr.to_string(),
        };
        let scope = match ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let mut e = Self::new(
            403,
            "Forbidden",
            format!(
                "{named} is forbidden: User \"{user}\" cannot {verb} resource \"{res}\" in API group {group} {scope}"
            ),
        );
        let mut d = json!({ "kind": gr.resource });
        if let Some(n) = name {
            d["name"] = json!(n);
        }
        if !gr.group.is_empty() {
            d["group"] = json!(gr.group);
        }
        e.details = Some(d);
        e
    }

    /// `405 MethodNotAllowed`.
    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    /// `410 Gone` for an expired watch or list resourceVersion.
    pub fn gone(rv: &str) -> Self {
        Self::new(410, "Expired", format!("too old resource version: {rv}"))
    }

    /// `410 Expired` with a message of the real storage layer (`apierrors.NewResourceExpired`).
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// `504 Timeout` for a resourceVersion the server has not reached yet, as
    /// `storage.NewTooLargeResourceVersionError` builds it (cause `ResourceVersionTooLarge`).
    pub fn too_large_resource_version(requested: u64, current: u64, retry_after_seconds: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        );
        let mut d = json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]});
        if retry_after_seconds > 0 {
            d["retryAfterSeconds"] = json!(retry_after_seconds);
            e.retry_after = Some(retry_after_seconds);
        }
        e.details = Some(d);
        e
    }

    /// `415 UnsupportedMediaType`.
    pub fn unsupported_media(ct: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {ct}"
            ),
        )
    }

    /// `406 NotAcceptable` (`errNotAcceptable` in apiserver/pkg/endpoints/handlers/negotiation):
    /// the Accept header asks for a form the answer cannot take.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    /// `500 InternalError`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        if let Some(c) = &self.list_continue {
            s["metadata"]["continue"] = json!(&**c);
        }
        s
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let mut resp = (code, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// One `details.causes` entry of a `422 Invalid` Status (a `field.Error` of the real server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueForbidden`, …
    pub reason: String,
    /// The field path, e.g. `spec.requester` (`<nil>` for the object itself).
    pub field: String,
    /// The error body, e.g. `Invalid value: "string": requester is immutable`.
    pub message: String,
}

impl Cause {
    /// A cause whose reason is read from the start of its message, as `field.ErrorType` prints.
    pub fn inferred(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        let reason = if message.starts_with("Required value") {
            "FieldValueRequired"
        } else if message.starts_with("Unsupported value") {
            "FieldValueNotSupported"
        } else if message.starts_with("Forbidden") {
            "FieldValueForbidden"
        } else if message.starts_with("Duplicate value") {
            "FieldValueDuplicate"
        } else if message.starts_with("Too long") {
            "FieldValueTooLong"
        } else if message.starts_with("Too many") {
            "FieldValueTooMany"
        } else if message.starts_with("Invalid value") && message.contains(" in body must be of type ") {
            "FieldValueTypeInvalid"
        } else {
            "FieldValueInvalid"
        };
        Self {
            reason: reason.to_string(),
            field: field.into(),
            message,
        }
    }
}

/// Result alias for API operations.
pub type ApiResult<T> = Result<T, ApiError>;
