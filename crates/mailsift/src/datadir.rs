//! Where the configuration file and the data directory are: one rule for every command, so that a command
//! run from any directory finds the gateway's data instead of guessing `./mailsift-data`.
//!
//! The configuration file is `--config`, else `MAILSIFT_CONFIG`, else the system configuration
//! (`/etc/mailsift/mailsift.toml`, or `MAILSIFT_SYSTEM_CONFIG` for tests and packagers) when it exists,
//! else none (the embedded defaults). The data directory is `--data-dir`, else `MAILSIFT_DATA_DIR`, else
//! the file's `data_dir` key (relative to the file's directory), else `/var/lib/mailsift` when the system
//! configuration is the one in use, else `./mailsift-data` (the zero-configuration start on a laptop).
//!
//! The second half of the rule: a command other than `serve` and `init` never creates the gateway database.
//! It fails with [`NoDatabase`], which `main` words with where it looked and why (see [`Location::refusal`]).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The configuration a packaged mailsift reads when no other is named.
pub const SYSTEM_CONFIG: &str = "/etc/mailsift/mailsift.toml";
/// Overrides [`SYSTEM_CONFIG`]'s path (tests, packagers); not meant for daily use.
pub const SYSTEM_CONFIG_ENV: &str = "MAILSIFT_SYSTEM_CONFIG";
/// The data directory of a packaged mailsift (its system configuration, without `data_dir`).
pub const SYSTEM_DATA_DIR: &str = "/var/lib/mailsift";
/// The data directory without any configuration, relative to where the command runs.
pub const DEFAULT_DATA_DIR: &str = "mailsift-data";

/// Where the system configuration is looked for.
pub fn system_config() -> PathBuf {
    match std::env::var_os(SYSTEM_CONFIG_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(SYSTEM_CONFIG),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigFrom {
    Flag,
    Env,
    System,
    /// No file: the embedded defaults.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDirFrom {
    Flag,
    Env,
    /// The configuration file's `data_dir` key.
    ConfigKey,
    /// `/var/lib/mailsift`, because the system configuration is in use and says nothing.
    System,
    /// `./mailsift-data`, because no configuration says anything.
    Default,
}

/// The configuration file and the data directory a command uses, and how each was chosen.
#[derive(Debug, Clone)]
pub struct Location {
    pub config: Option<PathBuf>,
    pub config_from: ConfigFrom,
    pub data_dir: PathBuf,
    pub data_dir_from: DataDirFrom,
}

impl Location {
    /// Applies the rule. `config` and `data_dir` are what the command line or the environment gave (clap
    /// reads both), each with where it came from.
    /// `read_key` false: the configuration's `data_dir` is not read (commands that use no data directory
    /// from a configuration, such as `init`, which may be writing the very file MAILSIFT_CONFIG names).
    pub fn resolve(
        config: Option<(PathBuf, ConfigFrom)>,
        data_dir: Option<(PathBuf, DataDirFrom)>,
        read_key: bool,
    ) -> Result<Location> {
        let (config, config_from) = match config {
            Some((p, from)) => (Some(p), from),
            None => {
                let system = system_config();
                if system.is_file() {
                    (Some(system), ConfigFrom::System)
                } else {
                    (None, ConfigFrom::None)
                }
            }
        };
        let (data_dir, data_dir_from) = match data_dir {
            Some(given) => given,
            None => match config.as_deref().filter(|_| read_key).map(data_dir_key).transpose()?.flatten() {
                Some(dir) => (dir, DataDirFrom::ConfigKey),
                None if config_from == ConfigFrom::System => (PathBuf::from(SYSTEM_DATA_DIR), DataDirFrom::System),
                None => (PathBuf::from(DEFAULT_DATA_DIR), DataDirFrom::Default),
            },
        };
        Ok(Location { config, config_from, data_dir, data_dir_from })
    }

    /// The configuration, for messages: the file and how it was chosen, or the embedded defaults.
    pub fn describe_config(&self) -> String {
        match (&self.config, self.config_from) {
            (Some(p), ConfigFrom::Flag) => format!("{} (--config)", p.display()),
            (Some(p), ConfigFrom::Env) => format!("{} (MAILSIFT_CONFIG)", p.display()),
            (Some(p), _) => format!("{} (the system configuration)", p.display()),
            (None, _) => format!(
                "none, the embedded defaults (no --config, no MAILSIFT_CONFIG, no {})",
                system_config().display()
            ),
        }
    }

    /// How the data directory was chosen, for messages.
    pub fn describe_data_dir(&self) -> String {
        let shown = std::path::absolute(&self.data_dir).unwrap_or_else(|_| self.data_dir.clone());
        let why = match self.data_dir_from {
            DataDirFrom::Flag => "--data-dir".to_string(),
            DataDirFrom::Env => "MAILSIFT_DATA_DIR".to_string(),
            DataDirFrom::ConfigKey => {
                format!("data_dir in {}", self.config.as_deref().map(|p| p.display().to_string()).unwrap_or_default())
            }
            DataDirFrom::System => "the system configuration has no data_dir: the packaged default".to_string(),
            DataDirFrom::Default => format!(
                "the default, {DEFAULT_DATA_DIR} in the current directory: no --data-dir, MAILSIFT_DATA_DIR or \
                 data_dir in a configuration"
            ),
        };
        format!("{} ({why})", shown.display())
    }

    /// The message a command gives when it will not create the database `missing`.
    pub fn refusal(&self, missing: &NoDatabase) -> String {
        format!(
            "no {} in the data directory: looked for {}\n  data directory: {}\n  configuration:  {}\n\
             This command does not create a new database. Say where the gateway's data is (--config FILE with \
             data_dir in it, MAILSIFT_CONFIG, or --data-dir DIR), or start one here: `mailsift serve`, \
             `mailsift init`, or `mailsift store create`.",
            missing.what,
            missing.path.display(),
            self.describe_data_dir(),
            self.describe_config()
        )
    }
}

/// The `data_dir` key of the configuration file at `path`, resolved against the file's directory. Only that
/// key is read here; the command loads and checks the whole file as it always does.
fn data_dir_key(path: &Path) -> Result<Option<PathBuf>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{}: cannot read configuration", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: invalid configuration", path.display()))?;
    let Some(value) = table.get("data_dir") else { return Ok(None) };
    let Some(dir) = value.as_str() else {
        bail!("{}: data_dir must be a path (a string), e.g. data_dir = \"/var/lib/mailsift\"", path.display());
    };
    if dir.trim().is_empty() {
        bail!("{}: data_dir is empty: give a directory or remove the key", path.display());
    }
    let dir = PathBuf::from(dir);
    if dir.is_absolute() {
        return Ok(Some(dir));
    }
    let file = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok(Some(base.join(dir)))
}

/// A store a command will not create: the data directory has no such file. `main` explains it with the
/// [`Location`].
#[derive(Debug)]
pub struct NoDatabase {
    /// What is missing, e.g. "gateway database".
    pub what: &'static str,
    pub path: PathBuf,
}

impl std::fmt::Display for NoDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: no {} here (this command does not create one)", self.path.display(), self.what)
    }
}

impl std::error::Error for NoDatabase {}

/// The gateway database's file in `data_dir`, or [`NoDatabase`] when it is not there.
pub fn require_gateway_database(data_dir: &Path) -> Result<(), NoDatabase> {
    let path = data_dir.join(mailsift_store::gateway::FILE_NAME);
    if path.is_file() {
        Ok(())
    } else {
        Err(NoDatabase { what: "gateway database", path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_relative_to_the_file_not_to_the_current_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.toml");
        std::fs::write(&file, "data_dir = \"state\"\n").unwrap();
        let at = Location::resolve(Some((file.clone(), ConfigFrom::Env)), None, true).unwrap();
        assert_eq!(at.data_dir, dir.path().join("state"));
        assert_eq!(at.data_dir_from, DataDirFrom::ConfigKey);
        // The flag wins over the key.
        let at = Location::resolve(Some((file.clone(), ConfigFrom::Env)), Some(("x".into(), DataDirFrom::Flag)), true)
            .unwrap();
        assert_eq!(at.data_dir, PathBuf::from("x"));
        std::fs::write(&file, "data_dir = 3\n").unwrap();
        assert!(Location::resolve(Some((file, ConfigFrom::Env)), None, true)
            .unwrap_err()
            .to_string()
            .contains("a path"));
    }
}
