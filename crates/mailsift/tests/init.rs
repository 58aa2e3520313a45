//! `mailsift init` and `mailsift config check` as an administrator runs them: the production
//! configuration is written once (never over an existing file without --force), loads with `serve`'s own
//! loader, and starts a gateway; the annotated example the README points to loads too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mailsift"));
    c.env_remove("MAILSIFT_CONFIG").env_remove("MAILSIFT_DATA_DIR").env("MAILSIFT_LOG", "warn");
    c
}

fn temp_dir(name: &str) -> PathBuf {
    mailsift_testkit::temp_dir("mailsift-init", name)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn show(o: &Output) -> String {
    format!("status {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// A certificate and key made the way the gateway makes its own: `config check` on the embedded defaults
/// creates the self-signed pair in DATA/tls/.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let empty = dir.join("empty.toml");
    std::fs::write(&empty, "").unwrap();
    let seed = dir.join("seed-data");
    let o = bin().arg("--config").arg(&empty).arg("--data-dir").arg(&seed).args(["config", "check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    // Loopback listeners and DNS off: nothing to warn about on a laptop.
    assert!(!text(&o.stdout).contains("warning:"), "{}", show(&o));
    let (cert, key) = (seed.join("tls/cert.pem"), seed.join("tls/key.pem"));
    assert!(cert.exists() && key.exists());
    (cert, key)
}

/// `mailsift init` with a full set of options; `replace` swaps an option's value (or adds an option).
fn init(dir: &Path, output: &Path, cert: &Path, key: &Path, replace: &[&str]) -> Output {
    let mut opts: Vec<(String, String)> = [
        ("--domain", "acme.test"),
        ("--domain", "Acme-Two.test."),
        ("--next-hop", "127.0.0.1:2526"),
        ("--public-url", "https://mailsift.acme.test/"),
        ("--cert", cert.to_str().unwrap()),
        ("--key", key.to_str().unwrap()),
        ("--hostname", "mx.acme.test"),
        ("--sending-server", "192.0.2.10/32"),
        ("--trusted-network", "10.1.0.0/16"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut flags = Vec::new();
    let mut it = replace.iter();
    while let Some(k) = it.next() {
        if !k.starts_with("--") || *k == "--force" {
            flags.push(k.to_string());
            continue;
        }
        let v = it.next().unwrap().to_string();
        match opts.iter_mut().find(|(o, _)| o == k) {
            Some(slot) => slot.1 = v,
            None => opts.push((k.to_string(), v)),
        }
    }
    let mut cmd = bin();
    cmd.arg("--data-dir").arg(dir.join("data")).arg("init").arg("--output").arg(output);
    for (k, v) in opts {
        cmd.arg(k).arg(v);
    }
    cmd.args(flags).output().unwrap()
}

fn check(config: &Path, data: &Path) -> Output {
    bin().arg("--config").arg(config).arg("--data-dir").arg(data).args(["config", "check"]).output().unwrap()
}

/// A child process killed when the test ends, whatever happens.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn init_writes_a_production_configuration_that_serve_loads_and_runs() {
    let dir = temp_dir("production");
    let (cert, key) = certificate(&dir);
    let config = dir.join("mailsift.toml");
    let o = init(&dir, &config, &cert, &key, &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(text(&o.stdout).contains("config check"), "{}", show(&o));
    assert!(dir.join("data").is_dir(), "init creates the data directory");

    // The production shape, read back as TOML.
    let written = std::fs::read_to_string(&config).unwrap();
    let t: toml::Table = toml::from_str(&written).unwrap();
    assert_eq!(t["dns"]["enabled"].as_bool(), Some(true), "{written}");
    assert_eq!(t["dns"]["nameservers"].as_array().map(Vec::len), Some(0), "system resolver: {written}");
    let domains: Vec<&str> =
        t["organisation"]["domains"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(domains, ["acme.test", "acme-two.test"]);
    let smtp_domains = t["smtp"]["domains"].as_array().unwrap();
    assert_eq!(smtp_domains.len(), 2);
    for d in smtp_domains {
        assert_eq!(d["next_hop"].as_str(), Some("127.0.0.1:2526"));
        assert_eq!(d["sending_servers"].as_array().unwrap()[0].as_str(), Some("192.0.2.10/32"));
    }
    assert_eq!(t["smtp"]["listen"].as_array().unwrap()[0].as_str(), Some("0.0.0.0:25"));
    assert_eq!(t["smtp"]["hostname"].as_str(), Some("mx.acme.test"));
    assert_eq!(t["smtp"]["tls"]["cert"].as_str(), Some(std::path::absolute(&cert).unwrap().to_str().unwrap()));
    assert_eq!(t["smtp"]["outbound"]["trusted_networks"].as_array().unwrap()[0].as_str(), Some("10.1.0.0/16"));
    assert_eq!(t["web"]["public_url"].as_str(), Some("https://mailsift.acme.test"));

    // It loads with serve's own loader, and the check says what would run.
    let o = check(&config, &dir.join("data"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("dns:       on, system resolver"), "{out}");
    assert!(out.contains("acme.test -> 127.0.0.1:2526, sending servers 192.0.2.10/32"), "{out}");
    assert!(out.contains(&format!("STARTTLS with {}", std::path::absolute(&cert).unwrap().display())), "{out}");
    assert!(!out.contains("warning:"), "a production configuration leaves nothing to warn about: {out}");

    // Never over an existing file without --force; with it, replaced.
    std::fs::write(&config, "# mine\n").unwrap();
    let o = init(&dir, &config, &cert, &key, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("--force"), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
    let o = init(&dir, &config, &cert, &key, &["--force"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);

    // And `serve` runs it (on loopback ports instead of 25): SMTP answers as mx.acme.test with STARTTLS.
    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let _proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = BufReader::new(stderr).take(64 * 1024).read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut smtp: Option<SocketAddr> = None;
    let mut http = false;
    while !(smtp.is_some() && http) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("serve announced its listeners within 60 s");
        if line.contains("SMTP inbound listening on") {
            smtp = line.rsplit(' ').next().and_then(|a| a.trim().parse().ok());
        }
        http |= line.contains("HTTP listening on");
    }
    let tcp = TcpStream::connect(smtp.unwrap()).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = BufReader::new(tcp.try_clone().unwrap());
    let mut w = tcp;
    let mut greeting = String::new();
    r.read_line(&mut greeting).unwrap();
    assert!(greeting.starts_with("220 mx.acme.test"), "{greeting}");
    w.write_all(b"EHLO client.test\r\n").unwrap();
    let mut ehlo = String::new();
    for _ in 0..30 {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        ehlo.push_str(&line);
        if line.as_bytes().get(3) == Some(&b' ') {
            break;
        }
    }
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    let _ = w.write_all(b"QUIT\r\n");
    drop(_proc);
    let errors = errors.join().unwrap();
    // Loopback listeners: no warning about DNS, which the file turns on.
    assert!(!errors.contains("DNS evidence off"), "{errors}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn init_refuses_what_would_not_run_and_writes_nothing() {
    let dir = temp_dir("refused");
    let config = dir.join("mailsift.toml");
    let cert = dir.join("cert.pem");
    for (extra, expected) in [
        (vec!["--next-hop", "mailhost"], "--next-hop"),
        (vec!["--public-url", "mailsift.acme.test"], "--public-url"),
        (vec!["--domain", "not a domain"], "--domain"),
        (vec!["--sending-server", "192.0.2.300"], "--sending-server"),
    ] {
        let o = init(&dir, &config, &cert, &cert, &extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", show(&o));
        assert!(text(&o.stderr).contains(expected), "{extra:?}: {}", show(&o));
        assert!(!config.exists(), "{extra:?}: nothing written");
    }
    // Without a --domain, clap refuses before anything runs.
    let o = bin().arg("init").arg("--output").arg(&config).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(!config.exists());

    // A certificate that does not exist yet: written (the administrator may install it next), with a
    // warning; `config check` then names the missing file, as `serve` would.
    let o = init(&dir, &config, &cert, &dir.join("key.pem"), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(text(&o.stderr).contains("does not exist yet"), "{}", show(&o));
    let o = check(&config, &dir.join("data"));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("cert.pem"), "{}", show(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn config_check_names_the_line_and_warns_about_dns_off_on_a_public_listener() {
    let dir = temp_dir("check");
    let config = dir.join("bad.toml");
    std::fs::write(&config, "[dns]\nenabled = true\nnameserver = [\"127.0.0.1\"]\n").unwrap();
    let o = check(&config, &dir.join("data"));
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("nameserver"), "{}", show(&o));

    // DNS off with SMTP on a public address: loads, and says what production needs.
    std::fs::write(&config, "[smtp]\nlisten = [\"0.0.0.0:2525\"]\n").unwrap();
    let o = check(&config, &dir.join("data"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("warning:   SMTP listens on a public address with DNS evidence off"), "{out}");
    assert!(out.contains("self-signed"), "{out}");

    let o = bin().args(["config", "check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "no --config: {}", show(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_annotated_production_example_loads_as_serve_loads_it() {
    let example = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/production.toml");
    let text_ = std::fs::read_to_string(&example).unwrap();
    let t: toml::Table = toml::from_str(&text_).unwrap();
    assert_eq!(t["dns"]["enabled"].as_bool(), Some(true));
    assert!(t["web"]["public_url"].as_str().unwrap().starts_with("https://"));
    // With the example's certificate paths pointing at a real pair, it passes the check as written.
    let dir = temp_dir("example");
    let (cert, key) = certificate(&dir);
    let local = text_
        .replace("/etc/mailsift/cert.pem", cert.to_str().unwrap())
        .replace("/etc/mailsift/key.pem", key.to_str().unwrap());
    assert_ne!(local, text_, "the example names its certificate paths");
    let config = dir.join("production.toml");
    std::fs::write(&config, local).unwrap();
    let o = check(&config, &dir.join("data"));
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("dns:       on, system resolver"), "{out}");
    assert!(out.contains("example.com -> 10.0.0.5:25"), "{out}");
    assert!(!out.contains("warning:"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `init` as a first installation runs it: the data directory goes into the file (next to it, since the
/// file is not the system configuration), the first administrator is created in a new gateway database
/// there, and the DNS records to publish are printed; afterwards the file alone (MAILSIFT_CONFIG, no
/// --data-dir) finds the administrator from any directory.
#[test]
fn init_creates_the_first_administrator_and_prints_the_dns_records() {
    let dir = temp_dir("admin");
    let (cert, key) = certificate(&dir);
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).unwrap();
    let config = etc.join("mailsift.toml");
    let password = dir.join("admin-password");
    std::fs::write(&password, "a long enough password\n").unwrap();
    let flags = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.env("MAILSIFT_SYSTEM_CONFIG", dir.join("no-system.toml")).arg("init").arg("--output").arg(&config);
        for (k, v) in [
            ("--domain", "acme.test"),
            ("--domain", "two.test"),
            ("--next-hop", "127.0.0.1:2526"),
            ("--public-url", "https://mailsift.acme.test"),
            ("--hostname", "mx.acme.test"),
            ("--sending-server", "192.0.2.10"),
        ] {
            cmd.arg(k).arg(v);
        }
        cmd.arg("--cert").arg(&cert).arg("--key").arg(&key).args(extra);
        cmd
    };
    let o = flags(&["--admin", "root@acme.test", "--public-ip", "203.0.113.7", "--admin-password-file"])
        .arg(&password)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    for record in [
        "acme.test. MX 10 mx.acme.test.",
        "two.test. MX 10 mx.acme.test.",
        "acme.test. TXT \"v=spf1 mx ip4:203.0.113.7 ip4:192.0.2.10 -all\"",
        "_dmarc.acme.test. TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@acme.test\"",
        "_dmarc.two.test. TXT \"v=DMARC1; p=none; rua=mailto:dmarc-reports@acme.test\"",
        "DKIM: mailsift does not sign outgoing mail yet",
        "administrator root@acme.test added",
    ] {
        assert!(out.contains(record), "{record}: {out}");
    }
    assert!(!out.contains("a long enough password"), "a password from a file is never printed: {out}");
    let data = etc.join("mailsift-data");
    let t: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(t["data_dir"].as_str(), Some(data.to_str().unwrap()));
    assert!(data.join("mailsift.sqlite").is_file());

    // The file loads as serve loads it, and finds the administrator from another directory.
    let o = bin()
        .env("MAILSIFT_CONFIG", &config)
        .env("MAILSIFT_SYSTEM_CONFIG", dir.join("no-system.toml"))
        .current_dir(&dir)
        .args(["accounts", "list"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(text(&o.stdout).contains("root@acme.test") && text(&o.stdout).contains("admin"), "{}", show(&o));
    let o = bin().arg("--config").arg(&config).args(["config", "check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(!dir.join("mailsift-data").exists(), "nothing made where the commands ran");

    // No password given and no terminal: one is generated and printed once; no --public-ip: a placeholder.
    let o = flags(&["--force", "--admin", "second"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    let out = text(&o.stdout);
    assert!(out.contains("ip4:PUBLIC_IP") && out.contains("PUBLIC_IP is a placeholder"), "{out}");
    let generated = out
        .lines()
        .find_map(|l| l.split_once("(shown this once").map(|(_, rest)| rest.rsplit(' ').next().unwrap().to_string()))
        .unwrap_or_else(|| panic!("no generated password: {out}"));
    assert!(generated.len() >= 20, "{generated}");
    let o = bin().arg("--config").arg(&config).args(["accounts", "list"]).output().unwrap();
    assert!(text(&o.stdout).contains("second"), "{}", show(&o));
    // A short password is refused before anything is written.
    std::fs::write(&password, "short\n").unwrap();
    let o = flags(&["--force", "--admin", "third", "--admin-password-file"]).arg(&password).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(text(&o.stderr).contains("at least 10 characters"), "{}", show(&o));
}
