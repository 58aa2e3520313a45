//! DKIM signing as the console and API show it: the keys, and whether each published record matches (the
//! same check as `mailsift dkim check`, `mailsift_gateway::dkim_check`).

use axum::extract::State;
use axum::Json;

use crate::app::{ApiError, AppState, Caller};

/// `GET /api/v1/dkim` (administrators): every configured key (domain, selector, algorithm, bits, file,
/// whether it signs), the record to publish, and what DNS has (`status`: match, missing, mismatch, revoked,
/// temperror). ARC sealing's domain and selector when sealing is on.
#[utoipa::path(get, path = "/api/v1/dkim", responses((status = 200, body = Object), (status = 403)))]
pub async fn dkim_keys(State(web): State<AppState>, caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let state = web.gateway.state();
    let Some(keys) = state.config.dkim.loaded().cloned() else {
        return Ok(Json(serde_json::json!({ "keys": [], "arc": null })));
    };
    let arc = keys.sealer.as_ref().map(|(d, s, _)| serde_json::json!({ "domain": d, "selector": s }));
    let (statuses, dns_error) = match state.mx_resolver() {
        Ok(resolver) => (mailsift_gateway::dkim_check::check(&keys, resolver).await, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    Ok(Json(serde_json::json!({ "keys": statuses, "arc": arc, "dns_error": dns_error })))
}
