//! Local reputation: what this gateway has seen from each sender identity (client IP, its /24 or /64,
//! sender domain, sender address), kept as two decaying weights, bad and good evidence.
//!
//! Every piece of evidence ages with a half-life (14 days by default), so a sender that goes quiet drifts
//! back to neutral and a compromised-then-cleaned server recovers on its own. Evidence comes from verdicts
//! (the history of SCLs), spamtrap hits and users' reports; reports and traps weigh more than one verdict.
//! One SQLite file (`reputation.sqlite`) in the data directory, WAL, one row per identity.

use std::path::{Path, PathBuf};

use mailsift_engine::config::OrganisationConfig;
use mailsift_engine::evidence::{ReputationEntry, ReputationFacts, ReputationKind};
use rusqlite::{params, Connection, OptionalExtension};

use crate::StoreError;

const FILE_NAME: &str = "reputation.sqlite";
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reputation (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    spam REAL NOT NULL,
    ham REAL NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
";

/// How much one event counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    /// A verdict with this SCL: 7-9 counts as spam, 5-6 as half spam, 0-1 as good; -1 (policy) nothing.
    Verdict(i8),
    /// Mail to a spamtrap.
    SpamtrapHit,
    /// A user reported a message from this sender as spam that got through.
    ReportedSpam,
    /// A user reported a message from this sender as good mail that was flagged.
    ReportedGood,
}

impl Event {
    /// (bad, good) weight of the event.
    fn weights(self) -> (f64, f64) {
        match self {
            Event::Verdict(scl) if scl >= 7 => (1.0, 0.0),
            Event::Verdict(scl) if scl >= 5 => (0.5, 0.0),
            Event::Verdict(scl) if (0..=1).contains(&scl) => (0.0, 1.0),
            Event::Verdict(_) => (0.0, 0.0),
            Event::SpamtrapHit => (5.0, 0.0),
            Event::ReportedSpam => (3.0, 0.0),
            Event::ReportedGood => (0.0, 3.0),
        }
    }
}

pub struct SqliteReputation {
    conn: Connection,
    path: PathBuf,
    half_life_secs: f64,
}

fn kind_str(k: ReputationKind) -> &'static str {
    k.as_str()
}

fn kind_from(s: &str) -> Option<ReputationKind> {
    Some(match s {
        "ip" => ReputationKind::Ip,
        "net" => ReputationKind::Net,
        "domain" => ReputationKind::Domain,
        "address" => ReputationKind::Address,
        _ => return None,
    })
}

impl SqliteReputation {
    /// Records a user's report against the reported message's sender (identities from its own trace
    /// headers, as the message arrives attached or from a file). Returns the identities recorded.
    ///
    /// `org` is the organisation the gateway judges for (configured and stored domains folded in): a
    /// reported spoof of one of our domains counts against the spoofing IP and network only, never
    /// against our domain, whose own mail would otherwise pay for it.
    pub fn record_report(
        &mut self,
        msg: &mailsift_engine::Message<'_>,
        side: mailsift_engine::classify::Side,
        org: &OrganisationConfig,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut envelope = mailsift_engine::Envelope::default();
        envelope.fill_from_trace(msg);
        let keys = mailsift_engine::evidence::reputation_keys_for(&envelope, msg, org);
        let event = match side {
            mailsift_engine::classify::Side::Ham => Event::ReportedGood,
            mailsift_engine::classify::Side::Spam => Event::ReportedSpam,
        };
        self.record(&keys, event, now)?;
        Ok(keys.into_iter().map(|(_, k)| k).collect())
    }

    /// Opens (creating if needed) the reputation store in `data_dir`; evidence halves every
    /// `half_life_days`.
    pub fn open_dir(data_dir: &Path, half_life_days: f64) -> Result<SqliteReputation, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|source| StoreError::Io { path: data_dir.display().to_string(), source })?;
        let path = data_dir.join(FILE_NAME);
        let conn = Connection::open(&path).map_err(|e| err(&path, e))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;")
            .map_err(|e| err(&path, e))?;
        conn.execute_batch(SCHEMA).map_err(|e| err(&path, e))?;
        let half_life_secs = (half_life_days.max(0.01)) * 86_400.0;
        Ok(SqliteReputation { conn, path, half_life_secs })
    }

    fn decay(&self, value: f64, age_secs: i64) -> f64 {
        value * 0.5f64.powf(age_secs.max(0) as f64 / self.half_life_secs)
    }

    /// The entries for these identities, decayed to `now` (Unix seconds); unknown ones are left out.
    pub fn lookup(&self, keys: &[(ReputationKind, String)], now: i64) -> Result<ReputationFacts, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT spam, ham, updated FROM reputation WHERE kind = ?1 AND key = ?2")
            .map_err(|e| err(&self.path, e))?;
        let mut entries = Vec::new();
        for (kind, key) in keys {
            let row: Option<(f64, f64, i64)> = stmt
                .query_row(params![kind_str(*kind), key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(|e| err(&self.path, e))?;
            if let Some((spam, ham, updated)) = row {
                let age = now - updated;
                entries.push(ReputationEntry {
                    kind: *kind,
                    key: key.clone(),
                    spam: self.decay(spam, age),
                    ham: self.decay(ham, age),
                });
            }
        }
        Ok(ReputationFacts { entries })
    }

    /// Records one event against every identity of a message, in one transaction.
    pub fn record(&mut self, keys: &[(ReputationKind, String)], event: Event, now: i64) -> Result<(), StoreError> {
        let (bad, good) = event.weights();
        if bad == 0.0 && good == 0.0 {
            return Ok(());
        }
        let half_life = self.half_life_secs;
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(|e| err(&path, e))?;
        for (kind, key) in keys {
            let old: Option<(f64, f64, i64)> = tx
                .query_row(
                    "SELECT spam, ham, updated FROM reputation WHERE kind = ?1 AND key = ?2",
                    params![kind_str(*kind), key],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(|e| err(&path, e))?;
            let (spam, ham) = match old {
                Some((s, h, updated)) => {
                    let f = 0.5f64.powf((now - updated).max(0) as f64 / half_life);
                    (s * f, h * f)
                }
                None => (0.0, 0.0),
            };
            tx.execute(
                "INSERT OR REPLACE INTO reputation (kind, key, spam, ham, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![kind_str(*kind), key, spam + bad, ham + good, now],
            )
            .map_err(|e| err(&path, e))?;
        }
        tx.commit().map_err(|e| err(&path, e))
    }

    /// Every entry whose key is `key` (an IP, network, domain or address), decayed to `now`.
    pub fn show(&self, key: &str, now: i64) -> Result<Vec<ReputationEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT kind, key, spam, ham, updated FROM reputation WHERE key = ?1 ORDER BY kind")
            .map_err(|e| err(&self.path, e))?;
        let rows = stmt
            .query_map(params![key.to_lowercase()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(|e| err(&self.path, e))?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, key, spam, ham, updated) = row.map_err(|e| err(&self.path, e))?;
            if let Some(kind) = kind_from(&kind) {
                let age = now - updated;
                out.push(ReputationEntry { kind, key, spam: self.decay(spam, age), ham: self.decay(ham, age) });
            }
        }
        Ok(out)
    }

    /// Forgets everything about `key`; returns how many entries were removed.
    pub fn reset(&mut self, key: &str) -> Result<usize, StoreError> {
        self.conn
            .execute("DELETE FROM reputation WHERE key = ?1", params![key.to_lowercase()])
            .map_err(|e| err(&self.path, e))
    }
}

fn err(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite { path: path.display().to_string(), source }
}

/// Feeds spamtrap hits into reputation (the learner calls it when mail reaches a trap).
///
/// A hit counts against the sender's IP and network, and against its domain and address unless that
/// domain is one of ours: anyone can write our domain into a message sent to our trap. Our domains are
/// those of [`ReputationHook::with_organisation`], and in any case the trap's own domain and the
/// recipients' domains (inbound mail is addressed to our domains), so a hook built without the
/// organisation still never counts a spoof of the trap's domain against that domain.
pub struct ReputationHook {
    store: std::sync::Mutex<SqliteReputation>,
    org: OrganisationConfig,
}

impl ReputationHook {
    pub fn new(store: SqliteReputation) -> ReputationHook {
        ReputationHook { store: std::sync::Mutex::new(store), org: OrganisationConfig::default() }
    }

    /// The organisation the gateway judges for (configured and stored domains folded in).
    pub fn with_organisation(mut self, org: OrganisationConfig) -> ReputationHook {
        self.org = org;
        self
    }

    /// The keys a trap hit counts against (see the type's documentation).
    pub fn keys(
        &self,
        envelope: &mailsift_engine::Envelope,
        msg: &mailsift_engine::Message<'_>,
        trap: &str,
    ) -> Vec<(ReputationKind, String)> {
        let mut org = self.org.clone();
        let ours = std::iter::once(trap)
            .chain(if mailsift_engine::checks::auth::is_outbound(envelope) {
                Vec::new()
            } else {
                envelope.rcpt_to.iter().map(String::as_str).collect()
            })
            .filter_map(|a| a.trim().trim_matches(['<', '>']).rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()))
            .filter(|d| !d.is_empty());
        for d in ours {
            if !org.domains.iter().any(|o| o.eq_ignore_ascii_case(&d)) {
                org.domains.push(d);
            }
        }
        mailsift_engine::evidence::reputation_keys_for(envelope, msg, &org)
    }
}

impl mailsift_engine::classify::SpamtrapHook for ReputationHook {
    fn spamtrap_hit(&self, envelope: &mailsift_engine::Envelope, msg: &mailsift_engine::Message<'_>, trap: &str) {
        let keys = self.keys(envelope, msg, trap);
        let now = mailsift_engine::unix_now();
        if let Ok(mut store) = self.store.lock() {
            // A failed write loses one piece of evidence, never the message: report it and go on.
            if let Err(e) = store.record(&keys, Event::SpamtrapHit, now) {
                eprintln!("mailsift: reputation: {e}");
            }
        }
    }
}

/// Whether a reputation store exists in `data_dir` (scans read it only then; they never create one).
pub fn exists(data_dir: &Path) -> bool {
    data_dir.join(FILE_NAME).exists()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsift_engine::classify::{Side, SpamtrapHook};
    use mailsift_engine::config::ProtectedDomain;
    use mailsift_engine::{Engine, EngineConfig, Envelope};

    const T0: i64 = 1_800_000_000;

    /// acme.test is ours and protected: its mail comes from 192.0.2.10 only.
    fn acme() -> OrganisationConfig {
        OrganisationConfig {
            domains: vec!["acme.test".into()],
            protected: vec![ProtectedDomain {
                domain: "acme.test".into(),
                sending_servers: vec!["192.0.2.10/32".into()],
                ..ProtectedDomain::default()
            }],
            ..OrganisationConfig::default()
        }
    }

    fn message(ip: &str, from: &str) -> Vec<u8> {
        format!(
            "Received: from mail.sender.test (mail.sender.test [{ip}]) by mx.acme.test with ESMTP id 1; \
             Mon, 1 Jan 2024 00:00:00 +0000\r\nReturn-Path: <{from}>\r\nFrom: <{from}>\r\nTo: <staff@acme.test>\r\n\
             Subject: new bank details\r\n\r\nPlease pay the invoice to the new account.\r\n"
        )
        .into_bytes()
    }

    fn keys_of(rep: &SqliteReputation, key: &str) -> Vec<(ReputationKind, f64, f64)> {
        rep.show(key, T0 + 60).unwrap().into_iter().map(|e| (e.kind, e.spam, e.ham)).collect()
    }

    #[test]
    fn reported_spoofs_of_our_domain_count_against_the_spoofer_not_our_domain() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let mut rep = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
        let spoof = message("198.18.0.9", "billing@acme.test");
        let msg = engine.parse(&spoof);
        for i in 0..3 {
            let recorded = rep.record_report(&msg, Side::Spam, &acme(), T0 + i).unwrap();
            assert_eq!(recorded, ["198.18.0.9", "198.18.0.0/24"]);
        }
        assert!(keys_of(&rep, "acme.test").is_empty(), "our domain took the blame: {:?}", keys_of(&rep, "acme.test"));
        assert!(keys_of(&rep, "billing@acme.test").is_empty());
        let ip = keys_of(&rep, "198.18.0.9");
        assert_eq!(ip.len(), 1);
        assert!(ip[0].1 > 8.0, "three spam reports against the spoofing IP: {ip:?}");
        assert!(keys_of(&rep, "198.18.0.0/24")[0].1 > 8.0);

        // Our own mail, from our sending server, reported as good, counts for our domain.
        let ours = message("192.0.2.10", "news@acme.test");
        let recorded = rep.record_report(&engine.parse(&ours), Side::Ham, &acme(), T0 + 10).unwrap();
        assert!(recorded.contains(&"acme.test".to_string()), "{recorded:?}");
        let domain = keys_of(&rep, "acme.test");
        assert_eq!(domain.len(), 1);
        assert_eq!(domain[0].1, 0.0, "no spam against acme.test: {domain:?}");
        assert!(domain[0].2 > 2.9);

        // A third party's domain still learns from reports about it.
        let other = message("198.51.100.7", "offers@spammy.test");
        rep.record_report(&engine.parse(&other), Side::Spam, &acme(), T0 + 20).unwrap();
        assert!(keys_of(&rep, "spammy.test")[0].1 > 2.9);
        // Without the organisation (the old key set), the spoof would have counted against acme.test.
        rep.record_report(&msg, Side::Spam, &OrganisationConfig::default(), T0 + 30).unwrap();
        assert!(keys_of(&rep, "acme.test")[0].1 > 2.9, "the test tells the key sets apart");
    }

    #[test]
    fn spamtrap_hits_on_spoofs_of_our_domain_spare_our_domain() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(EngineConfig::default()).unwrap();
        let store = SqliteReputation::open_dir(dir.path(), 14.0).unwrap();
        let hook = ReputationHook::new(store).with_organisation(acme());
        let raw = message("198.18.0.9", "billing@acme.test");
        let msg = engine.parse(&raw);
        let envelope = Envelope {
            client_ip: Some("198.18.0.9".parse().unwrap()),
            mail_from: Some("billing@acme.test".into()),
            rcpt_to: vec!["trap@acme.test".into()],
            ..Envelope::default()
        };
        hook.spamtrap_hit(&envelope, &msg, "trap@acme.test");
        // A spoof of another of our domains sent to the trap: even a hook without the organisation knows
        // the trap's and the recipients' domains are ours.
        let bare = ReputationHook::new(SqliteReputation::open_dir(dir.path(), 14.0).unwrap());
        let envelope2 = Envelope { mail_from: Some("ceo@acme.test".into()), ..envelope.clone() };
        assert_eq!(
            bare.keys(&envelope2, &msg, "trap@acme.test").into_iter().map(|(_, k)| k).collect::<Vec<_>>(),
            ["198.18.0.9", "198.18.0.0/24"]
        );
        let third = Envelope { mail_from: Some("x@spammy.test".into()), ..envelope.clone() };
        let spam_raw = message("198.18.0.9", "x@spammy.test");
        let spam_msg = engine.parse(&spam_raw);
        let keys: Vec<String> = bare.keys(&third, &spam_msg, "trap@acme.test").into_iter().map(|(_, k)| k).collect();
        assert!(keys.contains(&"spammy.test".to_string()), "{keys:?}");

        let rep = hook.store.lock().unwrap();
        let now = mailsift_engine::unix_now();
        assert!(rep.show("acme.test", now).unwrap().is_empty());
        assert!(rep.show("billing@acme.test", now).unwrap().is_empty());
        assert!(rep.show("198.18.0.9", now).unwrap()[0].spam > 4.9);
    }
}
