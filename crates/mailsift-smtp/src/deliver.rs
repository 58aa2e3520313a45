//! The end of DATA: judge the message, act on the verdict, answer the client, write the message-log row.
//!
//! The answer is only 250 when the message is safe: accepted by the next hop, fsynced into a Maildir, or
//! committed to the quarantine. Otherwise the client gets 4xx (it retries) or the next hop's 5xx (its server
//! bounces). One transaction has one route (see [`crate::session`]), so one answer is true for all recipients.
//! When the next hop refuses some recipients and accepts others, the others got the message: the client hears
//! 250 and the refused recipients are reported to the sender in a bounce (RFC 3464), as a queueing MTA would.
//!
//! Nothing lives only in memory after a 250: the bounce and the copies filter rules ask for are committed to
//! the durable spool ([`crate::spool`]) before the 250 is sent (if that fails, the client hears 451 and
//! retries), and the message-log row is committed and fsynced before the answer too ([`commit_log`]).
//! A failure of our own storage (Maildir, quarantine, spool) is a `451 4.3.0` that says so without details;
//! only a next hop that cannot be reached is `451 4.4.1`.
//!
//! Actions and recipients: the verdict is per message (thresholds are the organisation's). Should per-recipient
//! policy ever give mixed actions in one transaction, the rule is: rejecting recipients are quarantined instead
//! (one answer cannot be both 250 and 550, and a 250 must never lose mail).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use mailsift_engine::{Action, ConnectionVerdict, Direction, Envelope, Verdict};
use mailsift_store::{LogEntry, NewQuarantine, NewSpoolItem};

use crate::proto::{self, sanitize};
use crate::relay::{Delivered, RelayError, Reply};
use crate::server::GatewayState;
use crate::session::{Client, Transaction};
use crate::{Counters, Gateway};

/// Where the recipients of a transaction go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The organisation's mail server for the domain (`host:port`).
    NextHop(String),
    /// A Maildir per recipient under the data directory (the embedded default).
    Maildir,
    /// Outbound, through the configured smarthost.
    Smarthost(String),
    /// Outbound, to the MX of this domain.
    Mx(String),
    /// A report address: the message is learned from, not delivered.
    Report(mailsift_engine::classify::Side),
}

/// The reply to the end of data.
#[derive(Debug, Clone)]
pub struct Answer {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
}

pub(crate) fn answer(code: u16, enhanced: &str, text: impl Into<String>) -> Answer {
    Answer { code, enhanced: enhanced.into(), text: text.into() }
}

/// What the log row and the quarantine need from the message itself.
#[derive(Debug, Default)]
pub struct Meta {
    pub from: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
}

/// A judged message: the verdict, what the log needs from the message, and the bytes back.
pub struct Judged {
    pub verdict: Verdict,
    pub meta: Meta,
    pub data: Vec<u8>,
    /// The envelope the message was judged with (filled from the message's trace headers when asked).
    pub envelope: Envelope,
}

/// Judges one message and applies the effects every interface shares (SMTP, milter, spamd): parse once,
/// gather sender evidence (inbound, DNS on), consult reputation, judge with the policy in force, learn from
/// the verdict (spamtraps, auto-learning), feed reputation, record which policy entries matched.
///
/// `from_trace` fills what the envelope lacks from the message's own trace headers (spamd has no envelope).
/// An error means the scan itself failed (a panic in a check): the caller answers with a temporary failure.
pub async fn judge(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    envelope: Envelope,
    data: Vec<u8>,
    from_trace: bool,
) -> Result<Judged, String> {
    // Parse once, gather sender evidence, judge: CPU work (and blocking DNS waits) off the async threads.
    let judged = {
        let state = state.clone();
        let policy = gateway.policy();
        let mut envelope = envelope;
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            let msg = state.engine.parse(&data);
            if from_trace {
                envelope.fill_from_trace(&msg);
            }
            let domain = match envelope.direction {
                Direction::Inbound => envelope.rcpt_to.first().map(|r| proto::domain_of(r)).unwrap_or_default(),
                Direction::Outbound => proto::domain_of(envelope.mail_from.as_deref().unwrap_or("")),
            };
            let engine = state.engine_for(&domain).clone();
            let evidence = match (&state.gatherer, envelope.direction) {
                (Some(g), Direction::Inbound) => {
                    let domains: Vec<&str> = msg.urls.iter().map(|u| u.domain.as_str()).collect();
                    mailsift_engine::Evidence::from_sender(
                        handle.block_on(g.gather_with_urls(&data, &envelope, &domains)),
                    )
                }
                _ => mailsift_engine::Evidence::default(),
            };
            let mut evidence = evidence;
            // Spoofs of our own domains count against the spoofing server, never against our domain.
            let keys = state.reputation().map(|_| {
                mailsift_engine::evidence::reputation_keys_for(&envelope, &msg, &engine.config().organisation)
            });
            if let (Some(rep), Some(keys)) = (state.reputation(), &keys) {
                match rep.lock().unwrap_or_else(|e| e.into_inner()).lookup(keys, mailsift_engine::unix_now()) {
                    Ok(facts) => evidence.reputation = Some(facts),
                    Err(e) => tracing::warn!(error = %e, "reputation lookup failed"),
                }
            }
            let verdict = engine.judge_with_policy(&msg, &envelope, &evidence, &policy);
            // Spamtraps and auto-learning (when configured) learn from the verdict.
            let c = &engine.config().classifier;
            if let (Some(learner), true) = (state.learner(), c.autolearn || !c.spamtraps.is_empty()) {
                let mut learner = learner.lock().unwrap_or_else(|e| e.into_inner());
                match learner.after_verdict(&envelope, &msg, &verdict, c) {
                    Ok(Some(_)) => {
                        if let Err(e) = learner.commit(mailsift_engine::unix_now()) {
                            tracing::warn!(error = %e, "classifier store not updated");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "learning from the verdict failed"),
                }
            }
            if let (Some(rep), Some(keys)) = (state.reputation(), &keys) {
                // The verdict is evidence about the sender for next time (inbound only: our own users' mail
                // says nothing about the outside world).
                if envelope.direction == Direction::Inbound {
                    let event = mailsift_store::ReputationEvent::Verdict(verdict.scl);
                    if let Err(e) =
                        rep.lock().unwrap_or_else(|e| e.into_inner()).record(keys, event, mailsift_engine::unix_now())
                    {
                        tracing::warn!(error = %e, "reputation update failed");
                    }
                }
            }
            let meta = Meta {
                from: msg.from.as_ref().map(|f| f.address.clone()),
                subject: msg.subject.clone(),
                message_id: msg.message_id.clone(),
            };
            drop(msg);
            Judged { verdict, meta, data, envelope }
        })
        .await
    };
    let judged = judged.map_err(|e| e.to_string())?;
    if !judged.verdict.policy_matches.is_empty() {
        use mailsift_store::PolicyStore;
        // "Last matched" for the rules and entries that acted, so stale ones can be found (queued, cheap).
        if let Err(e) = gateway.db.touch_policy_matches(&judged.verdict.policy_matches, mailsift_engine::unix_now()) {
            tracing::warn!(error = %e, "could not record policy matches");
        }
    }
    Ok(judged)
}

/// Fills a log row with what the verdict and the message say; returns the From and Subject as logged.
pub fn log_verdict(entry: &mut LogEntry, verdict: &Verdict, meta: Meta) -> (Option<String>, Option<String>) {
    entry.reference_id = verdict.id.clone();
    entry.from_header = meta.from.map(|f| sanitize(&f, 320));
    entry.subject = meta.subject.map(|s| sanitize(&s, 500));
    entry.message_id = meta.message_id.map(|m| sanitize(&m, 500));
    entry.score = Some(verdict.score);
    entry.required = Some(verdict.thresholds.tag);
    entry.symbols = verdict.symbols.iter().map(|s| (s.name.clone(), s.score)).collect();
    entry.reason = verdict.decided_by.clone();
    (entry.from_header.clone(), entry.subject.clone())
}

/// Judges and acts on one message; returns what the client is told.
pub async fn process(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    client: &Client,
    txn: &Transaction,
    data: Vec<u8>,
) -> Answer {
    if let Some(Route::Report(side)) = txn.route {
        return crate::reports::process(gateway, state, client, txn, side, data).await;
    }
    let started = Instant::now();
    let size = data.len() as u64;
    let envelope = Envelope {
        client_ip: Some(client.peer.ip()),
        helo: client.helo.clone(),
        client_name: None,
        mail_from: Some(txn.mail_from.clone()),
        rcpt_to: txn.rcpts.clone(),
        direction: txn.direction,
        authenticated_user: client.user.clone(),
        tls: client.tls,
    };
    let mut entry = LogEntry {
        time: mailsift_engine::unix_now(),
        direction: direction_name(txn.direction).into(),
        client_ip: Some(client.peer.ip().to_string()),
        helo: client.helo.clone(),
        mail_from: Some(txn.mail_from.clone()),
        recipients: txn.rcpts.clone(),
        size,
        stage: "data".into(),
        ..LogEntry::default()
    };

    if hop_count(&data) > state.config.max_hops {
        entry.reference_id = mailsift_engine::new_reference_id();
        entry.action = "refused".into();
        entry.reason = Some("mail loop: too many Received headers".into());
        commit_log(gateway, entry).await;
        return answer(554, "5.4.6", "Too many hops: mail loop detected");
    }

    let Judged { verdict, meta, data, .. } = match judge(gateway, state, envelope, data, false).await {
        Ok(j) => j,
        Err(e) => {
            // A panic in a check must not cost the message: the sender retries, and we hear about it.
            tracing::error!(error = %e, "scan failed");
            entry.reference_id = mailsift_engine::new_reference_id();
            entry.action = "tempfail".into();
            entry.reason = Some("internal scan failure".into());
            commit_log(gateway, entry).await;
            Counters::bump(&gateway.counters.tempfailed);
            return answer(451, "4.3.0", "Temporary scanning failure, try again later");
        }
    };
    let id = verdict.id.clone();
    let shown = log_verdict(&mut entry, &verdict, meta);

    let result = act(gateway, state, client, txn, &verdict, data, shown).await;
    entry.action = result.action.into();
    entry.next_hop_response = result.next_hop.clone();
    if entry.reason.is_none() {
        entry.reason = result.reason.clone();
    }
    let c = &gateway.counters;
    Counters::bump(match result.action {
        "deliver" => &c.messages_delivered,
        "tag" => &c.messages_tagged,
        "quarantine" => &c.messages_quarantined,
        "reject" => &c.messages_rejected,
        _ => &c.tempfailed,
    });
    c.observe_latency(started.elapsed());
    tracing::info!(
        id = %id,
        client = %client.peer,
        from = %sanitize(&txn.mail_from, 200),
        rcpts = txn.rcpts.len(),
        size,
        score = verdict.score,
        action = result.action,
        "message"
    );
    // The row is on disk before the client hears the answer: a crash after a 250 cannot lose it.
    commit_log(gateway, entry).await;
    result.answer
}

struct Outcome {
    action: &'static str,
    answer: Answer,
    next_hop: Option<String>,
    reason: Option<String>,
}

async fn act(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    client: &Client,
    txn: &Transaction,
    verdict: &Verdict,
    data: Vec<u8>,
    (from_header, subject): (Option<String>, Option<String>),
) -> Outcome {
    let id = &verdict.id;
    if let Some(why) = &verdict.defer {
        return Outcome {
            action: "tempfail",
            answer: answer(451, "4.7.1", format!("{} [ref {id}]", sanitize(why, 200))),
            next_hop: None,
            reason: Some(why.clone()),
        };
    }
    let effects = &verdict.policy_effects;
    // Each recipient's action: the verdict's, or the per-recipient outcomes when lists made them differ. A
    // redirect rule sends the message to its address instead of every envelope recipient.
    let mut actions: Vec<(String, Action)> = match &effects.redirect {
        Some(to) => vec![(to.clone(), verdict.action)],
        None if verdict.recipient_actions.is_empty() => txn.rcpts.iter().map(|r| (r.clone(), verdict.action)).collect(),
        None => verdict.recipient_actions.iter().map(|r| (r.recipient.clone(), r.action)).collect(),
    };
    if actions.iter().all(|(_, a)| *a == Action::Reject) {
        let text = match &effects.reject_message {
            Some(m) => format!("{} [ref {id}]", sanitize(m, 200)),
            None => format!("Message rejected as spam [ref {id}]"),
        };
        return Outcome { action: "reject", answer: answer(550, "5.7.1", text), next_hop: None, reason: None };
    }
    // One answer cannot be both 250 and 550, and a 250 must not lose mail: a recipient whose own action is
    // reject, in a transaction others accept, is quarantined instead.
    for (_, a) in actions.iter_mut() {
        if *a == Action::Reject {
            *a = Action::Quarantine;
        }
    }
    let to_quarantine: Vec<String> =
        actions.iter().filter(|(_, a)| *a == Action::Quarantine).map(|(r, _)| r.clone()).collect();
    let to_deliver: Vec<String> =
        actions.iter().filter(|(_, a)| *a != Action::Quarantine).map(|(r, _)| r.clone()).collect();
    // Tagging changes the bytes; recipients delivered together get the strictest of their actions.
    let tag = actions.iter().any(|(_, a)| *a == Action::Tag);
    let final_bytes = |tag: bool| {
        let mut tagged = std::borrow::Cow::Borrowed(&data[..]);
        if tag && !state.config.subject_tag.is_empty() {
            tagged = std::borrow::Cow::Owned(tag_subject(&data, &state.config.subject_tag));
        }
        let mut out = received_header(state, client, txn, id);
        out.extend_from_slice(&verdict.apply_headers(&tagged));
        out
    };
    // Quarantine first: it is local and durable. If the delivery after it fails temporarily, the sender
    // retries and the quarantine may hold the message twice, which loses nothing.
    let mut outcome = None;
    // What the gateway itself will owe once it answers 250: a bounce, the rules' copies.
    let mut owed: Vec<(NewSpoolItem, Vec<u8>)> = Vec::new();
    if !to_quarantine.is_empty() {
        let bytes = final_bytes(false);
        let shown = (from_header, subject);
        if let Err(e) = quarantine(gateway, verdict, to_quarantine, &txn.mail_from, shown, txn.direction, bytes).await {
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
    let bytes = final_bytes(tag);
    if !to_deliver.is_empty() {
        let action = if tag { "tag" } else { "deliver" };
        let route = match &effects.redirect {
            Some(to) => state.route_for(to, true).unwrap_or(Route::Maildir),
            None => txn.route.clone().unwrap_or(Route::Maildir),
        };
        outcome = Some(match deliver(gateway, state, &route, &txn.mail_from, &to_deliver, &bytes).await {
            Ok(d) => {
                if !d.refused.is_empty() {
                    owed.extend(bounce(state, txn, &d.refused, &bytes, id));
                }
                Outcome {
                    action,
                    answer: answer(250, "2.0.0", format!("Message accepted for delivery [ref {id}]")),
                    next_hop: Some(d.reply.to_string()),
                    reason: (!d.refused.is_empty()).then(|| {
                        let r: Vec<String> = d.refused.iter().map(|(rcpt, reply)| format!("{rcpt}: {reply}")).collect();
                        format!("refused by the next hop, bounced: {}", r.join("; "))
                    }),
                }
            }
            Err(RelayError::Temporary(why)) => {
                Counters::bump(&gateway.counters.relay_failures);
                tracing::warn!(id = %id, route = ?route, error = %why, "delivery deferred");
                return Outcome {
                    action: "tempfail",
                    answer: answer(451, "4.4.1", format!("Next hop not available, try again later [ref {id}]")),
                    next_hop: Some(why.clone()),
                    reason: Some(why),
                };
            }
            Err(RelayError::Local(why)) => return local_failure(id, &why),
            Err(RelayError::Permanent(reply)) => Outcome {
                action: "failed",
                // The next hop's own words go back to the sender's server, which writes the bounce.
                answer: answer(reply.code, "", format!("{} [ref {id}]", sanitize(&reply.text, 300))),
                next_hop: Some(reply.to_string()),
                reason: Some("refused by the next hop".into()),
            },
        });
    }
    let outcome = outcome.expect("every recipient is delivered or quarantined");
    if outcome.answer.code != 250 {
        return outcome;
    }
    for to in &effects.copy {
        match state.route_for(to, true) {
            Some(_) => owed.push((spool_item("copy", id, &txn.mail_from, to), bytes.clone())),
            None => tracing::warn!(id = %id, to = %sanitize(to, 320), "policy copy: no route to its address"),
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

/// A message the gateway owes, for the spool.
fn spool_item(kind: &str, id: &str, mail_from: &str, to: &str) -> NewSpoolItem {
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
    tracing::error!(id = %id, error = %why, "local write failed");
    Outcome {
        action: "tempfail",
        answer: answer(451, "4.3.0", format!("Local error, try again later [ref {id}]")),
        next_hop: None,
        reason: Some(format!("local error: {why}")),
    }
}

fn storage_failure(id: &str, why: &str) -> Outcome {
    tracing::error!(id = %id, error = %why, "quarantine write failed");
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
        direction: direction_name(direction).into(),
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
    if let Some(rule) = &v.decided_by {
        return rule.clone();
    }
    let top: Vec<&str> = v.symbols.iter().filter(|s| s.score > 0.0).take(3).map(|s| s.name.as_str()).collect();
    format!("score {:.2}: {}", v.score, top.join(", "))
}

/// Hands a message to its route.
pub async fn deliver(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    route: &Route,
    mail_from: &str,
    rcpts: &[String],
    bytes: &[u8],
) -> Result<Delivered, RelayError> {
    let client = state.relay_client(&gateway.client_tls);
    match route {
        Route::NextHop(target) | Route::Smarthost(target) => client.deliver(target, mail_from, rcpts, bytes).await,
        Route::Mx(domain) => {
            let resolver = state.mx_resolver().map_err(RelayError::Temporary)?;
            let hosts = match resolver.mail_hosts(domain).await {
                Ok(h) => h,
                Err(true) => {
                    return Err(RelayError::Permanent(Reply {
                        code: 550,
                        text: format!("5.1.2 {domain} does not accept mail (no MX or address)"),
                    }))
                }
                Err(false) => return Err(RelayError::Temporary(format!("DNS lookup of {domain} failed"))),
            };
            let mut last = RelayError::Temporary(format!("no mail host of {domain} answered"));
            for ip in hosts.iter().take(5) {
                let target = std::net::SocketAddr::new(*ip, state.config.outbound.mx_port).to_string();
                match client.deliver(&target, mail_from, rcpts, bytes).await {
                    Ok(d) => return Ok(d),
                    // A permanent refusal is the domain's answer; a temporary one means try the next host.
                    Err(e @ RelayError::Permanent(_)) => return Err(e),
                    Err(e) => last = e,
                }
            }
            Err(last)
        }
        Route::Report(_) => {
            Err(RelayError::Permanent(Reply { code: 550, text: "5.1.1 Report addresses take reports only".into() }))
        }
        Route::Maildir => {
            let dir = gateway.data_dir.join("maildir");
            let rcpts = rcpts.to_vec();
            let bytes = bytes.to_vec();
            let written = tokio::task::spawn_blocking(move || {
                for r in &rcpts {
                    maildir_deliver(&dir, r, &bytes)?;
                }
                Ok::<_, std::io::Error>(rcpts)
            })
            .await;
            match written {
                Ok(Ok(rcpts)) => Ok(Delivered {
                    accepted: rcpts,
                    refused: Vec::new(),
                    reply: Reply { code: 250, text: "maildir".into() },
                }),
                Ok(Err(e)) => Err(RelayError::Local(format!("maildir write failed: {e}"))),
                Err(e) => Err(RelayError::Local(format!("maildir write failed: {e}"))),
            }
        }
    }
}

/// Writes one message into `root/<recipient>/new`, the Maildir way: a unique file in `tmp`, synced, renamed
/// into `new`, and the directory synced, so a 250 survives a crash.
pub fn maildir_deliver(root: &std::path::Path, rcpt: &str, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    let dir = root.join(maildir_name(rcpt));
    // The error names the Maildir for the operator's log (the client is told only "local error").
    maildir_write(&dir, bytes).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

fn maildir_write(dir: &std::path::Path, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}.mailsift",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join("tmp").join(&name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    let new = dir.join("new").join(&name);
    std::fs::rename(&tmp, &new)?;
    std::fs::File::open(dir.join("new"))?.sync_all()?;
    Ok(new)
}

/// Deletes files in `root/*/tmp/` last modified more than `max_age` ago: what a crash left between writing
/// a message and renaming it into `new/` (readers ignore `tmp/`, and the Maildir convention is that the
/// delivering agent cleans it after 36 hours). Returns how many; unreadable entries are skipped.
pub fn sweep_maildir_tmp(root: &std::path::Path, max_age: std::time::Duration) -> usize {
    let Ok(boxes) = std::fs::read_dir(root) else { return 0 };
    let cutoff = std::time::SystemTime::now().checked_sub(max_age);
    let mut removed = 0;
    for mailbox in boxes.flatten() {
        let Ok(files) = std::fs::read_dir(mailbox.path().join("tmp")) else { continue };
        for f in files.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            let old = match (meta.modified(), cutoff) {
                (Ok(m), Some(c)) => m < c,
                _ => false,
            };
            if meta.is_file() && old {
                match std::fs::remove_file(f.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(file = %f.path().display(), error = %e, "maildir tmp leftover not removed")
                    }
                }
            }
        }
    }
    removed
}

/// A recipient as a safe directory name: lower case, nothing that climbs out or hides.
pub fn maildir_name(rcpt: &str) -> String {
    let s: String = rcpt
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+') { c } else { '_' })
        .collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "_".into()
    } else {
        s.to_string()
    }
}

/// Our `Received:` header (RFC 5321 §4.4), with the line ending the message uses.
fn received_header(state: &GatewayState, client: &Client, txn: &Transaction, id: &str) -> Vec<u8> {
    let nl = "\r\n";
    let protocol = match (client.esmtp, client.tls, client.user.is_some()) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    };
    let helo = sanitize(client.helo.as_deref().unwrap_or("unknown"), 100).replace(['(', ')'], "_");
    let ip = match client.peer.ip() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("IPv6:{v6}"),
    };
    let rcpt =
        if txn.rcpts.len() == 1 { format!("{nl}\tfor <{}>", sanitize(&txn.rcpts[0], 320)) } else { String::new() };
    format!(
        "Received: from {helo} ([{ip}]){nl}\tby {} (mailsift) with {protocol} id {id}{rcpt};{nl}\t{}{nl}",
        state.config.hostname,
        proto::rfc5322_date(mailsift_engine::unix_now())
    )
    .into_bytes()
}

/// The message with `tag` put in front of its subject (once), or a Subject added when it has none.
pub fn tag_subject(raw: &[u8], tag: &str) -> Vec<u8> {
    let header_end = find_header_end(raw);
    let mut pos = 0;
    while pos < header_end {
        let end = raw[pos..header_end].iter().position(|&b| b == b'\n').map(|p| pos + p + 1).unwrap_or(header_end);
        let line = &raw[pos..end];
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            let value_start = pos + 8 + line[8..].iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            if raw[value_start..].starts_with(tag.as_bytes()) {
                return raw.to_vec();
            }
            let mut out = Vec::with_capacity(raw.len() + tag.len() + 1);
            out.extend_from_slice(&raw[..value_start]);
            out.extend_from_slice(tag.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&raw[value_start..]);
            return out;
        }
        pos = end;
    }
    let mut out = format!("Subject: {tag}\r\n").into_bytes();
    out.extend_from_slice(raw);
    out
}

/// Offset of the blank line that ends the header block (or the end of the message).
pub(crate) fn find_header_end(raw: &[u8]) -> usize {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..].iter().position(|&b| b == b'\n').map(|p| pos + p + 1).unwrap_or(raw.len());
        if &raw[pos..end] == b"\n" || &raw[pos..end] == b"\r\n" {
            return pos;
        }
        pos = end;
    }
    raw.len()
}

/// How many `Received:` headers the message already carries.
pub(crate) fn hop_count(raw: &[u8]) -> usize {
    let end = find_header_end(raw);
    raw[..end].split(|&b| b == b'\n').filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:")).count()
}

pub fn direction_name(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

/// Writes the log row of an answered message and waits until it is committed and fsynced (group commit: the
/// sessions finishing together share one fsync), so a crash after the answer cannot lose it. A failure to log
/// is reported, never passed to the client: the message itself is already safe, or already refused.
pub async fn commit_log(gateway: &Gateway, entry: LogEntry) {
    let reference = entry.reference_id.clone();
    let (done, committed) = tokio::sync::oneshot::channel();
    let queued = gateway.db.log_append_then(entry, move |r| {
        let _ = done.send(r);
    });
    let result = match queued {
        Ok(()) => committed.await.unwrap_or_else(|_| Err(gateway_db_gone(gateway))),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(id = %reference, error = %e, "message log write failed");
    }
}

fn gateway_db_gone(gateway: &Gateway) -> mailsift_store::StoreError {
    mailsift_store::StoreError::Write {
        path: gateway.db.path().display().to_string(),
        reason: "the database writer stopped before committing the row".into(),
    }
}

/// Queues a log row without waiting for it (refusals before any data); a failure to log is reported, never
/// passed to the client.
pub fn append_log(gateway: &Gateway, entry: LogEntry) {
    if let Err(e) = gateway.db.log_append(entry) {
        tracing::error!(error = %e, "message log write failed");
    }
}

pub fn door_log_entry(client: &Client, env: &Envelope, v: &ConnectionVerdict, reason: &str) -> LogEntry {
    LogEntry {
        reference_id: v.id.clone(),
        time: mailsift_engine::unix_now(),
        direction: "inbound".into(),
        client_ip: Some(client.peer.ip().to_string()),
        helo: client.helo.clone(),
        mail_from: env.mail_from.clone(),
        score: Some(v.score),
        symbols: v.symbols.iter().map(|s| (s.name.clone(), s.score)).collect(),
        action: "refused".into(),
        stage: "mail".into(),
        reason: Some(reason.to_string()),
        ..LogEntry::default()
    }
}

pub fn relay_denied_entry(client: &Client, txn: &Transaction, rcpt: &str) -> LogEntry {
    LogEntry {
        reference_id: mailsift_engine::new_reference_id(),
        time: mailsift_engine::unix_now(),
        direction: direction_name(txn.direction).into(),
        client_ip: Some(client.peer.ip().to_string()),
        helo: client.helo.clone(),
        mail_from: Some(txn.mail_from.clone()),
        recipients: vec![sanitize(rcpt, 320)],
        action: "refused".into(),
        stage: "rcpt".into(),
        reason: Some("relaying denied".into()),
        ..LogEntry::default()
    }
}

/// The bounce telling the sender which recipients the next hop refused after others accepted the message
/// (RFC 3464), for the spool. Never for the null sender (no bounce loops), nor when the sender cannot be
/// reached.
fn bounce(
    state: &GatewayState,
    txn: &Transaction,
    refused: &[(String, Reply)],
    original: &[u8],
    id: &str,
) -> Option<(NewSpoolItem, Vec<u8>)> {
    if txn.mail_from.is_empty() {
        return None;
    }
    let sender = txn.mail_from.clone();
    let host = state.config.hostname.clone();
    let boundary = format!("{id}.bounce");
    let mut failed = String::new();
    let mut status = String::new();
    for (rcpt, reply) in refused {
        failed.push_str(&format!("  <{rcpt}>: {reply}\r\n"));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: 5.0.0\r\nDiagnostic-Code: smtp; {reply}\r\n"
        ));
    }
    let headers = &original[..find_header_end(original)];
    let mut msg = format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\r\nTo: <{sender}>\r\nSubject: Undelivered Mail Returned to Sender\r\n\
Date: {}\r\nMessage-ID: <{id}.bounce@{host}>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n\
--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
Your message (reference {id}) could not be delivered to these recipients:\r\n{failed}\r\n\
It was delivered to the others.\r\n\r\n\
--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; {host}\r\n{status}\r\n\
--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n",
        proto::rfc5322_date(mailsift_engine::unix_now())
    )
    .into_bytes();
    msg.extend_from_slice(headers);
    msg.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    if state.route_for(&sender, true).is_none() {
        tracing::warn!(id = %id, to = %sanitize(&sender, 320), "bounce: no route to the sender");
        return None;
    }
    Some((spool_item("bounce", id, "", &sender), msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tagging() {
        assert_eq!(tag_subject(b"Subject: hi\r\n\r\nbody", "[SPAM]"), b"Subject: [SPAM] hi\r\n\r\nbody".to_vec());
        assert_eq!(tag_subject(b"Subject: [SPAM] hi\r\n\r\n", "[SPAM]"), b"Subject: [SPAM] hi\r\n\r\n".to_vec());
        assert_eq!(
            tag_subject(b"From: a\r\n\r\nSubject: no\r\n", "[SPAM]"),
            b"Subject: [SPAM]\r\nFrom: a\r\n\r\nSubject: no\r\n".to_vec()
        );
    }

    #[test]
    fn hops_and_names() {
        assert_eq!(hop_count(b"Received: a\r\nreceived: b\r\n\r\nReceived: body"), 2);
        assert_eq!(maildir_name("../Bob@Example.COM/x"), "_bob@example.com_x");
    }
}
