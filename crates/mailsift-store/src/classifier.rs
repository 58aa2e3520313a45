//! The classifier's store where the configuration puts the gateway's state: the SQLite file in the data
//! directory for one node, or the shared PostgreSQL database for several (`[store] backend`). The learner,
//! the gateway and the commands take this, so none of them names a database.

use std::path::Path;

use mailsift_engine::classify::{Model, Side};

use crate::gateway::pg::classifier::PgTokenStore;
use crate::{Changes, Fresh, SqliteStore, StoreError, Submission, TokenStore};

#[derive(Debug)]
pub enum ClassifierStore {
    Sqlite(SqliteStore),
    Postgres(PgTokenStore),
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path()).finish_non_exhaustive()
    }
}

impl ClassifierStore {
    /// Beside the gateway database: in PostgreSQL when `db` is there, else `classifier.sqlite` in `data_dir`.
    pub fn open(data_dir: &Path, db: &crate::Database) -> Result<ClassifierStore, StoreError> {
        match db.postgres() {
            Some(pg) => Ok(ClassifierStore::Postgres(PgTokenStore::open(pg.clone()))),
            None => Ok(ClassifierStore::Sqlite(SqliteStore::open_dir(data_dir)?)),
        }
    }

    /// As [`ClassifierStore::open`], but `None` (and no file made) when a SQLite store does not exist yet.
    pub fn open_existing(data_dir: &Path, db: &crate::Database) -> Result<Option<ClassifierStore>, StoreError> {
        if db.postgres().is_none() && !data_dir.join(crate::sqlite::FILE_NAME).exists() {
            return Ok(None);
        }
        ClassifierStore::open(data_dir, db).map(Some)
    }

    /// Where the store is, for messages (a PostgreSQL URL without its password).
    pub fn describe(&self) -> String {
        match self {
            ClassifierStore::Sqlite(s) => s.path().display().to_string(),
            ClassifierStore::Postgres(p) => p.target().to_string(),
        }
    }

    /// Report submissions per UTC day and side since `since` (see `SqliteStore::submissions_per_day`).
    pub fn submissions_per_day(&self, since: i64) -> Result<Vec<(i64, Side, u64)>, StoreError> {
        match self {
            ClassifierStore::Sqlite(s) => s.submissions_per_day(since),
            ClassifierStore::Postgres(p) => p.submissions_per_day(since),
        }
    }
}

impl From<SqliteStore> for ClassifierStore {
    fn from(s: SqliteStore) -> ClassifierStore {
        ClassifierStore::Sqlite(s)
    }
}

/// Calls the same method on whichever store this is.
macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            ClassifierStore::Sqlite($s) => $e,
            ClassifierStore::Postgres($s) => $e,
        }
    };
}

impl TokenStore for ClassifierStore {
    fn load(&self) -> Result<Model, StoreError> {
        each!(self, s => s.load())
    }
    fn trained_side(&self, digest: &[u8; 16]) -> Result<Option<Side>, StoreError> {
        each!(self, s => s.trained_side(digest))
    }
    fn save(&mut self, model: &Model, changes: &Changes, now: i64) -> Result<(), StoreError> {
        each!(self, s => s.save(model, changes, now))
    }
    fn expire(&mut self, max_tokens: u64, stale_before: i64) -> Result<Vec<u64>, StoreError> {
        each!(self, s => s.expire(max_tokens, stale_before))
    }
    fn record_submission(&mut self, sub: &Submission) -> Result<(), StoreError> {
        each!(self, s => s.record_submission(sub))
    }
    fn submissions(&self) -> Result<Vec<Submission>, StoreError> {
        each!(self, s => s.submissions())
    }
    fn token_count(&self) -> Result<u64, StoreError> {
        each!(self, s => s.token_count())
    }
    fn merges(&self) -> bool {
        each!(self, s => s.merges())
    }
    fn take_saved(&mut self) -> Fresh {
        each!(self, s => s.take_saved())
    }
    fn pull(&mut self) -> Result<Fresh, StoreError> {
        each!(self, s => s.pull())
    }
}
