//! Scan-path benchmark: parse + checks + verdict on the fixture messages and, when present, on the
//! SpamAssassin corpus (`MAILSIFT_CORPUS=/path/to/data`, the folders of the npm package).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
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

fn bench(c: &mut Criterion) {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let (env, ev) = (Envelope::default(), Evidence::default());
    let mut sets =
        vec![("fixtures", PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages"))];
    if let Ok(corpus) = std::env::var("MAILSIFT_CORPUS") {
        sets.push(("sa-corpus", PathBuf::from(corpus)));
    }
    for (name, dir) in sets {
        let mut msgs = Vec::new();
        load(&dir, &mut msgs);
        if msgs.is_empty() {
            continue;
        }
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Elements(msgs.len() as u64));
        g.sample_size(10);
        g.bench_function("scan", |b| {
            b.iter(|| {
                for m in &msgs {
                    std::hint::black_box(engine.scan(m, &env, &ev));
                }
            })
        });
        g.bench_function("parse", |b| {
            b.iter(|| {
                for m in &msgs {
                    std::hint::black_box(engine.parse(m));
                }
            })
        });
        // The same scans with sender evidence gathered through DNS (a loopback server; every answer is in
        // the caches after the first pass), envelopes taken from each message's trace headers.
        let dns = mailsift_testkit::dns::TestDns::start(mailsift_testkit::dns::Zone::new());
        let mut config = EngineConfig::default();
        config.dns.enabled = true;
        config.dns.nameservers = vec![dns.addr().to_string()];
        let gatherer = mailsift_evidence::SenderGatherer::from_config(&config).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let envelopes: Vec<Envelope> = msgs
            .iter()
            .map(|m| {
                let mut e = Envelope::default();
                e.fill_from_trace(&engine.parse(m));
                e
            })
            .collect();
        let scan_with_dns = |m: &Vec<u8>, e: &Envelope| {
            let parsed = engine.parse(m);
            let facts = rt.block_on(gatherer.gather(m, e));
            engine.judge(&parsed, e, &mailsift_engine::Evidence::from_sender(facts))
        };
        for (m, e) in msgs.iter().zip(&envelopes) {
            scan_with_dns(m, e); // warm the caches
        }
        g.bench_function("scan+dns-cached", |b| {
            b.iter(|| {
                for (m, e) in msgs.iter().zip(&envelopes) {
                    std::hint::black_box(scan_with_dns(m, e));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
