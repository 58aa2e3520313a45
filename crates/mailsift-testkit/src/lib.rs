//! Test-only parts shared by every crate's tests. Not for production use.
//!
//! - [`dns::TestDns`]: a real DNS server on 127.0.0.1 (UDP) serving in-memory zones, with names that time
//!   out or fail on purpose, so sender-evidence tests run offline against real DNS traffic.
//! - [`postfix::Postfix`]: a private, throwaway Postfix instance on 127.0.0.1 (needs Postfix installed and
//!   root) that delivers to a Maildir the test reads, so gateway tests have a real SMTP peer.
//! - [`clients`]: blocking SMTP and HTTP clients over loopback, for driving the gateway and its console.

pub mod auth;
pub mod clients;
pub mod dns;
pub mod postfix;

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
