//! The dashboard's figures on PostgreSQL: the same answers as `gateway/stats.rs` on SQLite.

use super::filter::Filter;
use super::PgStore;
use crate::gateway::HourlyCount;
use crate::StoreError;

impl PgStore {
    pub(crate) fn stats_hourly(&self, since: i64, domains: &[String]) -> Result<Vec<HourlyCount>, StoreError> {
        let mut w = Filter::default();
        w.time_range("time", Some(since), None);
        w.log_in_domains(domains);
        let sql = format!(
            "SELECT time - (time % 3600) AS hour, action, count(*) FROM message_log{} \
             GROUP BY hour, action ORDER BY hour, action",
            w.clause()
        );
        self.call(move |c| {
            Ok(c.query(&sql, &w.params())?
                .iter()
                .map(|r| HourlyCount { hour: r.get(0), action: r.get(1), count: r.get::<_, i64>(2) as u64 })
                .collect())
        })
    }

    pub(crate) fn stats_top_symbols(
        &self,
        since: i64,
        limit: usize,
        domains: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut w = Filter::default();
        w.time_range("time", Some(since), None);
        w.log_in_domains(domains);
        w.and("s.score > 0".into());
        let limit = w.arg(limit.min(i64::MAX as usize) as i64);
        let sql = format!(
            "SELECT s.name, count(DISTINCT message_log.id) AS hits \
             FROM message_log CROSS JOIN LATERAL unnest(symbol_names, symbol_scores) AS s(name, score){} \
             GROUP BY s.name ORDER BY hits DESC, s.name LIMIT {limit}",
            w.clause()
        );
        self.call(move |c| {
            Ok(c.query(&sql, &w.params())?.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
        })
    }

    pub(crate) fn stats_top_refused_senders(
        &self,
        since: i64,
        limit: usize,
        domains: &[String],
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut w = Filter::default();
        w.and("action IN ('reject', 'refused')".into());
        w.time_range("time", Some(since), None);
        w.log_in_domains(domains);
        let limit = w.arg(limit.min(i64::MAX as usize) as i64);
        let sql = format!(
            "SELECT coalesce(nullif(mail_from, ''), client_ip) AS sender, count(*) AS hits FROM message_log{} \
             GROUP BY sender HAVING coalesce(nullif(mail_from, ''), client_ip) IS NOT NULL \
             ORDER BY hits DESC, sender LIMIT {limit}",
            w.clause()
        );
        self.call(move |c| {
            Ok(c.query(&sql, &w.params())?.iter().map(|r| (r.get(0), r.get::<_, i64>(1) as u64)).collect())
        })
    }

    pub(crate) fn quarantine_count(&self, held_only: bool, domains: &[String]) -> Result<u64, StoreError> {
        let mut w = Filter::default();
        if held_only {
            w.and("released_at IS NULL".into());
        }
        w.address_in_domains("recipient", domains);
        let sql = format!("SELECT count(*) FROM quarantine{}", w.clause());
        self.call(move |c| Ok(c.query_one(&sql, &w.params())?.get::<_, i64>(0) as u64))
    }
}
