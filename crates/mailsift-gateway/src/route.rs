//! Where a message goes: a [`Route`], and the embedded Maildir delivery.

/// Where the recipients of a transaction go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The organisation's mail server for the domain (`host:port`).
    NextHop(String),
    /// A Maildir per recipient under the data directory (the embedded default).
    Maildir,
    /// Outbound, through the configured smarthost.
    Smarthost(String),
    /// Outbound, to the MX of this domain.
    Mx(String),
    /// A report address: the message is learned from, not delivered.
    Report(mailsift_engine::classify::Side),
}

/// Writes one message into `root/<recipient>/new`, the Maildir way: a unique file in `tmp`, synced, renamed
/// into `new`, and the directory synced, so a 250 survives a crash.
pub fn maildir_deliver(root: &std::path::Path, rcpt: &str, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    let dir = root.join(maildir_name(rcpt));
    // The error names the Maildir for the operator's log (the client is told only "local error").
    maildir_write(&dir, bytes).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", dir.display())))
}

fn maildir_write(dir: &std::path::Path, bytes: &[u8]) -> std::io::Result<std::path::PathBuf> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    for sub in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let name = format!(
        "{}.M{}P{}Q{}.mailsift",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    let tmp = dir.join("tmp").join(&name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    let new = dir.join("new").join(&name);
    std::fs::rename(&tmp, &new)?;
    std::fs::File::open(dir.join("new"))?.sync_all()?;
    Ok(new)
}

/// Deletes files in `root/*/tmp/` last modified more than `max_age` ago: what a crash left between writing
/// a message and renaming it into `new/` (readers ignore `tmp/`, and the Maildir convention is that the
/// delivering agent cleans it after 36 hours). Returns how many; unreadable entries are skipped.
pub fn sweep_maildir_tmp(root: &std::path::Path, max_age: std::time::Duration) -> usize {
    let Ok(boxes) = std::fs::read_dir(root) else { return 0 };
    let cutoff = std::time::SystemTime::now().checked_sub(max_age);
    let mut removed = 0;
    for mailbox in boxes.flatten() {
        let Ok(files) = std::fs::read_dir(mailbox.path().join("tmp")) else { continue };
        for f in files.flatten() {
            let Ok(meta) = f.metadata() else { continue };
            let old = match (meta.modified(), cutoff) {
                (Ok(m), Some(c)) => m < c,
                _ => false,
            };
            if meta.is_file() && old {
                match std::fs::remove_file(f.path()) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::warn!(file = %f.path().display(), error = %e, "maildir tmp leftover not removed")
                    }
                }
            }
        }
    }
    removed
}

/// A recipient as a safe directory name: lower case, nothing that climbs out or hides.
pub fn maildir_name(rcpt: &str) -> String {
    let s: String = rcpt
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_' | '+') { c } else { '_' })
        .collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "_".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_names() {
        assert_eq!(maildir_name("../Bob@Example.COM/x"), "_bob@example.com_x");
    }
}
