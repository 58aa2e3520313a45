//! The SMTP gateway: mailsift as the MX front door (inbound) and as the relay for the organisation's own
//! servers (outbound), filtering before the queue; and the milter and spamd protocols for organisations that
//! keep their own MTA. This crate speaks the wire protocols and nothing more: judging, the disposition of a
//! message and its effects (quarantine, relay, spool, log) are the gateway core's (`mailsift-gateway`).
//!
//! A session ([`session`]) speaks ESMTP to the client; at MAIL FROM the connection-stage verdict may refuse
//! at the door; at the end of DATA the session hands the message to the core ([`mailsift_gateway::effects`]),
//! which judges it and relays it to the next hop, stores it in quarantine, or rejects it, and only then the
//! client is answered: a 250 means the message is at the next hop, in a synced Maildir file, or in the synced
//! quarantine. Every transaction, refused ones included, becomes a row of the message log.
//!
//! What it is not: a queueing MTA. It keeps no outgoing queue; when the next hop cannot take a message the
//! client is told 451 and retries. So that one answer can be true for every recipient, a transaction never
//! mixes recipients with different next hops (the others get 452 and come in their own transaction).
//!
//! Module dependencies (no cycles): `door`, `proto` and `proxy` (the PROXY protocol header) are leaves;
//! `session` uses `door` and `proto`; `milter` and `spamd` use `door`; `server` (the listeners) uses all
//! of them. `deliver` only re-exports the core.

pub mod deliver;
pub mod door;
pub mod milter;
pub mod proto;
pub mod proxy;
pub mod server;
pub mod session;
pub mod sink;
pub mod spamd;

// The core's modules, where they were before the core left this crate (for callers not yet switched).
pub use mailsift_gateway::{auth, config, relay, release, reports, spool, tls};
pub use mailsift_gateway::{Counters, Stream, LATENCY_BUCKETS_MS};

pub use config::SmtpConfig;
pub use server::{Gateway, GatewayState, Listen, Listener, SideListener};
