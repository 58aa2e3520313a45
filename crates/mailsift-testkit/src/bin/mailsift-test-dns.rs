//! A loopback DNS server for load tests, outside any test binary: `tools/loadtest.sh` points the gateway's
//! `[dns] nameservers` at it to measure what a slow resolver costs.
//!
//!   mailsift-test-dns [--delay-ms MS] [--max-secs S] [--stop-file PATH]
//!
//! It serves an empty zone on 127.0.0.1 (a free UDP port), so every name is NXDOMAIN: whatever domains the
//! replayed corpus names, each lookup costs one round trip of `--delay-ms`. It prints `listening IP:PORT`
//! once ready, and `queries N` (then counts by record type and the first names asked) when it stops: after `--max-secs` (default 600), or as soon as the stop file
//! exists (checked every 100 ms), so a script can stop it and still read the count.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use mailsift_testkit::dns::{DnsOptions, TestDns, Zone};

fn main() {
    let mut delay_ms: u64 = 50;
    let mut max_secs: u64 = 600;
    let mut stop_file: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--delay-ms" => delay_ms = value("--delay-ms").parse().unwrap_or_else(|_| usage("--delay-ms: a number")),
            "--max-secs" => max_secs = value("--max-secs").parse().unwrap_or_else(|_| usage("--max-secs: a number")),
            "--stop-file" => stop_file = Some(PathBuf::from(value("--stop-file"))),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let dns = TestDns::start_with(Zone::new(), DnsOptions { delay: Duration::from_millis(delay_ms) });
    println!("listening {}", dns.addr());
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + Duration::from_secs(max_secs);
    while Instant::now() < deadline && !stop_file.as_ref().is_some_and(|f| f.exists()) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("queries {}", dns.queries());
    // What the resolver asked for, so a load test can say which lookups a message costs.
    let mut by_type = std::collections::BTreeMap::<String, usize>::new();
    for q in dns.log() {
        *by_type.entry(q.rsplit(' ').next().unwrap_or("?").to_string()).or_default() += 1;
    }
    println!("by type {by_type:?}");
    for q in dns.log().iter().take(20) {
        println!("sample {q}");
    }
    let _ = std::io::stdout().flush();
}

fn usage(why: &str) -> ! {
    eprintln!("mailsift-test-dns: {why}\nusage: mailsift-test-dns [--delay-ms MS] [--max-secs S] [--stop-file PATH]");
    std::process::exit(2)
}
