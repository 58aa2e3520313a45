//! The statistical engines' answers, graded into symbols: `BAYES_SPAM_99` ... `BAYES_HAM_99` and the same
//! grades for the linear model.
//!
//! The probabilities arrive as facts in the evidence (`classify::Model` computed them, or a caller gave them);
//! this check only grades them. The weights make an engine decisive only when it is sure. The linear
//! model, the sharper of the two in cross-validation, reaches the tag threshold alone from 90%; Bayes at
//! 99% needs a little help from the heuristics, since its chi-square combining is often 99% sure of
//! newsletters too; both sure together reach quarantine. On the ham side both engines sure pull a message
//! back by 6, enough to undo the heuristics' usual false positives (newsletters with marketing words).
//! `BAYES_HAM_70` weighs nothing: at that grade Bayes is no better than a guess on this kind of mail, and
//! the symbol stays for the explanation. Nothing fires while the model has learned too little (the
//! experience gate, `classifier.min_ham` / `min_spam`).
//!
//! The weights were chosen by four-fold cross-validation inside the TRAIN half of the SpamAssassin corpus
//! (`mailsift eval --split sa-tune --fold N --scores-tsv FILE`), never on TEST. There, the false positives
//! left are commercial newsletters both engines are sure are spam; no weight separates those from spam,
//! only sender reputation will.

use super::Ctx;
use crate::symbols::{Group::Classifier, Hits, SymbolSpec};

const RETRAIN: &str = "Report the message with `mailsift report --false-positive FILE` (or \
    --false-negative) so both engines learn from it; check that training mail is sorted correctly.";

#[rustfmt::skip]
pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::new("BAYES_SPAM_99", Classifier, 4.5, "Bayes: spam probability 99% or more.", RETRAIN),
    SymbolSpec::new("BAYES_SPAM_90", Classifier, 2.5, "Bayes: spam probability 90% to 99%.", RETRAIN),
    SymbolSpec::new("BAYES_SPAM_70", Classifier, 1.0, "Bayes: spam probability 70% to 90%.", RETRAIN),
    SymbolSpec::new("BAYES_HAM_70", Classifier, 0.0, "Bayes: spam probability 10% to 30%.", RETRAIN),
    SymbolSpec::new("BAYES_HAM_90", Classifier, -2.0, "Bayes: spam probability 1% to 10%.", RETRAIN),
    SymbolSpec::new("BAYES_HAM_99", Classifier, -3.0, "Bayes: spam probability under 1%.", RETRAIN),
    SymbolSpec::new("LINEAR_SPAM_99", Classifier, 5.0, "Linear model: spam probability 99% or more.", RETRAIN),
    SymbolSpec::new("LINEAR_SPAM_90", Classifier, 5.0, "Linear model: spam probability 90% to 99%.", RETRAIN),
    SymbolSpec::new("LINEAR_SPAM_70", Classifier, 0.5, "Linear model: spam probability 70% to 90%.", RETRAIN),
    SymbolSpec::new("LINEAR_HAM_70", Classifier, -0.5, "Linear model: spam probability 10% to 30%.", RETRAIN),
    SymbolSpec::new("LINEAR_HAM_90", Classifier, -1.5, "Linear model: spam probability 1% to 10%.", RETRAIN),
    SymbolSpec::new("LINEAR_HAM_99", Classifier, -3.0, "Linear model: spam probability under 1%.", RETRAIN),
];

/// The grade of a spam probability: a symbol suffix, or `None` in the unsure middle (30% to 70%).
pub fn grade(p: f64) -> Option<&'static str> {
    Some(match p {
        p if p >= 0.99 => "SPAM_99",
        p if p >= 0.90 => "SPAM_90",
        p if p >= 0.70 => "SPAM_70",
        p if p > 0.30 => return None,
        p if p > 0.10 => "HAM_70",
        p if p > 0.01 => "HAM_90",
        _ => "HAM_99",
    })
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let Some(scores) = ctx.evidence.classifier else {
        return;
    };
    for (engine, p) in [("BAYES", scores.bayes), ("LINEAR", scores.linear)] {
        let Some(p) = p.filter(|p| p.is_finite()) else {
            continue;
        };
        if let Some(g) = grade(p) {
            hits.hit(&format!("{engine}_{g}"), format!("p={p:.4}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_grade_has_a_symbol() {
        for p in [0.0, 0.05, 0.2, 0.5, 0.8, 0.95, 1.0] {
            if let Some(g) = grade(p) {
                for e in ["BAYES", "LINEAR"] {
                    let name = format!("{e}_{g}");
                    assert!(SYMBOLS.iter().any(|s| s.name == name), "{name}");
                }
            }
        }
        assert_eq!(grade(0.5), None);
        assert_eq!(grade(0.999), Some("SPAM_99"));
        assert_eq!(grade(0.001), Some("HAM_99"));
    }
}
