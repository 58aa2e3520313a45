//! The outbound spool: mail the gateway itself owes someone after it answered 250 (bounces, policy copies,
//! quarantine digests), kept here until its next hop takes it, so that a crash or a restart loses none.
//!
//! Why in this database and not in files: an item is committed in the same fsynced group commit as the
//! quarantine and (for digests) in the same transaction as the high-water mark that says it was made, so
//! "made" and "owed" can never disagree; claims by several processes on one file are serialised by SQLite's
//! write lock; and backups and the retention purge already cover this one file. Messages are compressed as
//! the quarantine's are.
//!
//! One row per recipient, so each is retried and given up on its own. A row is `pending` until delivered
//! (then deleted) or given up on (`failed`, kept for the operator until purged). Claiming a row pushes its
//! `next_attempt_ms` past a lease: a runner that dies while delivering leaves a row that becomes due again
//! when the lease is over, never one that is stuck. Times are Unix milliseconds.

use rusqlite::{params, Connection, OptionalExtension};

use super::quarantine::StoredRaw;

/// A message to put in the spool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSpoolItem {
    /// What it is: `bounce`, `copy`, `digest` (free text, shown to the operator and in logs).
    pub kind: String,
    /// The message-log reference it belongs to (the original message's, or the digest's own).
    pub reference_id: String,
    /// The envelope sender (empty: the null sender, as bounces use).
    pub mail_from: String,
    pub recipient: String,
    /// Route it as mail leaving the organisation (smarthost or MX) when the recipient is not local.
    pub outbound: bool,
}

/// A spooled message's row (without the message).
#[derive(Debug, Clone, PartialEq)]
pub struct SpoolItem {
    pub id: i64,
    pub kind: String,
    pub reference_id: String,
    pub created_ms: i64,
    pub mail_from: String,
    pub recipient: String,
    pub outbound: bool,
    pub size: u64,
    /// Delivery attempts started (a claim counts as one).
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    /// `pending` or `failed`.
    pub state: String,
    /// A failed row: when it was given up. A pending row: the end of the lease of the attempt in flight
    /// (`None` when none is).
    pub finished_ms: Option<i64>,
}

/// How many rows of one kind are in one state, and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolCount {
    pub kind: String,
    /// `pending` or `failed`.
    pub state: String,
    pub count: u64,
    /// The oldest row's creation time (Unix ms).
    pub oldest_ms: i64,
}

impl SpoolItem {
    /// Whether an attempt at this pending item is under way at `now_ms` (claimed, its lease not over).
    pub fn sending(&self, now_ms: i64) -> bool {
        self.state == "pending" && self.finished_ms.is_some_and(|lease| lease > now_ms)
    }
}

const COLUMNS: &str = "id, kind, reference_id, created_ms, mail_from, recipient, outbound, size, attempts, \
                       next_attempt_ms, last_error, state, finished_ms";

fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SpoolItem> {
    Ok(SpoolItem {
        id: r.get(0)?,
        kind: r.get(1)?,
        reference_id: r.get(2)?,
        created_ms: r.get(3)?,
        mail_from: r.get(4)?,
        recipient: r.get(5)?,
        outbound: r.get(6)?,
        size: r.get::<_, i64>(7)? as u64,
        attempts: r.get(8)?,
        next_attempt_ms: r.get(9)?,
        last_error: r.get(10)?,
        state: r.get(11)?,
        finished_ms: r.get(12)?,
    })
}

/// Inserts the items (each with its encoded message), due at `now_ms`; returns their ids in order.
pub(super) fn insert(
    conn: &Connection,
    items: &[(NewSpoolItem, StoredRaw)],
    now_ms: i64,
) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO spool (kind, reference_id, created_ms, mail_from, recipient, outbound, encoding, size, data, \
         attempts, next_attempt_ms, state) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?3, 'pending')",
    )?;
    let mut ids = Vec::with_capacity(items.len());
    for (item, raw) in items {
        stmt.execute(params![
            item.kind,
            item.reference_id,
            now_ms,
            item.mail_from,
            item.recipient,
            item.outbound,
            raw.encoding,
            raw.size as i64,
            raw.data
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

/// A claimed row and its stored message (still encoded).
pub(super) type Claimed = (SpoolItem, String, u64, Vec<u8>);

/// Claims up to `limit` pending rows due at `now_ms` (or only row `only`), oldest due first: each gets one
/// more attempt and is not due again before `lease_until_ms`.
pub(super) fn claim(
    conn: &Connection,
    now_ms: i64,
    lease_until_ms: i64,
    limit: usize,
    only: Option<i64>,
) -> rusqlite::Result<Vec<Claimed>> {
    let ids: Vec<i64> = conn
        .prepare_cached(
            "SELECT id FROM spool WHERE state = 'pending' AND next_attempt_ms <= ?1 AND (?2 IS NULL OR id = ?2) \
             ORDER BY next_attempt_ms, id LIMIT ?3",
        )?
        .query_map(params![now_ms, only, limit as i64], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        conn.prepare_cached(
            "UPDATE spool SET attempts = attempts + 1, next_attempt_ms = ?2, finished_ms = ?2 WHERE id = ?1",
        )?
        .execute(params![id, lease_until_ms])?;
        let row = conn
            .prepare_cached(&format!("SELECT {COLUMNS}, encoding, data FROM spool WHERE id = ?1"))?
            .query_row([id], |r| {
                let item = read_row(r)?;
                Ok((item, r.get::<_, String>(13)?, r.get::<_, Vec<u8>>(14)?))
            })?;
        let (item, encoding, data) = row;
        let size = item.size;
        out.push((item, encoding, size, data));
    }
    Ok(out)
}

/// Delivered: the row goes. `false` if it was not there (already finished by someone else).
pub(super) fn done(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("DELETE FROM spool WHERE id = ?1")?.execute([id])? == 1)
}

/// A temporary failure: due again at `next_ms`, with the reason kept.
pub(super) fn retry(conn: &Connection, id: i64, next_ms: i64, error: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE spool SET next_attempt_ms = ?2, last_error = ?3, finished_ms = NULL WHERE id = ?1 AND state = 'pending'")?
        .execute(params![id, next_ms, error])?;
    Ok(())
}

/// Given up on (a permanent refusal, or too old): kept as `failed` with the reason; the message is dropped.
pub(super) fn fail(conn: &Connection, id: i64, now_ms: i64, error: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE spool SET state = 'failed', finished_ms = ?2, last_error = ?3, data = x'', encoding = 'identity', \
         size = 0 WHERE id = ?1",
    )?
    .execute(params![id, now_ms, error])?;
    Ok(())
}

/// The rows in `state` (any when `None`), oldest first, at most `limit`.
pub(super) fn list(
    conn: &Connection,
    state: Option<&str>,
    kind: Option<&str>,
    limit: usize,
) -> rusqlite::Result<Vec<SpoolItem>> {
    conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM spool WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR kind = ?2) ORDER BY id LIMIT ?3"
    ))?
    .query_map(params![state, kind, limit as i64], read_row)?
    .collect()
}

/// When the next pending row is due, if any.
pub(super) fn next_due(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT min(next_attempt_ms) FROM spool WHERE state = 'pending'")?
        .query_row([], |r| r.get(0))
        .optional()
        .map(Option::flatten)
}

/// Row `id` with its stored message (still encoded; empty for a failed row), if it is there.
pub(super) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<Claimed>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS}, encoding, data FROM spool WHERE id = ?1"))?
        .query_row([id], |r| {
            let item = read_row(r)?;
            let size = item.size;
            Ok((item, r.get::<_, String>(13)?, size, r.get::<_, Vec<u8>>(14)?))
        })
        .optional()
}

/// Makes pending rows due at `now_ms` (row `only`, or every pending row); returns how many. A row under a
/// lease (being delivered: its `finished_ms` holds the lease's end) is left alone, so that asking for a
/// retry never starts a second delivery of a message already on its way.
pub(super) fn due_now(conn: &Connection, now_ms: i64, only: Option<i64>) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE spool SET next_attempt_ms = ?1 WHERE state = 'pending' AND (?2 IS NULL OR id = ?2) \
         AND (finished_ms IS NULL OR finished_ms <= ?1)",
    )?
    .execute(params![now_ms, only])
}

/// Deletes row `id` whatever its state; `false` if it was not there.
pub(super) fn remove(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    done(conn, id)
}

/// Per kind and state: how many rows, and the oldest one's creation time.
pub(super) fn counts(conn: &Connection) -> rusqlite::Result<Vec<SpoolCount>> {
    conn.prepare_cached(
        "SELECT kind, state, count(*), min(created_ms) FROM spool GROUP BY kind, state ORDER BY kind, state",
    )?
    .query_map([], |r| {
        Ok(SpoolCount { kind: r.get(0)?, state: r.get(1)?, count: r.get::<_, i64>(2)? as u64, oldest_ms: r.get(3)? })
    })?
    .collect()
}

/// Deletes failed rows finished before `older_than_ms`.
pub(super) fn purge_failed(conn: &Connection, older_than_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM spool WHERE state = 'failed' AND finished_ms < ?1")?.execute([older_than_ms])
}
