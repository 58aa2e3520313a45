//! `mailsift serve`: the SMTP gateway, with reload on SIGHUP and graceful shutdown on SIGTERM/SIGINT; and
//! `mailsift smtp-sink`, a next hop that accepts everything (for trying mailsift and for load tests).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};

#[derive(Args)]
pub struct ServeArgs {
    /// Listen here instead of `[smtp] listen` (repeat for several; port 0 picks a free port).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Serve HTTP (API, console, digest links, metrics) here instead of `[web] listen` (port 0 picks one).
    #[arg(long)]
    http_listen: Option<SocketAddr>,
    /// Log format: `text` or `json`.
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Append the log to this file instead of standard error (which the journal collects under systemd).
    /// SIGUSR1 reopens it, so a rotation tool can rename the file and then signal.
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
}

/// Reads the configuration file (or the embedded defaults) into a gateway state. The classifier's store is
/// beside the gateway database `db` (shared on PostgreSQL); without one, in the data directory.
pub fn build_state(
    config: Option<&PathBuf>,
    data_dir: &Path,
    listen: &[SocketAddr],
    db: Option<&mailsift_store::Database>,
) -> Result<GatewayState> {
    let text = match config {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("{}: cannot read configuration", p.display()))?,
        None => String::new(),
    };
    // The file read and checked once; the engine and `[redis]` come from the same parse.
    let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
    let engine = loaded.engine()?;
    // Reputation where the other nodes see it: Redis when `[redis]` says so, else beside the gateway
    // database (PostgreSQL's table, or the data directory's file).
    let reputation = if engine.config().reputation.enabled {
        let half_life = engine.config().reputation.half_life_days;
        Some(Arc::new(match db {
            Some(db) => mailsift_store::open_reputation(data_dir, db, loaded.redis.as_ref(), half_life)?,
            None => mailsift_store::SqliteReputation::open_dir(data_dir, half_life)?,
        }))
    } else {
        None
    };
    // The gateway keeps the learner whose model it scans with, so reports by email retrain it live; mail to
    // a spamtrap is learned and counts against its sender's reputation (never against our own domains).
    let learner = if engine.config().classifier.enabled {
        let store = match db {
            Some(db) => mailsift_store::ClassifierStore::open(data_dir, db)?,
            None => mailsift_store::SqliteStore::open_dir(data_dir)?.into(),
        };
        let at = store.describe();
        let mut learner =
            mailsift_store::Learner::open(store).with_context(|| format!("{at}: cannot load the classifier store"))?;
        if let Some(rep) = &reputation {
            let hook = mailsift_store::ReputationHook::shared(rep.clone())
                .with_organisation(engine.config().organisation.clone());
            learner = learner.with_spamtrap_hook(Box::new(hook));
        }
        Some(learner)
    } else {
        None
    };
    let engine = match &learner {
        Some(l) => engine.with_model(l.model()),
        None => engine,
    };
    let where_ = config.map(|p| p.display().to_string()).unwrap_or_else(|| "embedded defaults".into());
    let mut smtp = SmtpConfig::from_toml(&text).with_context(|| format!("{where_}: invalid configuration"))?;
    if !listen.is_empty() {
        smtp.listen = listen.to_vec();
    }
    let mut state =
        GatewayState::new(engine, smtp, data_dir).with_context(|| format!("{where_}: cannot start the gateway"))?;
    if let Some(l) = learner {
        state = state.with_learner(l);
    }
    if let Some(r) = reputation {
        state = state.with_shared_reputation(r);
    }
    Ok(state)
}

/// Stack of every runtime thread, the blocking threads that judge messages included.
const SCAN_STACK_BYTES: usize = 16 << 20;

pub fn run(config: Option<&PathBuf>, data_dir: &Path, args: &ServeArgs) -> Result<()> {
    let log_file = match &args.log_file {
        Some(path) => Some(LogFile::open(path)?),
        None => None,
    };
    init_logging(&args.log_format, log_file.clone());
    // Messages are judged on the gateway's judge threads (mailsift_gateway::pool, 16 MiB stacks); a diagnosis
    // and other blocking work run on the runtime's blocking threads. The engine bounds every sender-controlled depth (MIME
    // nesting is cut before parsing, and no view recurses on it), so 2 MiB would do; the larger stack is a
    // margin, costing address space only, so that a depth bug the limits missed is one message's panic-free
    // work rather than an overflow that aborts every listener.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(SCAN_STACK_BYTES)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("{}: cannot create the data directory", data_dir.display()))?;
        // The gateway database where `[store]` says: SQLite in the data directory, or PostgreSQL shared with
        // the other nodes (the classifier's model with it).
        let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
        let (store, redis) = (loaded.store, loaded.redis);
        let db = mailsift_store::Database::open_configured(data_dir, &store)
            .with_context(|| format!("the gateway database ({})", store.describe(data_dir)))?;
        let state = build_state(config, data_dir, &args.listen, Some(&db))?;
        let gateway = Gateway::new(state, db.clone(), data_dir);
        // Rate-limit buckets and greylisting triplets where the other nodes see them: the `[redis]` of
        // reputation, else memory with a snapshot in the data directory.
        if let Some(redis) = &redis {
            let limits = mailsift_store::limits::redis::RedisLimits::open(redis).context("[redis] for rate limits")?;
            gateway.limits.use_store(Arc::new(limits));
        }
        let listeners = gateway.bind().await?;
        // Every listener is bound before any is announced, so a taken port stops the start with nothing said
        // to be listening.
        let web = web_config(config, args.http_listen)?;
        let http = if web.enabled {
            let http = tokio::net::TcpListener::bind(web.listen)
                .await
                .with_context(|| format!("[web] listen: cannot bind {}", web.listen))?;
            Some(http)
        } else {
            None
        };
        let side = gateway.start_side_listeners().await?;
        let needed_files = 2 * gateway.state().config.max_connections as u64
            + if web.enabled { web.max_connections as u64 } else { 0 }
            + 128;
        ensure_open_files(needed_files);
        let mut public = Vec::new();
        for (l, kind) in &listeners {
            let addr = l.local_addr()?;
            if !addr.ip().is_loopback() {
                public.push(addr.to_string());
            }
            // One line per listener on standard output: scripts and tests read the address from it.
            println!(
                "mailsift: SMTP {} listening on {addr}",
                if *kind == mailsift_smtp::Listener::Inbound { "inbound" } else { "outbound" },
            );
        }
        // The milter and spamd listeners, when configured ([smtp.milter], [smtp.spamd]): same engine and policy.
        for (kind, addr) in side {
            println!("mailsift: {kind} listening on {addr}");
        }
        if let Some(http) = http {
            let bound = http.local_addr()?;
            let app = mailsift_web::Web::new(gateway.clone(), web, bound)?;
            println!("mailsift: HTTP listening on {bound}");
            tokio::spawn(mailsift_web::serve(app, http));
        }
        if !public.is_empty() && !gateway.state().engine.config().dns.enabled {
            // The embedded defaults keep DNS off so a first run sends nothing anywhere; on a public listener
            // that means no SPF, DKIM, DMARC or reverse DNS, and diagnosis without the facts that matter.
            let text = format!(
                "SMTP listens on {} with DNS evidence off ([dns] enabled = false): no SPF, DKIM, DMARC, ARC or \
                 reverse-DNS checks run. Set [dns] enabled = true for production.",
                public.join(", ")
            );
            eprintln!("mailsift: warning: {text}");
            tracing::warn!("{text}");
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        spawn_signal_handlers(
            gateway.clone(),
            config.cloned(),
            data_dir.to_path_buf(),
            args.listen.clone(),
            db,
            log_file,
        );
        // Every listener is bound (connections wait in the kernel's queue until the accept loops below take
        // them) and the gateway's state is built: the service manager may now order what depends on mail.
        let listening: Vec<String> =
            listeners.iter().filter_map(|(l, _)| l.local_addr().ok()).map(|a| a.to_string()).collect();
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("accepting mail on {}", listening.join(", "))),
        ]);
        gateway.clone().serve(listeners).await;
        let counts: Vec<String> =
            gateway.counters.snapshot().iter().filter(|(_, v)| *v > 0).map(|(k, v)| format!("{k}={v}")).collect();
        tracing::info!(counters = %counts.join(" "), "stopped");
        Ok(())
    })
}

/// Raises the soft open-file limit towards what the listeners can use at once: each SMTP session may hold
/// an onward connection too (2 x `[smtp] max_connections`), plus the HTTP connections and 128 for
/// listeners, SQLite files, DNS sockets and logs. Out of files, `accept` fails for every listener alike, so
/// one flooded port would stop them all; the caps stay inside this sum. Warns when the hard limit is lower.
fn ensure_open_files(needed: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read or write only the struct given, which lives on this frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return;
        }
        #[allow(clippy::unnecessary_cast)]
        let (soft, hard) = (lim.rlim_cur as u64, lim.rlim_max as u64);
        if soft < needed {
            let raised = libc::rlimit { rlim_cur: needed.min(hard) as libc::rlim_t, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    #[allow(clippy::unnecessary_cast)]
    let now = lim.rlim_cur as u64;
    if now < needed {
        let text = format!(
            "the open-file limit is {now}, below the {needed} the configured connection limits can use \
             (2 x [smtp] max_connections + [web] max_connections + 128): raise it (systemd: LimitNOFILE={}) or \
             lower the connection limits",
            needed.next_power_of_two()
        );
        eprintln!("mailsift: warning: {text}");
        tracing::warn!("{text}");
    }
}

/// The `[web]` table, with the command line's listener.
pub fn web_config(config: Option<&PathBuf>, listen: Option<SocketAddr>) -> Result<mailsift_web::WebConfig> {
    let text = match config {
        Some(p) => std::fs::read_to_string(p).with_context(|| format!("{}: cannot read configuration", p.display()))?,
        None => String::new(),
    };
    let where_ = config.map(|p| p.display().to_string()).unwrap_or_else(|| "embedded defaults".into());
    let mut web =
        mailsift_web::WebConfig::from_toml(&text).with_context(|| format!("{where_}: invalid configuration"))?;
    if let Some(l) = listen {
        web.listen = l;
    }
    Ok(web)
}

/// Tells the service manager (systemd's `Type=notify`) about a state change; nothing without
/// `NOTIFY_SOCKET`. A manager that cannot be told is not a reason to stop the mail: the failure is logged.
fn notify(states: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// A configuration error as the service manager's status and the log show it: the error chain on one line,
/// without the source excerpts a TOML parse error quotes (the offending line may hold a password), capped.
fn reload_error_text(e: &anyhow::Error) -> String {
    let full = format!("{e:#}");
    let mut parts = Vec::new();
    for line in full.lines() {
        let t = line.trim();
        // TOML excerpts: "3 | password = ...", "  |", "  |     ^^^".
        let excerpt = t.split_once('|').is_some_and(|(left, _)| left.trim().chars().all(|c| c.is_ascii_digit()));
        if t.is_empty() || excerpt {
            continue;
        }
        parts.push(t.to_string());
    }
    let mut text = parts.join("; ");
    if text.len() > 300 {
        let mut cut = 300;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push_str("...");
    }
    text
}

fn spawn_signal_handlers(
    gateway: Arc<Gateway>,
    config: Option<PathBuf>,
    data_dir: PathBuf,
    listen: Vec<SocketAddr>,
    db: mailsift_store::Database,
    log_file: Option<LogFile>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let g = gateway.clone();
    tokio::spawn(async move {
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down: finishing sessions in flight");
        notify(&[
            sd_notify::NotifyState::Stopping,
            sd_notify::NotifyState::Status("draining: finishing sessions in flight"),
        ]);
        g.shutdown();
    });
    // SIGUSR1 reopens the log file (after a rotation renamed it). Handled even without --log-file, since
    // the signal's default action would end the gateway.
    tokio::spawn(async move {
        let Ok(mut usr1) = signal(SignalKind::user_defined1()) else { return };
        while usr1.recv().await.is_some() {
            match &log_file {
                Some(f) => match f.reopen() {
                    Ok(()) => tracing::info!(path = %f.path.display(), "log file reopened"),
                    Err(e) => {
                        tracing::error!(path = %f.path.display(), error = %e, "cannot reopen the log file; still writing to the old one")
                    }
                },
                None => tracing::info!("SIGUSR1: no log file to reopen (logging to standard error)"),
            }
        }
    });
    tokio::spawn(async move {
        let Ok(mut hup) = signal(SignalKind::hangup()) else { return };
        while hup.recv().await.is_some() {
            let reloading = sd_notify::NotifyState::monotonic_usec_now().ok();
            let mut states = vec![sd_notify::NotifyState::Reloading];
            states.extend(reloading);
            notify(&states);
            // A broken file is reported (log and service manager) and the running configuration kept.
            match build_state(config.as_ref(), &data_dir, &listen, Some(&db)) {
                Ok(state) => {
                    gateway.reload(state);
                    notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("configuration reloaded")]);
                }
                Err(e) => {
                    let reason = reload_error_text(&e);
                    tracing::error!(error = %reason, "reload failed; keeping the running configuration");
                    notify(&[
                        sd_notify::NotifyState::Ready,
                        sd_notify::NotifyState::Status(&format!("reload failed: {reason}")),
                    ]);
                }
            }
        }
    });
}

/// The log file of `--log-file`: appended to, one formatted event per write, and reopened by path on
/// SIGUSR1 so that a renamed (rotated) file is let go and a new one started.
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<std::sync::Mutex<std::fs::File>>,
}

impl LogFile {
    fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(path)
    }

    fn open(path: &Path) -> Result<LogFile> {
        let file = Self::open_file(path).with_context(|| format!("{}: cannot open the log file", path.display()))?;
        Ok(LogFile { path: path.to_path_buf(), file: Arc::new(std::sync::Mutex::new(file)) })
    }

    fn reopen(&self) -> std::io::Result<()> {
        let new = Self::open_file(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = new;
        Ok(())
    }
}

impl std::io::Write for &LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over one whole event: written under the lock with write_all, lines never
        // interleave.
        self.file.lock().unwrap_or_else(|p| p.into_inner()).write_all(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.lock().unwrap_or_else(|p| p.into_inner()).flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogFile {
    type Writer = &'a LogFile;
    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

fn init_logging(format: &str, file: Option<LogFile>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MAILSIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match (file, format == "json") {
        (Some(f), true) => {
            let _ = builder.with_writer(f).with_ansi(false).json().try_init();
        }
        (Some(f), false) => {
            let _ = builder.with_writer(f).with_ansi(false).try_init();
        }
        (None, true) => {
            let _ = builder.with_writer(std::io::stderr).json().try_init();
        }
        (None, false) => {
            let _ = builder.with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()).try_init();
        }
    }
}

#[derive(Args)]
pub struct SinkArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:2526")]
    listen: SocketAddr,
    /// Keep every message in a Maildir-like folder (one file per message) instead of only counting.
    #[arg(long)]
    keep: Option<PathBuf>,
}

pub fn sink(args: &SinkArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let sink = mailsift_smtp::sink::Sink::start(args.listen, args.keep.is_some()).await?;
        println!("mailsift: SMTP sink listening on {}", sink.addr());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let mut written = 0;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
            }
            if let Some(dir) = &args.keep {
                let msgs = sink.messages();
                for m in &msgs[written..] {
                    mailsift_smtp::deliver::maildir_deliver(dir, &m.rcpts.join(","), &m.data)?;
                }
                written = msgs.len();
            }
        }
        println!("mailsift: sink received {} messages", sink.count());
        Ok(())
    })
}
