//! A private, throwaway PostgreSQL server on loopback, so store tests talk to the real thing.
//!
//! [`Postgres::start`] gives a running server of its own on `127.0.0.1:<free port>`, with a role `mailsift`
//! (superuser, trust authentication) and a database `mailsift` already created: [`Postgres::url`] is
//! `postgresql://mailsift@127.0.0.1:PORT/mailsift`. A test that wants a database of its own asks
//! [`Postgres::create_database`]. [`Postgres::stop`], [`Postgres::start_again`] and [`Postgres::kill`] restart
//! or crash the same cluster on the same port, for tests of what a store does while its database goes away.
//! Dropping the value shuts the server down and removes its directory.
//!
//! How it is made:
//! - The binaries are Debian's, `/usr/lib/postgresql/<version>/bin` (the newest version installed). Nothing
//!   of Debian's cluster machinery is used (`pg_ctlcluster`, `/etc/postgresql`, `/var/run/postgresql`), and a
//!   system cluster, running or not, is never touched.
//! - `initdb` takes about half a second, so it runs once per test process, into a template cluster (with the
//!   `mailsift` database created in single-user mode, so no server or port is involved); every instance is a
//!   copy of the template (`cp -a --sparse=always`: about 1,000 files, 27 MB written). The watchdog of the template
//!   removes it when the test process ends.
//! - PostgreSQL refuses to run as root. When the tests run as root, `initdb` and the server run as the
//!   `postgres` account (created by Debian's package; the child process takes its uid and gid before it
//!   starts, as `runuser -u postgres` would), and the instance's directory is owned by it; otherwise they run
//!   as the current user.
//! - The postmaster is a child of the test process, not daemonized by `pg_ctl`: an orphaned postmaster that
//!   is killed stays a zombie until the machine's init reaps it, and while its pid exists a new postmaster on
//!   the same directory refuses to start ("lock file postmaster.pid already exists"). Stopping is the
//!   postmaster's own signals: SIGINT for a fast shutdown, SIGQUIT for an immediate one.
//! - The server listens on 127.0.0.1 only; its unix socket is in the instance's own directory. `pg_hba.conf`
//!   trusts the unix socket and 127.0.0.1/32, and nothing else. The instance's settings are in
//!   `mailsift.conf` beside `postgresql.conf` (which includes it), so [`Postgres::start_with`] settings stay in
//!   force across restarts.
//! - Every wait is bounded (30 s for a start or a stop, 60 s for a `psql` command) and fails with the tail of
//!   the server's log ([`Postgres::log`]).
//! - A watchdog process stops the server and removes the directory if the test process dies without
//!   dropping the value (a panic that aborts, a killed test binary).
//!
//! Measured on a 2-core machine: an instance is ready 0.1 to 0.45 s after `start` (mostly the copy, so it
//! depends on the disk), the first in a process about 0.7 s (initdb included); `start_again` about 30 ms, a
//! fast `stop` about 20 ms, dropping about 40 ms.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The role every instance has (superuser, no password): the one in [`Postgres::url`].
pub const USER: &str = "mailsift";

/// The database every instance has from the start: the one in [`Postgres::url`].
pub const DATABASE: &str = "mailsift";

/// The account the server runs as when the tests run as root; created by Debian's `postgresql-common`.
const SYSTEM_ACCOUNT: &str = "postgres";

/// How long `initdb`, a start or a stop may take.
const WAIT: Duration = Duration::from_secs(30);

/// How long one `psql` command may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// How often waits look again.
const POLL: Duration = Duration::from_millis(20);

/// Lines of the server log quoted in an error.
const LOG_TAIL: usize = 40;

/// Settings the harness owns: a test may not move the server off loopback or out of its directory.
const RESERVED: [&str; 5] = ["listen_addresses", "port", "unix_socket_directories", "data_directory", "hba_file"];

/// A running (or stopped, between [`Postgres::stop`] and [`Postgres::start_again`]) private PostgreSQL
/// cluster in a temporary directory.
///
/// Several instances can run at once, in one test binary or several: each has its own directory, port and
/// postmaster. Dropping it shuts the server down (immediately: its data is thrown away) and removes the
/// directory.
pub struct Postgres {
    /// The instance's directory: the cluster in `data/`, the server log, the unix socket.
    dir: TempDir,
    data: PathBuf,
    port: u16,
    install: &'static Installation,
    /// The postmaster while the server runs.
    postmaster: Option<Child>,
    /// Stops the server if this test process dies without running `Drop`.
    watchdog: Option<Child>,
}

impl Postgres {
    /// Whether PostgreSQL's server binaries are installed (`initdb`, `postgres` and `psql` under
    /// `/usr/lib/postgresql/*/bin`).
    pub fn available() -> bool {
        Installation::get().is_some()
    }

    /// Starts a private server with the default settings. `None` when PostgreSQL is not installed, after
    /// [`crate::tool_missing`] (which fails the test under `CI=true`):
    /// `let Some(pg) = Postgres::start() else { return };`.
    ///
    /// Panics, with the server's log, when an installed PostgreSQL does not start.
    pub fn start() -> Option<Postgres> {
        Postgres::start_with(&[])
    }

    /// Like [`Postgres::start`], with extra server settings (`-c name=value`, written to the instance's
    /// configuration, so they hold across [`Postgres::start_again`]): for instance `&[("fsync", "off")]`.
    /// `listen_addresses`, `port`, `unix_socket_directories`, `data_directory` and `hba_file` are the
    /// harness's and are refused.
    pub fn start_with(settings: &[(&str, &str)]) -> Option<Postgres> {
        if let Err(e) = check_settings(settings) {
            panic!("Postgres::start_with: {e}");
        }
        let Some(install) = Installation::get() else {
            crate::tool_missing(
                "PostgreSQL is not installed (no initdb, postgres and psql under /usr/lib/postgresql/*/bin); \
                 `apt-get install --no-install-recommends postgresql` installs it",
            );
            return None;
        };
        match Postgres::try_start(install, settings) {
            Ok(pg) => Some(pg),
            Err(e) => panic!("a private {} did not start: {e}", install.version),
        }
    }

    fn try_start(install: &'static Installation, settings: &[(&str, &str)]) -> io::Result<Postgres> {
        let template = Template::get(install).map_err(io::Error::other)?;
        let dir = tempfile::Builder::new().prefix("mailsift-postgres-").tempdir()?;
        let root = dir.path().to_path_buf();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        let data = root.join("data");
        // Sparse: most of the WAL segment initdb wrote is zeros, so the copy writes about 27 MB, not 40.
        let copied =
            run_bounded(Command::new("cp").args(["-a", "--sparse=always"]).arg(&template.data).arg(&data), None, WAIT)?;
        if !copied.status.success() {
            return Err(io::Error::other(format!(
                "copying the template cluster {} failed ({}): {}",
                template.data.display(),
                copied.status,
                copied.stderr
            )));
        }
        install.give_to_server(&root)?;

        let mut instance = Postgres { dir, data, port: 0, install, postmaster: None, watchdog: None };
        instance.watchdog = Some(spawn_watchdog(
            instance.dir.path(),
            Some((&instance.data.join("postmaster.pid"), "postgres", "QUIT")),
        )?);
        // The port is free when chosen but can be taken before the postmaster binds it: try another.
        let mut attempt = 1;
        loop {
            instance.port = crate::quiet_loopback_port().port();
            instance.write_conf(settings)?;
            match instance.pg_start() {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 3 => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(instance),
            }
        }
    }

    /// `postgresql://mailsift@127.0.0.1:PORT/mailsift`: the database every instance has.
    pub fn url(&self) -> String {
        self.database_url(DATABASE)
    }

    /// The URL of another database on this server (made with [`Postgres::create_database`]).
    pub fn database_url(&self, database: &str) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/{database}", self.port)
    }

    /// The TCP port on 127.0.0.1; the same for the instance's whole life, restarts included.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The postmaster's process id while the server runs; `None` after [`Postgres::stop`] or [`Postgres::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.postmaster.as_ref().map(Child::id)
    }

    /// The instance's directory (the cluster is in `data/` under it); removed when the value is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates database `name` (lower-case letters, digits and `_`), owned by `mailsift`, and returns its URL:
    /// one database per test keeps tests on a shared server apart. Panics when it cannot (for instance, it exists).
    pub fn create_database(&self, name: &str) -> String {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(valid, "create_database({name:?}): a name is 1 to 63 of a-z, 0-9 and _, not starting with a digit");
        if let Err(e) = self.psql(&format!("CREATE DATABASE {name} OWNER {USER}")) {
            panic!("CREATE DATABASE {name} on {}: {e}", self.url());
        }
        self.database_url(name)
    }

    /// Runs `sql` (one or more statements) in the `mailsift` database with `psql` and returns what it printed:
    /// rows one per line, columns separated by `|`, no headers and no command tags, the last newline removed.
    /// `Err` holds psql's error message (a refused statement, or the server not running).
    pub fn psql(&self, sql: &str) -> Result<String, String> {
        self.psql_in(DATABASE, sql)
    }

    /// Like [`Postgres::psql`], in another database.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String, String> {
        let mut command = Command::new(self.install.bin.join("psql"));
        command
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", USER])
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-d")
            .arg(database)
            .arg("-c")
            .arg(sql)
            .env("PGCONNECT_TIMEOUT", "10");
        clear_pg_env(&mut command);
        let out = run_bounded(&mut command, None, QUERY_TIMEOUT).map_err(|e| format!("psql: {e}"))?;
        if out.status.success() {
            Ok(out.stdout.strip_suffix('\n').unwrap_or(&out.stdout).to_string())
        } else {
            Err(format!("psql ({}): {}", out.status, out.stderr.trim_end()))
        }
    }

    /// Shuts the server down (a fast shutdown: sessions are ended, a checkpoint is written) and waits until it
    /// has exited. Does nothing when it is not running. Panics, with the log, when it does not stop.
    pub fn stop(&mut self) {
        if let Err(e) = self.shut_down(Shutdown::Fast) {
            panic!("stopping PostgreSQL on port {}: {e}", self.port);
        }
    }

    /// Starts the server again on the same directory and port, after [`Postgres::stop`] or
    /// [`Postgres::kill`] (after a kill, the server recovers from its WAL first, as after a crash).
    /// Panics when it is already running or does not come up.
    pub fn start_again(&mut self) {
        assert!(self.postmaster.is_none(), "start_again: PostgreSQL on port {} is already running", self.port);
        if let Err(e) = self.pg_start() {
            panic!("starting PostgreSQL again on port {}: {e}", self.port);
        }
    }

    /// Kills the server the way a crash does: SIGKILL to the postmaster and every process it started, with
    /// no shutdown at all (what was not written to the WAL is lost; the next start runs crash recovery).
    /// Waits until they are gone. Does nothing when it is not running.
    pub fn kill(&mut self) {
        let Some(mut postmaster) = self.postmaster.take() else { return };
        let killed = kill_tree(postmaster.id());
        let _ = postmaster.wait();
        if let Err(e) = killed {
            panic!("killing PostgreSQL on port {}: {e}", self.port);
        }
    }

    /// The server's log so far (every start of this instance), to put into failure messages.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The instance's own settings, included by `postgresql.conf`; later lines win, so the test's come last.
    fn write_conf(&self, settings: &[(&str, &str)]) -> io::Result<()> {
        let mut text = String::from("# Written by mailsift_testkit::postgres for one test instance.\n");
        let own: [(&str, String); 3] = [
            ("listen_addresses", "127.0.0.1".into()),
            ("port", self.port.to_string()),
            ("unix_socket_directories", self.dir.path().display().to_string()),
        ];
        for (name, value) in own.iter().map(|(n, v)| (*n, v.as_str())).chain(settings.iter().copied()) {
            text.push_str(&format!("{name} = '{}'\n", value.replace('\\', "\\\\").replace('\'', "''")));
        }
        let path = self.data.join(INSTANCE_CONF);
        fs::write(&path, text)?;
        self.install.give_to_server(&path)
    }

    /// Starts the postmaster and waits until it accepts connections on its port.
    fn pg_start(&mut self) -> io::Result<()> {
        let log_path = self.log_path();
        let log_before = fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        let log = fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
        let started = Instant::now();
        let mut command = self.install.server_command("postgres");
        let postmaster = command
            .arg("-D")
            .arg(&self.data)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let pid = postmaster.id();
        self.postmaster = Some(postmaster);
        let pid_file = self.data.join("postmaster.pid");
        let deadline = Instant::now() + WAIT;
        let failure = loop {
            let exited = self.postmaster.as_mut().and_then(|p| p.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.postmaster = None;
                break format!("the postmaster exited ({status}) after {:?}", started.elapsed());
            }
            // Its pid file (not an earlier one a kill left behind) says "ready" once connections are accepted.
            let ready = fs::read_to_string(&pid_file).is_ok_and(|text| {
                let lines: Vec<&str> = text.lines().collect();
                lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid)
                    && lines.get(7).is_some_and(|status| status.trim() == "ready")
            });
            if ready && TcpStream::connect_timeout(&self.addr(), Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = self.shut_down(Shutdown::Crash);
                break format!("the server did not accept connections on {} within {WAIT:?}", self.addr());
            }
            std::thread::sleep(POLL);
        };
        let log = self.log();
        let this_start = log.get(log_before as usize..).unwrap_or(&log);
        let kind =
            if this_start.contains("Address already in use") { io::ErrorKind::AddrInUse } else { io::ErrorKind::Other };
        Err(io::Error::new(kind, format!("{failure}; server log (last lines):\n{}", tail(&log, LOG_TAIL))))
    }

    /// Stops the postmaster and reaps it; waits at most [`WAIT`], then kills what is left.
    fn shut_down(&mut self, how: Shutdown) -> io::Result<()> {
        let Some(mut postmaster) = self.postmaster.take() else { return Ok(()) };
        let pid = postmaster.id();
        let signal_name = match how {
            Shutdown::Fast => "INT",
            Shutdown::Immediate => "QUIT",
            Shutdown::Crash => "KILL",
        };
        signal(signal_name, &pid.to_string());
        let deadline = Instant::now() + WAIT;
        loop {
            if postmaster.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = kill_tree(pid);
                let _ = postmaster.wait();
                return Err(io::Error::other(format!(
                    "the postmaster (pid {pid}) was still running {WAIT:?} after SIG{signal_name}, and was killed; \
                     server log (last lines):\n{}",
                    tail(&self.log(), LOG_TAIL)
                )));
            }
            std::thread::sleep(POLL);
        }
    }
}

/// How [`Postgres::shut_down`] stops the server.
#[derive(Clone, Copy)]
enum Shutdown {
    /// SIGINT: sessions ended, a shutdown checkpoint.
    Fast,
    /// SIGQUIT: children ended at once, no checkpoint (the next start recovers), but the shared memory and the
    /// pid file are cleaned up.
    Immediate,
    /// SIGKILL to the postmaster only (its children notice and exit): for a start that went wrong.
    Crash,
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: the data is about to be removed, so there is nothing to checkpoint.
        let _ = self.shut_down(Shutdown::Immediate);
        // A killed postmaster leaves its System V interlock segment behind (its id is in the stale pid file);
        // the next start would remove it, so when there is none, remove it here.
        if let Ok(pid_file) = fs::read_to_string(self.data.join("postmaster.pid")) {
            if let Some(shmid) = pid_file.lines().nth(6).and_then(|l| l.split_whitespace().nth(1)) {
                if shmid.parse::<u64>().is_ok() {
                    let _ = run_bounded(Command::new("ipcrm").args(["-m", shmid]), None, Duration::from_secs(5));
                }
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            signal("KILL", &format!("-{}", watchdog.id()));
            let _ = watchdog.wait();
        }
        // The TempDir removes the directory.
    }
}

/// The file beside `postgresql.conf` that holds an instance's settings.
const INSTANCE_CONF: &str = "mailsift.conf";

/// Where the binaries are and whom the server runs as.
struct Installation {
    bin: PathBuf,
    /// `PostgreSQL 15.18`, for messages.
    version: String,
    /// The account and its uid/gid when the tests run as root.
    account: Option<(String, u32, u32)>,
}

impl Installation {
    /// The newest version under `/usr/lib/postgresql` with every binary the harness runs; `None` when
    /// there is none. Looked up once per process.
    fn get() -> Option<&'static Installation> {
        static INSTALLATION: OnceLock<Option<Installation>> = OnceLock::new();
        INSTALLATION.get_or_init(Installation::find).as_ref()
    }

    fn find() -> Option<Installation> {
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let number: Vec<u32> = name.split('.').map(|p| p.parse().ok()).collect::<Option<_>>()?;
                let bin = entry.path().join("bin");
                ["initdb", "postgres", "psql"].iter().all(|b| bin.join(b).is_file()).then_some((number, bin))
            })
            .collect();
        versions.sort();
        let (_, bin) = versions.pop()?;
        let version = Command::new(bin.join("postgres"))
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .ok()
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().replace("postgres (PostgreSQL) ", "PostgreSQL "))
            .unwrap_or_else(|| bin.display().to_string());
        let account = if effective_uid() == Some(0) {
            let id = |flag: &str| -> Option<u32> {
                let out = Command::new("id").args([flag, SYSTEM_ACCOUNT]).stdin(Stdio::null()).output().ok()?;
                String::from_utf8_lossy(&out.stdout).trim().parse().ok()
            };
            match (id("-u"), id("-g")) {
                (Some(uid), Some(gid)) => Some((SYSTEM_ACCOUNT.to_string(), uid, gid)),
                // Reported when a server is started: running as root without the account cannot work.
                _ => Some((String::new(), 0, 0)),
            }
        } else {
            None
        };
        Some(Installation { bin, version, account })
    }

    /// A command for one of the server binaries, run as the server's account when the tests run as root.
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = Command::new(path);
        if let Some((_, uid, gid)) = &self.account {
            // What `runuser -u postgres` does: gid, then uid (the standard library also drops root's
            // supplementary groups), so the process is never root.
            command.uid(*uid).gid(*gid);
        }
        clear_pg_env(&mut command);
        command
    }

    /// Makes `path` (recursively) the server account's, when the server runs as another account than the tests.
    fn give_to_server(&self, path: &Path) -> io::Result<()> {
        let Some((account, uid, gid)) = &self.account else { return Ok(()) };
        if account.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "the tests run as root, PostgreSQL refuses to, and there is no {SYSTEM_ACCOUNT:?} account to run \
                     it as (Debian's postgresql package creates it)"
                ),
            ));
        }
        let out = run_bounded(Command::new("chown").arg("-R").arg(format!("{uid}:{gid}")).arg(path), None, WAIT)?;
        if !out.status.success() {
            return Err(io::Error::other(format!("chown -R {account} {}: {}", path.display(), out.stderr)));
        }
        Ok(())
    }
}

/// The cluster every instance of this test process copies: made once, removed by its watchdog when the
/// process ends.
struct Template {
    data: PathBuf,
}

impl Template {
    fn get(install: &'static Installation) -> Result<&'static Template, String> {
        static TEMPLATE: OnceLock<Result<Template, String>> = OnceLock::new();
        TEMPLATE.get_or_init(|| Template::make(install).map_err(|e| e.to_string())).as_ref().map_err(Clone::clone)
    }

    fn make(install: &Installation) -> io::Result<Template> {
        let root = std::env::temp_dir().join(format!("mailsift-postgres-template-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root)?;
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700))?;
        // Nothing to stop: it only removes the directory when the test process is gone.
        let watchdog = spawn_watchdog(&root, None)?;
        std::mem::forget(watchdog);
        if install.account.is_some() {
            check_searchable(&root)?;
        }
        install.give_to_server(&root)?;
        let data = root.join("data");

        // -N: the template is copied, never run; nothing of it needs to reach the disk before the copies do.
        let mut initdb = install.server_command("initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", USER, "-E", "UTF8", "--locale=C.UTF-8", "-N"])
            .current_dir(&root);
        let out = run_bounded(&mut initdb, None, WAIT)?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "initdb -D {} failed ({}): {}{}",
                data.display(),
                out.status,
                out.stdout,
                out.stderr
            )));
        }

        // Trust on the socket and loopback only (initdb's own file also trusts ::1 and replication).
        let hba =
            "# Written by mailsift_testkit::postgres: trust on the instance's socket and on loopback, nothing else.\n\
                   local all         all              trust\n\
                   host  all         all 127.0.0.1/32 trust\n\
                   local replication all              trust\n\
                   host  replication all 127.0.0.1/32 trust\n";
        fs::write(data.join("pg_hba.conf"), hba)?;
        let mut conf = fs::OpenOptions::new().append(true).open(data.join("postgresql.conf"))?;
        writeln!(
            conf,
            "\n# mailsift_testkit::postgres: each instance's own settings.\ninclude_if_exists = '{INSTANCE_CONF}'"
        )?;
        drop(conf);
        install.give_to_server(&data)?;

        // The mailsift database, made in single-user mode: no listening socket, no port to choose.
        let mut single = install.server_command("postgres");
        single.args(["--single", "-D"]).arg(&data).args(["-c", "fsync=off", "postgres"]).current_dir(&root);
        let sql = format!("CREATE DATABASE {DATABASE} OWNER {USER};\n");
        let out = run_bounded(&mut single, Some(sql.as_bytes()), WAIT)?;
        if !out.status.success() || out.stderr.contains("ERROR") {
            return Err(io::Error::other(format!(
                "creating database {DATABASE} in single-user mode failed ({}): {}{}",
                out.status, out.stdout, out.stderr
            )));
        }
        Ok(Template { data })
    }
}

fn check_settings(settings: &[(&str, &str)]) -> Result<(), String> {
    for (name, value) in settings {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return Err(format!("setting {name:?}: not a parameter name"));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("setting {name}: the harness sets it (loopback only, the instance's own directory)"));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(format!("setting {name}: the value spans lines"));
        }
    }
    Ok(())
}

/// libpq and the server binaries read `PGHOST`, `PGPORT`, `PGDATA`, `PGOPTIONS`...: none of the caller's may
/// redirect a command to another server or change its options.
fn clear_pg_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PG") {
            command.env_remove(name);
        }
    }
}

/// The server account must reach the instance's directories by path.
fn check_searchable(dir: &Path) -> io::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} (mode {:o}) is not searchable by the {SYSTEM_ACCOUNT} account, so PostgreSQL cannot reach {}; \
                     point TMPDIR at a world-searchable directory such as /tmp",
                    ancestor.display(),
                    mode & 0o7777,
                    dir.display()
                ),
            ));
        }
    }
    Ok(())
}

fn effective_uid() -> Option<u32> {
    fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

// Process helpers, shared with the redis module.

/// What a bounded command printed and how it ended.
pub(crate) struct Output {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `command` with `input` on its standard input (or none), collecting its output, and kills it when it
/// has not finished within `timeout`. Output a leftover grandchild keeps open is not waited for.
pub(crate) fn run_bounded(command: &mut Command, input: Option<&[u8]>, timeout: Duration) -> io::Result<Output> {
    let program = format!("{:?}", command.get_program());
    let mut child = command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("{program}: {e}")))?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let (stdout, stderr) = (reader(child.stdout.take()), reader(child.stderr.take()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{program} did not finish within {timeout:?}; it printed: {}{}",
                    stdout.recv_timeout(Duration::from_secs(1)).unwrap_or_default(),
                    stderr.recv_timeout(Duration::from_secs(1)).unwrap_or_default()
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let grace = Duration::from_secs(2);
    Ok(Output {
        status,
        stdout: stdout.recv_timeout(grace).unwrap_or_default(),
        stderr: stderr.recv_timeout(grace).unwrap_or_default(),
    })
}

fn reader(stream: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    if let Some(mut stream) = stream {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stream.read_to_end(&mut bytes);
            let _ = send.send(String::from_utf8_lossy(&bytes).into_owned());
        });
    }
    receive
}

/// Keeps an eye on this test process; when it is gone without having cleaned up, stops the server whose pid
/// file is given (if the pid there is still that program: `comm`) with `signal`, then SIGKILL after 10 s, and
/// removes `dir`. Runs in its own process group, so the owner can end it with its `sleep`.
pub(crate) fn spawn_watchdog(dir: &Path, server: Option<(&Path, &str, &str)>) -> io::Result<Child> {
    const SCRIPT: &str = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        if [ -n "$3" ]; then
            pid=$(head -n 1 "$3" 2>/dev/null)
            if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$4" ]; then
                kill -"$5" "$pid" 2>/dev/null
                i=0
                while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 10 ]; do sleep 1; i=$((i + 1)); done
                kill -KILL "$pid" 2>/dev/null
            fi
        fi
        rm -rf -- "$2"
    "#;
    let (pid_file, comm, signal) = server.unwrap_or((Path::new(""), "", ""));
    Command::new("sh")
        .args(["-c", SCRIPT, "mailsift-testkit-watchdog"])
        .arg(std::process::id().to_string())
        .arg(dir)
        .arg(pid_file)
        .args([comm, signal])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

/// SIGKILL to `pid` and every process it started, as a crash would; waits until they are gone. The parent is
/// stopped first, so it cannot start another child between the listing and the kill.
fn kill_tree(pid: u32) -> io::Result<()> {
    signal("STOP", &pid.to_string());
    let mut pids = children(pid);
    pids.push(pid);
    for p in &pids {
        signal("KILL", &p.to_string());
    }
    if wait_until_gone(&pids, WAIT) {
        Ok(())
    } else {
        let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
        Err(io::Error::other(format!("processes {left:?} are still there {WAIT:?} after SIGKILL")))
    }
}

pub(crate) fn signal(name: &str, target: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Whether a process exists and is not a zombie (a zombie is gone for every purpose here: it holds no port,
/// no file and no shared memory, and only its parent, maybe not us, can reap it).
pub(crate) fn alive(pid: u32) -> bool {
    stat_fields(pid).is_some_and(|fields| fields[0] != "Z")
}

pub(crate) fn wait_until_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|p| alive(*p)) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Live processes whose parent is `parent`, from /proc.
fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f[0] != "Z" && f[1].parse::<u32>() == Ok(parent)))
        .collect()
}

/// The fields of `/proc/PID/stat` after the command name: state, ppid, pgrp, ...
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
    (fields.len() > 2).then_some(fields)
}

pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::{check_settings, tail};

    #[test]
    fn settings_that_would_leave_loopback_are_refused() {
        assert!(
            check_settings(&[("fsync", "off"), ("work_mem", "64MB"), ("auto_explain.log_min_duration", "0")]).is_ok()
        );
        for name in ["listen_addresses", "port", "Unix_Socket_Directories", "hba_file"] {
            assert!(check_settings(&[(name, "x")]).is_err(), "{name}");
        }
        assert!(check_settings(&[("bad name", "x")]).is_err());
        assert!(check_settings(&[("fsync", "off\nport = 1")]).is_err());
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
        assert_eq!(tail("", 5), "");
    }
}
