//! The OpenAPI 3.1 document of `/api/v1`, generated from the handlers' `#[utoipa::path]` attributes and
//! the response types' `ToSchema` derives; served at `/api/v1/openapi.yaml` and `/api/v1/openapi.json`.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{audit, cli, clusters, notifications, policy, requests, scope, session, tokens, users};
use crate::auth::session::COOKIE;
use crate::error::WebError;

/// The JSON body of every error, with the HTTP status saying what kind it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A message safe to show to a person.
    pub error: String,
    /// Machine-readable code ([`WebError::code`]).
    #[schema(schema_with = error_code_schema)]
    pub code: String,
    /// The offending input field, for `invalid`.
    pub field: Option<String>,
}

/// `GET /api/v1/requests/{name}/pods`. The terminal handlers build their answers with `json!`; these
/// types state those shapes, and tests/openapi.rs holds the real answers to them.
#[derive(Serialize, ToSchema)]
pub struct PodList {
    /// The namespace asked about.
    pub namespace: String,
    /// Its pods (a pod-scoped request: only those in scope).
    pub pods: Vec<crate::terminal::pods::PodView>,
    /// The label selector of a pod-scoped grant (Kubernetes syntax); none: every pod.
    pub selector: Option<String>,
    /// The scope as people read it ("pods of deployment payments-api"); none: every pod.
    pub scope: Option<String>,
    /// What the terminal offers under the request's role: `shell`, `logs` or `debug`.
    pub terminal: Option<String>,
}

/// One Kubernetes Event as the terminal page shows it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodEvent {
    /// `Kind/name` of the object it is about.
    pub object: String,
    /// `Normal` or `Warning`.
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// CamelCase reason.
    pub reason: Option<String>,
    /// The note.
    pub message: Option<String>,
    /// How often it happened.
    pub count: i32,
    /// When it was last seen (RFC 3339).
    pub last_timestamp: Option<String>,
}

/// `GET /api/v1/requests/{name}/events`.
#[derive(Serialize, ToSchema)]
pub struct PodEventList {
    /// Oldest first.
    pub events: Vec<PodEvent>,
}

/// `GET /api/v1/requests/{name}/sessions`.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    /// Newest first.
    pub sessions: Vec<janus_store::TerminalSession>,
}

/// `GET /api/v1/quick-commands`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuickCommandList {
    /// The caller's quick commands for the cluster.
    pub quick_commands: Vec<janus_store::QuickCommand>,
}

/// `GET /api/v1/commands`.
#[derive(Serialize, ToSchema)]
pub struct CommandList {
    /// Matching lines.
    pub commands: Vec<janus_store::CommandLine>,
}

/// Every code [`WebError::code`] can return; a unit test below keeps it complete.
pub const ERROR_CODES: [&str; 11] = [
    "unauthenticated",
    "forbidden",
    "csrf",
    "identity_conflict",
    "not_found",
    "invalid",
    "conflict",
    "too_many",
    "too_large",
    "unavailable",
    "internal",
];

fn error_code_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(ERROR_CODES))
        .build()
}

/// Names every operation after its method and path (`getRequestsNameTimeline`): the generator would use
/// the handler's function name, and several modules have a `list`.
struct OperationIds;

impl Modify for OperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let mut tail = String::new();
            for word in path.trim_start_matches("/api/v1/").split(['/', '-', '.']) {
                let word = word.trim_matches(|c| c == '{' || c == '}');
                let mut chars = word.chars();
                if let Some(first) = chars.next() {
                    tail.extend(first.to_uppercase());
                    tail.push_str(chars.as_str());
                }
            }
            let ops = [
                ("get", &mut item.get),
                ("post", &mut item.post),
                ("patch", &mut item.patch),
                ("put", &mut item.put),
                ("delete", &mut item.delete),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    op.operation_id = Some(format!("{method}{tail}"));
                }
            }
        }
    }
}

/// Adds the two security schemes as they really work: the session cookie authenticates (or identity
/// headers from a trusted proxy, which the document cannot describe), and every state-changing request of
/// a session must also carry its CSRF token in `X-CSRF-Token` (the middleware in `auth::authenticate`).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                COOKIE,
                "Set by POST /api/v1/login (local accounts) or the OIDC callback. In proxy mode the trusted \
                 proxy's identity headers take its place.",
            ))),
        );
        components.add_security_scheme(
            "csrf",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-CSRF-Token",
                "The session's CSRF token (csrfToken of POST /api/v1/login and GET /api/v1/session); \
                 required with the session on every POST, PATCH and DELETE. A cross-site Origin is refused \
                 with 403 csrf.",
            ))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                utoipa::openapi::security::HttpBuilder::new()
                    .scheme(utoipa::openapi::security::HttpAuthScheme::Bearer)
                    .description(Some(
                        "A personal API token (janus_pat_…, scoped: read, request, approve) or a CLI session \
                         (janus_cli_…, from janus login). Only on /api/v1 and /ws; never with the session \
                         cookie (400 ambiguous_credentials); no CSRF token needed. A token lacking the \
                         route's scope gets 403; token management and account changes refuse personal \
                         tokens.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document's source: every `/api/v1` route the router serves.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "k8s-janus API",
        version = "v1",
        description = "The JSON API of the k8s-janus web UI, generated from the code. Errors are JSON \
            (ErrorBody) with the HTTP status: 400 identity_conflict (proxy mode: a second, conflicting \
            identity header), 401 not logged in, 403 not allowed or CSRF, 404 unknown or not yours, 409 \
            the state does not allow it, 413 body too large, 422 invalid field (named in `field`), 429 a \
            limit was reached, 503 a dependency is down. The browser terminal is a WebSocket at \
            /ws/terminal/{name} (not part of this document)."
    ),
    paths(
        openapi_yaml,
        openapi_json,
        session::login,
        session::logout,
        session::whoami,
        crate::live::events,
        requests::list,
        requests::create,
        requests::get,
        requests::timeline,
        requests::decide,
        policy::preview,
        policy::approvals,
        clusters::list,
        clusters::namespaces,
        scope::roles,
        scope::workloads,
        scope::pods,
        audit::list,
        audit::export,
        cli::login,
        cli::device,
        cli::device_token,
        users::list_handler,
        users::create_handler,
        users::update_handler,
        users::delete_handler,
        notifications::list_dead,
        notifications::retry_handler,
        tokens::list_handler,
        tokens::create_handler,
        tokens::delete_handler,
        crate::terminal::pods::list,
        crate::terminal::debug::start,
        crate::terminal::pods::logs,
        crate::terminal::pods::events,
        crate::terminal::pods::sessions,
        crate::terminal::pods::quick_list,
        crate::terminal::pods::quick_add,
        crate::terminal::pods::quick_delete,
        crate::terminal::pods::recording,
        crate::terminal::pods::commands,
    ),
    components(schemas(ErrorBody)),
    modifiers(&SecuritySchemes, &OperationIds),
    security(("session" = [])),
)]
pub struct ApiDoc;

/// The generated document.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

fn rendered(r: Result<String, String>, content_type: &'static str) -> Response {
    match r {
        Ok(text) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => WebError::Internal(format!("rendering the OpenAPI document: {e}")).into_response(),
    }
}

/// `GET /api/v1/openapi.yaml`: this document as YAML.
#[utoipa::path(get, path = "/api/v1/openapi.yaml", tag = "meta", summary = "This document as YAML", security(()),
    responses((status = 200, description = "This document", content_type = "application/yaml", body = String)))]
pub async fn openapi_yaml() -> Response {
    rendered(document().to_yaml().map_err(|e| e.to_string()), "application/yaml")
}

/// `GET /api/v1/openapi.json`: this document as JSON.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", summary = "This document as JSON", security(()),
    responses((status = 200, description = "This document", body = Object)))]
pub async fn openapi_json() -> Response {
    rendered(
        document().to_pretty_json().map_err(|e| e.to_string()),
        "application/json",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_code_is_in_the_schema() {
        let all = [
            WebError::Unauthenticated,
            WebError::Forbidden(String::new()),
            WebError::NotFound(String::new()),
            WebError::invalid("f", ""),
            WebError::Conflict(String::new()),
            WebError::TooMany(String::new()),
            WebError::TooLarge,
            WebError::Csrf,
            WebError::IdentityConflict,
            WebError::Unavailable(String::new()),
            WebError::Internal(String::new()),
        ];
        for e in &all {
            assert!(ERROR_CODES.contains(&e.code()), "{} is missing", e.code());
        }
        assert_eq!(all.len(), ERROR_CODES.len());
    }

    #[test]
    fn the_document_renders_as_yaml_and_json() {
        assert!(document().to_yaml().is_ok());
        assert!(document().to_pretty_json().is_ok());
    }
}
