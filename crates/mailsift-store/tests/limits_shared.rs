//! Rate-limit buckets and greylisting triplets shared by two nodes through a real private Redis (testkit,
//! loopback): what one node takes, the other cannot; a triplet one node greylisted passes at the other;
//! many threads of two nodes taking at once never get more than the burst; Redis down answers errors at
//! once (the gateway fails open), and coming back needs nobody. Skipped without Redis, failing under CI=true.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailsift_store::limits::redis::RedisLimits;
use mailsift_store::limits::{Grey, GreyTimes, LimitStore, Rate};
use mailsift_store::RedisConfig;
use mailsift_testkit::redis::Redis;

const T0: i64 = 1_800_000_000_000;
const RATE: Rate = Rate { per_sec: 1.0, burst: 5.0 };
const GREY: GreyTimes = GreyTimes { delay_ms: 300_000, window_ms: 14_400_000, pass_ttl_ms: 3_110_400_000 };

fn node(redis: &Redis) -> RedisLimits {
    RedisLimits::open(&RedisConfig::new(redis.url())).unwrap()
}

#[test]
fn two_nodes_share_one_bucket_and_one_triplet() {
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (node(&redis), node(&redis));
    for i in 0..5 {
        let n = if i % 2 == 0 { &a } else { &b };
        assert!(n.take("ip:192.0.2.1", RATE, 1.0, T0).unwrap().allowed, "take {i}");
    }
    let refused = b.take("ip:192.0.2.1", RATE, 1.0, T0).unwrap();
    assert!(!refused.allowed && refused.retry_after_secs == 1, "{refused:?}");
    assert_eq!(a.peek("ip:192.0.2.1", RATE, T0 + 2000).unwrap(), 2.0);
    assert!(a.take("ip:192.0.2.1", RATE, 1.0, T0 + 1000).unwrap().allowed);
    // The bucket expires once it would be full again, so Redis holds only throttled keys.
    let ttl: i64 = redis.cli(&["PTTL", "mailsift:limit:ip:192.0.2.1"]).unwrap().parse().unwrap();
    assert!((4000..=6000).contains(&ttl), "{ttl}");

    let k = "g:192.0.2.0/24|a@x.example|b@y.example";
    assert_eq!(a.greylist(k, GREY, T0).unwrap(), Grey::Defer { wait_secs: 300 });
    assert_eq!(b.greylist(k, GREY, T0 + 100_000).unwrap(), Grey::Defer { wait_secs: 200 });
    assert_eq!(b.greylist(k, GREY, T0 + 300_000).unwrap(), Grey::Passed);
    assert_eq!(a.greylist(k, GREY, T0 + 301_000).unwrap(), Grey::Known);
    let ttl: i64 = redis.cli(&["PTTL", &format!("mailsift:grey:{k}")]).unwrap().parse().unwrap();
    assert!(ttl > 3_000_000_000, "{ttl}");
    // After the window a retry is a first attempt again.
    let late = "g:192.0.2.0/24|a@x.example|c@y.example";
    a.greylist(late, GREY, T0).unwrap();
    assert_eq!(b.greylist(late, GREY, T0 + 5 * 3_600_000).unwrap(), Grey::Defer { wait_secs: 300 });
}

#[test]
fn take_each_takes_in_one_round_trip_and_stops_at_the_first_empty_bucket() {
    let Some(redis) = Redis::start() else { return };
    let (a, b) = (node(&redis), node(&redis));
    let one = Rate { per_sec: 0.1, burst: 1.0 };
    let keys = [("ip:9".to_string(), RATE), ("from:x".to_string(), one), ("dom:x".to_string(), RATE)];
    assert_eq!(a.take_each(&keys, T0).unwrap(), None);
    // The second bucket is empty now: refused there, after the first gave a token and before the third.
    assert_eq!(b.take_each(&keys, T0).unwrap(), Some((1, 10)));
    assert_eq!(a.peek("ip:9", RATE, T0).unwrap(), 3.0);
    assert_eq!(a.peek("dom:x", RATE, T0).unwrap(), 4.0);
    assert_eq!(b.take_each(&keys, T0 + 10_000).unwrap(), None);
}

#[test]
fn eight_threads_on_two_nodes_never_get_more_than_the_burst() {
    let Some(redis) = Redis::start() else { return };
    let nodes = [Arc::new(node(&redis)), Arc::new(node(&redis))];
    let allowed = Arc::new(AtomicUsize::new(0));
    let rate = Rate { per_sec: 0.001, burst: 50.0 };
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (n, allowed) = (nodes[i % 2].clone(), allowed.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    if n.take("from:flood@x.example", rate, 1.0, T0).unwrap().allowed {
                        allowed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(allowed.load(Ordering::SeqCst), 50);
}

#[test]
fn redis_down_answers_errors_at_once_and_coming_back_needs_nobody() {
    let Some(mut redis) = Redis::start() else { return };
    let n = node(&redis);
    assert!(n.take("ip:1", RATE, 1.0, T0).unwrap().allowed);
    redis.stop();
    let started = Instant::now();
    for _ in 0..100 {
        assert!(n.take("ip:1", RATE, 1.0, T0).is_err());
        assert!(n.greylist("g:x", GREY, T0).is_err());
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    redis.start_again();
    let deadline = Instant::now() + Duration::from_secs(5);
    while n.take("ip:1", RATE, 1.0, T0).is_err() {
        assert!(Instant::now() < deadline, "Redis not used again after it came back");
        std::thread::sleep(Duration::from_millis(50));
    }
}
