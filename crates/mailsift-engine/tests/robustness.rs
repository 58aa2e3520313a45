//! Hostile input: no message makes the engine panic, hang or use memory out of proportion. Real nasty cases
//! first, then property tests on arbitrary bytes and on arbitrary MIME-shaped messages.

use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, Verdict};
use proptest::prelude::*;

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

fn scan(raw: &[u8]) -> Verdict {
    engine().scan(raw, &Envelope::default(), &Evidence::default())
}

#[test]
fn deep_multipart_nesting() {
    let depth = 3000;
    let mut raw = String::from("From: a@example.org\r\nSubject: nest\r\n");
    for i in 0..depth {
        raw.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"));
    }
    raw.push_str("Content-Type: text/plain\r\n\r\nthe bottom\r\n");
    for i in (0..depth).rev() {
        raw.push_str(&format!("--b{i}--\r\n"));
    }
    let v = scan(raw.as_bytes());
    assert!(v.score.is_finite());
}

#[test]
fn deep_html_and_message_rfc822_nesting() {
    let mut inner = String::from("From: x@example.org\r\nSubject: inner\r\n\r\nhello\r\n");
    for _ in 0..200 {
        inner = format!("From: x@example.org\r\nContent-Type: message/rfc822\r\n\r\n{inner}");
    }
    scan(inner.as_bytes());
    let html = format!(
        "From: a@example.org\r\nContent-Type: text/html\r\n\r\n{}x{}",
        "<b><i><div>".repeat(50_000),
        "</div></i></b>".repeat(50_000)
    );
    scan(html.as_bytes());
}

#[test]
fn one_megabyte_header_line() {
    let raw = format!(
        "From: a@example.org\r\nSubject: {}\r\nX-Long: {}\r\n\r\nbody\r\n",
        "A".repeat(1 << 20),
        "b".repeat(1 << 20)
    );
    let v = scan(raw.as_bytes());
    // The header still carries a bounded detail, not a megabyte of it.
    let headers = v.headers();
    assert!(headers.iter().all(|(_, value)| value.len() < 10_000));
}

#[test]
fn broken_encodings_and_unknown_charsets() {
    let raw = b"From: a@example.org\r\nSubject: =?x-unknown-charset?B?%%%%?= =?utf-8?Q?caf=C3=A9?=\r\n\
Content-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\nContent-Type: text/plain; charset=x-martian\r\n\
Content-Transfer-Encoding: base64\r\n\r\n!!!not base64 at all@@@\r\nSGVsbG8=garbage==\r\n--zz\r\n\
Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n<p>=ZZ=4=\r\n--zz";
    let v = scan(raw);
    assert!(v.score.is_finite());
}

#[test]
fn nul_bytes_and_eight_bit_garbage() {
    let mut raw = b"From: a@example.org\r\nSubject: \x00\xff\xfe\x80\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    raw.extend((0..100_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    scan(&raw);
    scan(b"\x00\x00\x00\r\n\r\n\x00");
    scan(b"");
    scan(b"\r\n\r\n");
    scan(b":\r\n:::\r\n\r\n");
}

#[test]
fn fifty_megabyte_message_is_scanned_within_the_limit() {
    let mut raw = b"From: a@example.org\r\nSubject: big\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    let line = b"The quick brown fox jumps over the lazy dog, click here for more 0123456789\r\n";
    while raw.len() < 50 << 20 {
        raw.extend_from_slice(line);
    }
    let v = scan(&raw);
    assert!(v.symbols.iter().any(|s| s.name == "MESSAGE_TRUNCATED_FOR_SCAN"));
}

#[test]
fn many_urls_and_links_are_bounded() {
    let links: String =
        (0..20_000).map(|i| format!("<a href=\"http://h{i}.example{i}.com/\">www.other{i}.com</a>")).collect();
    let raw = format!("From: a@example.org\r\nContent-Type: text/html\r\n\r\n{links}");
    let engine = engine();
    let msg = engine.parse(raw.as_bytes());
    assert!(msg.urls.len() <= mailsift_engine::message::urls::MAX_URLS);
    let v = engine.judge(&msg, &Envelope::default(), &Evidence::default());
    assert!(v.symbols.iter().any(|s| s.name == "PHISHING_LINK_MISMATCH"));
}

fn mime_message() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("From: ".to_string()),
        Just("To: ".to_string()),
        Just("Subject: ".to_string()),
        Just("Date: ".to_string()),
        Just("Reply-To: ".to_string()),
        Just("Message-ID: ".to_string()),
        Just("Content-Type: multipart/mixed; boundary=b\r\n".to_string()),
        Just("Content-Type: text/html; charset=".to_string()),
        Just("Content-Transfer-Encoding: base64\r\n".to_string()),
        Just("Received: from ".to_string()),
    ];
    let fragment = prop_oneof![
        "[ -~]{0,40}",
        Just("<a href=\"http://0x7f.1/\">www.paypal.com</a>".to_string()),
        Just("<div style=\"font-size:0\">x</div><img src=http://a.b/c width=1 height=1>".to_string()),
        Just("\r\n--b\r\nContent-Type: text/plain\r\n\r\n".to_string()),
        Just("=?utf-8?B?w6k=?=".to_string()),
        Just("\u{0440}\u{0430}ypal v1agr@ F R E E".to_string()),
        Just("\r\n\r\n".to_string()),
        Just("--b--".to_string()),
        ".{0,20}",
    ];
    (proptest::collection::vec((header, fragment.clone()), 0..12), proptest::collection::vec(fragment, 0..20)).prop_map(
        |(headers, body)| {
            let mut raw = String::new();
            for (h, v) in headers {
                raw.push_str(&h);
                raw.push_str(&v);
                raw.push_str("\r\n");
            }
            raw.push_str("\r\n");
            for b in body {
                raw.push_str(&b);
            }
            raw.into_bytes()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let v = scan(&raw);
        prop_assert!(v.score.is_finite());
    }

    #[test]
    fn arbitrary_mime_never_panics(raw in mime_message()) {
        let engine = engine();
        let v = engine.scan(&raw, &Envelope::default(), &Evidence::default());
        prop_assert!(v.score.is_finite());
        // Our headers always round-trip through the parser.
        let out = v.apply_headers(&raw);
        let again = engine.parse(&out);
        prop_assert_eq!(again.header("X-Mailsift-Id"), Some(v.id.as_str()));
    }
}
