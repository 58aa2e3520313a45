//! `mailsift dkim`: the keys outbound mail is signed with (keygen, the DNS record, whether it is published).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use mailsift_gateway::signing::{self, KeyAlgorithm};

#[derive(Clone, Copy, ValueEnum)]
pub enum Algorithm {
    Rsa,
    Ed25519,
}

#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a key for DOMAIN and SELECTOR (written 0600) and print the DNS TXT record to publish and the
    /// configuration lines to add.
    Keygen {
        domain: String,
        #[arg(long)]
        selector: String,
        /// rsa (the widest support) or ed25519 (RFC 8463; publish both to sign with both).
        #[arg(long, value_enum, default_value = "rsa")]
        algorithm: Algorithm,
        /// RSA key size (2048 to 4096).
        #[arg(long, default_value_t = 2048)]
        bits: usize,
        /// Where to write the key; default: DATA_DIR/dkim/DOMAIN.SELECTOR.pem.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing key file (its published record then no longer matches).
        #[arg(long)]
        force: bool,
    },
    /// For every configured key, whether the record published in DNS matches it (match, missing, mismatch,
    /// revoked). Needs `[dns] enabled`. Exits with 1 when a signing key's record does not match.
    Check {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &DkimCommand) -> Result<()> {
    match cmd {
        DkimCommand::Keygen { domain, selector, algorithm, bits, out, force } => {
            keygen(data_dir, domain, selector, *algorithm, *bits, out.as_deref(), *force)
        }
        DkimCommand::Check { json } => check(config, *json),
    }
}

fn keygen(
    data_dir: &Path,
    domain: &str,
    selector: &str,
    algorithm: Algorithm,
    bits: usize,
    out: Option<&Path>,
    force: bool,
) -> Result<()> {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok_label = |l: &str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !domain.split('.').all(ok_label) {
        bail!("{domain:?} is not a domain name");
    }
    if !selector.split('.').all(ok_label) {
        bail!("selector {selector:?}: letters, digits, '-', '_' and '.' only");
    }
    let algorithm = match algorithm {
        Algorithm::Rsa => KeyAlgorithm::Rsa,
        Algorithm::Ed25519 => KeyAlgorithm::Ed25519,
    };
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => data_dir.join("dkim").join(format!("{domain}.{selector}.pem")),
    };
    let path = if path.is_absolute() { path } else { std::env::current_dir()?.join(path) };
    if path.exists() && !force {
        bail!("{} exists; use --force to replace it (the published record would then no longer match)", path.display());
    }
    let key = signing::generate_key(algorithm, bits).map_err(|e| anyhow::anyhow!("cannot make the key: {e}"))?;
    signing::write_key_file(&path, &key.pem, force).map_err(|e| anyhow::anyhow!(e))?;
    let record = signing::dns_record(key.algorithm, &key.public_key);
    println!("Wrote the private key to {} (mode 0600).", path.display());
    println!();
    println!("Publish this DNS record:");
    println!();
    println!("{selector}._domainkey.{domain}. IN TXT {}", signing::zone_strings(&record));
    println!();
    println!("Then add to the configuration ([smtp.dkim]):");
    println!();
    println!("[[smtp.dkim.keys]]");
    println!("domain = \"{domain}\"");
    println!("selector = \"{selector}\"");
    println!("key_file = \"{}\"", path.display());
    println!("sign = true");
    Ok(())
}

fn check(config: Option<&PathBuf>, json: bool) -> Result<()> {
    let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
    let origin = loaded.origin();
    let Some(keys) = loaded.smtp.dkim.loaded().cloned() else {
        bail!("{origin}: no [[smtp.dkim.keys]] configured");
    };
    if !loaded.engine.dns.enabled {
        bail!("{origin}: [dns] enabled = false; the check asks DNS for the published records");
    }
    let dns = loaded.engine.dns.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let statuses = rt.block_on(async move {
        let resolver = mailsift_evidence::SenderGatherer::new(&dns).context("cannot set up the resolver")?;
        anyhow::Ok(mailsift_gateway::dkim_check::check(&keys, &resolver).await)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
    } else {
        for s in &statuses {
            println!(
                "{:<9} {}  {} {} bits{}  {}",
                s.status.as_str(),
                s.name,
                s.algorithm.dns_name(),
                s.bits,
                if s.signing { ", signing" } else { "" },
                s.file
            );
            if s.status != mailsift_gateway::dkim_check::RecordStatus::Match {
                println!("          publish: {}. IN TXT {}", s.name, signing::zone_strings(&s.record));
            }
        }
    }
    let bad = statuses.iter().filter(|s| s.signing && s.status != mailsift_gateway::dkim_check::RecordStatus::Match);
    let bad = bad.count();
    if bad > 0 {
        bail!("{bad} signing key(s) without a matching published record");
    }
    Ok(())
}
