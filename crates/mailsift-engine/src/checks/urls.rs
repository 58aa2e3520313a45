//! URL tricks: links that show one domain and go to another, numeric and disguised hosts, odd ports,
//! shorteners and open redirects, the user-info trick, risky top-level domains, and link farms.
//!
//! Phishing detection compares registrable domains (public-suffix aware), so `www.bank.example` shown for
//! `login.bank.example` is fine while `www.bank.example` shown for `bank-example.top` is not. Deliberately
//! not here: looking URLs up in DNS blocklists (the evidence stage does that).

use rustc_hash::FxHashSet;

use super::Ctx;
use crate::message::urls::{self, UrlSource};
use crate::symbols::{Group::Urls, Hits, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        PHISHING_LINK_MISMATCH,
        URL_NUMERIC_IP,
        URL_OBSCURED_IP,
        URL_NONSTANDARD_PORT,
        URL_SHORTENER,
        URL_REDIRECTOR,
        URL_USERINFO_TRICK,
        URL_RISKY_TLD,
        URL_MANY_DOMAINS,
        URL_DEFANGED,
        URL_FREE_HOSTING,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(sym::PHISHING_LINK_MISMATCH, Urls, 3.5,
        "A link's visible text shows one web address but the link goes to another domain.",
        "If the sender is legitimate, ask them to show the real address in link texts (tracking domains cause this); allow the sender meanwhile."),
    SymbolSpec::of(sym::URL_NUMERIC_IP, Urls, 2.7, "A link points to a numeric IP address instead of a name.",
        "Legitimate services use names; ask the sender to link by host name."),
    SymbolSpec::of(sym::URL_OBSCURED_IP, Urls, 3.0, "A link hides an IP address in decimal, hex or octal form.",
        "Only used to evade filters; no legitimate sender does this."),
    SymbolSpec::of(sym::URL_NONSTANDARD_PORT, Urls, 0.9, "A web link points to a port other than 80 or 443.",
        "Common for self-hosted services; allow the sender if legitimate."),
    // Low: people and newsletters paste shortened links as readily as spammers do (a university's mail server
    // saw it on as much ham as spam; on the SpamAssassin corpus's TRAIN half 4 ham, no spam). It adds to other
    // evidence; alone it says nothing. Only in a message of few link domains (`SHORTENER_MAX_DOMAINS`).
    SymbolSpec::of(sym::URL_SHORTENER, Urls, 0.2, "A link goes through a URL shortener that hides its destination.",
        "Ask the sender to link to the real destination."),
    // Low: newsletters count clicks through their mailing house's redirector, and services that take an address
    // as input (a translator, an accessibility checker) have the same shape; measured on the SpamAssassin
    // corpus's TRAIN half it fired on 11 ham and 6 spam even after leaving redirects into the sender's own
    // domain alone, and on a TREC 2007 sample 15 ham and 1 spam: no points, kept to explain (as URL_MANY_DOMAINS,
    // 13/12 and 19/1 there).
    SymbolSpec::of(sym::URL_REDIRECTOR, Urls, 0.0, "A link goes through an open redirect to another web address.",
        "Ask the sender to link to the destination directly."),
    SymbolSpec::of(sym::URL_USERINFO_TRICK, Urls, 3.6, "A link puts a host name before '@', so the reader sees the wrong site.",
        "Only used to deceive; no legitimate sender writes links like this."),
    SymbolSpec::of(sym::URL_RISKY_TLD, Urls, 0.3, "A link points to a top-level domain much abused by spammers.",
        "Allow the sender if their site really lives there."),
    SymbolSpec::of(sym::URL_MANY_DOMAINS, Urls, 0.0, "The message links to ten or more different domains.",
        "Newsletters can do this; allow the sender if legitimate."),
    // Phishing pages live where anyone can publish one in minutes and nobody checks: a bucket of a cloud
    // store serving an HTML page, a free app or static-site host, an IPFS gateway. On 7,909 real phishing
    // messages of 2022-2026 (rf-peixoto/phishing_pot) a link went to one in 10% (a Google Cloud Storage page in
    // 419, a Cloud Run service in 294); no message of the SpamAssassin corpus or the 2010 list posts links to
    // one (they did not exist). Companies do host pages there too, so it is weak evidence, added to the rest.
    SymbolSpec::of(sym::URL_FREE_HOSTING, Urls, 1.5,
        "A link opens a page on shared cloud storage or a free hosting service, where anyone can publish one in minutes (phishing pages' usual home).",
        "If a sender you trust hosts its pages there, allow the sender; ask them to use their own domain."),
    SymbolSpec::of(sym::URL_DEFANGED, Urls, 1.0, "A link is written with a disguised scheme such as hxxp://.",
        "Security reports do this on purpose; allow those senders."),
];

/// Top-level domains with a high share of abuse in public phishing and spam statistics.
const RISKY_TLDS: &[&str] = &[
    "biz",
    "info",
    "top",
    "xyz",
    "club",
    "work",
    "click",
    "loan",
    "gq",
    "tk",
    "ml",
    "cf",
    "ga",
    "buzz",
    "rest",
    "icu",
    "cyou",
    "monster",
    "cam",
    "country",
    "kim",
    "stream",
    "download",
    "racing",
    "win",
    "bid",
    "review",
    "date",
    "faith",
    "science",
    "party",
    "trade",
    "accountant",
    "men",
    "zip",
    "mov",
];

/// Hosts where anyone publishes a page under the service's name, for free and at once: free app and
/// static-site hosting, tunnels, IPFS gateways, a translation proxy that serves any page. Matched as the host
/// or a subdomain of it.
const FREE_HOSTS: &[&str] = &[
    "run.app",
    "web.app",
    "firebaseapp.com",
    "r2.dev",
    "pages.dev",
    "workers.dev",
    "trycloudflare.com",
    "ipfs.io",
    "dweb.link",
    "w3s.link",
    "cf-ipfs.com",
    "ngrok.io",
    "ngrok-free.app",
    "ngrok.app",
    "translate.goog",
    "000webhostapp.com",
    "glitch.me",
    "onrender.com",
    "repl.co",
    "netlify.app",
    "vercel.app",
    "webflow.io",
    "weebly.com",
    "wixsite.com",
    "azurewebsites.net",
    "web.core.windows.net",
];

/// Cloud object stores: a link into one counts when it opens a web page (an HTML file) from a bucket, not
/// when it downloads a file or shows a picture, which is what companies use them for.
const OBJECT_STORES: &[&str] =
    &["storage.googleapis.com", "firebasestorage.googleapis.com", "amazonaws.com", "blob.core.windows.net"];

/// Whether a link opens a page on a free hosting service or an HTML page in a cloud bucket.
fn free_hosting(u: &urls::UrlInfo) -> bool {
    let under = |suffixes: &[&str]| {
        suffixes.iter().any(|s| u.host == *s || u.host.strip_suffix(s).is_some_and(|rest| rest.ends_with('.')))
    };
    if under(FREE_HOSTS) {
        return true;
    }
    if !under(OBJECT_STORES) {
        return false;
    }
    let path = u.path_and_query.split(['?', '#']).next().unwrap_or("").to_ascii_lowercase();
    path.ends_with(".html") || path.ends_with(".htm") || path.ends_with(".shtml")
}

/// URL_RISKY_TLD fires when at least one in this many of the linked domains is under a risky top-level domain.
const RISKY_SHARE: usize = 5;

const SHORTENERS: &[&str] = &[
    "bit.ly",
    "tinyurl.com",
    "goo.gl",
    "t.co",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "bl.ink",
    "t.ly",
    "v.gd",
    "s.id",
    "qr.co",
    "lnkd.in",
    "x.co",
    "shorte.st",
    "adf.ly",
    "bitly.com",
];

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let m = ctx.message;
    let sender_domain = m.from.as_ref().map(|f| urls::registrable_domain(&f.domain)).unwrap_or_default();
    let mut domains = FxHashSet::default();
    // Domains the reader is sent to (not images), and those of them under a risky top-level domain.
    let mut linked = FxHashSet::default();
    let mut risky = FxHashSet::default();
    let mut shortened: Vec<&str> = Vec::new();
    for u in &m.urls {
        domains.insert(u.domain.as_str());
        if u.source != UrlSource::Image && u.ip.is_none() {
            linked.insert(u.domain.as_str());
            if RISKY_TLDS.contains(&u.tld.as_str()) {
                risky.insert(u.domain.as_str());
            }
        }
        if let Some(ip) = u.ip {
            if u.obscured_ip {
                hits.hit(sym::URL_OBSCURED_IP, u.host.clone());
            } else if u.source != UrlSource::Image {
                hits.hit(sym::URL_NUMERIC_IP, ip.to_string());
            }
        }
        if let Some(p) = u.port {
            if p != 80 && p != 443 && (u.scheme == "http" || u.scheme == "https") {
                hits.hit(sym::URL_NONSTANDARD_PORT, format!("{}:{}", u.host, p));
            }
        }
        if SHORTENERS.contains(&u.domain.as_str()) || SHORTENERS.contains(&u.host.as_str()) {
            shortened.push(u.host.as_str());
        }
        // A redirect into the sender's own domain is its click tracking (a mailing house counting clicks for
        // the shop that sent the newsletter), not a destination hidden from the reader.
        if redirect_target(u).is_some_and(|t| sender_domain.is_empty() || t != sender_domain) {
            hits.hit(sym::URL_REDIRECTOR, u.host.clone());
        }
        if let Some(ui) = &u.userinfo {
            if ui.contains('.') || ui.len() > 20 {
                hits.hit(sym::URL_USERINFO_TRICK, format!("{ui}@{}", u.host));
            }
        }
        if u.defanged {
            hits.hit(sym::URL_DEFANGED, u.host.clone());
        }
        if matches!(u.source, UrlSource::Href | UrlSource::Text) && u.ip.is_none() && free_hosting(u) {
            hits.hit(sym::URL_FREE_HOSTING, u.host.clone());
        }
    }
    // A shortened link among a digest's or a newsletter's many is a citation (a list post pointing at an
    // archive, a news alert at a story); as one of a short message's few links it hides where the reader is
    // sent, which is how phishing uses it. On the SpamAssassin corpus and two TREC 2007 samples 9 of the 11 ham
    // it fired on linked to six domains or more, against 184 of 1,144 phishing messages.
    if !shortened.is_empty() && linked.len() <= SHORTENER_MAX_DOMAINS {
        shortened.sort_unstable();
        shortened.dedup();
        hits.hit(sym::URL_SHORTENER, shortened.join(", "));
    }
    // Spam sends the reader to its own site, so a risky domain is most of what it links to; a newsletter or
    // digest that links to thirty sites will name a .biz or a .info among them by chance (on the SpamAssassin
    // corpus's TRAIN half the rule fired on 23 ham, all such, against 9 spam, when any one risky link counted;
    // with one in five, on 3 ham and the same 9 spam).
    if !risky.is_empty() && risky.len() * RISKY_SHARE >= linked.len() {
        let mut names: Vec<&str> = risky.iter().copied().collect();
        names.sort_unstable();
        hits.hit(sym::URL_RISKY_TLD, names.join(", "));
    }
    // Digests and list newsletters link to many sites by nature (see `Message::is_list_post`): on the SpamAssassin TRAIN
    // half, 37 ham against 14 spam before list posts were left alone, 13 against 12 after.
    if domains.len() >= 10 && !m.is_list_post() {
        hits.hit(sym::URL_MANY_DOMAINS, format!("{} domains", domains.len()));
    }
    // A link into the From: domain used to be excused as the sender's click tracking. It is no excuse:
    // whoever writes the message chooses its From: domain, and a phisher who sends from his own look-alike
    // domain links to it too ("www.paypal.com" going to paypa1-secure.example, From: service@paypa1-secure.example).
    // It is a weaker sign, though: newsletters that show a partner's site and count the click on their own
    // host have that shape too (with no excuse at all, the rule fired on 15 more of the SpamAssassin corpus's
    // TRAIN ham, all hard-ham newsletters, and 3 more spam). So it scores half the weight; a mismatch into
    // any other domain scores in full (a symbol hit again keeps its strongest share).
    for v in &m.html {
        for l in &v.links {
            if let Some((detail, into_sender)) = phishing_mismatch(&l.text, &l.href, &sender_domain) {
                let share = if into_sender { OWN_DOMAIN_SHARE } else { 1.0 };
                hits.hit_scaled(sym::PHISHING_LINK_MISMATCH, share, detail);
            }
        }
    }
}

/// URL_SHORTENER counts in a message that links to at most this many domains (see `check`).
const SHORTENER_MAX_DOMAINS: usize = 5;

/// The share of PHISHING_LINK_MISMATCH's weight a mismatched link into the From: domain scores.
const OWN_DOMAIN_SHARE: f64 = 0.5;

/// When a link's query carries another absolute URL (`?url=http://...`), the shape of an open redirect, the
/// registrable domain it leads to (when that is another domain than the link's own).
fn redirect_target(u: &urls::UrlInfo) -> Option<String> {
    let (_, q) = u.path_and_query.split_once('?')?;
    let lower = q.to_ascii_lowercase();
    let i = lower.find("http%3a%2f%2f").or_else(|| lower.find("https%3a%2f%2f")).or_else(|| lower.find("=http"))?;
    let rest = q[i..].trim_start_matches('=');
    let decoded = rest.replace("%3A", ":").replace("%3a", ":").replace("%2F", "/").replace("%2f", "/");
    urls::parse(&decoded, UrlSource::Other).map(|t| t.domain).filter(|d| *d != u.domain)
}

/// When the visible text of a link is itself a web address (or a bare domain) in another registrable domain
/// than the link's target, returns a description and whether the target is in `sender_domain` (the From:
/// domain's registrable domain, empty when unknown).
fn phishing_mismatch(text: &str, href: &str, sender_domain: &str) -> Option<(String, bool)> {
    let text = text.trim();
    if text.is_empty() || text.len() > 200 || text.contains(' ') {
        return None;
    }
    let target = urls::parse(href, UrlSource::Href)?;
    let shown = if text.contains("://") || text.to_ascii_lowercase().starts_with("www.") {
        urls::parse(text, UrlSource::Text)?
    } else {
        // A bare "paypal.com" or "secure.bank.example/login" counts when it has a known public suffix.
        let host = text.split(['/', '?']).next()?;
        if !host.contains('.') || host.starts_with('.') || host.ends_with('.') {
            return None;
        }
        let lower = host.to_ascii_lowercase();
        let known = psl::suffix(lower.as_bytes()).is_some_and(|s| s.is_known());
        if !known || lower.chars().any(|c| !(c.is_alphanumeric() || c == '.' || c == '-')) {
            return None;
        }
        urls::parse(&format!("http://{text}"), UrlSource::Text)?
    };
    if shown.domain == target.domain {
        return None;
    }
    let into_sender = !sender_domain.is_empty() && target.domain == sender_domain;
    let from = if into_sender { " (the From: domain)" } else { "" };
    Some((format!("shows {} goes to {}{from}", shown.host, target.host), into_sender))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_needs_different_registrable_domains() {
        assert_eq!(phishing_mismatch("www.paypal.com", "http://evil.example/login", "").map(|m| m.1), Some(false));
        assert!(phishing_mismatch("https://www.bank.co.uk/", "https://login.bank.co.uk/x", "").is_none());
        assert!(phishing_mismatch("paypal.com", "http://192.0.2.1/", "").is_some());
        assert!(phishing_mismatch("click here", "http://evil.example/", "").is_none());
        assert!(phishing_mismatch("file.txt", "http://evil.example/", "").is_none());
        // Into the From: domain: still a mismatch, marked as such.
        let own = phishing_mismatch("dilbert.com", "http://ummail4.unitedmedia.com/x", "unitedmedia.com");
        assert_eq!(own.map(|m| m.1), Some(true));
    }

    #[test]
    fn pages_on_free_hosting() {
        let hosted = |url: &str| free_hosting(&urls::parse(url, UrlSource::Href).unwrap());
        assert!(hosted("https://storage.googleapis.com/wbkbgjzz/1.html#abc"));
        assert!(hosted("https://n-a4qxna7jwq-rj.a.run.app/m/?tr=33a8"));
        assert!(hosted("https://bafybeih.ipfs.dweb.link/index.html"));
        assert!(hosted("https://mybucket.s3.eu-west-1.amazonaws.com/login/index.HTM"));
        // Files and pictures in a bucket, and names that only end like a host, are not pages there.
        assert!(!hosted("https://storage.googleapis.com/bucket/report-2024.pdf"));
        assert!(!hosted("https://s3.amazonaws.com/newsletter/header.png"));
        assert!(!hosted("https://notrun.app.example.com/"));
        assert!(!hosted("https://myrun.app/"));
        assert!(!hosted("https://www.example.com/page.html"));
    }

    #[test]
    fn redirect_shape() {
        let u = urls::parse("http://r.example/go?url=http%3A%2F%2Fevil.example%2F", UrlSource::Href).unwrap();
        assert_eq!(redirect_target(&u).as_deref(), Some("evil.example"));
        let same = urls::parse("http://r.example/go?next=http://r.example/home", UrlSource::Href).unwrap();
        assert_eq!(redirect_target(&same), None);
    }
}
