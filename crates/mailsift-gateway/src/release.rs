//! Releasing a quarantined message: it goes to its recipient through the normal delivery path (the domain's
//! next hop or Maildir; outbound mail through the smarthost or MX), with a header saying who released it.
//!
//! Exactly once: the store's claim marks the copy released before delivery (of two clicks only one wins);
//! a delivery that fails gives the claim back, so the release can be tried again.

use std::sync::Arc;

use crate::delivery;
use crate::relay::RelayError;
use crate::state::Gateway;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("quarantine item {0} does not exist")]
    NotFound(i64),
    #[error("quarantine item {0} was already released")]
    AlreadyReleased(i64),
    #[error("quarantine item {id}: no route to {rcpt} (the domain is no longer configured)")]
    NoRoute { id: i64, rcpt: String },
    #[error("quarantine item {id}: delivery failed: {reason}")]
    Delivery { id: i64, reason: String },
    #[error("quarantine item {0} holds a virus: only an administrator can release it")]
    Virus(i64),
    #[error("{0}")]
    Store(#[from] mailsift_store::StoreError),
}

/// What a release did.
#[derive(Debug, Clone)]
pub struct Released {
    pub id: i64,
    pub recipient: String,
    pub mail_from: String,
    /// What the next hop said (or "maildir").
    pub reply: String,
    /// The message as delivered (for reporting it as not spam).
    pub message: Vec<u8>,
}

/// Releases one quarantined copy to its recipient. `by` is recorded in the header (an administrator's name,
/// "digest link", the user's address). A copy in the virus quarantine is refused ([`ReleaseError::Virus`]):
/// only [`release_as_admin`] releases it.
pub async fn release(gateway: &Arc<Gateway>, id: i64, by: &str) -> Result<Released, ReleaseError> {
    release_checked(gateway, id, by, false).await
}

/// As [`release`], for an administrator: a copy in the virus quarantine is released too.
pub async fn release_as_admin(gateway: &Arc<Gateway>, id: i64, by: &str) -> Result<Released, ReleaseError> {
    release_checked(gateway, id, by, true).await
}

async fn release_checked(gateway: &Arc<Gateway>, id: i64, by: &str, admin: bool) -> Result<Released, ReleaseError> {
    let db = gateway.db.clone();
    let (item, raw) = tokio::task::spawn_blocking(move || -> Result<_, mailsift_store::StoreError> {
        Ok((db.quarantine_get(id)?, db.quarantine_raw(id)?))
    })
    .await
    .map_err(|e| ReleaseError::Delivery { id, reason: e.to_string() })??;
    let (Some(item), Some(raw)) = (item, raw) else { return Err(ReleaseError::NotFound(id)) };
    if item.released_at.is_some() {
        return Err(ReleaseError::AlreadyReleased(id));
    }
    if item.is_virus() && !admin {
        return Err(ReleaseError::Virus(id));
    }
    let state = gateway.state();
    let route = state
        .route_for(&item.recipient, item.direction == "outbound")
        .ok_or_else(|| ReleaseError::NoRoute { id, rcpt: item.recipient.clone() })?;
    let now = mailsift_engine::unix_now();
    if !gateway.db.quarantine_claim_release(id, now)? {
        return Err(ReleaseError::AlreadyReleased(id));
    }
    let mut message = format!(
        "X-Mailsift-Released: from quarantine item {id} (ref {}) by {} on {}\r\n",
        item.reference_id,
        crate::text::sanitize(by, 100),
        crate::text::rfc5322_date(now)
    )
    .into_bytes();
    message.extend_from_slice(&raw);
    let mail_from = item.mail_from.clone().unwrap_or_default();
    let rcpts = [item.recipient.clone()];
    let result = delivery::deliver(gateway, &state, &route, &mail_from, &rcpts, &message).await;
    match result {
        Ok(d) if !d.accepted.is_empty() => {
            tracing::info!(id, rcpt = %item.recipient, by = %crate::text::sanitize(by, 100), "released from quarantine");
            Ok(Released { id, recipient: item.recipient, mail_from, reply: d.reply.to_string(), message })
        }
        other => {
            gateway.db.quarantine_unclaim_release(id)?;
            let reason = match other {
                Ok(d) => d.refused.first().map(|(_, r)| r.to_string()).unwrap_or_default(),
                Err(RelayError::Temporary(t)) | Err(RelayError::Local(t)) => t,
                Err(RelayError::Permanent(r)) => r.to_string(),
            };
            Err(ReleaseError::Delivery { id, reason })
        }
    }
}
