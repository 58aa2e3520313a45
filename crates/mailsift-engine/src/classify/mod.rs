//! The statistical engines: Bayes (Robinson-Fisher) and an online linear model, over one tokenizer.
//!
//! This module holds the model in memory and the arithmetic; it does no I/O. The store crate loads a
//! [`Model`] from disk and saves what training changes; the engine reads the model at scan time and turns
//! its probabilities into facts ([`ClassifierScores`] in the evidence), which `checks::classifier` grades
//! into symbols. The two engines complement each other: Bayes is sharp on words it has seen often and
//! honest about being unsure; the linear model weighs every feature at once and generalises across
//! correlated features, which Bayes' independence assumption double-counts.

pub mod balance;
pub mod bayes;
pub mod combine;
pub mod day_one;
pub mod linear;
pub mod portable;
pub mod tokens;

use serde::{Deserialize, Serialize};

use crate::config::ClassifierConfig;
use crate::envelope::Envelope;
use crate::evidence::ClassifierScores;
use crate::message::Message;
use crate::verdict::Verdict;

pub use balance::Balance;
pub use bayes::BayesCounts;
pub use combine::{Combination, HeldOut};
pub use linear::LinearModel;
pub use tokens::{features, portable_features, Features};

/// The fewest ham, and spam, addressed to an organisation the model must have learned before its local head
/// speaks for that organisation's mail (see [`Model::knows_organisation`]).
pub const LOCAL_MIN_MESSAGES: u32 = 50;

/// Which way a message is (to be) learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Ham,
    Spam,
}

impl Side {
    pub fn is_spam(self) -> bool {
        self == Side::Spam
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Side::Ham => "ham",
            Side::Spam => "spam",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Ham => Side::Spam,
            Side::Spam => Side::Ham,
        }
    }
}

/// Both engines' learned state.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub bayes: BayesCounts,
    pub linear: LinearModel,
    /// How the two engines' points combine here, fitted at the last bulk training (`None`: the fixed
    /// combination; see [`combine`]).
    pub combination: Option<Combination>,
}

/// What learning one message did, so a store can save exactly that.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LearnOutcome {
    /// Learned on this side for the first time.
    Learned,
    /// It had been learned on the other side: that was undone, then it was learned on this side.
    Relearned,
    /// Already learned on this side: nothing changed (a message never counts twice).
    AlreadyKnown,
}

impl Model {
    /// Whether the model has learned enough to speak (`classifier.min_ham` and `min_spam`).
    pub fn is_ready(&self, config: &ClassifierConfig) -> bool {
        self.bayes.ham >= config.min_ham && self.bayes.spam >= config.min_spam
    }

    /// Scores a message's features; engines with less than the configured experience stay silent.
    pub fn classify(&self, f: &Features, config: &ClassifierConfig) -> ClassifierScores {
        if !self.is_ready(config) || f.is_empty() {
            return ClassifierScores::default();
        }
        let (bayes, familiarity) = self.bayes.score_and_familiarity(f.bayes_ids());
        ClassifierScores {
            bayes: Some(bayes),
            linear: Some(self.linear.score(&f.ids)),
            familiarity: Some(familiarity),
            day_one_say: None,
            stranger_say: None,
            combination: self.combination,
            local: (!f.local.is_empty() && self.knows_organisation(f)).then(|| self.linear.local_score(&f.local)),
        }
    }

    /// Whether the local head may speak for this message: the model has learned at least
    /// [`LOCAL_MIN_MESSAGES`] ham and as many spam addressed to the message's organisation. A model trained
    /// on another organisation's mail (the shipped day-one model, a borrowed one) never has; a model trained
    /// on this organisation's own mail has, for its own domains.
    pub fn knows_organisation(&self, f: &Features) -> bool {
        f.org.is_some_and(|org| self.linear.org_counts(org).iter().all(|&n| n >= LOCAL_MIN_MESSAGES as f32))
    }

    /// Whether the model has learned at least [`LOCAL_MIN_MESSAGES`] ham addressed to `org`
    /// ([`tokens::organisation_id`]): ham is what is an organisation's own (spam goes to everyone), so a model
    /// that never learned an organisation's ham was trained on someone else's mail.
    pub fn learned_ham_of(&self, org: u64) -> bool {
        self.linear.org_counts(org)[0] >= LOCAL_MIN_MESSAGES as f32
    }

    /// Learns a message's features on `side`, given on which side (if any) it was learned before.
    pub fn learn(&mut self, f: &Features, side: Side, before: Option<Side>) -> LearnOutcome {
        self.learn_at(f, side, before, 1.0)
    }

    /// As [`Model::learn`], the linear model's steps scaled by `linear_rate` (see [`Balance`]); Bayes
    /// counts the message in full either way.
    pub fn learn_at(&mut self, f: &Features, side: Side, before: Option<Side>, linear_rate: f32) -> LearnOutcome {
        match before {
            Some(b) if b == side => LearnOutcome::AlreadyKnown,
            Some(b) => {
                self.bayes.apply(f.bayes_ids(), b.is_spam(), -1);
                self.bayes.apply(f.bayes_ids(), side.is_spam(), 1);
                self.linear.correct_at(&f.ids, side.is_spam(), 20, linear_rate);
                self.linear.local_correct_at(&f.local, side.is_spam(), 20, linear_rate);
                if let Some(org) = f.org {
                    self.linear.count_org(org, b.is_spam(), -1.0);
                    self.linear.count_org(org, side.is_spam(), 1.0);
                }
                LearnOutcome::Relearned
            }
            None => {
                self.bayes.apply(f.bayes_ids(), side.is_spam(), 1);
                self.linear.step(&f.ids, side.is_spam(), linear_rate);
                self.linear.local_step(&f.local, side.is_spam(), linear_rate);
                if let Some(org) = f.org {
                    self.linear.count_org(org, side.is_spam(), 1.0);
                }
                LearnOutcome::Learned
            }
        }
    }

    /// The share of spam among the messages Bayes has learned (a half when it has learned nothing).
    pub fn spam_share(&self) -> f64 {
        let total = self.bayes.ham + self.bayes.spam;
        if total == 0 {
            0.5
        } else {
            self.bayes.spam as f64 / total as f64
        }
    }

    /// Forgets a message learned on `side` (Bayes exactly; the linear model is stepped back toward the
    /// other side once, the closest a logistic model has to unlearning).
    pub fn unlearn(&mut self, f: &Features, side: Side) {
        self.bayes.apply(f.bayes_ids(), side.is_spam(), -1);
        self.linear.step(&f.ids, !side.is_spam(), 1.0);
        self.linear.local_step(&f.local, !side.is_spam(), 1.0);
        if let Some(org) = f.org {
            self.linear.count_org(org, side.is_spam(), -1.0);
        }
    }
}

/// The digest that identifies a message for training, 128 bits: from what the sender wrote (Message-ID,
/// From, Subject, the text), not from trace headers added on the way, so a delivered copy that a user
/// reports matches the copy that was trained.
pub fn message_digest(msg: &Message<'_>) -> [u8; 16] {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for part in [
        msg.message_id.as_deref().unwrap_or(""),
        msg.from.as_ref().map(|f| f.address.as_str()).unwrap_or(""),
        msg.subject.as_deref().unwrap_or(""),
    ] {
        h.update(part.as_bytes());
        h.update(&[0]);
    }
    h.update(msg.body_text.as_bytes());
    for a in &msg.attachments {
        h.update(&(a.size as u64).to_le_bytes());
    }
    h.digest128().to_le_bytes()
}

/// The spamtrap address a message was sent to, if any: envelope recipients first; the To and Cc headers
/// only when the envelope is unknown (a file on disk).
pub fn spamtrap_hit<'c>(envelope: &Envelope, msg: &Message<'_>, config: &'c ClassifierConfig) -> Option<&'c str> {
    if config.spamtraps.is_empty() {
        return None;
    }
    let is_trap = |addr: &str| {
        let addr = addr.trim().trim_matches(['<', '>']);
        config.spamtraps.iter().find(|t| t.eq_ignore_ascii_case(addr)).map(String::as_str)
    };
    if !envelope.rcpt_to.is_empty() {
        return envelope.rcpt_to.iter().find_map(|r| is_trap(r));
    }
    msg.to.iter().find_map(|m| is_trap(&m.address)).or_else(|| {
        msg.headers_named("cc").flat_map(|v| v.split(',')).find_map(|a| {
            let a = a.rsplit_once('<').map(|(_, r)| r).unwrap_or(a);
            is_trap(a.trim_end_matches('>'))
        })
    })
}

/// Auto-learning: the side to learn a judged message on, or `None`. Only verdicts far from the thresholds
/// qualify, and the heuristics alone must agree, so the classifiers cannot teach themselves their own
/// mistakes. Off unless `autolearn` is set.
pub fn autolearn_side(verdict: &Verdict, config: &ClassifierConfig) -> Option<Side> {
    if !config.autolearn || verdict.decided_by.is_some() {
        return None;
    }
    let others: f64 =
        verdict.symbols.iter().filter(|s| s.group != crate::symbols::Group::Classifier).map(|s| s.score).sum();
    if verdict.score >= config.autolearn_spam_score && others >= verdict.thresholds.tag {
        Some(Side::Spam)
    } else if verdict.score <= config.autolearn_ham_score && others < verdict.thresholds.tag / 2.0 {
        Some(Side::Ham)
    } else {
        None
    }
}

/// Where the gateway tells the reputation engine that a sender hit a spamtrap. The reputation engine is not
/// built yet; the store's learner calls this hook, and a no-op implementation stands in.
pub trait SpamtrapHook: Send + Sync {
    fn spamtrap_hit(&self, envelope: &Envelope, msg: &Message<'_>, trap: &str);
}

/// The hook that does nothing, until reputation exists.
pub struct NoReputation;

impl SpamtrapHook for NoReputation {
    fn spamtrap_hit(&self, _: &Envelope, _: &Message<'_>, _: &str) {}
}
