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
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let mut q = match p.query(&page.principal) {
        Ok(q) => q,
        Err(e) => return api_error_page(e),
    };
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
        format!("/console/log?{}", s.finish())
    });
    render(
        &web,
        "log.html",
        context! { title => "Message log", page => "log", principal => &page.principal, csrf => &page.csrf, flash => f.flash,
        entries, elapsed, more, q => context! { sender => p.sender, recipient => p.recipient, subject => p.subject,
        action => p.action, symbol => p.symbol, since => p.since } },
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
    // The headers, when a copy of the message is kept (the log itself keeps none).
    let headers = match d.quarantine.first() {
        Some(i) => match service::quarantine_item(&web.gateway, &page.principal, i.id).await {
            Ok((_, raw)) => service::preview(&web.gateway, &raw).0,
            Err(_) => Vec::new(),
        },
        None => Vec::new(),
    };
    let sender = d.entry.from_header.clone().or(d.entry.mail_from.clone()).filter(|s| s.contains('@'));
    // The diagnosis: why it was judged so, and the narrowest fixes (each tried on this message).
    let diagnosis =
        match crate::diagnosis::diagnose_target(&web, &page.principal, crate::diagnosis::Target::Log(reference), None)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e.message, "diagnosis failed");
                None
            }
        };
    let fixes: Vec<serde_json::Value> = diagnosis
        .as_ref()
        .map(|r| {
            r.fixes
                .iter()
                .map(|f| {
                    // What the fix still lets through goes with its note, where the page shows it under the
                    // fix's title: an administrator reads the risk before the Apply button.
                    let risk = f.fix.risk.trim();
                    let note = if risk.is_empty() {
                        f.fix.note.clone()
                    } else {
                        format!("{} Still lets through: {risk}", f.fix.note.trim_end())
                    };
                    serde_json::json!({
                        "title": f.fix.title, "note": note, "risk": risk, "command": f.fix.command,
                        "change": serde_json::to_string(&f.fix.change).unwrap_or_default(),
                        "with_fix": f.with_fix,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let quarantine_id = d.quarantine.first().map(|q| q.id);
    render(
        &web,
        "log_detail.html",
        context! { title => "Message", page => "log", principal => &page.principal, csrf => &page.csrf, flash => f.flash, d, headers, sender,
        diagnosis => diagnosis.as_ref().map(|r| &r.diagnosis), category => diagnosis.as_ref().map(|r| r.diagnosis.category.title()),
        fixes, quarantine_id },
    )
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
