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
/// is never passed to the client (the message itself is already safe, or already refused): the row is kept
/// in the data directory's spill file instead, and written to the database when it answers again
/// ([`replay_spill`]), so an outage of a shared database costs the log nothing.
pub async fn commit_log(gateway: &Gateway, entry: LogEntry) {
    let reference = entry.reference_id.clone();
    let (done, committed) = tokio::sync::oneshot::channel();
    let kept = entry.clone();
    let queued = gateway.db.log_append_then(entry, move |r| {
        let _ = done.send(r);
    });
    let result = match queued {
        Ok(()) => committed.await.unwrap_or_else(|_| Err(gateway_db_gone(gateway))),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        let dir = gateway.data_dir.clone();
        let spilled = tokio::task::spawn_blocking(move || spill(&dir, &kept)).await;
        match spilled {
            Ok(Ok(())) => {
                tracing::warn!(reference = %reference, error = %e, "message log write failed; row kept to write later")
            }
            _ => tracing::error!(reference = %reference, error = %e, "message log write failed; row lost"),
        }
    }
}

/// The file in the data directory where log rows wait while the database cannot take them, one JSON line
/// each.
pub const SPILL_FILE: &str = "log-spill.jsonl";

/// The spill file's bound: about 64,000 rows, an outage of many minutes at full load. Beyond it rows are
/// dropped (and said), so a long outage cannot fill the disk or make the replay read an unbounded file.
pub const SPILL_MAX_BYTES: u64 = 64 << 20;

/// One writer of the spill file at a time in this process (appends and the replay's rename).
static SPILL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Appends one row to the spill file and syncs it.
fn spill(dir: &std::path::Path, entry: &LogEntry) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let _one = SPILL.lock().unwrap_or_else(|e| e.into_inner());
    let file = dir.join(SPILL_FILE);
    let held = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    if held + line.len() as u64 > SPILL_MAX_BYTES {
        return Err(std::io::Error::other(format!("{} is full ({SPILL_MAX_BYTES} bytes)", file.display())));
    }
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&file)?;
    f.write_all(&line)?;
    f.sync_data()
}

/// Writes the rows kept in the spill file to the database (waiting for each batch's commit), then removes
/// them; rows that still cannot be written stay for the next call. Returns how many were written. Called
/// each second by the background watcher; costs one `stat` when there is nothing to replay.
pub fn replay_spill(gateway: &Gateway) -> std::io::Result<usize> {
    let file = gateway.data_dir.join(SPILL_FILE);
    if !file.exists() {
        return Ok(0);
    }
    // Taken aside first, so rows that fail meanwhile go to a new file and none is written twice here.
    let replaying = gateway.data_dir.join(format!("{SPILL_FILE}.replaying"));
    if !replaying.exists() {
        let _one = SPILL.lock().unwrap_or_else(|e| e.into_inner());
        std::fs::rename(&file, &replaying)?;
    }
    let text = std::fs::read_to_string(&replaying)?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    // All queued at once (the writer commits them in a few batches), each row's outcome heard back.
    let (results, outcomes) = std::sync::mpsc::channel();
    for (i, line) in lines.iter().enumerate() {
        let Ok(entry) = serde_json::from_str::<LogEntry>(line) else {
            tracing::error!("message log spill: an unreadable row skipped");
            let _ = results.send((i, true));
            continue;
        };
        let tell = results.clone();
        let queued = gateway.db.log_append_then(entry, move |r| {
            let _ = tell.send((i, r.is_ok()));
        });
        if queued.is_err() {
            let _ = results.send((i, false));
        }
    }
    drop(results);
    let mut ok = vec![false; lines.len()];
    for (i, written) in outcomes {
        ok[i] = written;
    }
    let written = ok.iter().filter(|w| **w).count();
    let left: Vec<&str> = lines.iter().zip(&ok).filter(|(_, w)| !**w).map(|(l, _)| *l).collect();
    if left.is_empty() {
        std::fs::remove_file(&replaying)?;
    } else {
        // What is still unwritten goes back in front of anything spilled meanwhile.
        let _one = SPILL.lock().unwrap_or_else(|e| e.into_inner());
        let newer = std::fs::read_to_string(&file).unwrap_or_default();
        let mut rest = left.join("\n");
        rest.push('\n');
        rest.push_str(&newer);
        std::fs::write(&file, rest)?;
        std::fs::remove_file(&replaying)?;
    }
    if written > 0 {
        tracing::info!(rows = written, "message log: rows kept during a database outage written");
    }
    Ok(written)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spill_file_keeps_rows_until_its_bound_then_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let entry = LogEntry { reference_id: "R1".into(), ..LogEntry::default() };
        spill(dir.path(), &entry).unwrap();
        let file = dir.path().join(SPILL_FILE);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(serde_json::from_str::<LogEntry>(text.trim()).unwrap(), entry);
        // Nearly full (a sparse file): the next row does not fit and the file is left as it was.
        std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(SPILL_MAX_BYTES - 10).unwrap();
        assert!(spill(dir.path(), &entry).unwrap_err().to_string().contains("is full"));
        assert_eq!(std::fs::metadata(&file).unwrap().len(), SPILL_MAX_BYTES - 10);
    }
}
