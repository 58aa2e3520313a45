//! A small authoritative DNS server on loopback for tests.
//!
//! It answers A, AAAA, TXT, MX, PTR and CNAME queries from a [`Zone`] held in memory (and changeable while
//! it runs, so a test can "fix" a DNS record and query again), answers NXDOMAIN for unknown names, SERVFAIL
//! for names marked so, and never answers names marked as timing out. Wire encoding is hickory-proto's.
//!
//! [`TestDns::start_with`] can hold every answer back for a fixed delay ([`DnsOptions::delay`]), to load a
//! resolver against a slow server: answers wait in a queue and go out when due, so a delayed server still
//! answers many queries at once (as a real recursive resolver waiting on the network does).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, PTR, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// Test zone data: records by (lower-case name without the final dot, type).
#[derive(Debug, Clone, Default)]
pub struct Zone {
    records: HashMap<(String, RecordType), Vec<RData>>,
    timeouts: HashSet<String>,
    servfail: HashSet<String>,
}

fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

fn name(n: &str) -> Name {
    let fq = if n.ends_with('.') { n.to_string() } else { format!("{n}.") };
    // Test zones deliberately contain odd names; the relaxed parser takes what a DNS label can carry.
    Name::from_ascii(&fq).or_else(|_| Name::from_str_relaxed(&fq)).unwrap_or_else(|_| Name::root())
}

impl Zone {
    pub fn new() -> Zone {
        Zone::default()
    }

    fn add(&mut self, n: &str, t: RecordType, r: RData) -> &mut Self {
        self.records.entry((key(n), t)).or_default().push(r);
        self
    }

    pub fn a(&mut self, n: &str, ip: &str) -> &mut Self {
        match ip.parse::<IpAddr>().expect("valid test IP") {
            IpAddr::V4(v4) => self.add(n, RecordType::A, RData::A(A(v4))),
            IpAddr::V6(v6) => self.add(n, RecordType::AAAA, RData::AAAA(AAAA(v6))),
        }
    }

    /// A TXT record; text longer than 255 bytes is split into strings as publishers do.
    pub fn txt(&mut self, n: &str, text: &str) -> &mut Self {
        let parts: Vec<String> = text.as_bytes().chunks(255).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
        let parts = if parts.is_empty() { vec![String::new()] } else { parts };
        self.add(n, RecordType::TXT, RData::TXT(TXT::new(parts)))
    }

    pub fn mx(&mut self, n: &str, preference: u16, host: &str) -> &mut Self {
        self.add(n, RecordType::MX, RData::MX(MX::new(preference, name(host))))
    }

    pub fn cname(&mut self, n: &str, target: &str) -> &mut Self {
        self.add(n, RecordType::CNAME, RData::CNAME(CNAME(name(target))))
    }

    /// A PTR record for an IP address (the reverse name is built here).
    pub fn ptr(&mut self, ip: &str, host: &str) -> &mut Self {
        let rev = reverse_name(ip.parse().expect("valid test IP"));
        self.add(&rev, RecordType::PTR, RData::PTR(PTR(name(host))))
    }

    /// A PTR record under an already reversed name (`4.3.2.1.in-addr.arpa`).
    pub fn ptr_name(&mut self, reverse: &str, host: &str) -> &mut Self {
        self.add(reverse, RecordType::PTR, RData::PTR(PTR(name(host))))
    }

    /// The server stays silent for queries of this name that have no records: the client times out.
    pub fn timeout(&mut self, n: &str) -> &mut Self {
        self.timeouts.insert(key(n));
        self
    }

    /// The server answers SERVFAIL for this name (any type).
    pub fn servfail(&mut self, n: &str) -> &mut Self {
        self.servfail.insert(key(n));
        self
    }

    /// Removes every record of a name.
    pub fn remove(&mut self, n: &str) -> &mut Self {
        let k = key(n);
        self.records.retain(|(rn, _), _| *rn != k);
        self.timeouts.remove(&k);
        self.servfail.remove(&k);
        self
    }

    fn exists(&self, n: &str) -> bool {
        self.records.keys().any(|(rn, _)| rn == n)
    }
}

/// The reverse-DNS name of an address (`4.3.2.1.in-addr.arpa`, nibbles for IPv6).
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::new();
            for b in v6.octets().iter().rev() {
                s.push_str(&format!("{:x}.{:x}.", b & 0xf, b >> 4));
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// How a [`TestDns`] behaves beyond its zone. The default answers at once, as [`TestDns::start`] does.
#[derive(Debug, Clone, Default)]
pub struct DnsOptions {
    /// Every answer is sent this long after its query arrived (zero: at once).
    pub delay: Duration,
}

/// Answers owed by a delayed server at most; beyond that a query goes unanswered (the client times out), as
/// an overloaded server drops queries, and the memory of a test run stays bounded.
const DELAYED_ANSWERS_MAX: usize = 100_000;

/// A running test DNS server. Stops when dropped.
pub struct TestDns {
    addr: SocketAddr,
    zone: Arc<RwLock<Zone>>,
    queries: Arc<AtomicUsize>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestDns {
    /// Starts a server on 127.0.0.1 on a free port.
    pub fn start(zone: Zone) -> TestDns {
        TestDns::start_with(zone, DnsOptions::default())
    }

    /// Starts a server on 127.0.0.1 on a free port that behaves as `options` say.
    pub fn start_with(zone: Zone, options: DnsOptions) -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind loopback UDP");
        socket.set_read_timeout(Some(Duration::from_millis(50))).expect("socket timeout");
        let addr = socket.local_addr().expect("local addr");
        let zone = Arc::new(RwLock::new(zone));
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (z, q, l, s) = (zone.clone(), queries.clone(), log.clone(), stop.clone());
        let thread = std::thread::spawn(move || serve(socket, z, q, l, s, options.delay));
        TestDns { addr, zone, queries, log, stop, thread: Some(thread) }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many queries the server has received.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// The queries received so far, as "name TYPE".
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Changes the zone while the server runs.
    pub fn update(&self, f: impl FnOnce(&mut Zone)) {
        f(&mut self.zone.write().expect("zone lock"));
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An answer and when to send it, to whom.
type DueAnswer = (Instant, Vec<u8>, SocketAddr);

fn serve(
    socket: UdpSocket,
    zone: Arc<RwLock<Zone>>,
    queries: Arc<AtomicUsize>,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    delay: Duration,
) {
    // With a delay, a second thread sends the answers when due; it ends when this one drops the sender.
    let mut delayed: Option<(SyncSender<DueAnswer>, std::thread::JoinHandle<()>)> = None;
    if !delay.is_zero() {
        let out = socket.try_clone().expect("clone the test DNS socket");
        let (tx, rx) = mpsc::sync_channel(DELAYED_ANSWERS_MAX);
        delayed = Some((tx, std::thread::spawn(move || send_when_due(out, rx))));
    }
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, peer)) = socket.recv_from(&mut buf) else { continue };
        queries.fetch_add(1, Ordering::SeqCst);
        let Ok(request) = Message::from_vec(&buf[..len]) else { continue };
        if let Some(q) = request.queries.first() {
            log.lock().expect("log lock").push(format!("{} {}", q.name(), q.query_type()));
        }
        let received = Instant::now();
        let zone = zone.read().expect("zone lock");
        let Some(Ok(bytes)) = answer(&request, &zone).map(|reply| reply.to_vec()) else { continue };
        match &delayed {
            None => {
                let _ = socket.send_to(&bytes, peer);
            }
            // Full: this query is dropped, as an overloaded server would.
            Some((tx, _)) => match tx.try_send((received + delay, bytes, peer)) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => break,
            },
        }
    }
    if let Some((tx, thread)) = delayed {
        drop(tx);
        let _ = thread.join();
    }
}

/// Sends queued answers when they are due. The delay is the same for every answer, so they fall due in the
/// order they were queued. Ends when the receiving thread has stopped (the channel is closed) and the answers
/// still queued have gone out, at most one delay later.
fn send_when_due(socket: UdpSocket, queue: Receiver<(Instant, Vec<u8>, SocketAddr)>) {
    loop {
        match queue.recv_timeout(Duration::from_millis(100)) {
            Ok((due, bytes, peer)) => {
                // The wait is at most the delay: `due` was set when the query arrived.
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                let _ = socket.send_to(&bytes, peer);
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn answer(request: &Message, zone: &Zone) -> Option<Message> {
    let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
    reply.metadata.authoritative = true;
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    let q = request.queries.first()?.clone();
    let qname = key(&q.name().to_ascii());
    // A name marked as timing out still answers the types it has records for (as the SPF test suite's
    // zone data expects); every other query for it goes unanswered.
    let has_answer = zone.records.contains_key(&(qname.clone(), q.query_type()))
        || zone.records.contains_key(&(qname.clone(), RecordType::CNAME));
    if zone.timeouts.contains(&qname) && !has_answer {
        return None;
    }
    reply.add_query(q.clone());
    if zone.servfail.contains(&qname) {
        reply.metadata.response_code = ResponseCode::ServFail;
        return Some(reply);
    }
    let mut current = qname.clone();
    for _ in 0..8 {
        if q.query_type() != RecordType::CNAME {
            if let Some(targets) = zone.records.get(&(current.clone(), RecordType::CNAME)) {
                for t in targets {
                    reply.add_answer(Record::from_rdata(name(&current), 300, t.clone()));
                }
                if let Some(RData::CNAME(CNAME(next))) = targets.first() {
                    current = key(&next.to_ascii());
                    continue;
                }
            }
        }
        if let Some(rs) = zone.records.get(&(current.clone(), q.query_type())) {
            for r in rs {
                reply.add_answer(Record::from_rdata(name(&current), 300, r.clone()));
            }
        }
        break;
    }
    if reply.answers.is_empty() && !zone.exists(&qname) {
        reply.metadata.response_code = ResponseCode::NXDomain;
    }
    Some(reply)
}

/// Convenience for tests that need an address literal.
pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().expect("IPv4")
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6")
}
