//! The application state every handler reads ([`Web`]), the API's error answer ([`ApiError`]), and who is
//! calling ([`Caller`], [`Peer`], [`identify`]). HTTP types live here and in the handlers; the business
//! functions they call (`service`) know nothing of them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use mailsift_gateway::Gateway;
use mailsift_store::Database;

use crate::auth::{self, Principal};
use crate::config::WebConfig;
use crate::service::{Failure, ServiceError};
use crate::tokens::{self, Purpose, Signer};

/// The HTTP side's own counters.
#[derive(Debug, Default)]
pub struct WebCounters {
    pub digests_sent: AtomicU64,
    pub digest_failures: AtomicU64,
    pub link_actions: AtomicU64,
    /// HTTP connections refused at accept because `max_connections` or `max_connections_per_ip` was
    /// reached.
    pub http_connections_refused: AtomicU64,
    /// HTTP connections closed because headers or a request took longer than their timeout.
    pub http_timeouts: AtomicU64,
}

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
    pub metrics: WebCounters,
}

pub type AppState = Arc<Web>;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("cannot bind the HTTP listener on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{}: cannot read or create the signing key: {source}", path.display())]
    Key { path: PathBuf, source: std::io::Error },
    /// The key shared through the gateway database on PostgreSQL could not be stored or read.
    #[error("the signing key in the gateway database: {0}")]
    SharedKey(String),
    #[error("HTTPS: {0}")]
    Tls(String),
}

impl Web {
    pub fn new(gateway: Arc<Gateway>, config: WebConfig, bound: SocketAddr) -> Result<Arc<Web>, WebError> {
        let data_dir = gateway.data_dir.clone();
        let signer = Signer::shared_or_file(&gateway.db, &data_dir)?;
        let limiter = auth::LoginLimiter::new(
            gateway.db.clone(),
            config.login_attempts,
            Duration::from_secs(config.login_window_secs),
            Duration::from_millis(config.login_account_delay_ms),
        );
        let db = gateway.db.clone();
        Ok(Arc::new(Web {
            db: db.clone(),
            base_url: config.base_url(bound),
            templates: crate::templates::templates(),
            gateway,
            config,
            signer,
            sessions: auth::Sessions::new(db.clone()),
            limiter,
            data_dir,
            started: Instant::now(),
            metrics: WebCounters::default(),
        }))
    }

    pub fn session_ttl(&self) -> Duration {
        Duration::from_secs(self.config.session_minutes * 60)
    }
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

impl From<mailsift_store::PolicyStoreError> for ApiError {
    fn from(e: mailsift_store::PolicyStoreError) -> ApiError {
        ServiceError::from(e).into()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let status = match e.kind {
            Failure::BadRequest => StatusCode::BAD_REQUEST,
            Failure::Forbidden => StatusCode::FORBIDDEN,
            Failure::NotFound => StatusCode::NOT_FOUND,
            Failure::Conflict => StatusCode::CONFLICT,
            Failure::NextHop => StatusCode::BAD_GATEWAY,
            // The cause names files and database errors: logged, never sent.
            Failure::Internal => return ApiError::internal(e.message),
        };
        ApiError::new(status, e.message)
    }
}

/// Runs a blocking store call off the async threads.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await.map_err(ApiError::internal)?
}

/// Marks an answer whose body was written for the caller, so [`scrub_server_errors`] leaves it alone.
#[derive(Debug, Clone, Copy)]
pub struct CallerSafeBody;

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
pub fn identify(headers: &axum::http::HeaderMap, web: &Web) -> Result<(Principal, Option<auth::Session>), ApiError> {
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
        web.sessions.get(id)?.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "the session expired; log in"))?;
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
