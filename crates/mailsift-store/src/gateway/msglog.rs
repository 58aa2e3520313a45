//! The message log: one row per SMTP transaction the gateway finished (delivered, tagged, quarantined,
//! rejected, refused, deferred or failed), with the envelope, the headers an administrator searches by, the
//! verdict and its symbols, and what the next hop answered.
//!
//! It is a journal for "what happened to the mail from X", not an archive: no body is kept (the quarantine
//! keeps the messages that need one). Rows are written by the database's writer thread in batches
//! ([`super::Database::log_append`]) and read here by the reader connections.

use rusqlite::{params, Connection, OptionalExtension, Row};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::filter::Filter;

/// One finished SMTP transaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// The gateway's id for the transaction, as it appears in its SMTP replies and logs.
    pub reference_id: String,
    /// Unix seconds.
    pub time: i64,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub client_ip: Option<String>,
    pub helo: Option<String>,
    pub mail_from: Option<String>,
    /// In envelope order.
    pub recipients: Vec<String>,
    pub from_header: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub size: u64,
    /// The verdict's score, if the message was scanned (a NaN is stored as "no score").
    pub score: Option<f64>,
    /// The score at which the message would have been acted on.
    pub required: Option<f64>,
    /// Symbol name and the score it contributed, in the verdict's order.
    pub symbols: Vec<(String, f64)>,
    /// deliver | tag | quarantine | reject | refused | tempfail | failed
    pub action: String,
    /// The SMTP step the transaction ended at: connect | helo | mail | rcpt | data
    pub stage: String,
    /// Why, in words, when the action was not a plain delivery.
    pub reason: Option<String>,
    /// The next hop's reply to the relayed message.
    pub next_hop_response: Option<String>,
}

/// A search of the log. Every filter given must match; results come newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogQuery {
    /// Case-insensitive substring of the envelope sender or the From header.
    pub sender: Option<String>,
    /// Case-insensitive substring of any recipient.
    pub recipient: Option<String>,
    /// Case-insensitive substring of the subject.
    pub subject: Option<String>,
    /// Exact client address, as logged.
    pub client_ip: Option<String>,
    /// Exact action (`reject`, `quarantine`, ...).
    pub action: Option<String>,
    /// Exact name of a symbol that fired.
    pub symbol: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, inclusive.
    pub until: Option<i64>,
    /// Exact reference id.
    pub reference_id: Option<String>,
    /// At most this many entries; 0 means [`DEFAULT_LIMIT`].
    pub limit: usize,
    /// Skip this many matching entries first (paging).
    pub offset: usize,
    /// A domain administrator's scope: when not empty, only entries with a recipient in one of these domains
    /// (the recipient ends with `@domain`, ignoring case) or, outbound, whose envelope sender is in one of them.
    /// A list of blanks matches nothing.
    pub domains: Vec<String>,
}

/// How many entries a search returns when its limit is 0.
pub const DEFAULT_LIMIT: usize = 100;

/// Ids of interned symbol names, kept by the writer. Names are never deleted from `symbol_names`, so an id
/// once committed stays right for every process; the writer clears the cache whenever a transaction or a
/// savepoint rolls back, because an id handed out inside it may not exist.
pub(super) type SymbolIds = FxHashMap<String, i64>;

const COLUMNS: &str = "id, reference_id, time, direction, client_ip, helo, mail_from, recipients, from_header, \
                       subject, message_id, size, score, required, action, stage, reason, next_hop_response";

/// Inserts one entry (inside the writer's transaction).
pub(super) fn insert(conn: &Connection, e: &LogEntry, symbols: &mut SymbolIds) -> rusqlite::Result<()> {
    let recipients =
        serde_json::to_string(&e.recipients).map_err(|x| rusqlite::Error::ToSqlConversionFailure(x.into()))?;
    conn.prepare_cached(
        "INSERT INTO message_log (reference_id, time, direction, client_ip, helo, mail_from, recipients, \
         from_header, subject, message_id, size, score, required, action, stage, reason, next_hop_response) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?
    .execute(params![
        e.reference_id,
        e.time,
        e.direction,
        e.client_ip,
        e.helo,
        e.mail_from,
        recipients,
        e.from_header,
        e.subject,
        e.message_id,
        e.size as i64,
        e.score,
        e.required,
        e.action,
        e.stage,
        e.reason,
        e.next_hop_response,
    ])?;
    let log_id = conn.last_insert_rowid();
    let mut insert_symbol =
        conn.prepare_cached("INSERT INTO message_log_symbols (log_id, pos, symbol_id, score) VALUES (?1, ?2, ?3, ?4)")?;
    for (pos, (name, score)) in e.symbols.iter().enumerate() {
        let id = symbol_id(conn, name, symbols)?;
        insert_symbol.execute(params![log_id, pos as i64, id, score])?;
    }
    Ok(())
}

fn symbol_id(conn: &Connection, name: &str, cache: &mut SymbolIds) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(name) {
        return Ok(id);
    }
    let found: Option<i64> = conn
        .prepare_cached("SELECT id FROM symbol_names WHERE name = ?1")?
        .query_row([name], |r| r.get(0))
        .optional()?;
    let id = match found {
        Some(id) => id,
        None => {
            conn.prepare_cached("INSERT INTO symbol_names (name) VALUES (?1)")?.execute([name])?;
            conn.last_insert_rowid()
        }
    };
    cache.insert(name.to_string(), id);
    Ok(id)
}

/// The newest entry with this reference id.
pub(super) fn get(conn: &Connection, reference_id: &str) -> rusqlite::Result<Option<LogEntry>> {
    let sql = format!("SELECT {COLUMNS} FROM message_log WHERE reference_id = ?1 ORDER BY time DESC, id DESC LIMIT 1");
    let found = conn.prepare_cached(&sql)?.query_row([reference_id], read_row).optional()?;
    match found {
        Some((id, mut entry)) => {
            entry.symbols = read_symbols(conn, id)?;
            Ok(Some(entry))
        }
        None => Ok(None),
    }
}

/// The entries matching `q`, newest first.
pub(super) fn search(conn: &Connection, q: &LogQuery) -> rusqlite::Result<Vec<LogEntry>> {
    let mut w = Filter::default();
    w.contains(&["mail_from", "from_header"], &q.sender);
    if let Some(s) = q.recipient.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        // The JSON text holds every recipient (a needle without quotes, backslashes or control characters reads
        // the same there), so it rules out most rows before the array is unpacked.
        let plain = !s.chars().any(|c| c == '"' || c == '\\' || c.is_control());
        let a = w.arg(s.to_lowercase());
        let prefilter = if plain { format!("mailsift_contains(recipients, {a}) AND ") } else { String::new() };
        w.and(format!(
            "({prefilter}EXISTS (SELECT 1 FROM json_each(message_log.recipients) r \
             WHERE mailsift_contains(r.value, {a})))"
        ));
    }
    w.contains(&["subject"], &q.subject);
    w.equals("client_ip", &q.client_ip);
    w.equals("action", &q.action);
    if let Some(symbol) = &q.symbol {
        let a = w.arg(symbol.clone());
        // EXISTS, probed per row newest first through the (symbol_id, log_id) index, stops at the page; an
        // `id IN (...)` list would first collect every entry the symbol ever fired on (141 ms for SPF_PASS
        // over 100,000 entries, against 0.03 ms; a symbol on no entry costs 11 ms either way).
        w.and(format!(
            "EXISTS (SELECT 1 FROM message_log_symbols s WHERE s.log_id = message_log.id \
             AND s.symbol_id = (SELECT n.id FROM symbol_names n WHERE n.name = {a}))"
        ));
    }
    w.time_range("time", q.since, q.until);
    w.equals("reference_id", &q.reference_id);
    w.log_in_domains(&q.domains);
    let page = w.page(q.limit, q.offset);
    let sql = format!("SELECT {COLUMNS} FROM message_log{} ORDER BY time DESC, id DESC{page}", w.clause());
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(w.args(), read_row)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, mut entry) = row?;
        entry.symbols = read_symbols(conn, id)?;
        out.push(entry);
    }
    Ok(out)
}

/// Deletes up to `chunk` entries older than `older_than`; returns how many it deleted.
pub(super) fn purge_chunk(conn: &Connection, older_than: i64, chunk: usize) -> rusqlite::Result<usize> {
    let ids: Vec<i64> = conn
        .prepare_cached("SELECT id FROM message_log WHERE time < ?1 LIMIT ?2")?
        .query_map(params![older_than, chunk as i64], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut symbols = conn.prepare_cached("DELETE FROM message_log_symbols WHERE log_id = ?1")?;
    let mut rows = conn.prepare_cached("DELETE FROM message_log WHERE id = ?1")?;
    for id in &ids {
        symbols.execute([id])?;
        rows.execute([id])?;
    }
    Ok(ids.len())
}

fn read_row(r: &Row<'_>) -> rusqlite::Result<(i64, LogEntry)> {
    let recipients: String = r.get(7)?;
    let recipients = serde_json::from_str(&recipients)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, e.into()))?;
    Ok((
        r.get(0)?,
        LogEntry {
            reference_id: r.get(1)?,
            time: r.get(2)?,
            direction: r.get(3)?,
            client_ip: r.get(4)?,
            helo: r.get(5)?,
            mail_from: r.get(6)?,
            recipients,
            from_header: r.get(8)?,
            subject: r.get(9)?,
            message_id: r.get(10)?,
            size: r.get::<_, i64>(11)? as u64,
            score: r.get(12)?,
            required: r.get(13)?,
            symbols: Vec::new(),
            action: r.get(14)?,
            stage: r.get(15)?,
            reason: r.get(16)?,
            next_hop_response: r.get(17)?,
        },
    ))
}

fn read_symbols(conn: &Connection, log_id: i64) -> rusqlite::Result<Vec<(String, f64)>> {
    conn.prepare_cached(
        "SELECT n.name, s.score FROM message_log_symbols s JOIN symbol_names n ON n.id = s.symbol_id \
         WHERE s.log_id = ?1 ORDER BY s.pos",
    )?
    .query_map([log_id], |r| Ok((r.get(0)?, r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN))))?
    .collect()
}
