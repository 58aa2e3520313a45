//! The SMTP grammar the gateway speaks (RFC 5321, with RFC 1870 SIZE, RFC 6152 8BITMIME, RFC 6531 SMTPUTF8,
//! RFC 3030 CHUNKING, RFC 4954 AUTH): command lines in, typed commands out; replies out as text. Pure
//! functions, no I/O, so every odd client line is a unit test.
//!
//! It is lenient where real clients are sloppy (lower-case verbs, a space after `MAIL FROM:`, a bare address
//! without angle brackets) and strict where leniency would be a hole (a recipient must be an address with a
//! domain, except the bare `postmaster` of RFC 5321 §4.5.1; source routes are dropped as RFC 5321 §4.1.1.3
//! asks; [`is_special_local_part`] finds the old routing syntaxes for the session to refuse).
//!
//! [`DataDecoder`] turns the bytes of DATA or BDAT into the message: it finds the end of DATA (only
//! CRLF.CRLF), undoes dot-stuffing, and deals with bare CR, bare LF and NUL and with over-long lines while
//! reading, so no line is buffered beyond its limit and nothing ambiguous reaches the next hop.

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail { from: String, params: MailParams },
    Rcpt { to: String },
    Data,
    Bdat { size: u64, last: bool },
    Rset,
    Noop,
    Quit,
    Help,
    Vrfy,
    StartTls,
    Auth { mechanism: String, initial: Option<String> },
}

/// ESMTP parameters of MAIL FROM that change how the gateway behaves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    /// The size the client declared (RFC 1870).
    pub size: Option<u64>,
    /// `BODY=8BITMIME` or `BODY=BINARYMIME`.
    pub body: Option<String>,
    pub smtputf8: bool,
}

/// Why a command line was not understood; the reply code and text go back to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: String,
}

fn syntax(code: u16, enhanced: &'static str, text: impl Into<String>) -> SyntaxError {
    SyntaxError { code, enhanced, text: text.into() }
}

/// Parses one command line (without its CRLF).
pub fn parse_command(line: &[u8]) -> Result<Command, SyntaxError> {
    let line = std::str::from_utf8(line).map_err(|_| syntax(500, "5.5.2", "Command line is not valid UTF-8"))?;
    let line = line.trim_end_matches([' ', '\t']);
    let (verb, rest) = match line.find(' ') {
        Some(i) => (&line[..i], line[i + 1..].trim_start()),
        None => (line, ""),
    };
    let verb = verb.to_ascii_uppercase();
    match verb.as_str() {
        "EHLO" | "HELO" => {
            let name = rest.split_whitespace().next().unwrap_or("");
            if name.is_empty() {
                return Err(syntax(501, "5.5.4", format!("{verb} needs a domain name or address literal")));
            }
            Ok(if verb == "EHLO" { Command::Ehlo(name.to_string()) } else { Command::Helo(name.to_string()) })
        }
        "MAIL" => {
            let rest =
                strip_keyword(rest, "FROM:").ok_or_else(|| syntax(501, "5.5.4", "Syntax: MAIL FROM:<address>"))?;
            let (addr, params) = split_path(rest)?;
            let from = parse_path(addr, true)?;
            Ok(Command::Mail { from, params: parse_mail_params(params)? })
        }
        "RCPT" => {
            let rest = strip_keyword(rest, "TO:").ok_or_else(|| syntax(501, "5.5.4", "Syntax: RCPT TO:<address>"))?;
            let (addr, _params) = split_path(rest)?;
            let to = parse_path(addr, false)?;
            Ok(Command::Rcpt { to })
        }
        "DATA" => no_args(rest, Command::Data),
        "BDAT" => {
            let mut parts = rest.split_whitespace();
            let size = parts
                .next()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| syntax(501, "5.5.4", "Syntax: BDAT <size> [LAST]"))?;
            let last = match parts.next() {
                None => false,
                Some(w) if w.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(syntax(501, "5.5.4", "Syntax: BDAT <size> [LAST]")),
            };
            Ok(Command::Bdat { size, last })
        }
        "RSET" => no_args(rest, Command::Rset),
        "NOOP" => Ok(Command::Noop),
        "QUIT" => no_args(rest, Command::Quit),
        "HELP" => Ok(Command::Help),
        "VRFY" | "EXPN" => Ok(Command::Vrfy),
        "STARTTLS" => no_args(rest, Command::StartTls),
        "AUTH" => {
            let mut parts = rest.split_whitespace();
            let mechanism = parts
                .next()
                .map(str::to_ascii_uppercase)
                .ok_or_else(|| syntax(501, "5.5.4", "Syntax: AUTH <mechanism> [initial-response]"))?;
            Ok(Command::Auth { mechanism, initial: parts.next().map(str::to_string) })
        }
        "" => Err(syntax(500, "5.5.2", "Empty command")),
        _ => Err(syntax(500, "5.5.1", "Command not recognized")),
    }
}

fn no_args(rest: &str, cmd: Command) -> Result<Command, SyntaxError> {
    if rest.is_empty() {
        Ok(cmd)
    } else {
        Err(syntax(501, "5.5.4", "This command takes no arguments"))
    }
}

/// `FROM:` / `TO:` case-insensitively, tolerating a space after the colon.
fn strip_keyword<'a>(rest: &'a str, keyword: &str) -> Option<&'a str> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| rest[keyword.len()..].trim_start())
}

/// Splits `<path> params` into the path and the parameter text.
fn split_path(rest: &str) -> Result<(&str, &str), SyntaxError> {
    if let Some(stripped) = rest.strip_prefix('<') {
        // A quoted local part may contain '>'; find the closing bracket outside quotes.
        let mut in_quotes = false;
        let mut escaped = false;
        for (i, c) in stripped.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_quotes => escaped = true,
                '"' => in_quotes = !in_quotes,
                '>' if !in_quotes => return Ok((&stripped[..i], stripped[i + 1..].trim())),
                _ => {}
            }
        }
        Err(syntax(501, "5.1.7", "Unbalanced angle brackets in the address"))
    } else {
        // Bare address (not RFC 5321, but common): up to the first space.
        Ok(match rest.find(' ') {
            Some(i) => (&rest[..i], rest[i + 1..].trim()),
            None => (rest, ""),
        })
    }
}

/// Validates a mailbox path: the null path only for MAIL FROM, a source route dropped, an address that has a
/// local part and a domain.
fn parse_path(path: &str, null_allowed: bool) -> Result<String, SyntaxError> {
    if path.is_empty() {
        return if null_allowed { Ok(String::new()) } else { Err(syntax(501, "5.1.3", "A recipient is required")) };
    }
    // RFC 5321 §4.5.1: `RCPT TO:<Postmaster>` without a domain must be accepted; the session rewrites it.
    if !null_allowed && path.eq_ignore_ascii_case(POSTMASTER) {
        return Ok(POSTMASTER.to_string());
    }
    // RFC 5321 §4.1.1.3: "@a,@b:user@host" — the route is ignored.
    let path = match (path.starts_with('@'), path.find(':')) {
        (true, Some(i)) => &path[i + 1..],
        _ => path,
    };
    if path.len() > 320 {
        return Err(syntax(501, "5.1.3", "Address too long"));
    }
    if path.chars().any(|c| c.is_control() || c == ' ' && !path.starts_with('"')) {
        return Err(syntax(501, "5.1.3", "Bad character in the address"));
    }
    let at = path.rfind('@').ok_or_else(|| syntax(501, "5.1.3", "The address needs a domain (user@domain)"))?;
    let (local, domain) = (&path[..at], &path[at + 1..]);
    if local.is_empty() || domain.is_empty() || !valid_domain(domain) {
        return Err(syntax(501, "5.1.3", format!("Bad address syntax: {path}")));
    }
    Ok(path.to_string())
}

/// The recipient `RCPT TO:<postmaster>` (any case) parses to: the session routes it to the configured
/// postmaster address.
pub const POSTMASTER: &str = "postmaster";

/// The local part of an address: the text before its last `@` (the whole text when there is none).
pub fn local_part(address: &str) -> &str {
    address.rsplit_once('@').map_or(address, |(local, _)| local)
}

/// Whether a local part uses one of the old routing syntaxes or quoting: `%` (the percent hack), `!` (UUCP
/// bang paths), `@` or `:` (source routes and nested addresses), a backslash or a quoted string. A next hop
/// that still routes on any of them would relay the message elsewhere, so a gateway in front of it refuses
/// them unless the domain's administrator allows them.
pub fn is_special_local_part(local: &str) -> bool {
    local.contains(['%', '!', '@', ':', '\\', '"'])
}

fn valid_domain(d: &str) -> bool {
    if d.starts_with('[') && d.ends_with(']') {
        let inner = &d[1..d.len() - 1];
        return inner.parse::<std::net::Ipv4Addr>().is_ok()
            || inner.strip_prefix("IPv6:").is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !d.starts_with('.')
        && !d.ends_with('.')
        && !d.contains("..")
        && d.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.' || !c.is_ascii())
}

fn parse_mail_params(params: &str) -> Result<MailParams, SyntaxError> {
    let mut out = MailParams::default();
    for p in params.split_whitespace() {
        let (key, value) = match p.find('=') {
            Some(i) => (&p[..i], Some(&p[i + 1..])),
            None => (p, None),
        };
        match (key.to_ascii_uppercase().as_str(), value) {
            ("SIZE", Some(v)) => {
                out.size = Some(v.parse().map_err(|_| syntax(501, "5.5.4", "SIZE must be a number"))?);
            }
            ("BODY", Some(v)) => {
                let v = v.to_ascii_uppercase();
                if v != "7BIT" && v != "8BITMIME" && v != "BINARYMIME" {
                    return Err(syntax(501, "5.5.4", "BODY must be 7BIT or 8BITMIME"));
                }
                out.body = Some(v);
            }
            ("SMTPUTF8", None) => out.smtputf8 = true,
            // RFC 3461 DSN and RFC 4954 AUTH= parameters are accepted and not acted on.
            ("RET" | "ENVID" | "AUTH", _) => {}
            _ => return Err(syntax(555, "5.5.4", format!("Unsupported MAIL parameter {key}"))),
        }
    }
    Ok(out)
}

/// Why message data was refused. The data is still read to its end, so the session stays in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataProblem {
    /// Larger than `max_message_bytes`.
    TooBig,
    /// A line longer than `max_line_octets`.
    LineTooLong,
    /// A bare CR or bare LF, with `bare_line_endings = "reject"`.
    BareLineEnding,
    /// A NUL octet, with `bare_line_endings = "reject"`.
    Nul,
}

/// How the data is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// DATA: dot-stuffed, ended by CRLF.CRLF.
    Dotted,
    /// BDAT chunks (RFC 3030): sizes given, no stuffing and no end marker.
    Chunked,
}

/// Where the decoder is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wire {
    /// After a CRLF (or at the start): a dot here is stuffing or the end marker.
    LineStart,
    /// Inside a line.
    Mid,
    /// After a CR whose LF has not been seen yet.
    Cr,
    /// A dot at the start of a line.
    Dot,
    /// A dot at the start of a line, then CR: the end of DATA if LF follows.
    DotCr,
}

/// Decodes message data as it arrives, byte by byte, whatever the chunks it comes in (the result does not
/// depend on how the bytes were split). Only CRLF.CRLF, with both CRLFs real, ends DATA: a dot after a bare
/// LF or bare CR is just a line that starts with a dot. Bare CR and bare LF become CRLF or make the message
/// refused ([`BareLineEndings`](mailsift_gateway::config::BareLineEndings)); every line is counted while it is read, and
/// once anything is wrong the decoder stops keeping data and only looks for the end.
pub struct DataDecoder {
    framing: Framing,
    bare: mailsift_gateway::config::BareLineEndings,
    max_bytes: usize,
    max_line: usize,
    wire: Wire,
    line_len: usize,
    out: Vec<u8>,
    problem: Option<DataProblem>,
    ended: bool,
}

impl DataDecoder {
    pub fn new(
        framing: Framing,
        bare: mailsift_gateway::config::BareLineEndings,
        max_bytes: usize,
        max_line: usize,
    ) -> DataDecoder {
        DataDecoder {
            framing,
            bare,
            max_bytes,
            max_line,
            wire: Wire::LineStart,
            line_len: 0,
            out: Vec::with_capacity(max_bytes.min(64 * 1024)),
            problem: None,
            ended: false,
        }
    }

    /// Consumes bytes and returns how many it used: all of them, or (DATA) up to and including the end of
    /// data marker, so what the client pipelined after it stays for the command reader.
    pub fn feed(&mut self, input: &[u8]) -> usize {
        if self.ended {
            return 0;
        }
        for (i, &b) in input.iter().enumerate() {
            self.step(b);
            if self.ended {
                return i + 1;
            }
        }
        input.len()
    }

    /// Whether the end of DATA was seen (never for BDAT: the last chunk ends it).
    pub fn is_done(&self) -> bool {
        self.ended
    }

    /// The first problem seen so far, if any.
    pub fn problem(&self) -> Option<DataProblem> {
        self.problem
    }

    /// The message with CRLF line ends, or why it is refused.
    pub fn finish(mut self) -> Result<Vec<u8>, DataProblem> {
        // BDAT: a message that ends in a CR has a bare CR at its end.
        if self.wire == Wire::Cr {
            self.bare_line_end();
        }
        match self.problem {
            Some(p) => Err(p),
            None => Ok(self.out),
        }
    }

    fn step(&mut self, b: u8) {
        match (self.wire, b) {
            (Wire::LineStart, b'.') if self.framing == Framing::Dotted => self.wire = Wire::Dot,
            (Wire::LineStart | Wire::Mid, b'\r') => self.wire = Wire::Cr,
            (Wire::LineStart | Wire::Mid, b'\n') => {
                self.bare_line_end();
                // Not a line start on the wire: a dot after a bare LF is never the end of data.
                self.wire = Wire::Mid;
            }
            (Wire::LineStart | Wire::Mid, _) => {
                self.content(b);
                self.wire = Wire::Mid;
            }
            (Wire::Cr, b'\n') => {
                self.line_end();
                self.wire = Wire::LineStart;
            }
            (Wire::Cr, b'\r') => self.bare_line_end(),
            (Wire::Cr, _) => {
                self.bare_line_end();
                self.content(b);
                self.wire = Wire::Mid;
            }
            (Wire::Dot, b'\r') => self.wire = Wire::DotCr,
            (Wire::Dot, _) => {
                // RFC 5321 §4.5.2: the leading dot was stuffing; the byte after it is the line's first.
                // (`Mid` handles it without looking at the dot again: one level, whatever the input.)
                self.wire = Wire::Mid;
                self.step(b);
            }
            (Wire::DotCr, b'\n') => self.ended = true,
            (Wire::DotCr, _) => {
                // A line "." followed by a bare CR: the dot was stuffing, the CR is bare.
                self.wire = Wire::Cr;
                self.step(b);
            }
        }
    }

    fn fail(&mut self, p: DataProblem) {
        if self.problem.is_none() {
            self.problem = Some(p);
        }
        self.out = Vec::new();
    }

    fn push(&mut self, bytes: &[u8]) {
        if self.problem.is_some() {
            return;
        }
        if self.out.len() + bytes.len() > self.max_bytes {
            return self.fail(DataProblem::TooBig);
        }
        self.out.extend_from_slice(bytes);
    }

    fn line_end(&mut self) {
        self.line_len = 0;
        self.push(b"\r\n");
    }

    fn bare_line_end(&mut self) {
        match self.bare {
            mailsift_gateway::config::BareLineEndings::Normalize => self.line_end(),
            mailsift_gateway::config::BareLineEndings::Reject => self.fail(DataProblem::BareLineEnding),
        }
    }

    fn content(&mut self, b: u8) {
        if b == 0 {
            match self.bare {
                // NUL is not text (RFC 5321 §4.5.2, RFC 6152), and a next hop that drops it would see a
                // different line: it goes.
                mailsift_gateway::config::BareLineEndings::Normalize => return,
                mailsift_gateway::config::BareLineEndings::Reject => return self.fail(DataProblem::Nul),
            }
        }
        self.line_len += 1;
        if self.line_len > self.max_line {
            return self.fail(DataProblem::LineTooLong);
        }
        self.push(&[b]);
    }
}

pub use mailsift_gateway::text::{civil_from_days, domain_of, rfc5322_date, sanitize};

/// Formats a reply; a multi-line text becomes `code-text` lines and a final `code text` line (RFC 5321 §4.2.1).
pub fn reply(code: u16, enhanced: &str, text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::with_capacity(text.len() + 16 * lines.len().max(1));
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate().chain(if lines.is_empty() { Some((0, &"")) } else { None }) {
        let sep = if i == last { ' ' } else { '-' };
        out.push_str(&code.to_string());
        out.push(sep);
        if !enhanced.is_empty() {
            out.push_str(enhanced);
            out.push(' ');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// Decodes an SMTP AUTH PLAIN response (RFC 4616): authzid NUL authcid NUL password.
pub fn decode_plain(b64: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    let mut parts = raw.split(|&b| b == 0);
    let _authzid = parts.next()?;
    let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
    let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
    parts.next().is_none().then_some((user, pass))
}

pub fn decode_b64_text(b64: &str) -> Option<String> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok()?;
    String::from_utf8(raw).ok()
}

pub fn encode_b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_from_variants() {
        let c = parse_command(b"MAIL FROM:<a@example.com> SIZE=1000 BODY=8BITMIME").unwrap();
        assert_eq!(
            c,
            Command::Mail {
                from: "a@example.com".into(),
                params: MailParams { size: Some(1000), body: Some("8BITMIME".into()), smtputf8: false }
            }
        );
        assert!(matches!(parse_command(b"mail from: <>").unwrap(), Command::Mail { from, .. } if from.is_empty()));
        assert!(
            matches!(parse_command(b"MAIL FROM:a@b.example").unwrap(), Command::Mail { from, .. } if from == "a@b.example")
        );
        assert!(matches!(
            parse_command(b"MAIL FROM:<@relay.example:u@example.org>").unwrap(),
            Command::Mail { from, .. } if from == "u@example.org"
        ));
        assert_eq!(parse_command(b"MAIL FROM:<a@b.example> FOO=1").unwrap_err().code, 555);
        assert_eq!(parse_command(b"MAIL FROM:<a@b.example").unwrap_err().code, 501);
        assert_eq!(parse_command(b"MAIL TO:<a@b.example>").unwrap_err().code, 501);
    }

    #[test]
    fn rcpt_needs_an_address_with_a_domain() {
        assert_eq!(
            parse_command(b"RCPT TO:<bob@example.com>").unwrap(),
            Command::Rcpt { to: "bob@example.com".into() }
        );
        assert_eq!(parse_command(b"RCPT TO:<>").unwrap_err().code, 501);
        assert_eq!(parse_command(b"RCPT TO:<Postmaster>").unwrap(), Command::Rcpt { to: "postmaster".into() });
        assert_eq!(parse_command(b"RCPT TO:<postmaster2>").unwrap_err().code, 501);
        assert_eq!(parse_command(b"MAIL FROM:<postmaster>").unwrap_err().code, 501);
        assert_eq!(parse_command(b"RCPT TO:<a@bad..domain>").unwrap_err().code, 501);
        assert!(parse_command(b"RCPT TO:<a@[127.0.0.1]>").is_ok());
    }

    #[test]
    fn other_commands() {
        assert_eq!(parse_command(b"ehlo client.example").unwrap(), Command::Ehlo("client.example".into()));
        assert_eq!(parse_command(b"EHLO").unwrap_err().code, 501);
        assert_eq!(parse_command(b"BDAT 100 LAST").unwrap(), Command::Bdat { size: 100, last: true });
        assert_eq!(parse_command(b"BDAT x").unwrap_err().code, 501);
        assert_eq!(parse_command(b"DATA extra").unwrap_err().code, 501);
        assert_eq!(parse_command(b"XYZZY").unwrap_err().code, 500);
        assert_eq!(parse_command(b"\xff\xfe").unwrap_err().code, 500);
        assert_eq!(
            parse_command(b"AUTH plain AGEAYg==").unwrap(),
            Command::Auth { mechanism: "PLAIN".into(), initial: Some("AGEAYg==".into()) }
        );
    }

    #[test]
    fn replies_fold_lines() {
        assert_eq!(reply(250, "2.0.0", "OK"), "250 2.0.0 OK\r\n");
        assert_eq!(reply(250, "", "a\nb"), "250-a\r\n250 b\r\n");
        assert_eq!(sanitize("bad\r\nline", 100), "bad  line");
    }

    #[test]
    fn plain_auth() {
        assert_eq!(decode_plain(&encode_b64("\0user\0secret")), Some(("user".into(), "secret".into())));
        assert_eq!(decode_plain("!!!"), None);
    }

    #[test]
    fn routing_syntaxes_in_local_parts() {
        for rcpt in [
            "victim%evil.example@example.com",
            "\"victim%evil.example\"@example.com",
            "evil.example!victim@example.com",
            "\"victim@evil.example\"@example.com",
            "victim@evil.example@example.com",
            "victim\\@evil.example@example.com",
            "victim:evil.example@example.com",
        ] {
            let line = format!("RCPT TO:<{rcpt}>");
            let Ok(Command::Rcpt { to }) = parse_command(line.as_bytes()) else {
                // Refused as syntax is refused too; these all parse today, so the session must judge them.
                panic!("{rcpt} should parse and be left to the session");
            };
            assert!(is_special_local_part(local_part(&to)), "{rcpt} -> {to}");
            assert_eq!(domain_of(&to), "example.com", "{rcpt}");
        }
        for plain in ["bob@example.com", "bob.smith+tag@example.com", "o'brien@example.com"] {
            assert!(!is_special_local_part(local_part(plain)), "{plain}");
        }
    }

    use mailsift_gateway::config::BareLineEndings::{self, Normalize, Reject};

    fn decode(framing: Framing, bare: BareLineEndings, wire: &[u8]) -> (Result<Vec<u8>, DataProblem>, usize) {
        let mut d = DataDecoder::new(framing, bare, 1 << 20, 998);
        let used = d.feed(wire);
        (d.finish(), used)
    }

    #[test]
    fn only_crlf_dot_crlf_ends_data() {
        let (r, used) = decode(Framing::Dotted, Normalize, b"a\r\n..b\r\n.\r\nMAIL FROM:<x@y>\r\n");
        assert_eq!(r.unwrap(), b"a\r\n.b\r\n");
        assert_eq!(used, 11, "what follows the end stays for the command reader");
        // The 2023 smuggling variants: none ends the data, and nothing ambiguous is left in it.
        for end in [&b"\n.\n"[..], b"\n.\r\n", b"\r.\r", b"\r.\r\n", b"\r\n.\r", b"\r\n.\n", b"\r\n\x00.\r\n"] {
            let mut wire = b"text".to_vec();
            wire.extend_from_slice(end);
            wire.extend_from_slice(
                b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nsmuggled\r\n",
            );
            let mut d = DataDecoder::new(Framing::Dotted, Normalize, 1 << 20, 998);
            assert_eq!(d.feed(&wire), wire.len(), "{end:?} must not end the data");
            assert!(!d.is_done());
            assert_eq!(d.feed(b".\r\n"), 3);
            let data = d.finish().unwrap();
            assert!(data.ends_with(b"smuggled\r\n"), "{end:?}");
            assert!(!data.contains(&0), "{end:?}");
            // Every line ends with CRLF; no bare CR or LF is left for a next hop to read differently.
            for (i, &b) in data.iter().enumerate() {
                if b == b'\n' {
                    assert_eq!(data[i - 1], b'\r', "{end:?}: {data:?}");
                }
                if b == b'\r' {
                    assert_eq!(data.get(i + 1), Some(&b'\n'), "{end:?}: {data:?}");
                }
            }
            let mut strict = DataDecoder::new(Framing::Dotted, Reject, 1 << 20, 998);
            strict.feed(&wire);
            strict.feed(b".\r\n");
            assert!(strict.is_done());
            assert!(
                matches!(strict.finish(), Err(DataProblem::BareLineEnding | DataProblem::Nul)),
                "{end:?} refused in reject mode"
            );
        }
    }

    #[test]
    fn long_lines_and_size_are_checked_while_reading() {
        let mut d = DataDecoder::new(Framing::Dotted, Normalize, 1 << 20, 998);
        let line = vec![b'x'; 998];
        d.feed(&line);
        d.feed(b"\r\n");
        assert_eq!(d.problem(), None, "998 octets are allowed");
        d.feed(&line);
        d.feed(b"xx");
        assert_eq!(d.problem(), Some(DataProblem::LineTooLong));
        // Nothing more is kept, however long the line goes on, and the end is still found.
        for _ in 0..100 {
            d.feed(&[b'y'; 10_000]);
        }
        assert!(d.out.capacity() <= 64 * 1024, "no unbounded buffering");
        d.feed(b"\r\n.\r\n");
        assert!(d.is_done());
        assert_eq!(d.finish(), Err(DataProblem::LineTooLong));
        let (r, _) = decode(Framing::Dotted, Normalize, &[b"a\r\n".repeat(1 << 19).as_slice(), b".\r\n"].concat());
        assert_eq!(r, Err(DataProblem::TooBig));
    }

    #[test]
    fn bdat_chunks_are_decoded_the_same_way() {
        // No stuffing, no end marker; bare line ends across a chunk boundary.
        let mut d = DataDecoder::new(Framing::Chunked, Normalize, 1 << 20, 998);
        d.feed(b"a\r");
        d.feed(b"\n.b\rc\n");
        d.feed(b"\r\n.\r\nd\r");
        assert!(!d.is_done());
        assert_eq!(d.finish().unwrap(), b"a\r\n.b\r\nc\r\n\r\n.\r\nd\r\n");
        let (r, _) = decode(Framing::Chunked, Reject, b"a\rb\r\n");
        assert_eq!(r, Err(DataProblem::BareLineEnding));
    }

    proptest::proptest! {
        // PROPTEST_CASES sets the number of cases (the default configuration reads it).

        #[test]
        fn any_command_line_parses_or_is_refused_without_panic(line in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            match parse_command(&line) {
                Ok(Command::Mail { from, .. }) => proptest::prop_assert!(from.len() <= line.len()),
                Ok(Command::Rcpt { to }) => proptest::prop_assert!(to.len() <= line.len()),
                Ok(Command::Ehlo(n) | Command::Helo(n)) => proptest::prop_assert!(n.len() <= line.len()),
                Ok(Command::Auth { mechanism, initial }) => {
                    proptest::prop_assert!(mechanism.len() + initial.map_or(0, |i| i.len()) <= line.len())
                }
                Ok(_) => {}
                Err(e) => {
                    proptest::prop_assert!((500..600).contains(&e.code));
                    proptest::prop_assert!(e.text.len() <= 400 + line.len());
                    proptest::prop_assert!(!e.text.contains(['\r', '\n']));
                }
            }
        }

        #[test]
        fn smtp_shaped_command_lines_never_panic(
            verb in proptest::sample::select(vec!["MAIL FROM:", "RCPT TO:", "EHLO ", "BDAT ", "AUTH ", "mail from: "]),
            rest in "[<>@\"\\\\%!:., a-zA-Z0-9=\\[\\]\u{e9}-]{0,80}",
        ) {
            let line = format!("{verb}{rest}");
            let _ = parse_command(line.as_bytes());
        }

        #[test]
        fn any_data_decodes_the_same_however_it_is_split(
            wire in proptest::collection::vec(proptest::sample::select(vec![b'a', b'.', b'\r', b'\n', 0u8, b'x']), 0..400),
            cut in 0usize..400,
            reject in proptest::bool::ANY,
            chunked in proptest::bool::ANY,
        ) {
            let bare = if reject { Reject } else { Normalize };
            let framing = if chunked { Framing::Chunked } else { Framing::Dotted };
            let (max_bytes, max_line) = (300, 80);
            let mut whole = DataDecoder::new(framing, bare, max_bytes, max_line);
            let used = whole.feed(&wire);
            let done = whole.is_done();
            let cut = cut.min(wire.len());
            let mut split = DataDecoder::new(framing, bare, max_bytes, max_line);
            let first = split.feed(&wire[..cut]);
            let second = if split.is_done() { 0 } else { split.feed(&wire[cut..]) };
            proptest::prop_assert_eq!(used, first + second);
            proptest::prop_assert_eq!(done, split.is_done());
            if done {
                // The end is CRLF.CRLF on the wire, and only there.
                proptest::prop_assert!(used >= 3 && wire[..used].ends_with(b".\r\n"));
                proptest::prop_assert!(used == 3 || wire[..used].ends_with(b"\r\n.\r\n"));
            } else {
                proptest::prop_assert_eq!(used, wire.len());
            }
            let (a, b) = (whole.finish(), split.finish());
            proptest::prop_assert_eq!(&a, &b);
            if let Ok(data) = a {
                proptest::prop_assert!(data.len() <= max_bytes);
                proptest::prop_assert!(!data.contains(&0));
                for (i, &c) in data.iter().enumerate() {
                    if c == b'\n' { proptest::prop_assert!(i > 0 && data[i - 1] == b'\r'); }
                    if c == b'\r' { proptest::prop_assert!(data.get(i + 1) == Some(&b'\n')); }
                }
                for line in data.split(|&c| c == b'\n') {
                    proptest::prop_assert!(line.len() <= max_line + 1);
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(wire in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let mut d = DataDecoder::new(Framing::Dotted, Normalize, 1000, 998);
            let used = d.feed(&wire);
            proptest::prop_assert!(used <= wire.len());
            if let Ok(data) = d.finish() {
                proptest::prop_assert!(data.len() <= 1000);
            }
        }
    }

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_795_450_000), "Mon, 23 Nov 2026 16:06:40 +0000");
    }
}
