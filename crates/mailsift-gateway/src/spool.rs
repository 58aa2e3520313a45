//! The durable outbound spool: mail the gateway itself owes after it answered 250 — bounces for recipients
//! the next hop refused while it accepted others (RFC 3464), copies made by filter rules, quarantine
//! digests — is committed to the gateway database (`mailsift_store`'s spool table, fsynced) before the 250
//! is sent or the digest's high-water mark moves, and delivered from there.
//!
//! Delivery: right after spooling, [`kick`] tries the new items at once (the common case: the next hop is
//! up and the item is gone within milliseconds); whatever fails temporarily is retried by the runner
//! ([`start`]) with exponential back-off (first retry after [`SpoolPolicy::first_retry`], doubling up to
//! [`SpoolPolicy::max_retry`]) until [`SpoolPolicy::give_up_after`]; a permanent refusal (5xx, no route)
//! ends the item at once. Both end states are logged; a given-up item stays in the table as `failed`, without
//! its message, for [`SpoolPolicy::failed_retention`].
//!
//! Restart: the runner picks up every pending item at start. An item being delivered when the process died
//! is claimed under a lease ([`SpoolPolicy::lease`], longer than any one delivery may take) and becomes due
//! again when the lease is over. So an item is delivered at least once, and more than once only when the
//! process dies between the next hop's 250 and the row's deletion (as with any queueing MTA).
//!
//! The same runner sweeps Maildir `tmp/` directories of files older than 36 hours (left by a crash between
//! writing and renaming), at start and hourly, as Maildir readers expect of the delivering agent.
//!
//! What it is not: a queue for the mail clients hand us. Their messages are relayed before the 250 (see
//! `deliver.rs`); only mail the gateway makes itself waits here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use mailsift_store::gateway::now_ms;
use mailsift_store::{NewSpoolItem, SpoolItem};

use crate::relay::{RelayError, Reply};
use crate::route::Route;
use crate::state::{Gateway, GatewayState};
use crate::text::sanitize;

/// How the spool retries. The defaults suit a production gateway; tests shorten them.
#[derive(Debug, Clone)]
pub struct SpoolPolicy {
    /// Wait after the first failed attempt; each later failure doubles it.
    pub first_retry: Duration,
    /// The longest wait between two attempts.
    pub max_retry: Duration,
    /// An item still not delivered this long after it was spooled is given up (and logged).
    pub give_up_after: Duration,
    /// How long a claimed item is left to its claimer before it is due again. Longer than one delivery can
    /// take (connect plus every reply timeout of the relay client), so a slow delivery is not doubled.
    pub lease: Duration,
    /// Items claimed per pass of the runner (delivered concurrently).
    pub batch: usize,
    /// The longest the runner sleeps when nothing is due, so items spooled by another process (the CLI)
    /// are seen.
    pub poll: Duration,
    /// How long given-up items are kept for the operator.
    pub failed_retention: Duration,
    /// Maildir `tmp/` files older than this are deleted (36 hours, the Maildir convention).
    pub maildir_tmp_max_age: Duration,
    /// How long outbound mail in the queue is retried before it is bounced; `None`: `[smtp.outbound]
    /// queue_lifetime_hours` (tests shorten it here).
    pub outbound_lifetime: Option<Duration>,
}

impl Default for SpoolPolicy {
    fn default() -> Self {
        SpoolPolicy {
            first_retry: Duration::from_secs(60),
            max_retry: Duration::from_secs(3600),
            give_up_after: Duration::from_secs(5 * 86_400),
            lease: Duration::from_secs(30 * 60),
            batch: 16,
            poll: Duration::from_secs(30),
            failed_retention: Duration::from_secs(30 * 86_400),
            maildir_tmp_max_age: Duration::from_secs(36 * 3600),
            outbound_lifetime: None,
        }
    }
}

/// The kind of the items that are the outbound queue: mail of the organisation's users and servers to other
/// domains, accepted once queued (see `effects.rs`). When one is given up, its sender gets a bounce.
pub const OUTBOUND: &str = "outbound";

/// What one attempt at an item came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The next hop took it (its reply); the item is gone.
    Delivered(String),
    /// A temporary failure; the item is due again later.
    Retry(String),
    /// Given up (a permanent refusal, no route, or too old); the item is kept as failed.
    Failed(String),
    /// Not attempted: not due, or another runner holds it.
    NotClaimed,
}

fn policies() -> &'static Mutex<HashMap<PathBuf, SpoolPolicy>> {
    static POLICIES: OnceLock<Mutex<HashMap<PathBuf, SpoolPolicy>>> = OnceLock::new();
    POLICIES.get_or_init(Default::default)
}

/// Sets the retry policy of the spool in `gateway`'s database (for every gateway of this process on that
/// data directory); without it, [`SpoolPolicy::default`].
pub fn set_policy(gateway: &Gateway, policy: SpoolPolicy) {
    policies().lock().unwrap_or_else(|e| e.into_inner()).insert(gateway.db.path().to_path_buf(), policy);
}

pub fn policy(gateway: &Gateway) -> SpoolPolicy {
    policies().lock().unwrap_or_else(|e| e.into_inner()).get(gateway.db.path()).cloned().unwrap_or_default()
}

/// Wakes every runner of this process (something was spooled or became due).
fn wake() -> &'static tokio::sync::Notify {
    static WAKE: OnceLock<tokio::sync::Notify> = OnceLock::new();
    WAKE.get_or_init(tokio::sync::Notify::new)
}

/// Spools messages durably (committed and fsynced when this returns `Ok`); returns their ids.
pub async fn put(gateway: &Arc<Gateway>, items: Vec<(NewSpoolItem, Vec<u8>)>) -> Result<Vec<i64>, String> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let db = gateway.db.clone();
    match tokio::task::spawn_blocking(move || db.spool_put(items)).await {
        Ok(Ok(ids)) => Ok(ids),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("spool write task failed: {e}")),
    }
}

/// Tries the given (just spooled) items now, in the background; what fails is left to the runner.
pub fn kick(gateway: &Arc<Gateway>, ids: Vec<i64>) {
    if ids.is_empty() {
        return;
    }
    let gateway = gateway.clone();
    tokio::spawn(async move {
        deliver_ids(&gateway, &ids).await;
        wake().notify_waiters();
    });
}

/// Tries the given items now (each only if it is due and nobody else holds it), concurrently; returns what
/// each attempt came to, in order.
pub async fn deliver_ids(gateway: &Arc<Gateway>, ids: &[i64]) -> Vec<(i64, Attempt)> {
    let policy = policy(gateway);
    let mut tasks = Vec::with_capacity(ids.len());
    for &id in ids {
        let (gateway, policy) = (gateway.clone(), policy.clone());
        tasks.push(tokio::spawn(async move {
            let claimed = claim(&gateway, &policy, Some(id), 1).await;
            match claimed.into_iter().next() {
                Some((item, raw)) => attempt(&gateway, &policy, item, raw).await,
                None => Attempt::NotClaimed,
            }
        }));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (&id, task) in ids.iter().zip(tasks) {
        out.push((id, task.await.unwrap_or_else(|e| Attempt::Retry(format!("delivery task failed: {e}")))));
    }
    out
}

/// One pass: claims up to a batch of due items and tries them concurrently. Returns how many were claimed.
pub async fn run_due(gateway: &Arc<Gateway>) -> usize {
    let policy = policy(gateway);
    let claimed = claim(gateway, &policy, None, policy.batch.max(1)).await;
    let n = claimed.len();
    let mut tasks = Vec::with_capacity(n);
    for (item, raw) in claimed {
        let (gateway, policy) = (gateway.clone(), policy.clone());
        tasks.push(tokio::spawn(async move { attempt(&gateway, &policy, item, raw).await }));
    }
    for t in tasks {
        let _ = t.await;
    }
    n
}

/// Starts the runner: it delivers what is due (everything pending at once after a restart), then sleeps
/// until the next item is due, something new is spooled, or [`SpoolPolicy::poll`] passes; it also sweeps
/// Maildir `tmp/` at start and hourly, and drops given-up items past their retention. It stops when the
/// gateway shuts down.
pub fn start(gateway: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = gateway.shutdown_signal();
        let mut last_upkeep: Option<tokio::time::Instant> = None;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let policy = policy(&gateway);
            if last_upkeep.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                last_upkeep = Some(tokio::time::Instant::now());
                upkeep(&gateway, &policy).await;
            }
            // Registered before looking, so a wake-up between the look and the sleep is not missed.
            let woken = wake().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            // A full batch means there may be more due: go again at once (bounded by what is due now).
            let mut passes = 0;
            while run_due(&gateway).await >= policy.batch.max(1) && passes < 1000 {
                passes += 1;
            }
            let db = gateway.db.clone();
            let next = tokio::task::spawn_blocking(move || db.spool_next_due()).await.ok().and_then(Result::ok);
            let wait = match next.flatten() {
                Some(due) => Duration::from_millis((due - now_ms()).max(0) as u64).min(policy.poll),
                None => policy.poll,
            };
            tokio::select! {
                _ = tokio::time::sleep(wait.max(Duration::from_millis(10))) => {}
                _ = &mut woken => {}
                _ = shutdown.changed() => {}
            }
        }
    })
}

/// The hourly chores: Maildir `tmp/` leftovers, given-up items past their retention.
async fn upkeep(gateway: &Arc<Gateway>, policy: &SpoolPolicy) {
    let root = gateway.data_dir.join("maildir");
    let max_age = policy.maildir_tmp_max_age;
    match tokio::task::spawn_blocking(move || crate::route::sweep_maildir_tmp(&root, max_age)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "maildir tmp leftovers removed"),
        Err(e) => tracing::warn!(error = %e, "maildir tmp sweep failed"),
    }
    let db = gateway.db.clone();
    let before = now_ms() - policy.failed_retention.as_millis() as i64;
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || db.spool_purge_failed(before)).await {
        tracing::warn!(error = %e, "spool: purge of given-up items failed");
    }
}

async fn claim(
    gateway: &Arc<Gateway>,
    policy: &SpoolPolicy,
    only: Option<i64>,
    limit: usize,
) -> Vec<(SpoolItem, Vec<u8>)> {
    let db = gateway.db.clone();
    let now = now_ms();
    let lease_until = now + policy.lease.as_millis() as i64;
    match tokio::task::spawn_blocking(move || db.spool_claim(now, lease_until, limit, only)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "spool: claiming due items failed");
            Vec::new()
        }
        Err(e) => {
            tracing::error!(error = %e, "spool: claim task failed");
            Vec::new()
        }
    }
}

/// The wait before attempt `attempts + 1`: `first_retry` doubled per earlier failure, at most `max_retry`.
pub fn backoff(policy: &SpoolPolicy, attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    policy.first_retry.saturating_mul(1u32 << doublings).min(policy.max_retry)
}

/// Where an item goes, as the per-destination limit counts it: the smarthost, the recipient domain (its
/// MX hosts), the next hop, the Maildir.
fn destination(route: &Route) -> String {
    match route {
        Route::NextHop(t) | Route::Smarthost(t) => t.to_ascii_lowercase(),
        Route::Mx(domain) => domain.to_ascii_lowercase(),
        Route::Maildir => "maildir".into(),
        Route::Report(_) => "report".into(),
    }
}

/// A delivery slot towards `dest`: at most `limit` deliveries to one destination at once, over every runner
/// of this process (as Postfix's per-destination concurrency). The map keeps one entry per destination
/// seen; it is cleared of idle entries when it grows past a bound.
async fn slot(dest: String, limit: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
    type Slots = Mutex<HashMap<String, (usize, Arc<tokio::sync::Semaphore>)>>;
    static SLOTS: OnceLock<Slots> = OnceLock::new();
    let limit = limit.max(1);
    let sem = {
        let mut slots = SLOTS.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
        if slots.len() >= 4096 {
            slots.retain(|_, (n, sem)| sem.available_permits() < *n);
        }
        let entry = slots.entry(dest).or_insert_with(|| (limit, Arc::new(tokio::sync::Semaphore::new(limit))));
        if entry.0 != limit {
            // The limit was changed by a reload: new deliveries use a new gate.
            *entry = (limit, Arc::new(tokio::sync::Semaphore::new(limit)));
        }
        entry.1.clone()
    };
    sem.acquire_owned().await.ok()
}

/// The bounce telling `sender` that `refused` (each recipient with the reply it got) did not get the message
/// `original` (RFC 3464), for the spool. Never for the null sender (no bounce loops), nor when the sender
/// cannot be reached.
pub fn bounce(
    state: &GatewayState,
    sender: &str,
    refused: &[(String, Reply)],
    original: &[u8],
    id: &str,
) -> Option<(NewSpoolItem, Vec<u8>)> {
    if sender.is_empty() {
        return None;
    }
    let msg = crate::dsn::delivery_status_notification(
        &state.config.hostname,
        sender,
        refused,
        original,
        id,
        mailsift_engine::unix_now(),
    )?;
    if state.route_for(sender, true).is_none() {
        tracing::warn!(reference = %id, to = %sanitize(sender, 320), "bounce: no route to the sender");
        return None;
    }
    let item = NewSpoolItem {
        kind: "bounce".into(),
        reference_id: id.to_string(),
        mail_from: String::new(),
        recipient: sender.to_string(),
        outbound: true,
    };
    Some((item, msg))
}

/// Makes queued items due now (`id`, or every pending item) and wakes the runner; returns how many. Items
/// being delivered are left to their attempt.
pub async fn retry_now(gateway: &Arc<Gateway>, id: Option<i64>) -> Result<usize, String> {
    let db = gateway.db.clone();
    let n = tokio::task::spawn_blocking(move || db.spool_due_now(id))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    wake().notify_waiters();
    Ok(n)
}

/// How long an item of `kind` is retried before it is given up.
fn lifetime(state: &GatewayState, policy: &SpoolPolicy, kind: &str) -> Duration {
    if kind == OUTBOUND {
        policy
            .outbound_lifetime
            .unwrap_or(Duration::from_secs(state.config.outbound.queue_lifetime_hours.saturating_mul(3600)))
    } else {
        policy.give_up_after
    }
}

/// Delivers one claimed item and records the outcome.
async fn attempt(gateway: &Arc<Gateway>, policy: &SpoolPolicy, item: SpoolItem, raw: Vec<u8>) -> Attempt {
    let state = gateway.state();
    let result = match state.route_for(&item.recipient, item.outbound) {
        None => Attempt::Failed(format!("550 5.1.2 no route to {}", item.recipient)),
        Some(route) => {
            let _slot = if item.kind == OUTBOUND {
                slot(destination(&route), state.config.outbound.max_per_destination).await
            } else {
                None
            };
            let rcpts = [item.recipient.clone()];
            match crate::delivery::deliver(gateway, &state, &route, &item.mail_from, &rcpts, &raw).await {
                Ok(d) if !d.accepted.is_empty() => Attempt::Delivered(d.reply.to_string()),
                Ok(d) => match d.refused.into_iter().next() {
                    Some((_, reply)) if reply.code >= 500 => Attempt::Failed(reply.to_string()),
                    Some((_, reply)) => Attempt::Retry(reply.to_string()),
                    None => Attempt::Retry(format!("no recipient accepted: {}", d.reply)),
                },
                Err(RelayError::Permanent(reply)) => Attempt::Failed(reply.to_string()),
                Err(RelayError::Temporary(why)) | Err(RelayError::Local(why)) => Attempt::Retry(why),
            }
        }
    };
    let now = now_ms();
    let result = match result {
        Attempt::Retry(why) if now - item.created_ms >= lifetime(&state, policy, &item.kind).as_millis() as i64 => {
            Attempt::Failed(format!("given up after {} attempts; the last: {why}", item.attempts))
        }
        other => other,
    };
    // Queued outbound mail that will not be delivered: its sender is told (RFC 3464), through the spool
    // too. The bounce is committed before the item is marked failed; if that fails, the item stays
    // pending and is tried (and given up) again, so the bounce is never lost.
    let result = match result {
        Attempt::Failed(why) if item.kind == OUTBOUND => {
            match outbound_bounce(gateway, &state, &item, &raw, &why).await {
                Ok(()) => {
                    crate::counters::Counters::bump(&gateway.counters.outbound_bounced);
                    Attempt::Failed(why)
                }
                Err(e) => Attempt::Retry(format!("{why} (the bounce could not be spooled: {e})")),
            }
        }
        Attempt::Delivered(reply) if item.kind == OUTBOUND => {
            crate::counters::Counters::bump(&gateway.counters.outbound_delivered);
            Attempt::Delivered(reply)
        }
        other => other,
    };
    let db = gateway.db.clone();
    let (id, what) = (item.id, result.clone());
    let next = now + backoff(policy, item.attempts).as_millis() as i64;
    let recorded = tokio::task::spawn_blocking(move || match &what {
        Attempt::Delivered(_) => db.spool_done(id).map(|_| ()),
        Attempt::Retry(why) => db.spool_retry(id, next, why),
        Attempt::Failed(why) => db.spool_fail(id, now, why),
        Attempt::NotClaimed => Ok(()),
    })
    .await;
    let (kind, rcpt, reference) = (&item.kind, &item.recipient, &item.reference_id);
    match &result {
        Attempt::Delivered(reply) => {
            tracing::info!(id = item.id, kind = %kind, to = %rcpt, reference = %reference, reply = %reply, "spool: delivered")
        }
        Attempt::Retry(why) => tracing::warn!(
            id = item.id, kind = %kind, to = %rcpt, reference = %reference, attempts = item.attempts, error = %why,
            "spool: delivery deferred"
        ),
        Attempt::Failed(why) => tracing::error!(
            id = item.id, kind = %kind, to = %rcpt, reference = %reference, attempts = item.attempts, error = %why,
            "spool: delivery failed for good"
        ),
        Attempt::NotClaimed => {}
    }
    match recorded {
        Ok(Ok(())) => {}
        // The lease keeps the item from a second attempt until it ends; then it is tried again (delivered
        // twice in the worst case, never lost).
        Ok(Err(e)) => tracing::error!(id = item.id, error = %e, "spool: outcome not recorded"),
        Err(e) => tracing::error!(id = item.id, error = %e, "spool: outcome task failed"),
    }
    result
}

/// Spools the bounce of a queued outbound item that was given up (`why`: the refusal, or the expiry with
/// the last error), and kicks it.
async fn outbound_bounce(
    gateway: &Arc<Gateway>,
    state: &GatewayState,
    item: &SpoolItem,
    raw: &[u8],
    why: &str,
) -> Result<(), String> {
    let reply = refusal_of(why);
    let Some(b) = bounce(state, &item.mail_from, &[(item.recipient.clone(), reply)], raw, &item.reference_id) else {
        return Ok(());
    };
    let ids = put(gateway, vec![b]).await?;
    kick(gateway, ids);
    Ok(())
}

/// The reply a bounce reports for a given-up item: the next hop's own permanent refusal when that ended it
/// (`550 5.1.1 ...`), else the expiry (`4.4.7`, RFC 3463) with the last temporary error.
fn refusal_of(why: &str) -> Reply {
    let code = why.get(..3).and_then(|c| c.parse::<u16>().ok()).filter(|c| (500..600).contains(c));
    match code {
        Some(code) => Reply { code, text: why.get(4..).unwrap_or("").to_string() },
        None => Reply { code: 450, text: format!("4.4.7 Delivery time expired: {why}") },
    }
}
