//! A private, throwaway Postfix instance on loopback, so gateway tests talk SMTP to the real thing.
//!
//! [`Postfix::start`] writes a complete `main.cf` and `master.cf` into a fresh temporary directory, starts
//! Debian's Postfix on them with `postfix -c DIR start` and waits until its smtpd answers on
//! `127.0.0.1:<free port>`. Mail for the given domains is delivered by Postfix's `virtual` agent into one
//! Maildir, whatever the recipient, where [`Postfix::delivered`] reads it back. Recipients in any other domain
//! are refused at RCPT (their transport is `error`): an instance never looks up DNS and never sends mail out.
//! Dropping the value stops the instance and waits until none of its processes is left.
//!
//! What it needs and touches:
//! - Postfix installed (`.ci/run` installs Debian's package) and **root**: the `postfix` command is reserved
//!   for the superuser, and the master must start as root to drop to `mail_owner`.
//! - Nothing under `/etc/postfix` or `/var`: every directory Postfix writes (config, queue, data, Maildir,
//!   log) is inside the temporary directory. A non-default `config_directory` would have to be listed in
//!   `alternate_config_directories` of the default `main.cf` only for set-gid commands run by other users
//!   (`mail_conf_suck()` checks it only when the caller is not root); every command here runs as root and
//!   mail arrives over SMTP, never through `sendmail`/`postdrop`, so the default `main.cf` is left alone.
//! - The `postfix` user and `postdrop` group that the Debian package creates: they own the queue, the data
//!   directory and the delivered files, as on a real installation.
//!
//! What it is not: a model of a production configuration. Delays that only slow tests down are off
//! (`in_flow_delay`, `smtpd_error_sleep_time`), `127.0.0.0/8` is a trusted network, and the log goes to a
//! file (`maillog_file`, Postfix 3.4+, served by `postlogd`) because a test machine has no syslog and Postfix
//! commands write to stderr only when it is a terminal: [`Postfix::log`] is where a failure explains itself.
//!
//! `postfix start` runs the checks of `postfix check` itself (`post-install create-missing`, which creates
//! the queue directories with the ownership Postfix insists on, then the `check-warn` ownership report into
//! the log), so there is no separate check step. Starting takes about 0.25 s, stopping well under 0.1 s.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The account Postfix drops to; created by Debian's package and shared by every instance.
const MAIL_OWNER: &str = "postfix";

/// Where the `virtual` agent delivers every accepted recipient, under `virtual_mailbox_base`.
const MAILDIR: &str = "inbox";

/// How long the smtpd may take to answer after `postfix start` has returned.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often waits look again (processes gone, messages delivered, banner).
const POLL: Duration = Duration::from_millis(20);

/// Environment variable that turns "Postfix is not installed" from a test failure into a skipped test.
pub const SKIP_ENV: &str = "MAILSIFT_SKIP_POSTFIX";

/// A running Postfix instance with its own configuration, queue and Maildir in a temporary directory.
///
/// Several instances can run at once (in one test binary or several): each has its own port, directories
/// and master process. Dropping it stops the master, its children and a watchdog, then removes the directory.
pub struct Postfix {
    dir: TempDir,
    config_dir: PathBuf,
    smtp_addr: SocketAddr,
    master_pid: u32,
    /// Stops the instance if this test process dies without running `Drop` (Ctrl-C, a killed test binary),
    /// so no stray master keeps running.
    watchdog: Option<Child>,
}

impl Postfix {
    /// Whether Postfix is installed: `postconf` runs and reports a version.
    pub fn available() -> bool {
        program("postconf").is_some_and(|postconf| {
            Command::new(postconf)
                .args(["-dh", "mail_version"])
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|out| out.status.success() && !out.stdout.trim_ascii().is_empty())
        })
    }

    /// For the first line of a Postfix test: `if !Postfix::available_or_skip() { return; }`.
    ///
    /// Returns true when Postfix is installed. When it is not, the test fails with the install command,
    /// unless `MAILSIFT_SKIP_POSTFIX=1` is set outside CI, in which case this prints a notice and returns false.
    /// Under `CI=true` a missing Postfix always fails.
    pub fn available_or_skip() -> bool {
        if Postfix::available() {
            return true;
        }
        if std::env::var_os(SKIP_ENV).is_some_and(|v| v == "1") && !crate::in_ci() {
            eprintln!("Postfix is not installed; skipping this test because {SKIP_ENV}=1");
            return false;
        }
        panic!(
            "Postfix is not installed, and this test needs it as a real SMTP peer. Install it with \
             `echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` (as .ci/run does), \
             or set {SKIP_ENV}=1 to skip Postfix tests"
        )
    }

    /// Starts an instance on `127.0.0.1:<free port>` that accepts mail for `domains` (any local part) and
    /// delivers each message as a file into one Maildir.
    pub fn start(domains: &[&str]) -> io::Result<Postfix> {
        Postfix::start_with(domains, &[])
    }

    /// Like [`Postfix::start`], with `extra_main_cf` settings written after the defaults, so they override
    /// them (for instance `("smtpd_milters", "inet:127.0.0.1:11332")`).
    pub fn start_with(domains: &[&str], extra_main_cf: &[(&str, &str)]) -> io::Result<Postfix> {
        for domain in domains {
            if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == ',') {
                return Err(invalid(format!("domain {domain:?}: must be one non-empty name")));
            }
        }
        for (name, value) in extra_main_cf {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(invalid(format!("main.cf parameter {name:?}: not a parameter name")));
            }
            if value.contains(['\n', '\r']) {
                return Err(invalid(format!("main.cf parameter {name}: the value spans lines")));
            }
        }
        // The port is free when chosen but can be taken before the master binds it; try again with another.
        let mut attempt = 1;
        loop {
            match Postfix::try_start(domains, extra_main_cf) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && attempt < 3 => attempt += 1,
                result => return result,
            }
        }
    }

    fn try_start(domains: &[&str], extra_main_cf: &[(&str, &str)]) -> io::Result<Postfix> {
        let postfix = program("postfix").ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the postfix command is not installed (see Postfix::available)")
        })?;
        if effective_uid()? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a Postfix instance must be started as root: the postfix command is reserved for the superuser",
            ));
        }
        let owner = Account::lookup(MAIL_OWNER)?;

        let dir = tempfile::Builder::new().prefix("mailsift-postfix-").tempdir()?;
        let root = dir.path();
        // Daemons running as mail_owner open the data directory and the Maildir by absolute path.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;
        check_searchable(root)?;
        for sub in ["etc", "queue", "data", "mail"] {
            fs::create_dir(root.join(sub))?;
        }
        for sub in ["data", "mail"] {
            std::os::unix::fs::chown(root.join(sub), Some(owner.uid), Some(owner.gid))?;
        }

        let smtp_addr = crate::quiet_loopback_port();
        write_settled(&root.join("etc/main.cf"), &main_cf(root, domains, &owner, extra_main_cf)?)?;
        write_settled(&root.join("etc/master.cf"), &master_cf(smtp_addr))?;

        let config_dir = root.join("etc");
        let started = Command::new(&postfix)
            .arg("-c")
            .arg(&config_dir)
            .arg("start")
            .stdin(Stdio::null())
            // A file, not a pipe: nothing that outlives the command may hold our end open.
            .stdout(fs::File::create(root.join("start.out"))?)
            .stderr(fs::File::create(root.join("start.err"))?)
            .status()?;
        if !started.success() {
            let log = read_lossy(&root.join("maillog"));
            let kind =
                if log.contains("Address already in use") { io::ErrorKind::AddrInUse } else { io::ErrorKind::Other };
            return Err(io::Error::new(
                kind,
                format!(
                    "`postfix -c {} start` failed ({started}); output: {}{}; maillog:\n{log}",
                    config_dir.display(),
                    read_lossy(&root.join("start.out")),
                    read_lossy(&root.join("start.err")),
                ),
            ));
        }
        let pid_file = root.join("queue/pid/master.pid");
        let master_pid = fs::read_to_string(&pid_file)?
            .trim()
            .parse::<u32>()
            .map_err(|e| invalid(format!("{}: {e}", pid_file.display())))?;

        // From here on Drop stops the master, whatever fails next.
        let mut instance = Postfix { dir, config_dir, smtp_addr, master_pid, watchdog: None };
        instance.watchdog = Some(spawn_watchdog(master_pid, instance.dir.path())?);
        instance.wait_until_ready()?;
        Ok(instance)
    }

    /// Where the instance's smtpd listens.
    pub fn smtp_addr(&self) -> SocketAddr {
        self.smtp_addr
    }

    /// The instance's `config_directory` (`main.cf`, `master.cf`), for `postconf -c` or `postfix -c`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// Messages delivered so far, waiting up to `timeout` until there are at least `n`. Returns what was
    /// delivered when the time is up, so the caller's assertion can show what did arrive (and [`Postfix::log`]).
    pub fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.delivered();
            if messages.len() >= n || Instant::now() >= deadline {
                return messages;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Every message delivered so far, oldest first, exactly as Postfix wrote it: its `Return-Path`,
    /// `X-Original-To`, `Delivered-To` and `Received` lines first, then the message with LF line ends
    /// (Postfix stores lines without the CR that SMTP carries).
    pub fn delivered(&self) -> Vec<Vec<u8>> {
        let maildir = self.dir.path().join("mail").join(MAILDIR);
        let mut files: Vec<(MaildirOrder, PathBuf)> = ["new", "cur"]
            .iter()
            .filter_map(|sub| fs::read_dir(maildir.join(sub)).ok())
            .flatten()
            .filter_map(|entry| entry.ok())
            .map(|entry| (MaildirOrder::of(&entry.file_name().to_string_lossy()), entry.path()))
            .collect();
        files.sort();
        files.into_iter().filter_map(|(_, path)| fs::read(path).ok()).collect()
    }

    /// Postfix's log for this instance so far (`maillog_file`), to put into failure messages.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.path().join("maillog"))
    }

    /// Postfix has bound the port when `postfix start` returns; a `220` greeting also proves an smtpd can be
    /// spawned with this configuration.
    fn wait_until_ready(&self) -> io::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last_error;
        loop {
            match greeting(self.smtp_addr) {
                Ok(line) if line.starts_with("220") => return Ok(()),
                Ok(line) => last_error = format!("greeting {line:?}"),
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "Postfix at {} did not greet within {READY_TIMEOUT:?} ({last_error}); maillog:\n{}",
                        self.smtp_addr,
                        self.log()
                    ),
                ));
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // The master is a session leader (pgid == pid) and hands SIGTERM on to its children; what is still
        // there after that gets SIGKILL, as `postfix stop` does after its own wait.
        if !group_members(self.master_pid).is_empty() {
            signal("TERM", &self.master_pid.to_string());
            if !wait_until_gone(self.master_pid, Duration::from_secs(5)) {
                signal("KILL", &format!("-{}", self.master_pid));
                wait_until_gone(self.master_pid, Duration::from_secs(2));
            }
        }
        if let Some(mut watchdog) = self.watchdog.take() {
            // Its own process group, so its `sleep` goes with it.
            signal("KILL", &format!("-{}", watchdog.id()));
            let _ = watchdog.wait();
        }
    }
}

/// The uid and gid of a system account.
struct Account {
    uid: u32,
    gid: u32,
}

impl Account {
    fn lookup(user: &str) -> io::Result<Account> {
        let id = |flag: &str| -> io::Result<u32> {
            let out = Command::new("id").args([flag, user]).stdin(Stdio::null()).output()?;
            String::from_utf8_lossy(&out.stdout).trim().parse::<u32>().map_err(|_| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("user {user:?} (Postfix's mail_owner, created by the postfix package) does not exist"),
                )
            })
        };
        Ok(Account { uid: id("-u")?, gid: id("-g")? })
    }
}

fn main_cf(root: &Path, domains: &[&str], owner: &Account, extra: &[(&str, &str)]) -> io::Result<String> {
    let path = |sub: &str| root.join(sub).display().to_string();
    let refuse = "error:5.7.1 this test instance delivers only to its own domains";
    let settings: Vec<(&str, String)> = vec![
        ("compatibility_level", compatibility_level()?),
        ("queue_directory", path("queue")),
        ("data_directory", path("data")),
        ("mail_owner", MAIL_OWNER.into()),
        // The log file must lie under one of these prefixes, or every Postfix command refuses to run.
        ("maillog_file_prefixes", root.display().to_string()),
        ("maillog_file", path("maillog")),
        ("myhostname", "mx.mailsift.test".into()),
        ("mydestination", String::new()),
        ("inet_interfaces", "127.0.0.1".into()),
        ("inet_protocols", "ipv4".into()),
        ("mynetworks", "127.0.0.0/8".into()),
        ("virtual_mailbox_domains", domains.join(", ")),
        ("virtual_mailbox_base", path("mail")),
        // A static map matches every address, so every recipient in the domains exists and shares one Maildir.
        ("virtual_mailbox_maps", format!("static:{MAILDIR}/")),
        ("virtual_uid_maps", format!("static:{}", owner.uid)),
        ("virtual_gid_maps", format!("static:{}", owner.gid)),
        ("virtual_minimum_uid", owner.uid.to_string()),
        ("default_transport", refuse.into()),
        ("relay_transport", refuse.into()),
        // No DNS anywhere: no client name lookup, and the SMTP/LMTP clients would use /etc/hosts only.
        ("smtpd_peername_lookup", "no".into()),
        ("smtp_dns_support_level", "disabled".into()),
        ("smtp_host_lookup", "native".into()),
        ("lmtp_host_lookup", "native".into()),
        ("alias_maps", String::new()),
        ("alias_database", String::new()),
        ("biff", "no".into()),
        ("in_flow_delay", "0s".into()),
        ("smtpd_error_sleep_time", "0s".into()),
    ];
    let mut text = String::from("# Written by mailsift_testkit::postfix for one test run.\n");
    for (name, value) in &settings {
        text.push_str(&format!("{name} = {value}\n"));
    }
    if !extra.is_empty() {
        text.push_str("# The test's own settings; later lines win.\n");
        for (name, value) in extra {
            text.push_str(&format!("{name} = {value}\n"));
        }
    }
    Ok(text)
}

/// Debian's `master.cf` with every service outside a chroot (the queue directory holds no copy of `/etc`),
/// smtpd on our port only, and without the pipe(8) examples for software that is not installed.
fn master_cf(smtp_addr: SocketAddr) -> String {
    format!(
        "# service type  private unpriv  chroot  wakeup  maxproc command\n\
         {smtp_addr} inet n - n - - smtpd\n\
         pickup     unix  n - n 60    1 pickup\n\
         cleanup    unix  n - n -     0 cleanup\n\
         qmgr       unix  n - n 300   1 qmgr\n\
         tlsmgr     unix  - - n 1000? 1 tlsmgr\n\
         rewrite    unix  - - n -     - trivial-rewrite\n\
         bounce     unix  - - n -     0 bounce\n\
         defer      unix  - - n -     0 bounce\n\
         trace      unix  - - n -     0 bounce\n\
         verify     unix  - - n -     1 verify\n\
         flush      unix  n - n 1000? 0 flush\n\
         proxymap   unix  - - n -     - proxymap\n\
         proxywrite unix  - - n -     1 proxymap\n\
         smtp       unix  - - n -     - smtp\n\
         relay      unix  - - n -     - smtp\n\
         showq      unix  n - n -     - showq\n\
         error      unix  - - n -     - error\n\
         retry      unix  - - n -     - error\n\
         discard    unix  - - n -     - discard\n\
         local      unix  - n n -     - local\n\
         virtual    unix  - n n -     - virtual\n\
         lmtp       unix  - - n -     - lmtp\n\
         anvil      unix  - - n -     1 anvil\n\
         scache     unix  - - n -     1 scache\n\
         postlog    unix-dgram n - n - 1 postlogd\n"
    )
}

/// Writes a configuration file dated a minute back. Postfix takes a `main.cf` modified within the last
/// second or so as still being written ("hot", in `dict_load_file_xt()`) and sleeps 300 ms and reads it
/// again until it has cooled down: about 1.5 s for the first command, several seconds for a whole start.
fn write_settled(path: &Path, text: &str) -> io::Result<()> {
    let file = fs::File::create(path)?;
    (&file).write_all(text.as_bytes())?;
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
}

/// `3.6` turns off every backwards-compatible default on Postfix 3.6 and later (Debian 12 has 3.7);
/// older releases only know the integer levels.
fn compatibility_level() -> io::Result<String> {
    let postconf = program("postconf").ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "postconf"))?;
    let out = Command::new(postconf).args(["-dh", "mail_version"]).stdin(Stdio::null()).output()?;
    let version = String::from_utf8_lossy(&out.stdout);
    let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    Ok(if (major, minor) >= (3, 6) { "3.6".into() } else { "2".into() })
}

/// Postfix's programs live in sbin, which a non-root PATH often lacks.
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn effective_uid() -> io::Result<u32> {
    let status = fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| invalid("/proc/self/status: no effective uid".into()))
}

/// The Postfix user must be able to reach the instance's directories by path.
fn check_searchable(dir: &Path) -> io::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let mode = fs::metadata(ancestor)?.permissions().mode();
        if mode & 0o001 == 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} (mode {:o}) is not searchable by the {MAIL_OWNER} user, so Postfix cannot reach {}; \
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

/// Connects, reads the first line of the greeting and says QUIT, so the log shows a clean session.
fn greeting(addr: SocketAddr) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let _ = (&stream).write_all(b"QUIT\r\n");
    let _ = reader.read_line(&mut String::new());
    Ok(line.trim_end().to_string())
}

/// Keeps an eye on this test process; when it is gone without having stopped the instance, stops the
/// master and removes the directory. Runs in its own process group so Drop can end it with its `sleep`.
fn spawn_watchdog(master_pid: u32, dir: &Path) -> io::Result<Child> {
    const SCRIPT: &str = r#"
        while kill -0 "$1" 2>/dev/null; do sleep 1; done
        kill -TERM "$2" 2>/dev/null
        sleep 5
        kill -KILL -- "-$2" 2>/dev/null
        rm -rf -- "$3"
    "#;
    Command::new("sh")
        .args(["-c", SCRIPT, "mailsift-postfix-watchdog"])
        .arg(std::process::id().to_string())
        .arg(master_pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
}

fn signal(name: &str, target: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), "--", target])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_until_gone(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while !group_members(pgid).is_empty() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Live (not zombie) processes in a process group, from /proc.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
            let Some((_, rest)) = stat.rsplit_once(')') else { return false };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2].parse::<u32>() == Ok(pgid)
        })
        .collect()
}

/// Delivery order from a Postfix Maildir file name, `SECONDS.VdevIinodeMmicroseconds.host`; the
/// microseconds are not zero-padded, so the name alone does not sort.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct MaildirOrder {
    seconds: u64,
    micros: u64,
    name: String,
}

impl MaildirOrder {
    fn of(name: &str) -> MaildirOrder {
        let mut parts = name.split('.');
        let seconds = parts.next().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
        let micros = parts
            .next()
            .and_then(|unique| unique.rsplit_once('M'))
            .and_then(|(_, m)| m.parse().ok())
            .unwrap_or(u64::MAX);
        MaildirOrder { seconds, micros, name: name.to_string() }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

#[cfg(test)]
mod tests {
    use super::MaildirOrder;

    #[test]
    fn maildir_names_sort_by_delivery_time() {
        let mut names: Vec<MaildirOrder> =
            ["1700000000.VfeI1M99.vm", "1700000000.VfeI2M100.vm", "1699999999.VfeI3M5.vm"]
                .into_iter()
                .map(MaildirOrder::of)
                .collect();
        names.sort();
        let sorted: Vec<&str> = names.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(sorted, ["1699999999.VfeI3M5.vm", "1700000000.VfeI1M99.vm", "1700000000.VfeI2M100.vm"]);
    }
}
