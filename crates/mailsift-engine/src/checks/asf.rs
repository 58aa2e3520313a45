//! Additional Spam Filtering: the administrator's switches, modelled on Microsoft's filtering service.
//!
//! Each option is Off, On or Test. Test reports the hit in `X-Mailsift-ASF` but adds nothing to the score, so
//! an administrator can see what an option would catch before turning it on. As in that service, four options
//! raise the score (remote image links, numeric IPs, other ports, .biz/.info) and the rest mark the message
//! high-confidence spam. Because administrators forget they switched one on, every hit is named in the
//! verdict and the explanation, with the option's configuration key as the remedy.

use super::Ctx;
use crate::config::{AsfConfig, AsfMode};
use crate::evidence::SpfResult;
use crate::message::html::starts_with_ignore_case;
use crate::symbols::{AsfEffect, Group::Asf, Hits, Sym, SymbolSpec};

const fn asf(name: Sym, weight: f64, effect: AsfEffect, description: &'static str, remedy: &'static str) -> SymbolSpec {
    SymbolSpec { asf: Some(effect), ..SymbolSpec::of(name, Asf, weight, description, remedy) }
}
use AsfEffect::{HighConfidenceSpam as Hc, IncreaseScore as Inc};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        ASF_IMAGE_LINKS_REMOTE,
        ASF_NUMERIC_IP_URL,
        ASF_URL_OTHER_PORT,
        ASF_URL_BIZ_INFO,
        ASF_EMPTY_MESSAGE,
        ASF_JS_VBS,
        ASF_FRAME_IFRAME,
        ASF_OBJECT_TAGS,
        ASF_EMBED_TAGS,
        ASF_FORM_TAGS,
        ASF_WEB_BUGS,
        ASF_SENSITIVE_WORDS,
        ASF_SPF_HARD_FAIL,
        ASF_NDR_BACKSCATTER,
        ASF_BULK_MAIL,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    asf(sym::ASF_IMAGE_LINKS_REMOTE, 2.0, Inc, "ASF option: images are loaded from a remote web site.",
        "Set asf.image_links_to_remote_sites = \"off\" (or \"test\") if newsletters you want are caught."),
    asf(sym::ASF_NUMERIC_IP_URL, 2.0, Inc, "ASF option: a link points to a numeric IP address.",
        "Set asf.numeric_ip_in_url = \"off\" (or \"test\") if legitimate mail links to IP addresses."),
    asf(sym::ASF_URL_OTHER_PORT, 2.0, Inc, "ASF option: a link points to a port other than 80 or 443.",
        "Set asf.url_redirect_to_other_port = \"off\" (or \"test\") if legitimate mail links to such ports."),
    asf(sym::ASF_URL_BIZ_INFO, 2.0, Inc, "ASF option: a link points to a .biz or .info web site.",
        "Set asf.url_to_biz_or_info = \"off\" (or \"test\") if legitimate senders use those domains."),
    asf(sym::ASF_EMPTY_MESSAGE, 10.0, Hc, "ASF option: the message has no subject, no body and no attachment.",
        "Set asf.empty_messages = \"off\" (or \"test\") if a device or monitor sends empty mail."),
    asf(sym::ASF_JS_VBS, 10.0, Hc, "ASF option: the HTML contains JavaScript or VBScript.",
        "Set asf.javascript_or_vbscript_in_html = \"off\" (or \"test\"), or add a filter rule for this sender."),
    asf(sym::ASF_FRAME_IFRAME, 10.0, Hc, "ASF option: the HTML contains a frame or iframe tag.",
        "Set asf.frame_or_iframe_tags = \"off\" (or \"test\"), or add a filter rule for this sender."),
    asf(sym::ASF_OBJECT_TAGS, 10.0, Hc, "ASF option: the HTML contains an object tag.",
        "Set asf.object_tags = \"off\" (or \"test\"), or add a filter rule for this sender."),
    asf(sym::ASF_EMBED_TAGS, 10.0, Hc, "ASF option: the HTML contains an embed tag.",
        "Set asf.embed_tags = \"off\" (or \"test\"), or add a filter rule for this sender."),
    asf(sym::ASF_FORM_TAGS, 10.0, Hc, "ASF option: the HTML contains a form.",
        "Set asf.form_tags = \"off\" (or \"test\"); surveys and newsletters often contain forms."),
    asf(sym::ASF_WEB_BUGS, 10.0, Hc, "ASF option: the HTML contains a web bug (a tiny remote image that reports the message was read).",
        "Set asf.web_bugs = \"off\" (or \"test\"); most newsletters carry such tracking images."),
    asf(sym::ASF_SENSITIVE_WORDS, 10.0, Hc, "ASF option: the message contains a word from the sensitive word list.",
        "Set asf.sensitive_word_list = \"off\" (or \"test\"), or edit asf.sensitive_words."),
    asf(sym::ASF_SPF_HARD_FAIL, 10.0, Hc, "ASF option: the sender's SPF record says this server may not send for it (hard fail).",
        "Ask the sender to add this server to their SPF record; or set asf.spf_hard_fail = \"off\"."),
    asf(sym::ASF_NDR_BACKSCATTER, 10.0, Hc, "ASF option: a bounce for a message our organisation never sent.",
        "Set asf.ndr_backscatter = \"off\" if real bounces are caught; check organisation.domains lists all your domains."),
    asf(sym::ASF_BULK_MAIL, 2.0, Inc, "ASF option: the message is bulk mail (newsletter or marketing).",
        "Set asf.bulk_mail = \"off\" (or \"test\") if your users want newsletters."),
];

/// The mode that governs an ASF symbol.
pub fn mode_of(symbol: &str, c: &AsfConfig) -> AsfMode {
    match symbol {
        "ASF_IMAGE_LINKS_REMOTE" => c.image_links_to_remote_sites,
        "ASF_NUMERIC_IP_URL" => c.numeric_ip_in_url,
        "ASF_URL_OTHER_PORT" => c.url_redirect_to_other_port,
        "ASF_URL_BIZ_INFO" => c.url_to_biz_or_info,
        "ASF_EMPTY_MESSAGE" => c.empty_messages,
        "ASF_JS_VBS" => c.javascript_or_vbscript_in_html,
        "ASF_FRAME_IFRAME" => c.frame_or_iframe_tags,
        "ASF_OBJECT_TAGS" => c.object_tags,
        "ASF_EMBED_TAGS" => c.embed_tags,
        "ASF_FORM_TAGS" => c.form_tags,
        "ASF_WEB_BUGS" => c.web_bugs,
        "ASF_SENSITIVE_WORDS" => c.sensitive_word_list,
        "ASF_SPF_HARD_FAIL" => c.spf_hard_fail,
        "ASF_NDR_BACKSCATTER" => c.ndr_backscatter,
        "ASF_BULK_MAIL" => c.bulk_mail,
        _ => AsfMode::Off,
    }
}

/// The configuration key of the option behind a symbol, for explanations.
pub fn option_key(symbol: &str) -> Option<&'static str> {
    Some(match symbol {
        "ASF_IMAGE_LINKS_REMOTE" => "image_links_to_remote_sites",
        "ASF_NUMERIC_IP_URL" => "numeric_ip_in_url",
        "ASF_URL_OTHER_PORT" => "url_redirect_to_other_port",
        "ASF_URL_BIZ_INFO" => "url_to_biz_or_info",
        "ASF_EMPTY_MESSAGE" => "empty_messages",
        "ASF_JS_VBS" => "javascript_or_vbscript_in_html",
        "ASF_FRAME_IFRAME" => "frame_or_iframe_tags",
        "ASF_OBJECT_TAGS" => "object_tags",
        "ASF_EMBED_TAGS" => "embed_tags",
        "ASF_FORM_TAGS" => "form_tags",
        "ASF_WEB_BUGS" => "web_bugs",
        "ASF_SENSITIVE_WORDS" => "sensitive_word_list",
        "ASF_SPF_HARD_FAIL" => "spf_hard_fail",
        "ASF_NDR_BACKSCATTER" => "ndr_backscatter",
        "ASF_BULK_MAIL" => "bulk_mail",
        _ => return None,
    })
}

/// Sexually explicit terms used when `asf.sensitive_words` is empty.
pub const DEFAULT_SENSITIVE_WORDS: &[&str] = &[
    "porn",
    "xxx",
    "hardcore",
    "nude teens",
    "live sex",
    "sex cam",
    "horny",
    "erotic",
    "fetish",
    "orgasm",
    "blowjob",
    "penis enlargement",
    "adult videos",
    "barely legal",
    "naked girls",
];

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let c = &ctx.config.asf;
    let m = ctx.message;
    let on = |mode: AsfMode| mode != AsfMode::Off;
    if on(c.image_links_to_remote_sites) {
        if let Some(img) = m.html.iter().flat_map(|v| &v.images).find(|i| is_remote(&i.src)) {
            hits.hit(sym::ASF_IMAGE_LINKS_REMOTE, img.src.chars().take(80).collect::<String>());
        }
    }
    if on(c.numeric_ip_in_url) {
        if let Some(u) = m.urls.iter().find(|u| u.ip.is_some()) {
            hits.hit(sym::ASF_NUMERIC_IP_URL, u.host.clone());
        }
    }
    if on(c.url_redirect_to_other_port) {
        if let Some(u) = m.urls.iter().find(|u| u.port.is_some_and(|p| p != 80 && p != 443)) {
            hits.hit(sym::ASF_URL_OTHER_PORT, format!("{}:{}", u.host, u.port.unwrap_or(0)));
        }
    }
    if on(c.url_to_biz_or_info) {
        if let Some(u) = m.urls.iter().find(|u| u.tld == "biz" || u.tld == "info") {
            hits.hit(sym::ASF_URL_BIZ_INFO, u.domain.clone());
        }
    }
    if on(c.empty_messages)
        && m.subject_str().trim().is_empty()
        && m.body_text.trim().is_empty()
        && m.attachments.is_empty()
    {
        hits.hit(sym::ASF_EMPTY_MESSAGE, "");
    }
    let html = &m.html;
    if on(c.javascript_or_vbscript_in_html) && html.iter().any(|v| v.scripts > 0 || v.script_handlers > 0) {
        hits.hit(sym::ASF_JS_VBS, if html.iter().any(|v| v.vbscript) { "vbscript" } else { "javascript" });
    }
    if on(c.frame_or_iframe_tags) && html.iter().any(|v| v.iframes > 0 || v.frames > 0) {
        hits.hit(sym::ASF_FRAME_IFRAME, "");
    }
    if on(c.object_tags) && html.iter().any(|v| v.objects > 0) {
        hits.hit(sym::ASF_OBJECT_TAGS, "");
    }
    if on(c.embed_tags) && html.iter().any(|v| v.embeds > 0) {
        hits.hit(sym::ASF_EMBED_TAGS, "");
    }
    if on(c.form_tags) && html.iter().any(|v| v.forms > 0) {
        hits.hit(sym::ASF_FORM_TAGS, "");
    }
    if on(c.web_bugs) {
        let bug = html
            .iter()
            .flat_map(|v| &v.images)
            .find(|i| is_remote(&i.src) && i.width.is_some_and(|w| w <= 2) && i.height.is_some_and(|h| h <= 2));
        if let Some(b) = bug {
            hits.hit(sym::ASF_WEB_BUGS, b.src.chars().take(80).collect::<String>());
        }
    }
    if on(c.sensitive_word_list) {
        if let Some(w) = sensitive_word(ctx) {
            hits.hit(sym::ASF_SENSITIVE_WORDS, w);
        }
    }
    // Our own domain's SPF failing from a server we list locally is our DNS to fix, not the sender's
    // practice: the auth check names it (OWN_SERVER_NOT_IN_DNS) and this option leaves it alone.
    if on(c.spf_hard_fail) && ctx.evidence.spf == Some(SpfResult::Fail) && !super::auth::own_spf_excused(ctx) {
        hits.hit(sym::ASF_SPF_HARD_FAIL, ctx.envelope.mail_from.clone().unwrap_or_default());
    }
    if on(c.ndr_backscatter) {
        if let Some(detail) = backscatter(ctx) {
            hits.hit(sym::ASF_NDR_BACKSCATTER, detail);
        }
    }
    if on(c.bulk_mail) {
        let signs = bulk_signs(ctx);
        if signs.len() >= 2 {
            hits.hit(sym::ASF_BULK_MAIL, signs.join(", "));
        }
    }
}

fn is_remote(src: &str) -> bool {
    let s = src.trim_start();
    starts_with_ignore_case(s, "http://") || starts_with_ignore_case(s, "https://")
}

fn sensitive_word(ctx: &Ctx<'_, '_>) -> Option<String> {
    let words: Vec<&str> = if ctx.config.asf.sensitive_words.is_empty() {
        DEFAULT_SENSITIVE_WORDS.to_vec()
    } else {
        ctx.config.asf.sensitive_words.iter().map(String::as_str).collect()
    };
    let subject = ctx.message.subject_str().to_lowercase();
    let body = ctx.message.body_text.to_lowercase();
    words
        .into_iter()
        .find(|w| {
            let w = w.to_lowercase();
            contains_word(&subject, &w) || contains_word(&body, &w)
        })
        .map(str::to_string)
}

fn contains_word(hay: &str, word: &str) -> bool {
    let mut start = 0;
    while let Some(i) = hay[start..].find(word) {
        let p = start + i;
        let before = hay[..p].chars().next_back().is_none_or(|c| !c.is_alphanumeric());
        let after = hay[p + word.len()..].chars().next().is_none_or(|c| !c.is_alphanumeric());
        if before && after {
            return true;
        }
        start = p + word.len().max(1);
    }
    false
}

/// A bounce whose returned original does not come from any of our domains: we never sent it, so someone
/// forged our address (backscatter). Needs `organisation.domains`; without it nothing is judged.
fn backscatter(ctx: &Ctx<'_, '_>) -> Option<String> {
    let m = ctx.message;
    let ours = &ctx.config.organisation.domains;
    if ours.is_empty() {
        return None;
    }
    let null_sender = ctx.envelope.mail_from.as_deref().is_some_and(|s| s.is_empty() || s == "<>");
    let from_daemon = m.from.as_ref().is_some_and(|f| {
        let local = f.address.split('@').next().unwrap_or("").to_ascii_lowercase();
        local == "mailer-daemon" || local == "postmaster"
    });
    let report =
        m.header("Content-Type").is_some_and(|c| c.to_ascii_lowercase().contains("report-type=delivery-status"));
    let subject = m.subject_str().to_ascii_lowercase();
    let bounce_subject = ["undeliver", "delivery status", "failure notice", "returned mail", "delivery failure"]
        .iter()
        .any(|s| subject.contains(s));
    if !(null_sender || from_daemon) || !(report || bounce_subject) {
        return None;
    }
    // The returned original's headers are in the body or in a message/rfc822(-headers) part.
    let text = String::from_utf8_lossy(m.raw).to_ascii_lowercase();
    let original_from = text
        .lines()
        .skip_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("from:") || l.starts_with("message-id:") || l.starts_with("return-path:"))
        .any(|l| ours.iter().any(|d| l.contains(&format!("@{}", d.to_ascii_lowercase()))));
    if original_from {
        None
    } else {
        Some(format!("bounce to {}", ctx.envelope.rcpt_to.first().cloned().unwrap_or_default()))
    }
}

fn bulk_signs(ctx: &Ctx<'_, '_>) -> Vec<&'static str> {
    let m = ctx.message;
    let mut signs = Vec::new();
    if m.header("Precedence").is_some_and(|p| {
        let p = p.trim().to_ascii_lowercase();
        p == "bulk" || p == "junk"
    }) {
        signs.push("Precedence: bulk");
    }
    if m.has_header("List-Unsubscribe") && !m.has_header("List-Id") {
        signs.push("List-Unsubscribe");
    }
    const ESP_HEADERS: &[&str] =
        &["X-Campaign", "X-CampaignID", "X-Mailgun-Tag", "X-SG-EID", "X-MC-User", "X-Mailer-RecptId", "Feedback-ID"];
    if ESP_HEADERS.iter().any(|h| m.has_header(h)) {
        signs.push("bulk-mailer header");
    }
    if m.urls.len() >= 15 {
        signs.push("many links");
    }
    signs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_boundaries() {
        assert!(contains_word("watch porn now", "porn"));
        assert!(!contains_word("pornography", "porn"));
        assert!(!contains_word("sexxxy", "xxx"));
    }
}
