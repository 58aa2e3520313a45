//! The gateway core: what every front end of mailsift shares, and nothing of any wire protocol.
//!
//! A front end (the SMTP listener, the milter, spamd, the HTTP API, the CLI) turns its wire events into an
//! [`mailsift_engine::Envelope`] and the message bytes, asks [`judge::judge`] for a verdict, asks
//! [`disposition::Disposition`] what that verdict means for the recipients, lets [`effects`] carry it out
//! (quarantine, delivery on a [`route::Route`], the durable [`spool`], the message-log row, the counters), and
//! translates the result back to its own wire. The state they all read ([`state::GatewayState`]: engines,
//! configuration, learner, reputation) and the running gateway ([`state::Gateway`]: database, policy, counters,
//! connection admission, reload) live here.
//!
//! What it is not: a listener. It binds no port and speaks no protocol; `mailsift-smtp` does (SMTP, milter,
//! spamd), `mailsift-web` does HTTP.
//!
//! Module dependencies (no cycles): the leaves are `config_error`, `text`, `passwords`, `stream`, `counters`, `headers`,
//! `route`, `disposition`, `trust` and `dane`; `virus`, `limits`, `greylist`, `guard`, `signing`, `dmarc` and
//! `transport` (config_error: their own settings and pure work); `mta_sts` (text); then `config` (text, passwords,
//! and those settings), `auth` and `tls` (config), `relay` (text, stream, transport), `state` (config, auth, tls,
//! relay, route, counters, mta_sts), `delivery` (state, route, relay, mta_sts, transport, trust), `log` (state,
//! text), `spool` (state, delivery, route, relay, dsn), `dmarc_send` (state, counters, spool, dmarc, text),
//! `background` (state, spool, dmarc_send), `judge` (state, text, log, dmarc_send), `release` (state, delivery,
//! relay), `reports` (state, log, disposition), `held` (guard, state, spool: the guard's effects), `outgoing`
//! (state, signing, headers: DKIM signatures and ARC seals on the final bytes), `dkim_check` (signing, the
//! evidence crate's DNS), `effects` (all of the above).

pub mod actions;
pub mod auth;
pub mod background;
pub mod config;
pub mod config_error;
pub mod counters;
pub mod dane;
pub mod delivery;
pub mod disposition;
pub mod dkim_check;
pub mod dmarc;
pub mod dmarc_send;
pub mod dsn;
pub mod effects;
pub mod greylist;
pub mod guard;
pub mod headers;
pub mod held;
pub mod judge;
pub mod lease;
pub mod limits;
pub mod log;
pub mod mta_sts;
pub mod outgoing;
pub mod passwords;
pub mod pool;
pub mod relay;
pub mod release;
pub mod reports;
pub mod route;
pub mod signing;
pub mod spool;
pub mod state;
pub mod stream;
pub mod text;
pub mod tls;
pub mod transport;
pub mod trust;
pub mod virus;

pub use config::SmtpConfig;
pub use counters::{Counters, Stage, LATENCY_BUCKETS_MS};
pub use mailsift_evidence::DoorFacts;
pub use state::{Gateway, GatewayError, GatewayState};
pub use stream::Stream;
