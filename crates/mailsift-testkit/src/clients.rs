//! Small blocking clients for tests, over real TCP on loopback: an SMTP client that sends one message
//! (EHLO, MAIL, RCPT, DATA, QUIT) and reports each reply, and an HTTP/1.1 client that keeps cookies, so
//! tests drive the gateway and its console the way real peers do. Deliberately minimal: no TLS, no
//! pipelining, no chunked request bodies.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One SMTP reply: code and text (continuation lines joined with newlines).
pub type SmtpReply = (u16, String);

fn smtp_reply(r: &mut BufReader<TcpStream>) -> std::io::Result<SmtpReply> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok((0, text));
        }
        let code = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        text.push_str(line.get(4..).unwrap_or("").trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push('\n');
    }
}

/// Sends one message; returns the reply to the end of data (or the first refusal: MAIL, or when every
/// RCPT was refused).
pub fn smtp_send(addr: SocketAddr, mail_from: &str, rcpts: &[&str], message: &[u8]) -> std::io::Result<SmtpReply> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    let cmd = |w: &mut TcpStream, r: &mut BufReader<TcpStream>, line: &str| -> std::io::Result<SmtpReply> {
        w.write_all(line.as_bytes())?;
        w.write_all(b"\r\n")?;
        smtp_reply(r)
    };
    smtp_reply(&mut r)?;
    cmd(&mut w, &mut r, "EHLO client.test")?;
    let m = cmd(&mut w, &mut r, &format!("MAIL FROM:<{mail_from}>"))?;
    if m.0 != 250 {
        return Ok(m);
    }
    let mut accepted = 0;
    let mut last = (0, String::new());
    for rc in rcpts {
        last = cmd(&mut w, &mut r, &format!("RCPT TO:<{rc}>"))?;
        if last.0 / 100 == 2 {
            accepted += 1;
        }
    }
    if accepted == 0 {
        return Ok(last);
    }
    let d = cmd(&mut w, &mut r, "DATA")?;
    if d.0 != 354 {
        return Ok(d);
    }
    let mut body = Vec::with_capacity(message.len() + 16);
    for line in message.split_inclusive(|&b| b == b'\n') {
        if line.first() == Some(&b'.') {
            body.push(b'.');
        }
        body.extend_from_slice(line);
    }
    if !body.ends_with(b"\r\n") {
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b".\r\n");
    w.write_all(&body)?;
    let answer = smtp_reply(&mut r)?;
    let _ = cmd(&mut w, &mut r, "QUIT");
    Ok(answer)
}

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A client with a cookie jar (one cookie per name), default headers, and one connection per request.
#[derive(Debug, Clone)]
pub struct HttpClient {
    pub addr: SocketAddr,
    pub cookies: Vec<(String, String)>,
    /// Sent with every request (e.g. `X-CSRF-Token`, `Authorization`).
    pub headers: Vec<(String, String)>,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> HttpClient {
        HttpClient { addr, cookies: Vec::new(), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> HttpClient {
        self.set_header(name, value);
        self
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers.push((name.to_string(), value.to_string()));
    }

    pub fn get(&mut self, path: &str) -> HttpResponse {
        self.request("GET", path, None, &[])
    }

    pub fn delete(&mut self, path: &str) -> HttpResponse {
        self.request("DELETE", path, None, &[])
    }

    pub fn post_json(&mut self, path: &str, body: &serde_json::Value) -> HttpResponse {
        self.request("POST", path, Some("application/json"), body.to_string().as_bytes())
    }

    pub fn put_json(&mut self, path: &str, body: &serde_json::Value) -> HttpResponse {
        self.request("PUT", path, Some("application/json"), body.to_string().as_bytes())
    }

    pub fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> HttpResponse {
        let body: String =
            fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        self.request("POST", path, Some("application/x-www-form-urlencoded"), body.as_bytes())
    }

    pub fn post_bytes(&mut self, path: &str, content_type: &str, body: &[u8]) -> HttpResponse {
        self.request("POST", path, Some(content_type), body)
    }

    /// Sends a request and reads the whole response (`Connection: close`); keeps `Set-Cookie`s.
    pub fn request(&mut self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> HttpResponse {
        let mut s = TcpStream::connect(self.addr).expect("connect to the HTTP server");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if !self.cookies.is_empty() {
            let c: Vec<String> = self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req.push_str(&format!("Cookie: {}\r\n", c.join("; ")));
        }
        for (k, v) in &self.headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(ct) = content_type {
            req.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        if method != "GET" || !body.is_empty() {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the HTTP response");
        let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP head");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|c| c.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked")) {
            body = dechunk(&body);
        }
        for (k, v) in &headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    self.cookies.retain(|(n, _)| n != name.trim());
                    if !value.is_empty() {
                        self.cookies.push((name.trim().to_string(), value.trim().to_string()));
                    }
                }
            }
        }
        HttpResponse { status, headers, body }
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + size).min(b.len())]);
        b = &b[(start + size + 2).min(b.len())..];
    }
}

/// Percent-encoding for form fields and query strings.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
