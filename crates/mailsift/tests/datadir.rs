//! The data directory is found, not guessed: a command run from any directory with the gateway's
//! configuration (MAILSIFT_CONFIG, no flags) finds the gateway's database through the file's `data_dir`,
//! and a command pointed at a directory without a database refuses to make one, saying where it looked.
//! Also: a database whose schema is newer than this mailsift is refused by every command and by serve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mailsift_testkit::gateway::{serve, stop};

/// The binary with no configuration or data directory from the environment, and no system configuration
/// (whatever this machine has in /etc/mailsift).
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG")
        .env_remove("MAILSIFT_DATA_DIR")
        .env("MAILSIFT_SYSTEM_CONFIG", "/nonexistent/mailsift-test/mailsift.toml")
        .env("MAILSIFT_LOG", "warn");
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// Runs `cmd` with `stdin` on its standard input.
fn with_input(mut cmd: Command, stdin: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // A command that refuses before reading its input may be gone already: its answer is what counts.
    match child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.unwrap(),
    }
    child.wait_with_output().unwrap()
}

fn message(subject: &str) -> String {
    format!(
        "From: alice@sender.example\r\nTo: bob@localhost\r\nSubject: {subject}\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{}@sender.example>\r\n\r\nHello,\r\nthis is {subject}.\r\n",
        subject.replace(' ', "-")
    )
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
fn a_command_run_from_another_directory_finds_the_gateways_database_and_refuses_to_make_a_stray_one() {
    let root = mailsift_testkit::temp_dir("mailsift-datadir", "found");
    let etc = root.join("etc");
    let elsewhere = root.join("elsewhere");
    let started_from = root.join("started-from");
    for d in [&etc, &elsewhere, &started_from] {
        std::fs::create_dir_all(d).unwrap();
    }
    // data_dir relative to the file, not to where commands run.
    let config = etc.join("mailsift.toml");
    std::fs::write(&config, "data_dir = \"../state\"\n").unwrap();
    let state = root.join("state");

    // The gateway, started with MAILSIFT_CONFIG only, from a directory of its own.
    let mut cmd = bin();
    cmd.env("MAILSIFT_CONFIG", &config).current_dir(&started_from);
    let (gw, addr) = serve(cmd);
    let reply = mailsift_testkit::clients::smtp_send(
        addr,
        "alice@sender.example",
        &["bob@localhost"],
        message("found me").as_bytes(),
    )
    .unwrap();
    assert_eq!(reply.0, 250, "{reply:?}");
    stop(gw);
    assert!(state.join("mailsift.sqlite").is_file(), "serve made its database in data_dir");
    assert!(files(&started_from).is_empty(), "nothing in the directory serve was started from");

    // From an unrelated directory, no flags: the same database.
    let here = |args: &[&str]| {
        let mut c = bin();
        c.env("MAILSIFT_CONFIG", &config).current_dir(&elsewhere).args(args);
        c
    };
    let o = with_input(here(&["accounts", "add", "admin", "--role", "admin"]), "a long password 1\n");
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let o = here(&["accounts", "list"]).output().unwrap();
    assert!(text(&o.stdout).contains("admin"), "{}", show(&o));
    let o = here(&["log", "list", "--json"]).output().unwrap();
    assert!(text(&o.stdout).contains("\"subject\":\"found me\""), "the message serve logged: {}", show(&o));
    // config dump says where the data directory is and why.
    let o = here(&["config", "dump"]).output().unwrap();
    let dump = text(&o.stdout);
    let want = format!("data_dir = \"{}\"", std::path::absolute(etc.join("../state")).unwrap().display());
    assert!(dump.contains(&want), "{want}: {dump}");
    assert!(dump.contains(&format!("(data_dir in {})", config.display())), "{dump}");
    assert!(files(&elsewhere).is_empty(), "no stray database: {:?}", files(&elsewhere));

    // The zero-configuration default, from the unrelated directory: refused, nothing created.
    let mut stray = bin();
    stray.current_dir(&elsewhere).args(["accounts", "add", "x"]);
    let o = with_input(stray, "a long password 2\n");
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let err = text(&o.stderr);
    for needle in [
        "no gateway database",
        "mailsift-data/mailsift.sqlite",
        &format!("{}/mailsift-data (the default", elsewhere.display()),
        "configuration:  none, the embedded defaults",
        "mailsift serve",
        "--data-dir",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    // A named data directory without a database: refused the same way, for writes and reads alike.
    let empty = root.join("empty-data");
    for (args, input) in [
        (&["accounts", "add", "x"][..], "a long password 3\n"),
        (&["accounts", "list"][..], ""),
        (&["domains", "list"][..], ""),
        (&["lists", "add", "block", "spammer.example"][..], ""),
        (&["log", "list"][..], ""),
        (&["quarantine", "list"][..], ""),
        (&["reputation", "show", "192.0.2.1"][..], ""),
    ] {
        let mut c = bin();
        c.arg("--data-dir").arg(&empty).current_dir(&elsewhere).args(args);
        let o = with_input(c, input);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        let err = text(&o.stderr);
        assert!(err.contains("(--data-dir)") && err.contains("looked for"), "{args:?}: {err}");
        assert!(!empty.exists(), "{args:?} made {}", empty.display());
    }
    assert!(files(&elsewhere).is_empty(), "no stray database: {:?}", files(&elsewhere));
    // MAILSIFT_DATA_DIR is named as the reason when it is the reason.
    let mut c = bin();
    c.env("MAILSIFT_DATA_DIR", &empty).args(["accounts", "list"]);
    let o = c.output().unwrap();
    assert!(text(&o.stderr).contains("(MAILSIFT_DATA_DIR)"), "{}", show(&o));
}

#[test]
fn the_system_configuration_is_read_when_nothing_else_is_named() {
    let root = mailsift_testkit::temp_dir("mailsift-datadir", "system");
    let system = root.join("mailsift.toml");
    // Without data_dir: the packaged data directory.
    std::fs::write(&system, "[dns]\nenabled = false\n").unwrap();
    let o = bin().env("MAILSIFT_SYSTEM_CONFIG", &system).current_dir(&root).args(["config", "dump"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let dump = text(&o.stdout);
    assert!(
        dump.contains("# data_dir: /var/lib/mailsift (the system configuration has no data_dir: the packaged default)"),
        "{dump}"
    );
    assert!(dump.contains(&format!("effective configuration of {}", system.display())), "{dump}");
    // With it, the key; and --config wins over the system file.
    std::fs::write(&system, "data_dir = \"/srv/gw\"\n").unwrap();
    let o = bin().env("MAILSIFT_SYSTEM_CONFIG", &system).args(["config", "dump"]).output().unwrap();
    assert!(text(&o.stdout).contains("data_dir = \"/srv/gw\""), "{}", show(&o));
    let other = root.join("other.toml");
    std::fs::write(&other, "").unwrap();
    let mut c = bin();
    c.env("MAILSIFT_SYSTEM_CONFIG", &system).current_dir(&root).arg("--config").arg(&other);
    let o = c.args(["config", "dump"]).output().unwrap();
    let dump = text(&o.stdout);
    assert!(dump.contains(&format!("effective configuration of {}", other.display())), "{dump}");
    assert!(dump.contains("# data_dir: ") && dump.contains("(the default"), "{dump}");
}

/// Writes `version` as the file's `PRAGMA user_version` (offset 60 of the header, big-endian), as a newer
/// mailsift would have left it.
fn set_user_version(file: &Path, version: u32) {
    use std::io::{Seek, SeekFrom};
    let mut f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
    f.seek(SeekFrom::Start(60)).unwrap();
    f.write_all(&version.to_be_bytes()).unwrap();
}

#[test]
fn a_database_newer_than_this_mailsift_is_refused_by_every_command_and_by_serve() {
    let root = mailsift_testkit::temp_dir("mailsift-datadir", "newer");
    let data = root.join("data");
    let o = bin().arg("--data-dir").arg(&data).args(["store", "create"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let ours: u32 =
        text(&o.stdout).rsplit("schema version ").next().unwrap().trim_end_matches([')', '\n']).parse().unwrap();
    // The file is closed cleanly: no WAL holds a newer first page than the file.
    assert!(!data.join("mailsift.sqlite-wal").exists());
    let copy = root.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(data.join("mailsift.sqlite"), copy.join("mailsift.sqlite")).unwrap();
    set_user_version(&copy.join("mailsift.sqlite"), ours + 1);

    let newer = format!("schema version {}", ours + 1);
    for args in [&["accounts", "list"][..], &["log", "list"], &["quarantine", "list"], &["domains", "list"]] {
        let o = bin().arg("--data-dir").arg(&copy).args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", show(&o));
        assert!(text(&o.stderr).contains(&newer) && text(&o.stderr).contains("newer"), "{args:?}: {}", show(&o));
    }
    let o = bin().arg("--data-dir").arg(&copy).args(["store", "check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let o = bin()
        .arg("--data-dir")
        .arg(&copy)
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0), "{}", show(&o));
    assert!(text(&o.stderr).contains(&newer), "{}", show(&o));
    // The original, at this mailsift's version, still opens.
    let o = bin().arg("--data-dir").arg(&data).args(["accounts", "list"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
}
