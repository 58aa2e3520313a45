//! Reputation kept on a server that several gateway nodes share (PostgreSQL or Redis, [`Remote`]).
//!
//! The server holds, per identity, the weights decayed to its `updated` time. A node never reads a row to
//! write it back (two nodes doing so would lose each other's increments): it sends only *what it adds*, and
//! the server folds that into the row in one atomic step (an upsert in PostgreSQL, a script in Redis). The
//! fold is the true sum of decayed evidence whatever the order the additions arrive in: both sides are
//! decayed to the later of the two times and added, so a late event counts for what it is worth then.
//!
//! On the node, records never touch the network: they are folded into a small sharded table of what this
//! node has added and not yet sent (the *pending* table) and queued for one writer thread, which sends a
//! batch at a time, one statement or script per batch. A lookup answers the server's rows plus this node's
//! pending additions, so a node sees its own events at once and the others' once their batch is sent.
//! Pending additions are read before the server is asked: a lookup that races the sending of this node's
//! batch may count that batch twice (the server already has it and the table still does) and then asks
//! again once; it never misses an event this node recorded.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mailsift_engine::evidence::{ReputationEntry, ReputationFacts};
use rustc_hash::FxHashMap;

use super::{decay_factor, kind_index, shard_index, Event, Identity, InFlight, ReputationStats, Shard, SHARDS};
use crate::StoreError;

/// At most this many records go into one batch, so a backlog is sent in bounded steps.
const MAX_BATCH: usize = 1024;
/// Keys longer than this are not sent (no real IP, domain or address is this long; a hostile header may be).
const MAX_KEY_BYTES: usize = 512;
/// How often at most the same complaint (the server unreachable) goes to standard error.
const COMPLAINT_INTERVAL: Duration = Duration::from_secs(10);
/// After this many half-lives without an addition an identity is forgotten (Redis expires it, PostgreSQL
/// prunes it): what is left is below 2^-16 of what it was, too little to move any verdict.
pub(super) const FORGET_AFTER_HALF_LIVES: f64 = 16.0;
/// How often at most a node prunes forgotten identities from a server that does not expire them itself.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Beyond this many half-lives a weight is below 2^-1000 of what it was: zero for every purpose, and the
/// exponent stays where `0.5^x` neither underflows to an error (PostgreSQL) nor to a subnormal.
pub(super) const MAX_HALF_LIVES: f64 = 1000.0;

/// One identity's weights decayed to `updated` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Row {
    pub spam: f64,
    pub ham: f64,
    pub updated: i64,
}

impl Row {
    /// Both decayed to the later of the two times and added: the fold the servers do too.
    fn merge(self, other: Row, half_life_secs: f64) -> Row {
        let t = self.updated.max(other.updated);
        let (a, b) = (self.factor(t, half_life_secs), other.factor(t, half_life_secs));
        Row { spam: self.spam * a + other.spam * b, ham: self.ham * a + other.ham * b, updated: t }
    }

    /// What is left of `self` once `part` (folded into it earlier) is taken away; never below zero.
    fn minus(self, part: Row, half_life_secs: f64) -> Row {
        let t = self.updated.max(part.updated);
        let (a, b) = (self.factor(t, half_life_secs), part.factor(t, half_life_secs));
        Row { spam: (self.spam * a - part.spam * b).max(0.0), ham: (self.ham * a - part.ham * b).max(0.0), updated: t }
    }

    fn factor(&self, t: i64, half_life_secs: f64) -> f64 {
        decay_factor(t - self.updated, half_life_secs).max(0.5f64.powf(MAX_HALF_LIVES))
    }
}

/// Where shared reputation lives. Every method may block for the server's round trip (bounded by the
/// backend's timeouts); none is called with a lock held.
pub(super) trait Remote: Send + Sync + 'static {
    /// The server, for messages: never a password.
    fn target(&self) -> &str;
    /// The stored rows of these identities, in order (`None`: unknown), in one round trip.
    fn fetch(&self, keys: &[Identity]) -> Result<Vec<Option<Row>>, StoreError>;
    /// Folds each addition into its identity's row on the server, atomically per identity; the identities
    /// are distinct. All or nothing when the backend can promise it.
    fn add(&self, additions: &[(Identity, Row)]) -> Result<(), StoreError>;
    /// Removes every row whose key is `key`, whatever its kind; returns how many went.
    fn reset(&self, key: &str) -> Result<usize, StoreError>;
    /// Every row whose key is `key`.
    fn show(&self, key: &str) -> Result<Vec<(Identity, Row)>, StoreError>;
    /// Removes the rows last added to before `updated_before` (Unix seconds); returns how many went. A
    /// server that expires rows by itself has nothing to do.
    fn prune(&self, _updated_before: i64) -> Result<u64, StoreError> {
        Ok(0)
    }
    /// Whether a lookup the server cannot answer is answered with no facts (Redis: the hot path must not
    /// wait for it) rather than with the error (PostgreSQL: the gateway's own database, whose outage the
    /// operator hears about anyway).
    fn neutral_when_down(&self) -> bool;
}

enum Command {
    /// One event against every identity of a message, as a row added to each.
    Record {
        keys: Vec<Identity>,
        add: Row,
    },
    Reset {
        key: String,
        reply: SyncSender<Result<usize, StoreError>>,
    },
    Flush(SyncSender<Result<(), StoreError>>),
}

/// What the callers and the writer thread share.
struct State {
    remote: Box<dyn Remote>,
    half_life_secs: f64,
    /// This node's additions not yet sent (`InFlight`'s weights are the sum of the pending events).
    shards: Box<[Mutex<Shard>]>,
    queued: AtomicUsize,
    dropped: AtomicU64,
    failed: AtomicU64,
    /// Lookups answered with no facts because the server could not be reached.
    unanswered: AtomicU64,
    /// Batches the writer has finished with (sent or lost, and taken out of the pending table).
    settled: AtomicU64,
    last_complaint: Mutex<Option<Instant>>,
}

impl State {
    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This node's pending addition for an identity.
    fn pending(&self, (kind, key): &Identity) -> Option<Row> {
        let shard = self.shard(shard_index(*kind, key));
        shard.get(*kind, key).map(|e| Row { spam: e.spam, ham: e.ham, updated: e.updated })
    }

    /// A batch is done with (sent or lost): its additions are no longer pending.
    fn settle(&self, sent: &FxHashMap<Identity, (Row, u32)>) {
        if sent.is_empty() {
            return;
        }
        for ((kind, key), (row, records)) in sent {
            let mut shard = self.shard(shard_index(*kind, key));
            let map = &mut shard.by_kind[kind_index(*kind)];
            let Some(e) = map.get_mut(key.as_str()) else { continue };
            e.in_flight = e.in_flight.saturating_sub(*records);
            if e.in_flight == 0 {
                map.remove(key.as_str());
            } else {
                let left = Row { spam: e.spam, ham: e.ham, updated: e.updated }.minus(*row, self.half_life_secs);
                *e = InFlight { spam: left.spam, ham: left.ham, updated: left.updated, in_flight: e.in_flight };
            }
        }
        self.settled.fetch_add(1, Ordering::Release);
    }

    /// Says `what` on standard error, at most once per [`COMPLAINT_INTERVAL`]: an outage of the server
    /// would otherwise print a line per message.
    fn complain(&self, what: &str) {
        let mut last = self.last_complaint.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= COMPLAINT_INTERVAL) {
            *last = Some(Instant::now());
            eprintln!("mailsift: reputation: {what}");
        }
    }

    fn gone(&self) -> StoreError {
        StoreError::Write { path: self.remote.target().to_string(), reason: "the reputation writer has stopped".into() }
    }
}

/// Reputation on a shared server; see the module's text.
pub(super) struct SharedBackend {
    state: Arc<State>,
    queue: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
}

/// Whether a key can be sent at all: a NUL byte (which PostgreSQL's text refuses, failing the whole batch)
/// or an absurd length only come from hostile headers, and such an identity is simply not tracked.
fn sendable((_, key): &Identity) -> bool {
    key.len() <= MAX_KEY_BYTES && !key.contains('\0')
}

impl SharedBackend {
    pub(super) fn open(
        remote: Box<dyn Remote>,
        half_life_days: f64,
        queue: usize,
        name: &str,
    ) -> Result<SharedBackend, StoreError> {
        let state = Arc::new(State {
            remote,
            half_life_secs: half_life_days.max(0.01) * 86_400.0,
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            queued: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
            settled: AtomicU64::new(0),
            last_complaint: Mutex::new(None),
        });
        let (sender, receiver) = mpsc::sync_channel(queue.max(1));
        let for_writer = Arc::clone(&state);
        let writer = std::thread::Builder::new()
            .name(format!("mailsift-reputation-{name}"))
            .spawn(move || run(&for_writer, receiver))
            .map_err(|source| StoreError::Io { path: state.remote.target().to_string(), source })?;
        Ok(SharedBackend { state, queue: Some(sender), writer: Some(writer) })
    }

    pub(super) fn target(&self) -> &str {
        self.state.remote.target()
    }

    pub(super) fn stats(&self) -> ReputationStats {
        let s = &self.state;
        ReputationStats {
            queued: s.queued.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            unanswered: s.unanswered.load(Ordering::Relaxed),
        }
    }

    pub(super) fn lookup(&self, keys: &[Identity], now: i64) -> Result<ReputationFacts, StoreError> {
        let keys: Vec<Identity> = keys.iter().filter(|k| sendable(k)).cloned().collect();
        if keys.is_empty() {
            return Ok(ReputationFacts::default());
        }
        let rows = match self.read_consistent(&keys) {
            Ok(rows) => rows,
            Err(e) if !self.state.remote.neutral_when_down() => return Err(e),
            Err(e) => {
                self.state.unanswered.fetch_add(1, Ordering::Relaxed);
                self.state.complain(&format!("{e}; lookups answer no facts until it is back"));
                return Ok(ReputationFacts::default());
            }
        };
        let half_life = self.state.half_life_secs;
        let entries = keys
            .into_iter()
            .zip(rows)
            .filter_map(|((kind, key), row)| {
                let row = row?;
                let f = decay_factor(now - row.updated, half_life);
                Some(ReputationEntry { kind, key, spam: row.spam * f, ham: row.ham * f })
            })
            .collect();
        Ok(ReputationFacts { entries })
    }

    /// The server's rows plus this node's pending additions. Read pending first (see the module's text);
    /// when a batch was settled meanwhile, once more, since that batch may have been counted twice.
    fn read_consistent(&self, keys: &[Identity]) -> Result<Vec<Option<Row>>, StoreError> {
        let mut attempt = 0;
        loop {
            let before = self.state.settled.load(Ordering::Acquire);
            let pending: Vec<Option<Row>> = keys.iter().map(|k| self.state.pending(k)).collect();
            let stored = self.state.remote.fetch(keys)?;
            attempt += 1;
            if attempt < 2 && self.state.settled.load(Ordering::Acquire) != before {
                continue;
            }
            let half_life = self.state.half_life_secs;
            return Ok(stored
                .into_iter()
                .zip(pending)
                .map(|(s, p)| match (s, p) {
                    (Some(s), Some(p)) => Some(s.merge(p, half_life)),
                    (s, p) => s.or(p),
                })
                .collect());
        }
    }

    pub(super) fn record(&self, keys: &[Identity], event: Event, now: i64) -> Result<(), StoreError> {
        let (bad, good) = event.weights();
        let keys: Vec<Identity> = keys.iter().filter(|k| sendable(k)).cloned().collect();
        if (bad == 0.0 && good == 0.0) || keys.is_empty() {
            return Ok(());
        }
        let Some(queue) = &self.queue else { return Err(self.state.gone()) };
        let add = Row { spam: bad, ham: good, updated: now };
        // The shards stay held until the record is queued, so the writer cannot settle it before it is
        // pending; taken in index order, so two records never wait on each other in a circle.
        let mut order: Vec<usize> = keys.iter().map(|(k, key)| shard_index(*k, key)).collect();
        order.sort_unstable();
        order.dedup();
        let mut shards: Vec<MutexGuard<'_, Shard>> = order.iter().map(|&i| self.state.shard(i)).collect();
        self.state.queued.fetch_add(1, Ordering::Relaxed);
        match queue.try_send(Command::Record { keys: keys.clone(), add }) {
            Ok(()) => {
                for (kind, key) in &keys {
                    let g = order.binary_search(&shard_index(*kind, key)).expect("every shard is held");
                    let map = &mut shards[g].by_kind[kind_index(*kind)];
                    let e =
                        map.entry(key.clone()).or_insert(InFlight { spam: 0.0, ham: 0.0, updated: now, in_flight: 0 });
                    let sum =
                        Row { spam: e.spam, ham: e.ham, updated: e.updated }.merge(add, self.state.half_life_secs);
                    *e = InFlight { spam: sum.spam, ham: sum.ham, updated: sum.updated, in_flight: e.in_flight + 1 };
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => {
                self.state.queued.fetch_sub(1, Ordering::Relaxed);
                let dropped = self.state.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    eprintln!(
                        "mailsift: reputation: {}: the writer is behind, {dropped} records dropped so far",
                        self.target()
                    );
                }
                Ok(())
            }
            Err(TrySendError::Disconnected(_)) => {
                self.state.queued.fetch_sub(1, Ordering::Relaxed);
                Err(self.state.gone())
            }
        }
    }

    pub(super) fn flush(&self) -> Result<(), StoreError> {
        let Some(queue) = &self.queue else { return Err(self.state.gone()) };
        let (reply, answer) = mpsc::sync_channel(1);
        queue.send(Command::Flush(reply)).map_err(|_| self.state.gone())?;
        answer.recv().map_err(|_| self.state.gone())?
    }

    pub(super) fn show(&self, key: &str, now: i64) -> Result<Vec<ReputationEntry>, StoreError> {
        // A lost batch was reported when it failed; what the server has is still worth showing.
        let _ = self.flush();
        let half_life = self.state.half_life_secs;
        let mut rows = self.state.remote.show(&key.to_lowercase())?;
        rows.sort_by_key(|((kind, _), _)| kind.as_str());
        Ok(rows
            .into_iter()
            .map(|((kind, key), row)| {
                let f = decay_factor(now - row.updated, half_life);
                ReputationEntry { kind, key, spam: row.spam * f, ham: row.ham * f }
            })
            .collect())
    }

    pub(super) fn reset(&self, key: &str) -> Result<usize, StoreError> {
        let Some(queue) = &self.queue else { return Err(self.state.gone()) };
        let (reply, answer) = mpsc::sync_channel(1);
        queue.send(Command::Reset { key: key.to_lowercase(), reply }).map_err(|_| self.state.gone())?;
        answer.recv().map_err(|_| self.state.gone())?
    }
}

impl Drop for SharedBackend {
    fn drop(&mut self) {
        // Closing the queue lets the writer send what is queued and end.
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Additions gathered from the records since the last send.
#[derive(Default)]
struct Unsent {
    additions: FxHashMap<Identity, Row>,
    records: u64,
}

/// Records lost since the last flush, and the first reason.
#[derive(Default)]
struct Losses {
    records: u64,
    first: Option<String>,
}

/// The writer: takes what is queued, a batch at a time, and sends each batch's additions in one go (cut
/// at each reset, which must come after what was recorded before it).
fn run(state: &State, queue: Receiver<Command>) {
    let mut losses = Losses::default();
    let mut pruned: Option<Instant> = None;
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let records = batch.iter().filter(|c| matches!(c, Command::Record { .. })).count();
        state.queued.fetch_sub(records, Ordering::Relaxed);

        let h = state.half_life_secs;
        let mut unsent = Unsent::default();
        // What the whole batch adds per identity, and in how many records: taken out of the pending table
        // once the batch is done with.
        let mut settled: FxHashMap<Identity, (Row, u32)> = FxHashMap::default();
        for cmd in batch {
            match cmd {
                Command::Record { keys, add } => {
                    unsent.records += 1;
                    for key in keys {
                        unsent.additions.entry(key.clone()).and_modify(|r| *r = r.merge(add, h)).or_insert(add);
                        let e = settled.entry(key).or_insert((Row { spam: 0.0, ham: 0.0, updated: add.updated }, 0));
                        *e = (e.0.merge(add, h), e.1 + 1);
                    }
                }
                Command::Reset { key, reply } => {
                    // Even when the additions before it were lost, the removal is what the operator asked for.
                    let _ = send(state, &mut unsent, &mut losses);
                    state.settle(&std::mem::take(&mut settled));
                    let _ = reply.send(state.remote.reset(&key));
                }
                Command::Flush(reply) => {
                    // Settled before the answer: a lookup after the flush must not count the sent additions
                    // both from the server and as pending.
                    let _ = send(state, &mut unsent, &mut losses);
                    state.settle(&std::mem::take(&mut settled));
                    let answer = match losses.first.take() {
                        Some(first) => Err(StoreError::Write {
                            path: state.remote.target().to_string(),
                            reason: format!(
                                "{} reputation records were lost since the last flush; the first: {first}",
                                losses.records
                            ),
                        }),
                        None => Ok(()),
                    };
                    losses.records = 0;
                    let _ = reply.send(answer);
                }
            }
        }
        let _ = send(state, &mut unsent, &mut losses);
        state.settle(&settled);
        if pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            pruned = Some(Instant::now());
            prune(state);
        }
    }
}

/// Forgets, on the server, the identities nobody added to for [`FORGET_AFTER_HALF_LIVES`] half-lives (by
/// the clock: rows are stamped with the events' times, which are the clock's on the message path).
fn prune(state: &State) {
    let horizon = (state.half_life_secs * FORGET_AFTER_HALF_LIVES) as i64;
    if let Err(e) = state.remote.prune(mailsift_engine::unix_now().saturating_sub(horizon)) {
        state.complain(&format!("{e}; forgotten identities not pruned, trying again in an hour"));
    }
}

/// Sends the additions gathered so far and forgets them, sent or not. A failure loses the records they
/// came from: counted in `failed`, said on standard error (rate-limited) and kept for the next flush.
fn send(state: &State, unsent: &mut Unsent, losses: &mut Losses) -> Result<(), StoreError> {
    let records = std::mem::take(&mut unsent.records);
    if unsent.additions.is_empty() {
        return Ok(());
    }
    let mut rows: Vec<(Identity, Row)> = unsent.additions.drain().collect();
    // One order on every node: PostgreSQL locks the rows in the order given, so two nodes' batches never
    // wait on each other in a circle.
    rows.sort_by(|((ka, a), _), ((kb, b), _)| ka.as_str().cmp(kb.as_str()).then_with(|| a.cmp(b)));
    state.remote.add(&rows).inspect_err(|e| {
        state.failed.fetch_add(records, Ordering::Relaxed);
        losses.records += records;
        losses.first.get_or_insert_with(|| e.to_string());
        state.complain(&format!("{e}; records are lost until it is back"));
    })
}
