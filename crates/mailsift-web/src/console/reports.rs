//! Reports: the false-positive and false-negative reports users made, each with its message and what came
//! of it, over a time range.

use super::*;
use crate::range::RangeParams;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/reports", get(reports_page))
}

async fn reports_page(State(web): State<AppState>, page: Page, Query(rp): Query<RangeParams>) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let range = match rp.resolve(mailsift_engine::unix_now(), "30d") {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a time range", &e),
    };
    let rows = match crate::insights::reports(&web.gateway, &page.principal, &range).await {
        Ok(r) => r,
        Err(e) => return api_error_page(e),
    };
    let fp = rows.iter().filter(|r| r.said == "not spam").count();
    let mut by_domain: BTreeMap<String, usize> = BTreeMap::new();
    for r in &rows {
        *by_domain.entry(r.sender_domain.clone().unwrap_or_default()).or_default() += 1;
    }
    let mut top: Vec<(String, usize)> = by_domain.into_iter().filter(|(d, _)| !d.is_empty()).collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(10);
    render(
        &web,
        "reports.html",
        context! { title => "Reports", page => "reports", principal => &page.principal, csrf => &page.csrf,
        range, rows, fp, fn_count => rows.len() - fp, top },
    )
}
