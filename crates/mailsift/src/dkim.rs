//! `mailsift dkim`: the keys outbound mail is signed with (keygen, the DNS record, whether it is published).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DkimCommand {
    /// Make a key for DOMAIN and SELECTOR (written 0600) and print the DNS TXT record to publish.
    Keygen {
        domain: String,
        #[arg(long)]
        selector: String,
    },
}

pub fn run(_config: Option<&PathBuf>, _data_dir: &Path, _cmd: &DkimCommand) -> Result<()> {
    anyhow::bail!("not built yet")
}
