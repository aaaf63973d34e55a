//! The API tokens page (`/tokens`): everyone's own personal API tokens (`janus_pat_…`) with a form to
//! create one — shown once, with a copy button — and Revoke buttons; admins also see and revoke
//! everyone's. Forms post with the CSRF field and work without JavaScript. The rules (name, scopes, expiry
//! bound, per-user limit, who may revoke what, audit, ending streams) are the JSON API's: this page calls
//! the same [`crate::api::tokens`] functions as `/api/v1/tokens`.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use janus_api::tokens::TokenScope;
use maud::{Markup, html};
use serde::Deserialize;

use crate::api::tokens::{self as svc, CreatedToken, NewTokenInput, TokenView};
use crate::auth::{Authenticated, Identity};
use crate::error::WebError;
use crate::pages::{FormData, Nav, PageError, csrf_field, page};
use crate::state::AppState;
use crate::timefmt;

/// Longest token name the form accepts (the API's rule; the field's `maxlength`).
const NAME_MAX: usize = 64;

/// What the page says after a revocation (a fixed text; the query is never echoed).
#[derive(Deserialize, Default)]
pub struct TokensQuery {
    done: Option<String>,
}

/// What the create form held, to show it again with an error (or the defaults).
struct FormState {
    name: String,
    scopes: Vec<TokenScope>,
    days: String,
}

/// What the page shows above the lists.
enum Outcome<'a> {
    None,
    /// A token was just created: its only showing.
    Created(&'a CreatedToken),
    /// The create form was refused.
    Refused(String),
    /// A token was revoked (after the redirect).
    Revoked,
}

/// Pages are for login sessions (cookie or proxy): a bearer credential never reaches them. The
/// authentication layer refuses it first; this keeps the page safe on its own.
fn bearer_refusal(id: &Identity) -> Option<Response> {
    id.token.is_some().then(|| {
        (
            StatusCode::UNAUTHORIZED,
            "API tokens work only on /api/v1 and the terminal socket",
        )
            .into_response()
    })
}

/// `GET /tokens`.
pub async fn show(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    Query(q): Query<TokensQuery>,
) -> Result<Response, PageError> {
    if let Some(r) = bearer_refusal(&id) {
        return Ok(r);
    }
    let outcome = match q.done.as_deref() {
        Some("revoked") => Outcome::Revoked,
        _ => Outcome::None,
    };
    render(&state, &id, &headers, outcome, None).await
}

/// `POST /tokens`: creates a token from the form (`name`, `scopes` checkboxes, `expiresInDays`) and
/// answers with the page showing it once (no redirect: the token must not travel in a URL, and the
/// answer is `no-store`).
pub async fn create(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    headers: HeaderMap,
    form: FormData,
) -> Result<Response, PageError> {
    if let Some(r) = bearer_refusal(&id) {
        return Ok(r);
    }
    let days_text = form.get("expiresInDays").unwrap_or_default().trim().to_string();
    let input = NewTokenInput {
        name: form.get("name").unwrap_or_default().to_string(),
        scopes: form.all("scopes"),
        expires_in_days: if days_text.is_empty() {
            None
        } else {
            // Not a number: an out-of-range value, so the API's check names the field and the bounds.
            Some(days_text.parse().unwrap_or(-1))
        },
    };
    let kept = FormState {
        name: input.name.chars().take(NAME_MAX).collect(),
        scopes: input.scopes.iter().filter_map(|s| TokenScope::parse(s)).collect(),
        days: days_text.chars().take(8).collect(),
    };
    match svc::create(&state, &id, input).await {
        Ok(created) => {
            let mut r = render(&state, &id, &headers, Outcome::Created(&created), None).await?;
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            Ok(r)
        }
        // Refusals show the page again with the reason and what was typed; anything else is an error page.
        Err(e @ (WebError::Invalid { .. } | WebError::Conflict(_) | WebError::Forbidden(_))) => {
            let status = e.status();
            let mut r = render(&state, &id, &headers, Outcome::Refused(e.to_string()), Some(kept)).await?;
            *r.status_mut() = status;
            Ok(r)
        }
        Err(other) => Err(PageError(other)),
    }
}

/// `POST /tokens/{displayId}/revoke`: the owner's own token, or anyone's for an admin (404 otherwise).
pub async fn revoke(
    State(state): State<AppState>,
    Authenticated(id): Authenticated,
    Path(display_id): Path<String>,
) -> Result<Response, PageError> {
    if let Some(r) = bearer_refusal(&id) {
        return Ok(r);
    }
    svc::revoke(&state, &id, &display_id).await?;
    Ok(Redirect::to("/tokens?done=revoked").into_response())
}

async fn render(
    state: &AppState,
    id: &Identity,
    headers: &HeaderMap,
    outcome: Outcome<'_>,
    kept: Option<FormState>,
) -> Result<Response, PageError> {
    let cfg = &state.config.web.api_tokens;
    let own = svc::list(state, id, false).await?;
    let all = if id.is_admin {
        Some(svc::list(state, id, true).await?)
    } else {
        None
    };
    let kept = kept.unwrap_or_else(|| FormState {
        name: String::new(),
        scopes: vec![TokenScope::Read],
        days: cfg.default_lifetime_days.to_string(),
    });
    let tz = state.tz;
    let main = html! {
        @match &outcome {
            Outcome::Created(created) => {
                div.flash.ok #new-token-box {
                    p { strong { "Your new token “" (created.name) "”." } " Copy it now: it is shown only this once and "
                        "cannot be recovered. Anyone who has it can act as you within its scopes ("
                        (scope_list(&created.scopes)) ") until " (timefmt::format(tz, created.expires_at)) "." }
                    div.token-copy {
                        input #new-token type="text" readonly value=(created.token) aria-label="The new API token"
                            autocomplete="off" spellcheck="false";
                        button.secondary type="button" data-copy="new-token" { "Copy" }
                    }
                    // `--token -` reads stdin: a token on the command line lands in the shell history and
                    // in every process listing.
                    p.small #token-use { "Sign the CLI in with " code { "janus login --token -" } " and paste it "
                        "(read from stdin, so it stays out of the shell history), or set " code { "JANUS_TOKEN" }
                        " in a CI job; keep it in a secret store, never in a repository." }
                }
            }
            Outcome::Refused(msg) => { div.flash.bad #token-error { (msg) } }
            Outcome::Revoked => { div.flash.ok { "Done: the token was revoked. Anything using it is refused from now on." } }
            Outcome::None => {}
        }
        h1 { "API tokens" }
        p {
            "Personal API tokens let the " code { "janus" } " command line and CI jobs use the API and open "
            "shells as you, within the scopes you give them: " strong { "read" } " (see what you may see), "
            strong { "request" } " (create and withdraw your requests, open shells, run commands, read logs), "
            strong { "approve" } " (decide on requests you may approve). They start with "
            code { "janus_pat_" } ", expire, and are stored only as a hash. At a terminal, "
            code { "janus login" } " is simpler."
        }
        @if cfg.enabled {
            h2 { "New token" }
            form #create-token method="post" action="/tokens" {
                (csrf_field(id))
                label for="t-name" { "Name" }
                input #t-name type="text" name="name" required maxlength=(NAME_MAX) value=(kept.name)
                    placeholder="e.g. laptop, deploy pipeline";
                label { "Scopes" }
                div.nslist #t-scopes {
                    @for s in TokenScope::ALL {
                        label {
                            input type="checkbox" name="scopes" value=(s.as_str()) checked[kept.scopes.contains(&s)];
                            (s.as_str())
                        }
                    }
                }
                label for="t-days" { "Expires in (days, at most " (cfg.max_lifetime_days) ")" }
                input #t-days type="number" name="expiresInDays" min="1" max=(cfg.max_lifetime_days) required
                    value=(kept.days);
                p.small.muted { "You may hold " (cfg.max_per_user) " unrevoked, unexpired tokens at once." }
                button type="submit" { "Create token" }
            }
        } @else {
            p.notice #tokens-disabled {
                "Personal API tokens are turned off on this server (web.apiTokens.enabled): none can be created, "
                "and existing ones are refused. " code { "janus login" } " still works."
            }
        }
        h2 { "Your tokens" }
        (token_table(id, &own, false, tz, "my-tokens"))
        @if let Some(all) = &all {
            h2 { "All tokens" }
            p.small { "Everyone's tokens (admins only). Revoke one when its owner leaves or it may have leaked: "
                "tokens of OIDC and proxy users keep working after the person is removed at the identity provider." }
            (token_table(id, all, true, tz, "all-tokens"))
        }
    };
    Ok(page(state, Some(id), "API tokens", Nav::Tokens, false, headers, main).into_response())
}

fn scope_list(scopes: &[TokenScope]) -> String {
    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn token_table(id: &Identity, tokens: &[TokenView], with_owner: bool, tz: chrono_tz::Tz, table_id: &str) -> Markup {
    html! {
        @if tokens.is_empty() {
            p.muted id=(format!("{table_id}-none")) { "No tokens." }
        } @else {
            table id=(table_id) {
                thead { tr {
                    @if with_owner { th { "Owner" } }
                    th { "Name" } th { "Token" } th { "Scopes" } th { "Created" } th { "Expires" }
                    th { "Last used" } th { "State" } th { "" }
                } }
                tbody {
                    @for t in tokens {
                        tr data-token=(t.display_id) {
                            @if with_owner { td { (t.owner) } }
                            td { (t.name) }
                            td { code { (t.display_id) "…" } }
                            td { (scope_list(&t.scopes)) }
                            td.small { (timefmt::format(tz, t.created_at)) }
                            td.small { (timefmt::format(tz, t.expires_at)) }
                            td.small {
                                @match (&t.last_used_at, &t.last_used_ip) {
                                    (Some(at), ip) => { (timefmt::format(tz, *at)) @if let Some(ip) = ip { br; "from " (ip) } }
                                    (None, _) => { span.muted { "never" } }
                                }
                            }
                            td.state {
                                @if let Some(at) = t.revoked_at {
                                    "Revoked " span.small { (timefmt::format(tz, at))
                                        @if let Some(by) = &t.revoked_by { @if by != &t.owner { " by " (by) } } }
                                } @else if t.state == "expired" {
                                    "Expired"
                                } @else {
                                    "Active"
                                }
                            }
                            td {
                                @if t.revoked_at.is_none() {
                                    form.inline method="post" action=(format!("/tokens/{}/revoke", t.display_id))
                                        data-confirm=(format!("Revoke the token “{}”? Anything using it stops working at once.", t.name)) {
                                        (csrf_field(id))
                                        button.secondary type="submit" { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
