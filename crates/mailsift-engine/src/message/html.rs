//! HTML rendered to text, plus the structure the checks look at.
//!
//! We run html5ever's tokenizer (not its tree builder: we need tokens and a small style stack, not a DOM) and
//! keep what spam filtering needs: the visible text, the text a reader cannot see (display:none, zero or tiny
//! fonts, text coloured like its background), links with their visible text, images with their sizes, and
//! counts of active content (scripts, forms, frames, objects, embeds). Work is bounded: input beyond
//! `MAX_HTML_BYTES` is not rendered and the element stack is capped, so hostile nesting costs nothing.

use html5ever::tendril::StrTendril;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{BufferQueue, Tag, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts};
use std::cell::RefCell;

/// HTML beyond this size is not rendered (the checks see the first part only).
pub const MAX_HTML_BYTES: usize = 2 * 1024 * 1024;
const MAX_STACK: usize = 256;
const MAX_LINKS: usize = 1000;
const MAX_IMAGES: usize = 1000;

#[derive(Debug, Clone, Default)]
pub struct Link {
    pub href: String,
    /// The text a reader sees for the link (collapsed whitespace).
    pub text: String,
    /// The link wraps an image (no text to compare).
    pub has_image: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Image {
    pub src: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// What one HTML part contained.
#[derive(Debug, Clone, Default)]
pub struct HtmlView {
    /// Visible text, whitespace collapsed, blocks on their own lines.
    pub text: String,
    /// Text present in the markup but invisible to a reader.
    pub hidden_text: String,
    /// Characters of text in a tiny (≤ 2px or size=1 font) but not zero font.
    pub tiny_text_len: usize,
    /// Hidden fragments placed inside visible words ("fi<span style=font-size:0>xx</span>le"): the reader
    /// sees a word, a filter sees garbage.
    pub hidden_word_breaks: u32,
    pub links: Vec<Link>,
    pub images: Vec<Image>,
    /// Other URLs referenced by markup (form actions, frame sources, backgrounds).
    pub other_urls: Vec<String>,
    pub scripts: u32,
    /// Event-handler attributes (onload, onclick...) and javascript:/vbscript: URLs.
    pub script_handlers: u32,
    pub vbscript: bool,
    pub forms: u32,
    pub password_inputs: u32,
    pub iframes: u32,
    pub frames: u32,
    pub objects: u32,
    pub embeds: u32,
    pub meta_refresh: bool,
    pub tags: u32,
    /// `<font>` tags with large sizes or many colours: "shouting" HTML typical of spam.
    pub big_fonts: u32,
    pub colors: u32,
    pub truncated: bool,
}

#[derive(Clone, Copy, Default)]
struct Style {
    hidden: bool,
    tiny: bool,
    /// Foreground and background as 24-bit RGB, when known.
    fg: Option<u32>,
    bg: Option<u32>,
}

struct Open {
    name: String,
    style: Style,
}

#[derive(Default)]
struct State {
    view: HtmlView,
    stack: Vec<Open>,
    in_link: Option<usize>,
    raw_skip: u32,
    body_bg: Option<u32>,
    last_space: bool,
    last_hidden_space: bool,
}

struct Sink(RefCell<State>);

const VOID: &[&str] =
    &["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"];
const BLOCK: &[&str] = &[
    "p",
    "div",
    "br",
    "tr",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "ul",
    "ol",
    "blockquote",
    "pre",
    "hr",
    "title",
    "dd",
    "dt",
    "center",
    "form",
];

impl State {
    fn current(&self) -> Style {
        self.stack.last().map(|o| o.style).unwrap_or(Style { bg: self.body_bg, ..Style::default() })
    }

    fn push_text(&mut self, s: &str) {
        let style = self.current();
        if self.raw_skip > 0 {
            return;
        }
        let same_colour = matches!((style.fg, style.bg), (Some(f), Some(b)) if colours_close(f, b));
        let hidden = style.hidden || same_colour;
        if hidden
            && s.chars().next().is_some_and(char::is_alphabetic)
            && self.view.text.chars().next_back().is_some_and(char::is_alphabetic)
        {
            self.view.hidden_word_breaks += 1;
        }
        let (buf, last_space) = if hidden {
            (&mut self.view.hidden_text, &mut self.last_hidden_space)
        } else {
            (&mut self.view.text, &mut self.last_space)
        };
        let mut added = 0usize;
        for c in s.chars() {
            if c.is_whitespace() {
                if !*last_space && !buf.is_empty() {
                    buf.push(' ');
                    *last_space = true;
                }
            } else {
                buf.push(c);
                *last_space = false;
                added += 1;
            }
        }
        if !hidden && style.tiny {
            self.view.tiny_text_len += added;
        }
        if !hidden {
            if let Some(i) = self.in_link {
                let link = &mut self.view.links[i];
                if link.text.len() < 512 {
                    let t = s.split_whitespace().collect::<Vec<_>>().join(" ");
                    if !t.is_empty() {
                        if !link.text.is_empty() {
                            link.text.push(' ');
                        }
                        link.text.push_str(&t);
                    }
                }
            }
        }
    }

    fn newline(&mut self) {
        let t = &mut self.view.text;
        while t.ends_with(' ') {
            t.pop();
        }
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        self.last_space = true;
    }

    fn start_tag(&mut self, tag: &Tag) -> TokenSinkResult<()> {
        self.view.tags += 1;
        let name: &str = &tag.name;
        let attr = |n: &str| tag.attrs.iter().find(|a| &*a.name.local == n).map(|a| &*a.value);
        for a in &tag.attrs {
            let an: &str = &a.name.local;
            if an.len() > 2 && an.starts_with("on") {
                self.view.script_handlers += 1;
            }
            let v = a.value.trim_start();
            if starts_with_ignore_case(v, "javascript:") {
                self.view.script_handlers += 1;
            }
            if starts_with_ignore_case(v, "vbscript:") {
                self.view.script_handlers += 1;
                self.view.vbscript = true;
            }
        }
        let mut style = self.current();
        if let Some(css) = attr("style") {
            apply_css(css, &mut style);
        }
        if attr("hidden").is_some() {
            style.hidden = true;
        }
        if let Some(c) = attr("bgcolor").and_then(parse_colour) {
            style.bg = Some(c);
            if name == "body" {
                self.body_bg = Some(c);
            }
        }
        // A background picture lies over the background colour, so the colour behind the text is no longer
        // known: white headings on a dark banner image are readable (a newsletter's header cell), not hidden.
        if attr("background").is_some_and(|b| !b.trim().is_empty()) {
            style.bg = None;
            if name == "body" {
                self.body_bg = None;
            }
        }
        match name {
            "a" => {
                if let Some(href) = attr("href") {
                    if self.view.links.len() < MAX_LINKS {
                        self.view.links.push(Link { href: href.trim().to_string(), ..Link::default() });
                        self.in_link = Some(self.view.links.len() - 1);
                    }
                }
            }
            "img" => {
                if let Some(i) = self.in_link {
                    self.view.links[i].has_image = true;
                }
                if self.view.images.len() < MAX_IMAGES {
                    let dim = |n: &str| attr(n).and_then(|v| v.trim().trim_end_matches("px").parse::<u32>().ok());
                    let mut width = dim("width");
                    let mut height = dim("height");
                    if let Some(css) = attr("style") {
                        width = width.or_else(|| css_px(css, "width"));
                        height = height.or_else(|| css_px(css, "height"));
                    }
                    let src = attr("src").unwrap_or("").trim().to_string();
                    self.view.images.push(Image { src, width, height });
                }
            }
            "font" => {
                if let Some(c) = attr("color").and_then(parse_colour) {
                    style.fg = Some(c);
                    self.view.colors += 1;
                }
                if let Some(size) = attr("size") {
                    let s = size.trim();
                    if s == "1" || s == "0" || s == "-2" || s == "-3" {
                        // size=1 is small print, common in legitimate footers: only tiny, never hidden.
                        style.tiny = true;
                    } else if s.starts_with('+') || s.parse::<i32>().map(|n| n >= 5).unwrap_or(false) {
                        self.view.big_fonts += 1;
                    }
                }
            }
            "script" => {
                self.view.scripts += 1;
                if attr("language").or(attr("type")).is_some_and(|l| l.to_ascii_lowercase().contains("vbs")) {
                    self.view.vbscript = true;
                }
            }
            "form" => {
                self.view.forms += 1;
                if let Some(a) = attr("action") {
                    self.view.other_urls.push(a.trim().to_string());
                }
            }
            "input" if attr("type").is_some_and(|t| t.eq_ignore_ascii_case("password")) => {
                self.view.password_inputs += 1;
            }
            "iframe" => {
                self.view.iframes += 1;
                if let Some(a) = attr("src") {
                    self.view.other_urls.push(a.trim().to_string());
                }
            }
            "frame" | "frameset" => {
                self.view.frames += 1;
                if let Some(a) = attr("src") {
                    self.view.other_urls.push(a.trim().to_string());
                }
            }
            "object" | "applet" => self.view.objects += 1,
            "embed" => self.view.embeds += 1,
            "meta" if attr("http-equiv").is_some_and(|v| v.eq_ignore_ascii_case("refresh")) => {
                self.view.meta_refresh = true;
            }
            _ => {}
        }
        if let Some(bg) = attr("background") {
            self.view.other_urls.push(bg.trim().to_string());
        }
        if BLOCK.contains(&name) {
            self.newline();
        }
        if name == "script" || name == "style" || name == "title" {
            // Script, style sheet and title are not part of the body a reader sees.
            self.raw_skip += 1;
            let kind = match name {
                "script" => RawKind::ScriptData,
                "title" => RawKind::Rcdata,
                _ => RawKind::Rawtext,
            };
            if !tag.self_closing {
                return TokenSinkResult::RawData(kind);
            }
            self.raw_skip -= 1;
        }
        if !tag.self_closing && !VOID.contains(&name) && self.stack.len() < MAX_STACK {
            self.stack.push(Open { name: name.to_string(), style });
        }
        TokenSinkResult::Continue
    }

    fn end_tag(&mut self, tag: &Tag) {
        let name: &str = &tag.name;
        if name == "script" || name == "style" || name == "title" {
            self.raw_skip = self.raw_skip.saturating_sub(1);
        }
        if name == "a" {
            self.in_link = None;
        }
        if BLOCK.contains(&name) {
            self.newline();
        }
        if let Some(pos) = self.stack.iter().rposition(|o| o.name == name) {
            self.stack.truncate(pos);
        }
    }
}

impl TokenSink for Sink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let mut st = self.0.borrow_mut();
        match token {
            Token::TagToken(tag) => match tag.kind {
                TagKind::StartTag => return st.start_tag(&tag),
                TagKind::EndTag => st.end_tag(&tag),
            },
            Token::CharacterTokens(t) if st.raw_skip == 0 => st.push_text(&t),
            _ => {}
        }
        TokenSinkResult::Continue
    }
}

/// Renders one HTML document.
pub fn render(html: &str) -> HtmlView {
    let (input, truncated) = if html.len() > MAX_HTML_BYTES {
        let mut cut = MAX_HTML_BYTES;
        while !html.is_char_boundary(cut) {
            cut -= 1;
        }
        (&html[..cut], true)
    } else {
        (html, false)
    };
    let tok = Tokenizer::new(Sink(RefCell::new(State::default())), TokenizerOpts::default());
    let queue = BufferQueue::default();
    queue.push_back(StrTendril::from_slice(input));
    let _ = tok.feed(&queue);
    tok.end();
    let mut view = std::mem::take(&mut tok.sink.0.borrow_mut().view);
    view.truncated = truncated;
    while view.text.ends_with([' ', '\n']) {
        view.text.pop();
    }
    view
}

/// ASCII case-insensitive prefix test that never slices inside a UTF-8 character.
pub(crate) fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.as_bytes().get(..prefix.len()).is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
}

fn apply_css(css: &str, style: &mut Style) {
    for decl in css.split(';') {
        let Some((prop, value)) = decl.split_once(':') else {
            continue;
        };
        let prop = prop.trim().to_ascii_lowercase();
        let value = value.trim().to_ascii_lowercase();
        let value = value.trim_end_matches("!important").trim();
        match prop.as_str() {
            "display" if value == "none" => style.hidden = true,
            "visibility" if value == "hidden" || value == "collapse" => style.hidden = true,
            "opacity" if value.parse::<f32>().is_ok_and(|o| o < 0.1) => style.hidden = true,
            "font-size" => match css_length_px(value) {
                Some(px) if px < 0.5 => style.hidden = true,
                Some(px) if px <= 2.5 => style.tiny = true,
                _ => {}
            },
            "color" => style.fg = parse_colour(value).or(style.fg),
            "background-color" | "background" => {
                if let Some(c) = value.split_whitespace().find_map(parse_colour) {
                    style.bg = Some(c);
                }
                // A picture in the shorthand covers its colour (see the `background` attribute).
                if prop == "background" && value.contains("url(") {
                    style.bg = None;
                }
            }
            "background-image" if value.contains("url(") => style.bg = None,
            _ => {}
        }
    }
}

fn css_px(css: &str, prop: &str) -> Option<u32> {
    css.split(';').find_map(|d| {
        let (p, v) = d.split_once(':')?;
        if p.trim().eq_ignore_ascii_case(prop) {
            css_length_px(v.trim()).map(|f| f as u32)
        } else {
            None
        }
    })
}

fn css_length_px(v: &str) -> Option<f32> {
    let v = v.trim();
    let num_end = v.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(v.len());
    let n: f32 = v[..num_end].parse().ok()?;
    let unit = &v[num_end..];
    Some(match unit {
        "" | "px" => n,
        "pt" => n * 1.33,
        "em" | "rem" => n * 16.0,
        "%" => n * 0.16,
        _ => return None,
    })
}

/// Parses `#rgb`, `#rrggbb`, `rgb(r,g,b)` and the few colour names spammers use for hiding text.
pub(crate) fn parse_colour(v: &str) -> Option<u32> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.as_str();
    if let Some(hex) = v.strip_prefix('#') {
        return match hex.len() {
            6 => u32::from_str_radix(hex, 16).ok(),
            3 => {
                let n = u32::from_str_radix(hex, 16).ok()?;
                let (r, g, b) = ((n >> 8) & 0xf, (n >> 4) & 0xf, n & 0xf);
                Some((r * 17) << 16 | (g * 17) << 8 | (b * 17))
            }
            _ => None,
        };
    }
    if let Some(inner) = v.strip_prefix("rgb(").and_then(|s| s.strip_suffix(')')) {
        let parts: Vec<u32> = inner.split(',').filter_map(|p| p.trim().parse().ok()).collect();
        if parts.len() == 3 {
            return Some((parts[0].min(255) << 16) | (parts[1].min(255) << 8) | parts[2].min(255));
        }
        return None;
    }
    match v {
        "white" => Some(0xffffff),
        "black" => Some(0),
        "red" => Some(0xff0000),
        "blue" => Some(0x0000ff),
        "green" => Some(0x008000),
        "yellow" => Some(0xffff00),
        "gray" | "grey" => Some(0x808080),
        "silver" => Some(0xc0c0c0),
        _ if v.len() == 6 && v.bytes().all(|b| b.is_ascii_hexdigit()) => u32::from_str_radix(v, 16).ok(),
        _ => None,
    }
}

fn colours_close(a: u32, b: u32) -> bool {
    let d = |s: u32| ((a >> s) & 0xff).abs_diff((b >> s) & 0xff);
    d(16) + d(8) + d(0) < 24
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_visible_text_and_links() {
        let v = render(
            r#"<html><head><title>T</title><style>p{color:red}</style></head><body><p>Hello <b>world</b></p>
            <a href="http://evil.example/x">www.paypal.com</a><script>var a="no";</script></body></html>"#,
        );
        assert_eq!(v.text, "Hello world\nwww.paypal.com");
        assert_eq!(v.links.len(), 1);
        assert_eq!(v.links[0].text, "www.paypal.com");
        assert_eq!(v.links[0].href, "http://evil.example/x");
        assert_eq!(v.scripts, 1);
    }

    #[test]
    fn hidden_text_is_separated() {
        let v = render(
            r##"<body bgcolor="#ffffff"><p>Buy now</p><div style="display:none">lorem ipsum hidden words</div>
            <span style="font-size:0px">zero</span><font color="#fffffe">white on white</font>
            <font size="1">small print</font></body>"##,
        );
        assert_eq!(v.text, "Buy now\nsmall print");
        assert!(v.hidden_text.contains("lorem ipsum hidden words"));
        assert!(v.hidden_text.contains("zero"));
        assert!(v.hidden_text.contains("white on white"));
        assert_eq!(v.tiny_text_len, "smallprint".len());
    }

    #[test]
    fn text_on_a_background_picture_is_visible() {
        let v = render(
            r##"<body bgcolor="#ffffff"><table><tr><td background="http://x.example/dark.gif">
            <font color="#ffffff">white heading</font></td></tr></table>
            <div style="background: #ffffff url(http://x.example/d.gif)"><font color="#ffffff">on a css picture</font></div>
            <font color="#ffffff">white on white</font></body>"##,
        );
        assert!(v.text.contains("white heading") && v.text.contains("on a css picture"), "{}", v.text);
        assert_eq!(v.hidden_text.trim(), "white on white");
    }

    #[test]
    fn counts_active_content() {
        let v = render(
            r#"<iframe src="http://x.example/"></iframe><form action="http://y.example/p"><input type=password></form>
            <object></object><embed src=a><img src="http://t.example/p.gif" width=1 height="1"><a href="javascript:go()">x</a>"#,
        );
        assert_eq!((v.iframes, v.forms, v.password_inputs, v.objects, v.embeds), (1, 1, 1, 1, 1));
        assert_eq!(v.script_handlers, 1);
        assert_eq!(v.images[0].width, Some(1));
        assert_eq!(v.other_urls.len(), 2);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let html = "<div>".repeat(100_000) + "deep" + &"</div>".repeat(100_000);
        let v = render(&html);
        assert_eq!(v.text.trim(), "deep");
    }

    #[test]
    fn colours_parse() {
        assert_eq!(parse_colour("#fff"), Some(0xffffff));
        assert_eq!(parse_colour("rgb(255, 0, 0)"), Some(0xff0000));
        assert_eq!(parse_colour("nonsense"), None);
    }
}
