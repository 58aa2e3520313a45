//! The dashboard's figures, computed from the message log and the quarantine: messages per hour by action, the
//! symbols that fire most, the senders refused most, the quarantine's size. Each is scoped like the searches: a
//! domain list (empty: everything) with the meaning of [`super::LogQuery::domains`].
//!
//! What it is not: metrics for Prometheus (counters kept in memory by the gateway) or the report submissions
//! over time (those live in the classifier store: [`crate::SqliteStore::submissions_per_day`]).

use serde::Serialize;

use super::filter::Filter;
use super::Database;
use crate::StoreError;

/// How many messages ended with one action in one hour.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HourlyCount {
    /// Unix seconds at the start of the hour (UTC).
    pub hour: i64,
    pub action: String,
    pub count: u64,
}

impl Database {
    /// Log entries since `since` (Unix seconds, inclusive), counted by hour and action; by hour, then action.
    /// Hours without messages are absent.
    pub fn stats_hourly(&self, since: i64, domains: &[String]) -> Result<Vec<HourlyCount>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.stats_hourly(since, domains);
        }
        let mut w = Filter::default();
        w.time_range("time", Some(since), None);
        w.log_in_domains(domains);
        let sql = format!(
            "SELECT time - (time % 3600) AS hour, action, count(*) FROM message_log{} \
             GROUP BY hour, action ORDER BY hour, action",
            w.clause()
        );
        self.read_rows(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(w.args(), |r| {
                Ok(HourlyCount { hour: r.get(0)?, action: r.get(1)?, count: r.get::<_, i64>(2)? as u64 })
            })?;
            rows.collect()
        })
    }

    /// The `limit` symbols that added to the score (a positive contribution) of the most log entries since
    /// `since`, with how many entries each: most first, then by name.
    pub fn stats_top_symbols(
        &self,
        since: i64,
        limit: usize,
        domains: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.stats_top_symbols(since, limit, domains);
        }
        let mut w = Filter::default();
        w.time_range("time", Some(since), None);
        w.log_in_domains(domains);
        w.and("s.score > 0");
        let limit = w.arg(limit.min(i64::MAX as usize) as i64);
        // The entries in scope first (the time index), then their symbols through the (log_id, pos) key: CROSS
        // JOIN keeps that order. Left to itself SQLite walks every symbol row ever logged in symbol order to
        // save the GROUP BY's sort (280 ms over 100,000 entries, against 2 ms for a day's).
        let sql = format!(
            "SELECT n.name, count(DISTINCT s.log_id) AS hits \
             FROM message_log CROSS JOIN message_log_symbols s ON s.log_id = message_log.id \
             JOIN symbol_names n ON n.id = s.symbol_id{} \
             GROUP BY s.symbol_id ORDER BY hits DESC, n.name LIMIT {limit}",
            w.clause()
        );
        self.read_rows(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(w.args(), |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
    }

    /// The `limit` senders with the most entries rejected or refused since `since`: keyed by the envelope
    /// sender, or the client address when the sender is empty or absent (entries with neither are not
    /// counted); most first, then by key.
    pub fn stats_top_refused_senders(
        &self,
        since: i64,
        limit: usize,
        domains: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.stats_top_refused_senders(since, limit, domains);
        }
        let mut w = Filter::default();
        w.and("action IN ('reject', 'refused')");
        w.time_range("time", Some(since), None);
        w.log_in_domains(domains);
        let limit = w.arg(limit.min(i64::MAX as usize) as i64);
        let sql = format!(
            "SELECT coalesce(nullif(mail_from, ''), client_ip) AS sender, count(*) AS hits FROM message_log{} \
             GROUP BY sender HAVING sender IS NOT NULL ORDER BY hits DESC, sender LIMIT {limit}",
            w.clause()
        );
        self.read_rows(|c| {
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(w.args(), |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
            rows.collect()
        })
    }

    /// How many quarantine rows (one per recipient) there are, only those still held when `held_only`; scoped
    /// by the recipient's domain.
    pub fn quarantine_count(&self, held_only: bool, domains: &[String]) -> Result<u64, StoreError> {
        if let Some(pg) = &self.pg {
            return pg.quarantine_count(held_only, domains);
        }
        let mut w = Filter::default();
        if held_only {
            w.and("released_at IS NULL");
        }
        w.address_in_domains("recipient", domains);
        let sql = format!("SELECT count(*) FROM quarantine{}", w.clause());
        self.read_rows(|c| c.query_row(&sql, w.args(), |r| r.get::<_, i64>(0)).map(|n| n as u64))
    }
}
