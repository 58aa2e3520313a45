//! The web console: server-rendered pages (minijinja templates compiled into the binary, `templates/`),
//! plain HTML forms, inline SVG charts; no JavaScript and nothing loaded from elsewhere, so it is light and
//! works offline. Every page calls the same functions as the JSON API (`api.rs`), so the two cannot
//! disagree about who may see or do what.
//!
//! Forms that change something carry the session's CSRF token in a hidden `_csrf` field, checked before
//! anything is done. Digest links (`/d/<token>`) show what they will do and act only on the button's POST.
//!
//! One file per area, each with its routes: `login`, `dashboard`, `log` (the message log, a message's page
//! and the fixes applied from it), `quarantine`, `policy`, `lists` (an end user's own senders), `domains`
//! (a page per sender domain), `reports` (users' false-positive and false-negative reports), `outbound`,
//! `links` (digest links). The time range every view takes is `crate::range`.

// A console check's refusal is a whole page (a `Response`), returned as it is; boxing it would only add
// noise to every handler.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use axum::extract::{FromRequestParts, Path, Query, RawForm, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use mailsift_engine::policy::FilterRule;
use mailsift_store::{PolicyStore, Role};
use minijinja::context;
use serde::Serialize;

use crate::api::{self, LogParams, QuarantineParams};
use crate::app::{blocking, ApiError, AppState, CallerSafeBody, Peer};
use crate::auth::{self, Principal};
use crate::charts;
use crate::service::{self, QuarantineAction, ScanParams};
use crate::tokens::Purpose;

mod dashboard;
mod domains;
mod links;
mod lists;
mod log;
mod login;
mod outbound;
mod policy;
mod quarantine;
mod reports;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .merge(login::routes())
        .merge(dashboard::routes())
        .merge(log::routes())
        .merge(quarantine::routes())
        .merge(policy::routes())
        .merge(outbound::routes())
        .merge(links::routes())
        .merge(reports::routes())
        .merge(domains::routes())
        .merge(lists::routes())
}

/// A console page's caller: a session, or a redirect to the login page.
pub struct Page {
    pub principal: Principal,
    pub csrf: String,
}

impl FromRequestParts<AppState> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &AppState) -> Result<Page, Response> {
        match crate::app::identify(&parts.headers, web) {
            Ok((principal, Some(session))) => Ok(Page { principal, csrf: session.csrf }),
            _ => {
                let next = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/console");
                let next: String = form_urlencoded::byte_serialize(next.as_bytes()).collect();
                Err(Redirect::to(&format!("/login?next={next}")).into_response())
            }
        }
    }
}

/// A submitted form's fields, repeated keys kept.
pub struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(form: &RawForm) -> Fields {
        Fields(form_urlencoded::parse(&form.0).into_owned().collect())
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }
}

impl Page {
    /// Reads a form and checks its CSRF token.
    fn form(&self, form: &RawForm) -> Result<Fields, Response> {
        let fields = Fields::parse(form);
        match fields.get("_csrf") {
            Some(t) if auth::same_secret(t, &self.csrf) => Ok(fields),
            _ => Err(error_page(
                StatusCode::FORBIDDEN,
                "Refused",
                "The form's CSRF token is missing or wrong; reload the page and try again.",
            )),
        }
    }
    fn require_manager(&self) -> Result<(), Response> {
        if self.principal.is_manager() {
            Ok(())
        } else {
            Err(error_page(StatusCode::FORBIDDEN, "Not for you", "This page is for administrators."))
        }
    }
}

fn render(web: &AppState, template: &str, ctx: minijinja::Value) -> Response {
    match web.templates.get_template(template).and_then(|t| t.render(ctx)) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, template, "console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

fn error_page(status: StatusCode, heading: &str, message: &str) -> Response {
    // Rendered without the shared environment so it works even before state exists.
    let env = crate::templates::templates();
    let html = env
        .get_template("error.html")
        .and_then(|t| t.render(context! { title => heading, heading, message }))
        .unwrap_or_else(|_| message.to_string());
    (status, Html(html)).into_response()
}

fn api_error_page(e: impl Into<ApiError>) -> Response {
    let e: ApiError = e.into();
    // An ApiError's message is written for the caller (a server-side failure's is already only a
    // reference), so the 5xx scrubber need not replace it.
    let mut res = error_page(e.status, "That did not work", &e.message);
    res.extensions_mut().insert(CallerSafeBody);
    res
}

/// `target` when it is a page of this console that is safe to send a browser to, else `None`.
///
/// Browsers read a redirect's target leniently: they drop tabs and newlines, take `\` for `/`, and
/// read `//host` or `/\host` as another site. Rather than predict every such reading, only the
/// console's own pages are allowed (`/console`, alone or followed by `/` or `?`), in a strict set of
/// characters (no `\`, no whitespace or control characters, no `#`, nothing outside ASCII), and with
/// no `//`, no dot segments and no percent-encoded `/`, `\` or `.` that a later decoding could turn
/// into one.
pub fn safe_redirect(target: &str) -> Option<&str> {
    const MAX: usize = 2048;
    let allowed_char = |b: u8| b.is_ascii_alphanumeric() || b"-._~/?=&%+,:@".contains(&b);
    let rest = target.strip_prefix("/console")?;
    let shape = rest.is_empty() || rest.starts_with('/') || rest.starts_with('?');
    let lower = target.to_ascii_lowercase();
    let tricks = ["//", "/.", "%2f", "%5c", "%2e", "%09", "%0a", "%0d", "%00"];
    (shape && target.len() <= MAX && target.bytes().all(allowed_char) && !tricks.iter().any(|t| lower.contains(t)))
        .then_some(target)
}

/// Back to a page with a message in the URL (shown escaped, never as markup).
fn back(to: &str, flash: &str) -> Response {
    let to = safe_redirect(to).unwrap_or("/console");
    let sep = if to.contains('?') { '&' } else { '?' };
    let flash: String = form_urlencoded::byte_serialize(flash.as_bytes()).collect();
    Redirect::to(&format!("{to}{sep}flash={flash}")).into_response()
}

#[derive(serde::Deserialize, Default)]
struct FlashParams {
    flash: Option<String>,
    next: Option<String>,
}

fn short_day(t: i64) -> String {
    let (_, m, d) = mailsift_gateway::text::civil_from_days(t.div_euclid(86_400));
    format!("{m:02}-{d:02}")
}
