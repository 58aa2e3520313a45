//! Judging one message: parse once, gather the sender's evidence, consult reputation, judge with the policy in
//! force, learn from the verdict, feed reputation, record which policy entries matched. Every front end calls
//! [`judge`]; none of them judges on its own.

use std::sync::Arc;

use mailsift_engine::{Direction, Envelope, Verdict};
use mailsift_store::LogEntry;

use crate::state::{Gateway, GatewayState};
use crate::text::{domain_of, sanitize};

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
    let policy = gateway.policy();
    let mut envelope = envelope;
    // Sender evidence (DNS) is awaited here, on the async side: a blocking thread never waits on the network.
    // It needs what the message says (the URLs' domains, and for spamd the trace headers' envelope), so the
    // message is parsed for it on the blocking pool first; the parse borrows the bytes and cannot be kept
    // across the wait, so the judgement parses again (only when DNS evidence is on).
    let mut evidence = mailsift_engine::Evidence::default();
    let mut data = data;
    let gatherer = state.gatherer.clone().filter(|_| from_trace || envelope.direction == Direction::Inbound);
    let parsed_for_evidence = gatherer.is_some();
    if let Some(gatherer) = gatherer {
        let pre = {
            let state = state.clone();
            tokio::task::spawn_blocking(move || {
                let msg = state.engine.parse(&data);
                if from_trace {
                    envelope.fill_from_trace(&msg);
                }
                let domains: Vec<String> = msg.urls.iter().map(|u| u.domain.clone()).collect();
                drop(msg);
                (envelope, domains, data)
            })
            .await
            .map_err(|e| e.to_string())?
        };
        let domains;
        (envelope, domains, data) = pre;
        if envelope.direction == Direction::Inbound {
            let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
            evidence =
                mailsift_engine::Evidence::from_sender(gatherer.gather_with_urls(&data, &envelope, &domains).await);
        }
    }
    let fill_from_trace = from_trace && !parsed_for_evidence;
    // The judgement: CPU work, off the async threads.
    let judged = {
        let state = state.clone();
        tokio::task::spawn_blocking(move || {
            let msg = state.engine.parse(&data);
            if fill_from_trace {
                envelope.fill_from_trace(&msg);
            }
            let domain = match envelope.direction {
                Direction::Inbound => envelope.rcpt_to.first().map(|r| domain_of(r)).unwrap_or_default(),
                Direction::Outbound => domain_of(envelope.mail_from.as_deref().unwrap_or("")),
            };
            let engine = &state.engine;
            let mut evidence = evidence;
            // Spoofs of our own domains count against the spoofing server, never against our domain.
            let keys = state.reputation().map(|_| {
                mailsift_engine::evidence::reputation_keys_for(&envelope, &msg, &engine.config().organisation)
            });
            if let (Some(rep), Some(keys)) = (state.reputation(), &keys) {
                match rep.lookup(keys, mailsift_engine::unix_now()) {
                    Ok(facts) => evidence.reputation = Some(facts),
                    Err(e) => tracing::warn!(error = %e, "reputation lookup failed"),
                }
            }
            let verdict = engine.judge_with_settings(&msg, &envelope, &evidence, &policy, state.settings_for(&domain));
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
                    if let Err(e) = rep.record(keys, event, mailsift_engine::unix_now()) {
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
