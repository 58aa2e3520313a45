//! `mailsift domains`: the organisation's domains in the database — next hop, accepted recipients, thresholds,
//! ASF options, spamtraps, sending servers — with TOML import and export. A running gateway picks changes up
//! within seconds; a stored domain replaces a `[[smtp.domains]]` entry of the same name.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mailsift_engine::config::{AsfMode, Thresholds};
use mailsift_gateway::config::DomainConfig;
use mailsift_store::Database;

#[derive(Subcommand)]
pub enum DomainsCommand {
    /// Add a domain, or change one (the options given replace those settings).
    Set(DomainArgs),
    /// List the stored domains.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one domain's settings as TOML.
    Show { name: String },
    /// Remove a domain.
    Rm { name: String },
    /// Store every `[[domains]]` (or `[[smtp.domains]]`) table of a TOML file, all or nothing.
    Import { file: PathBuf },
    /// Print the stored domains as TOML (`[[domains]]` tables), ready for `import`.
    Export,
}

#[derive(Args)]
pub struct DomainArgs {
    name: String,
    /// The organisation's mail server for the domain, host:port ("" for the local Maildir).
    #[arg(long)]
    next_hop: Option<String>,
    /// Accept only these recipients (repeat); `--recipient ""` accepts all again.
    #[arg(long = "recipient")]
    recipients: Vec<String>,
    /// Thresholds for this domain: TAG,QUARANTINE,REJECT (e.g. 4,8,12); "" for the organisation's.
    #[arg(long)]
    thresholds: Option<String>,
    /// An ASF option for this domain, OPTION=on|off|test (repeat).
    #[arg(long = "asf")]
    asf: Vec<String>,
    /// A spamtrap address of the domain (repeat).
    #[arg(long = "spamtrap")]
    spamtraps: Vec<String>,
    /// A server (IP or CIDR) allowed to send as the domain (repeat); makes the domain protected.
    #[arg(long = "sending-server")]
    sending_servers: Vec<String>,
    /// A hosted service that sends for the domain, as a pattern of its Received header (repeat).
    #[arg(long = "trusted-relay")]
    trusted_relays: Vec<String>,
}

/// Checks a domain's settings as the gateway would, naming the field.
fn validate(d: &DomainConfig) -> Result<()> {
    d.validate().map_err(|e| anyhow::anyhow!("{e}"))
}

fn open(config: Option<&PathBuf>, data_dir: &Path) -> Result<Database> {
    crate::config_cmd::database(config, data_dir)
}

fn stored(db: &Database) -> Result<Vec<DomainConfig>> {
    Ok(mailsift_gateway::actions::stored_domains(db)?)
}

fn put(db: &Database, d: &DomainConfig) -> Result<()> {
    Ok(mailsift_gateway::actions::put_domain(db, d)?)
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &DomainsCommand) -> Result<()> {
    let db = open(config, data_dir)?;
    match cmd {
        DomainsCommand::Set(a) => {
            let name = a.name.trim().to_ascii_lowercase();
            let mut d = match db.domain_get(&name)? {
                Some(json) => serde_json::from_str(&json)?,
                None => DomainConfig { name: name.clone(), ..Default::default() },
            };
            if let Some(h) = &a.next_hop {
                d.next_hop = (!h.is_empty()).then(|| h.clone());
            }
            if !a.recipients.is_empty() {
                d.recipients = a.recipients.iter().filter(|r| !r.is_empty()).cloned().collect();
            }
            if let Some(t) = &a.thresholds {
                d.thresholds = if t.is_empty() {
                    None
                } else {
                    let v: Vec<f64> = t
                        .split(',')
                        .map(|x| x.trim().parse::<f64>())
                        .collect::<Result<_, _>>()
                        .with_context(|| format!("--thresholds {t:?}: expected TAG,QUARANTINE,REJECT"))?;
                    let [tag, quarantine, reject] = v[..] else { bail!("--thresholds {t:?}: expected three numbers") };
                    Some(Thresholds { tag, quarantine, reject })
                };
            }
            for opt in &a.asf {
                let (k, v) =
                    opt.split_once('=').with_context(|| format!("--asf {opt:?}: expected OPTION=on|off|test"))?;
                let mode: AsfMode = toml::Value::String(v.to_string())
                    .try_into()
                    .map_err(|_| anyhow::anyhow!("--asf {opt:?}: the mode is on, off or test"))?;
                d.asf.insert(k.to_string(), mode);
            }
            d.spamtraps.extend(a.spamtraps.iter().cloned());
            d.sending_servers.extend(a.sending_servers.iter().cloned());
            d.trusted_relays.extend(a.trusted_relays.iter().cloned());
            put(&db, &d)?;
            println!("{name}: stored");
        }
        DomainsCommand::List { json } => {
            let all = stored(&db)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for d in &all {
                    let t = d.thresholds.as_ref().map(|t| format!("{}/{}/{}", t.tag, t.quarantine, t.reject));
                    println!(
                        "{:<30} next hop {:<22} thresholds {:<12} recipients {:<4} protected {:<3} spamtraps {} asf {}",
                        d.name,
                        d.next_hop.as_deref().unwrap_or("(maildir)"),
                        t.unwrap_or_else(|| "(default)".into()),
                        if d.recipients.is_empty() { "all".to_string() } else { d.recipients.len().to_string() },
                        if d.sending_servers.is_empty() && d.trusted_relays.is_empty() { "no" } else { "yes" },
                        d.spamtraps.len(),
                        d.asf.len()
                    );
                }
            }
        }
        DomainsCommand::Show { name } => {
            let json = db.domain_get(name)?.with_context(|| format!("{name}: no such domain stored"))?;
            let d: DomainConfig = serde_json::from_str(&json)?;
            print!("{}", to_toml(&[d])?);
        }
        DomainsCommand::Rm { name } => {
            if !db.domain_remove(name)? {
                bail!("{name}: no such domain stored");
            }
            println!("{name}: removed");
        }
        DomainsCommand::Import { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("{}: cannot read", file.display()))?;
            #[derive(serde::Deserialize)]
            struct Smtp {
                #[serde(default)]
                domains: Vec<DomainConfig>,
            }
            #[derive(serde::Deserialize)]
            struct File {
                #[serde(default)]
                domains: Vec<DomainConfig>,
                #[serde(default)]
                smtp: Option<Smtp>,
            }
            let f: File = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let all: Vec<DomainConfig> =
                f.domains.into_iter().chain(f.smtp.into_iter().flat_map(|s| s.domains)).collect();
            // All or nothing: every domain is checked before any is stored.
            for d in &all {
                validate(d).with_context(|| format!("{}", file.display()))?;
            }
            for d in &all {
                put(&db, d)?;
            }
            println!("imported {} domain(s)", all.len());
        }
        DomainsCommand::Export => print!("{}", to_toml(&stored(&db)?)?),
    }
    Ok(())
}

fn to_toml(domains: &[DomainConfig]) -> Result<String> {
    #[derive(serde::Serialize)]
    struct File<'a> {
        domains: &'a [DomainConfig],
    }
    Ok(toml::to_string(&File { domains })?)
}
