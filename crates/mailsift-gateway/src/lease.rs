//! Jobs one node does alone (the quarantine digest's schedule, the DMARC reports owed to other domains),
//! held by a lease in the shared store (see `mailsift_store`'s leases): taken or renewed before a run, and
//! renewed beside the run, so a run longer than the lease is not started again by another node.

use std::future::Future;
use std::time::Duration;

use mailsift_store::Database;

/// Takes or renews lease `name` for `holder` for `lease` from now. `None` when the store could not answer.
pub async fn renew(db: &Database, name: &'static str, holder: &str, lease: Duration) -> Option<bool> {
    let (db, me) = (db.clone(), holder.to_string());
    let now_ms = mailsift_store::gateway::now_ms();
    let until_ms = now_ms + lease.as_millis() as i64;
    tokio::task::spawn_blocking(move || db.lease_acquire(name, &me, now_ms, until_ms)).await.ok().and_then(Result::ok)
}

/// Runs `work` while renewing the lease every third of `lease`. `None` when another node took the lease
/// during the run (renewals missed for a whole lease): the work stops there, and what it had committed stays.
/// A renewal the store could not answer is tried again; only another holder stops the work.
pub async fn while_held<F: Future>(
    db: &Database,
    name: &'static str,
    holder: &str,
    lease: Duration,
    work: F,
) -> Option<F::Output> {
    let keep = async {
        loop {
            tokio::time::sleep(lease / 3).await;
            if renew(db, name, holder, lease).await == Some(false) {
                return;
            }
        }
    };
    tokio::select! {
        out = work => Some(out),
        () = keep => None,
    }
}
