//! Attachments judged by what they are, not what they claim: executables, double extensions
//! ("invoice.pdf.exe"), a claimed type that the content contradicts, archives carrying programs, and HTML
//! files (credential-phishing pages). Deliberately not here: virus signatures (the virus engine's job).

use super::Ctx;
use crate::message::RealType;
use crate::symbols::{Group::Attachments, Hits, SymbolSpec};

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        ATTACH_EXECUTABLE,
        ATTACH_DOUBLE_EXTENSION,
        ATTACH_TYPE_MISMATCH,
        ATTACH_ARCHIVE_EXECUTABLE,
        ATTACH_HTML,
        VIRUS_FOUND,
        VIRUS_SCAN_FAILED,
    ];
}

pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(
        sym::ATTACH_EXECUTABLE,
        Attachments,
        5.0,
        "An attachment is a program or script that runs when opened.",
        "Programs should be shared by link, not mail. If this exchange is expected, add a filter rule for this sender.",
    ),
    SymbolSpec::of(
        sym::ATTACH_DOUBLE_EXTENSION,
        Attachments,
        4.0,
        "An attachment name hides a program behind a harmless-looking extension (\"invoice.pdf.exe\").",
        "Only used to deceive; no legitimate sender names files like this.",
    ),
    SymbolSpec::of(
        sym::ATTACH_TYPE_MISMATCH,
        Attachments,
        2.5,
        "An attachment's content is not the type its name or header claims.",
        "Ask the sender to check the file; mislabelled content is a malware habit.",
    ),
    SymbolSpec::of(
        sym::ATTACH_ARCHIVE_EXECUTABLE,
        Attachments,
        4.0,
        "An archive attachment contains a program or script.",
        "Programs should be shared by link. If expected, add a filter rule for this sender.",
    ),
    SymbolSpec::of(
        sym::ATTACH_HTML,
        Attachments,
        1.1,
        "An HTML file is attached (a common carrier of fake login pages).",
        "If expected from this sender, allow the sender.",
    ),
    // The gateway's virus scan (clamd) reports these; they add no score: a virus is refused or quarantined
    // by its own rule (`[smtp.virus] action`), and a failed scan is retried or flagged (`on_failure`).
    SymbolSpec::of(
        sym::VIRUS_FOUND,
        Attachments,
        0.0,
        "The virus scanner found a virus in the message (the detail names the signature).",
        "Nothing to allow: a virus is never delivered. If the signature is a false positive, report it to the engine's vendor.",
    ),
    SymbolSpec::of(
        sym::VIRUS_SCAN_FAILED,
        Attachments,
        0.0,
        "The message could not be scanned for viruses (the scanner was down, slow, out of date, or the message too large).",
        "Check that clamd runs and its database is updated (freshclam); see [smtp.virus].",
    ),
];

const DANGEROUS_EXT: &[&str] = &[
    "exe",
    "scr",
    "pif",
    "bat",
    "cmd",
    "com",
    "cpl",
    "js",
    "jse",
    "vbs",
    "vbe",
    "wsf",
    "wsh",
    "hta",
    "jar",
    "msi",
    "lnk",
    "ps1",
    "reg",
    "iso",
    "img",
    "vhd",
    "dll",
    "sys",
    "application",
    "gadget",
    "msc",
    "msp",
    "scf",
    "inf",
];
const DOCUMENT_EXT: &[&str] =
    &["pdf", "doc", "docx", "xls", "xlsx", "txt", "jpg", "jpeg", "png", "gif", "rtf", "zip", "ppt"];

fn ext(name: &str) -> Option<String> {
    let (_, e) = name.trim().trim_end_matches(['.', ' ']).rsplit_once('.')?;
    Some(e.to_ascii_lowercase())
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    for a in &ctx.message.attachments {
        let name = a.name.as_deref().unwrap_or("");
        let e = ext(name);
        let is_program = matches!(a.real_type, RealType::Executable | RealType::Elf)
            || e.as_deref().is_some_and(|e| DANGEROUS_EXT.contains(&e));
        if is_program {
            hits.hit(
                sym::ATTACH_EXECUTABLE,
                if name.is_empty() { a.real_type.as_str().to_string() } else { name.to_string() },
            );
        }
        if let Some(e) = &e {
            let stem = &name[..name.len() - e.len() - 1];
            if DANGEROUS_EXT.contains(&e.as_str())
                && ext(stem).is_some_and(|inner| DOCUMENT_EXT.contains(&inner.as_str()))
            {
                hits.hit(sym::ATTACH_DOUBLE_EXTENSION, name.to_string());
            }
            let claims_document = matches!(e.as_str(), "pdf" | "jpg" | "jpeg" | "png" | "gif" | "txt");
            if claims_document
                && matches!(a.real_type, RealType::Executable | RealType::Elf | RealType::Zip | RealType::Rar)
            {
                hits.hit(sym::ATTACH_TYPE_MISMATCH, format!("{name} is {}", a.real_type.as_str()));
            }
            if matches!(e.as_str(), "htm" | "html" | "shtml") {
                hits.hit(sym::ATTACH_HTML, name.to_string());
            }
        }
        if matches!(a.real_type, RealType::Executable | RealType::Elf)
            && !a.declared_type.contains("octet-stream")
            && !a.declared_type.contains("x-msdownload")
            && !a.declared_type.contains("executable")
        {
            hits.hit(sym::ATTACH_TYPE_MISMATCH, format!("{} declared {}", a.real_type.as_str(), a.declared_type));
        }
        for inner in &a.archive_names {
            if ext(inner).is_some_and(|e| DANGEROUS_EXT.contains(&e.as_str())) {
                hits.hit(sym::ATTACH_ARCHIVE_EXECUTABLE, format!("{name}: {inner}"));
            }
        }
    }
}
