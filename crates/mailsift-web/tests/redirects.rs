//! Post-login and form redirect targets, checked the way a browser reads them: with a WHATWG URL parser
//! (the `url` crate), which drops tabs and newlines, takes `\` for `/` and reads `//host` as a host.
//! Whatever `safe_redirect` lets through must stay on the console's own site and pages.

use mailsift_web::console::safe_redirect;
use proptest::prelude::*;

fn resolves_to_the_console(target: &str) -> bool {
    let base = url::Url::parse("https://console.test/login?next=x").unwrap();
    match base.join(target) {
        Ok(u) => u.host_str() == Some("console.test") && u.scheme() == "https" && u.path().starts_with("/console"),
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// Any text at all: what is accepted resolves to a console page.
    #[test]
    fn anything_accepted_stays_on_the_console(s in any::<String>()) {
        if let Some(t) = safe_redirect(&s) {
            prop_assert!(resolves_to_the_console(t), "{t:?}");
        }
    }

    /// Text built from the characters redirect tricks are made of, after the console's own prefix or not.
    #[test]
    fn tricks_built_from_slashes_dots_and_encodings_never_leave(
        prefix in prop::sample::select(vec!["", "/", "/console", "/console/", "/console?", "\\", "/\t"]),
        parts in prop::collection::vec(
            prop::sample::select(vec![
                "/", "\\", ".", "..", "%2e", "%2E", "%2f", "%5c", "%5C", "%09", "%0a", "\t", "\n", "\r", " ",
                "@", ":", "?", "#", "evil.example", "console", "log", "a", "=", "&", "%", "\u{0}", "\u{ff0f}",
            ]),
            0..12,
        ),
    ) {
        let s = format!("{prefix}{}", parts.concat());
        if let Some(t) = safe_redirect(&s) {
            prop_assert!(resolves_to_the_console(t), "{t:?}");
            prop_assert!(!t.contains("//") && !t.contains('\\') && !t.contains("/."), "{t:?}");
        }
    }

    /// Ordinary console pages with query strings are kept, not sent home.
    #[test]
    fn ordinary_console_pages_are_kept(
        path in "(/[a-z0-9_-]{1,12}){0,3}",
        query in proptest::option::of("[a-z]{1,8}=[a-zA-Z0-9%+@.:-]{0,16}"),
    ) {
        let mut s = format!("/console{path}");
        if let Some(q) = query {
            if !q.to_ascii_lowercase().contains("%2e") && !q.to_ascii_lowercase().contains("%2f")
                && !q.to_ascii_lowercase().contains("%5c") && !q.contains("%0") && !q.contains("/.")
            {
                s.push('?');
                s.push_str(&q);
            }
        }
        prop_assert_eq!(safe_redirect(&s), Some(s.as_str()));
    }
}

#[test]
fn known_tricks_are_refused_and_console_pages_kept() {
    for bad in [
        "//evil.example",
        "/\\evil.example",
        "/\t/evil.example",
        "/%5Cevil.example",
        "/console/..//evil.example",
        "/console%2F%2Fevil.example",
        "/consolex",
        "https://evil.example/console",
        "/console/\u{ff0f}evil",
    ] {
        assert_eq!(safe_redirect(bad), None, "{bad:?}");
    }
    for good in ["/console", "/console/log?action=quarantine", "/console/quarantine/3"] {
        assert_eq!(safe_redirect(good), Some(good));
    }
}
