//! The checks: pure functions of (Envelope, Message, Evidence) that report symbols.
//!
//! One module per family. Each declares its symbols in a `SYMBOLS` table beside the code that emits them,
//! and a `check` function. Adding a check means adding a function and its symbols; `all_symbols` and `run`
//! are the only lists to extend.

pub mod asf;
pub mod attachments;
pub mod auth;
pub mod classifier;
pub mod connection;
pub mod content;
pub mod headers;
pub mod html;
pub mod obfuscation;
pub mod reputation;
pub mod rules;
pub mod urls;

use crate::config::EngineConfig;
use crate::envelope::Envelope;
use crate::evidence::Evidence;
use crate::message::Message;
use crate::symbols::{Hits, SymbolSpec};

/// What every check may read.
pub struct Ctx<'e, 'm> {
    pub envelope: &'e Envelope,
    pub message: &'e Message<'m>,
    pub evidence: &'e Evidence,
    pub config: &'e EngineConfig,
    /// The scan time, Unix seconds.
    pub now: i64,
    /// Our protected domains and their sending servers, compiled.
    pub spoof: &'e auth::SpoofGuard,
}

/// Every built-in symbol table.
pub fn all_symbols() -> Vec<&'static [SymbolSpec]> {
    vec![
        content::SYMBOLS,
        connection::SYMBOLS,
        auth::SYMBOLS,
        reputation::SYMBOLS,
        headers::SYMBOLS,
        obfuscation::SYMBOLS,
        urls::SYMBOLS,
        html::SYMBOLS,
        attachments::SYMBOLS,
        asf::SYMBOLS,
        rules::SYMBOLS,
        crate::symbols::PARSE_SYMBOLS,
        classifier::SYMBOLS,
    ]
}

/// Runs the fixed checks (the rule set runs separately: it holds compiled state).
pub fn run(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    content::check(ctx, hits);
    connection::check(ctx, hits);
    auth::check(ctx, hits);
    reputation::check(ctx, hits);
    headers::check(ctx, hits);
    obfuscation::check(ctx, hits);
    urls::check(ctx, hits);
    html::check(ctx, hits);
    attachments::check(ctx, hits);
    asf::check(ctx, hits);
    classifier::check(ctx, hits);
    // A message cut at a MIME limit was judged on the part before the cut: say so in the verdict.
    crate::message::limits::report(ctx.message, hits);
}

/// Large free-mail providers: a Reply-To there, or a From that claims one, means something.
pub const FREEMAIL_DOMAINS: &[&str] = &[
    "aol.com",
    "gmail.com",
    "googlemail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "live.com",
    "msn.com",
    "outlook.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "ymail.com",
    "mail.com",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "rediffmail.com",
    "lycos.com",
    "excite.com",
    "netscape.net",
    "juno.com",
    "usa.net",
    "zoho.com",
    "protonmail.com",
    "proton.me",
    "icloud.com",
    "me.com",
    "inbox.com",
    "web.de",
    "libero.it",
    "btinternet.com",
    "earthlink.net",
    "rocketmail.com",
    "email.com",
    "mail2world.com",
    "caramail.com",
    "tiscali.co.uk",
    "naver.com",
];
