//! Leases: a job that one process, or one node of several on PostgreSQL, must do alone (the quarantine
//! digest's schedule) is done by whoever holds its lease. A holder renews its lease well before it runs out;
//! a holder that dies stops renewing, and when the lease has run out the next one to ask takes it over. Taking
//! and renewing is one statement (an upsert that only moves a lease that is free, expired or already the
//! asker's), so two askers at the same moment never both hold it. Times are the askers' clocks: nodes keep
//! them in step (NTP), and a lease is long compared with any skew.

use rusqlite::params;

use super::Database;
use crate::StoreError;

impl Database {
    /// Takes or renews lease `name` for `holder` until `until_ms` (Unix ms), if nobody else holds it at
    /// `now_ms`. Returns whether `holder` holds it now.
    pub fn lease_acquire(&self, name: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        if let Some(pg) = &self.pg {
            return pg.transaction(move |tx| {
                Ok(tx
                    .query_opt(
                        "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $4) \
                         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                         WHERE leases.holder = excluded.holder OR leases.until_ms <= $3 RETURNING holder",
                        &[&name, &holder, &now_ms, &until_ms],
                    )?
                    .is_some())
            });
        }
        self.write(move |c| {
            let n = c.execute(
                "INSERT INTO leases (name, holder, until_ms) VALUES (?1, ?2, ?4) \
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
                 WHERE leases.holder = excluded.holder OR leases.until_ms <= ?3",
                params![name, holder, now_ms, until_ms],
            )?;
            Ok(n == 1)
        })
    }

    /// Gives lease `name` up if `holder` holds it (at a clean stop, so another takes over at once).
    pub fn lease_release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        if let Some(pg) = &self.pg {
            return pg.call(move |c| {
                c.execute("DELETE FROM leases WHERE name = $1 AND holder = $2", &[&name, &holder]).map(|_| ())
            });
        }
        self.write(move |c| {
            c.execute("DELETE FROM leases WHERE name = ?1 AND holder = ?2", params![name, holder])?;
            Ok(())
        })
    }
}
