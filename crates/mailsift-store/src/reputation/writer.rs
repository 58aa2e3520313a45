//! The reputation store's one writer: a thread that owns the write connection and commits whatever is
//! queued in one transaction per batch (the gateway database's writer does the same for the message log).
//!
//! Reputation rows are evidence, not promises made to a client: a batch commits with `synchronous =
//! NORMAL` (in WAL mode: durable from the next checkpoint, never corrupt) and nobody waits for a record.
//! Only resets and flushes are answered, once the batch that holds them is committed.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender};

use mailsift_engine::evidence::ReputationKind;
use rusqlite::{params, Connection};
use rustc_hash::FxHashMap;

use super::{fold, kind_str, stored_row, Shared};
use crate::StoreError;

/// At most this many commands go into one transaction, so a backlog still commits in bounded steps and the
/// in-flight table is let go of regularly.
const MAX_BATCH: usize = 1024;
/// How many times the writer waits `busy_timeout` for another process's write lock before failing a batch.
const BEGIN_ATTEMPTS: u32 = 3;

pub(super) enum Command {
    /// One event against every identity of a message (weights already worked out).
    Record { keys: Vec<(ReputationKind, String)>, bad: f64, good: f64, now: i64 },
    /// Forget one key (every kind); answered with how many rows went.
    Reset { key: String, reply: SyncSender<Result<usize, StoreError>> },
    /// Answered once everything queued before it is committed, or with the records lost since the last one.
    Flush(SyncSender<Result<(), StoreError>>),
}

pub(super) fn run(conn: Connection, shared: &Shared, queue: Receiver<Command>) {
    // Records lost in failed batches since the last flush, and the first reason.
    let mut lost: u64 = 0;
    let mut first_loss: Option<String> = None;
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let records = batch.iter().filter(|c| matches!(c, Command::Record { .. })).count();
        shared.queued.fetch_sub(records, Ordering::Relaxed);

        let mut removed: Vec<usize> = Vec::new();
        let outcome = transact(&conn, shared.half_life_secs, &batch, &mut removed);
        let failure = outcome.err().map(|e| e.to_string());
        if let Some(reason) = &failure {
            if records > 0 {
                lost += records as u64;
                shared.failed.fetch_add(records as u64, Ordering::Relaxed);
                first_loss.get_or_insert_with(|| reason.clone());
                // Nobody waits on a record: say where the operator looks that it is gone.
                eprintln!("mailsift: reputation: {}: {records} records not written: {reason}", shared.path.display());
            }
        }
        let mut removed = removed.into_iter();
        for cmd in batch {
            match cmd {
                // Committed (or lost): the file now answers for these identities.
                Command::Record { keys, .. } => shared.settle(&keys),
                Command::Reset { reply, .. } => {
                    let answer = match (&failure, removed.next()) {
                        (None, Some(n)) => Ok(n),
                        (Some(reason), _) => Err(write_error(shared, reason.clone())),
                        (None, None) => Err(write_error(shared, "the reset was not carried out".into())),
                    };
                    let _ = reply.send(answer);
                }
                Command::Flush(reply) => {
                    let answer = match first_loss.take() {
                        Some(first) => Err(write_error(
                            shared,
                            format!("{lost} reputation records were lost since the last flush; the first: {first}"),
                        )),
                        None => Ok(()),
                    };
                    lost = 0;
                    // The caller may have given up waiting; nothing to tell then.
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

fn write_error(shared: &Shared, reason: String) -> StoreError {
    StoreError::Write { path: shared.path.display().to_string(), reason }
}

/// Runs the batch in one transaction; `removed` gets each reset's row count, in order. An error means the
/// whole transaction was rolled back.
///
/// Events for one identity are folded in memory in the order they were queued and the row is written once
/// per batch: under load the same client IP and network come in every message, and one write instead of
/// a thousand is what lets the writer keep up.
fn transact(
    conn: &Connection,
    half_life_secs: f64,
    batch: &[Command],
    removed: &mut Vec<usize>,
) -> rusqlite::Result<()> {
    crate::sqlite::begin_immediate(conn, BEGIN_ATTEMPTS)?;
    let result = (|| {
        let mut rows: FxHashMap<(ReputationKind, &str), (f64, f64, i64)> = FxHashMap::default();
        for cmd in batch {
            match cmd {
                Command::Record { keys, bad, good, now } => {
                    for (kind, key) in keys {
                        let old = match rows.get(&(*kind, key.as_str())) {
                            Some(row) => Some(*row),
                            None => stored_row(conn, *kind, key)?,
                        };
                        rows.insert((*kind, key.as_str()), fold(old, *bad, *good, *now, half_life_secs));
                    }
                }
                Command::Reset { key, .. } => {
                    // What was recorded before the reset is written first, so the reset removes it too.
                    write_rows(conn, &mut rows)?;
                    removed.push(conn.prepare_cached("DELETE FROM reputation WHERE key = ?1")?.execute(params![key])?);
                }
                Command::Flush(_) => {}
            }
        }
        write_rows(conn, &mut rows)?;
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

fn write_rows(
    conn: &Connection,
    rows: &mut FxHashMap<(ReputationKind, &str), (f64, f64, i64)>,
) -> rusqlite::Result<()> {
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO reputation (kind, key, spam, ham, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for ((kind, key), (spam, ham, updated)) in rows.drain() {
        insert.execute(params![kind_str(kind), key, spam, ham, updated])?;
    }
    Ok(())
}
