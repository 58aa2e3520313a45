//! `mailsift init`: writes the configuration an organisation runs in production, and `mailsift config
//! check`: loads a configuration exactly as `serve` does, without listening.
//!
//! The embedded defaults are made for a first try on a laptop: DNS evidence off (nothing is sent
//! anywhere), loopback listeners, a self-signed certificate, delivery to a Maildir. Production is the
//! opposite on every one of those points, and a gateway left with DNS off judges without SPF, DKIM, DMARC,
//! ARC or reverse DNS, which is where most false positives and most missed spoofs come from. `init`
//! writes the production shape in one step: DNS on with the system resolver, our domains and their next
//! hop, the public URL of the console, the certificate and key. The file it writes is loaded with the
//! loaders `serve` uses before it is written, so a file `init` writes always starts.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

#[derive(Args)]
pub struct InitArgs {
    /// The configuration file to write: by default /etc/mailsift/mailsift.toml when /etc/mailsift exists
    /// and is writable (a packaged install), else ./mailsift.toml.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The first administrator of the console (a login name or an address): created in the data
    /// directory's new gateway database. Its password comes from --admin-password-file, else standard input
    /// when it is not a terminal, else it is generated and printed once.
    #[arg(long, value_name = "NAME")]
    admin: Option<String>,
    /// A file whose first line is the administrator's password (at least 10 characters).
    #[arg(long, value_name = "FILE", requires = "admin")]
    admin_password_file: Option<PathBuf>,
    /// The address the gateway sends mail from to the Internet (repeat for IPv4 and IPv6): it goes in the
    /// SPF record printed for each domain. Without it the record has a placeholder to fill in.
    #[arg(long = "public-ip", value_name = "IP")]
    public_ips: Vec<std::net::IpAddr>,
    /// The address that receives DMARC aggregate reports (rua=), by default dmarc-reports@<first domain>.
    #[arg(long, value_name = "ADDRESS")]
    dmarc_reports: Option<String>,
    /// One of our domains: mail for it is received and relayed to the next hop, and mail "from" it is
    /// ours (anti-spoofing, backscatter). Repeat for several.
    #[arg(long = "domain", required = true, value_name = "DOMAIN")]
    domains: Vec<String>,
    /// The organisation's mail server that accepted mail is relayed to (HOST:PORT), for every domain.
    #[arg(long, value_name = "HOST:PORT")]
    next_hop: String,
    /// How users' browsers and mail clients reach the console (digest links), e.g.
    /// https://mailsift.example.com.
    #[arg(long, value_name = "URL")]
    public_url: String,
    /// The TLS certificate chain (PEM) for STARTTLS (and HTTPS when the console serves it).
    #[arg(long, value_name = "FILE")]
    cert: PathBuf,
    /// The TLS private key (PEM).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The gateway's host name (greeting, Received lines, Authentication-Results); by default this
    /// machine's name when it is fully qualified, else mail.<first domain>.
    #[arg(long)]
    hostname: Option<String>,
    /// Where the gateway listens for SMTP from the Internet (repeat for several).
    #[arg(long, value_name = "ADDR", default_values = ["0.0.0.0:25"])]
    listen: Vec<SocketAddr>,
    /// Where the console and API listen (behind a reverse proxy that serves the public URL, or with
    /// `[web] tls = true`).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8025")]
    http_listen: SocketAddr,
    /// A server that sends mail as our domains (IP or CIDR): the domains become protected, so mail "from"
    /// them that comes from elsewhere is a spoof. Repeat for several. Without it, add them later with
    /// `mailsift domains set DOMAIN --sending-server CIDR` (or `mailsift diagnose` proposes them).
    #[arg(long = "sending-server", value_name = "CIDR")]
    sending_servers: Vec<String>,
    /// Our own mail servers that may relay through the gateway (outbound mail, judged as outbound).
    #[arg(long = "trusted-network", value_name = "CIDR")]
    trusted_networks: Vec<String>,
    /// Overwrite the file when it exists.
    #[arg(long)]
    force: bool,
}

pub fn run(at: &crate::datadir::Location, args: &InitArgs) -> Result<()> {
    let output = match &args.output {
        Some(o) => o.clone(),
        None => default_output(),
    };
    if output.exists() && !args.force {
        bail!("{}: exists; give --force to overwrite it", output.display());
    }
    let data_dir = init_data_dir(at, &output);
    let data_dir = data_dir.as_path();
    // The password is settled before anything is written: a bad one leaves nothing behind.
    let admin = match &args.admin {
        None => None,
        Some(name) => Some((name.clone(), admin_password(args)?)),
    };
    let text = production_toml(data_dir, args)?;
    // The file must load with serve's own loaders before it is written: init never leaves a file that
    // `serve` refuses.
    loads(&text).with_context(|| format!("{}: the configuration init made does not load (a bug)", output.display()))?;
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("{}: cannot create the data directory", data_dir.display()))?;
    write_replacing(&output, &text)?;
    let data = absolute(data_dir);
    let cfg = absolute(&output);
    println!("wrote {}", output.display());
    println!("data directory: {} (data_dir in the file)", data.display());
    if let Some((name, (password, generated))) = &admin {
        // init is one of the two commands that create the gateway database (serve is the other).
        let db = mailsift_store::Database::open_in(data_dir)
            .with_context(|| format!("{}: cannot create the gateway database", data.display()))?;
        let id =
            crate::accounts::add(&db, name, mailsift_store::Role::Admin, &[], password, mailsift_engine::unix_now())?;
        drop(db);
        hand_to_data_dir_owner(data_dir)
            .with_context(|| format!("{}: cannot hand the new database to the directory's owner", data.display()))?;
        println!("administrator {name} added with id {id}");
        if *generated {
            println!("its password (shown this once; change it with `mailsift accounts password {name}`): {password}");
        }
    }
    for w in production_warnings(args) {
        eprintln!("mailsift: warning: {w}");
    }
    let with =
        if cfg == crate::datadir::system_config() { String::new() } else { format!(" --config {}", cfg.display()) };
    println!("check it:  mailsift{with} config check");
    println!("run it:    mailsift{with} serve");
    if admin.is_none() {
        println!("then add an administrator: mailsift{with} accounts add admin --role admin");
    }
    println!();
    print!("{}", dns_records(args)?);
    Ok(())
}

/// Where init writes by default: the system configuration when its directory is there to take it (a
/// packaged install), else the current directory.
fn default_output() -> PathBuf {
    let system = crate::datadir::system_config();
    match system.parent() {
        Some(dir) if dir.is_dir() && writable(dir) => system,
        _ => PathBuf::from("mailsift.toml"),
    }
}

fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK) == 0 }
}

/// The data directory init writes into the file: the one given (--data-dir, MAILSIFT_DATA_DIR), else
/// /var/lib/mailsift for the system configuration, else `mailsift-data` next to the file.
fn init_data_dir(at: &crate::datadir::Location, output: &Path) -> PathBuf {
    use crate::datadir::DataDirFrom;
    if matches!(at.data_dir_from, DataDirFrom::Flag | DataDirFrom::Env) {
        return absolute(&at.data_dir);
    }
    let output = absolute(output);
    if output == absolute(&crate::datadir::system_config()) {
        return PathBuf::from(crate::datadir::SYSTEM_DATA_DIR);
    }
    output.parent().map(Path::to_path_buf).unwrap_or_default().join(crate::datadir::DEFAULT_DATA_DIR)
}

/// The administrator's password and whether init made it up.
fn admin_password(args: &InitArgs) -> Result<(String, bool)> {
    use std::io::IsTerminal;
    if let Some(file) = &args.admin_password_file {
        let f = std::fs::File::open(file).with_context(|| format!("{}: cannot read", file.display()))?;
        let from = file.display().to_string();
        return Ok((crate::accounts::read_password_from(&mut std::io::BufReader::new(f), &from)?, false));
    }
    if !std::io::stdin().is_terminal() {
        let mut input = std::io::stdin().lock();
        let mut peek = String::new();
        use std::io::BufRead;
        input.read_line(&mut peek).context("cannot read the password from standard input")?;
        if !peek.trim_end_matches(['\r', '\n']).is_empty() {
            return Ok((crate::accounts::read_password_from(&mut peek.as_bytes(), "standard input")?, false));
        }
    }
    // 15 random bytes, 30 hexadecimal digits: typed once, then changed or kept in a password manager.
    let bytes = mailsift_web::tokens::random_bytes::<15>();
    Ok((bytes.iter().map(|b| format!("{b:02x}")).collect(), true))
}

/// The DNS records each domain must publish (or already has) for the gateway, as zone-file lines with a
/// sentence on each.
fn dns_records(a: &InitArgs) -> Result<String> {
    let domains = a.domains.iter().map(|d| clean_domain(d)).collect::<Result<Vec<_>>>()?;
    let hostname = match &a.hostname {
        Some(h) => clean_domain(h)?,
        None => system_hostname().unwrap_or_else(|| format!("mail.{}", domains[0])),
    };
    let mut spf_ips: Vec<String> = a
        .public_ips
        .iter()
        .map(|ip| match ip {
            std::net::IpAddr::V4(v4) => format!("ip4:{v4}"),
            std::net::IpAddr::V6(v6) => format!("ip6:{v6}"),
        })
        .collect();
    if spf_ips.is_empty() {
        spf_ips.push("ip4:PUBLIC_IP".into());
    }
    // The organisation's own sending servers keep their place in the record: the gateway is added, not
    // substituted.
    for s in &a.sending_servers {
        let s = s.trim();
        let mech = if s.contains(':') { format!("ip6:{s}") } else { format!("ip4:{s}") };
        if !spf_ips.contains(&mech) {
            spf_ips.push(mech);
        }
    }
    let mut t = String::new();
    let mut line = |s: &str| {
        t.push_str(s);
        t.push('\n');
    };
    line("DNS records to publish (or check) for each domain:");
    for d in &domains {
        let rua = a.dmarc_reports.clone().unwrap_or_else(|| format!("dmarc-reports@{}", domains[0]));
        line("");
        line(&format!("; {d}"));
        line(&format!("{d}. MX 10 {hostname}."));
        line(&format!("{d}. TXT \"v=spf1 mx {} -all\"", spf_ips.join(" ")));
        line(&format!("_dmarc.{d}. TXT \"v=DMARC1; p=none; rua=mailto:{rua}\""));
    }
    line("");
    line(&format!("MX: mail for the domains comes to this gateway ({hostname}, which needs an A/AAAA record)."));
    if a.public_ips.is_empty() {
        line("SPF: PUBLIC_IP is a placeholder: replace it with the address the gateway sends from (or run init");
        line("     again with --public-ip); keep every other server that sends as the domain in the record.");
    } else {
        line("SPF: the gateway's public address, `mx`, and the --sending-server addresses; add any other server");
        line("     (a newsletter service, a CRM) that sends as the domain before publishing.");
    }
    line("DMARC: p=none first: receivers report (rua) without acting, so a forgotten sender shows in the");
    line("     reports instead of losing mail; after a few weeks of clean reports, p=quarantine, then p=reject.");
    line("DKIM: mailsift does not sign outgoing mail yet; keep the DKIM records of the servers that sign now.");
    Ok(t)
}

/// Parses `text` as every command reads a configuration file (engine, `[smtp]`, `[web]`), and compiles
/// the engine.
fn loads(text: &str) -> Result<()> {
    crate::config_cmd::Config::from_toml(text)?.engine()?;
    Ok(())
}

/// Writes through a temporary file in the same directory and renames it over `path`, so a crash leaves
/// the old file or the new one, never half of one.
fn write_replacing(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).with_context(|| format!("{}: cannot write here", dir.display()))?;
    tmp.write_all(text.as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .with_context(|| format!("{}: cannot write", path.display()))?;
    keep_access(tmp.path(), path, &dir)
        .with_context(|| format!("{}: cannot set its owner and mode", path.display()))?;
    tmp.persist(path).map_err(|e| anyhow::anyhow!("{}: cannot write: {}", path.display(), e.error))?;
    Ok(())
}

/// The file that replaces `path` gets the access the old one had: its mode and, as root, its owner and
/// group (the package ships /etc/mailsift/mailsift.toml as root:mailsift 0640, so the service reads it
/// through its group; a new file with the temporary file's 0600 root:root would stop the service from
/// starting). A new file is 0640, and as root takes the group of its directory.
fn keep_access(tmp: &Path, path: &Path, dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let (mode, owner) = match std::fs::metadata(path) {
        Ok(old) => (old.mode() & 0o7777, Some((old.uid(), old.gid()))),
        Err(_) => (0o640, std::fs::metadata(dir).ok().map(|d| (0, d.gid()))),
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(tmp, Some(uid), Some(gid))?;
        }
    }
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(mode))
}

/// Run as root (`sudo mailsift init --admin ...`), init creates the gateway database in a data directory
/// the service's user owns (/var/lib/mailsift, mailsift:mailsift): what it made there is handed to that
/// user, or the service could not write its own database.
fn hand_to_data_dir_owner(data_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    let dir = std::fs::metadata(data_dir)?;
    if dir.uid() == 0 {
        return Ok(());
    }
    for entry in std::fs::read_dir(data_dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.uid() == 0 && meta.is_file() {
            std::os::unix::fs::chown(entry.path(), Some(dir.uid()), Some(dir.gid()))?;
        }
    }
    Ok(())
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| q(s)).collect::<Vec<_>>().join(", "))
}

fn clean_domain(d: &str) -> Result<String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.contains('.')
        && d.len() <= 253
        && d.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !ok {
        bail!("--domain {d:?}: not a domain name (e.g. example.com)");
    }
    Ok(d)
}

/// This machine's name when it is fully qualified.
fn system_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/etc/hostname").ok()?;
    let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
    (name.contains('.') && clean_domain(&name).is_ok()).then_some(name)
}

/// The nameservers of /etc/resolv.conf (what `nameservers = []` uses).
pub fn system_nameservers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.trim().strip_prefix("nameserver"))
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The configuration file `init` writes, with comments saying why each value is what it is.
fn production_toml(data_dir: &Path, a: &InitArgs) -> Result<String> {
    let domains = a.domains.iter().map(|d| clean_domain(d)).collect::<Result<Vec<_>>>()?;
    let next_hop = a.next_hop.trim();
    let Some((host, port)) = next_hop.rsplit_once(':') else {
        bail!("--next-hop {next_hop:?}: write HOST:PORT, e.g. 10.0.0.5:25");
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        bail!("--next-hop {next_hop:?}: write HOST:PORT, e.g. 10.0.0.5:25");
    }
    let public_url = a.public_url.trim().trim_end_matches('/');
    if !(public_url.starts_with("https://") || public_url.starts_with("http://")) || public_url.len() < 9 {
        bail!("--public-url {public_url:?}: must start with https:// (or http://)");
    }
    for (what, cidrs) in [("--sending-server", &a.sending_servers), ("--trusted-network", &a.trusted_networks)] {
        for c in cidrs {
            mailsift_engine::cidr::IpRange::parse(c.trim())
                .map_err(|e| anyhow::anyhow!("{what} {c:?}: not an IP address or CIDR range: {e}"))?;
        }
    }
    let sending: Vec<String> = a.sending_servers.iter().map(|s| s.trim().to_string()).collect();
    let trusted: Vec<String> = a.trusted_networks.iter().map(|s| s.trim().to_string()).collect();
    let hostname = match &a.hostname {
        Some(h) => clean_domain(h).context("--hostname")?,
        None => system_hostname().unwrap_or_else(|| format!("mail.{}", domains[0])),
    };
    let cert = absolute(&a.cert);
    let key = absolute(&a.key);
    let data = absolute(data_dir);
    let listen: Vec<String> = a.listen.iter().map(|l| l.to_string()).collect();
    let resolvers = system_nameservers();
    let resolvers_note = if resolvers.is_empty() {
        "# /etc/resolv.conf lists no nameserver on the machine that ran init: list yours here.".to_string()
    } else {
        format!("# /etc/resolv.conf lists {} on the machine that ran init.", resolvers.join(", "))
    };

    let mut t = String::new();
    let mut line = |s: &str| {
        t.push_str(s);
        t.push('\n');
    };
    line("# mailsift production configuration, written by `mailsift init`.");
    line("#");
    line("# Check it:  mailsift --config THIS_FILE config check   (no --config for /etc/mailsift/mailsift.toml)");
    line("# Run it:    mailsift --config THIS_FILE serve");
    line("# Every key not written here has its documented default (see the README's Configuration section).");
    line("");
    line("# The data directory: the gateway database, the classifier and reputation stores, the keys. Every");
    line("# command given this file (--config, MAILSIFT_CONFIG, or the system configuration) uses it, from");
    line("# whatever directory it runs; --data-dir or MAILSIFT_DATA_DIR overrides it.");
    line(&format!("data_dir = {}", q(&data.display().to_string())));
    line("");
    line("[organisation]");
    line("# Our own domains: mail claiming to be from them is checked as ours (anti-spoofing, backscatter), and");
    line("# their SPF and DMARC failures are our DNS configuration, which `mailsift diagnose` names.");
    line(&format!("domains = {}", list(&domains)));
    line("# ARC sealers whose chains may vouch for forwarded mail (e.g. \"google.com\"); empty trusts none.");
    line("trusted_arc_sealers = []");
    line("");
    line("[dns]");
    line("# Sender evidence (SPF, DKIM, DMARC, ARC, reverse DNS, DNS lists): on in production. Without it the");
    line("# gateway cannot tell a spoof of our domain from our own mail.");
    line("enabled = true");
    line("# Empty: the system resolver (/etc/resolv.conf, read at start). Prefer a local validating resolver;");
    line("# public resolvers are refused by most DNS lists.");
    line(&resolvers_note);
    line("nameservers = []");
    line(&format!("hostname = {}   # authserv-id of our Authentication-Results", q(&hostname)));
    line("");
    line("[smtp]");
    line("# Inbound: the MX records of our domains point here.");
    line(&format!("listen = {}", list(&listen)));
    line(&format!("hostname = {}", q(&hostname)));
    line("");
    line("[smtp.tls]");
    line("# STARTTLS with our certificate (renewals: replace the files, then SIGHUP reloads them).");
    line("enabled = true");
    line(&format!("cert = {}", q(&cert.display().to_string())));
    line(&format!("key = {}", q(&key.display().to_string())));
    for d in &domains {
        line("");
        line("[[smtp.domains]]");
        line(&format!("name = {}", q(d)));
        line(&format!("next_hop = {}   # the organisation's mail server", q(next_hop)));
        if sending.is_empty() {
            line("# sending_servers = [\"192.0.2.10\"]   # the servers that send as this domain: makes it protected");
        } else {
            line("# The servers that send as this domain: mail \"from\" it that comes from elsewhere is a spoof.");
            line(&format!("sending_servers = {}", list(&sending)));
        }
    }
    line("");
    line("[smtp.outbound]");
    line("# Our own servers that relay through the gateway: their mail is judged as outbound (never a spoof).");
    line(&format!("trusted_networks = {}", list(&trusted)));
    line("");
    line("[web]");
    line("# The console and API; put a reverse proxy serving the public URL in front of it, or set tls = true");
    line("# (HTTPS with [smtp.tls]'s certificate) and listen on a public address.");
    line(&format!("listen = {}", q(&a.http_listen.to_string())));
    line(&format!("public_url = {}   # digest links point here", q(public_url)));
    line("tls = false");
    Ok(t)
}

/// What the arguments leave for production, said once at init.
fn production_warnings(a: &InitArgs) -> Vec<String> {
    let mut w = Vec::new();
    for (what, p) in [("certificate", &a.cert), ("key", &a.key)] {
        if !p.exists() {
            w.push(format!("the {what} {} does not exist yet: `serve` refuses to start without it", p.display()));
        }
    }
    if a.sending_servers.is_empty() {
        w.push(
            "no --sending-server: our domains are not protected against spoofing until their sending servers are \
             listed (mailsift domains set DOMAIN --sending-server CIDR)"
                .into(),
        );
    }
    if system_nameservers().is_empty() {
        w.push("/etc/resolv.conf lists no nameserver: set [dns] nameservers".into());
    }
    w
}

/// `mailsift config check`.
pub fn check(config: Option<&PathBuf>, data_dir: &Path) -> Result<()> {
    let Some(path) = config else {
        bail!("give the configuration to check: mailsift --config FILE config check (or MAILSIFT_CONFIG)");
    };
    // The file as every command reads it first: unknown keys are named all together, with their tables.
    crate::config_cmd::load(Some(path.as_path()))?;
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")?;
    // serve's own loader: the engine, [smtp] (TLS files included), the stored domains, the stores.
    let state = {
        let _guard = runtime.enter();
        crate::serve::build_state(config, data_dir, &[], None)?
    };
    let web = crate::serve::web_config(config, None)?;
    let engine = state.engine.config();
    let smtp = &state.config;
    println!("{}: loads as `serve` loads it", path.display());
    let listen: Vec<String> = smtp.listen.iter().map(|l| l.to_string()).collect();
    println!("smtp:      listen {}, hostname {}", listen.join(", "), smtp.hostname);
    let tls = match (&smtp.tls.enabled, &smtp.tls.cert) {
        (false, _) => "STARTTLS off".to_string(),
        (true, Some(c)) => format!("STARTTLS with {}", c.display()),
        (true, None) => format!("STARTTLS with a self-signed certificate ({})", data_dir.join("tls").display()),
    };
    println!("tls:       {tls}");
    let dns = if !engine.dns.enabled {
        "off".to_string()
    } else if engine.dns.nameservers.is_empty() {
        format!("on, system resolver ({})", system_nameservers().join(", "))
    } else {
        format!("on, nameservers {}", engine.dns.nameservers.join(", "))
    };
    println!("dns:       {dns}");
    println!("ours:      {}", engine.organisation.domains.join(", "));
    for d in &smtp.domains {
        println!(
            "domain:    {} -> {}{}",
            d.name,
            d.next_hop.as_deref().unwrap_or("Maildir in the data directory"),
            if d.sending_servers.is_empty() {
                String::new()
            } else {
                format!(", sending servers {}", d.sending_servers.join(", "))
            }
        );
    }
    println!(
        "web:       {}{}",
        if web.enabled { format!("listen {}", web.listen) } else { "off".into() },
        if web.public_url.is_empty() { String::new() } else { format!(", public URL {}", web.public_url) }
    );
    let public = smtp.listen.iter().any(|l| !l.ip().is_loopback());
    let mut warnings = Vec::new();
    if public && !engine.dns.enabled {
        warnings.push(
            "SMTP listens on a public address with DNS evidence off ([dns] enabled = false): no SPF, DKIM, DMARC, \
             ARC or reverse-DNS checks run"
                .to_string(),
        );
    }
    if engine.dns.enabled && engine.dns.nameservers.is_empty() && system_nameservers().is_empty() {
        warnings.push("[dns] nameservers is empty and /etc/resolv.conf lists none: every lookup will fail".into());
    }
    if public && smtp.tls.enabled && smtp.tls.cert.is_none() {
        warnings.push("STARTTLS uses a self-signed certificate: set [smtp.tls] cert and key".into());
    }
    if public && smtp.domains.iter().any(|d| d.next_hop.is_none()) {
        warnings.push("a domain has no next_hop: its mail stays in the data directory's Maildir".into());
    }
    if web.enabled && web.public_url.is_empty() && public {
        warnings.push("[web] public_url is empty: digest links point at the listen address".into());
    }
    for w in &warnings {
        println!("warning:   {w}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_checked_before_anything_is_written() {
        assert_eq!(clean_domain("Acme.Test.").unwrap(), "acme.test");
        for bad in ["", "acme", "-acme.test", "acme..test", "ac me.test", "acme.test\"\n[x]"] {
            assert!(clean_domain(bad).is_err(), "{bad:?}");
        }
        // Whatever quoting the TOML writer picks (basic or literal string), it reads back as the same text.
        for text in ["a\"b\\c", "it's", "line\nbreak", "plain"] {
            let v: toml::Table = toml::from_str(&format!("k = {}", q(text))).unwrap();
            assert_eq!(v["k"].as_str(), Some(text), "{}", q(text));
        }
    }
}
