//! The gateway's database: one SQLite file, `mailsift.sqlite` in the data directory, holding the message log,
//! the quarantine, the outbound spool (`spool.rs`) and the policy (filter rules, allowed and blocked senders; `policy.rs`), the domains, and the
//! web console's accounts and settings (`accounts.rs`) and its sessions and login counts (`web.rs`); each adds a step to the list in `migrations.rs`. The
//! searches and the dashboard's statistics (`stats.rs`) share one filter builder (`filter.rs`).
//!
//! Search speed (`benches/log_search.rs`, 100,000 logged messages over 30 days): a search that fills its page
//! from recent entries answers in about 1 ms (newest first through the time index, stopping at the page); one
//! whose filters match fewer entries than the page reads every entry in its time range, about 35-60 ms per
//! 100,000 on the 2-core development machine. A time range bounds that.
//!
//! Several processes may open it at once (the server writes while the CLI reads and releases): WAL journal,
//! a busy timeout, and `BEGIN IMMEDIATE` for every write so a writer waits for the lock up front instead of
//! failing halfway. Inside one process, a [`Database`] is a cheap clone around one writer thread (see
//! `writer.rs`: group commit, log rows without waiting, everything else durable before it returns) and a small
//! pool of reader connections.
//!
//! What it is not: the classifier's token store or the reputation store (their own files, written at other
//! rhythms), nor the policy that decides what to log, quarantine or purge.

mod accounts;
mod dmarc;
mod domains;
pub(crate) mod filter;
mod lease;
pub(crate) mod migrations;
pub mod msglog;
pub mod pg;
pub mod policy;
pub mod quarantine;
pub mod spool;
mod stats;
pub(crate) mod web;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::StoreError;
pub use accounts::{Account, Role};
pub use dmarc::{DmarcCounted, DmarcReceivedRow, DmarcSeen, DmarcSourceSummary};
pub use domains::ORGANISATION_ROW;
pub use migrations::SCHEMA_VERSION;
pub use msglog::{LogEntry, LogQuery, DEFAULT_LIMIT};
pub use policy::{
    ImportMode, ImportSummary, ListEntry, PolicyStore, PolicyStoreError, StoredEntry, StoredRule, VersionedPolicy,
};
pub use quarantine::{NewQuarantine, QuarantineItem, QuarantineQuery, VIRUS_REASON_PREFIX};
pub use spool::{NewSpoolItem, SpoolCount, SpoolItem};
pub use stats::HourlyCount;
pub use web::{ThrottleTake, WebSession};
use writer::{Call, Command};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "mailsift.sqlite";

/// How long a connection waits for another one's lock before SQLite gives up (the writer retries a few
/// times on top).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle reader connections kept for reuse; more are opened when more threads read at once.
const IDLE_READERS: usize = 4;
/// Rows deleted per transaction by a purge, so the server's writes interleave with a long purge.
const PURGE_CHUNK: usize = 5_000;

/// The gateway database. Clone it freely: the clones share the writer thread and the readers; the writer
/// stops, after committing what was queued, when the last clone is dropped.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
    /// On PostgreSQL ([`Database::open_postgres`]): every call goes there, and no SQLite file is opened.
    pg: Option<crate::pg::PgStore>,
}

struct Inner {
    path: PathBuf,
    queue: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
    readers: Mutex<Vec<Connection>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer drain it and end.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("path", &self.inner.path).finish_non_exhaustive()
    }
}

impl Database {
    /// Opens the database file at `path`, creating it and its directory if needed, and brings its schema up
    /// to date.
    pub fn open(path: &Path) -> Result<Database, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Io { path: dir.display().to_string(), source })?;
        }
        let mut conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
        configure(&conn).map_err(|e| sqlite_error(path, e))?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| sqlite_error(path, e))?;
        // After a checkpoint, cut the WAL back: one quarantined 30 MB message must not leave a 30 MB WAL.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024).map_err(|e| sqlite_error(path, e))?;
        migrations::migrate(&mut conn, path)?;

        let (queue, receiver) = mpsc::sync_channel(writer::QUEUE);
        let writer_path = path.to_path_buf();
        let writer = std::thread::Builder::new()
            .name("mailsift-db-writer".into())
            .spawn(move || writer::run(conn, writer_path, receiver))
            .map_err(|source| StoreError::Io { path: path.display().to_string(), source })?;
        Ok(Database {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                queue: Some(queue),
                writer: Some(writer),
                readers: Mutex::new(Vec::new()),
            }),
            pg: None,
        })
    }

    /// The gateway database on PostgreSQL, shared by every node that opens it (see `crate::pg`): every
    /// method goes to its PostgreSQL twin; the SQLite plumbing answers [`StoreError::Invalid`] rather than
    /// reach for a file, should a call ever miss its twin.
    pub fn open_postgres(config: &crate::pg::PgConfig) -> Result<Database, StoreError> {
        let pg = crate::pg::PgStore::open(config)?;
        Ok(Database {
            inner: Arc::new(Inner {
                path: PathBuf::from(pg.target()),
                queue: None,
                writer: None,
                readers: Mutex::new(Vec::new()),
            }),
            pg: Some(pg),
        })
    }

    /// The PostgreSQL store, when this database is on PostgreSQL.
    pub fn postgres(&self) -> Option<&crate::pg::PgStore> {
        self.pg.as_ref()
    }

    /// Opens `data_dir/mailsift.sqlite`.
    pub fn open_in(data_dir: &Path) -> Result<Database, StoreError> {
        Database::open(&data_dir.join(FILE_NAME))
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The schema version of the file (`PRAGMA user_version`); [`SCHEMA_VERSION`] once opened by this build.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        if let Some(pg) = &self.pg {
            return Ok(pg.schema_version()? as u32);
        }
        self.read(migrations::user_version)
    }

    // ---- message log ----

    /// Queues a log entry for the writer and returns at once (it blocks only when the writer is thousands of
    /// entries behind). The entry is committed with the next batch; [`Database::flush`] waits for that and
    /// reports entries that could not be written.
    pub fn log_append(&self, entry: LogEntry) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.log_append(entry);
        }
        self.send(Command::Log(Box::new(entry)))
    }

    /// Queues the log row of a message the gateway answers (250 or otherwise) and calls `done` once the batch
    /// holding it is committed and fsynced (or with the reason it is not). `done` runs on the writer thread:
    /// it must only pass the result on (a channel send). The sessions finishing together share one commit.
    pub fn log_append_then(
        &self,
        entry: LogEntry,
        done: impl FnOnce(Result<(), StoreError>) + Send + 'static,
    ) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.log_append_then(entry, done);
        }
        self.send(Command::LogThen(Box::new(entry), Box::new(done)))
    }

    /// Appends a log row and waits until it is committed and fsynced (see [`Database::log_append_then`]).
    pub fn log_append_durable(&self, entry: LogEntry) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.log_append_then(entry, move |r| {
            let _ = reply.send(r);
        })?;
        answer.recv().map_err(|_| self.writer_gone())?
    }

    /// Waits until everything appended before it is committed. Fails if log entries were lost since the
    /// previous flush (the error says how many and why).
    pub fn flush(&self) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.log_flush();
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Command::Flush(reply))?;
        answer.recv().map_err(|_| self.writer_gone())?
    }

    /// The newest entry with this reference id. Entries still queued are not seen: flush first.
    pub fn log_get(&self, reference_id: &str) -> Result<Option<LogEntry>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.log_get(reference_id);
        }
        self.read(|c| msglog::get(c, reference_id))
    }

    /// The entries matching `q`, newest first.
    pub fn log_search(&self, q: &LogQuery) -> Result<Vec<LogEntry>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.log_search(q);
        }
        self.read(|c| msglog::search(c, q))
    }

    /// Deletes the entries older than `older_than` (Unix seconds); returns how many.
    pub fn log_purge(&self, older_than: i64) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.log_purge(older_than);
        }
        self.purge(move |c| msglog::purge_chunk(c, older_than, PURGE_CHUNK))
    }

    // ---- quarantine ----

    /// Quarantines a message for each of its recipients: the raw message is compressed (in the caller's
    /// thread) and stored once, with one row per recipient. Returns the rows' ids in recipient order, once
    /// the transaction is committed and fsynced.
    pub fn quarantine_put(&self, item: &NewQuarantine, raw: &[u8]) -> Result<Vec<i64>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_put(item, raw);
        }
        if item.recipients.is_empty() {
            return Err(StoreError::Invalid {
                path: self.inner.path.display().to_string(),
                reason: format!("quarantine of {}: no recipients", item.reference_id),
            });
        }
        let stored = quarantine::encode(raw).map_err(|e| StoreError::Invalid {
            path: self.inner.path.display().to_string(),
            reason: format!("quarantine of {}: cannot compress the message: {e}", item.reference_id),
        })?;
        let item = item.clone();
        self.write(move |c| quarantine::insert(c, &item, &stored))
    }

    pub fn quarantine_get(&self, id: i64) -> Result<Option<QuarantineItem>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_get(id);
        }
        self.read(|c| quarantine::get(c, id))
    }

    /// The raw message of quarantine row `id`, byte for byte as it was put.
    pub fn quarantine_raw(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_raw(id);
        }
        let Some((encoding, size, data)) = self.read(|c| quarantine::raw(c, id))? else { return Ok(None) };
        quarantine::decode(&encoding, size, data).map(Some).map_err(|reason| StoreError::Invalid {
            path: self.inner.path.display().to_string(),
            reason: format!("quarantined message {id}: {reason}"),
        })
    }

    /// The items matching `q`, newest first.
    pub fn quarantine_list(&self, q: &QuarantineQuery) -> Result<Vec<QuarantineItem>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_list(q);
        }
        self.read(|c| quarantine::list(c, q))
    }

    /// Marks row `id` released at `now`, durably, if it is held: `true` means this caller won the row and
    /// must deliver it; `false` means it is absent or was already released (by any process).
    pub fn quarantine_claim_release(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_claim_release(id, now);
        }
        self.write(move |c| quarantine::claim_release(c, id, now))
    }

    /// Puts a claimed row back on hold, after its delivery failed.
    pub fn quarantine_unclaim_release(&self, id: i64) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_unclaim_release(id);
        }
        self.write(move |c| quarantine::unclaim_release(c, id))
    }

    /// Deletes row `id`, and the raw message when no other recipient's row shares it; `false` if absent.
    pub fn quarantine_delete(&self, id: i64) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_delete(id);
        }
        self.write(move |c| quarantine::delete(c, id))
    }

    /// Deletes the rows older than `older_than` (Unix seconds), then every raw message no row refers to;
    /// returns how many rows.
    pub fn quarantine_purge(&self, older_than: i64) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_purge(older_than);
        }
        let n = self.purge(move |c| quarantine::purge_chunk(c, older_than, PURGE_CHUNK))?;
        self.write(quarantine::drop_orphans)?;
        Ok(n)
    }

    // ---- outbound spool ----

    /// Puts messages in the outbound spool, each due now; returns their ids once committed and fsynced.
    pub fn spool_put(&self, items: Vec<(NewSpoolItem, Vec<u8>)>) -> Result<Vec<i64>, StoreError> {
        self.spool_put_with_settings(items, Vec::new())
    }

    /// As [`Database::spool_put`], and sets `settings` (key, value) in the same transaction: a digest's
    /// high-water mark moves if and only if its messages are spooled.
    pub fn spool_put_with_settings(
        &self,
        items: Vec<(NewSpoolItem, Vec<u8>)>,
        settings: Vec<(String, String)>,
    ) -> Result<Vec<i64>, StoreError> {
        let mut encoded = Vec::with_capacity(items.len());
        for (item, raw) in items {
            if item.recipient.is_empty() {
                return Err(self.invalid(format!("spool item for {}: no recipient", item.reference_id)));
            }
            let stored = quarantine::encode(&raw).map_err(|e| {
                self.invalid(format!("spool item for {}: cannot compress the message: {e}", item.reference_id))
            })?;
            encoded.push((item, stored));
        }
        let now_ms = now_ms();
        if let Some(pg) = &self.pg {
            return pg.spool_insert(encoded, settings, now_ms);
        }
        self.write(move |c| {
            let ids = spool::insert(c, &encoded, now_ms)?;
            for (key, value) in &settings {
                c.prepare_cached(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute([key, value])?;
            }
            Ok(ids)
        })
    }

    /// Claims up to `limit` rows due at `now_ms` (or just row `only`, if it is due): each is counted as an
    /// attempt and not due again before `lease_until_ms`, so no other runner takes it meanwhile and a runner
    /// that dies leaves it due again when the lease is over. Returns the rows with their messages.
    pub fn spool_claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
        only: Option<i64>,
    ) -> Result<Vec<(SpoolItem, Vec<u8>)>, StoreError> {
        let claimed = match &self.pg {
            Some(pg) => pg.spool_claim_rows(now_ms, lease_until_ms, limit, only)?,
            None => self.write(move |c| spool::claim(c, now_ms, lease_until_ms, limit, only))?,
        };
        let mut out = Vec::with_capacity(claimed.len());
        for (item, encoding, size, data) in claimed {
            match quarantine::decode(&encoding, size, data) {
                Ok(raw) => out.push((item, raw)),
                Err(reason) => {
                    // A damaged row cannot be delivered, ever: give it up rather than retry it forever.
                    let why = format!("stored message unreadable: {reason}");
                    self.spool_fail(item.id, now_ms, &why)?;
                    return Err(self.invalid(format!("spool item {}: {why}", item.id)));
                }
            }
        }
        Ok(out)
    }

    /// Row `id` was delivered: it is deleted. `false` if it was not there.
    pub fn spool_done(&self, id: i64) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_delete(id);
        }
        self.write(move |c| spool::done(c, id))
    }

    /// Row `id` failed for now: due again at `next_ms`.
    pub fn spool_retry(&self, id: i64, next_ms: i64, error: &str) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_set_retry(id, next_ms, error.to_string());
        }
        let error = error.to_string();
        self.write(move |c| spool::retry(c, id, next_ms, &error))
    }

    /// Row `id` is given up on: kept as `failed` with the reason, its message dropped.
    pub fn spool_fail(&self, id: i64, now_ms: i64, error: &str) -> Result<(), StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_set_failed(id, now_ms, error.to_string());
        }
        let error = error.to_string();
        self.write(move |c| spool::fail(c, id, now_ms, &error))
    }

    /// The spool's rows in `state` (`pending`, `failed`; any for `None`), oldest first.
    pub fn spool_list(&self, state: Option<&str>, limit: usize) -> Result<Vec<SpoolItem>, StoreError> {
        self.spool_list_of(state, None, limit)
    }

    /// As [`Database::spool_list`], only rows of `kind` (`outbound`, `bounce`...) when given.
    pub fn spool_list_of(
        &self,
        state: Option<&str>,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<Vec<SpoolItem>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_rows(state.map(str::to_string), kind.map(str::to_string), limit);
        }
        self.read(|c| spool::list(c, state, kind, limit))
    }

    /// When the next pending row is due (Unix ms), if there is one.
    pub fn spool_next_due(&self) -> Result<Option<i64>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_due();
        }
        self.read(spool::next_due)
    }

    /// Row `id` and its message (`None` for a failed row, whose message is gone), if it is there.
    pub fn spool_get(&self, id: i64) -> Result<Option<(SpoolItem, Option<Vec<u8>>)>, StoreError> {
        let row = match &self.pg {
            Some(pg) => pg.spool_get(id)?,
            None => self.read(move |c| spool::get(c, id))?,
        };
        let Some((item, encoding, size, data)) = row else { return Ok(None) };
        if item.state != "pending" {
            return Ok(Some((item, None)));
        }
        let raw = quarantine::decode(&encoding, size, data)
            .map_err(|reason| self.invalid(format!("spool item {id}: stored message unreadable: {reason}")))?;
        Ok(Some((item, Some(raw))))
    }

    /// Makes pending rows due now (row `only`, or all), except those being delivered (claimed and still
    /// under their lease); returns how many.
    pub fn spool_due_now(&self, only: Option<i64>) -> Result<usize, StoreError> {
        let now = now_ms();
        if let Some(pg) = &self.pg {
            return pg.spool_due_now(now, only);
        }
        self.write(move |c| spool::due_now(c, now, only))
    }

    /// Deletes row `id` (pending or failed): the operator gave up on it. `false` if it was not there.
    pub fn spool_remove(&self, id: i64) -> Result<bool, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_delete(id);
        }
        self.write(move |c| spool::remove(c, id))
    }

    /// How many rows per kind and state, and the oldest of each (for the console and `/metrics`).
    pub fn spool_counts(&self) -> Result<Vec<SpoolCount>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_counts();
        }
        self.read(spool::counts)
    }

    /// Deletes the failed rows given up on before `older_than_ms`; returns how many.
    pub fn spool_purge_failed(&self, older_than_ms: i64) -> Result<usize, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.spool_purge(older_than_ms);
        }
        self.write(move |c| spool::purge_failed(c, older_than_ms))
    }

    // ---- plumbing ----

    fn invalid(&self, reason: String) -> StoreError {
        StoreError::Invalid { path: self.inner.path.display().to_string(), reason }
    }

    /// What a SQLite-only call answers on PostgreSQL (a safety net: every public call has its twin there).
    fn not_on_postgres(&self) -> StoreError {
        self.invalid("this is not stored in PostgreSQL (a SQLite-only call reached a PostgreSQL database)".into())
    }

    fn send(&self, cmd: Command) -> Result<(), StoreError> {
        if self.pg.is_some() {
            return Err(self.not_on_postgres());
        }
        let queue = self.inner.queue.as_ref().ok_or_else(|| self.writer_gone())?;
        queue.send(cmd).map_err(|_| self.writer_gone())
    }

    fn writer_gone(&self) -> StoreError {
        writer::write_error(&self.inner.path, "the database writer thread has stopped".into())
    }

    /// Runs `f` on the writer connection, inside a durable batch, and waits for its committed result.
    pub(crate) fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Command::Job(Box::new(Call::new(f, reply))))?;
        answer.recv().map_err(|_| self.writer_gone())?
    }

    /// Repeats a chunked delete until a chunk comes back short, each chunk its own transaction.
    fn purge<F>(&self, chunk: F) -> Result<usize, StoreError>
    where
        F: Fn(&Connection) -> rusqlite::Result<usize> + Send + Sync + Clone + 'static,
    {
        let mut total = 0;
        loop {
            let n = self.write(chunk.clone())?;
            total += n;
            if n < PURGE_CHUNK {
                return Ok(total);
            }
        }
    }

    /// Runs `f` on a reader connection from the pool (for modules that read their own tables).
    pub(crate) fn read_rows<T>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.read(f)
    }

    /// Runs `f` on a reader connection from the pool.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        if self.pg.is_some() {
            return Err(self.not_on_postgres());
        }
        let path = &self.inner.path;
        let pooled = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => open_reader(path).map_err(|e| sqlite_error(path, e))?,
        };
        let result = f(&conn);
        let mut pool = self.inner.readers.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < IDLE_READERS {
            pool.push(conn);
        }
        result.map_err(|e| sqlite_error(path, e))
    }
}

/// The wall clock in Unix milliseconds (the spool's unit).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Settings every connection needs, writer or reader.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Persistent in the file; a no-op when it is already WAL.
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!("journal_mode is {mode}, not wal")));
    }
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    register_text_functions(&conn)?;
    Ok(conn)
}

/// The text functions the searches use (see `filter.rs`); SQLite's own LIKE and lower() fold ASCII only, and
/// subjects and addresses are often not ASCII. Each takes needles already lowercased by the caller.
/// - `mailsift_contains(haystack, needle)`: whether `haystack`, lowercased, contains `needle`;
/// - `mailsift_ends_with(haystack, suffix)`: whether `haystack`, lowercased, ends with `suffix`;
/// - `mailsift_lower(text)`: `text` lowercased by Unicode rules.
fn register_text_functions(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    conn.create_scalar_function("mailsift_contains", 2, flags, |ctx| {
        let (ValueRef::Text(hay), ValueRef::Text(needle)) = (ctx.get_raw(0), ctx.get_raw(1)) else { return Ok(false) };
        Ok(if hay.is_ascii() {
            contains_ascii_ci(hay, needle)
        } else {
            String::from_utf8_lossy(hay).to_lowercase().contains(&*String::from_utf8_lossy(needle))
        })
    })?;
    conn.create_scalar_function("mailsift_ends_with", 2, flags, |ctx| {
        let (Some(hay), Some(suffix)) = (text(ctx.get_raw(0)), text(ctx.get_raw(1))) else { return Ok(false) };
        Ok(if hay.is_ascii() {
            hay.len() >= suffix.len()
                && hay.as_bytes()[hay.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
        } else {
            hay.to_lowercase().ends_with(&*suffix)
        })
    })?;
    conn.create_scalar_function("mailsift_lower", 1, flags, |ctx| Ok(text(ctx.get_raw(0)).map(|t| t.to_lowercase())))
}

fn text(v: ValueRef<'_>) -> Option<std::borrow::Cow<'_, str>> {
    match v {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t)),
        _ => None,
    }
}

/// Whether ASCII `hay` contains `needle`, ignoring ASCII case. A search without an index calls this for every
/// row, so it looks for the needle's first byte, either case, before comparing the rest.
fn contains_ascii_ci(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else { return true };
    let Some(last_start) = hay.len().checked_sub(needle.len()) else { return false };
    let (lower, upper) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
    let mut from = 0;
    while let Some(i) = hay[from..=last_start].iter().position(|&b| b == lower || b == upper) {
        let at = from + i;
        if hay[at + 1..at + needle.len()].eq_ignore_ascii_case(rest) {
            return true;
        }
        from = at + 1;
        if from > last_start {
            break;
        }
    }
    false
}

pub(crate) fn sqlite_error(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite { path: path.display().to_string(), source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_commit_with_full_sync() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        // 2 = FULL: the WAL is fsynced at every commit of a batch that holds a job.
        let sync: i64 = db.write(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0))).unwrap();
        assert_eq!(sync, 2);
    }

    #[test]
    fn a_failing_job_is_rolled_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let e = db
            .write(|c| {
                c.execute("INSERT INTO symbol_names (name) VALUES ('HALF_DONE')", [])?;
                c.execute("INSERT INTO no_such_table VALUES (1)", [])
            })
            .unwrap_err();
        assert!(e.to_string().contains("no_such_table"), "{e}");
        db.log_append(LogEntry {
            reference_id: "r".into(),
            symbols: vec![("AFTER".into(), 1.0)],
            ..LogEntry::default()
        })
        .unwrap();
        db.flush().unwrap();
        let names: Vec<String> = db
            .read(|c| c.prepare("SELECT name FROM symbol_names ORDER BY id")?.query_map([], |r| r.get(0))?.collect())
            .unwrap();
        assert_eq!(names, ["AFTER"]);
    }

    #[test]
    fn contains_folds_case_beyond_ascii() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let ask = |hay: &str, needle: &str| -> bool {
            db.read(|c| c.query_row("SELECT mailsift_contains(?1, ?2)", [hay, needle], |r| r.get(0))).unwrap()
        };
        assert!(ask("Hello World", "o w"));
        assert!(!ask("Hello", "hellox"));
        assert!(ask("Ваш ЗАКАЗ готов", "заказ"));
        assert!(!ask("Ваш ЗАКАЗ", "счёт"));
    }

    #[test]
    fn ascii_contains_finds_every_position() {
        for (hay, needle, found) in [
            ("", "", true),
            ("abc", "", true),
            ("", "a", false),
            ("ab", "abc", false),
            ("abc", "abc", true),
            ("xxABC", "abc", true),
            ("aab", "ab", true),
            ("aXa-bcaBC", "abc", true),
            ("abab", "abb", false),
            ("news@Brand4321.example", "brand4321.", true),
            ("a.b", "-", false),
        ] {
            assert_eq!(contains_ascii_ci(hay.as_bytes(), needle.as_bytes()), found, "{hay:?} {needle:?}");
        }
    }

    #[test]
    fn ends_with_and_lower_fold_case_beyond_ascii() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_in(dir.path()).unwrap();
        let ends = |hay: &str, suffix: &str| -> bool {
            db.read(|c| c.query_row("SELECT mailsift_ends_with(?1, ?2)", [hay, suffix], |r| r.get(0))).unwrap()
        };
        assert!(ends("Bob@Example.NET", "@example.net"));
        assert!(!ends("bob@example.net.evil", "@example.net"));
        assert!(!ends("t", "@example.net"));
        assert!(ends("ЮЛИЯ@Почта.рф", "@почта.рф"));
        let lower: String =
            db.read(|c| c.query_row("SELECT mailsift_lower(?1)", ["ЮЛИЯ@Почта.РФ"], |r| r.get(0))).unwrap();
        assert_eq!(lower, "юлия@почта.рф");
    }
}
