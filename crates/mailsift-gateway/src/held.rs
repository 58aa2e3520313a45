//! The account guard's effects on the running gateway (`guard.rs` decides, pure of the gateway): a held
//! user's message turned into quarantine, the administrators' notice spooled and the holds kept in the store
//! in one transaction, and the release of a hold. Apart from `guard.rs` so that `config` (which gathers the
//! guard's settings) does not depend, through the guard, on `state` and `spool`.

use crate::guard::{Hold, Judgement, HELD_KEY};

/// Counts an authenticated user's outbound message in the guard and, when the user is held, turns the
/// disposition into quarantine for every recipient (the sender gets 250: the message is safe in the
/// quarantine, an administrator releases it or not). The message that makes the user held also spools the
/// administrators' notice and keeps the holds in the store, in one transaction, before the answer.
/// Returns an error (the caller answers 451) only when that could not be stored.
pub async fn check(
    gateway: &std::sync::Arc<crate::state::Gateway>,
    state: &crate::state::GatewayState,
    env: &mailsift_engine::Envelope,
    verdict: &mut mailsift_engine::Verdict,
    disposition: &mut crate::disposition::Disposition,
) -> Result<(), String> {
    use crate::disposition::Disposition;
    let Some(user) = env.authenticated_user.as_deref().filter(|u| !u.trim().is_empty()) else { return Ok(()) };
    let Some(spam) = disposition.is_spam() else { return Ok(()) };
    let config = &state.config.account_guard;
    let guard = &gateway.account_guard;
    let hold = match guard.observe(config, user, spam, mailsift_engine::unix_now()) {
        Judgement::Pass => return Ok(()),
        Judgement::Held(h) => h,
        Judgement::NewHold(h) => {
            gateway.counters.accounts_held.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(user = %crate::text::sanitize(&h.user, 100), reason = %h.reason, "account held");
            let notice = notice(state, &h, &verdict.id);
            let db = gateway.db.clone();
            let settings = vec![(HELD_KEY.to_string(), guard.holds_json())];
            let stored = tokio::task::spawn_blocking(move || db.spool_put_with_settings(notice, settings)).await;
            match stored {
                Ok(Ok(ids)) => crate::spool::kick(gateway, ids),
                Ok(Err(e)) => {
                    guard.release(&h.user);
                    return Err(format!("account hold not stored: {e}"));
                }
                Err(e) => {
                    guard.release(&h.user);
                    return Err(format!("account hold task failed: {e}"));
                }
            }
            h
        }
    };
    if let Disposition::Accept(a) = disposition {
        let mut deliver = std::mem::take(&mut a.deliver);
        a.quarantine.append(&mut deliver);
        a.copies.clear();
        a.tag = false;
        verdict.decided_by = Some(format!("account held: {}", hold.reason));
    }
    Ok(())
}

/// Lifts a hold and keeps the change in the store. Returns whether the user was held.
pub fn release(gateway: &crate::state::Gateway, user: &str) -> Result<bool, String> {
    let guard = &gateway.account_guard;
    let was = guard.release(user);
    if was {
        gateway.db.setting_put(HELD_KEY, &guard.holds_json()).map_err(|e| e.to_string())?;
    }
    Ok(was)
}

/// The administrators' notice of a new hold: one spool item per address.
fn notice(
    state: &crate::state::GatewayState,
    h: &Hold,
    reference: &str,
) -> Vec<(mailsift_store::NewSpoolItem, Vec<u8>)> {
    use crate::text::{rfc5322_date, sanitize};
    let config = &state.config.account_guard;
    let to: Vec<String> =
        if config.notify.is_empty() { vec![state.postmaster().to_string()] } else { config.notify.clone() };
    let from = state.postmaster().to_string();
    let user = sanitize(&h.user, 100);
    let reason = sanitize(&h.reason, 300);
    let now = mailsift_engine::unix_now();
    let body = format!(
        "From: mailsift <{from}>\r\nTo: {}\r\nSubject: Account held: {user}\r\nDate: {}\r\n\
         Message-ID: <held.{}.{}@mailsift>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         mailsift held the account {user}: {reason}.\r\n\r\n\
         Its outbound mail now goes to the quarantine instead of out (the sender is not told).\r\n\
         This hour: {} messages; today: {}; usual hourly volume: {:.1}.\r\n\
         Message that tripped the hold: ref {reference}.\r\n\r\n\
         If the account is compromised, change its password first. Then release the hold in the console\r\n\
         (Held accounts) and release or delete its quarantined messages.\r\n",
        to.join(", "),
        rfc5322_date(now),
        now,
        reference,
        h.hour_count,
        h.day_count,
        h.baseline,
    );
    to.into_iter()
        .map(|rcpt| {
            let item = mailsift_store::NewSpoolItem {
                kind: "account-held".into(),
                reference_id: reference.to_string(),
                mail_from: String::new(),
                outbound: true,
                recipient: rcpt,
            };
            (item, body.clone().into_bytes())
        })
        .collect()
}
