//! Heuristics that fired on legitimate mail at least as often as on spam, after their fix: each on a real
//! message where it must not fire and, where one exists, a real spam where it still must. The messages are in
//! `data/wrong_way/` (from the SpamAssassin public corpus's TRAIN half, see the README there) and in
//! `../shared/testdata/messages`.

use std::path::PathBuf;

use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, Verdict};

fn corpus(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/wrong_way").join(name);
    read(p)
}

fn testdata(name: &str) -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages").join(name);
    read(p)
}

fn read(p: PathBuf) -> String {
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    String::from_utf8_lossy(&bytes).into_owned()
}

fn scan(raw: &str) -> Verdict {
    Engine::new(EngineConfig::default()).unwrap().scan(raw.as_bytes(), &Envelope::default(), &Evidence::default())
}

fn symbols(raw: &str) -> Vec<String> {
    scan(raw).symbols.iter().map(|s| s.name.clone()).collect()
}

fn fires(raw: &str, symbol: &str) -> bool {
    symbols(raw).iter().any(|s| s == symbol)
}

/// Drops every header line (with its continuation lines) whose name is one of `names`.
fn without_headers(raw: &str, names: &[&str]) -> String {
    let mut out = String::new();
    let mut dropping = false;
    let mut in_headers = true;
    for line in raw.split_inclusive('\n') {
        if in_headers && line.trim_end().is_empty() {
            in_headers = false;
        }
        if in_headers {
            if line.starts_with([' ', '\t']) {
                if dropping {
                    continue;
                }
            } else {
                let name = line.split(':').next().unwrap_or("");
                dropping = names.iter().any(|n| n.eq_ignore_ascii_case(name));
                if dropping {
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    out
}

/// A real majordomo post (Sender: owner-…, Precedence: list, no List-Id) from a Hotmail author. Lists that
/// keep only their own hops are what the university's mail showed; with the Hotmail hops removed this post is
/// one, and it is still no forgery. Without its list marks the same message is what the rule is for.
#[test]
fn forged_freemail_leaves_posts_of_lists_that_only_mark_sender_and_precedence_alone() {
    let post = corpus("ham_majordomo_hotmail.eml");
    assert!(!fires(&post, "FORGED_FREEMAIL_RCVD"), "{:?}", symbols(&post));
    // Keep only the list's own hops: drop the three Received lines written by Hotmail.
    let mut list_hops_only = String::new();
    let mut skipping = false;
    for line in post.split_inclusive('\n') {
        if line.starts_with("Received:") {
            skipping = line.contains("hotmail");
        } else if !line.starts_with([' ', '\t']) {
            skipping = false;
        }
        if !skipping {
            list_hops_only.push_str(line);
        }
    }
    assert!(!list_hops_only.contains("hotmail.com (law2"), "the Hotmail hops are gone");
    assert!(!fires(&list_hops_only, "FORGED_FREEMAIL_RCVD"), "{:?}", symbols(&list_hops_only));
    let unlisted = without_headers(&list_hops_only, &["Sender", "Precedence"]);
    assert!(fires(&unlisted, "FORGED_FREEMAIL_RCVD"), "{:?}", symbols(&unlisted));
    // A real spam with a forged free-mail From still gets it.
    assert!(fires(&testdata("sa_spam_001.eml"), "FORGED_FREEMAIL_RCVD"));
}

/// A Lyris newsletter (Lockergnome) links to some forty sites, one of them a .biz: neither a link farm nor a
/// risky destination. A spam that sends the reader to its own .biz site still gets URL_RISKY_TLD, and a spam
/// linking to many domains without any list marks still gets URL_MANY_DOMAINS.
#[test]
fn newsletters_linking_widely_are_not_link_farms_nor_risky() {
    let news = corpus("ham_lyris_newsletter.eml");
    let syms = symbols(&news);
    assert!(!syms.iter().any(|s| s == "URL_RISKY_TLD" || s == "URL_MANY_DOMAINS"), "{syms:?}");
    assert!(fires(&corpus("spam_risky_tld.eml"), "URL_RISKY_TLD"));
    assert!(fires(&corpus("spam_many_domains.eml"), "URL_MANY_DOMAINS"));
}

/// Apple's newsletter counts clicks through its mailing house (komtools.net) on the way to apple.com, the
/// sender's own domain: click tracking, not a hidden destination. A real spam's redirect to another site still
/// counts.
#[test]
fn redirects_into_the_senders_own_domain_are_click_tracking() {
    let news = corpus("ham_apple_enews.eml");
    assert!(news.contains("komtools.net/tracker_court"), "the fixture has its tracking links");
    assert!(!fires(&news, "URL_REDIRECTOR"), "{:?}", symbols(&news));
    assert!(fires(&testdata("sa_spam_badmime.eml"), "URL_REDIRECTOR"));
}

/// CNET's newsletters carry an advertising iframe in every issue; mail clients do not load frames. The symbol
/// stays to explain, at no weight.
#[test]
fn an_iframe_is_explained_but_weighs_nothing() {
    let v = scan(&corpus("ham_cnet_iframe.eml"));
    let iframe = v.symbols.iter().find(|s| s.name == "HTML_IFRAME").expect("HTML_IFRAME is reported");
    assert_eq!(iframe.score, 0.0, "{iframe:?}");
}

/// White headings in a table cell whose background is a picture (WinXPnews) are readable, and so is the whole
/// text of a spam written in white and yellow on a denim background image: neither is hidden text. Text in the
/// page's own background colour still is.
#[test]
fn text_on_a_background_picture_is_not_hidden() {
    let news = corpus("ham_winxpnews.eml");
    assert!(!fires(&news, "HTML_HIDDEN_TEXT"), "{:?}", symbols(&news));
    let denim = corpus("spam_text_on_background_image.eml");
    let syms = symbols(&denim);
    assert!(!syms.iter().any(|s| s == "HTML_HIDDEN_TEXT" || s == "HTML_MOSTLY_HIDDEN"), "{syms:?}");
    assert!(fires(&corpus("spam_hidden_text.eml"), "HTML_HIDDEN_TEXT"));
}

/// A 2002 list archive kept no Received lines but the delivering server's Delivery-Date: its Date is judged
/// against that, not against today. A spam whose Date is weeks before its Received lines still gets it.
#[test]
fn archived_mail_without_received_lines_is_dated_by_its_delivery_date() {
    let archived = corpus("ham_archive_no_received.eml");
    assert!(!archived.lines().take_while(|l| !l.is_empty()).any(|l| l.starts_with("Received:")));
    assert!(!fires(&archived, "DATE_IN_PAST"), "{:?}", symbols(&archived));
    // Without its Delivery-Date the scan time is all there is, and 2002 is long past.
    assert!(fires(&without_headers(&archived, &["Delivery-Date"]), "DATE_IN_PAST"));
    assert!(fires(&corpus("spam_date_in_past.eml"), "DATE_IN_PAST"));
}

/// Advance-fee wording counts only in company (`min_matches = 2`): a list post quoting "a spurious
/// compensation claim" is not a 419 letter; the real letter names five of the phrases and still gets it.
#[test]
fn one_advance_fee_phrase_alone_is_ordinary_wording() {
    let post = corpus("ham_list_compensation.eml");
    assert!(post.contains("compensation claim"), "the fixture has its phrase");
    assert!(!fires(&post, "PHRASE_ADVANCE_FEE"), "{:?}", symbols(&post));
    let letter = scan(&corpus("spam_advance_fee.eml"));
    let hit = letter.symbols.iter().find(|s| s.name == "PHRASE_ADVANCE_FEE").expect("the 419 letter is scored");
    assert!(hit.score > 0.0 && hit.detail.matches(", ").count() >= 1, "{hit:?}");
    // One phrase is not enough even when it is the strongest; two different ones are.
    let one = "From: a@example.net\r\nTo: b@example.org\r\nSubject: hello\r\n\r\nI write about my late husband.\r\n";
    assert!(!fires(one, "PHRASE_ADVANCE_FEE"));
    let two = one.replace("husband.", "husband, and his next of kin.");
    assert!(fires(&two, "PHRASE_ADVANCE_FEE"), "{:?}", symbols(&two));
    // The same phrase twice is still one phrase, and one sum of millions is one, however it is written.
    let again = one.replace("husband.", "husband. My late husband.");
    assert!(!fires(&again, "PHRASE_ADVANCE_FEE"));
    let sum = one.replace("my late husband.", "a deal worth US$10 million dollars.");
    assert!(!fires(&sum, "PHRASE_ADVANCE_FEE"), "{:?}", symbols(&sum));
    assert!(fires(&sum.replace("a deal", "your funds, a deal"), "PHRASE_ADVANCE_FEE"));
}

/// A deadline is not a threat: a travel essay's "within 48 hours" (hard ham) is not an extortion letter, which
/// names its deadline together with what it saw and where to pay. No extortion letter is in the corpus (2002);
/// the one below is written in their usual words.
#[test]
fn one_deadline_is_not_extortion() {
    let essay = corpus("ham_within_48_hours.eml");
    assert!(essay.to_lowercase().contains("within 48 hours"), "the fixture has its phrase");
    assert!(!fires(&essay, "PHRASE_EXTORTION"), "{:?}", symbols(&essay));
    let letter = "From: a@example.net\r\nTo: b@example.org\r\nSubject: your account\r\n\r\nI recorded you \
                  through your webcam. Send bitcoin to the wallet below within 48 hours.\r\n";
    assert!(fires(letter, "PHRASE_EXTORTION"), "{:?}", symbols(letter));
}

/// A code at the end of a subject is a bulk mailer's ("Get out of debt quick! ... 4179uKlj5-057SXua1524UHkC5-900-28")
/// when it mixes cases with several runs of digits; a shop's name ("Back to School with Buy4Now") or a
/// programmer's identifier ("Working My_Mark2CurSeen") has one run of digits. The shop's newsletter carried
/// SUBJ_TRAILING_ID's 3.1 points into a false positive of the cross protocol.
#[test]
fn names_with_a_digit_are_not_bulk_mailer_codes() {
    for ham in ["ham_shop_name_in_subject.eml", "ham_identifier_in_subject.eml"] {
        let m = corpus(ham);
        assert!(!fires(&m, "SUBJ_TRAILING_ID"), "{ham}: {:?}", symbols(&m));
    }
    assert!(fires(&corpus("spam_subject_code.eml"), "SUBJ_TRAILING_ID"));
}

/// "XXX" marks a to-do in a programmer's list post, not adult content; the adult spam names several such words.
#[test]
fn one_adult_word_alone_is_everyday_language() {
    let post = corpus("ham_code_review_xxx.eml");
    assert!(post.contains("# XXX"), "the fixture has its placeholder");
    assert!(!fires(&post, "PHRASE_ADULT"), "{:?}", symbols(&post));
    assert!(fires(&corpus("spam_adult.eml"), "PHRASE_ADULT"));
}

// The header heuristics added with the fixes above, held to the same standard: a real list post where each
// must stay silent and a real spam where it must fire.

/// A conference announcement cross-posted to six lists names six domains in To: a real message, not a
/// harvested list. A spam that pastes its victims into To and Cc names dozens.
#[test]
fn a_pasted_address_list_is_not_a_cross_posted_announcement() {
    let post = corpus("ham_crossposted_announcement.eml");
    assert!(post.contains("fork@xent.com, irregulars@tb.tf"), "the fixture has its recipients");
    assert!(!fires(&post, "RCPT_MANY_DOMAINS"), "{:?}", symbols(&post));
    let spam = corpus("spam_pasted_recipients.eml");
    let hit = scan(&spam).symbols.into_iter().find(|s| s.name == "RCPT_MANY_DOMAINS");
    assert!(hit.is_some_and(|h| h.score > 0.0), "{:?}", symbols(&spam));
}

/// Encoded words belong in display names: the list post encodes none in an address, the spam's mailer
/// encoded the whole local part of From and To.
#[test]
fn an_encoded_word_inside_an_address_is_a_broken_mailer() {
    let post = corpus("ham_crossposted_announcement.eml");
    assert!(!fires(&post, "ADDR_ENCODED_WORD"), "{:?}", symbols(&post));
    let spam = corpus("spam_encoded_address.eml");
    assert!(spam.contains("From: =?iso-2022-jp?B?"), "the fixture has its encoded address");
    assert!(fires(&spam, "ADDR_ENCODED_WORD"), "{:?}", symbols(&spam));
    // The list post again with a display name encoded as RFC 2047 says: still silent.
    let named = post.replace("From: \"R. A. Hettinga\"", "From: =?utf-8?Q?R=2E_A=2E_Hettinga?=");
    assert!(named != post && !fires(&named, "ADDR_ENCODED_WORD"), "{:?}", symbols(&named));
}

/// Signs of the HTML format are weighed by how they separate HTML ham from HTML spam (see `checks/html.rs`):
/// a real ZDNet shopping newsletter, HTML only, with an advertising script and small print, is what a
/// subscriber's mail looks like today. It still shows the three signs, for the explanation; together they
/// weigh less than half a point (they weighed 2.6). A spam in tiny HTML type still carries its sign.
#[test]
fn the_html_format_is_not_evidence_of_spam_on_its_own() {
    let format = ["MIME_HTML_ONLY", "HTML_TINY_TEXT", "HTML_SCRIPT"];
    let ham = corpus("ham_html_only_newsletter.eml");
    assert!(ham.contains("Content-Type: text/html") && ham.contains("<script"), "the fixture is an HTML newsletter");
    let v = scan(&ham);
    for name in format {
        assert!(v.symbols.iter().any(|s| s.name == name), "{name} did not fire: {:?}", symbols(&ham));
    }
    let points: f64 = v.symbols.iter().filter(|s| format.contains(&s.name.as_str())).map(|s| s.score).sum();
    assert!(points < 0.5, "the HTML format alone gave {points} points");
    let spam = corpus("spam_hidden_text.eml");
    assert!(fires(&spam, "HTML_TINY_TEXT") || fires(&spam, "MIME_HTML_ONLY"), "{:?}", symbols(&spam));
}

/// "Click here" is wording spam uses, but at the university whose mail we measure on it showed in more ham than
/// spam (12% of the ham: newsletters and alerts asking the reader to read on at the sender's own site). It
/// stays silent when a link goes into the From: domain (`unless_links_to_sender` in `default_rules.toml`).
/// A real newsletter linking to lockergnome.com from lockergnome.com: silent. The same newsletter under a
/// From: of another domain (what a spammer who copies it sends): fires. A phish: fires.
#[test]
fn click_here_into_the_senders_own_site_is_a_newsletter() {
    let news = corpus("ham_lyris_newsletter.eml");
    assert!(
        news.to_lowercase().contains("click here") && news.contains("href=\"http://www.lockergnome.com/"),
        "the fixture asks to click and links to its own site"
    );
    assert!(!fires(&news, "PHRASE_CLICK_HERE"), "{:?}", symbols(&news));
    let copied = format!(
        "From: Lockergnome Windows Daily <subscriptions@lockergnome-news.example>\n{}",
        without_headers(&news, &["From"])
    );
    assert!(fires(&copied, "PHRASE_CLICK_HERE"), "{:?}", symbols(&copied));
    let phish = testdata("rspamd_html_phishing.eml");
    assert!(fires(&phish, "PHRASE_CLICK_HERE"), "{:?}", symbols(&phish));
}

/// A shortened link among a newsletter's many is a citation: a real media digest cites an SEC filing through
/// tinyurl.com among links to a dozen news sites. Silent. The same shortened link as the one link of a short
/// message (the shape phishing uses it in) fires.
#[test]
fn a_shortened_link_among_many_is_a_citation() {
    let news = corpus("ham_media_unspun_tinyurl.eml");
    assert!(news.contains("http://tinyurl.com/10kz"), "the fixture cites through a shortener");
    assert!(!fires(&news, "URL_SHORTENER"), "{:?}", symbols(&news));
    let short = "From: Accounts <accounts@mediaunspun.imakenews.net>\nTo: reader@example.org\n\
                 Subject: Your account\nDate: Thu, 1 Aug 2002 10:00:00 -0400\nMessage-ID: <a1@imakenews.net>\n\n\
                 Please confirm your details at http://tinyurl.com/10kz today.\n";
    assert!(fires(short, "URL_SHORTENER"), "{:?}", symbols(short));
}
