//! The quarantine on PostgreSQL: the same rows and answers as `gateway/quarantine.rs` on SQLite.
//!
//! Releasing is a claim: `UPDATE ... WHERE released_at IS NULL`, one statement, so of two nodes asked to
//! release the same row at the same moment exactly one is told to deliver it (PostgreSQL's row lock makes
//! the second wait for the first's commit, then find the row released).

use postgres::Row;

use super::PgStore;
use crate::gateway::quarantine::{decode, encode};
use crate::gateway::{NewQuarantine, QuarantineItem, QuarantineQuery};
use crate::StoreError;

const COLUMNS: &str = "id, reference_id, time, recipient, mail_from, from_header, subject, score, reason, size, \
                       direction, released_at";

fn item(r: &Row) -> QuarantineItem {
    QuarantineItem {
        id: r.get(0),
        reference_id: r.get(1),
        time: r.get(2),
        recipient: r.get(3),
        mail_from: r.get(4),
        from_header: r.get(5),
        subject: r.get(6),
        score: r.get::<_, Option<f64>>(7).unwrap_or(f64::NAN),
        reason: r.get(8),
        size: r.get::<_, i64>(9) as u64,
        direction: r.get(10),
        released_at: r.get(11),
    }
}

/// Rows deleted per transaction by a purge.
const PURGE_CHUNK: i64 = 5_000;

impl PgStore {
    /// Quarantines a message for each of its recipients (compressed here, stored once); returns the rows'
    /// ids in recipient order once committed.
    pub fn quarantine_put(&self, q: &NewQuarantine, raw: &[u8]) -> Result<Vec<i64>, StoreError> {
        let invalid = |reason: String| StoreError::Invalid { path: self.target().to_string(), reason };
        if q.recipients.is_empty() {
            return Err(invalid(format!("quarantine of {}: no recipients", q.reference_id)));
        }
        let stored = encode(raw)
            .map_err(|e| invalid(format!("quarantine of {}: cannot compress the message: {e}", q.reference_id)))?;
        let q = q.clone();
        self.transaction(move |tx| {
            let raw_id: i64 = tx
                .query_one(
                    "INSERT INTO quarantine_raw (encoding, size, data) VALUES ($1, $2, $3) RETURNING id",
                    &[&stored.encoding, &(stored.size as i64), &stored.data],
                )?
                .get(0);
            let insert = tx.prepare(
                "INSERT INTO quarantine (raw_id, reference_id, time, recipient, mail_from, from_header, subject, \
                 score, reason, size, direction) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            )?;
            let score = Some(q.score).filter(|s| !s.is_nan());
            let mut ids = Vec::with_capacity(q.recipients.len());
            for recipient in &q.recipients {
                let row = tx.query_one(
                    &insert,
                    &[
                        &raw_id,
                        &q.reference_id,
                        &q.time,
                        recipient,
                        &q.mail_from,
                        &q.from_header,
                        &q.subject,
                        &score,
                        &q.reason,
                        &(q.size as i64),
                        &q.direction,
                    ],
                )?;
                ids.push(row.get(0));
            }
            Ok(ids)
        })
    }

    pub fn quarantine_get(&self, id: i64) -> Result<Option<QuarantineItem>, StoreError> {
        self.call(move |c| {
            Ok(c.query_opt(&format!("SELECT {COLUMNS} FROM quarantine WHERE id = $1"), &[&id])?.map(|r| item(&r)))
        })
    }

    /// The raw message of row `id`, byte for byte as it was put.
    pub fn quarantine_raw(&self, id: i64) -> Result<Option<Vec<u8>>, StoreError> {
        let stored = self.call(move |c| {
            Ok(c.query_opt(
                "SELECT r.encoding, r.size, r.data FROM quarantine q JOIN quarantine_raw r ON r.id = q.raw_id \
                 WHERE q.id = $1",
                &[&id],
            )?
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1) as u64, r.get::<_, Vec<u8>>(2))))
        })?;
        let Some((encoding, size, data)) = stored else { return Ok(None) };
        decode(&encoding, size, data).map(Some).map_err(|reason| StoreError::Invalid {
            path: self.target().to_string(),
            reason: format!("quarantined message {id}: {reason}"),
        })
    }

    /// The items matching `q`, newest first.
    pub fn quarantine_list(&self, q: &QuarantineQuery) -> Result<Vec<QuarantineItem>, StoreError> {
        let mut w = super::filter::Filter::default();
        w.contains(&["recipient"], &q.recipient);
        w.contains(&["mail_from", "from_header"], &q.sender);
        w.contains(&["subject"], &q.subject);
        w.time_range("time", q.since, q.until);
        if !q.include_released {
            w.and("released_at IS NULL".into());
        }
        w.address_in_domains("recipient", &q.domains);
        w.address_is("recipient", &q.recipient_exact);
        if let Some(min_id) = q.min_id {
            let a = w.arg(min_id);
            w.and(format!("id > {a}"));
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM quarantine{} ORDER BY time DESC, id DESC{}",
            w.clause(),
            w.page(q.limit, q.offset)
        );
        self.call(move |c| Ok(c.query(&sql, &w.params())?.iter().map(item).collect()))
    }

    /// Marks row `id` released at `now` if it is held: `true` means this caller (of every node) won the row
    /// and must deliver it.
    pub fn quarantine_claim_release(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        // A transaction, not a bare statement: retried only if it never reached COMMIT, so a claim that
        // was in fact won can never come back as lost (and the message stay undelivered).
        self.transaction(move |tx| {
            Ok(tx.execute(
                "UPDATE quarantine SET released_at = $2 WHERE id = $1 AND released_at IS NULL",
                &[&id, &now],
            )? == 1)
        })
    }

    /// Puts a claimed row back on hold, after its delivery failed.
    pub fn quarantine_unclaim_release(&self, id: i64) -> Result<(), StoreError> {
        self.call(move |c| c.execute("UPDATE quarantine SET released_at = NULL WHERE id = $1", &[&id]).map(|_| ()))
    }

    /// Deletes row `id`, and the message when no other recipient's row shares it; `false` if absent.
    pub fn quarantine_delete(&self, id: i64) -> Result<bool, StoreError> {
        self.transaction(move |tx| {
            let Some(row) = tx.query_opt("DELETE FROM quarantine WHERE id = $1 RETURNING raw_id", &[&id])? else {
                return Ok(false);
            };
            let raw_id: i64 = row.get(0);
            tx.execute(
                "DELETE FROM quarantine_raw WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM quarantine WHERE raw_id = $1)",
                &[&raw_id],
            )?;
            Ok(true)
        })
    }

    /// Deletes the rows older than `older_than` (Unix seconds) in chunks, then the messages no row refers
    /// to; returns how many rows.
    pub fn quarantine_purge(&self, older_than: i64) -> Result<usize, StoreError> {
        let mut total = 0;
        loop {
            let n = self.transaction(move |tx| {
                let rows = tx.query(
                    "WITH gone AS (DELETE FROM quarantine WHERE id IN \
                         (SELECT id FROM quarantine WHERE time < $1 LIMIT $2) RETURNING raw_id) \
                     SELECT raw_id FROM gone",
                    &[&older_than, &PURGE_CHUNK],
                )?;
                let mut raw_ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                raw_ids.sort_unstable();
                raw_ids.dedup();
                tx.execute(
                    "DELETE FROM quarantine_raw r WHERE r.id = ANY($1) \
                     AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.raw_id = r.id)",
                    &[&raw_ids],
                )?;
                Ok(rows.len())
            })?;
            total += n;
            if (n as i64) < PURGE_CHUNK {
                break;
            }
        }
        Ok(total)
    }
}
