//! Bayes with Robinson's token probabilities and Fisher's chi-square combining: the SpamBayes and
//! Bogofilter method.
//!
//! Each token's spam probability is the ratio of its spam and ham frequencies, pulled towards 0.5 when it
//! was seen rarely (Robinson's f(w), strength `S`, background `X`). The strongest tokens are combined twice
//! with Fisher's method, once testing "these are all hammy" and once "these are all spammy"; the answer is
//! `(S - H + 1) / 2`, which stays near 0.5 when the message has strong evidence both ways, a sign that the
//! model is unsure rather than that the message is half spam.

use rustc_hash::FxHashMap;

/// Robinson's strength of the background belief (SpamBayes' `unknown_word_strength`).
const S: f64 = 0.45;
/// Robinson's background probability of an unseen token.
const X: f64 = 0.5;
/// Tokens whose probability is closer than this to 0.5 are ignored.
const MIN_STRENGTH: f64 = 0.1;
/// At most this many of the strongest tokens are combined.
const MAX_DISCRIMINATORS: usize = 150;

/// Learned counts: per token, in how many ham and spam messages it appeared; and the message totals.
#[derive(Debug, Clone, Default)]
pub struct BayesCounts {
    pub tokens: FxHashMap<u64, [u32; 2]>,
    pub ham: u64,
    pub spam: u64,
}

impl BayesCounts {
    /// Adds (`delta` = 1) or removes (`delta` = -1) one message's tokens on one side.
    pub fn apply(&mut self, ids: &[u64], spam: bool, delta: i32) {
        let side = spam as usize;
        for id in ids {
            let e = self.tokens.entry(*id).or_insert([0, 0]);
            e[side] = (e[side] as i64 + delta as i64).max(0) as u32;
            if *e == [0, 0] {
                self.tokens.remove(id);
            }
        }
        let total = if spam { &mut self.spam } else { &mut self.ham };
        *total = (*total as i64 + delta as i64).max(0) as u64;
    }

    /// The spam probability of a message's tokens, in 0..=1.
    pub fn score(&self, ids: &[u64]) -> f64 {
        self.score_and_familiarity(ids).0
    }

    /// The spam probability of a message's tokens, and the share of its tokens the model knows (met in
    /// at least two trained messages): 0 for a message of words never learned, 1 for familiar mail.
    pub fn score_and_familiarity(&self, ids: &[u64]) -> (f64, f64) {
        let (nham, nspam) = (self.ham.max(1) as f64, self.spam.max(1) as f64);
        let mut clues: Vec<f64> = Vec::with_capacity(256);
        let mut known = 0usize;
        for id in ids {
            let Some(&[h, s]) = self.tokens.get(id) else {
                continue;
            };
            known += (h + s >= 2) as usize;
            let (h, s) = (h as f64, s as f64);
            let hr = (h / nham).min(1.0);
            let sr = (s / nspam).min(1.0);
            let p = sr / (hr + sr);
            let n = h + s;
            let f = (S * X + n * p) / (S + n);
            if (f - 0.5).abs() >= MIN_STRENGTH {
                clues.push(f);
            }
        }
        if clues.len() > MAX_DISCRIMINATORS {
            clues.select_nth_unstable_by(MAX_DISCRIMINATORS, |a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
            clues.truncate(MAX_DISCRIMINATORS);
        }
        let familiarity = if ids.is_empty() { 0.0 } else { known as f64 / ids.len() as f64 };
        (fisher(&clues), familiarity)
    }
}

/// Fisher-Robinson chi-square combining of token probabilities.
pub fn fisher(clues: &[f64]) -> f64 {
    if clues.is_empty() {
        return 0.5;
    }
    let (mut ln_spam, mut ln_ham) = (0.0f64, 0.0f64);
    for &f in clues {
        let f = f.clamp(1e-6, 1.0 - 1e-6);
        ln_spam += (1.0 - f).ln();
        ln_ham += f.ln();
    }
    let n = 2 * clues.len();
    let s = 1.0 - chi2q(-2.0 * ln_spam, n);
    let h = 1.0 - chi2q(-2.0 * ln_ham, n);
    ((s - h + 1.0) / 2.0).clamp(0.0, 1.0)
}

/// The probability that a chi-square variable with `v` (even) degrees of freedom exceeds `x2`.
pub fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chi2q_known_values() {
        // P(chi2 with 2 d.f. > 2) = e^-1.
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        assert!((chi2q(0.0, 10) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn fisher_leans_the_right_way() {
        assert!(fisher(&[0.99, 0.95, 0.9]) > 0.9);
        assert!(fisher(&[0.01, 0.05, 0.1]) < 0.1);
        let mixed = fisher(&[0.99, 0.01]);
        assert!((mixed - 0.5).abs() < 0.1, "{mixed}");
    }

    #[test]
    fn unlearning_restores_the_counts() {
        let mut b = BayesCounts::default();
        b.apply(&[1, 2, 3], true, 1);
        b.apply(&[3, 4], false, 1);
        b.apply(&[1, 2, 3], true, -1);
        assert_eq!(b.spam, 0);
        assert_eq!(b.ham, 1);
        assert_eq!(b.tokens.len(), 2);
        assert_eq!(b.tokens[&3], [1, 0]);
    }
}
