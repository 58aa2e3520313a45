//! The dashboard: what the gateway did over the chosen time range (`crate::range`): the messages by action,
//! counted once from the message log and shown both as words and as the chart, so the two always agree;
//! the symbols that fired and the senders refused most; and, for administrators, the users' reports against
//! what the gateway did, day by day.

use super::*;
use crate::range::{RangeParams, TimeRange};

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console", get(dashboard))
}

/// The actions in the order people read them, with their words.
const ACTIONS: &[(&str, &str)] = &[
    ("deliver", "Delivered"),
    ("tag", "Tagged"),
    ("quarantine", "Quarantined"),
    ("reject", "Rejected"),
    ("refused", "Refused at the door"),
    ("tempfail", "Deferred (try again)"),
    ("failed", "Failed"),
];

fn words(action: &str) -> String {
    ACTIONS.iter().find(|(a, _)| *a == action).map(|(_, w)| w.to_string()).unwrap_or_else(|| action.to_string())
}

/// The buckets of a range: hours up to two days, days beyond. Returns (bucket length, first bucket start, count).
fn buckets(r: &TimeRange) -> (i64, i64, usize) {
    let step = if r.seconds() <= 2 * 86_400 + 1 { 3600 } else { 86_400 };
    let first = r.since.div_euclid(step) * step;
    let n = ((r.until - 1).div_euclid(step) - first / step + 1).clamp(1, 400) as usize;
    (step, first, n)
}

async fn dashboard(
    State(web): State<AppState>,
    page: Page,
    Query(p): Query<FlashParams>,
    Query(rp): Query<RangeParams>,
) -> Response {
    if page.principal.role == Role::User {
        return Redirect::to("/console/quarantine").into_response();
    }
    let now = mailsift_engine::unix_now();
    let range = match rp.resolve(now, "24h") {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a time range", &e),
    };
    let (step, first, n) = buckets(&range);
    let stats = match service::gather_stats(&web.gateway, &page.principal, first).await {
        Ok(s) => s,
        Err(e) => return api_error_page(e),
    };
    let labels: Vec<String> = (0..n as i64)
        .map(|i| {
            let t = first + i * step;
            if step == 3600 {
                format!("{:02}h", (t / 3600) % 24)
            } else {
                short_day(t)
            }
        })
        .collect();
    // One count of the log rows in the range feeds both the words and the chart.
    let mut by_action: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for c in stats.hourly.iter().filter(|c| c.hour >= first && c.hour < range.until) {
        let i = ((c.hour - first) / step).clamp(0, n as i64 - 1) as usize;
        by_action.entry(c.action.clone()).or_insert_with(|| vec![0; n])[i] += c.count;
    }
    let mut series: Vec<(String, &str, Vec<u64>)> = Vec::new();
    for (a, _) in ACTIONS {
        if let Some(v) = by_action.remove(*a) {
            series.push((a.to_string(), charts::action_colour(a), v));
        }
    }
    for (a, v) in by_action {
        series.push((a, "#9e9e9e", v));
    }
    let totals: Vec<_> = series
        .iter()
        .map(|(a, _, v)| context! { action => a, words => words(a), count => v.iter().sum::<u64>() })
        .collect();
    let total: u64 = series.iter().map(|(_, _, v)| v.iter().sum::<u64>()).sum();
    let unit = if step == 3600 { "hour" } else { "day" };
    let per_bucket = charts::stacked_bars(&format!("Messages per {unit}, by action"), &labels, &series);
    let top_symbols = charts::horizontal_bars("Top symbols", &stats.top_symbols, "#23395d");
    let top_refused = charts::horizontal_bars("Top refused senders", &stats.top_refused_senders, "#b3261e");
    // Users' reports against what the gateway did, per day of the range (administrators: the reports are
    // the whole organisation's).
    let trend = page.principal.is_admin().then(|| {
        let day0 = range.since.div_euclid(86_400);
        let days = ((range.until - 1).div_euclid(86_400) - day0 + 1).clamp(1, 400) as usize;
        let labels: Vec<String> = (0..days as i64).map(|d| short_day((day0 + d) * 86_400)).collect();
        let (mut fp, mut fn_) = (vec![0; days], vec![0; days]);
        for (day, side, count) in &stats.reports_per_day {
            let i = day.div_euclid(86_400) - day0;
            if i < 0 || i >= days as i64 {
                continue;
            }
            if side == "ham" {
                fp[i as usize] += count
            } else {
                fn_[i as usize] += count
            }
        }
        let (mut held, mut passed) = (vec![0; days], vec![0; days]);
        for c in stats.hourly.iter().filter(|c| c.hour >= range.since && c.hour < range.until) {
            let i = (c.hour.div_euclid(86_400) - day0).clamp(0, days as i64 - 1) as usize;
            match c.action.as_str() {
                "quarantine" | "reject" | "tag" => held[i] += c.count,
                "deliver" => passed[i] += c.count,
                _ => {}
            }
        }
        let (fp_total, acted): (u64, u64) = (fp.iter().sum(), held.iter().sum());
        let rate = if acted > 0 { format!("{:.2}%", 100.0 * fp_total as f64 / acted as f64) } else { "—".into() };
        let reports = charts::stacked_bars(
            "User reports per day",
            &labels,
            &[("not spam".into(), "#d9822b", fp), ("spam".into(), "#23395d", fn_)],
        );
        let actions = charts::stacked_bars(
            "Acted on (tagged, quarantined, rejected) and delivered, per day",
            &labels,
            &[("acted on".into(), "#b3261e", held), ("delivered".into(), "#3a7d44", passed)],
        );
        context! { reports, actions, fp_total, acted, rate }
    });
    let scope = page.principal.scope().join(", ");
    render(
        &web,
        "dashboard.html",
        context! { title => "Dashboard", page => "dashboard", principal => &page.principal, csrf => &page.csrf,
        flash => p.flash, stats => &stats, per_bucket, top_symbols, top_refused, trend, totals, total, range, scope },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_up_to_two_days_then_days() {
        let now = 1_764_900_000;
        let day = RangeParams { range: Some("24h".into()), ..Default::default() }.resolve(now, "24h").unwrap();
        let (step, first, n) = buckets(&day);
        assert_eq!((step, n), (3600, 25));
        assert!(first <= day.since && first + n as i64 * step >= day.until);
        let week = RangeParams { range: Some("7d".into()), ..Default::default() }.resolve(now, "24h").unwrap();
        let (step, first, n) = buckets(&week);
        assert_eq!((step, n), (86_400, 8));
        assert!(first <= week.since && first + n as i64 * step >= week.until);
    }
}
