//! The PROXY protocol header (HAProxy's `proxy-protocol.txt`, versions 1 and 2): what a TCP load balancer
//! sends before anything else on a connection, naming the client it carries. Pure: bytes in, a header or a
//! reason out; the listener (`server.rs`) reads the bytes, under a deadline, and decides whom to believe.
//!
//! What it reads: version 1 (one text line, `PROXY TCP4|TCP6|UNKNOWN ...\r\n`, at most 107 bytes) and
//! version 2 (a 16-byte binary block and the address block it announces, TLVs skipped unread). What it
//! refuses: anything else at the start of the connection (the spec forbids guessing whether a header is
//! there), v2 commands other than LOCAL and PROXY, and proxied families other than TCP over IPv4 or IPv6
//! (UDP, Unix sockets, unspecified), since an SMTP client always has an IP address. A v2 LOCAL header (a
//! balancer's health check) and a v1 UNKNOWN line stand for the balancer's own connection.
//!
//! Hostile input is the normal case: [`parse`] never asks for more bytes than the header can still have, so
//! the reader never consumes the SMTP client's first bytes, and never for more than [`V1_MAX`] or
//! `16 +` [`V2_MAX_ADDRESS_BLOCK`] in all.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest version 1 line, CRLF included (the spec's worst case, `PROXY UNKNOWN` with two IPv6
/// addresses and ports).
pub const V1_MAX: usize = 107;
/// The shortest version 1 line: `PROXY UNKNOWN\r\n`.
const V1_MIN: usize = 15;
/// The version 2 signature, the first 12 bytes of a v2 header.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a version 2 header: signature, version and command, family and protocol, length.
pub const V2_FIXED: usize = 16;
/// The largest address block (addresses and TLVs) a version 2 header may announce here. The format allows
/// 65,535; real balancers send an address block of 12 or 36 bytes and a few TLVs (TLS details, a
/// connection id), well under this.
pub const V2_MAX_ADDRESS_BLOCK: usize = 2048;

/// What a complete header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A relayed TCP connection: the real client (`source`) and the address it connected to.
    Proxied { source: SocketAddr, destination: SocketAddr },
    /// The balancer's own connection (v2 LOCAL, a health check; v1 UNKNOWN): keep the connection's address.
    Local,
}

/// Why the bytes are not an acceptable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header (the connection does not start with one)")]
    NotProxy,
    #[error("PROXY v1 line longer than {V1_MAX} bytes")]
    LineTooLong,
    #[error("PROXY v2 address block of {0} bytes announced (at most {V2_MAX_ADDRESS_BLOCK})")]
    TooLong(usize),
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    #[error("PROXY header for a family other than TCP over IPv4/IPv6 (v2 family byte {0:#04x})")]
    UnsupportedFamily(u8),
}

/// The outcome of looking at the bytes received so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// The header is not complete: read again, at most this many bytes (never past the header's end, so the
    /// client's own first bytes stay unread). Always at least 1.
    Need(usize),
    /// A complete header, `len` bytes long (the start of the input).
    Done { header: ProxyHeader, len: usize },
    /// Not an acceptable header: close the connection.
    Invalid(ProxyError),
}

/// Looks at the first bytes of a connection. Call it again with more bytes while it answers
/// [`Parse::Need`]; it never answers `Done` with a `len` beyond `input.len()`.
pub fn parse(input: &[u8]) -> Parse {
    match input.first() {
        None => Parse::Need(V1_MIN),
        Some(b'P') => parse_v1(input),
        Some(b'\r') => parse_v2(input),
        Some(_) => Parse::Invalid(ProxyError::NotProxy),
    }
}

fn parse_v1(input: &[u8]) -> Parse {
    let prefix = b"PROXY ";
    let n = input.len().min(prefix.len());
    if input[..n] != prefix[..n] {
        return Parse::Invalid(ProxyError::NotProxy);
    }
    let window = &input[..input.len().min(V1_MAX)];
    let Some(lf) = memchr::memchr(b'\n', window) else {
        if input.len() >= V1_MAX {
            return Parse::Invalid(ProxyError::LineTooLong);
        }
        // A CR not yet followed by its LF: only the LF may come. Otherwise at least the CRLF is still to
        // come, and at least what the shortest line still lacks.
        let need = if input.ends_with(b"\r") { 1 } else { V1_MIN.saturating_sub(input.len()).max(2) };
        return Parse::Need(need.min(V1_MAX - input.len()));
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Parse::Invalid(ProxyError::Malformed("v1 line not ended by CRLF"));
    }
    let line = &window[prefix.len().min(lf - 1)..lf - 1];
    match v1_fields(line) {
        Ok(header) => Parse::Done { header, len: lf + 1 },
        Err(e) => Parse::Invalid(e),
    }
}

/// The fields after `PROXY `: `TCP4|TCP6 src dst sport dport`, or `UNKNOWN` and anything.
fn v1_fields(line: &[u8]) -> Result<ProxyHeader, ProxyError> {
    if line == b"UNKNOWN" || line.starts_with(b"UNKNOWN ") {
        // "The receiver must ignore anything presented before the CRLF."
        return Ok(ProxyHeader::Local);
    }
    let text = std::str::from_utf8(line).map_err(|_| ProxyError::Malformed("v1 line is not ASCII"))?;
    // Exactly one space between fields: splitting on one space leaves an empty field for two.
    let mut fields = text.split(' ');
    let family = fields.next().unwrap_or("");
    let (src, dst, sport, dport) = match (fields.next(), fields.next(), fields.next(), fields.next(), fields.next()) {
        (Some(a), Some(b), Some(c), Some(d), None) => (a, b, c, d),
        _ => return Err(ProxyError::Malformed("v1 line needs exactly: family source destination ports")),
    };
    let (src, dst) = match family {
        "TCP4" => (IpAddr::V4(v1_ipv4(src)?), IpAddr::V4(v1_ipv4(dst)?)),
        "TCP6" => (IpAddr::V6(v1_ipv6(src)?), IpAddr::V6(v1_ipv6(dst)?)),
        _ => return Err(ProxyError::Malformed("v1 family must be TCP4, TCP6 or UNKNOWN")),
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(unmapped(src), v1_port(sport)?),
        destination: SocketAddr::new(unmapped(dst), v1_port(dport)?),
    })
}

/// Four decimal numbers 0-255, no leading zeros (which some readers take as octal).
fn v1_ipv4(s: &str) -> Result<Ipv4Addr, ProxyError> {
    let bad = ProxyError::Malformed("v1 IPv4 address is not in canonical form");
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        *o = decimal(parts.next().ok_or(bad)?, 255).ok_or(bad)? as u8;
    }
    if parts.next().is_some() {
        return Err(bad);
    }
    Ok(Ipv4Addr::from(octets))
}

fn v1_ipv6(s: &str) -> Result<Ipv6Addr, ProxyError> {
    // Hexadecimal groups and colons only (no zone, no prefix); the standard parser checks the rest.
    if s.len() > 39 || !s.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
        return Err(ProxyError::Malformed("v1 IPv6 address is not in canonical form"));
    }
    s.parse().map_err(|_| ProxyError::Malformed("v1 IPv6 address is not in canonical form"))
}

fn v1_port(s: &str) -> Result<u16, ProxyError> {
    decimal(s, 65535).map(|p| p as u16).ok_or(ProxyError::Malformed("v1 port is not a number 0-65535"))
}

/// A decimal number up to `max`, digits only, without leading zeros.
fn decimal(s: &str, max: u32) -> Option<u32> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse::<u32>().ok().filter(|n| *n <= max)
}

fn parse_v2(input: &[u8]) -> Parse {
    let n = input.len().min(V2_SIGNATURE.len());
    if input[..n] != V2_SIGNATURE[..n] {
        return Parse::Invalid(ProxyError::NotProxy);
    }
    if input.len() < V2_FIXED {
        // The version is checked as soon as it is here, before waiting for the rest.
        if input.len() > 12 && input[12] >> 4 != 2 {
            return Parse::Invalid(ProxyError::Malformed("v2 version must be 2"));
        }
        return Parse::Need(V2_FIXED - input.len());
    }
    let (version, command) = (input[12] >> 4, input[12] & 0x0f);
    if version != 2 {
        return Parse::Invalid(ProxyError::Malformed("v2 version must be 2"));
    }
    let block = usize::from(u16::from_be_bytes([input[14], input[15]]));
    if block > V2_MAX_ADDRESS_BLOCK {
        return Parse::Invalid(ProxyError::TooLong(block));
    }
    let len = V2_FIXED + block;
    if input.len() < len {
        return Parse::Need(len - input.len());
    }
    let addresses = &input[V2_FIXED..len];
    let header = match command {
        // LOCAL: the family and any address are ignored, the block skipped.
        0x0 => ProxyHeader::Local,
        0x1 => match v2_addresses(input[13], addresses) {
            Ok(h) => h,
            Err(e) => return Parse::Invalid(e),
        },
        _ => return Parse::Invalid(ProxyError::Malformed("v2 command must be LOCAL or PROXY")),
    };
    Parse::Done { header, len }
}

/// The address block of a v2 PROXY header for TCP over IPv4 (0x11) or IPv6 (0x21); what follows the
/// addresses (TLVs) is skipped.
fn v2_addresses(family: u8, block: &[u8]) -> Result<ProxyHeader, ProxyError> {
    let short = ProxyError::Malformed("v2 address block shorter than its family needs");
    let (src, dst, ports) = match family {
        0x11 => {
            let a = block.get(..12).ok_or(short)?;
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            (ip(0), ip(4), &a[8..12])
        }
        0x21 => {
            let a = block.get(..36).ok_or(short)?;
            let ip = |i: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[i..i + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            (ip(0), ip(16), &a[32..36])
        }
        other => return Err(ProxyError::UnsupportedFamily(other)),
    };
    Ok(ProxyHeader::Proxied {
        source: SocketAddr::new(unmapped(src), u16::from_be_bytes([ports[0], ports[1]])),
        destination: SocketAddr::new(unmapped(dst), u16::from_be_bytes([ports[2], ports[3]])),
    })
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is, so one client has one form in the log, in
/// reputation and in the per-address limits.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(input: &[u8]) -> (ProxyHeader, usize) {
        match parse(input) {
            Parse::Done { header, len } => (header, len),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn invalid(input: &[u8]) -> ProxyError {
        match parse(input) {
            Parse::Invalid(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn proxied(src: &str, dst: &str) -> ProxyHeader {
        ProxyHeader::Proxied { source: src.parse().unwrap(), destination: dst.parse().unwrap() }
    }

    /// Feeds `input` the way the listener does: only as many bytes as `parse` asks for at a time.
    fn fed(input: &[u8]) -> Parse {
        let mut have = 0;
        loop {
            match parse(&input[..have]) {
                Parse::Need(n) => {
                    assert!(n >= 1);
                    if have == input.len() {
                        return Parse::Need(n);
                    }
                    have = (have + n).min(input.len());
                }
                other => return other,
            }
        }
    }

    #[test]
    fn v1_tcp4_from_the_spec_leaves_the_clients_bytes_unread() {
        let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        let (h, len) = done(input);
        assert_eq!(h, proxied("192.168.0.1:56324", "192.168.0.11:443"));
        assert_eq!(&input[len..], b"GET / HTTP/1.1\r\n");
        // Read as the listener reads it, it never takes a byte past the CRLF.
        assert_eq!(fed(input), Parse::Done { header: h, len });
    }

    #[test]
    fn v1_tcp6_and_the_longest_lines() {
        let (h, _) = done(b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n");
        assert_eq!(h, proxied("[2001:db8::7]:40000", "[2001:db8::1]:25"));
        let f = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        let line = format!("PROXY TCP6 {f} {f} 65535 65535\r\n");
        assert_eq!(line.len(), 104);
        assert!(matches!(fed(line.as_bytes()), Parse::Done { len: 104, .. }));
        let worst = format!("PROXY UNKNOWN {f} {f} 65535 65535\r\n");
        assert_eq!(worst.len(), V1_MAX);
        assert_eq!(done(worst.as_bytes()), (ProxyHeader::Local, V1_MAX));
    }

    #[test]
    fn v1_unknown_is_the_proxys_own_connection() {
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (ProxyHeader::Local, 15));
        assert_eq!(done(b"PROXY UNKNOWN whatever it says\r\nEHLO"), (ProxyHeader::Local, 32));
        assert_eq!(fed(b"PROXY UNKNOWN\r\n"), Parse::Done { header: ProxyHeader::Local, len: 15 });
    }

    #[test]
    fn v1_refuses_what_the_spec_refuses() {
        for bad in [
            &b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\n"[..], // bare LF
            b"PROXY TCP4 192.168.0.1  192.168.0.11 56324 443\r\n",   // two spaces
            b"PROXY TCP4 192.168.0.01 192.168.0.11 56324 443\r\n",   // leading zero
            b"PROXY TCP4 192.168.0.1 192.168.0.11 056324 443\r\n",   // leading zero in a port
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65536 443\r\n",    // port out of range
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324\r\n",        // a field missing
            b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443 x\r\n",  // a field too many
            b"PROXY TCP4 2001:db8::1 192.168.0.11 56324 443\r\n",    // family mismatch
            b"PROXY TCP6 192.168.0.1 2001:db8::1 56324 443\r\n",
            b"PROXY TCP6 fe80::1%eth0 2001:db8::1 56324 443\r\n",
            b"PROXY UDP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY tcp4 192.168.0.1 192.168.0.11 56324 443\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 +1 443\r\n",
            b"PROXY \xff\r\n",
        ] {
            assert!(matches!(invalid(bad), ProxyError::Malformed(_)), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(invalid(b"EHLO client.example\r\n"), ProxyError::NotProxy);
        assert_eq!(invalid(b"PROXZ"), ProxyError::NotProxy);
        assert_eq!(invalid(&[b'P'; 200]), ProxyError::NotProxy);
        let long = format!("PROXY UNKNOWN {}", "a".repeat(200));
        assert_eq!(invalid(long.as_bytes()), ProxyError::LineTooLong);
        assert_eq!(fed(long.as_bytes()), Parse::Invalid(ProxyError::LineTooLong));
    }

    #[test]
    fn v1_incomplete_lines_ask_for_no_more_than_can_be_header() {
        assert_eq!(parse(b""), Parse::Need(15));
        assert_eq!(parse(b"PRO"), Parse::Need(12));
        assert_eq!(parse(b"PROXY TCP4 192.168.0.1"), Parse::Need(2));
        assert_eq!(parse(b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r"), Parse::Need(1));
    }

    /// A v2 header: version 2, `command`, `family`, the address block.
    fn v2(command: u8, family: u8, block: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(block.len() as u16).to_be_bytes());
        h.extend_from_slice(block);
        h
    }

    /// TLVs as a balancer adds them: ALPN, authority, a unique id, and a NOOP.
    fn tlvs() -> Vec<u8> {
        let mut t = Vec::new();
        for (kind, value) in [(0x01u8, &b"smtp"[..]), (0x02, b"mx.example.com"), (0x05, b"conn-42"), (0x04, b"")] {
            t.push(kind);
            t.extend_from_slice(&(value.len() as u16).to_be_bytes());
            t.extend_from_slice(value);
        }
        t
    }

    #[test]
    fn v2_proxy_over_ipv4_with_tlvs_skipped() {
        let mut block = vec![192, 0, 2, 7, 10, 0, 0, 5];
        block.extend_from_slice(&40000u16.to_be_bytes());
        block.extend_from_slice(&25u16.to_be_bytes());
        block.extend_from_slice(&tlvs());
        let mut input = v2(0x1, 0x11, &block);
        let header_len = input.len();
        input.extend_from_slice(b"EHLO client.example\r\n");
        let (h, len) = done(&input);
        assert_eq!(h, proxied("192.0.2.7:40000", "10.0.0.5:25"));
        assert_eq!(len, header_len);
        assert_eq!(fed(&input), Parse::Done { header: h, len });
    }

    #[test]
    fn v2_proxy_over_ipv6_and_mapped_ipv4() {
        let src: Ipv6Addr = "2001:db8::7".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::25".parse().unwrap();
        let mut block = src.octets().to_vec();
        block.extend_from_slice(&dst.octets());
        block.extend_from_slice(&[0x9c, 0x40, 0, 25]);
        let (h, len) = done(&v2(0x1, 0x21, &block));
        assert_eq!(h, proxied("[2001:db8::7]:40000", "[2001:db8::25]:25"));
        assert_eq!(len, 16 + 36);
        // An IPv4 client carried over IPv6 is that IPv4 client.
        let mapped: Ipv6Addr = "::ffff:192.0.2.9".parse().unwrap();
        let mut block = mapped.octets().to_vec();
        block.extend_from_slice(&dst.octets());
        block.extend_from_slice(&[0, 1, 0, 25]);
        block.extend_from_slice(&tlvs());
        assert_eq!(done(&v2(0x1, 0x21, &block)).0, proxied("192.0.2.9:1", "[2001:db8::25]:25"));
    }

    #[test]
    fn v2_local_is_the_proxys_own_connection_whatever_its_block() {
        assert_eq!(done(&v2(0x0, 0x00, &[])), (ProxyHeader::Local, 16));
        // The length is honoured even for LOCAL, and the family ignored.
        let mut block = vec![127, 0, 0, 1, 127, 0, 0, 1, 0, 1, 0, 2];
        block.extend_from_slice(&tlvs());
        let input = v2(0x0, 0x11, &block);
        assert_eq!(done(&input), (ProxyHeader::Local, input.len()));
        let input = v2(0x0, 0x31, &[0u8; 216]);
        assert_eq!(done(&input), (ProxyHeader::Local, 16 + 216));
    }

    #[test]
    fn v2_refuses_other_families_commands_versions_and_lengths() {
        let four = [192, 0, 2, 7, 10, 0, 0, 5, 0, 1, 0, 25];
        assert_eq!(invalid(&v2(0x1, 0x12, &four)), ProxyError::UnsupportedFamily(0x12)); // UDP
        assert_eq!(invalid(&v2(0x1, 0x31, &[0u8; 216])), ProxyError::UnsupportedFamily(0x31)); // Unix
        assert_eq!(invalid(&v2(0x1, 0x00, &[])), ProxyError::UnsupportedFamily(0x00)); // unspecified
        assert!(matches!(invalid(&v2(0x1, 0x11, &four[..8])), ProxyError::Malformed(_)));
        assert!(matches!(invalid(&v2(0x1, 0x21, &[0u8; 35])), ProxyError::Malformed(_)));
        assert!(matches!(invalid(&v2(0x2, 0x11, &four)), ProxyError::Malformed(_)));
        let mut v1 = v2(0x1, 0x11, &four);
        v1[12] = 0x11;
        assert!(matches!(invalid(&v1), ProxyError::Malformed(_)));
        assert!(matches!(invalid(&v1[..13]), ProxyError::Malformed(_)), "the version is checked early");
        // The length is checked before anything more is read.
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert_eq!(invalid(&huge), ProxyError::TooLong(65535));
        let mut almost = v2(0x1, 0x11, &[0u8; V2_MAX_ADDRESS_BLOCK]);
        assert!(matches!(parse(&almost), Parse::Done { .. }));
        almost[14..16].copy_from_slice(&(V2_MAX_ADDRESS_BLOCK as u16 + 1).to_be_bytes());
        assert_eq!(invalid(&almost[..16]), ProxyError::TooLong(V2_MAX_ADDRESS_BLOCK + 1));
        assert_eq!(invalid(b"\r\n\r\n\0\r\nQUIX"), ProxyError::NotProxy);
        assert_eq!(invalid(b"\r\nEHLO"), ProxyError::NotProxy);
    }

    #[test]
    fn v2_incomplete_headers_ask_for_exactly_the_rest() {
        let input = v2(0x1, 0x11, &[192, 0, 2, 7, 10, 0, 0, 5, 0, 1, 0, 25]);
        assert_eq!(parse(&input[..1]), Parse::Need(15));
        assert_eq!(parse(&input[..16]), Parse::Need(12));
        assert_eq!(parse(&input[..27]), Parse::Need(1));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(
            std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2000)
        ))]

        /// Arbitrary bytes: no panic, never a header longer than the input, never a request to read past
        /// the bounds, and a complete answer once the bounds are reached.
        #[test]
        fn any_bytes_parse_or_are_refused_within_bounds(input in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            check_bounds(&input);
        }

        /// Bytes that start like a header, so the parser gets past the signatures.
        #[test]
        fn header_like_bytes_parse_or_are_refused_within_bounds(
            v2_start in proptest::bool::ANY,
            rest in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            text in "[ A-Z0-9.:a-f\r\n]{0,120}",
        ) {
            let mut input = if v2_start { V2_SIGNATURE.to_vec() } else { b"PROXY ".to_vec() };
            if v2_start { input.extend_from_slice(&rest) } else { input.extend_from_slice(text.as_bytes()) }
            check_bounds(&input);
        }
    }

    fn check_bounds(input: &[u8]) {
        for end in 0..=input.len() {
            match parse(&input[..end]) {
                Parse::Done { len, .. } => assert!(len <= end && len <= V2_FIXED + V2_MAX_ADDRESS_BLOCK),
                Parse::Need(n) => {
                    assert!(n >= 1);
                    assert!(end + n <= V2_FIXED + V2_MAX_ADDRESS_BLOCK, "asked for {n} after {end}");
                    if input.first() == Some(&b'P') {
                        assert!(end + n <= V1_MAX, "a v1 line never needs more than {V1_MAX} bytes");
                    }
                }
                Parse::Invalid(_) => {}
            }
        }
    }
}
