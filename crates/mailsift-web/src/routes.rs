//! The whole HTTP application: the API's and the console's routes, the OpenAPI document, metrics, the
//! load balancers' `/healthz` and `/readyz`, and the
//! layers every answer passes through (body limit, security headers, no server error text to callers).

use std::sync::Arc;

use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::app::{error_reference, internal_message, AppState, CallerSafeBody};
use crate::{api, console, health, metrics};

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
        .merge(health::router())
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
