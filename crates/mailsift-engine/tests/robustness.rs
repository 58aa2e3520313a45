//! Hostile input: no message makes the engine panic, hang or use memory out of proportion. Real nasty cases
//! first, then property tests on arbitrary bytes and on arbitrary MIME-shaped messages.

use std::sync::OnceLock;

use mailsift_engine::message::{adversarial, limits};
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, Message, Verdict};
use proptest::prelude::*;

/// `default` cases, unless `PROPTEST_CASES` asks for another number: the longer fuzz run outside CI is
/// `PROPTEST_CASES=200000 cargo test --release -p mailsift-engine --test robustness`.
fn config(default: u32) -> ProptestConfig {
    match std::env::var("PROPTEST_CASES") {
        Ok(_) => ProptestConfig::default(),
        Err(_) => ProptestConfig::with_cases(default),
    }
}

/// One engine for every property case: building one compiles the rules, which would dominate a long run.
fn shared_engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(engine)
}

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
        // Dates mail-parser reads on into the next line on bare-LF messages (the swallowed-field recovery).
        Just("Sat, 14 Sep 2002 06:00:48 UT\nFrom: x@y.example\n".to_string()),
        Just("27 Jun 01 3:36:25 AM\n \nTo:\n:\n".to_string()),
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
    #![proptest_config(config(512))]

    #[test]
    fn arbitrary_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let v = shared_engine().scan(&raw, &Envelope::default(), &Evidence::default());
        prop_assert!(v.score.is_finite());
    }

    /// A list post's tag and footer are cut out of arbitrary text (separators, multi-byte characters near
    /// the footer window's edge, links repeated in and out of the footer) without panicking.
    #[test]
    fn list_posts_with_arbitrary_text_never_panic(
        subject in "(Re: ?)?(\\[[^\\]]{0,50}\\]?)? ?.{0,60}",
        lines in proptest::collection::vec(
            prop_oneof![
                "-- ",
                "_{10,20}",
                ".{0,120}",
                "(see )?https?://[a-z]{1,8}\\.example/[a-z]{0,8}",
                "listinfo|unsubscribe|mailing list",
                "é{0,700}",
            ],
            0..40,
        ),
    ) {
        let raw = format!("From: a@example.com\nSubject: {subject}\nList-Id: <l.example>\n\n{}\n", lines.join("\n"));
        let engine = shared_engine();
        // The property is that neither call panics (a panic fails the case); the verdict must still be a number.
        mailsift_engine::classify::features(&engine.parse(raw.as_bytes()));
        let v = engine.scan(raw.as_bytes(), &Envelope::default(), &Evidence::default());
        prop_assert!(v.score.is_finite());
    }

    /// The local head reads the sender's header fields byte by byte: whatever the bytes (folded lines, CR
    /// without LF, names without a colon, 8-bit garbage, huge fields), it reads at most 3,000 of them, gives
    /// at most one feature per byte plus its bias, each once, and finds the organisation without panicking.
    #[test]
    fn the_local_heads_reading_is_bounded(
        fields in proptest::collection::vec(
            (
                prop_oneof![
                    Just("From"), Just("Subject"), Just("Message-ID"), Just("To"), Just("Delivered-To"),
                    Just("Content-Type"), Just("X-Mailer"), Just("Received"), Just(" "), Just("\t"), Just(""),
                ],
                proptest::collection::vec(any::<u8>(), 0..600),
            ),
            0..40,
        ),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut raw = Vec::new();
        for (name, value) in &fields {
            raw.extend_from_slice(name.as_bytes());
            raw.extend_from_slice(b": ");
            raw.extend_from_slice(value);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&body);
        let msg = shared_engine().parse(&raw);
        let f = mailsift_engine::classify::features(&msg);
        prop_assert!(!f.local.is_empty() && f.local.len() <= 3_001, "{}", f.local.len());
        prop_assert!(f.local.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
        let org = mailsift_engine::classify::tokens::organisation(&msg);
        prop_assert!(org.is_none_or(|d| d.contains('.')));
        prop_assert_eq!(f.local, mailsift_engine::classify::tokens::local_features(msg.raw_headers()));
    }

    #[test]
    fn arbitrary_mime_never_panics(raw in mime_message()) {
        let engine = shared_engine();
        let v = engine.scan(&raw, &Envelope::default(), &Evidence::default());
        prop_assert!(v.score.is_finite());
        // Our headers always round-trip through the parser.
        let out = v.apply_headers(&raw);
        let again = engine.parse(&out);
        prop_assert_eq!(again.header("X-Mailsift-Id"), Some(v.id.as_str()));
    }
}

/// A MIME tree to render: the shapes the parser nests on, with chains for depth beyond the limits.
#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Html(String),
    Multipart {
        subtype: &'static str,
        same_boundary: bool,
        children: Vec<Node>,
    },
    /// A message/rfc822 part in a transfer encoding ("7bit", "quoted-printable" or "base64").
    Message {
        encoding: &'static str,
        inner: Box<Node>,
    },
    /// `count` levels of one wrapper around `inner`, rendered in a loop.
    Chain {
        wrapper: Wrapper,
        count: usize,
        inner: Box<Node>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Wrapper {
    Rfc822,
    Multipart,
    Digest,
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        "[ -~]{0,30}".prop_map(Node::Text),
        Just(Node::Text("--b0\r\n--b1--\r\n".to_string())),
        "[ -~]{0,30}".prop_map(|t| Node::Html(format!("<div><a href=\"http://x.example/\">{t}</a></div>"))),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec!["mixed", "alternative", "related", "digest"]),
                any::<bool>(),
                prop::collection::vec(inner.clone(), 0..6)
            )
                .prop_map(|(subtype, same_boundary, children)| Node::Multipart {
                    subtype,
                    same_boundary,
                    children
                }),
            (prop::sample::select(vec!["7bit", "quoted-printable", "base64"]), inner.clone())
                .prop_map(|(encoding, inner)| Node::Message { encoding, inner: Box::new(inner) }),
            (prop::sample::select(vec![Wrapper::Rfc822, Wrapper::Multipart, Wrapper::Digest]), 1usize..80, inner)
                .prop_map(|(wrapper, count, inner)| Node::Chain { wrapper, count, inner: Box::new(inner) }),
        ]
    })
}

/// Renders one MIME entity (header fields, empty line, body). Recursion here follows the generated tree,
/// at most four levels; chains are loops.
fn render(node: &Node, next: &mut usize, out: &mut Vec<u8>) {
    let mut boundary = |same: bool| {
        *next += 1;
        if same {
            "same".to_string()
        } else {
            format!("b{next}")
        }
    };
    match node {
        Node::Text(t) => out.extend_from_slice(format!("Content-Type: text/plain\r\n\r\n{t}\r\n").as_bytes()),
        Node::Html(t) => out.extend_from_slice(format!("Content-Type: text/html\r\n\r\n{t}\r\n").as_bytes()),
        Node::Multipart { subtype, same_boundary, children } => {
            let b = boundary(*same_boundary);
            out.extend_from_slice(format!("Content-Type: multipart/{subtype}; boundary=\"{b}\"\r\n\r\n").as_bytes());
            for c in children {
                out.extend_from_slice(format!("--{b}\r\n").as_bytes());
                render(c, next, out);
            }
            out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        }
        Node::Message { encoding, inner } => {
            let mut body = b"Subject: inner\r\n".to_vec();
            render(inner, next, &mut body);
            out.extend_from_slice(b"Content-Type: message/rfc822\r\n");
            let body = match *encoding {
                "quoted-printable" => adversarial::quoted_printable(&body),
                "base64" => adversarial::base64(&body),
                _ => body,
            };
            out.extend_from_slice(format!("Content-Transfer-Encoding: {encoding}\r\n\r\n").as_bytes());
            out.extend_from_slice(&body);
            out.extend_from_slice(b"\r\n");
        }
        Node::Chain { wrapper, count, inner } => {
            let mut closers = Vec::new();
            for _ in 0..*count {
                match wrapper {
                    Wrapper::Rfc822 => out.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n"),
                    Wrapper::Multipart | Wrapper::Digest => {
                        let b = boundary(false);
                        let sub = if matches!(wrapper, Wrapper::Digest) { "digest" } else { "mixed" };
                        out.extend_from_slice(
                            format!("Content-Type: multipart/{sub}; boundary=\"{b}\"\r\n\r\n--{b}\r\n").as_bytes(),
                        );
                        if matches!(wrapper, Wrapper::Digest) {
                            out.extend_from_slice(b"\r\n");
                        }
                        closers.push(b);
                    }
                }
            }
            render(inner, next, out);
            for b in closers.iter().rev() {
                out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
            }
        }
    }
}

fn nested_mime() -> impl Strategy<Value = Vec<u8>> {
    (node(), prop::option::of(any::<prop::sample::Index>())).prop_map(|(root, cut)| {
        let mut raw = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: generated\r\n".to_vec();
        render(&root, &mut 0, &mut raw);
        // Sometimes the message is cut short anywhere, as a broken connection would leave it.
        if let Some(cut) = cut {
            let at = cut.index(raw.len() + 1);
            raw.truncate(at);
        }
        raw
    })
}

/// Parses and judges on a thread with a Tokio worker's 2 MiB stack; returns what the limits walk predicted,
/// what `mail-parser` built, and whether a limit was reported.
fn parse_and_judge_on_small_stack(raw: &[u8]) -> (limits::SafePrefix, limits::Walked, bool, f64) {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn_scoped(s, || {
                let engine = shared_engine();
                let prefix = limits::safe_prefix(raw);
                let msg = Message::parse(raw, usize::MAX);
                let built = limits::measure(&msg.parsed);
                let v = engine.judge(&engine.parse(raw), &Envelope::default(), &Evidence::default());
                (prefix, built, msg.problems.mime_limit.is_some(), v.score)
            })
            .unwrap()
            .join()
            .unwrap()
    })
}

proptest! {
    #![proptest_config(config(256))]

    /// Generated MIME trees, deep chains included: nothing panics or overflows a 2 MiB stack, what the
    /// parser builds stays within the limits, and the walk never under-estimates it.
    #[test]
    fn nested_mime_stays_within_the_limits(raw in nested_mime()) {
        let (prefix, built, reported, score) = parse_and_judge_on_small_stack(&raw);
        prop_assert!(score.is_finite());
        prop_assert!(built.max_depth <= limits::MAX_MIME_DEPTH, "built {:?}", built);
        prop_assert!(built.parts <= limits::MAX_MIME_PARTS + 1, "built {:?}", built);
        prop_assert!(built.max_depth <= prefix.walked.max_depth, "built {:?}, walked {:?}", built, prefix.walked);
        prop_assert_eq!(reported, prefix.hit.is_some());
        prop_assert_eq!(prefix.hit.is_none(), prefix.len == raw.len());
    }

    /// Arbitrary bytes through the limits and the parse: the same bounds hold.
    #[test]
    fn arbitrary_bytes_stay_within_the_limits(raw in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (prefix, built, _, score) = parse_and_judge_on_small_stack(&raw);
        prop_assert!(score.is_finite());
        prop_assert!(built.max_depth <= limits::MAX_MIME_DEPTH);
        prop_assert!(built.max_depth <= prefix.walked.max_depth, "built {:?}, walked {:?}", built, prefix.walked);
        prop_assert!(prefix.len <= raw.len());
    }
}
