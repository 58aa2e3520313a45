//! The rate limiter and greylisting on the message path: what one message costs them. Eight threads each
//! check messages as the gateway does with a rule on every inbound key (five token takes: client address,
//! network, sender, sender domain, recipient) and greylisting on (one triplet check), against the
//! in-memory store and, with Redis installed, against a private Redis on loopback (one round trip per
//! stage). Senders come from a pool, so keys are found and new ones made as in a load test.
//!
//! `cargo bench -p mailsift-store --bench limits` (`MAILSIFT_BENCH_MESSAGES=N` per thread, 100,000 by default,
//! 5,000 for Redis). Without `--bench` (as `cargo test --benches` runs it) it only checks that both work.

use std::sync::{Arc, Barrier};
use std::time::Instant;

use mailsift_store::limits::redis::RedisLimits;
use mailsift_store::limits::{GreyTimes, LimitStore, MemoryLimits, Rate, DEFAULT_MAX_ENTRIES};
use mailsift_store::RedisConfig;

const THREADS: usize = 8;
const NOW: i64 = 1_800_000_000_000;
const SENDERS: usize = 500;
const RATE: Rate = Rate { per_sec: 1e6, burst: 1e6 };
const GREY: GreyTimes = GreyTimes { delay_ms: 0, window_ms: 14_400_000, pass_ttl_ms: 3_110_400_000 };

/// One message's checks, with its keys built as the gateway builds them (one string per key).
fn per_message(store: &dyn LimitStore, t: usize, i: usize) {
    let s = (t * 7919 + i) % SENDERS;
    // MAIL FROM: four buckets in one call; RCPT TO: one.
    let at_mail = vec![
        ("client_ip:10000000/3600:10000000:any|127.0.0.1".to_string(), RATE),
        ("client_net:10000000/3600:10000000:any|127.0.0.0/24".to_string(), RATE),
        (format!("sender:10000000/3600:10000000:any|user{s}@sender{}.example", s % 50), RATE),
        (format!("sender_domain:10000000/3600:10000000:any|sender{}.example", s % 50), RATE),
    ];
    assert_eq!(store.take_each(&at_mail, NOW + i as i64).unwrap(), None);
    let at_rcpt = vec![("recipient:10000000/3600:10000000:any|user@localhost".to_string(), RATE)];
    assert_eq!(store.take_each(&at_rcpt, NOW + i as i64).unwrap(), None);
    let triplet = format!("g:127.0.0.0/24|user{s}@sender{}.example|user@localhost", s % 50);
    std::hint::black_box(store.greylist(&triplet, GREY, NOW + i as i64).unwrap());
}

/// Messages per second, all threads together.
fn run(store: Arc<dyn LimitStore>, messages: usize) -> f64 {
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                for i in 0..messages {
                    per_message(store.as_ref(), t, i);
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for t in threads {
        t.join().unwrap();
    }
    (THREADS * messages) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let messages: usize = if benching {
        std::env::var("MAILSIFT_BENCH_MESSAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000)
    } else {
        500
    };
    println!("limits: {THREADS} threads, each message 5 takes (2 calls, as at MAIL and RCPT) + 1 greylisting check");
    let memory = run(Arc::new(MemoryLimits::new(DEFAULT_MAX_ENTRIES)), messages);
    println!(
        "  memory: {memory:.0} messages/s ({:.2} us of one core per message)",
        THREADS.min(std::thread::available_parallelism().map_or(1, |n| n.get())) as f64 * 1e6 / memory
    );
    let Some(redis) = mailsift_testkit::redis::Redis::start() else { return };
    let store = Arc::new(RedisLimits::open(&RedisConfig::new(redis.url())).unwrap());
    let remote = run(store, (messages / 20).max(100));
    println!("  redis:  {remote:.0} messages/s ({:.0} us wall per message per thread)", THREADS as f64 * 1e6 / remote);
}
