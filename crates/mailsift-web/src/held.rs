//! Held accounts (the compromised-account protection, `[smtp.account_guard]`): the administrators' list of
//! the outbound users whose mail now goes to the quarantine, and the release of a hold. Both act on the
//! running gateway's guard, which keeps the holds in the gateway database, so a release is seen at once by
//! the gateway that answers the user's next message.

use axum::extract::{Path, State};
use axum::Json;

use crate::app::{blocking, ApiError, AppState, Caller};

/// The held users, oldest hold first: user, since (Unix seconds), why, the counts when it was held, the
/// usual hourly volume and how many messages were quarantined since.
#[utoipa::path(get, path = "/api/v1/held-accounts", responses((status = 200, body = Vec<Object>), (status = 403)))]
pub async fn held_list(State(web): State<AppState>, caller: Caller) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    caller.require_admin()?;
    let holds = web.gateway.account_guard.held();
    let holds = holds.into_iter().map(|h| serde_json::to_value(h).unwrap_or_default()).collect();
    Ok(Json(holds))
}

/// Lifts the hold on one user: its next messages go out again (its quarantined messages stay where they
/// are, to be released or deleted one by one). 404 when the user is not held.
#[utoipa::path(post, path = "/api/v1/held-accounts/{user}/release", params(("user" = String, Path)),
    responses((status = 200, body = Object), (status = 403), (status = 404)))]
pub async fn held_release(
    State(web): State<AppState>,
    caller: Caller,
    Path(user): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let gateway = web.gateway.clone();
    let u = user.clone();
    let was = blocking(move || mailsift_gateway::held::release(&gateway, &u).map_err(ApiError::internal)).await?;
    if !was {
        return Err(ApiError::not_found("that account is not held"));
    }
    tracing::info!(user = %mailsift_gateway::text::sanitize(&user, 100), by = %caller.principal.name, "account hold released");
    Ok(Json(serde_json::json!({ "result": "released" })))
}
