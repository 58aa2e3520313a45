//! Rate limits shared by two real `mailsift serve` nodes through the `[redis]` of their configuration (a
//! private Redis from testkit, loopback): what one node lets through counts at the other. Skipped without
//! Redis, failing under CI=true.

use std::process::Command;

use mailsift_testkit::clients::smtp_send;
use mailsift_testkit::redis::Redis;

const MESSAGE: &[u8] = b"From: <alice@sender.example>\r\nTo: <bob@example.com>\r\nSubject: shared limits\r\n\
Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <shared@sender.example>\r\n\r\nHello.\r\n";

#[test]
fn two_serve_nodes_with_one_redis_take_from_one_bucket() {
    let Some(redis) = Redis::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mailsift.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[smtp]
hostname = "mx.test"

[[smtp.domains]]
name = "example.com"

[[smtp.rate_limits.rule]]
key = "client_ip"
rate = "2/hour"

[redis]
url = "{}"
"#,
            redis.url()
        ),
    )
    .unwrap();
    let node = |name: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailsift"));
        cmd.arg("--config").arg(&config).arg("--data-dir").arg(dir.path().join(name)).env("MAILSIFT_LOG", "warn");
        mailsift_testkit::gateway::serve(cmd)
    };
    let (a, a_addr) = node("a");
    let (b, b_addr) = node("b");
    assert_eq!(smtp_send(a_addr, "alice@sender.example", &["bob@example.com"], MESSAGE).unwrap().0, 250);
    assert_eq!(smtp_send(b_addr, "alice@sender.example", &["bob@example.com"], MESSAGE).unwrap().0, 250);
    // Each node let one through; the bucket of 127.0.0.1 they share is empty: both defer at MAIL.
    for addr in [a_addr, b_addr] {
        let (code, text) = smtp_send(addr, "alice@sender.example", &["bob@example.com"], MESSAGE).unwrap();
        assert_eq!(code, 451, "{text}");
        assert!(text.contains("4.7.1 Rate limit reached for this client address"), "{text}");
    }
    let keys = redis.cli(&["KEYS", "mailsift:limit:*"]).unwrap();
    assert!(keys.contains("mailsift:limit:client_ip:2/3600:2:any|127.0.0.1"), "{keys}");
    mailsift_testkit::gateway::stop(a);
    mailsift_testkit::gateway::stop(b);
}
