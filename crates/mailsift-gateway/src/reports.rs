//! False-positive and false-negative reports by email: users send the message they want to correct to a report
//! address (`[smtp.reports]`), attached as `message/rfc822` so that its original headers survive. The gateway
//! unpacks each attached message, retrains both classifiers with it (unlearning the wrong side first), feeds the
//! sender's reputation, records the submission, and logs the report.
//!
//! An inline-forwarded message (no attachment) is accepted too, but its original headers are gone: only its
//! text is learned, and the submission says so.
//!
//! Who may report: only mail the gateway would relay (from the organisation's trusted networks or an
//! authenticated user), so that nobody outside can poison the classifiers by mailing the report address.

use std::sync::Arc;

use mailsift_engine::classify::{LearnOutcome, Side};
use mailsift_store::LogEntry;

use mailsift_engine::Envelope;

use crate::disposition::Answer;
use crate::log::commit_log;
use crate::state::{Gateway, GatewayState};

/// One message taken out of a report.
#[derive(Debug, Clone, PartialEq)]
pub struct Reported {
    pub raw: Vec<u8>,
    /// True when it was attached as message/rfc822 (headers intact); false for an inline forward.
    pub attached: bool,
}

/// The messages a report carries: every `message/rfc822` part, or else the report's own text.
pub fn unpack(raw: &[u8]) -> Vec<Reported> {
    // Only the part within the MIME limits: a report is mail from outside like any other.
    let raw = &raw[..mailsift_engine::message::limits::safe_prefix(raw).len];
    let Some(parsed) = mail_parser::MessageParser::default().parse(raw) else { return Vec::new() };
    let mut out = Vec::new();
    for part in parsed.parts.iter().skip(1) {
        if let mail_parser::PartType::Message(inner) = &part.body {
            out.push(Reported { raw: inner.raw_message().to_vec(), attached: true });
        }
    }
    if out.is_empty() {
        let text = parsed.body_text(0).map(|t| t.into_owned()).unwrap_or_default();
        if !text.trim().is_empty() {
            out.push(Reported { raw: format!("\r\n{text}").into_bytes(), attached: false });
        }
    }
    out
}

/// Processes a report transaction and answers it.
pub async fn process(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    envelope: &Envelope,
    side: Side,
    data: Vec<u8>,
) -> Answer {
    let id = mailsift_engine::new_reference_id();
    let reporter = envelope.mail_from.clone().unwrap_or_default();
    let size = data.len() as u64;
    let (state2, reporter2) = (state.clone(), reporter.clone());
    let done = tokio::task::spawn_blocking(move || learn_all(&state2, &data, side, &reporter2)).await;
    let (answer, reason) = match done {
        Ok(Ok(lines)) if !lines.is_empty() => {
            let n = lines.len();
            let text = format!("Report received: {n} message(s) learned as {} [ref {id}]", side.as_str());
            (Answer { code: 250, enhanced: "2.0.0".into(), text }, lines.join("; "))
        }
        Ok(Ok(_)) => (
            Answer {
                code: 550,
                enhanced: "5.6.0".into(),
                text: "No message found in the report: attach the original as a message (forward as attachment)".into(),
            },
            "empty report".into(),
        ),
        Ok(Err(e)) => {
            tracing::error!(reference = %id, error = %e, "report could not be learned");
            (
                Answer {
                    code: 451,
                    enhanced: "4.3.0".into(),
                    text: format!("Report not processed, try again later [ref {id}]"),
                },
                e,
            )
        }
        Err(e) => (
            Answer { code: 451, enhanced: "4.3.0".into(), text: "Report not processed, try again later".into() },
            e.to_string(),
        ),
    };
    let entry = LogEntry {
        reference_id: id,
        time: mailsift_engine::unix_now(),
        direction: "outbound".into(),
        client_ip: envelope.client_ip.map(|ip| ip.to_string()),
        helo: envelope.helo.clone(),
        mail_from: Some(reporter),
        recipients: envelope.rcpt_to.clone(),
        size,
        action: if answer.code == 250 { "report".into() } else { "failed".into() },
        stage: "data".into(),
        reason: Some(format!(
            "{} report: {reason}",
            if side == Side::Ham { "false-positive" } else { "false-negative" }
        )),
        ..LogEntry::default()
    };
    commit_log(gateway, entry).await;
    answer
}

/// Learns every reported message; returns one line per message saying what happened.
fn learn_all(state: &GatewayState, raw: &[u8], side: Side, reporter: &str) -> Result<Vec<String>, String> {
    let reported = unpack(raw);
    if reported.is_empty() {
        return Ok(Vec::new());
    }
    let Some(learner) = state.learner() else {
        return Err("the classifiers are switched off ([classifier] enabled = false)".into());
    };
    let mut lines = Vec::new();
    let now = mailsift_engine::unix_now();
    for r in &reported {
        let msg = state.engine.parse(&r.raw);
        let source =
            if r.attached { "email (attached original)" } else { "email (inline forward: original headers lost)" };
        let (outcome, _) = learner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .report_via(&msg, side, source, "email", Some(reporter), now)
            .map_err(|e| e.to_string())?;
        if let Some(rep) = state.reputation() {
            if let Err(e) = rep.record_report(&msg, side, &state.engine.config().organisation, now) {
                tracing::warn!(error = %e, "reputation not updated from a report");
            }
        }
        let what = match outcome {
            LearnOutcome::AlreadyKnown => "already known",
            LearnOutcome::Relearned => "corrected",
            _ => "learned",
        };
        let subject = msg.subject.clone().unwrap_or_default();
        lines.push(format!("{what}: {}", crate::text::sanitize(&subject, 80)));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attached_originals_are_unpacked_with_their_headers() {
        let report = b"From: bob@example.com\r\nTo: notspam@example.com\r\nSubject: Fwd: invoice\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nThis is not spam.\r\n\
--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: partner@partner.example\r\nSubject: invoice 42\r\n\r\nPlease pay.\r\n--b--\r\n";
        let got = unpack(report);
        assert_eq!(got.len(), 1);
        assert!(got[0].attached);
        let inner = String::from_utf8_lossy(&got[0].raw);
        assert!(inner.starts_with("From: partner@partner.example\r\nSubject: invoice 42"), "{inner}");
    }

    #[test]
    fn an_inline_forward_keeps_only_its_text() {
        let got = unpack(b"From: bob@example.com\r\nSubject: Fwd: x\r\n\r\n---- Forwarded ----\r\nBuy now!\r\n");
        assert_eq!(got.len(), 1);
        assert!(!got[0].attached);
        assert!(String::from_utf8_lossy(&got[0].raw).contains("Buy now!"));
        assert!(unpack(b"Subject: empty\r\n\r\n   \r\n").is_empty());
    }
}
