//! Server-rendered pages: layout, forms, and the conversion of errors into readable pages.

pub mod admin;
pub mod audit;
pub mod clusters;
pub mod login;
pub mod notifications;
pub mod requests;
pub mod terminal;
pub mod tokens;

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use crate::auth::{self, Identity};
use crate::error::WebError;
use crate::state::AppState;

/// Which navigation entry is current.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    /// Request form.
    New,
    /// My requests.
    Mine,
    /// Admin dashboard.
    Admin,
    /// Audit log.
    Audit,
    /// Clusters.
    Clusters,
    /// Users.
    Users,
    /// Notification deliveries and dead letters.
    Notifications,
    /// Personal API tokens.
    Tokens,
    /// Nothing highlighted.
    None,
}

/// A rendered page; only the `<main>` content when the browser asks for a live-update fragment.
pub struct Page {
    /// Status code.
    pub status: StatusCode,
    /// Document.
    pub full: Markup,
    /// `<main>` content.
    pub main: Markup,
    /// Whether the fragment was asked for.
    pub fragment: bool,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let body = if self.fragment { self.main } else { self.full };
        (self.status, Html(body.into_string())).into_response()
    }
}

/// Whether the request wants only the `<main>` fragment.
pub fn wants_fragment(h: &HeaderMap) -> bool {
    h.contains_key("x-janus-fragment")
}

/// Builds a page around `main`.
pub fn page(
    state: &AppState,
    id: Option<&Identity>,
    title: &str,
    nav: Nav,
    live: bool,
    headers: &HeaderMap,
    main: Markup,
) -> Page {
    let local = state.config.web.auth_mode == janus_api::config::AuthMode::Local;
    // The approvals page is for everyone who approves anything: admins, and whoever a policy or a
    // namespace's owners annotation names.
    let approver = id.is_some_and(|id| {
        id.is_admin
            || <crate::service::RequestService as axum::extract::FromRef<AppState>>::from_ref(state).named_approver(id)
    });
    let full = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(id) = id { meta name="csrf-token" content=(id.csrf); }
                title { (title) " · k8s-janus" }
                link rel="stylesheet" href="/assets/app.css";
                link rel="icon" type="image/svg+xml" href="/assets/favicon.svg";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "k8s-janus" }
                    @if let Some(id) = id {
                        a.active[nav == Nav::New] href="/requests/new" { "Request access" }
                        a.active[nav == Nav::Mine] href="/requests" { "My requests" }
                        @if approver {
                            a.active[nav == Nav::Admin] href="/admin" { "Approvals" }
                        }
                        @if id.is_admin {
                            a.active[nav == Nav::Audit] href="/audit" { "Audit log" }
                            @if local { a.active[nav == Nav::Users] href="/admin/users" { "Users" } }
                            a.active[nav == Nav::Notifications] href="/admin/notifications" { "Notifications" }
                        }
                        a.active[nav == Nav::Clusters] href="/clusters" { "Clusters" }
                        a.active[nav == Nav::Tokens] href="/tokens" { "API tokens" }
                        span.spacer {}
                        span.who { (id.email) @if id.is_admin { " (admin)" } }
                        @if id.session.is_some() {
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="_csrf" value=(id.csrf);
                                button.secondary type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main data-live[live] { (main) }
            }
        }
    };
    Page {
        status: StatusCode::OK,
        full,
        main,
        fragment: wants_fragment(headers),
    }
}

/// A page-flavoured error: a redirect to the login page, or a readable error page.
pub struct PageError(pub WebError);

impl From<WebError> for PageError {
    fn from(e: WebError) -> Self {
        Self(e)
    }
}

impl From<crate::service::ServiceError> for PageError {
    fn from(e: crate::service::ServiceError) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        if matches!(self.0, WebError::Unauthenticated) {
            return Redirect::to("/login").into_response();
        }
        if let WebError::Internal(d) = &self.0 {
            tracing::error!(detail = %d, "internal error");
        }
        let status = self.0.status();
        let body = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Error · k8s-janus" }
                    link rel="stylesheet" href="/assets/app.css";
                    link rel="icon" type="image/svg+xml" href="/assets/favicon.svg";
                }
                body {
                    header.top { a.brand href="/" { "k8s-janus" } }
                    main {
                        h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
                        p.error { (self.0.to_string()) }
                        p { a href="/" { "Back to the start page" } }
                    }
                }
            }
        };
        (status, Html(body.into_string())).into_response()
    }
}

/// A urlencoded form body with repeated keys kept (checkbox lists).
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a field.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl<S: Send + Sync> FromRequest<S> for FormData {
    type Rejection = PageError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), 256 * 1024)
            .await
            .map_err(|_| PageError(WebError::invalid("body", "the form is too large")))?;
        Ok(Self(auth::serde_urlencoded_pairs(&bytes)))
    }
}

/// The `<span class="phase">` badge.
pub fn phase_badge(p: janus_api::access_request::Phase) -> Markup {
    let name = format!("{p:?}");
    html! { span class=(format!("phase phase-{name}")) { (name) } }
}

/// The hidden CSRF field of a form.
pub fn csrf_field(id: &Identity) -> Markup {
    html! { input type="hidden" name="_csrf" value=(id.csrf); }
}

/// RFC 3339 timestamps as the controller writes them into messages (`2026-12-06T07:22:57Z`, with an
/// optional fraction and offset).
static RFC3339_IN_TEXT: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
    regex::Regex::new(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})").ok()
});

/// A controller message with every RFC 3339 timestamp in it shown in the display time zone, like every
/// other time on the pages (the status line said `…until 2026-12-06T07:22:57Z`).
pub fn local_times(tz: chrono_tz::Tz, text: &str) -> String {
    match RFC3339_IN_TEXT.as_ref() {
        Some(re) => re
            .replace_all(text, |c: &regex::Captures<'_>| crate::timefmt::format_str(tz, &c[0]))
            .into_owned(),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests;
