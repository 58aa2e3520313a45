//! Messages built to exhaust a MIME parser, for the limit tests, the property tests and the memory example
//! (`examples/adversarial_memory.rs`). Each is the smallest form of a known attack: nesting under every
//! transfer encoding, many parts, many header fields, long lines, deep HTML. Not used by the engine itself.

/// Every case by name, with the limit it must reach (`None`: it stays within the limits).
pub const CASES: &[(&str, Option<super::limits::MimeLimit>)] = {
    use super::limits::MimeLimit::*;
    &[
        ("rfc822_none_2500", Some(Depth)),
        ("rfc822_none_20000", Some(Depth)),
        ("rfc822_qp_2500", Some(Depth)),
        ("rfc822_qp_20000", Some(Depth)),
        ("rfc822_b64_2500", Some(Depth)),
        ("rfc822_b64_20000", Some(Depth)),
        ("rfc822_qp_in_qp_in_qp", Some(Depth)),
        ("rfc822_siblings_in_qp", Some(DecodedBytes)),
        ("rfc822_b64_three_forwards", None),
        ("multipart_3000", Some(Depth)),
        ("digest_3000", Some(Depth)),
        ("parts_100000", Some(Parts)),
        ("missing_boundaries_900", Some(ScanWork)),
        ("headers_50000", Some(HeadersPerBlock)),
        ("headers_total", Some(HeadersTotal)),
        ("line_10mb", None),
        ("header_line_10mb", None),
        ("html_div_100000", None),
    ]
};

/// Builds the case called `name`; `None` for an unknown name.
pub fn build(name: &str) -> Option<Vec<u8>> {
    Some(match name {
        "rfc822_none_2500" => nested_rfc822(2500),
        "rfc822_none_20000" => nested_rfc822(20_000),
        "rfc822_qp_2500" => encoded_part("quoted-printable", &nested_rfc822(2500)),
        "rfc822_qp_20000" => encoded_part("quoted-printable", &nested_rfc822(20_000)),
        "rfc822_b64_2500" => encoded_part("base64", &nested_rfc822(2500)),
        "rfc822_b64_20000" => encoded_part("base64", &nested_rfc822(20_000)),
        "rfc822_qp_in_qp_in_qp" => {
            let mut m = nested_rfc822(20);
            for _ in 0..3 {
                m = encoded_part("quoted-printable", &m);
                let mut wrapped = nested_rfc822(10);
                wrapped.truncate(wrapped.len() - b"Subject: bottom\r\n\r\nthe bottom\r\n".len());
                wrapped.extend_from_slice(&m);
                m = wrapped;
            }
            m
        }
        "rfc822_siblings_in_qp" => encoded_part("quoted-printable", &sibling_messages(450, 400)),
        "rfc822_b64_three_forwards" => encoded_part("base64", &sibling_messages(3, 500_000)),
        "multipart_3000" => nested_multipart(3000, "mixed"),
        "digest_3000" => nested_multipart(3000, "digest"),
        "parts_100000" => many_parts(100_000),
        "missing_boundaries_900" => missing_boundaries(900, 20_000),
        "headers_50000" => many_headers(50_000),
        "headers_total" => many_part_headers(900, 40),
        "line_10mb" => {
            let mut m = head("text/plain");
            m.extend(std::iter::repeat_n(b'a', 10 << 20));
            m
        }
        "header_line_10mb" => {
            let mut m = b"From: a@example.org\r\nSubject: ".to_vec();
            m.extend(std::iter::repeat_n(b'a', 10 << 20));
            m.extend_from_slice(b"\r\n\r\nbody\r\n");
            m
        }
        "html_div_100000" => {
            let mut m = head("text/html");
            m.extend_from_slice("<div>".repeat(100_000).as_bytes());
            m.extend_from_slice(b"deep");
            m.extend_from_slice("</div>".repeat(100_000).as_bytes());
            m
        }
        _ => return None,
    })
}

fn head(content_type: &str) -> Vec<u8> {
    format!("From: a@example.org\r\nTo: b@example.net\r\nSubject: test\r\nContent-Type: {content_type}\r\n\r\n")
        .into_bytes()
}

/// `depth` header blocks that each say the body is a message/rfc822, unencoded, then a small message.
pub fn nested_rfc822(depth: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: nest\r\n".to_vec();
    for _ in 0..depth {
        m.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    m.extend_from_slice(b"Subject: bottom\r\n\r\nthe bottom\r\n");
    m
}

/// A message whose body is one message/rfc822 part in the given transfer encoding.
pub fn encoded_part(encoding: &str, inner: &[u8]) -> Vec<u8> {
    let mut m = format!(
        "From: a@example.org\r\nSubject: encoded\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\
         Content-Transfer-Encoding: {encoding}\r\n\r\n"
    )
    .into_bytes();
    match encoding {
        "base64" => m.extend_from_slice(&base64(inner)),
        _ => m.extend_from_slice(&quoted_printable(inner)),
    }
    m
}

/// `depth` nested multiparts (`multipart/digest` makes each child a message/rfc822 as well).
pub fn nested_multipart(depth: usize, subtype: &str) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: nest\r\n".to_vec();
    for i in 0..depth {
        m.extend_from_slice(
            format!("Content-Type: multipart/{subtype}; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n").as_bytes(),
        );
        if subtype == "digest" {
            // The child has no Content-Type: a message/rfc822 whose headers come next.
            m.extend_from_slice(b"\r\n");
        }
    }
    m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nthe bottom\r\n");
    for i in (0..depth).rev() {
        m.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    m
}

/// One multipart/mixed with `n` small text parts.
pub fn many_parts(n: usize) -> Vec<u8> {
    let mut m = head("multipart/mixed; boundary=\"p\"");
    for i in 0..n {
        m.extend_from_slice(format!("--p\r\nContent-Type: text/plain\r\n\r\npart {i}\r\n").as_bytes());
    }
    m.extend_from_slice(b"--p--\r\n");
    m
}

/// `n` parts that each declare a multipart whose boundary never comes: each makes the parser search to the
/// end of the message and come back.
pub fn missing_boundaries(n: usize, padding: usize) -> Vec<u8> {
    let mut m = head("multipart/mixed; boundary=\"p\"");
    for i in 0..n {
        m.extend_from_slice(
            format!("--p\r\nContent-Type: multipart/mixed; boundary=\"never{i}\"\r\n\r\nx\r\n").as_bytes(),
        );
    }
    m.extend_from_slice(b"--p\r\nContent-Type: text/plain\r\n\r\n");
    m.extend(std::iter::repeat_n(b'x', padding));
    m.extend_from_slice(b"\r\n--p--\r\n");
    m
}

/// One header block of `n` fields.
pub fn many_headers(n: usize) -> Vec<u8> {
    let mut m = b"From: a@example.org\r\nSubject: headers\r\n".to_vec();
    for i in 0..n {
        m.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    m.extend_from_slice(b"\r\nbody\r\n");
    m
}

/// `parts` parts of `fields` header fields each: under the per-block limit, over the total.
pub fn many_part_headers(parts: usize, fields: usize) -> Vec<u8> {
    let mut m = head("multipart/mixed; boundary=\"p\"");
    for _ in 0..parts {
        m.extend_from_slice(b"--p\r\n");
        for f in 0..fields {
            m.extend_from_slice(format!("X-F{f}: v\r\n").as_bytes());
        }
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\nx\r\n");
    }
    m.extend_from_slice(b"--p--\r\n");
    m
}

/// A multipart/mixed of `n` sibling message/rfc822 parts with `body` bytes each: shallow, but once decoded
/// the parser copies the whole decoded body for each of them.
pub fn sibling_messages(n: usize, body: usize) -> Vec<u8> {
    let mut m = head("multipart/mixed; boundary=\"s\"");
    for _ in 0..n {
        m.extend_from_slice(b"--s\r\nContent-Type: message/rfc822\r\n\r\nSubject: sibling\r\n\r\n");
        m.extend(std::iter::repeat_n(b'y', body));
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--s--\r\n");
    m
}

/// Quoted-printable with soft line breaks (RFC 2045 section 6.7); line ends stay line ends.
pub fn quoted_printable(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 8);
    let mut col = 0;
    for (i, &b) in data.iter().enumerate() {
        let hard_break = b == b'\n' || (b == b'\r' && data.get(i + 1) == Some(&b'\n'));
        if hard_break {
            out.push(b);
            if b == b'\n' {
                col = 0;
            }
            continue;
        }
        if col >= 72 {
            out.extend_from_slice(b"=\r\n");
            col = 0;
        }
        if (b' '..=b'~').contains(&b) && b != b'=' {
            out.push(b);
            col += 1;
        } else {
            out.extend_from_slice(format!("={b:02X}").as_bytes());
            col += 3;
        }
    }
    out
}

/// Base64 in 76-character lines.
pub fn base64(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len() * 4 / 3 + data.len() / 38 + 4);
    for (n, chunk) in data.chunks(3).enumerate() {
        if n > 0 && n % 19 == 0 {
            out.extend_from_slice(b"\r\n");
        }
        let v =
            (chunk[0] as u32) << 16 | (*chunk.get(1).unwrap_or(&0) as u32) << 8 | *chunk.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(v >> (18 - 6 * k) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}
