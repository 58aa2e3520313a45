//! The message log, a message's page (why it was judged so, the diagnosis and its fixes) and the fixes applied from it.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/log", get(log_page))
        .route("/console/log/{reference}", get(log_detail_page))
        .route("/console/allow", post(allow_sender))
        .route("/console/diagnosis/apply", post(diagnosis_apply))
}

async fn log_page(
    State(web): State<AppState>,
    page: Page,
    Query(p): Query<LogParams>,
    Query(f): Query<FlashParams>,
    Query(rp): Query<crate::range::RangeParams>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let mut q = match p.query(&page.principal) {
        Ok(q) => q,
        Err(e) => return api_error_page(e),
    };
    // A time range narrows the search when one is asked for (the picker); `since` still works alone.
    let asked = rp.range.is_some() || rp.from.is_some() || rp.to.is_some();
    let range = match rp.resolve(mailsift_engine::unix_now(), "7d") {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a time range", &e),
    };
    if asked {
        q.since = Some(q.since.map_or(range.since, |s| s.max(range.since)));
        q.until = Some(q.until.map_or(range.until - 1, |u| u.min(range.until - 1)));
    }
    q.limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let db = web.db.clone();
    let started = std::time::Instant::now();
    let query = q.clone();
    let entries = match blocking(move || Ok(db.log_search(&query)?)).await {
        Ok(e) => e,
        Err(e) => return api_error_page(e),
    };
    let elapsed = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
    let more = (entries.len() == q.limit).then(|| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("sender", &p.sender),
            ("recipient", &p.recipient),
            ("subject", &p.subject),
            ("action", &p.action),
            ("symbol", &p.symbol),
            ("since", &p.since),
        ] {
            if let Some(v) = v {
                s.append_pair(k, v);
            }
        }
        s.append_pair("offset", &(q.offset + q.limit).to_string());
        let range = if asked { format!("&{}", range.query) } else { String::new() };
        format!("/console/log?{}{range}", s.finish())
    });
    // The search terms the range picker keeps; the search form shows them with `since`.
    let keep = context! { sender => p.sender, recipient => p.recipient, subject => p.subject, action => p.action,
    symbol => p.symbol };
    render(
        &web,
        "log.html",
        context! { title => "Message log", page => "log", principal => &page.principal, csrf => &page.csrf, flash => f.flash,
        entries, elapsed, more, range, asked, q => context! { since => p.since, ..keep.clone() }, keep },
    )
}

async fn log_detail_page(
    State(web): State<AppState>,
    page: Page,
    Path(reference): Path<String>,
    Query(f): Query<FlashParams>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let d = match service::log_detail(&web.gateway, &page.principal, &reference).await {
        Ok(d) => d,
        Err(e) => return api_error_page(e),
    };
    // The headers as received, when a copy of the message is kept (the log itself keeps none).
    let headers = match d.quarantine.first() {
        Some(i) => match service::quarantine_item(&web.gateway, &page.principal, i.id).await {
            Ok((_, raw)) => Some(service::raw_headers(&raw)),
            Err(_) => None,
        },
        None => None,
    };
    let sender = d.entry.from_header.clone().or(d.entry.mail_from.clone()).filter(|s| s.contains('@'));
    let (diagnosis, category, fixes) = diagnosis_context(&web, &page.principal, &reference).await;
    let verdict = verdict_words(&web, &d);
    let covered = covered_symbols(diagnosis.as_ref(), &d.entry.symbols);
    let quarantine_id = d.quarantine.first().map(|q| q.id);
    render(
        &web,
        "log_detail.html",
        context! { title => "Message", page => "log", principal => &page.principal, csrf => &page.csrf, flash => f.flash, d, headers, sender,
        diagnosis, category, fixes, quarantine_id, verdict, covered, back => format!("/console/log/{}", d.entry.reference_id) },
    )
}

/// The diagnosis of a logged message for a page: its findings, its cause in words, and its fixes (narrowest
/// first, each tried on this message) with what each still lets through beside its Apply button. `None`
/// when it cannot be made (the page still shows the verdict).
pub(super) async fn diagnosis_context(
    web: &AppState,
    p: &Principal,
    reference: &str,
) -> (Option<mailsift_engine::diagnose::Diagnosis>, Option<&'static str>, Vec<serde_json::Value>) {
    let target = crate::diagnosis::Target::Log(reference.to_string());
    let report = match crate::diagnosis::diagnose_target(web, p, target, None).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e.message, "diagnosis failed");
            return (None, None, Vec::new());
        }
    };
    let fixes = report
        .fixes
        .iter()
        .map(|f| {
            serde_json::json!({
                "title": f.fix.title, "note": f.fix.note.trim(), "risk": f.fix.risk.trim(), "command": f.fix.command,
                "change": serde_json::to_string(&f.fix.change).unwrap_or_default(),
                "with_fix": f.with_fix,
            })
        })
        .collect();
    let category = report.diagnosis.category.title();
    (Some(report.diagnosis), Some(category), fixes)
}

/// The symbols a diagnosis speaks of (it names them in its findings): their generic remedies would be a second,
/// less precise voice on the same page, so the page points to the diagnosis's fixes instead.
pub(super) fn covered_symbols(
    d: Option<&mailsift_engine::diagnose::Diagnosis>,
    symbols: &[(String, f64)],
) -> Vec<String> {
    let Some(d) = d else { return Vec::new() };
    let text = format!("{} {}", d.summary, d.findings.join(" "));
    let word = |name: &str| {
        text.match_indices(name).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + name.len()..].chars().next();
            let part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            !part(before) && !part(after)
        })
    };
    symbols.iter().filter(|(n, _)| word(n)).map(|(n, _)| n.clone()).collect()
}

/// The verdict of a logged message in sentences: what was done and why, the score against the levels, and
/// the groups whose points were capped (the symbols keep their own scores; the total counts each capped
/// group at most at its cap, so the table's points can add up to more than the score).
fn verdict_words(web: &AppState, d: &service::LogDetail) -> serde_json::Value {
    let e = &d.entry;
    let state = web.gateway.state();
    let registry = state.engine.registry();
    let caps = &state.engine.config().group_caps;
    let reason = e.reason.clone().unwrap_or_default();
    let done = match e.action.as_str() {
        "deliver" => "Delivered to the next hop.",
        "tag" => "Delivered with the spam tag (headers, and the subject tag when one is set).",
        "quarantine" => "Held in the quarantine; the recipients got nothing.",
        "reject" => "Refused at the end of the message (SMTP 5xx): the sending server keeps it and tells its sender.",
        "refused" => "Refused before the message was sent (at the connection, the sender or a recipient).",
        "tempfail" => "Answered \"try again later\" (SMTP 4xx): the sending server keeps it and retries.",
        "failed" => "The next hop refused it; its sender was told.",
        _ => "",
    };
    let plain = if matches!(e.action.as_str(), "deliver") && e.reason.is_none() {
        Vec::new()
    } else {
        crate::words::why(&e.symbols, &reason, |n| registry.by_name(n).map(|x| x.description.clone()), 3)
    };
    let added: f64 = e.symbols.iter().map(|s| s.1).sum();
    let score = e.score.map(|s| match e.required {
        Some(r) if s >= r => format!("{s:.2}, at or over the spam level {r:.2}"),
        Some(r) => format!("{s:.2}, under the spam level {r:.2}"),
        None => format!("{s:.2}"),
    });
    let capped: Vec<serde_json::Value> = d
        .groups
        .iter()
        .filter_map(|g| {
            let cap = *caps.get(&g.group)?;
            (g.total > cap).then(|| serde_json::json!({ "group": g.group, "total": g.total, "cap": cap }))
        })
        .collect();
    let cap_sentence = (!capped.is_empty() && e.score.is_some()).then(|| {
        let parts: Vec<String> = capped
            .iter()
            .map(|c| {
                format!(
                    "the {} checks added {:+.2} but count at most {:.2} (group_caps.{})",
                    c["group"].as_str().unwrap_or(""),
                    c["total"].as_f64().unwrap_or(0.0),
                    c["cap"].as_f64().unwrap_or(0.0),
                    c["group"].as_str().unwrap_or("")
                )
            })
            .collect();
        format!(
            "The checks below add {added:+.2}; {}, so the score is {:.2}.",
            parts.join(", and "),
            e.score.unwrap_or(0.0)
        )
    });
    let caps_by_group: BTreeMap<String, f64> = capped
        .iter()
        .map(|c| (c["group"].as_str().unwrap_or("").to_string(), c["cap"].as_f64().unwrap_or(0.0)))
        .collect();
    serde_json::json!({ "done": done, "reason": e.reason, "plain": plain, "score": score,
        "cap_sentence": cap_sentence, "caps": caps_by_group })
}

/// "Allow the sender" from a log entry: an allow entry in each recipient's own list (the narrowest that
/// works), keeping the spoofing and DMARC guards.
async fn allow_sender(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (Some(sender), Some(rcpts)) = (f.get("sender"), f.get("recipients")) else {
        return error_page(StatusCode::BAD_REQUEST, "Missing fields", "sender and recipients are needed");
    };
    let mut added = Vec::new();
    for r in rcpts.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        if !page.principal.may_act_for(r) {
            continue;
        }
        let comment = format!("allowed from the message log by {}", page.principal.name);
        let entry = mailsift_store::ListEntry::Allow(mailsift_gateway::actions::allow_entry(sender, r, comment));
        let db = web.db.clone();
        if let Err(e) = blocking(move || db.list_add(entry).map_err(api::policy_error)).await {
            return api_error_page(e);
        }
        added.push(r.to_string());
    }
    back(f.get("back").unwrap_or("/console/log"), &format!("{sender} is now allowed for {}", added.join(", ")))
}

/// "Apply" on a fix the diagnosis proposed (administrators).
async fn diagnosis_apply(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let change: mailsift_engine::diagnose::Change = match f.all("change").first().map(|c| serde_json::from_str(c)) {
        Some(Ok(c)) => c,
        _ => return error_page(StatusCode::BAD_REQUEST, "Not a fix", "the form carries no fix to apply"),
    };
    let quarantine_id = f.get("quarantine_id").and_then(|q| q.parse().ok());
    match crate::diagnosis::apply_change(&web, &page.principal, change, quarantine_id).await {
        Ok(done) => back(f.get("back").unwrap_or("/console/log"), &format!("fix applied: {done}")),
        Err(e) => api_error_page(e),
    }
}
