//! The HTTP side of mailsift: the JSON API (`api.rs`, documented by an OpenAPI document generated from the
//! handlers), the web console (`console.rs`, server-rendered pages, no JavaScript needed), the quarantine
//! digest (`digest.rs`) and Prometheus metrics (`metrics.rs`), all served by `mailsift serve` beside the
//! SMTP gateway, over the same [`mailsift_gateway::Gateway`]: the same database, policy, delivery path and
//! counters.
//!
//! What it is not: a second place where mail is judged or delivered. Scans go through
//! `mailsift_gateway::judge`, quarantine actions, reports and fixes through `mailsift_gateway::actions` (the
//! same functions the command line calls), policy changes through the store's `PolicyStore` (which validates
//! them with the engine before writing), and the gateway picks changes up by itself.
//!
//! Modules depend downwards only (no cycle):
//!
//! ```text
//!   routes ─┬─> api ──────┬─> diagnosis ─┐
//!   server ─┤   console ──┼─> digest ────┼─> app ─> service ─> auth ─> tokens
//!           ├─> metrics ──┘              └──────────> service
//!           └─> health ──> app
//! ```
//!
//! `service` holds the business functions (reach checks, quarantine actions, reports, scans, domains,
//! statistics) with no HTTP types; `app` the state, the error answer and the caller; `api`, `console`,
//! `diagnosis` and `digest` translate HTTP to `service` calls. `console` uses `api`'s request types and
//! `diagnosis`; nothing below uses what is above it.

pub mod api;
pub mod app;
pub mod auth;
pub mod charts;
pub mod config;
pub mod console;
pub mod diagnosis;
pub mod digest;
pub mod dkim;
pub mod dmarc;
pub mod health;
pub mod held;
pub mod insights;
pub mod metrics;
pub mod queue;
pub mod range;
pub mod routes;
pub mod server;
pub mod service;
pub mod templates;
pub mod tokens;
pub mod words;

pub use app::{ApiError, AppState, Caller, Peer, Web, WebError};
pub use auth::Principal;
pub use config::WebConfig;
pub use routes::router;
pub use server::serve;
