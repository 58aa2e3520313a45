//! The HTTP side of mailsift: the JSON API (`api.rs`, documented by an OpenAPI document generated from the
//! handlers), the web console (`console.rs`, server-rendered pages, no JavaScript needed), the quarantine
//! digest (`digest.rs`) and Prometheus metrics (`metrics.rs`), all served by `mailsift serve` beside the
//! SMTP gateway, over the same [`Gateway`]: the same database, policy, delivery path and counters.
//!
//! What it is not: a second place where mail is judged or delivered. Scans call the engine, releases call
//! `mailsift_smtp::release`, policy changes go through the store's `PolicyStore` (which validates them
//! with the engine before writing), and the gateway picks changes up by itself.

pub mod api;
pub mod auth;
pub mod charts;
pub mod config;
pub mod console;
pub mod diagnosis;
pub mod digest;
pub mod metrics;
pub mod server;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use mailsift_smtp::Gateway;
use mailsift_store::Database;

pub use auth::Principal;
pub use config::WebConfig;
pub use server::serve;
use tokens::{Purpose, Signer};

/// Everything a request handler reads.
pub struct Web {
    pub gateway: Arc<Gateway>,
    pub db: Database,
    pub config: WebConfig,
    pub signer: Signer,
    pub sessions: auth::Sessions,
    pub limiter: auth::LoginLimiter,
    pub templates: minijinja::Environment<'static>,
    /// The start of links in digests.
    pub base_url: String,
    pub data_dir: PathBuf,
    pub started: Instant,
    pub metrics: metrics::WebCounters,
}

pub type AppState = Arc<Web>;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot bind the HTTP listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{}: cannot read or create the signing key: {source}", path.display())]
    Key { path: PathBuf, source: std::io::Error },
    #[error("HTTPS: {0}")]
    Tls(String),
}

impl Web {
    pub fn new(gateway: Arc<Gateway>, config: WebConfig, bound: SocketAddr) -> Result<Arc<Web>, WebError> {
        let data_dir = gateway.data_dir.clone();
        let signer = Signer::load_or_create(&data_dir)
            .map_err(|source| WebError::Key { path: data_dir.join("web.key"), source })?;
        let limiter = auth::LoginLimiter::new(
            config.login_attempts,
            Duration::from_secs(config.login_window_secs),
            Duration::from_millis(config.login_account_delay_ms),
        );
        Ok(Arc::new(Web {
            db: gateway.db.clone(),
            base_url: config.base_url(bound),
            templates: console::templates(),
            gateway,
            config,
            signer,
            sessions: auth::Sessions::default(),
            limiter,
            data_dir,
            started: Instant::now(),
            metrics: metrics::WebCounters::default(),
        }))
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.config.session_minutes * 60)
    }
}

/// The whole HTTP application.
pub fn router(web: AppState) -> Router {
    let (api, openapi) = api::router();
    let openapi = Arc::new(openapi);
    Router::new()
        .merge(api)
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = openapi.clone();
                async move { axum::Json((*doc).clone()) }
            }),
        )
        .merge(console::router())
        .route("/metrics", axum::routing::get(metrics::handler))
        .layer(axum::extract::DefaultBodyLimit::max(web.config.max_body_bytes))
        .layer(axum::middleware::from_fn(scrub_server_errors))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

/// Headers every answer carries: the console loads nothing from elsewhere, runs no scripts, and is not
/// framed by other sites.
async fn security_headers(req: Request, next: axum::middleware::Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    h.entry(header::CACHE_CONTROL).or_insert(header::HeaderValue::from_static("no-store"));
    res
}

/// An API error: a status and a sentence, sent as `{"error": "..."}`.
///
/// A server-side failure ([`ApiError::internal`]) never sends its cause: that names files and database
/// errors, which are for the log. The caller gets a generic sentence with a reference to find the
/// details in the log.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), retry_after: None }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, m)
    }
    /// A failure on our side: the cause goes to the log under a fresh reference, the caller gets only
    /// the reference.
    pub fn internal(m: impl std::fmt::Display) -> ApiError {
        let reference = error_reference();
        tracing::error!(error = %m, %reference, "HTTP request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, internal_message(&reference))
    }
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }
}

/// A short random reference that ties an answer to its log line.
pub fn error_reference() -> String {
    let b = tokens::random_bytes::<6>();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The only text a 5xx answer carries.
pub fn internal_message(reference: &str) -> String {
    format!("internal error (reference {reference}; the details are in the server's log)")
}

impl From<mailsift_store::StoreError> for ApiError {
    fn from(e: mailsift_store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

/// Marks an answer whose body was written for the caller, so [`scrub_server_errors`] leaves it alone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallerSafeBody;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        res.extensions_mut().insert(CallerSafeBody);
        res
    }
}

/// The last line of defence for 5xx answers made elsewhere (a framework rejection, a page that failed
/// to render, a handler that put an error's text in its answer): their body is replaced by the generic
/// sentence and a reference, and what it said goes to the log.
async fn scrub_server_errors(req: Request, next: axum::middleware::Next) -> Response {
    let api = req.uri().path().starts_with("/api/");
    let res = next.run(req).await;
    if !res.status().is_server_error() || res.extensions().get::<CallerSafeBody>().is_some() {
        return res;
    }
    let status = res.status();
    let reference = error_reference();
    let (parts, body) = res.into_parts();
    let said = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    tracing::error!(status = status.as_u16(), %reference, said = %String::from_utf8_lossy(&said), "HTTP request failed");
    let message = internal_message(&reference);
    let mut res = if api {
        (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
    } else {
        (status, message).into_response()
    };
    // Keep headers that are not about the replaced body (Retry-After, for one).
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            res.headers_mut().entry(name).or_insert(value.clone());
        }
    }
    res
}

/// The peer's address, put on every request by the listener.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// An authenticated API caller (session cookie plus CSRF header for changes, or a bearer API token).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// The session's CSRF token, when the caller came with a session.
    pub csrf: Option<String>,
}

impl Caller {
    pub fn require_manager(&self) -> Result<(), ApiError> {
        if self.principal.is_manager() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an administrator or domain administrator"))
        }
    }
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.principal.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an administrator"))
        }
    }
}

/// Finds the caller from the request's bearer token or session cookie, without checking CSRF.
pub(crate) fn identify(
    headers: &axum::http::HeaderMap,
    web: &Web,
) -> Result<(Principal, Option<auth::Session>), ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "use `Authorization: Bearer <API token>`"))?;
        let claims = web
            .signer
            .verify(token.trim(), Purpose::Api, mailsift_engine::unix_now())
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, format!("API token refused: {e}")))?;
        let account = web
            .db
            .account_by_id(claims.id)?
            .filter(|a| !a.disabled && a.name.eq_ignore_ascii_case(&claims.subject))
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "API token refused: the account is gone"))?;
        return Ok((Principal::from_account(&account), None));
    }
    let id = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| auth::cookie(h, auth::SESSION_COOKIE))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "log in first"))?;
    let session =
        web.sessions.get(id).ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the session expired; log in"))?;
    Ok((session.principal.clone(), Some(session)))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, web: &AppState) -> Result<Caller, ApiError> {
        let (principal, session) = identify(&parts.headers, web)?;
        let csrf = session.map(|s| s.csrf);
        if let Some(expected) = &csrf {
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let given = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
                if !auth::same_secret(given, expected) {
                    return Err(ApiError::forbidden("missing or wrong X-CSRF-Token header"));
                }
            }
        }
        Ok(Caller { principal, csrf })
    }
}
