//! The quarantine: the list, one message, actions on one or many.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/quarantine", get(quarantine_page))
        .route("/console/quarantine/bulk", post(quarantine_bulk))
        .route("/console/quarantine/{id}", get(quarantine_item_page))
        .route("/console/quarantine/{id}/{action}", post(quarantine_action))
}

async fn quarantine_page(
    State(web): State<AppState>,
    page: Page,
    Query(p): Query<QuarantineParams>,
    Query(f): Query<FlashParams>,
) -> Response {
    let q = match p.query(&page.principal) {
        Ok(q) => q,
        Err(e) => return api_error_page(e),
    };
    let db = web.db.clone();
    let items = match blocking(move || Ok(db.quarantine_list(&q)?)).await {
        Ok(i) => i,
        Err(e) => return api_error_page(e),
    };
    render(
        &web,
        "quarantine.html",
        context! { title => "Quarantine", page => "quarantine", principal => &page.principal, csrf => &page.csrf, flash => f.flash,
        items, q => context! { recipient => p.recipient, sender => p.sender, subject => p.subject, all => p.all } },
    )
}

async fn quarantine_item_page(
    State(web): State<AppState>,
    page: Page,
    Path(id): Path<i64>,
    Query(f): Query<FlashParams>,
) -> Response {
    let (item, raw) = match service::quarantine_item(&web.gateway, &page.principal, id).await {
        Ok(x) => x,
        Err(e) => return api_error_page(e),
    };
    let (headers, text) = service::preview(&web.gateway, &raw);
    render(
        &web,
        "quarantine_item.html",
        context! { title => "Quarantined message", page => "quarantine", principal => &page.principal, csrf => &page.csrf,
        flash => f.flash, item, headers, text },
    )
}

/// One action on one item, shared by the console's buttons and digest links.
pub(super) async fn act(web: &AppState, p: &Principal, id: i64, action: &str, by: &str) -> Result<String, ApiError> {
    Ok(service::act_on(&web.gateway, p, id, QuarantineAction::parse(action)?, by).await?)
}

async fn quarantine_action(
    State(web): State<AppState>,
    page: Page,
    Path((id, action)): Path<(i64, String)>,
    form: RawForm,
) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    match act(&web, &page.principal, id, &action, &page.principal.name).await {
        Ok(done) => {
            let default = if action == "delete" || action == "block" {
                "/console/quarantine".to_string()
            } else {
                format!("/console/quarantine/{id}")
            };
            back(f.get("back").unwrap_or(&default), &format!("{id}: {done}"))
        }
        Err(e) => api_error_page(e),
    }
}

async fn quarantine_bulk(State(web): State<AppState>, page: Page, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let ids: Vec<i64> = f.all("ids").iter().filter_map(|s| s.parse().ok()).collect();
    let action = f.get("action").unwrap_or("");
    if ids.is_empty() {
        return back("/console/quarantine", "nothing selected");
    }
    match service::bulk(&web.gateway, &page.principal, &ids, action).await {
        Ok(results) => {
            let ok = results.iter().filter(|r| r.is_ok()).count();
            let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
            let mut msg = format!("{action}: {ok} done");
            if !failed.is_empty() {
                msg.push_str(&format!(", {} failed ({})", failed.len(), failed.join("; ")));
            }
            back("/console/quarantine", &msg)
        }
        Err(e) => api_error_page(e),
    }
}
