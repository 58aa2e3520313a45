//! The delayed test DNS server: each answer comes `delay` after its query, and queries in flight at once
//! are answered together, not one after another (a load test depends on that).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use mailsift_testkit::dns::{DnsOptions, TestDns, Zone};

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::TXT));
    m.to_vec().unwrap()
}

#[test]
fn every_answer_waits_the_delay_and_many_wait_together() {
    let delay = Duration::from_millis(200);
    let mut zone = Zone::new();
    zone.txt("known.test", "v=spf1 -all");
    let dns = TestDns::start_with(zone, DnsOptions { delay });
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();

    let n: u16 = 20;
    let started = Instant::now();
    for id in 0..n {
        let name = if id == 0 { "known.test." } else { "unknown.test." };
        client.send_to(&query(id, name), dns.addr()).unwrap();
    }
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    for _ in 0..n {
        let (len, _) = client.recv_from(&mut buf).expect("every query is answered");
        assert!(
            started.elapsed() >= delay,
            "an answer came {:?} after the queries, before the delay",
            started.elapsed()
        );
        let reply = Message::from_vec(&buf[..len]).unwrap();
        let expected = if reply.metadata.id == 0 { ResponseCode::NoError } else { ResponseCode::NXDomain };
        assert_eq!(reply.metadata.response_code, expected, "answer {}", reply.metadata.id);
        seen.push(reply.metadata.id);
    }
    // Twenty answers one after another would take 4 s; together they take one delay and some slack.
    assert!(started.elapsed() < delay * 4, "20 delayed answers took {:?}", started.elapsed());
    seen.sort_unstable();
    assert_eq!(seen, (0..n).collect::<Vec<_>>());
    assert_eq!(dns.queries(), n as usize);
}

#[test]
fn without_a_delay_the_answer_is_at_once() {
    let dns = TestDns::start(Zone::new());
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let started = Instant::now();
    client.send_to(&query(7, "nothing.test."), dns.addr()).unwrap();
    let mut buf = [0u8; 4096];
    let (len, _) = client.recv_from(&mut buf).expect("answered");
    assert!(started.elapsed() < Duration::from_millis(150), "took {:?}", started.elapsed());
    assert_eq!(Message::from_vec(&buf[..len]).unwrap().metadata.response_code, ResponseCode::NXDomain);
}
