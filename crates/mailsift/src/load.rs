//! `mailsift smtp-load`: a load generator. Many concurrent SMTP senders replay corpus messages to a gateway
//! and the command reports messages per second and transaction latency (MAIL FROM to the final reply), with a
//! bound on both the count and the time, so it always ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Args)]
pub struct LoadArgs {
    /// The gateway to load.
    #[arg(long, default_value = "127.0.0.1:2525")]
    target: SocketAddr,
    /// Concurrent SMTP sessions.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Messages to send in all (the corpus is cycled).
    #[arg(long, default_value_t = 5000)]
    count: usize,
    /// Stop after this many seconds even if not all were sent.
    #[arg(long, default_value_t = 120)]
    max_secs: u64,
    /// Messages per connection before reconnecting.
    #[arg(long, default_value_t = 10)]
    per_connection: usize,
    /// Envelope recipient.
    #[arg(long, default_value = "user@localhost")]
    rcpt: String,
    /// Envelope sender.
    #[arg(long, default_value = "load@example.org")]
    from: String,
    /// Use each message's own From: address as its envelope sender (when it has one; else --from), so the
    /// gateway sees the corpus's many senders and domains (SPF lookups, reputation keys) instead of one.
    #[arg(long)]
    sender_from_header: bool,
    /// Offered load in messages per second (open loop): message i is due `i / RATE` seconds after the start
    /// and its latency is counted from when it was due, not from when a sender got round to it, so a
    /// gateway that falls behind shows it in the latency instead of slowing the load down (no coordinated
    /// omission). Without it every sender sends its next message as soon as the last was answered (closed
    /// loop: the rate measured is the gateway's capacity at this concurrency).
    #[arg(long, value_parser = positive_rate)]
    rate: Option<f64>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Message files or folders to replay.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Default)]
struct Tally {
    ok: usize,
    temp: usize,
    perm: usize,
    errors: usize,
    latencies_us: Vec<u64>,
}

pub fn run(args: &LoadArgs) -> Result<()> {
    let mut messages = Vec::new();
    'outer: for p in &args.paths {
        for f in crate::inputs::message_files(p)? {
            let raw = std::fs::read(&f).with_context(|| format!("{}", f.display()))?;
            let sender = if args.sender_from_header { header_from(&raw) } else { None };
            messages.push((sender.unwrap_or_else(|| args.from.clone()), mailsift_smtp::relay::dot_stuff(&raw)));
            if messages.len() >= args.count {
                break 'outer;
            }
        }
    }
    if messages.is_empty() {
        bail!("no messages found to send");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let messages = Arc::new(messages);
    let next = Arc::new(AtomicUsize::new(0));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_secs);
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..args.concurrency.max(1) {
            let (messages, next, tally) = (messages.clone(), next.clone(), tally.clone());
            let (target, per, rcpt) = (args.target, args.per_connection.max(1), args.rcpt.clone());
            let plan = Plan { count: args.count, started, rate: args.rate, deadline };
            tasks.push(tokio::spawn(async move {
                while next.load(Ordering::Relaxed) < plan.count && Instant::now() < deadline {
                    let result = session(target, &messages, &next, &plan, per, &rcpt, &tally).await;
                    if let Err(e) = result {
                        {
                            tally.lock().unwrap().errors += 1;
                        }
                        tracing_error(&e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut t = std::mem::take(&mut *tally.lock().unwrap());
    t.latencies_us.sort_unstable();
    let pct = |p: f64| {
        if t.latencies_us.is_empty() {
            0.0
        } else {
            t.latencies_us[((t.latencies_us.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
        }
    };
    let done = t.ok + t.temp + t.perm;
    let rate = done as f64 / elapsed;
    if args.json {
        println!(
            "{}",
            serde_json::json!({"messages": done, "accepted": t.ok, "tempfailed": t.temp, "rejected": t.perm,
                "errors": t.errors, "seconds": elapsed, "per_second": rate, "concurrency": args.concurrency,
                "offered_per_second": args.rate,
                "latency_ms": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": pct(1.0)}})
        );
    } else {
        let offered = args.rate.map(|r| format!(" (offered {r:.0}/s)")).unwrap_or_default();
        println!("{done} messages in {elapsed:.2} s with {} senders: {rate:.0} messages/s{offered}", args.concurrency);
        println!(
            "  answers: {} accepted (2xx), {} deferred (4xx), {} refused (5xx); {} connection errors",
            t.ok, t.temp, t.perm, t.errors
        );
        println!(
            "  transaction latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(1.0)
        );
    }
    Ok(())
}

fn positive_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{s:?} is not a positive number of messages per second")),
    }
}

/// What every sender shares: how many messages in all, and when each is due (with a rate) or the end.
struct Plan {
    count: usize,
    started: Instant,
    rate: Option<f64>,
    deadline: Instant,
}

impl Plan {
    /// When message `i` is due: at once in a closed loop, `i / rate` after the start in an open one.
    fn due(&self, i: usize) -> Option<Instant> {
        self.rate.map(|r| self.started + Duration::from_secs_f64(i as f64 / r))
    }
}

/// The address of the first `From:` header in the header section, if it looks like one (`local@domain`
/// with no characters that would break the MAIL command). Only the first 64 KiB are looked at.
fn header_from(raw: &[u8]) -> Option<String> {
    let head = &raw[..raw.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split('\n').map(|l| l.trim_end_matches('\r'));
    let mut value = String::new();
    for line in lines.by_ref() {
        if line.is_empty() {
            return None;
        }
        if line.len() >= 5 && line[..5].eq_ignore_ascii_case("from:") {
            value.push_str(&line[5..]);
            break;
        }
    }
    // Folded continuation lines belong to the same header.
    for line in lines.take(20) {
        if !line.starts_with([' ', '\t']) {
            break;
        }
        value.push(' ');
        value.push_str(line);
    }
    let addr = match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].trim().to_string(),
        _ => value
            .split_whitespace()
            .find(|w| w.contains('@'))?
            .trim_matches(|c| c == '"' || c == '(' || c == ')')
            .to_string(),
    };
    let (local, domain) = addr.rsplit_once('@')?;
    let ok = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic() && !b"<>\"(),;:[]\\".contains(&b));
    (ok(local) && ok(domain) && domain.contains('.')).then_some(addr)
}

fn tracing_error(e: &anyhow::Error) {
    eprintln!("smtp-load: {e:#}");
}

async fn read_reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("the server closed the connection");
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).context("malformed reply")?;
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

async fn session(
    target: SocketAddr,
    messages: &[(String, Vec<u8>)],
    next: &AtomicUsize,
    plan: &Plan,
    per: usize,
    rcpt: &str,
    tally: &Mutex<Tally>,
) -> Result<()> {
    let tcp = TcpStream::connect(target).await.with_context(|| format!("cannot connect to {target}"))?;
    tcp.set_nodelay(true)?;
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    if read_reply(&mut r).await? != 220 {
        bail!("no 220 greeting");
    }
    w.write_all(b"EHLO load.example.org\r\n").await?;
    read_reply(&mut r).await?;
    for _ in 0..per {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= plan.count || Instant::now() >= plan.deadline {
            break;
        }
        let (from, msg) = &messages[i % messages.len()];
        let t0 = match plan.due(i) {
            Some(due) if due >= plan.deadline => break,
            Some(due) => {
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        // MAIL, RCPT and DATA in one write (PIPELINING).
        w.write_all(format!("MAIL FROM:<{from}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n").as_bytes()).await?;
        let mail = read_reply(&mut r).await?;
        let rc = read_reply(&mut r).await?;
        let data = read_reply(&mut r).await?;
        let code = if data == 354 {
            w.write_all(msg).await?;
            read_reply(&mut r).await?
        } else {
            mail.max(rc).max(data)
        };
        let us = t0.elapsed().as_micros() as u64;
        {
            let mut t = tally.lock().unwrap();
            match code {
                200..=299 => t.ok += 1,
                400..=499 => t.temp += 1,
                _ => t.perm += 1,
            }
            t.latencies_us.push(us);
        }
        if code >= 400 {
            w.write_all(b"RSET\r\n").await?;
            read_reply(&mut r).await?;
        }
    }
    w.write_all(b"QUIT\r\n").await?;
    let _ = read_reply(&mut r).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{header_from, Plan};
    use std::time::{Duration, Instant};

    #[test]
    fn an_open_loop_spreads_the_messages_over_time_and_a_closed_one_sends_at_once() {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(10);
        let open = Plan { count: 10, started, rate: Some(4.0), deadline };
        assert_eq!(open.due(0), Some(started));
        assert_eq!(open.due(6), Some(started + Duration::from_millis(1500)));
        let closed = Plan { count: 10, started, rate: None, deadline };
        assert_eq!(closed.due(6), None);
        assert!(super::positive_rate("0").is_err() && super::positive_rate("nan").is_err());
        assert_eq!(super::positive_rate("3000"), Ok(3000.0));
    }

    #[test]
    fn envelope_sender_from_the_from_header() {
        assert_eq!(
            header_from(b"Subject: x\r\nFrom: Ann <ann@example.com>\r\n\r\nbody").as_deref(),
            Some("ann@example.com")
        );
        assert_eq!(header_from(b"from: bob@example.net (Bob)\n\nbody").as_deref(), Some("bob@example.net"));
        assert_eq!(header_from(b"From: \"Folded\"\n <c@d.example>\n\n").as_deref(), Some("c@d.example"));
        // Only in the header section; nothing usable gives None (the caller falls back to --from).
        assert_eq!(header_from(b"Subject: x\n\nFrom: e@f.example\n"), None);
        assert_eq!(header_from(b"From: undisclosed\n\n"), None);
        assert_eq!(header_from(b"From: <a b@c.example>\n\n"), None);
        assert_eq!(header_from(b"From: <x@localhost>\n\n"), None);
    }
}
