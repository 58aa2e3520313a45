//! What the API, the console, the diagnosis pages and the digest do, as functions of the running gateway and
//! the caller, with no HTTP in them: reach checks (who may see and act on what), quarantine actions, reports,
//! scans, the message log, domains and statistics. The handlers translate requests into these calls and a
//! [`ServiceError`] into their answer; the business actions themselves are `mailsift_gateway::actions`, the
//! same functions the command line calls.
//!
//! Store calls are blocking SQLite reads and writes: they run on Tokio's blocking pool ([`blocking`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use mailsift_engine::classify::Side;
use mailsift_engine::policy::FilterRule;
use mailsift_engine::{Direction, Envelope};
use mailsift_gateway::actions::{self, ActionError};
use mailsift_gateway::config::DomainConfig;
use mailsift_gateway::release::ReleaseError;
use mailsift_gateway::Gateway;
use mailsift_store::{PolicyStore, QuarantineItem, QuarantineQuery};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::{domain_of, Principal};

/// What kind of failure: the front end picks its answer from it (an HTTP status, a page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The request itself is wrong (a field, a value).
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// Nothing the caller may see has that name.
    NotFound,
    /// It cannot be done in the present state (already released, a feature switched off, a write race).
    Conflict,
    /// The next hop refused the message or could not be reached.
    NextHop,
    /// A failure on our side: the message is for the log only.
    Internal,
}

/// A failed business call: its kind and a sentence for the caller (for [`Failure::Internal`], for the log).
#[derive(Debug)]
pub struct ServiceError {
    pub kind: Failure,
    pub message: String,
}

impl ServiceError {
    pub fn new(kind: Failure, message: impl Into<String>) -> ServiceError {
        ServiceError { kind, message: message.into() }
    }
    pub fn bad_request(m: impl Into<String>) -> ServiceError {
        ServiceError::new(Failure::BadRequest, m)
    }
    pub fn forbidden(m: impl Into<String>) -> ServiceError {
        ServiceError::new(Failure::Forbidden, m)
    }
    pub fn not_found(m: impl Into<String>) -> ServiceError {
        ServiceError::new(Failure::NotFound, m)
    }
    pub fn conflict(m: impl Into<String>) -> ServiceError {
        ServiceError::new(Failure::Conflict, m)
    }
    pub fn internal(m: impl std::fmt::Display) -> ServiceError {
        ServiceError::new(Failure::Internal, m.to_string())
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<mailsift_store::StoreError> for ServiceError {
    fn from(e: mailsift_store::StoreError) -> ServiceError {
        ServiceError::internal(e)
    }
}

impl From<mailsift_store::PolicyStoreError> for ServiceError {
    fn from(e: mailsift_store::PolicyStoreError) -> ServiceError {
        use mailsift_store::PolicyStoreError as E;
        match e {
            E::Parse(_) | E::Invalid { .. } => ServiceError::bad_request(e.to_string()),
            E::NoSuchRule(_) | E::NoSuchEntry(_) => ServiceError::not_found(e.to_string()),
            E::Contended(_) => ServiceError::conflict(e.to_string()),
            other => ServiceError::internal(other),
        }
    }
}

impl From<ReleaseError> for ServiceError {
    fn from(e: ReleaseError) -> ServiceError {
        match e {
            ReleaseError::AlreadyReleased(_) => ServiceError::conflict(e.to_string()),
            ReleaseError::NotFound(_) => ServiceError::not_found(e.to_string()),
            ReleaseError::Virus(_) => ServiceError::forbidden(e.to_string()),
            ReleaseError::Store(e) => ServiceError::internal(e),
            other => ServiceError::new(Failure::NextHop, other.to_string()),
        }
    }
}

impl From<ActionError> for ServiceError {
    fn from(e: ActionError) -> ServiceError {
        match e {
            ActionError::Release(e) => e.into(),
            ActionError::Store(e) => e.into(),
            ActionError::Policy(e) => e.into(),
            ActionError::Invalid(m) => ServiceError::bad_request(m),
            ActionError::Unavailable(m) => ServiceError::conflict(m),
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// Runs a blocking store call off the async threads.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> ServiceResult<T> + Send + 'static) -> ServiceResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(ServiceError::internal)?
}

/// At most `max` bytes of `s`, cut at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `1700000000`, `24h`, `7d`, `30m`: Unix seconds, or that long before now.
pub fn parse_when(s: &str, now: i64) -> ServiceResult<i64> {
    let s = s.trim();
    let bad = || ServiceError::bad_request(format!("{s:?}: give Unix seconds or a period like 24h or 7d"));
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    let (n, unit) = s.split_at(s.len().checked_sub(1).ok_or_else(bad)?);
    let n: i64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(bad()),
    };
    Ok(now - n * secs)
}

// ---------------------------------------------------------------------------------------------------------
// Scan

/// The envelope of a message to scan, as a caller gives it.
#[derive(Deserialize, IntoParams, Default)]
#[into_params(parameter_in = Query)]
pub struct ScanParams {
    /// The connecting client's address.
    pub ip: Option<String>,
    /// Its HELO/EHLO name.
    pub helo: Option<String>,
    /// The envelope sender.
    pub mail_from: Option<String>,
    /// Envelope recipients, comma-separated.
    pub rcpt: Option<String>,
    /// `inbound` (default) or `outbound`.
    pub direction: Option<String>,
    /// Take missing envelope fields from the message's own Received/Return-Path/Delivered-To headers.
    #[serde(default)]
    pub from_trace: bool,
}

impl ScanParams {
    pub fn envelope(&self) -> ServiceResult<Envelope> {
        let client_ip = match self.ip.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => Some(
                s.trim().parse().map_err(|_| ServiceError::bad_request(format!("ip: {s:?} is not an IP address")))?,
            ),
            None => None,
        };
        let direction = match self.direction.as_deref() {
            None | Some("") | Some("inbound") => Direction::Inbound,
            Some("outbound") => Direction::Outbound,
            Some(d) => {
                return Err(ServiceError::bad_request(format!("direction: {d:?} is neither inbound nor outbound")))
            }
        };
        Ok(Envelope {
            client_ip,
            helo: self.helo.clone().filter(|s| !s.is_empty()),
            mail_from: self.mail_from.clone().filter(|s| !s.is_empty()),
            rcpt_to: self
                .rcpt
                .as_deref()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            direction,
            ..Envelope::default()
        })
    }
}

#[derive(Serialize, ToSchema)]
pub struct ScanAnswer {
    /// The verdict: score, thresholds, SCL, action, every symbol with its score and detail.
    #[schema(value_type = Object)]
    pub verdict: mailsift_engine::Verdict,
    /// The headers the gateway would add.
    pub headers: Vec<(String, String)>,
    /// The verdict explained, line by line: each symbol's description and remedy.
    pub explanation: String,
    /// What the gateway would do with it, as it decides for SMTP: `tempfail`, `reject`, `quarantine`,
    /// `tag` or `deliver`, and for whom.
    #[schema(value_type = Object)]
    pub disposition: ScanDisposition,
}

/// The gateway's disposition of a scanned message, for people and scripts.
#[derive(Serialize, Debug)]
pub struct ScanDisposition {
    /// `tempfail`, `reject`, `quarantine`, `tag` or `deliver`.
    pub action: String,
    /// The SMTP answer the sender would get.
    pub answer: String,
    /// Recipients whose copy would be quarantined.
    pub quarantine: Vec<String>,
    /// Recipients it would be delivered to (tagged when `tagged`).
    pub deliver: Vec<String>,
    pub tagged: bool,
    pub redirect: Option<String>,
    pub copies: Vec<String>,
}

impl ScanDisposition {
    pub fn of(d: &mailsift_gateway::disposition::Disposition) -> ScanDisposition {
        use mailsift_gateway::disposition::Disposition as D;
        let mut out = ScanDisposition {
            action: d.action_name().to_string(),
            answer: String::new(),
            quarantine: Vec::new(),
            deliver: Vec::new(),
            tagged: false,
            redirect: None,
            copies: Vec::new(),
        };
        match d {
            D::Defer { answer, .. } | D::Reject { answer } => {
                out.answer = format!("{} {} {}", answer.code, answer.enhanced, answer.text);
            }
            D::Accept(a) => {
                out.answer = "250 2.0.0 accepted".into();
                out.quarantine = a.quarantine.clone();
                out.deliver = a.deliver.clone();
                out.tagged = a.tag;
                out.redirect = a.redirect.clone();
                out.copies = a.copies.clone();
            }
        }
        out
    }
}

/// Judges a message as the gateway would (`mailsift_gateway::judge::verdict`: the domain's settings, sender
/// evidence when DNS is on, local reputation, the policy in force) and answers with the same `Disposition`
/// SMTP decides with; nothing is delivered, logged, learned, recorded or quarantined (the effects are
/// `judge::judge`'s, which the scan does not call).
pub async fn scan(gateway: &Arc<Gateway>, raw: Vec<u8>, params: &ScanParams) -> ServiceResult<ScanAnswer> {
    let envelope = params.envelope()?;
    // The policy as stored right now (an administrator testing a rule just added), not as of the gateway's
    // last poll; a cheap version check when nothing changed.
    let g = gateway.clone();
    blocking(move || {
        if let Err(e) = g.refresh_policy(false) {
            tracing::warn!(error = %e, "policy not reloaded for the scan");
        }
        Ok(())
    })
    .await?;
    let state = gateway.state();
    let judged = mailsift_gateway::judge::verdict(gateway, &state, envelope, raw, params.from_trace)
        .await
        .map_err(|e| ServiceError::internal(format!("the scan failed: {e}")))?;
    let verdict = judged.verdict;
    let explanation = mailsift_engine::explain::render(&verdict, state.engine.registry());
    // What SMTP would answer and who would get it, decided by the same function SMTP uses.
    let disposition = mailsift_gateway::disposition::Disposition::of(&verdict, &judged.envelope.rcpt_to);
    Ok(ScanAnswer { headers: verdict.headers(), verdict, explanation, disposition: ScanDisposition::of(&disposition) })
}

#[derive(Serialize, ToSchema)]
pub struct RulesTestAnswer {
    /// The filter rules that matched, in order.
    pub matched_rules: Vec<String>,
    /// The list entries that matched.
    pub matched_entries: Vec<String>,
    /// The rule or entry that decided, if one did.
    pub decided_by: Option<String>,
    pub action: String,
    pub score: f64,
    /// For each matched rule a forger could satisfy: why (the rule is in `matched_rules` too).
    pub warnings: Vec<String>,
}

/// Judges a message with the current policy and says which rules and entries matched.
pub async fn test_rules(gateway: &Arc<Gateway>, raw: Vec<u8>, params: &ScanParams) -> ServiceResult<RulesTestAnswer> {
    let answer = scan(gateway, raw, params).await?;
    let v = &answer.verdict;
    let mut matched_rules = Vec::new();
    let mut matched_entries = Vec::new();
    for m in &v.policy_matches {
        match m {
            mailsift_engine::verdict::PolicyMatch::Rule { name, .. } => matched_rules.push(name.clone()),
            mailsift_engine::verdict::PolicyMatch::Entry { entry, honoured } => {
                matched_entries.push(format!("{}{}", entry.describe(), if *honoured { "" } else { " (passed over)" }))
            }
        }
    }
    // The matched rules as the policy in force has them: the configuration's, then the stored ones.
    let configured = gateway.state().engine.config().policy.rules.clone();
    let db = gateway.db.clone();
    let names = matched_rules.clone();
    let warnings = blocking(move || {
        let stored = db.rules()?;
        let rules = configured.iter().chain(stored.iter().map(|r| &r.rule));
        let matched: Vec<&FilterRule> =
            rules.filter(|r| names.iter().any(|n| n.trim().eq_ignore_ascii_case(r.name.trim()))).collect();
        Ok(matched.into_iter().filter_map(|r| r.forgery_warning()).collect::<Vec<_>>())
    })
    .await?;
    Ok(RulesTestAnswer {
        warnings,
        matched_rules,
        matched_entries,
        decided_by: v.decided_by.clone(),
        action: v.action.as_str().into(),
        score: v.score,
    })
}

// ---------------------------------------------------------------------------------------------------------
// Message log

/// May this caller see this log entry?
pub fn may_see_entry(p: &Principal, e: &mailsift_store::LogEntry) -> bool {
    p.is_admin()
        || (p.is_manager()
            && (e.recipients.iter().any(|r| p.manages_domain(domain_of(r)))
                || (e.direction == "outbound"
                    && e.mail_from.as_deref().is_some_and(|m| p.manages_domain(domain_of(m))))))
}

#[derive(Serialize, ToSchema)]
pub struct LogDetail {
    #[schema(value_type = Object)]
    pub entry: mailsift_store::LogEntry,
    /// The verdict's symbols grouped by engine (group), each with its description and remedy.
    pub groups: Vec<SymbolGroup>,
    /// Quarantine items of this message the caller may act on.
    #[schema(value_type = Vec<Object>)]
    pub quarantine: Vec<mailsift_store::QuarantineItem>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct SymbolGroup {
    pub group: String,
    pub total: f64,
    pub symbols: Vec<SymbolLine>,
}

#[derive(Serialize, ToSchema, Clone)]
pub struct SymbolLine {
    pub name: String,
    pub score: f64,
    pub description: String,
    pub remedy: String,
}

/// Groups logged symbols by their registry group, strongest group first.
pub fn group_symbols(registry: &mailsift_engine::symbols::Registry, symbols: &[(String, f64)]) -> Vec<SymbolGroup> {
    let mut groups: BTreeMap<String, SymbolGroup> = BTreeMap::new();
    for (name, score) in symbols {
        let (group, description, remedy) = match registry.by_name(name) {
            Some(def) => (def.group.as_str().to_string(), def.description.to_string(), def.remedy.to_string()),
            None => ("other".to_string(), String::new(), String::new()),
        };
        let g = groups.entry(group.clone()).or_insert(SymbolGroup { group, total: 0.0, symbols: Vec::new() });
        g.total += score;
        g.symbols.push(SymbolLine { name: name.clone(), score: *score, description, remedy });
    }
    let mut v: Vec<SymbolGroup> = groups.into_values().collect();
    v.sort_by(|a, b| b.total.abs().total_cmp(&a.total.abs()));
    v
}

/// One logged message the caller may see, with its symbols explained and its quarantined copies.
pub async fn log_detail(gateway: &Arc<Gateway>, principal: &Principal, reference: &str) -> ServiceResult<LogDetail> {
    let db = gateway.db.clone();
    let r = reference.to_string();
    let (entry, items) = blocking(move || {
        let entry = db.log_get(&r)?;
        // The quarantine rows of this message were written in the same minute as its log row.
        let items = match &entry {
            Some(e) => db
                .quarantine_list(&QuarantineQuery {
                    since: Some(e.time - 120),
                    until: Some(e.time + 120),
                    include_released: true,
                    limit: 1000,
                    ..Default::default()
                })?
                .into_iter()
                .filter(|i| i.reference_id == r)
                .collect(),
            None => Vec::new(),
        };
        Ok((entry, items))
    })
    .await?;
    let entry = entry
        .filter(|e| may_see_entry(principal, e))
        .ok_or_else(|| ServiceError::not_found(format!("no logged message {reference:?} that you may see")))?;
    let state = gateway.state();
    let groups = group_symbols(state.engine.registry(), &entry.symbols);
    let quarantine = items.into_iter().filter(|i| principal.may_act_for(&i.recipient)).collect();
    Ok(LogDetail { entry, groups, quarantine })
}

// ---------------------------------------------------------------------------------------------------------
// Quarantine

/// One quarantined copy the caller may act on, with its raw message.
pub async fn quarantine_item(
    gateway: &Arc<Gateway>,
    p: &Principal,
    id: i64,
) -> ServiceResult<(QuarantineItem, Vec<u8>)> {
    let db = gateway.db.clone();
    let (item, raw) = blocking(move || Ok((db.quarantine_get(id)?, db.quarantine_raw(id)?))).await?;
    match (item, raw) {
        (Some(item), Some(raw)) if p.may_act_for(&item.recipient) => Ok((item, raw)),
        _ => Err(ServiceError::not_found(format!("no quarantined message {id} that you may see"))),
    }
}

/// The decoded headers and readable text of a message: plain text (or the HTML rendered to text), links
/// shown but not clickable, nothing remote loaded.
pub fn preview(gateway: &Gateway, raw: &[u8]) -> (Vec<(String, String)>, String) {
    let state = gateway.state();
    let msg = state.engine.parse(raw);
    let headers = msg.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect();
    let text = &msg.body_text;
    // Links stay readable but are neutralised: shown as text with the scheme broken.
    let text = text.replace("http://", "hxxp://").replace("https://", "hxxps://");
    (headers, clip(&text, 100_000).to_string())
}

/// The header block of a stored message exactly as it was received (folding, `<>` and all), for people who
/// read headers: up to the first empty line, invalid UTF-8 shown as U+FFFD, at most 64 KiB. Rendered as text
/// by the templates, so it is never markup.
pub fn raw_headers(raw: &[u8]) -> String {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|p| p + 1))
        .unwrap_or(raw.len());
    let head = &raw[..end.min(64 * 1024)];
    String::from_utf8_lossy(head).replace("\r\n", "\n")
}

#[derive(Serialize, ToSchema)]
pub struct ActionAnswer {
    pub id: i64,
    /// What happened, in words.
    pub result: String,
}

/// The actions on one quarantined copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuarantineAction {
    /// Deliver it to its recipient (exactly once).
    Release,
    /// Release, and allow the sender for that recipient.
    Approve,
    /// Block the sender for that recipient, and delete the copy.
    Block,
    /// Delete the copy.
    Delete,
    /// Report it as not spam (retrain), then release it.
    ReportNotSpam,
}

impl QuarantineAction {
    pub fn parse(name: &str) -> ServiceResult<QuarantineAction> {
        Ok(match name {
            "release" => QuarantineAction::Release,
            "approve" => QuarantineAction::Approve,
            "block" => QuarantineAction::Block,
            "delete" => QuarantineAction::Delete,
            "report" => QuarantineAction::ReportNotSpam,
            other => return Err(ServiceError::bad_request(format!("unknown action {other:?}"))),
        })
    }
}

/// Does `action` to quarantined copy `id`, when the caller may act for its recipient; `by` names who did it
/// (the header of a released message, the comment of a list entry). Returns what happened, in words.
pub async fn act_on(
    gateway: &Arc<Gateway>,
    p: &Principal,
    id: i64,
    action: QuarantineAction,
    by: &str,
) -> ServiceResult<String> {
    // Reach first: a copy the caller may not see is "not found", whatever the action.
    let (item, raw) = quarantine_item(gateway, p, id).await?;
    match action {
        // The virus quarantine: an administrator's release only.
        QuarantineAction::Release if p.is_admin() => Ok(actions::release_as_admin(gateway, id, by).await?.describe()),
        QuarantineAction::Release => Ok(actions::release(gateway, id, by).await?.describe()),
        QuarantineAction::Approve => Ok(actions::approve(gateway, &item, by).await?.describe()),
        QuarantineAction::Block => {
            let db = gateway.db.clone();
            let by = by.to_string();
            let blocked = blocking(move || Ok(actions::block_sender(&db, &item, &by)?)).await?;
            match blocked {
                Some(b) => Ok(b.describe()),
                None => Err(ServiceError::bad_request("the message has no sender address to block")),
            }
        }
        QuarantineAction::Delete => {
            let db = gateway.db.clone();
            if !blocking(move || Ok(actions::delete(&db, id)?)).await? {
                return Err(ServiceError::not_found(format!("no quarantined message {id} that you may see")));
            }
            Ok("deleted".into())
        }
        QuarantineAction::ReportNotSpam => {
            let r = report(gateway, p, raw, Side::Ham, format!("quarantine item {id}")).await?;
            let released = match actions::release(gateway, id, by).await {
                Ok(r) => r.describe(),
                Err(e) => ServiceError::from(e).message,
            };
            Ok(format!("reported as not spam ({}); {released}", r.result))
        }
    }
}

/// Acts on several items; each gets its own answer (one failure does not stop the others).
pub async fn bulk(
    gateway: &Arc<Gateway>,
    p: &Principal,
    ids: &[i64],
    action: &str,
) -> ServiceResult<Vec<Result<ActionAnswer, String>>> {
    let action = match action {
        "release" | "approve" | "delete" | "block" => QuarantineAction::parse(action)?,
        _ => {
            return Err(ServiceError::bad_request(format!(
                "action: {action:?} is not release, approve, delete or block"
            )))
        }
    };
    if ids.len() > 1000 {
        return Err(ServiceError::bad_request("at most 1000 items at once"));
    }
    let mut out = Vec::new();
    for &id in ids {
        let r = act_on(gateway, p, id, action, &p.name).await;
        out.push(r.map(|result| ActionAnswer { id, result }).map_err(|e| format!("{id}: {}", e.message)));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------------------
// Policy

/// May this caller see or change this list entry? Administrators: all. Domain administrators: entries for
/// their domains or their users. End users: their own entries.
pub fn may_manage_entry(p: &Principal, recipient: Option<&str>) -> bool {
    use mailsift_store::Role;
    match (p.role, recipient) {
        (Role::Admin, _) => true,
        (_, None) => false,
        (Role::DomainAdmin, Some(r)) => p.manages_domain(domain_of(r)),
        (Role::User, Some(r)) => r.eq_ignore_ascii_case(&p.name),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Domains and ASF options

/// Every domain the gateway receives mail for: the configuration's and the stored ones (which win).
pub fn all_domains(gateway: &Gateway) -> ServiceResult<Vec<(DomainConfig, &'static str)>> {
    let state = gateway.state();
    let mut out: BTreeMap<String, (DomainConfig, &'static str)> = BTreeMap::new();
    for d in &state.config.domains {
        out.insert(d.name.to_ascii_lowercase(), (d.clone(), "configuration"));
    }
    for (name, json) in gateway.db.domains()? {
        match serde_json::from_str::<DomainConfig>(&json) {
            Ok(d) => {
                out.insert(name.to_ascii_lowercase(), (d, "stored"));
            }
            Err(e) => tracing::warn!(domain = %name, error = %e, "stored domain does not read"),
        }
    }
    Ok(out.into_values().collect())
}

/// Stores a domain's settings (checked as the gateway would, naming the field) when the caller manages it.
pub async fn store_domain(gateway: &Arc<Gateway>, p: &Principal, d: DomainConfig) -> ServiceResult<()> {
    if !p.manages_domain(&d.name) {
        return Err(ServiceError::forbidden(format!("you do not manage {}", d.name)));
    }
    let db = gateway.db.clone();
    blocking(move || Ok(actions::put_domain(&db, &d)?)).await
}

#[derive(Serialize, ToSchema)]
pub struct AsfOption {
    pub name: String,
    /// off, on or test, for the organisation.
    pub mode: String,
    /// Where the mode comes from: the configuration file, or stored over it (console, `mailsift asf set`).
    pub source: String,
    /// Whether a mode is stored over the configuration file's.
    pub stored: bool,
    /// The configuration file's mode.
    pub configured: String,
    pub symbol: String,
    pub description: String,
}

/// The ASF options and the organisation's setting of each (domains override them in their settings), from
/// the registry's ASF symbols, so every option that can fire is listed with its description; the mode is the
/// store's when one is stored over the configuration file's (`source` says which).
pub fn asf_list(gateway: &Gateway) -> ServiceResult<Vec<AsfOption>> {
    use mailsift_engine::checks::asf;
    let state = gateway.state();
    let modes = mailsift_gateway::actions::organisation_asf(state.configured_engine(), &gateway.db)?;
    let name = |m: mailsift_engine::config::AsfMode| {
        serde_json::to_value(m).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    };
    Ok(state
        .engine
        .registry()
        .iter()
        .filter(|d| d.asf.is_some())
        .filter_map(|d| {
            let key = asf::option_key(&d.name)?;
            let m = modes.iter().find(|m| m.option == key)?;
            Some(AsfOption {
                name: key.to_string(),
                mode: name(m.mode),
                source: match m.stored {
                    Some(_) => format!("stored (the configuration file says {})", name(m.configured)),
                    None => "configuration file".into(),
                },
                stored: m.stored.is_some(),
                configured: name(m.configured),
                symbol: d.name.clone(),
                description: d.description.clone(),
            })
        })
        .collect())
}

/// Sets organisation-wide ASF modes (administrators): `option=on|off|test|default` pairs, all or nothing;
/// the gateway applies them at once.
pub async fn set_asf(gateway: &Arc<Gateway>, p: &Principal, changes: Vec<(String, String)>) -> ServiceResult<String> {
    if !p.is_admin() {
        return Err(ServiceError::forbidden("organisation-wide ASF options are for administrators"));
    }
    let g = gateway.clone();
    let org = blocking(move || {
        let state = g.state();
        let org = mailsift_gateway::actions::set_organisation_asf(state.configured_engine(), &g.db, &changes)
            .map_err(|e| ServiceError::bad_request(e.to_string()))?;
        if let Err(e) = g.refresh_policy(false) {
            tracing::warn!(error = %e, "the new ASF modes are applied at the next policy refresh");
        }
        Ok(org)
    })
    .await?;
    let stored: Vec<String> = org
        .asf
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}={}",
                serde_json::to_value(v).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
            )
        })
        .collect();
    Ok(if stored.is_empty() {
        "organisation-wide ASF options: the configuration file's again".into()
    } else {
        format!("organisation-wide ASF options stored: {}", stored.join(", "))
    })
}

// ---------------------------------------------------------------------------------------------------------
// Reports and statistics

#[derive(Serialize, ToSchema)]
pub struct ReportAnswer {
    pub result: String,
    /// Spam probability before and after, per engine, when the classifiers are trained.
    pub before: Option<(Option<f64>, Option<f64>)>,
    pub after: Option<(Option<f64>, Option<f64>)>,
}

/// Learns a message on the side the user says, in the running gateway's model, and feeds reputation.
pub async fn report(
    gateway: &Arc<Gateway>,
    p: &Principal,
    raw: Vec<u8>,
    side: Side,
    source: String,
) -> ServiceResult<ReportAnswer> {
    let state = gateway.state();
    let reporter = p.name.clone();
    blocking(move || {
        let report = actions::Report { raw: &raw, side, source: &source, channel: "web", reporter: Some(&reporter) };
        let r = actions::report_to_gateway(&state, &report, mailsift_engine::unix_now())?;
        let scores = |s: Option<mailsift_engine::evidence::ClassifierScores>| s.map(|s| (s.bayes, s.linear));
        Ok(ReportAnswer { result: r.describe(&report), before: scores(r.before), after: scores(r.after) })
    })
    .await
}

pub fn parse_side(kind: &str) -> ServiceResult<Side> {
    match kind {
        "false_positive" | "ham" => Ok(Side::Ham),
        "false_negative" | "spam" => Ok(Side::Spam),
        k => Err(ServiceError::bad_request(format!("kind: {k:?} is neither false_positive nor false_negative"))),
    }
}

#[derive(Serialize, ToSchema)]
pub struct Stats {
    #[schema(value_type = Vec<Object>)]
    pub hourly: Vec<mailsift_store::HourlyCount>,
    pub top_symbols: Vec<(String, u64)>,
    pub top_refused_senders: Vec<(String, u64)>,
    pub quarantine_held: u64,
    /// False-positive and false-negative reports per day (administrators only).
    pub reports_per_day: Vec<(i64, String, u64)>,
    /// The gateway's counters since it started.
    pub counters: BTreeMap<String, u64>,
}

pub async fn gather_stats(gateway: &Arc<Gateway>, p: &Principal, since: i64) -> ServiceResult<Stats> {
    let db = gateway.db.clone();
    let scope = p.scope();
    let dir = gateway.data_dir.clone();
    let admin = p.is_admin();
    let mut stats = blocking(move || {
        let store = if admin { mailsift_store::ClassifierStore::open_existing(&dir, &db)? } else { None };
        let reports_per_day = match store {
            Some(store) => {
                store.submissions_per_day(since)?.into_iter().map(|(d, s, n)| (d, s.as_str().to_string(), n)).collect()
            }
            None => Vec::new(),
        };
        Ok(Stats {
            hourly: db.stats_hourly(since, &scope)?,
            top_symbols: db.stats_top_symbols(since, 10, &scope)?,
            top_refused_senders: db.stats_top_refused_senders(since, 10, &scope)?,
            quarantine_held: db.quarantine_count(true, &scope)?,
            reports_per_day,
            counters: BTreeMap::new(),
        })
    })
    .await?;
    if admin {
        stats.counters = gateway.counters.snapshot().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    }
    Ok(stats)
}
