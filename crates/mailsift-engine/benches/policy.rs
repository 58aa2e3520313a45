//! Scan throughput with a policy of 0, 1,000 and 10,000 filter rules (and 10,000 rules plus 10,000
//! allowed/blocked senders), on the fixture messages and, when `MAILSIFT_CORPUS` points at it, the
//! SpamAssassin corpus. The target of issue 6: 10,000 rules cost less than 10% of scan throughput.
//!
//! The rules are generated, deterministic and shaped like an administrator's: mostly exact senders and
//! domains, Received-header and subject/body phrases, some regular expressions, CIDR ranges and sizes, with
//! a few that match common words so rules do fire. Envelopes come from each message's trace headers, so the
//! sender and recipient conditions and the lists have something to look at.
//!
//! Measured 2026-11-23 on a shared, busy 2-core machine (three runs; throughput in messages per second,
//! change against 0 rules in the same run):
//!
//! | policy | fixtures (59 messages) | SpamAssassin corpus (6,046) |
//! |---|---|---|
//! | 0 rules | 16.5k-18.9k | 7.3k-9.4k |
//! | 1,000 rules | -5% to -11% | -5% to -9% |
//! | 10,000 rules | -14% to -19% | -9% to -13% |
//! | 10,000 rules + 10,000 list entries | -4% to -19% | -8% to -15% |
//! | 10,000 rules compiled on the scanning thread | -20% to -39% | -15% to -19% |
//!
//! Where the cost goes (CPU time on the corpus): 9,990 rules that never match cost about 4% (one pass of
//! each tested field, mostly the body); the ten rules that match most messages, with their symbols and
//! the automaton they deny a prefilter, the rest. The last row is glibc's malloc, not the evaluation: see
//! [`Policy::new`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use mailsift_engine::policy::{AllowEntry, BlockAction, BlockEntry, Policy, PolicyConfig};
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence};

fn load(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            load(&p, out);
        } else if !p.extension().is_some_and(|e| e == "json" || e == "md" || e == "js") {
            if let Ok(b) = std::fs::read(&p) {
                out.push(b);
            }
        }
    }
}

/// `n` rules in TOML, in the mix described above.
fn rules_toml(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!("[[rules]]\nname = \"generated {i}\"\n"));
        let (conditions, actions) = match i % 20 {
            0..=5 => (
                format!("{{ field = \"envelope_from\", op = \"is\", value = \"user{i}@sender{}.example\" }}", i % 500),
                "{ action = \"allow\" }".to_string(),
            ),
            6..=8 => (
                format!(
                    "{{ field = \"from_domain\", op = \"is\", value = \"brand{i}.example\" }}, \
                     {{ field = \"header\", header = \"Received\", op = \"contains\", value = \"mta{i}.esp.example\" }}"
                ),
                "{ action = \"allow\" }".to_string(),
            ),
            9..=10 => (
                format!("{{ field = \"header\", header = \"Received\", op = \"contains\", value = \"relay-{i}.hosting{}.example\" }}", i % 97),
                "{ action = \"add_score\", score = -1.5 }".to_string(),
            ),
            11..=13 => (
                format!("{{ field = \"subject\", op = \"contains\", value = \"promo code {i}x\" }}"),
                "{ action = \"add_score\", score = 2.0 }".to_string(),
            ),
            14..=15 => (
                format!("{{ field = \"body\", op = \"contains\", value = \"catch phrase number {i} of ours\" }}"),
                "{ action = \"tag\" }".to_string(),
            ),
            16 => (
                format!("{{ field = \"body\", op = \"matches\", value = '\\border-{i}-[0-9]{{4}}\\b' }}"),
                "{ action = \"quarantine\" }".to_string(),
            ),
            17 => (
                format!("{{ field = \"client_ip\", op = \"in_cidr\", value = \"10.{}.{}.0/24\" }}", (i / 256) % 256, i % 256),
                "{ action = \"add_score\", score = 1.0 }".to_string(),
            ),
            18 => (
                format!(
                    "{{ field = \"recipient\", op = \"is\", value = \"user{i}@ourdomain.example\" }}, \
                     {{ field = \"size\", op = \"above\", value = {} }}",
                    10_000 + i
                ),
                format!("{{ action = \"copy\", to = \"archive{i}@ourdomain.example\" }}"),
            ),
            _ => {
                // One rule in a thousand tests a word most messages have, so some rules do fire.
                if i % 1000 == 19 {
                    ("{ field = \"body\", op = \"contains\", value = \"the \" }".to_string(), "{ action = \"add_score\", score = 0.01 }".to_string())
                } else {
                    (
                        format!("{{ field = \"header\", header = \"X-Campaign-{}\", op = \"exists\" }}", i % 50),
                        "{ action = \"add_header\", name = \"X-Seen\", value = \"campaign\" }".to_string(),
                    )
                }
            }
        };
        s.push_str(&format!("conditions = [{conditions}]\nactions = [{actions}]\n\n"));
    }
    s
}

/// The policy as a gateway builds it: on the thread that loads the configuration, not on a scanning thread.
/// With glibc's malloc this matters: the hundreds of thousands of small allocations that parsing and
/// compiling 10,000 rules leave in a thread's arena slow down every later allocation on that thread (see
/// the last group, which compiles on the scanning thread on purpose).
fn policy(rules: usize, entries: usize) -> Policy {
    std::thread::spawn(move || policy_here(rules, entries)).join().unwrap()
}

fn policy_here(rules: usize, entries: usize) -> Policy {
    let mut config: PolicyConfig = toml::from_str(&rules_toml(rules)).unwrap();
    for i in 0..entries {
        let recipient = match i % 3 {
            0 => None,
            1 => Some(format!("dept{}.ourdomain.example", i % 40)),
            _ => Some(format!("user{i}@ourdomain.example")),
        };
        if i % 4 == 0 {
            config.block.push(BlockEntry {
                id: Some(i.to_string()),
                sender: format!("spammer{i}.example"),
                recipient,
                action: BlockAction::Quarantine,
                expires: None,
                comment: None,
            });
        } else {
            config.allow.push(AllowEntry {
                id: Some(i.to_string()),
                sender: format!("friend{i}@partner{}.example", i % 300),
                recipient,
                require_auth: i % 2 == 0,
                from_ptr_domain: None,
                from_network: None,
                allow_spoofed: false,
                expires: None,
                comment: None,
            });
        }
    }
    let t = Instant::now();
    let p = Policy::new(&config).unwrap();
    eprintln!("policy of {rules} rules and {entries} entries compiled in {:.0} ms", t.elapsed().as_secs_f64() * 1e3);
    p
}

fn bench(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let mut sets =
        vec![("fixtures", PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages"))];
    if let Ok(corpus) = std::env::var("MAILSIFT_CORPUS") {
        sets.push(("sa-corpus", PathBuf::from(corpus)));
    }
    let policies = vec![
        ("0-rules", policy(0, 0)),
        ("1000-rules", policy(1_000, 0)),
        ("10000-rules", policy(10_000, 0)),
        ("10000-rules+10000-entries", policy(10_000, 10_000)),
    ];
    run(c, &engine, &sets, &policies);
    // Last, because it leaves this thread's heap as it is in a process that compiles where it scans.
    let here = vec![("10000-rules-compiled-on-the-scanning-thread", policy_here(10_000, 0))];
    run(c, &engine, &sets, &here);
}

fn run(c: &mut Criterion, engine: &Engine, sets: &[(&str, PathBuf)], policies: &[(&str, Policy)]) {
    let ev = Evidence::default();
    for (name, dir) in sets {
        let mut msgs = Vec::new();
        load(dir, &mut msgs);
        if msgs.is_empty() {
            continue;
        }
        let envelopes: Vec<Envelope> = msgs
            .iter()
            .map(|m| {
                let mut e = Envelope::default();
                e.fill_from_trace(&engine.parse(m));
                e
            })
            .collect();
        let mut g = c.benchmark_group(format!("policy-{name}"));
        g.throughput(Throughput::Elements(msgs.len() as u64));
        g.sample_size(10);
        for (label, p) in policies {
            let fired: usize = msgs
                .iter()
                .zip(&envelopes)
                .map(|(m, e)| engine.judge_with_policy(&engine.parse(m), e, &ev, p).policy_matches.len())
                .sum();
            eprintln!("{name}/{label}: {fired} rule or entry matches over {} messages", msgs.len());
            g.bench_function(format!("scan/{label}"), |b| {
                b.iter(|| {
                    for (m, e) in msgs.iter().zip(&envelopes) {
                        std::hint::black_box(engine.judge_with_policy(&engine.parse(m), e, &ev, p));
                    }
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
