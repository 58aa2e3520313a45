//! A private, throwaway Redis server on loopback, so tests of the shared counters talk to the real thing.
//!
//! [`Redis::start`] runs Debian's `redis-server` as a child process with its whole configuration on the
//! command line (no file from `/etc/redis` is read): `--port P --bind 127.0.0.1 --save '' --appendonly no
//! --dir <its own directory>`, logging to `redis.log` there. [`Redis::url`] is `redis://127.0.0.1:PORT/`.
//! [`Redis::stop`], [`Redis::start_again`] and [`Redis::kill`] restart or crash it on the same port. Nothing
//! is persisted by default, so a restarted instance is empty, as a Redis that lost its memory is; a test that
//! wants persistence passes `("appendonly", "yes")` to [`Redis::start_with`]. Dropping the value kills the
//! server and removes its directory; a watchdog does the same if the test process dies first.
//!
//! Starting takes a few milliseconds; every wait is bounded (30 s) and fails with the log's tail.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::postgres::{read_lossy, run_bounded, signal, spawn_watchdog, tail};

/// How long a start, a stop or one `redis-cli` command may take.
const WAIT: Duration = Duration::from_secs(30);

/// How often waits look again.
const POLL: Duration = Duration::from_millis(10);

/// Lines of the log quoted in an error.
const LOG_TAIL: usize = 30;

/// Options the harness owns: a test may not move the server off loopback, out of its directory, or into
/// the background.
const RESERVED: [&str; 8] = ["port", "bind", "dir", "daemonize", "logfile", "pidfile", "unixsocket", "include"];

/// A private `redis-server` in a temporary directory, running or (between [`Redis::stop`] and
/// [`Redis::start_again`]) stopped. Several can run at once, each on its own port.
pub struct Redis {
    dir: TempDir,
    port: u16,
    server: PathBuf,
    cli: PathBuf,
    /// The test's own options, kept for restarts.
    settings: Vec<(String, String)>,
    child: Option<Child>,
    /// Stops the server if this test process dies without running `Drop`.
    watchdog: Option<Child>,
}

impl Redis {
    /// Whether `redis-server` and `redis-cli` are installed.
    pub fn available() -> bool {
        program("redis-server").is_some() && program("redis-cli").is_some()
    }

    /// Starts a private server. `None` when Redis is not installed, after [`crate::tool_missing`] (which fails
    /// the test under `CI=true`): `let Some(redis) = Redis::start() else { return };`.
    ///
    /// Panics, with the server's log, when an installed Redis does not start.
    pub fn start() -> Option<Redis> {
        Redis::start_with(&[])
    }

    /// Like [`Redis::start`], with extra configuration options passed as `--name value` after the harness's
    /// own (so they override its defaults, `save` and `appendonly` included); they hold across restarts.
    /// `port`, `bind`, `dir`, `daemonize`, `logfile`, `pidfile`, `unixsocket` and `include` are refused.
    pub fn start_with(settings: &[(&str, &str)]) -> Option<Redis> {
        if let Err(e) = check_settings(settings) {
            panic!("Redis::start_with: {e}");
        }
        let (Some(server), Some(cli)) = (program("redis-server"), program("redis-cli")) else {
            crate::tool_missing(
                "Redis is not installed (redis-server and redis-cli); \
                 `apt-get install --no-install-recommends redis-server` installs both",
            );
            return None;
        };
        match Redis::try_start(server, cli, settings) {
            Ok(redis) => Some(redis),
            Err(e) => panic!("private Redis did not start: {e}"),
        }
    }

    fn try_start(server: PathBuf, cli: PathBuf, settings: &[(&str, &str)]) -> io::Result<Redis> {
        let dir = tempfile::Builder::new().prefix("mailsift-redis-").tempdir()?;
        let settings = settings.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
        let mut redis = Redis { dir, port: 0, server, cli, settings, child: None, watchdog: None };
        redis.watchdog = Some(spawn_watchdog(redis.dir.path(), Some((&redis.pid_file(), "redis-server", "TERM")))?);
        // The port is free when chosen but can be taken before the server binds it: try another.
        let mut attempt = 1;
        loop {
            redis.port = crate::quiet_loopback_port().port();
            match redis.spawn_server() {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 3 => attempt += 1,
                Err(e) => return Err(e),
                Ok(()) => return Ok(redis),
            }
        }
    }

    /// `redis://127.0.0.1:PORT/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The TCP port on 127.0.0.1; the same for the instance's whole life, restarts included.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's process id while it runs; `None` after [`Redis::stop`] or [`Redis::kill`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The instance's directory (its `--dir`, the log); removed when the value is dropped.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs one command with `redis-cli` and returns its reply as `redis-cli` prints it to a pipe (a bulk string
    /// as it is, an integer as digits, an array one element a line, nil as an empty string), the last
    /// newline removed. `Err` holds an error reply (`ERR ...`, `WRONGTYPE ...`) or the connection failure.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut command = Command::new(&self.cli);
        // -e: an error reply is a failure exit; without it redis-cli exits 0 whatever the server answered.
        command.args(["-e", "-h", "127.0.0.1", "-p"]).arg(self.port.to_string()).args(args);
        // The REDISCLI_AUTH of the caller's environment is for some other server.
        command.env_remove("REDISCLI_AUTH");
        let out = run_bounded(&mut command, None, WAIT).map_err(|e| format!("redis-cli: {e}"))?;
        if out.status.success() {
            Ok(out.stdout.strip_suffix('\n').unwrap_or(&out.stdout).to_string())
        } else {
            Err(format!("{}{}", out.stdout, out.stderr).trim().to_string())
        }
    }

    /// Shuts the server down (SIGTERM: it closes its connections and exits, saving only if the test asked for
    /// persistence) and waits until it has exited. Does nothing when it is not running.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        signal("TERM", &child.id().to_string());
        if let Err(e) = wait_child(&mut child, WAIT) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stopping Redis on port {}: {e}; log (last lines):\n{}", self.port, tail(&self.log(), LOG_TAIL));
        }
    }

    /// Starts the server again in the same directory on the same port. Panics when it is already running or
    /// does not come up.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "start_again: Redis on port {} is already running", self.port);
        if let Err(e) = self.spawn_server() {
            panic!("starting Redis again on port {}: {e}", self.port);
        }
    }

    /// Kills the server the way a crash does (SIGKILL, nothing saved) and waits until it is gone. Does nothing
    /// when it is not running.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The server's log so far (every start of this instance), to put into failure messages.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("redis.log"))
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("redis.pid")
    }

    fn spawn_server(&mut self) -> io::Result<()> {
        let root = self.dir.path();
        let log_before = fs::metadata(root.join("redis.log")).map(|m| m.len()).unwrap_or(0);
        let mut command = Command::new(&self.server);
        command
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "yes", "--daemonize", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(root)
            .arg("--logfile")
            .arg(root.join("redis.log"))
            .arg("--pidfile")
            .arg(self.pid_file());
        for (name, value) in &self.settings {
            command.arg(format!("--{name}")).arg(value);
        }
        let started = Instant::now();
        let child = command
            .current_dir(root)
            .stdin(Stdio::null())
            // Files, not pipes: what it prints before the log file is open (a bad option) lands there.
            .stdout(fs::File::create(root.join("redis.out"))?)
            .stderr(fs::File::create(root.join("redis.err"))?)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        loop {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                self.child = None;
                let log = self.log();
                let this_start = log.get(log_before as usize..).unwrap_or(&log);
                let printed = format!("{}{}", read_lossy(&root.join("redis.out")), read_lossy(&root.join("redis.err")));
                let kind =
                    if this_start.contains("Address already in use") || printed.contains("Address already in use") {
                        io::ErrorKind::AddrInUse
                    } else {
                        io::ErrorKind::Other
                    };
                return Err(io::Error::new(
                    kind,
                    format!(
                        "redis-server exited ({status}) after {:?}: {}\nlog (last lines):\n{}",
                        started.elapsed(),
                        printed.trim(),
                        tail(&log, LOG_TAIL)
                    ),
                ));
            }
            match ping(self.addr()) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => {
                    self.kill();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "redis-server on {} did not answer PING within {WAIT:?} ({e}); log (last lines):\n{}",
                            self.addr(),
                            tail(&self.log(), LOG_TAIL)
                        ),
                    ));
                }
                Err(_) => std::thread::sleep(POLL),
            }
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // Its directory is about to go, so there is nothing to save.
        self.kill();
        if let Some(mut watchdog) = self.watchdog.take() {
            signal("KILL", &format!("-{}", watchdog.id()));
            let _ = watchdog.wait();
        }
        // The TempDir removes the directory.
    }
}

fn check_settings(settings: &[(&str, &str)]) -> Result<(), String> {
    for (name, value) in settings {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("option {name:?}: not an option name"));
        }
        if RESERVED.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!("option {name}: the harness sets it (loopback only, the instance's own directory)"));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(format!("option {name}: the value spans lines"));
        }
    }
    Ok(())
}

/// Waits until the child has exited, at most `timeout`.
fn wait_child(child: &mut Child, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, format!("still running after {timeout:?}")));
        }
        std::thread::sleep(POLL);
    }
}

/// One `PING` over RESP, expecting `+PONG`.
fn ping(addr: SocketAddr) -> io::Result<()> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    (&stream).write_all(b"PING\r\n")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    if line.trim_end() == "+PONG" {
        Ok(())
    } else {
        Err(io::Error::other(format!("PING answered {line:?}")))
    }
}

/// A program from PATH or the usual system directories.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/usr/local/bin", "/usr/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::check_settings;

    #[test]
    fn options_that_would_leave_loopback_are_refused() {
        assert!(check_settings(&[("appendonly", "yes"), ("maxmemory", "10mb"), ("save", "")]).is_ok());
        for name in ["port", "BIND", "dir", "daemonize", "include"] {
            assert!(check_settings(&[(name, "x")]).is_err(), "{name}");
        }
        assert!(check_settings(&[("bad name", "x")]).is_err());
        assert!(check_settings(&[("maxmemory", "1mb\nport 1")]).is_err());
    }
}
