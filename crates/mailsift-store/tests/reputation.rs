//! Local reputation on a real SQLite file: evidence accumulates, ages with its half-life, survives a
//! restart, can be reset, and turns into symbols through the engine.

use mailsift_engine::evidence::{reputation_keys, ReputationKind};
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence};
use mailsift_store::{ReputationEvent, SqliteReputation};

const DAY: i64 = 86_400;
const T0: i64 = 1_800_000_000;

fn envelope(ip: &str, from: &str) -> Envelope {
    Envelope { client_ip: Some(ip.parse().unwrap()), mail_from: Some(from.into()), ..Envelope::default() }
}

const RAW: &[u8] = b"From: Sam <sam@Spammy.example>\r\nSubject: offer\r\n\r\nbuy\r\n";

#[test]
fn spam_history_makes_a_bad_reputation_that_ages_back_to_neutral() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let msg = engine.parse(RAW);
    let env = envelope("203.0.113.9", "sam@mail.spammy.example");
    let keys = reputation_keys(&env, &msg);
    assert_eq!(
        keys.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>(),
        [
            (ReputationKind::Ip, "203.0.113.9"),
            (ReputationKind::Net, "203.0.113.0/24"),
            (ReputationKind::Domain, "spammy.example"),
            (ReputationKind::Address, "sam@mail.spammy.example"),
        ]
    );
    let rep = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    for i in 0..5 {
        rep.record(&keys, ReputationEvent::Verdict(8), T0 + i * 60).unwrap();
    }
    let facts = rep.lookup(&keys, T0 + 300).unwrap();
    assert_eq!(facts.entries.len(), 4);
    assert!((facts.entries[0].spam - 5.0).abs() < 0.01, "{:?}", facts.entries[0]);

    let judge = |facts| {
        let ev = Evidence { reputation: Some(facts), ..Evidence::default() };
        engine.judge(&msg, &env, &ev).symbols.into_iter().map(|s| s.name).collect::<Vec<_>>()
    };
    let names = judge(facts);
    for s in ["REPUTATION_IP_BAD", "REPUTATION_NET_BAD", "REPUTATION_DOMAIN_BAD", "REPUTATION_ADDRESS_BAD"] {
        assert!(names.contains(&s.to_string()), "{s}: {names:?}");
    }
    // One half-life later the evidence has halved; after five it has faded below speaking level.
    let later = rep.lookup(&keys, T0 + 300 + 14 * DAY).unwrap();
    assert!((later.entries[0].spam - 2.5).abs() < 0.05, "{:?}", later.entries[0]);
    let quiet = rep.lookup(&keys, T0 + 70 * DAY).unwrap();
    assert!(judge(quiet).iter().all(|n| !n.starts_with("REPUTATION_")));

    // It survives a restart, and a reset forgets one identity.
    drop(rep);
    let rep = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    assert_eq!(rep.show("203.0.113.9", T0 + 300).unwrap().len(), 1);
    assert_eq!(rep.reset("203.0.113.9").unwrap(), 1);
    assert!(rep.show("203.0.113.9", T0 + 300).unwrap().is_empty());
    assert_eq!(rep.show("spammy.example", T0 + 300).unwrap().len(), 1);
}

#[test]
fn good_history_and_user_reports() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let msg = engine.parse(b"From: a@partner.example\r\n\r\nhi\r\n");
    let env = envelope("192.0.2.10", "a@partner.example");
    let keys = reputation_keys(&env, &msg);
    let rep = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
    for i in 0..4 {
        rep.record(&keys, ReputationEvent::Verdict(0), T0 + i).unwrap();
    }
    // Policy decisions (SCL -1) say nothing about the sender.
    rep.record(&keys, ReputationEvent::Verdict(-1), T0 + 10).unwrap();
    let names: Vec<String> = engine
        .judge(&msg, &env, &Evidence { reputation: Some(rep.lookup(&keys, T0 + 20).unwrap()), ..Evidence::default() })
        .symbols
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(
        names.contains(&"REPUTATION_IP_GOOD".to_string()) && names.contains(&"REPUTATION_ADDRESS_GOOD".to_string()),
        "{names:?}"
    );
    // A spamtrap hit outweighs a short good history.
    rep.record(&keys, ReputationEvent::SpamtrapHit, T0 + 30).unwrap();
    let e = &rep.lookup(&keys, T0 + 30).unwrap().entries[0];
    assert!(e.spam > e.ham, "{e:?}");
    // And users' reports count three verdicts each.
    rep.record(&keys, ReputationEvent::ReportedGood, T0 + 40).unwrap();
    let e2 = &rep.lookup(&keys, T0 + 40).unwrap().entries[0];
    assert!((e2.ham - e.ham - 3.0).abs() < 0.01);
}
