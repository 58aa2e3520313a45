//! Sender evidence: the facts about who sent a message, gathered from DNS before the engine judges it.
//!
//! This crate is the I/O edge of scanning. For a message and its envelope, [`SenderGatherer`] looks up,
//! concurrently and under one deadline: the client's reverse DNS and whether it confirms forward (FCrDNS),
//! SPF for the envelope sender (or the HELO name for bounces), every DKIM signature, the ARC chain, then
//! DMARC for the From: domain, the configured DNS lists, and (when switched on) whether the client is an
//! open proxy. It returns the engine's plain facts ([`mailsift_engine::evidence::SenderFacts`]), which the
//! caller puts into [`mailsift_engine::Evidence`] for [`mailsift_engine::Engine::scan`]. A lookup that
//! times out or fails is a fact too: `TempError`, never a pass, never a fail, never a hang.
//!
//! DNS answers are cached in memory (bounded, honouring TTLs up to [`cache::MAX_CACHE_TTL`]) in concurrent
//! caches, so a busy gateway asks once per sender and its sessions never queue behind one lock.
//!
//! It is not the place for judging: what a fact means (a symbol, a weight, a policy decision) is the
//! engine's, which stays synchronous and does no I/O. SPF is evaluated by our own strict `check_host`
//! ([`spf`]); DKIM, ARC, DMARC and reverse DNS by the `mail-auth` crate.

pub mod cache;
mod gatherer;
pub mod spf;

pub use gatherer::{DnsSetupError, DoorFacts, SenderGatherer};
