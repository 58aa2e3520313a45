//! DMARC aggregate reports at run time (RFC 7489 §7.2): counting what DMARC found in inbound mail, sending
//! the reports owed for ended periods through the durable spool, and reading the reports others send us
//! about our own domains.
//!
//! - **Collect** ([`seen`], [`note`]): one judged inbound message whose From domain publishes a DMARC record
//!   with `rua` adds one to its period's row in the store (a lazy write on the writer thread: nothing waits).
//! - **Send** ([`start`], [`send_due`]): every few minutes, the node holding the `dmarc-reports` lease builds
//!   one report per domain and ended period, checks each `mailto:` destination (§7.1: another organisation's
//!   address only when `<domain>._report._dmarc.<its domain>` says `v=DMARC1`), honours `!size`, and spools
//!   one mail per destination (kind `dmarc-report`, outbound). The period's rows are then deleted.
//! - **Receive** ([`received`]): mail to a `receive` address is parsed with mail-auth under a size cap (gzip
//!   and zip attachments: decompression is capped too) and summarised in the store; the message is delivered
//!   as usual whatever the parse says.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mail_builder::headers::address::Address as HeaderAddress;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;
use mailsift_engine::evidence::{DkimVerdict, DmarcPolicy, Outcome, SpfResult};
use mailsift_engine::{Direction, Envelope, Evidence};
use mailsift_store::gateway::{DmarcCounted, DmarcReceivedRow, DmarcSeen};
use mailsift_store::NewSpoolItem;

use crate::counters::Counters;
use crate::dmarc::{
    authorisation_name, authorises, mailto_address, period_of, report_file_name, report_subject, AggregateReport,
    AuthResults, DkimAuth, PublishedPolicy, ReportRecord, SpfAuth,
};
use crate::state::{Gateway, GatewayState};

/// The lease that makes one node of several send the reports.
pub const LEASE: &str = "dmarc-reports";
/// How often the sender looks for ended periods.
const CHECK_EVERY: Duration = Duration::from_secs(300);
/// Records in one report at most (a bigger period is cut, the rest dropped and said in the log).
const MAX_RECORDS: usize = 10_000;
/// Rows kept from one received report at most.
const MAX_RECEIVED_ROWS: usize = 10_000;

/// What the store keeps as a row's `policy`: the record as published and where its reports go.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StoredPolicy {
    policy: PublishedPolicy,
    rua: Vec<(String, u64)>,
}

/// The row one judged message adds to its period, when it is inbound, DMARC was evaluated against a record
/// that asks for aggregate reports, and sending is on. Pure: the caller queues it ([`note`]).
pub fn seen(state: &GatewayState, envelope: &Envelope, evidence: &Evidence, now: i64) -> Option<DmarcSeen> {
    let cfg = &state.config.dmarc_reports;
    if !cfg.send || envelope.direction != Direction::Inbound {
        return None;
    }
    let facts = evidence.sender.as_ref()?;
    let dmarc = facts.dmarc.as_ref()?;
    let record = facts.dmarc_record.as_ref().filter(|r| !r.rua.is_empty())?;
    if matches!(dmarc.result, Outcome::None | Outcome::TempError) {
        return None;
    }
    let (period_begin, period_end) = period_of(now, cfg.interval_hours);
    let policy_name = |p: DmarcPolicy| match p {
        DmarcPolicy::None => "none",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::Reject => "reject",
    };
    let disposition = if dmarc.result == Outcome::Pass { "none" } else { policy_name(dmarc.policy) };
    let envelope_domain = match envelope.mail_from.as_deref().and_then(|m| m.rsplit_once('@')) {
        Some((_, d)) => d.trim_end_matches('>').to_string(),
        None => envelope.helo.clone().unwrap_or_default(),
    };
    let envelope_domain = envelope_domain.trim_end_matches('.').to_ascii_lowercase();
    let dkim = facts
        .dkim
        .iter()
        .filter(|d| !d.domain.is_empty())
        .map(|d| DkimAuth {
            domain: d.domain.clone(),
            selector: d.selector.clone(),
            result: match d.verdict {
                DkimVerdict::Pass => "pass",
                DkimVerdict::BodyModified | DkimVerdict::Fail => "fail",
                DkimVerdict::KeyMissing | DkimVerdict::PermError => "permerror",
                DkimVerdict::Expired => "neutral",
                DkimVerdict::TempError => "temperror",
            }
            .into(),
        })
        .collect();
    let spf = facts.spf.map(|r| SpfAuth {
        domain: facts.spf_domain.clone().unwrap_or_else(|| envelope_domain.clone()),
        scope: if envelope.mail_from.as_deref().is_some_and(|m| m.contains('@')) { "mfrom" } else { "helo" }.into(),
        result: match r {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::TempError => "temperror",
            SpfResult::PermError => "permerror",
        }
        .into(),
    });
    let auth = serde_json::to_string(&AuthResults { dkim, spf }).ok()?;
    let policy = StoredPolicy {
        policy: PublishedPolicy {
            domain: dmarc.domain.clone(),
            adkim_strict: record.adkim_strict,
            aspf_strict: record.aspf_strict,
            p: policy_name(record.p).into(),
            sp: policy_name(record.sp).into(),
            pct: record.pct,
            fo: record.fo.clone(),
        },
        rua: record.rua.clone(),
    };
    Some(DmarcSeen {
        period_begin,
        period_end,
        domain: dmarc.domain.to_ascii_lowercase(),
        source_ip: envelope.client_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        header_from: dmarc.domain.to_ascii_lowercase(),
        envelope_from: envelope_domain,
        disposition: disposition.into(),
        dkim: if dmarc.dkim_aligned { "pass" } else { "fail" }.into(),
        spf: if dmarc.spf_aligned { "pass" } else { "fail" }.into(),
        auth,
        policy: serde_json::to_string(&policy).ok()?,
    })
}

/// Queues the row (returns at once; on a blocking thread, as the writer's queue may make it wait when full).
pub fn note(db: &mailsift_store::Database, seen: DmarcSeen) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = db.dmarc_note(seen) {
        // Said once per process: on PostgreSQL every message would say it.
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "DMARC aggregate report data not collected");
        }
    }
}

/// One report ready to go (or refused), as the dry run shows it.
#[derive(Debug, Clone)]
pub struct Planned {
    pub report: AggregateReport,
    /// The addresses it goes to, with their `!size` limits (0: none).
    pub destinations: Vec<(String, u64)>,
    /// `rua` URIs not used, and why.
    pub refused: Vec<(String, String)>,
    /// Destinations that could not be checked now (DNS failed): the period is kept and tried again.
    pub retry: bool,
}

/// The reports owed at `now` (for periods that ended), with their destinations checked. Reads the store and
/// DNS, changes nothing.
pub async fn plan(gateway: &Arc<Gateway>, state: &GatewayState, now: i64) -> Result<Vec<Planned>, String> {
    let db = gateway.db.clone();
    let rows = tokio::task::spawn_blocking(move || db.dmarc_due(now))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut groups: BTreeMap<(i64, String), Vec<DmarcCounted>> = BTreeMap::new();
    for r in rows {
        groups.entry((r.seen.period_begin, r.seen.domain.clone())).or_default().push(r);
    }
    let cfg = &state.config.dmarc_reports;
    let org_name = if cfg.org_name.is_empty() { state.config.hostname.clone() } else { cfg.org_name.clone() };
    let mut out = Vec::new();
    for ((begin, domain), rows) in groups {
        // The policy last seen in the period speaks for it.
        let Some(stored) = rows.iter().rev().find_map(|r| serde_json::from_str::<StoredPolicy>(&r.seen.policy).ok())
        else {
            continue;
        };
        let end = rows.iter().map(|r| r.seen.period_end).max().unwrap_or(begin);
        let mut records: Vec<ReportRecord> = rows
            .iter()
            .take(MAX_RECORDS)
            .map(|r| ReportRecord {
                source_ip: r.seen.source_ip.clone(),
                count: r.count,
                disposition: r.seen.disposition.clone(),
                dkim: r.seen.dkim.clone(),
                spf: r.seen.spf.clone(),
                header_from: r.seen.header_from.clone(),
                envelope_from: r.seen.envelope_from.clone(),
                auth: serde_json::from_str(&r.seen.auth).unwrap_or_default(),
            })
            .collect();
        // A row without a source address cannot be reported (the schema needs one).
        records.retain(|r| r.source_ip.parse::<std::net::IpAddr>().is_ok());
        if records.is_empty() {
            continue;
        }
        let report = AggregateReport {
            org_name: org_name.clone(),
            email: cfg.from.clone(),
            extra_contact_info: cfg.contact.clone(),
            report_id: format!("{begin}.{domain}@{}", state.config.hostname),
            begin,
            end: end - 1,
            policy: PublishedPolicy { domain: domain.clone(), ..stored.policy.clone() },
            records,
        };
        let (destinations, refused, retry) = destinations(state, &domain, &stored.rua).await;
        out.push(Planned { report, destinations, refused, retry });
    }
    Ok(out)
}

/// The `rua` URIs that may get `domain`'s report (RFC 7489 §7.1), at most `max_recipients_per_report`.
async fn destinations(
    state: &GatewayState,
    domain: &str,
    rua: &[(String, u64)],
) -> (Vec<(String, u64)>, Vec<(String, String)>, bool) {
    let (mut ok, mut refused, mut retry) = (Vec::new(), Vec::new(), false);
    let max = state.config.dmarc_reports.max_recipients_per_report;
    let ours = mailsift_engine::message::urls::registrable_domain(domain);
    for (uri, size) in rua {
        let Some(address) = mailto_address(uri) else {
            refused.push((uri.clone(), "not a mailto: URI we can send to".into()));
            continue;
        };
        if ok.len() >= max {
            refused.push((uri.clone(), format!("more than {max} destinations (max_recipients_per_report)")));
            continue;
        }
        let rua_domain = address.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_default();
        if mailsift_engine::message::urls::registrable_domain(&rua_domain) != ours {
            let name = authorisation_name(domain, &rua_domain);
            let answer = match state.mx_resolver() {
                Ok(dns) => {
                    use mailsift_evidence::spf::SpfDns;
                    dns.txt(&name).await
                }
                Err(_) => Err(false),
            };
            match answer {
                Ok(txt) if authorises(&txt) => {}
                Ok(_) | Err(true) => {
                    refused.push((uri.clone(), format!("external destination not authorised: no v=DMARC1 at {name}")));
                    continue;
                }
                Err(false) => {
                    refused.push((uri.clone(), format!("external destination not checked now: DNS failed for {name}")));
                    retry = true;
                    continue;
                }
            }
        }
        ok.push((address, *size));
    }
    (ok, refused, retry)
}

/// The report mail for `to`: the gzipped XML attached under its RFC 7489 §7.2.1.1 name and subject.
pub fn report_mail(state: &GatewayState, report: &AggregateReport, to: &str, now: i64) -> Option<Vec<u8>> {
    let cfg = &state.config.dmarc_reports;
    let host = &state.config.hostname;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(report.to_xml().as_bytes()).ok()?;
    let gz = gz.finish().ok()?;
    let domain = &report.policy.domain;
    let file = report_file_name(host, domain, report.begin, report.end, "");
    let subject = report_subject(domain, host, &report.report_id);
    let builder = MessageBuilder::new()
        .from(HeaderAddress::new_address(None::<&str>, cfg.from.clone()))
        .to(HeaderAddress::new_address(None::<&str>, to.to_string()));
    // As RFC 7489 §7.2.1.1 writes it, unencoded (an encoded word would hide it from simple filters); an
    // internationalised domain name needs the encoding.
    let builder = if subject.is_ascii() && !subject.contains(['\r', '\n']) {
        builder.header("Subject", Raw::new(subject))
    } else {
        builder.subject(subject)
    };
    builder
        .date(now)
        .message_id(MessageId::new(format!("dmarc.{}.{}@{host}", report.begin, domain)))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .header("MIME-Version", Raw::new("1.0"))
        .text_body(format!(
            "DMARC aggregate report (RFC 7489) from {host}.\r\n\r\nReport Domain: {domain}\r\nSubmitter: {host}\r\n\
             Report-ID: {}\r\n",
            report.report_id
        ))
        .attachment("application/gzip", file, gz)
        .write_to_vec()
        .ok()
}

/// What one sending run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SendRun {
    /// Report mails spooled.
    pub mails: usize,
    /// Reports (domain and period) whose rows were done with.
    pub reports: usize,
    /// Destinations left out (unauthorised, not mailto, over `!size`).
    pub refused: usize,
}

/// Builds and spools every report owed at `now`, then forgets the reported periods. A report whose
/// destinations could not be checked (DNS failed) is kept for the next run.
pub async fn send_due(gateway: &Arc<Gateway>, now: i64) -> Result<SendRun, String> {
    let state = gateway.state();
    let mut run = SendRun::default();
    for planned in plan(gateway, &state, now).await? {
        run.refused += planned.refused.len();
        for (uri, why) in &planned.refused {
            tracing::info!(domain = %planned.report.policy.domain, rua = %uri, reason = %why, "DMARC report destination not used");
        }
        let mut items = Vec::new();
        for (to, max_size) in &planned.destinations {
            let Some(mail) = report_mail(&state, &planned.report, to, now) else { continue };
            if *max_size > 0 && mail.len() as u64 > *max_size {
                run.refused += 1;
                tracing::info!(domain = %planned.report.policy.domain, rua = %to, size = mail.len(), limit = max_size, "DMARC report larger than the destination's !size limit: not sent");
                continue;
            }
            let item = NewSpoolItem {
                kind: "dmarc-report".into(),
                reference_id: planned.report.report_id.clone(),
                mail_from: state.config.dmarc_reports.from.clone(),
                recipient: to.clone(),
                outbound: true,
            };
            items.push((item, mail));
        }
        if planned.retry && items.is_empty() {
            continue;
        }
        let n = items.len();
        let ids = crate::spool::put(gateway, items).await?;
        crate::spool::kick(gateway, ids);
        for _ in 0..n {
            Counters::bump(&gateway.counters.dmarc_reports_sent);
        }
        run.mails += n;
        let (db, domain, begin) = (gateway.db.clone(), planned.report.policy.domain.clone(), planned.report.begin);
        tokio::task::spawn_blocking(move || db.dmarc_done(&domain, begin))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
        run.reports += 1;
    }
    Ok(run)
}

/// Starts the sender: every few minutes, the node that holds the lease sends what is owed. Does nothing
/// when sending is off (a reload that turns it on takes effect at the next check).
pub fn start(gateway: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let holder = format!("{}:{}", std::process::id(), mailsift_engine::new_reference_id());
        let mut shutdown = gateway.shutdown_signal();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(CHECK_EVERY) => {}
                _ = shutdown.changed() => return,
            }
            if !gateway.state().config.dmarc_reports.send {
                continue;
            }
            let lease = 3 * CHECK_EVERY;
            if !crate::lease::renew(&gateway.db, LEASE, &holder, lease).await.unwrap_or(false) {
                continue;
            }
            // Renewed beside the run, as the digest's: a run longer than the lease is not repeated elsewhere.
            let run = crate::lease::while_held(
                &gateway.db,
                LEASE,
                &holder,
                lease,
                send_due(&gateway, mailsift_engine::unix_now()),
            )
            .await;
            let Some(run) = run else {
                tracing::warn!("DMARC aggregate reports stopped: the lease passed to another node, which sends them");
                continue;
            };
            match run {
                Ok(run) if run.mails > 0 || run.reports > 0 => {
                    tracing::info!(
                        mails = run.mails,
                        reports = run.reports,
                        refused = run.refused,
                        "DMARC aggregate reports sent"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "DMARC aggregate reports not sent; retrying at the next check"),
            }
        }
    })
}

/// Why a received report was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("not a DMARC aggregate report we can read: {0}")]
    Unreadable(String),
    #[error("report larger than {0} bytes once decompressed")]
    TooLarge(usize),
    #[error("report about {0}, not one of our domains")]
    NotOurs(String),
}

/// Parses a report mail (hostile input: bounded by `max_bytes` after decompression, gzip and zip alike) into
/// the rows to store. Pure.
pub fn parse_report(raw: &[u8], max_bytes: usize) -> Result<Vec<DmarcReceivedRow>, ReceiveError> {
    use mail_auth::report::{Error, Report};
    let report = Report::parse_rfc5322(raw, max_bytes).map_err(|e| match e {
        Error::ReportTooLarge => ReceiveError::TooLarge(max_bytes),
        other => ReceiveError::Unreadable(format!("{other:?}")),
    })?;
    let clip = |s: &str, n: usize| crate::text::sanitize(s, n);
    let domain = report.domain().trim_end_matches('.').to_ascii_lowercase();
    if domain.is_empty() {
        return Err(ReceiveError::Unreadable("no policy_published domain".into()));
    }
    let mut rows = Vec::new();
    for r in report.records().iter().take(MAX_RECEIVED_ROWS) {
        let dkim_results: Vec<String> =
            r.dkim_auth_result().iter().take(16).map(|d| format!("{}:{}", clip(d.domain(), 255), d.result())).collect();
        let spf_results: Vec<String> =
            r.spf_auth_result().iter().take(16).map(|s| format!("{}:{}", clip(s.domain(), 255), s.result())).collect();
        rows.push(DmarcReceivedRow {
            reporter: clip(report.org_name(), 255),
            report_id: clip(report.report_id(), 255),
            begin: report.date_range_begin().min(i64::MAX as u64) as i64,
            end: report.date_range_end().min(i64::MAX as u64) as i64,
            domain: clip(&domain, 255),
            source_ip: r.source_ip().map(|ip| ip.to_string()).unwrap_or_default(),
            count: r.count() as u64,
            disposition: r.action_disposition().to_string(),
            dkim: r.dmarc_dkim_result().to_string(),
            spf: r.dmarc_spf_result().to_string(),
            header_from: clip(r.header_from(), 255),
            dkim_results: dkim_results.join(" "),
            spf_results: spf_results.join(" "),
        });
    }
    Ok(rows)
}

/// Whether `domain` is one of ours: a configured domain, or the domain of a `receive` address.
fn is_ours(state: &GatewayState, domain: &str) -> bool {
    state.local_domain(domain).is_some()
        || state
            .config
            .dmarc_reports
            .receive
            .iter()
            .any(|a| a.rsplit_once('@').is_some_and(|(_, d)| d.trim_end_matches('.').eq_ignore_ascii_case(domain)))
}

/// A message to one of the `receive` addresses: parsed and summarised (counted in `dmarc_reports_received`).
/// Never changes what happens to the message: it is delivered as any other; a report that cannot be read is
/// logged. Returns what was stored, or why not (`None` when the message is not for a receive address).
pub async fn received(
    gateway: &Arc<Gateway>,
    state: &GatewayState,
    envelope: &Envelope,
    data: &[u8],
) -> Option<Result<usize, String>> {
    let cfg = &state.config.dmarc_reports;
    if cfg.receive.is_empty() || !envelope.rcpt_to.iter().any(|r| cfg.receives(r)) {
        return None;
    }
    let max = cfg.max_received_report_bytes;
    let copy = data.to_vec();
    let parsed = tokio::task::spawn_blocking(move || parse_report(&copy, max)).await;
    let rows = match parsed {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "DMARC report received but not stored");
            return Some(Err(e.to_string()));
        }
        Err(e) => return Some(Err(format!("report parse task failed: {e}"))),
    };
    if let Some(first) = rows.first() {
        if !is_ours(state, &first.domain) {
            let e = ReceiveError::NotOurs(first.domain.clone());
            tracing::warn!(error = %e, "DMARC report received but not stored");
            return Some(Err(e.to_string()));
        }
    }
    let db = gateway.db.clone();
    let now = mailsift_engine::unix_now();
    match tokio::task::spawn_blocking(move || db.dmarc_received_put(rows, now)).await {
        Ok(Ok(n)) => {
            Counters::bump(&gateway.counters.dmarc_reports_received);
            Some(Ok(n))
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "DMARC report received but not stored");
            Some(Err(e.to_string()))
        }
        Err(e) => Some(Err(e.to_string())),
    }
}
