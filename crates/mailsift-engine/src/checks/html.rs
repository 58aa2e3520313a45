//! HTML tricks: text hidden from the reader, messages that are only an image, password forms, scripts and
//! frames in mail, meta refreshes and shouting fonts.
//!
//! Hidden text is how spammers feed filters words the reader never sees (display:none, zero-size fonts, text
//! coloured like its background). The ASF module reports the same structures under the administrator's
//! switches; these symbols are the always-on, lower-weight view of them.

use super::Ctx;
use crate::symbols::{Group::Html, Hits, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        HTML_HIDDEN_WORD_BREAK,
        HTML_HIDDEN_TEXT,
        HTML_MOSTLY_HIDDEN,
        HTML_IMAGE_ONLY,
        HTML_GIF_NO_LINKS,
        HTML_PASSWORD_FORM,
        HTML_SCRIPT,
        HTML_IFRAME,
        HTML_META_REFRESH,
        HTML_SHOUTING_FONTS,
        HTML_TINY_TEXT,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(
        sym::HTML_HIDDEN_WORD_BREAK,
        Html,
        3.0,
        "Invisible fragments are placed inside words, so the reader sees one word and a filter another.",
        "Only used to evade filters; no legitimate template hides text inside words.",
    ),
    SymbolSpec::of(sym::HTML_HIDDEN_TEXT, Html, 1.6,
        "The HTML contains text the reader cannot see (display:none, zero-size font, text coloured like its background).",
        "Some newsletter templates hide preview text; if legitimate, ask the sender to drop it or allow the sender."),
    SymbolSpec::of(sym::HTML_MOSTLY_HIDDEN, Html, 2.0, "Most of the HTML's text is invisible to the reader.",
        "Hidden text is used to poison filters; no legitimate message needs it."),
    SymbolSpec::of(sym::HTML_IMAGE_ONLY, Html, 2.5, "The HTML is images with almost no text.",
        "Ask the sender to include text; allow the sender if legitimate."),
    // Image spam: the pitch is a picture (a stock tout, a pill price list) and the text, if any, is padding a
    // filter reads as harmless. A GIF, shown inline, with no link anywhere: in a TREC 2007 sample 159 of
    // 2,500 spam, 154 of them missed by a model trained at another organisation; no ham of 11,012 (TREC),
    // 4,150 (SpamAssassin corpus) or 708 (2010 list posts), no phishing. Photos are JPEG and attached, and a
    // signature's small logo stays under the size.
    SymbolSpec::of(sym::HTML_GIF_NO_LINKS, Html, 3.0,
        "The HTML shows a GIF picture of its own (4 KB or more) and the message has no link or web address \
         anywhere: the text is in the picture, where a filter cannot read it (image spam).",
        "Mailing lists are not judged this way. If a correspondent sends such mail, ask them to put their text \
         in the message; allow the sender meanwhile."),
    SymbolSpec::of(sym::HTML_PASSWORD_FORM, Html, 3.0, "The message contains a form that asks for a password.",
        "Legitimate services never ask for passwords inside a message."),
    // The HTML group is weighed by how a sign separates HTML ham from HTML spam, not plain-text ham from HTML
    // spam: the SpamAssassin corpus's ham is mostly plain text and its spam mostly HTML, so any sign of HTML
    // looks like spam there, and today's newsletters are all HTML. On TRAIN's mail with HTML (157 ham, 806
    // spam): scripts 36% of ham, 7% of spam (the wrong way: weight 0, kept to explain); tiny text 15% against
    // 21% (ratio 1.3: 0.2). Shouting fonts (6% against 28%) and image-only mail (none of the ham) keep theirs.
    SymbolSpec::of(sym::HTML_SCRIPT, Html, 0.0, "The HTML contains scripts or event handlers, which mail clients never run.",
        "Ask the sender to remove scripts from their template."),
    // Weight 0, kept to explain: most mail clients do not load frames, and the newsletters that carry them (an
    // advertising frame in every CNET and ZDNet issue) outnumber spam: 42 ham against 3 spam on the
    // SpamAssassin corpus's TRAIN half. The ASF option frame_or_iframe_tags is there for who wants them judged.
    SymbolSpec::of(sym::HTML_IFRAME, Html, 0.0, "The HTML contains a frame or iframe.",
        "Weighs nothing: most mail clients do not load frames. To be rid of them, ask the sender to remove frames from their template."),
    SymbolSpec::of(sym::HTML_META_REFRESH, Html, 1.5, "The HTML tries to redirect the reader with a meta refresh.",
        "No legitimate message needs this."),
    SymbolSpec::of(sym::HTML_SHOUTING_FONTS, Html, 1.6, "The HTML uses several very large fonts.",
        "Harmless alone; typical of aggressive marketing."),
    SymbolSpec::of(sym::HTML_TINY_TEXT, Html, 0.2, "A good part of the visible text is in a tiny font.",
        "Small print is common in footers; this only adds to other evidence."),
];

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let (mut visible, mut hidden, mut tiny, mut images, mut big) = (0usize, 0usize, 0usize, 0usize, 0u32);
    let mut sample = String::new();
    for v in &ctx.message.html {
        visible += v.text.chars().filter(|c| !c.is_whitespace()).count();
        let h = v.hidden_text.chars().filter(|c| !c.is_whitespace()).count();
        if h > 0 && sample.is_empty() {
            sample = v.hidden_text.chars().take(40).collect();
        }
        hidden += h;
        if v.hidden_word_breaks >= 2 {
            hits.hit(sym::HTML_HIDDEN_WORD_BREAK, format!("{} words broken", v.hidden_word_breaks));
        }
        tiny += v.tiny_text_len;
        images += v.images.len();
        big += v.big_fonts;
        if v.password_inputs > 0 {
            hits.hit(sym::HTML_PASSWORD_FORM, "");
        }
        if v.scripts > 0 || v.script_handlers > 0 {
            hits.hit(sym::HTML_SCRIPT, format!("{} scripts, {} handlers", v.scripts, v.script_handlers));
        }
        if v.iframes > 0 || v.frames > 0 {
            hits.hit(sym::HTML_IFRAME, "");
        }
        if v.meta_refresh {
            hits.hit(sym::HTML_META_REFRESH, "");
        }
    }
    if ctx.message.html.is_empty() {
        return;
    }
    if hidden >= 30 {
        if hidden > visible {
            hits.hit(sym::HTML_MOSTLY_HIDDEN, format!("{hidden} hidden vs {visible} visible characters"));
        } else {
            hits.hit(sym::HTML_HIDDEN_TEXT, format!("{hidden} characters: \"{sample}\""));
        }
    }
    let has_plain_text = ctx.message.text_parts.iter().any(|p| !p.is_html && p.text.trim().len() > 50);
    if images > 0 && visible < 60 && !has_plain_text {
        hits.hit(sym::HTML_IMAGE_ONLY, format!("{images} images, {visible} characters of text"));
    }
    if big >= 2 {
        hits.hit(sym::HTML_SHOUTING_FONTS, format!("{big} large fonts"));
    }
    if let Some(size) = gif_without_links(ctx.message) {
        hits.hit(sym::HTML_GIF_NO_LINKS, format!("{} KB GIF shown inline, no link", size / 1024));
    }
    if visible >= 100 && tiny * 3 >= visible {
        hits.hit(sym::HTML_TINY_TEXT, format!("{tiny} of {visible} characters"));
    }
}

/// The smallest GIF that counts: a signature's logo is a few kilobytes; 95% of the image spam of a TREC 2007
/// sample carried 4.9 KB or more.
const GIF_MIN: usize = 4096;

/// The size of the largest GIF the message carries, when its HTML shows an attached image inline
/// (`src="cid:..."`), the message has no link nor web address in any part, and it is not a list post.
fn gif_without_links(m: &crate::message::Message<'_>) -> Option<usize> {
    if m.is_list_post() || !m.urls.is_empty() {
        return None;
    }
    let inline = m
        .html
        .iter()
        .flat_map(|v| &v.images)
        .any(|i| i.src.trim_start().get(..4).is_some_and(|s| s.eq_ignore_ascii_case("cid:")));
    let linked = m.html.iter().any(|v| !v.links.is_empty() || !v.other_urls.is_empty());
    if !inline || linked {
        return None;
    }
    m.attachments
        .iter()
        .filter(|a| a.real_type == crate::message::sniff::RealType::Gif || a.declared_type == "image/gif")
        .map(|a| a.size)
        .filter(|&s| s >= GIF_MIN)
        .max()
}
