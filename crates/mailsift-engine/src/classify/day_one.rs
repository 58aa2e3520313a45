//! The day-one model: what a new installation's classifiers judge with before they have learned anything.
//!
//! A fresh gateway's own model stays silent until it has learned `classifier.min_ham` ham and
//! `classifier.min_spam` spam (200 each by default): spamtraps and users' reports take weeks to get there,
//! and heuristics alone catch about half the spam. Until then the classifiers answer from this model, trained
//! on public mail and shipped inside the binary, with a smaller say: `classifier.day_one_say` (a quarter by
//! default) of the points the local model would give, so that both engines sure of spam add 2 points, not 8.
//! It is a stand-in, never a partner: the moment the local model has learned enough, it alone speaks. It
//! stands in only for a local model: an engine given none (`Engine::with_model` never called: library use,
//! a scan without a data directory) has no classifiers at all; the gateway always gives its learner's.
//!
//! Why a quarter: the model was trained on someone else's mail (a mail server's ham from 2002, the
//! SpamAssassin public corpus), and what one organisation calls ham another's classifier may call spam
//! (newsletters most of all). On the corpus's own TEST half, which the model never saw but which comes from
//! the same mailboxes, any say works (`mailsift eval --day-one`: heuristics alone 0.20% of ham
//! flagged, 57% of spam caught; a quarter 0.20% and 82.5%; a half 0.39% and 91%; full 0.30% and 95%). Across
//! collections it does not: a model trained on the corpus's first ham and spam folders and judging the others
//! (newsletters it never learned) flags 0.9% of ham at a quarter, 1.9% at a half and 3.4% at full say
//! (simulated from `eval --scores-tsv`). A quarter is the largest say that keeps a stranger's model from
//! tagging alone.
//!
//! The model is rebuilt by `tools/day-one-model.sh` whenever the tokenizer changes (a test checks that the
//! shipped bytes are what the current code trains from the corpus).

use std::sync::{Arc, OnceLock};

use super::Model;

/// The shipped model, as [`super::portable::encode`] wrote it.
pub static BYTES: &[u8] = include_bytes!("../../data/day-one.model");

/// What the shipped model was trained on, for explanations.
pub const TRAINED_ON: &str = "the SpamAssassin public corpus (2002-2003), TRAIN half";

/// The shipped model, decoded once per process. `None` only if the shipped bytes are damaged, which a test
/// rules out.
pub fn model() -> Option<Arc<Model>> {
    static MODEL: OnceLock<Option<Arc<Model>>> = OnceLock::new();
    MODEL.get_or_init(|| super::portable::decode(BYTES).ok().map(Arc::new)).clone()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_model_decodes_and_is_trained() {
        let m = super::model().expect("the shipped day-one model decodes");
        assert!(m.bayes.ham >= 1000 && m.bayes.spam >= 1000, "{} ham, {} spam", m.bayes.ham, m.bayes.spam);
        assert!(m.bayes.tokens.len() > 10_000 && m.linear.weights.iter().any(|w| *w != 0.0));
    }
}
