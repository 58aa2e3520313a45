//! Peak memory and time of one parse and judge, per adversarial message and for real ones.
//!
//! `cargo run --release -p mailsift-engine --example adversarial_memory [CASE...]` (or `tools/mime_memory.sh`).
//! Each case runs in a fresh child process (this program run again with `--case NAME`), so one case's
//! allocations cannot hide another's. The child builds the engine, resets the kernel's peak-RSS mark
//! (`/proc/self/clear_refs`, value 5) and reads VmRSS as its baseline, then builds or reads the message,
//! parses and judges it, and reads VmHWM: the difference is the peak memory the message cost, its own bytes
//! included. Real messages are the fixtures in `../shared/testdata/messages`, plus the SpamAssassin corpus
//! when `CORPUS_DATA_DIR` names its `data` folder (its ten largest messages).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use mailsift_engine::message::adversarial;
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence};

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The child: measures one case and prints `size peak_kib millis limit reset` on one line.
fn run_case(name: &str) {
    let engine = Engine::new(EngineConfig::default()).expect("default engine");
    // Warm the engine's lazily built tables on a small message, so the case pays only for itself.
    engine.scan(
        b"From: a@example.org\r\nSubject: warm\r\n\r\nhello http://example.com/\r\n",
        &Envelope::default(),
        &Evidence::default(),
    );
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let baseline = if reset {
        status_kib("VmRSS:").unwrap_or(0)
    } else {
        status_kib("VmHWM:").unwrap_or(0).max(status_kib("VmRSS:").unwrap_or(0))
    };
    let raw = match name.strip_prefix("real:") {
        Some(path) => std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")),
        None => adversarial::build(name).unwrap_or_else(|| panic!("no case {name}")),
    };
    let start = Instant::now();
    let msg = engine.parse(&raw);
    let verdict = engine.judge(&msg, &Envelope::default(), &Evidence::default());
    let limit = msg.problems.mime_limit.map(|h| h.limit.as_str()).unwrap_or("-");
    drop(msg);
    let millis = start.elapsed().as_secs_f64() * 1000.0;
    let peak = status_kib("VmHWM:").unwrap_or(0).saturating_sub(baseline);
    assert!(verdict.score.is_finite());
    println!("{} {} {:.1} {} {}", raw.len(), peak, millis, limit, reset);
}

fn real_messages() -> Vec<PathBuf> {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages");
    let mut by_size = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&fixtures) {
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "eml") {
                by_size.push((e.metadata().map(|m| m.len()).unwrap_or(0), p));
            }
        }
    }
    by_size.sort();
    // The largest, the median and the smallest fixture.
    let mut chosen: Vec<PathBuf> = Vec::new();
    for i in [by_size.len().saturating_sub(1), by_size.len() / 2, 0] {
        if let Some((_, p)) = by_size.get(i) {
            if !chosen.contains(p) {
                chosen.push(p.clone());
            }
        }
    }
    if let Some(dir) = std::env::var_os("CORPUS_DATA_DIR") {
        let mut corpus = Vec::new();
        let mut pending = vec![PathBuf::from(dir)];
        while let Some(d) = pending.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    pending.push(p);
                } else if p.extension().is_some_and(|x| x == "txt") {
                    corpus.push((e.metadata().map(|m| m.len()).unwrap_or(0), p));
                }
            }
        }
        corpus.sort();
        chosen.extend(corpus.iter().rev().take(10).map(|(_, p)| p.clone()));
    }
    chosen
}

fn short(p: &Path) -> String {
    p.file_name().map(|f| f.to_string_lossy().chars().take(28).collect()).unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--case") {
        run_case(args.get(1).expect("--case NAME"));
        return;
    }
    let mut cases: Vec<(String, String)> = Vec::new();
    for (name, _) in adversarial::CASES {
        if args.is_empty() || args.iter().any(|a| a == name) {
            cases.push((name.to_string(), name.to_string()));
        }
    }
    if args.is_empty() || args.iter().any(|a| a == "real") {
        for p in real_messages() {
            cases.push((format!("real:{}", p.display()), format!("real {}", short(&p))));
        }
    }
    let exe = std::env::current_exe().expect("own path");
    println!("{:<34} {:>10} {:>12} {:>7} {:>9}  limit", "case", "bytes", "peak KiB", "ratio", "ms");
    let (mut worst_ratio, mut worst_extra) = (0f64, 0u64);
    for (arg, label) in &cases {
        let out = Command::new(&exe).args(["--case", arg]).output().expect("run the child");
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.split_whitespace().collect();
        if !out.status.success() || f.len() < 5 {
            println!("{label:<34} FAILED: {} {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
            continue;
        }
        let (size, peak): (u64, u64) = (f[0].parse().unwrap_or(0), f[1].parse().unwrap_or(0));
        let ratio = (peak * 1024) as f64 / size.max(1) as f64;
        let note = if f[4] == "true" { "" } else { " (no HWM reset: upper bound)" };
        println!("{label:<34} {size:>10} {peak:>12} {ratio:>7.2} {:>9}  {}{note}", f[2], f[3]);
        worst_ratio = worst_ratio.max(ratio);
        worst_extra = worst_extra.max((peak * 1024).saturating_sub(size));
    }
    println!("largest ratio of peak to message size: {worst_ratio:.2}");
}
