//! `mailsift store migrate --to postgres://...`: moves one node's SQLite state (the data directory's gateway
//! database, classifier and reputation files) into an empty PostgreSQL database, so an installation that
//! outgrew one machine keeps its quarantine, message log, policy, accounts and learned model.
//!
//! All or nothing: every table is copied (binary COPY) inside one PostgreSQL transaction, the rows are
//! counted on both sides, and the transaction commits only when every count matches; otherwise nothing is
//! left behind. Ids keep their values (release links and log references name them) and the identity
//! sequences continue after the highest. The SQLite files are only read, each inside one read
//! transaction, so the copy is a consistent snapshot; the gateway should be stopped all the same, or what
//! it accepts during the copy stays behind in SQLite.
//!
//! The link signing key (`web.key`) goes into the database too, so digest links and API tokens made before
//! the move keep working on every node. What is not moved: console sessions (people sign in again), login
//! throttles, leases (held by running processes), and the log's SQLite-only bookkeeping (interned symbol
//! names become the log rows' own arrays).

use std::path::{Path, PathBuf};

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::{ToSql, Type};
use rusqlite::types::Value;

use crate::pg::{PgConfig, PgStore};
use crate::StoreError;

/// How a SQLite value becomes a PostgreSQL one.
#[derive(Clone, Copy)]
enum Kind {
    I64,
    I32,
    Bool,
    F64,
    Text,
    Bytes,
    /// A JSON array of strings in a TEXT column.
    TextArray,
    /// A JSON array of numbers (or nulls) in a TEXT column.
    F64Array,
}

impl Kind {
    fn pg_type(self) -> Type {
        match self {
            Kind::I64 => Type::INT8,
            Kind::I32 => Type::INT4,
            Kind::Bool => Type::BOOL,
            Kind::F64 => Type::FLOAT8,
            Kind::Text => Type::TEXT,
            Kind::Bytes => Type::BYTEA,
            Kind::TextArray => Type::TEXT_ARRAY,
            Kind::F64Array => Type::FLOAT8_ARRAY,
        }
    }
}

/// One table to copy: which file, the query that reads it (columns in the order of `columns`), where
/// it goes, and whether PostgreSQL numbers its rows with an identity column to continue after the copy.
struct Table {
    file: &'static str,
    name: &'static str,
    select: &'static str,
    target: &'static str,
    columns: &'static [(&'static str, Kind)],
    identity: bool,
}

use Kind::*;

const GATEWAY: &str = crate::gateway::FILE_NAME;
const CLASSIFIER: &str = crate::sqlite::FILE_NAME;

const TABLES: &[Table] = &[
    Table {
        file: GATEWAY,
        name: "message log",
        // The symbols, kept in SQLite as rows of their own with interned names, become the row's arrays in
        // the verdict's order.
        select: "SELECT id, reference_id, time, direction, client_ip, helo, mail_from, recipients, from_header, \
                 subject, message_id, size, score, required, action, stage, reason, next_hop_response, \
                 (SELECT json_group_array(name) FROM (SELECT n.name AS name FROM message_log_symbols s \
                    JOIN symbol_names n ON n.id = s.symbol_id WHERE s.log_id = m.id ORDER BY s.pos)), \
                 (SELECT json_group_array(score) FROM (SELECT s.score AS score FROM message_log_symbols s \
                    WHERE s.log_id = m.id ORDER BY s.pos)) \
                 FROM message_log m ORDER BY id",
        target: "message_log",
        columns: &[
            ("id", I64),
            ("reference_id", Text),
            ("time", I64),
            ("direction", Text),
            ("client_ip", Text),
            ("helo", Text),
            ("mail_from", Text),
            ("recipients", TextArray),
            ("from_header", Text),
            ("subject", Text),
            ("message_id", Text),
            ("size", I64),
            ("score", F64),
            ("required", F64),
            ("action", Text),
            ("stage", Text),
            ("reason", Text),
            ("next_hop_response", Text),
            ("symbol_names", TextArray),
            ("symbol_scores", F64Array),
        ],
        identity: true,
    },
    Table {
        file: GATEWAY,
        name: "quarantined messages",
        select: "SELECT id, encoding, size, data FROM quarantine_raw ORDER BY id",
        target: "quarantine_raw",
        columns: &[("id", I64), ("encoding", Text), ("size", I64), ("data", Bytes)],
        identity: true,
    },
    Table {
        file: GATEWAY,
        name: "quarantine",
        select: "SELECT id, raw_id, reference_id, time, recipient, mail_from, from_header, subject, score, reason, \
                 size, direction, released_at FROM quarantine ORDER BY id",
        target: "quarantine",
        columns: &[
            ("id", I64),
            ("raw_id", I64),
            ("reference_id", Text),
            ("time", I64),
            ("recipient", Text),
            ("mail_from", Text),
            ("from_header", Text),
            ("subject", Text),
            ("score", F64),
            ("reason", Text),
            ("size", I64),
            ("direction", Text),
            ("released_at", I64),
        ],
        identity: true,
    },
    Table {
        file: GATEWAY,
        name: "accounts",
        select: "SELECT id, name, name_key, role, domains, password_hash, created, disabled FROM accounts ORDER BY id",
        target: "accounts",
        columns: &[
            ("id", I64),
            ("name", Text),
            ("name_key", Text),
            ("role", Text),
            ("domains", TextArray),
            ("password_hash", Text),
            ("created", I64),
            ("disabled", Bool),
        ],
        identity: true,
    },
    Table {
        file: GATEWAY,
        name: "settings",
        select: "SELECT key, value FROM settings ORDER BY key",
        target: "settings",
        columns: &[("key", Text), ("value", Text)],
        identity: false,
    },
    Table {
        file: GATEWAY,
        name: "domains",
        select: "SELECT name, settings, updated FROM domains ORDER BY name",
        target: "domains",
        columns: &[("name", Text), ("settings", Text), ("updated", I64)],
        identity: false,
    },
    Table {
        file: GATEWAY,
        name: "filter rules",
        select: "SELECT id, position, name, name_key, enabled, direction, rule, created, updated, last_matched \
                 FROM policy_rules ORDER BY id",
        target: "policy_rules",
        columns: &[
            ("id", I64),
            ("position", I64),
            ("name", Text),
            ("name_key", Text),
            ("enabled", Bool),
            ("direction", Text),
            ("rule", Text),
            ("created", I64),
            ("updated", I64),
            ("last_matched", I64),
        ],
        identity: true,
    },
    Table {
        file: GATEWAY,
        name: "allowed and blocked senders",
        select: "SELECT id, list, level, recipient, sender, expires, entry, created, last_matched \
                 FROM policy_list_entries ORDER BY id",
        target: "policy_list_entries",
        columns: &[
            ("id", I64),
            ("list", Text),
            ("level", Text),
            ("recipient", Text),
            ("sender", Text),
            ("expires", I64),
            ("entry", Text),
            ("created", I64),
            ("last_matched", I64),
        ],
        identity: true,
    },
    Table {
        file: GATEWAY,
        name: "outbound spool",
        select: "SELECT id, kind, reference_id, created_ms, mail_from, recipient, outbound, encoding, size, data, \
                 attempts, next_attempt_ms, last_error, state, finished_ms FROM spool ORDER BY id",
        target: "spool",
        columns: &[
            ("id", I64),
            ("kind", Text),
            ("reference_id", Text),
            ("created_ms", I64),
            ("mail_from", Text),
            ("recipient", Text),
            ("outbound", Bool),
            ("encoding", Text),
            ("size", I64),
            ("data", Bytes),
            ("attempts", I32),
            ("next_attempt_ms", I64),
            ("last_error", Text),
            ("state", Text),
            ("finished_ms", I64),
        ],
        identity: true,
    },
    Table {
        file: CLASSIFIER,
        name: "classifier tokens",
        // Stamped as the first save (see `pg/classifier.rs`), which every node loads.
        select: "SELECT id, ham, spam, last_seen_day, 1 FROM bayes_tokens ORDER BY id",
        target: "classifier_tokens",
        columns: &[("id", I64), ("ham", I64), ("spam", I64), ("last_seen_day", I32), ("seq", I64)],
        identity: false,
    },
    Table {
        file: CLASSIFIER,
        name: "classifier weights",
        select: "SELECT chunk, weights, 1 FROM linear_chunks ORDER BY chunk",
        target: "classifier_chunks",
        columns: &[("chunk", I32), ("weights", Bytes), ("seq", I64)],
        identity: false,
    },
    Table {
        file: CLASSIFIER,
        name: "classifier totals",
        select: "SELECT name, value, 1 FROM totals ORDER BY name",
        target: "classifier_totals",
        columns: &[("name", Text), ("value", F64), ("seq", I64)],
        identity: false,
    },
    Table {
        file: CLASSIFIER,
        name: "trained messages",
        select: "SELECT digest, side, at FROM trained ORDER BY digest",
        target: "classifier_trained",
        columns: &[("digest", Bytes), ("side", Text), ("at", I64)],
        identity: false,
    },
    Table {
        file: CLASSIFIER,
        name: "report submissions",
        select: "SELECT id, at, correct_side, previous_side, digest, source, channel, reporter, sender_domain \
                 FROM submissions ORDER BY id",
        target: "classifier_submissions",
        columns: &[
            ("id", I64),
            ("at", I64),
            ("correct_side", Text),
            ("previous_side", Text),
            ("digest", Bytes),
            ("source", Text),
            ("channel", Text),
            ("reporter", Text),
            ("sender_domain", Text),
        ],
        identity: true,
    },
];

/// One table's rows: read from SQLite, found in PostgreSQL after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    pub table: String,
    pub sqlite: u64,
    pub postgres: u64,
}

/// Rows the schema itself puts in an empty database, which the copy replaces.
const SEEDED: &[&str] = &["classifier_totals"];

/// Copies the data directory's SQLite state into the empty PostgreSQL database `to` (its schema is made
/// first); returns every table's counts. Fails, changing nothing in PostgreSQL, when the database already
/// holds state, a file cannot be read, or any count differs.
pub fn to_postgres(data_dir: &Path, to: &PgConfig) -> Result<Vec<Counted>, StoreError> {
    let gateway = data_dir.join(GATEWAY);
    if !gateway.exists() && !data_dir.join(CLASSIFIER).exists() {
        return Err(StoreError::Invalid {
            path: data_dir.display().to_string(),
            reason: "no gateway database and no classifier here: nothing to migrate (is --data-dir right?)".into(),
        });
    }
    // Brings an older file's schema up to date first, so the columns read below exist. (A directory with
    // only a trained classifier, as `mailsift train` leaves it, moves just that.)
    if gateway.exists() {
        drop(crate::Database::open(&gateway)?);
    }
    if data_dir.join(CLASSIFIER).exists() {
        drop(crate::SqliteStore::open_dir(data_dir)?);
    }
    let pg = PgStore::open(to)?;
    let dir = data_dir.to_path_buf();
    // Why the copy stopped, when it was our refusal rather than PostgreSQL's error.
    let refusal = std::sync::Arc::new(std::sync::Mutex::new(None::<String>));
    let said = refusal.clone();
    let result = pg.transaction(move |tx| match copy_all(tx, &dir) {
        Ok(counted) => Ok(counted),
        Err(Failure::Pg(e)) => Err(e),
        Err(Failure::Refused(reason)) => {
            *said.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
            // An error from the server rolls the transaction back (the COPY may have left it failed already).
            Err(tx.batch_execute("SELECT 1/0").expect_err("division by zero fails"))
        }
    });
    let refused = refusal.lock().unwrap_or_else(|e| e.into_inner()).take();
    match (result, refused) {
        (Ok(counted), _) => Ok(counted),
        (Err(_), Some(reason)) => Err(StoreError::Invalid { path: pg.target().to_string(), reason }),
        (Err(e), None) => Err(e),
    }
}

/// Why a copy stopped: PostgreSQL's error, or ours (a file unreadable, a count that differs, a database
/// not empty).
enum Failure {
    Pg(postgres::Error),
    Refused(String),
}

impl From<postgres::Error> for Failure {
    fn from(e: postgres::Error) -> Failure {
        Failure::Pg(e)
    }
}

/// The copy inside the one transaction.
fn copy_all(tx: &mut postgres::Transaction<'_>, dir: &Path) -> Result<Vec<Counted>, Failure> {
    let version: i64 = tx.query_one("SELECT seq FROM classifier_version", &[])?.get(0);
    for t in TABLES {
        let n: i64 = tx.query_one(&format!("SELECT count(*) FROM {}", t.target), &[])?.get(0);
        if (n > 0 && !SEEDED.contains(&t.target)) || version > 0 {
            return Err(Failure::Refused(format!(
                "the database already holds mailsift state ({n} rows in {}): migrate into an empty database",
                t.target
            )));
        }
    }
    let mut counted = Vec::new();
    let mut sources: Vec<(&str, rusqlite::Connection)> = Vec::new();
    for t in TABLES {
        let path = dir.join(t.file);
        if !sources.iter().any(|(f, _)| *f == t.file) {
            if !path.exists() {
                continue;
            }
            let conn = open_snapshot(&path).map_err(|e| Failure::Refused(format!("{}: {e}", path.display())))?;
            sources.push((t.file, conn));
        }
        let Some((_, conn)) = sources.iter().find(|(f, _)| *f == t.file) else { continue };
        if SEEDED.contains(&t.target) {
            tx.execute(&format!("DELETE FROM {}", t.target), &[])?;
        }
        let read = copy_table(tx, conn, t).map_err(|e| match e {
            Failure::Refused(r) => Failure::Refused(format!("{} ({}): {r}", path.display(), t.name)),
            other => other,
        })?;
        let found: i64 = tx.query_one(&format!("SELECT count(*) FROM {}", t.target), &[])?.get(0);
        counted.push(Counted { table: t.name.to_string(), sqlite: read, postgres: found as u64 });
        if t.identity {
            // The next row numbered after the highest copied one.
            tx.execute(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{0}', 'id'), coalesce(max(id), 0) + 1, false) FROM {0}",
                    t.target
                ),
                &[],
            )?;
        }
    }
    // The totals a store that never saved lacks; a model the first save stamped.
    tx.execute(
        "INSERT INTO classifier_totals (name, value, seq) VALUES ('ham', 0, 1), ('spam', 0, 1), \
         ('linear_bias', 0, 1), ('linear_updates', 0, 1) ON CONFLICT (name) DO NOTHING",
        &[],
    )?;
    tx.execute("UPDATE classifier_version SET seq = 1", &[])?;
    // The key that signed this node's digest links and API tokens, so they keep working on every node.
    let key = dir.join("web.key");
    if let Ok(bytes) = std::fs::read(&key) {
        if bytes.len() != 32 {
            return Err(Failure::Refused(format!("{}: not a 32-byte key", key.display())));
        }
        tx.execute(
            "INSERT INTO web_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            &[&crate::gateway::web::SIGNING_KEY, &bytes],
        )?;
        let found: i64 = tx.query_one("SELECT count(*) FROM web_secrets WHERE value = $1", &[&bytes])?.get(0);
        counted.push(Counted { table: "link signing key".into(), sqlite: 1, postgres: found as u64 });
    }
    if let Some((_, conn)) = sources.iter().find(|(f, _)| *f == GATEWAY) {
        let version: i64 =
            conn.query_row("SELECT version FROM policy_version WHERE id = 1", [], |r| r.get(0)).unwrap_or(0);
        tx.execute("UPDATE policy_version SET version = $1", &[&version])?;
    }
    if let Some(c) = counted.iter().find(|c| c.sqlite != c.postgres) {
        return Err(Failure::Refused(format!(
            "{}: {} rows read, {} in PostgreSQL: nothing migrated",
            c.table, c.sqlite, c.postgres
        )));
    }
    Ok(counted)
}

/// The file opened read-only, inside a read transaction (one snapshot for every table read from it).
fn open_snapshot(path: &PathBuf) -> rusqlite::Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch("BEGIN")?;
    // A read transaction starts at its first read.
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
    Ok(conn)
}

/// Streams one table into PostgreSQL with binary COPY; returns how many rows were read.
fn copy_table(tx: &mut postgres::Transaction<'_>, conn: &rusqlite::Connection, t: &Table) -> Result<u64, Failure> {
    let names: Vec<&str> = t.columns.iter().map(|(n, _)| *n).collect();
    let types: Vec<Type> = t.columns.iter().map(|(_, k)| k.pg_type()).collect();
    let sqlite = |e: rusqlite::Error| Failure::Refused(e.to_string());
    let mut stmt = conn.prepare(t.select).map_err(sqlite)?;
    let mut rows = stmt.query([]).map_err(sqlite)?;
    let sink = tx.copy_in(&format!("COPY {} ({}) FROM STDIN (FORMAT binary)", t.target, names.join(", ")))?;
    let mut w = BinaryCopyInWriter::new(sink, &types);
    let mut n = 0u64;
    while let Some(row) = rows.next().map_err(sqlite)? {
        let mut values: Vec<Box<dyn ToSql + Sync>> = Vec::with_capacity(t.columns.len());
        for (i, (column, kind)) in t.columns.iter().enumerate() {
            let v: Value = row.get(i).map_err(sqlite)?;
            values.push(convert(v, *kind).map_err(|e| Failure::Refused(format!("row {}, {column}: {e}", n + 1)))?);
        }
        let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|b| b.as_ref()).collect();
        w.write(&refs)?;
        n += 1;
    }
    w.finish()?;
    Ok(n)
}

fn convert(v: Value, kind: Kind) -> Result<Box<dyn ToSql + Sync>, String> {
    let bad = |v: &Value| format!("unexpected {:?} for {}", v.data_type(), kind.pg_type());
    Ok(match (kind, v) {
        (_, Value::Null) => match kind {
            I64 => Box::new(None::<i64>),
            I32 => Box::new(None::<i32>),
            Bool => Box::new(None::<bool>),
            F64 => Box::new(None::<f64>),
            Text => Box::new(None::<String>),
            Bytes => Box::new(None::<Vec<u8>>),
            TextArray => Box::new(None::<Vec<String>>),
            F64Array => Box::new(None::<Vec<Option<f64>>>),
        },
        (I64, Value::Integer(i)) => Box::new(i),
        (I32, Value::Integer(i)) => Box::new(i32::try_from(i).map_err(|e| e.to_string())?),
        (Bool, Value::Integer(i)) => Box::new(i != 0),
        (F64, Value::Real(f)) => Box::new(Some(f).filter(|f| !f.is_nan())),
        (F64, Value::Integer(i)) => Box::new(i as f64),
        (Text, Value::Text(s)) => Box::new(s),
        (Bytes, Value::Blob(b)) => Box::new(b),
        (TextArray, Value::Text(s)) => {
            Box::new(serde_json::from_str::<Vec<String>>(&s).map_err(|e| format!("not a JSON list of text: {e}"))?)
        }
        (F64Array, Value::Text(s)) => Box::new(
            serde_json::from_str::<Vec<Option<f64>>>(&s).map_err(|e| format!("not a JSON list of numbers: {e}"))?,
        ),
        (_, v) => return Err(bad(&v)),
    })
}
