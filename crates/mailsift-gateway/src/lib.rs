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
//! `route`, `disposition`; `virus`, `limits`, `greylist` and `guard` (config_error: their own settings); then
//! `config` (text, passwords, and the settings of those four), `auth` and `tls` (config), `relay` (text, stream),
//! `state` (config, auth, tls, relay, route, counters), `delivery` (state, route, relay), `log` (state, text),
//! `spool` (state, delivery, route, relay), `background` (state, spool), `judge` (state, text, log), `release` (state, delivery, relay),
//! `reports` (state, log, disposition), `held` (guard, state, spool: the guard's effects), `effects` (all of the
//! above).

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
