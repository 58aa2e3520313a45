//! The dashboard: what the gateway did over the chosen time range.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console", get(dashboard))
}

async fn dashboard(State(web): State<AppState>, page: Page, Query(p): Query<FlashParams>) -> Response {
    if page.principal.role == Role::User {
        return Redirect::to("/console/quarantine").into_response();
    }
    let hours = 24;
    let now = mailsift_engine::unix_now();
    let since = (now / 3600 - hours + 1) * 3600;
    let stats = match service::gather_stats(&web.gateway, &page.principal, since).await {
        Ok(s) => s,
        Err(e) => return api_error_page(e),
    };
    let labels: Vec<String> = (0..hours).map(|h| format!("{:02}h", ((since / 3600 + h) % 24))).collect();
    let mut by_action: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in &stats.hourly {
        let i = ((c.hour - since) / 3600).clamp(0, hours - 1) as usize;
        by_action.entry(c.action.clone()).or_insert_with(|| vec![0; hours as usize])[i] += c.count;
    }
    let order = ["deliver", "tag", "quarantine", "reject", "refused", "tempfail", "failed"];
    let mut series: Vec<(String, &str, Vec<u64>)> = Vec::new();
    for a in order {
        if let Some(v) = by_action.remove(a) {
            series.push((a.to_string(), charts::action_colour(a), v));
        }
    }
    for (a, v) in by_action {
        series.push((a, "#9e9e9e", v));
    }
    let per_hour = charts::stacked_bars("Messages per hour, by action", &labels, &series);
    let top_symbols = charts::horizontal_bars("Top symbols", &stats.top_symbols, "#23395d");
    let top_refused = charts::horizontal_bars("Top refused senders", &stats.top_refused_senders, "#b3261e");
    let reports = page.principal.is_admin().then(|| {
        let days: Vec<String> = (0..30).map(|d| short_day(now - (29 - d) * 86_400)).collect();
        let mut fp = vec![0; 30];
        let mut fn_ = vec![0; 30];
        for (day, side, n) in &stats.reports_per_day {
            let i = 29 - ((now / 86_400 - day / 86_400).clamp(0, 29)) as usize;
            if side == "ham" {
                fp[i] += n
            } else {
                fn_[i] += n
            }
        }
        charts::stacked_bars(
            "User reports per day (30 days)",
            &days,
            &[("false positives".into(), "#d9822b", fp), ("false negatives".into(), "#23395d", fn_)],
        )
    });
    let scope = page.principal.scope().join(", ");
    render(
        &web,
        "dashboard.html",
        context! { title => "Dashboard", page => "dashboard", principal => &page.principal, csrf => &page.csrf,
        flash => p.flash, stats => &stats, per_hour, top_symbols, top_refused, reports, hours, scope },
    )
}
