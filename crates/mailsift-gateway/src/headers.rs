//! Reading and changing a message's header block as bytes, without parsing the rest: where it ends, how many
//! hops it made, its subject tagged.

/// The message with `tag` put in front of its subject (once), or a Subject added when it has none.
pub fn tag_subject(raw: &[u8], tag: &str) -> Vec<u8> {
    let header_end = find_header_end(raw);
    let mut pos = 0;
    while pos < header_end {
        let end = raw[pos..header_end].iter().position(|&b| b == b'\n').map(|p| pos + p + 1).unwrap_or(header_end);
        let line = &raw[pos..end];
        if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") {
            let value_start = pos + 8 + line[8..].iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            if raw[value_start..].starts_with(tag.as_bytes()) {
                return raw.to_vec();
            }
            let mut out = Vec::with_capacity(raw.len() + tag.len() + 1);
            out.extend_from_slice(&raw[..value_start]);
            out.extend_from_slice(tag.as_bytes());
            out.push(b' ');
            out.extend_from_slice(&raw[value_start..]);
            return out;
        }
        pos = end;
    }
    let mut out = format!("Subject: {tag}\r\n").into_bytes();
    out.extend_from_slice(raw);
    out
}

/// Offset of the blank line that ends the header block (or the end of the message).
pub fn find_header_end(raw: &[u8]) -> usize {
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..].iter().position(|&b| b == b'\n').map(|p| pos + p + 1).unwrap_or(raw.len());
        if &raw[pos..end] == b"\n" || &raw[pos..end] == b"\r\n" {
            return pos;
        }
        pos = end;
    }
    raw.len()
}

/// How many `Received:` headers the message already carries.
pub fn hop_count(raw: &[u8]) -> usize {
    let end = find_header_end(raw);
    raw[..end].split(|&b| b == b'\n').filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:")).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_tagging() {
        assert_eq!(tag_subject(b"Subject: hi\r\n\r\nbody", "[SPAM]"), b"Subject: [SPAM] hi\r\n\r\nbody".to_vec());
        assert_eq!(tag_subject(b"Subject: [SPAM] hi\r\n\r\n", "[SPAM]"), b"Subject: [SPAM] hi\r\n\r\n".to_vec());
        assert_eq!(
            tag_subject(b"From: a\r\n\r\nSubject: no\r\n", "[SPAM]"),
            b"Subject: [SPAM]\r\nFrom: a\r\n\r\nSubject: no\r\n".to_vec()
        );
    }

    #[test]
    fn hops() {
        assert_eq!(hop_count(b"Received: a\r\nreceived: b\r\n\r\nReceived: body"), 2);
    }
}
