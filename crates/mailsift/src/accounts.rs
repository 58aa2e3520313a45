//! `mailsift accounts`: the console's accounts (administrators, domain administrators, end users), their
//! passwords and API tokens. Passwords are read from standard input, never from the command line, so they
//! do not end up in shell history or `ps`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use mailsift_store::Role;

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Add an account; its password is read from standard input (one line).
    Add {
        /// The login name; for an end user, their email address.
        name: String,
        /// admin, domain_admin or user.
        #[arg(long, default_value = "admin")]
        role: String,
        /// A domain administrator's domains (repeat, or comma-separated).
        #[arg(long, value_delimiter = ',')]
        domain: Vec<String>,
    },
    /// List the accounts.
    List,
    /// Remove an account.
    Remove { name: String },
    /// Set an account's password, read from standard input.
    Password { name: String },
    /// Print an API token for an account (`Authorization: Bearer <token>`).
    Token {
        name: String,
        /// Days it works.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
}

fn read_password() -> Result<String> {
    read_password_from(&mut std::io::stdin().lock(), "standard input")
}

/// A password as the first line of `input` (`from` names it in errors), checked as every password is.
pub fn read_password_from(input: &mut dyn BufRead, from: &str) -> Result<String> {
    let mut line = String::new();
    input.read_line(&mut line).with_context(|| format!("cannot read the password from {from}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_string();
    if p.chars().count() < 10 {
        bail!("the password needs at least 10 characters");
    }
    Ok(p)
}

/// Adds an account with this password (hashed here): `accounts add` and `init --admin` both.
pub fn add(
    db: &mailsift_store::Database,
    name: &str,
    role: Role,
    domains: &[String],
    password: &str,
    now: i64,
) -> Result<i64> {
    let hash = mailsift_web::auth::hash_password(password).map_err(anyhow::Error::msg)?;
    Ok(db.account_add(name, role, domains, &hash, now)?)
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &AccountsCommand) -> Result<()> {
    let db = crate::config_cmd::database(config, data_dir)?;
    let now = mailsift_engine::unix_now();
    match cmd {
        AccountsCommand::Add { name, role, domain } => {
            let role =
                Role::parse(role).with_context(|| format!("--role {role:?}: give admin, domain_admin or user"))?;
            if role == Role::DomainAdmin && domain.is_empty() {
                bail!("a domain administrator needs --domain");
            }
            let id = add(&db, name, role, domain, &read_password()?, now)?;
            println!("account {name} ({}) added with id {id}", role.as_str());
        }
        AccountsCommand::List => {
            for a in db.accounts()? {
                println!(
                    "{:<5} {:<32} {:<13} {}{}",
                    a.id,
                    a.name,
                    a.role.as_str(),
                    a.domains.join(","),
                    if a.disabled { " (disabled)" } else { "" }
                );
            }
        }
        AccountsCommand::Remove { name } => {
            if !db.account_remove(name)? {
                bail!("no account {name:?}");
            }
            db.web_sessions_remove_account(name)?;
            println!("account {name} removed");
        }
        AccountsCommand::Password { name } => {
            let hash = mailsift_web::auth::hash_password(&read_password()?).map_err(anyhow::Error::msg)?;
            if !db.account_set_password(name, &hash)? {
                bail!("no account {name:?}");
            }
            // Sessions are in the gateway database: every node's console logs this account out at once.
            db.web_sessions_remove_account(name)?;
            println!("password of {name} changed; the account's console sessions ended");
        }
        AccountsCommand::Token { name, days } => {
            let account = db.account_get(name)?.with_context(|| format!("no account {name:?}"))?;
            let signer = mailsift_web::tokens::Signer::shared_or_file(&db, data_dir)?;
            let token = signer.sign(&mailsift_web::tokens::Claims {
                purpose: mailsift_web::tokens::Purpose::Api,
                id: account.id,
                subject: account.name.clone(),
                expires: now + *days as i64 * 86_400,
            });
            println!("{token}");
        }
    }
    Ok(())
}
