//! The quarantine: messages held back from their recipients, one row per recipient so that each can be
//! released or deleted on their own, with the raw message stored once per put, compressed with zstd, and
//! shared by its rows.
//!
//! Releasing is claim-then-deliver: [`super::Database::quarantine_claim_release`] marks a row released in
//! one UPDATE guarded by `released_at IS NULL`, so of two clicks on a release link only one gets `true` and
//! delivers; if the delivery then fails, the caller undoes the claim. What the store does not do is deliver,
//! notify, or decide retention: the gateway and its configuration do.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use super::filter::Filter;

/// A message to quarantine, for all of its recipients at once.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NewQuarantine {
    pub reference_id: String,
    /// Unix seconds.
    pub time: i64,
    /// One quarantine row, with its own id, per recipient.
    pub recipients: Vec<String>,
    pub mail_from: Option<String>,
    pub from_header: Option<String>,
    pub subject: Option<String>,
    pub score: f64,
    /// Why it was quarantined, in words.
    pub reason: String,
    /// Size of the raw message in bytes.
    pub size: u64,
    /// `inbound` or `outbound`.
    pub direction: String,
}

/// One recipient's quarantined copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuarantineItem {
    /// Never reused, even after a delete.
    pub id: i64,
    pub reference_id: String,
    pub time: i64,
    pub recipient: String,
    pub mail_from: Option<String>,
    pub from_header: Option<String>,
    pub subject: Option<String>,
    /// A NaN score reads back as NaN.
    pub score: f64,
    pub reason: String,
    pub size: u64,
    pub direction: String,
    /// When it was released (Unix seconds); `None` while it is held.
    pub released_at: Option<i64>,
}

/// How the reason of a copy held for a virus begins (`virus: SIGNATURE`): such a copy is in the virus
/// quarantine, which only administrators can release (never its recipient, never a digest link).
pub const VIRUS_REASON_PREFIX: &str = "virus: ";

impl QuarantineItem {
    /// Whether the copy is in the virus quarantine (held because the virus scanner found a virus).
    pub fn is_virus(&self) -> bool {
        self.reason.starts_with(VIRUS_REASON_PREFIX)
    }
}

/// A search of the quarantine. Every filter given must match; results come newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct QuarantineQuery {
    /// Case-insensitive substring of the recipient.
    pub recipient: Option<String>,
    /// Case-insensitive substring of the envelope sender or the From header.
    pub sender: Option<String>,
    /// Case-insensitive substring of the subject.
    pub subject: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, inclusive.
    pub until: Option<i64>,
    /// Also list items already released.
    pub include_released: bool,
    /// At most this many items; 0 means [`super::DEFAULT_LIMIT`].
    pub limit: usize,
    /// Skip this many matching items first (paging).
    pub offset: usize,
    /// A domain administrator's scope: when not empty, only items whose recipient is in one of these domains
    /// (ends with `@domain`, ignoring case). A list of blanks matches nothing.
    pub domains: Vec<String>,
    /// Exactly this recipient, ignoring case: an end user's own quarantine.
    pub recipient_exact: Option<String>,
    /// Only items with a greater id (ids only grow): what is new since a digest's high-water mark.
    pub min_id: Option<i64>,
}

/// The raw message as stored: compressed with zstd (level 3, with a content checksum) unless that would
/// not make it smaller, as happens with already-compressed attachments.
pub(crate) struct StoredRaw {
    pub encoding: &'static str,
    pub size: u64,
    pub data: Vec<u8>,
}

const ZSTD: &str = "zstd";
const IDENTITY: &str = "identity";

pub(crate) fn encode(raw: &[u8]) -> std::io::Result<StoredRaw> {
    let mut compressor = zstd::bulk::Compressor::new(3)?;
    compressor.include_checksum(true)?;
    let data = compressor.compress(raw)?;
    Ok(if data.len() < raw.len() {
        StoredRaw { encoding: ZSTD, size: raw.len() as u64, data }
    } else {
        StoredRaw { encoding: IDENTITY, size: raw.len() as u64, data: raw.to_vec() }
    })
}

pub(crate) fn decode(encoding: &str, size: u64, data: Vec<u8>) -> Result<Vec<u8>, String> {
    let raw = match encoding {
        IDENTITY => data,
        // The stored size bounds the output, so a damaged frame cannot make it allocate more.
        ZSTD => zstd::bulk::decompress(&data, size as usize).map_err(|e| format!("cannot decompress: {e}"))?,
        other => return Err(format!("unknown encoding {other:?}")),
    };
    if raw.len() as u64 != size {
        return Err(format!("{} bytes where {size} were stored", raw.len()));
    }
    Ok(raw)
}

/// Stores the raw message once and a row per recipient; returns the rows' ids in recipient order.
pub(super) fn insert(conn: &Connection, item: &NewQuarantine, raw: &StoredRaw) -> rusqlite::Result<Vec<i64>> {
    conn.prepare_cached("INSERT INTO quarantine_raw (encoding, size, data) VALUES (?1, ?2, ?3)")?.execute(params![
        raw.encoding,
        raw.size as i64,
        raw.data
    ])?;
    let raw_id = conn.last_insert_rowid();
    let mut row = conn.prepare_cached(
        "INSERT INTO quarantine (raw_id, reference_id, time, recipient, mail_from, from_header, subject, score, \
         reason, size, direction) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut ids = Vec::with_capacity(item.recipients.len());
    for recipient in &item.recipients {
        row.execute(params![
            raw_id,
            item.reference_id,
            item.time,
            recipient,
            item.mail_from,
            item.from_header,
            item.subject,
            item.score,
            item.reason,
            item.size as i64,
            item.direction,
        ])?;
        ids.push(conn.last_insert_rowid());
    }
    Ok(ids)
}

const COLUMNS: &str = "id, reference_id, time, recipient, mail_from, from_header, subject, score, reason, size, \
                       direction, released_at";

fn read_row(r: &Row<'_>) -> rusqlite::Result<QuarantineItem> {
    Ok(QuarantineItem {
        id: r.get(0)?,
        reference_id: r.get(1)?,
        time: r.get(2)?,
        recipient: r.get(3)?,
        mail_from: r.get(4)?,
        from_header: r.get(5)?,
        subject: r.get(6)?,
        score: r.get::<_, Option<f64>>(7)?.unwrap_or(f64::NAN),
        reason: r.get(8)?,
        size: r.get::<_, i64>(9)? as u64,
        direction: r.get(10)?,
        released_at: r.get(11)?,
    })
}

pub(super) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<QuarantineItem>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM quarantine WHERE id = ?1"))?
        .query_row([id], read_row)
        .optional()
}

/// The stored form of a row's raw message: (encoding, size, data).
pub(super) fn raw(conn: &Connection, id: i64) -> rusqlite::Result<Option<(String, u64, Vec<u8>)>> {
    conn.prepare_cached(
        "SELECT r.encoding, r.size, r.data FROM quarantine q JOIN quarantine_raw r ON r.id = q.raw_id \
         WHERE q.id = ?1",
    )?
    .query_row([id], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64, r.get(2)?)))
    .optional()
}

pub(super) fn list(conn: &Connection, q: &QuarantineQuery) -> rusqlite::Result<Vec<QuarantineItem>> {
    let mut w = Filter::default();
    w.contains(&["recipient"], &q.recipient);
    w.contains(&["mail_from", "from_header"], &q.sender);
    w.contains(&["subject"], &q.subject);
    w.time_range("time", q.since, q.until);
    if !q.include_released {
        w.and("released_at IS NULL");
    }
    w.address_in_domains("recipient", &q.domains);
    w.address_is("recipient", &q.recipient_exact);
    if let Some(min_id) = q.min_id {
        let a = w.arg(min_id);
        w.and(format!("id > {a}"));
    }
    let page = w.page(q.limit, q.offset);
    let sql = format!("SELECT {COLUMNS} FROM quarantine{} ORDER BY time DESC, id DESC{page}", w.clause());
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(w.args(), read_row)?;
    rows.collect()
}

pub(super) fn claim_release(conn: &Connection, id: i64, now: i64) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached("UPDATE quarantine SET released_at = ?2 WHERE id = ?1 AND released_at IS NULL")?
        .execute(params![id, now])?;
    Ok(n == 1)
}

pub(super) fn unclaim_release(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE quarantine SET released_at = NULL WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Deletes one row, and its raw message when no other row shares it.
pub(super) fn delete(conn: &Connection, id: i64) -> rusqlite::Result<bool> {
    let raw_id: Option<i64> =
        conn.prepare_cached("SELECT raw_id FROM quarantine WHERE id = ?1")?.query_row([id], |r| r.get(0)).optional()?;
    let Some(raw_id) = raw_id else { return Ok(false) };
    conn.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?.execute([id])?;
    drop_raw_if_unused(conn, raw_id)?;
    Ok(true)
}

fn drop_raw_if_unused(conn: &Connection, raw_id: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM quarantine_raw WHERE id = ?1 AND NOT EXISTS (SELECT 1 FROM quarantine WHERE raw_id = ?1)",
    )?
    .execute([raw_id])?;
    Ok(())
}

/// Deletes up to `chunk` rows older than `older_than`, with the raw messages they leave unused; returns how
/// many rows it deleted.
pub(super) fn purge_chunk(conn: &Connection, older_than: i64, chunk: usize) -> rusqlite::Result<usize> {
    let rows: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT id, raw_id FROM quarantine WHERE time < ?1 LIMIT ?2")?
        .query_map(params![older_than, chunk as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut delete = conn.prepare_cached("DELETE FROM quarantine WHERE id = ?1")?;
    for (id, _) in &rows {
        delete.execute([id])?;
    }
    let mut raw_ids: Vec<i64> = rows.iter().map(|&(_, raw)| raw).collect();
    raw_ids.sort_unstable();
    raw_ids.dedup();
    for raw_id in raw_ids {
        drop_raw_if_unused(conn, raw_id)?;
    }
    Ok(rows.len())
}

/// Deletes every raw message no row refers to, whatever left it behind; returns how many.
pub(super) fn drop_orphans(conn: &Connection) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM quarantine_raw WHERE NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.raw_id = quarantine_raw.id)",
        [],
    )
}
