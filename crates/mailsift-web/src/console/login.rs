//! Login and logout.

use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/login", get(login_page).post(login_submit)).route("/logout", post(logout))
}

async fn login_page(State(web): State<AppState>, Query(p): Query<FlashParams>) -> Response {
    render(&web, "login.html", context! { title => "Log in", next => p.next.unwrap_or_default(), flash => p.flash })
}

async fn login_submit(State(web): State<AppState>, Extension(Peer(peer)): Extension<Peer>, form: RawForm) -> Response {
    let f = Fields::parse(&form);
    let (name, password) = (f.get("name").unwrap_or(""), f.all("password").first().copied().unwrap_or(""));
    match api::check_login(&web, peer.ip(), name, password).await {
        Ok(principal) => {
            let id = match web.sessions.create(principal.clone(), web.session_ttl()) {
                Ok((id, _)) => id,
                Err(e) => return api_error_page(ApiError::internal(e)),
            };
            // Only a page of this console: anything else (another site, however disguised) goes home.
            let next = f.get("next").and_then(safe_redirect);
            let home = if principal.role == Role::User { "/console/quarantine" } else { "/console" };
            (
                [(header::SET_COOKIE, auth::session_cookie(&id, web.session_ttl(), web.config.tls))],
                Redirect::to(next.unwrap_or(home)),
            )
                .into_response()
        }
        Err(e) => {
            let page = render(
                &web,
                "login.html",
                context! { title => "Log in", error => e.message, next => f.get("next").unwrap_or("") },
            );
            (e.status, page).into_response()
        }
    }
}

async fn logout(State(web): State<AppState>, page: Page, headers: axum::http::HeaderMap, form: RawForm) -> Response {
    if let Err(r) = page.form(&form) {
        return r;
    }
    if let Some(id) =
        headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).and_then(|h| auth::cookie(h, auth::SESSION_COOKIE))
    {
        if let Err(e) = web.sessions.remove(id) {
            return api_error_page(ApiError::internal(e));
        }
    }
    ([(header::SET_COOKIE, auth::clear_cookie(web.config.tls))], Redirect::to("/login")).into_response()
}
