//! The business actions every front end calls (`mailsift_gateway::actions`), on a real gateway database in a
//! temporary directory and, for releases, a real SMTP next hop on 127.0.0.1 that records what it receives.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailsift_engine::classify::{LearnOutcome, Side};
use mailsift_engine::diagnose::Change;
use mailsift_engine::{Engine, EngineConfig};
use mailsift_gateway::actions::{self, ActionError, FixContext, Judging, Report};
use mailsift_gateway::config::DomainConfig;
use mailsift_gateway::release::ReleaseError;
use mailsift_gateway::{Gateway, GatewayState, SmtpConfig};
use mailsift_store::{
    Database, Learner, ListEntry, NewQuarantine, PolicyStore, SqliteReputation, SqliteStore, TokenStore,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const HELD: &str = "Received: from mx.sender.example (mx.sender.example [198.51.100.7]) by gw.example.com\r\n\
    From: Alice <alice@sender.example>\r\nTo: bob@example.com\r\nSubject: invoice 42\r\n\
    Message-ID: <inv-42@sender.example>\r\nDate: Mon, 6 Jan 2025 10:00:00 +0000\r\n\r\n\
    Bob, the invoice for last month is attached as text.\r\n";

/// What a next hop received: envelope sender, recipients, message.
type Received = (String, Vec<String>, Vec<u8>);

/// An SMTP next hop on loopback that takes every message (at most `max_connections`, each bounded in time
/// and in lines) and keeps it for the test to look at.
struct Sink {
    addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    async fn start(max_connections: usize) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let store = got.clone();
        tokio::spawn(async move {
            for _ in 0..max_connections {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let store = store.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), session(tcp, store)).await;
                });
            }
        });
        Sink { addr, got }
    }

    fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

async fn session(tcp: tokio::net::TcpStream, store: Arc<Mutex<Vec<Received>>>) -> std::io::Result<()> {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut from, mut rcpts) = (String::new(), Vec::new());
    let mut line = String::new();
    for _ in 0..10_000 {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let arg = |prefix: &str| line[prefix.len()..].trim().trim_matches(['<', '>']).to_string();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            w.write_all(b"250 sink.test\r\n").await?;
        } else if upper.starts_with("MAIL FROM:") {
            from = arg("MAIL FROM:");
            w.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("RCPT TO:") {
            rcpts.push(arg("RCPT TO:"));
            w.write_all(b"250 ok\r\n").await?;
        } else if upper.starts_with("DATA") {
            w.write_all(b"354 go on\r\n").await?;
            let mut data = Vec::new();
            for _ in 0..100_000 {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(l.strip_prefix(b".").filter(|_| l.starts_with(b"..")).unwrap_or(&l));
            }
            store.lock().unwrap().push((std::mem::take(&mut from), std::mem::take(&mut rcpts), data));
            w.write_all(b"250 2.0.0 queued as sink-1\r\n").await?;
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"250 ok\r\n").await?;
        }
    }
    Ok(())
}

/// A running gateway (no listeners) whose domain example.com is delivered to `next_hop`.
fn gateway(dir: &std::path::Path, next_hop: SocketAddr) -> Arc<Gateway> {
    let smtp = SmtpConfig::from_toml(&format!(
        "[smtp]\nhostname = \"gw.example.com\"\n[[smtp.domains]]\nname = \"example.com\"\nnext_hop = \"{next_hop}\"\n"
    ))
    .unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let state = GatewayState::new(engine, smtp, dir).unwrap();
    let db = Database::open_in(dir).unwrap();
    Gateway::new(state, db, dir)
}

fn hold(db: &Database, rcpt: &str, mail_from: Option<&str>, from_header: Option<&str>) -> i64 {
    let item = NewQuarantine {
        reference_id: format!("ref-{rcpt}"),
        time: mailsift_engine::unix_now(),
        recipients: vec![rcpt.to_string()],
        mail_from: mail_from.map(String::from),
        from_header: from_header.map(String::from),
        subject: Some("invoice 42".into()),
        score: 7.5,
        reason: "score 7.5 over the quarantine threshold".into(),
        size: HELD.len() as u64,
        direction: "inbound".into(),
    };
    db.quarantine_put(&item, HELD.as_bytes()).unwrap()[0]
}

fn allow_entries(db: &Database) -> Vec<(String, Option<String>)> {
    db.list_entries()
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.entry {
            ListEntry::Allow(a) => Some((a.sender, a.recipient)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_delivers_once_to_the_next_hop_and_approve_also_allows_the_sender() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start(8).await;
    let gw = gateway(dir.path(), sink.addr);
    let first = hold(&gw.db, "bob@example.com", Some("bounce@sender.example"), Some("alice@sender.example"));

    let released = actions::release(&gw, first, "admin").await.unwrap();
    assert_eq!(released.recipient, "bob@example.com");
    assert!(released.describe().starts_with("released to bob@example.com ("), "{}", released.describe());
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "bounce@sender.example");
    assert_eq!(got[0].1, vec!["bob@example.com".to_string()]);
    let text = String::from_utf8_lossy(&got[0].2);
    assert!(text.starts_with(&format!("X-Mailsift-Released: from quarantine item {first}")), "{text}");
    assert!(text.contains("Subject: invoice 42"), "{text}");
    assert!(gw.db.quarantine_get(first).unwrap().unwrap().released_at.is_some());

    // Twice delivers once.
    match actions::release(&gw, first, "admin").await {
        Err(ReleaseError::AlreadyReleased(id)) => assert_eq!(id, first),
        other => panic!("a second release: {other:?}"),
    }
    assert_eq!(sink.received().len(), 1);
    assert!(allow_entries(&gw.db).is_empty(), "a release alone allows nobody");

    // Approve: released, then From: (what the user saw) allowed for that recipient only.
    let second = hold(&gw.db, "carol@example.com", Some("bounce@sender.example"), Some("alice@sender.example"));
    let item = gw.db.quarantine_get(second).unwrap().unwrap();
    let approved = actions::approve(&gw, &item, "carol@example.com").await.unwrap();
    assert_eq!(sink.received().len(), 2);
    let allowed = approved.allowed.clone().expect("a sender to allow");
    assert_eq!((allowed.sender.as_str(), allowed.recipient.as_str()), ("alice@sender.example", "carol@example.com"));
    assert!(approved.describe().contains("alice@sender.example is now an allowed sender for carol@example.com"));
    assert_eq!(
        allow_entries(&gw.db),
        vec![("alice@sender.example".to_string(), Some("carol@example.com".to_string()))]
    );
    let stored = gw.db.list_entries().unwrap();
    let ListEntry::Allow(entry) = &stored[0].entry else { panic!("an allow entry") };
    assert!(!entry.allow_spoofed && !entry.require_auth, "the safe defaults: {entry:?}");

    // Approving what was already released allows nobody.
    let again = actions::approve(&gw, &item, "carol@example.com").await;
    assert!(matches!(again, Err(ActionError::Release(ReleaseError::AlreadyReleased(_)))), "{again:?}");
    assert_eq!(allow_entries(&gw.db).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_the_next_hop_did_not_take_can_be_tried_again() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = gateway(dir.path(), closed);
    let id = hold(&gw.db, "bob@example.com", Some("alice@sender.example"), None);
    match actions::release(&gw, id, "admin").await {
        Err(ReleaseError::Delivery { id: failed, .. }) => assert_eq!(failed, id),
        other => panic!("release to a closed port: {other:?}"),
    }
    assert!(gw.db.quarantine_get(id).unwrap().unwrap().released_at.is_none(), "the claim is given back");
    let item = gw.db.quarantine_get(id).unwrap().unwrap();
    assert!(actions::approve(&gw, &item, "admin").await.is_err());
    assert!(allow_entries(&gw.db).is_empty(), "no sender is allowed when the release failed");
}

#[test]
fn block_adds_the_envelope_sender_for_that_recipient_and_deletes_the_copy() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let id = hold(&db, "bob@example.com", Some("bulk@sender.example"), Some("alice@sender.example"));
    let item = db.quarantine_get(id).unwrap().unwrap();
    let blocked = actions::block_sender(&db, &item, "bob@example.com").unwrap().expect("a sender");
    assert_eq!((blocked.sender.as_str(), blocked.recipient.as_str()), ("bulk@sender.example", "bob@example.com"));
    assert!(db.quarantine_get(id).unwrap().is_none(), "the copy is deleted");
    let entries = db.list_entries().unwrap();
    assert_eq!(entries.len(), 1);
    match &entries[0].entry {
        ListEntry::Block(b) => {
            assert_eq!(b.recipient.as_deref(), Some("bob@example.com"));
            assert!(b.comment.as_deref().unwrap().contains(&format!("quarantine item {id}")), "{b:?}");
        }
        other => panic!("{other:?}"),
    }

    // No sender address: nothing blocked, nothing deleted.
    let nobody = hold(&db, "bob@example.com", None, Some("undisclosed"));
    let item = db.quarantine_get(nobody).unwrap().unwrap();
    assert!(actions::block_sender(&db, &item, "bob").unwrap().is_none());
    assert!(db.quarantine_get(nobody).unwrap().is_some());
    assert_eq!(db.list_entries().unwrap().len(), 1);

    assert!(actions::delete(&db, nobody).unwrap());
    assert!(!actions::delete(&db, nobody).unwrap(), "a second delete finds nothing");
}

#[test]
fn a_report_is_learned_recorded_and_fed_to_reputation_and_a_second_opinion_relearns() {
    let dir = tempfile::tempdir().unwrap();
    let mut learner = Learner::open(SqliteStore::open_dir(dir.path()).unwrap()).unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap().with_model(learner.model());
    let reputation = SqliteReputation::open_dir(dir.path(), 30.0).unwrap();
    let org = engine.config().organisation.clone();
    let ham = Report {
        raw: HELD.as_bytes(),
        side: Side::Ham,
        source: "quarantine item 1",
        channel: "web",
        reporter: Some("bob@example.com"),
    };

    let r = actions::report(&mut learner, &engine, Some(&reputation), &org, &ham, 1_700_000_000).unwrap();
    assert_eq!(r.outcome, LearnOutcome::Learned);
    assert_eq!(r.previous, None);
    assert_eq!(r.describe(&ham), "quarantine item 1: learned as ham");
    let keys = r.reputation.expect("reputation is on").expect("recorded");
    assert!(keys.iter().any(|k| k.contains("sender.example")), "{keys:?}");

    let again = actions::report(&mut learner, &engine, None, &org, &ham, 1_700_000_001).unwrap();
    assert_eq!(again.outcome, LearnOutcome::AlreadyKnown);
    assert!(again.reputation.is_none(), "reputation off: nothing recorded");
    assert_eq!(again.describe(&ham), "quarantine item 1: was already learned as ham");

    let spam = Report { side: Side::Spam, ..ham };
    let relearned = actions::report(&mut learner, &engine, None, &org, &spam, 1_700_000_002).unwrap();
    assert_eq!(relearned.previous, Some(Side::Ham));
    assert_eq!(relearned.describe(&spam), "quarantine item 1: unlearned as ham, learned as spam");

    // Every report is a submission, with its channel and reporter.
    let subs = SqliteStore::open_dir(dir.path()).unwrap().submissions().unwrap();
    assert_eq!(subs.len(), 3);
    assert!(subs.iter().all(|s| s.channel == "web" && s.reporter.as_deref() == Some("bob@example.com")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_to_the_gateway_needs_its_classifiers() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = gateway(dir.path(), closed);
    let r = Report { raw: HELD.as_bytes(), side: Side::Spam, source: "posted", channel: "web", reporter: None };
    let state = gw.state();
    assert!(matches!(actions::report_to_gateway(&state, &r, 1), Err(ActionError::Unavailable(_))));
}

fn configured() -> Vec<DomainConfig> {
    vec![DomainConfig { name: "example.com".into(), next_hop: Some("127.0.0.1:2525".into()), ..Default::default() }]
}

#[test]
fn a_fix_keeps_the_configured_settings_and_refuses_what_the_configuration_owns() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let mut config = EngineConfig::default();
    config.organisation.protected.push(mailsift_engine::config::ProtectedDomain {
        domain: "example.com".into(),
        sending_servers: vec!["192.0.2.0/24".into()],
        trusted_relays: Vec::new(),
    });
    config.policy.rules.push(
        toml::from_str(
            "name = \"From the file\"\nconditions = [{ field = \"subject\", op = \"contains\", value = \"x\" }]\n\
             actions = [{ action = \"add_score\", score = 1.0 }]\n",
        )
        .unwrap(),
    );
    let domains = configured();
    let ctx = FixContext { configured_domains: &domains, config: &config };

    let add = Change::AddSendingServer { domain: "example.com".into(), server: "203.0.113.5".into() };
    let done = actions::apply_fix(&db, ctx, &add).unwrap();
    assert_eq!(done, "example.com: 203.0.113.5 added to the sending servers (192.0.2.0/24, 203.0.113.5)");
    let stored: DomainConfig = serde_json::from_str(&db.domain_get("example.com").unwrap().unwrap()).unwrap();
    assert_eq!(stored.next_hop.as_deref(), Some("127.0.0.1:2525"), "the configured next hop is kept");
    assert_eq!(stored.sending_servers, vec!["192.0.2.0/24".to_string(), "203.0.113.5".to_string()]);
    // Again: the stored settings are the starting point, and the server is not listed twice.
    actions::apply_fix(&db, ctx, &add).unwrap();
    let stored: DomainConfig = serde_json::from_str(&db.domain_get("example.com").unwrap().unwrap()).unwrap();
    assert_eq!(stored.sending_servers.len(), 2);

    let bad = Change::AddSendingServer { domain: "example.com".into(), server: "not a network".into() };
    assert!(matches!(actions::apply_fix(&db, ctx, &bad), Err(ActionError::Invalid(_))));

    let rule = config.policy.rules[0].clone();
    let clash = Change::AddRule { rule };
    let e = actions::apply_fix(&db, ctx, &clash).unwrap_err();
    assert!(e.to_string().contains("configuration file"), "{e}");
    assert!(db.rules().unwrap().is_empty());

    let allow =
        Change::AddAllow { entry: actions::allow_entry("alice@sender.example", "bob@example.com", "test".into()) };
    let done = actions::apply_fix(&db, ctx, &allow).unwrap();
    assert!(done.starts_with("added allow entry for \"alice@sender.example\""), "{done}");
    let id = db.list_entries().unwrap()[0].id;
    assert_eq!(
        actions::apply_fix(&db, ctx, &Change::RemoveEntry { id: id.to_string() }).unwrap(),
        format!("removed entry {id}")
    );
    assert!(db.list_entries().unwrap().is_empty());
    assert!(matches!(
        actions::apply_fix(&db, ctx, &Change::RemoveEntry { id: "seven".into() }),
        Err(ActionError::Invalid(_))
    ));
    assert!(matches!(actions::apply_fix(&db, ctx, &Change::Report { spam: true }), Err(ActionError::Invalid(_))));
}

#[test]
fn a_command_judges_with_the_stored_domains_folded_in_as_the_gateway_does() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open_in(dir.path()).unwrap();
    let base = Engine::new(EngineConfig::default()).unwrap();
    let nothing = Judging::new(Engine::new(EngineConfig::default()).unwrap(), configured(), Some(&db)).unwrap();
    assert!(nothing.organisation().protected.is_empty(), "a next hop alone does not make a domain protected");

    // Stored: the same domain with a sending server and its own thresholds; it replaces the configured one.
    let mut stored = configured().remove(0);
    stored.next_hop = None;
    stored.sending_servers = vec!["192.0.2.10/32".into()];
    stored.thresholds = Some(mailsift_engine::config::Thresholds { tag: 2.0, quarantine: 3.0, reject: 4.0 });
    actions::put_domain(&db, &stored).unwrap();
    let judging = Judging::new(base, configured(), Some(&db)).unwrap();
    let domains = judging.domains();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0].next_hop, None, "the stored settings replace the configured ones whole");
    let org = judging.organisation();
    assert!(org.protected.iter().any(|p| p.domain == "example.com" && p.sending_servers == ["192.0.2.10/32"]));
    assert!(org.domains.iter().any(|d| d == "example.com"));
    let engine = judging.engine().unwrap();
    let base_thresholds = &engine.config().thresholds;
    let ours = judging.settings_for(&engine, "EXAMPLE.com").unwrap();
    assert_eq!(ours.thresholds_or(base_thresholds).quarantine, 3.0);
    let other = judging.settings_for(&engine, "other.test").unwrap();
    assert_ne!(other.thresholds_or(base_thresholds).quarantine, 3.0);

    // The policy in force: the configuration's, then the stored one.
    db.import_policy(
        "[[rules]]\nname = \"stored\"\nconditions = [{ field = \"subject\", op = \"contains\", value = \"y\" }]\n\
         actions = [{ action = \"add_score\", score = 1.0 }]\n",
        mailsift_store::ImportMode::Merge,
    )
    .unwrap();
    let in_force = actions::policy_in_force(&judging.base.config().policy, &db).unwrap();
    assert_eq!(in_force.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["stored"]);
}

#[test]
fn a_log_row_gives_its_envelope_and_the_headers_it_kept() {
    let row = mailsift_store::LogEntry {
        reference_id: "r1".into(),
        client_ip: Some("198.51.100.7".into()),
        helo: Some("mx.sender.example".into()),
        mail_from: Some("alice@sender.example".into()),
        recipients: vec!["bob@example.com".into()],
        direction: "outbound".into(),
        from_header: Some("alice@sender.example".into()),
        subject: Some("invoice 42".into()),
        ..Default::default()
    };
    let env = actions::envelope_of_log(&row);
    assert_eq!(env.client_ip, Some("198.51.100.7".parse().unwrap()));
    assert_eq!(env.direction, mailsift_engine::Direction::Outbound);
    assert_eq!(env.rcpt_to, ["bob@example.com"]);
    assert_eq!(
        String::from_utf8(actions::rebuilt_from_log(&row)).unwrap(),
        "From: alice@sender.example\r\nSubject: invoice 42\r\n\r\n"
    );
}
