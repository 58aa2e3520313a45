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
use mailsift_engine::{Direction, Envelope};
use mailsift_smtp::config::DomainConfig;
use mailsift_store::{ListEntry, LogQuery, PolicyStore, QuarantineQuery, Role};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{self, domain_of, Principal};
use crate::{ApiError, AppState, Caller, Peer};

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
        .routes(routes!(asf_options))
        .routes(routes!(symbols))
        .routes(routes!(report_submit))
        .routes(routes!(reports_summary))
        .routes(routes!(reputation_lookup))
        .routes(routes!(stats))
        .routes(routes!(accounts_list, account_add))
        .routes(routes!(account_remove))
        .routes(routes!(api_token))
        .routes(routes!(crate::digest::send_now))
        .routes(routes!(crate::diagnosis::log_diagnosis))
        .routes(routes!(crate::diagnosis::quarantine_diagnosis))
        .routes(routes!(crate::diagnosis::diagnose_posted))
        .routes(routes!(crate::diagnosis::apply))
        .split_for_parts()
}

/// Runs a blocking store call off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
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
    match web.limiter.begin(peer, name) {
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
            web.limiter.succeeded(peer, name);
            tracing::info!(account = %a.name, %peer, "console login");
            Ok(Principal::from_account(&a))
        }
        None if known => {
            // Only real accounts are counted by name: a spray of made-up names fills no table.
            web.limiter.failed(name);
            tracing::warn!(account = %crate::console::clip(name.trim(), 64), %peer, "failed console login");
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
    let (id, session) = web.sessions.create(principal.clone(), web.session_ttl());
    let cookie = auth::session_cookie(&id, web.session_ttl(), web.config.tls);
    Ok(([(header::SET_COOKIE, cookie)], Json(LoginAnswer { principal, csrf: session.csrf })).into_response())
}

#[utoipa::path(post, path = "/api/v1/logout", responses((status = 204)))]
async fn logout(State(web): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) =
        headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(|h| auth::cookie(h, auth::SESSION_COOKIE))
    {
        web.sessions.remove(id);
    }
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, auth::clear_cookie(web.config.tls))]).into_response()
}

#[utoipa::path(get, path = "/api/v1/me", responses((status = 200, body = Object), (status = 401)))]
async fn me(caller: Caller) -> Json<Principal> {
    Json(caller.principal)
}

// ---------------------------------------------------------------------------------------------------------
// Scan

#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ScanParams {
    /// The connecting client's address.
    pub ip: Option<String>,
    /// Its HELO/EHLO name.
    pub helo: Option<String>,
    /// The envelope sender.
    pub mail_from: Option<String>,
    /// Envelope recipients, comma-separated.
    pub rcpt: Option<String>,
    /// `inbound` (default) or `outbound`.
    pub direction: Option<String>,
    /// Take missing envelope fields from the message's own Received/Return-Path/Delivered-To headers.
    #[serde(default)]
    pub from_trace: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ScanAnswer {
    /// The verdict: score, thresholds, SCL, action, every symbol with its score and detail.
    #[schema(value_type = Object)]
    pub verdict: mailsift_engine::Verdict,
    /// The headers the gateway would add.
    pub headers: Vec<(String, String)>,
    /// The verdict explained, line by line: each symbol's description and remedy.
    pub explanation: String,
}

impl ScanParams {
    pub fn envelope(&self) -> Result<Envelope, ApiError> {
        let client_ip = match self.ip.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => {
                Some(s.trim().parse().map_err(|_| ApiError::bad_request(format!("ip: {s:?} is not an IP address")))?)
            }
            None => None,
        };
        let direction = match self.direction.as_deref() {
            None | Some("") | Some("inbound") => Direction::Inbound,
            Some("outbound") => Direction::Outbound,
            Some(d) => return Err(ApiError::bad_request(format!("direction: {d:?} is neither inbound nor outbound"))),
        };
        Ok(Envelope {
            client_ip,
            helo: self.helo.clone().filter(|s| !s.is_empty()),
            mail_from: self.mail_from.clone().filter(|s| !s.is_empty()),
            rcpt_to: self
                .rcpt
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            direction,
            ..Envelope::default()
        })
    }
}

/// The evidence the gateway would gather for this message: sender facts when DNS is on and the client is
/// known (inbound), and local reputation. Call on a blocking thread (it waits for DNS).
pub fn gather_evidence(
    state: &mailsift_smtp::GatewayState,
    handle: &tokio::runtime::Handle,
    raw: &[u8],
    envelope: &Envelope,
    msg: &mailsift_engine::Message<'_>,
) -> mailsift_engine::Evidence {
    let mut evidence = match (&state.gatherer, envelope.direction, envelope.client_ip) {
        (Some(g), Direction::Inbound, Some(_)) => {
            let domains: Vec<&str> = msg.urls.iter().map(|u| u.domain.as_str()).collect();
            mailsift_engine::Evidence::from_sender(handle.block_on(g.gather_with_urls(raw, envelope, &domains)))
        }
        _ => mailsift_engine::Evidence::default(),
    };
    if let Some(rep) = state.reputation() {
        // Spoofs of our own domains are looked up (and counted) against the spoofing server only.
        let keys = mailsift_engine::evidence::reputation_keys_for(envelope, msg, &state.engine.config().organisation);
        if let Ok(facts) = rep.lock().unwrap_or_else(|e| e.into_inner()).lookup(&keys, mailsift_engine::unix_now()) {
            evidence.reputation = Some(facts);
        }
    }
    evidence
}

/// Judges a message as the gateway would (sender evidence when DNS is on and an address is known, local
/// reputation, the stored policy), without any effect: nothing is logged, learned or delivered.
pub async fn judge(web: &AppState, raw: Vec<u8>, params: &ScanParams) -> Result<ScanAnswer, ApiError> {
    let mut envelope = params.envelope()?;
    let gateway = web.gateway.clone();
    let handle = tokio::runtime::Handle::current();
    let from_trace = params.from_trace;
    blocking(move || {
        // The policy as stored right now (an administrator testing a rule just added), not as of the
        // gateway's last poll; a cheap version check when nothing changed.
        if let Err(e) = gateway.refresh_policy(false) {
            tracing::warn!(error = %e, "policy not reloaded for the scan");
        }
        let (state, policy) = (gateway.state(), gateway.policy());
        let domain = envelope.rcpt_to.first().map(|r| domain_of(r).to_ascii_lowercase()).unwrap_or_default();
        let engine = state.engine_for(&domain).clone();
        let msg = engine.parse(&raw);
        if from_trace {
            envelope.fill_from_trace(&msg);
        }
        let evidence = gather_evidence(&state, &handle, &raw, &envelope, &msg);
        let verdict = engine.judge_with_policy(&msg, &envelope, &evidence, &policy);
        let explanation = mailsift_engine::explain::render(&verdict, engine.registry());
        Ok(ScanAnswer { headers: verdict.headers(), verdict, explanation })
    })
    .await
}

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
    Ok(Json(judge(&web, body.to_vec(), &params).await?))
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

/// `1700000000`, `24h`, `7d`, `30m`: Unix seconds, or that long before now.
pub fn parse_when(s: &str, now: i64) -> Result<i64, ApiError> {
    let s = s.trim();
    let bad = || ApiError::bad_request(format!("{s:?}: give Unix seconds or a period like 24h or 7d"));
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let (n, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(now - n * secs)
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

/// May this caller see this log entry?
pub fn may_see_entry(p: &Principal, e: &mailsift_store::LogEntry) -> bool {
    p.is_admin()
        || (p.is_manager()
            && (e.recipients.iter().any(|r| p.manages_domain(domain_of(r)))
                || (e.direction == "outbound"
                    && e.mail_from.as_deref().is_some_and(|m| p.manages_domain(domain_of(m))))))
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

#[derive(Serialize, ToSchema)]
pub struct LogDetail {
    #[schema(value_type = Object)]
    pub entry: mailsift_store::LogEntry,
    /// The verdict's symbols grouped by engine (group), each with its description and remedy.
    pub groups: Vec<SymbolGroup>,
    /// Quarantine items of this message the caller may act on.
    #[schema(value_type = Vec<Object>)]
    pub quarantine: Vec<mailsift_store::QuarantineItem>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct SymbolGroup {
    pub group: String,
    pub total: f64,
    pub symbols: Vec<SymbolLine>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct SymbolLine {
    pub name: String,
    pub score: f64,
    pub description: String,
    pub remedy: String,
}

/// Groups logged symbols by their registry group, strongest group first.
pub fn group_symbols(registry: &mailsift_engine::symbols::Registry, symbols: &[(String, f64)]) -> Vec<SymbolGroup> {
    let mut groups: BTreeMap<String, SymbolGroup> = BTreeMap::new();
    for (name, score) in symbols {
        let (group, description, remedy) = match registry.by_name(name) {
            Some(def) => (def.group.as_str().to_string(), def.description.to_string(), def.remedy.to_string()),
            None => ("other".to_string(), String::new(), String::new()),
        };
        let g = groups.entry(group.clone()).or_insert(SymbolGroup { group, total: 0.0, symbols: Vec::new() });
        g.total += score;
        g.symbols.push(SymbolLine { name: name.clone(), score: *score, description, remedy });
    }
    let mut v: Vec<SymbolGroup> = groups.into_values().collect();
    v.sort_by(|a, b| b.total.abs().total_cmp(&a.total.abs()));
    v
}

pub async fn log_detail(web: &AppState, principal: &Principal, reference: &str) -> Result<LogDetail, ApiError> {
    let db = web.db.clone();
    let r = reference.to_string();
    let (entry, items) = blocking(move || {
        let entry = db.log_get(&r)?;
        // The quarantine rows of this message were written in the same minute as its log row.
        let items = match &entry {
            Some(e) => db
                .quarantine_list(&QuarantineQuery {
                    since: Some(e.time - 120),
                    until: Some(e.time + 120),
                    include_released: true,
                    limit: 1000,
                    ..Default::default()
                })?
                .into_iter()
                .filter(|i| i.reference_id == r)
                .collect(),
            None => Vec::new(),
        };
        Ok((entry, items))
    })
    .await?;
    let entry = entry
        .filter(|e| may_see_entry(principal, e))
        .ok_or_else(|| ApiError::not_found(format!("no logged message {reference:?} that you may see")))?;
    let state = web.gateway.state();
    let groups = group_symbols(state.engine.registry(), &entry.symbols);
    let quarantine = items.into_iter().filter(|i| principal.may_act_for(&i.recipient)).collect();
    Ok(LogDetail { entry, groups, quarantine })
}

#[utoipa::path(get, path = "/api/v1/log/{reference}", params(("reference" = String, Path, description = "The message's reference id")),
    responses((status = 200, body = LogDetail), (status = 404)))]
async fn log_get(State(web): State<AppState>, caller: Caller, Path(reference): Path<String>) -> ApiResult<LogDetail> {
    caller.require_manager()?;
    Ok(Json(log_detail(&web, &caller.principal, &reference).await?))
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

/// One quarantined copy the caller may act on, with its raw message.
pub async fn quarantine_item(
    web: &AppState,
    p: &Principal,
    id: i64,
) -> Result<(mailsift_store::QuarantineItem, Vec<u8>), ApiError> {
    let db = web.db.clone();
    let (item, raw) = blocking(move || Ok((db.quarantine_get(id)?, db.quarantine_raw(id)?))).await?;
    match (item, raw) {
        (Some(item), Some(raw)) if p.may_act_for(&item.recipient) => Ok((item, raw)),
        _ => Err(ApiError::not_found(format!("no quarantined message {id} that you may see"))),
    }
}

/// The decoded headers and readable text of a message (see [`QuarantineDetail`]).
pub fn preview(web: &AppState, raw: &[u8]) -> (Vec<(String, String)>, String) {
    let state = web.gateway.state();
    let msg = state.engine.parse(raw);
    let headers = msg.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
    let text = &msg.body_text;
    // Links stay readable but are neutralised: shown as text with the scheme broken.
    let text = text.replace("http://", "hxxp://").replace("https://", "hxxps://");
    (headers, crate::console::clip(&text, 100_000).to_string())
}

#[utoipa::path(get, path = "/api/v1/quarantine/{id}", params(("id" = i64, Path)), responses((status = 200, body = QuarantineDetail), (status = 404)))]
async fn quarantine_get(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<QuarantineDetail> {
    let (item, raw) = quarantine_item(&web, &caller.principal, id).await?;
    let (headers, text) = preview(&web, &raw);
    Ok(Json(QuarantineDetail { item, headers, text }))
}

#[derive(Serialize, ToSchema)]
pub struct ActionAnswer {
    pub id: i64,
    /// What happened, in words.
    pub result: String,
}

/// Releases one copy (exactly once) to its recipient; `approve` also allows the sender for that recipient.
pub async fn release_item(
    web: &AppState,
    p: &Principal,
    id: i64,
    approve: bool,
    by: &str,
) -> Result<ActionAnswer, ApiError> {
    let (item, _) = quarantine_item(web, p, id).await?;
    let released = mailsift_smtp::release::release(&web.gateway, id, by).await.map_err(|e| match e {
        mailsift_smtp::release::ReleaseError::AlreadyReleased(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        mailsift_smtp::release::ReleaseError::NotFound(_) => ApiError::not_found(e.to_string()),
        mailsift_smtp::release::ReleaseError::Store(e) => ApiError::internal(e),
        other => ApiError::new(StatusCode::BAD_GATEWAY, other.to_string()),
    })?;
    let mut result = format!("released to {} ({})", released.recipient, released.reply);
    if approve {
        match allow_sender_for(web, &item, by).await? {
            Some(sender) => result.push_str(&format!("; {sender} is now an allowed sender for {}", item.recipient)),
            None => result.push_str("; no sender address to approve"),
        }
    }
    Ok(ActionAnswer { id, result })
}

/// Adds the quarantined message's sender (From:, else the envelope sender) to the recipient's own allowed
/// senders, keeping the safe defaults (no spoofed or DMARC-failing mail gets through).
pub async fn allow_sender_for(
    web: &AppState,
    item: &mailsift_store::QuarantineItem,
    by: &str,
) -> Result<Option<String>, ApiError> {
    let Some(sender) = item.from_header.clone().or(item.mail_from.clone()).filter(|s| s.contains('@')) else {
        return Ok(None);
    };
    let entry = AllowEntry {
        id: None,
        sender: sender.clone(),
        recipient: Some(item.recipient.clone()),
        require_auth: false,
        from_ptr_domain: None,
        from_network: None,
        allow_spoofed: false,
        expires: None,
        comment: Some(format!("approved from quarantine item {} by {by}", item.id)),
    };
    let db = web.db.clone();
    blocking(move || db.list_add(ListEntry::Allow(entry)).map_err(policy_error)).await?;
    Ok(Some(sender))
}

/// Adds the sender to the recipient's blocked senders and deletes the copy.
pub async fn block_sender_for(
    web: &AppState,
    item: &mailsift_store::QuarantineItem,
    by: &str,
) -> Result<Option<String>, ApiError> {
    let Some(sender) = item.mail_from.clone().or(item.from_header.clone()).filter(|s| s.contains('@')) else {
        return Ok(None);
    };
    let entry: BlockEntry = serde_json::from_value(serde_json::json!({
        "sender": sender,
        "recipient": item.recipient,
        "comment": format!("blocked from quarantine item {} by {by}", item.id),
    }))
    .map_err(ApiError::internal)?;
    let db = web.db.clone();
    let id = item.id;
    blocking(move || {
        db.list_add(ListEntry::Block(entry)).map_err(policy_error)?;
        db.quarantine_delete(id)?;
        Ok(())
    })
    .await?;
    Ok(Some(sender))
}

#[utoipa::path(post, path = "/api/v1/quarantine/{id}/release", params(("id" = i64, Path)),
    responses((status = 200, body = ActionAnswer), (status = 404), (status = 409, description = "Already released"), (status = 502, description = "The next hop refused or is down")))]
async fn quarantine_release(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<ActionAnswer> {
    Ok(Json(release_item(&web, &caller.principal, id, false, &caller.principal.name).await?))
}

#[utoipa::path(post, path = "/api/v1/quarantine/{id}/approve", params(("id" = i64, Path)),
    responses((status = 200, body = ActionAnswer), (status = 404), (status = 409)))]
async fn quarantine_approve(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<ActionAnswer> {
    Ok(Json(release_item(&web, &caller.principal, id, true, &caller.principal.name).await?))
}

#[utoipa::path(delete, path = "/api/v1/quarantine/{id}", params(("id" = i64, Path)), responses((status = 200, body = ActionAnswer), (status = 404)))]
async fn quarantine_delete(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> ApiResult<ActionAnswer> {
    quarantine_item(&web, &caller.principal, id).await?;
    let db = web.db.clone();
    blocking(move || Ok(db.quarantine_delete(id)?)).await?;
    Ok(Json(ActionAnswer { id, result: "deleted".into() }))
}

#[derive(Deserialize, ToSchema)]
pub struct BulkRequest {
    pub ids: Vec<i64>,
    /// release, approve, delete or block.
    pub action: String,
}

/// Acts on several items; each gets its own answer (one failure does not stop the others).
pub async fn bulk(
    web: &AppState,
    p: &Principal,
    ids: &[i64],
    action: &str,
) -> Result<Vec<Result<ActionAnswer, String>>, ApiError> {
    if !matches!(action, "release" | "approve" | "delete" | "block") {
        return Err(ApiError::bad_request(format!("action: {action:?} is not release, approve, delete or block")));
    }
    if ids.len() > 1000 {
        return Err(ApiError::bad_request("at most 1000 items at once"));
    }
    let mut out = Vec::new();
    for &id in ids {
        let r = match action {
            "release" => release_item(web, p, id, false, &p.name).await,
            "approve" => release_item(web, p, id, true, &p.name).await,
            "block" => match quarantine_item(web, p, id).await {
                Ok((item, _)) => block_sender_for(web, &item, &p.name)
                    .await
                    .map(|s| ActionAnswer { id, result: format!("blocked {} and deleted", s.unwrap_or_default()) }),
                Err(e) => Err(e),
            },
            _ => match quarantine_item(web, p, id).await {
                Ok(_) => {
                    let db = web.db.clone();
                    blocking(move || Ok(db.quarantine_delete(id)?))
                        .await
                        .map(|_| ActionAnswer { id, result: "deleted".into() })
                }
                Err(e) => Err(e),
            },
        };
        out.push(r.map_err(|e| format!("{id}: {}", e.message)));
    }
    Ok(out)
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
    let results = bulk(&web, &caller.principal, &req.ids, &req.action).await?;
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
    use mailsift_store::PolicyStoreError as E;
    match e {
        E::Parse(_) | E::Invalid { .. } => ApiError::bad_request(e.to_string()),
        E::NoSuchRule(_) | E::NoSuchEntry(_) => ApiError::not_found(e.to_string()),
        E::Contended(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
        other => ApiError::internal(other),
    }
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

#[derive(Serialize, ToSchema)]
pub struct RulesTestAnswer {
    /// The filter rules that matched, in order.
    pub matched_rules: Vec<String>,
    /// The list entries that matched.
    pub matched_entries: Vec<String>,
    /// The rule or entry that decided, if one did.
    pub decided_by: Option<String>,
    pub action: String,
    pub score: f64,
    /// For each matched rule a forger could satisfy: why (the rule is in `matched_rules` too).
    pub warnings: Vec<String>,
}

/// Judges a message with the current policy and says which rules and entries matched.
pub async fn test_rules(web: &AppState, raw: Vec<u8>, params: &ScanParams) -> Result<RulesTestAnswer, ApiError> {
    let answer = judge(web, raw, params).await?;
    let v = &answer.verdict;
    let mut matched_rules = Vec::new();
    let mut matched_entries = Vec::new();
    for m in &v.policy_matches {
        match m {
            mailsift_engine::policy::PolicyMatch::Rule { name, .. } => matched_rules.push(name.clone()),
            mailsift_engine::policy::PolicyMatch::Entry { entry, honoured } => {
                matched_entries.push(format!("{}{}", entry.describe(), if *honoured { "" } else { " (passed over)" }))
            }
        }
    }
    // The matched rules as the policy in force has them: the configuration's, then the stored ones.
    let configured = web.gateway.state().engine.config().policy.rules.clone();
    let db = web.db.clone();
    let names = matched_rules.clone();
    let warnings = blocking(move || {
        let stored = db.rules().map_err(policy_error)?;
        let rules = configured.iter().chain(stored.iter().map(|r| &r.rule));
        let matched: Vec<&FilterRule> =
            rules.filter(|r| names.iter().any(|n| n.trim().eq_ignore_ascii_case(r.name.trim()))).collect();
        Ok(matched.into_iter().filter_map(|r| r.forgery_warning()).collect::<Vec<_>>())
    })
    .await?;
    Ok(RulesTestAnswer {
        warnings,
        matched_rules,
        matched_entries,
        decided_by: v.decided_by.clone(),
        action: v.action.as_str().into(),
        score: v.score,
    })
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
    Ok(Json(test_rules(&web, body.to_vec(), &params).await?))
}

/// May this caller see or change this list entry? Administrators: all. Domain administrators: entries for
/// their domains or their users. End users: their own entries.
pub fn may_manage_entry(p: &Principal, recipient: Option<&str>) -> bool {
    match (p.role, recipient) {
        (Role::Admin, _) => true,
        (_, None) => false,
        (Role::DomainAdmin, Some(r)) => p.manages_domain(domain_of(r)),
        (Role::User, Some(r)) => r.eq_ignore_ascii_case(&p.name),
    }
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

/// Every domain the gateway receives mail for: the configuration's and the stored ones (which win).
pub fn all_domains(web: &AppState) -> Result<Vec<(DomainConfig, &'static str)>, ApiError> {
    let state = web.gateway.state();
    let mut out: BTreeMap<String, (DomainConfig, &'static str)> = BTreeMap::new();
    for d in &state.config.domains {
        out.insert(d.name.to_ascii_lowercase(), (d.clone(), "configuration"));
    }
    for (name, json) in web.db.domains()? {
        match serde_json::from_str::<DomainConfig>(&json) {
            Ok(d) => {
                out.insert(name.to_ascii_lowercase(), (d, "stored"));
            }
            Err(e) => tracing::warn!(domain = %name, error = %e, "stored domain does not read"),
        }
    }
    Ok(out.into_values().collect())
}

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
    let all = blocking(move || all_domains(&w)).await?;
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
    let all = blocking(move || all_domains(&w)).await?;
    all.into_iter()
        .find(|(d, _)| d.name.eq_ignore_ascii_case(&name))
        .map(|(settings, source)| Json(DomainView { settings, source: source.into() }))
        .ok_or_else(|| ApiError::not_found(format!("no domain {name:?}")))
}

/// Checks a domain's settings as the gateway would, naming the field.
pub fn validate_domain(d: &DomainConfig) -> Result<(), ApiError> {
    d.validate().map_err(|e| ApiError::bad_request(e.to_string()))
}

pub async fn store_domain(web: &AppState, p: &Principal, d: DomainConfig) -> Result<(), ApiError> {
    if !p.manages_domain(&d.name) {
        return Err(ApiError::forbidden(format!("you do not manage {}", d.name)));
    }
    validate_domain(&d)?;
    let db = web.db.clone();
    blocking(move || {
        db.domain_put(&d.name, &serde_json::to_string(&d).map_err(ApiError::internal)?, mailsift_engine::unix_now())?;
        Ok(())
    })
    .await
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
    store_domain(&web, &caller.principal, d).await?;
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

#[derive(Serialize, ToSchema)]
pub struct AsfOption {
    pub name: String,
    /// off, on or test, for the organisation.
    pub mode: String,
    pub symbol: String,
    pub description: String,
}

/// The ASF options and the organisation's setting of each (domains override them in their settings), from
/// the registry's ASF symbols, so every option that can fire is listed with its description.
pub fn asf_list(web: &AppState) -> Vec<AsfOption> {
    use mailsift_engine::checks::asf;
    let state = web.gateway.state();
    let engine = &state.engine;
    let config = &engine.config().asf;
    engine
        .registry()
        .iter()
        .filter(|d| d.asf.is_some())
        .filter_map(|d| {
            let name = asf::option_key(&d.name)?;
            let mode = serde_json::to_value(asf::mode_of(&d.name, config)).ok()?;
            Some(AsfOption {
                name: name.to_string(),
                mode: mode.as_str().unwrap_or("").to_string(),
                symbol: d.name.clone(),
                description: d.description.clone(),
            })
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/asf", responses((status = 200, body = Vec<AsfOption>)))]
async fn asf_options(State(web): State<AppState>, caller: Caller) -> ApiResult<Vec<AsfOption>> {
    caller.require_manager()?;
    Ok(Json(asf_list(&web)))
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

#[derive(Serialize, ToSchema)]
pub struct ReportAnswer {
    pub result: String,
    /// Spam probability before and after, per engine, when the classifiers are trained.
    pub before: Option<(Option<f64>, Option<f64>)>,
    pub after: Option<(Option<f64>, Option<f64>)>,
}

/// Learns a message on the side the user says, in the running gateway's model, and feeds reputation.
pub async fn report(
    web: &AppState,
    p: &Principal,
    raw: Vec<u8>,
    side: mailsift_engine::classify::Side,
    source: String,
) -> Result<ReportAnswer, ApiError> {
    let state = web.gateway.state();
    let reporter = p.name.clone();
    blocking(move || {
        let learner = state.learner().ok_or_else(|| {
            ApiError::new(StatusCode::CONFLICT, "the classifiers are disabled ([classifier] enabled = false)")
        })?;
        let msg = state.engine.parse(&raw);
        let scores = |s: Option<mailsift_engine::classify::ClassifierScores>| s.map(|s| (s.bayes, s.linear));
        let before = scores(state.engine.classify(&msg));
        let now = mailsift_engine::unix_now();
        let (outcome, _) = learner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report_via(&msg, side, &source, "web", Some(&reporter), now)
            .map_err(ApiError::internal)?;
        if let Some(rep) = state.reputation() {
            if let Err(e) = rep.lock().unwrap_or_else(|e| e.into_inner()).record_report(
                &msg,
                side,
                &state.engine.config().organisation,
                now,
            ) {
                tracing::warn!(error = %e, "reputation not updated from the report");
            }
        }
        let after = scores(state.engine.classify(&msg));
        Ok(ReportAnswer { result: format!("{source}: {outcome:?} as {}", side.as_str()), before, after })
    })
    .await
}

pub fn parse_side(kind: &str) -> Result<mailsift_engine::classify::Side, ApiError> {
    match kind {
        "false_positive" | "ham" => Ok(mailsift_engine::classify::Side::Ham),
        "false_negative" | "spam" => Ok(mailsift_engine::classify::Side::Spam),
        k => Err(ApiError::bad_request(format!("kind: {k:?} is neither false_positive nor false_negative"))),
    }
}

#[utoipa::path(post, path = "/api/v1/reports", request_body = ReportRequest, responses((status = 200, body = ReportAnswer), (status = 400), (status = 404)))]
async fn report_submit(
    State(web): State<AppState>,
    caller: Caller,
    Json(req): Json<ReportRequest>,
) -> ApiResult<ReportAnswer> {
    let side = parse_side(&req.kind)?;
    let (raw, source) = match (req.quarantine_id, req.message) {
        (Some(id), None) => (quarantine_item(&web, &caller.principal, id).await?.1, format!("quarantine item {id}")),
        (None, Some(m)) if !m.trim().is_empty() => {
            caller.require_manager()?;
            (m.into_bytes(), "message posted to the API".to_string())
        }
        _ => return Err(ApiError::bad_request("give either quarantine_id or message")),
    };
    Ok(Json(report(&web, &caller.principal, raw, side, source).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SinceParams {
    /// Unix seconds or a period such as `30d` (default 30d).
    pub since: Option<String>,
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
    blocking(move || {
        let file = dir.join(mailsift_store::sqlite::FILE_NAME);
        if !file.exists() {
            return Ok(Json(serde_json::json!({ "per_day": [], "by_channel": {} })));
        }
        use mailsift_store::TokenStore;
        let store = mailsift_store::SqliteStore::open(&file)?;
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
        let rep = rep.lock().unwrap_or_else(|e| e.into_inner());
        let entry = rep.show(&key, mailsift_engine::unix_now()).map_err(ApiError::internal)?;
        Ok(Json(serde_json::json!({ "key": key, "reputation": entry })))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct Stats {
    #[schema(value_type = Vec<Object>)]
    pub hourly: Vec<mailsift_store::HourlyCount>,
    pub top_symbols: Vec<(String, u64)>,
    pub top_refused_senders: Vec<(String, u64)>,
    pub quarantine_held: u64,
    /// False-positive and false-negative reports per day (administrators only).
    pub reports_per_day: Vec<(i64, String, u64)>,
    /// The gateway's counters since it started.
    pub counters: BTreeMap<String, u64>,
}

pub async fn gather_stats(web: &AppState, p: &Principal, since: i64) -> Result<Stats, ApiError> {
    let db = web.db.clone();
    let scope = p.scope();
    let dir = web.data_dir.clone();
    let admin = p.is_admin();
    let mut stats = blocking(move || {
        let reports_per_day = if admin && dir.join(mailsift_store::sqlite::FILE_NAME).exists() {
            let store = mailsift_store::SqliteStore::open(&dir.join(mailsift_store::sqlite::FILE_NAME))?;
            store.submissions_per_day(since)?.into_iter().map(|(d, s, n)| (d, s.as_str().to_string(), n)).collect()
        } else {
            Vec::new()
        };
        Ok(Stats {
            hourly: db.stats_hourly(since, &scope)?,
            top_symbols: db.stats_top_symbols(since, 10, &scope)?,
            top_refused_senders: db.stats_top_refused_senders(since, 10, &scope)?,
            quarantine_held: db.quarantine_count(true, &scope)?,
            reports_per_day,
            counters: BTreeMap::new(),
        })
    })
    .await?;
    if admin {
        stats.counters = web.gateway.counters.snapshot().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    }
    Ok(stats)
}

#[utoipa::path(get, path = "/api/v1/stats", params(SinceParams), responses((status = 200, body = Stats)))]
async fn stats(State(web): State<AppState>, caller: Caller, Query(p): Query<SinceParams>) -> ApiResult<Stats> {
    caller.require_manager()?;
    let since = parse_when(p.since.as_deref().unwrap_or("24h"), mailsift_engine::unix_now())?;
    Ok(Json(gather_stats(&web, &caller.principal, since).await?))
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
    web.sessions.remove_account(&name);
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
