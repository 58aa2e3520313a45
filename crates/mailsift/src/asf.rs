//! `mailsift asf`: the organisation-wide Additional Spam Filtering options. The configuration file's `[asf]`
//! gives each option a mode; `set` stores a mode over it in the database (as the console's policy page does),
//! `default` drops the stored mode again. A running gateway picks changes up within seconds; a domain's own
//! ASF modes (`mailsift domains set --asf`) still win for its mail.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use mailsift_engine::config::AsfMode;

#[derive(Subcommand)]
pub enum AsfCommand {
    /// Every option with its mode in force and where that mode comes from.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Set options organisation-wide: OPTION=on|off|test|default (several at once, all or nothing).
    Set {
        #[arg(required = true)]
        changes: Vec<String>,
    },
}

fn mode(m: AsfMode) -> &'static str {
    match m {
        AsfMode::On => "on",
        AsfMode::Off => "off",
        AsfMode::Test => "test",
    }
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &AsfCommand) -> Result<()> {
    let engine = crate::load_engine(config)?;
    let db = crate::config_cmd::database(config, data_dir)?;
    match cmd {
        AsfCommand::List { json } => {
            let all = mailsift_gateway::actions::organisation_asf(engine.config(), &db)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(());
            }
            for o in &all {
                let source = match o.stored {
                    Some(_) => format!("database (configuration: {})", mode(o.configured)),
                    None => "configuration".to_string(),
                };
                println!("{:<34} {:<5} {source}", o.option, mode(o.mode));
            }
        }
        AsfCommand::Set { changes } => {
            let pairs = changes
                .iter()
                .map(|c| {
                    c.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("{c:?}: expected OPTION=on|off|test|default"))
                })
                .collect::<Result<Vec<_>>>()?;
            let org = mailsift_gateway::actions::set_organisation_asf(engine.config(), &db, &pairs)?;
            let stored: Vec<String> = org.asf.iter().map(|(k, v)| format!("{k}={}", mode(*v))).collect();
            println!(
                "stored; organisation-wide ASF modes over the configuration's: {}",
                if stored.is_empty() { "none".to_string() } else { stored.join(", ") }
            );
        }
    }
    Ok(())
}
