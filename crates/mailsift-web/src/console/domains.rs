//! A page per sender domain: what it sent, how it authenticates, what we did with it, what users said; and
//! the index of the sender domains of a time range.

use super::*;
use crate::range::RangeParams;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/domains", get(index)).route("/console/domains/{domain}", get(one))
}

#[derive(serde::Deserialize, Default)]
struct Filter {
    q: Option<String>,
}

async fn index(
    State(web): State<AppState>,
    page: Page,
    Query(rp): Query<RangeParams>,
    Query(f): Query<Filter>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let range = match rp.resolve(mailsift_engine::unix_now(), "7d") {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a time range", &e),
    };
    let q = f.q.filter(|q| !q.trim().is_empty()).map(|q| q.trim().to_string());
    let (rows, cut) = match crate::insights::senders(&web.gateway, &page.principal, &range, q.clone()).await {
        Ok(r) => r,
        Err(e) => return api_error_page(e),
    };
    let shown: Vec<_> = rows.iter().take(200).collect();
    render(
        &web,
        "sender_domain.html",
        context! { title => "Senders", page => "domains", principal => &page.principal, csrf => &page.csrf,
        range, rows => shown, count => rows.len(), cut, q, limit => crate::insights::SENDER_ROWS,
        keep => context! { q => q } },
    )
}

async fn one(
    State(web): State<AppState>,
    page: Page,
    Path(domain): Path<String>,
    Query(rp): Query<RangeParams>,
) -> Response {
    if let Err(r) = page.require_manager() {
        return r;
    }
    let range = match rp.resolve(mailsift_engine::unix_now(), "30d") {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a time range", &e),
    };
    let view = match crate::insights::sender(&web.gateway, &page.principal, &domain, &range).await {
        Ok(v) => v,
        Err(e) => return api_error_page(e),
    };
    render(
        &web,
        "sender_domain.html",
        context! { title => format!("Sender {}", view.row.domain), page => "domains", principal => &page.principal,
        csrf => &page.csrf, range, view, limit => crate::insights::SENDER_ROWS },
    )
}
