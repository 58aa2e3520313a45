//! The quarantine digest: on a schedule, every recipient with newly quarantined inbound mail gets one email
//! listing it (sender, subject, date, the reason in a word) with links to release it, release it and
//! allow the sender, or block the sender, and a link to their whole quarantine.
//!
//! Each link carries a signed, expiring token (`tokens.rs`) for that one action on that one message by
//! that recipient. Opening a link shows what it will do and a button; only the button's POST acts, so a
//! mail scanner or a browser that prefetches links cannot release anything.
//!
//! Digests go through the gateway's durable outbound spool (`mailsift_gateway::spool`): every digest of a run
//! is spooled in the same transaction that moves the high-water mark of announced items (`digest.last_id`),
//! so a crash or a restart neither repeats nor skips one, and a digest whose next hop is down is retried
//! with back-off by the spool's runner instead of being lost. The run tries each digest at once and reports
//! which were delivered and which wait in the spool (or were refused for good), logged and counted.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use mail_builder::encoders::base64::Base64Encoder;
use mail_builder::headers::address::Address as HeaderAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use mailsift_engine::address::Address;
use mailsift_gateway::lease;
use mailsift_gateway::spool::Attempt;
use mailsift_store::{NewSpoolItem, QuarantineItem, QuarantineQuery};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::{blocking, ApiError, AppState, Caller};
use crate::tokens::{Claims, Purpose};

const LAST_ID: &str = "digest.last_id";
const LAST_RUN: &str = "digest.last_run";

/// What one run did.
#[derive(Debug, Default, Clone, Serialize, ToSchema)]
pub struct DigestRun {
    /// Recipients sent a digest.
    pub sent: Vec<String>,
    /// Recipients whose digest was not delivered at once, with the reason: still in the spool (retried with
    /// back-off) or refused for good.
    pub failed: Vec<(String, String)>,
    /// Quarantine items announced.
    pub items: usize,
}

/// Starts the schedule: a run whenever `interval_hours` passed since the last one (checked every third of
/// `lease_secs`, a minute by default, so a restart does not reset the clock).
pub fn spawn_scheduler(web: AppState) {
    if !web.config.digest.enabled {
        return;
    }
    // Several nodes on one store each run this schedule; the one holding the digest's lease sends, the
    // others wait. The holder renews the lease at each check; if it dies, the lease runs out and another node
    // takes over, and the shared schedule (the last run's time is in the store) goes on from where it was.
    let holder = format!("{}:{}", std::process::id(), crate::tokens::random_id());
    // Renewed every third of the lease: a holder that misses one check keeps it, and a dead one's schedule is
    // taken over within one lease.
    let lease = Duration::from_secs(web.config.digest.lease_secs);
    let check_every = lease / 3;
    tokio::spawn(async move {
        let mut shutdown = web.gateway.shutdown_signal();
        loop {
            let held = lease::renew(&web.db, DIGEST_LEASE, &holder, lease).await.unwrap_or(false);
            if !held {
                tokio::select! {
                    _ = tokio::time::sleep(check_every) => continue,
                    _ = shutdown.changed() => return,
                }
            }
            let db = web.db.clone();
            let last = tokio::task::spawn_blocking(move || db.setting_get(LAST_RUN)).await.ok().and_then(Result::ok);
            let last: i64 = last.flatten().and_then(|s| s.parse().ok()).unwrap_or(0);
            let now = mailsift_engine::unix_now();
            if now - last >= web.config.digest.interval_hours as i64 * 3600 {
                // A run can take longer than the lease (many recipients, a slow next hop, a busy machine): the
                // lease is renewed beside it, or another node would find the period still due (its mark is
                // written with the spooled digests, at the end) and send the same digests again.
                let run = lease::while_held(&web.db, DIGEST_LEASE, &holder, lease, send_digests(&web)).await;
                match run {
                    None => {
                        tracing::warn!("quarantine digests stopped: the lease passed to another node, which sends them")
                    }
                    Some(Ok(run)) if run.items > 0 => {
                        tracing::info!(
                            sent = run.sent.len(),
                            failed = run.failed.len(),
                            items = run.items,
                            "quarantine digests"
                        )
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => tracing::error!(error = %e.message, "quarantine digests failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(check_every) => {}
                _ = shutdown.changed() => {
                    // Given up at a clean stop, so another node takes the schedule over at once.
                    let (db, me) = (web.db.clone(), holder.clone());
                    let _ = tokio::task::spawn_blocking(move || db.lease_release(DIGEST_LEASE, &me)).await;
                    return;
                }
            }
        }
    });
}

/// The lease whose holder runs the digest's schedule (see `mailsift_store`'s leases).
const DIGEST_LEASE: &str = "digest";

/// The reason in a word or two, for the digest's table.
pub fn reason_word(reason: &str) -> &'static str {
    let r = reason.to_ascii_lowercase();
    if r.contains("blocked sender") {
        "blocked sender"
    } else if r.contains("rule") {
        "filter rule"
    } else if r.contains("dmarc") {
        "failed DMARC"
    } else if r.contains("spoof") {
        "spoofing"
    } else if r.contains("virus") || r.contains("malware") {
        "malware"
    } else if r.contains("phish") {
        "phishing"
    } else if r.contains("spamtrap") {
        "spamtrap"
    } else {
        "spam"
    }
}

/// Sends one digest per recipient for the inbound items quarantined since the last run.
pub async fn send_digests(web: &AppState) -> Result<DigestRun, ApiError> {
    let db = web.db.clone();
    let (last_id, items) = blocking(move || {
        let last_id: i64 = db.setting_get(LAST_ID)?.and_then(|s| s.parse().ok()).unwrap_or(0);
        let items =
            db.quarantine_list(&QuarantineQuery { min_id: Some(last_id), limit: 100_000, ..Default::default() })?;
        Ok((last_id, items))
    })
    .await?;
    let high = items.iter().map(|i| i.id).max().unwrap_or(last_id);
    let mut by_rcpt: BTreeMap<String, Vec<QuarantineItem>> = BTreeMap::new();
    for item in items.into_iter().filter(|i| i.direction == "inbound" && i.released_at.is_none() && !i.is_virus()) {
        by_rcpt.entry(item.recipient.to_ascii_lowercase()).or_default().push(item);
    }
    let mut run = DigestRun::default();
    let state = web.gateway.state();
    let from = if web.config.digest.from.is_empty() {
        format!("postmaster@{}", state.config.hostname)
    } else {
        web.config.digest.from.clone()
    };
    let mut spooled = Vec::new();
    let mut failed = Vec::new();
    for (rcpt, mut list) in by_rcpt {
        list.sort_by_key(|i| i.id);
        run.items += list.len();
        if state.route_for(&rcpt, false).is_none() {
            failed.push((rcpt.clone(), format!("no route to {rcpt}")));
            continue;
        }
        // Whether each sender is verified, in words, from the messages' log rows: a spoof and the real
        // newsletter must not look the same here.
        let db = web.db.clone();
        let refs: Vec<(i64, String, Option<String>)> = list
            .iter()
            .map(|i| (i.id, i.reference_id.clone(), i.from_header.clone().or(i.mail_from.clone())))
            .collect();
        let auth = blocking(move || {
            let mut out = std::collections::BTreeMap::new();
            for (id, reference, from) in refs {
                let q = mailsift_store::LogQuery { reference_id: Some(reference), limit: 1, ..Default::default() };
                let symbols = db.log_search(&q)?.into_iter().next().map(|e| e.symbols).unwrap_or_default();
                let domain = from.as_deref().and_then(crate::words::domain_of);
                out.insert(id, crate::words::auth(&symbols, domain.as_deref()));
            }
            Ok(out)
        })
        .await
        .unwrap_or_default();
        let message = build(web, &from, &rcpt, &list, &auth);
        let item = NewSpoolItem {
            kind: "digest".into(),
            reference_id: format!("digest-{high}"),
            mail_from: from.clone(),
            recipient: rcpt,
            outbound: false,
        };
        spooled.push((item, message));
    }
    let rcpts: Vec<String> = spooled.iter().map(|(i, _)| i.recipient.clone()).collect();
    // The digests and the new high-water mark in one transaction: announced if and only if owed.
    let db = web.db.clone();
    let now = mailsift_engine::unix_now();
    let ids = blocking(move || {
        Ok(db.spool_put_with_settings(
            spooled,
            vec![(LAST_ID.to_string(), high.to_string()), (LAST_RUN.to_string(), now.to_string())],
        )?)
    })
    .await?;
    let attempts = mailsift_gateway::spool::deliver_ids(&web.gateway, &ids).await;
    for (rcpt, (_, attempt)) in rcpts.into_iter().zip(attempts) {
        match attempt {
            Attempt::Delivered(_) => {
                web.metrics.digests_sent.fetch_add(1, Ordering::Relaxed);
                run.sent.push(rcpt);
            }
            Attempt::Retry(reason) => failed.push((rcpt, format!("in the spool, to be retried: {reason}"))),
            Attempt::NotClaimed => failed.push((rcpt, "in the spool, to be retried".into())),
            Attempt::Failed(reason) => failed.push((rcpt, reason)),
        }
    }
    for (rcpt, reason) in failed {
        web.metrics.digest_failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%rcpt, %reason, "quarantine digest not delivered");
        run.failed.push((rcpt, reason));
    }
    Ok(run)
}

/// A link for one action on one item, or (`Purpose::Digest`) to the recipient's quarantine.
pub fn link(web: &AppState, purpose: Purpose, id: i64, rcpt: &str) -> String {
    let expires = mailsift_engine::unix_now() + web.config.digest.link_days as i64 * 86_400;
    let token = web.signer.sign(&Claims { purpose, id, subject: rcpt.to_ascii_lowercase(), expires });
    format!("{}/d/{token}", web.base_url)
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The digest message, built with mail-builder: text and HTML alternatives, base64 so any next hop takes it.
pub fn build(
    web: &AppState,
    from: &str,
    rcpt: &str,
    items: &[QuarantineItem],
    auth: &std::collections::BTreeMap<i64, crate::words::AuthWords>,
) -> Vec<u8> {
    let now = mailsift_engine::unix_now();
    let mut text = format!(
        "{} message(s) addressed to you were held back as suspected spam.\r\nNothing is lost: \
         they are kept for a while in your quarantine, and you can release any of them.\r\n\r\n",
        items.len()
    );
    let mut html = format!(
        "<html><body><p>{} message(s) addressed to you were held back as suspected spam. Nothing is lost: \
         they are kept for a while in your quarantine.</p><table border=\"1\" cellpadding=\"4\">\
         <tr><th>From</th><th>Subject</th><th>Date (UTC)</th><th>Why</th><th>Sender</th><th></th></tr>",
        items.len()
    );
    for i in items {
        let sender = i.from_header.as_deref().or(i.mail_from.as_deref()).unwrap_or("(no sender)");
        let subject = i.subject.as_deref().unwrap_or("(no subject)");
        let date = mailsift_gateway::text::rfc5322_date(i.time);
        let why = reason_word(&i.reason);
        let (state, sentence) = match auth.get(&i.id) {
            Some(a) => (a.state, a.sentence.clone()),
            None => ("unknown", "Whether its sender really sent it could not be verified.".to_string()),
        };
        let verified = format!("{}: {sentence}", state.to_uppercase());
        let (release, approve, block) = (
            link(web, Purpose::Release, i.id, rcpt),
            link(web, Purpose::Approve, i.id, rcpt),
            link(web, Purpose::Block, i.id, rcpt),
        );
        text.push_str(&format!(
            "From:    {sender}\r\nSubject: {subject}\r\nDate:    {date}\r\nWhy:     {why}\r\nSender:  {verified}\r\n\
             Release:             {release}\r\nRelease and approve: {approve}\r\nBlock sender:        {block}\r\n\r\n"
        ));
        html.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a href=\"{release}\">Release</a> | \
             <a href=\"{approve}\">Release and approve sender</a> | <a href=\"{block}\">Block sender</a></td></tr>",
            html_escape(sender),
            html_escape(subject),
            html_escape(&date),
            why,
            html_escape(&verified)
        ));
    }
    let all = link(web, Purpose::Digest, 0, rcpt);
    text.push_str(&format!(
        "Your whole quarantine: {all}\r\nThe links work for {} days.\r\n",
        web.config.digest.link_days
    ));
    html.push_str(&format!(
        "</table><p><a href=\"{all}\">Open your quarantine</a>. The links work for {} days.</p></body></html>",
        web.config.digest.link_days
    ));
    let host = web.gateway.state().config.hostname.clone();
    // Base64 for both parts, whatever their text (mail-builder would pick quoted-printable for mostly
    // ASCII text): any next hop takes it, and the links stay unbroken by soft line breaks.
    let part = |content_type: &'static str, body: &str| {
        let encoded = Base64Encoder::new().wrap_lines().encode(body.as_bytes()).unwrap_or_default();
        MimePart::new(ContentType::new(content_type).attribute("charset", "utf-8"), encoded).transfer_encoding("base64")
    };
    MessageBuilder::new()
        .from(HeaderAddress::new_address(Some("mailsift quarantine"), header_address(from)))
        .to(HeaderAddress::new_address(None::<&str>, header_address(rcpt)))
        .subject(format!("Quarantine digest: {} message(s) held for you", items.len()))
        .date(now)
        .message_id(MessageId::new(format!("digest.{}@{}", crate::tokens::random_id(), header_text(&host))))
        .header("MIME-Version", Raw::new("1.0"))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .body(MimePart::new(
            ContentType::new("multipart/alternative"),
            vec![part("text/plain", &text), part("text/html", &html)],
        ))
        .write_to_vec()
        .unwrap_or_default()
}

/// An address for a header: as [`Address`] reads it, or (a stored text that does not parse) without
/// controls and spaces, so nothing stored can add a header.
fn header_address(address: &str) -> String {
    match Address::parse(address) {
        Ok(a) if !a.is_null() => a.to_string(),
        _ => header_text(address),
    }
}

fn header_text(text: &str) -> String {
    mailsift_gateway::text::sanitize(text, 320).replace(' ', "")
}

#[utoipa::path(post, path = "/api/v1/digest/send", responses((status = 200, body = DigestRun), (status = 403)))]
pub async fn send_now(State(web): State<AppState>, caller: Caller) -> Result<Json<DigestRun>, ApiError> {
    caller.require_admin()?;
    Ok(Json(send_digests(&web).await?))
}
