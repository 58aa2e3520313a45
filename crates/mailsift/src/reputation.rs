//! `mailsift reputation show|reset`: what the gateway remembers about a sender, and forgetting it.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use mailsift_engine::{unix_now, Engine};
use mailsift_store::SqliteReputation;

#[derive(Subcommand)]
pub enum ReputationCommand {
    /// Show the remembered evidence for an IP, network (a.b.c.0/24), domain or address.
    Show { key: String },
    /// Forget everything remembered about an IP, network, domain or address.
    Reset { key: String },
}

/// The reputation store for scans: only when enabled and already there (a scan never creates a file), the
/// shared one (Redis or PostgreSQL) when the configuration says so, as the gateway judges.
pub fn for_scans(config: Option<&PathBuf>, engine: &Engine, data_dir: &Path) -> Result<Option<SqliteReputation>> {
    let c = &engine.config().reputation;
    if !c.enabled {
        return Ok(None);
    }
    let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
    if loaded.redis.is_some() || loaded.store.postgres()?.is_some() {
        return Ok(Some(crate::config_cmd::reputation_store(config, data_dir, c.half_life_days)?));
    }
    if !mailsift_store::reputation::exists(data_dir) {
        return Ok(None);
    }
    Ok(Some(SqliteReputation::open_dir(data_dir, c.half_life_days)?))
}

pub fn run(config: Option<&PathBuf>, engine: &Engine, data_dir: &Path, cmd: &ReputationCommand) -> Result<()> {
    let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
    if loaded.redis.is_none() && loaded.store.postgres()?.is_none() && !mailsift_store::reputation::exists(data_dir) {
        // Showing or forgetting never makes an empty store (in a directory that may be the wrong one).
        return Err(
            crate::datadir::NoDatabase { what: "reputation store", path: data_dir.join("reputation.sqlite") }.into()
        );
    }
    // Where the gateway keeps it: shared by the nodes (Redis or PostgreSQL) or this data directory's file.
    let store = crate::config_cmd::reputation_store(config, data_dir, engine.config().reputation.half_life_days)?;
    match cmd {
        ReputationCommand::Show { key } => {
            let entries = store.show(key, unix_now())?;
            if entries.is_empty() {
                println!("{key}: nothing remembered (neutral)");
            }
            for e in entries {
                let total = e.spam + e.ham;
                // The same bars the engine's reputation check uses, so "bad" here is what scans act on.
                use mailsift_engine::checks::reputation::{MIN_EVIDENCE, ONE_SIDED};
                let verdict = if total < MIN_EVIDENCE {
                    "too little evidence to count"
                } else if e.spam / total >= ONE_SIDED {
                    "bad"
                } else if e.ham / total >= ONE_SIDED {
                    "good"
                } else {
                    "mixed"
                };
                println!(
                    "{} {}: {:.2} bad, {:.2} good evidence (decayed to now): {verdict}",
                    e.kind.as_str(),
                    e.key,
                    e.spam,
                    e.ham
                );
            }
        }
        ReputationCommand::Reset { key } => {
            let n = store.reset(key)?;
            println!("{key}: {n} entries forgotten");
        }
    }
    Ok(())
}
