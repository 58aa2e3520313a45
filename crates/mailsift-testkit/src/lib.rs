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
