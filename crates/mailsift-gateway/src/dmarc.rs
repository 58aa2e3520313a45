//! DMARC aggregate reports (RFC 7489 §7.2): the settings and the pure work: the reporting period, the
//! report as RFC 7489 Appendix C XML, its file name and subject (§7.2.1.1), and which `rua` URIs may be
//! used (§7.1's external-destination check, decided on facts the caller looked up).
//!
//! The XML is written here rather than by mail-auth's `Report::to_xml`, which writes the newer DMARCbis
//! format (RFC 9990: another namespace, `np`, `testing`, no `pct`) that RFC 7489's schema refuses.
//!
//! What it is not: collecting, sending and receiving, which need the gateway (see `dmarc_send.rs`).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

/// `[smtp.dmarc_reports]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DmarcReportsConfig {
    /// Collect what DMARC found in inbound mail and send aggregate reports to the domains that ask for
    /// them (`rua=`). Off by default: the administrator opts in.
    pub send: bool,
    /// The reporting organisation named in reports (`org_name`); the gateway's hostname when empty.
    pub org_name: String,
    /// The report sender address (`email`, and the From of report mails): an address of one of our
    /// domains. Required with `send = true`.
    pub from: String,
    /// Extra contact information for report receivers (`extra_contact_info`, e.g. a web page); none when
    /// empty.
    pub contact: String,
    /// Length of a reporting period in hours (RFC 7489 §7.2: reports at least daily, 1 to 24).
    pub interval_hours: u64,
    /// At most this many `rua` destinations get one domain's report (RFC 7489 §7.2.1 lets a receiver
    /// limit them; 2 by default).
    pub max_recipients_per_report: usize,
    /// Our addresses that receive `rua` reports for our domains (e.g. `dmarc-rua@ourdomain`): mail to them
    /// is parsed and summarised, and still delivered.
    pub receive: Vec<String>,
    /// The largest report a received mail may expand to (bytes, after decompression): a bigger one is
    /// refused as hostile (a compression bomb), not parsed.
    pub max_received_report_bytes: usize,
}

impl Default for DmarcReportsConfig {
    fn default() -> Self {
        DmarcReportsConfig {
            send: false,
            org_name: String::new(),
            from: String::new(),
            contact: String::new(),
            interval_hours: 24,
            max_recipients_per_report: 2,
            receive: Vec::new(),
            max_received_report_bytes: 10 * 1024 * 1024,
        }
    }
}

impl DmarcReportsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid =
            |field: &str, reason: String| ConfigError::Invalid { field: format!("dmarc_reports.{field}"), reason };
        if !(1..=24).contains(&self.interval_hours) {
            return Err(invalid("interval_hours", format!("{} is not between 1 and 24", self.interval_hours)));
        }
        if self.max_recipients_per_report == 0 {
            return Err(invalid("max_recipients_per_report", "must be at least 1".into()));
        }
        if self.send && !is_address(&self.from) {
            return Err(invalid("from", "sending reports (send = true) needs the report sender's address".into()));
        }
        if !self.from.is_empty() && !is_address(&self.from) {
            return Err(invalid("from", format!("{:?} is not an address", self.from)));
        }
        if let Some(a) = self.receive.iter().find(|a| !is_address(a)) {
            return Err(invalid("receive", format!("{a:?} is not an address")));
        }
        if self.max_received_report_bytes < 1024 {
            return Err(invalid("max_received_report_bytes", "must be at least 1024".into()));
        }
        Ok(())
    }

    /// Whether `rcpt` is one of the `receive` addresses (compared ignoring case).
    pub fn receives(&self, rcpt: &str) -> bool {
        let rcpt = rcpt.trim().trim_start_matches('<').trim_end_matches('>');
        self.receive.iter().any(|a| a.eq_ignore_ascii_case(rcpt))
    }
}

fn is_address(a: &str) -> bool {
    matches!(a.rsplit_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !a.contains(char::is_whitespace))
}

/// The reporting period holding `now` (Unix seconds): `[begin, end)`, aligned to UTC multiples of the interval.
pub fn period_of(now: i64, interval_hours: u64) -> (i64, i64) {
    let len = (interval_hours.clamp(1, 24) * 3600) as i64;
    let begin = now - now.rem_euclid(len);
    (begin, begin + len)
}

/// The file name of a report (RFC 7489 §7.2.1.1): `receiver!policy-domain!begin!end[!unique-id].xml.gz`.
pub fn report_file_name(receiver: &str, domain: &str, begin: i64, end: i64, unique: &str) -> String {
    let clean =
        |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect::<String>();
    let mut name = format!("{}!{}!{begin}!{end}", clean(receiver), clean(domain));
    if !unique.is_empty() {
        name.push('!');
        name.push_str(&clean(unique));
    }
    name.push_str(".xml.gz");
    name
}

/// The subject of a report mail (RFC 7489 §7.2.1.1).
pub fn report_subject(domain: &str, submitter: &str, report_id: &str) -> String {
    format!("Report Domain: {domain} Submitter: {submitter} Report-ID: <{report_id}>")
}

/// A `rua` URI as a mail destination: the address of a `mailto:` URI (RFC 7489 §6.2, §7.1), without
/// header fields; `None` for any other scheme or a malformed address.
pub fn mailto_address(uri: &str) -> Option<String> {
    let rest = uri.trim();
    let rest = rest.get(..7).filter(|s| s.eq_ignore_ascii_case("mailto:")).map(|_| &rest[7..])?;
    let addr = rest.split('?').next().unwrap_or("");
    if !addr.is_ascii() {
        return None;
    }
    // Percent-encoding in an address is legal and rare (`%2B` for `+`): decoded, to ASCII only.
    let mut out = String::new();
    let bytes = addr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok())?;
            let b = u8::from_str_radix(hex, 16).ok().filter(u8::is_ascii)?;
            out.push(b as char);
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    let (local, domain) = out.rsplit_once('@')?;
    if local.is_empty()
        || domain.is_empty()
        || out.len() > 254
        || out.contains(|c: char| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return None;
    }
    Some(format!("{local}@{}", domain.trim_end_matches('.').to_ascii_lowercase()))
}

/// The name whose `v=DMARC1` TXT record authorises `rua_domain` to receive `reported_domain`'s reports
/// (RFC 7489 §7.1).
pub fn authorisation_name(reported_domain: &str, rua_domain: &str) -> String {
    format!("{}._report._dmarc.{}", reported_domain.trim_end_matches('.'), rua_domain.trim_end_matches('.'))
}

/// Whether one of the TXT strings found at [`authorisation_name`] authorises the destination: a record that
/// begins with `v=DMARC1` (RFC 7489 §7.1; the rest of it, such as a `rua` of its own, is not used here).
pub fn authorises(txt: &[String]) -> bool {
    txt.iter().any(|t| {
        let first = t.split(';').next().unwrap_or("").trim();
        let (k, v) = first.split_once('=').unwrap_or(("", ""));
        k.trim().eq_ignore_ascii_case("v") && v.trim() == "DMARC1"
    })
}

/// The policy a report is about (`policy_published`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPolicy {
    pub domain: String,
    pub adkim_strict: bool,
    pub aspf_strict: bool,
    pub p: String,
    pub sp: String,
    pub pct: u8,
    pub fo: String,
}

/// A DKIM signature's result in a report row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimAuth {
    pub domain: String,
    pub selector: String,
    /// `none`, `pass`, `fail`, `policy`, `neutral`, `temperror` or `permerror`.
    pub result: String,
}

/// The SPF result in a report row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpfAuth {
    pub domain: String,
    /// `mfrom` or `helo`.
    pub scope: String,
    /// `none`, `neutral`, `pass`, `fail`, `softfail`, `temperror` or `permerror`.
    pub result: String,
}

/// The raw results of one row (stored as JSON with the row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthResults {
    pub dkim: Vec<DkimAuth>,
    pub spf: Option<SpfAuth>,
}

/// One `record` of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub source_ip: String,
    pub count: u64,
    pub disposition: String,
    pub dkim: String,
    pub spf: String,
    pub header_from: String,
    pub envelope_from: String,
    pub auth: AuthResults,
}

/// One aggregate report, for one policy domain and period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggregateReport {
    pub org_name: String,
    pub email: String,
    pub extra_contact_info: String,
    pub report_id: String,
    pub begin: i64,
    pub end: i64,
    pub policy: PublishedPolicy,
    pub records: Vec<ReportRecord>,
}

/// The namespace of RFC 7489 Appendix C's schema.
pub const XML_NAMESPACE: &str = "http://dmarc.org/dmarc-xml/0.1";

impl AggregateReport {
    /// The report as RFC 7489 Appendix C XML.
    pub fn to_xml(&self) -> String {
        let mut x = String::with_capacity(512 + self.records.len() * 512);
        let _ = writeln!(x, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        let _ = writeln!(x, "<feedback xmlns=\"{XML_NAMESPACE}\">");
        let _ = writeln!(x, "  <version>1.0</version>");
        let _ = writeln!(x, "  <report_metadata>");
        element(&mut x, 4, "org_name", &self.org_name);
        element(&mut x, 4, "email", &self.email);
        if !self.extra_contact_info.is_empty() {
            element(&mut x, 4, "extra_contact_info", &self.extra_contact_info);
        }
        element(&mut x, 4, "report_id", &self.report_id);
        let _ = writeln!(x, "    <date_range>");
        element(&mut x, 6, "begin", &self.begin.to_string());
        element(&mut x, 6, "end", &self.end.to_string());
        let _ = writeln!(x, "    </date_range>");
        let _ = writeln!(x, "  </report_metadata>");
        let p = &self.policy;
        let _ = writeln!(x, "  <policy_published>");
        element(&mut x, 4, "domain", &p.domain);
        element(&mut x, 4, "adkim", if p.adkim_strict { "s" } else { "r" });
        element(&mut x, 4, "aspf", if p.aspf_strict { "s" } else { "r" });
        element(&mut x, 4, "p", disposition(&p.p));
        element(&mut x, 4, "sp", disposition(&p.sp));
        element(&mut x, 4, "pct", &p.pct.min(100).to_string());
        element(&mut x, 4, "fo", if p.fo.is_empty() { "0" } else { &p.fo });
        let _ = writeln!(x, "  </policy_published>");
        for r in &self.records {
            let _ = writeln!(x, "  <record>");
            let _ = writeln!(x, "    <row>");
            element(&mut x, 6, "source_ip", &schema_ip(&r.source_ip));
            element(&mut x, 6, "count", &r.count.to_string());
            let _ = writeln!(x, "      <policy_evaluated>");
            element(&mut x, 8, "disposition", disposition(&r.disposition));
            element(&mut x, 8, "dkim", pass_fail(&r.dkim));
            element(&mut x, 8, "spf", pass_fail(&r.spf));
            let _ = writeln!(x, "      </policy_evaluated>");
            let _ = writeln!(x, "    </row>");
            let _ = writeln!(x, "    <identifiers>");
            element(&mut x, 6, "envelope_from", &r.envelope_from);
            element(&mut x, 6, "header_from", &r.header_from);
            let _ = writeln!(x, "    </identifiers>");
            let _ = writeln!(x, "    <auth_results>");
            for d in &r.auth.dkim {
                let _ = writeln!(x, "      <dkim>");
                element(&mut x, 8, "domain", &d.domain);
                if !d.selector.is_empty() {
                    element(&mut x, 8, "selector", &d.selector);
                }
                element(&mut x, 8, "result", one_of(&d.result, DKIM_RESULTS));
                let _ = writeln!(x, "      </dkim>");
            }
            // The schema wants one SPF result at least: with none evaluated, `none` for the envelope domain.
            let spf = r.auth.spf.clone().unwrap_or_else(|| SpfAuth {
                domain: r.envelope_from.clone(),
                scope: "mfrom".into(),
                result: "none".into(),
            });
            let _ = writeln!(x, "      <spf>");
            element(&mut x, 8, "domain", &spf.domain);
            element(&mut x, 8, "scope", if spf.scope == "helo" { "helo" } else { "mfrom" });
            element(&mut x, 8, "result", one_of(&spf.result, SPF_RESULTS));
            let _ = writeln!(x, "      </spf>");
            let _ = writeln!(x, "    </auth_results>");
            let _ = writeln!(x, "  </record>");
        }
        let _ = writeln!(x, "</feedback>");
        x
    }
}

const DKIM_RESULTS: &[&str] = &["none", "pass", "fail", "policy", "neutral", "temperror", "permerror"];
const SPF_RESULTS: &[&str] = &["none", "neutral", "pass", "fail", "softfail", "temperror", "permerror"];

fn one_of<'a>(v: &'a str, allowed: &[&'a str]) -> &'a str {
    allowed.iter().copied().find(|a| *a == v).unwrap_or(if allowed.contains(&"permerror") {
        "permerror"
    } else {
        "none"
    })
}

fn disposition(v: &str) -> &str {
    match v {
        "quarantine" => "quarantine",
        "reject" => "reject",
        _ => "none",
    }
}

fn pass_fail(v: &str) -> &str {
    if v == "pass" {
        "pass"
    } else {
        "fail"
    }
}

/// An address as the schema's pattern takes it: IPv6 written out in eight groups (it has no `::`).
fn schema_ip(ip: &str) -> String {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) => v6.segments().iter().map(|s| format!("{s:x}")).collect::<Vec<_>>().join(":"),
        _ => ip.to_string(),
    }
}

fn element(x: &mut String, indent: usize, name: &str, value: &str) {
    let _ = writeln!(x, "{:indent$}<{name}>{}</{name}>", "", escape(value));
}

/// XML character data: markup escaped, and characters XML 1.0 does not allow dropped (they come from
/// senders: an envelope domain is theirs to choose).
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_aligned_to_utc() {
        assert_eq!(period_of(86_400 * 3 + 5, 24), (86_400 * 3, 86_400 * 4));
        assert_eq!(period_of(3600 * 7 + 1, 6), (3600 * 6, 3600 * 12));
    }

    #[test]
    fn mailto_uris_become_addresses() {
        assert_eq!(mailto_address("mailto:dmarc@Example.COM").as_deref(), Some("dmarc@example.com"));
        assert_eq!(mailto_address("MAILTO:a%2Bb@x.test?subject=hi").as_deref(), Some("a+b@x.test"));
        assert_eq!(mailto_address("https://x.test/report"), None);
        assert_eq!(mailto_address("mailto:no-at-sign"), None);
        assert_eq!(mailto_address("mailto:a@b.test%"), None);
        assert_eq!(mailto_address("mailto:a b@x.test"), None);
    }

    #[test]
    fn names_and_subject_follow_the_rfc() {
        assert_eq!(report_file_name("mx.ours.test", "acme.test", 1, 2, "r1"), "mx.ours.test!acme.test!1!2!r1.xml.gz");
        assert_eq!(
            report_subject("acme.test", "ours.test", "x"),
            "Report Domain: acme.test Submitter: ours.test Report-ID: <x>"
        );
        assert_eq!(authorisation_name("acme.test", "thirdparty.test"), "acme.test._report._dmarc.thirdparty.test");
        assert!(authorises(&["v=DMARC1".into()]));
        assert!(authorises(&["other".into(), "v=DMARC1; rua=mailto:x@y.test".into()]));
        assert!(!authorises(&["v=spf1 -all".into()]));
    }

    #[test]
    fn ipv6_is_written_in_full() {
        assert_eq!(schema_ip("2001:db8::1"), "2001:db8:0:0:0:0:0:1");
        assert_eq!(schema_ip("192.0.2.1"), "192.0.2.1");
    }

    #[test]
    fn hostile_values_are_escaped() {
        assert_eq!(escape("a<b>&\u{1}\"c"), "a&lt;b&gt;&amp;&quot;c");
    }

    #[test]
    fn the_config_is_checked() {
        let mut c = DmarcReportsConfig::default();
        c.validate().unwrap();
        c.send = true;
        assert!(c.validate().is_err());
        c.from = "dmarc-reports@ours.test".into();
        c.validate().unwrap();
        c.receive = vec!["nope".into()];
        assert!(c.validate().is_err());
        c.receive = vec!["dmarc-rua@ours.test".into()];
        assert!(c.receives("<DMARC-rua@ours.test>"));
    }
}
