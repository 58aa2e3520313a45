//! `GET /healthz` and `GET /readyz`, for load balancers and orchestrators: no login, nothing secret.
//!
//! `/healthz` says the process serves HTTP: `200 ok`, always. `/readyz` says whether this node can take
//! mail now: the gateway database answers a cheap read, and every configured next hop (each domain's
//! `next_hop`, the outbound `smarthost`) accepts a TCP connection within [`CHECK_TIMEOUT`]. The checks run
//! concurrently, on the HTTP side only (no SMTP session waits for them), and their result is kept for
//! [`CACHE_FOR`], so a balancer polling every second costs a next hop one connection per two seconds per
//! node, and many pollers at once share one round of checks. The answer names checks by the mail domain
//! they serve (`next_hop:example.com`), never by host or address, and carries no error text.
//!
//! What it does not do: speak SMTP to the next hop (a TCP accept is the signal; a hop that accepts and then
//! refuses is the relay's 4xx to handle), or check DNS (the evidence stage has its own deadlines).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::app::{AppState, CallerSafeBody};

/// How long each check may take: a next hop's TCP connect (name lookup included), the database read.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one round of checks answers `/readyz`.
pub const CACHE_FOR: Duration = Duration::from_secs(2);

/// The last round of readiness checks, shared by every `/readyz` request.
#[derive(Default)]
pub struct Readiness {
    /// The last result and when it was made. Held while a round runs, so concurrent requests wait for that
    /// round (at most [`CHECK_TIMEOUT`]) instead of starting their own.
    last: tokio::sync::Mutex<Option<(Instant, Arc<Report>)>>,
    /// A database read that has not come back yet: the next round reports it without starting another, so
    /// a hung database does not pile up blocked threads.
    db_in_flight: Arc<AtomicBool>,
}

/// One round's outcome: each check's name and a word (`ok`, `unreachable`, `timeout`, `failed`, `busy`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub ready: bool,
    pub checks: BTreeMap<String, &'static str>,
}

/// The two routes, with their own cache of readiness checks.
pub fn router() -> Router<AppState> {
    let readiness = Arc::new(Readiness::default());
    Router::new().route("/healthz", axum::routing::get(healthz)).route(
        "/readyz",
        axum::routing::get(move |State(web): State<AppState>| async move { readyz(&web, &readiness).await }),
    )
}

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok\n").into_response()
}

/// `GET /readyz`: 200 when the database and every next hop answer, else 503; both with the checks as JSON.
pub async fn readyz(web: &AppState, readiness: &Readiness) -> Response {
    let report = readiness.current(web).await;
    let status = if report.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let mut res = (status, axum::Json(&*report)).into_response();
    // The body is written for the caller (no internal detail): the 5xx scrubber leaves it alone.
    res.extensions_mut().insert(CallerSafeBody);
    res
}

impl Readiness {
    /// The cached report while it is fresh, else a new round of checks.
    pub async fn current(&self, web: &AppState) -> Arc<Report> {
        let mut last = self.last.lock().await;
        if let Some((at, report)) = last.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return report.clone();
            }
        }
        let report = Arc::new(self.check(web).await);
        *last = Some((Instant::now(), report.clone()));
        report
    }

    async fn check(&self, web: &AppState) -> Report {
        let db = self.check_database(web);
        // Each distinct next hop is tried once, concurrently, and reported under every domain it serves.
        let state = web.gateway.state();
        let mut hops: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for d in &state.config.domains {
            if let Some(hop) = &d.next_hop {
                hops.entry(hop.clone()).or_default().push(format!("next_hop:{}", d.name.to_ascii_lowercase()));
            }
        }
        if let Some(hop) = &state.config.outbound.smarthost {
            hops.entry(hop.clone()).or_default().push("smarthost".to_string());
        }
        let tries: Vec<_> =
            hops.into_iter().map(|(hop, names)| (names, tokio::spawn(async move { reachable(&hop).await }))).collect();
        let mut checks = BTreeMap::new();
        checks.insert("database".to_string(), db.await);
        for (names, attempt) in tries {
            let word = match attempt.await {
                Ok(true) => "ok",
                _ => "unreachable",
            };
            for name in names {
                checks.insert(name, word);
            }
        }
        Report { ready: checks.values().all(|w| *w == "ok"), checks }
    }

    async fn check_database(&self, web: &AppState) -> &'static str {
        if self.db_in_flight.swap(true, Ordering::SeqCst) {
            return "busy";
        }
        let db = web.db.clone();
        let flag = self.db_in_flight.clone();
        let read = tokio::task::spawn_blocking(move || {
            let r = db.schema_version();
            flag.store(false, Ordering::SeqCst);
            r
        });
        match tokio::time::timeout(CHECK_TIMEOUT, read).await {
            Ok(Ok(Ok(_))) => "ok",
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "readiness: the database read failed");
                "failed"
            }
            Ok(Err(_)) => "failed",
            Err(_) => "timeout",
        }
    }
}

/// Whether `host:port` accepts a TCP connection within [`CHECK_TIMEOUT`]; the connection is closed at once.
async fn reachable(hop: &str) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(hop)).await {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => {
            tracing::debug!(next_hop = %hop, error = %e, "readiness: next hop unreachable");
            false
        }
        Err(_) => {
            tracing::debug!(next_hop = %hop, "readiness: next hop did not accept within the timeout");
            false
        }
    }
}
