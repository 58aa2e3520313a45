//! The PostgreSQL backend, for several gateway nodes sharing one state (`[store] backend = "postgres"`).
//!
//! The store's API is synchronous, as SQLite's is, and so is this backend: a fixed set of connection
//! threads ([`PgStore`]), each owning one connection of the synchronous `postgres` client, take jobs from
//! one bounded queue. A caller (a judge thread, an async task that would otherwise hold SQLite's writer
//! lock) waits on a channel for its answer, never on the network itself; no runtime is nested in another.
//! A connection that breaks is dropped and opened again by the next job on that thread, so a restarted
//! server costs the jobs in flight an error (the gateway answers 4xx for the mail that needed them) and
//! nothing more.
//!
//! What it is not: a place for SQL of SQLite's dialect. Each piece of state has its own module here with
//! the same functions as its SQLite module (`quarantine.rs` beside `gateway/quarantine.rs`), and the schema
//! its own numbered steps (`migrations.rs`).

pub mod classifier;
mod filter;
pub mod migrations;
mod msglog;
pub(crate) mod policy;
mod quarantine;
mod spool;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::StoreError;

/// Jobs queued for the connection threads before a caller blocks.
const QUEUE: usize = 1024;
/// How long opening a connection may take when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server cancels any statement running longer than this: a stuck query costs one job, not a thread.
const STATEMENT_TIMEOUT_MS: u32 = 30_000;

/// Where the store is and how to reach it: `[store]` in the configuration.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PgConfig {
    /// A libpq-style URL, `postgresql://user@host:port/database?sslmode=require`. A password may be in it,
    /// but [`PgConfig::password_file`] keeps it out of the configuration file.
    pub url: String,
    /// A file holding the password (its first line; surrounding whitespace ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Connections (and threads) this node keeps open.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// PEM file of the certificate authorities to trust for TLS, instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_pool_size() -> usize {
    8
}

impl PgConfig {
    pub fn new(url: impl Into<String>) -> PgConfig {
        PgConfig { url: url.into(), password_file: None, pool_size: default_pool_size(), ca_file: None }
    }

    /// Checks what can be checked without connecting: the URL parses, the pool size is in range, the
    /// password file (if any) reads.
    pub fn check(&self) -> Result<(), StoreError> {
        self.client_config().map(|_| ())
    }

    /// The server and database, for messages (never the password); the URL as given if it does not parse.
    pub fn describe(&self) -> String {
        match self.url.parse::<postgres::Config>() {
            Ok(c) => describe(&c),
            Err(_) => "postgresql://(unparsable url)".into(),
        }
    }

    /// The client configuration: the URL parsed, the password read, defaults filled in. Errors name the
    /// problem without repeating the URL (it may hold a password).
    fn client_config(&self) -> Result<postgres::Config, StoreError> {
        let mut config: postgres::Config = self.url.parse().map_err(|e| StoreError::Invalid {
            path: "[store] url".into(),
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        if let Some(file) = &self.password_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| StoreError::Invalid { path: file.display().to_string(), reason: e.to_string() })?;
            let password = text.lines().next().unwrap_or("").trim();
            if password.is_empty() {
                return Err(StoreError::Invalid { path: file.display().to_string(), reason: "empty password".into() });
            }
            config.password(password);
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("mailsift");
        }
        if !(1..=256).contains(&self.pool_size) {
            return Err(StoreError::Invalid {
                path: "[store] pool_size".into(),
                reason: format!("{} is not between 1 and 256", self.pool_size),
            });
        }
        Ok(config)
    }
}

/// The server and database a configuration names, for messages: never the password.
pub fn describe(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
    format!("postgresql://{host}:{port}/{db}")
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The PostgreSQL store: clone it freely; the clones share the connection threads, which end when the last
/// clone is dropped (after the jobs already queued).
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    target: String,
    queue: Option<crossbeam_channel::Sender<Job>>,
    /// The message log's writer (see `msglog.rs`).
    log: Option<crossbeam_channel::Sender<msglog::Command>>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queues lets the threads finish what was queued and end.
        self.queue.take();
        self.log.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("target", &self.inner.target).finish_non_exhaustive()
    }
}

/// One connection thread's connection, opened when first needed and again after it broke.
pub(crate) struct Conn {
    config: postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    client: Option<postgres::Client>,
}

impl Conn {
    fn client(&mut self) -> Result<&mut postgres::Client, postgres::Error> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let mut client = self.config.connect(self.tls.clone())?;
            client.batch_execute(&format!("SET statement_timeout = {STATEMENT_TIMEOUT_MS}"))?;
            self.client = Some(client);
        }
        Ok(self.client.as_mut().expect("just connected"))
    }
}

impl PgStore {
    /// Connects (the first connection is opened here, so a wrong URL or password fails at once), brings the
    /// schema up to date ([`migrations::migrate`]: safe when several nodes start together) and starts the
    /// connection threads.
    pub fn open(config: &PgConfig) -> Result<PgStore, StoreError> {
        let client_config = config.client_config()?;
        let target = describe(&client_config);
        let tls = tls_connector(config.ca_file.as_deref())?;
        // On a thread of its own: the synchronous client runs a runtime of its own, which cannot start on a
        // thread that drives async tasks (the gateway opens its store from inside its runtime).
        let first = {
            let (config, tls, at) = (client_config.clone(), tls.clone(), target.clone());
            std::thread::spawn(move || -> Result<Conn, StoreError> {
                let mut first = Conn { config, tls, client: None };
                migrations::migrate(first.client().map_err(|e| pg_error(&at, e))?, &at)?;
                Ok(first)
            })
            .join()
            .map_err(|_| StoreError::Write { path: target.clone(), reason: "opening the store panicked".into() })??
        };

        let (queue, jobs) = crossbeam_channel::bounded::<Job>(QUEUE);
        let mut threads = Vec::with_capacity(config.pool_size);
        let mut first = Some(first);
        for i in 0..config.pool_size {
            let jobs = jobs.clone();
            let mut conn =
                first.take().unwrap_or_else(|| Conn { config: client_config.clone(), tls: tls.clone(), client: None });
            let thread = std::thread::Builder::new()
                .name(format!("mailsift-pg-{i}"))
                .spawn(move || {
                    for job in jobs {
                        job(&mut conn);
                    }
                })
                .map_err(|source| StoreError::Io { path: target.clone(), source })?;
            threads.push(thread);
        }
        let (log, entries) = crossbeam_channel::bounded(msglog::QUEUE);
        let conn = Conn { config: client_config, tls, client: None };
        let writer_target = target.clone();
        threads.push(
            std::thread::Builder::new()
                .name("mailsift-pg-log".into())
                .spawn(move || msglog::run(conn, writer_target, entries))
                .map_err(|source| StoreError::Io { path: target.clone(), source })?,
        );
        Ok(PgStore { inner: Arc::new(Inner { target, queue: Some(queue), log: Some(log), threads }) })
    }

    /// The server and database, for messages (no password).
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    /// Runs `f` with a connection on one of the threads and waits for its answer. A broken connection is
    /// opened again first; a failure (the server unreachable, a statement refused) comes back as the error.
    ///
    /// `f` may run twice: when it fails because its connection turned out to be dead (the server restarted
    /// while the connection sat idle, which the client only learns by using it), it is run once more on a
    /// fresh connection. So `f` must be a read or a statement that may safely run twice (an upsert, a
    /// delete by key); a write whose second run would answer differently (a claim, an insert that reports
    /// a conflict) goes through [`PgStore::transaction`], which never retries past COMMIT.
    pub(crate) fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
    {
        self.run(f, Arc::new(AtomicBool::new(true)))
    }

    /// [`PgStore::call`], retrying only while `may_retry` holds (a transaction clears it at COMMIT).
    fn run<T, F>(&self, mut f: F, may_retry: Arc<AtomicBool>) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut postgres::Client) -> Result<T, postgres::Error> + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let target = self.inner.target.clone();
        let job: Job = Box::new(move |conn: &mut Conn| {
            let reused = conn.client.is_some();
            let mut result = conn.client().and_then(&mut f);
            let retry = reused && may_retry.load(Ordering::Relaxed) && result.as_ref().is_err_and(connection_lost);
            if retry {
                conn.client = None;
                result = conn.client().and_then(&mut f);
            }
            if result.is_err() && conn.client.as_ref().is_some_and(|c| c.is_closed()) {
                conn.client = None;
            }
            let _ = reply.send(result.map_err(|e| pg_error(&target, e)));
        });
        let gone =
            || StoreError::Write { path: self.inner.target.clone(), reason: "the store's threads have stopped".into() };
        self.inner.queue.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// Runs `f` inside one transaction (committed when it returns `Ok`, rolled back otherwise). Retried as
    /// [`PgStore::call`] says, but never once it reached COMMIT: a connection lost there leaves the commit's
    /// outcome unknown, and the caller hears an error rather than having the work done twice.
    pub(crate) fn transaction<T, F>(&self, mut f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error> + Send + 'static,
    {
        let may_retry = Arc::new(AtomicBool::new(true));
        let flag = may_retry.clone();
        self.run(
            move |client| {
                let mut tx = client.transaction()?;
                let out = f(&mut tx)?;
                flag.store(false, Ordering::Relaxed);
                tx.commit()?;
                Ok(out)
            },
            may_retry,
        )
    }

    /// The schema version the database is at.
    pub fn schema_version(&self) -> Result<i32, StoreError> {
        self.call(migrations::version)
    }
}

/// `mailsift store check` on PostgreSQL: connects (on a thread of its own) without applying any schema step
/// and returns the schema version, notes (the server's version, the trigram extension) and problems
/// (case folding limited to ASCII: a database made with a C locale).
pub fn inspect(config: &PgConfig) -> Result<(i32, Vec<String>, Vec<String>), StoreError> {
    let client_config = config.client_config()?;
    let target = describe(&client_config);
    let tls = tls_connector(config.ca_file.as_deref())?;
    let at = target.clone();
    std::thread::spawn(move || -> Result<(i32, Vec<String>, Vec<String>), StoreError> {
        let err = |e| pg_error(&at, e);
        let mut conn = Conn { config: client_config, tls, client: None };
        let c = conn.client().map_err(err)?;
        let version = migrations::version(c).map_err(err)?;
        let server: String = c.query_one("SHOW server_version", &[]).map_err(err)?.get(0);
        let ctype: String = c
            .query_one("SELECT datctype FROM pg_database WHERE datname = current_database()", &[])
            .map_err(err)?
            .get(0);
        let folds: bool = c.query_one("SELECT lower('ЗАКАЗ Ä') = 'заказ ä'", &[]).map_err(err)?.get(0);
        let trgm: bool =
            c.query_one("SELECT count(*) > 0 FROM pg_extension WHERE extname = 'pg_trgm'", &[]).map_err(err)?.get(0);
        let mut notes = vec![format!("PostgreSQL {server}, character type {ctype}")];
        let mut problems = Vec::new();
        if !folds {
            problems.push(format!(
                "lower() folds ASCII only (character type {ctype}): searches would miss non-ASCII matches; \
                 create the database with a UTF-8 locale (e.g. LC_CTYPE C.UTF-8)"
            ));
        }
        notes.push(if trgm {
            "pg_trgm installed: substring searches use trigram indexes".to_string()
        } else {
            "pg_trgm not installed yet: the schema step that creates it has not run".to_string()
        });
        Ok((version, notes, problems))
    })
    .join()
    .map_err(|_| StoreError::Write { path: target, reason: "inspecting the store panicked".into() })?
}

/// TLS as the URL's `sslmode` asks for it (`prefer` by default, as libpq does), trusting `ca_file` or else
/// the system's certificate authorities.
fn tls_connector(ca_file: Option<&Path>) -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(file) => {
            let invalid = |reason: String| StoreError::Invalid { path: file.display().to_string(), reason };
            for cert in rustls_pki_types::CertificateDer::pem_file_iter(file).map_err(|e| invalid(e.to_string()))? {
                roots.add(cert.map_err(|e| invalid(e.to_string()))?).map_err(|e| invalid(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(invalid("no certificate in the file".into()));
            }
        }
        None => {
            // Certificates the system has that rustls cannot read are skipped, as a browser would.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Invalid { path: "[store] TLS".into(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// A PostgreSQL error as the store reports it: the server and database named, the server's own message
/// (with its SQLSTATE) when there is one.
pub(crate) fn pg_error(target: &str, e: postgres::Error) -> StoreError {
    let reason = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    };
    StoreError::Postgres { target: target.to_string(), reason, temporary: is_temporary(&e) }
}

/// Whether an error says the connection itself is gone (closed, reset, or terminated by the server as it
/// shut down), as opposed to a statement refused on a live connection.
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || match e.code() {
            None => e.as_db_error().is_none(),
            Some(code) => code.code().starts_with("08") || matches!(code.code(), "57P01" | "57P02" | "57P03"),
        }
}

/// Whether an error may pass by itself: the connection lost or refused, the server starting or shutting
/// down, a serialization conflict or deadlock. The gateway answers these with 4xx.
fn is_temporary(e: &postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let c = code.code();
            c.starts_with("08") || c.starts_with("57P") || c == "40001" || c == "40P01" || c.starts_with("53")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_server_and_never_the_password() {
        let config = PgConfig::new("postgresql://gw:s3cret@db.example:6543/mail?sslmode=require");
        let target = describe(&config.client_config().unwrap());
        assert_eq!(target, "postgresql://db.example:6543/mail");
        let bad = PgConfig::new("postgresql://gw:s3cret@db.example:notaport/mail");
        let e = bad.client_config().unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn the_password_file_is_read_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "  hunter2 \nignored\n").unwrap();
        let mut config = PgConfig::new("postgresql://gw@127.0.0.1/mail");
        config.password_file = Some(file.clone());
        assert_eq!(config.client_config().unwrap().get_password(), Some(&b"hunter2"[..]));
        std::fs::write(&file, "\n").unwrap();
        assert!(config.client_config().unwrap_err().to_string().contains("empty password"));
        config.password_file = Some(dir.path().join("absent"));
        assert!(config.client_config().is_err());
    }

    #[test]
    fn a_pool_size_out_of_range_is_refused() {
        let mut config = PgConfig::new("postgresql://gw@127.0.0.1/mail");
        config.pool_size = 0;
        assert!(config.client_config().unwrap_err().to_string().contains("pool_size"));
    }
}
