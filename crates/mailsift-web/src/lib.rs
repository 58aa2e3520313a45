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
use tokio::net::TcpListener;

pub use auth::Principal;
pub use config::WebConfig;
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
        let limiter = auth::LoginLimiter::new(config.login_attempts, Duration::from_secs(config.login_window_secs));
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
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
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
    pub fn internal(m: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %m, "HTTP request failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m.to_string())
    }
}

impl From<mailsift_store::StoreError> for ApiError {
    fn from(e: mailsift_store::StoreError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(serde_json::json!({ "error": self.message }))).into_response()
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

/// Serves HTTP (or HTTPS) until the gateway shuts down. One task per connection; the peer's address is
/// attached to each request for login rate limits and logs.
pub async fn serve(web: AppState, listener: TcpListener) {
    let app = router(web.clone());
    let tls = if web.config.tls {
        let state = web.gateway.state();
        match mailsift_smtp::tls::server_config(&state.config.tls, &state.config.hostname, &web.data_dir) {
            Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
            Err(e) => {
                tracing::error!(error = %e, "HTTPS not available; the HTTP listener is not started");
                return;
            }
        }
    } else {
        None
    };
    let mut shutdown = web.gateway.shutdown_signal();
    digest::spawn_scheduler(web.clone());
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(Peer(peer));
                let app = app.clone();
                async move { tower::ServiceExt::oneshot(app, req.map(axum::body::Body::new)).await }
            });
            let builder = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                Some(acceptor) => match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                    Ok(Ok(s)) => builder.serve_connection(hyper_util::rt::TokioIo::new(s), service).await,
                    _ => return,
                },
                None => builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "HTTP connection ended with an error");
            }
        });
    }
}
