//! The outbound queue as the API shows it: what the gateway has accepted and not delivered yet (outbound
//! mail of our users, bounces, rules' copies, digests, reports), its totals and age, and the operator's two
//! actions: retry now, remove. Administrators only: the queue holds every user's outgoing mail.

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;

use crate::app::{blocking, ApiError, AppState, Caller};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct QueueParams {
    /// `pending` (the default), `failed` (given up, kept without the message) or `all`.
    pub state: Option<String>,
    /// Only this kind: `outbound`, `bounce`, `copy`, `digest`, `dmarc-report`...
    pub kind: Option<String>,
    /// At most this many items (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// The queue: totals per kind and state with the oldest item's age, and the items, oldest first.
#[utoipa::path(get, path = "/api/v1/queue", params(QueueParams),
    responses((status = 200, body = Object), (status = 400), (status = 403)))]
pub async fn queue_list(
    State(web): State<AppState>,
    caller: Caller,
    Query(p): Query<QueueParams>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let state = match p.state.as_deref().unwrap_or("pending") {
        "all" => None,
        s @ ("pending" | "failed") => Some(s.to_string()),
        _ => return Err(ApiError::bad_request("state is pending, failed or all")),
    };
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let db = web.db.clone();
    let kind = p.kind.clone();
    let (counts, items) =
        blocking(move || Ok((db.spool_counts()?, db.spool_list_of(state.as_deref(), kind.as_deref(), limit)?))).await?;
    let now = mailsift_store::gateway::now_ms();
    let totals: Vec<_> = counts
        .iter()
        .map(|c| {
            serde_json::json!({
                "kind": c.kind, "state": c.state, "count": c.count,
                "oldest_age_secs": (now - c.oldest_ms).max(0) / 1000,
            })
        })
        .collect();
    let items: Vec<_> = items
        .iter()
        .map(|i| {
            serde_json::json!({
                "id": i.id, "kind": i.kind, "state": i.state, "reference_id": i.reference_id,
                "mail_from": i.mail_from, "recipient": i.recipient, "size": i.size,
                "queued_ms": i.created_ms, "attempts": i.attempts,
                "next_attempt_ms": (i.state == "pending").then_some(i.next_attempt_ms),
                "sending": i.sending(now),
                "last_error": i.last_error,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({ "totals": totals, "items": items })))
}

/// Makes a pending item due now (the gateway tries it at once). 404 when it is not there, 409 when it was
/// given up (its message is gone); an item being delivered is left to that attempt (`"sending"`).
#[utoipa::path(post, path = "/api/v1/queue/{id}/retry", params(("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 403), (status = 404), (status = 409)))]
pub async fn queue_retry(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let db = web.db.clone();
    let found = blocking(move || Ok(db.spool_get(id)?.map(|(i, _)| i.state))).await?;
    match found.as_deref() {
        None => return Err(ApiError::not_found("no such queue item")),
        Some("pending") => {}
        Some(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                "that item was given up; its message is gone and it cannot be retried",
            ))
        }
    }
    let n = mailsift_gateway::spool::retry_now(&web.gateway, Some(id)).await.map_err(ApiError::internal)?;
    tracing::info!(id, by = %caller.principal.name, "queue item retried");
    Ok(Json(serde_json::json!({ "result": if n == 1 { "due now" } else { "sending" } })))
}

/// Deletes an item for good: it is not delivered and nobody is told. 404 when it is not there.
#[utoipa::path(delete, path = "/api/v1/queue/{id}", params(("id" = i64, Path)),
    responses((status = 200, body = Object), (status = 403), (status = 404)))]
pub async fn queue_remove(
    State(web): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    caller.require_admin()?;
    let db = web.db.clone();
    if !blocking(move || Ok(db.spool_remove(id)?)).await? {
        return Err(ApiError::not_found("no such queue item"));
    }
    tracing::info!(id, by = %caller.principal.name, "queue item removed");
    Ok(Json(serde_json::json!({ "result": "removed" })))
}
