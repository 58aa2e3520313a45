//! The SQLite token store: one file (`classifier.sqlite` in the data directory), WAL journal.
//!
//! Token ids are stored as SQLite integers (the u64 hash reinterpreted as i64), so the token table is a
//! plain rowid table: the fastest layout SQLite has for lookups and ordered bulk writes. Linear weights are
//! stored as little-endian f32 blobs, one row per chunk.

use std::path::{Path, PathBuf};

use mailsift_engine::classify::linear::{CHUNK, SIZE};
use mailsift_engine::classify::{Model, Side};
use rusqlite::{params, Connection, OptionalExtension};
use rustc_hash::FxHashMap;

use crate::{Changes, StoreError, Submission, TokenStore};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "classifier.sqlite";
/// Bumped when the schema or the feature hashing changes; an older file is refused, not misread.
const SCHEMA_VERSION: &str = "1";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bayes_tokens (
    id INTEGER PRIMARY KEY,
    ham INTEGER NOT NULL,
    spam INTEGER NOT NULL,
    last_seen_day INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS linear_chunks (chunk INTEGER PRIMARY KEY, weights BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS totals (name TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS trained (
    digest BLOB PRIMARY KEY,
    side TEXT NOT NULL CHECK (side IN ('ham', 'spam')),
    at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    correct_side TEXT NOT NULL,
    previous_side TEXT,
    digest BLOB NOT NULL,
    source TEXT NOT NULL
);
";

pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open_dir(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
        SqliteStore::open(&data_dir.join(FILE_NAME))
    }

    /// Opens (creating if needed) the store file at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let conn = Connection::open(path).map_err(|e| err(path, e))?;
        let store = SqliteStore { conn, path: path.to_path_buf() };
        store
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                 PRAGMA cache_size = -65536; PRAGMA busy_timeout = 5000;",
            )
            .map_err(|e| store.err(e))?;
        store.conn.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
        // Submissions learned who reported, how and about which sender after the first release; older
        // files get the columns added (empty for their earlier rows).
        let has_channel: bool = store
            .conn
            .query_row("SELECT count(*) FROM pragma_table_info('submissions') WHERE name = 'channel'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n > 0)
            .map_err(|e| store.err(e))?;
        if !has_channel {
            store
                .conn
                .execute_batch(
                    "ALTER TABLE submissions ADD COLUMN channel TEXT NOT NULL DEFAULT 'cli'; \
                     ALTER TABLE submissions ADD COLUMN reporter TEXT; \
                     ALTER TABLE submissions ADD COLUMN sender_domain TEXT;",
                )
                .map_err(|e| store.err(e))?;
        }
        let version: Option<String> = store
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| r.get(0))
            .optional()
            .map_err(|e| store.err(e))?;
        match version.as_deref() {
            None => {
                store
                    .conn
                    .execute(
                        "INSERT INTO meta (key, value) VALUES ('schema', ?1), ('linear_size', ?2)",
                        params![SCHEMA_VERSION, SIZE.to_string()],
                    )
                    .map_err(|e| store.err(e))?;
            }
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(StoreError::Invalid {
                    path: path.display().to_string(),
                    reason: format!(
                        "classifier store schema {other}, this mailsift reads {SCHEMA_VERSION}: \
                         retrain into a new data directory"
                    ),
                })
            }
        }
        Ok(store)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Report submissions since `since` (Unix seconds, inclusive), counted by UTC day and the side the user
    /// said the message is on (ham: a false-positive report; spam: a false negative): (Unix start of the day,
    /// side, count), by day then side. Days without submissions are absent.
    pub fn submissions_per_day(&self, since: i64) -> Result<Vec<(i64, Side, u64)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at - (at % 86400) AS day, correct_side, count(*) FROM submissions WHERE at >= ?1 \
                 GROUP BY day, correct_side ORDER BY day, correct_side",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([since], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (day, side, n) = row.map_err(|e| self.err(e))?;
            let side = side_from(&side).ok_or_else(|| StoreError::Invalid {
                path: self.path.display().to_string(),
                reason: format!("a submission on {day} names the side {side:?}"),
            })?;
            out.push((day, side, n as u64));
        }
        Ok(out)
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        err(&self.path, e)
    }

    fn total(&self, name: &str) -> Result<f64, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM totals WHERE name = ?1", [name], |r| r.get::<_, f64>(0))
            .optional()
            .map_err(|e| self.err(e))?
            .unwrap_or(0.0))
    }
}

impl SqliteStore {
    /// The engines' fitted combination, if bulk training saved one.
    fn combination(&self) -> Result<Option<mailsift_engine::classify::Combination>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM totals WHERE name LIKE 'combination_%'")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?)))
            .map_err(|e| self.err(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(e))?;
        Ok(crate::combination_from(rows.iter().map(|(n, v)| (n.as_str(), *v))))
    }
}

fn err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite { path: path.display().to_string(), source }
}

fn side_from(s: &str) -> Option<Side> {
    match s {
        "ham" => Some(Side::Ham),
        "spam" => Some(Side::Spam),
        _ => None,
    }
}

fn day(unix: i64) -> i64 {
    unix.div_euclid(86_400)
}

impl TokenStore for SqliteStore {
    fn load(&self) -> Result<Model, StoreError> {
        let mut model = Model::default();
        let n: i64 =
            self.conn.query_row("SELECT count(*) FROM bayes_tokens", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        let mut tokens = FxHashMap::default();
        tokens.reserve(n.max(0) as usize);
        let mut stmt = self.conn.prepare("SELECT id, ham, spam FROM bayes_tokens").map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let id: i64 = r.get(0).map_err(|e| self.err(e))?;
            let ham: i64 = r.get(1).map_err(|e| self.err(e))?;
            let spam: i64 = r.get(2).map_err(|e| self.err(e))?;
            tokens.insert(id as u64, [ham as u32, spam as u32]);
        }
        model.bayes.tokens = tokens;
        model.bayes.ham = self.total("ham")? as u64;
        model.bayes.spam = self.total("spam")? as u64;
        model.linear.bias = self.total("linear_bias")? as f32;
        model.linear.updates = self.total("linear_updates")? as u64;
        model.combination = self.combination()?;
        let mut stmt = self.conn.prepare("SELECT chunk, weights FROM linear_chunks").map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            let chunk: i64 = r.get(0).map_err(|e| self.err(e))?;
            let blob = r.get_ref(1).map_err(|e| self.err(e))?;
            let blob = blob.as_blob().map_err(|e| self.err(e.into()))?;
            let start = chunk as usize * CHUNK;
            if blob.len() != CHUNK * 4 || start + CHUNK > SIZE {
                return Err(StoreError::Invalid {
                    path: self.path.display().to_string(),
                    reason: format!("linear weight chunk {chunk} has the wrong size"),
                });
            }
            for (w, b) in model.linear.weights[start..start + CHUNK].iter_mut().zip(blob.chunks_exact(4)) {
                *w = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Ok(model)
    }

    fn trained_side(&self, digest: &[u8; 16]) -> Result<Option<Side>, StoreError> {
        let side: Option<String> = self
            .conn
            .query_row("SELECT side FROM trained WHERE digest = ?1", [&digest[..]], |r| r.get(0))
            .optional()
            .map_err(|e| self.err(e))?;
        Ok(side.as_deref().and_then(side_from))
    }

    fn save(&mut self, model: &Model, changes: &Changes, now: i64) -> Result<(), StoreError> {
        let path = self.path.clone();
        let e = |x| err(&path, x);
        let tx = self.conn.transaction().map_err(e)?;
        {
            let mut upsert = tx
                .prepare(
                    "INSERT INTO bayes_tokens (id, ham, spam, last_seen_day) VALUES (?1, ?2, ?3, ?4) \
                     ON CONFLICT(id) DO UPDATE SET ham = excluded.ham, spam = excluded.spam, \
                     last_seen_day = excluded.last_seen_day",
                )
                .map_err(e)?;
            let mut delete = tx.prepare("DELETE FROM bayes_tokens WHERE id = ?1").map_err(e)?;
            // Writing in key order turns a B-tree's random inserts into appends.
            let mut ids: Vec<i64> = changes.tokens.iter().map(|&id| id as i64).collect();
            ids.sort_unstable();
            let today = day(now);
            for id in ids {
                match model.bayes.tokens.get(&(id as u64)) {
                    Some([h, s]) => {
                        upsert.execute(params![id, *h as i64, *s as i64, today]).map_err(e)?;
                    }
                    None => {
                        delete.execute([id]).map_err(e)?;
                    }
                }
            }
            let mut chunk_stmt =
                tx.prepare("INSERT OR REPLACE INTO linear_chunks (chunk, weights) VALUES (?1, ?2)").map_err(e)?;
            let mut blob = Vec::with_capacity(CHUNK * 4);
            for (i, dirty) in model.linear.dirty.iter().enumerate() {
                if !dirty {
                    continue;
                }
                blob.clear();
                for w in &model.linear.weights[i * CHUNK..(i + 1) * CHUNK] {
                    blob.extend_from_slice(&w.to_le_bytes());
                }
                chunk_stmt.execute(params![i as i64, &blob]).map_err(e)?;
            }
            let mut total = tx.prepare("INSERT OR REPLACE INTO totals (name, value) VALUES (?1, ?2)").map_err(e)?;
            for (name, v) in [
                ("ham", model.bayes.ham as f64),
                ("spam", model.bayes.spam as f64),
                ("linear_bias", model.linear.bias as f64),
                ("linear_updates", model.linear.updates as f64),
            ] {
                total.execute(params![name, v]).map_err(e)?;
            }
            if let Some(c) = model.combination.filter(|_| changes.combination) {
                for (name, v) in crate::combination_totals(&c) {
                    total.execute(params![name, v]).map_err(e)?;
                }
            }
            let mut trained =
                tx.prepare("INSERT OR REPLACE INTO trained (digest, side, at) VALUES (?1, ?2, ?3)").map_err(e)?;
            let mut forget = tx.prepare("DELETE FROM trained WHERE digest = ?1").map_err(e)?;
            for (digest, side) in &changes.trained {
                match side {
                    Some(side) => trained.execute(params![&digest[..], side.as_str(), now]).map_err(e)?,
                    None => forget.execute([&digest[..]]).map_err(e)?,
                };
            }
        }
        tx.commit().map_err(e)
    }

    fn expire(&mut self, max_tokens: u64, stale_before: i64) -> Result<Vec<u64>, StoreError> {
        let path = self.path.clone();
        let e = |x| err(&path, x);
        let tx = self.conn.transaction().map_err(e)?;
        let mut removed: Vec<u64> = Vec::new();
        {
            let mut stale =
                tx.prepare("SELECT id FROM bayes_tokens WHERE ham + spam <= 1 AND last_seen_day < ?1").map_err(e)?;
            let ids = stale.query_map([day(stale_before)], |r| r.get::<_, i64>(0)).map_err(e)?;
            for id in ids {
                removed.push(id.map_err(e)? as u64);
            }
            let count: i64 = tx.query_row("SELECT count(*) FROM bayes_tokens", [], |r| r.get(0)).map_err(e)?;
            let over = (count - removed.len() as i64 - max_tokens as i64).max(0);
            if over > 0 {
                // The rarest first, the longest unseen among equals; skip those already chosen.
                let mut rare = tx
                    .prepare(
                        "SELECT id FROM bayes_tokens WHERE NOT (ham + spam <= 1 AND last_seen_day < ?1) \
                         ORDER BY ham + spam, last_seen_day LIMIT ?2",
                    )
                    .map_err(e)?;
                let ids = rare.query_map(params![day(stale_before), over], |r| r.get::<_, i64>(0)).map_err(e)?;
                for id in ids {
                    removed.push(id.map_err(e)? as u64);
                }
            }
            let mut delete = tx.prepare("DELETE FROM bayes_tokens WHERE id = ?1").map_err(e)?;
            for id in &removed {
                delete.execute([*id as i64]).map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(removed)
    }

    fn record_submission(&mut self, s: &Submission) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO submissions (at, correct_side, previous_side, digest, source, channel, reporter, \
                 sender_domain) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    s.at,
                    s.correct_side.as_str(),
                    s.previous_side.map(Side::as_str),
                    &s.digest[..],
                    s.source,
                    s.channel,
                    s.reporter,
                    s.sender_domain
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    fn submissions(&self) -> Result<Vec<Submission>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT at, correct_side, previous_side, digest, source, channel, reporter, sender_domain \
                 FROM submissions ORDER BY id",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                let digest: Vec<u8> = r.get(3)?;
                let mut d = [0u8; 16];
                let n = digest.len().min(16);
                d[..n].copy_from_slice(&digest[..n]);
                Ok(Submission {
                    at: r.get(0)?,
                    correct_side: side_from(&r.get::<_, String>(1)?).unwrap_or(Side::Ham),
                    previous_side: r.get::<_, Option<String>>(2)?.as_deref().and_then(side_from),
                    digest: d,
                    source: r.get(4)?,
                    channel: r.get(5)?,
                    reporter: r.get(6)?,
                    sender_domain: r.get(7)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 =
            self.conn.query_row("SELECT count(*) FROM bayes_tokens", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(n as u64)
    }
}

/// BEGIN IMMEDIATE: takes the write lock now, waiting `busy_timeout` (up to `attempts` times over) for another
/// process that holds it (a CLI command while the gateway runs), instead of failing halfway through a batch.
/// Shared by the store's writer threads (the gateway database's and the reputation store's).
pub(crate) fn begin_immediate(conn: &Connection, attempts: u32) -> rusqlite::Result<()> {
    let mut attempt = 1;
    loop {
        match conn.prepare_cached("BEGIN IMMEDIATE")?.execute([]) {
            Ok(_) => return Ok(()),
            Err(e) if attempt < attempts && is_busy(&e) => attempt += 1,
            Err(e) => return Err(e),
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}
