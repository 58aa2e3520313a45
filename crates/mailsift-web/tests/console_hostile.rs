//! The console against hostile mail, on every page it has: messages whose subject, From, Message-ID, header
//! names, body, links and sender domain carry markup and template syntax go in over SMTP; then an
//! administrator, a domain administrator and an end user each crawl every console page reachable by links
//! from their home page (and a few time ranges), bounded in pages. Every page must answer without a server
//! error, and none may carry the hostile markup as markup: no script element, no event-handler attribute, no
//! `javascript:` link, no template evaluated. New pages are covered as soon as a link leads to them.

use std::collections::{BTreeSet, VecDeque};

use mailsift_testkit::clients::{smtp_send, HttpClient};

#[path = "support/stack.rs"]
mod support;
use support::*;

/// The payloads: markup in every place a sender writes, and template syntax.
const PAYLOADS: &[&str] = &[
    "<script>alert(1)</script>",
    "\"><img src=x onerror=alert(2)>",
    "'><svg onload=alert(3)>",
    "{{ 7*7 }}{% raw %}",
    "<a href=\"javascript:alert(4)\">click</a>",
];

/// One hostile message per payload and recipient: the payload in the subject (quarantined by the rule's word,
/// so it is kept), the From display name and local part's comment, the Message-ID, a header name, the body
/// and an HTML part.
fn hostile(to: &str, i: usize, payload: &str) -> String {
    format!(
        "From: \"{payload}\" <mallory@evil{i}.test>\r\nTo: {to}\r\nSubject: quarantineme {payload}\r\n\
         Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}.{payload}@evil.test>\r\nX-{i}-<b>: {payload}\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b{i}\"\r\n\r\n\
         --b{i}\r\nContent-Type: text/plain\r\n\r\nSee {payload} at javascript:alert(5)\r\n\
         --b{i}\r\nContent-Type: text/html\r\n\r\n<p>{payload}</p><a href=\"javascript:alert(6)\">x</a>\r\n--b{i}--\r\n"
    )
}

/// The page's real tags (what a browser would build elements from): name and attributes (name, value),
/// read as a browser tokenizes them: attribute values quoted with " or ' or unquoted; comments skipped.
fn tags(html: &str) -> Vec<(String, Vec<(String, String)>)> {
    let b = html.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i..].find("-->").map(|e| i + e + 3).unwrap_or(b.len());
            continue;
        }
        i += 1;
        let name_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'/' || b[i] == b'!') {
            i += 1;
        }
        let name = html[name_start..i].trim_start_matches('/').to_ascii_lowercase();
        let mut attrs = Vec::new();
        loop {
            while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
                i += 1;
            }
            if i >= b.len() || b[i] == b'>' {
                i += 1;
                break;
            }
            let a = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"=>/".contains(&b[i]) {
                i += 1;
            }
            let attr = html[a..i].to_ascii_lowercase();
            let mut value = String::new();
            if i < b.len() && b[i] == b'=' {
                i += 1;
                if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                    let q = b[i];
                    let v = i + 1;
                    i = v;
                    while i < b.len() && b[i] != q {
                        i += 1;
                    }
                    value = html[v..i.min(b.len())].to_string();
                    i += 1;
                } else {
                    let v = i;
                    while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                        i += 1;
                    }
                    value = html[v..i].to_string();
                }
            }
            if attr.is_empty() {
                i += 1;
            } else {
                attrs.push((attr, value));
            }
        }
        if !name.is_empty() {
            out.push((name, attrs));
        }
    }
    out
}

/// What may not appear in any page: the payloads as markup (elements or attributes a browser would act on).
fn markup_leaks(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (name, attrs) in tags(html) {
        if ["script", "iframe", "object", "embed", "img", "b"].contains(&name.as_str()) {
            found.push(format!("a {name} element"));
        }
        for (a, v) in attrs {
            let v = v.replace("&#x3a;", ":").replace("&colon;", ":").to_ascii_lowercase();
            if a.starts_with("on") {
                found.push(format!("an {a} attribute on {name}"));
            }
            if ["href", "src", "action", "formaction"].contains(&a.as_str())
                && v.trim_start().starts_with("javascript:")
            {
                found.push(format!("a javascript: {a} on {name}"));
            }
        }
    }
    // Template syntax shown as text is fine; evaluated it would read 49 where the payload was.
    if html.contains("quarantineme 49") {
        found.push("an evaluated template".into());
    }
    found
}

/// Console links on a page (`href="/console..."`), entities decoded, without fragments.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in html.split("href=\"").skip(1) {
        let Some(end) = part.find('"') else { continue };
        let href = part[..end].replace("&amp;", "&").replace("&#x2f;", "/").replace("&#x3d;", "=");
        let href = href.split('#').next().unwrap_or("").to_string();
        if href.starts_with("/console") {
            out.push(href);
        }
    }
    out
}

/// Crawls from `start` through console links, at most `max` pages; returns the pages seen with their status.
fn crawl(c: &mut HttpClient, starts: &[&str], max: usize) -> Vec<(String, u16)> {
    let mut queue: VecDeque<String> = starts.iter().map(|s| s.to_string()).collect();
    let mut seen: BTreeSet<String> = queue.iter().cloned().collect();
    let mut pages = Vec::new();
    while let Some(path) = queue.pop_front() {
        if pages.len() >= max {
            break;
        }
        let r = c.get(&path);
        let html = r.text();
        assert!(r.status < 500, "{path}: {} {}", r.status, html);
        let leaks = markup_leaks(&html);
        assert!(leaks.is_empty(), "{path} carries {leaks:?}:\n{html}");
        pages.push((path.clone(), r.status));
        if r.status == 200 {
            for l in links(&html) {
                // Paging through the same list adds nothing; one page of each is enough.
                if l.contains("offset=") {
                    continue;
                }
                if seen.insert(l.clone()) {
                    queue.push_back(l);
                }
            }
        }
    }
    pages
}

#[test]
fn no_page_of_any_role_carries_a_hostile_message_as_markup() {
    let s = start();
    for (i, p) in PAYLOADS.iter().enumerate() {
        for to in ["bob@example.com", "carol@other.test"] {
            let m = hostile(to, i, p);
            let (code, text) = smtp_send(s.smtp, &format!("bounce{i}@evil{i}.test"), &[to], m.as_bytes()).unwrap();
            assert_eq!(code, 250, "{text}");
        }
    }
    s.web.db.flush().unwrap();
    let held = s.web.db.quarantine_list(&Default::default()).unwrap();
    assert_eq!(held.len(), PAYLOADS.len() * 2, "every hostile message is held");

    let ranges = ["?range=7d", "?from=2026-01-01&to=2026-12-31"];
    let mut starts = vec!["/console".to_string(), "/console/quarantine".into(), "/console/lists".into()];
    for page in ["/console", "/console/log", "/console/quarantine", "/console/domains", "/console/reports"] {
        for r in ranges {
            starts.push(format!("{page}{r}"));
        }
    }
    starts.push("/console/domains/evil0.test".into());
    let starts: Vec<&str> = starts.iter().map(String::as_str).collect();
    let mut total = 0;
    for (name, pw, min_pages) in [
        ("admin", ADMIN_PW, 2 * PAYLOADS.len()),
        ("da", DA_PW, PAYLOADS.len()),
        ("bob@example.com", BOB_PW, PAYLOADS.len()),
    ] {
        let (mut c, _) = login(&s, name, pw);
        let pages = crawl(&mut c, &starts, 300);
        let ok = pages.iter().filter(|(_, st)| *st == 200).count();
        eprintln!("{name}: {} pages crawled, {ok} answered 200", pages.len());
        assert!(ok >= min_pages, "{name} reached only {ok} pages: {pages:?}");
        total += pages.len();
    }
    assert!(total < 900, "the crawl is bounded");
}

#[test]
fn the_detector_sees_markup_and_not_escaped_text() {
    assert!(markup_leaks("<p>&lt;script&gt;alert(1)&lt;/script&gt; &quot;&gt;&lt;img src=x onerror=alert(2)&gt;</p>")
        .is_empty());
    assert!(markup_leaks(r#"<input value="&quot;&gt;&lt;svg onload=alert(3)&gt;">"#).is_empty());
    assert_eq!(markup_leaks(r#"<p>"><img src=x onerror=alert(2)></p>"#).len(), 2);
    assert!(markup_leaks("<td><script>alert(1)</script></td>").contains(&"a script element".to_string()));
    assert_eq!(markup_leaks(r#"<input value=""><svg onload=alert(3)>">"#), vec!["an onload attribute on svg"]);
    assert_eq!(markup_leaks(r#"<a href=" javascript:alert(4)">x</a>"#).len(), 1);
    assert_eq!(markup_leaks("<h1>quarantineme 49</h1>").len(), 1);
}
