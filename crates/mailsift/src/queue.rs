//! `mailsift queue`: the outbound queue: list, show, retry now, remove.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum QueueCommand {
    /// List queued outbound mail, oldest first.
    List,
}

pub fn run(_config: Option<&PathBuf>, _data_dir: &Path, _cmd: &QueueCommand) -> Result<()> {
    anyhow::bail!("not built yet")
}
