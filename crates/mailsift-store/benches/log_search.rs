//! How fast the web console's message-log searches answer over a realistic log: 100,000 transactions over 30
//! days (varied senders, recipients in four domains of very different sizes, subjects partly not ASCII, the
//! gateway's actions in their usual proportions, a dozen symbols each), written through `log_append` like the
//! gateway writes them. Each search runs on the warm database; the first run, the median and the 95th
//! percentile are printed, with how many entries came back. The target is 100 ms for every search. Then the
//! dashboard's figures, and the quarantine pages over a quarantine of 5% of the log's size (one row per
//! recipient, put by four callers at once as the gateway's sessions do).
//!
//! `cargo bench -p mailsift-store --bench log_search` (`MAILSIFT_BENCH_ROWS=N` for another size,
//! `MAILSIFT_BENCH_DIR=DIR` to keep the database; `MAILSIFT_BENCH_BACKEND=postgres` for the same on a private
//! PostgreSQL the bench starts, as several nodes would share it). Without
//! `--bench` (as `cargo test --benches` runs it) it only checks that every search works, on 2,000 rows.

use std::time::{Duration, Instant};

use mailsift_store::{Database, LogEntry, LogQuery, NewQuarantine, QuarantineQuery};

const DAY: i64 = 86_400;
/// The newest entry's time.
const NOW: i64 = 1_800_000_000;
const TARGET: Duration = Duration::from_millis(100);

/// The organisation's domains and the share of inbound mail each receives (the rest of the weight is spread
/// evenly): one big, one medium, one small, one tiny (a domain administrator's small customer).
const OUR_DOMAINS: [(&str, u32); 4] =
    [("example.net", 600), ("example.org", 300), ("shop.example.com", 95), ("tiny.example", 5)];
const FIRST: [&str; 16] = [
    "john", "mary", "ahmed", "li", "olga", "pierre", "anna", "carlos", "yuki", "fatima", "peter", "sofia", "ivan",
    "emma", "raj", "lena",
];
const LAST: [&str; 12] =
    ["smith", "garcia", "müller", "wang", "kowalski", "dubois", "rossi", "tanaka", "silva", "jones", "novak", "berg"];
const SENDER_LOCAL: [&str; 10] =
    ["newsletter", "noreply", "info", "billing", "support", "news", "alerts", "marketing", "sales", "orders"];
const SUBJECT_WORDS: [&str; 24] = [
    "invoice",
    "meeting",
    "your",
    "order",
    "shipped",
    "weekly",
    "digest",
    "account",
    "verify",
    "urgent",
    "offer",
    "discount",
    "project",
    "update",
    "report",
    "agenda",
    "password",
    "reset",
    "payment",
    "received",
    "schedule",
    "lunch",
    "friday",
    "quarterly",
];
const SUBJECT_UNICODE: [&str; 6] =
    ["Ваш заказ отправлен", "Rechnung für Oktober", "Réunion de lundi", "请确认您的账户", "Zahlung erhalten", "Счёт №"];
/// (action, weight per 1,000).
const ACTIONS: [(&str, u32); 7] = [
    ("deliver", 700),
    ("tag", 80),
    ("quarantine", 50),
    ("reject", 70),
    ("refused", 80),
    ("tempfail", 15),
    ("failed", 5),
];
/// (symbol, score, firing probability per 1,000 for a message that gets symbols).
const SYMBOLS: [(&str, f64, u32); 30] = [
    ("SPF_PASS", -0.1, 700),
    ("SPF_FAIL", 1.5, 60),
    ("SPF_SOFTFAIL", 0.8, 80),
    ("DKIM_VALID", -0.2, 600),
    ("DKIM_FAIL", 2.0, 40),
    ("DMARC_PASS", -0.3, 550),
    ("DMARC_FAIL", 3.0, 40),
    ("ARC_VALID", -0.1, 100),
    ("RDNS_NONE", 1.0, 90),
    ("HELO_NOT_FQDN", 0.7, 70),
    ("BAYES_HAM", -2.0, 500),
    ("BAYES_SPAM", 3.5, 200),
    ("LINEAR_HAM", -1.0, 450),
    ("LINEAR_SPAM", 2.5, 180),
    ("URL_SHORTENER", 0.9, 60),
    ("HTML_ONLY", 0.4, 200),
    ("HTML_IMAGE_ONLY", 1.2, 40),
    ("MIME_MISMATCH", 1.1, 30),
    ("SUBJECT_ALL_CAPS", 0.9, 30),
    ("FROM_DISPLAY_SPOOF", 3.0, 20),
    ("REPUTATION_IP_BAD", 2.0, 50),
    ("REPUTATION_DOMAIN_BAD", 2.0, 40),
    ("RBL_LISTED", 4.0, 60),
    ("ATTACHMENT_EXE", 5.0, 5),
    ("PHISH_LOGIN_FORM", 4.5, 10),
    ("MISSING_DATE", 0.5, 30),
    ("MANY_RECIPIENTS", 0.3, 50),
    ("OBFUSCATED_TEXT", 2.2, 20),
    ("NUMERIC_IP_URL", 1.5, 15),
    ("GTUBE", 100.0, 1),
];

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
    fn weighted<'a>(&mut self, items: &'a [(&'a str, u32)]) -> &'a str {
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.below(total as u64) as u32;
        for (item, w) in items {
            if x < *w {
                return item;
            }
            x -= w;
        }
        items[items.len() - 1].0
    }
}

fn person(rng: &mut Rng) -> String {
    format!("{}.{}{}", rng.pick(&FIRST), rng.pick(&LAST), rng.below(40))
}

fn our_address(rng: &mut Rng) -> String {
    format!("{}@{}", person(rng), rng.weighted(&OUR_DOMAINS))
}

fn external_domain(rng: &mut Rng) -> String {
    // A long tail: 5,000 sender domains, the first ones much more frequent.
    let n = rng.below(5_000).min(rng.below(5_000));
    format!("brand{n}.example")
}

fn entry(rng: &mut Rng, i: u64, rows: u64) -> LogEntry {
    // Times spread evenly over 30 days, oldest first, as the gateway appends them.
    let time = NOW - 30 * DAY + (i as i64 * 30 * DAY) / rows as i64;
    let outbound = rng.below(100) < 15;
    let action = if outbound {
        if rng.below(100) < 98 {
            "deliver"
        } else {
            "tempfail"
        }
    } else {
        rng.weighted(&ACTIONS)
    };
    let (mail_from, recipients, from_header) = if outbound {
        let from = our_address(rng);
        let rcpts = (0..1 + rng.below(3)).map(|_| format!("{}@{}", person(rng), external_domain(rng))).collect();
        (Some(from.clone()), rcpts, Some(format!("\"{}\" <{from}>", from.split('@').next().unwrap())))
    } else {
        let domain = external_domain(rng);
        let from = match rng.below(100) {
            0..=2 => String::new(), // bounces
            3..=40 => format!("{}@{domain}", person(rng)),
            _ => format!("{}@{domain}", rng.pick(&SENDER_LOCAL)),
        };
        let rcpts = (0..1 + rng.below(100).saturating_sub(80) / 7).map(|_| our_address(rng)).collect();
        let header = format!("\"{} {}\" <{}>", rng.pick(&FIRST), domain.trim_end_matches(".example"), from);
        (Some(from), rcpts, Some(header))
    };
    let refused_early = action == "refused";
    let subject = if refused_early {
        None
    } else if rng.below(100) < 8 {
        Some(format!("{} {}", rng.pick(&SUBJECT_UNICODE), rng.below(100_000)))
    } else {
        let words: Vec<&str> = (0..3 + rng.below(5)).map(|_| *rng.pick(&SUBJECT_WORDS)).collect();
        Some(format!("{} #{}", words.join(" "), rng.below(100_000)))
    };
    let symbols: Vec<(String, f64)> = if refused_early {
        vec![("RBL_LISTED".to_string(), 4.0)]
    } else {
        SYMBOLS.iter().filter(|(_, _, p)| rng.below(1_000) < *p as u64).map(|(n, s, _)| (n.to_string(), *s)).collect()
    };
    let score: f64 = symbols.iter().map(|(_, s)| s).sum();
    LogEntry {
        reference_id: format!("{:016x}", rng.next()),
        time,
        direction: if outbound { "outbound" } else { "inbound" }.into(),
        client_ip: Some(format!("{}.{}.{}.{}", 1 + rng.below(223), rng.below(256), rng.below(256), rng.below(256))),
        helo: Some(format!("mx{}.{}", rng.below(9), external_domain(rng))),
        mail_from: if refused_early && rng.below(2) == 0 { None } else { mail_from },
        recipients: if refused_early { Vec::new() } else { recipients },
        from_header: if refused_early { None } else { from_header },
        message_id: (!refused_early).then(|| format!("<{:x}@mail.example>", rng.next())),
        subject,
        size: 2_000 + rng.below(200_000),
        score: (!refused_early).then_some(score),
        required: Some(6.0),
        symbols,
        action: action.into(),
        stage: if refused_early { "connect" } else { "data" }.into(),
        reason: (action != "deliver").then(|| format!("{action}: score {score:.1}")),
        next_hop_response: (action == "deliver" || action == "tag").then(|| "250 2.0.0 Ok: queued".into()),
    }
}

/// A named figure to time, and what it counts.
type Figure<'a, T> = (&'static str, Box<dyn Fn() -> T + 'a>);

fn q() -> LogQuery {
    LogQuery { limit: 50, ..LogQuery::default() }
}

fn searches() -> Vec<(&'static str, LogQuery)> {
    let s = |v: &str| Some(v.to_string());
    let scope = |ds: &[&str]| ds.iter().map(|d| d.to_string()).collect::<Vec<_>>();
    vec![
        ("newest 50, no filter", q()),
        ("sender substring, common (\"newsletter\")", LogQuery { sender: s("newsletter"), ..q() }),
        ("sender substring, rare (\"brand4321.\")", LogQuery { sender: s("brand4321."), ..q() }),
        ("sender substring, absent", LogQuery { sender: s("nobody-sends-this"), ..q() }),
        ("recipient substring, common (\"anna.\")", LogQuery { recipient: s("anna."), ..q() }),
        ("recipient substring, rare (\"lena.berg7@tiny\")", LogQuery { recipient: s("lena.berg7@tiny"), ..q() }),
        ("recipient substring, absent", LogQuery { recipient: s("nobody@nowhere"), ..q() }),
        ("subject substring, common (\"invoice\")", LogQuery { subject: s("invoice"), ..q() }),
        ("subject substring, unicode (\"заказ\")", LogQuery { subject: s("заказ"), ..q() }),
        ("subject substring, absent", LogQuery { subject: s("no subject says this"), ..q() }),
        ("action, common (deliver)", LogQuery { action: s("deliver"), ..q() }),
        ("action, rare (failed, 0.4%)", LogQuery { action: s("failed"), ..q() }),
        ("symbol, common (SPF_PASS)", LogQuery { symbol: s("SPF_PASS"), ..q() }),
        ("symbol, rare (GTUBE, 0.1%)", LogQuery { symbol: s("GTUBE"), ..q() }),
        ("client ip, absent", LogQuery { client_ip: s("203.0.113.250"), ..q() }),
        ("domain scope, big (example.net)", LogQuery { domains: scope(&["example.net"]), ..q() }),
        ("domain scope, tiny (tiny.example, 0.5%)", LogQuery { domains: scope(&["tiny.example"]), ..q() }),
        (
            "domain scope, 3 domains + action reject",
            LogQuery {
                domains: scope(&["example.org", "shop.example.com", "tiny.example"]),
                action: s("reject"),
                ..q()
            },
        ),
        (
            "domain scope, tiny + sender absent",
            LogQuery { domains: scope(&["tiny.example"]), sender: s("nobody-sends-this"), ..q() },
        ),
        (
            "time range, one day 10 days ago",
            LogQuery { since: Some(NOW - 10 * DAY), until: Some(NOW - 9 * DAY), ..q() },
        ),
        (
            "time range, one day + subject absent",
            LogQuery {
                since: Some(NOW - 10 * DAY),
                until: Some(NOW - 9 * DAY),
                subject: s("no subject says this"),
                ..q()
            },
        ),
        ("offset paging, page 21 (offset 1,000)", LogQuery { offset: 1_000, ..q() }),
        ("offset paging, page 1,001 (offset 50,000)", LogQuery { offset: 50_000, ..q() }),
        ("offset paging, action quarantine, offset 2,000", LogQuery { action: s("quarantine"), offset: 2_000, ..q() }),
    ]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, Duration, T) {
    let start = Instant::now();
    let mut out = f();
    let first = start.elapsed();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        out = f();
        times.push(start.elapsed());
    }
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
    (first, pick(0.5), pick(0.95), out)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let rows: u64 = match std::env::var("MAILSIFT_BENCH_ROWS") {
        Ok(v) => v.parse().expect("MAILSIFT_BENCH_ROWS: a number"),
        Err(_) if bench => 100_000,
        Err(_) => 2_000,
    };
    let runs = if bench { 21 } else { 1 };

    // MAILSIFT_BENCH_DIR keeps the database there and reuses it when it is already filled (to try a query or
    // an index again without refilling); by default it lives in a temporary directory.
    let temp = tempfile::tempdir().expect("a temporary directory");
    let dir = std::env::var_os("MAILSIFT_BENCH_DIR").map(std::path::PathBuf::from);
    let postgres = std::env::var("MAILSIFT_BENCH_BACKEND").is_ok_and(|b| b == "postgres");
    let server = postgres.then(|| mailsift_testkit::postgres::Postgres::start().expect("PostgreSQL is installed"));
    let db = match &server {
        Some(pg) => Database::open_postgres(&mailsift_store::pg::PgConfig::new(pg.url())),
        None => Database::open_in(dir.as_deref().unwrap_or(temp.path())),
    }
    .expect("the database opens");
    let start = Instant::now();
    let filled = if db.log_search(&LogQuery { limit: 1, ..LogQuery::default() }).expect("search").is_empty() {
        let mut rng = Rng(0x5EED_1234_ABCD_0042);
        for i in 0..rows {
            db.log_append(entry(&mut rng, i, rows)).expect("append");
        }
        db.flush().expect("every row is written");
        let fill = start.elapsed();
        format!(
            "{rows} log entries appended in {:.1} s ({:.0}/s)",
            fill.as_secs_f64(),
            rows as f64 / fill.as_secs_f64()
        )
    } else {
        format!("the log already in {}", db.path().display())
    };
    let size = match &server {
        Some(pg) => {
            pg.psql("SELECT pg_database_size('mailsift')").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
        }
        None => std::fs::metadata(db.path()).map(|m| m.len()).unwrap_or(0),
    };
    println!("{filled}; database {:.1} MB; {runs} timed runs per search after one first run", size as f64 / 1e6);
    println!("{:<50} {:>9} {:>9} {:>9} {:>6}", "search", "first ms", "median", "p95", "found");
    let mut slow = Vec::new();
    for (name, query) in searches() {
        let (first, median, p95, found) = time(runs, || db.log_search(&query).expect("search").len());
        println!("{name:<50} {:>9} {:>9} {:>9} {found:>6}", ms(first), ms(median), ms(p95));
        if p95 > TARGET {
            slow.push(name);
        }
    }

    println!("\n{:<50} {:>9} {:>9} {:>9} {:>6}", "dashboard", "first ms", "median", "p95", "rows");
    let net = vec!["example.net".to_string()];
    let tiny = vec!["tiny.example".to_string()];
    let stats: Vec<Figure<usize>> = vec![
        ("messages per hour, 24 h", Box::new(|| db.stats_hourly(NOW - DAY, &[]).unwrap().len())),
        ("messages per hour, 7 days", Box::new(|| db.stats_hourly(NOW - 7 * DAY, &[]).unwrap().len())),
        ("messages per hour, 7 days, example.net", Box::new(|| db.stats_hourly(NOW - 7 * DAY, &net).unwrap().len())),
        ("top 10 symbols, 24 h", Box::new(|| db.stats_top_symbols(NOW - DAY, 10, &[]).unwrap().len())),
        ("top 10 symbols, 7 days", Box::new(|| db.stats_top_symbols(NOW - 7 * DAY, 10, &[]).unwrap().len())),
        (
            "top 10 symbols, 7 days, tiny.example",
            Box::new(|| db.stats_top_symbols(NOW - 7 * DAY, 10, &tiny).unwrap().len()),
        ),
        (
            "top 10 refused senders, 7 days",
            Box::new(|| db.stats_top_refused_senders(NOW - 7 * DAY, 10, &[]).unwrap().len()),
        ),
        (
            "top 10 refused senders, 7 days, example.net",
            Box::new(|| db.stats_top_refused_senders(NOW - 7 * DAY, 10, &net).unwrap().len()),
        ),
    ];
    for (name, f) in stats {
        let (first, median, p95, found) = time(runs.min(9), f);
        println!("{name:<50} {:>9} {:>9} {:>9} {found:>6}", ms(first), ms(median), ms(p95));
    }

    quarantine(&db, rows, runs, &mut slow);

    if slow.is_empty() {
        println!("\nevery search under {} ms at the 95th percentile", TARGET.as_millis());
    } else {
        println!("\nover {} ms at the 95th percentile: {}", TARGET.as_millis(), slow.join("; "));
    }
}

/// Fills the quarantine (when it is empty) with about `rows / 20` rows and times the console's and the digest's
/// lists and counts.
fn quarantine(db: &Database, rows: u64, runs: usize, slow: &mut Vec<&'static str>) {
    let target = (rows / 20).max(100);
    let start = Instant::now();
    if db.quarantine_count(false, &[]).expect("count") == 0 {
        let callers = 4;
        std::thread::scope(|scope| {
            for caller in 0..callers {
                scope.spawn(move || {
                    let mut rng = Rng(0xC0FF_EE00 + caller);
                    let mut put = 0;
                    let mut i = 0;
                    while put < target / callers {
                        // 1 to 3 recipients, mostly 1; times over 30 days, oldest first.
                        let recipients: Vec<String> =
                            (0..1 + rng.below(10).saturating_sub(6) / 2).map(|_| our_address(&mut rng)).collect();
                        put += recipients.len() as u64;
                        let item = NewQuarantine {
                            reference_id: format!("{:016x}", rng.next()),
                            time: NOW - 30 * DAY + (put as i64 * 30 * DAY) / (target / callers) as i64,
                            recipients,
                            mail_from: Some(format!("{}@{}", rng.pick(&SENDER_LOCAL), external_domain(&mut rng))),
                            from_header: None,
                            subject: Some(format!("{} #{i}", rng.pick(&SUBJECT_WORDS))),
                            score: 9.5,
                            reason: "score 9.5 >= 8".into(),
                            size: 3_000,
                            direction: "inbound".into(),
                        };
                        db.quarantine_put(&item, b"Subject: held\r\n\r\nA held message.\r\n").expect("put");
                        i += 1;
                    }
                });
            }
        });
    }
    let total = db.quarantine_count(false, &[]).expect("count");
    let newest = db.quarantine_list(&QuarantineQuery { limit: 1, ..QuarantineQuery::default() }).expect("list");
    let (user, last_id) = newest.first().map(|i| (i.recipient.clone(), i.id)).expect("a quarantined row");
    println!("\n{total} quarantine rows (filled in {:.1} s); the end user is {user}", start.elapsed().as_secs_f64());
    println!("{:<50} {:>9} {:>9} {:>9} {:>6}", "quarantine", "first ms", "median", "p95", "found");
    let q = || QuarantineQuery { limit: 50, ..QuarantineQuery::default() };
    let scope = |d: &str| vec![d.to_string()];
    let lists: Vec<(&'static str, QuarantineQuery)> = vec![
        ("held, newest 50", q()),
        ("an end user's own (recipient_exact)", QuarantineQuery { recipient_exact: Some(user.to_uppercase()), ..q() }),
        ("domain scope, tiny (tiny.example)", QuarantineQuery { domains: scope("tiny.example"), ..q() }),
        ("recipient substring, absent", QuarantineQuery { recipient: Some("nobody@nowhere".into()), ..q() }),
        (
            "digest: newer than the high-water mark",
            QuarantineQuery { min_id: Some(last_id - 100), limit: 100_000, ..q() },
        ),
        ("offset paging, offset 2,000", QuarantineQuery { offset: 2_000, include_released: true, ..q() }),
    ];
    for (name, query) in lists {
        let (first, median, p95, found) = time(runs, || db.quarantine_list(&query).expect("list").len());
        println!("{name:<50} {:>9} {:>9} {:>9} {found:>6}", ms(first), ms(median), ms(p95));
        if p95 > TARGET {
            slow.push(name);
        }
    }
    let tiny = scope("tiny.example");
    let counts: Vec<Figure<u64>> = vec![
        ("count held", Box::new(|| db.quarantine_count(true, &[]).expect("count"))),
        ("count held, tiny.example", Box::new(|| db.quarantine_count(true, &tiny).expect("count"))),
    ];
    for (name, f) in counts {
        let (first, median, p95, n) = time(runs, f);
        println!("{name:<50} {:>9} {:>9} {:>9} {n:>6}", ms(first), ms(median), ms(p95));
    }
}
