//! Judging one message: parse once, gather the sender's evidence, consult reputation, judge with the domain's
//! settings and the policy in force ([`verdict`], no side effects); then learn from the verdict, feed
//! reputation, record which policy entries matched ([`judge`]). Every front end that takes mail calls
//! [`judge`]; a "what would happen" scan calls [`verdict`]; none of them judges on its own.

use std::sync::Arc;

use mailsift_engine::evidence::ReputationKind;
use mailsift_engine::policy::Policy;
use mailsift_engine::{Action, Direction, Envelope, Evidence, Message, Verdict};
use mailsift_evidence::DoorFacts;
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

impl Meta {
    fn of(msg: &Message<'_>) -> Meta {
        Meta {
            from: msg.from.as_ref().map(|f| f.address.clone()),
            subject: msg.subject.clone(),
            message_id: msg.message_id.clone(),
        }
    }
}

/// A judged message: the verdict, what the log needs from the message, and the bytes back.
pub struct Judged {
    pub verdict: Verdict,
    pub meta: Meta,
    pub data: Vec<u8>,
    /// The envelope the message was judged with (filled from the message's trace headers when asked).
    pub envelope: Envelope,
}

/// Judges one message as the gateway would, and does nothing else: parse once, gather sender evidence
/// (inbound, DNS on), look up reputation, judge with the domain's settings and the policy in force. Nothing
/// is learned, recorded or marked: a "what would happen" scan stops here, [`judge`] goes on to the effects.
///
/// `from_trace` fills what the envelope lacks from the message's own trace headers (spamd has no envelope).
/// An error means the scan itself failed (a panic in a check): the caller answers with a temporary failure.
pub async fn verdict(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    envelope: Envelope,
    data: Vec<u8>,
    from_trace: bool,
) -> Result<Judged, String> {
    judged(gateway, state, envelope, data, from_trace, None, false).await
}

/// Judges one message ([`verdict`]) and applies the effects every interface shares (SMTP, milter, spamd):
/// learn from the verdict (spamtraps, auto-learning), feed reputation, record which policy entries matched.
/// `door`: what SMTP's door check learned about the client at MAIL FROM, used instead of asking again.
pub async fn judge(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    envelope: Envelope,
    data: Vec<u8>,
    from_trace: bool,
    door: Option<&DoorFacts>,
) -> Result<Judged, String> {
    let judged = judged(gateway, state, envelope, data, from_trace, door, true).await?;
    if !judged.verdict.policy_matches.is_empty() {
        use mailsift_store::PolicyStore;
        // "Last matched" for the rules and entries that acted, so stale ones can be found (queued, cheap).
        if let Err(e) = gateway.db.touch_policy_matches(&judged.verdict.policy_matches, mailsift_engine::unix_now()) {
            tracing::warn!(error = %e, "could not record policy matches");
        }
    }
    Ok(judged)
}

/// A parsed message kept together with the bytes it borrows, so that one parse serves the sender evidence
/// (gathered on the async side, across the DNS wait) and the judgement (on the blocking pool).
#[derive(yoke::Yokeable)]
struct ParsedView<'a>(Message<'a>);

type Parsed = yoke::Yoke<ParsedView<'static>, Vec<u8>>;

/// Parses `data` and keeps the parse with it (CPU work: call it on the blocking pool).
fn parse_kept(state: &GatewayState, data: Vec<u8>) -> Parsed {
    Parsed::attach_to_cart(data, |bytes: &[u8]| ParsedView(state.engine.parse(bytes)))
}

/// The verdict, and with `learn` the learning and reputation it feeds, on one parse. The judgement is CPU
/// work and the store: on the gateway's judge threads, off the async threads.
async fn judged(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    envelope: Envelope,
    data: Vec<u8>,
    from_trace: bool,
    door: Option<&DoorFacts>,
    learn: bool,
) -> Result<Judged, String> {
    let policy = gateway.policy();
    // The virus scan runs beside the content scan, on its own copy and under its own deadline.
    let virus = state.virus.clone().map(|scanner| {
        let copy = data.clone();
        tokio::spawn(async move { scanner.scan(&copy).await })
    });
    let (envelope, evidence, input) = sender_evidence(Some(gateway), state, envelope, data, from_trace, door).await?;
    // DMARC aggregate reports: what DMARC found, counted for the period (queued on the judge thread).
    let dmarc_seen =
        learn.then(|| crate::dmarc_send::seen(state, &envelope, &evidence, mailsift_engine::unix_now())).flatten();
    let db = dmarc_seen.as_ref().map(|_| gateway.db.clone());
    let scanning = state.clone();
    let state = state.clone();
    let (mut judged, waited, ran) = gateway
        .judges
        .run_measured(move || {
            if let (Some(seen), Some(db)) = (dmarc_seen, db) {
                crate::dmarc_send::note(&db, seen);
            }
            let (envelope, parsed) = input.parse(&state, envelope);
            let msg = &parsed.get().0;
            let (verdict, keys) = judge_parsed(&state, &policy, msg, &envelope, evidence);
            if learn {
                learn_and_record(&state, msg, &envelope, &verdict, keys.as_deref());
            }
            let meta = Meta::of(msg);
            Judged { verdict, meta, data: parsed.into_backing_cart(), envelope }
        })
        .await?;
    gateway.counters.observe_stage(crate::Stage::JudgeWait, waited);
    gateway.counters.observe_stage(crate::Stage::Judge, ran);
    match virus {
        Some(task) => {
            let (scan, version) = task
                .await
                .unwrap_or_else(|e| (crate::virus::Scan::Failed(format!("virus scan task failed: {e}")), None));
            let domain = settings_domain(&judged.envelope, judged.envelope.direction);
            let handling = virus_handling(&scanning, &domain);
            if learn {
                use crate::counters::Counters;
                match &scan {
                    crate::virus::Scan::Found(name) => {
                        Counters::bump(&gateway.counters.virus_found);
                        tracing::warn!(reference = %judged.verdict.id, signature = %name, "virus found");
                    }
                    crate::virus::Scan::Failed(why) => {
                        Counters::bump(&gateway.counters.virus_scan_failed);
                        tracing::warn!(reference = %judged.verdict.id, error = %why, "virus scan failed");
                    }
                    crate::virus::Scan::Clean => {}
                }
            }
            crate::virus::apply(&mut judged.verdict, &scan, version.as_ref(), handling);
        }
        None => judged.verdict.virus = Some(crate::virus::not_scanned()),
    }
    Ok(judged)
}

/// The virus settings for mail of `domain`: its own, else `[smtp.virus]`'s.
fn virus_handling(state: &GatewayState, domain: &str) -> crate::virus::Handling {
    let d = state.local_domain(domain);
    crate::virus::Handling {
        action: d.and_then(|d| d.virus_action).unwrap_or(state.config.virus.action),
        on_failure: d.and_then(|d| d.virus_on_failure).unwrap_or(state.config.virus.on_failure),
    }
}

/// The evidence the gateway judges a message with, and nothing more: sender evidence as [`verdict`] gathers
/// it and the sender's local reputation. For a diagnosis, which judges the message again in ways of its
/// own. Returns the envelope (filled from the trace headers when `from_trace`) and the bytes back.
pub async fn evidence(
    state: &Arc<GatewayState>,
    envelope: Envelope,
    data: Vec<u8>,
    from_trace: bool,
) -> Result<(Envelope, Evidence, Vec<u8>), String> {
    let (envelope, evidence, input) = sender_evidence(None, state, envelope, data, from_trace, None).await?;
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        let mut evidence = evidence;
        let (envelope, parsed) = input.parse(&state, envelope);
        look_up_reputation(&state, &parsed.get().0, &envelope, &mut evidence);
        (envelope, evidence, parsed.into_backing_cart())
    })
    .await
    .map_err(|e| e.to_string())
}

/// The message as the sender-evidence step leaves it for the judgement: parsed already (DNS on: the parse
/// gave the URLs' domains), or still bytes (no DNS evidence: parsed once, on the judgement's thread).
enum Input {
    Parsed(Parsed),
    Bytes { data: Vec<u8>, from_trace: bool },
}

impl Input {
    /// The parsed message and the envelope, filled from the trace headers if that is still to do.
    fn parse(self, state: &GatewayState, mut envelope: Envelope) -> (Envelope, Parsed) {
        match self {
            Input::Parsed(parsed) => (envelope, parsed),
            Input::Bytes { data, from_trace } => {
                let parsed = parse_kept(state, data);
                if from_trace {
                    envelope.fill_from_trace(&parsed.get().0);
                }
                (envelope, parsed)
            }
        }
    }
}

/// Sender evidence (DNS), awaited here on the async side: a blocking thread never waits on the network. It
/// needs what the message says (the URLs' domains, and for spamd the trace headers' envelope), so the
/// message is parsed for it on the blocking pool first, and the parse is kept with its bytes across the wait
/// for the judgement: one parse per message either way. Returns the envelope, the evidence and the message.
///
/// The parse runs on the gateway's judge threads when there is a gateway (the message path), else on the
/// blocking pool (a diagnosis).
async fn sender_evidence(
    gateway: Option<&Arc<Gateway>>,
    state: &Arc<GatewayState>,
    envelope: Envelope,
    data: Vec<u8>,
    from_trace: bool,
    door: Option<&DoorFacts>,
) -> Result<(Envelope, Evidence, Input), String> {
    let gatherer = state.gatherer.clone().filter(|_| from_trace || envelope.direction == Direction::Inbound);
    let Some(gatherer) = gatherer else {
        return Ok((envelope, Evidence::default(), Input::Bytes { data, from_trace }));
    };
    let (envelope, parsed) = {
        let state = state.clone();
        let parse = move || Input::Bytes { data, from_trace }.parse(&state, envelope);
        match gateway {
            Some(g) => g.judges.run(parse).await?,
            None => tokio::task::spawn_blocking(parse).await.map_err(|e| e.to_string())?,
        }
    };
    let mut evidence = Evidence::default();
    if envelope.direction == Direction::Inbound {
        let domains: Vec<&str> = parsed.get().0.urls.iter().map(|u| u.domain.as_str()).collect();
        let started = std::time::Instant::now();
        evidence =
            Evidence::from_sender(gatherer.gather_with_urls(parsed.backing_cart(), &envelope, &domains, door).await);
        // Timed where the questions are asked: outbound mail and gateways without DNS ask none.
        if let Some(g) = gateway {
            g.counters.observe_stage(crate::Stage::Evidence, started.elapsed());
        }
    }
    Ok((envelope, evidence, Input::Parsed(parsed)))
}

/// The verdict on a parsed message: reputation looked up, judged with the settings of the message's domain
/// (inbound: its first recipient's, outbound: its sender's) and `policy`. Returns the reputation keys too
/// (when reputation is on), for the effects. Reads the store, writes nothing.
fn judge_parsed(
    state: &GatewayState,
    policy: &Policy,
    msg: &Message<'_>,
    envelope: &Envelope,
    mut evidence: Evidence,
) -> (Verdict, Option<Vec<(ReputationKind, String)>>) {
    let engine = &state.engine;
    let domain = settings_domain(envelope, envelope.direction);
    let keys = look_up_reputation(state, msg, envelope, &mut evidence);
    let verdict = engine.judge_with_settings(msg, envelope, &evidence, policy, state.settings_for(&domain));
    (verdict, keys)
}

/// The domain whose settings judge a message going `direction`: inbound mail belongs to its (first)
/// recipient's domain, outbound mail to its sender's; read as every part of mailsift reads a domain
/// ([`domain_of`]: IDNA-mapped, lower case, no trailing dot). The CLI's scans and explanations ask here too.
pub fn settings_domain(envelope: &Envelope, direction: Direction) -> String {
    match direction {
        Direction::Inbound => envelope.rcpt_to.first().map(|r| domain_of(r)).unwrap_or_default(),
        Direction::Outbound => domain_of(envelope.mail_from.as_deref().unwrap_or("")),
    }
}

/// The sender's local reputation into `evidence`, when reputation is on; returns the keys it was looked up
/// under. Spoofs of our own domains count against the spoofing server, never against our domain.
fn look_up_reputation(
    state: &GatewayState,
    msg: &Message<'_>,
    envelope: &Envelope,
    evidence: &mut Evidence,
) -> Option<Vec<(ReputationKind, String)>> {
    let rep = state.reputation()?;
    let keys = mailsift_engine::evidence::reputation_keys_for(envelope, msg, &state.engine.config().organisation);
    match rep.lookup(&keys, mailsift_engine::unix_now()) {
        Ok(facts) => evidence.reputation = Some(facts),
        Err(e) => tracing::warn!(error = %e, "reputation lookup failed"),
    }
    Some(keys)
}

/// The effects of a verdict on what the gateway knows: spamtraps and auto-learning (when configured) learn
/// from it, and it is evidence about the sender for next time.
fn learn_and_record(
    state: &GatewayState,
    msg: &Message<'_>,
    envelope: &Envelope,
    verdict: &Verdict,
    keys: Option<&[(ReputationKind, String)]>,
) {
    let c = &state.engine.config().classifier;
    if let (Some(learner), true) = (state.learner(), c.autolearn || !c.spamtraps.is_empty()) {
        let mut learner = learner.lock().unwrap_or_else(|e| e.into_inner());
        match learner.after_verdict(envelope, msg, verdict, c) {
            Ok(Some(_)) => {
                if let Err(e) = learner.commit(mailsift_engine::unix_now()) {
                    tracing::warn!(error = %e, "classifier store not updated");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "learning from the verdict failed"),
        }
    }
    // Inbound only: our own users' mail says nothing about the outside world.
    if let (Some(rep), Some(keys), Direction::Inbound) = (state.reputation(), keys, envelope.direction) {
        let event = mailsift_store::ReputationEvent::Verdict(verdict.scl);
        if let Err(e) = rep.record(keys, event, mailsift_engine::unix_now()) {
            tracing::warn!(error = %e, "reputation update failed");
        }
    }
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
    entry.reason = verdict_reason(verdict);
    (entry.from_header.clone(), entry.subject.clone())
}

/// Why a verdict is not a plain delivery, in one line for the message log and the quarantine: the rule or
/// list entry that decided, or the score against the level it reached and the checks that added the most.
/// `None` for a message delivered on its score.
pub fn verdict_reason(v: &Verdict) -> Option<String> {
    if let Some(rule) = &v.decided_by {
        return Some(rule.clone());
    }
    let t = &v.thresholds;
    let (level, at) = match v.action {
        Action::Deliver => return None,
        Action::Tag => ("tag", t.tag),
        Action::Quarantine => ("quarantine", t.quarantine),
        Action::Reject => ("reject", t.reject),
    };
    let mut top: Vec<&mailsift_engine::verdict::SymbolResult> = v.symbols.iter().filter(|s| s.score > 0.0).collect();
    top.sort_by(|a, b| b.score.total_cmp(&a.score));
    let top: Vec<String> = top.iter().take(3).map(|s| format!("{} {:+.2}", s.name, s.score)).collect();
    let most = if top.is_empty() { String::new() } else { format!("; most points from {}", top.join(", ")) };
    let capped: Vec<String> = v
        .capped
        .iter()
        .map(|c| format!("; the {} checks added {:+.2} but count at most {:.2}", c.group, c.total, c.cap))
        .collect();
    if v.high_confidence && v.score < at {
        return Some(format!(
            "high-confidence spam (an Additional Spam Filtering option set to on), score {:.2}{most}",
            v.score
        ));
    }
    Some(format!("score {:.2} reached the {level} level {at:.2}{most}{}", v.score, capped.concat()))
}

/// The log row's reason once the message's outcome is known: the verdict's, and the outcome's when it adds
/// something (a temporary failure, the next hop's refusal).
pub fn merge_reasons(verdict: Option<String>, outcome: Option<String>) -> Option<String> {
    match (verdict, outcome) {
        (Some(v), Some(o)) if v != o => Some(format!("{o} ({v})")),
        (v, o) => v.or(o),
    }
}

#[cfg(test)]
mod tests {
    use super::settings_domain;
    use mailsift_engine::{Direction, Envelope};

    #[test]
    fn the_settings_domain_is_the_recipients_inbound_and_the_senders_outbound_normalised() {
        let env = Envelope {
            mail_from: Some("<Alice@Sender.Example.>".into()),
            rcpt_to: vec!["Bob@Bücher.Example.".into(), "carol@other.example".into()],
            ..Envelope::default()
        };
        assert_eq!(settings_domain(&env, Direction::Inbound), "xn--bcher-kva.example");
        assert_eq!(settings_domain(&env, Direction::Outbound), "sender.example");
        assert_eq!(settings_domain(&Envelope::default(), Direction::Inbound), "");
        assert_eq!(
            settings_domain(&Envelope { mail_from: Some(String::new()), ..Envelope::default() }, Direction::Outbound),
            ""
        );
    }
}
