//! Every check on small synthetic messages: a clean personal message fires nothing, and each variant
//! fires the symbol it is about. Configuration: weights, ASF modes, the administrator's own rules.

use mailsift_engine::config::{AsfMode, RuleConfig, RuleTarget};
use mailsift_engine::evidence::{DmarcFacts, DmarcPolicy, Outcome, SenderFacts, SpfResult};
use mailsift_engine::{Action, Engine, EngineConfig, Envelope, Evidence, Verdict};

const HEADERS: &str = "From: Alice Example <alice@example.org>\r\n\
To: Bob <bob@example.net>\r\n\
Subject: Lunch on Thursday\r\n\
Date: Mon, 6 Jan 2025 10:00:00 +0000\r\n\
Message-ID: <20250106100000.1234@mail.example.org>\r\n\
Received: from mail.example.org (mail.example.org [192.0.2.10]) by mx.example.net; Mon, 6 Jan 2025 10:00:02 +0000\r\n\
MIME-Version: 1.0\r\n";

const BODY: &str = "Hi Bob,\r\n\r\nShall we meet at noon at the usual place? I will bring the report.\r\n\r\nAlice\r\n";

fn plain(headers: &str, body: &str) -> String {
    format!("{headers}Content-Type: text/plain; charset=utf-8\r\n\r\n{body}")
}

fn html(headers: &str, body: &str) -> String {
    format!("{headers}Content-Type: text/html; charset=utf-8\r\n\r\n{body}")
}

fn scan_with(config: EngineConfig, raw: &str, evidence: &Evidence) -> Verdict {
    Engine::new(config).unwrap().scan(raw.as_bytes(), &Envelope::default(), evidence)
}

fn scan(raw: &str) -> Verdict {
    scan_with(EngineConfig::default(), raw, &Evidence::default())
}

fn fired(raw: &str) -> Vec<String> {
    scan(raw).symbols.into_iter().map(|s| s.name).collect()
}

fn with_header(name: &str, value: &str) -> String {
    let mut out = String::new();
    let mut replaced = false;
    for line in HEADERS.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with(&format!("{}:", name.to_ascii_lowercase())) {
            if !value.is_empty() {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            replaced = true;
        } else {
            out.push_str(line);
        }
    }
    if !replaced {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out
}

#[test]
fn a_clean_personal_message_fires_nothing() {
    let v = scan(&plain(HEADERS, BODY));
    assert!(v.symbols.is_empty(), "{:?}", v.symbols);
    assert_eq!((v.action, v.scl), (Action::Deliver, 0));
    // The same message in HTML with a text alternative is clean too.
    let alt = format!(
        "{HEADERS}Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{BODY}\r\n--b\r\n\
         Content-Type: text/html\r\n\r\n<p>Hi Bob,</p><p>Shall we meet at noon? See <a href=\"https://www.example.org/menu\">www.example.org/menu</a></p>\r\n--b--\r\n"
    );
    assert!(scan(&alt).symbols.is_empty(), "{:?}", scan(&alt).symbols);
}

#[test]
fn header_checks_fire_on_their_defect() {
    let cases: Vec<(String, &str)> = vec![
        (with_header("Date", ""), "MISSING_DATE"),
        (with_header("Date", "yesterday at noon"), "INVALID_DATE"),
        (with_header("Date", "Mon, 13 Jan 2025 10:00:00 +0000"), "DATE_IN_FUTURE"),
        (with_header("Date", "Mon, 6 Dec 2024 10:00:00 +0000"), "DATE_IN_PAST"),
        (with_header("Date", "Mon, 6 Jan 2025 09:59:00 -0060"), "DATE_ZONE_ABSURD"),
        (with_header("Message-ID", ""), "MISSING_MESSAGE_ID"),
        (with_header("Message-ID", "no-brackets-here"), "INVALID_MESSAGE_ID"),
        (with_header("From", ""), "MISSING_FROM"),
        (with_header("From", "\"service@paypal.com\" <x@evil.example>"), "FROM_DISPLAY_ADDR_MISMATCH"),
        (with_header("From", "PayPal Security <alerts@secure-notice.example>"), "FROM_NAME_IMPERSONATES_BRAND"),
        (with_header("Reply-To", "winner.claims@yahoo.com"), "REPLYTO_FREEMAIL_DIFF"),
        (with_header("Subject", "MAKE MONEY FAST WITH THIS SECRET"), "SUBJ_ALL_CAPS"),
        (with_header("Subject", "Win big!!! $$$"), "SUBJ_EXCESS_PUNCT"),
        (with_header("Subject", "Lunch on Thursday           4736"), "SUBJ_TRAILING_ID"),
        (with_header("Subject", "Great deals 9959GLXz3-738HFdN8831kbee5"), "SUBJ_TRAILING_ID"),
        (with_header("Subject", ""), "MISSING_SUBJECT"),
        (with_header("Subject", "Snatch away Soft C1alis!"), "SUBJ_DRUG"),
        (with_header("Subject", "=?utf-8?B?VmlhZ3JhIHRhYmxldCBqdXN0IGZvciAkMC44Nw==?="), "SUBJ_DRUG"),
        (with_header("To", ""), "UNDISCLOSED_RECIPIENTS"),
        (with_header("X-Priority", "1 (Highest)"), "X_PRIORITY_HIGH"),
    ];
    for (headers, symbol) in cases {
        let got = fired(&plain(&headers, BODY));
        assert!(got.iter().any(|s| s == symbol), "{symbol} did not fire: {got:?}\n{headers}");
    }
    let two_from = format!("{HEADERS}From: <admin@bank.example>\r\n");
    assert!(fired(&plain(&two_from, BODY)).contains(&"FROM_DUPLICATE_HEADER".to_string()));
}

/// Real From fields of phishing (rf-peixoto/phishing_pot, 2023-2024; the honeypot's address was replaced by
/// the collection): each domain is one no mail system writes. Real senders' domains, internationalised ones
/// and an address literal stay silent.
#[test]
fn a_from_domain_no_mail_system_writes() {
    let invalid = [
        "ADAC-Mitgliederservice <noreply@theskimm,com>",
        "\"VistaFocus Deutschland\" <2j69hqc07ujd@bck6qaucupay.com'>",
        "Carteira Digital - DETRAN <no-reply@prazoRegularizacao90819%cnh.net>",
        "StreamBox IPTV <UnlimitedTV@'UnlimitedTV-ppazs.autoworkscoll.com>",
        "eBay <service@\u{1d5f2}\u{1d5ef}\u{1d5ee}\u{1d606}.\u{1d5f1}\u{1d5f2}>",
        "Support <support@mailhost>",
    ];
    for from in invalid {
        let got = fired(&plain(&with_header("From", from), BODY));
        assert!(got.iter().any(|s| s == "FROM_DOMAIN_INVALID"), "{from}: {got:?}");
    }
    let valid = [
        "Alice Example <alice@example.org>",
        "Jürgen <j@bücher.example>",
        "Info <info@xn--bcher-kva.example>",
        "Ops <ops@mail-01.eu-west.example.co.uk>",
        "Old router <admin@[192.0.2.1]>",
    ];
    for from in valid {
        let got = fired(&plain(&with_header("From", from), BODY));
        assert!(!got.iter().any(|s| s == "FROM_DOMAIN_INVALID"), "{from}: {got:?}");
    }
}

/// A drug in the subject: pharmacy spam's subjects (real ones of the TREC 2007 corpus) fire, disguised or
/// encoded; a word that only contains a short drug name, and the maker writing about its own drug, do not.
#[test]
fn a_drug_in_the_subject() {
    let drug = |subject: &str, from: &str| {
        let headers = with_header("Subject", subject).replace("Alice Example <alice@example.org>", from);
        fired(&plain(&headers, BODY)).iter().any(|s| s == "SUBJ_DRUG")
    };
    let someone = "Alice Example <alice@example.org>";
    assert!(drug("Be healthy with Viagra!", someone));
    assert!(drug("Cialis and Viagra Directly from Authentic Manufacturer", someone));
    assert!(drug("Snatch away Soft C1alis!", someone));
    assert!(!drug("Appointment with the specialist on Thursday", someone));
    assert!(!drug("Lunch on Thursday", someone));
    assert!(!drug("Viagra: updated prescribing information", "Pfizer Medical <medinfo@pfizer.com>"));
    // The maker's excuse rests on a From: anyone can write; at the gateway a forged one fails the maker's
    // DMARC (p=reject), which outweighs the two points the excuse spared it.
    let forged = with_header("Subject", "Viagra: updated prescribing information")
        .replace("Alice Example <alice@example.org>", "Pfizer Medical <medinfo@pfizer.com>");
    let evidence = Evidence::from_sender(SenderFacts {
        spf: Some(SpfResult::Fail),
        spf_domain: Some("pfizer.com".into()),
        dmarc: Some(DmarcFacts {
            domain: "pfizer.com".into(),
            result: Outcome::Fail,
            policy: DmarcPolicy::Reject,
            spf_aligned: false,
            dkim_aligned: false,
        }),
        ..SenderFacts::default()
    });
    let v = scan_with(EngineConfig::default(), &plain(&forged, BODY), &evidence);
    assert!(v.symbols.iter().any(|s| s.name == "DMARC_POLICY_REJECT"), "{:?}", v.symbols);
    assert_ne!(v.action, Action::Deliver, "{:?}", v.symbols);
}

/// An Outlook-form Message-ID holds the time it was written, in UTC. A 2007 bot's message (TREC 2007 public
/// corpus) says it was written at 10:31:56 UTC under a Date of 10:31:56 +0200: its local time taken for UTC.
/// The same Message-ID under a Date that names that moment in any zone stays silent; the bot's Date, and a
/// timestamp years away, fire.
#[test]
fn an_outlook_message_id_written_at_another_hour() {
    let id = "<001101c77b5b$76833860$06b54d1c@xyz38be82b9485>";
    let clock = |date: &str, id: &str| {
        let headers = with_header("Date", date).replace("<20250106100000.1234@mail.example.org>", id);
        fired(&plain(&headers, BODY)).iter().any(|s| s == "MSGID_CLOCK_MISMATCH")
    };
    assert!(!clock("Tue, 10 Apr 2007 12:31:56 +0200", id));
    assert!(!clock("Tue, 10 Apr 2007 06:32:03 -0400", id));
    assert!(clock("Tue, 10 Apr 2007 10:31:56 +0200", id));
    assert!(clock("Mon, 6 Jan 2025 10:00:00 +0000", id));
    // A gap no time zone explains (a draft sent later), and another form of Message-ID.
    assert!(!clock("Tue, 10 Apr 2007 16:09:11 +0000", id));
    assert!(!clock("Tue, 10 Apr 2007 18:31:56 +0000", "<20070410183156.77@mail.example.org>"));
}

/// The recipient's own address in the subject: a phishing kit's personalisation (a real subject of the
/// collection above, the honeypot's address swapped for Bob's). A list post naming its own address, an
/// address that is not the recipient's and a subject that only mentions a name stay silent.
#[test]
fn the_recipients_address_in_the_subject() {
    let rcpt = |subject: &str, extra: &str| {
        let headers = format!("{}{extra}", with_header("Subject", subject));
        fired(&plain(&headers, BODY)).iter().any(|s| s == "SUBJ_RCPT_ADDRESS")
    };
    assert!(rcpt("Critical Update: bob@example.net, renew your TotalAV subscription to stay protected", ""));
    assert!(rcpt("BOB@EXAMPLE.NET - Ihr Konto wird gesperrt", ""));
    let list = "List-Id: <devel.lists.example.net>\r\nList-Post: <mailto:bob@example.net>\r\n";
    assert!(!rcpt("Re: bob@example.net", list));
    assert!(!rcpt("Mail for alice@example.org bounced", ""));
    assert!(!rcpt("Bob, your order has shipped", ""));
    // Recipients only the envelope names count too, and forged list headers shed the header recipients
    // only: the envelope's, the person the gateway delivers to, still counts.
    let to_carol = |extra: &str| {
        let headers = format!("{}{extra}", with_header("Subject", "Password expiry notice for carol@example.net"));
        let v = Engine::new(EngineConfig::default()).unwrap().scan(
            plain(&headers, BODY).as_bytes(),
            &Envelope { rcpt_to: vec!["carol@example.net".into()], ..Envelope::default() },
            &Evidence::default(),
        );
        v.symbols.iter().any(|s| s.name == "SUBJ_RCPT_ADDRESS")
    };
    assert!(to_carol(""));
    assert!(to_carol(list));
}

#[test]
fn forged_freemail_needs_a_chain_without_the_provider() {
    let forged = with_header("From", "Jane <jane@hotmail.com>")
        + "Received: from unknown (HELO relay.example.com) (203.0.113.9) by mail.example.org; Mon, 6 Jan 2025 09:59:00 +0000\r\n";
    assert!(fired(&plain(&forged, BODY)).contains(&"FORGED_FREEMAIL_RCVD".to_string()));
    let real = with_header("From", "Jane <jane@hotmail.com>")
        + "Received: from BAY4-F12.bay4.hotmail.com (65.54.171.12) by mail.example.org; Mon, 6 Jan 2025 09:59:00 +0000\r\n";
    assert!(!fired(&plain(&real, BODY)).contains(&"FORGED_FREEMAIL_RCVD".to_string()));
}

/// A pasted address list (eight or more unrelated domains in To and Cc) fires; a long list inside one
/// organisation, or seven domains, does not. An encoded word inside an address fires; in a display name,
/// where RFC 2047 puts it, it does not.
#[test]
fn harvested_recipient_lists_and_encoded_addresses() {
    let fires = |h: &str, sym: &str| fired(&plain(h, BODY)).iter().any(|s| s == sym);
    let list = |n: usize, domain: &dyn Fn(usize) -> String| -> String {
        (0..n).map(|i| format!("user{i}@{}", domain(i))).collect::<Vec<_>>().join(", ")
    };
    let pasted = with_header("To", &list(10, &|i| format!("isp{i}.example")));
    assert!(fires(&pasted, "RCPT_MANY_DOMAINS"));
    // Split between To and Cc, still one list.
    let split = with_header("To", &list(4, &|i| format!("isp{i}.example")))
        + &format!(
            "Cc: {}
",
            list(4, &|i| format!("net{i}.example"))
        );
    assert!(fires(&split, "RCPT_MANY_DOMAINS"));
    let seven = with_header("To", &list(7, &|i| format!("isp{i}.example")));
    assert!(!fires(&seven, "RCPT_MANY_DOMAINS"));
    // Twenty colleagues in one organisation's departments: one registrable domain.
    let colleagues = with_header("To", &list(20, &|i| format!("dept{i}.example.ac.uk")));
    assert!(!fires(&colleagues, "RCPT_MANY_DOMAINS"));

    let encoded_local = with_header("From", "=?iso-2022-jp?B?c291czFAYWEuZXhhbXBsZQ==?=@mx2.example.jp");
    assert!(fires(&encoded_local, "ADDR_ENCODED_WORD"));
    let encoded_bracketed = with_header("To", "Bob <=?utf-8?B?Ym9i?=@example.net>");
    assert!(fires(&encoded_bracketed, "ADDR_ENCODED_WORD"));
    let encoded_name = with_header("From", "=?utf-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg@example.org>");
    assert!(!fires(&encoded_name, "ADDR_ENCODED_WORD"), "{:?}", fired(&plain(&encoded_name, BODY)));
    let encoded_subject = with_header("Subject", "=?utf-8?B?TMO8bmNo?= @ noon");
    assert!(!fires(&encoded_subject, "ADDR_ENCODED_WORD"));
}

#[test]
fn url_checks_fire_on_their_trick() {
    let cases = [
        ("<a href=\"http://evil.example/login\">www.paypal.com</a>", "PHISHING_LINK_MISMATCH"),
        ("<a href=\"http://198.51.100.7/x\">offer</a>", "URL_NUMERIC_IP"),
        ("<a href=\"http://3325256711/x\">offer</a>", "URL_OBSCURED_IP"),
        ("<a href=\"http://shop.example.com:8081/x\">offer</a>", "URL_NONSTANDARD_PORT"),
        ("<a href=\"https://bit.ly/3abc\">offer</a>", "URL_SHORTENER"),
        ("<a href=\"http://r.example.com/go?u=http%3A%2F%2Fevil.example%2F\">offer</a>", "URL_REDIRECTOR"),
        ("<a href=\"http://www.paypal.com@evil.example/\">offer</a>", "URL_USERINFO_TRICK"),
        ("<a href=\"http://cheap-pills.top/\">offer</a>", "URL_RISKY_TLD"),
        ("see hxxp://evil.example/payload", "URL_DEFANGED"),
    ];
    for (fragment, symbol) in cases {
        let got = fired(&html(HEADERS, &format!("<p>Hello Bob, have a look.</p><p>{fragment}</p>")));
        assert!(got.iter().any(|s| s == symbol), "{symbol} did not fire on {fragment}: {got:?}");
    }
    let many: String = (0..12).map(|i| format!("<a href=\"http://www.shop{i}.com/\">shop {i}</a> ")).collect();
    assert!(fired(&html(HEADERS, &many)).contains(&"URL_MANY_DOMAINS".to_string()));
    // Shown and real domain agree: no mismatch.
    let ok = fired(&html(
        HEADERS,
        "<p>Hello <a href=\"https://login.example.org/\">www.example.org</a> thanks for the report</p>",
    ));
    assert!(!ok.contains(&"PHISHING_LINK_MISMATCH".to_string()), "{ok:?}");
}

/// The phisher who sends from his own look-alike domain links to that domain too: a link into the From:
/// domain is no excuse for showing another one (it used to silence the rule). It scores half the weight;
/// from an unrelated sender the same link scores in full, and a second, foreign mismatch restores the full
/// weight.
#[test]
fn a_mismatched_link_into_the_senders_own_domain_still_counts() {
    let link = "<p>Please confirm your details at <a href=\"https://paypa1-secure.example/login\">www.paypal.com</a> \
        within 24 hours.</p>";
    let score = |from: &str, body: &str| {
        let headers = HEADERS.replace("Alice Example <alice@example.org>", from);
        let v = scan(&html(&headers, body));
        v.symbols.iter().find(|s| s.name == "PHISHING_LINK_MISMATCH").map(|h| h.score)
    };
    let own = score("PayPal <service@paypa1-secure.example>", link);
    let foreign = score("PayPal <service@mailer.example.net>", link);
    assert!(own.is_some_and(|s| s >= 1.5), "{own:?}");
    assert!(foreign.is_some_and(|s| s >= 3.0), "{foreign:?}");
    let both = format!("{link}<p><a href=\"http://evil.example/x\">www.paypal.com</a></p>");
    assert_eq!(score("PayPal <service@paypa1-secure.example>", &both), foreign);
}

#[test]
fn html_checks_fire_on_their_trick() {
    let filler = "<p>Dear Bob, here is the quarterly report you asked about last week, with the figures.</p>";
    let cases = [
        (format!("{filler}<div style=\"display:none\">cheap pills cheap pills cheap pills cheap</div>"), "HTML_HIDDEN_TEXT"),
        ("<p>Hi</p><div style=\"display:none\">hidden hidden hidden hidden hidden hidden hidden</div>".to_string(), "HTML_MOSTLY_HIDDEN"),
        ("<img src=\"http://img.example.com/offer.jpg\"><img src=\"http://img.example.com/b.jpg\">".to_string(), "HTML_IMAGE_ONLY"),
        (format!("{filler}<form action=\"http://x.example/\"><input type=password name=p></form>"), "HTML_PASSWORD_FORM"),
        (format!("{filler}<script>alert(1)</script>"), "HTML_SCRIPT"),
        (format!("{filler}<iframe src=\"http://x.example/\"></iframe>"), "HTML_IFRAME"),
        (format!("<meta http-equiv=\"refresh\" content=\"0;url=http://x.example/\">{filler}"), "HTML_META_REFRESH"),
        (format!("{filler}<font size=\"+3\">BIG</font><font size=\"6\">DEAL</font>"), "HTML_SHOUTING_FONTS"),
        ("<p>Vi<span style=\"font-size:0\">xq</span>agra and ca<span style=\"font-size:0\">zz</span>sino tonight</p>".to_string(), "HTML_HIDDEN_WORD_BREAK"),
    ];
    for (body, symbol) in cases {
        let got = fired(&html(HEADERS, &body));
        assert!(got.iter().any(|s| s == symbol), "{symbol} did not fire: {got:?}");
    }
}

#[test]
fn obfuscation_checks_fire_on_their_trick() {
    let cases = [
        ("Please log in to your p\u{0430}ypal account today.", "OBFUSCATION_MIXED_SCRIPT"),
        ("Please log in to your p\u{0430}yp\u{0430}l account today.", "OBFUSCATION_HOMOGLYPH_BRAND"),
        ("Get v1agr@ and c1al1s here.", "OBFUSCATION_LEET"),
        ("It is F R E E for you.", "OBFUSCATION_SPACED_LETTERS"),
        ("Buy v.i.a.g.r.a now.", "OBFUSCATION_SPACED_LETTERS"),
        ("Fr\u{200B}ee mo\u{200B}ney for you", "OBFUSCATION_ZERO_WIDTH"),
        ("Open invoice\u{202E}fdp.exe now", "OBFUSCATION_BIDI"),
    ];
    for (body, symbol) in cases {
        let got = fired(&plain(HEADERS, body));
        assert!(got.iter().any(|s| s == symbol), "{symbol} did not fire on {body:?}: {got:?}");
    }
    // Real Cyrillic text and ordinary abbreviations are not obfuscation.
    let russian =
        fired(&plain(HEADERS, "Привет, Боб! Встречаемся в полдень. See you at the U.S.A. office, e.g. at 12."));
    assert!(!russian.iter().any(|s| s.starts_with("OBFUSCATION")), "{russian:?}");
}

#[test]
fn attachment_checks_judge_real_types() {
    let attach = |name: &str, ctype: &str, data: &[u8]| {
        use std::fmt::Write;
        let b64 = mailsift_testkit::auth::base64(data);
        let mut s = format!("{HEADERS}Content-Type: multipart/mixed; boundary=xx\r\n\r\n--xx\r\nContent-Type: text/plain\r\n\r\n{BODY}\r\n--xx\r\n");
        let _ = write!(s, "Content-Type: {ctype}; name=\"{name}\"\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--xx--\r\n");
        s
    };
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff";
    assert!(fired(&attach("setup.exe", "application/octet-stream", exe)).contains(&"ATTACH_EXECUTABLE".to_string()));
    let d = fired(&attach("invoice.pdf.exe", "application/pdf", exe));
    assert!(
        d.contains(&"ATTACH_DOUBLE_EXTENSION".to_string()) && d.contains(&"ATTACH_TYPE_MISMATCH".to_string()),
        "{d:?}"
    );
    assert!(fired(&attach("page.html", "text/html", b"<html><form>")).contains(&"ATTACH_HTML".to_string()));
    let pdf = fired(&attach("report.pdf", "application/pdf", b"%PDF-1.7 real pdf"));
    assert!(!pdf.iter().any(|s| s.starts_with("ATTACH_")), "{pdf:?}");
}

#[test]
fn content_checks() {
    assert!(fired(&plain(HEADERS, "")).contains(&"EMPTY_BODY".to_string()));
    let shouting = "THIS IS AN AMAZING OFFER THAT YOU WILL NOT SEE AGAIN. ".repeat(6);
    assert!(fired(&plain(HEADERS, &shouting)).contains(&"BODY_SHOUTING".to_string()));
    let only_html = fired(&html(HEADERS, "<p>Hi Bob, lunch at noon?</p>"));
    assert!(only_html.contains(&"MIME_HTML_ONLY".to_string()));
}

#[test]
fn phrase_rules_and_density() {
    let spam = "Dear friend, this is not spam. Act now: 100% free, risk free, no obligation. \
                Make money from home! Click here. To be removed from our list reply with remove in the subject.";
    let v = scan(&plain(HEADERS, spam));
    let got: Vec<&str> = v.symbols.iter().map(|s| s.name.as_str()).collect();
    for s in [
        "PHRASE_DEAR_FRIEND",
        "PHRASE_COMPLIANCE_CLAIM",
        "PHRASE_GUARANTEE",
        "PHRASE_CLICK_HERE",
        "PHRASE_REMOVE_INSTRUCTIONS",
        "SPAM_PHRASES_LOTS",
    ] {
        assert!(got.contains(&s), "{s} missing: {got:?}");
    }
    // Wording alone is capped under the tag threshold (group_caps.content = 4): it needs a second kind of
    // evidence, and the explanation says so.
    assert!(!v.action.is_spam(), "{}", v.score);
    assert_eq!(v.capped.len(), 1);
    assert_eq!(v.capped[0].group, "content");
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let text = mailsift_engine::explain::render(&v, engine.registry());
    assert!(text.contains("counts at most 4.00 (group_caps.content)"), "{text}");
    let shouting = plain(&with_header("Subject", "MAKE MONEY FAST WITH THIS SECRET"), spam);
    let v2 = scan(&shouting);
    assert!(v2.action.is_spam(), "wording plus a shouting subject: {}", v2.score);
    // Without the cap the wording alone decides.
    let mut c = EngineConfig::default();
    c.group_caps.clear();
    assert!(scan_with(c, &plain(HEADERS, spam), &Evidence::default()).action.is_spam());
    let mut bad = EngineConfig::default();
    bad.group_caps.insert("nonsense".into(), 1.0);
    assert!(Engine::new(bad).is_err());
    // Phrases only match on word boundaries.
    assert!(!fired(&plain(HEADERS, "The freedom of clicking heretical links."))
        .iter()
        .any(|s| s.starts_with("PHRASE_")));
}

#[test]
fn weights_and_thresholds_come_from_configuration() {
    let raw = plain(&with_header("Subject", "MAKE MONEY FAST WITH THIS SECRET"), BODY);
    let mut c = EngineConfig::default();
    c.weights.insert("SUBJ_ALL_CAPS".into(), 6.0);
    let v = scan_with(c, &raw, &Evidence::default());
    assert_eq!(v.action, Action::Tag);
    assert!(v.symbols.iter().any(|s| s.name == "SUBJ_ALL_CAPS" && s.score == 6.0));
    let mut bad = EngineConfig::default();
    bad.weights.insert("NO_SUCH_SYMBOL".into(), 1.0);
    let err = Engine::new(bad).err().expect("unknown symbol refused").to_string();
    assert!(err.contains("NO_SUCH_SYMBOL"), "{err}");
    let mut t = EngineConfig::default();
    t.thresholds.quarantine = 1.0;
    assert!(Engine::new(t).is_err());
}

/// A configured rule with `min_matches` fires only on that many different phrases or patterns; a minimum its
/// phrases can never reach, or 0, is refused by name.
#[test]
fn an_administrators_rule_can_ask_for_several_phrases() {
    let c = EngineConfig::from_toml(
        r#"
[[rules]]
name = "TENDER_FRAUD"
target = "body"
score = 6.0
min_matches = 2
phrases = ["tender documents", "processing fee"]
regex = '(?i)\bwire\s+transfer\b'
"#,
    )
    .unwrap();
    let engine = Engine::new(c).unwrap();
    let fired = |body: &str| {
        let v = engine.scan(
            plain(&with_header("Subject", "tender"), body).as_bytes(),
            &Envelope::default(),
            &Evidence::default(),
        );
        v.symbols.iter().any(|s| s.name == "TENDER_FRAUD")
    };
    assert!(!fired("Please find the tender documents attached."));
    assert!(fired("Please find the tender documents attached; pay the processing fee first."));
    assert!(fired("The tender documents follow your wire transfer."));
    for (min, what) in [(4, "could never fire"), (0, "at least 1")] {
        let toml = format!("[[rules]]\nname = \"X_RULE\"\ntarget = \"body\"\nscore = 1.0\nmin_matches = {min}\nphrases = [\"a b\", \"c d\"]\nregex = \"e+f\"\n");
        let err = Engine::new(EngineConfig::from_toml(&toml).unwrap()).err().expect("refused").to_string();
        assert!(err.contains("X_RULE") && err.contains(what), "{err}");
    }
}

/// A configured rule with `unless_links_to_sender` is silent for a message that links into its own From:
/// domain (a subdomain counts), and fires when the links go elsewhere or the From: names another domain.
#[test]
fn an_administrators_rule_can_leave_links_to_the_sender_alone() {
    let c = EngineConfig::from_toml(
        r#"
[[rules]]
name = "READ_ON"
target = "body"
score = 2.0
unless_links_to_sender = true
phrases = ["read the full story"]
"#,
    )
    .unwrap();
    assert!(c.rules[0].unless_links_to_sender);
    let engine = Engine::new(c).unwrap();
    let fired = |from: &str, link: &str| {
        let headers = HEADERS.replace("From: Alice Example <alice@example.org>", from);
        let body = format!("<p>Big news. <a href=\"{link}\">Read the full story</a></p>");
        let v = engine.scan(html(&headers, &body).as_bytes(), &Envelope::default(), &Evidence::default());
        v.symbols.iter().any(|s| s.name == "READ_ON")
    };
    assert!(!fired("From: News <news@mail.example.org>", "https://www.example.org/story"));
    assert!(fired("From: News <news@mail.example.org>", "https://www.example.com/story"));
    assert!(fired("From: News <news@example-news.example>", "https://www.example.org/story"));
    // An image from the sender's site is not a link to it.
    let headers = HEADERS.replace("From: Alice Example <alice@example.org>", "From: News <news@example.org>");
    let body = "<p><img src=\"https://example.org/logo.png\">Read the full story at https://elsewhere.example/x</p>";
    let v = engine.scan(html(&headers, body).as_bytes(), &Envelope::default(), &Evidence::default());
    assert!(v.symbols.iter().any(|s| s.name == "READ_ON"), "{:?}", v.symbols);
}

#[test]
fn administrators_rules_become_symbols() {
    let mut c = EngineConfig::default();
    c.rules.push(RuleConfig {
        name: "PROJECT_FALCON".into(),
        target: RuleTarget::Body,
        phrase: Some("project falcon".into()),
        phrases: vec![],
        regex: None,
        regexes: vec![],
        score: 7.5,
        description: Some("Leak of the secret project name".into()),
        min_matches: None,
        unless_links_to_sender: false,
    });
    c.rules.push(RuleConfig {
        name: "ORDER_NUMBER".into(),
        target: RuleTarget::Subject,
        phrase: None,
        phrases: vec![],
        regex: Some(r"(?i)order #\d{6}".into()),
        regexes: vec![],
        score: -1.0,
        description: None,
        min_matches: None,
        unless_links_to_sender: false,
    });
    let engine = Engine::new(c).unwrap();
    let raw = plain(&with_header("Subject", "Your order #123456"), "About Project Falcon: details inside.");
    let v = engine.scan(raw.as_bytes(), &Envelope::default(), &Evidence::default());
    let got: Vec<(&str, f64)> = v.symbols.iter().map(|s| (s.name.as_str(), s.score)).collect();
    assert!(got.contains(&("PROJECT_FALCON", 7.5)) && got.contains(&("ORDER_NUMBER", -1.0)), "{got:?}");
    assert_eq!(engine.registry().by_name("PROJECT_FALCON").unwrap().description, "Leak of the secret project name");

    let mut bad = EngineConfig::default();
    bad.rules.push(RuleConfig {
        name: "BROKEN".into(),
        target: RuleTarget::Body,
        phrase: None,
        phrases: vec![],
        regex: Some("(unclosed".into()),
        regexes: vec![],
        score: 1.0,
        description: None,
        min_matches: None,
        unless_links_to_sender: false,
    });
    let err = Engine::new(bad).err().expect("bad regex refused").to_string();
    assert!(err.contains("BROKEN") && err.contains("regex"), "{err}");
}

#[test]
fn configuration_errors_name_the_line() {
    let err = EngineConfig::from_toml("[thresholds]\ntag = 5.0\nqarantine = 9.0\n").unwrap_err();
    assert!(err.contains("line 3") && err.contains("qarantine"), "{err}");
    let ok = EngineConfig::from_toml("[asf]\nweb_bugs = \"test\"\n[weights]\nGTUBE = 500.0\n").unwrap();
    assert_eq!(ok.asf.web_bugs, AsfMode::Test);
}

fn asf_message() -> String {
    html(
        HEADERS,
        "<p>Hello Bob, the newsletter.</p><img src=\"http://track.example.com/o.gif\" width=\"1\" height=\"1\">\
         <iframe src=\"http://x.example/\"></iframe><a href=\"http://192.0.2.44/\">x</a><a href=\"http://deals.biz/\">deals</a>",
    )
}

#[test]
fn asf_options_off_test_and_on() {
    // Off (the default): nothing is reported.
    let v = scan(&asf_message());
    assert!(!v.symbols.iter().any(|s| s.name.starts_with("ASF_")));
    assert!(!v.engines.contains(&"asf"));

    // Test: reported in X-Mailsift-ASF, adds nothing.
    let mut c = EngineConfig::default();
    c.asf.web_bugs = AsfMode::Test;
    c.asf.numeric_ip_in_url = AsfMode::Test;
    let base = scan(&asf_message()).score;
    let v = scan_with(c, &asf_message(), &Evidence::default());
    assert_eq!(v.score, base);
    let headers = v.headers();
    let asf = headers.iter().find(|(n, _)| n == "X-Mailsift-ASF").expect("ASF header").1.clone();
    assert!(asf.contains("ASF_WEB_BUGS=test") && asf.contains("ASF_NUMERIC_IP_URL=test"), "{asf}");

    // On: an increase-score option adds its weight; a high-confidence option quarantines with SCL 9.
    let mut c = EngineConfig::default();
    c.asf.url_to_biz_or_info = AsfMode::On;
    let v = scan_with(c, &asf_message(), &Evidence::default());
    assert!((v.score - base - 2.0).abs() < 1e-9, "{} vs {base}", v.score);
    assert!(!v.high_confidence);
    let mut c = EngineConfig::default();
    c.asf.frame_or_iframe_tags = AsfMode::On;
    let v = scan_with(c, &asf_message(), &Evidence::default());
    assert!(v.high_confidence && v.scl == 9 && v.action >= Action::Quarantine, "{v:?}");
    let explained = mailsift_engine::explain::render(&v, Engine::new(EngineConfig::default()).unwrap().registry());
    assert!(explained.contains("ASF_FRAME_IFRAME") && explained.contains("frame_or_iframe_tags"), "{explained}");
}

#[test]
fn asf_options_each_detect_their_structure() {
    let all_on = || {
        let mut c = EngineConfig::default();
        let a = &mut c.asf;
        for m in [
            &mut a.image_links_to_remote_sites,
            &mut a.numeric_ip_in_url,
            &mut a.url_redirect_to_other_port,
            &mut a.url_to_biz_or_info,
            &mut a.empty_messages,
            &mut a.javascript_or_vbscript_in_html,
            &mut a.frame_or_iframe_tags,
            &mut a.object_tags,
            &mut a.embed_tags,
            &mut a.form_tags,
            &mut a.web_bugs,
            &mut a.sensitive_word_list,
            &mut a.spf_hard_fail,
            &mut a.ndr_backscatter,
            &mut a.bulk_mail,
        ] {
            *m = AsfMode::On;
        }
        c.organisation.domains = vec!["example.net".into()];
        c
    };
    let fired_asf = |raw: &str, evidence: &Evidence| -> Vec<String> {
        scan_with(all_on(), raw, evidence)
            .symbols
            .into_iter()
            .map(|s| s.name)
            .filter(|n| n.starts_with("ASF_"))
            .collect()
    };
    let none = Evidence::default();
    assert!(fired_asf(&plain(HEADERS, BODY), &none).is_empty(), "clean message");
    let cases: Vec<(String, &str)> = vec![
        (html(HEADERS, "<p>hello</p><img src=\"https://cdn.example.com/a.png\" width=300 height=100>"), "ASF_IMAGE_LINKS_REMOTE"),
        (html(HEADERS, "<a href=\"http://192.0.2.1/\">x</a>"), "ASF_NUMERIC_IP_URL"),
        (html(HEADERS, "<a href=\"http://a.example.com:8080/\">x</a>"), "ASF_URL_OTHER_PORT"),
        (html(HEADERS, "<a href=\"http://a.example.info/\">x</a>"), "ASF_URL_BIZ_INFO"),
        (with_header("Subject", "") + "Content-Type: text/plain\r\n\r\n", "ASF_EMPTY_MESSAGE"),
        (html(HEADERS, "<p onclick=\"go()\">hi</p>"), "ASF_JS_VBS"),
        (html(HEADERS, "<frameset><frame src=\"a.html\"></frameset>"), "ASF_FRAME_IFRAME"),
        (html(HEADERS, "<object data=\"x.swf\"></object>"), "ASF_OBJECT_TAGS"),
        (html(HEADERS, "<embed src=\"x.swf\">"), "ASF_EMBED_TAGS"),
        (html(HEADERS, "<form action=\"https://a.example.com/\"><input name=q></form>"), "ASF_FORM_TAGS"),
        (html(HEADERS, "<p>hi</p><img src=\"http://t.example.com/p.gif\" width=\"1\" height=\"1\">"), "ASF_WEB_BUGS"),
        (plain(HEADERS, "Hot live sex cam tonight"), "ASF_SENSITIVE_WORDS"),
        (
            plain(&(with_header("From", "MAILER-DAEMON@mx.elsewhere.example") + "Subject: Undelivered Mail Returned to Sender\r\n").replace("Subject: Lunch on Thursday\r\n", ""),
                  "The message could not be delivered.\r\n\r\nFrom: someone@forged.example\r\nMessage-ID: <1@forged.example>\r\n"),
            "ASF_NDR_BACKSCATTER",
        ),
        (plain(&(HEADERS.to_string() + "Precedence: bulk\r\nList-Unsubscribe: <mailto:u@example.org>\r\n"), BODY), "ASF_BULK_MAIL"),
    ];
    for (raw, symbol) in cases {
        let got = fired_asf(&raw, &none);
        assert!(got.iter().any(|s| s == symbol), "{symbol} did not fire: {got:?}");
    }
    let spf_fail = Evidence { spf: Some(SpfResult::Fail), ..Evidence::default() };
    assert!(fired_asf(&plain(HEADERS, BODY), &spf_fail).contains(&"ASF_SPF_HARD_FAIL".to_string()));
    let spf_soft = Evidence { spf: Some(SpfResult::SoftFail), ..Evidence::default() };
    assert!(fired_asf(&plain(HEADERS, BODY), &spf_soft).is_empty());
    // A real bounce for mail we sent is not backscatter.
    let real_bounce = plain(
        &(with_header("From", "MAILER-DAEMON@mx.elsewhere.example")
            + "Subject: Undelivered Mail Returned to Sender\r\n")
            .replace("Subject: Lunch on Thursday\r\n", ""),
        "The message could not be delivered.\r\n\r\nFrom: bob@example.net\r\nMessage-ID: <1@example.net>\r\n",
    );
    assert!(!fired_asf(&real_bounce, &none).contains(&"ASF_NDR_BACKSCATTER".to_string()));
}

#[test]
fn verdict_headers_replace_forged_ones() {
    let forged = format!(
        "X-Mailsift-Score: -50.00 / 5.00\r\nX-Mailsift-Action: deliver\r\n{}",
        plain(HEADERS, "GTUBE: XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X")
    );
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let v = engine.scan(forged.as_bytes(), &Envelope::default(), &Evidence::default());
    let out = String::from_utf8(v.apply_headers(forged.as_bytes())).unwrap();
    assert_eq!(out.matches("X-Mailsift-Score:").count(), 1);
    assert!(out.contains("X-Mailsift-Action: reject"));
    assert!(!out.contains("-50.00"));
    assert!(out.contains("X-Mailsift-Symbols: GTUBE(1000.00)"));
    assert!(out.contains("X-Mailsift-Scanned: heuristics"));
}

/// Without reverse-DNS evidence of our own (DNS off; spamd, `scan --from-trace` and `eval` judge stored mail),
/// what the receiving server recorded about the client stands in, against the sender only: Postfix's
/// "unknown" and a residential name count, a good name earns nothing, and our own lookup, when there is
/// one, decides.
#[test]
fn the_receiving_servers_record_of_reverse_dns_counts_against_the_sender_only() {
    use mailsift_engine::evidence::PtrFacts;
    let judge = |received: &str, evidence: &Evidence| {
        let raw = plain(&with_header("Received", received), BODY);
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let msg = engine.parse(raw.as_bytes());
        let mut envelope = Envelope::default();
        envelope.fill_from_trace(&msg);
        engine.judge(&msg, &envelope, evidence).symbols.into_iter().map(|s| s.name).collect::<Vec<_>>()
    };
    let none = Evidence::default();
    let unknown = judge(
        "from mail.example.org (unknown [203.0.113.9]) by mx.example.net (Postfix); Mon, 6 Jan 2025 10:00:02 +0000",
        &none,
    );
    assert!(unknown.contains(&"RDNS_NONE".to_string()), "{unknown:?}");
    let dynamic = judge(
        "from pc (adsl-203-0-113-9.dsl.isp.example [203.0.113.9]) by mx.example.net; Mon, 6 Jan 2025 10:00:02 +0000",
        &none,
    );
    assert!(dynamic.contains(&"RDNS_DYNAMIC".to_string()), "{dynamic:?}");
    let good = judge(
        "from mail.example.org (mail.example.org [203.0.113.9]) by mx.example.net; Mon, 6 Jan 2025 10:00:02 +0000",
        &none,
    );
    assert!(!good.iter().any(|s| s.starts_with("RDNS_")), "{good:?}");
    // Sendmail's "may be forged" is too common on legitimate servers to count.
    let doubted = judge("from mail.example.org (mail.example.org [203.0.113.9] (may be forged)) by mx.example.net; Mon, 6 Jan 2025 10:00:02 +0000", &none);
    assert!(!doubted.iter().any(|s| s.starts_with("RDNS_")), "{doubted:?}");
    // But the PTR name it doubts is still the address owner's word for it: a residential one counts, as it
    // does when we look it up ourselves and the forward lookup fails.
    let doubted_home = judge("from localhost (200.84.246-96.dyn.dsl.isp.example [200.84.246.96] (may be forged)) by mx.example.net; Mon, 6 Jan 2025 10:00:02 +0000", &none);
    assert!(doubted_home.contains(&"RDNS_DYNAMIC".to_string()), "{doubted_home:?}");
    // Our own lookup decides when we made one: a confirmed name outweighs the recorded "unknown".
    let looked_up = Evidence::from_sender(SenderFacts {
        ptr: Some(PtrFacts { result: Outcome::Pass, names: vec!["mail.example.org".into()] }),
        ..SenderFacts::default()
    });
    let ours = judge(
        "from mail.example.org (unknown [203.0.113.9]) by mx.example.net (Postfix); Mon, 6 Jan 2025 10:00:02 +0000",
        &looked_up,
    );
    assert!(!ours.iter().any(|s| s.starts_with("RDNS_")), "{ours:?}");
}

/// A 2007 spam program posing as Outlook Express, as the university server of the TREC 2007 public corpus
/// received it (header fields of its bots; addresses and names replaced): `received` is the receiving
/// server's line, `id` the Message-ID, `extra` more header fields.
fn outlook_bot(id: &str, received: &str, extra: &str) -> String {
    format!(
        "Received: {received}\r\n\
         Message-ID: {id}\r\n\
         From: \"Stefanie Ashby\" <s.ashby@example.com>\r\n\
         To: <bob@example.net>\r\n\
         Subject: Re: the report\r\n\
         Date: Mon, 9 Apr 2007 19:32:48 +0000\r\n\
         MIME-Version: 1.0\r\n\
         X-Priority: 3\r\n\
         X-MSMail-Priority: Normal\r\n\
         X-Mailer: Microsoft Outlook Express 6.00.2900.2180\r\n\
         X-MimeOLE: Produced By Microsoft MimeOLE V6.00.2900.2180\r\n{extra}"
    )
}

const BOT_LINE: &str = "from pc42 (p508473ae.dip.t-dialin.example [80.132.115.174]) by mx.example.net (8.12.8/8.12.5) \
    with SMTP id l39JWc0I018695 for <bob@example.net>; Mon, 9 Apr 2007 19:32:49 +0000";
const REAL_OUTLOOK_ID: &str = "<001101c77b5b$76833860$06b54d1c@pc42>";

/// The message judged as mail after the fact is (eval, `scan --from-trace`, spamd): the envelope from the trace.
fn fired_from_trace(raw: &str, evidence: &Evidence) -> Vec<String> {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let msg = engine.parse(raw.as_bytes());
    let mut envelope = Envelope::default();
    envelope.fill_from_trace(&msg);
    engine.judge(&msg, &envelope, evidence).symbols.into_iter().map(|s| s.name).collect()
}

/// Outlook writes 12 hex digits in the Message-ID's first field; the bots of 2007 wrote 8. Fires only when
/// the message claims Outlook (another program's identifiers of that shape are its own business).
#[test]
fn an_outlook_message_id_outlook_never_writes() {
    let fake = "<01c77add$dacda5e0$6c822ecf@a_rath>";
    let has = |raw: &str| fired(&plain(raw, BODY)).iter().any(|s| s == "MSGID_OUTLOOK_FAKE");
    assert!(has(&outlook_bot(fake, BOT_LINE, "")));
    assert!(!has(&outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "")));
    // Without Outlook's fields the same identifier says nothing.
    let other = outlook_bot(fake, BOT_LINE, "")
        .replace("X-Mailer: Microsoft Outlook Express", "X-Mailer: Foo")
        .replace("X-MimeOLE: Produced By Microsoft MimeOLE V6.00.2900.2180\r\n", "");
    assert!(!has(&other));
    // Four fields, or a non-hex one, are not the form.
    assert!(!has(&outlook_bot("<01c77add$dacda5e0$6c822ecf$00000000@x>", BOT_LINE, "")));
    assert!(!has(&outlook_bot("<01c77adg$dacda5e0$6c822ecf@x>", BOT_LINE, "")));
}

/// A tab between a field's colon and its value: the template of a 2007 spam wave ("Date: <TAB>Sat, 21 Apr
/// 2007 ..."), which no mail program writes. Only the fields a mail program writes count, a folded line
/// (which begins with a tab) is not a field, and a message without the tab says nothing.
#[test]
fn a_tab_after_the_colon_of_a_field_a_mail_program_writes() {
    let has = |raw: &str| fired(&plain(raw, BODY)).iter().any(|s| s == "HEADER_TAB_PADDED");
    let bot = outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "");
    assert!(!has(&bot));
    assert!(has(&bot.replace("Date: Mon,", "Date: \tMon,")));
    assert!(has(&bot.replace("Date: Mon,", "Date:\tMon,")));
    assert!(has(&bot.replace("Subject: Re:", "subject: \tRe:")));
    // A folded value: the continuation line begins with a tab, as RFC 5322 allows.
    assert!(!has(&bot.replace("Subject: Re: the report", "Subject: Re: the\r\n\treport")));
    // Another program's own field is its business.
    assert!(!has(&format!("{bot}X-Campaign: \t42\r\n")));
    // Two spaces are sloppy, not this template.
    assert!(!has(&bot.replace("Date: Mon,", "Date:  Mon,")));
    // It is a spam program's mark: with it, the engines' ham grades score nothing.
    assert!(mailsift_engine::checks::classifier::FINGERPRINTS.iter().any(|f| f.name() == "HEADER_TAB_PADDED"));
}

/// Mail from the recipient's own address to himself, from outside: spam posing as a note to self. Not for two
/// recipients, a list post, nor our own users' outbound mail.
#[test]
fn the_recipient_writing_to_himself_from_outside() {
    let msg = |from: &str, to: &str, extra: &str| {
        plain(
            &format!(
                "From: \"Canadian Doctor\" <{from}>\r\nTo: <{to}>\r\nSubject: RE: MedHelp 1234\r\n\
                 Date: Tue, 1 May 2007 06:52:33 -0400\r\nMessage-ID: <1@x.example>\r\n{extra}"
            ),
            BODY,
        )
    };
    let has = |raw: &str| fired(raw).iter().any(|s| s == "FROM_EQUALS_TO");
    assert!(has(&msg("theorize@plg.uni.example", "theorize@plg.uni.example", "")));
    assert!(has(&msg("Theorize@plg.uni.example", "theorize@PLG.uni.example", "")));
    assert!(!has(&msg("alice@example.org", "theorize@plg.uni.example", "")));
    assert!(!has(&msg("theorize@plg.uni.example", "theorize@plg.uni.example>, <bob@example.net", "")));
    assert!(!has(&msg("theorize@plg.uni.example", "theorize@plg.uni.example", "List-Id: <talk.lists.example>\r\n")));
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let raw = msg("alice@example.com", "alice@example.com", "");
    let own = Envelope { authenticated_user: Some("alice".into()), ..Envelope::default() };
    let v = engine.scan(raw.as_bytes(), &own, &Evidence::default());
    assert!(!v.symbols.iter().any(|s| s.name == "FROM_EQUALS_TO"), "{:?}", v.symbols);
}

/// Outlook's headers on mail that came from the sending PC itself: nothing in the trace older than the
/// receiving server's line. Sent through the provider's server (one line more), as our own outbound mail,
/// or through a mailing list, it does not fire; nor does a mail program that does not claim Outlook.
#[test]
fn outlook_straight_from_the_pc_to_the_gateway() {
    let direct =
        |raw: &str| fired_from_trace(&plain(raw, BODY), &Evidence::default()).contains(&"OUTLOOK_DIRECT_TO_MX".into());
    assert!(direct(&outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "")));
    let submitted = outlook_bot(
        REAL_OUTLOOK_ID,
        "from smtp.isp.example (smtp.isp.example [192.0.2.25]) by mx.example.net (Postfix); Mon, 9 Apr 2007 19:32:50 +0000",
        "Received: from pc42 (p508473ae.dip.t-dialin.example [80.132.115.174]) by smtp.isp.example with ESMTPA; Mon, 9 Apr 2007 19:32:49 +0000\r\n",
    );
    assert!(!direct(&submitted));
    // Older lines the program made up ("from pc42 by example.com with ASMTP") hide nothing when the Message-ID
    // was written on the very address that connected (80.132.115.174, bytes lowest first); written on a
    // private address behind a router, the older lines decide as before.
    let forged = "Received: from pc42 by example.com with ASMTP id A7B2595A; Mon, 9 Apr 2007 19:32:47 +0000\r\n";
    assert!(direct(&outlook_bot("<001101c77b5b$76833860$ae738450@pc42>", BOT_LINE, forged)));
    assert!(!direct(&outlook_bot("<001101c77b5b$76833860$0a01a8c0@pc42>", BOT_LINE, forged)));
    assert!(!direct(&outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, forged)));
    let list = outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "List-Id: <talk.lists.example.org>\r\n");
    assert!(!direct(&list));
    let thunderbird = outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "")
        .replace("X-Mailer: Microsoft Outlook Express 6.00.2900.2180", "User-Agent: Thunderbird 2.0.0.0")
        .replace("X-MimeOLE: Produced By Microsoft MimeOLE V6.00.2900.2180\r\n", "");
    assert!(!direct(&thunderbird));
    // Exchange's own X-MimeOLE is a server's: a mailing system built on it delivers straight to us (a CBS
    // News advisory of TREC 2007's ham).
    let exchange = outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "")
        .replace("X-Mailer: Microsoft Outlook Express 6.00.2900.2180\r\n", "")
        .replace("Produced By Microsoft MimeOLE V6.00.2900.2180", "Produced By Microsoft Exchange V6.5");
    assert!(!direct(&exchange));
    // Nor is CDO's, the library Windows servers and web applications send with (it writes MimeOLE's field too).
    let cdo = outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "")
        .replace("Microsoft Outlook Express 6.00.2900.2180", "Microsoft CDO for Windows 2000");
    assert!(!direct(&cdo));
    // Our own users' mail, from a trusted network, is not judged this way.
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let raw = plain(&outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, ""), BODY);
    let msg = engine.parse(raw.as_bytes());
    let mut envelope = Envelope { authenticated_user: Some("alice".into()), ..Envelope::default() };
    envelope.fill_from_trace(&msg);
    let v = engine.judge(&msg, &envelope, &Evidence::default());
    assert!(!v.symbols.iter().any(|s| s.name == "OUTLOOK_DIRECT_TO_MX"), "{:?}", v.symbols);
    // A live connection judged before any Received line: the message has none at all.
    let live =
        plain(&outlook_bot(REAL_OUTLOOK_ID, BOT_LINE, "").replacen(&format!("Received: {BOT_LINE}\r\n"), "", 1), BODY);
    let msg = engine.parse(live.as_bytes());
    let envelope = Envelope { client_ip: Some("80.132.115.174".parse().unwrap()), ..Envelope::default() };
    let v = engine.judge(&msg, &envelope, &Evidence::default());
    assert!(v.symbols.iter().any(|s| s.name == "OUTLOOK_DIRECT_TO_MX"), "{:?}", v.symbols);
}

/// A GIF of its own shown inline, no link anywhere: image spam (the form of the 2007 stock-tout and pill
/// pictures). A link, a small logo, a photo (JPEG), or a list post do not fire.
#[test]
fn a_picture_instead_of_text_and_no_link() {
    fn with_picture(ctype: &str, size: usize, html_body: &str, extra: &str) -> String {
        let mut data = b"GIF89a".to_vec();
        if ctype == "image/jpeg" {
            data = vec![0xff, 0xd8, 0xff, 0xe0];
        }
        data.resize(size, 0x55);
        let b64 = mailsift_testkit::auth::base64(&data);
        format!(
            "{HEADERS}{extra}Content-Type: multipart/related; boundary=\"rel\"\r\n\r\n--rel\r\n\
             Content-Type: text/html; charset=us-ascii\r\n\r\n{html_body}\r\n--rel\r\n\
             Content-Type: {ctype}; name=\"Desktops.gif\"\r\nContent-Transfer-Encoding: base64\r\n\
             Content-ID: <006901c77add$dacda5e0$6c822ecf@MP>\r\n\r\n{b64}\r\n--rel--\r\n"
        )
    }
    let page = "<html><body><p>he cannot fathom. Does it not often dazzle your eyes</p>\
                <img src=\"cid:006901c77add$dacda5e0$6c822ecf@MP\"></body></html>";
    let has = |raw: &str| fired(raw).iter().any(|s| s == "HTML_GIF_NO_LINKS");
    assert!(has(&with_picture("image/gif", 9000, page, "")));
    let linked = page.replace("</p>", " <a href=\"https://shop.example.com/\">order</a></p>");
    assert!(!has(&with_picture("image/gif", 9000, &linked, "")));
    let address = page.replace("</p>", " see www.example.com</p>");
    assert!(!has(&with_picture("image/gif", 9000, &address, "")));
    assert!(!has(&with_picture("image/gif", 2000, page, "")), "a signature's logo");
    assert!(!has(&with_picture("image/jpeg", 90000, page, "")), "a photo");
    assert!(!has(&with_picture("image/gif", 9000, page, "List-Id: <talk.lists.example.org>\r\n")));
    // Attached but not shown: not the form.
    assert!(!has(&with_picture("image/gif", 9000, "<html><body><p>the picture you asked for</p></body></html>", "")));
}

/// A spam program's mark (here MSGID_OUTLOOK_FAKE) silences the engines' ham side: the grade still shows,
/// says why, and scores nothing; the spam side is untouched. Without a mark, or with the mark weighted 0 by
/// the administrator, the ham side counts as before.
#[test]
fn a_spam_programs_mark_silences_the_engines_ham_side() {
    use mailsift_engine::evidence::ClassifierScores;
    let evidence = |bayes: f64, linear: f64| Evidence {
        classifier: Some(ClassifierScores { bayes: Some(bayes), linear: Some(linear), ..ClassifierScores::default() }),
        ..Evidence::default()
    };
    let judge = |config: EngineConfig, id: &str, ev: &Evidence| {
        let raw = plain(&outlook_bot(id, BOT_LINE, ""), BODY);
        Engine::new(config).unwrap().scan(raw.as_bytes(), &Envelope::default(), ev)
    };
    let points =
        |v: &Verdict, name: &str| v.symbols.iter().find(|s| s.name == name).map(|s| (s.score, s.detail.clone()));
    let marked = judge(EngineConfig::default(), "<01c77add$dacda5e0$6c822ecf@a_rath>", &evidence(0.001, 0.95));
    let (bayes, detail) = points(&marked, "BAYES_HAM_99").expect("the grade still shows");
    assert_eq!(bayes, 0.0, "{detail}");
    assert!(detail.contains("MSGID_OUTLOOK_FAKE"), "{detail}");
    assert!(points(&marked, "LINEAR_SPAM_90").is_some_and(|(s, _)| s > 2.0), "{:?}", marked.symbols);
    let clean = judge(EngineConfig::default(), REAL_OUTLOOK_ID, &evidence(0.001, 0.95));
    assert!(points(&clean, "BAYES_HAM_99").is_some_and(|(s, _)| s < -2.0), "{:?}", clean.symbols);
    let mut off = EngineConfig::default();
    off.weights.insert("MSGID_OUTLOOK_FAKE".into(), 0.0);
    let silenced = judge(off, "<01c77add$dacda5e0$6c822ecf@a_rath>", &evidence(0.001, 0.95));
    assert!(points(&silenced, "BAYES_HAM_99").is_some_and(|(s, _)| s < -2.0), "{:?}", silenced.symbols);
}

/// Stored mail judged after the fact: the receiving organisation's own relays (clients whose name, verified
/// by the server that received from them, lies in a recipient's domain) are walked past to the first client
/// outside it. The route is TREC 2007's: a department's relay handed a bot's message to the central server.
#[test]
fn stored_mail_is_judged_by_the_first_client_outside_the_organisation() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let client = |received: &str, to: &str| {
        let raw = format!(
            "{received}From: \"Walker Bryant\" <w.bryant@example.com>\r\nTo: <{to}>\r\nSubject: Buy OEM Software\r\n\
             Date: Sat, 14 Apr 2007 14:13:40 +0300\r\nMessage-ID: <000001c77e85$a063e580$0100007f@localhost>\r\n\r\nbody\r\n"
        );
        let msg = engine.parse(raw.as_bytes());
        let mut envelope = Envelope::default();
        envelope.fill_from_trace(&msg);
        (envelope.client_ip.map(|i| i.to_string()).unwrap_or_default(), envelope.helo.unwrap_or_default())
    };
    let date = "Sat, 14 Apr 2007 07:13:50 -0400";
    let relay = format!(
        "Received: from plg2.math.uni.example (plg2.math.uni.example [129.97.186.80]) by speedy.uni.example \
         (8.12.8/8.12.5) with ESMTP id l3EBBm0I001092; {date}\r\n"
    );
    let bot = format!(
        "Received: from localhost (84-232-157-31.rdsnet.example [84.232.157.31] (may be forged)) by \
         plg2.math.uni.example (8.13.8/8.13.8) with SMTP id l3EBBKEk025218; {date}\r\n"
    );
    let staff = "theorize@plg.uni.example";
    assert_eq!(client(&format!("{relay}{bot}"), staff), ("84.232.157.31".into(), "localhost".into()));
    // Judged from there, the bot's own marks count.
    let raw = format!("{relay}{bot}From: a@example.com\r\nTo: <{staff}>\r\nSubject: s\r\nDate: {date}\r\n\r\nbody\r\n");
    let seen = fired_from_trace(&raw, &Evidence::default());
    assert!(seen.contains(&"HELO_NOT_FQDN".to_string()), "{seen:?}");
    // Mail for another organisation's recipients: its relays are not ours to walk past.
    assert_eq!(client(&format!("{relay}{bot}"), "bob@example.net").0, "129.97.186.80");
    // A list's server delivering a post (the recipient a list address, as its X-Original-To says): the list's
    // relays are not the organisation's, and the poster behind them is the list's business.
    let list = format!(
        "Received: from murphy.lists.example (murphy.lists.example [70.103.162.31]) by speedy.uni.example \
         (8.12.8/8.12.5) with ESMTP id l3HG3o0I029928; {date}\r\n\
         Received: from benkatpc (e181186013.adsl.isp.example [85.181.186.13]) by murphy.lists.example (Postfix); {date}\r\n"
    );
    assert_eq!(client(&list, "debian-legal@lists.example").0, "70.103.162.31");
    // A provider storing its users' mail (servers in one domain, users in another): its own relays include
    // the servers users submit through, so nothing is walked.
    let provider = format!(
        "Received: from mail-qy0.provider.example (mail-qy0.provider.example [209.85.216.180]) by mx.provider.example; {date}\r\n\
         Received: from [192.168.1.105] (c-24-5-41-187.hsd1.isp.example [24.5.41.187]) by smtp.provider.example; {date}\r\n"
    );
    assert_eq!(client(&provider, "someone@providermail.example").0, "209.85.216.180");
    // Between two of the organisation's machines the newest stays.
    let desk = format!(
        "Received: from desk42.cs.uni.example (desk42.cs.uni.example [129.97.1.42]) by plg2.math.uni.example; {date}\r\n"
    );
    assert_eq!(client(&format!("{relay}{desk}"), staff).0, "129.97.186.80");
    // An outsider's forged line naming the organisation, below his own: he is the client.
    let outsider = format!(
        "Received: from mx.spam.example (mx.spam.example [198.51.100.7]) by speedy.uni.example (8.12.8/8.12.5); {date}\r\n"
    );
    let forged = format!(
        "Received: from plg2.math.uni.example (plg2.math.uni.example [129.97.186.80]) by mx.spam.example; {date}\r\n"
    );
    assert_eq!(client(&format!("{outsider}{forged}"), staff).0, "198.51.100.7");
    // A greeting that claims the organisation counts for nothing: only the verified name does.
    let claims = format!(
        "Received: from plg2.math.uni.example (dsl-7.isp.example [203.0.113.7]) by speedy.uni.example (8.12.8/8.12.5); {date}\r\n"
    );
    assert_eq!(client(&format!("{claims}{bot}"), staff).0, "203.0.113.7");
}
