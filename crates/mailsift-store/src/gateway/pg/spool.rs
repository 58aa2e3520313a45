//! The durable outbound spool on PostgreSQL: the same rows and answers as `gateway/spool.rs` on SQLite.
//!
//! Several nodes run their spool runners against the one table: a claim takes the due rows with
//! `FOR UPDATE SKIP LOCKED`, so two runners claiming at the same moment take different rows, and the lease
//! it writes (the next attempt time) keeps a claimed row from every other runner until it is over, so a
//! node that dies mid-delivery leaves its rows due again for the others.

use postgres::Row;

use super::PgStore;
use crate::gateway::quarantine::StoredRaw;
use crate::gateway::spool::{NewSpoolItem, SpoolCount, SpoolItem};
use crate::StoreError;

const COLUMNS: &str = "id, kind, reference_id, created_ms, mail_from, recipient, outbound, size, attempts, \
                       next_attempt_ms, last_error, state, finished_ms";

fn item(r: &Row) -> SpoolItem {
    SpoolItem {
        id: r.get(0),
        kind: r.get(1),
        reference_id: r.get(2),
        created_ms: r.get(3),
        mail_from: r.get(4),
        recipient: r.get(5),
        outbound: r.get(6),
        size: r.get::<_, i64>(7) as u64,
        attempts: r.get::<_, i32>(8) as u32,
        next_attempt_ms: r.get(9),
        last_error: r.get(10),
        state: r.get(11),
        finished_ms: r.get(12),
    }
}

pub(crate) type Claimed = (SpoolItem, String, u64, Vec<u8>);

impl PgStore {
    /// Puts encoded messages in the spool, due `now_ms`, and sets `settings` in the same transaction.
    pub(crate) fn spool_insert(
        &self,
        items: Vec<(NewSpoolItem, StoredRaw)>,
        settings: Vec<(String, String)>,
        now_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        self.transaction(move |tx| {
            let insert = tx.prepare(
                "INSERT INTO spool (kind, reference_id, created_ms, mail_from, recipient, outbound, encoding, size, \
                 data, attempts, next_attempt_ms, state) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $3, 'pending') RETURNING id",
            )?;
            let mut ids = Vec::with_capacity(items.len());
            for (item, raw) in &items {
                let row = tx.query_one(
                    &insert,
                    &[
                        &item.kind,
                        &item.reference_id,
                        &now_ms,
                        &item.mail_from,
                        &item.recipient,
                        &item.outbound,
                        &raw.encoding,
                        &(raw.size as i64),
                        &raw.data,
                    ],
                )?;
                ids.push(row.get(0));
            }
            for (key, value) in &settings {
                tx.execute(
                    "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    &[key, value],
                )?;
            }
            Ok(ids)
        })
    }

    /// Claims up to `limit` due rows (or just `only`), each leased until `lease_until_ms`.
    pub(crate) fn spool_claim_rows(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
        only: Option<i64>,
    ) -> Result<Vec<Claimed>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.transaction(move |tx| {
            let cols: String = COLUMNS.split(", ").map(|c| format!("s.{c}")).collect::<Vec<_>>().join(", ");
            let rows = tx.query(
                &format!(
                    "WITH due AS (SELECT id, next_attempt_ms AS was FROM spool WHERE state = 'pending' \
                       AND next_attempt_ms <= $1 AND ($3::bigint IS NULL OR id = $3) \
                       ORDER BY next_attempt_ms, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                     UPDATE spool s SET attempts = s.attempts + 1, next_attempt_ms = $2, finished_ms = $2 FROM due WHERE s.id = due.id \
                     RETURNING {cols}, s.encoding, s.data, due.was"
                ),
                &[&now_ms, &lease_until_ms, &only, &limit],
            )?;
            let mut out: Vec<(i64, Claimed)> = rows
                .iter()
                .map(|r| {
                    let it = item(r);
                    let size = it.size;
                    (r.get::<_, i64>(15), (it, r.get::<_, String>(13), size, r.get::<_, Vec<u8>>(14)))
                })
                .collect();
            // As SQLite's: the longest due first.
            out.sort_by_key(|(was, (it, ..))| (*was, it.id));
            let out: Vec<Claimed> = out.into_iter().map(|(_, c)| c).collect();
            Ok(out)
        })
    }

    pub(crate) fn spool_delete(&self, id: i64) -> Result<bool, StoreError> {
        self.call(move |c| Ok(c.execute("DELETE FROM spool WHERE id = $1", &[&id])? == 1))
    }

    pub(crate) fn spool_set_retry(&self, id: i64, next_ms: i64, error: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE spool SET next_attempt_ms = $2, last_error = $3, finished_ms = NULL WHERE id = $1 AND state = 'pending'",
                &[&id, &next_ms, &error],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn spool_set_failed(&self, id: i64, now_ms: i64, error: String) -> Result<(), StoreError> {
        self.call(move |c| {
            c.execute(
                "UPDATE spool SET state = 'failed', finished_ms = $2, last_error = $3, data = ''::bytea, \
                 encoding = 'identity', size = 0 WHERE id = $1",
                &[&id, &now_ms, &error],
            )
            .map(|_| ())
        })
    }

    pub(crate) fn spool_rows(
        &self,
        state: Option<String>,
        kind: Option<String>,
        limit: usize,
    ) -> Result<Vec<SpoolItem>, StoreError> {
        let limit = limit.min(i64::MAX as usize) as i64;
        self.call(move |c| {
            Ok(c.query(
                &format!(
                    "SELECT {COLUMNS} FROM spool WHERE ($1::text IS NULL OR state = $1) \
                     AND ($2::text IS NULL OR kind = $2) ORDER BY id LIMIT $3"
                ),
                &[&state, &kind, &limit],
            )?
            .iter()
            .map(item)
            .collect())
        })
    }

    pub(crate) fn spool_due(&self) -> Result<Option<i64>, StoreError> {
        self.call(|c| Ok(c.query_one("SELECT min(next_attempt_ms) FROM spool WHERE state = 'pending'", &[])?.get(0)))
    }

    pub(crate) fn spool_purge(&self, older_than_ms: i64) -> Result<usize, StoreError> {
        self.call(move |c| {
            Ok(c.execute("DELETE FROM spool WHERE state = 'failed' AND finished_ms < $1", &[&older_than_ms])? as usize)
        })
    }

    pub(crate) fn spool_get(&self, id: i64) -> Result<Option<Claimed>, StoreError> {
        self.call(move |c| {
            Ok(c.query_opt(&format!("SELECT {COLUMNS}, encoding, data FROM spool WHERE id = $1"), &[&id])?.map(|r| {
                let it = item(&r);
                let size = it.size;
                (it, r.get::<_, String>(13), size, r.get::<_, Vec<u8>>(14))
            }))
        })
    }

    pub(crate) fn spool_due_now(&self, now_ms: i64, only: Option<i64>) -> Result<usize, StoreError> {
        self.call(move |c| {
            Ok(c.execute(
                "UPDATE spool SET next_attempt_ms = $1 WHERE state = 'pending' AND ($2::bigint IS NULL OR id = $2) \
                 AND (finished_ms IS NULL OR finished_ms <= $1)",
                &[&now_ms, &only],
            )? as usize)
        })
    }

    pub(crate) fn spool_counts(&self) -> Result<Vec<SpoolCount>, StoreError> {
        self.call(|c| {
            Ok(c.query(
                "SELECT kind, state, count(*), min(created_ms) FROM spool GROUP BY kind, state ORDER BY kind, state",
                &[],
            )?
            .iter()
            .map(|r| SpoolCount {
                kind: r.get(0),
                state: r.get(1),
                count: r.get::<_, i64>(2) as u64,
                oldest_ms: r.get(3),
            })
            .collect())
        })
    }
}
