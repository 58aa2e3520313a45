//! The one tokenizer both statistical engines read: a message becomes a set of 64-bit feature ids.
//!
//! What goes in: words of the subject and of the text a reader sees (HTML already rendered by the
//! message views), normalised (NFKC, lower case, look-alike letters folded, zero-width characters dropped,
//! leet spellings such as `v1agra` folded into an extra variant); pairs of nearby words (orthogonal sparse
//! bigrams, as Rspamd and CRM114 use: each word paired with the next few, the distance part of the
//! feature); character 4-grams of the normalised text; header facts that describe the sender (From
//! address and domain, Reply-To domain, the mailer, charset and MIME boundary layout, the
//! Date layout, which sender-side headers are present, the origin hop's
//! host pattern); whether the From: domain is the links' domain and the origin hop's (alignment); URL
//! domains, hosts and path words; attachment types. Bayes reads the
//! single features; the linear model reads everything (see [`Features::bayes_ids`]).
//!
//! What stays out, on purpose: other filters' verdict headers (`X-Spam-*`, anything with `Spam` in an
//! `X-` name, our own `X-Mailsift-*`) and trace details that only say where a corpus was collected
//! (`Delivered-To`, `X-Original-To`, `X-Loop`, the recipients' addresses, every `Received` hop but the
//! origin; `Return-Path` and the `Message-ID` domain, which the collecting server writes when it forwards
//! or when the sender left them out: in the SpamAssassin corpus one collector's host names the Message-ID
//! of 183 spam and no ham), and a list post's wrapping (the list's subject tag, its footer, its List-Id and
//! the other fields list software writes, [`LIST_HEADERS`]: the same on every post of the list, ham or spam,
//! so they teach which lists a corpus came from and let spam relayed through a list pass as the list's ham;
//! half of the spam the standard split missed came that way). A model that reads another filter's answer
//! looks brilliant in a test and fails in production. Headers are read from a short allow-list, never by
//! name pattern, so a new collector header cannot leak in.
//!
//! Nor the format the mail program chose: the HTML markup's tag names, whether there is HTML at all, the
//! top-level MIME type and the transfer encoding. They describe the mail program and the era more than the
//! sender's intent (a 2002 corpus's ham is mostly plain 7-bit text, its spam HTML, quoted-printable or
//! base64: 2% of its ham is quoted-printable against 28% of its spam; a university's ham today is HTML
//! newsletters encoded the same way), so a model learned at one organisation read the format as spam at
//! another. On the SpamAssassin corpus (`mailsift eval`), first the tag names, then the rest: trained on one
//! half's easy ham and spam and judged on the other half's and the hard ham (the cross protocol) 55 -> 30 ->
//! 28 of 1,650 ham flagged, spam caught 93.8% -> 93.6% -> 93.1%; standard split 2 -> 0 -> 0 of 1,016, 97.3%
//! -> 97.1% -> 97.1% (at 0.1% false positives the ranking catches 96.2% -> 97.1% -> 97.5%); four-fold CV
//! inside TRAIN 12 -> 10 -> 8 of 3,134, 96.5% -> 96.1% -> 95.8%; time-ordered 9 -> 5 -> 5 of 2,523, 93.8% ->
//! 93.8% -> 94.6%. The charset stays (it tells the language), and so does what a reader sees of the HTML
//! (its words; hidden text, tiny fonts and scripts with the heuristics).
//!
//! Form is not thrown away, though: at the organisation that learned it, how its correspondents' mail programs
//! write their headers is strong evidence. The local head reads it ([`local_features`], kept in
//! [`Features::local`] apart from the portable features) and speaks only for mail addressed to an organisation
//! the model has learned ([`Features::org`]; see `classify::Model::knows_organisation`).
//!
//! Features are hashed with xxh3 as they are found, so nothing readable from users' mail reaches the token
//! store. The hash of a feature is part of the stored model: changing it invalidates trained data.

use rustc_hash::FxHashSet;
use unicode_normalization::UnicodeNormalization;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::message::urls::UrlInfo;
use crate::message::Message;

/// Words beyond this many (subject and body together) are not tokenized: the start of a message carries
/// its character, and a bound keeps a huge message from costing more than a normal one.
pub const MAX_WORDS: usize = 3000;
/// Pair each word with the next `OSB_WINDOW - 1` words.
const OSB_WINDOW: usize = 4;
/// Longer "words" are base64 blobs, URLs, hashes: they become one shape feature.
const MAX_WORD_CHARS: usize = 24;

/// Feature families: the seed of each family's hash, so `example.com` the URL domain and `example.com`
/// the sender domain are different features.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
enum Kind {
    Word = 1,
    SubjectWord = 2,
    FromDomain = 3,
    FromName = 4,
    ReplyToDomain = 5,
    Mailer = 6,
    // 7 was the top-level MIME type and 15 the transfer encoding (see the module comment): retired, not
    // reused, so an old store's counts for them cannot be read as another family's.
    Charset = 8,
    OriginHost = 9,
    UrlDomain = 10,
    UrlShape = 11,
    Attachment = 12,
    Shape = 13,
    ListId = 14,
    FromAddress = 16,
    HeaderName = 19,
    HeaderValue = 20,
    DateShape = 21,
    Boundary = 22,
    // 23 was the HTML tag names (see the module comment): not reused, so an old store's counts for them
    // cannot be read as another family's.
    UrlHost = 24,
    UrlWord = 25,
    ToShape = 26,
    /// The local head's header-form grams (see [`local_features`]).
    Form = 27,
    /// The organisation a message was addressed to (see [`organisation`]).
    Organisation = 28,
}

/// Header names that only a sender (its mail program or its list server) writes. Their presence is a
/// fingerprint of the sending software; collector-side and filter headers are deliberately absent.
const SENDER_HEADERS: &[&str] = &[
    "x-msmail-priority",
    "x-mimeole",
    "x-priority",
    "importance",
    "precedence",
    "organization",
    "x-originating-ip",
    "errors-to",
    "x-accept-language",
    "sender",
    "x-beenthere",
    "list-post",
    "list-help",
    "list-subscribe",
    "list-archive",
    "mime-version",
    "x-mailman-version",
    "references",
    "in-reply-to",
    "thread-index",
    "x-ms-has-attach",
    "x-sender",
    "x-complaints-to",
    "x-abuse",
    "x-face",
    "content-disposition",
    "comments",
    "reply-to",
    "cc",
    "x-url",
    "x-ms-tnef-correlator",
    "x-mailer",
    "user-agent",
];

/// What list software writes on every post it relays. In a list post these are the list's, not the author's,
/// and present on its spam as on its ham: read as features they taught "came through a list, so ham", which
/// anyone can write. Measured with them left out of list posts: TEST 465 -> 467 of 480 caught at 2 FP, the
/// time-ordered split 462 -> 469 of 500 at 8 -> 9 FP, the cross protocol 58 -> 55 FP with 1,300 -> 1,309 caught.
const LIST_HEADERS: &[&str] = &[
    "errors-to",
    "sender",
    "x-beenthere",
    "list-post",
    "list-help",
    "list-subscribe",
    "list-archive",
    "x-mailman-version",
    "precedence",
];

/// Headers whose (short) values are worth a feature as they are.
const VALUE_HEADERS: &[&str] = &["x-priority", "x-msmail-priority", "precedence", "importance", "mime-version"];

/// The features of one message: distinct 64-bit ids. The single features (words, header and URL facts)
/// come first, `ids[..singles]`, then the word pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub ids: Vec<u64>,
    pub singles: usize,
    /// The local head's features ([`local_features`]): the form of the sender-written header fields.
    pub local: Vec<u64>,
    /// The organisation the message was addressed to ([`organisation`]), hashed: the local head speaks only
    /// for an organisation whose mail it has learned.
    pub org: Option<u64>,
}

impl Features {
    /// The features Bayes counts. Bayes reads single features only: pairs are strongly correlated with
    /// the words they are made of, and chi-square combining treats clues as independent, so pairs would
    /// make it sure both ways at once. The linear model weighs correlated features correctly and reads all.
    pub fn bayes_ids(&self) -> &[u64] {
        &self.ids[..self.singles]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

struct Collector {
    seen: FxHashSet<u64>,
    ids: Vec<u64>,
    pairs: Vec<u64>,
}

impl Collector {
    fn add_hash(&mut self, h: u64) {
        if self.seen.insert(h) {
            self.ids.push(h);
        }
    }

    fn add_pair(&mut self, h: u64) {
        if self.seen.insert(h) {
            self.pairs.push(h);
        }
    }

    fn add(&mut self, kind: Kind, text: &str) {
        self.add_hash(xxh3_64_with_seed(text.as_bytes(), kind as u64));
    }
}

/// Tokenizes a parsed message, the local head's features included (what learning needs). Pure and
/// deterministic: the same message always gives the same features.
pub fn features(msg: &Message<'_>) -> Features {
    let mut f = portable_features(msg);
    f.local = local_features(msg.raw_headers());
    f
}

/// The features without the local head's ([`Features::local`] empty): what judging a message needs until
/// the model says the head may speak for its organisation (`crate::Engine::classify` adds them then), so
/// mail the head never judges does not pay for its grams.
pub fn portable_features(msg: &Message<'_>) -> Features {
    // Room for what the text can give (a gram per character, a word, its fold and three pairs per word,
    // both bounded) and the header features, so the set is not grown and rehashed several times per message.
    let chars = msg.body_text.len() + msg.subject.as_ref().map_or(0, |s| 2 * s.len());
    let expected = chars.min(GRAM_CHARS) + chars.div_ceil(5).min(MAX_WORDS) * 5 + 256;
    let mut c = Collector {
        seen: FxHashSet::with_capacity_and_hasher(expected, Default::default()),
        ids: Vec::with_capacity(1024),
        pairs: Vec::with_capacity(2048),
    };
    // A list post is judged by what its author wrote: the list's subject tag and footer are the same on
    // every post of the list, ham or spam, and would teach the engines which lists a corpus came from.
    let list = msg.is_list_post();
    let subject = msg.subject.as_deref().map(|s| if list { without_list_tag(s) } else { s.into() });
    let body = if list { without_list_footer(&msg.body_text) } else { msg.body_text.as_str() };
    let mut words = WordStream::new(&mut c);
    if let Some(s) = &subject {
        words.text(s, Kind::SubjectWord);
    }
    // The subject's words count in the body vocabulary too, but pairs never span subject and body.
    words.window_break();
    if let Some(s) = &subject {
        words.text(s, Kind::Word);
    }
    words.window_break();
    words.text(body, Kind::Word);
    // The footer's links (the list's own pages) go with it, unless the author's text links there too.
    let footer = &msg.body_text[body.len()..];
    let urls = urls_outside(&msg.urls, body, footer);
    header_features(msg, list, &urls, &mut c);
    let singles = c.ids.len();
    let mut ids = c.ids;
    ids.extend_from_slice(&c.pairs);
    let org = organisation(msg).map(|d| organisation_id(&d));
    Features { ids, singles, local: Vec::new(), org }
}

/// The header fields a sender's mail program writes, read as the local head reads them (see
/// [`local_features`]). Not the trace, not the list wrapping's own fields, not the recipients.
const FORM_FIELDS: &[&str] = &[
    "from",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "x-mailer",
    "x-mimeole",
    "x-priority",
    "x-msmail-priority",
    "reply-to",
    "user-agent",
    "thread-index",
    "in-reply-to",
    "references",
];

/// How much of those fields the local head reads.
const FORM_BYTES: usize = 3000;

/// The local head's features: every 4-byte sequence of the sender-written header fields ([`FORM_FIELDS`],
/// as written, in their order, line ends as LF, at most [`FORM_BYTES`]), hashed, plus a constant one (its
/// bias). What they capture is form: how the Message-ID and the Date are laid out, the MIME boundary, the
/// mailer, the quoting of names, which fields come in which order. Trained on an organisation's own mail
/// (TREC 2007's university, two folds) they separate its ham from its spam nearly as well as the words do
/// (1-ROCA 0.035% to 0.040%), and differently: beside the other engines they catch a third of what those
/// missed (`eval`, 116 -> 75 of 2,500 spam missed). Trained on another organisation's mail they fail (a model from the SpamAssassin corpus ranks the
/// university's mail at 1-ROCA 6%: which mail programs a server's correspondents use, which newsletters
/// its users read, is that server's own), which is why the portable model leaves form out and this head
/// speaks only for an organisation it learned (`classify::Model::classify`).
pub fn local_features(raw_headers: &[u8]) -> Vec<u64> {
    let mut text: Vec<u8> = Vec::with_capacity(FORM_BYTES);
    let mut keep = false;
    for line in raw_headers.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if !matches!(line[0], b' ' | b'\t') {
            let name = line.split(|&b| b == b':').next().unwrap_or(b"");
            keep = line.contains(&b':') && FORM_FIELDS.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(name));
        }
        if keep {
            let room = FORM_BYTES - text.len();
            text.extend_from_slice(&line[..line.len().min(room)]);
            if text.len() < FORM_BYTES {
                text.push(b'\n');
            }
            if text.len() >= FORM_BYTES {
                break;
            }
        }
    }
    // A gram is four bytes: its id is the 32-bit value, tagged with the family, times an odd constant (a
    // bijection, so distinct grams never share an id; the head's slot is the product's high bits). Cheaper
    // than a general hash, and the head reads every gram of the fields.
    let id = |v: u64| (v | (Kind::Form as u64) << 32).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut ids: Vec<u64> = std::iter::once(id(1 << 40))
        .chain(text.windows(4).map(|g| id(u32::from_le_bytes([g[0], g[1], g[2], g[3]]) as u64)))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The id the model counts an organisation's learned mail under: `domain` is a registrable domain (as
/// [`organisation`] gives it).
pub fn organisation_id(domain: &str) -> u64 {
    xxh3_64_with_seed(domain.as_bytes(), Kind::Organisation as u64)
}

/// The organisation a message was addressed to: the registrable domain of its first recipient as a stored
/// message names it (`Envelope::fill_from_trace` reads the same: `Delivered-To` or `X-Original-To`, else
/// `To:`). `None` without a dotted domain.
pub fn organisation(msg: &Message<'_>) -> Option<String> {
    let recipient = crate::envelope::stored_recipients(msg).into_iter().next()?;
    let (_, domain) = recipient.rsplit_once('@')?;
    // A dotted name can still reduce to nothing registrable ("@." in a forged Delivered-To).
    domain.contains('.').then(|| crate::message::urls::registrable_domain(domain)).filter(|d| d.contains('.'))
}

fn header_features(msg: &Message<'_>, list: bool, urls: &[&UrlInfo], c: &mut Collector) {
    if let Some(from) = &msg.from {
        c.add(Kind::FromDomain, &from.domain);
        c.add(Kind::FromAddress, &from.address.to_lowercase());
        if let Some(name) = &from.name {
            for w in name.split(|ch: char| !ch.is_alphanumeric()).take(6) {
                if !w.is_empty() {
                    c.add(Kind::FromName, &w.to_lowercase());
                }
            }
        } else {
            c.add(Kind::FromName, "(none)");
        }
    }
    if let Some(rt) = &msg.reply_to {
        c.add(Kind::ReplyToDomain, &rt.domain);
        let same = msg.from.as_ref().is_some_and(|f| f.domain == rt.domain);
        c.add(Kind::Shape, if same { "reply-to-same" } else { "reply-to-other" });
    }
    // An allow-list of sender-side headers; see the module comment for why not a deny-list.
    for h in &msg.headers {
        let name = h.name.as_str();
        if name.eq_ignore_ascii_case("x-mailer") || name.eq_ignore_ascii_case("user-agent") {
            c.add(Kind::Mailer, &mailer_pattern(&h.value));
        } else if name.eq_ignore_ascii_case("content-type") {
            let lower = h.value.to_ascii_lowercase();
            if let Some(cs) = param(&lower, "charset") {
                c.add(Kind::Charset, cs);
            }
            if let Some(b) = param(&h.value, "boundary") {
                c.add(Kind::Boundary, &shape(b));
            }
        } else if name.eq_ignore_ascii_case("date") {
            c.add(Kind::DateShape, &date_shape(&h.value));
        } else if name.eq_ignore_ascii_case("to") {
            let v = h.value.to_ascii_lowercase();
            if v.contains("undisclosed") {
                c.add(Kind::ToShape, "undisclosed");
            }
            c.add(Kind::ToShape, &format!("n:{}", bucket(v.matches('@').count())));
        } else if name.eq_ignore_ascii_case("list-id") && !list {
            c.add(Kind::ListId, &list_id(&h.value));
        } else if name.eq_ignore_ascii_case("list-unsubscribe") {
            c.add(Kind::Shape, "has-list-unsubscribe");
        }
        if list && LIST_HEADERS.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        if let Some(known) = SENDER_HEADERS.iter().find(|n| name.eq_ignore_ascii_case(n)) {
            c.add(Kind::HeaderName, known);
            if VALUE_HEADERS.contains(known) {
                let mut v = String::with_capacity(40);
                v.push_str(known);
                v.push(':');
                v.extend(h.value.trim().chars().take(32).flat_map(char::to_lowercase));
                c.add(Kind::HeaderValue, &v);
            }
        }
    }
    if msg.to.is_empty() {
        c.add(Kind::ToShape, "no-to");
    }
    // Only the origin hop (the oldest Received) describes the sender; the newer ones describe whoever
    // collected the mail. Its host is reduced to a pattern: digits hidden, the registrable domain kept.
    if let Some(origin) = msg.hops.last() {
        if let Some(host) = origin.from_host.as_deref() {
            if !is_local(host) {
                c.add(Kind::OriginHost, &host_pattern(host));
                let dom = crate::message::urls::registrable_domain(host);
                c.add(Kind::OriginHost, &dom);
            }
        } else if origin.from_ip.is_some() {
            c.add(Kind::OriginHost, "(ip only)");
        }
    }
    for u in urls.iter().take(64) {
        if u.ip.is_some() {
            c.add(Kind::UrlShape, "ip-host");
        } else if !u.domain.is_empty() {
            c.add(Kind::UrlDomain, &u.domain);
            c.add(Kind::UrlHost, &u.host);
        }
        for w in u
            .path_and_query
            .split(|ch: char| !ch.is_ascii_alphanumeric())
            .filter(|w| w.len() >= 3 && w.len() <= 20)
            .take(12)
        {
            if w.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            c.add(Kind::UrlWord, &w.to_ascii_lowercase());
        }
        if u.port.is_some() {
            c.add(Kind::UrlShape, "port");
        }
    }
    domain_alignment(msg, urls, c);
    let nurls = urls.len();
    c.add(Kind::Shape, &format!("urls:{}", bucket(nurls)));
    for a in msg.attachments.iter().take(16) {
        c.add(Kind::Attachment, a.real_type.as_str());
    }
}

/// Whether the From: domain is the domain the message links to and the domain it was sent from. A company's
/// own newsletter links to its own site and leaves from its own servers; spam borrows a From: domain that
/// has nothing to do with where the links go or where the mail came from. The same idea as DMARC's
/// alignment, as a fact for the classifiers rather than a verdict.
fn domain_alignment(msg: &Message<'_>, urls: &[&UrlInfo], c: &mut Collector) {
    let Some(from) = &msg.from else { return };
    if from.domain.is_empty() {
        return;
    }
    let fd = crate::message::urls::registrable_domain(&from.domain);
    if !urls.is_empty() {
        let n = urls.iter().filter(|u| u.domain == fd).count();
        let share = if n == 0 {
            "none"
        } else if n * 2 >= urls.len() {
            "most"
        } else {
            "some"
        };
        c.add(Kind::Shape, &format!("from-domain-in-urls:{share}"));
    }
    if let Some(host) = msg.hops.last().and_then(|o| o.from_host.as_deref()) {
        if !is_local(host) {
            let same = crate::message::urls::registrable_domain(host) == fd;
            c.add(Kind::Shape, if same { "origin-is-from-domain" } else { "origin-not-from-domain" });
        }
    }
}

/// A value's shape: runs of digits become `9`, runs of letters `a`, other characters kept; so
/// `----=_NextPart_000_0012_01C2` -> `----=_a_9_9_9a9a`.
fn shape(v: &str) -> String {
    let mut out = String::with_capacity(v.len().min(48));
    let mut last = ' ';
    for ch in v.chars().take(48) {
        let class = if ch.is_ascii_digit() {
            '9'
        } else if ch.is_alphabetic() {
            'a'
        } else {
            ch
        };
        if class != last || !(class == '9' || class == 'a') {
            out.push(class);
        }
        last = class;
    }
    out
}

/// The layout of a Date header, which mail programs write each their own way.
fn date_shape(v: &str) -> String {
    let mut s = shape(v.trim());
    if let Some(p) = v.trim().rfind(['+', '-']) {
        // The zone's sign and whether a comment follows are part of the layout; the value is not.
        s.push_str(if v.trim()[p..].contains('(') { "(c)" } else { "" });
    }
    s
}

fn bucket(n: usize) -> usize {
    match n {
        0 => 0,
        1 => 1,
        2..=3 => 2,
        4..=9 => 3,
        _ => 4,
    }
}

fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.starts_with("127.")
        || host == "::1"
        || host.starts_with("localhost.")
}

/// `Microsoft Outlook Express 6.00.2600.0000` -> `microsoft outlook express #.#.#.#`.
fn mailer_pattern(v: &str) -> String {
    let mut out = String::with_capacity(v.len().min(64));
    let mut last_digit = false;
    for ch in v.chars().take(64) {
        if ch.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            out.extend(ch.to_lowercase());
            last_digit = false;
        }
    }
    out
}

/// `dsl-12-34-56-78.pool.example.net` -> `dsl-#-#-#-#.pool.example.net`.
fn host_pattern(host: &str) -> String {
    mailer_pattern(host)
}

fn param<'a>(value: &'a str, name: &str) -> Option<&'a str> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().trim_matches('"'))
    })
}

fn list_id(v: &str) -> String {
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v,
    };
    inner.trim().to_ascii_lowercase()
}

/// A list post's subject without the list's tag: `[ILUG] FREE FREE FREE!` reads `FREE FREE FREE!`, and
/// `Re: [SAtalk] rules` reads `Re: rules`. One tag of at most 40 characters, at the start or after `Re:`.
fn without_list_tag(subject: &str) -> std::borrow::Cow<'_, str> {
    let s = subject.trim_start();
    let reply = s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:"));
    let rest = if reply { s[3..].trim_start() } else { s };
    match rest.strip_prefix('[').and_then(|r| r.find(']')).filter(|&end| end <= 40) {
        // `end` indexes the text after '[': the tag ends at `end + 1` in `rest`.
        Some(end) if reply => format!("Re: {}", rest[end + 2..].trim_start()).into(),
        Some(end) => rest[end + 2..].trim_start().into(),
        None => subject.into(),
    }
}

/// The URLs that are not only the footer's: by host (a bare `sf.net` in a sponsor's line is a link the parser
/// completed), each host looked up once. A footer longer than [`FOOTER_WINDOW`] keeps its links: a real one is
/// short, and the bound keeps the lookups cheap (at most one search of the post per distinct host).
fn urls_outside<'u>(urls: &'u [UrlInfo], body: &str, footer: &str) -> Vec<&'u UrlInfo> {
    if footer.trim().is_empty() || footer.len() > FOOTER_WINDOW {
        return urls.iter().collect();
    }
    let (footer, body) = (footer.to_ascii_lowercase(), body.to_ascii_lowercase());
    let mut footer_only: rustc_hash::FxHashMap<&str, bool> = Default::default();
    urls.iter()
        .filter(|u| {
            let host = u.host.as_str();
            !*footer_only.entry(host).or_insert_with(|| {
                !host.is_empty()
                    && memchr::memmem::find(footer.as_bytes(), host.as_bytes()).is_some()
                    && memchr::memmem::find(body.as_bytes(), host.as_bytes()).is_none()
            })
        })
        .collect()
}

/// How far from the end of a list post its footer is looked for.
const FOOTER_WINDOW: usize = 1200;
/// Lines naming the list's machinery at the very end of a post, without a separator above them, that are
/// taken as its footer (`http://xent.com/mailman/listinfo/fork`).
const FOOTER_BARE_LINES: usize = 3;

/// The body of a list post without the footer its list software appended: from the first separator line
/// (`-- `, or a row of ten or more `_`, `-` or `=`) in the last [`FOOTER_WINDOW`] bytes after which the text
/// names the list's machinery (listinfo, unsubscribe, mailing list), so that a sponsor's advertisement the
/// list inserts above its own footer goes with it; else the last few lines when each names it.
///
/// A footer is the small end of a post. Anyone can write list headers and an "unsubscribe" under a `-- `,
/// so a "footer" longer than what stays is kept: a spammer can hide at most half of his text from the
/// classifiers this way (the heuristics read all of it).
fn without_list_footer(body: &str) -> &str {
    let kept = footer_start(body);
    if body[kept..].trim().len() > body[..kept].trim().len() {
        return body;
    }
    body[..kept].trim_end()
}

fn footer_start(body: &str) -> usize {
    // The window starts at a line: the tail of a longer line cut at the edge is not a separator row.
    let from = match body.len().checked_sub(FOOTER_WINDOW) {
        Some(edge) if edge > 0 => {
            body.as_bytes()[edge..].iter().position(|&b| b == b'\n').map_or(body.len(), |i| edge + i + 1)
        }
        _ => 0,
    };
    let mut offset = from;
    for line in body[from..].split_inclusive('\n') {
        let t = line.trim_end();
        let row = t.len() >= 10 && t.bytes().all(|b| matches!(b, b'_' | b'-' | b'=') && b == t.as_bytes()[0]);
        if (t == "--" || row) && names_list_machinery(&body[offset..]) {
            return offset;
        }
        offset += line.len();
    }
    let mut end = body.trim_end().len();
    for _ in 0..FOOTER_BARE_LINES {
        let start = body[..end].rfind('\n').map_or(0, |i| i + 1);
        if !names_list_machinery(&body[start..end]) {
            break;
        }
        end = body[..start].trim_end().len();
    }
    end
}

fn names_list_machinery(text: &str) -> bool {
    const MARKS: &[&str] = &["listinfo", "unsubscribe", "mailing list", "(un)subscription", "list maintainer"];
    let lower = text.to_ascii_lowercase();
    MARKS.iter().any(|k| lower.contains(k))
}

/// Characters of normalised text read for character n-grams.
const GRAM_CHARS: usize = 3000;

/// Splits text into normalised words and feeds words, word pairs and character 4-grams to the collector.
///
/// The character 4-grams (of the normalised text, word separators collapsed to one space) are the
/// features that led the TREC spam track's logistic models: they see through split words, odd spacing and
/// inflections that word features miss. Like the pairs they overlap heavily, so only the linear model
/// reads them.
struct WordStream<'c> {
    c: &'c mut Collector,
    /// The last four normalised characters, 16 bits each.
    gram: u64,
    gram_filled: usize,
    gram_chars: usize,
    /// Hashes of the last words, newest last, for the pairs.
    window: [u64; OSB_WINDOW],
    filled: usize,
    words: usize,
    word: String,
    folded: String,
}

impl<'c> WordStream<'c> {
    fn new(c: &'c mut Collector) -> Self {
        WordStream {
            c,
            gram: 0,
            gram_filled: 0,
            gram_chars: 0,
            window: [0; OSB_WINDOW],
            filled: 0,
            words: 0,
            word: String::with_capacity(32),
            folded: String::with_capacity(32),
        }
    }

    fn window_break(&mut self) {
        self.filled = 0;
    }

    fn text(&mut self, text: &str, kind: Kind) {
        for ch in text.chars() {
            if self.words >= MAX_WORDS {
                return;
            }
            if is_invisible(ch) {
                continue;
            }
            if ch.is_ascii() {
                self.push_char(ch, kind);
            } else {
                // NFKC turns full-width letters, ligatures and styled (mathematical) letters into plain ones.
                for n in std::iter::once(ch).nfkc() {
                    self.push_char(fold_confusable(n), kind);
                }
            }
        }
        self.end_word(kind);
    }

    fn push_gram(&mut self, ch: char) {
        if self.gram_chars >= GRAM_CHARS || (ch == ' ' && self.gram & 0xFFFF == ' ' as u64) {
            return;
        }
        self.gram_chars += 1;
        self.gram = (self.gram << 16) | (ch as u64 & 0xFFFF);
        self.gram_filled += 1;
        if self.gram_filled >= 4 {
            self.c.add_pair(xxh3_64_with_seed(&self.gram.to_le_bytes(), 0x4A11));
        }
    }

    fn push_char(&mut self, ch: char, kind: Kind) {
        let grams = matches!(kind, Kind::Word);
        if ch.is_alphanumeric() || (ch == '@' && !self.word.is_empty()) {
            if ch.is_ascii() {
                let l = ch.to_ascii_lowercase();
                self.word.push(l);
                if grams {
                    self.push_gram(l);
                }
            } else {
                for l in ch.to_lowercase() {
                    self.word.push(l);
                    if grams {
                        self.push_gram(l);
                    }
                }
            }
        } else {
            if grams {
                self.push_gram(if matches!(ch, '$' | '€' | '£' | '!' | '%') { ch } else { ' ' });
            }
            self.end_word(kind);
            if matches!(ch, '$' | '€' | '£' | '!' | '%') {
                self.word.push(ch);
                self.end_word(kind);
            }
        }
    }

    fn end_word(&mut self, kind: Kind) {
        if self.word.is_empty() {
            return;
        }
        let word = std::mem::take(&mut self.word);
        self.emit(&word, kind);
        self.word = word;
        self.word.clear();
    }

    fn emit(&mut self, word: &str, kind: Kind) {
        let chars = word.chars().count();
        let first = word.chars().next().unwrap_or(' ');
        let h = if chars == 1 && first.is_alphanumeric() {
            // Single letters and digits say nothing alone, but they still break pairs.
            self.filled = 0;
            return;
        } else if word.bytes().all(|b| b.is_ascii_digit()) {
            shape_hash(kind, 'n', chars)
        } else if chars > MAX_WORD_CHARS {
            shape_hash(kind, first, chars / 8)
        } else {
            xxh3_64_with_seed(word.as_bytes(), kind as u64)
        };
        self.words += 1;
        self.c.add_hash(h);
        if let Some(fold) = self.leet_fold(word) {
            let hf = xxh3_64_with_seed(fold.as_bytes(), kind as u64);
            self.c.add_hash(hf);
        }
        // Orthogonal sparse bigrams: (older word, this word, distance).
        let n = self.filled.min(OSB_WINDOW - 1);
        for d in 1..=n {
            let older = self.window[OSB_WINDOW - d];
            self.c.add_pair(pair_hash(older, h, d as u64));
        }
        self.window.copy_within(1.., 0);
        self.window[OSB_WINDOW - 1] = h;
        self.filled += 1;
    }

    /// `v1agra` -> `viagra`, `fr33` -> `free`: only for words that mix letters with look-alike digits.
    fn leet_fold(&mut self, word: &str) -> Option<&str> {
        let has_alpha = word.chars().any(|c| c.is_alphabetic());
        let has_leet = word.chars().any(|c| matches!(c, '0' | '1' | '3' | '4' | '5' | '@'));
        if !has_alpha || !has_leet || word.contains('@') && word.len() > 8 {
            return None;
        }
        self.folded.clear();
        for ch in word.chars() {
            self.folded.push(match ch {
                '0' => 'o',
                '1' => 'i',
                '3' => 'e',
                '4' | '@' => 'a',
                '5' => 's',
                c => c,
            });
        }
        Some(&self.folded)
    }
}

fn shape_hash(kind: Kind, c: char, n: usize) -> u64 {
    let mut buf = [0u8; 16];
    let s = c.encode_utf8(&mut buf[..4]).len();
    buf[s..s + 8].copy_from_slice(&(n as u64).to_le_bytes());
    xxh3_64_with_seed(&buf[..s + 8], (kind as u64) | 0x100)
}

fn pair_hash(a: u64, b: u64, distance: u64) -> u64 {
    let mut buf = [0u8; 16];
    buf[..8].copy_from_slice(&a.to_le_bytes());
    buf[8..].copy_from_slice(&b.to_le_bytes());
    xxh3_64_with_seed(&buf, 0x05B0 + distance)
}

fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{034F}'
    )
}

/// Cyrillic and Greek letters that look like Latin ones, folded to the Latin letter (lower case; the
/// caller lower-cases the rest). A small table of the look-alikes spam actually uses.
fn fold_confusable(c: char) -> char {
    match c {
        'а' | 'А' | 'α' | 'Α' => 'a',
        'в' | 'В' | 'β' | 'Β' => 'b',
        'с' | 'С' | 'ϲ' => 'c',
        'е' | 'Е' | 'ε' | 'Ε' => 'e',
        'н' | 'Н' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'м' | 'М' | 'Μ' => 'm',
        'п' | 'η' => 'n',
        'о' | 'О' | 'ο' | 'Ο' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ѕ' | 'Ѕ' => 's',
        'т' | 'Т' | 'τ' | 'Τ' => 't',
        'υ' | 'Υ' => 'u',
        'ν' => 'v',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'у' | 'У' | 'γ' => 'y',
        'Ζ' => 'z',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(raw: &str) -> Features {
        features(&Message::parse(raw.as_bytes(), 1 << 20))
    }

    /// The local head reads the sender's fields as written: not the trace, the recipients or the list's own
    /// fields; the same with CRLF or LF line ends; a changed layout is a changed feature set; the read is
    /// bounded however long the header.
    #[test]
    fn the_local_head_reads_the_senders_fields_only() {
        let head = "Message-ID: <000a01c7$4f2b1e30$c0a80001@pc>\nFrom: \"Bert\" <b@shop.example>\n\
                    Subject: hello\nX-Mailer: Microsoft Outlook Express 6.00\nContent-Type: text/plain;\n\tcharset=\"x\"\n";
        let base = feats(&format!("Received: from a by b\nTo: x@ours.example\n{head}\nbody\n"));
        let trace = feats(&format!(
            "Received: from c by d (8.13/8.13) id 1\nDelivered-To: y@ours.example\nTo: z@ours.example\n\
             List-Id: <l.example>\nX-Spam-Status: Yes\n{head}\nother words\n"
        ));
        assert_eq!(base.local, trace.local);
        assert_eq!(
            base.local,
            feats(&format!("To: x@ours.example\r\n{}\r\nbody\r\n", head.replace('\n', "\r\n"))).local
        );
        let other =
            feats(&format!("{}\nbody\n", head.replace("<000a01c7$4f2b1e30$c0a80001@pc>", "<1234.ABCD@shop.example>")));
        assert_ne!(base.local, other.local);
        // Grams of the fields plus the constant bias, each once.
        let mut unique = base.local.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), base.local.len());
        assert!(base.local.len() > 50 && base.local.len() <= FORM_BYTES, "{}", base.local.len());
        // A long field of ever-new grams (the numbers 0, 1, 2, ... written out) is read up to the bound.
        let numbers: String = (0..30_000).map(|n| n.to_string()).collect();
        let long = feats(&format!("Subject: {numbers}\n\nx\n"));
        assert!(long.local.len() > FORM_BYTES / 2 && long.local.len() <= FORM_BYTES, "{}", long.local.len());
        // No sender field at all: only the bias.
        assert_eq!(feats("Received: from a\n\nx\n").local.len(), 1);
    }

    /// The organisation is the first recipient's registrable domain, from the receiving server's fields
    /// first.
    #[test]
    fn the_organisation_is_the_recipients_domain() {
        let org = |raw: &str| organisation(&Message::parse(raw.as_bytes(), 1 << 20));
        assert_eq!(org("To: a@mail.ours.example\n\nx\n").as_deref(), Some("ours.example"));
        assert_eq!(
            org("Delivered-To: b@dept.uni.ac.uk\nTo: list@lists.other.org\n\nx\n").as_deref(),
            Some("uni.ac.uk")
        );
        assert_eq!(org("To: undisclosed-recipients:;\n\nx\n"), None);
        assert_eq!(org("Subject: no recipient\n\nx\n"), None);
        assert_eq!(feats("To: a@ours.example\n\nx\n").org, feats("To: Z <z@OURS.example>\n\ny\n").org);
    }

    #[test]
    fn lookalikes_and_case_give_the_same_word() {
        let a = feats("Subject: x\n\nbuy cheap viagra\n");
        let b = feats("Subject: x\n\nBUY CHEAP VIАGRA\n"); // Cyrillic А
        assert_eq!(a, b);
    }

    #[test]
    fn leet_spelling_shares_the_plain_word() {
        let plain = feats("Subject: x\n\nviagra\n");
        let leet = feats("Subject: x\n\nv1agra\n");
        let word = xxh3_64_with_seed(b"viagra", Kind::Word as u64);
        assert!(plain.ids.contains(&word));
        assert!(leet.ids.contains(&word));
    }

    #[test]
    fn other_filters_verdicts_are_not_features() {
        let a = feats("From: a@example.com\nSubject: hello\n\nsee you tomorrow\n");
        let b = feats(
            "From: a@example.com\nSubject: hello\nX-Spam-Status: Yes, score=20\nX-Spam-Flag: YES\n\
             X-Mailsift-Action: reject\nDelivered-To: trap@collector.example\nX-Loop: collector\n\
             \nsee you tomorrow\n",
        );
        assert_eq!(a.ids, b.ids);
        // The local head does not read them either (only the organisation differs: the Delivered-To).
        assert_eq!(a.local, b.local);
    }

    /// The markup's tag names are the mail program's, not the sender's: the same words in two HTML
    /// dialects give the same features, and no feature changes when a tag is swapped for another.
    #[test]
    fn html_tag_names_are_not_features() {
        let html = |body: &str| {
            feats(&format!(
                "From: news@shop.example\nSubject: offers\nMIME-Version: 1.0\n\
                 Content-Type: text/html; charset=us-ascii\n\n<html><body>{body}</body></html>\n"
            ))
        };
        let old = html("<font color=red><b>Cheap</b> pills</font> <a href=\"http://shop.example/x\">here</a>");
        let new = html(
            "<span style=\"color:red\"><strong>Cheap</strong> pills</span> <a href=\"http://shop.example/x\">here</a>",
        );
        assert_eq!(old, new);
        // The words a reader sees are still there.
        assert!(old.ids.contains(&xxh3_64_with_seed(b"pills", Kind::Word as u64)));
    }

    /// Nor are the MIME type and transfer encoding the program chose: the same HTML sent quoted-printable,
    /// base64 or 8-bit gives the same features, and so does the same text as plain text or as HTML.
    #[test]
    fn the_mime_format_is_not_a_feature() {
        let msg = |ctype: &str, cte: &str, body: &str| {
            feats(&format!(
                "From: news@shop.example\nSubject: offers\nMIME-Version: 1.0\n\
                 Content-Type: {ctype}; charset=us-ascii\nContent-Transfer-Encoding: {cte}\n\n{body}\n"
            ))
        };
        let html = "<p>Our spring catalogue is out</p>";
        let qp = msg("text/html", "quoted-printable", html);
        let b64 = msg("text/html", "base64", "PHA+T3VyIHNwcmluZyBjYXRhbG9ndWUgaXMgb3V0PC9wPg==");
        let bit8 = msg("text/html", "8bit", html);
        assert!(qp.ids.contains(&xxh3_64_with_seed(b"catalogue", Kind::Word as u64)), "the words are read");
        // The portable features; the local head reads the form on purpose (`local_features`).
        assert_eq!(qp.ids, b64.ids);
        assert_eq!(qp.ids, bit8.ids);
        assert_eq!(qp.ids, msg("text/plain", "7bit", "Our spring catalogue is out").ids);
        assert_ne!(qp.local, b64.local);
    }

    /// A list post's tag, footer and List-Id are the list's, not the author's: the same post through two
    /// lists gives the same features. Outside a list post the same text counts as written.
    #[test]
    fn a_list_posts_wrapping_is_not_a_feature() {
        let post = |list: &str, footer: &str| {
            feats(&format!(
                "From: a@example.com\nSubject: Re: [{list}] FREE FREE FREE!\nList-Id: <{list}.lists.example>\n\
                 X-BeenThere: {list}@lists.example\n\nfree web cams, click http://cams.example\n{}\n{footer}",
                "Thats right free unlimited web cam feeds, chat, pictures, videos, all free, you pay nothing. "
                    .repeat(3)
            ))
        };
        let ilug = post(
            "ILUG",
            "\n-- \nIrish Linux Users' Group: ilug@linux.ie\nhttp://www.linux.ie/mailman/listinfo/ilug for \
             (un)subscription information.\nList maintainer: listmaster@linux.ie\n",
        );
        let fork = post("fork", "\nhttp://xent.com/mailman/listinfo/fork\n");
        let sf = post(
            "SAtalk",
            "\n-------------------------------------------------------\nThis sf.net email is sponsored by: \
             Jabber - the world's fastest growing\n_______________________________________________\n\
             Spamassassin-talk mailing list\nhttps://lists.sourceforge.net/lists/listinfo/spamassassin-talk\n",
        );
        // The portable features (the local head, which reads the subject as written, speaks only for an
        // organisation whose own lists it learned).
        assert_eq!(ilug.ids, fork.ids);
        assert_eq!(ilug.ids, sf.ids);
        // The author's words stay, and so does the reply marker.
        let word = |w: &str| xxh3_64_with_seed(w.as_bytes(), Kind::Word as u64);
        let subject_word = |w: &str| xxh3_64_with_seed(w.as_bytes(), Kind::SubjectWord as u64);
        assert!(ilug.ids.contains(&word("cams")) && ilug.ids.contains(&subject_word("re")));
        assert!(!ilug.ids.contains(&subject_word("ilug")) && !ilug.ids.contains(&word("maintainer")));
        // Nor are the fields the list writes: the post reads as the same words sent directly.
        let header = |h: &str| xxh3_64_with_seed(h.as_bytes(), Kind::HeaderName as u64);
        assert!(!ilug.ids.contains(&header("x-beenthere")));
        let errors_to = "From: a@example.com\nSubject: x\nErrors-To: bounces@example.com\n";
        assert!(!feats(&format!("{errors_to}List-Id: <l.example>\n\nhello\n")).ids.contains(&header("errors-to")));
        let direct = feats(&format!("{errors_to}\nhello\n"));
        assert!(direct.ids.contains(&header("errors-to")), "outside a list post it is the sender's field");
        // Not a list post: a signature naming a mailing list is the author's text.
        let own = feats("From: a@example.com\nSubject: [ILUG] notes\n\nsee you\n-- \nI run the ILUG mailing list\n");
        assert!(own.ids.contains(&word("mailing")));
        assert!(own.ids.contains(&subject_word("ilug")));
    }

    /// List headers are anyone's to write: a spam that puts its pitch under a `-- ` with an "unsubscribe"
    /// keeps its words, because a footer longer than the post is not a footer.
    #[test]
    fn a_forged_footer_does_not_hide_the_pitch() {
        let word = |w: &str| xxh3_64_with_seed(w.as_bytes(), Kind::Word as u64);
        let spam = feats(
            "From: a@example.com\nSubject: hi\nList-Id: <x.lists.example>\n\nhi\n-- \n\
             Cheap pills, no prescription, order at http://pills.example today. To unsubscribe reply STOP.\n",
        );
        assert!(spam.ids.contains(&word("prescription")));
        let url = xxh3_64_with_seed(b"pills.example", Kind::UrlDomain as u64);
        assert!(spam.ids.contains(&url));
    }

    #[test]
    fn list_tags_and_footers_are_found_where_lists_put_them() {
        assert_eq!(without_list_tag("[ILUG] FREE"), "FREE");
        assert_eq!(without_list_tag("Re: [SAtalk] rules"), "Re: rules");
        assert_eq!(without_list_tag("RE:[x] y"), "Re: y");
        assert_eq!(without_list_tag("plain subject"), "plain subject");
        assert_eq!(without_list_tag("[unterminated tag"), "[unterminated tag");
        let long = format!("[{}] y", "t".repeat(60));
        assert_eq!(without_list_tag(&long), long, "a bracket far from its start is not a tag");
        // A separator with no list machinery after it is the author's.
        let sig = "text\n-- \nJohn, at home\n";
        assert_eq!(without_list_footer(sig), sig.trim_end());
        // Only the end of a long post is searched; a separator far above stays.
        let early = format!("a\n--\nunsubscribe here\n{}", "word ".repeat(400));
        assert_eq!(without_list_footer(&early), early.trim_end());
        // Non-ASCII text across the window's edge does not split a character.
        let wide = format!("{}\n-- \nmailing list\n", "é".repeat(700));
        assert_eq!(without_list_footer(&wide), "é".repeat(700));
        // The tail of a long line cut at the window's edge is not a separator row.
        let cut = format!("{}{}\nlistinfo http://l.example\n", "word ".repeat(300), "-".repeat(1190));
        let row = format!("{}{}", "word ".repeat(300), "-".repeat(1190));
        assert_eq!(without_list_footer(&cut), row, "only the bare listinfo line goes");
    }

    #[test]
    fn pairs_are_features() {
        let a = feats("Subject: x\n\nfree money now\n");
        let b = feats("Subject: x\n\nmoney free now\n");
        assert_ne!(a, b, "word order must matter through the pairs");
    }

    #[test]
    fn from_domain_alignment_is_a_feature() {
        let shape = |v: &str| xxh3_64_with_seed(v.as_bytes(), Kind::Shape as u64);
        let own = feats("From: News <news@mail.shop.example>\nSubject: x\n\nsee https://www.shop.example/sale\n");
        assert!(own.ids.contains(&shape("from-domain-in-urls:most")));
        let borrowed = feats("From: News <news@freemail.example>\nSubject: x\n\nsee http://pills.example/buy\n");
        assert!(borrowed.ids.contains(&shape("from-domain-in-urls:none")));
    }
}
