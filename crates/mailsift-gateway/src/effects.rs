//! Carrying out a [`Disposition`]: the quarantine, delivery on the transaction's [`Route`], the durable spool
//! for what the gateway owes once it has answered (bounces, rules' copies), the message-log row and the
//! counters. [`process`] does all of it for a front end that hands over the whole message and waits for the
//! answer (SMTP's end of data, the HTTP API); the milter uses the parts it needs ([`quarantine`], [`record`]).
//!
//! The answer is only 250 when the message is safe: accepted by the next hop, fsynced into a Maildir, or
//! committed to the quarantine. Otherwise the client gets 4xx (it retries) or the next hop's 5xx (its server
//! bounces). One transaction has one route, so one answer is true for all recipients. When the next hop
//! refuses some recipients and accepts others, the others got the message: the client hears 250 and the
//! refused recipients are reported to the sender in a bounce (RFC 3464), as a queueing MTA would.
//!
//! Nothing lives only in memory after a 250: the bounce and the copies filter rules ask for are committed to
//! the durable spool ([`crate::spool`]) before the 250 is sent (if that fails, the client hears 451 and
//! retries), and the message-log row is committed and fsynced before the answer too ([`commit_log`]).
//! A failure of our own storage (Maildir, quarantine, spool) is a `451 4.3.0` that says so without details;
//! only a next hop that cannot be reached is `451 4.4.1`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use mailsift_engine::{Direction, Envelope, Verdict};
use mailsift_evidence::DoorFacts;
use mailsift_store::{LogEntry, NewQuarantine, NewSpoolItem};

use crate::counters::Counters;
use crate::delivery::deliver;
use crate::disposition::{answer, Accepted, Answer, Disposition};
use crate::headers::{hop_count, tag_subject};
use crate::judge::{judge, log_verdict, Judged};
use crate::log::{commit_log, message_entry};
use crate::relay::RelayError;
use crate::route::Route;
use crate::state::{Gateway, GatewayState};
use crate::text::{rfc5322_date, sanitize};

/// One message as a front end hands it to the core, besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub envelope: Envelope,
    /// Where every recipient goes (one route per transaction); `None` means the Maildir.
    pub route: Option<Route>,
    /// The protocol named in the `Received:` line the gateway puts on top (`ESMTPS`...), or `None` for none.
    pub received_with: Option<String>,
    /// What the door check learned about the client at MAIL FROM (SMTP with DNS on): not asked again.
    pub door: Option<Arc<DoorFacts>>,
}

/// What was done with a message: the log's action, the answer, the next hop's words, and a reason when it
/// is not the verdict's.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub action: &'static str,
    pub answer: Answer,
    pub next_hop: Option<String>,
    pub reason: Option<String>,
}

/// The refusal of a message that has made too many hops (a mail loop), with its log row filled; `None` when
/// it has not. Every front end checks this before judging.
pub fn loop_refusal(state: &GatewayState, entry: &mut LogEntry, raw: &[u8]) -> Option<Answer> {
    if hop_count(raw) <= state.config.max_hops {
        return None;
    }
    entry.reference_id = mailsift_engine::new_reference_id();
    entry.action = "refused".into();
    entry.reason = Some("mail loop: too many Received headers".into());
    Some(answer(554, "5.4.6", "Too many hops: mail loop detected"))
}

/// The scan itself failed (a panic in a check): the row says so, it is counted, and the sender is told to
/// retry; the message is not lost and we hear about it.
pub fn scan_failure(gateway: &Gateway, entry: &mut LogEntry, error: &str) -> Answer {
    tracing::error!(error = %error, "scan failed");
    entry.reference_id = mailsift_engine::new_reference_id();
    entry.action = "tempfail".into();
    entry.reason = Some("internal scan failure".into());
    Counters::bump(&gateway.counters.tempfailed);
    answer(451, "4.3.0", "Temporary scanning failure, try again later")
}

/// Counts an answered message by its logged action, observes its latency, and commits its row (before the
/// answer goes out: a crash after a 250 cannot lose it).
pub async fn record(gateway: &Gateway, entry: LogEntry, started: Instant) {
    let c = &gateway.counters;
    Counters::bump(match entry.action.as_str() {
        "deliver" => &c.messages_delivered,
        "tag" => &c.messages_tagged,
        "quarantine" => &c.messages_quarantined,
        "reject" => &c.messages_rejected,
        _ => &c.tempfailed,
    });
    c.observe_latency(started.elapsed());
    let committing = Instant::now();
    commit_log(gateway, entry).await;
    c.observe_stage(crate::Stage::LogCommit, committing.elapsed());
}

/// Judges a whole message, carries out its disposition and returns the answer: SMTP's end of data.
pub async fn process(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    submission: Submission,
    data: Vec<u8>,
) -> Answer {
    if let Some(Route::Report(side)) = submission.route {
        return crate::reports::process(gateway, state, &submission.envelope, side, data).await;
    }
    let started = Instant::now();
    let size = data.len() as u64;
    let mut entry = message_entry(&submission.envelope, size, "data");
    if let Some(refusal) = loop_refusal(state, &mut entry, &data) {
        commit_log(gateway, entry).await;
        return refusal;
    }
    let Judged { mut verdict, meta, data, envelope } =
        match judge(gateway, state, submission.envelope.clone(), data, false, submission.door.as_deref()).await {
            Ok(j) => j,
            Err(e) => {
                let refusal = scan_failure(gateway, &mut entry, &e);
                commit_log(gateway, entry).await;
                return refusal;
            }
        };
    let mut disposition = Disposition::of(&verdict, &envelope.rcpt_to);
    if let Err(e) = crate::held::check(gateway, state, &envelope, &mut verdict, &mut disposition).await {
        let refusal = local_failure(&verdict.id, &e);
        entry.reference_id = verdict.id.clone();
        entry.action = refusal.action.into();
        entry.reason = refusal.reason;
        commit_log(gateway, entry).await;
        return refusal.answer;
    }
    let shown = log_verdict(&mut entry, &verdict, meta);
    crate::dmarc_send::received(gateway, state, &envelope, &data).await;
    let submission = Submission { envelope, ..submission };
    let carrying = Instant::now();
    let result = carry_out(gateway, state, &submission, &verdict, &disposition, data, shown).await;
    gateway.counters.observe_stage(crate::Stage::Disposition, carrying.elapsed());
    entry.action = result.action.into();
    entry.next_hop_response = result.next_hop.clone();
    entry.reason = crate::judge::merge_reasons(entry.reason.take(), result.reason.clone());
    let env = &submission.envelope;
    tracing::info!(
        reference = %verdict.id,
        client = ?env.client_ip,
        from = %sanitize(env.mail_from.as_deref().unwrap_or(""), 200),
        rcpts = env.rcpt_to.len(),
        size,
        score = verdict.score,
        action = result.action,
        "message"
    );
    record(gateway, entry, started).await;
    result.answer
}

/// Carries out a disposition for a message the gateway holds: quarantine, delivery, what it owes.
pub async fn carry_out(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    submission: &Submission,
    verdict: &Verdict,
    disposition: &Disposition,
    data: Vec<u8>,
    shown: (Option<String>, Option<String>),
) -> Outcome {
    let id = &verdict.id;
    let accepted = match disposition {
        Disposition::Defer { reason, answer } => {
            return Outcome { action: "tempfail", answer: answer.clone(), next_hop: None, reason: Some(reason.clone()) }
        }
        Disposition::Reject { answer } => {
            return Outcome { action: "reject", answer: answer.clone(), next_hop: None, reason: None }
        }
        Disposition::Accept(a) => a,
    };
    let env = &submission.envelope;
    let mail_from = env.mail_from.clone().unwrap_or_default();
    let final_bytes = |tag: bool| {
        let mut tagged = std::borrow::Cow::Borrowed(&data[..]);
        if tag && !state.config.subject_tag.is_empty() {
            tagged = std::borrow::Cow::Owned(tag_subject(&data, &state.config.subject_tag));
        }
        let mut out = match &submission.received_with {
            Some(with) => received_header(state, env, with, id),
            None => Vec::new(),
        };
        out.extend_from_slice(&verdict.apply_headers(&tagged));
        out
    };
    // Quarantine first: it is local and durable. If the delivery after it fails temporarily, the sender
    // retries and the quarantine may hold the message twice, which loses nothing.
    let mut outcome = None;
    // What the gateway itself will owe once it answers 250: a bounce, the rules' copies.
    let mut owed: Vec<(NewSpoolItem, Vec<u8>)> = Vec::new();
    if !accepted.quarantine.is_empty() {
        let bytes = final_bytes(false);
        let to = accepted.quarantine.clone();
        if let Err(e) = quarantine(gateway, verdict, to, &mail_from, shown, env.direction, bytes).await {
            return storage_failure(id, &e);
        }
        outcome = Some(Outcome {
            action: "quarantine",
            answer: answer(250, "2.0.0", format!("Message accepted [ref {id}]")),
            next_hop: None,
            // The log says why, as the quarantine row does (the console's message page shows it).
            reason: Some(quarantine_reason(verdict)),
        });
    }
    let bytes = final_bytes(accepted.tag);
    // Signed (outbound) or sealed (inbound, when the subject tag changed it) once the bytes are final.
    let changed = accepted.tag && !state.config.subject_tag.is_empty();
    let bytes = crate::outgoing::finish(gateway, state, env, changed, &data, bytes).await;
    if !accepted.deliver.is_empty() {
        outcome = Some(match deliver_accepted(gateway, state, submission, accepted, verdict, &bytes).await {
            Ok((outcome, more)) => {
                owed.extend(more);
                outcome
            }
            Err(outcome) => return outcome,
        });
    }
    let outcome = outcome.expect("every recipient is delivered or quarantined");
    if outcome.answer.code != 250 {
        return outcome;
    }
    for to in &accepted.copies {
        match state.route_for(to, true) {
            Some(_) => owed.push((spool_item("copy", id, &mail_from, to), bytes.clone())),
            None => tracing::warn!(reference = %id, to = %sanitize(to, 320), "policy copy: no route to its address"),
        }
    }
    // Spooled (committed and fsynced) before the 250; tried at once, retried by the spool's runner.
    match crate::spool::put(gateway, owed).await {
        Ok(ids) => {
            crate::spool::kick(gateway, ids);
            outcome
        }
        // Some recipients may already have the message: the sender's retry may give them a second copy,
        // which loses nothing; answering 250 would lose the bounce or the copy.
        Err(e) => local_failure(id, &format!("spool write failed: {e}")),
    }
}

/// Delivers to the accepted recipients on the transaction's route (or the redirect's), or queues them when
/// the message is outbound mail for the durable queue. `Ok` carries the outcome and what is owed once the
/// client hears 250 (the queued messages, or the bounce for recipients the next hop refused); `Err` an
/// outcome that ends the message.
async fn deliver_accepted(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    submission: &Submission,
    accepted: &Accepted,
    verdict: &Verdict,
    bytes: &[u8],
) -> Result<(Outcome, Vec<(NewSpoolItem, Vec<u8>)>), Outcome> {
    let id = &verdict.id;
    let action = if accepted.tag { "tag" } else { "deliver" };
    let route = match &accepted.redirect {
        Some(to) => state.route_for(to, true).unwrap_or(Route::Maildir),
        None => submission.route.clone().unwrap_or(Route::Maildir),
    };
    let mail_from = submission.envelope.mail_from.as_deref().unwrap_or("");
    if queued(state, &submission.envelope, &route) {
        // Outbound mail to other domains: accepted once it is in the durable queue (committed with the
        // rest of what is owed, before the 250), then delivered by the spool's runner with retries.
        let items: Vec<_> = accepted
            .deliver
            .iter()
            .map(|to| (spool_item(crate::spool::OUTBOUND, id, mail_from, to), bytes.to_vec()))
            .collect();
        gateway.counters.outbound_queued.fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
        let outcome = Outcome {
            action,
            answer: answer(250, "2.0.0", format!("Message queued for delivery [ref {id}]")),
            next_hop: Some(format!("queued for {} recipient(s)", items.len())),
            reason: None,
        };
        return Ok((outcome, items));
    }
    match deliver(gateway, state, &route, mail_from, &accepted.deliver, bytes).await {
        Ok(d) => {
            let bounce: Vec<_> = if d.refused.is_empty() {
                Vec::new()
            } else {
                crate::spool::bounce(state, mail_from, &d.refused, bytes, id).into_iter().collect()
            };
            Ok((
                Outcome {
                    action,
                    answer: answer(250, "2.0.0", format!("Message accepted for delivery [ref {id}]")),
                    next_hop: Some(d.reply.to_string()),
                    reason: (!d.refused.is_empty()).then(|| {
                        let r: Vec<String> = d.refused.iter().map(|(rcpt, reply)| format!("{rcpt}: {reply}")).collect();
                        format!("refused by the next hop, bounced: {}", r.join("; "))
                    }),
                },
                bounce,
            ))
        }
        Err(RelayError::Temporary(why)) => {
            Counters::bump(&gateway.counters.relay_failures);
            tracing::warn!(reference = %id, route = ?route, error = %why, "delivery deferred");
            Err(Outcome {
                action: "tempfail",
                answer: answer(451, "4.4.1", format!("Next hop not available, try again later [ref {id}]")),
                next_hop: Some(why.clone()),
                reason: Some(why),
            })
        }
        Err(RelayError::Local(why)) => Err(local_failure(id, &why)),
        Err(RelayError::Permanent(reply)) => Ok((
            Outcome {
                action: "failed",
                // The next hop's own words go back to the sender's server, which writes the bounce.
                answer: answer(reply.code, "", format!("{} [ref {id}]", sanitize(&reply.text, 300))),
                next_hop: Some(reply.to_string()),
                reason: Some("refused by the next hop".into()),
            },
            Vec::new(),
        )),
    }
}

/// Whether a message goes through the outbound queue: outbound mail leaving the organisation (smarthost or
/// MX) with `[smtp.outbound] queue` on. Inbound mail and outbound mail for our own domains are relayed
/// before the answer, as ever.
fn queued(state: &GatewayState, envelope: &Envelope, route: &Route) -> bool {
    state.config.outbound.queue
        && envelope.direction == Direction::Outbound
        && matches!(route, Route::Smarthost(_) | Route::Mx(_))
}

/// A message the gateway owes, for the spool.
pub(crate) fn spool_item(kind: &str, id: &str, mail_from: &str, to: &str) -> NewSpoolItem {
    NewSpoolItem {
        kind: kind.into(),
        reference_id: id.to_string(),
        mail_from: mail_from.to_string(),
        recipient: to.to_string(),
        outbound: true,
    }
}

/// Our own storage failed (Maildir, spool): the client retries and is told it was us. The details (which
/// may name paths) go to the log and the message-log row, never to the client.
fn local_failure(id: &str, why: &str) -> Outcome {
    tracing::error!(reference = %id, error = %why, "local write failed");
    Outcome {
        action: "tempfail",
        answer: answer(451, "4.3.0", format!("Local error, try again later [ref {id}]")),
        next_hop: None,
        reason: Some(format!("local error: {why}")),
    }
}

/// The quarantine could not be written: the client retries.
pub fn storage_failure(id: &str, why: &str) -> Outcome {
    tracing::error!(reference = %id, error = %why, "quarantine write failed");
    Outcome {
        action: "tempfail",
        answer: answer(451, "4.3.0", format!("Temporary storage failure, try again later [ref {id}]")),
        next_hop: None,
        reason: Some(format!("quarantine write failed: {why}")),
    }
}

/// Stores a message in the quarantine, one copy per recipient, synced before this returns.
pub async fn quarantine(
    gateway: &Arc<Gateway>,
    verdict: &Verdict,
    recipients: Vec<String>,
    mail_from: &str,
    (from_header, subject): (Option<String>, Option<String>),
    direction: Direction,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let item = NewQuarantine {
        reference_id: verdict.id.clone(),
        time: mailsift_engine::unix_now(),
        recipients,
        mail_from: Some(mail_from.to_string()),
        from_header,
        subject,
        score: verdict.score,
        reason: quarantine_reason(verdict),
        size: bytes.len() as u64,
        direction: crate::log::direction_name(direction).into(),
    };
    let db = gateway.db.clone();
    match tokio::task::spawn_blocking(move || db.quarantine_put(&item, &bytes)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The reason shown in the quarantine list, in a few words: the rule that decided, or the strongest symbols.
fn quarantine_reason(v: &Verdict) -> String {
    // A recipient's own list can quarantine a message the score delivers: its entry decided, so it is named.
    crate::judge::verdict_reason(v).unwrap_or_else(|| format!("score {:.2}", v.score))
}

/// Our `Received:` header (RFC 5321 §4.4): `with` is the protocol the front end names (ESMTPS...).
fn received_header(state: &GatewayState, env: &Envelope, with: &str, id: &str) -> Vec<u8> {
    let nl = "\r\n";
    let helo = sanitize(env.helo.as_deref().unwrap_or("unknown"), 100).replace(['(', ')'], "_");
    let ip = match env.client_ip {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => format!("IPv6:{v6}"),
        None => "unknown".into(),
    };
    let rcpt =
        if env.rcpt_to.len() == 1 { format!("{nl}\tfor <{}>", sanitize(&env.rcpt_to[0], 320)) } else { String::new() };
    format!(
        "Received: from {helo} ([{ip}]){nl}\tby {} (mailsift) with {} id {id}{rcpt};{nl}\t{}{nl}",
        state.config.hostname,
        sanitize(with, 20),
        rfc5322_date(mailsift_engine::unix_now())
    )
    .into_bytes()
}
