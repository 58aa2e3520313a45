//! A private clamd on a Unix socket in a temporary directory, with a signature database the test harness
//! writes itself (no internet, no freshclam): the EICAR test string and a custom signature of our own.
//!
//! [`Clamd::start`] runs Debian's `/usr/sbin/clamd` in the foreground with its own `clamd.conf` (LocalSocket,
//! DatabaseDirectory, log and pid file in its directory, mail and archive scanning on). [`Clamd::stop`] and
//! [`Clamd::start_again`] stop and restart it on the same socket. Dropping the value stops it and removes the
//! directory; a watchdog does the same if the test process dies first. Every wait is bounded (60 s) and fails
//! with the log's tail.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::postgres::{read_lossy, spawn_watchdog, tail};

/// How long a start or a stop may take (loading a tiny database takes a second or two).
const WAIT: Duration = Duration::from_secs(60);

/// The EICAR anti-virus test string, put together here so that this source file is not itself "infected".
pub fn eicar() -> Vec<u8> {
    let mut s = String::from("X5O!P%@AP[4\\PZX54(P^)7CC)7}$");
    s.push_str("EICAR-STANDARD-ANTIVIRUS-");
    s.push_str("TEST-FILE!$H+H*");
    s.into_bytes()
}

/// Text that the custom signature ([`CUSTOM_NAME`]) matches anywhere in a scanned file.
pub const CUSTOM_MARKER: &str = "mailsift-custom-signature-4242";

/// The name clamd reports for EICAR with the harness's database (unofficial signatures get the suffix).
pub const EICAR_NAME: &str = "Mailsift.Test.Eicar.UNOFFICIAL";

/// The name clamd reports for [`CUSTOM_MARKER`].
pub const CUSTOM_NAME: &str = "Mailsift.Test.Custom.UNOFFICIAL";

/// A private clamd.
pub struct Clamd {
    dir: TempDir,
    program: PathBuf,
    child: Option<Child>,
    watchdog: Option<Child>,
}

impl Clamd {
    /// Whether clamd is installed.
    pub fn available() -> bool {
        program().is_some()
    }

    /// Starts a private clamd. `None` when clamd is not installed, after [`crate::tool_missing`] (which fails
    /// the test under `CI=true`). Panics, with the log, when an installed clamd does not start.
    pub fn start() -> Option<Clamd> {
        let Some(program) = program() else {
            crate::tool_missing(
                "clamd is not installed; `apt-get install --no-install-recommends clamav-daemon clamav` installs it",
            );
            return None;
        };
        match Clamd::try_start(program) {
            Ok(c) => Some(c),
            Err(e) => panic!("private clamd did not start: {e}"),
        }
    }

    fn try_start(program: PathBuf) -> io::Result<Clamd> {
        let dir = tempfile::Builder::new().prefix("mailsift-clamd-").tempdir()?;
        let db = dir.path().join("db");
        fs::create_dir(&db)?;
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        // .ndb: name:target type (0 = any file):offset (* = anywhere):hex bytes.
        fs::write(
            db.join("mailsift-test.ndb"),
            format!(
                "Mailsift.Test.Eicar:0:*:{}\nMailsift.Test.Custom:0:*:{}\n",
                hex(&eicar()),
                hex(CUSTOM_MARKER.as_bytes())
            ),
        )?;
        let p = dir.path();
        fs::write(
            p.join("clamd.conf"),
            format!(
                "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nLogFile {}\nPidFile {}\n\
                 TemporaryDirectory {}\nScanMail yes\nScanArchive yes\nStreamMaxLength 25M\nSelfCheck 3600\n",
                p.join("clamd.sock").display(),
                db.display(),
                p.join("clamd.log").display(),
                p.join("clamd.pid").display(),
                p.display(),
            ),
        )?;
        let mut clamd = Clamd { dir, program, child: None, watchdog: None };
        clamd.watchdog = Some(spawn_watchdog(clamd.dir.path(), Some((&clamd.pid_file(), "clamd", "TERM")))?);
        clamd.spawn()?;
        Ok(clamd)
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("clamd.pid")
    }

    /// The socket's path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("clamd.sock")
    }

    /// `unix:/path/clamd.sock`, as `[smtp.virus] clamd` takes it.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket().display())
    }

    /// The log so far.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("clamd.log"))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let _ = fs::remove_file(self.socket());
        let out = fs::File::create(self.dir.path().join("clamd.out"))?;
        let child = Command::new(&self.program)
            .arg("-c")
            .arg(self.dir.path().join("clamd.conf"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if ping(&self.socket()) {
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(io::Error::other(format!("clamd exited ({status}): {}", self.tails())));
            }
            if started.elapsed() > WAIT {
                return Err(io::Error::other(format!("clamd did not answer PING within {WAIT:?}: {}", self.tails())));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn tails(&self) -> String {
        format!("{}\n{}", tail(&read_lossy(&self.dir.path().join("clamd.out")), 20), tail(&self.log(), 20))
    }

    /// Stops clamd (SIGTERM, then SIGKILL after the wait) and waits until its socket is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            crate::postgres::signal("TERM", &child.id().to_string());
            let started = Instant::now();
            while started.elapsed() < WAIT {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = fs::remove_file(self.socket());
    }

    /// Starts clamd again on the same socket, with the same database.
    pub fn start_again(&mut self) {
        if let Err(e) = self.spawn() {
            panic!("clamd did not start again: {e}");
        }
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

/// Whether clamd answers `PING` on `socket`.
fn ping(socket: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(socket) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"zPING\0").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"PONG"))
}

/// clamd's path: `/usr/sbin/clamd` as Debian installs it, or on `PATH`.
fn program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("clamd"))
        .find(|p| p.is_file())
}
