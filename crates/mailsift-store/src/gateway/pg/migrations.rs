//! The PostgreSQL schema, as an ordered list of steps, versioned as SQLite's is (`gateway/migrations.rs`).
//!
//! `mailsift_schema` holds one row per applied step. Opening the store applies the missing ones, each in its
//! own transaction with its row, under a transaction-scoped advisory lock: nodes starting together apply
//! each step once (the others wait for the lock, then find it applied). A database written by a newer
//! mailsift (more steps than this list) is refused rather than misread. Never edit a released step; append.
//!
//! Types: ids are `BIGINT GENERATED ALWAYS AS IDENTITY` (never reused after a delete, as release links name
//! them); Unix times are `BIGINT`; raw messages `BYTEA`, compressed as SQLite's are.

use crate::StoreError;

/// One schema step; its position counting from 1 is the version it leaves.
pub(crate) struct Step {
    pub name: &'static str,
    pub sql: &'static str,
}

/// The advisory lock key under which steps are applied ("mailsift" in ASCII, as a number).
const LOCK_KEY: i64 = 0x6d61_696c_7369_6674;

pub(crate) const STEPS: &[Step] = &[
    Step {
        name: "message log",
        // Recipients and symbols are arrays in the row (see `msglog.rs`). Searches run newest first through
        // the time index and stop at the page; the symbol search is a GIN lookup.
        sql: "
CREATE TABLE message_log (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference_id TEXT NOT NULL,
    time BIGINT NOT NULL,
    direction TEXT NOT NULL,
    client_ip TEXT,
    helo TEXT,
    mail_from TEXT,
    recipients TEXT[] NOT NULL,
    from_header TEXT,
    subject TEXT,
    message_id TEXT,
    size BIGINT NOT NULL,
    score DOUBLE PRECISION,
    required DOUBLE PRECISION,
    action TEXT NOT NULL,
    stage TEXT NOT NULL,
    reason TEXT,
    next_hop_response TEXT,
    symbol_names TEXT[] NOT NULL,
    symbol_scores DOUBLE PRECISION[] NOT NULL
);
CREATE INDEX message_log_by_time ON message_log (time, id);
CREATE INDEX message_log_by_reference ON message_log (reference_id);
CREATE INDEX message_log_by_client_ip ON message_log (client_ip);
CREATE INDEX message_log_by_symbol ON message_log USING gin (symbol_names);
",
    },
    Step {
        name: "quarantine",
        // One row per recipient (each released or deleted on its own); the message stored once per put.
        sql: "
CREATE TABLE quarantine_raw (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    encoding TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL
);
CREATE TABLE quarantine (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raw_id BIGINT NOT NULL REFERENCES quarantine_raw (id),
    reference_id TEXT NOT NULL,
    time BIGINT NOT NULL,
    recipient TEXT NOT NULL,
    mail_from TEXT,
    from_header TEXT,
    subject TEXT,
    score DOUBLE PRECISION,
    reason TEXT NOT NULL,
    size BIGINT NOT NULL,
    direction TEXT NOT NULL,
    released_at BIGINT
);
CREATE INDEX quarantine_by_time ON quarantine (time);
CREATE INDEX quarantine_by_raw ON quarantine (raw_id);
CREATE INDEX quarantine_by_reference ON quarantine (reference_id);
",
    },
    Step {
        name: "accounts, settings, domains",
        // As SQLite's: accounts unique by their lowercased name, a domain administrator's domains an array;
        // the console's key/value settings; the domains' settings as the gateway's JSON. `policy_version`
        // counts policy changes (a domain's change is one), so every node sees when to reload.
        sql: "
CREATE TABLE accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    domains TEXT[] NOT NULL,
    password_hash TEXT NOT NULL,
    created BIGINT NOT NULL,
    disabled BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    settings TEXT NOT NULL,
    updated BIGINT NOT NULL
);
CREATE TABLE policy_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO policy_version (id, version) VALUES (1, 0);
",
    },
    Step {
        name: "policy",
        // Filter rules in order (names unique ignoring case) and allow/block entries, each kept as the
        // engine's JSON with the columns searches and lookups use; as SQLite's.
        sql: "
CREATE TABLE policy_rules (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    enabled BOOLEAN NOT NULL,
    direction TEXT NOT NULL,
    rule TEXT NOT NULL,
    created BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    last_matched BIGINT
);
CREATE INDEX policy_rules_by_position ON policy_rules (position);
CREATE TABLE policy_list_entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    list TEXT NOT NULL CHECK (list IN ('allow', 'block')),
    level TEXT NOT NULL,
    recipient TEXT,
    sender TEXT NOT NULL,
    expires BIGINT,
    entry TEXT NOT NULL,
    created BIGINT NOT NULL,
    last_matched BIGINT
);
CREATE UNIQUE INDEX policy_list_entries_unique ON policy_list_entries (list, entry);
CREATE INDEX policy_list_entries_by_sender ON policy_list_entries (sender);
CREATE INDEX policy_list_entries_by_recipient ON policy_list_entries (recipient);
",
    },
    Step {
        name: "outbound spool",
        // Mail the gateway owes after its 250 (bounces, policy copies, digests), one row per recipient,
        // compressed as the quarantine's; shared by every node's runner (see `spool.rs`).
        sql: "
CREATE TABLE spool (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    reference_id TEXT NOT NULL,
    created_ms BIGINT NOT NULL,
    mail_from TEXT NOT NULL,
    recipient TEXT NOT NULL,
    outbound BOOLEAN NOT NULL,
    encoding TEXT NOT NULL,
    size BIGINT NOT NULL,
    data BYTEA NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    last_error TEXT,
    state TEXT NOT NULL CHECK (state IN ('pending', 'failed')),
    finished_ms BIGINT
);
CREATE INDEX spool_due ON spool (state, next_attempt_ms);
",
    },
    Step {
        name: "leases",
        // Who does a job one node must do alone (the digest's schedule), until when; see `gateway/lease.rs`.
        sql: "
CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL
);
",
    },
    Step {
        name: "search indexes",
        // Substring searches (sender, recipient, subject) are LIKE on lowercased text, served by trigram
        // indexes: a rare or absent needle answers from the index instead of reading every row (over
        // 1,000,000 rows: 0.5-1 s without them). pg_trgm ships with PostgreSQL and is a trusted extension
        // (a database owner may create it). The recipients are indexed as one lowercased text.
        sql: "
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE FUNCTION mailsift_recipients_text(text[]) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT lower(array_to_string($1, ' ')) $$;
CREATE INDEX message_log_mail_from_trgm ON message_log USING gin (lower(mail_from) gin_trgm_ops);
CREATE INDEX message_log_from_header_trgm ON message_log USING gin (lower(from_header) gin_trgm_ops);
CREATE INDEX message_log_subject_trgm ON message_log USING gin (lower(subject) gin_trgm_ops);
CREATE INDEX message_log_recipients_trgm ON message_log USING gin (mailsift_recipients_text(recipients) gin_trgm_ops);
",
    },
    Step {
        name: "classifier",
        // The learned model every node scans with (see `classifier.rs`): Bayes counts per hashed token, the
        // linear weights in chunks, the totals, each row stamped with the save that last wrote it; the
        // trained-message digests and the users' report submissions.
        sql: "
CREATE TABLE classifier_version (id INTEGER PRIMARY KEY CHECK (id = 1), seq BIGINT NOT NULL);
INSERT INTO classifier_version (id, seq) VALUES (1, 0);
CREATE TABLE classifier_tokens (
    id BIGINT PRIMARY KEY,
    ham BIGINT NOT NULL,
    spam BIGINT NOT NULL,
    last_seen_day INTEGER NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX classifier_tokens_by_seq ON classifier_tokens (seq);
CREATE TABLE classifier_chunks (chunk INTEGER PRIMARY KEY, weights BYTEA NOT NULL, seq BIGINT NOT NULL);
CREATE TABLE classifier_totals (name TEXT PRIMARY KEY, value DOUBLE PRECISION NOT NULL, seq BIGINT NOT NULL);
INSERT INTO classifier_totals (name, value, seq)
    VALUES ('ham', 0, 0), ('spam', 0, 0), ('linear_bias', 0, 0), ('linear_updates', 0, 0);
CREATE TABLE classifier_trained (
    digest BYTEA PRIMARY KEY,
    side TEXT NOT NULL CHECK (side IN ('ham', 'spam')),
    at BIGINT NOT NULL
);
CREATE TABLE classifier_submissions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    correct_side TEXT NOT NULL,
    previous_side TEXT,
    digest BYTEA NOT NULL,
    source TEXT NOT NULL,
    channel TEXT NOT NULL,
    reporter TEXT,
    sender_domain TEXT
);
CREATE INDEX classifier_submissions_by_time ON classifier_submissions (at);
",
    },
    Step {
        name: "reputation",
        // Local reputation shared by the nodes (see `reputation/postgres.rs`): per identity, the spam and ham
        // weights decayed to `updated` (Unix seconds), folded into by an upsert so concurrent nodes add up.
        // Shows and resets go by key alone, whatever the kind.
        sql: "
CREATE TABLE reputation (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    spam DOUBLE PRECISION NOT NULL,
    ham DOUBLE PRECISION NOT NULL,
    updated BIGINT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX reputation_by_key ON reputation (key);
",
    },
    Step {
        name: "web sessions",
        // The console's state shared by every node (see `gateway/web.rs`): sessions keyed by a hash of their
        // id, failed-login counts per key, and the link and API token signing key the first node stored.
        sql: "
CREATE TABLE web_sessions (
    id_hash TEXT PRIMARY KEY,
    account TEXT NOT NULL,
    principal TEXT NOT NULL,
    csrf TEXT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX web_sessions_account ON web_sessions (account);
CREATE INDEX web_sessions_expires ON web_sessions (expires);
CREATE TABLE web_login_failures (
    key TEXT PRIMARY KEY,
    since BIGINT NOT NULL,
    count BIGINT NOT NULL
);
CREATE INDEX web_login_failures_since ON web_login_failures (since);
CREATE TABLE web_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
",
    },
];

/// The version this build writes.
pub const SCHEMA_VERSION: i32 = STEPS.len() as i32;

/// How many steps the database has had applied (0 for an empty database).
pub(crate) fn version(c: &mut postgres::Client) -> Result<i32, postgres::Error> {
    let exists: bool = c.query_one("SELECT to_regclass('mailsift_schema') IS NOT NULL", &[])?.get(0);
    if !exists {
        return Ok(0);
    }
    Ok(c.query_one("SELECT COALESCE(max(version), 0) FROM mailsift_schema", &[])?.get(0))
}

/// Applies the missing steps in order (see the module's text).
pub(crate) fn migrate(c: &mut postgres::Client, target: &str) -> Result<(), StoreError> {
    let err = |e| super::pg_error(target, e);
    loop {
        let mut tx = c.transaction().map_err(err)?;
        // The lock first, so that nodes starting together also create the version table one at a time.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY]).map_err(err)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS mailsift_schema (
                 version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .map_err(err)?;
        let at: i32 = tx.query_one("SELECT COALESCE(max(version), 0) FROM mailsift_schema", &[]).map_err(err)?.get(0);
        if at > SCHEMA_VERSION {
            return Err(StoreError::Invalid {
                path: target.to_string(),
                reason: format!(
                    "the database is at schema version {at}, newer than this mailsift's {SCHEMA_VERSION}: \
                     upgrade mailsift"
                ),
            });
        }
        let Some(step) = STEPS.get(at as usize) else { return Ok(()) };
        tx.batch_execute(step.sql).map_err(|e| StoreError::Invalid {
            path: target.to_string(),
            reason: format!("schema step {} ({}): {}", at + 1, step.name, super::pg_error(target, e)),
        })?;
        tx.execute("INSERT INTO mailsift_schema (version, name) VALUES ($1, $2)", &[&(at + 1), &step.name])
            .map_err(err)?;
        tx.commit().map_err(err)?;
    }
}
