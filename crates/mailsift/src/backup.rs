//! `mailsift backup DIR` and `mailsift restore DIR`: a consistent copy of the data directory taken while
//! the gateway runs, and its return into an empty data directory.
//!
//! Every SQLite database in the data directory (the gateway database with the message log, quarantine,
//! spool, policy and accounts; the classifier; reputation) is copied with SQLite's online backup API, each
//! as of one moment (see `mailsift_store::backup`); the gateway keeps answering meanwhile. The log, the
//! quarantine and the spool share one database, so they are consistent with each other: a message the
//! gateway answered 250 before the backup began is in the copy's log, and in its quarantine or spool if
//! it went there. Everything else in the data directory (the console's signing key `web.key`, the
//! self-signed TLS material, the Maildir, a log spill file) is copied byte for byte. `MANIFEST.json`,
//! written last, lists every file with its size and SHA-256, and the schema versions: a directory without
//! it is not a finished backup.
//!
//! With `[store] backend = "postgres"` the gateway database lives on the server: back it up there
//! (`pg_dump`); the backup holds the data directory's own files.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::{Deserialize, Serialize};

use mailsift_store::backup as sqlite_backup;

/// The manifest's name inside a backup.
pub const MANIFEST: &str = "MANIFEST.json";
/// The manifest's format; a backup with a newer one is refused.
const FORMAT: u32 = 1;
/// Deepest directory level copied (the Maildir is three deep).
const MAX_DEPTH: usize = 8;

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the backup: a new or empty directory (made 0700; files 0600).
    dir: PathBuf,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A directory `mailsift backup` wrote.
    dir: PathBuf,
    /// Restore into a data directory that is not empty: the backup's files replace theirs (other files
    /// stay). The gateway must be stopped either way.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The mailsift that made the backup.
    pub mailsift_version: String,
    /// Unix seconds when the backup began.
    pub created: i64,
    /// The data directory it was taken from.
    pub data_dir: String,
    /// Where the gateway database was: "sqlite", or the PostgreSQL server (not in this backup).
    pub store: String,
    /// The gateway database's schema version, when it is in the backup.
    pub gateway_schema: Option<u32>,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to the data directory, `/`-separated.
    pub path: String,
    /// "sqlite" (copied with the online backup API) or "file".
    pub kind: String,
    pub size: u64,
    pub sha256: String,
    /// `PRAGMA user_version` of a SQLite file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<u32>,
}

/// Files SQLite keeps beside a database while it is open: never copied (the online copy includes what
/// they hold), removed on restore so they cannot be replayed onto the restored file.
fn is_sqlite_sidecar(name: &str) -> bool {
    ["-wal", "-shm", "-journal"].iter().any(|s| name.strip_suffix(s).is_some_and(|base| base.ends_with(".sqlite")))
}

fn mkdir_private(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("{}: cannot create", dir.display()))
}

fn private(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("{}: cannot make it private", path.display()))
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(std::fs::read_dir(dir).with_context(|| format!("{}: cannot read", dir.display()))?.next().is_none())
}

/// `mailsift backup DIR`.
pub fn backup(config: Option<&PathBuf>, data_dir: &Path, args: &BackupArgs) -> Result<()> {
    let loaded = crate::config_cmd::load(config.map(PathBuf::as_path))?;
    let postgres = loaded.store.postgres()?;
    if postgres.is_none() {
        crate::datadir::require_gateway_database(data_dir)?;
    } else if !data_dir.is_dir() {
        bail!("{}: the data directory does not exist", data_dir.display());
    }
    let target = &args.dir;
    if target.exists() && !(target.is_dir() && is_empty_dir(target)?) {
        bail!("{}: exists and is not an empty directory; give a new one", target.display());
    }
    let source = std::fs::canonicalize(data_dir).with_context(|| format!("{}: cannot read", data_dir.display()))?;
    if let Ok(t) = std::path::absolute(target) {
        if t.starts_with(&source) {
            bail!("{}: inside the data directory; write the backup elsewhere", target.display());
        }
    }
    // Everything this process creates from here on is private: the copies hold mail and keys.
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    mkdir_private(target)?;
    let created = mailsift_engine::unix_now();
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    copy_tree(&source, &source, target, 0, &mut files, &mut skipped)?;
    let gateway_schema =
        files.iter().find(|f| f.path == mailsift_store::gateway::FILE_NAME).and_then(|f: &ManifestFile| f.schema);
    let manifest = Manifest {
        format: FORMAT,
        mailsift_version: env!("CARGO_PKG_VERSION").into(),
        created,
        data_dir: source.display().to_string(),
        store: match &postgres {
            Some(pg) => format!("postgres {}", pg.describe()),
            None => "sqlite".into(),
        },
        gateway_schema,
        files,
    };
    let text = serde_json::to_string_pretty(&manifest)?;
    let mut tmp = tempfile::NamedTempFile::new_in(target)?;
    tmp.write_all(text.as_bytes()).and_then(|_| tmp.as_file().sync_all())?;
    tmp.persist(target.join(MANIFEST)).map_err(|e| anyhow::anyhow!("{}: {}", target.display(), e.error))?;
    private(&target.join(MANIFEST))?;
    let bytes: u64 = manifest.files.iter().map(|f| f.size).sum();
    for f in &manifest.files {
        println!(
            "{:<6} {:>12}  {}{}",
            f.kind,
            f.size,
            f.path,
            f.schema.map(|v| format!("  (schema {v})")).unwrap_or_default()
        );
    }
    for s in &skipped {
        println!("skipped {s}");
    }
    println!(
        "backup of {} written to {}: {} files, {bytes} bytes, MANIFEST.json last",
        source.display(),
        target.display(),
        manifest.files.len()
    );
    if let Some(pg) = postgres {
        println!(
            "note: the gateway database is on PostgreSQL ({}): back it up there (pg_dump); this backup holds the \
             data directory's files only",
            pg.describe()
        );
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn copy_tree(
    root: &Path,
    dir: &Path,
    target: &Path,
    depth: usize,
    files: &mut Vec<ManifestFile>,
    skipped: &mut Vec<String>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read", dir.display()))?
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("{}: cannot read", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let rel = relative(root, &path);
        let kind = entry.file_type().with_context(|| format!("{}: cannot read", path.display()))?;
        if kind.is_dir() {
            if depth + 1 >= MAX_DEPTH {
                skipped.push(format!("{rel}/ (deeper than {MAX_DEPTH} levels)"));
                continue;
            }
            mkdir_private(&target.join(&rel))?;
            copy_tree(root, &path, target, depth + 1, files, skipped)?;
            continue;
        }
        if !kind.is_file() {
            skipped.push(format!("{rel} (not a regular file)"));
            continue;
        }
        if is_sqlite_sidecar(&name) {
            continue;
        }
        let to = target.join(&rel);
        let (kind, schema) = if name.ends_with(".sqlite") {
            let schema = sqlite_backup::copy_online(&path, &to)
                .with_context(|| format!("{}: the online copy failed", path.display()))?;
            sqlite_backup::integrity_check(&to).with_context(|| format!("{}: the copy is damaged", to.display()))?;
            ("sqlite", Some(schema))
        } else {
            match std::fs::copy(&path, &to) {
                Ok(_) => {}
                // Gone since the listing (a Maildir file moved from tmp/ to new/, a spill file replayed).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    skipped.push(format!("{rel} (removed while the backup ran)"));
                    continue;
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("{}: cannot copy to {}", path.display(), to.display()))
                }
            }
            ("file", None)
        };
        private(&to)?;
        let (sha256, size) =
            sqlite_backup::sha256_file(&to).with_context(|| format!("{}: cannot read", to.display()))?;
        files.push(ManifestFile { path: rel, kind: kind.into(), size, sha256, schema });
    }
    Ok(())
}

/// A manifest path as a relative path inside the backup or the data directory; a path that climbs out
/// (`..`, absolute) is refused: a manifest is input.
fn safe_relative(path: &str) -> Result<PathBuf> {
    let p = Path::new(path);
    if path.is_empty() || path.len() > 4096 || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        bail!("{MANIFEST}: {path:?} is not a path inside the data directory");
    }
    Ok(p.to_path_buf())
}

/// Processes (other than this one) that have a file under `dir` open: a running gateway.
fn processes_using(dir: &Path) -> Vec<u32> {
    let Ok(dir) = std::fs::canonicalize(dir) else { return Vec::new() };
    let me = std::process::id();
    let mut pids = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return pids };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else { continue };
        if fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.starts_with(&dir))) {
            pids.push(pid);
        }
    }
    pids
}

/// `mailsift restore DIR`.
pub fn restore(data_dir: &Path, args: &RestoreArgs) -> Result<()> {
    let from = &args.dir;
    let manifest_path = from.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{}: cannot read (not a finished `mailsift backup`?)", manifest_path.display()))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a mailsift backup manifest", manifest_path.display()))?;
    if manifest.format > FORMAT {
        bail!(
            "{}: backup format {} is newer than this mailsift's ({FORMAT}); restore it with mailsift {} or newer",
            manifest_path.display(),
            manifest.format,
            manifest.mailsift_version
        );
    }
    // Check every file before anything is written.
    let ours = mailsift_store::gateway::SCHEMA_VERSION;
    let mut checked = Vec::new();
    for f in &manifest.files {
        let rel = safe_relative(&f.path)?;
        let path = from.join(&rel);
        let (sha256, size) = sqlite_backup::sha256_file(&path)
            .with_context(|| format!("{}: listed in the manifest but cannot be read", path.display()))?;
        if size != f.size || sha256 != f.sha256 {
            bail!(
                "{}: differs from the manifest (size {size}, expected {}): the backup is damaged",
                path.display(),
                f.size
            );
        }
        if f.kind == "sqlite" {
            sqlite_backup::integrity_check(&path)?;
            let version = sqlite_backup::user_version(&path)?;
            if f.path == mailsift_store::gateway::FILE_NAME && version > ours {
                bail!(
                    "{}: schema version {version} is newer than this mailsift's ({ours}): it was made by mailsift {}; \
                     restore it with that version or newer",
                    path.display(),
                    manifest.mailsift_version
                );
            }
        }
        checked.push((rel, path));
    }
    let using = processes_using(data_dir);
    if !using.is_empty() {
        bail!(
            "{}: in use by process{} {}: stop the gateway before restoring",
            data_dir.display(),
            if using.len() == 1 { "" } else { "es" },
            using.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    if data_dir.exists() && !is_empty_dir(data_dir)? && !args.force {
        bail!(
            "{}: not empty; restore into an empty data directory, or give --force to replace its files with the \
             backup's (stop the gateway first)",
            data_dir.display()
        );
    }
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
    mkdir_private(data_dir)?;
    for (rel, path) in &checked {
        let to = data_dir.join(rel);
        if let Some(parent) = to.parent() {
            mkdir_private(parent)?;
        }
        // A WAL left beside an older file would be replayed onto the restored one.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut side = to.clone().into_os_string();
            side.push(suffix);
            let side = PathBuf::from(side);
            if side.exists() {
                std::fs::remove_file(&side).with_context(|| format!("{}: cannot remove", side.display()))?;
            }
        }
        let mut tmp = to.clone().into_os_string();
        tmp.push(".restoring");
        let tmp = PathBuf::from(tmp);
        std::fs::copy(path, &tmp).with_context(|| format!("{}: cannot write", tmp.display()))?;
        private(&tmp)?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("{}: cannot sync", tmp.display()))?;
        std::fs::rename(&tmp, &to).with_context(|| format!("{}: cannot write", to.display()))?;
    }
    println!(
        "restored {} files from {} (made by mailsift {} at {}, gateway schema {}) into {}",
        checked.len(),
        from.display(),
        manifest.mailsift_version,
        manifest.created,
        manifest.gateway_schema.map(|v| v.to_string()).unwrap_or_else(|| "not in the backup".into()),
        data_dir.display()
    );
    if manifest.store != "sqlite" {
        println!("note: the gateway database was on PostgreSQL ({}): restore it there", manifest.store);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_cannot_name_a_path_outside() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "./a"] {
            assert!(safe_relative(bad).is_err(), "{bad:?}");
        }
        assert_eq!(safe_relative("tls/key.pem").unwrap(), PathBuf::from("tls/key.pem"));
        assert!(is_sqlite_sidecar("mailsift.sqlite-wal") && !is_sqlite_sidecar("mailsift.sqlite"));
    }
}
