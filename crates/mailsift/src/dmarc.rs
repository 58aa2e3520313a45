//! `mailsift dmarc`: DMARC aggregate reports, sent (to other domains) and received (for ours).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DmarcCommand {
    /// Build the aggregate reports owed for the last period and send them (--dry-run: only show them).
    Report {
        #[arg(long)]
        dry_run: bool,
    },
}

pub fn run(_config: Option<&PathBuf>, _data_dir: &Path, _cmd: &DmarcCommand) -> Result<()> {
    anyhow::bail!("not built yet")
}
