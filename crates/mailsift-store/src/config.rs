//! `[store]`: where the gateway keeps its state.
//!
//! ```toml
//! [store]
//! backend = "postgres"                       # or "sqlite", the default: files in the data directory
//! url = "postgresql://mailsift@db.example/mailsift?sslmode=require"
//! password_file = "/etc/mailsift/db-password"
//! pool_size = 8
//! # ca_file = "/etc/mailsift/db-ca.pem"      # else the system's certificate authorities
//! ```
//!
//! SQLite needs nothing: one node, its files in the data directory. PostgreSQL is for several nodes
//! sharing one state; so far the gateway database is stored there (message log, quarantine, spool, policy,
//! domains, accounts and settings), while the classifier's model and the local reputation stay in each
//! node's data directory.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pg::PgConfig;
use crate::StoreError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(default)]
    pub backend: Backend,
    /// PostgreSQL: a libpq-style URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// PostgreSQL: a file holding the password, so that it is in neither the URL nor the configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// PostgreSQL: connections this node keeps (8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
    /// PostgreSQL: certificate authorities to trust for TLS instead of the system's (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl StoreConfig {
    /// Reads `[store]` as the engine carries it (absent: SQLite) and checks that it says one thing.
    pub fn from_value(value: Option<&toml::Value>) -> Result<StoreConfig, StoreError> {
        let config: StoreConfig = match value {
            None => StoreConfig::default(),
            Some(v) => v.clone().try_into().map_err(|e: toml::de::Error| invalid(e.message().to_string()))?,
        };
        config.postgres()?;
        Ok(config)
    }

    /// The PostgreSQL settings when the backend is PostgreSQL; an error when the table mixes the two.
    pub fn postgres(&self) -> Result<Option<PgConfig>, StoreError> {
        let pg_keys =
            self.url.is_some() || self.password_file.is_some() || self.pool_size.is_some() || self.ca_file.is_some();
        match self.backend {
            Backend::Sqlite if pg_keys => Err(invalid(
                "url, password_file, pool_size and ca_file are PostgreSQL's: set backend = \"postgres\" or remove them"
                    .into(),
            )),
            Backend::Sqlite => Ok(None),
            Backend::Postgres => {
                let url = self.url.clone().ok_or_else(|| invalid("backend = \"postgres\" needs url".into()))?;
                let mut pg = PgConfig::new(url);
                pg.password_file = self.password_file.clone();
                pg.ca_file = self.ca_file.clone();
                if let Some(n) = self.pool_size {
                    pg.pool_size = n;
                }
                pg.check()?;
                Ok(Some(pg))
            }
        }
    }

    /// Where the gateway database is, for messages (never a password).
    pub fn describe(&self, data_dir: &Path) -> String {
        match self.postgres() {
            Ok(Some(pg)) => pg.describe(),
            _ => data_dir.join(crate::gateway::FILE_NAME).display().to_string(),
        }
    }
}

fn invalid(reason: String) -> StoreError {
    StoreError::Invalid { path: "[store]".into(), reason }
}

impl crate::Database {
    /// The gateway database as `[store]` says: the data directory's SQLite file (created when missing), or
    /// PostgreSQL.
    pub fn open_configured(data_dir: &Path, config: &StoreConfig) -> Result<crate::Database, StoreError> {
        match config.postgres()? {
            Some(pg) => crate::Database::open_postgres(&pg),
            None => crate::Database::open_in(data_dir),
        }
    }

    /// As [`crate::Database::open_configured`], but `None` when the backend is SQLite and the data directory
    /// has no database yet (reading an empty store should not create files).
    pub fn open_existing(data_dir: &Path, config: &StoreConfig) -> Result<Option<crate::Database>, StoreError> {
        match config.postgres()? {
            Some(pg) => crate::Database::open_postgres(&pg).map(Some),
            None => {
                let file = data_dir.join(crate::gateway::FILE_NAME);
                if file.exists() {
                    crate::Database::open(&file).map(Some)
                } else {
                    Ok(None)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<StoreConfig, StoreError> {
        let table: toml::Table = text.parse().unwrap();
        StoreConfig::from_value(table.get("store"))
    }

    #[test]
    fn sqlite_by_default_and_postgres_when_asked() {
        assert_eq!(parse("").unwrap(), StoreConfig::default());
        assert_eq!(parse("[store]\nbackend = \"sqlite\"\n").unwrap().postgres().unwrap(), None);
        let c = parse("[store]\nbackend = \"postgres\"\nurl = \"postgresql://gw:pw@db.example/mail\"\npool_size = 4\n")
            .unwrap();
        let pg = c.postgres().unwrap().unwrap();
        assert_eq!(pg.pool_size, 4);
        assert_eq!(c.describe(Path::new("/d")), "postgresql://db.example:5432/mail");
        assert_eq!(parse("").unwrap().describe(Path::new("/d")), "/d/mailsift.sqlite");
    }

    #[test]
    fn a_table_that_says_two_things_is_refused() {
        for (text, why) in [
            ("[store]\nbackend = \"postgres\"\n", "needs url"),
            ("[store]\nurl = \"postgresql://db.example/mail\"\n", "set backend"),
            ("[store]\nbackend = \"mysql\"\n", "unknown variant"),
            ("[store]\nbackend = \"postgres\"\nurl = \"postgresql://db.example/mail\"\npool_size = 0\n", "pool_size"),
            ("[store]\nbackend = \"postgres\"\nurl = \"not a url at all\"\n", "not a PostgreSQL URL"),
            ("[store]\nurll = \"x\"\n", "unknown field"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}

/// What `mailsift store check` finds, without changing anything (no schema step is applied).
#[derive(Debug, Clone, PartialEq)]
pub struct StoreReport {
    /// The database, as messages name it (never a password).
    pub location: String,
    /// Its schema version; `None` when there is no database yet (SQLite: no file).
    pub version: Option<u32>,
    /// The version this mailsift writes.
    pub expected: u32,
    /// Other findings, each a line: the server's version, and what would make searches wrong or slow.
    pub notes: Vec<String>,
    /// Whether a finding means searches would be wrong (case folding) or the schema is not usable as is.
    pub problems: Vec<String>,
}

impl StoreConfig {
    /// Looks at the configured store without migrating it: its schema version against this mailsift's, and
    /// on PostgreSQL the server's version, the trigram extension, and whether `lower()` folds beyond ASCII
    /// (a database made with a C locale would make searches miss non-ASCII matches).
    pub fn inspect(&self, data_dir: &Path) -> Result<StoreReport, StoreError> {
        let location = self.describe(data_dir);
        match self.postgres()? {
            None => {
                let file = data_dir.join(crate::gateway::FILE_NAME);
                let expected = crate::gateway::SCHEMA_VERSION;
                if !file.exists() {
                    return Ok(StoreReport { location, version: None, expected, notes: vec![], problems: vec![] });
                }
                let conn = rusqlite::Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .map_err(|e| crate::gateway::sqlite_error(&file, e))?;
                let version: u32 = conn
                    .query_row("PRAGMA user_version", [], |r| r.get(0))
                    .map_err(|e| crate::gateway::sqlite_error(&file, e))?;
                Ok(StoreReport { location, version: Some(version), expected, notes: vec![], problems: vec![] })
            }
            Some(pg) => crate::pg::inspect(&pg).map(|(version, notes, problems)| StoreReport {
                location,
                version: Some(version as u32),
                expected: crate::pg::migrations::SCHEMA_VERSION as u32,
                notes,
                problems,
            }),
        }
    }
}
