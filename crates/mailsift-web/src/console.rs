//! The web console: server-rendered pages (minijinja templates compiled into the binary, `templates/`),
//! plain HTML forms, inline SVG charts; no JavaScript and nothing loaded from elsewhere, so it is light and
//! works offline. Every page calls the same functions as the JSON API (`api.rs`), so the two cannot
//! disagree about who may see or do what.
//!
//! Forms that change something carry the session's CSRF token in a hidden `_csrf` field, checked before
//! anything is done. Digest links (`/d/<token>`) show what they will do and act only on the button's POST.

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

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console") }))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/console", get(dashboard))
        .route("/console/log", get(log_page))
        .route("/console/log/{reference}", get(log_detail_page))
        .route("/console/quarantine", get(quarantine_page))
        .route("/console/quarantine/bulk", post(quarantine_bulk))
        .route("/console/quarantine/{id}", get(quarantine_item_page))
        .route("/console/quarantine/{id}/{action}", post(quarantine_action))
        .route("/console/allow", post(allow_sender))
        .route("/console/diagnosis/apply", post(diagnosis_apply))
        .route("/console/policy", get(policy_page))
        .route("/console/outbound", get(outbound_page))
        .route("/console/policy/test", post(policy_test))
        .route("/console/policy/rules/{op}", post(rules_op))
        .route("/console/policy/lists/{op}", post(lists_op))
        .route("/console/policy/domain", post(domain_save))
        .route("/d/{token}", get(link_page).post(link_action))
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

// ---------------------------------------------------------------------------------------------------------
// Login

async fn login_page(State(web): State<AppState>, Query(p): Query<FlashParams>) -> Response {
    render(&web, "login.html", context! { title => "Log in", next => p.next.unwrap_or_default(), flash => p.flash })
}

async fn login_submit(State(web): State<AppState>, Extension(Peer(peer)): Extension<Peer>, form: RawForm) -> Response {
    let f = Fields::parse(&form);
    let (name, password) = (f.get("name").unwrap_or(""), f.all("password").first().copied().unwrap_or(""));
    match api::check_login(&web, peer.ip(), name, password).await {
        Ok(principal) => {
            let id = match web.sessions.create(principal.clone(), web.session_ttl()) {
                Ok((id, _)) => id,
                Err(e) => return api_error_page(ApiError::internal(e)),
            };
            // Only a page of this console: anything else (another site, however disguised) goes home.
            let next = f.get("next").and_then(safe_redirect);
            let home = if principal.role == Role::User { "/console/quarantine" } else { "/console" };
            (
                [(header::SET_COOKIE, auth::session_cookie(&id, web.session_ttl(), web.config.tls))],
                Redirect::to(next.unwrap_or(home)),
            )
                .into_response()
        }
        Err(e) => {
            let page = render(
                &web,
                "login.html",
                context! { title => "Log in", error => e.message, next => f.get("next").unwrap_or("") },
            );
            (e.status, page).into_response()
        }
    }
}

async fn logout(State(web): State<AppState>, page: Page, headers: axum::http::HeaderMap, form: RawForm) -> Response {
    if let Err(r) = page.form(&form) {
        return r;
    }
    if let Some(id) =
        headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(|h| auth::cookie(h, auth::SESSION_COOKIE))
    {
        if let Err(e) = web.sessions.remove(id) {
            return api_error_page(ApiError::internal(e));
        }
    }
    ([(header::SET_COOKIE, auth::clear_cookie(web.config.tls))], Redirect::to("/login")).into_response()
}

// ---------------------------------------------------------------------------------------------------------
// Dashboard

async fn dashboard(State(web): State<AppState>, page: Page, Query(p): Query<FlashParams>) -> Response {
    if page.principal.role == Role::User {
        return Redirect::to("/console/quarantine").into_response();
    }
    let hours = 24;
    let now = mailsift_engine::unix_now();
    let since = (now / 3600 - hours + 1) * 3600;
    let stats = match service::gather_stats(&web.gateway, &page.principal, since).await {
        Ok(s) => s,
        Err(e) => return api_error_page(e),
    };
    let labels: Vec<String> = (0..hours).map(|h| format!("{:02}h", ((since / 3600 + h) % 24))).collect();
    let mut by_action: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in &stats.hourly {
        let i = ((c.hour - since) / 3600).clamp(0, hours - 1) as usize;
        by_action.entry(c.action.clone()).or_insert_with(|| vec![0; hours as usize])[i] += c.count;
    }
    let order = ["deliver", "tag", "quarantine", "reject", "refused", "tempfail", "failed"];
    let mut series: Vec<(String, &str, Vec<u64>)> = Vec::new();
    for a in order {
        if let Some(v) = by_action.remove(a) {
            series.push((a.to_string(), charts::action_colour(a), v));
        }
    }
    for (a, v) in by_action {
        series.push((a, "#9e9e9e", v));
    }
    let per_hour = charts::stacked_bars("Messages per hour, by action", &labels, &series);
    let top_symbols = charts::horizontal_bars("Top symbols", &stats.top_symbols, "#23395d");
    let top_refused = charts::horizontal_bars("Top refused senders", &stats.top_refused_senders, "#b3261e");
    let reports = page.principal.is_admin().then(|| {
        let days: Vec<String> = (0..30).map(|d| short_day(now - (29 - d) * 86_400)).collect();
        let mut fp = vec![0; 30];
        let mut fn_ = vec![0; 30];
        for (day, side, n) in &stats.reports_per_day {
            let i = 29 - ((now / 86_400 - day / 86_400).clamp(0, 29)) as usize;
            if side == "ham" {
                fp[i] += n
            } else {
                fn_[i] += n
            }
        }
        charts::stacked_bars(
            "User reports per day (30 days)",
            &days,
            &[("false positives".into(), "#d9822b", fp), ("false negatives".into(), "#23395d", fn_)],
        )
    });
    let scope = page.principal.scope().join(", ");
    render(
        &web,
        "dashboard.html",
        context! { title => "Dashboard", page => "dashboard", principal => &page.principal, csrf => &page.csrf,
        flash => p.flash, stats => &stats, per_hour, top_symbols, top_refused, reports, hours, scope },
    )
}

// ---------------------------------------------------------------------------------------------------------
// Outbound: the queue, the DKIM keys and their records, the DMARC reports received about our domains

async fn outbound_page(State(web): State<AppState>, page: Page) -> Response {
    if !page.principal.is_admin() {
        // Every domain's outgoing mail and the signing keys: administrators only.
        return api_error_page(ApiError::forbidden("the outbound page is for administrators"));
    }
    let days = 7;
    let db = web.db.clone();
    let since = mailsift_engine::unix_now() - days * 86_400;
    let read = blocking(move || {
        let counts = db.spool_counts()?;
        let items = db.spool_list(Some("pending"), 50)?;
        Ok((counts, items, db.dmarc_received_summary(since, None).map_err(|e| e.to_string())))
    })
    .await;
    let (counts, items, dmarc) = match read {
        Ok(r) => r,
        Err(e) => return api_error_page(e),
    };
    let now = mailsift_store::gateway::now_ms();
    let age = |ms: i64| {
        let s = (now - ms).max(0) / 1000;
        match s {
            s if s < 120 => format!("{s} s"),
            s if s < 7200 => format!("{} min", s / 60),
            s if s < 172_800 => format!("{} h", s / 3600),
            s => format!("{} days", s / 86_400),
        }
    };
    let totals: Vec<_> = counts
        .iter()
        .map(|c| context! { kind => &c.kind, state => &c.state, count => c.count, oldest => age(c.oldest_ms) })
        .collect();
    let items: Vec<_> = items
        .iter()
        .map(|i| {
            let next = if i.sending(now) {
                "sending now".to_string()
            } else if i.next_attempt_ms <= now {
                "now".to_string()
            } else {
                format!("in {}", age(now - (i.next_attempt_ms - now)))
            };
            context! { id => i.id, kind => &i.kind, mail_from => &i.mail_from, recipient => &i.recipient,
            queued => i.created_ms / 1000, attempts => i.attempts, next, last_error => &i.last_error }
        })
        .collect();
    let state = web.gateway.state();
    let (dkim, dkim_error) = match (state.config.dkim.loaded().cloned(), state.mx_resolver()) {
        (None, _) => (Vec::new(), None),
        (Some(keys), Ok(resolver)) => (mailsift_gateway::dkim_check::check(&keys, resolver).await, None),
        (Some(_), Err(e)) => (Vec::new(), Some(e)),
    };
    let (dmarc, dmarc_error) = match dmarc {
        Ok(rows) => (rows, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    render(
        &web,
        "outbound.html",
        context! { title => "Outbound", page => "outbound", principal => &page.principal, csrf => &page.csrf,
        totals, items, lifetime_hours => state.config.outbound.queue_lifetime_hours, dkim, dkim_error, dmarc,
        dmarc_error, days },
    )
}

fn short_day(t: i64) -> String {
    let (_, m, d) = mailsift_gateway::text::civil_from_days(t.div_euclid(86_400));
    format!("{m:02}-{d:02}")
}

// ---------------------------------------------------------------------------------------------------------
// Message log

async fn log_page(
    State(web): State<AppState>,
    page: Page,
    Query(p): Query<LogParams>,
    Query(f): Query<FlashParams>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let mut q = match p.query(&page.principal) {
        Ok(q) => q,
        Err(e) => return api_error_page(e),
    };
    q.limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let db = web.db.clone();
    let started = std::time::Instant::now();
    let query = q.clone();
    let entries = match blocking(move || Ok(db.log_search(&query)?)).await {
        Ok(e) => e,
        Err(e) => return api_error_page(e),
    };
    let elapsed = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
    let more = (entries.len() == q.limit).then(|| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("sender", &p.sender),
            ("recipient", &p.recipient),
            ("subject", &p.subject),
            ("action", &p.action),
            ("symbol", &p.symbol),
            ("since", &p.since),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.append_pair("offset", &(q.offset + q.limit).to_string());
        format!("/console/log?{}", s.finish())
    });
    render(
        &web,
        "log.html",
        context! { title => "Message log", page => "log", principal => &page.principal, csrf => &page.csrf, flash => f.flash,
        entries, elapsed, more, q => context! { sender => p.sender, recipient => p.recipient, subject => p.subject,
        action => p.action, symbol => p.symbol, since => p.since } },
    )
}

async fn log_detail_page(
    State(web): State<AppState>,
    page: Page,
    Path(reference): Path<String>,
    Query(f): Query<FlashParams>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let d = match service::log_detail(&web.gateway, &page.principal, &reference).await {
        Ok(d) => d,
        Err(e) => return api_error_page(e),
    };
    // The headers, when a copy of the message is kept (the log itself keeps none).
    let headers = match d.quarantine.first() {
        Some(i) => match service::quarantine_item(&web.gateway, &page.principal, i.id).await {
            Ok((_, raw)) => service::preview(&web.gateway, &raw).0,
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    let sender = d.entry.from_header.clone().or(d.entry.mail_from.clone()).filter(|s| s.contains('@'));
    // The diagnosis: why it was judged so, and the narrowest fixes (each tried on this message).
    let diagnosis =
        match crate::diagnosis::diagnose_target(&web, &page.principal, crate::diagnosis::Target::Log(reference), None)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e.message, "diagnosis failed");
                None
            }
        };
    let fixes: Vec<serde_json::Value> = diagnosis
        .as_ref()
        .map(|r| {
            r.fixes
                .iter()
                .map(|f| {
                    // What the fix still lets through goes with its note, where the page shows it under the
                    // fix's title: an administrator reads the risk before the Apply button.
                    let risk = f.fix.risk.trim();
                    let note = if risk.is_empty() {
                        f.fix.note.clone()
                    } else {
                        format!("{} Still lets through: {risk}", f.fix.note.trim_end())
                    };
                    serde_json::json!({
                        "title": f.fix.title, "note": note, "risk": risk, "command": f.fix.command,
                        "change": serde_json::to_string(&f.fix.change).unwrap_or_default(),
                        "with_fix": f.with_fix,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let quarantine_id = d.quarantine.first().map(|q| q.id);
    render(
        &web,
        "log_detail.html",
        context! { title => "Message", page => "log", principal => &page.principal, csrf => &page.csrf, flash => f.flash, d, headers, sender,
        diagnosis => diagnosis.as_ref().map(|r| &r.diagnosis), category => diagnosis.as_ref().map(|r| r.diagnosis.category.title()),
        fixes, quarantine_id },
    )
}

/// "Allow the sender" from a log entry: an allow entry in each recipient's own list (the narrowest that
/// works), keeping the spoofing and DMARC guards.
async fn allow_sender(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (Some(sender), Some(rcpts)) = (f.get("sender"), f.get("recipients")) else {
        return error_page(StatusCode::BAD_REQUEST, "Missing fields", "sender and recipients are needed");
    };
    let mut added = Vec::new();
    for r in rcpts.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        if !page.principal.may_act_for(r) {
            continue;
        }
        let comment = format!("allowed from the message log by {}", page.principal.name);
        let entry = mailsift_store::ListEntry::Allow(mailsift_gateway::actions::allow_entry(sender, r, comment));
        let db = web.db.clone();
        if let Err(e) = blocking(move || db.list_add(entry).map_err(api::policy_error)).await {
            return api_error_page(e);
        }
        added.push(r.to_string());
    }
    back(f.get("back").unwrap_or("/console/log"), &format!("{sender} is now allowed for {}", added.join(", ")))
}

// ---------------------------------------------------------------------------------------------------------
// Quarantine

async fn quarantine_page(
    State(web): State<AppState>,
    page: Page,
    Query(p): Query<QuarantineParams>,
    Query(f): Query<FlashParams>,
) -> Response {
    let q = match p.query(&page.principal) {
        Ok(q) => q,
        Err(e) => return api_error_page(e),
    };
    let db = web.db.clone();
    let items = match blocking(move || Ok(db.quarantine_list(&q)?)).await {
        Ok(i) => i,
        Err(e) => return api_error_page(e),
    };
    render(
        &web,
        "quarantine.html",
        context! { title => "Quarantine", page => "quarantine", principal => &page.principal, csrf => &page.csrf, flash => f.flash,
        items, q => context! { recipient => p.recipient, sender => p.sender, subject => p.subject, all => p.all } },
    )
}

async fn quarantine_item_page(
    State(web): State<AppState>,
    page: Page,
    Path(id): Path<i64>,
    Query(f): Query<FlashParams>,
) -> Response {
    let (item, raw) = match service::quarantine_item(&web.gateway, &page.principal, id).await {
        Ok(x) => x,
        Err(e) => return api_error_page(e),
    };
    let (headers, text) = service::preview(&web.gateway, &raw);
    render(
        &web,
        "quarantine_item.html",
        context! { title => "Quarantined message", page => "quarantine", principal => &page.principal, csrf => &page.csrf,
        flash => f.flash, item, headers, text },
    )
}

/// One action on one item, shared by the console's buttons and digest links.
async fn act(web: &AppState, p: &Principal, id: i64, action: &str, by: &str) -> Result<String, ApiError> {
    Ok(service::act_on(&web.gateway, p, id, QuarantineAction::parse(action)?, by).await?)
}

async fn quarantine_action(
    State(web): State<AppState>,
    page: Page,
    Path((id, action)): Path<(i64, String)>,
    form: RawForm,
) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match act(&web, &page.principal, id, &action, &page.principal.name).await {
        Ok(done) => {
            let default = if action == "delete" || action == "block" {
                "/console/quarantine".to_string()
            } else {
                format!("/console/quarantine/{id}")
            };
            back(f.get("back").unwrap_or(&default), &format!("{id}: {done}"))
        }
        Err(e) => api_error_page(e),
    }
}

async fn quarantine_bulk(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ids: Vec<i64> = f.all("ids").iter().filter_map(|s| s.parse().ok()).collect();
    let action = f.get("action").unwrap_or("");
    if ids.is_empty() {
        return back("/console/quarantine", "nothing selected");
    }
    match service::bulk(&web.gateway, &page.principal, &ids, action).await {
        Ok(results) => {
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
            let mut msg = format!("{action}: {ok} done");
            if !failed.is_empty() {
                msg.push_str(&format!(", {} failed ({})", failed.len(), failed.join("; ")));
            }
            back("/console/quarantine", &msg)
        }
        Err(e) => api_error_page(e),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Policy

#[derive(Serialize)]
struct RuleRow {
    position: usize,
    rule: FilterRule,
    /// The rule as TOML, led by comments saying how a forger gets through it and which conditions are
    /// forgeable (the page shows this text as the rule).
    toml: String,
    last_matched: Option<i64>,
    warnings: Vec<String>,
    forgeable_conditions: Vec<usize>,
}

impl RuleRow {
    fn of(r: mailsift_store::StoredRule) -> RuleRow {
        let mut toml = String::new();
        let warnings = api::rule_warnings(&r.rule);
        for w in &warnings {
            toml.push_str(&format!("# WARNING: FORGEABLE: {w}\n"));
        }
        let forgeable_conditions = api::forgeable_conditions(&r.rule);
        for n in &forgeable_conditions {
            let c = &r.rule.conditions[n - 1];
            let field = match (&c.header, c.field) {
                (Some(h), mailsift_engine::policy::Field::Header) => format!("header {}", h.trim()),
                (_, f) => f.as_str().to_string(),
            };
            toml.push_str(&format!("# condition {n} ({field}): (forgeable: the sender writes it)\n"));
        }
        toml.push_str(&mailsift_store::gateway::policy::rule_to_toml(&r.rule).unwrap_or_default());
        RuleRow {
            position: r.position,
            toml,
            rule: r.rule,
            last_matched: r.last_matched,
            warnings,
            forgeable_conditions,
        }
    }
}

async fn policy_page(State(web): State<AppState>, page: Page, Query(f): Query<FlashParams>) -> Response {
    policy_render(&web, &page, f.flash, None, None, None).await
}

async fn policy_render(
    web: &AppState,
    page: &Page,
    flash: Option<String>,
    error: Option<String>,
    test: Option<BTreeMap<String, String>>,
    result: Option<service::RulesTestAnswer>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let w = web.clone();
    let p = page.principal.clone();
    let loaded = blocking(move || {
        let rules: Vec<RuleRow> = if p.is_admin() {
            w.db.rules().map_err(api::policy_error)?.into_iter().map(RuleRow::of).collect()
        } else {
            Vec::new()
        };
        let entries: Vec<mailsift_store::StoredEntry> =
            w.db.list_entries()
                .map_err(api::policy_error)?
                .into_iter()
                .filter(|e| service::may_manage_entry(&p, e.entry.recipient()))
                .collect();
        let domains: Vec<api::DomainView> = service::all_domains(&w.gateway)?
            .into_iter()
            .filter(|(d, _)| p.manages_domain(&d.name))
            .map(|(settings, source)| api::DomainView { settings, source: source.into() })
            .collect();
        Ok((rules, entries, domains))
    })
    .await;
    let (rules, entries, domains) = match loaded {
        Ok(x) => x,
        Err(e) => return api_error_page(e),
    };
    let state = web.gateway.state();
    let thresholds = state.engine.config().thresholds.clone();
    let forgeable_rules: Vec<&String> = rules.iter().flat_map(|r| &r.warnings).collect();
    let rule_fields: Vec<api::RuleField> = mailsift_engine::policy::Field::ALL
        .iter()
        .map(|f| api::RuleField { name: f.as_str(), description: api::field_label(*f), forgeable: f.forgeable() })
        .collect();
    let rule_ops: Vec<&str> = RULE_OPS.iter().map(|o| o.as_str()).collect();
    render(
        web,
        "policy_with_rule_form.html",
        context! { title => "Policy", page => "policy", principal => &page.principal, csrf => &page.csrf, flash, error,
        rules, entries, domains, thresholds, asf => service::asf_list(&web.gateway), test, result, forgeable_rules, rule_fields,
        rule_ops },
    )
}

async fn policy_test(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let message = f.all("message").first().map(|m| m.replace("\r\n", "\n").replace('\n', "\r\n")).unwrap_or_default();
    let params = ScanParams {
        ip: f.get("ip").map(String::from),
        mail_from: f.get("mail_from").map(String::from),
        rcpt: f.get("rcpt").map(String::from),
        ..Default::default()
    };
    let test: BTreeMap<String, String> = ["ip", "mail_from", "rcpt"]
        .iter()
        .filter_map(|k| f.get(k).map(|v| (k.to_string(), v.to_string())))
        .chain(std::iter::once(("message".to_string(), message.clone())))
        .collect();
    if message.trim().is_empty() {
        return policy_render(&web, &page, None, Some("paste a message to test".into()), Some(test), None).await;
    }
    match service::test_rules(&web.gateway, message.into_bytes(), &params).await {
        Ok(result) => policy_render(&web, &page, None, None, Some(test), Some(result)).await,
        Err(e) => policy_render(&web, &page, None, Some(e.message), Some(test), None).await,
    }
}

async fn rules_op(State(web): State<AppState>, page: Page, Path(op): Path<String>, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !page.principal.is_admin() {
        return error_page(
            StatusCode::FORBIDDEN,
            "Not for you",
            "Filter rules are the organisation's: administrators only.",
        );
    }
    let db = web.db.clone();
    let name = f.get("name").unwrap_or("").to_string();
    let result: Result<String, ApiError> = match op.as_str() {
        "add" => {
            let text = f.all("rule").first().copied().unwrap_or("").to_string();
            let at = f.get("at").and_then(|a| a.parse().ok());
            match toml::from_str::<FilterRule>(&text) {
                Ok(rule) => add_rule(&web, rule, at).await,
                Err(e) => Err(ApiError::bad_request(format!("the rule does not read: {e}"))),
            }
        }
        "build" => {
            let at = f.get("at").and_then(|a| a.parse().ok());
            match rule_from_form(&f) {
                Ok(rule) => add_rule(&web, rule, at).await,
                Err(e) => Err(ApiError::bad_request(e)),
            }
        }
        "delete" => {
            blocking(move || db.rule_remove(&name).map_err(api::policy_error)).await.map(|_| "rule removed".into())
        }
        "toggle" => {
            blocking(move || {
                let rule = db
                    .rule_get(&name)
                    .map_err(api::policy_error)?
                    .ok_or_else(|| ApiError::not_found("no such rule"))?;
                db.rule_set_enabled(&name, !rule.rule.enabled).map_err(api::policy_error)?;
                Ok(format!("rule {name:?} {}", if rule.rule.enabled { "disabled" } else { "enabled" }))
            })
            .await
        }
        "move" => {
            let to: usize = f.get("to").and_then(|t| t.parse().ok()).unwrap_or(0);
            blocking(move || {
                let count = db.rules().map_err(api::policy_error)?.len();
                db.rule_move(&name, to.min(count.saturating_sub(1))).map_err(api::policy_error)?;
                Ok("rule moved".to_string())
            })
            .await
        }
        other => Err(ApiError::not_found(format!("no rule operation {other:?}"))),
    };
    match result {
        Ok(done) => back("/console/policy", &done),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}

/// The operators the rule form offers, in the order the documentation gives them.
const RULE_OPS: &[mailsift_engine::policy::Operator] = {
    use mailsift_engine::policy::Operator as O;
    &[O::Is, O::Contains, O::StartsWith, O::EndsWith, O::Matches, O::InCidr, O::Above, O::Below, O::Exists]
};

/// Stores a rule from the console; the confirmation carries the forgery warning, so whoever added it reads
/// it at once (the rule list repeats it).
async fn add_rule(web: &AppState, rule: FilterRule, at: Option<usize>) -> Result<String, ApiError> {
    let n = rule.name.clone();
    let warning = rule.forgery_warning();
    let db = web.db.clone();
    let pos = blocking(move || db.rule_add(rule, at).map_err(api::policy_error)).await?;
    Ok(match warning {
        Some(w) => format!("rule {n:?} added at {pos}. WARNING: FORGEABLE: {w}"),
        None => format!("rule {n:?} added at {pos}"),
    })
}

/// A rule from the console's field form: up to three conditions (field, header, operator, value, not),
/// one action. The engine checks it when it is stored.
fn rule_from_form(f: &Fields) -> Result<FilterRule, String> {
    use mailsift_engine::policy::{Condition, Field, MatchMode, Operator, RuleAction, RuleDirection, Value};
    let name = f.get("name").unwrap_or("").trim().to_string();
    if name.is_empty() {
        return Err("the rule needs a name".into());
    }
    // Field and operator names read as the TOML and JSON read them.
    let parse = |v: &str| serde_json::Value::String(v.trim().to_string());
    let mut conditions = Vec::new();
    for i in 1..=3 {
        let Some(field) = f.get(&format!("field{i}")) else { continue };
        let field: Field = serde_json::from_value(parse(field)).map_err(|e| format!("condition {i}: field: {e}"))?;
        let op: Operator = serde_json::from_value(parse(f.get(&format!("op{i}")).unwrap_or("")))
            .map_err(|e| format!("condition {i}: operator: {e}"))?;
        let header = f.get(&format!("header{i}")).map(str::to_string);
        let value = f.get(&format!("value{i}")).map(|v| match (field, v.parse::<f64>()) {
            (Field::Size | Field::Score, Ok(n)) => Value::Number(n),
            _ => Value::Text(v.to_string()),
        });
        let not = f.get(&format!("not{i}")).is_some();
        conditions.push(Condition {
            field,
            header: if field == Field::Header { header } else { None },
            op,
            value,
            not,
        });
    }
    let action = match f.get("action").unwrap_or("") {
        "allow" => RuleAction::Allow {},
        "quarantine" => RuleAction::Quarantine {},
        "reject" => RuleAction::Reject { message: None },
        "tag" => RuleAction::Tag {},
        "add_score" => RuleAction::AddScore {
            score: f.get("score").unwrap_or("").trim().parse().map_err(|_| "add score: give the score as a number")?,
        },
        other => return Err(format!("action {other:?}: allow, quarantine, reject, tag or add_score")),
    };
    Ok(FilterRule {
        name,
        enabled: true,
        direction: match f.get("direction").unwrap_or("inbound") {
            "outbound" => RuleDirection::Outbound,
            "both" => RuleDirection::Both,
            _ => RuleDirection::Inbound,
        },
        match_mode: if f.get("match") == Some("any") { MatchMode::Any } else { MatchMode::All },
        conditions,
        actions: vec![action],
        comment: Some("added from the console's rule form".into()),
    })
}

async fn lists_op(State(web): State<AppState>, page: Page, Path(op): Path<String>, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let db = web.db.clone();
    let p = page.principal.clone();
    let result: Result<String, ApiError> = match op.as_str() {
        "add" => {
            let req = api::ListRequest {
                list: f.get("list").unwrap_or("allow").to_string(),
                entry: serde_json::json!({
                    "sender": f.get("sender").unwrap_or(""),
                    "recipient": f.get("recipient"),
                    "comment": f.get("comment").map(String::from).unwrap_or_else(|| format!("added in the console by {}", p.name)),
                }),
            };
            match api::parse_list_entry(req) {
                Ok(entry) if service::may_manage_entry(&p, entry.recipient()) => {
                    blocking(move || db.list_add(entry).map_err(api::policy_error))
                        .await
                        .map(|id| format!("entry {id} added"))
                }
                Ok(_) => Err(ApiError::forbidden("give a recipient (address or domain) that you manage")),
                Err(e) => Err(e),
            }
        }
        "delete" => {
            let id: i64 = f.get("id").and_then(|i| i.parse().ok()).unwrap_or(-1);
            blocking(move || {
                let entry = db.list_entries().map_err(api::policy_error)?.into_iter().find(|e| e.id == id);
                match entry {
                    Some(e) if service::may_manage_entry(&p, e.entry.recipient()) => {
                        db.list_remove(id).map_err(api::policy_error)
                    }
                    _ => Err(ApiError::not_found(format!("no list entry {id} that you may change"))),
                }
            })
            .await
            .map(|_| format!("entry {id} removed"))
        }
        other => Err(ApiError::not_found(format!("no list operation {other:?}"))),
    };
    match result {
        Ok(done) => back("/console/policy", &done),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}

fn split_list(s: Option<&str>) -> Vec<String> {
    s.unwrap_or("").split([',', ' ', '\n']).map(str::trim).filter(|x| !x.is_empty()).map(String::from).collect()
}

async fn domain_save(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(name) = f.get("name").map(|n| n.to_ascii_lowercase()) else {
        return policy_render(&web, &page, None, Some("give the domain's name".into()), None, None).await;
    };
    // Start from the domain as it is (stored, or from the configuration), change what the form gives.
    let w = web.clone();
    let existing = blocking(move || Ok(service::all_domains(&w.gateway)?)).await.unwrap_or_default();
    let mut d =
        existing.into_iter().find(|(d, _)| d.name.eq_ignore_ascii_case(&name)).map(|(d, _)| d).unwrap_or_else(|| {
            serde_json::from_value(serde_json::json!({ "name": name })).expect("a domain from its name")
        });
    if let Some(h) = f.get("next_hop") {
        d.next_hop = Some(h.to_string());
    }
    if f.get("sending_servers").is_some() {
        d.sending_servers = split_list(f.get("sending_servers"));
    }
    let num =
        |k: &str| f.get(k).map(|v| v.parse::<f64>().map_err(|_| format!("{k}: {v:?} is not a number"))).transpose();
    match (num("tag"), num("quarantine"), num("reject")) {
        (Ok(Some(tag)), Ok(Some(quarantine)), Ok(Some(reject))) => {
            d.thresholds = Some(mailsift_engine::config::Thresholds { tag, quarantine, reject })
        }
        (Ok(None), Ok(None), Ok(None)) => {}
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return policy_render(&web, &page, None, Some(e), None, None).await
        }
        _ => {
            return policy_render(&web, &page, None, Some("give all three thresholds, or none".into()), None, None)
                .await
        }
    }
    if let Some(asf) = f.get("asf") {
        let mut map = BTreeMap::new();
        for pair in split_list(Some(asf)) {
            let Some((k, v)) = pair.split_once('=') else {
                return policy_render(&web, &page, None, Some(format!("asf: {pair:?} is not option=mode")), None, None)
                    .await;
            };
            match serde_json::from_value(serde_json::Value::String(v.trim().to_string())) {
                Ok(mode) => {
                    map.insert(k.trim().to_string(), mode);
                }
                Err(_) => {
                    return policy_render(
                        &web,
                        &page,
                        None,
                        Some(format!("asf: {v:?} is not on, off or test")),
                        None,
                        None,
                    )
                    .await
                }
            }
        }
        d.asf = map;
    }
    match service::store_domain(&web.gateway, &page.principal, d).await {
        Ok(()) => back("/console/policy", &format!("domain {name} saved; the gateway applies it within seconds")),
        Err(e) => policy_render(&web, &page, None, Some(e.message), None, None).await,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Digest links

fn link_error(e: crate::tokens::TokenError) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This link does not work",
        &format!("{e}. Open your quarantine from your newest digest."),
    )
}

fn link_purpose(token: &str, web: &AppState) -> Result<crate::tokens::Claims, Response> {
    let claims = web.signer.verify_any(token, mailsift_engine::unix_now()).map_err(link_error)?;
    if claims.purpose == Purpose::Api {
        return Err(link_error(crate::tokens::TokenError::WrongPurpose));
    }
    Ok(claims)
}

fn end_user(subject: &str) -> Principal {
    Principal { account_id: None, name: subject.to_ascii_lowercase(), role: Role::User, domains: Vec::new() }
}

async fn link_page(State(web): State<AppState>, Path(token): Path<String>) -> Response {
    let claims = match link_purpose(&token, &web) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let user = end_user(&claims.subject);
    if claims.purpose == Purpose::Digest {
        // The recipient's own quarantine, in a session limited to it.
        let id = match web.sessions.create(user, web.session_ttl()) {
            Ok((id, _)) => id,
            Err(e) => return api_error_page(ApiError::internal(e)),
        };
        return (
            [(header::SET_COOKIE, auth::session_cookie(&id, web.session_ttl(), web.config.tls))],
            Redirect::to("/console/quarantine"),
        )
            .into_response();
    }
    let item = match service::quarantine_item(&web.gateway, &user, claims.id).await {
        Ok((item, _)) => item,
        Err(e) => return api_error_page(e),
    };
    let (heading, confirm) = match claims.purpose {
        Purpose::Release => ("Release this message?", "Release it to my inbox"),
        Purpose::Approve => ("Release this message and always accept its sender?", "Release and allow the sender"),
        _ => ("Block this sender?", "Block the sender and delete the message"),
    };
    let released = item.released_at.is_some();
    // A used link says so instead of asking again.
    let heading = if released { "This message was already released" } else { heading };
    let quarantine_link = crate::digest::link(&web, Purpose::Digest, 0, &claims.subject);
    render(
        &web,
        "link.html",
        context! { title => heading, heading, item, quarantine_link, action => format!("/d/{token}"),
        confirm => (!released).then_some(confirm), done => released.then_some("It was already released.") },
    )
}

async fn link_action(State(web): State<AppState>, Path(token): Path<String>) -> Response {
    let claims = match link_purpose(&token, &web) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let user = end_user(&claims.subject);
    let action = match claims.purpose {
        Purpose::Release => "release",
        Purpose::Approve => "approve",
        Purpose::Block => "block",
        _ => return Redirect::to(&format!("/d/{token}")).into_response(),
    };
    web.metrics.link_actions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let by = format!("{} (digest link)", claims.subject);
    let quarantine_link = crate::digest::link(&web, Purpose::Digest, 0, &claims.subject);
    match act(&web, &user, claims.id, action, &by).await {
        Ok(done) => render(&web, "link.html", context! { title => "Done", heading => "Done", done, quarantine_link }),
        Err(e) => (
            e.status,
            render(
                &web,
                "link.html",
                context! { title => "Not done", heading => "Not done", error => e.message, quarantine_link },
            ),
        )
            .into_response(),
    }
}

/// "Apply" on a fix the diagnosis proposed (administrators).
async fn diagnosis_apply(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let change: mailsift_engine::diagnose::Change = match f.all("change").first().map(|c| serde_json::from_str(c)) {
        Some(Ok(c)) => c,
        _ => return error_page(StatusCode::BAD_REQUEST, "Not a fix", "the form carries no fix to apply"),
    };
    let quarantine_id = f.get("quarantine_id").and_then(|q| q.parse().ok());
    match crate::diagnosis::apply_change(&web, &page.principal, change, quarantine_id).await {
        Ok(done) => back(f.get("back").unwrap_or("/console/log"), &format!("fix applied: {done}")),
        Err(e) => api_error_page(e),
    }
}
