//! The service behind the console's insight pages (sender domains, reports): store queries scoped to the
//! caller over a time range, shaped for a page, with no HTTP types.
//!
//! Sender pages read the newest [`SENDER_ROWS`] log rows of the range (the caller's scope applied), so a
//! page costs a bounded read however long the range is; the page says when it was cut.

use std::collections::BTreeMap;
use std::sync::Arc;

use mailsift_gateway::Gateway;
use mailsift_store::{LogEntry, LogQuery, PolicyStore, TokenStore};
use serde::Serialize;

use crate::auth::Principal;
use crate::range::TimeRange;
use crate::service::{blocking, ServiceResult};
use crate::words;

/// The most log rows a sender page reads.
pub const SENDER_ROWS: usize = 5000;

/// One sender domain over a range.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SenderRow {
    pub domain: String,
    pub total: u64,
    pub by_action: BTreeMap<String, u64>,
    /// Messages whose authentication verified the From: domain, did not, or said nothing either way.
    pub verified: u64,
    pub not_verified: u64,
    pub unknown: u64,
}

/// A sender domain's page.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SenderView {
    pub row: SenderRow,
    /// The newest of its messages (at most 50).
    pub messages: Vec<SenderMessage>,
    /// What users reported about its mail in the range (administrators only).
    pub reports: Vec<ReportRow>,
    /// List entries that name the domain.
    pub entries: Vec<String>,
    /// Whether the read stopped at [`SENDER_ROWS`].
    pub cut: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SenderMessage {
    pub reference_id: String,
    pub time: i64,
    pub subject: Option<String>,
    pub recipients: Vec<String>,
    pub action: String,
    pub score: Option<f64>,
    pub auth: words::AuthWords,
}

/// One report a user made.
#[derive(Debug, Clone, Serialize)]
pub struct ReportRow {
    pub at: i64,
    /// "not spam" (a false positive) or "spam" (a false negative).
    pub said: &'static str,
    pub reporter: Option<String>,
    pub channel: String,
    pub source: String,
    pub sender_domain: Option<String>,
    /// What came of it, in words.
    pub outcome: String,
    /// The quarantined copy it was reported from, when it was.
    pub quarantine_id: Option<i64>,
}

/// The sender domain of a log row: its From: field's, else its envelope sender's.
pub fn sender_domain(e: &LogEntry) -> Option<String> {
    e.from_header.as_deref().and_then(words::domain_of).or_else(|| e.mail_from.as_deref().and_then(words::domain_of))
}

fn read_rows(
    gateway: &Arc<Gateway>,
    p: &Principal,
    range: &TimeRange,
    sender: Option<String>,
) -> ServiceResult<(Vec<LogEntry>, bool)> {
    let q = LogQuery {
        sender,
        since: Some(range.since),
        until: Some(range.until - 1),
        limit: SENDER_ROWS,
        domains: p.scope(),
        ..LogQuery::default()
    };
    let rows = gateway.db.log_search(&q)?;
    let cut = rows.len() >= SENDER_ROWS;
    Ok((rows, cut))
}

fn count(row: &mut SenderRow, e: &LogEntry) {
    row.total += 1;
    *row.by_action.entry(e.action.clone()).or_default() += 1;
    match words::auth(&e.symbols, Some(&row.domain)).state {
        "verified" => row.verified += 1,
        "not verified" => row.not_verified += 1,
        _ => row.unknown += 1,
    }
}

/// The sender domains of the range, most messages first, optionally only those containing `filter`.
pub async fn senders(
    gateway: &Arc<Gateway>,
    p: &Principal,
    range: &TimeRange,
    filter: Option<String>,
) -> ServiceResult<(Vec<SenderRow>, bool)> {
    let (gateway, p, range) = (gateway.clone(), p.clone(), range.clone());
    blocking(move || {
        let (rows, cut) = read_rows(&gateway, &p, &range, None)?;
        let mut by: BTreeMap<String, SenderRow> = BTreeMap::new();
        for e in &rows {
            let Some(d) = sender_domain(e) else { continue };
            if filter.as_deref().is_some_and(|f| !d.contains(&f.to_ascii_lowercase())) {
                continue;
            }
            let row = by.entry(d.clone()).or_insert_with(|| SenderRow { domain: d, ..SenderRow::default() });
            count(row, e);
        }
        let mut out: Vec<SenderRow> = by.into_values().collect();
        out.sort_by(|a, b| b.total.cmp(&a.total).then(a.domain.cmp(&b.domain)));
        Ok((out, cut))
    })
    .await
}

/// One sender domain's page.
pub async fn sender(
    gateway: &Arc<Gateway>,
    p: &Principal,
    domain: &str,
    range: &TimeRange,
) -> ServiceResult<SenderView> {
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let reports = if p.is_admin() { reports(gateway, p, range).await? } else { Vec::new() };
    let (gateway, p, range) = (gateway.clone(), p.clone(), range.clone());
    blocking(move || {
        // The substring search finds candidates; only rows whose sender domain is this one count.
        let (rows, cut) = read_rows(&gateway, &p, &range, Some(format!("@{domain}")))?;
        let mut view = SenderView {
            row: SenderRow { domain: domain.clone(), ..SenderRow::default() },
            cut,
            ..SenderView::default()
        };
        for e in rows.iter().filter(|e| sender_domain(e).as_deref() == Some(domain.as_str())) {
            count(&mut view.row, e);
            if view.messages.len() < 50 {
                view.messages.push(SenderMessage {
                    reference_id: e.reference_id.clone(),
                    time: e.time,
                    subject: e.subject.clone(),
                    recipients: e.recipients.clone(),
                    action: e.action.clone(),
                    score: e.score,
                    auth: words::auth(&e.symbols, Some(&domain)),
                });
            }
        }
        view.reports = reports.into_iter().filter(|r| r.sender_domain.as_deref() == Some(domain.as_str())).collect();
        let names = |s: &str| {
            let s = s.to_ascii_lowercase();
            s == domain || s.ends_with(&format!("@{domain}")) || s.ends_with(&format!(".{domain}"))
        };
        for e in gateway.db.list_entries()? {
            let (sender, rcpt) = (e.entry.sender(), e.entry.recipient());
            let list = if matches!(e.entry, mailsift_store::ListEntry::Allow(_)) { "allowed" } else { "blocked" };
            // A manager sees the entries of the recipients they manage, and the organisation's.
            let visible = crate::service::may_manage_entry(&p, rcpt) || (p.is_manager() && rcpt.is_none());
            if visible && names(sender.trim_start_matches("*@").trim_start_matches('@')) {
                view.entries.push(format!("{sender} is {list} for {}", rcpt.unwrap_or("the whole organisation")));
            }
        }
        Ok(view)
    })
    .await
}

/// The reports users made in the range (administrators: all; domain administrators: those made by users of
/// their domains), newest first.
pub async fn reports(gateway: &Arc<Gateway>, p: &Principal, range: &TimeRange) -> ServiceResult<Vec<ReportRow>> {
    let (dir, db, p, range) = (gateway.data_dir.clone(), gateway.db.clone(), p.clone(), range.clone());
    blocking(move || {
        let Some(store) = mailsift_store::ClassifierStore::open_existing(&dir, &db)? else { return Ok(Vec::new()) };
        let mut out: Vec<ReportRow> = store
            .submissions()?
            .into_iter()
            .filter(|s| s.at >= range.since && s.at < range.until)
            .filter(|s| {
                p.is_admin() || s.reporter.as_deref().is_some_and(|r| p.manages_domain(crate::auth::domain_of(r)))
            })
            .map(|s| {
                let said = if s.correct_side.as_str() == "ham" { "not spam" } else { "spam" };
                let outcome = match (s.previous_side.map(|x| x.as_str()), s.correct_side.as_str()) {
                    (Some(prev), now) if prev == now => format!("already learned as {said}; nothing changed"),
                    (Some(_), _) => format!("unlearned and learned again as {said}"),
                    (None, _) => format!("learned as {said}"),
                };
                let quarantine_id = s.source.strip_prefix("quarantine item ").and_then(|i| i.trim().parse().ok());
                let outcome =
                    if quarantine_id.is_some() { format!("released from quarantine; {outcome}") } else { outcome };
                ReportRow {
                    at: s.at,
                    said,
                    reporter: s.reporter,
                    channel: s.channel,
                    source: s.source,
                    sender_domain: s.sender_domain,
                    outcome,
                    quarantine_id,
                }
            })
            .collect();
        out.sort_by(|a, b| b.at.cmp(&a.at));
        Ok(out)
    })
    .await
}

/// When `user` reported each of these quarantine items as not spam: item id → time (Unix seconds).
pub fn reported_by(gateway: &Gateway, user: &str, ids: &[i64]) -> ServiceResult<BTreeMap<i64, i64>> {
    let mut out = BTreeMap::new();
    let Some(store) = mailsift_store::ClassifierStore::open_existing(&gateway.data_dir, &gateway.db)? else {
        return Ok(out);
    };
    for s in store.submissions()? {
        let Some(id) = s.source.strip_prefix("quarantine item ").and_then(|i| i.trim().parse::<i64>().ok()) else {
            continue;
        };
        if ids.contains(&id) && s.reporter.as_deref().is_some_and(|r| r.eq_ignore_ascii_case(user)) {
            out.insert(id, s.at);
        }
    }
    Ok(out)
}
