//! The running gateway and the state its front ends read: database, counters, the policy in force and its
//! refresh, configuration reload, connection admission (limits, stress) and the shutdown signal. No listener
//! lives here: `mailsift-smtp` binds the ports and hands each accepted connection a [`Slot`].
//!
//! The configuration a session uses is the [`GatewayState`] current when the session starts; a reload
//! (SIGHUP) swaps it for new sessions while running ones finish with the old one. Shutdown stops accepting,
//! lets sessions finish the transaction in flight (idle ones are told 421), and gives up after the grace period.
//!
//! Stress: when more than `stress_percent` of `max_connections` are in use, sessions are told (a watch
//! channel) and cut their waits to `stress_timeout_secs`, so slots held by silent clients come back quickly.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use mailsift_engine::cidr::IpRange;
use mailsift_engine::policy::Policy;
use mailsift_engine::{Engine, Settings};
use mailsift_evidence::SenderGatherer;
use mailsift_store::Database;
use rustc_hash::FxHashMap;
use tokio_rustls::rustls;

use crate::config::{DomainConfig, SmtpConfig};
use crate::counters::Counters;
use crate::relay::RelayClient;
use crate::route::Route;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("{0}")]
    Dns(#[from] mailsift_evidence::DnsSetupError),
    #[error("[smtp] domains: {0}")]
    DomainEngine(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    BindSide {
        addr: crate::config::ListenAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Everything a session reads that a reload may change.
pub struct GatewayState {
    pub engine: Arc<Engine>,
    pub config: SmtpConfig,
    /// Sender evidence (DNS), when `[dns] enabled`.
    pub gatherer: Option<Arc<SenderGatherer>>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The resolver for outbound MX delivery (the gatherer's, or one of its own when DNS evidence is off).
    mx: Result<Arc<SenderGatherer>, String>,
    domains: FxHashMap<String, DomainConfig>,
    /// Where `RCPT TO:<postmaster>` goes: `postmaster`, or postmaster@ the first domain.
    postmaster: String,
    /// Settings of the domains with their own thresholds or ASF options, checked against `engine` (by
    /// lower-case domain name); a domain without any is judged with the engine's own.
    domain_settings: FxHashMap<String, Settings>,
    trusted: Vec<IpRange>,
    /// The load balancers that may send the PROXY header (`[smtp] trusted_proxies`).
    proxies: Vec<IpRange>,
    /// The classifiers' learner, sharing its model with the engine: reports by email retrain the live model.
    learner: Option<Arc<Mutex<mailsift_store::Learner<mailsift_store::ClassifierStore>>>>,
    /// Local sender reputation, when enabled: consulted for every message and fed by verdicts and reports.
    reputation: Option<Arc<mailsift_store::SqliteReputation>>,
    /// What the domains were built from, so stored domain changes can rebuild the state.
    base_engine: mailsift_engine::EngineConfig,
    base_smtp: SmtpConfig,
    data_dir: std::path::PathBuf,
    /// The stored domains (name, JSON) this state includes.
    stored_domains: Vec<(String, String)>,
    /// The clamd client, when `[smtp.virus] clamd` is set.
    pub virus: Option<Arc<crate::virus::Scanner>>,
}

impl GatewayState {
    /// Builds the state; call inside a Tokio runtime (the DNS resolver registers with it).
    pub fn new(engine: Engine, config: SmtpConfig, data_dir: &Path) -> Result<GatewayState, GatewayError> {
        GatewayState::with_domains(engine, config, data_dir, Vec::new())
    }

    /// As [`GatewayState::new`], with domains from the store (name, settings JSON) added to the
    /// configuration's; a stored domain replaces a configured one of the same name.
    pub fn with_domains(
        engine: Engine,
        base_smtp: SmtpConfig,
        data_dir: &Path,
        stored_domains: Vec<(String, String)>,
    ) -> Result<GatewayState, GatewayError> {
        let base_engine = engine.config().clone();
        let mut config = base_smtp.clone();
        // The organisation's own row (organisation-wide ASF modes), when the store has one.
        let organisation = crate::config::OrganisationSettings::parse(
            stored_domains.iter().find(|(n, _)| n == mailsift_store::ORGANISATION_ROW).map(|(_, j)| j.as_str()),
        )?;
        let stored = stored_domains
            .iter()
            .filter(|(name, _)| name != mailsift_store::ORGANISATION_ROW)
            .map(|(name, json)| crate::config::parse_stored_domain(name, json))
            .collect::<Result<Vec<DomainConfig>, _>>()?;
        config.domains = crate::config::merge_domains(&base_smtp.domains, &stored);
        config.validate()?;
        let gatherer = if engine.config().dns.enabled {
            Some(Arc::new(SenderGatherer::from_config(engine.config())?))
        } else {
            None
        };
        let tls = if config.tls.enabled {
            Some(crate::tls::server_config(&config.tls, &config.hostname, data_dir)?)
        } else {
            None
        };
        let mut domains = FxHashMap::default();
        if config.domains.is_empty() {
            let org = &engine.config().organisation.domains;
            let names: Vec<String> = if org.is_empty() { vec!["localhost".into()] } else { org.clone() };
            for name in names {
                domains.insert(name.to_ascii_lowercase(), DomainConfig { name, ..DomainConfig::default() });
            }
        } else {
            for d in &config.domains {
                let mut d = d.clone();
                d.recipients = d.recipients.iter().map(|r| r.to_ascii_lowercase()).collect();
                domains.insert(d.name.to_ascii_lowercase(), d);
            }
        }
        let postmaster = if config.postmaster.is_empty() {
            let first = match config.domains.first() {
                Some(d) => d.name.to_ascii_lowercase(),
                None => engine.config().organisation.domains.first().cloned().unwrap_or_else(|| "localhost".into()),
            };
            format!("postmaster@{}", first.to_ascii_lowercase())
        } else {
            config.postmaster.clone()
        };
        let trusted = config.trusted_networks();
        let proxies = config.trusted_proxies();
        let (engine, domain_settings) = domain_settings(engine, &config.domains, &organisation)?;
        let mx = match &gatherer {
            Some(g) => Ok(g.clone()),
            None => SenderGatherer::new(&engine.config().dns).map(Arc::new).map_err(|e| e.to_string()),
        };
        let virus = crate::virus::Scanner::from_config(&config.virus);
        Ok(GatewayState {
            engine: Arc::new(engine),
            config,
            gatherer,
            tls,
            mx,
            domains,
            postmaster,
            domain_settings,
            trusted,
            proxies,
            learner: None,
            reputation: None,
            base_engine,
            base_smtp,
            data_dir: data_dir.to_path_buf(),
            stored_domains,
            virus,
        })
    }

    /// The same state with another set of stored domains (the learner and reputation are shared).
    pub fn rebuild_with_domains(&self, stored: Vec<(String, String)>) -> Result<GatewayState, GatewayError> {
        let mut engine =
            Engine::new(self.base_engine.clone()).map_err(|e| GatewayError::DomainEngine(e.to_string()))?;
        if let Some(m) = self.engine.model() {
            engine = engine.with_model(m.clone());
        }
        let mut state = GatewayState::with_domains(engine, self.base_smtp.clone(), &self.data_dir, stored)?;
        state.learner = self.learner.clone();
        state.reputation = self.reputation.clone();
        Ok(state)
    }

    /// The engine configuration of the configuration file alone (before stored domains and the organisation's
    /// stored settings are folded in).
    pub fn configured_engine(&self) -> &mailsift_engine::EngineConfig {
        &self.base_engine
    }

    /// The stored domains this state was built with (and the organisation's row, named `*`, when stored).
    pub fn stored_domains(&self) -> &[(String, String)] {
        &self.stored_domains
    }

    /// Keeps the learner whose model the engine scans with, so reports retrain the running gateway.
    pub fn with_learner<S>(mut self, learner: mailsift_store::Learner<S>) -> GatewayState
    where
        S: mailsift_store::TokenStore + Into<mailsift_store::ClassifierStore>,
    {
        self.learner = Some(Arc::new(Mutex::new(learner.convert(Into::into))));
        self
    }

    /// Consults and feeds local reputation.
    pub fn with_reputation(mut self, reputation: mailsift_store::SqliteReputation) -> GatewayState {
        self.reputation = Some(Arc::new(reputation));
        self
    }

    /// As [`GatewayState::with_reputation`], with a store shared with others (the learner's spamtrap hook).
    pub fn with_shared_reputation(mut self, reputation: Arc<mailsift_store::SqliteReputation>) -> GatewayState {
        self.reputation = Some(reputation);
        self
    }

    pub fn learner(&self) -> Option<&Mutex<mailsift_store::Learner<mailsift_store::ClassifierStore>>> {
        self.learner.as_deref()
    }

    pub fn reputation(&self) -> Option<&mailsift_store::SqliteReputation> {
        self.reputation.as_deref()
    }

    /// The settings `engine` judges a transaction with: its domain's own (thresholds, ASF options), else the
    /// engine's. Inbound mail belongs to its recipients' domain (one per transaction), outbound to its
    /// sender's.
    pub fn settings_for(&self, domain: &str) -> &Settings {
        self.domain_settings
            .get(&domain.trim_end_matches('.').to_ascii_lowercase())
            .unwrap_or_else(|| self.engine.default_settings())
    }

    /// The address `RCPT TO:<postmaster>` is delivered to.
    pub fn postmaster(&self) -> &str {
        &self.postmaster
    }

    /// The settings of a domain the gateway receives mail for.
    pub fn local_domain(&self, domain: &str) -> Option<&DomainConfig> {
        self.domains.get(&domain.trim_end_matches('.').to_ascii_lowercase())
    }

    /// Where mail for `rcpt` goes: a local domain's next hop (or the Maildir), or, for mail that may be relayed
    /// (`outbound`), the smarthost or the domain's MX. `None`: not ours and not relayable.
    pub fn route_for(&self, rcpt: &str, outbound: bool) -> Option<Route> {
        let domain = crate::text::domain_of(rcpt);
        match self.local_domain(&domain) {
            Some(d) => Some(d.next_hop.clone().map(Route::NextHop).unwrap_or(Route::Maildir)),
            None if outbound => Some(match &self.config.outbound.smarthost {
                Some(host) => Route::Smarthost(host.clone()),
                None => Route::Mx(domain),
            }),
            None => None,
        }
    }

    pub fn mx_resolver(&self) -> Result<&SenderGatherer, String> {
        self.mx.as_deref().map_err(Clone::clone)
    }

    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.trusted.iter().any(|n| n.contains(ip))
    }

    /// Whether `ip` is one of `[smtp] trusted_proxies`, the load balancers whose PROXY header is believed.
    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.proxies.iter().any(|n| n.contains(ip))
    }

    pub fn relay_client(&self, gateway: &Gateway) -> RelayClient {
        let r = &self.config.relay;
        RelayClient {
            helo: self.config.hostname.clone(),
            connect_timeout: Duration::from_secs(r.connect_timeout_secs.max(1)),
            reply_timeout: Duration::from_secs(r.reply_timeout_secs.max(1)),
            tls: r.starttls.then(|| gateway.client_tls.clone()),
            cache: gateway.relay_connections.clone(),
        }
    }
}

/// Folds the domains' settings into the engine configuration: sending servers and trusted relays make a
/// domain protected (anti-spoofing), spamtraps join the classifier's; domains with their own thresholds or
/// ASF options get settings of their own, checked against the one engine.
fn domain_settings(
    base: Engine,
    domains: &[DomainConfig],
    organisation: &crate::config::OrganisationSettings,
) -> Result<(Engine, FxHashMap<String, Settings>), GatewayError> {
    let mut config = base.config().clone();
    let org_changed = organisation.fold(&mut config)?;
    let engine = if crate::config::fold_domains(&mut config, domains) | org_changed {
        let e = Engine::new(config).map_err(|e| GatewayError::DomainEngine(e.to_string()))?;
        match base.model() {
            Some(m) => e.with_model(m.clone()),
            None => e,
        }
    } else {
        base
    };
    let mut out = FxHashMap::default();
    for d in domains.iter().filter(|d| d.has_engine_overrides()) {
        let name = d.name.to_ascii_lowercase();
        let settings =
            engine.settings(&name, &d.settings_config()).map_err(|e| GatewayError::DomainEngine(e.to_string()))?;
        out.insert(name, settings);
    }
    Ok((engine, out))
}

/// The running gateway, shared by every session.
pub struct Gateway {
    state: RwLock<Arc<GatewayState>>,
    pub db: Database,
    pub counters: Counters,
    pub data_dir: PathBuf,
    pub client_tls: Arc<rustls::ClientConfig>,
    /// Connections to next hops kept open between messages (across reloads).
    pub relay_connections: Arc<crate::relay::ConnectionCache>,
    /// MTA-STS policies of recipient domains, in memory (across reloads).
    pub mta_sts: crate::mta_sts::PolicyCache,
    /// The threads that parse and judge messages, one per core, first come first judged ([`crate::pool`]).
    pub judges: crate::pool::JudgePool,
    per_ip: Mutex<FxHashMap<IpAddr, usize>>,
    active: AtomicUsize,
    /// Whether more than `stress_percent` of `max_connections` are in use; sessions watch it.
    stress: tokio::sync::watch::Sender<bool>,
    /// AUTH failures per client address and per account, across sessions.
    pub auth_limiter: crate::auth::AuthLimiter,
    /// Rate-limit buckets and greylisting triplets (`[smtp.rate_limits]`, `[smtp.greylisting]`), kept across
    /// reloads: in memory with a snapshot in the data directory, or Redis once serve sets it.
    pub limits: crate::limits::Limiter,
    idle: tokio::sync::Notify,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// The policy in force: the configuration's `[policy]` and the store's rules and lists, compiled once
    /// per change (see [`Gateway::refresh_policy`]).
    policy: RwLock<Arc<Policy>>,
    /// The store's policy version the compiled policy was built from (-1: not read yet).
    policy_version: std::sync::atomic::AtomicI64,
    /// Compromised-account protection: per-user outbound volumes and verdicts, and the held users.
    pub account_guard: crate::guard::AccountGuard,
}

/// Counts a connection while it lives: taken at accept ([`Gateway::take_slot`]), given back when dropped.
pub struct Slot {
    pub gateway: Arc<Gateway>,
    ip: IpAddr,
}

impl Slot {
    /// Moves this slot to the client a load balancer speaks for (the PROXY header's source), under that
    /// client's per-address limit; `None`, and the slot given back, when the client has too many
    /// connections already. The slot was taken for the proxy's address without the per-address limit,
    /// since one balancer carries many clients.
    pub fn move_to_client(mut self, ip: IpAddr) -> Option<Slot> {
        if ip == self.ip {
            return Some(self);
        }
        let g = self.gateway.clone();
        let limit = g.state().config.max_connections_per_ip;
        let mut map = g.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if map.get(&ip).copied().unwrap_or(0) >= limit {
            drop(map);
            return None;
        }
        *map.entry(ip).or_insert(0) += 1;
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
        self.ip = ip;
        drop(map);
        Some(self)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let g = &self.gateway;
        {
            let mut map = g.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
        if g.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            g.idle.notify_waiters();
        }
        g.update_stress();
    }
}

impl Gateway {
    pub fn new(state: GatewayState, db: Database, data_dir: &Path) -> Arc<Gateway> {
        Arc::new(Gateway {
            state: RwLock::new(Arc::new(state)),
            db,
            counters: Counters::default(),
            data_dir: data_dir.to_path_buf(),
            client_tls: crate::tls::client_config(),
            relay_connections: Arc::default(),
            mta_sts: Default::default(),
            judges: crate::pool::JudgePool::per_core(),
            per_ip: Mutex::new(FxHashMap::default()),
            active: AtomicUsize::new(0),
            stress: tokio::sync::watch::channel(false).0,
            auth_limiter: crate::auth::AuthLimiter::new(),
            limits: crate::limits::Limiter::in_memory(data_dir),
            idle: tokio::sync::Notify::new(),
            shutdown: tokio::sync::watch::channel(false).0,
            policy: RwLock::new(Arc::new(Policy::default())),
            policy_version: std::sync::atomic::AtomicI64::new(-1),
            account_guard: crate::guard::AccountGuard::default(),
        })
        .with_policy_loaded()
    }

    fn with_policy_loaded(self: Arc<Self>) -> Arc<Self> {
        // The account guard's holds, kept in the store, are in force from the first message on.
        self.account_guard.load_once(&self.db);
        if let Err(e) = self.refresh_policy(true) {
            tracing::error!(error = %e, "policy not loaded; filtering with the configuration's policy only");
            if let Ok(p) = Policy::new(&self.state().engine.config().policy) {
                *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(p);
            }
        }
        self
    }

    /// The policy sessions judge with.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Saves what this node's classifier learned and brings in what the other nodes sharing the store learned
    /// (a report or a spamtrap hit at another node moves this node's scores within about a second). Nothing
    /// to do for a store only this node writes. Returns whether the model changed from outside.
    pub fn sync_classifier(&self) -> Result<bool, mailsift_store::StoreError> {
        use mailsift_store::TokenStore;
        let state = self.state();
        let Some(learner) = state.learner() else { return Ok(false) };
        let mut learner = learner.lock().unwrap_or_else(|e| e.into_inner());
        if !learner.store().merges() {
            return Ok(false);
        }
        learner.sync(mailsift_engine::unix_now())
    }

    /// Recompiles the policy when the store's changed (or always with `force`, after a reload): the
    /// configuration's `[policy]` first, then the store's rules and lists. Returns whether it changed. On an
    /// error the policy in force stays.
    pub fn refresh_policy(&self, force: bool) -> Result<bool, String> {
        use mailsift_store::PolicyStore;
        let version = self.db.policy_version().map_err(|e| e.to_string())?;
        if !force && version == self.policy_version.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let stored = self.db.load_policy().map_err(|e| e.to_string())?;
        let mut domains = self.db.domains().map_err(|e| e.to_string())?;
        if let Some(org) = self.db.organisation_settings().map_err(|e| e.to_string())? {
            domains.push((mailsift_store::ORGANISATION_ROW.to_string(), org));
        }
        if domains != self.state().stored_domains() {
            let rebuilt = self.state().rebuild_with_domains(domains).map_err(|e| e.to_string())?;
            *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(rebuilt);
            tracing::info!("domains reloaded from the store");
        }
        let state = self.state();
        let mut all = state.engine.config().policy.clone();
        all.rules.extend(stored.config.rules);
        all.allow.extend(stored.config.allow);
        all.block.extend(stored.config.block);
        // Compiled on a thread of its own: a large policy leaves many small allocations in the compiling
        // thread's heap (glibc), which would slow a scanning thread that did it (see `Policy::new`).
        let compiled = std::thread::spawn(move || Policy::new(&all).map_err(|e| e.to_string()))
            .join()
            .map_err(|_| "the policy compiler panicked".to_string())??;
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(compiled);
        self.policy_version.store(stored.version, Ordering::SeqCst);
        tracing::info!(version = stored.version, "policy loaded");
        Ok(true)
    }

    /// The configuration new sessions use.
    pub fn state(&self) -> Arc<GatewayState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Swaps in a new configuration (SIGHUP). Listen addresses are not rebound.
    pub fn reload(&self, state: GatewayState) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(state);
        if let Err(e) = self.refresh_policy(true) {
            tracing::error!(error = %e, "policy not recompiled after the reload; the previous one stays");
        }
        tracing::info!("configuration reloaded");
    }

    /// Whether the gateway is under stress: more than `stress_percent` of `max_connections` in use.
    pub fn under_stress(&self) -> bool {
        *self.stress.borrow()
    }

    /// Tells sessions when the gateway enters or leaves stress.
    pub fn stress_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stress.subscribe()
    }

    /// Works out stress from the connections in use; sessions are woken only when it changes.
    fn update_stress(&self) {
        let c = &self.state().config;
        let active = self.active.load(Ordering::SeqCst);
        let stressed = c.stress_percent < 100 && active * 100 > c.max_connections * c.stress_percent as usize;
        let changed = self.stress.send_if_modified(|s| {
            let changed = *s != stressed;
            *s = stressed;
            changed
        });
        if changed {
            tracing::info!(active, max = c.max_connections, stressed, "connection stress changed: timeouts adjusted");
        }
    }

    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Applies the retention periods: old quarantined messages and old message-log rows are deleted.
    pub fn purge_expired(&self) {
        let c = &self.state().config;
        let now = mailsift_engine::unix_now();
        if c.quarantine_retention_days > 0 {
            match self.db.quarantine_purge(now - c.quarantine_retention_days as i64 * 86_400) {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "quarantine retention"),
                Err(e) => tracing::error!(error = %e, "quarantine retention purge failed"),
            }
        }
        if c.log_retention_days > 0 {
            match self.db.log_purge(now - c.log_retention_days as i64 * 86_400) {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "message log retention"),
                Err(e) => tracing::error!(error = %e, "message log retention purge failed"),
            }
        }
    }

    /// Stops accepting; sessions finish what they are doing.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }

    /// A connection slot for a client at `ip` under every limit (total and per address); `None`: refuse it.
    pub fn take_slot(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        self.take_slot_for(ip, true)
    }

    /// A connection slot under the total limit, and the per-address one when `per_ip_limit`.
    pub fn take_slot_for(self: &Arc<Self>, ip: IpAddr, per_ip_limit: bool) -> Option<Slot> {
        let config = &self.state().config;
        let mut map = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if (per_ip_limit && *n >= config.max_connections_per_ip)
            || self.active.load(Ordering::SeqCst) >= config.max_connections
        {
            if *n == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *n += 1;
        self.active.fetch_add(1, Ordering::SeqCst);
        drop(map);
        self.update_stress();
        Some(Slot { gateway: self.clone(), ip })
    }

    pub fn active_sessions(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// After shutdown: waits (up to the grace period) for the connections in use to finish, then flushes the
    /// message log.
    pub async fn drain(&self) {
        let grace = Duration::from_secs(self.state().config.shutdown_grace_secs);
        let waited = tokio::time::timeout(grace, async {
            loop {
                let idle = self.idle.notified();
                if self.active.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        })
        .await;
        if waited.is_err() {
            tracing::warn!(
                sessions = self.active.load(Ordering::SeqCst),
                "shutdown grace period over; cutting sessions"
            );
        }
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "message log flush failed at shutdown");
        }
        // Throttled senders stay throttled and greylisted triplets known after the restart.
        self.limits.save();
    }
}
