//! The gateway database's schema, as an ordered list of migrations.
//!
//! `PRAGMA user_version` holds how many of [`MIGRATIONS`] a file has had applied. Opening a file applies the
//! missing ones in order, each in its own `BEGIN IMMEDIATE` transaction together with the new version number,
//! so a crash leaves the file at a known version and two processes opening the same file at once cannot both
//! apply a step (the second one re-reads the version under the write lock and skips it).
//!
//! To change the schema, append a migration; never edit one that has been released, because files in the
//! field already carry its effects. A file written by a newer mailsift (a version beyond this list) is refused
//! rather than misread.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::StoreError;

/// One schema step; its position in [`MIGRATIONS`], counting from 1, is the `user_version` it leaves.
pub(crate) struct Migration {
    /// What the step adds, for error messages.
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every schema step, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "message log",
        // Recipients are a JSON array of strings (exact round trip, searchable with json_each). Symbols live
        // in their own table so that "which messages fired X" is an index lookup; their names are interned
        // because the same few hundred names repeat in every row.
        sql: "
CREATE TABLE message_log (
    id INTEGER PRIMARY KEY,
    reference_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    direction TEXT NOT NULL,
    client_ip TEXT,
    helo TEXT,
    mail_from TEXT,
    recipients TEXT NOT NULL,
    from_header TEXT,
    subject TEXT,
    message_id TEXT,
    size INTEGER NOT NULL,
    score REAL,
    required REAL,
    action TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT,
    next_hop_response TEXT
);
CREATE INDEX message_log_by_time ON message_log (time);
CREATE INDEX message_log_by_reference ON message_log (reference_id);
CREATE INDEX message_log_by_client_ip ON message_log (client_ip);
CREATE TABLE symbol_names (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE message_log_symbols (
    log_id INTEGER NOT NULL,
    pos INTEGER NOT NULL,
    symbol_id INTEGER NOT NULL,
    score REAL,
    PRIMARY KEY (log_id, pos)
) WITHOUT ROWID;
CREATE INDEX message_log_symbols_by_symbol ON message_log_symbols (symbol_id, log_id);
",
    },
    Migration {
        name: "quarantine",
        // One quarantine row per recipient, so each can be released or deleted on its own; the raw message
        // is stored once per put in quarantine_raw and shared. AUTOINCREMENT because release links name row
        // ids: an id must never come back for a different message after a delete.
        sql: "
CREATE TABLE quarantine_raw (
    id INTEGER PRIMARY KEY,
    encoding TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    raw_id INTEGER NOT NULL REFERENCES quarantine_raw (id),
    reference_id TEXT NOT NULL,
    time INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    mail_from TEXT,
    from_header TEXT,
    subject TEXT,
    score REAL,
    reason TEXT NOT NULL,
    size INTEGER NOT NULL,
    direction TEXT NOT NULL,
    released_at INTEGER
);
CREATE INDEX quarantine_by_time ON quarantine (time);
CREATE INDEX quarantine_by_raw ON quarantine (raw_id);
CREATE INDEX quarantine_by_reference ON quarantine (reference_id);
",
    },
    Migration {
        name: "policy",
        // Filter rules and allowed/blocked senders (see `policy.rs`). Each row keeps the item as its JSON, the
        // exact text serde reads back, plus copies of the fields worth an index; the JSON is the truth and the
        // columns are rewritten with it. Rule names are unique ignoring case, as the engine compares them, hence
        // `name_key`. Allow and block entries share one table so that an entry's id alone names it, and ids are
        // never reused (AUTOINCREMENT): a verdict in flight that reports entry 12 must not touch a newer one.
        // `policy_version` counts changes, so a running gateway notices one with a single-row read.
        sql: "
CREATE TABLE policy_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    enabled INTEGER NOT NULL,
    direction TEXT NOT NULL,
    rule TEXT NOT NULL,
    created INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    last_matched INTEGER
);
CREATE INDEX policy_rules_by_position ON policy_rules (position);
CREATE TABLE policy_list_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    list TEXT NOT NULL CHECK (list IN ('allow', 'block')),
    level TEXT NOT NULL,
    recipient TEXT,
    sender TEXT NOT NULL,
    expires INTEGER,
    entry TEXT NOT NULL,
    created INTEGER NOT NULL,
    last_matched INTEGER
);
CREATE UNIQUE INDEX policy_list_entries_unique ON policy_list_entries (list, entry);
CREATE INDEX policy_list_entries_by_sender ON policy_list_entries (sender);
CREATE INDEX policy_list_entries_by_recipient ON policy_list_entries (recipient);
CREATE TABLE policy_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO policy_version (id, version) VALUES (1, 0);
",
    },
    Migration {
        name: "domains",
        // The organisation's domains and their settings (next hop, recipients, thresholds, ASF options,
        // spamtraps, sending servers). The settings are the gateway's own type, kept as its JSON: this crate
        // sits below the gateway and only stores them. A change bumps `policy_version`, which the running
        // gateway already polls.
        sql: "
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated INTEGER NOT NULL
);
",
    },
    Migration {
        name: "accounts and settings",
        // Who may use the web console and the API (see `accounts.rs`), and a small key/value table for the
        // console's own state. Names are unique ignoring case, hence `name_key`. AUTOINCREMENT because sessions
        // name account ids: an id must never come back for a different person after a removal. `domains` is a
        // JSON array of strings (a domain administrator's domains).
        sql: "
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('admin', 'domain_admin', 'user')),
    domains TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
",
    },
    Migration {
        name: "outbound spool",
        // Mail the gateway owes after its 250 (bounces, policy copies, digests; see `spool.rs`): one row per
        // recipient, the message compressed as the quarantine's. AUTOINCREMENT so that an id in a log line
        // never names a different item later. The index serves the runner's "what is due" question.
        sql: "
CREATE TABLE spool (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    reference_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    mail_from TEXT NOT NULL,
    recipient TEXT NOT NULL,
    outbound INTEGER NOT NULL,
    encoding TEXT NOT NULL,
    size INTEGER NOT NULL,
    data BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'failed')),
    finished_ms INTEGER
);
CREATE INDEX spool_due ON spool (state, next_attempt_ms);
",
    },
    Migration {
        name: "leases",
        // Who does a job that one process (or, on PostgreSQL, one node) must do alone, until when: the
        // digest's schedule. See `lease.rs`.
        sql: "
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms INTEGER NOT NULL
);
",
    },
    Migration {
        name: "web sessions",
        // The console's sessions, keyed by a hash of the session id (the id itself is never stored), and
        // the failed-login counts per key in fixed windows; see `web.rs`. The signing key stays in the data
        // directory on SQLite.
        sql: "
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    principal TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires INTEGER NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account);
CREATE INDEX web_sessions_expires ON web_sessions (expires);
CREATE TABLE web_login_failures (
    key TEXT PRIMARY KEY,
    since INTEGER NOT NULL,
    count INTEGER NOT NULL
);
CREATE INDEX web_login_failures_since ON web_login_failures (since);
",
    },
    Migration {
        name: "dmarc reports",
        // DMARC aggregate reports (RFC 7489 §7.2), see `dmarc.rs`. `dmarc_rows`: what we saw of other
        // domains' mail, one row per reporting period and distinct result set with a count (a day of traffic
        // is a few rows per sending source, not one per message); `policy` is the record's JSON, last seen.
        // `dmarc_received`: the rows of the reports others sent us about our domains.
        sql: "
CREATE TABLE dmarc_rows (
    period_begin INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    domain TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    header_from TEXT NOT NULL,
    envelope_from TEXT NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    auth TEXT NOT NULL,
    policy TEXT NOT NULL,
    count INTEGER NOT NULL,
    UNIQUE (period_begin, domain, source_ip, header_from, envelope_from, disposition, dkim, spf, auth)
);
CREATE INDEX dmarc_rows_end ON dmarc_rows (period_end);
CREATE TABLE dmarc_received (
    id INTEGER PRIMARY KEY,
    received INTEGER NOT NULL,
    reporter TEXT NOT NULL,
    report_id TEXT NOT NULL,
    begin INTEGER NOT NULL,
    end INTEGER NOT NULL,
    domain TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    dkim TEXT NOT NULL,
    spf TEXT NOT NULL,
    header_from TEXT NOT NULL,
    dkim_results TEXT NOT NULL,
    spf_results TEXT NOT NULL
);
CREATE INDEX dmarc_received_domain_end ON dmarc_received (domain, end);
CREATE INDEX dmarc_received_report ON dmarc_received (reporter, report_id);
",
    },
];

/// The schema version this build writes: the number of migrations it knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings the file behind `conn` up to [`SCHEMA_VERSION`]; returns the version it found.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<u32, StoreError> {
    migrate_to(conn, path, MIGRATIONS)
}

pub(crate) fn migrate_to(conn: &mut Connection, path: &Path, migrations: &[Migration]) -> Result<u32, StoreError> {
    let sql = |e| crate::gateway::sqlite_error(path, e);
    let found = user_version(conn).map_err(sql)?;
    if found as usize > migrations.len() {
        return Err(StoreError::Invalid {
            path: path.display().to_string(),
            reason: format!(
                "the database has schema version {found}, newer than this mailsift knows ({}): \
                 run the newer mailsift, or restore a backup",
                migrations.len()
            ),
        });
    }
    for (i, step) in migrations.iter().enumerate() {
        let version = i as u32 + 1;
        if version <= found {
            continue;
        }
        let failed = |e: rusqlite::Error| StoreError::Invalid {
            path: path.display().to_string(),
            reason: format!("schema migration {version} ({}) failed: {e}", step.name),
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(sql)?;
        // Another process may have applied it while this one waited for the write lock.
        if user_version(&tx).map_err(sql)? >= version {
            continue;
        }
        tx.execute_batch(step.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version).map_err(failed)?;
        tx.commit().map_err(failed)?;
    }
    Ok(found)
}

pub(crate) fn user_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Connection {
        Connection::open(dir.join("m.sqlite")).unwrap()
    }

    #[test]
    fn an_older_file_is_brought_forward_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut conn = open(dir.path());
        assert_eq!(migrate_to(&mut conn, &path, &MIGRATIONS[..1]).unwrap(), 0);
        assert_eq!(user_version(&conn).unwrap(), 1);
        conn.execute(
            "INSERT INTO message_log (reference_id, time, direction, recipients, size, action, stage) \
             VALUES ('r1', 1, 'inbound', '[]', 10, 'deliver', 'data')",
            [],
        )
        .unwrap();
        // No quarantine yet at version 1.
        assert!(conn.prepare("SELECT id FROM quarantine").is_err());

        assert_eq!(migrate(&mut conn, &path).unwrap(), 1);
        assert_eq!(user_version(&conn).unwrap(), SCHEMA_VERSION);
        let n: i64 = conn.query_row("SELECT count(*) FROM message_log", [], |r| r.get(0)).unwrap();
        assert_eq!(n, 1);
        conn.prepare("SELECT id, raw_id FROM quarantine").unwrap();
        // Running again is a no-op.
        assert_eq!(migrate(&mut conn, &path).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn a_failing_step_leaves_the_file_at_the_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.sqlite");
        let mut conn = open(dir.path());
        let steps = [
            Migration { name: "one", sql: "CREATE TABLE a (x INTEGER);" },
            Migration { name: "broken", sql: "CREATE TABLE b (x INTEGER); CREATE TABLE a (y INTEGER);" },
        ];
        let e = migrate_to(&mut conn, &path, &steps).unwrap_err().to_string();
        assert!(e.contains("schema migration 2 (broken)"), "{e}");
        assert_eq!(user_version(&conn).unwrap(), 1);
        // The half-applied step was rolled back with its transaction.
        assert!(conn.prepare("SELECT x FROM b").is_err());
    }
}
