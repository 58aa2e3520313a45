//! The relay client keeps connections to a next hop open between messages, and pipelines MAIL FROM and RCPT
//! TO when the next hop offers PIPELINING: tested over TCP against the sink, including the ways a kept
//! connection goes bad (the next hop hangs up, goes down, refuses a transaction) without losing a message.

use std::sync::Arc;
use std::time::Duration;

use mailsift_gateway::relay::{ConnectionCache, RelayClient, RelayError};
use mailsift_smtp::sink::{Behaviour, Sink};

fn client(cache: &Arc<ConnectionCache>) -> RelayClient {
    RelayClient {
        helo: "mx.test".into(),
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(5),
        tls: None,
        cache: cache.clone(),
    }
}

fn message(n: usize) -> Vec<u8> {
    format!("From: a@sender.test\r\nTo: b@example.com\r\nSubject: message {n}\r\n\r\n.leading dot {n}\r\nbody\r\n")
        .into_bytes()
}

#[tokio::test]
async fn messages_to_one_next_hop_share_a_connection() {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let target = sink.addr().to_string();
    let cache = Arc::new(ConnectionCache::default());
    let c = client(&cache);
    for n in 0..10 {
        let rcpts = vec!["b@example.com".to_string(), "c@example.com".to_string()];
        let d = c.deliver(&target, "a@sender.test", &rcpts, &message(n)).await.unwrap();
        assert_eq!(d.accepted, rcpts);
        assert_eq!(d.reply.code, 250);
    }
    assert_eq!(sink.count(), 10);
    assert_eq!(sink.connections(), 1, "ten messages in a row over one kept connection");
    assert_eq!(cache.idle_connections(), 1);
    let got = sink.messages();
    for (n, m) in got.iter().enumerate() {
        assert_eq!(m.rcpts, vec!["b@example.com", "c@example.com"]);
        assert!(String::from_utf8_lossy(&m.data).contains(&format!("Subject: message {n}\r\n")), "in order, intact");
        assert!(String::from_utf8_lossy(&m.data).contains(&format!("\r\n.leading dot {n}\r\n")), "dot-stuffing undone");
    }
    // Concurrent messages each take their own connection; they are kept for the next ones, boundedly.
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let (c, target) = (c.clone(), target.clone());
            tokio::spawn(async move {
                c.deliver(&target, "a@sender.test", &["b@example.com".to_string()], &message(n))
                    .await
                    .map(|d| d.reply.code)
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 250);
    }
    assert_eq!(sink.count(), 18);
    assert!(sink.connections() <= 8, "{} connections for 8 concurrent messages", sink.connections());
    assert!(cache.idle_connections() <= ConnectionCache::PER_TARGET);
}

#[tokio::test]
async fn a_kept_connection_the_next_hop_closed_costs_no_message() {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    sink.set_behaviour(Behaviour { hang_up_after_message: true, ..Default::default() });
    let target = sink.addr().to_string();
    let cache = Arc::new(ConnectionCache::default());
    let c = client(&cache);
    for n in 0..5 {
        // Give the hang-up time to arrive, so the kept connection is known closed or half-closed.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let d = c.deliver(&target, "a@sender.test", &["b@example.com".to_string()], &message(n)).await.unwrap();
        assert_eq!(d.reply.code, 250);
    }
    assert_eq!(sink.count(), 5, "every message delivered once");
    assert_eq!(sink.messages().len(), 5);
    assert_eq!(sink.connections(), 5, "a new connection for each");
}

#[tokio::test]
async fn a_next_hop_that_goes_down_is_a_temporary_failure_even_with_kept_connections() {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    let target = sink.addr().to_string();
    let cache = Arc::new(ConnectionCache::default());
    let c = client(&cache);
    c.deliver(&target, "a@sender.test", &["b@example.com".to_string()], &message(0)).await.unwrap();
    assert_eq!(cache.idle_connections(), 1);
    sink.stop();
    let e = c.deliver(&target, "a@sender.test", &["b@example.com".to_string()], &message(1)).await.unwrap_err();
    assert!(matches!(e, RelayError::Temporary(_)), "{e:?}");
    assert_eq!(sink.count(), 1);
}

#[tokio::test]
async fn refusals_end_the_transaction_and_the_connection_carries_the_next() {
    let sink = Sink::start("127.0.0.1:0".parse().unwrap(), true).await.unwrap();
    sink.set_behaviour(Behaviour { refuse_rcpts: vec!["nobody@example.com".into()], ..Default::default() });
    let target = sink.addr().to_string();
    let cache = Arc::new(ConnectionCache::default());
    let c = client(&cache);
    // Every recipient refused (pipelined RCPTs, all 550): permanent, nothing sent, connection reset and kept.
    let e = c.deliver(&target, "a@sender.test", &["nobody@example.com".to_string()], &message(0)).await.unwrap_err();
    assert!(matches!(&e, RelayError::Permanent(r) if r.code == 550), "{e:?}");
    // One refused, one accepted: delivered to the one.
    let rcpts = vec!["nobody@example.com".to_string(), "b@example.com".to_string()];
    let d = c.deliver(&target, "a@sender.test", &rcpts, &message(1)).await.unwrap();
    assert_eq!(d.accepted, vec!["b@example.com"]);
    assert_eq!(d.refused.len(), 1);
    // The next hop refuses the message itself at the end of data: the transaction is over, the connection goes on.
    sink.set_behaviour(Behaviour { data_reply: Some((451, "4.3.0 later".into())), ..Default::default() });
    let e = c.deliver(&target, "a@sender.test", &["b@example.com".to_string()], &message(2)).await.unwrap_err();
    assert!(matches!(e, RelayError::Temporary(_)), "{e:?}");
    sink.set_behaviour(Behaviour::default());
    let d = c.deliver(&target, "a@sender.test", &["b@example.com".to_string()], &message(3)).await.unwrap();
    assert_eq!(d.reply.code, 250);
    let got = sink.messages();
    assert_eq!(got.len(), 2, "message 1 and message 3 only");
    assert_eq!(got[0].rcpts, vec!["b@example.com"]);
    assert!(String::from_utf8_lossy(&got[1].data).contains("Subject: message 3\r\n"));
    assert_eq!(sink.connections(), 1, "refusals do not cost the connection");
}
