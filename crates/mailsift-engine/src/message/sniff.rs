//! The real type of an attachment, from its first bytes, and the file names inside ZIP archives.
//!
//! A claimed `application/pdf` that starts with `MZ` is a Windows program; that mismatch is evidence no
//! matter what the name says. We recognise the handful of formats that matter for mail filtering rather than
//! every format there is.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RealType {
    Executable,
    Elf,
    Zip,
    Rar,
    SevenZip,
    Gzip,
    Pdf,
    Ole,
    Rtf,
    Png,
    Jpeg,
    Gif,
    Html,
    Script,
    Iso,
    Text,
    Unknown,
}

impl RealType {
    pub fn as_str(self) -> &'static str {
        match self {
            RealType::Executable => "exe",
            RealType::Elf => "elf",
            RealType::Zip => "zip",
            RealType::Rar => "rar",
            RealType::SevenZip => "7z",
            RealType::Gzip => "gzip",
            RealType::Pdf => "pdf",
            RealType::Ole => "ole",
            RealType::Rtf => "rtf",
            RealType::Png => "png",
            RealType::Jpeg => "jpeg",
            RealType::Gif => "gif",
            RealType::Html => "html",
            RealType::Script => "script",
            RealType::Iso => "iso",
            RealType::Text => "text",
            RealType::Unknown => "unknown",
        }
    }

    pub fn is_archive(self) -> bool {
        matches!(self, RealType::Zip | RealType::Rar | RealType::SevenZip | RealType::Gzip)
    }
}

pub fn sniff(data: &[u8]) -> RealType {
    let starts = |m: &[u8]| data.starts_with(m);
    if starts(b"MZ") {
        RealType::Executable
    } else if starts(b"\x7fELF") {
        RealType::Elf
    } else if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") {
        RealType::Zip
    } else if starts(b"Rar!\x1a\x07") {
        RealType::Rar
    } else if starts(b"7z\xbc\xaf\x27\x1c") {
        RealType::SevenZip
    } else if starts(b"\x1f\x8b") {
        RealType::Gzip
    } else if starts(b"%PDF") {
        RealType::Pdf
    } else if starts(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1") {
        RealType::Ole
    } else if starts(b"{\\rtf") {
        RealType::Rtf
    } else if starts(b"\x89PNG") {
        RealType::Png
    } else if starts(b"\xff\xd8\xff") {
        RealType::Jpeg
    } else if starts(b"GIF8") {
        RealType::Gif
    } else if starts(b"#!") {
        RealType::Script
    } else if data.len() > 0x8006 && &data[0x8001..0x8006] == b"CD001" {
        RealType::Iso
    } else {
        let head = &data[..data.len().min(512)];
        let lower: Vec<u8> = head.iter().map(|b| b.to_ascii_lowercase()).collect();
        let has = |n: &[u8]| lower.windows(n.len()).any(|w| w == n);
        if has(b"<html") || has(b"<!doctype html") {
            RealType::Html
        } else if !head.is_empty() && head.iter().all(|&b| b >= 0x20 || b == b'\n' || b == b'\r' || b == b'\t') {
            RealType::Text
        } else {
            RealType::Unknown
        }
    }
}

/// File names stored in a ZIP archive's central directory (bounded; a broken archive yields what was read).
pub fn zip_names(data: &[u8]) -> Vec<String> {
    const SIG: &[u8] = b"PK\x01\x02";
    let mut names = Vec::new();
    let mut i = 0;
    while i + 46 <= data.len() && names.len() < 200 {
        let Some(off) = find(&data[i..], SIG) else {
            break;
        };
        let p = i + off;
        if p + 46 > data.len() {
            break;
        }
        let name_len = u16::from_le_bytes([data[p + 28], data[p + 29]]) as usize;
        let start = p + 46;
        if start + name_len > data.len() {
            break;
        }
        names.push(String::from_utf8_lossy(&data[start..start + name_len]).into_owned());
        i = start + name_len;
    }
    if names.is_empty() {
        // No central directory (truncated archive): fall back to the local file headers.
        let mut i = 0;
        while i + 30 <= data.len() && names.len() < 200 {
            let Some(off) = find(&data[i..], b"PK\x03\x04") else {
                break;
            };
            let p = i + off;
            if p + 30 > data.len() {
                break;
            }
            let name_len = u16::from_le_bytes([data[p + 26], data[p + 27]]) as usize;
            let start = p + 30;
            if start + name_len > data.len() {
                break;
            }
            names.push(String::from_utf8_lossy(&data[start..start + name_len]).into_owned());
            i = start + name_len;
        }
    }
    names
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_common_types() {
        assert_eq!(sniff(b"MZ\x90\x00rest"), RealType::Executable);
        assert_eq!(sniff(b"%PDF-1.7"), RealType::Pdf);
        assert_eq!(sniff(b"PK\x03\x04...."), RealType::Zip);
        assert_eq!(sniff(b"hello world\n"), RealType::Text);
        assert_eq!(sniff(b"\x00\x01\x02"), RealType::Unknown);
    }

    #[test]
    fn reads_zip_names() {
        // A minimal archive with one stored entry "a.exe" (local header + central directory).
        let mut z = Vec::new();
        z.extend_from_slice(b"PK\x03\x04");
        z.extend_from_slice(&[0u8; 22]);
        z.extend_from_slice(&5u16.to_le_bytes());
        z.extend_from_slice(&0u16.to_le_bytes());
        z.extend_from_slice(b"a.exe");
        z.extend_from_slice(b"PK\x01\x02");
        z.extend_from_slice(&[0u8; 24]);
        z.extend_from_slice(&5u16.to_le_bytes());
        z.extend_from_slice(&[0u8; 16]);
        z.extend_from_slice(b"a.exe");
        assert_eq!(zip_names(&z), ["a.exe"]);
        assert_eq!(zip_names(&z[..20]), Vec::<String>::new());
    }
}
