//! `mailsift generate`: manual pages and shell completions from the command line's own definition, so that
//! `--help`, the pages and the completions never disagree. The Debian package runs it at build time.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, Subcommand};

#[derive(Subcommand)]
pub enum GenerateCommand {
    /// Write one manual page per command into DIR (section 1): mailsift.1, mailsift-serve.1,
    /// mailsift-log-list.1, ...
    Man {
        /// The directory to write into (created if missing).
        dir: PathBuf,
    },
    /// Print the completion script for a shell on standard output.
    Completions {
        /// bash, zsh or fish (elvish and powershell work too).
        shell: clap_complete::Shell,
    },
}

pub fn run(cmd: &GenerateCommand) -> Result<()> {
    match cmd {
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
            clap_mangen::generate_to(crate::Cli::command(), dir)
                .with_context(|| format!("{}: cannot write the manual pages", dir.display()))?;
            Ok(())
        }
        GenerateCommand::Completions { shell } => {
            let mut cli = crate::Cli::command();
            clap_complete::generate(*shell, &mut cli, "mailsift", &mut std::io::stdout());
            Ok(())
        }
    }
}
