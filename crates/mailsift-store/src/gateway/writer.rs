//! The database's one writer: a thread that owns the write connection and commits whatever is queued in one
//! transaction (group commit).
//!
//! Log rows are the bulk of the writes. A row queued without waiting (`Log`: refusals at the door and other
//! rows no 250 depends on) is committed with `synchronous = NORMAL` (in WAL mode: durable from the next
//! checkpoint, never corrupt), but lives only in this process's queue until its batch commits. The row of an
//! answered message is sent as `LogThen`: its sender is told once the batch that holds it is committed and
//! fsynced, so the gateway answers 250 only after its row is on disk, and the sessions that finish together
//! share one fsync. Every other write (quarantine puts, release claims, deletes, purges) is a job whose caller
//! waits for its result; a batch holding a job is committed with `synchronous = FULL`, so the WAL is fsynced
//! before the job's caller hears back. A lazy job (recording when a policy rule or entry last matched) is a
//! job nobody waits for: it rides with the log rows and does not make its batch durable. Each queued item
//! runs inside its own savepoint, so one that fails is rolled back alone and the rest of the batch still
//! commits.
//!
//! The queue is bounded: when the disk cannot keep up, appending blocks instead of growing memory or
//! dropping rows.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use super::msglog::{self, LogEntry, SymbolIds};
use crate::StoreError;

/// How many queued items can wait for the writer before appending blocks.
pub(super) const QUEUE: usize = 8192;
/// At most this many items go into one transaction, so a backlog still commits in bounded steps.
const MAX_BATCH: usize = 2048;
/// How many times the writer waits `busy_timeout` for another process's write lock before failing a batch.
const BEGIN_ATTEMPTS: u32 = 3;

pub(super) enum Command {
    Log(Box<LogEntry>),
    /// A log row whose sender waits for it: `done` is called once its batch is committed (fsynced) or failed.
    LogThen(Box<LogEntry>, Done),
    Job(Box<dyn Job>),
    /// A write nobody waits for and that may reach the disk with the log rows (`synchronous = NORMAL`), such
    /// as recording when a policy entry last matched; its `finish` reports a failure itself.
    Lazy(Box<dyn Job>),
    /// Answered once everything queued before it is committed (or lost: then with the error).
    Flush(SyncSender<Result<(), StoreError>>),
}

/// Called with a durable log row's outcome, on the writer thread: it must only hand the result on.
pub(super) type Done = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A write whose caller waits for its outcome.
pub(super) trait Job: Send {
    /// Does the work inside the batch's transaction; `false` if it failed (its savepoint is rolled back).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Tells the caller, once the batch is committed (`Ok`) or failed (the reason).
    fn finish(self: Box<Self>, path: &Path, committed: Result<(), &str>);
}

/// A closure as a job, answering on a channel.
pub(super) struct Call<T, F> {
    f: Option<F>,
    out: Option<rusqlite::Result<T>>,
    reply: SyncSender<Result<T, StoreError>>,
}

impl<T, F> Call<T, F> {
    pub(super) fn new(f: F, reply: SyncSender<Result<T, StoreError>>) -> Call<T, F> {
        Call { f: Some(f), out: None, reply }
    }
}

impl<T, F> Job for Call<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Connection) -> bool {
        let f = self.f.take().expect("a job runs once");
        let out = f(conn);
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, path: &Path, committed: Result<(), &str>) {
        let result = match (self.out, committed) {
            (Some(Err(e)), _) => Err(super::sqlite_error(path, e)),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (_, Err(reason)) => Err(write_error(path, reason.to_string())),
            (None, Ok(())) => Err(write_error(path, "the write was not carried out".to_string())),
        };
        // The caller may have given up waiting (its thread ended); nothing to tell then.
        let _ = self.reply.send(result);
    }
}

pub(super) fn write_error(path: &Path, reason: String) -> StoreError {
    StoreError::Write { path: path.display().to_string(), reason }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    symbols: SymbolIds,
    full_sync: bool,
    /// Log entries lost since the last flush, and the first reason.
    lost: u64,
    first_loss: Option<String>,
}

pub(super) fn run(conn: Connection, path: PathBuf, queue: Receiver<Command>) {
    let mut w = Writer { conn, path, symbols: SymbolIds::default(), full_sync: false, lost: 0, first_loss: None };
    while let Ok(first) = queue.recv() {
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        w.write(batch);
    }
}

impl Writer {
    fn write(&mut self, mut batch: Vec<Command>) {
        let durable = batch.iter().any(|c| matches!(c, Command::Job(_) | Command::LogThen(..)));
        let mut failed_entries = Vec::new();
        let outcome = self
            .set_full_sync(durable)
            .and_then(|()| transact(&self.conn, &mut self.symbols, &mut batch, &mut failed_entries));
        for (_, reason) in &failed_entries {
            self.note_loss(1, reason);
        }
        let failure = outcome.err().map(|e| e.to_string());
        if let Some(reason) = &failure {
            // Ids handed out in a rolled-back transaction may not exist.
            self.symbols.clear();
            let logs = batch.iter().filter(|c| matches!(c, Command::Log(_) | Command::LogThen(..))).count() as u64;
            if logs > 0 {
                self.note_loss(logs, reason);
            }
        }
        for (i, cmd) in batch.into_iter().enumerate() {
            match cmd {
                Command::Log(_) => {}
                Command::LogThen(_, done) => {
                    let alone = failed_entries.iter().find(|(at, _)| *at == i).map(|(_, r)| r.as_str());
                    match failure.as_deref().or(alone) {
                        None => done(Ok(())),
                        Some(reason) => done(Err(write_error(&self.path, reason.to_string()))),
                    }
                }
                Command::Job(job) | Command::Lazy(job) => {
                    job.finish(&self.path, failure.as_deref().map_or(Ok(()), Err))
                }
                Command::Flush(reply) => {
                    let answer = match self.first_loss.take() {
                        Some(first) => Err(write_error(
                            &self.path,
                            format!(
                                "{} message log entries were lost since the last flush; the first: {first}",
                                self.lost
                            ),
                        )),
                        None => Ok(()),
                    };
                    self.lost = 0;
                    let _ = reply.send(answer);
                }
            }
        }
    }

    fn set_full_sync(&mut self, full: bool) -> rusqlite::Result<()> {
        if self.full_sync != full {
            self.conn.pragma_update(None, "synchronous", if full { "FULL" } else { "NORMAL" })?;
            self.full_sync = full;
        }
        Ok(())
    }

    fn note_loss(&mut self, n: u64, reason: &str) {
        self.lost += n;
        if self.first_loss.is_none() {
            self.first_loss = Some(reason.to_string());
        }
        // Nobody waits on a log entry: say where the operator looks that it is gone.
        eprintln!("mailsift: message log: {}: {n} entries not written: {reason}", self.path.display());
    }
}

/// Runs the batch in one transaction; entries that fail alone are rolled back to their savepoint and their
/// positions and reasons pushed to `failed_entries`. An error means the whole transaction was rolled back.
fn transact(
    conn: &Connection,
    symbols: &mut SymbolIds,
    batch: &mut [Command],
    failed_entries: &mut Vec<(usize, String)>,
) -> rusqlite::Result<()> {
    crate::sqlite::begin_immediate(conn, BEGIN_ATTEMPTS)?;
    let result = (|| {
        for (i, cmd) in batch.iter_mut().enumerate() {
            match cmd {
                Command::Log(entry) | Command::LogThen(entry, _) => {
                    savepoint(conn)?;
                    match msglog::insert(conn, entry, symbols) {
                        Ok(()) => release(conn)?,
                        Err(e) => {
                            rollback_to(conn)?;
                            symbols.clear();
                            failed_entries.push((i, e.to_string()));
                        }
                    }
                }
                Command::Job(job) | Command::Lazy(job) => {
                    savepoint(conn)?;
                    if job.run(conn) {
                        release(conn)?;
                    } else {
                        rollback_to(conn)?;
                        symbols.clear();
                    }
                }
                Command::Flush(_) => {}
            }
        }
        conn.prepare_cached("COMMIT")?.execute([])?;
        Ok(())
    })();
    if result.is_err() && !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

fn savepoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("SAVEPOINT item")?.execute([])?;
    Ok(())
}

fn release(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("RELEASE item")?.execute([])?;
    Ok(())
}

fn rollback_to(conn: &Connection) -> rusqlite::Result<()> {
    conn.prepare_cached("ROLLBACK TO item")?.execute([])?;
    release(conn)
}
