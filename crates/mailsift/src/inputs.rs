//! Where messages come from on the command line: files, directories (recursively, in name order), standard
//! input; and the project's standard split of the SpamAssassin public corpus.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Lists the message files under `path`: the file itself, or every regular file below a directory
/// (hidden files, the corpus' `cmds` index files and JSON/Markdown metadata skipped), sorted for reproducible runs.
pub fn message_files(path: &Path) -> Result<Vec<PathBuf>> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).with_context(|| format!("{}: cannot list directory", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("{}: cannot list directory", dir.display()))?;
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            // The corpus ships metadata beside each message (`*.json`); it is never mail.
            if name.starts_with('.') || name == "cmds" || name.ends_with(".json") || name.ends_with(".md") {
                continue;
            }
            // Follow links; one that leads nowhere is listed so that reading it reports the error by name.
            match std::fs::metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) if m.is_file() => out.push(p),
                Ok(_) => {}
                Err(_) => out.push(p),
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Splits a file's bytes into messages: an mbox file (a `From ` line before each message) gives each
/// message, with `>From ` quoting undone; anything else is one message. A single corpus file that starts
/// with its `From ` line is one message either way.
pub fn split_mbox(bytes: Vec<u8>) -> Vec<Vec<u8>> {
    if !bytes.starts_with(b"From ") {
        return vec![bytes];
    }
    let mut starts = vec![0usize];
    let mut i = 0;
    while let Some(p) = memchr_newline_from(&bytes, i) {
        // A new message starts at a "From " line that follows an empty line (or the file start).
        let next = p + 1;
        let after_blank_line =
            (next >= 2 && bytes[next - 2] == b'\n') || (next >= 3 && &bytes[next - 3..next] == b"\n\r\n");
        if after_blank_line && bytes[next..].starts_with(b"From ") {
            starts.push(next);
        }
        i = next;
    }
    if starts.len() == 1 {
        return vec![bytes];
    }
    starts.push(bytes.len());
    starts.windows(2).map(|w| unquote_from(&bytes[w[0]..w[1]])).collect()
}

fn memchr_newline_from(b: &[u8], from: usize) -> Option<usize> {
    b.get(from..)?.iter().position(|&c| c == b'\n').map(|p| p + from).filter(|&p| p + 1 < b.len())
}

fn unquote_from(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    for (i, line) in m.split_inclusive(|&c| c == b'\n').enumerate() {
        if i > 0 && line.starts_with(b">From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Which half of the standard SpamAssassin split a corpus file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// Every file.
    All,
    /// Files whose md5 (in the name `NNNNN.<md5>.txt`) starts with 4-f.
    Train,
    /// Files whose md5 starts with 0-3.
    Test,
}

/// The standard split: a message is TEST if the first hex digit of the md5 in its file name is 0-3, else
/// TRAIN. Files without an md5 in their name belong to neither half.
pub fn in_split(path: &Path, split: Split) -> bool {
    if split == Split::All {
        return true;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let md5 = name.split('.').nth(1).unwrap_or("");
    let Some(first) = md5.chars().next().filter(|_| md5.len() == 32) else {
        return false;
    };
    let is_test = matches!(first, '0'..='3');
    match split {
        Split::Test => is_test,
        Split::Train => !is_test,
        Split::All => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_split() {
        let t = Path::new("data/spam-1/00001.3f4a0e8b0e0e8b0e0e8b0e0e8b0e0e8b.txt");
        let r = Path::new("data/spam-1/00002.a0000000000000000000000000000000.txt");
        assert!(in_split(t, Split::Test) && !in_split(t, Split::Train));
        assert!(in_split(r, Split::Train) && !in_split(r, Split::Test));
        assert!(!in_split(Path::new("x.eml"), Split::Train));
        assert!(in_split(Path::new("x.eml"), Split::All));
    }

    #[test]
    fn mbox_files_give_each_message() {
        let mbox = b"From a@x Mon Jan 1 00:00:00 2024\nSubject: one\n\nhi\n>From here\n\n\
                     From b@x Mon Jan 1 00:00:00 2024\nSubject: two\n\nyo\n"
            .to_vec();
        let msgs = split_mbox(mbox);
        assert_eq!(msgs.len(), 2);
        assert!(msgs[0].ends_with(b"hi\nFrom here\n\n"));
        assert!(msgs[1].starts_with(b"From b@x"));
        let crlf = b"From a@x Mon\r\nSubject: one\r\n\r\nhi\r\n\r\nFrom b@x Mon\r\nSubject: two\r\n\r\nyo\r\n";
        assert_eq!(split_mbox(crlf.to_vec()).len(), 2);
        let single = b"From a@x Mon\nSubject: one\n\nhello\nFrom the start\n".to_vec();
        assert_eq!(split_mbox(single).len(), 1);
    }
}
