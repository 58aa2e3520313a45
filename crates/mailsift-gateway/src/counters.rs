//! Counters for the metrics endpoint and the shutdown report.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters for the metrics endpoint and the shutdown report. Monotonic; read with [`Counters::snapshot`].
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub connections_refused: AtomicU64,
    pub messages_delivered: AtomicU64,
    pub messages_tagged: AtomicU64,
    pub messages_quarantined: AtomicU64,
    pub messages_rejected: AtomicU64,
    pub refused_at_door: AtomicU64,
    pub relay_denied: AtomicU64,
    pub tempfailed: AtomicU64,
    pub relay_failures: AtomicU64,
    pub timeouts: AtomicU64,
    /// Messages in which the virus scanner found a virus.
    pub virus_found: AtomicU64,
    /// Messages the virus scanner could not scan (down, slow, failed).
    pub virus_scan_failed: AtomicU64,
    /// Commands answered with a temporary failure by a rate limit.
    pub rate_limited: AtomicU64,
    /// Recipients deferred by greylisting.
    pub greylisted: AtomicU64,
    /// Outbound users held by the compromised-account protection.
    pub accounts_held: AtomicU64,
    /// Outbound messages accepted into the queue (one per recipient).
    pub outbound_queued: AtomicU64,
    /// Outbound queue items delivered.
    pub outbound_delivered: AtomicU64,
    /// Outbound queue items given up (a DSN goes to the sender).
    pub outbound_bounced: AtomicU64,
    /// Messages signed with DKIM (one per message, however many signatures).
    pub dkim_signed: AtomicU64,
    /// Messages we changed and sealed with ARC.
    pub arc_sealed: AtomicU64,
    /// Signing or sealing that failed (the message left unsigned; logged).
    pub signing_failed: AtomicU64,
    /// Deliveries refused by the outbound TLS policy (MTA-STS, DANE, a smarthost's required TLS).
    pub tls_policy_failures: AtomicU64,
    /// DMARC aggregate reports sent (spooled) to other domains.
    pub dmarc_reports_sent: AtomicU64,
    /// DMARC aggregate reports received for our domains.
    pub dmarc_reports_received: AtomicU64,
    /// Scan-to-answer latency.
    pub latency: Histogram,
    /// Where a message's time goes, one histogram per [`Stage`] (indexed by `Stage as usize`).
    pub stages: [Histogram; Stage::ALL.len()],
}

/// The stages of a message between the end of DATA and the answer, timed separately so that the stage
/// which makes the latency's tail can be found (`mailsift_stage_seconds{stage=...}` on the metrics endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Sender evidence: the DNS questions about the sender and the message (DNS on only).
    Evidence,
    /// Waiting in the judge threads' queue.
    JudgeWait,
    /// Parsing and judging on a judge thread (with learning and reputation).
    Judge,
    /// Carrying out the disposition: relay to the next hop, quarantine, Maildir, spool.
    Disposition,
    /// Committing the message-log row (fsync), before the answer.
    LogCommit,
}

impl Stage {
    pub const ALL: [Stage; 5] = [Stage::Evidence, Stage::JudgeWait, Stage::Judge, Stage::Disposition, Stage::LogCommit];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Evidence => "evidence",
            Stage::JudgeWait => "judge_wait",
            Stage::Judge => "judge",
            Stage::Disposition => "disposition",
            Stage::LogCommit => "log_commit",
        }
    }
}

/// A latency histogram: counts per upper bound in milliseconds ([`LATENCY_BUCKETS_MS`]) and the sum.
#[derive(Debug, Default)]
pub struct Histogram {
    pub buckets: [AtomicU64; 12],
    pub sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let ms = d.as_millis() as u64;
        let i = LATENCY_BUCKETS_MS.iter().position(|&b| ms < b).unwrap_or(LATENCY_BUCKETS_MS.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
}

pub const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, u64::MAX];

impl Counters {
    pub fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Records the time one message spent in `stage`.
    pub fn observe_stage(&self, stage: Stage, d: std::time::Duration) {
        self.stages[stage as usize].observe(d);
    }

    pub fn observe_latency(&self, d: std::time::Duration) {
        self.latency.observe(d);
    }

    /// Name and value of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("connections", get(&self.connections)),
            ("connections_refused", get(&self.connections_refused)),
            ("messages_delivered", get(&self.messages_delivered)),
            ("messages_tagged", get(&self.messages_tagged)),
            ("messages_quarantined", get(&self.messages_quarantined)),
            ("messages_rejected", get(&self.messages_rejected)),
            ("refused_at_door", get(&self.refused_at_door)),
            ("relay_denied", get(&self.relay_denied)),
            ("tempfailed", get(&self.tempfailed)),
            ("relay_failures", get(&self.relay_failures)),
            ("timeouts", get(&self.timeouts)),
            ("virus_found", get(&self.virus_found)),
            ("virus_scan_failed", get(&self.virus_scan_failed)),
            ("rate_limited", get(&self.rate_limited)),
            ("greylisted", get(&self.greylisted)),
            ("accounts_held", get(&self.accounts_held)),
            ("outbound_queued", get(&self.outbound_queued)),
            ("outbound_delivered", get(&self.outbound_delivered)),
            ("outbound_bounced", get(&self.outbound_bounced)),
            ("dkim_signed", get(&self.dkim_signed)),
            ("arc_sealed", get(&self.arc_sealed)),
            ("signing_failed", get(&self.signing_failed)),
            ("tls_policy_failures", get(&self.tls_policy_failures)),
            ("dmarc_reports_sent", get(&self.dmarc_reports_sent)),
            ("dmarc_reports_received", get(&self.dmarc_reports_received)),
        ]
    }
}
