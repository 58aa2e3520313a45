//! Limits on the MIME structure, enforced before `mail-parser` builds anything.
//!
//! Why: `mail-parser` parses top-level MIME iteratively, but what it builds is a tree. A `message/rfc822`
//! part nests a whole `Message`, and the tree of nested messages is dropped recursively (and, inside a
//! base64 or quoted-printable `message/*` part, which it decodes and parses again up to three levels deep,
//! copied recursively by `into_owned`, each level copying the whole decoded buffer). So one 80 KB message
//! holding 2,500 nested `message/rfc822` headers under quoted-printable overflows a worker's stack, and below
//! that the copies grow with the square of the depth (2,000 levels in 160 KB took 336 MB).
//!
//! What: [`safe_prefix`] walks the scan window once per round, without recursion on the sender's nesting
//! (its only recursion is into decoded `message/*` bodies, at most [`MAX_NESTED_ENCODED`] levels, as
//! `mail-parser` does), and returns how many leading bytes `mail-parser` may parse without passing a limit:
//! nesting depth of `multipart/*` and `message/*` parts ([`MAX_MIME_DEPTH`]), parts ([`MAX_MIME_PARTS`]),
//! header fields per header block ([`MAX_HEADERS_PER_BLOCK`]) and in all ([`MAX_HEADERS_TOTAL`]), bytes
//! `mail-parser` decodes or copies ([`decoded_budget`]) and bytes it scans again after a failed search for a
//! boundary ([`scan_work_budget`]). Past a limit the message is judged on the bytes before it, and the parse
//! says so (`ParseProblems::mime_limit`, reported as `MIME_LIMIT_EXCEEDED` by [`report`]).
//!
//! How: the walk is a replica of `mail-parser` 0.11's parse loop (`parsers/message.rs`) driven by the very
//! stream primitives that loop uses (`MessageStream::parse_headers`, `seek_next_part`, the MIME decoders,
//! `is_multipart_end`), so both agree on where every header block, boundary and part is; `multipart/digest`
//! children without a Content-Type are `message/rfc822`, as there. Cutting the window can change what the
//! forward searches for boundaries find, so the cut window is walked again until it passes (at most
//! [`MAX_ROUNDS`] rounds, then only the top header block is kept). `tests/mime_limits.rs` checks the
//! replica against what `mail-parser` builds, on real and adversarial messages.
//!
//! Cost: each round is linear in the window (header blocks are counted by a byte scan before `mail-parser`
//! allocates their fields); transient memory is the decoded bodies, each at most the size of what it decodes.
//! Peak memory of a whole parse is bounded in the message module's docs (`message/mod.rs`).

use std::borrow::Cow;
use std::fmt;
use std::sync::LazyLock;

use mail_parser::parsers::MessageStream;
use mail_parser::{GetHeader, Header, HeaderName, HeaderValue, MessageParser, PartType};

use super::Message;
use crate::symbols::Hits;

/// Nesting depth of `multipart/*` and `message/*` parts (the top-level message is depth 0). Real mail nests a
/// few levels (mixed > alternative > related, a forwarded message inside); 32 is a chain of more than a dozen
/// messages forwarded as attachments, each in its own multipart. The limit keeps `mail-parser`'s recursive
/// drop and copy of nested messages to a few kilobytes of stack.
pub const MAX_MIME_DEPTH: usize = 32;
/// MIME parts in the whole message, nested messages included. Real mail has tens at most; a large digest a
/// few hundred. Each part costs `mail-parser` a few hundred bytes of bookkeeping and our views a string or two.
pub const MAX_MIME_PARTS: usize = 1000;
/// Header fields in one header block. Long relay chains and signatures make 50 to 100; 1,000 is an attack
/// (each field costs about a hundred bytes of parsed structure, far more than its bytes on the wire).
pub const MAX_HEADERS_PER_BLOCK: usize = 1000;
/// Header fields in all header blocks together: 1,000 parts of 20 fields each, a digest larger than any
/// mailing list sends. It bounds the parsed fields to a constant whatever the number of parts.
pub const MAX_HEADERS_TOTAL: usize = 20_000;
/// Bytes `mail-parser` may decode or copy per byte of the scan window, plus [`DECODED_BYTES_BASE`]. Decoded
/// bodies are at most the size of what they decode, at most three levels deep; a decoded `message/*` part is
/// then copied once more for itself and once for every message nested in it. Four allows a base64 forwarded
/// message that holds three forwarded messages of its own, at full size.
pub const DECODED_BYTES_PER_BYTE: usize = 4;
/// See [`DECODED_BYTES_PER_BYTE`]: the allowance for small messages.
pub const DECODED_BYTES_BASE: usize = 1 << 20;
/// Bytes `mail-parser` may scan again, per byte of the window plus [`SCAN_WORK_BASE`], after a search for a
/// boundary failed and it went back (a part whose closing boundary is missing is searched to the end twice).
/// Real mail fails such a search once or twice near its end; thousands of parts that each name a missing
/// boundary would make the parse quadratic in time.
pub const SCAN_WORK_PER_BYTE: usize = 8;
/// See [`SCAN_WORK_PER_BYTE`].
pub const SCAN_WORK_BASE: usize = 1 << 20;
/// `mail-parser`'s own bound on re-parsing decoded `message/*` bodies (`MAX_NESTED_ENCODED`).
pub const MAX_NESTED_ENCODED: usize = 3;
/// Walks of a cut window before falling back to the top header block: a cut moves only when the first
/// walk's boundary searches ran past it, so one more round settles almost every message.
pub const MAX_ROUNDS: usize = 4;

/// Which limit stopped the parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MimeLimit {
    Depth,
    Parts,
    HeadersPerBlock,
    HeadersTotal,
    DecodedBytes,
    ScanWork,
}

impl MimeLimit {
    pub fn as_str(self) -> &'static str {
        match self {
            MimeLimit::Depth => "depth",
            MimeLimit::Parts => "parts",
            MimeLimit::HeadersPerBlock => "headers_per_block",
            MimeLimit::HeadersTotal => "headers_total",
            MimeLimit::DecodedBytes => "decoded_bytes",
            MimeLimit::ScanWork => "scan_work",
        }
    }
}

impl fmt::Display for MimeLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MimeLimit::Depth => write!(f, "MIME nesting deeper than {MAX_MIME_DEPTH} levels"),
            MimeLimit::Parts => write!(f, "more than {MAX_MIME_PARTS} MIME parts"),
            MimeLimit::HeadersPerBlock => write!(f, "more than {MAX_HEADERS_PER_BLOCK} header fields in one block"),
            MimeLimit::HeadersTotal => write!(f, "more than {MAX_HEADERS_TOTAL} header fields in all"),
            MimeLimit::DecodedBytes => {
                write!(f, "encoded message parts decoding past {DECODED_BYTES_PER_BYTE}x the size")
            }
            MimeLimit::ScanWork => write!(f, "boundary searches rescanning past {SCAN_WORK_PER_BYTE}x the size"),
        }
    }
}

/// A limit reached, and the offset in the scan window before which the message was parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct LimitHit {
    pub limit: MimeLimit,
    pub offset: usize,
}

/// What one walk counted (the last walk, over the window that passed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Walked {
    /// Deepest nesting reached (0: the top-level message only).
    pub max_depth: usize,
    pub parts: usize,
    pub headers: usize,
    pub decoded_bytes: usize,
    pub scan_work: usize,
}

/// The leading bytes that may be parsed, and the limit that stopped the walk, if one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SafePrefix {
    pub len: usize,
    pub hit: Option<LimitHit>,
    pub walked: Walked,
    /// Walks made (1 when no limit was reached).
    pub rounds: usize,
}

/// The decoded-bytes allowance for a window of `len` bytes.
pub fn decoded_budget(len: usize) -> usize {
    len.saturating_mul(DECODED_BYTES_PER_BYTE).saturating_add(DECODED_BYTES_BASE)
}

/// The rescan allowance for a window of `len` bytes.
pub fn scan_work_budget(len: usize) -> usize {
    len.saturating_mul(SCAN_WORK_PER_BYTE).saturating_add(SCAN_WORK_BASE)
}

/// How many leading bytes of `data` `mail-parser` may parse within every limit (see the module docs).
pub fn safe_prefix(data: &[u8]) -> SafePrefix {
    let budgets = (decoded_budget(data.len()), scan_work_budget(data.len()));
    let mut len = data.len();
    let mut first_hit = None;
    for round in 1..=MAX_ROUNDS {
        let mut walk = Walk::new(budgets);
        match walk.stream(&data[..len], MAX_NESTED_ENCODED, 0) {
            Ok(_) => return SafePrefix { len, hit: first_hit, walked: walk.walked, rounds: round },
            Err(hit) => {
                first_hit.get_or_insert(hit);
                // A hit at the end would not shorten the window: take one byte off so the rounds progress.
                len = hit.offset.min(len.saturating_sub(1));
            }
        }
    }
    // Rounds kept finding new limits (the cuts keep changing what the boundary searches see): keep only the
    // top header block, which holds one part at depth 0 whatever follows it.
    let top = count_headers(data, 0);
    for len in [top.block_end.min(top.over_limit.unwrap_or(usize::MAX)), 0] {
        let mut walk = Walk::new(budgets);
        if walk.stream(&data[..len], MAX_NESTED_ENCODED, 0).is_ok() {
            return SafePrefix { len, hit: first_hit, walked: walk.walked, rounds: MAX_ROUNDS + 1 };
        }
    }
    SafePrefix { len: 0, hit: first_hit, walked: Walked::default(), rounds: MAX_ROUNDS + 2 }
}

/// Reports a limit the parse reached as `MIME_LIMIT_EXCEEDED` (registered in `symbols::PARSE_SYMBOLS`).
pub fn report(m: &Message<'_>, hits: &mut Hits<'_>) {
    if let Some(h) = m.problems.mime_limit {
        hits.hit(
            crate::symbols::parse_sym::MIME_LIMIT_EXCEEDED,
            format!("{} (parsed the first {} bytes)", h.limit, h.offset),
        );
    }
}

/// Depth and parts of what `mail-parser` built, walked without recursion (for checking the walk against the
/// parser, and as a last guard in `Message::parse`).
pub fn measure(msg: &mail_parser::Message<'_>) -> Walked {
    let mut walked = Walked::default();
    let mut pending: Vec<(&mail_parser::Message<'_>, usize)> = vec![(msg, 0)];
    while let Some((m, base)) = pending.pop() {
        walked.parts += m.parts.len();
        // A part's depth is its parent multipart's plus one; parts come after their parents.
        let mut depth = vec![0usize; m.parts.len()];
        for (i, part) in m.parts.iter().enumerate() {
            walked.headers += part.headers.len();
            let d = depth[i];
            walked.max_depth = walked.max_depth.max(base + d);
            match &part.body {
                PartType::Multipart(children) => {
                    for &c in children {
                        if let Some(slot) = depth.get_mut(c as usize) {
                            if c as usize > i {
                                *slot = d + 1;
                            }
                        }
                    }
                }
                PartType::Message(inner) => pending.push((inner, base + d + 1)),
                _ => {}
            }
        }
    }
    walked
}

/// Drops a parsed message without recursion: nested messages are detached and dropped one by one, so a tree
/// deeper than the limits (should the walk ever disagree with the parser) cannot exhaust the stack.
pub fn dismantle(msg: mail_parser::Message<'_>) {
    let mut pending = vec![msg];
    while let Some(mut m) = pending.pop() {
        for part in &mut m.parts {
            if matches!(part.body, PartType::Message(_)) {
                if let PartType::Message(inner) = std::mem::take(&mut part.body) {
                    pending.push(inner);
                }
            }
        }
    }
}

/// A header block as a byte scan sees it, mirroring `MessageStream::parse_headers`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct HeaderCount {
    fields: usize,
    /// Offset just past the block (past its empty line), or the end of the data.
    block_end: usize,
    /// Where the field past [`MAX_HEADERS_PER_BLOCK`] starts, if there is one.
    over_limit: Option<usize>,
}

/// Counts the header fields of the block starting at `start` without allocating: a field is a name ended by
/// a colon, its value runs to a line feed not followed by a space or tab; the block ends at a line holding
/// only white space where a field could start. Lines without a colon are skipped, as the parser skips them.
fn count_headers(data: &[u8], start: usize) -> HeaderCount {
    let len = data.len();
    let mut p = start;
    let mut fields = 0;
    loop {
        // White space before a field; a line feed here ends the block.
        loop {
            match data.get(p) {
                None => return HeaderCount { fields, block_end: len, over_limit: None },
                Some(b'\n') => return HeaderCount { fields, block_end: p + 1, over_limit: None },
                Some(c) if !c.is_ascii_whitespace() => break,
                Some(_) => p += 1,
            }
        }
        let field_start = p;
        let mut token = false;
        let mut named = false;
        while let Some(&c) = data.get(p) {
            p += 1;
            match c {
                b':' if token => {
                    named = true;
                    break;
                }
                b'\n' => break,
                c if !c.is_ascii_whitespace() => token = true,
                _ => {}
            }
        }
        // A name cut off by the end of the data is still a field: the parser keeps it, with an empty value.
        let name_at_end = p >= len && token;
        if !named && !name_at_end {
            if p >= len {
                return HeaderCount { fields, block_end: len, over_limit: None };
            }
            continue;
        }
        if fields == MAX_HEADERS_PER_BLOCK {
            return HeaderCount { fields, block_end: len, over_limit: Some(field_start) };
        }
        fields += 1;
        // The value, folded lines included.
        loop {
            match memchr::memchr(b'\n', &data[p.min(len)..]) {
                None => {
                    p = len;
                    break;
                }
                Some(i) => {
                    p += i + 1;
                    if !matches!(data.get(p), Some(b' ' | b'\t')) {
                        break;
                    }
                }
            }
        }
    }
}

/// `mail-parser`'s classification of a part (`mime_type` in its `parsers/message.rs`), as far as nesting
/// needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Multipart,
    Digest,
    Message,
    Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transfer {
    None,
    Base64,
    QuotedPrintable,
}

/// One frame of the parser's state: what kind of part holds the parts being read, and the boundary that
/// ends them.
struct Frame {
    kind: Kind,
    boundary: Option<Vec<u8>>,
}

/// The header parser of the walk: `mail-parser`'s default parsers, except that the fields whose parsing
/// costs most and whose values the walk never reads (Received lines, address lists, message ids) are skipped
/// to their end instead. Skipping must leave every field boundary where the default parser leaves it, or the
/// walk would see another structure than the parser: true of these fields, checked on real messages and
/// arbitrary bytes by `skipping_fields_keeps_the_field_boundaries*`, and false of some others (the date
/// parser can run on into the next line, so dates keep their parser).
fn structure_parser() -> &'static MessageParser {
    static PARSER: LazyLock<MessageParser> = LazyLock::new(|| {
        let skipped = [
            HeaderName::Received,
            HeaderName::From,
            HeaderName::To,
            HeaderName::Cc,
            HeaderName::Bcc,
            HeaderName::ReplyTo,
            HeaderName::Sender,
            HeaderName::ResentTo,
            HeaderName::ResentFrom,
            HeaderName::ResentBcc,
            HeaderName::ResentCc,
            HeaderName::ResentSender,
            HeaderName::ListArchive,
            HeaderName::ListHelp,
            HeaderName::ListId,
            HeaderName::ListOwner,
            HeaderName::ListPost,
            HeaderName::ListSubscribe,
            HeaderName::ListUnsubscribe,
            HeaderName::MessageId,
            HeaderName::References,
            HeaderName::InReplyTo,
            HeaderName::ReturnPath,
            HeaderName::ResentMessageId,
        ];
        // The rest as the default parser has them (with a header map, unlisted fields are parsed raw).
        let kept = MessageParser::new()
            .header_text(HeaderName::Subject)
            .header_text(HeaderName::Comments)
            .header_text(HeaderName::ContentDescription)
            .header_text(HeaderName::ContentLocation)
            .header_text(HeaderName::ContentTransferEncoding)
            .header_date(HeaderName::Date)
            .header_date(HeaderName::ResentDate)
            .header_id(HeaderName::ContentId)
            .header_comma_separated(HeaderName::Keywords)
            .header_comma_separated(HeaderName::ContentLanguage)
            .header_raw(HeaderName::MimeVersion)
            .header_content_type(HeaderName::ContentType)
            .header_content_type(HeaderName::ContentDisposition);
        skipped.into_iter().fold(kept, |p, name| p.ignore_header(name))
    });
    &PARSER
}

struct Walk {
    walked: Walked,
    decoded_budget: usize,
    scan_work_budget: usize,
    parser: &'static MessageParser,
}

impl Walk {
    fn new((decoded_budget, scan_work_budget): (usize, usize)) -> Walk {
        Walk { walked: Walked::default(), decoded_budget, scan_work_budget, parser: structure_parser() }
    }

    fn enter(&mut self, depth: usize, at: usize) -> Result<(), LimitHit> {
        if depth > MAX_MIME_DEPTH {
            return Err(LimitHit { limit: MimeLimit::Depth, offset: at });
        }
        self.walked.max_depth = self.walked.max_depth.max(depth);
        Ok(())
    }

    fn decoded(&mut self, bytes: usize, at: usize) -> Result<(), LimitHit> {
        self.walked.decoded_bytes = self.walked.decoded_bytes.saturating_add(bytes);
        if self.walked.decoded_bytes > self.decoded_budget {
            return Err(LimitHit { limit: MimeLimit::DecodedBytes, offset: at });
        }
        Ok(())
    }

    fn rescanned(&mut self, bytes: usize, at: usize) -> Result<(), LimitHit> {
        self.walked.scan_work = self.walked.scan_work.saturating_add(bytes);
        if self.walked.scan_work > self.scan_work_budget {
            return Err(LimitHit { limit: MimeLimit::ScanWork, offset: at });
        }
        Ok(())
    }

    /// Walks one stream as `MessageParser::parse_` does; returns how many unencoded nested messages it holds
    /// (each gets a copy of the whole stream when the stream is a decoded body). `nested_left` is how many
    /// more decoded `message/*` bodies the parser will parse; `base` is the depth of this stream's top part.
    /// A hit's offset is in this stream's coordinates.
    fn stream(&mut self, data: &[u8], nested_left: usize, base: usize) -> Result<usize, LimitHit> {
        let mut stream = MessageStream::new(data);
        let mut state = Frame { kind: Kind::Message, boundary: None };
        let mut stack: Vec<(Frame, bool)> = Vec::new();
        let mut headers: Vec<Header<'_>> = Vec::new();
        let mut nested_messages = 0usize;
        self.enter(base, 0)?;
        'outer: loop {
            let header_start = stream.offset();
            // Count before the parser allocates: a block of a million fields is refused by a byte scan.
            let count = count_headers(data, header_start);
            if let Some(at) = count.over_limit {
                return Err(LimitHit { limit: MimeLimit::HeadersPerBlock, offset: at });
            }
            if self.walked.headers + count.fields > MAX_HEADERS_TOTAL {
                return Err(LimitHit { limit: MimeLimit::HeadersTotal, offset: header_start });
            }
            headers.clear();
            if !stream.parse_headers(self.parser, &mut headers) {
                break;
            }
            if headers.len() > MAX_HEADERS_PER_BLOCK {
                // The byte scan and the parser disagree on this block; the parser's count stands.
                let at = headers[MAX_HEADERS_PER_BLOCK].offset_field as usize;
                return Err(LimitHit { limit: MimeLimit::HeadersPerBlock, offset: at });
            }
            if self.walked.parts >= MAX_MIME_PARTS {
                return Err(LimitHit { limit: MimeLimit::Parts, offset: header_start });
            }
            self.walked.parts += 1;
            self.walked.headers += headers.len();
            let depth = base + stack.len();

            let content_type = headers.header_value(&HeaderName::ContentType).and_then(|c| c.as_content_type());
            let mut kind = match content_type {
                Some(ct) => match ct.ctype() {
                    "multipart" if ct.subtype() == Some("digest") => Kind::Digest,
                    "multipart" => Kind::Multipart,
                    "message" if matches!(ct.subtype(), Some("rfc822" | "global")) => Kind::Message,
                    _ => Kind::Leaf,
                },
                None if state.kind == Kind::Digest => Kind::Message,
                None => Kind::Leaf,
            };
            if matches!(kind, Kind::Multipart | Kind::Digest) {
                if let Some(boundary) = content_type.and_then(|c| c.attribute("boundary")) {
                    let from = stream.offset();
                    if stream.seek_next_part(boundary.as_bytes()) {
                        self.enter(depth + 1, header_start)?;
                        let frame = Frame { kind, boundary: Some(boundary.as_bytes().to_vec()) };
                        stack.push((std::mem::replace(&mut state, frame), false));
                        stream.skip_crlf();
                        continue;
                    }
                    self.rescanned(data.len() - from, header_start)?;
                    kind = Kind::Leaf;
                }
            }
            let transfer = match headers.header_value(&HeaderName::ContentTransferEncoding) {
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("base64") => Transfer::Base64,
                Some(HeaderValue::Text(e)) if e.eq_ignore_ascii_case("quoted-printable") => Transfer::QuotedPrintable,
                _ => Transfer::None,
            };
            if kind == Kind::Message && transfer == Transfer::None {
                // The parser reads the nested message's headers next, in the same stream.
                self.enter(depth + 1, header_start)?;
                nested_messages += 1;
                let frame = Frame { kind: Kind::Message, boundary: state.boundary.take() };
                stack.push((std::mem::replace(&mut state, frame), true));
                continue;
            }

            let from = stream.offset();
            let boundary = state.boundary.as_deref().unwrap_or(b"");
            let (end, body) = match transfer {
                Transfer::Base64 => stream.decode_base64_mime(boundary),
                Transfer::QuotedPrintable => stream.decode_quoted_printable_mime(boundary),
                Transfer::None => stream.mime_part(boundary),
            };
            if end == usize::MAX {
                // The decoder went back to the start of the body; the parser then seeks the part's end.
                drop(body);
                self.rescanned(data.len() - from, header_start)?;
                let (_, found) = stream.seek_part_end(state.boundary.as_deref());
                if !found {
                    state.boundary = None;
                }
            } else {
                if let Cow::Owned(decoded) = &body {
                    self.decoded(decoded.len(), header_start)?;
                }
                if kind == Kind::Message && nested_left > 0 {
                    // The parser parses the decoded body as a message of its own, then copies it
                    // (`into_owned`) once for itself and once for each message nested in it. Past a limit in
                    // there, the cut is at the start of the encoded body: the part keeps its header fields
                    // (the top-level message's own, when it is the encoded part) and decodes to nothing.
                    self.enter(depth + 1, from)?;
                    let nested = self
                        .stream(&body, nested_left - 1, depth + 1)
                        .map_err(|h| LimitHit { limit: h.limit, offset: from })?;
                    self.decoded(body.len().saturating_mul(nested + 1), from)?;
                }
            }

            if state.boundary.is_some() {
                loop {
                    if state.kind == Kind::Message {
                        // The nested message ends with its parent's part: back to the parent.
                        match stack.pop() {
                            Some((mut parent, true)) => {
                                parent.boundary = state.boundary.take();
                                state = parent;
                            }
                            _ => break 'outer,
                        }
                    }
                    if stream.is_multipart_end() {
                        if let Some((parent, _)) = stack.pop() {
                            state = parent;
                            if let Some(b) = state.boundary.as_deref() {
                                let from = stream.offset();
                                if stream.seek_next_part_offset(b).is_some() {
                                    continue;
                                }
                                self.rescanned(data.len() - from, header_start)?;
                            }
                        }
                        break 'outer;
                    }
                    break;
                }
            } else if stream.offset() >= data.len() {
                break;
            }
        }
        Ok(nested_messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_header_fields_like_the_parser() {
        let raw = b"From: a\r\nSubject: b\r\n  folded\r\nno colon here\r\nTo: c\r\n\r\nbody";
        let c = count_headers(raw, 0);
        assert_eq!(c.fields, 3);
        assert_eq!(&raw[c.block_end..], b"body");
        let mut parsed = Vec::new();
        let mut stream = MessageStream::new(raw);
        assert!(stream.parse_headers(&MessageParser::new(), &mut parsed));
        assert_eq!(parsed.len(), 3);
        assert_eq!(stream.offset(), c.block_end);
    }

    #[test]
    fn a_plain_message_passes_whole() {
        let raw = b"From: a@example.org\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\
Content-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: message/rfc822\r\n\r\nFrom: x@example.org\r\n\r\nfwd\r\n--b--\r\n";
        let p = safe_prefix(raw);
        assert_eq!(p.len, raw.len());
        assert_eq!(p.hit, None);
        let parsed = MessageParser::default().parse(&raw[..]).unwrap();
        let m = measure(&parsed);
        assert_eq!((m.parts, m.max_depth), (p.walked.parts, p.walked.max_depth));
    }

    #[test]
    fn deep_unencoded_nesting_is_cut_at_the_limit() {
        let mut raw = Vec::new();
        for _ in 0..100 {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"Subject: bottom\r\n\r\nx");
        let p = safe_prefix(&raw);
        assert_eq!(p.hit.map(|h| h.limit), Some(MimeLimit::Depth));
        let parsed = MessageParser::default().parse(&raw[..p.len]).unwrap();
        assert!(measure(&parsed).max_depth <= MAX_MIME_DEPTH);
        dismantle(parsed);
    }

    #[test]
    fn too_many_fields_are_cut_at_the_field_past_the_limit() {
        let mut raw = Vec::new();
        for i in 0..MAX_HEADERS_PER_BLOCK + 10 {
            raw.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\nbody");
        let p = safe_prefix(&raw);
        assert_eq!(p.hit.map(|h| h.limit), Some(MimeLimit::HeadersPerBlock));
        let parsed = MessageParser::default().parse(&raw[..p.len]).unwrap();
        assert_eq!(parsed.parts[0].headers.len(), MAX_HEADERS_PER_BLOCK);
    }

    /// The fields of one header block as a parser sees them: (name, start, end), whether a body follows,
    /// and where the stream stopped.
    fn fields(raw: &[u8], parser: &MessageParser) -> (Vec<(String, u32, u32)>, bool, usize) {
        let mut parsed = Vec::new();
        let mut stream = MessageStream::new(raw);
        let more = stream.parse_headers(parser, &mut parsed);
        let fields = parsed.iter().map(|h| (h.name.as_str().to_string(), h.offset_field, h.offset_end)).collect();
        (fields, more, stream.offset())
    }

    fn same_boundaries(raw: &[u8]) -> Result<(), String> {
        let full = fields(raw, &MessageParser::new());
        let walk = fields(raw, structure_parser());
        if full == walk {
            Ok(())
        } else {
            Err(format!("{:?}: default parser {full:?}, walk {walk:?}", String::from_utf8_lossy(raw)))
        }
    }

    #[test]
    fn skipping_fields_keeps_the_field_boundaries_on_real_messages() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages");
        let mut seen = 0;
        // With MAILSIFT_CORPUS (the SpamAssassin corpus's data folder, as the benchmarks take it) its 6,046
        // messages too.
        let mut pending = vec![dir];
        pending.extend(std::env::var_os("MAILSIFT_CORPUS").map(std::path::PathBuf::from));
        while let Some(d) = pending.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    pending.push(p);
                } else if let Ok(raw) = std::fs::read(&p) {
                    same_boundaries(&raw).unwrap();
                    seen += 1;
                }
            }
        }
        assert!(seen > 10, "only {seen} messages in the test data");
    }

    /// Header fields whose default parsers differ (addresses, dates, ids, Received, lists, MIME), with
    /// values of arbitrary bytes, folded or not, with bare CR and LF.
    fn header_block() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        const NAMES: &[&str] = &[
            "Received",
            "Date",
            "From",
            "To",
            "Cc",
            "Reply-To",
            "Message-ID",
            "References",
            "In-Reply-To",
            "Subject",
            "Keywords",
            "Content-Type",
            "Content-Transfer-Encoding",
            "Content-Disposition",
            "Content-ID",
            "List-Unsubscribe",
            "Return-Path",
            "MIME-Version",
            "X-Other",
            "Resent-Date",
        ];
        let value = prop::collection::vec(
            prop_oneof![
                4 => any::<u8>(),
                2 => Just(b' '),
                1 => Just(b'\n'),
                1 => Just(b'\r'),
                1 => Just(b'('),
                1 => Just(b')'),
                1 => Just(b'"'),
                1 => Just(b'<'),
                1 => Just(b'>'),
                1 => Just(b';'),
                1 => Just(b'='),
            ],
            0..60,
        );
        let field = (prop::sample::select(NAMES), value, prop::sample::select(vec!["\r\n", "\n", "\r\n\t", "\n "]));
        prop::collection::vec(field, 0..8).prop_map(|fields| {
            let mut raw = Vec::new();
            for (name, value, end) in fields {
                raw.extend_from_slice(name.as_bytes());
                raw.extend_from_slice(b": ");
                raw.extend_from_slice(&value);
                raw.extend_from_slice(end.as_bytes());
            }
            raw.extend_from_slice(b"\r\nbody");
            raw
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn skipping_fields_keeps_the_field_boundaries(raw in header_block()) {
            proptest::prop_assert!(same_boundaries(&raw).is_ok(), "{}", same_boundaries(&raw).unwrap_err());
        }

        #[test]
        fn skipping_fields_keeps_the_field_boundaries_on_arbitrary_bytes(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            proptest::prop_assert!(same_boundaries(&raw).is_ok(), "{}", same_boundaries(&raw).unwrap_err());
        }
    }
}
