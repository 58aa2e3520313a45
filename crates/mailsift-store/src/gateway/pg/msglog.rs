//! The message log on PostgreSQL: the same entries and searches as `gateway/msglog.rs` on SQLite.
//!
//! One row per transaction; the recipients and the symbols (names and scores, in the verdict's order) are
//! arrays in the row, so an entry is one row to write and to read, and "which messages fired X" is a GIN
//! index lookup (`symbol_names @> ARRAY[X]`).
//!
//! Rows are written by one writer thread with a connection of its own, in batches, with one binary COPY
//! per batch (one round trip however many rows). As on SQLite: a row queued without waiting
//! ([`PgStore::log_append`]) commits with `synchronous_commit = off` (on disk within a few hundred
//! milliseconds, never half-written); the row of an answered message ([`PgStore::log_append_then`]) is in a
//! batch committed with the server's durable setting, and its sender hears back only then, so nodes that
//! finish messages together share one WAL flush.

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;

use super::{Conn, PgStore};
use crate::gateway::msglog::{LogEntry, LogQuery};
use crate::StoreError;

/// Queued entries before appending blocks.
pub(super) const QUEUE: usize = 8192;
/// At most this many entries in one transaction.
const MAX_BATCH: usize = 2048;
/// Rows deleted per statement by a purge.
const PURGE_CHUNK: i64 = 5_000;

pub(super) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

pub(super) enum Command {
    Log(Box<LogEntry>),
    LogThen(Box<LogEntry>, Done),
    /// A write nobody waits for that rides with the log rows (when a policy entry last matched), in a
    /// savepoint of its own; `LazyDone` hears how it went once the batch is committed.
    Lazy(Box<LazyWrite>, LazyDone),
    Flush(std::sync::mpsc::SyncSender<Result<(), StoreError>>),
}

pub(super) type LazyWrite = dyn FnMut(&mut postgres::Transaction<'_>) -> Result<(), postgres::Error> + Send;
pub(super) type LazyDone = Box<dyn FnOnce(Result<(), String>) + Send>;

const COLUMNS: &str = "reference_id, time, direction, client_ip, helo, mail_from, recipients, from_header, subject, \
                       message_id, size, score, required, action, stage, reason, next_hop_response, symbol_names, \
                       symbol_scores";

/// The writer thread: commits what is queued, batch after batch, until the queue closes.
pub(super) fn run(mut conn: Conn, target: String, queue: crossbeam_channel::Receiver<Command>) {
    let (mut lost, mut first_loss): (u64, Option<String>) = (0, None);
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let durable = batch.iter().any(|c| matches!(c, Command::LogThen(..)));
        let mut entries: Vec<&LogEntry> = Vec::new();
        let mut lazies: Vec<(&mut LazyWrite, Option<String>)> = Vec::new();
        for c in batch.iter_mut() {
            match c {
                Command::Log(e) | Command::LogThen(e, _) => entries.push(&**e),
                Command::Lazy(write, _) => lazies.push((&mut **write, None)),
                Command::Flush(_) => {}
            }
        }
        let mut lazy_done = Vec::new();
        let failure = if entries.is_empty() && lazies.is_empty() {
            None
        } else {
            let reused = conn.client.is_some();
            let mut committing = false;
            let mut result =
                conn.client().and_then(|c| write_batch(c, &entries, &mut lazies, durable, &mut committing));
            // A connection found dead (the server restarted while it sat idle): once more on a fresh one,
            // unless the batch reached COMMIT (then whether it committed is unknown: reported, not doubled).
            if reused && !committing && result.as_ref().is_err_and(super::connection_lost) {
                conn.client = None;
                result = conn.client().and_then(|c| write_batch(c, &entries, &mut lazies, durable, &mut committing));
            }
            if result.is_err() && conn.client.as_ref().is_some_and(|c| c.is_closed()) {
                conn.client = None;
            }
            result.err().map(|e| super::pg_error(&target, e))
        };
        lazy_done.extend(lazies.into_iter().map(|(_, failed)| failed));
        let mut lazy_done = lazy_done.into_iter();
        if let Some(e) = &failure {
            lost += entries.len() as u64;
            first_loss.get_or_insert_with(|| e.to_string());
        }
        for cmd in batch {
            match cmd {
                Command::Log(_) => {}
                Command::Lazy(_, done) => {
                    let own = lazy_done.next().flatten();
                    done(match (&failure, own) {
                        (Some(e), _) => Err(e.to_string()),
                        (None, Some(reason)) => Err(reason),
                        (None, None) => Ok(()),
                    })
                }
                Command::LogThen(_, done) => done(match &failure {
                    None => Ok(()),
                    Some(e) => Err(same_error(e)),
                }),
                Command::Flush(reply) => {
                    let answer = match first_loss.take() {
                        Some(first) => Err(StoreError::Write {
                            path: target.clone(),
                            reason: format!(
                                "{lost} message log entries were lost since the last flush; the first: {first}"
                            ),
                        }),
                        None => Ok(()),
                    };
                    lost = 0;
                    let _ = reply.send(answer);
                }
            }
        }
    }
}

/// The error every entry of a failed batch is told (one error, shared).
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Postgres { target, reason, temporary } => {
            StoreError::Postgres { target: target.clone(), reason: reason.clone(), temporary: *temporary }
        }
        other => StoreError::Write { path: String::new(), reason: other.to_string() },
    }
}

fn write_batch(
    c: &mut postgres::Client,
    entries: &[&LogEntry],
    lazies: &mut [(&mut LazyWrite, Option<String>)],
    durable: bool,
    committing: &mut bool,
) -> Result<(), postgres::Error> {
    let mut tx = c.transaction()?;
    if !durable {
        tx.batch_execute("SET LOCAL synchronous_commit = off")?;
    }
    for (write, failed) in lazies.iter_mut() {
        // Its own savepoint: a lazy write that fails is rolled back alone, the log rows still commit.
        let mut sp = tx.transaction()?;
        match write(&mut sp) {
            Ok(()) => {
                sp.commit()?;
                *failed = None;
            }
            Err(e) => {
                *failed = Some(e.to_string());
                sp.rollback()?;
            }
        }
    }
    if entries.is_empty() {
        *committing = true;
        return tx.commit();
    }
    let sink = tx.copy_in(&format!("COPY message_log ({COLUMNS}) FROM STDIN (FORMAT binary)"))?;
    let types = [
        Type::TEXT,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::FLOAT8,
        Type::FLOAT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT_ARRAY,
        Type::FLOAT8_ARRAY,
    ];
    let mut w = BinaryCopyInWriter::new(sink, &types);
    for e in entries {
        let size = e.size.min(i64::MAX as u64) as i64;
        let score = e.score.filter(|s| !s.is_nan());
        let required = e.required.filter(|s| !s.is_nan());
        let names: Vec<&str> = e.symbols.iter().map(|(n, _)| n.as_str()).collect();
        let scores: Vec<Option<f64>> = e.symbols.iter().map(|&(_, s)| Some(s).filter(|s| !s.is_nan())).collect();
        w.write(&[
            &e.reference_id,
            &e.time,
            &e.direction,
            &e.client_ip,
            &e.helo,
            &e.mail_from,
            &e.recipients,
            &e.from_header,
            &e.subject,
            &e.message_id,
            &size,
            &score,
            &required,
            &e.action,
            &e.stage,
            &e.reason,
            &e.next_hop_response,
            &names,
            &scores,
        ])?;
    }
    w.finish()?;
    *committing = true;
    tx.commit()
}

fn entry(r: &postgres::Row) -> LogEntry {
    let names: Vec<String> = r.get(17);
    let scores: Vec<Option<f64>> = r.get(18);
    LogEntry {
        reference_id: r.get(0),
        time: r.get(1),
        direction: r.get(2),
        client_ip: r.get(3),
        helo: r.get(4),
        mail_from: r.get(5),
        recipients: r.get(6),
        from_header: r.get(7),
        subject: r.get(8),
        message_id: r.get(9),
        size: r.get::<_, i64>(10) as u64,
        score: r.get(11),
        required: r.get(12),
        action: r.get(13),
        stage: r.get(14),
        reason: r.get(15),
        next_hop_response: r.get(16),
        symbols: names.into_iter().zip(scores.into_iter().map(|s| s.unwrap_or(f64::NAN))).collect(),
    }
}

impl PgStore {
    fn log_queue(&self, cmd: Command) -> Result<(), StoreError> {
        let gone =
            || StoreError::Write { path: self.target().to_string(), reason: "the log writer has stopped".into() };
        self.inner.log.as_ref().ok_or_else(gone)?.send(cmd).map_err(|_| gone())
    }

    /// Queues a log entry and returns at once (it blocks only when the writer is thousands of entries
    /// behind); committed with the next batch. [`PgStore::log_flush`] reports entries that were lost.
    pub fn log_append(&self, entry: LogEntry) -> Result<(), StoreError> {
        self.log_queue(Command::Log(Box::new(entry)))
    }

    /// Queues the log row of an answered message; `done` is called (on the writer thread: it must only pass
    /// the result on) once the batch holding it is committed durably, or with the reason it is not.
    pub fn log_append_then(
        &self,
        entry: LogEntry,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.log_queue(Command::LogThen(Box::new(entry), Box::new(done)))
    }

    /// Queues a write nobody waits for, committed with the next batch of log rows (see [`Command::Lazy`]).
    pub(crate) fn log_lazy(
        &self,
        write: impl FnMut(&mut postgres::Transaction<'_>) -> Result<(), postgres::Error> + Send + 'static,
        done: impl FnOnce(Result<(), String>) + Send + 'static,
    ) -> Result<(), StoreError> {
        self.log_queue(Command::Lazy(Box::new(write), Box::new(done)))
    }

    /// Waits until everything appended before it is committed; fails if entries were lost since the last
    /// flush (how many, and the first reason).
    pub fn log_flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.log_queue(Command::Flush(reply))?;
        answer.recv().map_err(|_| StoreError::Write {
            path: self.target().to_string(),
            reason: "the log writer has stopped".into(),
        })?
    }

    /// The newest entry with this reference id (entries still queued are not seen: flush first).
    pub fn log_get(&self, reference_id: &str) -> Result<Option<LogEntry>, StoreError> {
        let reference_id = reference_id.to_string();
        self.call(move |c| {
            let sql = format!(
                "SELECT {COLUMNS} FROM message_log WHERE reference_id = $1 ORDER BY time DESC, id DESC LIMIT 1"
            );
            Ok(c.query_opt(&sql, &[&reference_id])?.map(|r| entry(&r)))
        })
    }

    /// The entries matching `q`, newest first.
    pub fn log_search(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        let mut w = super::filter::Filter::default();
        w.contains(&["mail_from", "from_header"], &q.sender);
        if let Some(s) = q.recipient.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            let a = w.arg(super::filter::like_pattern(&s.to_lowercase()));
            // The recipients' text (trigram-indexed) rules out most rows before the array is unpacked.
            w.and(format!(
                "(mailsift_recipients_text(recipients) LIKE {a}::text \
                 AND EXISTS (SELECT 1 FROM unnest(recipients) r WHERE lower(r) LIKE {a}::text))"
            ));
        }
        w.contains(&["subject"], &q.subject);
        w.equals("client_ip", &q.client_ip);
        w.equals("action", &q.action);
        if let Some(symbol) = &q.symbol {
            let a = w.arg(vec![symbol.clone()]);
            w.and(format!("symbol_names @> {a}::text[]"));
        }
        w.time_range("time", q.since, q.until);
        w.equals("reference_id", &q.reference_id);
        w.log_in_domains(&q.domains);
        let sql = format!(
            "SELECT {COLUMNS} FROM message_log{} ORDER BY time DESC, id DESC{}",
            w.clause(),
            w.page(q.limit, q.offset)
        );
        self.call(move |c| Ok(c.query(&sql, &w.params())?.iter().map(entry).collect()))
    }

    /// Deletes the entries older than `older_than` (Unix seconds), a chunk per statement; returns how many.
    pub fn log_purge(&self, older_than: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.call(move |c| {
                c.execute(
                    "DELETE FROM message_log WHERE id IN (SELECT id FROM message_log WHERE time < $1 LIMIT $2)",
                    &[&older_than, &PURGE_CHUNK],
                )
            })? as usize;
            total += n;
            if (n as i64) < PURGE_CHUNK {
                return Ok(total);
            }
        }
    }
}
