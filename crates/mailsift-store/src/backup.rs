//! Online copies of the data directory's SQLite files, for `mailsift backup` and `mailsift restore`.
//!
//! A copy is made with SQLite's online backup API in one step: the source is read inside one read
//! transaction, so the copy is the database as it was at one commit, while the gateway keeps writing (in WAL
//! mode a reader blocks no writer). A copy in several steps would restart whenever another process writes,
//! which on a busy gateway could be forever. `VACUUM INTO` would be as consistent; the backup API is what
//! SQLite documents for this, and copies pages without rebuilding the indexes.
//!
//! What it is not: the choice of which files to copy, the manifest, or PostgreSQL (`pg_dump` backs that up).

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::gateway::sqlite_error;
use crate::StoreError;

/// How long a copy waits for a lock it cannot get (a checkpoint, another backup) before it gives up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// Copies the SQLite database at `src` (which must exist; it is never created) to a new file `dst`, as
/// of one moment, while other processes may be writing it. Returns the copy's `PRAGMA user_version`.
pub fn copy_online(src: &Path, dst: &Path) -> Result<u32, StoreError> {
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_error(src, e))?;
    from.busy_timeout(Duration::from_secs(10)).map_err(|e| sqlite_error(src, e))?;
    if dst.exists() {
        return Err(StoreError::Invalid { path: dst.display().to_string(), reason: "exists already".into() });
    }
    let mut to = Connection::open(dst).map_err(|e| sqlite_error(dst, e))?;
    {
        let backup = Backup::new(&from, &mut to).map_err(|e| sqlite_error(dst, e))?;
        let started = Instant::now();
        loop {
            // -1: every page in one step, under one read lock of the source: one consistent moment.
            match backup.step(-1).map_err(|e| sqlite_error(src, e))? {
                StepResult::Done => break,
                StepResult::More => continue,
                StepResult::Busy | StepResult::Locked if started.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    return Err(StoreError::Invalid {
                        path: src.display().to_string(),
                        reason: format!("still locked after {} s: no copy made", LOCK_WAIT.as_secs()),
                    })
                }
            }
        }
    }
    // The copy keeps the source's journal mode in its header; one file, nothing beside it, is what is kept.
    to.pragma_update(None, "journal_mode", "DELETE").map_err(|e| sqlite_error(dst, e))?;
    let version = to.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| sqlite_error(dst, e))?;
    to.close().map_err(|(_, e)| sqlite_error(dst, e))?;
    Ok(version)
}

/// `PRAGMA integrity_check` of the file at `path`, opened read-only: `Ok` when SQLite answers "ok", else the
/// first problems it names.
pub fn integrity_check(path: &Path) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_error(path, e))?;
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)").map_err(|e| sqlite_error(path, e))?;
    let answers: Vec<String> =
        stmt.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| sqlite_error(path, e))?;
    if answers == ["ok"] {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            path: path.display().to_string(),
            reason: format!("integrity check failed: {}", answers.join("; ")),
        })
    }
}

/// The `PRAGMA user_version` of the file at `path`, read without changing it.
pub fn user_version(path: &Path) -> Result<u32, StoreError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| sqlite_error(path, e))?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| sqlite_error(path, e))
}

/// The SHA-256 of the file at `path` and its size, read in blocks (a quarantine database may be large).
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_made_while_another_connection_writes_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.sqlite");
        let db = crate::Database::open(&src).unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..300 {
                db.account_add(&format!("user{i}"), crate::Role::User, &[], "x", 0).unwrap();
            }
        });
        let dst = dir.path().join("copy.sqlite");
        assert_eq!(copy_online(&src, &dst).unwrap(), crate::gateway::SCHEMA_VERSION);
        writer.join().unwrap();
        integrity_check(&dst).unwrap();
        assert!(!dir.path().join("copy.sqlite-wal").exists());
        // The copy opens as a gateway database, with every account of some prefix of the writes.
        let copy = crate::Database::open(&dst).unwrap();
        let names: Vec<String> = copy.accounts().unwrap().into_iter().map(|a| a.name).collect();
        for (i, n) in (0..names.len()).zip(names.iter()) {
            assert!(names.contains(&format!("user{i}")), "{n}: {names:?}");
        }
        assert!(copy_online(&dir.path().join("missing.sqlite"), &dir.path().join("m2.sqlite")).is_err());
        assert!(!dir.path().join("missing.sqlite").exists());
    }
}
