//! Delivery status notifications (bounces), built with mail-builder.
//!
//! When the next hop refuses some recipients of a message it had already been accepted for, the sender
//! gets one `multipart/report; report-type=delivery-status` message (RFC 6522) with three parts: a text
//! for people, a `message/delivery-status` part with one block per refused recipient (RFC 3464), and the
//! original's header section as `text/rfc822-headers` (the body is not returned: it may be large, and
//! the headers are what the sender needs to recognise the message).
//!
//! Every text that goes into the notification came from outside (the sender's and recipients'
//! addresses from the SMTP client, the refusal from the next hop): addresses are parsed with
//! [`mailsift_engine::address::Address`] and control characters are removed from the rest before they
//! reach a header or a field, so a hostile reply cannot add a header or a recipient block. What this
//! module does not do: decide whether to bounce (the null sender never gets one, routing is checked by
//! the caller) or send it (the caller spools it).

use mail_builder::headers::address::Address as HeaderAddress;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use mail_builder::MessageBuilder;
use mailsift_engine::address::Address;

use crate::headers::find_header_end;
use crate::relay::Reply;
use crate::text::sanitize;

/// The most of the original's header section returned, in bytes (cut at a line end); a message with
/// more header than that still gets a notification, with the first headers.
pub const MAX_RETURNED_HEADERS: usize = 64 * 1024;

/// The longest refusal text copied from the next hop's reply, in bytes.
const MAX_REPLY_TEXT: usize = 512;

/// The notification to `sender` that the next hop refused `refused` (each recipient with the reply it
/// got) for the message `original` (reference `id`, the gateway's queue id), from the gateway `host` at
/// `now` (Unix seconds). `None` when there is nobody to tell: the null sender, or a sender that is not
/// an address.
pub fn delivery_status_notification(
    host: &str,
    sender: &str,
    refused: &[(String, Reply)],
    original: &[u8],
    id: &str,
    now: i64,
) -> Option<Vec<u8>> {
    let sender = Address::parse(sender).ok().filter(|a| !a.is_null() && a.domain().is_some())?;
    let host = sanitize(host, 255).replace(' ', "");
    let id = sanitize(id, 128).replace(' ', "");

    let mut human = format!("Your message (reference {id}) could not be delivered to these recipients:\r\n\r\n");
    let mut status = format!("Reporting-MTA: dns; {host}\r\nArrival-Date: {}\r\n", crate::text::rfc5322_date(now));
    for (rcpt, reply) in refused {
        let rcpt = recipient(rcpt);
        let text = sanitize(&reply.text, MAX_REPLY_TEXT);
        human.push_str(&format!("  <{rcpt}>: {} {text}\r\n", reply.code));
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {rcpt}\r\nAction: failed\r\nStatus: {}\r\nDiagnostic-Code: smtp; {} {text}\r\n",
            status_code(reply),
            reply.code
        ));
    }
    human.push_str("\r\nIt was delivered to the others.\r\n");

    // 7bit when it is ASCII, else 8bit (an SMTPUTF8 address): a message/* part takes no other encoding.
    let status_encoding = if status.is_ascii() { "7bit" } else { "8bit" };
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
        vec![
            MimePart::new(ContentType::new("text/plain").attribute("charset", "utf-8"), human),
            MimePart::new(ContentType::new("message/delivery-status"), status).transfer_encoding(status_encoding),
            MimePart::new(ContentType::new("text/rfc822-headers"), returned_headers(original)),
        ],
    );
    MessageBuilder::new()
        .from(HeaderAddress::new_address(Some("Mail Delivery System"), format!("MAILER-DAEMON@{host}")))
        .to(HeaderAddress::new_address(None::<&str>, sender.to_string()))
        .subject("Undelivered Mail Returned to Sender")
        .date(now)
        .message_id(MessageId::new(format!("{id}.bounce@{host}")))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .header("MIME-Version", Raw::new("1.0"))
        .body(report)
        .write_to_vec()
        .ok()
}

/// A refused recipient as the notification names it: the parsed address, or (when the next hop was
/// given something that does not parse) the text without controls and spaces.
fn recipient(rcpt: &str) -> String {
    match Address::parse(rcpt) {
        Ok(a) if !a.is_null() => a.to_string(),
        _ => sanitize(rcpt, 320).replace(' ', ""),
    }
}

/// The RFC 3463 status of a refusal: the enhanced code the next hop gave at the start of its text when it
/// is one of its class (`550 5.1.1 ...`), else the class alone.
fn status_code(reply: &Reply) -> String {
    let class = if reply.code >= 500 { '5' } else { '4' };
    let given = reply.text.split_whitespace().next().unwrap_or("");
    let mut parts = given.split('.');
    let well_formed = parts.next().is_some_and(|c| c.len() == 1 && c.starts_with(class))
        && parts.next().is_some_and(|s| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_some_and(|d| (1..=3).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
        && parts.next().is_none();
    if well_formed {
        given.to_string()
    } else {
        format!("{class}.0.0")
    }
}

/// The original's header section, at most [`MAX_RETURNED_HEADERS`] bytes cut after a line end, as text
/// (bytes that are not UTF-8 are replaced: the part is for people and for matching the message).
fn returned_headers(original: &[u8]) -> String {
    let mut headers = &original[..find_header_end(original).min(original.len())];
    if headers.len() > MAX_RETURNED_HEADERS {
        let cut = headers[..MAX_RETURNED_HEADERS].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        headers = &headers[..cut];
    }
    String::from_utf8_lossy(headers).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::{MessageParser, MimeHeaders};

    const ORIGINAL: &[u8] = b"From: Alice <alice@sender.test>\r\nTo: bob@example.com\r\nSubject: Quarterly figures\r\n\
Message-ID: <orig-1@sender.test>\r\n\r\nThe body, which is not returned.\r\n";

    fn reply(code: u16, text: &str) -> Reply {
        Reply { code, text: text.to_string() }
    }

    fn part_text(msg: &mail_parser::Message<'_>, index: u32) -> String {
        String::from_utf8_lossy(msg.part(index).expect("the part").contents()).into_owned()
    }

    #[test]
    fn a_bounce_is_a_delivery_status_report_with_the_original_headers() {
        let refused = vec![
            ("bob@example.com".to_string(), reply(550, "5.1.1 No such user here")),
            ("<Carol@Example.COM>".to_string(), reply(552, "Mailbox full")),
        ];
        let raw = delivery_status_notification("mx.gateway.test", "<alice@sender.test>", &refused, ORIGINAL, "Q123", 0)
            .expect("a notification");
        let msg = MessageParser::default().parse(&raw).expect("it parses");
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        assert_eq!(msg.to().and_then(|a| a.first()).and_then(|a| a.address()), Some("alice@sender.test"));
        assert_eq!(msg.from().and_then(|a| a.first()).and_then(|a| a.address()), Some("MAILER-DAEMON@mx.gateway.test"));
        assert_eq!(msg.message_id(), Some("Q123.bounce@mx.gateway.test"));
        assert_eq!(msg.header_raw("Auto-Submitted").map(str::trim), Some("auto-replied"));
        assert_eq!(msg.date().map(|d| d.to_timestamp()), Some(0));
        let ct = msg.content_type().expect("a content type");
        assert_eq!((ct.ctype(), ct.subtype()), ("multipart", Some("report")));
        assert_eq!(ct.attribute("report-type"), Some("delivery-status"));

        let root = msg.part(0).expect("the root");
        let children = match &root.body {
            mail_parser::PartType::Multipart(children) => children.clone(),
            other => panic!("not multipart: {other:?}"),
        };
        assert_eq!(children.len(), 3);
        let types: Vec<String> = children
            .iter()
            .map(|&i| {
                let ct = msg.part(i).unwrap().content_type().unwrap();
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or(""))
            })
            .collect();
        assert_eq!(types, ["text/plain", "message/delivery-status", "text/rfc822-headers"]);

        let human = part_text(&msg, children[0]);
        assert!(human.contains("<bob@example.com>: 550 5.1.1 No such user here"), "{human}");
        assert!(human.contains("Q123"));
        let status = part_text(&msg, children[1]);
        assert!(status.starts_with("Reporting-MTA: dns; mx.gateway.test\r\n"), "{status}");
        assert!(status.contains(
            "\r\n\r\nFinal-Recipient: rfc822; bob@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 No such user here\r\n"
        ), "{status}");
        assert!(
            status.contains("Final-Recipient: rfc822; Carol@example.com\r\nAction: failed\r\nStatus: 5.0.0\r\n"),
            "{status}"
        );
        let headers = part_text(&msg, children[2]);
        assert!(headers.contains("Subject: Quarterly figures"), "{headers}");
        assert!(headers.contains("Message-ID: <orig-1@sender.test>"));
        assert!(!headers.contains("The body"), "only the header section is returned");
    }

    #[test]
    fn nobody_to_tell_means_no_notification() {
        let refused = vec![("bob@example.com".to_string(), reply(550, "no"))];
        for sender in ["", "<>", "postmaster", "a@b\r\nBcc: x@evil.test", "not an address@x"] {
            assert!(
                delivery_status_notification("mx.test", sender, &refused, ORIGINAL, "Q1", 0).is_none(),
                "{sender:?}"
            );
        }
    }

    #[test]
    fn hostile_replies_and_recipients_add_no_header_and_no_field() {
        let refused = vec![(
            "bob@example.com>\r\nBcc: victim@evil.test".to_string(),
            reply(550, "5.7.1 refused\r\nBcc: victim@evil.test\r\n\r\nFinal-Recipient: rfc822; forged@evil.test"),
        )];
        let raw = delivery_status_notification(
            "mx.test\r\nX-Injected: yes",
            "alice@sender.test",
            &refused,
            ORIGINAL,
            "Q9\r\nX-Id: 1",
            1_700_000_000,
        )
        .expect("a notification");
        let msg = MessageParser::default().parse(&raw).expect("it parses");
        assert!(msg.header("Bcc").is_none());
        assert!(msg.header("X-Injected").is_none());
        assert!(msg.header("X-Id").is_none());
        assert_eq!(msg.to().map(|a| a.iter().count()), Some(1));
        let text = String::from_utf8_lossy(&raw);
        for line in text.lines() {
            assert!(
                !line.starts_with("Bcc:") && !line.starts_with("X-Injected") && !line.starts_with("X-Id"),
                "{line}"
            );
        }
        let root = msg.part(0).unwrap();
        let mail_parser::PartType::Multipart(children) = &root.body else { panic!("not multipart") };
        let status = part_text(&msg, children[1]);
        assert_eq!(status.lines().filter(|l| l.starts_with("Final-Recipient:")).count(), 1, "{status}");
        assert!(status.lines().all(|l| !l.starts_with("Final-Recipient: rfc822; forged")), "{status}");
    }

    #[test]
    fn long_header_sections_are_cut_at_a_line_end() {
        let mut original = Vec::new();
        while original.len() <= MAX_RETURNED_HEADERS {
            original.extend_from_slice(b"X-Filler: 0123456789012345678901234567890123456789\r\n");
        }
        original.extend_from_slice(b"\r\nbody\r\n");
        let h = returned_headers(&original);
        assert!(h.len() <= MAX_RETURNED_HEADERS && h.ends_with("\r\n") && h.len() > MAX_RETURNED_HEADERS - 64);
        assert_eq!(status_code(&reply(451, "4.3.0 try later")), "4.3.0");
        assert_eq!(status_code(&reply(550, "4.3.0 mismatched class")), "5.0.0");
        assert_eq!(status_code(&reply(554, "5.7.1")), "5.7.1");
        assert_eq!(status_code(&reply(554, "5.7.1.2 x")), "5.0.0");
    }
}
