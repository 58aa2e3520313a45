//! One parse of the raw bytes, and the views every check needs.
//!
//! The MIME work is done by `mail-parser` (it never panics on hostile input and decodes charsets); this
//! module builds, once per message, what the checks read: decoded headers, the text a reader sees (plain
//! parts and rendered HTML), the HTML's structure, URLs with their registrable domains, attachments with
//! their real types. Checks never reparse. Work is bounded: a message larger than `max_scan_bytes` is
//! scanned on its first part only (and says so), text beyond `MAX_TEXT_BYTES` is not analysed.
//!
//! The MIME structure is bounded before `mail-parser` sees it (`limits.rs`): nesting depth, parts, header
//! fields and decoded bytes; past a limit the message is parsed up to the limit and says so
//! (`ParseProblems::mime_limit`). Nothing here recurses on the sender's structure: the HTML is tokenized, not
//! built into a tree, and nested messages are at most `limits::MAX_MIME_DEPTH` deep.
//!
//! Memory: the peak a parse and judge adds, the message's own bytes included, is at most about
//! **6 × the scan window + 8 MiB**: the window itself, what `mail-parser` decodes and copies (at most
//! `limits::DECODED_BYTES_PER_BYTE` = 4 × the window + 1 MiB), and constants for the parsed fields and parts
//! (at most `MAX_HEADERS_TOTAL` fields and `MAX_MIME_PARTS` parts, about 4 MiB) and the text views
//! (`MAX_TEXT_BYTES`, `html::MAX_HTML_BYTES`). Measured with `tools/mime_memory.sh`
//! (`examples/adversarial_memory.rs`, one process per case, peak RSS over the baseline): 20,000 nested
//! message/rfc822 under base64, 876 KB: 2.5 MB; a base64 forward of three 500 KB forwards, 2 MB: 9.1 MB (the
//! largest ratio, 4.7); 20,000 header fields over 900 parts: 3.8 MB; a 10 MB header line: 30 MB; real
//! SpamAssassin messages: 1.5 to 6 times their size.

pub mod adversarial;
pub mod html;
pub mod limits;
pub(crate) mod received;
pub mod sniff;
pub mod urls;

use std::borrow::Cow;
use std::net::IpAddr;

use mail_parser::{HeaderName, HeaderValue, MessageParser, MimeHeaders, PartType};

pub use html::HtmlView;
pub use sniff::RealType;
pub use urls::{UrlInfo, UrlSource};

/// Text beyond this many bytes per message is not analysed by the content checks.
pub const MAX_TEXT_BYTES: usize = 1024 * 1024;
/// The GTUBE string: scanned for in every decoded part so administrators can test the pipeline.
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Mailbox {
    /// Decoded display name, if any.
    pub name: Option<String>,
    /// The address, lower-cased domain part.
    pub address: String,
    /// Domain part of the address (lower case), empty when the address has none.
    pub domain: String,
}

impl Mailbox {
    fn from_parts(name: Option<&str>, address: &str) -> Mailbox {
        let address = address.trim().trim_matches(['<', '>']).to_string();
        let domain = address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_lowercase()).unwrap_or_default();
        Mailbox { name: name.map(|n| n.trim().to_string()).filter(|n| !n.is_empty()), address, domain }
    }

    /// Parses a bare address such as an envelope sender.
    pub fn parse_address(addr: &str) -> Option<Mailbox> {
        let a = addr.trim().trim_matches(['<', '>']);
        if a.is_empty() {
            return None;
        }
        Some(Mailbox::from_parts(None, a))
    }
}

/// One header field as it arrived.
#[derive(Debug, Clone)]
pub struct HeaderField {
    pub name: String,
    /// The value with folding removed, encoded words decoded where the parser knows the field.
    pub value: String,
}

/// One `Received` hop, newest first (as in the message).
#[derive(Debug, Clone, Default)]
pub struct Hop {
    pub raw: String,
    pub from_host: Option<String>,
    pub helo: Option<String>,
    pub from_ip: Option<IpAddr>,
    pub by_host: Option<String>,
    pub timestamp: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct TextPart {
    pub text: String,
    pub is_html: bool,
    /// The part was sent base64-encoded.
    pub base64: bool,
    /// Declared charset, if any.
    pub charset: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Attachment {
    pub name: Option<String>,
    pub declared_type: String,
    pub real_type: RealType,
    pub size: usize,
    /// Names inside the archive, when it is a ZIP.
    pub archive_names: Vec<String>,
}

/// Problems the parser recovered from; evidence of broken or hand-made MIME.
#[derive(Debug, Clone, Default)]
pub struct ParseProblems {
    pub encoding_errors: u32,
    pub missing_boundary: bool,
    pub truncated_for_scan: bool,
    pub text_truncated: bool,
    /// The MIME structure went past a limit (`limits.rs`): only the bytes before `offset` were parsed.
    pub mime_limit: Option<limits::LimitHit>,
}

/// A parsed message with its views. Borrows the raw bytes.
pub struct Message<'a> {
    pub raw: &'a [u8],
    pub parsed: mail_parser::Message<'a>,
    pub headers: Vec<HeaderField>,
    pub from: Option<Mailbox>,
    /// Number of addresses in From: (more than one is unusual).
    pub from_count: usize,
    pub reply_to: Option<Mailbox>,
    /// The To and Cc addresses that parsed, in order (display name, address, domain).
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub subject: Option<String>,
    /// The raw Date header and its value as a Unix time when it parsed.
    pub date_raw: Option<String>,
    pub date: Option<i64>,
    pub message_id: Option<String>,
    pub hops: Vec<Hop>,
    /// Every text part, decoded to UTF-8 (HTML parts hold the markup).
    pub text_parts: Vec<TextPart>,
    /// One rendered view per HTML part.
    pub html: Vec<HtmlView>,
    /// The text a reader sees: plain parts, or rendered HTML where there is no plain alternative.
    pub body_text: String,
    pub urls: Vec<UrlInfo>,
    pub attachments: Vec<Attachment>,
    pub problems: ParseProblems,
    pub has_gtube: bool,
    pub mime_parts: usize,
    /// Whether it came through a mailing list: found once at parse time, read by the header and URL checks
    /// and the tokenizer (see [`Message::is_list_post`]).
    list_post: bool,
}

impl<'a> Message<'a> {
    /// Parses `raw`, scanning at most `max_scan_bytes` of it.
    pub fn parse(raw: &'a [u8], max_scan_bytes: usize) -> Message<'a> {
        let (scan, truncated) = if raw.len() > max_scan_bytes { (&raw[..max_scan_bytes], true) } else { (raw, false) };
        // Strip an mbox "From " line: it is not a header and would hide the real first header.
        let scan = if scan.starts_with(b"From ") {
            match scan.iter().position(|&b| b == b'\n') {
                Some(p) => &scan[p + 1..],
                None => scan,
            }
        } else {
            scan
        };
        // Limits first: `mail-parser` builds nested messages as a tree that it copies and drops recursively.
        let prefix = limits::safe_prefix(scan);
        let mut parsed = parse_window(&scan[..prefix.len]);
        let built = limits::measure(&parsed);
        if built.max_depth > limits::MAX_MIME_DEPTH || built.parts > limits::MAX_MIME_PARTS + 1 {
            // The walk and the parser disagreed (a bug): keep the headers only, and drop the tree safely.
            debug_assert!(false, "mime limits walk disagrees with the parser: {built:?} vs {:?}", prefix.walked);
            limits::dismantle(std::mem::take(&mut parsed));
            parsed = parse_window(&scan[..raw_headers_end(scan)]);
        }
        let mut m = Message {
            raw,
            headers: Vec::new(),
            from: None,
            from_count: 0,
            reply_to: None,
            to: Vec::new(),
            cc: Vec::new(),
            subject: None,
            date_raw: None,
            date: None,
            message_id: None,
            hops: Vec::new(),
            text_parts: Vec::new(),
            html: Vec::new(),
            body_text: String::new(),
            urls: Vec::new(),
            attachments: Vec::new(),
            problems: ParseProblems { truncated_for_scan: truncated, mime_limit: prefix.hit, ..Default::default() },
            has_gtube: false,
            mime_parts: 0,
            list_post: false,
            parsed,
        };
        m.build_header_views();
        m.list_post = m.find_list_marks();
        m.build_body_views();
        m
    }

    fn build_header_views(&mut self) {
        let parsed = &self.parsed;
        let Some(root) = parsed.parts.first() else {
            return;
        };
        // Fields the parser read into the one before them (see `split_swallowed`), as "Name: value" lines; they
        // are added to the header views after the field that swallowed them. Empty (no allocation) normally.
        let mut recovered = String::new();
        for h in &root.headers {
            let raw_value = raw_slice(parsed.raw_message.as_ref(), h.offset_start, h.offset_end);
            let (own, others) = split_swallowed(&raw_value);
            let value = match &h.value {
                HeaderValue::Text(t) if others.is_empty() => t.to_string(),
                _ => unfold(own),
            };
            self.headers.push(HeaderField { name: h.name.as_str().to_string(), value });
            for (name, value) in others {
                let value = unfold(value);
                recovered.push_str(&format!("{name}: {value}\r\n"));
                self.headers.push(HeaderField { name: name.to_string(), value });
            }
        }
        // Parsed again on their own, the recovered fields give the addresses and subject the parser lost.
        if !recovered.is_empty() {
            recovered.push_str("\r\n");
        }
        let again = (!recovered.is_empty())
            .then(|| mail_parser::MessageParser::default().parse(recovered.as_bytes()))
            .flatten();
        if let Some(from) = parsed.from().or_else(|| again.as_ref().and_then(|a| a.from())) {
            self.from_count = from.iter().count();
            if let Some(a) = from.first() {
                self.from = Some(Mailbox::from_parts(a.name(), a.address().unwrap_or("")));
            }
        }
        let reply_to = parsed.reply_to().or_else(|| again.as_ref().and_then(|a| a.reply_to()));
        if let Some(rt) = reply_to.and_then(|r| r.first()) {
            if let Some(addr) = rt.address() {
                self.reply_to = Some(Mailbox::from_parts(rt.name(), addr));
            }
        }
        if let Some(to) = parsed.to().or_else(|| again.as_ref().and_then(|a| a.to())) {
            self.to = to.iter().filter_map(|a| a.address().map(|ad| Mailbox::from_parts(a.name(), ad))).collect();
        }
        if let Some(cc) = parsed.cc().or_else(|| again.as_ref().and_then(|a| a.cc())) {
            self.cc = cc.iter().filter_map(|a| a.address().map(|ad| Mailbox::from_parts(a.name(), ad))).collect();
        }
        self.subject = parsed.subject().or_else(|| again.as_ref().and_then(|a| a.subject())).map(str::to_string);
        self.date_raw = self.header("Date").map(str::to_string);
        self.date = parsed.date().filter(|d| d.is_valid()).map(|d| d.to_timestamp());
        // The raw field, not the parser's: the parser strips the brackets whose absence is evidence.
        self.message_id = root
            .headers
            .iter()
            .find(|h| matches!(h.name, HeaderName::MessageId))
            .map(|h| unfold(&raw_slice(parsed.raw_message.as_ref(), h.offset_start, h.offset_end)));
        for h in &root.headers {
            if let HeaderName::Received = h.name {
                let raw = unfold(&raw_slice(parsed.raw_message.as_ref(), h.offset_start, h.offset_end));
                let mut hop = Hop { raw, ..Hop::default() };
                if let Some(r) = h.value.as_received() {
                    hop.from_host = r.from.as_ref().map(host_str);
                    hop.helo = r.helo.as_ref().map(host_str);
                    hop.from_ip = r.from_ip;
                    hop.by_host = r.by.as_ref().map(host_str);
                    hop.timestamp = r.date.filter(|d| d.is_valid()).map(|d| d.to_timestamp());
                }
                self.hops.push(hop);
            }
        }
    }

    fn build_body_views(&mut self) {
        let parsed = &self.parsed;
        self.mime_parts = parsed.parts.len();
        let mut budget = MAX_TEXT_BYTES;
        let mut body_ids: Vec<u32> = parsed.text_body.clone();
        for id in &parsed.html_body {
            if !body_ids.contains(id) {
                body_ids.push(*id);
            }
        }
        for (idx, part) in parsed.parts.iter().enumerate() {
            if part.is_encoding_problem {
                self.problems.encoding_errors += 1;
            }
            if let Some(ct) = part.content_type() {
                if ct.ctype().eq_ignore_ascii_case("multipart") && ct.attribute("boundary").is_none() {
                    self.problems.missing_boundary = true;
                }
            }
            let base64 = matches!(part.encoding, mail_parser::Encoding::Base64);
            let charset = part.content_type().and_then(|c| c.attribute("charset")).map(str::to_string);
            let in_body = body_ids.contains(&(idx as u32));
            let is_attachment = parsed.attachments.contains(&(idx as u32)) && !in_body;
            match &part.body {
                PartType::Text(t) | PartType::Html(t) => {
                    let is_html = matches!(part.body, PartType::Html(_));
                    if t.contains(GTUBE) {
                        self.has_gtube = true;
                    }
                    if is_attachment {
                        self.attachments.push(attachment_of(part, t.as_bytes()));
                        continue;
                    }
                    let mut text = t.to_string();
                    if text.len() > budget {
                        let mut cut = budget;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        self.problems.text_truncated = true;
                    }
                    budget -= text.len();
                    self.text_parts.push(TextPart { text, is_html, base64, charset });
                }
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    if contains_bytes(b, GTUBE.as_bytes()) {
                        self.has_gtube = true;
                    }
                    self.attachments.push(attachment_of(part, b));
                }
                PartType::Message(inner) => {
                    // A forwarded message: its own text is not the sender's words, but GTUBE inside counts.
                    // An unencoded one borrows the whole window as its raw message: search its own bytes
                    // only, or a thousand of them would search the window a thousand times.
                    let own = match &inner.raw_message {
                        Cow::Borrowed(_) => {
                            let r = parsed.raw_message.as_ref();
                            let end = (part.offset_end as usize).min(r.len());
                            r.get(part.offset_body as usize..end).unwrap_or_default()
                        }
                        Cow::Owned(decoded) => decoded.as_slice(),
                    };
                    if contains_bytes(own, GTUBE.as_bytes()) {
                        self.has_gtube = true;
                    }
                }
                PartType::Multipart(_) => {}
            }
        }
        // Render HTML once; the body text takes plain parts where they exist, rendered HTML otherwise.
        let has_plain = self.text_parts.iter().any(|p| !p.is_html && !p.text.trim().is_empty());
        let mut body = String::new();
        for p in &self.text_parts {
            if p.is_html {
                let view = html::render(&p.text);
                if !has_plain {
                    push_para(&mut body, &view.text);
                }
                self.html.push(view);
            } else {
                push_para(&mut body, &p.text);
            }
        }
        self.body_text = body;
        self.collect_urls();
    }

    fn collect_urls(&mut self) {
        let mut urls = Vec::new();
        for v in &self.html {
            for l in &v.links {
                if urls.len() < urls::MAX_URLS {
                    if let Some(u) = urls::parse(&l.href, UrlSource::Href) {
                        urls.push(u);
                    }
                }
            }
            for i in &v.images {
                if urls.len() < urls::MAX_URLS {
                    if let Some(u) = urls::parse(&i.src, UrlSource::Image) {
                        urls.push(u);
                    }
                }
            }
            for o in &v.other_urls {
                if urls.len() < urls::MAX_URLS {
                    if let Some(u) = urls::parse(o, UrlSource::Other) {
                        urls.push(u);
                    }
                }
            }
            urls::find_in_text(&v.text, &mut urls);
        }
        for p in self.text_parts.iter().filter(|p| !p.is_html) {
            urls::find_in_text(&p.text, &mut urls);
        }
        // Keep one entry per distinct URL text, first source wins.
        let mut seen = rustc_hash::FxHashSet::default();
        urls.retain(|u| seen.insert(u.raw.clone()));
        self.urls = urls;
    }

    /// The first header with this name (case-insensitive), as decoded text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    /// Every header with this name.
    pub fn headers_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s str> + 's {
        self.headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.headers.iter().any(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// Whether the message came through a mailing list, by the marks list software writes: List-Id or
    /// List-Post (RFC 2919, RFC 2369), the older Mailing-List, X-Mailing-List and X-BeenThere, `Precedence:
    /// list`, or a Sender that is the list's bounce address (majordomo's `owner-x@`, Mailman's `x-bounces@`,
    /// Lyris's `bounce-x@`). Not `Precedence: bulk` nor List-Unsubscribe alone: bulk senders of every kind,
    /// spammers included, write those. A list relays mail it did not write, so the author's own route, the
    /// links a digest carries, or the list's own wrapping say little about the post. Spammers can write these
    /// fields too; whatever uses this only stands aside, nothing counts a list as evidence of good mail.
    pub fn is_list_post(&self) -> bool {
        self.list_post
    }

    fn find_list_marks(&self) -> bool {
        const LIST_FIELDS: &[&str] = &["List-Id", "List-Post", "Mailing-List", "X-Mailing-List", "X-BeenThere"];
        if LIST_FIELDS.iter().any(|h| self.has_header(h)) {
            return true;
        }
        if self.header("Precedence").is_some_and(|p| p.trim().eq_ignore_ascii_case("list")) {
            return true;
        }
        self.header("Sender").is_some_and(is_list_bounce_address)
    }

    /// The raw header block (everything before the first empty line).
    pub fn raw_headers(&self) -> &[u8] {
        let r = self.parsed.raw_message.as_ref();
        let end = self.parsed.parts.first().map(|p| p.offset_body as usize).unwrap_or(r.len()).min(r.len());
        &r[..end]
    }

    /// The decoded subject, or "" when there is none.
    pub fn subject_str(&self) -> &str {
        self.subject.as_deref().unwrap_or("")
    }
}

/// One `mail-parser` run over a window the limits have passed; an unparseable one is an empty message.
fn parse_window(window: &[u8]) -> mail_parser::Message<'_> {
    MessageParser::default()
        .parse(window)
        .unwrap_or_else(|| mail_parser::Message { raw_message: Cow::Borrowed(window), ..Default::default() })
}

/// The end of the top header block (past its empty line), or the end of the data.
fn raw_headers_end(raw: &[u8]) -> usize {
    let lf = memchr::memmem::find(raw, b"\n\n").map(|p| p + 2);
    let crlf = memchr::memmem::find(raw, b"\n\r\n").map(|p| p + 3);
    lf.into_iter().chain(crlf).min().unwrap_or(raw.len())
}

fn host_str(h: &mail_parser::Host<'_>) -> String {
    match h {
        mail_parser::Host::Name(n) => n.to_lowercase(),
        mail_parser::Host::IpAddr(ip) => ip.to_string(),
    }
}

/// Splits a field's raw value where the parser read on past its end into the fields that follow: mail-parser
/// reads a Date ending in an obsolete zone ("UT") or a 12-hour clock ("3:36:25 AM"), on a message with bare LF
/// line ends, on into the next line, and the field there is lost to it (the From, on real spam). A line that
/// does not begin with white space begins a new field (RFC 5322 §2.2.3): returns the value's own part and the
/// fields found after it, as (name, raw value).
fn split_swallowed(raw_value: &str) -> (&str, Vec<(&str, &str)>) {
    let mut own_end = raw_value.len();
    let mut fields = Vec::new();
    let mut starts = Vec::new();
    let mut at = 0;
    for line in raw_value.split_inclusive('\n') {
        let begins_field = at > 0 && !line.starts_with([' ', '\t']) && !line.trim().is_empty();
        if begins_field {
            if starts.is_empty() {
                own_end = at;
            }
            starts.push(at);
        }
        at += line.len();
    }
    for (i, start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(raw_value.len());
        let field = &raw_value[*start..end];
        let Some((name, value)) = field.split_once(':') else { continue };
        let valid = !name.is_empty() && name.len() <= 76 && name.bytes().all(|b| b.is_ascii_graphic() && b != b':');
        if valid {
            fields.push((name, value));
        }
    }
    (&raw_value[..own_end], fields)
}

fn raw_slice(raw: &[u8], start: u32, end: u32) -> String {
    let (s, e) = (start as usize, (end as usize).min(raw.len()));
    if s >= e {
        return String::new();
    }
    String::from_utf8_lossy(&raw[s..e]).into_owned()
}

/// Removes folding (CRLF followed by white space) and trims.
pub fn unfold(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut last_space = false;
    for c in v.chars() {
        if c == '\r' || c == '\n' || c == '\t' || c == ' ' {
            if !last_space && !out.is_empty() {
                out.push(' ');
            }
            last_space = true;
        } else {
            out.push(c);
            last_space = false;
        }
    }
    while out.ends_with(' ') {
        out.pop();
    }
    out
}

fn push_para(body: &mut String, text: &str) {
    let t = text.trim();
    if t.is_empty() {
        return;
    }
    if !body.is_empty() {
        body.push('\n');
    }
    body.push_str(t);
}

fn attachment_of(part: &mail_parser::MessagePart<'_>, data: &[u8]) -> Attachment {
    let declared_type = part
        .content_type()
        .map(|c| match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s).to_ascii_lowercase(),
            None => c.ctype().to_ascii_lowercase(),
        })
        .unwrap_or_else(|| "application/octet-stream".to_string());
    let real_type = sniff::sniff(data);
    let archive_names = if real_type == RealType::Zip { sniff::zip_names(data) } else { Vec::new() };
    Attachment {
        name: part.attachment_name().map(str::to_string),
        declared_type,
        real_type,
        size: data.len(),
        archive_names,
    }
}

pub(crate) fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

/// A Sender whose mailbox is a list server's bounce address.
fn is_list_bounce_address(sender: &str) -> bool {
    // The mailbox in angle brackets when there is a display name, else the whole field.
    let mailbox = match (sender.rfind('<'), sender.rfind('>')) {
        (Some(a), Some(b)) if a < b => &sender[a + 1..b],
        _ => sender,
    };
    let Ok(address) = crate::address::Address::parse(mailbox) else { return false };
    if address.domain().is_none() {
        return false;
    }
    let local = address.local_part().to_ascii_lowercase();
    local.starts_with("owner-")
        || local.starts_with("bounce-")
        || local.ends_with("-owner")
        || local.ends_with("-bounces")
        || local.contains("-bounces+")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_headers_and_body() {
        let raw = b"From: \"Alice\" <alice@Example.COM>\r\nTo: bob@example.org\r\nSubject: =?utf-8?q?H=C3=A9llo?=\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\nReceived: from mx.example.com (mx.example.com [192.0.2.1])\r\n\tby mail.example.org; Mon, 1 Jan 2024 10:00:01 +0000\r\n\r\nHi Bob, see http://www.example.net/page\r\n";
        let m = Message::parse(raw, 10 << 20);
        let from = m.from.as_ref().unwrap();
        assert_eq!(from.name.as_deref(), Some("Alice"));
        assert_eq!(from.domain, "example.com");
        assert_eq!(m.subject.as_deref(), Some("Héllo"));
        assert_eq!(m.date, Some(1704103200));
        assert_eq!(m.hops.len(), 1);
        assert_eq!(m.hops[0].from_ip, Some("192.0.2.1".parse().unwrap()));
        assert!(m.body_text.starts_with("Hi Bob"));
        assert_eq!(m.urls.len(), 1);
        assert_eq!(m.urls[0].domain, "example.net");
    }

    #[test]
    fn html_only_body_is_rendered() {
        let raw =
            b"From: a@b.example\r\nContent-Type: text/html\r\n\r\n<p>Click <a href=\"http://x.example/\">here</a></p>";
        let m = Message::parse(raw, 10 << 20);
        assert_eq!(m.body_text, "Click here");
        assert_eq!(m.html.len(), 1);
        assert_eq!(m.urls[0].host, "x.example");
    }

    #[test]
    fn garbage_does_not_panic() {
        let m = Message::parse(b"\x00\xff\xfe garbage without headers", 1 << 20);
        assert!(m.from.is_none());
        let m = Message::parse(b"", 1 << 20);
        assert!(m.headers.is_empty());
    }

    #[test]
    fn oversized_message_is_scanned_in_part() {
        let mut raw = b"From: a@b.example\r\nSubject: big\r\n\r\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 5000));
        let m = Message::parse(&raw, 1000);
        assert!(m.problems.truncated_for_scan);
        assert_eq!(m.subject.as_deref(), Some("big"));
    }

    /// mail-parser reads a Date ending in an obsolete zone ("UT") or a 12-hour clock ("AM") on into the next
    /// line, and the field there (here the From) is lost to it. A spoofer could hide the From that readers see
    /// from every check that reads it; the field is recovered from the raw header block.
    #[test]
    fn a_field_swallowed_by_the_date_parser_is_recovered() {
        for (date, eol) in [
            ("Sat, 14 Sep 2002 06:00:48 UT", "\r\n"),
            ("27 Jun 01 3:36:25 AM", "\r\n"),
            ("Sat, 14 Sep 2002 06:00:48 UT", "\n"),
            ("27 Jun 01 3:36:25 AM", "\n"),
        ] {
            let raw = format!(
                "Date: {date}\r\nFrom: \"The CEO\" <ceo@ourdomain.example>\r\nTo: staff@ourdomain.example\r\nSubject: wire\r\n\r\nbody\r\n"
            )
            .replace("\r\n", eol);
            let m = Message::parse(raw.as_bytes(), 1 << 20);
            let from = m.from.as_ref().unwrap_or_else(|| panic!("no From after Date: {date}"));
            assert_eq!(from.address, "ceo@ourdomain.example", "{date}");
            assert_eq!(from.domain, "ourdomain.example");
            assert_eq!(m.from_count, 1);
            assert_eq!(m.to.len(), 1, "{date}");
            assert_eq!(m.subject.as_deref(), Some("wire"), "{date}");
            assert_eq!(m.header("From"), Some("\"The CEO\" <ceo@ourdomain.example>"), "{date}");
            assert!(m.header("Date").is_some_and(|d| !d.contains("From")), "{:?}", m.header("Date"));
        }
    }
}
