//! The classifier's token store on PostgreSQL, shared by every node (`[store] backend = "postgres"`).
//!
//! Each node scans with its own in-memory model, as on SQLite; what the nodes share is what they learn.
//! A node's save is a *difference*, added to what is stored, never an overwrite: Bayes counts by this
//! node's change since its last save ([`Changes::base`]), the linear weights by this node's change since it
//! last saw each chunk (a copy kept here), the totals likewise. Two nodes learning at once therefore both
//! count, as two threads of one process would.
//!
//! Every save takes the next number from `classifier_version` (a one-row table, so saves from all nodes
//! are numbered in the order they commit: the row lock is held until COMMIT) and stamps the rows it wrote
//! with it. A node pulls every row stamped after the last number it saw ([`TokenStore::pull`], every second
//! from the gateway): one cheap read when nothing changed. A false-positive report at node A is in node B's
//! model within a second or so.
//!
//! Tokens are never deleted by a save: a count that falls to zero stays as a zero row, so the other nodes
//! learn that the token is gone. Expiry zeroes the tokens it drops (stamped like a save) and deletes zero
//! rows a day later, when every running node has long pulled them.

use mailsift_engine::classify::linear::{CHUNK, SIZE};
use mailsift_engine::classify::{Model, Side};
use rustc_hash::FxHashMap;

use super::PgStore;
use crate::{Changes, Fresh, StoreError, Submission, TokenStore, Totals};

/// Tokens written per statement: one array per column, bounded so a bulk training is many moderate
/// statements rather than one enormous one.
const BATCH: usize = 50_000;

/// The classifier's rows in the shared database, with what this node last saw of them.
pub struct PgTokenStore {
    pg: PgStore,
    /// What this node last saw (set by `load`, which takes `&self`).
    synced: std::sync::Mutex<Synced>,
    /// What the last save wrote, as now stored, for [`TokenStore::take_saved`].
    saved: Fresh,
}

struct Synced {
    /// The last save number this node has pulled or loaded.
    seen: i64,
    /// The linear weights as this node last read or wrote them: a save sends `model - weights` per chunk.
    weights: Vec<f32>,
}

impl std::fmt::Debug for PgTokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokenStore").field("target", &self.pg.target()).finish_non_exhaustive()
    }
}

fn day(unix: i64) -> i32 {
    unix.div_euclid(86_400) as i32
}

fn side_from(s: &str) -> Option<Side> {
    match s {
        "ham" => Some(Side::Ham),
        "spam" => Some(Side::Spam),
        _ => None,
    }
}

fn weights_from(blob: &[u8]) -> Option<Box<[f32]>> {
    (blob.len() == CHUNK * 4)
        .then(|| blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

fn weights_blob(w: &[f32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn count(v: i64) -> u32 {
    v.clamp(0, u32::MAX as i64) as u32
}

fn totals_from(rows: &[postgres::Row]) -> Totals {
    let mut t = Totals::default();
    for r in rows {
        let name: &str = r.get(0);
        let v: f64 = r.get(1);
        match name {
            "ham" => t.ham = v.max(0.0) as u64,
            "spam" => t.spam = v.max(0.0) as u64,
            "linear_bias" => t.bias = v as f32,
            "linear_updates" => t.updates = v.max(0.0) as u64,
            _ => {}
        }
    }
    t.combination = crate::combination_from(rows.iter().map(|r| (r.get::<_, &str>(0), r.get::<_, f64>(1))));
    t
}

impl PgTokenStore {
    /// The classifier's store in `pg`'s database (its schema came with the store's).
    pub fn open(pg: PgStore) -> PgTokenStore {
        let synced = Synced { seen: 0, weights: vec![0.0; SIZE] };
        PgTokenStore { pg, synced: std::sync::Mutex::new(synced), saved: Fresh::default() }
    }

    fn synced(&self) -> std::sync::MutexGuard<'_, Synced> {
        self.synced.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records chunks as this node now has them, and the stamp seen.
    fn note(&self, fresh: &Fresh, seen: Option<i64>) {
        let mut synced = self.synced();
        for (i, w) in &fresh.chunks {
            synced.weights[i * CHUNK..(i + 1) * CHUNK].copy_from_slice(w);
        }
        if let Some(seen) = seen {
            synced.seen = synced.seen.max(seen);
        }
    }

    pub fn target(&self) -> &str {
        self.pg.target()
    }

    /// As `SqliteStore::submissions_per_day`: (Unix start of the day, side, count) since `since`.
    pub fn submissions_per_day(&self, since: i64) -> Result<Vec<(i64, Side, u64)>, StoreError> {
        let rows = self.pg.call(move |c| {
            c.query(
                "SELECT at - (at % 86400) AS day, correct_side, count(*) FROM classifier_submissions \
                 WHERE at >= $1 GROUP BY day, correct_side ORDER BY day, correct_side",
                &[&since],
            )
        })?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((r.get::<_, i64>(0), side_from(r.get(1))?, r.get::<_, i64>(2) as u64)))
            .collect())
    }

    /// Rows stamped after `after`: (tokens, chunks, totals if any changed, the newest stamp).
    fn changed_since(&self, after: i64) -> Result<(Fresh, i64), StoreError> {
        self.pg.transaction(move |tx| {
            tx.batch_execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")?;
            let now: i64 = tx.query_one("SELECT seq FROM classifier_version WHERE id = 1", &[])?.get(0);
            let mut fresh = Fresh::default();
            if now <= after {
                return Ok((fresh, now));
            }
            for r in tx.query("SELECT id, ham, spam FROM classifier_tokens WHERE seq > $1", &[&after])? {
                fresh.tokens.push((r.get::<_, i64>(0) as u64, [count(r.get(1)), count(r.get(2))]));
            }
            for r in tx.query("SELECT chunk, weights FROM classifier_chunks WHERE seq > $1", &[&after])? {
                let chunk: i32 = r.get(0);
                if let Some(w) = weights_from(r.get(1)) {
                    fresh.chunks.push((chunk as usize, w));
                }
            }
            let totals = tx.query("SELECT name, value FROM classifier_totals WHERE seq > $1", &[&after])?;
            if !totals.is_empty() {
                let all = tx.query("SELECT name, value FROM classifier_totals", &[])?;
                fresh.totals = Some(totals_from(&all));
            }
            Ok((fresh, now))
        })
    }
}

impl TokenStore for PgTokenStore {
    fn load(&self) -> Result<Model, StoreError> {
        // Everything there is, read as of one moment, which the next pull starts from.
        let (fresh, seen) = self.changed_since(-1)?;
        self.note(&fresh, Some(seen));
        let mut model = Model::default();
        fresh.apply(&mut model);
        Ok(model)
    }

    fn trained_side(&self, digest: &[u8; 16]) -> Result<Option<Side>, StoreError> {
        let digest = digest.to_vec();
        let side: Option<String> = self.pg.call(move |c| {
            Ok(c.query_opt("SELECT side FROM classifier_trained WHERE digest = $1", &[&digest])?.map(|r| r.get(0)))
        })?;
        Ok(side.as_deref().and_then(side_from))
    }

    fn save(&mut self, model: &Model, changes: &Changes, now: i64) -> Result<(), StoreError> {
        // This node's differences: tokens against their counts at the last save, chunks against the copy.
        let mut ids = Vec::with_capacity(changes.tokens.len());
        let mut d_ham = Vec::with_capacity(changes.tokens.len());
        let mut d_spam = Vec::with_capacity(changes.tokens.len());
        let mut sorted: Vec<u64> = changes.tokens.iter().copied().collect();
        sorted.sort_unstable();
        for id in sorted {
            let [h, s] = model.bayes.tokens.get(&id).copied().unwrap_or([0, 0]);
            let [bh, bs] = changes.base.get(&id).copied().unwrap_or([0, 0]);
            let (dh, ds) = (h as i64 - bh as i64, s as i64 - bs as i64);
            if dh != 0 || ds != 0 {
                ids.push(id as i64);
                d_ham.push(dh);
                d_spam.push(ds);
            }
        }
        let mut chunks: Vec<(i32, Vec<f32>)> = Vec::new();
        {
            let synced = self.synced();
            for (i, dirty) in model.linear.dirty.iter().enumerate() {
                if *dirty {
                    let range = i * CHUNK..(i + 1) * CHUNK;
                    let delta =
                        model.linear.weights[range.clone()].iter().zip(&synced.weights[range]).map(|(m, s)| m - s);
                    chunks.push((i as i32, delta.collect()));
                }
            }
        }
        let base = changes.base_totals.unwrap_or_else(|| Totals::of(model));
        let now_totals = Totals::of(model);
        let d_totals = [
            ("ham", now_totals.ham as f64 - base.ham as f64),
            ("spam", now_totals.spam as f64 - base.spam as f64),
            ("linear_bias", now_totals.bias as f64 - base.bias as f64),
            ("linear_updates", now_totals.updates as f64 - base.updates as f64),
        ];
        // A new fit replaces the stored one whole (see `Totals::combination`).
        let combination: Vec<(&'static str, f64)> = match model.combination.filter(|_| changes.combination) {
            Some(c) => crate::combination_totals(&c).to_vec(),
            None => Vec::new(),
        };
        let trained: Vec<(Vec<u8>, Option<&'static str>)> =
            changes.trained.iter().map(|(d, s)| (d.to_vec(), s.map(Side::as_str))).collect();
        let today = day(now);

        let (fresh, _) = self.pg.transaction(move |tx| {
            // The row lock orders this save after every save that committed before it, on any node.
            let seq: i64 =
                tx.query_one("UPDATE classifier_version SET seq = seq + 1 WHERE id = 1 RETURNING seq", &[])?.get(0);
            let mut fresh = Fresh::default();
            for at in (0..ids.len()).step_by(BATCH) {
                let end = (at + BATCH).min(ids.len());
                // New tokens are inserted with this node's counts; known ones get them added. A token new
                // here with a negative difference (unlearning what expiry already dropped) is set to zero
                // by the clamp below.
                let rows = tx.query(
                    "INSERT INTO classifier_tokens AS t (id, ham, spam, last_seen_day, seq) \
                     SELECT id, h, s, $4, $5 FROM unnest($1::int8[], $2::int8[], $3::int8[]) AS d(id, h, s) \
                     ON CONFLICT (id) DO UPDATE SET \
                       ham = greatest(t.ham + excluded.ham, 0), spam = greatest(t.spam + excluded.spam, 0), \
                       last_seen_day = excluded.last_seen_day, seq = excluded.seq \
                     RETURNING id, ham, spam",
                    &[&&ids[at..end], &&d_ham[at..end], &&d_spam[at..end], &today, &seq],
                )?;
                for r in rows {
                    fresh.tokens.push((r.get::<_, i64>(0) as u64, [count(r.get(1)), count(r.get(2))]));
                }
            }
            tx.execute(
                "UPDATE classifier_tokens SET ham = greatest(ham, 0), spam = greatest(spam, 0) \
                 WHERE seq = $1 AND (ham < 0 OR spam < 0)",
                &[&seq],
            )?;
            if !chunks.is_empty() {
                let wanted: Vec<i32> = chunks.iter().map(|(i, _)| *i).collect();
                let mut stored: FxHashMap<i32, Box<[f32]>> = FxHashMap::default();
                for r in tx.query(
                    "SELECT chunk, weights FROM classifier_chunks WHERE chunk = ANY($1) FOR UPDATE",
                    &[&wanted],
                )? {
                    if let Some(w) = weights_from(r.get(1)) {
                        stored.insert(r.get(0), w);
                    }
                }
                let upsert = tx.prepare(
                    "INSERT INTO classifier_chunks (chunk, weights, seq) VALUES ($1, $2, $3) \
                     ON CONFLICT (chunk) DO UPDATE SET weights = excluded.weights, seq = excluded.seq",
                )?;
                for (i, delta) in &chunks {
                    let mut w = stored.remove(i).unwrap_or_else(|| vec![0.0; CHUNK].into_boxed_slice());
                    for (x, d) in w.iter_mut().zip(delta) {
                        *x += d;
                    }
                    tx.execute(&upsert, &[i, &weights_blob(&w), &seq])?;
                    fresh.chunks.push((*i as usize, w));
                }
            }
            for (name, d) in d_totals {
                tx.execute(
                    "UPDATE classifier_totals SET value = value + $2, seq = $3 WHERE name = $1",
                    &[&name, &d, &seq],
                )?;
            }
            for (name, v) in &combination {
                tx.execute(
                    "INSERT INTO classifier_totals (name, value, seq) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET value = excluded.value, seq = excluded.seq",
                    &[name, v, &seq],
                )?;
            }
            fresh.totals = Some(totals_from(&tx.query("SELECT name, value FROM classifier_totals", &[])?));
            let learned = tx.prepare(
                "INSERT INTO classifier_trained (digest, side, at) VALUES ($1, $2, $3) \
                 ON CONFLICT (digest) DO UPDATE SET side = excluded.side, at = excluded.at",
            )?;
            let forgotten = tx.prepare("DELETE FROM classifier_trained WHERE digest = $1")?;
            for (digest, side) in &trained {
                match side {
                    Some(side) => tx.execute(&learned, &[digest, side, &now])?,
                    None => tx.execute(&forgotten, &[digest])?,
                };
            }
            Ok((fresh, seq))
        })?;
        // Not `seen`: saves of other nodes stamped before this one may not have been pulled yet.
        self.note(&fresh, None);
        self.saved = fresh;
        Ok(())
    }

    fn expire(&mut self, max_tokens: u64, stale_before: i64) -> Result<Vec<u64>, StoreError> {
        let stale_day = day(stale_before);
        let today = day(crate::gateway::now_ms() / 1000);
        let max = max_tokens as i64;
        let removed: Vec<i64> = self.pg.transaction(move |tx| {
            let seq: i64 =
                tx.query_one("UPDATE classifier_version SET seq = seq + 1 WHERE id = 1 RETURNING seq", &[])?.get(0);
            // Zero rows every node has long pulled (see the module's text) go for good.
            tx.execute(
                "DELETE FROM classifier_tokens WHERE ham = 0 AND spam = 0 AND last_seen_day < $1",
                &[&(today - 1)],
            )?;
            let mut ids: Vec<i64> = tx
                .query("SELECT id FROM classifier_tokens WHERE ham + spam = 1 AND last_seen_day < $1", &[&stale_day])?
                .iter()
                .map(|r| r.get(0))
                .collect();
            let live: i64 =
                tx.query_one("SELECT count(*) FROM classifier_tokens WHERE ham > 0 OR spam > 0", &[])?.get(0);
            let over = (live - ids.len() as i64 - max).max(0);
            if over > 0 {
                let rare = tx.query(
                    "SELECT id FROM classifier_tokens WHERE (ham > 0 OR spam > 0) \
                     AND NOT (ham + spam = 1 AND last_seen_day < $1) ORDER BY ham + spam, last_seen_day LIMIT $2",
                    &[&stale_day, &over],
                )?;
                ids.extend(rare.iter().map(|r| r.get::<_, i64>(0)));
            }
            for at in (0..ids.len()).step_by(BATCH) {
                let end = (at + BATCH).min(ids.len());
                tx.execute(
                    "UPDATE classifier_tokens SET ham = 0, spam = 0, last_seen_day = $2, seq = $3 \
                     WHERE id = ANY($1)",
                    &[&&ids[at..end], &today, &seq],
                )?;
            }
            Ok(ids)
        })?;
        Ok(removed.into_iter().map(|id| id as u64).collect())
    }

    fn record_submission(&mut self, s: &Submission) -> Result<(), StoreError> {
        let s = s.clone();
        self.pg.call(move |c| {
            c.execute(
                "INSERT INTO classifier_submissions (at, correct_side, previous_side, digest, source, channel, \
                 reporter, sender_domain) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &s.at,
                    &s.correct_side.as_str(),
                    &s.previous_side.map(Side::as_str),
                    &s.digest.to_vec(),
                    &s.source,
                    &s.channel,
                    &s.reporter,
                    &s.sender_domain,
                ],
            )
        })?;
        Ok(())
    }

    fn submissions(&self) -> Result<Vec<Submission>, StoreError> {
        let rows = self.pg.call(|c| {
            c.query(
                "SELECT at, correct_side, previous_side, digest, source, channel, reporter, sender_domain \
                 FROM classifier_submissions ORDER BY id",
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| {
                let digest: Vec<u8> = r.get(3);
                let mut d = [0u8; 16];
                let n = digest.len().min(16);
                d[..n].copy_from_slice(&digest[..n]);
                Submission {
                    at: r.get(0),
                    correct_side: side_from(r.get(1)).unwrap_or(Side::Ham),
                    previous_side: r.get::<_, Option<&str>>(2).and_then(side_from),
                    digest: d,
                    source: r.get(4),
                    channel: r.get(5),
                    reporter: r.get(6),
                    sender_domain: r.get(7),
                }
            })
            .collect())
    }

    fn token_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.pg.call(|c| {
            Ok(c.query_one("SELECT count(*) FROM classifier_tokens WHERE ham > 0 OR spam > 0", &[])?.get(0))
        })?;
        Ok(n as u64)
    }

    fn merges(&self) -> bool {
        true
    }

    fn take_saved(&mut self) -> Fresh {
        std::mem::take(&mut self.saved)
    }

    fn pull(&mut self) -> Result<Fresh, StoreError> {
        let seen = self.synced().seen;
        let (fresh, now) = self.changed_since(seen)?;
        self.note(&fresh, Some(now));
        Ok(fresh)
    }
}
