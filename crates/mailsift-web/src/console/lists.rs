//! An end user's own allowed and blocked senders: the entries for their address, which they add and remove
//! (never for another recipient, a domain or the organisation: the recipient is always the signed-in
//! address), and, read-only, the domain's and organisation's entries that also apply to their mail. An
//! allowed sender keeps the spoofing and DMARC guards, as "allow the sender" from a message does.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/console/lists", get(lists_page)).route("/console/lists/{op}", post(lists_change))
}

#[derive(Serialize)]
struct Row {
    id: i64,
    list: &'static str,
    sender: String,
    comment: Option<String>,
    last_matched: Option<i64>,
    /// Whose entry it is, in words, for the read-only ones.
    applies: String,
}

/// The signed-in person's mailbox, when their account name is an address.
fn mailbox(p: &Principal) -> Option<String> {
    p.name.contains('@').then(|| p.name.to_ascii_lowercase())
}

async fn lists_page(State(web): State<AppState>, page: Page, Query(f): Query<FlashParams>) -> Response {
    lists_render(&web, &page, f.flash, None).await
}

async fn lists_render(web: &AppState, page: &Page, flash: Option<String>, error: Option<String>) -> Response {
    let Some(me) = mailbox(&page.principal) else {
        return error_page(
            StatusCode::FORBIDDEN,
            "No mailbox",
            "This account has no mailbox address; administrators manage senders on the Policy page.",
        );
    };
    let db = web.db.clone();
    let my_domain = crate::auth::domain_of(&me);
    let who = me.clone();
    let entries = match blocking(move || Ok(db.list_entries().map_err(api::policy_error)?)).await {
        Ok(e) => e,
        Err(e) => return api_error_page(e),
    };
    let (mut own, mut others) = (Vec::new(), Vec::new());
    for e in entries {
        let list = if matches!(e.entry, mailsift_store::ListEntry::Allow(_)) { "allowed" } else { "blocked" };
        let comment = match &e.entry {
            mailsift_store::ListEntry::Allow(a) => a.comment.clone(),
            mailsift_store::ListEntry::Block(b) => b.comment.clone(),
        };
        let row = |applies: String| Row {
            id: e.id,
            list,
            sender: e.entry.sender().to_string(),
            comment: comment.clone(),
            last_matched: e.last_matched,
            applies,
        };
        match e.entry.recipient().map(str::to_ascii_lowercase) {
            Some(r) if r == who => own.push(row("you".into())),
            Some(r) if r == my_domain || r == format!("@{my_domain}") => {
                others.push(row(format!("everyone at {my_domain}")))
            }
            None => others.push(row("the whole organisation".into())),
            _ => {}
        }
    }
    render(
        web,
        "lists.html",
        context! { title => "Your senders", page => "lists", principal => &page.principal, csrf => &page.csrf,
        flash, error, me, own, others },
    )
}

async fn lists_change(State(web): State<AppState>, page: Page, Path(op): Path<String>, form: RawForm) -> Response {
    let f = match page.form(&form) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let Some(me) = mailbox(&page.principal) else {
        return error_page(StatusCode::FORBIDDEN, "No mailbox", "This account has no mailbox address.");
    };
    let db = web.db.clone();
    let result: Result<String, ApiError> = match op.as_str() {
        "add" => {
            let sender = f.get("sender").unwrap_or("").trim().to_string();
            let comment = format!("added by {me} on their senders page");
            let entry = match f.get("list").unwrap_or("allow") {
                // The recipient is the signed-in address, whatever else the form carries.
                "allow" => {
                    Ok(mailsift_store::ListEntry::Allow(mailsift_gateway::actions::allow_entry(&sender, &me, comment)))
                }
                "block" => api::parse_list_entry(api::ListRequest {
                    list: "block".into(),
                    entry: serde_json::json!({ "sender": sender, "recipient": me, "comment": comment }),
                }),
                other => Err(ApiError::bad_request(format!("list {other:?}: allow or block"))),
            };
            match entry {
                Ok(_) if sender.is_empty() => Err(ApiError::bad_request("give a sender: an address or @domain")),
                Ok(entry) => blocking(move || db.list_add(entry).map_err(api::policy_error))
                    .await
                    .map(|_| format!("{sender} added")),
                Err(e) => Err(e),
            }
        }
        "remove" => {
            let id: i64 = f.get("id").and_then(|i| i.parse().ok()).unwrap_or(-1);
            let who = me.clone();
            blocking(move || {
                let entry = db.list_entries().map_err(api::policy_error)?.into_iter().find(|e| e.id == id);
                match entry {
                    Some(e) if e.entry.recipient().is_some_and(|r| r.eq_ignore_ascii_case(&who)) => {
                        db.list_remove(id).map_err(api::policy_error)?;
                        Ok(format!("{} removed", e.entry.sender()))
                    }
                    _ => Err(ApiError::not_found(format!("no entry {id} of yours"))),
                }
            })
            .await
        }
        other => Err(ApiError::not_found(format!("no operation {other:?}"))),
    };
    match result {
        Ok(done) => back("/console/lists", &done),
        Err(e) => {
            let status = e.status;
            (status, lists_render(&web, &page, None, Some(e.message)).await).into_response()
        }
    }
}
