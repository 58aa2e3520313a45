//! DMARC aggregate reports received for our domains, summarised: which sources send as our domains and whether they pass.

use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::{blocking, ApiError, AppState, Caller};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReceivedParams {
    /// Reports whose period ended in the last N days (default 7, at most 366).
    pub days: Option<u32>,
    /// Only this one of our domains.
    pub domain: Option<String>,
}

/// Per our domain and sending source (IP), what the DMARC aggregate reports others sent us say over the
/// last days: messages, how many passed DMARC, aligned DKIM, aligned SPF, on how many days and by how many
/// reporters. Administrators see every domain; a domain administrator sees the domains of the account.
#[utoipa::path(get, path = "/api/v1/dmarc/received", params(ReceivedParams),
    responses((status = 200, body = Vec<Object>), (status = 403)))]
pub async fn received(
    State(web): State<AppState>,
    caller: Caller,
    Query(p): Query<ReceivedParams>,
) -> Result<Json<Vec<serde_json::Value>>, ApiError> {
    caller.require_manager()?;
    if let Some(d) = &p.domain {
        if !caller.principal.manages_domain(d) {
            return Err(ApiError::forbidden("not one of your domains"));
        }
    }
    let since = mailsift_engine::unix_now() - i64::from(p.days.unwrap_or(7).min(366)) * 86_400;
    let db = web.gateway.db.clone();
    let domain = p.domain.clone();
    let rows =
        blocking(move || db.dmarc_received_summary(since, domain.as_deref()).map_err(ApiError::internal)).await?;
    let principal = caller.principal.clone();
    Ok(Json(
        rows.into_iter()
            .filter(|r| principal.manages_domain(&r.domain))
            .map(|r| serde_json::to_value(r).unwrap_or_default())
            .collect(),
    ))
}
