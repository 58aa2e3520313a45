//! Outbound: the queue, the DKIM keys and their records, the DMARC reports received about our domains.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/outbound", get(outbound_page))
}

async fn outbound_page(State(web): State<AppState>, page: Page) -> Response {
    if !page.principal.is_admin() {
        // Every domain's outgoing mail and the signing keys: administrators only.
        return api_error_page(ApiError::forbidden("the outbound page is for administrators"));
    }
    let days = 7;
    let db = web.db.clone();
    let since = mailsift_engine::unix_now() - days * 86_400;
    let read = blocking(move || {
        let counts = db.spool_counts()?;
        let items = db.spool_list(Some("pending"), 50)?;
        Ok((counts, items, db.dmarc_received_summary(since, None).map_err(|e| e.to_string())))
    })
    .await;
    let (counts, items, dmarc) = match read {
        Ok(r) => r,
        Err(e) => return api_error_page(e),
    };
    let now = mailsift_store::gateway::now_ms();
    let age = |ms: i64| {
        let s = (now - ms).max(0) / 1000;
        match s {
            s if s < 120 => format!("{s} s"),
            s if s < 7200 => format!("{} min", s / 60),
            s if s < 172_800 => format!("{} h", s / 3600),
            s => format!("{} days", s / 86_400),
        }
    };
    let totals: Vec<_> = counts
        .iter()
        .map(|c| context! { kind => &c.kind, state => &c.state, count => c.count, oldest => age(c.oldest_ms) })
        .collect();
    let items: Vec<_> = items
        .iter()
        .map(|i| {
            let next = if i.sending(now) {
                "sending now".to_string()
            } else if i.next_attempt_ms <= now {
                "now".to_string()
            } else {
                format!("in {}", age(now - (i.next_attempt_ms - now)))
            };
            context! { id => i.id, kind => &i.kind, mail_from => &i.mail_from, recipient => &i.recipient,
            queued => i.created_ms / 1000, attempts => i.attempts, next, last_error => &i.last_error }
        })
        .collect();
    let state = web.gateway.state();
    let (dkim, dkim_error) = match (state.config.dkim.loaded().cloned(), state.mx_resolver()) {
        (None, _) => (Vec::new(), None),
        (Some(keys), Ok(resolver)) => (mailsift_gateway::dkim_check::check(&keys, resolver).await, None),
        (Some(_), Err(e)) => (Vec::new(), Some(e)),
    };
    let (dmarc, dmarc_error) = match dmarc {
        Ok(rows) => (rows, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    render(
        &web,
        "outbound.html",
        context! { title => "Outbound", page => "outbound", principal => &page.principal, csrf => &page.csrf,
        totals, items, lifetime_hours => state.config.outbound.queue_lifetime_hours, dkim, dkim_error, dmarc,
        dmarc_error, days },
    )
}
