//! mailsift's persistence: the classifier token store, behind a trait so PostgreSQL can follow SQLite; the
//! local reputation store; and the gateway's database (message log and quarantine, [`gateway`]).
//!
//! What it holds: per hashed token, in how many ham and spam messages it was learned (and the day it was
//! last learned, for expiry); the linear model's weights as fixed-size chunks; the totals; a digest of every
//! trained message with the side it was trained on, so a message never counts twice and a correction knows
//! what to undo; and the users' report submissions. No readable text from anyone's mail is stored: tokens
//! are 64-bit hashes and messages are 128-bit digests.
//!
//! What it is not: the model arithmetic (that is `mailsift_engine::classify`, which does no I/O) nor the
//! decision of what to learn (the [`learner::Learner`] asks the engine and tells the store).

pub mod backup;
pub mod classifier;
pub mod config;
pub mod gateway;
pub mod learner;
pub mod limits;
pub mod migrate;
pub mod reputation;
pub mod sqlite;

use mailsift_engine::classify::{Combination, Model, Side};

pub use classifier::ClassifierStore;
pub use config::StoreConfig;
/// The PostgreSQL backend (`gateway::pg`), by its short name.
pub use gateway::pg;
pub use gateway::ORGANISATION_ROW;
pub use gateway::{Account, HourlyCount, Role};
pub use gateway::{Database, LogEntry, LogQuery, NewQuarantine, QuarantineItem, QuarantineQuery, VIRUS_REASON_PREFIX};
pub use gateway::{ImportMode, ListEntry, PolicyStore, PolicyStoreError, StoredEntry, StoredRule, VersionedPolicy};
pub use gateway::{NewSpoolItem, SpoolCount, SpoolItem};
pub use learner::Learner;
pub use limits::{LimitStore, MemoryLimits};
pub use reputation::{open_configured as open_reputation, RedisConfig, Reputation, SqliteReputation};
pub use reputation::{Event as ReputationEvent, ReputationHook, ReputationStats};
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
    /// An add that would duplicate a unique name (an account's, compared ignoring case): `what` names it.
    #[error("{path}: {what} already exists")]
    Exists { path: String, what: String },
    #[error("{path}: cannot create the data directory: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// PostgreSQL refused or could not be reached: `target` names the server and database (never the
    /// password); `temporary` when it may pass by itself (connection lost, server restarting), which the
    /// gateway answers with 4xx.
    #[error("{target}: {reason}")]
    Postgres { target: String, reason: String, temporary: bool },
    /// A queued write that did not happen: the gateway database's writer stopped, or the batch it was in
    /// failed to commit (the reason is the SQLite error's text: one error is shared by everyone in the batch).
    #[error("{path}: {reason}")]
    Write { path: String, reason: String },
}

/// What changed in the model since the last save; the store writes exactly this, in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    /// Tokens whose counts changed (written as the model now has them; absent means delete).
    pub tokens: rustc_hash::FxHashSet<u64>,
    /// Trained-message digests and the side each is now trained on (`None`: forgotten).
    pub trained: Vec<([u8; 16], Option<Side>)>,
    /// For a store several nodes share ([`TokenStore::merges`]): each changed token's counts as they were
    /// before the first change since the last save, so the store can add this node's difference to what
    /// the other nodes wrote meanwhile instead of overwriting it. Empty for a store that does not merge.
    pub base: rustc_hash::FxHashMap<u64, [u32; 2]>,
    /// The same for the totals (Bayes ham and spam messages, the linear bias and update count).
    pub base_totals: Option<Totals>,
    /// Bulk training fitted a new combination of the engines (`Model::combination`): save it.
    pub combination: bool,
}

/// The names under which a store keeps the engines' fitted combination, beside the totals: the four
/// multipliers in [`Combination::multipliers`]' order, then the held-out ham and spam it was fitted on.
pub const COMBINATION_NAMES: [&str; 6] = [
    "combination_bayes_spam",
    "combination_bayes_ham",
    "combination_linear_spam",
    "combination_linear_ham",
    "combination_ham",
    "combination_spam",
];

/// The rows a store keeps for a combination: [`COMBINATION_NAMES`] and their values.
pub fn combination_totals(c: &Combination) -> [(&'static str, f64); 6] {
    let [bs, bh, ls, lh] = c.multipliers();
    let values = [bs, bh, ls, lh, c.ham as f64, c.spam as f64];
    std::array::from_fn(|k| (COMBINATION_NAMES[k], values[k]))
}

/// The combination from a store's (name, value) rows; `None` unless all six are there and finite.
pub fn combination_from<'a>(rows: impl Iterator<Item = (&'a str, f64)>) -> Option<Combination> {
    let mut v = [f64::NAN; 6];
    for (name, value) in rows {
        if let Some(k) = COMBINATION_NAMES.iter().position(|n| *n == name) {
            v[k] = value;
        }
    }
    let count = |x: f64| x.clamp(0.0, u32::MAX as f64) as u32;
    v.iter().all(|x| x.is_finite()).then(|| Combination {
        bayes_spam: v[0],
        bayes_ham: v[1],
        linear_spam: v[2],
        linear_ham: v[3],
        ham: count(v[4]),
        spam: count(v[5]),
    })
}

/// The model's totals, as a store keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Totals {
    pub ham: u64,
    pub spam: u64,
    pub bias: f32,
    pub updates: u64,
    /// The engines' fitted combination (kept whole, not merged: the last bulk training's fit stands).
    pub combination: Option<Combination>,
}

impl Totals {
    pub fn of(model: &Model) -> Totals {
        Totals {
            ham: model.bayes.ham,
            spam: model.bayes.spam,
            bias: model.linear.bias,
            updates: model.linear.updates,
            combination: model.combination,
        }
    }
}

/// What a shared store holds now for part of the model (written by another node, or the result of this
/// node's own save merged with theirs): applied to the in-memory model by [`Fresh::apply`].
#[derive(Debug, Default)]
pub struct Fresh {
    /// Tokens and their counts; `[0, 0]` means gone.
    pub tokens: Vec<(u64, [u32; 2])>,
    /// Whole linear chunks by index.
    pub chunks: Vec<(usize, Box<[f32]>)>,
    pub totals: Option<Totals>,
}

impl Fresh {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.chunks.is_empty() && self.totals.is_none()
    }

    /// Makes the model say what the store says for these parts.
    pub fn apply(self, model: &mut Model) {
        use mailsift_engine::classify::linear::CHUNK;
        for (id, counts) in self.tokens {
            if counts == [0, 0] {
                model.bayes.tokens.remove(&id);
            } else {
                model.bayes.tokens.insert(id, counts);
            }
        }
        for (i, weights) in self.chunks {
            let start = i * CHUNK;
            if weights.len() == CHUNK && start + CHUNK <= model.linear.weights.len() {
                model.linear.weights[start..start + CHUNK].copy_from_slice(&weights);
            }
        }
        if let Some(t) = self.totals {
            model.bayes.ham = t.ham;
            model.bayes.spam = t.spam;
            model.linear.bias = t.bias;
            model.linear.updates = t.updates;
            if t.combination.is_some() {
                model.combination = t.combination;
            }
        }
    }
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.trained.is_empty() && !self.combination
    }
}

/// A user's correction, as recorded by `mailsift report`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// Unix seconds.
    pub at: i64,
    /// The side the user says the message is on.
    pub correct_side: Side,
    /// The side it had been trained on before, if any.
    pub previous_side: Option<Side>,
    pub digest: [u8; 16],
    /// Where the message came from (a file name, "quarantine item 12", "email"), for the administrator.
    pub source: String,
    /// How it was submitted: `cli`, `quarantine` (not spam on release) or `email` (a report address).
    pub channel: String,
    /// Who reported it (the user's address), when known.
    pub reporter: Option<String>,
    /// The reported message's From: domain, for the submission report.
    pub sender_domain: Option<String>,
}

/// The classifier token store. One implementation per database; the learner only speaks this.
pub trait TokenStore {
    /// Reads the whole model into memory.
    fn load(&self) -> Result<Model, StoreError>;
    /// The side a message was trained on, if it was.
    fn trained_side(&self, digest: &[u8; 16]) -> Result<Option<Side>, StoreError>;
    /// Saves what changed: token counts, dirty linear chunks, totals, digests. All or nothing.
    fn save(&mut self, model: &Model, changes: &Changes, now: i64) -> Result<(), StoreError>;
    /// Bounds the store: drops tokens seen in at most one message and not learned since `stale_before`
    /// (Unix seconds), then the rarest, oldest tokens until at most `max_tokens` remain. Returns the ids
    /// removed, so the caller can drop them from its in-memory model.
    fn expire(&mut self, max_tokens: u64, stale_before: i64) -> Result<Vec<u64>, StoreError>;
    /// Records a user's correction.
    fn record_submission(&mut self, s: &Submission) -> Result<(), StoreError>;
    /// Every recorded correction, oldest first.
    fn submissions(&self) -> Result<Vec<Submission>, StoreError>;
    /// How many tokens the store holds.
    fn token_count(&self) -> Result<u64, StoreError>;

    /// Whether other nodes write the same store, so saves are differences merged with theirs (the learner
    /// then fills [`Changes::base`]) and [`TokenStore::pull`] brings their work in.
    fn merges(&self) -> bool {
        false
    }

    /// After [`TokenStore::save`] on a store that merges: the saved parts as the store now holds them, to
    /// apply to the model (so the next save's differences start from there).
    fn take_saved(&mut self) -> Fresh {
        Fresh::default()
    }

    /// What other nodes saved since the last pull (nothing for a store only this process writes).
    fn pull(&mut self) -> Result<Fresh, StoreError> {
        Ok(Fresh::default())
    }
}
