//! The quarantine: the list, one message, actions on one or many.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/console/quarantine", get(quarantine_page))
        .route("/console/quarantine/bulk", post(quarantine_bulk))
        .route("/console/quarantine/{id}", get(quarantine_item_page))
        .route("/console/quarantine/{id}/{action}", post(quarantine_action))
}

/// What a person reads beside a quarantined message: why it was held and whether its sender is verified,
/// in words (from the log row's symbols), and when the signed-in person reported it as not spam.
#[derive(Serialize)]
struct Explained {
    why: Vec<String>,
    auth: crate::words::AuthWords,
    reported: Option<i64>,
}

async fn explain(web: &AppState, p: &Principal, items: &[mailsift_store::QuarantineItem]) -> BTreeMap<i64, Explained> {
    let gateway = web.gateway.clone();
    let who = p.name.clone();
    let items: Vec<_> = items
        .iter()
        .map(|i| (i.id, i.reference_id.clone(), i.reason.clone(), i.from_header.clone().or(i.mail_from.clone())))
        .collect();
    let done = blocking(move || {
        let state = gateway.state();
        let registry = state.engine.registry();
        let ids: Vec<i64> = items.iter().map(|i| i.0).collect();
        let reported = crate::insights::reported_by(&gateway, &who, &ids).unwrap_or_default();
        let mut out = BTreeMap::new();
        for (id, reference, reason, from) in items {
            let q = mailsift_store::LogQuery { reference_id: Some(reference), limit: 1, ..Default::default() };
            let symbols = gateway.db.log_search(&q)?.into_iter().next().map(|e| e.symbols).unwrap_or_default();
            let domain = from.as_deref().and_then(crate::words::domain_of);
            // In plain words: the quarantine is where end users read it (administrators have the symbols on
            // the message's page).
            let plain = |n: &str| registry.by_name(n).map(|d| crate::words::plain(&d.name, d.group).to_string());
            let why = crate::words::why(&symbols, &reason, plain, 3);
            let auth = crate::words::auth(&symbols, domain.as_deref());
            out.insert(id, Explained { why, auth, reported: reported.get(&id).copied() });
        }
        Ok(out)
    })
    .await;
    done.unwrap_or_default()
}

async fn quarantine_page(
    State(web): State<AppState>,
    page: Page,
    Query(p): Query<QuarantineParams>,
    Query(f): Query<FlashParams>,
    Query(rp): Query<crate::range::RangeParams>,
) -> Response {
    let mut q = match p.query(&page.principal) {
        Ok(q) => q,
        Err(e) => return api_error_page(e),
    };
    // A time range narrows the list when one is asked for; without one, everything held is listed.
    let asked = rp.range.is_some() || rp.from.is_some() || rp.to.is_some();
    let range = match rp.resolve(mailsift_engine::unix_now(), "30d") {
        Ok(r) => r,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Not a time range", &e),
    };
    if asked {
        q.since = Some(range.since);
        q.until = Some(range.until - 1);
    }
    let db = web.db.clone();
    let items = match blocking(move || Ok(db.quarantine_list(&q)?)).await {
        Ok(i) => i,
        Err(e) => return api_error_page(e),
    };
    let explained = explain(&web, &page.principal, &items).await;
    let explained: BTreeMap<String, Explained> = explained.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    render(
        &web,
        "quarantine.html",
        context! { title => "Quarantine", page => "quarantine", principal => &page.principal, csrf => &page.csrf, flash => f.flash,
        items, explained, range, asked, keep => context! { recipient => p.recipient, sender => p.sender, subject => p.subject },
        q => context! { recipient => p.recipient, sender => p.sender, subject => p.subject, all => p.all } },
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
    let text = service::preview(&web.gateway, &raw).1;
    let headers = service::raw_headers(&raw);
    let explained = explain(&web, &page.principal, std::slice::from_ref(&item)).await.remove(&item.id);
    // Where an administrator decides to release, the diagnosis and what each fix still lets through.
    let (diagnosis, category, fixes) = if page.principal.is_manager() {
        super::log::diagnosis_context(&web, &page.principal, &item.reference_id).await
    } else {
        (None, None, Vec::new())
    };
    let back = format!("/console/quarantine/{}", item.id);
    let quarantine_id = item.id;
    render(
        &web,
        "quarantine_item.html",
        context! { title => "Quarantined message", page => "quarantine", principal => &page.principal, csrf => &page.csrf,
        flash => f.flash, item, headers, text, explained, diagnosis, category, fixes, back, quarantine_id },
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
