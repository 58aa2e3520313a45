//! Message-log rows: built here for every front end, written with or without waiting for the fsync.

use mailsift_engine::{ConnectionVerdict, Direction, Envelope};
use mailsift_store::LogEntry;

use crate::state::Gateway;
use crate::text::sanitize;

/// The log's name of a direction.
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

/// The row of a sender refused at the door (MAIL FROM): `env` is the envelope the connection was judged with.
pub fn door_log_entry(env: &Envelope, v: &ConnectionVerdict, reason: &str) -> LogEntry {
    LogEntry {
        reference_id: v.id.clone(),
        time: mailsift_engine::unix_now(),
        direction: "inbound".into(),
        client_ip: env.client_ip.map(|ip| ip.to_string()),
        helo: env.helo.clone(),
        mail_from: env.mail_from.clone(),
        score: Some(v.score),
        symbols: v.symbols.iter().map(|s| (s.name.clone(), s.score)).collect(),
        action: "refused".into(),
        stage: "mail".into(),
        reason: Some(reason.to_string()),
        ..LogEntry::default()
    }
}

/// The row of a recipient refused because we do not relay for it; `env` is the transaction so far.
pub fn relay_denied_entry(env: &Envelope, rcpt: &str) -> LogEntry {
    LogEntry {
        reference_id: mailsift_engine::new_reference_id(),
        time: mailsift_engine::unix_now(),
        direction: direction_name(env.direction).into(),
        client_ip: env.client_ip.map(|ip| ip.to_string()),
        helo: env.helo.clone(),
        mail_from: env.mail_from.clone(),
        recipients: vec![sanitize(rcpt, 320)],
        action: "refused".into(),
        stage: "rcpt".into(),
        reason: Some("relaying denied".into()),
        ..LogEntry::default()
    }
}

/// The row of a message as any front end received it (before judging): the envelope, made safe for the log.
pub fn message_entry(env: &Envelope, size: u64, stage: &str) -> LogEntry {
    LogEntry {
        time: mailsift_engine::unix_now(),
        direction: direction_name(env.direction).into(),
        client_ip: env.client_ip.map(|ip| ip.to_string()),
        helo: env.helo.as_deref().map(|h| sanitize(h, 200)),
        mail_from: env.mail_from.as_deref().map(|f| sanitize(f, 320)),
        recipients: env.rcpt_to.iter().map(|r| sanitize(r, 320)).collect(),
        size,
        stage: stage.into(),
        ..LogEntry::default()
    }
}
