//! Test-only parts shared by every crate's tests. Not for production use.
//!
//! - [`dns::TestDns`]: a real DNS server on 127.0.0.1 (UDP) serving in-memory zones, with names that time
//!   out or fail on purpose, so sender-evidence tests run offline against real DNS traffic.
//! - [`postfix::Postfix`]: a private, throwaway Postfix instance on 127.0.0.1 (needs Postfix installed and
//!   root) that delivers to a Maildir the test reads, so gateway tests have a real SMTP peer.
//! - [`clients`]: blocking SMTP and HTTP clients over loopback, for driving the gateway and its console.
//! - [`messages`]: messages built for tests (one organisation's mail in two mail programs' forms).

pub mod auth;
pub mod clamd;
pub mod clients;
pub mod dns;
pub mod gateway;
pub mod messages;
pub mod postfix;
pub mod postgres;
pub mod redis;

/// A child process (a `mailsift serve`, a sink) killed and reaped when the test ends, whatever happens.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether this is a CI run (`CI=true`, as CI systems set it): there a missing tool is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// For a test that needs an outside tool which is not installed: under CI this fails the test with `why`;
/// elsewhere it prints a notice and the caller returns (a developer's machine may lack the tool).
pub fn tool_missing(why: &str) {
    if in_ci() {
        panic!("{why}; CI=true makes a missing tool a failure (.ci/run installs it)");
    }
    eprintln!("SKIPPED: {why}");
}

/// A fresh, empty directory for one test: `<system temp>/<prefix>-<process id>-<name>`, emptied first if an
/// earlier run left it behind.
pub fn temp_dir(prefix: &str, name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    d
}

/// A free loopback port for a server that a test starts more than once (or that another process binds
/// after the test chose it). A port from `bind(":0")` is in the kernel's ephemeral range, so between the
/// test letting it go and the server binding it the kernel may hand it to any other socket (a parallel
/// test's listener, an outgoing connection's source port), and the server fails with "address in use".
/// This one is below that range, which the kernel never hands out on its own; the start is spread by
/// process id and the port is checked free, so parallel test binaries rarely meet.
pub fn quiet_loopback_port() -> std::net::SocketAddr {
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};
    use std::sync::atomic::{AtomicU16, Ordering};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|l| l.parse::<u16>().ok()))
        .unwrap_or(32768);
    // Ports from 10000 up to the ephemeral range; 0 if the range starts too low to leave any.
    let span = low.saturating_sub(10_000).max(1);
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let start = (std::process::id() % u32::from(span)) as u16;
    for _ in 0..span.min(2_000) {
        let step = NEXT.fetch_add(7, Ordering::Relaxed);
        let port = 10_000 + (start.wrapping_add(step) % span);
        if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            if let Ok(addr) = l.local_addr() {
                return addr;
            }
        }
    }
    // The quiet range is full (or absent): an ephemeral port is still better than none.
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}
