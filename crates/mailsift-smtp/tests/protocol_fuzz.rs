//! Property tests of the milter and spamd listeners on arbitrary input, over real sockets: whatever bytes a
//! client sends (well-framed packets with random contents, random framing, or plain noise), the listener ends
//! that connection within a bounded time and keeps serving the next client. One gateway serves every case.
//!
//! CI runs a few dozen cases per property; a longer run outside CI is one command:
//! `PROPTEST_CASES=20000 cargo test --release -p mailsift-smtp --test protocol_fuzz`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mailsift_engine::{Engine, EngineConfig};
use mailsift_smtp::milter::{packet, read_packet};
use mailsift_smtp::{Gateway, GatewayState, Listen, SmtpConfig};
use mailsift_store::Database;
use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a listener may take to close a connection after the client stopped sending.
const CLOSE_WITHIN: Duration = Duration::from_secs(20);

struct Fixture {
    runtime: tokio::runtime::Runtime,
    milter: String,
    spamd: String,
    _gateway: Arc<Gateway>,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = "[smtp]\nlisten = [\"127.0.0.1:0\"]\nhostname = \"mx.test\"\n[smtp.milter]\nlisten = \
                      [\"127.0.0.1:0\"]\n[smtp.spamd]\nlisten = [\"127.0.0.1:0\"]\n";
        let (gateway, side) = runtime.block_on(async {
            let engine = Engine::new(EngineConfig::from_toml(config).unwrap()).unwrap();
            let state = GatewayState::new(engine, SmtpConfig::from_toml(config).unwrap(), dir.path()).unwrap();
            let g = Gateway::new(state, Database::open_in(dir.path()).unwrap(), dir.path());
            let listeners = g.bind().await.unwrap();
            let side = g.start_side_listeners().await.unwrap();
            tokio::spawn(g.clone().serve(listeners));
            (g, side)
        });
        let addr = |kind: &str| {
            side.iter()
                .find(|(k, _)| *k == kind)
                .map(|(_, a)| a.trim_start_matches("inet:").to_string())
                .unwrap_or_else(|| panic!("no {kind} listener in {side:?}"))
        };
        Fixture { milter: addr("milter"), spamd: addr("spamd"), runtime, _gateway: gateway, _dir: dir }
    })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48)
}

/// Sends `bytes`, half-closes, and reads until the listener closes; fails if it does not close in time.
async fn send_and_wait_for_close(addr: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
    // The listener may close before reading everything (a bad frame): a failed write is an answer too.
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut got = Vec::new();
    match tokio::time::timeout(CLOSE_WITHIN, s.read_to_end(&mut got)).await {
        Ok(_) => Ok(got),
        Err(_) => Err(format!("the listener kept the connection open after {CLOSE_WITHIN:?} of silence")),
    }
}

/// A milter negotiation as Postfix sends it gets its answer: the listener is alive and serving.
async fn milter_still_serves(addr: &str) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| format!("connect after the case: {e}"))?;
    let mut neg = Vec::new();
    neg.extend_from_slice(&6u32.to_be_bytes());
    neg.extend_from_slice(&0x1ffu32.to_be_bytes());
    neg.extend_from_slice(&0x1fffffu32.to_be_bytes());
    s.write_all(&packet(b'O', &neg)).await.map_err(|e| e.to_string())?;
    let answer = tokio::time::timeout(Duration::from_secs(10), read_packet(&mut s))
        .await
        .map_err(|_| "no answer to a negotiation".to_string())?
        .map_err(|e| e.to_string())?;
    match answer {
        Some(p) if p.command == b'O' => Ok(()),
        other => Err(format!("negotiation answered with {other:?}")),
    }
}

async fn spamd_still_serves(addr: &str) -> Result<(), String> {
    let got = send_and_wait_for_close(addr, b"PING SPAMC/1.5\r\n\r\n").await?;
    if got.starts_with(b"SPAMD/1.5 0 PONG") {
        Ok(())
    } else {
        Err(format!("PING answered {:?}", String::from_utf8_lossy(&got)))
    }
}

/// Milter input: well-framed packets of known and unknown commands with random data, sometimes a wrong
/// length field, sometimes noise after them.
fn milter_stream() -> impl Strategy<Value = Vec<u8>> {
    let command = prop_oneof![
        8 => prop::sample::select(b"OCHMRLTDNEBAQUK".to_vec()),
        1 => any::<u8>(),
    ];
    let data = prop_oneof![
        // NUL-separated strings, as most commands carry.
        3 => prop::collection::vec("[a-zA-Z0-9<>@. :{}-]{0,40}", 0..5).prop_map(|v| {
            let mut d = Vec::new();
            for s in v {
                d.extend_from_slice(s.as_bytes());
                d.push(0);
            }
            d
        }),
        2 => prop::collection::vec(any::<u8>(), 0..300),
    ];
    let framed = (command, data, prop::option::weighted(0.1, any::<u32>())).prop_map(|(c, d, len)| match len {
        Some(l) => {
            let mut p = l.to_be_bytes().to_vec();
            p.push(c);
            p.extend_from_slice(&d);
            p
        }
        None => packet(c, &d),
    });
    (prop::collection::vec(framed, 0..12), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(packets, tail)| {
        let mut out = packets.concat();
        out.extend_from_slice(&tail);
        out
    })
}

/// spamd input: a request line, headers (a Content-length that lies, is huge or is absent), a body.
fn spamd_request() -> impl Strategy<Value = Vec<u8>> {
    let verb = prop_oneof![
        prop::sample::select(vec![
            "CHECK",
            "SYMBOLS",
            "REPORT",
            "REPORT_IFSPAM",
            "PROCESS",
            "HEADERS",
            "PING",
            "SKIP",
            "TELL"
        ])
        .prop_map(str::to_string),
        "[A-Z_]{0,12}",
    ];
    let version = prop_oneof!["SPAMC/1\\.[0-5]".prop_map(|s| s), "[ -~]{0,16}"];
    let header = prop_oneof![
        any::<u64>().prop_map(|n| format!("Content-length: {n}")),
        (0u64..400).prop_map(|n| format!("Content-length: {n}")),
        "User: [a-z]{0,12}".prop_map(|s| s),
        Just("Compress: zlib".to_string()),
        "Message-class: (spam|ham|[a-z]{0,5})".prop_map(|s| s),
        "Set: (local|remote|[a-z, ]{0,10})".prop_map(|s| s),
        "[ -~]{0,60}",
    ];
    (verb, version, prop::collection::vec(header, 0..6), prop::collection::vec(any::<u8>(), 0..400)).prop_map(
        |(verb, version, headers, body)| {
            let mut out = format!("{verb} {version}\r\n").into_bytes();
            for h in headers {
                out.extend_from_slice(h.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&body);
            out
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn milter_listener_survives_any_packet_stream(bytes in prop_oneof![milter_stream(), prop::collection::vec(any::<u8>(), 0..2048)]) {
        let f = fixture();
        let r: Result<(), String> = f.runtime.block_on(async {
            send_and_wait_for_close(&f.milter, &bytes).await?;
            milter_still_serves(&f.milter).await
        });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    #[test]
    fn spamd_listener_survives_any_request(bytes in prop_oneof![spamd_request(), prop::collection::vec(any::<u8>(), 0..2048)]) {
        let f = fixture();
        let r: Result<(), String> = f.runtime.block_on(async {
            send_and_wait_for_close(&f.spamd, &bytes).await?;
            spamd_still_serves(&f.spamd).await
        });
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }

    /// The packet reader alone on arbitrary bytes: never a panic, never more than one packet's allocation.
    #[test]
    fn packet_reader_takes_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let f = fixture();
        f.runtime.block_on(async {
            let mut r = &bytes[..];
            for _ in 0..bytes.len() + 1 {
                match read_packet(&mut r).await {
                    Ok(Some(p)) => {
                        let _ = mailsift_smtp::milter::strings(&p.data);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        });
    }
}
