//! The linear engine: online logistic regression over hashed binary features, the approach that led the
//! TREC spam track (Goodman and Yih; Sculley and Wachman).
//!
//! The weights live in one dense vector indexed by the low bits of the feature hash (the hashing trick):
//! constant memory, no per-token bookkeeping, and a model that loads as a few large blobs. Each message's
//! features are scaled by 1/sqrt(n) so long and short messages move the model alike. Training is one
//! stochastic gradient step per message, so the model keeps learning as reports come in; a correction
//! repeats the step until the message lands on the right side with a margin, since a logistic model has
//! no exact "unlearn".

/// log2 of the number of the portable model's weights: 2^22 f32 = 16 MiB.
pub const BITS: u32 = 22;
/// The portable model's weights: `weights[..PORTABLE]`, what an exported model carries.
pub const PORTABLE: usize = 1 << BITS;
/// log2 of the number of the local head's weights (see [`LinearModel::local_score`]): 2^20 f32 = 4 MiB.
pub const LOCAL_BITS: u32 = 20;
/// The local head's weights, after the portable ones.
const LOCAL: usize = 1 << LOCAL_BITS;
/// log2 of how many organisations the local head counts learned mail for (two counters each, ham and spam).
const ORG_BITS: u32 = 13;
const ORGS: usize = 1 << ORG_BITS;
/// Every weight the model keeps and a store saves: the portable model's, the local head's, and the local
/// head's per-organisation counters (kept in the same vector so that they are saved, and merged between
/// nodes, as the weights are: a count merges by adding, as a weight's change does).
pub const SIZE: usize = PORTABLE + LOCAL + 2 * ORGS;
/// The learning rate of one local-head step (its features are scaled by 1/sqrt(n) as the portable ones are).
const LOCAL_RATE: f32 = 5.0;
/// Weights are stored in chunks of this many, so a correction rewrites a few chunks, not the model.
pub const CHUNK: usize = 1 << 14;
/// The learning rate of one step.
/// The learning rate of one step. Large, because features are scaled by 1/sqrt(n): one message of n
/// features moves its margin by about `RATE` times the error. Tuned by cross-validation inside TRAIN.
const RATE: f32 = 20.0;

#[derive(Debug, Clone)]
pub struct LinearModel {
    pub weights: Vec<f32>,
    pub bias: f32,
    /// Messages learned (steps taken), for the minimum-experience gate.
    pub updates: u64,
    /// Which chunks changed since the store last saved them.
    pub dirty: Vec<bool>,
}

impl Default for LinearModel {
    fn default() -> Self {
        LinearModel { weights: vec![0.0; SIZE], bias: 0.0, updates: 0, dirty: vec![false; SIZE / CHUNK] }
    }
}

/// The slot of a local-head feature (see [`crate::classify::tokens::Features::local`]).
#[inline]
fn local_slot(id: u64) -> usize {
    PORTABLE + (id >> (64 - LOCAL_BITS)) as usize
}

/// The slot of an organisation's ham (`spam` false) or spam counter.
#[inline]
fn org_slot(org: u64, spam: bool) -> usize {
    PORTABLE + LOCAL + 2 * ((org >> (64 - ORG_BITS)) as usize) + spam as usize
}

#[inline]
fn slot(id: u64) -> usize {
    // The hash's high bits: xxh3 mixes well, and the low bits are left to the store's own uses.
    (id >> (64 - BITS)) as usize
}

fn scale(n: usize) -> f32 {
    1.0 / (n.max(1) as f32).sqrt()
}

impl LinearModel {
    /// The raw margin w·x + b.
    pub fn margin(&self, ids: &[u64]) -> f32 {
        let x = scale(ids.len());
        let mut sum = 0.0f32;
        for id in ids {
            sum += self.weights[slot(*id)];
        }
        sum * x + self.bias
    }

    /// The spam probability, in 0..=1.
    pub fn score(&self, ids: &[u64]) -> f64 {
        sigmoid(self.margin(ids) as f64)
    }

    /// One logistic-regression step towards `spam`; returns the probability before the step.
    pub fn step(&mut self, ids: &[u64], spam: bool, rate_factor: f32) -> f64 {
        let p = self.score(ids);
        let y = if spam { 1.0 } else { 0.0 };
        let g = (y - p) as f32 * RATE * rate_factor;
        let x = scale(ids.len());
        for id in ids {
            let s = slot(*id);
            self.weights[s] += g * x;
            self.dirty[s / CHUNK] = true;
        }
        self.bias += g * 0.01;
        self.updates += 1;
        p
    }

    /// Learns a message, or corrects the model about one: steps until the message is on the `spam` side by
    /// a margin (at most `max_steps`).
    pub fn correct(&mut self, ids: &[u64], spam: bool, max_steps: usize) {
        self.correct_at(ids, spam, max_steps, 1.0)
    }

    /// As [`LinearModel::correct`], each step scaled by `rate_factor` (so at most `max_steps * rate_factor`
    /// full steps in all).
    pub fn correct_at(&mut self, ids: &[u64], spam: bool, max_steps: usize, rate_factor: f32) {
        for _ in 0..max_steps.max(1) {
            let p = self.step(ids, spam, rate_factor);
            let ok = if spam { p > 0.9 } else { p < 0.1 };
            if ok {
                break;
            }
        }
    }

    /// The local head's spam probability for a message's header-form features (`Features::local`): a second
    /// logistic regression, kept apart from the portable model because what it reads (how the senders'
    /// mail programs write their headers) is true of one organisation's mail and not of another's (see
    /// `classify::tokens`). It has no bias of its own: the features include a constant one.
    pub fn local_score(&self, ids: &[u64]) -> f64 {
        if ids.is_empty() {
            return 0.5;
        }
        let x = scale(ids.len());
        let sum: f32 = ids.iter().map(|id| self.weights[local_slot(*id)]).sum();
        sigmoid((sum * x) as f64)
    }

    /// One local-head step towards `spam` (the portable model, its bias and its update count untouched).
    pub fn local_step(&mut self, ids: &[u64], spam: bool, rate_factor: f32) {
        if ids.is_empty() {
            return;
        }
        let p = self.local_score(ids);
        let y = if spam { 1.0 } else { 0.0 };
        let g = (y - p) as f32 * LOCAL_RATE * rate_factor * scale(ids.len());
        for id in ids {
            let s = local_slot(*id);
            self.weights[s] += g;
            self.dirty[s / CHUNK] = true;
        }
    }

    /// Corrects the local head about a message, as [`LinearModel::correct_at`] does the portable model: steps
    /// until the message is on the `spam` side by a margin (at most `max_steps`).
    pub fn local_correct_at(&mut self, ids: &[u64], spam: bool, max_steps: usize, rate_factor: f32) {
        for _ in 0..max_steps.max(1) {
            let p = self.local_score(ids);
            if if spam { p > 0.9 } else { p < 0.1 } {
                break;
            }
            self.local_step(ids, spam, rate_factor);
        }
    }

    /// How many ham and spam addressed to the organisation `org` (`Features::org`) the model has learned.
    pub fn org_counts(&self, org: u64) -> [f32; 2] {
        [self.weights[org_slot(org, false)], self.weights[org_slot(org, true)]]
    }

    /// Counts (`delta` 1) or uncounts (-1) one learned message of `side` addressed to `org`.
    pub fn count_org(&mut self, org: u64, spam: bool, delta: f32) {
        let s = org_slot(org, spam);
        self.weights[s] = (self.weights[s] + delta).max(0.0);
        self.dirty[s / CHUNK] = true;
    }

    pub fn clear_dirty(&mut self) {
        self.dirty.iter_mut().for_each(|d| *d = false);
    }
}

pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_to_separate_two_messages() {
        let mut m = LinearModel::default();
        let spam = [1u64 << 60, 2u64 << 60, 3u64 << 60];
        let ham = [4u64 << 60, 5u64 << 60, 3u64 << 60];
        for _ in 0..200 {
            m.step(&spam, true, 1.0);
            m.step(&ham, false, 1.0);
        }
        assert!(m.score(&spam) > 0.9);
        assert!(m.score(&ham) < 0.1);
        m.correct(&spam, false, 50);
        assert!(m.score(&spam) < 0.5);
    }

    /// The local head learns in its own slots: the portable model's margin, bias and update count do not move,
    /// and an organisation's counters never go below zero.
    #[test]
    fn the_local_head_keeps_to_its_own_slots() {
        let mut m = LinearModel::default();
        let spam = [1u64 << 60, 2u64 << 60];
        let ham = [4u64 << 60, 5u64 << 60];
        for _ in 0..50 {
            m.local_step(&spam, true, 1.0);
            m.local_step(&ham, false, 1.0);
        }
        assert!(m.local_score(&spam) > 0.9 && m.local_score(&ham) < 0.1);
        assert_eq!((m.margin(&spam), m.bias, m.updates), (0.0, 0.0, 0));
        assert!(m.weights[..PORTABLE].iter().all(|w| *w == 0.0));
        m.local_correct_at(&spam, false, 50, 1.0);
        assert!(m.local_score(&spam) < 0.1);
        m.count_org(7 << 60, true, 1.0);
        m.count_org(7 << 60, true, -1.0);
        m.count_org(7 << 60, true, -1.0);
        assert_eq!(m.org_counts(7 << 60), [0.0, 0.0]);
        m.count_org(7 << 60, false, 1.0);
        assert_eq!(m.org_counts(7 << 60), [1.0, 0.0]);
    }
}
