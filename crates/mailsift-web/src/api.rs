//! The JSON API under `/api/v1`: everything the command line does, for scripts and for the console.
//!
//! Each handler is annotated for the OpenAPI document (`GET /api/v1/openapi.json`), which is generated from
//! these annotations and the routes they are registered with, so the document lists exactly the routes
//! that exist. Every handler takes a [`Caller`] and checks the caller's reach itself: administrators see
//! everything, domain administrators their domains, end users their own quarantine and lists. Store calls
//! are blocking SQLite reads and writes: they run on Tokio's blocking pool.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use mailsift_engine::policy::{AllowEntry, BlockEntry, FilterRule};
use mailsift_gateway::config::DomainConfig;
use mailsift_store::{ListEntry, LogQuery, PolicyStore, QuarantineQuery, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{blocking, ApiError, AppState, Caller, Peer};
use crate::auth::{self, Principal};
use crate::service::{
    self, clip, may_manage_entry, parse_side, parse_when, quarantine_item, ActionAnswer, AsfOption, LogDetail,
    ReportAnswer, RulesTestAnswer, ScanAnswer, ScanParams, Stats,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "mailsift", description = "The mailsift gateway's HTTP API: scan, message log, quarantine, \
        policy, domains, reports, reputation, statistics. Authenticate with a session (POST /api/v1/login; \
        then send the X-CSRF-Token header it returns on every change) or an API token (`Authorization: \
        Bearer ...`, made by `mailsift accounts token`)."),
    tags((name = "mailsift"))
)]
struct ApiDoc;

pub type ApiResult<T> = Result<Json<T>, ApiError>;

/// The API's routes and the OpenAPI document describing them.
pub fn router() -> (axum::Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(scan))
        .routes(routes!(log_search))
        .routes(routes!(log_get))
        .routes(routes!(quarantine_list))
        .routes(routes!(quarantine_get, quarantine_delete))
        .routes(routes!(quarantine_release))
        .routes(routes!(quarantine_approve))
        .routes(routes!(quarantine_bulk))
        .routes(routes!(rules_list, rule_add))
        .routes(routes!(rule_get, rule_replace, rule_remove))
        .routes(routes!(rule_move))
        .routes(routes!(rules_test))
        .routes(routes!(rule_fields))
        .routes(routes!(lists_list, list_add))
        .routes(routes!(list_remove))
        .routes(routes!(domains_list))
        .routes(routes!(domain_get, domain_put, domain_remove))
        .routes(routes!(asf_options, asf_set))
        .routes(routes!(symbols))
        // DKIM (issue 21): add the routes of crate::dkim here.
        .routes(routes!(crate::dkim::dkim_keys))
        .routes(routes!(report_submit, reports_list))
        .routes(routes!(reports_summary))
        .routes(routes!(reputation_lookup))
        .routes(routes!(stats))
        .routes(routes!(accounts_list, account_add))
        .routes(routes!(account_remove))
        .routes(routes!(api_token))
        .routes(routes!(senders_list))
        .routes(routes!(sender_one))
        // DMARC reports (issue 21): add the routes of crate::dmarc here.
        .routes(routes!(crate::dmarc::received))
        .routes(routes!(crate::held::held_list))
        .routes(routes!(crate::held::held_release))
        .routes(routes!(crate::digest::send_now))
        .routes(routes!(crate::queue::queue_list))
        .routes(routes!(crate::queue::queue_retry))
        .routes(routes!(crate::queue::queue_remove))
        .routes(routes!(crate::diagnosis::log_diagnosis))
        .routes(routes!(crate::diagnosis::quarantine_diagnosis))
        .routes(routes!(crate::diagnosis::diagnose_posted))
        .routes(routes!(crate::diagnosis::apply))
        .split_for_parts()
}

// ---------------------------------------------------------------------------------------------------------
// Sessions

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    pub name: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct LoginAnswer {
    #[schema(value_type = Object)]
    pub principal: Principal,
    /// Send it as `X-CSRF-Token` with every request that changes something.
    pub csrf: String,
}

/// Checks a login; on success returns the principal. Rate-limited per client address and account name.
pub async fn check_login(
    web: &AppState,
    peer: std::net::IpAddr,
    name: &str,
    password: &str,
) -> Result<Principal, ApiError> {
    // The counts are in the gateway database (shared by every node): asked off the async threads.
    let (w, n) = (web.clone(), name.to_string());
    match blocking(move || Ok(w.limiter.begin(peer, &n)?)).await? {
        auth::LoginGate::Refused(secs) => {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many failed logins from your address; try again in {secs} s"),
            )
            .retry_after(secs));
        }
        // The name is being guessed from elsewhere: slow this attempt down, but let it through.
        auth::LoginGate::Proceed(delay) if !delay.is_zero() => tokio::time::sleep(delay).await,
        auth::LoginGate::Proceed(_) => {}
    }
    let db = web.db.clone();
    let (name_, password_) = (name.trim().to_string(), password.to_string());
    let (known, account) = blocking(move || {
        let account = db.account_get(&name_)?;
        // The same Argon2 work whether or not the account exists.
        let hash = account.as_ref().map(|a| a.password_hash.clone()).unwrap_or_else(|| auth::decoy_hash().to_string());
        let ok = auth::verify_password(&password_, &hash);
        Ok((account.is_some(), account.filter(|a| ok && !a.disabled)))
    })
    .await?;
    match account {
        Some(a) => {
            let (w, n) = (web.clone(), name.to_string());
            blocking(move || Ok(w.limiter.succeeded(peer, &n)?)).await?;
            tracing::info!(account = %a.name, %peer, "console login");
            Ok(Principal::from_account(&a))
        }
        None if known => {
            // Only real accounts are counted by name: a spray of made-up names fills no table.
            let (w, n) = (web.clone(), name.to_string());
            blocking(move || Ok(w.limiter.failed(&n)?)).await?;
            tracing::warn!(account = %clip(name.trim(), 64), %peer, "failed console login");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password"))
        }
        None => {
            // A name that is no account is often a password typed into the wrong field: not logged.
            tracing::warn!(%peer, "failed console login for a name that is no account");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong name or password"))
        }
    }
}

#[utoipa::path(post, path = "/api/v1/login", request_body = LoginRequest,
    responses((status = 200, body = LoginAnswer, description = "Logged in; the session cookie is set"),
              (status = 401, description = "Wrong name or password"), (status = 429, description = "Too many failures")))]
async fn login(
    State(web): State<AppState>,
    Extension(Peer(peer)): Extension<Peer>,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let principal = check_login(&web, peer.ip(), &req.name, &req.password).await?;
    let (id, session) = web.sessions.create(principal.clone(), web.session_ttl())?;
    let cookie = auth::session_cookie(&id, web.session_ttl(), web.config.tls);
    Ok(([(header::SET_COOKIE, cookie)], Json(LoginAnswer { principal, csrf: session.csrf })).into_response())
}

#[utoipa::path(post, path = "/api/v1/logout", responses((status = 204)))]
async fn logout(State(web): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) =
        headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(|h| auth::cookie(h, auth::SESSION_COOKIE))
    {
        if let Err(e) = web.sessions.remove(id) {
            return ApiError::internal(e).into_response();
        }
    }
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, auth::clear_cookie(web.config.tls))]).into_response()
}

#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = Object), (status = 401)))]
async fn me(caller: Caller) -> Json<Principal> {
    Json(caller.principal)
}

// ---------------------------------------------------------------------------------------------------------
// Scan

#[utoipa::path(post, path = "/api/v1/scan", params(ScanParams),
    request_body(content = Vec<u8>, content_type = "message/rfc822", description = "The raw message"),
    responses((status = 200, body = ScanAnswer), (status = 400), (status = 401), (status = 403)))]
async fn scan(
    State(web): State<AppState>,
    caller: Caller,
    Query(params): Query<ScanParams>,
    body: Bytes,
) -> ApiResult<ScanAnswer> {
    caller.require_manager()?;
    if body.is_empty() {
        return Err(ApiError::bad_request("POST the raw message as the request body"));
    }
    Ok(Json(service::scan(&web.gateway, body.to_vec(), &params).await?))
}

// ---------------------------------------------------------------------------------------------------------
// Message log

#[derive(Deserialize, IntoParams, Default, Clone)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Substring of the envelope sender or From header.
    pub sender: Option<String>,
    /// Substring of a recipient.
    pub recipient: Option<String>,
    /// Substring of the subject.
    pub subject: Option<String>,
    /// Exact client address.
    pub client_ip: Option<String>,
    /// deliver, tag, quarantine, reject, refused, tempfail, failed.
    pub action: Option<String>,
    /// A symbol that fired.
    pub symbol: Option<String>,
    /// Unix seconds, or a period back from now such as `24h` or `7d`.
    pub since: Option<String>,
    pub until: Option<String>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(String::from)
}

impl LogParams {
    pub fn query(&self, principal: &Principal) -> Result<LogQuery, ApiError> {
        // An end user's scope would be "no domains", which the store reads as "every domain".
        if !principal.is_manager() {
            return Err(ApiError::forbidden("the message log is for administrators"));
        }
        let now = mailsift_engine::unix_now();
        Ok(LogQuery {
            sender: nonempty(&self.sender),
            recipient: nonempty(&self.recipient),
            subject: nonempty(&self.subject),
            client_ip: nonempty(&self.client_ip),
            action: nonempty(&self.action),
            symbol: nonempty(&self.symbol),
            since: nonempty(&self.since).map(|s| parse_when(&s, now)).transpose()?,
            until: nonempty(&self.until).map(|s| parse_when(&s, now)).transpose()?,
            reference_id: None,
            limit: self.limit.unwrap_or(50).clamp(1, 1000),
            offset: self.offset.unwrap_or(0),
            domains: principal.scope(),
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct LogPage {
    #[schema(value_type = Vec<Object>)]
    pub entries: Vec<mailsift_store::LogEntry>,
    /// How long the search took in the database, in milliseconds.
    pub elapsed_ms: f64,
}

#[utoipa::path(get, path = "/api/v1/log", params(LogParams), responses((status = 200, body = LogPage), (status = 401), (status = 403)))]
async fn log_search(State(web): State<AppState>, caller: Caller, Query(p): Query<LogParams>) -> ApiResult<LogPage> {
    caller.require_manager()?;
    let q = p.query(&caller.principal)?;
    let db = web.db.clone();
    let started = std::time::Instant::now();
    let entries = blocking(move || Ok(db.log_search(&q)?)).await?;
    Ok(Json(LogPage { entries, elapsed_ms: started.elapsed().as_secs_f64() * 1000.0 }))
}

#[utoipa::path(get, path = "/api/v1/log/{reference}", params(("reference" = String, Path, description = "The message's reference id")),
    responses((status = 200, body = LogDetail), (status = 404)))]
async fn log_get(State(web): State<AppState>, caller: Caller, Path(reference): Path<String>) -> ApiResult<LogDetail> {
    caller.require_manager()?;
    Ok(Json(service::log_detail(&web.gateway, &caller.principal, &reference).await?))
}

// ---------------------------------------------------------------------------------------------------------
// Quarantine

#[derive(Deserialize, IntoParams, Default, Clone)]
#[into_params(parameter_in = Query)]
pub struct QuarantineParams {
    pub recipient: Option<String>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Also list released items.
    #[serde(default)]
    pub all: bool,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

impl QuarantineParams {
    pub fn query(&self, p: &Principal) -> Result<QuarantineQuery, ApiError> {
        let now = mailsift_engine::unix_now();
        Ok(QuarantineQuery {
            recipient: nonempty(&self.recipient),
            sender: nonempty(&self.sender),
            subject: nonempty(&self.subject),
            since: nonempty(&self.since).map(|s| parse_when(&s, now)).transpose()?,
            until: nonempty(&self.until).map(|s| parse_when(&s, now)).transpose()?,
            include_released: self.all,
            limit: self.limit.unwrap_or(50).clamp(1, 1000),
            offset: self.offset.unwrap_or(0),
            domains: if p.role == Role::User { Vec::new() } else { p.scope() },
            recipient_exact: (p.role == Role::User).then(|| p.name.clone()),
            ..Default::default()
        })
    }
}

#[utoipa::path(get, path = "/api/v1/quarantine", params(QuarantineParams), responses((status = 200, body = Vec<Object>), (status = 401)))]
async fn quarantine_list(
    State(web): State<AppState>,
    caller: Caller,
    Query(p): Query<QuarantineParams>,
) -> ApiResult<Vec<mailsift_store::QuarantineItem>> {
    let q = p.query(&caller.principal)?;
    let db = web.db.clone();
    Ok(Json(blocking(move || Ok(db.quarantine_list(&q)?)).await?))
}

#[derive(Serialize, ToSchema)]
pub struct QuarantineDetail {
    #[schema(value_type = Object)]
    pub item: mailsift_store::QuarantineItem,
    /// The message's headers, decoded.
    pub headers: Vec<(String, String)>,
    /// The text of the message, for reading: plain text (or the HTML rendered to text), links shown but
    /// not clickable, nothing remote loaded.
    pub text: String,
}

#[utoipa::path(get, path = "/api/v1/quarantine/{id}", params(("id" = i64, Path)), responses((status = 200, body = QuarantineDetail), (status = 404)))]
async fn quarantine_get(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<QuarantineDetail> {
    let (item, raw) = quarantine_item(&web.gateway, &caller.principal, id).await?;
    let (headers, text) = service::preview(&web.gateway, &raw);
    Ok(Json(QuarantineDetail { item, headers, text }))
}

#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release", params(("id" = i64, Path)),
    responses((status = 200, body = ActionAnswer), (status = 404), (status = 409, description = "Already released"), (status = 502, description = "The next hop refused or is down")))]
async fn quarantine_release(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<ActionAnswer> {
    let p = &caller.principal;
    let result = service::act_on(&web.gateway, p, id, service::QuarantineAction::Release, &p.name).await?;
    Ok(Json(ActionAnswer { id, result }))
}

#[utoipa::path(post, path = "/api/v1/quarantine/{id}/approve", params(("id" = i64, Path)),
    responses((status = 200, body = ActionAnswer), (status = 404), (status = 409)))]
async fn quarantine_approve(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<ActionAnswer> {
    let p = &caller.principal;
    let result = service::act_on(&web.gateway, p, id, service::QuarantineAction::Approve, &p.name).await?;
    Ok(Json(ActionAnswer { id, result }))
}

#[utoipa::path(delete, path = "/api/v1/quarantine/{id}", params(("id" = i64, Path)), responses((status = 200, body = ActionAnswer), (status = 404)))]
async fn quarantine_delete(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<ActionAnswer> {
    let p = &caller.principal;
    let result = service::act_on(&web.gateway, p, id, service::QuarantineAction::Delete, &p.name).await?;
    Ok(Json(ActionAnswer { id, result }))
}

#[derive(Deserialize, ToSchema)]
pub struct BulkRequest {
    pub ids: Vec<i64>,
    /// release, approve, delete or block.
    pub action: String,
}

#[derive(Serialize, ToSchema)]
pub struct BulkAnswer {
    pub done: Vec<ActionAnswer>,
    pub failed: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/quarantine/bulk", request_body = BulkRequest, responses((status = 200, body = BulkAnswer), (status = 400)))]
async fn quarantine_bulk(
    State(web): State<AppState>,
    caller: Caller,
    Json(req): Json<BulkRequest>,
) -> ApiResult<BulkAnswer> {
    let results = service::bulk(&web.gateway, &caller.principal, &req.ids, &req.action).await?;
    let mut answer = BulkAnswer { done: Vec::new(), failed: Vec::new() };
    for r in results {
        match r {
            Ok(a) => answer.done.push(a),
            Err(e) => answer.failed.push(e),
        }
    }
    Ok(Json(answer))
}

// ---------------------------------------------------------------------------------------------------------
// Policy: rules and lists

pub fn policy_error(e: mailsift_store::PolicyStoreError) -> ApiError {
    ApiError::from(e)
}

/// A stored rule as the API shows it: with what a forger could do with it.
#[derive(Serialize)]
pub struct RuleView {
    #[serde(flatten)]
    pub stored: mailsift_store::StoredRule,
    /// Why a forger can get mail through this rule, in plain words (empty when it cannot).
    pub warnings: Vec<String>,
    /// The numbers (from 1) of its conditions on what the sender writes (headers, From, MAIL FROM, HELO,
    /// subject, body, attachments): a forger can make those hold.
    pub forgeable_conditions: Vec<usize>,
}

impl RuleView {
    pub fn of(stored: mailsift_store::StoredRule) -> RuleView {
        let warnings = rule_warnings(&stored.rule);
        let forgeable_conditions = forgeable_conditions(&stored.rule);
        RuleView { stored, warnings, forgeable_conditions }
    }
}

/// The rule's forgery warning, as a list (empty, or one text) for JSON answers.
pub fn rule_warnings(rule: &FilterRule) -> Vec<String> {
    rule.forgery_warning().into_iter().collect()
}

/// The numbers (from 1) of the rule's conditions on fields the sender writes.
pub fn forgeable_conditions(rule: &FilterRule) -> Vec<usize> {
    rule.conditions.iter().enumerate().filter(|(_, c)| c.field.forgeable()).map(|(i, _)| i + 1).collect()
}

/// What a rule field looks at, in a few words, for the field list and the console's rule form.
pub fn field_label(f: mailsift_engine::policy::Field) -> &'static str {
    use mailsift_engine::policy::Field as F;
    match f {
        F::EnvelopeFrom => "envelope sender (MAIL FROM) address",
        F::EnvelopeFromDomain => "envelope sender (MAIL FROM) domain",
        F::From => "From: address",
        F::FromDomain => "From: domain",
        F::Recipient => "recipient address (RCPT TO)",
        F::RecipientDomain => "recipient domain",
        F::Header => "a header, by name",
        F::AnyHeader => "any header (\"Name: value\")",
        F::Subject => "subject",
        F::Body => "body text",
        F::ClientIp => "connecting server's IP address",
        F::ClientPtr => "connecting server's verified name (forward-confirmed reverse DNS)",
        F::Helo => "HELO/EHLO name",
        F::TrustedHop => "a Received line written by one of our trusted relays",
        F::Spf => "SPF result",
        F::Dkim => "DKIM result",
        F::Dmarc => "DMARC result",
        F::AuthDomain => "an authenticated domain (DKIM d= that verified, or MAIL FROM domain with SPF pass)",
        F::DkimDomain => "DKIM signing domain (d=) of a signature that verified",
        F::DkimHeadersDomain => "DKIM signing domain whose signed headers verify (body changed after signing allowed)",
        F::ArcSealer => "ARC sealer of a chain that validated",
        F::Size => "message size",
        F::AttachmentName => "attachment file name",
        F::AttachmentType => "attachment real type",
        F::Score => "spam score so far",
    }
}

/// One field a rule condition can look at.
#[derive(Serialize, ToSchema)]
pub struct RuleField {
    /// The name to use in a condition's `field`.
    pub name: &'static str,
    /// What it looks at.
    pub description: &'static str,
    /// True when the sender writes the value: a condition on it alone can be satisfied by a forger.
    pub forgeable: bool,
}

#[utoipa::path(get, path = "/api/v1/rule-fields", responses((status = 200, body = Vec<RuleField>)))]
async fn rule_fields(caller: Caller) -> ApiResult<Vec<RuleField>> {
    caller.require_manager()?;
    Ok(Json(
        mailsift_engine::policy::Field::ALL
            .iter()
            .map(|f| RuleField { name: f.as_str(), description: field_label(*f), forgeable: f.forgeable() })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/rules", responses((status = 200, body = Vec<Object>, description = "The stored rules in order, each with `warnings` (how a forger gets mail through it) and `forgeable_conditions`"), (status = 403)))]
async fn rules_list(State(web): State<AppState>, caller: Caller) -> ApiResult<Vec<RuleView>> {
    caller.require_admin()?;
    let db = web.db.clone();
    let rules = blocking(move || db.rules().map_err(policy_error)).await?;
    Ok(Json(rules.into_iter().map(RuleView::of).collect()))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleAddParams {
    /// Position (from 0) to insert at; the end when absent.
    pub at: Option<usize>,
}

#[utoipa::path(post, path = "/api/v1/rules", params(RuleAddParams), request_body = Object,
    responses((status = 201, body = Object, description = "Added: its `position`, and `warnings` when a forger can get mail through it (it is stored all the same)"), (status = 400, description = "The rule is invalid: the field and reason")))]
async fn rule_add(
    State(web): State<AppState>,
    caller: Caller,
    Query(p): Query<RuleAddParams>,
    Json(rule): Json<serde_json::Value>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require_admin()?;
    let rule: FilterRule = serde_json::from_value(rule).map_err(|e| ApiError::bad_request(format!("rule: {e}")))?;
    let db = web.db.clone();
    let warnings = rule_warnings(&rule);
    let forgeable = forgeable_conditions(&rule);
    let pos = blocking(move || db.rule_add(rule, p.at).map_err(policy_error)).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "position": pos, "warnings": warnings, "forgeable_conditions": forgeable })),
    ))
}

#[utoipa::path(get, path = "/api/v1/rules/{name}", params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404)))]
async fn rule_get(State(web): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<RuleView> {
    caller.require_admin()?;
    let db = web.db.clone();
    let n = name.clone();
    blocking(move || db.rule_get(&n).map_err(policy_error))
        .await?
        .map(|r| Json(RuleView::of(r)))
        .ok_or_else(|| ApiError::not_found(format!("no rule named {name:?}")))
}

#[utoipa::path(put, path = "/api/v1/rules/{name}", params(("name" = String, Path)), request_body = Object, responses((status = 200, body = Object), (status = 400), (status = 404)))]
async fn rule_replace(
    State(web): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(rule): Json<serde_json::Value>,
) -> ApiResult<serde_json::Value> {
    caller.require_admin()?;
    let rule: FilterRule = serde_json::from_value(rule).map_err(|e| ApiError::bad_request(format!("rule: {e}")))?;
    let db = web.db.clone();
    let warnings = rule_warnings(&rule);
    let forgeable = forgeable_conditions(&rule);
    blocking(move || db.rule_replace(&name, rule).map_err(policy_error)).await?;
    Ok(Json(serde_json::json!({ "result": "replaced", "warnings": warnings, "forgeable_conditions": forgeable })))
}

#[utoipa::path(delete, path = "/api/v1/rules/{name}", params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404)))]
async fn rule_remove(
    State(web): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<serde_json::Value> {
    caller.require_admin()?;
    let db = web.db.clone();
    blocking(move || db.rule_remove(&name).map_err(policy_error)).await?;
    Ok(Json(serde_json::json!({ "result": "removed" })))
}

#[derive(Deserialize, ToSchema)]
pub struct MoveRequest {
    /// The new position, from 0.
    pub to: usize,
}

#[utoipa::path(post, path = "/api/v1/rules/{name}/move", params(("name" = String, Path)), request_body = MoveRequest, responses((status = 200, body = Object), (status = 404)))]
async fn rule_move(
    State(web): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(m): Json<MoveRequest>,
) -> ApiResult<serde_json::Value> {
    caller.require_admin()?;
    let db = web.db.clone();
    blocking(move || db.rule_move(&name, m.to).map_err(policy_error)).await?;
    Ok(Json(serde_json::json!({ "result": "moved" })))
}

#[utoipa::path(post, path = "/api/v1/rules/test", params(ScanParams), request_body(content = Vec<u8>, content_type = "message/rfc822"),
    responses((status = 200, body = RulesTestAnswer), (status = 400)))]
async fn rules_test(
    State(web): State<AppState>,
    caller: Caller,
    Query(params): Query<ScanParams>,
    body: Bytes,
) -> ApiResult<RulesTestAnswer> {
    caller.require_manager()?;
    if body.is_empty() {
        return Err(ApiError::bad_request("POST the raw message as the request body"));
    }
    Ok(Json(service::test_rules(&web.gateway, body.to_vec(), &params).await?))
}

#[utoipa::path(get, path = "/api/v1/lists", responses((status = 200, body = Vec<Object>)))]
async fn lists_list(State(web): State<AppState>, caller: Caller) -> ApiResult<Vec<mailsift_store::StoredEntry>> {
    let db = web.db.clone();
    let entries = blocking(move || db.list_entries().map_err(policy_error)).await?;
    Ok(Json(entries.into_iter().filter(|e| may_manage_entry(&caller.principal, e.entry.recipient())).collect()))
}

#[derive(Deserialize, ToSchema)]
pub struct ListRequest {
    /// `allow` or `block`.
    pub list: String,
    /// The entry: `sender` (address, `@domain` or `*@domain`), optional `recipient` (an address: that user's
    /// list; a domain: that domain's), and the list's other keys (see `mailsift lists add --help`).
    #[schema(value_type = Object)]
    pub entry: serde_json::Value,
}

pub fn parse_list_entry(req: ListRequest) -> Result<ListEntry, ApiError> {
    let bad = |e: serde_json::Error| ApiError::bad_request(format!("entry: {e}"));
    match req.list.as_str() {
        "allow" => Ok(ListEntry::Allow(serde_json::from_value::<AllowEntry>(req.entry).map_err(bad)?)),
        "block" => Ok(ListEntry::Block(serde_json::from_value::<BlockEntry>(req.entry).map_err(bad)?)),
        other => Err(ApiError::bad_request(format!("list: {other:?} is neither allow nor block"))),
    }
}

#[utoipa::path(post, path = "/api/v1/lists", request_body = ListRequest, responses((status = 201, body = Object), (status = 400), (status = 403)))]
async fn list_add(
    State(web): State<AppState>,
    caller: Caller,
    Json(req): Json<ListRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let entry = parse_list_entry(req)?;
    if !may_manage_entry(&caller.principal, entry.recipient()) {
        return Err(ApiError::forbidden("you may only add entries for your own domains or address (give `recipient`)"));
    }
    let db = web.db.clone();
    let id = blocking(move || db.list_add(entry).map_err(policy_error)).await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

#[utoipa::path(delete, path = "/api/v1/lists/{id}", params(("id" = i64, Path)), responses((status = 200, body = Object), (status = 404)))]
async fn list_remove(State(web): State<AppState>, caller: Caller, Path(id): Path<i64>) -> ApiResult<serde_json::Value> {
    let db = web.db.clone();
    let p = caller.principal.clone();
    blocking(move || {
        let entry = db.list_entries().map_err(policy_error)?.into_iter().find(|e| e.id == id);
        match entry {
            Some(e) if may_manage_entry(&p, e.entry.recipient()) => db.list_remove(id).map_err(policy_error),
            _ => Err(ApiError::not_found(format!("no list entry {id} that you may change"))),
        }
    })
    .await?;
    Ok(Json(serde_json::json!({ "result": "removed" })))
}

// ---------------------------------------------------------------------------------------------------------
// Domains, ASF options, symbols

#[derive(Serialize, ToSchema)]
pub struct DomainView {
    #[schema(value_type = Object)]
    pub settings: DomainConfig,
    /// `configuration` (the TOML file; read-only here) or `stored` (the database).
    pub source: String,
}

#[utoipa::path(get, path = "/api/v1/domains", responses((status = 200, body = Vec<DomainView>)))]
async fn domains_list(State(web): State<AppState>, caller: Caller) -> ApiResult<Vec<DomainView>> {
    caller.require_manager()?;
    let w = web.clone();
    let all = blocking(move || Ok(service::all_domains(&w.gateway)?)).await?;
    Ok(Json(
        all.into_iter()
            .filter(|(d, _)| caller.principal.manages_domain(&d.name))
            .map(|(settings, source)| DomainView { settings, source: source.into() })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/domains/{name}", params(("name" = String, Path)), responses((status = 200, body = DomainView), (status = 404)))]
async fn domain_get(State(web): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<DomainView> {
    caller.require_manager()?;
    if !caller.principal.manages_domain(&name) {
        return Err(ApiError::not_found(format!("no domain {name:?} that you manage")));
    }
    let w = web.clone();
    let all = blocking(move || Ok(service::all_domains(&w.gateway)?)).await?;
    all.into_iter()
        .find(|(d, _)| d.name.eq_ignore_ascii_case(&name))
        .map(|(settings, source)| Json(DomainView { settings, source: source.into() }))
        .ok_or_else(|| ApiError::not_found(format!("no domain {name:?}")))
}

#[utoipa::path(put, path = "/api/v1/domains/{name}", params(("name" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 400, description = "Invalid settings: the field and reason"), (status = 403)))]
async fn domain_put(
    State(web): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Json(mut v): Json<serde_json::Value>,
) -> ApiResult<serde_json::Value> {
    caller.require_manager()?;
    if let Some(o) = v.as_object_mut() {
        o.insert("name".into(), serde_json::Value::String(name.clone()));
    }
    let d: DomainConfig = serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("domain: {e}")))?;
    if !caller.principal.is_admin() && !caller.principal.manages_domain(&name) {
        return Err(ApiError::forbidden(format!("you do not manage {name}")));
    }
    service::store_domain(&web.gateway, &caller.principal, d).await?;
    Ok(Json(serde_json::json!({ "result": "stored; the gateway applies it within seconds" })))
}

#[utoipa::path(delete, path = "/api/v1/domains/{name}", params(("name" = String, Path)), responses((status = 200, body = Object), (status = 403), (status = 404)))]
async fn domain_remove(
    State(web): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<serde_json::Value> {
    caller.require_admin()?;
    let db = web.db.clone();
    let n = name.clone();
    if !blocking(move || Ok(db.domain_remove(&n)?)).await? {
        return Err(ApiError::not_found(format!("no stored domain {name:?}")));
    }
    Ok(Json(serde_json::json!({ "result": "removed" })))
}

#[utoipa::path(get, path = "/api/v1/asf", responses((status = 200, body = Vec<AsfOption>)))]
async fn asf_options(State(web): State<AppState>, caller: Caller) -> ApiResult<Vec<AsfOption>> {
    caller.require_manager()?;
    let g = web.gateway.clone();
    Ok(Json(blocking(move || Ok(service::asf_list(&g)?)).await?))
}

/// Organisation-wide ASF modes to store over the configuration file's: `{"changes": {"option": "on" | "off" |
/// "test" | "default"}}`, all or nothing.
#[derive(Deserialize, ToSchema)]
struct AsfChanges {
    changes: BTreeMap<String, String>,
}

#[utoipa::path(post, path = "/api/v1/asf", request_body = AsfChanges, responses((status = 200, body = Vec<AsfOption>), (status = 400), (status = 403)))]
async fn asf_set(
    State(web): State<AppState>,
    caller: Caller,
    Json(body): Json<AsfChanges>,
) -> ApiResult<Vec<AsfOption>> {
    caller.require_admin()?;
    service::set_asf(&web.gateway, &caller.principal, body.changes.into_iter().collect()).await?;
    let g = web.gateway.clone();
    Ok(Json(blocking(move || Ok(service::asf_list(&g)?)).await?))
}

#[utoipa::path(get, path = "/api/v1/symbols", responses((status = 200, body = Vec<Object>)))]
async fn symbols(State(web): State<AppState>, caller: Caller) -> ApiResult<serde_json::Value> {
    caller.require_manager()?;
    let state = web.gateway.state();
    Ok(Json(serde_json::to_value(state.engine.registry().iter().collect::<Vec<_>>()).map_err(ApiError::internal)?))
}

// ---------------------------------------------------------------------------------------------------------
// Reports, reputation, statistics

#[derive(Deserialize, ToSchema)]
pub struct ReportRequest {
    /// `false_positive` (good mail flagged: learned as ham) or `false_negative` (spam let through).
    pub kind: String,
    /// A quarantined copy to report (its stored message is learned).
    pub quarantine_id: Option<i64>,
    /// Or the raw message itself.
    pub message: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/reports", request_body = ReportRequest, responses((status = 200, body = ReportAnswer), (status = 400), (status = 404)))]
async fn report_submit(
    State(web): State<AppState>,
    caller: Caller,
    Json(req): Json<ReportRequest>,
) -> ApiResult<ReportAnswer> {
    let side = parse_side(&req.kind)?;
    let (raw, source) = match (req.quarantine_id, req.message) {
        (Some(id), None) => {
            (quarantine_item(&web.gateway, &caller.principal, id).await?.1, format!("quarantine item {id}"))
        }
        (None, Some(m)) if !m.trim().is_empty() => {
            caller.require_manager()?;
            (m.into_bytes(), "message posted to the API".to_string())
        }
        _ => return Err(ApiError::bad_request("give either quarantine_id or message")),
    };
    Ok(Json(service::report(&web.gateway, &caller.principal, raw, side, source).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceParams {
    /// Unix seconds or a period such as `30d` (default 30d).
    pub since: Option<String>,
}

/// A time range as the console's pages take it: `range` = 24h, 7d, 30d or 90d, or whole UTC days `from`..`to`
/// (YYYY-MM-DD, at most 366 days).
fn range_of(p: crate::range::RangeParams, default: &str) -> Result<crate::range::TimeRange, ApiError> {
    p.resolve(mailsift_engine::unix_now(), default).map_err(ApiError::bad_request)
}

/// A list over a time range as the API answers it: the range's bounds and label, then `fields`.
fn over_range(range: &crate::range::TimeRange, fields: serde_json::Value) -> Json<serde_json::Value> {
    let mut out = serde_json::json!({ "since": range.since, "until": range.until, "label": range.label });
    if let (Some(o), serde_json::Value::Object(f)) = (out.as_object_mut(), fields) {
        o.extend(f);
    }
    Json(out)
}

#[derive(Deserialize, Default)]
struct SenderFilter {
    q: Option<String>,
}

/// The sender domains of a time range (managers, scoped like the log): messages, what was done, how many
/// verified. Read from the newest 5,000 log rows of the range; `cut` says when the read stopped there.
#[utoipa::path(get, path = "/api/v1/senders", params(
    ("range" = Option<String>, Query, description = "24h, 7d (default), 30d or 90d"),
    ("from" = Option<String>, Query, description = "first UTC day, YYYY-MM-DD"),
    ("to" = Option<String>, Query, description = "last UTC day, YYYY-MM-DD"),
    ("q" = Option<String>, Query, description = "only domains containing this")),
    responses((status = 200, body = Object), (status = 400), (status = 403)))]
async fn senders_list(
    State(web): State<AppState>,
    caller: Caller,
    Query(rp): Query<crate::range::RangeParams>,
    Query(f): Query<SenderFilter>,
) -> ApiResult<serde_json::Value> {
    caller.require_manager()?;
    let range = range_of(rp, "7d")?;
    let q = f.q.filter(|q| !q.trim().is_empty()).map(|q| q.trim().to_string());
    let (rows, cut) = crate::insights::senders(&web.gateway, &caller.principal, &range, q).await?;
    Ok(over_range(&range, serde_json::json!({ "cut": cut, "senders": rows })))
}

/// One sender domain over a range (managers, scoped like the log): its counts, newest messages with their
/// authentication in words, list entries naming it, users' reports about it (administrators).
#[utoipa::path(get, path = "/api/v1/senders/{domain}", params(("domain" = String, Path),
    ("range" = Option<String>, Query, description = "24h, 7d, 30d (default) or 90d"),
    ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 400), (status = 403)))]
async fn sender_one(
    State(web): State<AppState>,
    caller: Caller,
    Path(domain): Path<String>,
    Query(rp): Query<crate::range::RangeParams>,
) -> ApiResult<serde_json::Value> {
    caller.require_manager()?;
    let range = range_of(rp, "30d")?;
    let view = crate::insights::sender(&web.gateway, &caller.principal, &domain, &range).await?;
    Ok(Json(serde_json::to_value(view).map_err(ApiError::internal)?))
}

/// Users' false-positive and false-negative reports of a range, each with who, which side, the message and
/// what came of it (managers, scoped to their domains).
#[utoipa::path(get, path = "/api/v1/reports", params(
    ("range" = Option<String>, Query, description = "24h, 7d, 30d (default) or 90d"),
    ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, body = Object), (status = 400), (status = 403)))]
async fn reports_list(
    State(web): State<AppState>,
    caller: Caller,
    Query(rp): Query<crate::range::RangeParams>,
) -> ApiResult<serde_json::Value> {
    caller.require_manager()?;
    let range = range_of(rp, "30d")?;
    let rows = crate::insights::reports(&web.gateway, &caller.principal, &range).await?;
    Ok(over_range(&range, serde_json::json!({ "reports": rows })))
}

#[utoipa::path(get, path = "/api/v1/reports/summary", params(SinceParams), responses((status = 200, body = Object)))]
async fn reports_summary(
    State(web): State<AppState>,
    caller: Caller,
    Query(p): Query<SinceParams>,
) -> ApiResult<serde_json::Value> {
    caller.require_admin()?;
    let since = parse_when(p.since.as_deref().unwrap_or("30d"), mailsift_engine::unix_now())?;
    let dir = web.data_dir.clone();
    let db = web.gateway.db.clone();
    blocking(move || {
        use mailsift_store::TokenStore;
        let Some(store) = mailsift_store::ClassifierStore::open_existing(&dir, &db)? else {
            return Ok(Json(serde_json::json!({ "per_day": [], "by_channel": {} })));
        };
        let per_day = store.submissions_per_day(since)?;
        let mut by_channel: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_domain: BTreeMap<String, u64> = BTreeMap::new();
        for s in store.submissions()?.into_iter().filter(|s| s.at >= since) {
            *by_channel.entry(format!("{} {}", s.channel, s.correct_side.as_str())).or_default() += 1;
            *by_domain.entry(s.sender_domain.unwrap_or_default()).or_default() += 1;
        }
        let per_day: Vec<serde_json::Value> = per_day
            .into_iter()
            .map(|(day, side, n)| serde_json::json!({ "day": day, "side": side.as_str(), "count": n }))
            .collect();
        Ok(Json(serde_json::json!({ "per_day": per_day, "by_channel": by_channel, "by_sender_domain": by_domain })))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/reputation/{key}", params(("key" = String, Path, description = "An IP address, a domain or an address")),
    responses((status = 200, body = Object), (status = 409, description = "Reputation is disabled")))]
async fn reputation_lookup(
    State(web): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<serde_json::Value> {
    caller.require_manager()?;
    let state = web.gateway.state();
    blocking(move || {
        let rep = state.reputation().ok_or_else(|| ApiError::new(StatusCode::CONFLICT, "reputation is disabled"))?;
        let entry = rep.show(&key, mailsift_engine::unix_now()).map_err(ApiError::internal)?;
        Ok(Json(serde_json::json!({ "key": key, "reputation": entry })))
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/stats", params(SinceParams), responses((status = 200, body = Stats)))]
async fn stats(State(web): State<AppState>, caller: Caller, Query(p): Query<SinceParams>) -> ApiResult<Stats> {
    caller.require_manager()?;
    let since = parse_when(p.since.as_deref().unwrap_or("24h"), mailsift_engine::unix_now())?;
    Ok(Json(service::gather_stats(&web.gateway, &caller.principal, since).await?))
}

// ---------------------------------------------------------------------------------------------------------
// Accounts

#[utoipa::path(get, path = "/api/v1/accounts", responses((status = 200, body = Vec<Object>), (status = 403)))]
async fn accounts_list(State(web): State<AppState>, caller: Caller) -> ApiResult<Vec<mailsift_store::Account>> {
    caller.require_admin()?;
    let db = web.db.clone();
    Ok(Json(blocking(move || Ok(db.accounts()?)).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct AccountRequest {
    pub name: String,
    /// admin, domain_admin or user.
    pub role: String,
    #[serde(default)]
    pub domains: Vec<String>,
    /// At least 10 characters.
    pub password: String,
}

#[utoipa::path(post, path = "/api/v1/accounts", request_body = AccountRequest, responses((status = 201, body = Object), (status = 400), (status = 403)))]
async fn account_add(
    State(web): State<AppState>,
    caller: Caller,
    Json(req): Json<AccountRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    caller.require_admin()?;
    let role = Role::parse(&req.role)
        .ok_or_else(|| ApiError::bad_request(format!("role: {:?} is not admin, domain_admin or user", req.role)))?;
    if req.password.chars().count() < 10 {
        return Err(ApiError::bad_request("password: at least 10 characters"));
    }
    if role == Role::DomainAdmin && req.domains.is_empty() {
        return Err(ApiError::bad_request("domains: a domain administrator needs at least one domain"));
    }
    let hash = auth::hash_password(&req.password).map_err(ApiError::internal)?;
    let db = web.db.clone();
    let id = blocking(move || {
        db.account_add(&req.name, role, &req.domains, &hash, mailsift_engine::unix_now()).map_err(|e| match e {
            // The store's own texts start with the database's path, which callers need not see.
            mailsift_store::StoreError::Exists { what, .. } => {
                ApiError::new(StatusCode::CONFLICT, format!("{what} already exists"))
            }
            mailsift_store::StoreError::Invalid { reason, .. } => ApiError::bad_request(reason),
            e => ApiError::internal(e),
        })
    })
    .await?;
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "id": id }))))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{name}", params(("name" = String, Path)), responses((status = 200, body = Object), (status = 404)))]
async fn account_remove(
    State(web): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<serde_json::Value> {
    caller.require_admin()?;
    let db = web.db.clone();
    let n = name.clone();
    if !blocking(move || Ok(db.account_remove(&n)?)).await? {
        return Err(ApiError::not_found(format!("no account {name:?}")));
    }
    web.sessions.remove_account(&name)?;
    Ok(Json(serde_json::json!({ "result": "removed" })))
}

#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Days the token works (1 to 365).
    pub days: u64,
}

#[utoipa::path(post, path = "/api/v1/token", request_body = TokenRequest, responses((status = 200, body = Object), (status = 400)))]
async fn api_token(
    State(web): State<AppState>,
    caller: Caller,
    Json(req): Json<TokenRequest>,
) -> ApiResult<serde_json::Value> {
    let id = caller.principal.account_id.ok_or_else(|| ApiError::forbidden("API tokens are for accounts"))?;
    if !(1..=365).contains(&req.days) {
        return Err(ApiError::bad_request("days: 1 to 365"));
    }
    let expires = mailsift_engine::unix_now() + req.days as i64 * 86_400;
    let token = web.signer.sign(&crate::tokens::Claims {
        purpose: crate::tokens::Purpose::Api,
        id,
        subject: caller.principal.name.clone(),
        expires,
    });
    Ok(Json(serde_json::json!({ "token": token, "expires": expires })))
}
