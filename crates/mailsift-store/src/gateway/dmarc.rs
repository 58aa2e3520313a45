//! DMARC aggregate reports (RFC 7489 §7.2) in the gateway database: what we saw of other domains' mail,
//! counted per reporting period (`dmarc_rows`), and the rows of the reports others sent us about our own
//! domains (`dmarc_received`).
//!
//! Collecting costs a message nothing it waits for: the row is a lazy job on the writer thread's queue (an
//! upsert that adds one to the count of its period and result set), committed with the log rows.
//!
//! Not on PostgreSQL yet: every call there answers a clear error instead of wrong data.

use std::path::Path;

use rusqlite::{params, Connection};

use super::writer::{Command, Job};
use super::Database;
use crate::StoreError;

/// What one judged message adds to a reporting period: the identifiers and results a report row is keyed
/// by. `auth` and `policy` are JSON written by the gateway (the DKIM and SPF results; the record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DmarcSeen {
    /// The period, Unix seconds: `[period_begin, period_end)`.
    pub period_begin: i64,
    pub period_end: i64,
    /// The domain whose policy applied (the organisational domain's when the From domain has none).
    pub domain: String,
    pub source_ip: String,
    pub header_from: String,
    pub envelope_from: String,
    /// `none`, `quarantine` or `reject`: what DMARC asked for this message.
    pub disposition: String,
    /// DMARC's aligned DKIM and SPF results: `pass` or `fail`.
    pub dkim: String,
    pub spf: String,
    pub auth: String,
    pub policy: String,
}

/// A stored row and how many messages it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcCounted {
    pub seen: DmarcSeen,
    pub count: u64,
}

/// One row of a report received for one of our domains.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DmarcReceivedRow {
    /// Who reported (the report's `org_name`).
    pub reporter: String,
    pub report_id: String,
    pub begin: i64,
    pub end: i64,
    /// Our domain (the report's `policy_published/domain`).
    pub domain: String,
    pub source_ip: String,
    pub count: u64,
    pub disposition: String,
    /// DMARC's aligned results as the reporter evaluated them: `pass`, `fail` or empty.
    pub dkim: String,
    pub spf: String,
    pub header_from: String,
    /// The raw results, `domain:result` joined with spaces.
    pub dkim_results: String,
    pub spf_results: String,
}

/// What the received reports say about one source of mail in one of our domains' names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DmarcSourceSummary {
    pub domain: String,
    pub source_ip: String,
    /// Messages reported, and of those how many passed DMARC (aligned DKIM or SPF), aligned DKIM, aligned SPF.
    pub messages: u64,
    pub dmarc_pass: u64,
    pub dkim_pass: u64,
    pub spf_pass: u64,
    /// Distinct reporters and days (of the reports' periods) that saw it.
    pub reporters: u64,
    pub days: u64,
    /// The earliest begin and latest end of the reports, Unix seconds.
    pub first: i64,
    pub last: i64,
}

const NOT_ON_PG: &str = "DMARC aggregate reports are not supported on PostgreSQL yet";

impl Database {
    fn dmarc_pg_check(&self) -> Result<(), StoreError> {
        if self.pg.is_some() {
            return Err(self.invalid(NOT_ON_PG.into()));
        }
        Ok(())
    }

    /// Counts one message in its period: queued, returns at once (a lazy job that reports its own failure).
    pub fn dmarc_note(&self, seen: DmarcSeen) -> Result<(), StoreError> {
        self.dmarc_pg_check()?;
        self.send(Command::Lazy(Box::new(Note { seen, failed: None })))
    }

    /// Every counted row of the periods that ended at or before `now` (Unix seconds), oldest first.
    pub fn dmarc_due(&self, now: i64) -> Result<Vec<DmarcCounted>, StoreError> {
        self.dmarc_pg_check()?;
        self.read_rows(move |c| {
            let mut q = c.prepare(
                "SELECT period_begin, period_end, domain, source_ip, header_from, envelope_from, disposition, dkim, \
                 spf, auth, policy, count FROM dmarc_rows WHERE period_end <= ?1 \
                 ORDER BY period_begin, domain, source_ip, header_from, envelope_from",
            )?;
            let rows = q.query_map([now], |r| {
                Ok(DmarcCounted {
                    seen: DmarcSeen {
                        period_begin: r.get(0)?,
                        period_end: r.get(1)?,
                        domain: r.get(2)?,
                        source_ip: r.get(3)?,
                        header_from: r.get(4)?,
                        envelope_from: r.get(5)?,
                        disposition: r.get(6)?,
                        dkim: r.get(7)?,
                        spf: r.get(8)?,
                        auth: r.get(9)?,
                        policy: r.get(10)?,
                    },
                    count: r.get::<_, i64>(11)?.max(0) as u64,
                })
            })?;
            rows.collect()
        })
    }

    /// Forgets the rows of `domain`'s period that began at `period_begin` (reported, or given up on).
    pub fn dmarc_done(&self, domain: &str, period_begin: i64) -> Result<usize, StoreError> {
        self.dmarc_pg_check()?;
        let domain = domain.to_string();
        self.write(move |c| {
            c.execute("DELETE FROM dmarc_rows WHERE domain = ?1 AND period_begin = ?2", params![domain, period_begin])
        })
    }

    /// Stores the rows of one received report (all from one reporter and report id), unless that report was
    /// stored before. Returns how many rows were stored.
    pub fn dmarc_received_put(&self, rows: Vec<DmarcReceivedRow>, now: i64) -> Result<usize, StoreError> {
        self.dmarc_pg_check()?;
        let Some(first) = rows.first() else { return Ok(0) };
        let (reporter, report_id) = (first.reporter.clone(), first.report_id.clone());
        self.write(move |c| {
            let seen: bool = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM dmarc_received WHERE reporter = ?1 AND report_id = ?2)")?
                .query_row(params![reporter, report_id], |r| r.get(0))?;
            if seen {
                return Ok(0);
            }
            let mut insert = c.prepare_cached(
                "INSERT INTO dmarc_received (received, reporter, report_id, begin, end, domain, source_ip, count, \
                 disposition, dkim, spf, header_from, dkim_results, spf_results) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for r in &rows {
                insert.execute(params![
                    now,
                    r.reporter,
                    r.report_id,
                    r.begin,
                    r.end,
                    r.domain,
                    r.source_ip,
                    r.count.min(i64::MAX as u64) as i64,
                    r.disposition,
                    r.dkim,
                    r.spf,
                    r.header_from,
                    r.dkim_results,
                    r.spf_results
                ])?;
            }
            Ok(rows.len())
        })
    }

    /// Per domain and source IP, what the reports whose period ended after `since` say (most messages
    /// first); `domain` narrows it to one of our domains.
    pub fn dmarc_received_summary(
        &self,
        since: i64,
        domain: Option<&str>,
    ) -> Result<Vec<DmarcSourceSummary>, StoreError> {
        self.dmarc_pg_check()?;
        let domain = domain.map(|d| d.trim_end_matches('.').to_ascii_lowercase());
        self.read_rows(move |c| {
            let mut q = c.prepare(
                "SELECT domain, source_ip, sum(count), \
                 sum(CASE WHEN dkim = 'pass' OR spf = 'pass' THEN count ELSE 0 END), \
                 sum(CASE WHEN dkim = 'pass' THEN count ELSE 0 END), \
                 sum(CASE WHEN spf = 'pass' THEN count ELSE 0 END), \
                 count(DISTINCT reporter), count(DISTINCT begin / 86400), min(begin), max(end) \
                 FROM dmarc_received WHERE end > ?1 AND (?2 IS NULL OR domain = ?2) \
                 GROUP BY domain, source_ip ORDER BY sum(count) DESC, domain, source_ip LIMIT 10000",
            )?;
            let rows = q.query_map(params![since, domain], |r| {
                let n = |i: usize| -> rusqlite::Result<u64> { Ok(r.get::<_, i64>(i)?.max(0) as u64) };
                Ok(DmarcSourceSummary {
                    domain: r.get(0)?,
                    source_ip: r.get(1)?,
                    messages: n(2)?,
                    dmarc_pass: n(3)?,
                    dkim_pass: n(4)?,
                    spf_pass: n(5)?,
                    reporters: n(6)?,
                    days: n(7)?,
                    first: r.get(8)?,
                    last: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }
}

/// One message counted; a lazy job, so nobody waits for it and a failure is reported here.
struct Note {
    seen: DmarcSeen,
    failed: Option<String>,
}

impl Job for Note {
    fn run(&mut self, c: &Connection) -> bool {
        let s = &self.seen;
        let result = c
            .prepare_cached(
                "INSERT INTO dmarc_rows (period_begin, period_end, domain, source_ip, header_from, envelope_from, \
                 disposition, dkim, spf, auth, policy, count) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1) \
                 ON CONFLICT (period_begin, domain, source_ip, header_from, envelope_from, disposition, dkim, spf, auth) \
                 DO UPDATE SET count = count + 1, policy = excluded.policy",
            )
            .and_then(|mut q| {
                q.execute(params![
                    s.period_begin,
                    s.period_end,
                    s.domain,
                    s.source_ip,
                    s.header_from,
                    s.envelope_from,
                    s.disposition,
                    s.dkim,
                    s.spf,
                    s.auth,
                    s.policy
                ])
            });
        match result {
            Ok(_) => true,
            Err(e) => {
                self.failed = Some(e.to_string());
                false
            }
        }
    }

    fn finish(self: Box<Self>, path: &Path, committed: Result<(), &str>) {
        if let Some(reason) = self.failed.as_deref().or(committed.err()) {
            eprintln!(
                "mailsift: dmarc: {}: a message was not counted for the aggregate reports: {reason}",
                path.display()
            );
        }
    }
}
