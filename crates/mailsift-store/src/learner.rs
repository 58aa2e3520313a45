//! The learner: keeps the in-memory model and the store in step.
//!
//! Every way a message is learned goes through here: bulk training, a user's report, a spamtrap hit,
//! auto-learning. The learner checks the trained-message digests (a message never counts twice; a message
//! learned on the wrong side is unlearned first), updates the shared model the engine scans with, and
//! remembers what changed so [`Learner::commit`] writes it in one transaction.

use std::sync::{Arc, RwLock};

use mailsift_engine::classify::{
    self, Balance, Combination, Features, HeldOut, LearnOutcome, Model, NoReputation, Side, SpamtrapHook,
};
use mailsift_engine::config::ClassifierConfig;
use mailsift_engine::{Envelope, Message, SharedModel, Verdict};
use rustc_hash::FxHashMap;

use crate::{Changes, StoreError, Submission, TokenStore};

/// One message ready to learn: its digest and features (computed off the learner, in parallel).
#[derive(Clone)]
pub struct Example {
    pub digest: [u8; 16],
    pub features: Features,
    pub side: Side,
    /// The heuristics' points for it (the verdict's score without the classifiers), when bulk training
    /// judged it: what the engines' combination is fitted against (see [`Learner::train_and_combine`]).
    pub heuristics: Option<f64>,
    /// A spam program's fingerprint fired on it (`checks::classifier::FINGERPRINTS`): the verdict does not
    /// count the engines' ham grades then, so neither does the fit.
    pub fingerprint: bool,
}

impl Example {
    pub fn new(msg: &Message<'_>, side: Side) -> Example {
        Example {
            digest: classify::message_digest(msg),
            features: classify::features(msg),
            side,
            heuristics: None,
            fingerprint: false,
        }
    }
}

/// How many parts bulk training's held-out judgement cuts the new examples into: each part is judged by
/// engines trained on the others, so the engines that judge have learned two thirds of the batch.
const FOLDS: usize = 3;

pub struct Learner<S: TokenStore> {
    store: S,
    model: SharedModel,
    changes: Changes,
    /// Digests learned (or forgotten: `None`) since the last commit; the store does not know yet.
    pending: FxHashMap<[u8; 16], Option<Side>>,
    hook: Box<dyn SpamtrapHook>,
    /// How lopsided recent online learning is (spamtraps, reports, auto-learning): damps the linear model's
    /// steps on a long run of one kind. Bulk training is interleaved and not damped.
    balance: Balance,
}

impl<S: TokenStore> Learner<S> {
    /// Loads the model from the store.
    pub fn open(store: S) -> Result<Learner<S>, StoreError> {
        let model = store.load()?;
        Ok(Learner {
            store,
            model: Arc::new(RwLock::new(model)),
            changes: Changes::default(),
            pending: FxHashMap::default(),
            hook: Box::new(NoReputation),
            balance: Balance::default(),
        })
    }

    /// The same learner over another kind of store (a concrete store into [`crate::ClassifierStore`]).
    pub fn convert<T: TokenStore>(self, f: impl FnOnce(S) -> T) -> Learner<T> {
        Learner {
            store: f(self.store),
            model: self.model,
            changes: self.changes,
            pending: self.pending,
            hook: self.hook,
            balance: self.balance,
        }
    }

    /// Where spamtrap hits are reported (the reputation engine, when it exists).
    pub fn with_spamtrap_hook(mut self, hook: Box<dyn SpamtrapHook>) -> Self {
        self.hook = hook;
        self
    }

    /// The model, to give to [`mailsift_engine::Engine::with_model`].
    pub fn model(&self) -> SharedModel {
        self.model.clone()
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    fn write_model(&self) -> std::sync::RwLockWriteGuard<'_, Model> {
        self.model.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The side a message was learned on, counting what is not committed yet.
    pub fn trained_side(&self, digest: &[u8; 16]) -> Result<Option<Side>, StoreError> {
        match self.pending.get(digest) {
            Some(s) => Ok(*s),
            None => self.store.trained_side(digest),
        }
    }

    /// Learns one message as it comes (a spamtrap hit, one file): online, so the linear model's step is
    /// damped when recent learning has been mostly of this kind (see [`Balance`]). Not saved until
    /// [`Learner::commit`].
    pub fn learn(&mut self, msg: &Message<'_>, side: Side) -> Result<LearnOutcome, StoreError> {
        let ex = Example::new(msg, side);
        let before = self.trained_side(&ex.digest)?;
        Ok(self.learn_given(&ex, before, true))
    }

    /// Learns one example at the full rate (bulk training's first pass).
    pub fn learn_example(&mut self, ex: &Example) -> Result<LearnOutcome, StoreError> {
        let before = self.trained_side(&ex.digest)?;
        Ok(self.learn_given(ex, before, false))
    }

    /// The linear model's rate for one more online message of `side`; counts it in the recent balance.
    fn online_rate(&mut self, side: Side) -> f32 {
        let usual = self.model.read().unwrap_or_else(|e| e.into_inner()).spam_share();
        self.balance.factor(side.is_spam(), usual)
    }

    /// Learns `ex`, which was learned on `before` (looked up once by the caller); `damped`: an online step,
    /// scaled and counted by the recent balance. A message already known on its side changes nothing, the
    /// balance included.
    fn learn_given(&mut self, ex: &Example, before: Option<Side>, damped: bool) -> LearnOutcome {
        if before == Some(ex.side) {
            return LearnOutcome::AlreadyKnown;
        }
        let rate = if damped { self.online_rate(ex.side) } else { 1.0 };
        self.note_base(&ex.features);
        let outcome = self.write_model().learn_at(&ex.features, ex.side, before, rate);
        self.touch(ex);
        outcome
    }

    /// Bulk training: learns every example once (Bayes counts each once, the linear model takes one step),
    /// then gives the linear model `extra_passes` more passes over the newly learned examples in a fixed
    /// shuffled order, as online learners are trained on a corpus. Returns how many were new, relearned,
    /// already known.
    ///
    /// The first pass takes ham and spam interleaved in proportion (see [`interleaved`]), each kind in the
    /// order given: a corpus is usually handed over as all its ham and then all its spam, and an online
    /// model stepped through it in that order ends up leaning to whichever came last (on the SpamAssassin
    /// split, inside TRAIN's cross-validation, 12 false positives of 3,134 against 11 interleaved).
    /// A run of one kind (a folder of new spam added to a trained model) cannot be interleaved: it is a
    /// lopsided stream like a spamtrap's, so it is learned as online learning is, its linear steps damped by
    /// the recent balance (see [`Balance`]), and the extra passes, which would only push the model further
    /// towards that kind, are skipped.
    pub fn train(&mut self, examples: &[Example], extra_passes: usize) -> Result<[usize; 3], StoreError> {
        self.train_fresh(examples, extra_passes).map(|(counts, _)| counts)
    }

    /// As [`Learner::train`], then fits how the two engines' points combine at this installation
    /// (`classify::combine`) from the newly learned examples that carry their heuristics' points: each third
    /// is judged by engines trained on the other two, the same way, and the combination is fitted on those
    /// judgements with `tag` as the threshold. Keeps the previous combination when the batch is too small
    /// (fewer than `combine::MIN_HELD_OUT` of either kind) or the fit is refused. Returns the counts and the
    /// combination fitted, if one was.
    pub fn train_and_combine(
        &mut self,
        examples: &[Example],
        extra_passes: usize,
        tag: f64,
    ) -> Result<([usize; 3], Option<Combination>), StoreError> {
        let (counts, fresh) = self.train_fresh(examples, extra_passes)?;
        let judged: Vec<usize> = fresh.into_iter().filter(|&i| examples[i].heuristics.is_some()).collect();
        let held_out = held_out(examples, &judged, extra_passes);
        let fitted = classify::combine::fit(&held_out, tag);
        if let Some(c) = fitted {
            self.write_model().combination = Some(c);
            self.changes.combination = true;
        }
        Ok((counts, fitted))
    }

    /// [`Learner::train`]'s work; also returns the indices of the examples learned for the first time.
    fn train_fresh(
        &mut self,
        examples: &[Example],
        extra_passes: usize,
    ) -> Result<([usize; 3], Vec<usize>), StoreError> {
        let mut counts = [0usize; 3];
        let mut fresh = Vec::with_capacity(examples.len());
        let one_kind = examples.windows(2).all(|w| w[0].side == w[1].side);
        for i in interleaved(examples) {
            let ex = &examples[i];
            let before = self.trained_side(&ex.digest)?;
            match self.learn_given(ex, before, one_kind) {
                LearnOutcome::Learned => {
                    counts[0] += 1;
                    fresh.push(i);
                }
                LearnOutcome::Relearned => counts[1] += 1,
                LearnOutcome::AlreadyKnown => counts[2] += 1,
            }
        }
        let mut model = self.model.write().unwrap_or_else(|e| e.into_inner());
        let learned = fresh.clone();
        more_passes(&mut model, examples, learned, extra_passes);
        Ok((counts, fresh))
    }

    /// For a store several nodes share: remembers the counts of the tokens about to change (and the totals)
    /// as they were at the last save, so the save can send this node's difference (see [`Changes::base`]).
    fn note_base(&mut self, features: &Features) {
        if !self.store.merges() {
            return;
        }
        let model = self.model.read().unwrap_or_else(|e| e.into_inner());
        if self.changes.base_totals.is_none() {
            self.changes.base_totals = Some(crate::Totals::of(&model));
        }
        for id in features.bayes_ids() {
            self.changes.base.entry(*id).or_insert_with(|| model.bayes.tokens.get(id).copied().unwrap_or([0, 0]));
        }
    }

    fn touch(&mut self, ex: &Example) {
        self.changes.tokens.extend(ex.features.bayes_ids().iter().copied());
        self.changes.trained.push((ex.digest, Some(ex.side)));
        self.pending.insert(ex.digest, Some(ex.side));
    }

    /// Unlearns a message that was learned (on whichever side), as if it had never been trained. Returns
    /// the side it had been learned on; `None` (and nothing changes) when it was never learned.
    pub fn forget(&mut self, msg: &Message<'_>) -> Result<Option<Side>, StoreError> {
        let digest = classify::message_digest(msg);
        let Some(side) = self.trained_side(&digest)? else {
            return Ok(None);
        };
        let features = classify::features(msg);
        self.note_base(&features);
        self.write_model().unlearn(&features, side);
        self.changes.tokens.extend(features.bayes_ids().iter().copied());
        self.changes.trained.push((digest, None));
        self.pending.insert(digest, None);
        Ok(Some(side))
    }

    /// A user's correction: learns the message on `correct_side` (unlearning the other side if it had
    /// been trained there), records the submission and saves.
    pub fn report(
        &mut self,
        msg: &Message<'_>,
        correct_side: Side,
        source: &str,
        now: i64,
    ) -> Result<(LearnOutcome, Option<Side>), StoreError> {
        self.report_via(msg, correct_side, source, "cli", None, now)
    }

    /// As [`Learner::report`], recording how the report came (`channel`: cli, quarantine, email) and who
    /// made it, for the submission report.
    pub fn report_via(
        &mut self,
        msg: &Message<'_>,
        correct_side: Side,
        source: &str,
        channel: &str,
        reporter: Option<&str>,
        now: i64,
    ) -> Result<(LearnOutcome, Option<Side>), StoreError> {
        let ex = Example::new(msg, correct_side);
        let before = self.trained_side(&ex.digest)?;
        self.note_base(&ex.features);
        // Reports come mostly one way (spam that got through): damped like every online step, so a week of
        // reports cannot tilt the model (a correction moves it at most 20 damped steps).
        let rate = if before == Some(correct_side) { 1.0 } else { self.online_rate(correct_side) };
        let outcome = {
            let mut model = self.write_model();
            match before {
                // Never trained: learn it, and make sure the linear model and the local head now get it right.
                None => {
                    let o = model.learn_at(&ex.features, correct_side, None, rate);
                    model.linear.correct_at(&ex.features.ids, correct_side.is_spam(), 20, rate);
                    model.linear.local_correct_at(&ex.features.local, correct_side.is_spam(), 20, rate);
                    o
                }
                b => model.learn_at(&ex.features, correct_side, b, rate),
            }
        };
        if outcome != LearnOutcome::AlreadyKnown {
            self.touch(&ex);
        }
        self.store.record_submission(&Submission {
            at: now,
            correct_side,
            previous_side: before,
            digest: ex.digest,
            source: source.to_string(),
            channel: channel.to_string(),
            reporter: reporter.map(str::to_string),
            sender_domain: msg.from.as_ref().map(|f| f.domain.clone()).filter(|d| !d.is_empty()),
        })?;
        self.commit(now)?;
        Ok((outcome, before))
    }

    /// After a verdict: a message to a spamtrap is learned as spam and reported to reputation; otherwise
    /// auto-learning (when enabled) learns verdicts far from the thresholds. Returns the side learned.
    pub fn after_verdict(
        &mut self,
        envelope: &Envelope,
        msg: &Message<'_>,
        verdict: &Verdict,
        config: &ClassifierConfig,
    ) -> Result<Option<Side>, StoreError> {
        if let Some(trap) = classify::spamtrap_hit(envelope, msg, config) {
            self.hook.spamtrap_hit(envelope, msg, trap);
            self.learn(msg, Side::Spam)?;
            return Ok(Some(Side::Spam));
        }
        match classify::autolearn_side(verdict, config) {
            Some(side) => {
                // Auto-learning never overrides a decision a person or a trap made.
                let ex = Example::new(msg, side);
                if self.trained_side(&ex.digest)?.is_none() {
                    self.learn_given(&ex, None, true);
                    return Ok(Some(side));
                }
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Saves everything learned since the last commit, in one transaction.
    pub fn commit(&mut self, now: i64) -> Result<(), StoreError> {
        if self.changes.is_empty() {
            return Ok(());
        }
        let model = self.model.read().unwrap_or_else(|e| e.into_inner());
        self.store.save(&model, &self.changes, now)?;
        drop(model);
        let saved = self.store.take_saved();
        let mut model = self.write_model();
        model.linear.clear_dirty();
        saved.apply(&mut model);
        drop(model);
        self.changes = Changes::default();
        self.pending.clear();
        Ok(())
    }

    /// Saves what this node learned, then brings in what the other nodes sharing the store saved since
    /// the last call (nothing for a store only this process writes). Returns whether the model changed
    /// from outside. The gateway calls it every second or so.
    pub fn sync(&mut self, now: i64) -> Result<bool, StoreError> {
        self.commit(now)?;
        let fresh = self.store.pull()?;
        if fresh.is_empty() {
            return Ok(false);
        }
        fresh.apply(&mut self.write_model());
        Ok(true)
    }

    /// Bounds the store (see [`TokenStore::expire`]) and drops the expired tokens from memory too.
    pub fn expire(&mut self, config: &ClassifierConfig, now: i64) -> Result<usize, StoreError> {
        self.commit(now)?;
        let stale_before = now - (config.expire_after_days as i64) * 86_400;
        let removed = self.store.expire(config.max_tokens, stale_before)?;
        let mut model = self.write_model();
        for id in &removed {
            model.bayes.tokens.remove(id);
        }
        Ok(removed.len())
    }
}

/// The local head's extra passes (see `classify::tokens::local_features`).
const LOCAL_PASSES: usize = 2;

/// The linear model's extra passes of bulk training over the examples at `fresh` (indices into
/// `examples`), in a fixed shuffled order at a falling rate; none when they are all of one kind (they
/// would only push the model further towards it).
fn more_passes(model: &mut Model, examples: &[Example], mut fresh: Vec<usize>, extra_passes: usize) {
    let both = fresh.iter().any(|&i| examples[i].side.is_spam()) && fresh.iter().any(|&i| !examples[i].side.is_spam());
    let extra_passes = if both { extra_passes } else { 0 };
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for pass in 0..extra_passes {
        // Fisher-Yates with a fixed xorshift: reproducible training.
        for i in (1..fresh.len()).rev() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            fresh.swap(i, (rng % (i as u64 + 1)) as usize);
        }
        let rate = 1.0 / (pass as f32 + 2.0);
        for &i in &fresh {
            let ex = &examples[i];
            model.linear.step(&ex.features.ids, ex.side.is_spam(), rate);
            // The local head takes the first LOCAL_PASSES of them (three passes in all, as it was measured).
            if pass < LOCAL_PASSES {
                model.linear.local_step(&ex.features.local, ex.side.is_spam(), rate);
            }
        }
    }
}

/// Each of `judged` (indices into `examples`) as engines trained without it judge it: the examples are cut
/// into [`FOLDS`] parts by their place in the interleaved order (so each part has both kinds in
/// proportion); for each part a fresh model learns the others as bulk training does (interleaved, then the
/// same extra passes) and judges it. Returns the engines' points under the fixed combination (the ham side
/// left out where a fingerprint fired, as in the verdict) with the heuristics' points, the input of
/// `classify::combine::fit`. Memory: one extra model at a time.
pub fn held_out(examples: &[Example], judged: &[usize], extra_passes: usize) -> Vec<HeldOut> {
    let spam = judged.iter().filter(|&&i| examples[i].side.is_spam()).count();
    if spam < classify::combine::MIN_HELD_OUT || judged.len() - spam < classify::combine::MIN_HELD_OUT {
        return Vec::new();
    }
    let subset: Vec<&Example> = judged.iter().map(|&i| &examples[i]).collect();
    let order = interleaved_by(subset.len(), |k| subset[k].side.is_spam());
    let mut part = vec![0usize; subset.len()];
    for (place, &k) in order.iter().enumerate() {
        part[k] = place % FOLDS;
    }
    let config = mailsift_engine::config::ClassifierConfig { min_ham: 0, min_spam: 0, ..Default::default() };
    let mut out = Vec::with_capacity(subset.len());
    for fold in 0..FOLDS {
        let mut model = Model::default();
        let mut learned = Vec::new();
        for &k in &order {
            if part[k] != fold {
                let ex = subset[k];
                model.learn(&ex.features, ex.side, None);
                learned.push(judged[k]);
            }
        }
        more_passes(&mut model, examples, learned, extra_passes);
        for (k, ex) in subset.iter().enumerate() {
            if part[k] != fold {
                continue;
            }
            let s = model.classify(&ex.features, &config);
            // As the verdict scores them: nothing toward ham on a message with a spam program's fingerprint.
            let points = |p: Option<f64>| {
                let points = p.map_or(0.0, mailsift_engine::checks::classifier::points);
                if ex.fingerprint {
                    points.max(0.0)
                } else {
                    points
                }
            };
            out.push(HeldOut {
                bayes: points(s.bayes),
                linear: points(s.linear),
                heuristics: ex.heuristics.unwrap_or(0.0),
                spam: ex.side.is_spam(),
            });
        }
    }
    out
}

/// The order bulk training takes `examples` in its first pass: ham and spam interleaved in proportion, so
/// that at every point the share of each kind learned so far is about its share of the whole, and each
/// kind in the order given (when the same message is given twice on one side, the later still counts).
/// Deterministic: the same examples give the same order.
pub fn interleaved(examples: &[Example]) -> Vec<usize> {
    interleaved_by(examples.len(), |i| examples[i].side.is_spam())
}

/// [`interleaved`] over `n` items, `is_spam(i)` telling each item's kind.
fn interleaved_by(n: usize, is_spam: impl Fn(usize) -> bool) -> Vec<usize> {
    let (spam, ham): (Vec<usize>, Vec<usize>) = (0..n).partition(|&i| is_spam(i));
    let (ns, nh) = (spam.len(), ham.len());
    let mut order = Vec::with_capacity(n);
    let (mut a, mut b) = (0usize, 0usize);
    while a < ns || b < nh {
        // Take spam when its next item's place in its own list, (a + 1/2) / ns, comes no later than ham's:
        // compared as integers, (2a + 1) * nh <= (2b + 1) * ns.
        let spam_next = b >= nh || (a < ns && (2 * a + 1) * nh <= (2 * b + 1) * ns);
        if spam_next {
            order.push(spam[a]);
            a += 1;
        } else {
            order.push(ham[b]);
            b += 1;
        }
    }
    order
}
