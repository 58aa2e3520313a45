//! Digest links: what a link will do, shown before the button's POST does it.

use super::quarantine::act;
use super::*;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/d/{token}", get(link_page).post(link_action))
}

fn link_error(e: crate::tokens::TokenError) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This link does not work",
        &format!("{e}. Open your quarantine from your newest digest."),
    )
}

fn link_purpose(token: &str, web: &AppState) -> Result<crate::tokens::Claims, Response> {
    let claims = web.signer.verify_any(token, mailsift_engine::unix_now()).map_err(link_error)?;
    if claims.purpose == Purpose::Api {
        return Err(link_error(crate::tokens::TokenError::WrongPurpose));
    }
    Ok(claims)
}

fn end_user(subject: &str) -> Principal {
    Principal { account_id: None, name: subject.to_ascii_lowercase(), role: Role::User, domains: Vec::new() }
}

async fn link_page(State(web): State<AppState>, Path(token): Path<String>) -> Response {
    let claims = match link_purpose(&token, &web) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let user = end_user(&claims.subject);
    if claims.purpose == Purpose::Digest {
        // The recipient's own quarantine, in a session limited to it. The link is usually clicked in webmail,
        // on another site: on that navigation, and on a redirect it leads to, browsers do not send a
        // SameSite=Strict cookie, so a redirect to the quarantine would land on the login page. This page
        // sets the cookie and moves on by itself (a refresh is a navigation from our own site, which sends
        // it), with a link for browsers that do not refresh.
        let id = match web.sessions.create(user, web.session_ttl()) {
            Ok((id, _)) => id,
            Err(e) => return api_error_page(ApiError::internal(e)),
        };
        let page = render(
            &web,
            "link.html",
            context! { title => "Your quarantine", heading => "Opening your quarantine", go_to => "/console/quarantine" },
        );
        return ([(header::SET_COOKIE, auth::session_cookie(&id, web.session_ttl(), web.config.tls))], page)
            .into_response();
    }
    let item = match service::quarantine_item(&web.gateway, &user, claims.id).await {
        Ok((item, _)) => item,
        Err(e) => return api_error_page(e),
    };
    let (heading, confirm) = match claims.purpose {
        Purpose::Release => ("Release this message?", "Release it to my inbox"),
        Purpose::Approve => ("Release this message and always accept its sender?", "Release and allow the sender"),
        _ => ("Block this sender?", "Block the sender and delete the message"),
    };
    let released = item.released_at.is_some();
    // A used link says so instead of asking again.
    let heading = if released { "This message was already released" } else { heading };
    let quarantine_link = crate::digest::link(&web, Purpose::Digest, 0, &claims.subject);
    render(
        &web,
        "link.html",
        context! { title => heading, heading, item, quarantine_link, action => format!("/d/{token}"),
        confirm => (!released).then_some(confirm), done => released.then_some("It was already released.") },
    )
}

async fn link_action(State(web): State<AppState>, Path(token): Path<String>) -> Response {
    let claims = match link_purpose(&token, &web) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let user = end_user(&claims.subject);
    let action = match claims.purpose {
        Purpose::Release => "release",
        Purpose::Approve => "approve",
        Purpose::Block => "block",
        _ => return Redirect::to(&format!("/d/{token}")).into_response(),
    };
    web.metrics.link_actions.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let by = format!("{} (digest link)", claims.subject);
    let quarantine_link = crate::digest::link(&web, Purpose::Digest, 0, &claims.subject);
    match act(&web, &user, claims.id, action, &by).await {
        Ok(done) => render(&web, "link.html", context! { title => "Done", heading => "Done", done, quarantine_link }),
        Err(e) => (
            e.status,
            render(
                &web,
                "link.html",
                context! { title => "Not done", heading => "Not done", error => e.message, quarantine_link },
            ),
        )
            .into_response(),
    }
}
