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
use crate::symbols::{Group::Classifier, Hits, Sym, SymbolSpec};

const RETRAIN: &str = "Report the message with `mailsift report --false-positive FILE` (or \
    --false-negative) so both engines learn from it; check that training mail is sorted correctly.";

/// This module's symbols, typed (see [`crate::symbols::Sym`]).
pub mod sym {
    crate::symbols::syms![
        BAYES_SPAM_99,
        BAYES_SPAM_90,
        BAYES_SPAM_70,
        BAYES_HAM_70,
        BAYES_HAM_90,
        BAYES_HAM_99,
        LINEAR_SPAM_99,
        LINEAR_SPAM_90,
        LINEAR_SPAM_70,
        LINEAR_HAM_70,
        LINEAR_HAM_90,
        LINEAR_HAM_99,
    ];
}

#[rustfmt::skip]
pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(sym::BAYES_SPAM_99, Classifier, 4.5, "Bayes: spam probability 99% or more.", RETRAIN),
    SymbolSpec::of(sym::BAYES_SPAM_90, Classifier, 2.5, "Bayes: spam probability 90% to 99%.", RETRAIN),
    SymbolSpec::of(sym::BAYES_SPAM_70, Classifier, 1.0, "Bayes: spam probability 70% to 90%.", RETRAIN),
    SymbolSpec::of(sym::BAYES_HAM_70, Classifier, 0.0, "Bayes: spam probability 10% to 30%.", RETRAIN),
    SymbolSpec::of(sym::BAYES_HAM_90, Classifier, -2.0, "Bayes: spam probability 1% to 10%.", RETRAIN),
    SymbolSpec::of(sym::BAYES_HAM_99, Classifier, -3.0, "Bayes: spam probability under 1%.", RETRAIN),
    SymbolSpec::of(sym::LINEAR_SPAM_99, Classifier, 5.0, "Linear model: spam probability 99% or more.", RETRAIN),
    SymbolSpec::of(sym::LINEAR_SPAM_90, Classifier, 5.0, "Linear model: spam probability 90% to 99%.", RETRAIN),
    SymbolSpec::of(sym::LINEAR_SPAM_70, Classifier, 0.5, "Linear model: spam probability 70% to 90%.", RETRAIN),
    SymbolSpec::of(sym::LINEAR_HAM_70, Classifier, -0.5, "Linear model: spam probability 10% to 30%.", RETRAIN),
    SymbolSpec::of(sym::LINEAR_HAM_90, Classifier, -1.5, "Linear model: spam probability 1% to 10%.", RETRAIN),
    SymbolSpec::of(sym::LINEAR_HAM_99, Classifier, -3.0, "Linear model: spam probability under 1%.", RETRAIN),
];

/// The grades, strongest spam first: each engine's symbols below are in this order.
const GRADES: [&str; 6] = ["SPAM_99", "SPAM_90", "SPAM_70", "HAM_70", "HAM_90", "HAM_99"];
const BAYES: [Sym; 6] = [
    sym::BAYES_SPAM_99,
    sym::BAYES_SPAM_90,
    sym::BAYES_SPAM_70,
    sym::BAYES_HAM_70,
    sym::BAYES_HAM_90,
    sym::BAYES_HAM_99,
];
const LINEAR: [Sym; 6] = [
    sym::LINEAR_SPAM_99,
    sym::LINEAR_SPAM_90,
    sym::LINEAR_SPAM_70,
    sym::LINEAR_HAM_70,
    sym::LINEAR_HAM_90,
    sym::LINEAR_HAM_99,
];

/// The index in [`GRADES`] of a spam probability, or `None` in the unsure middle (30% to 70%).
fn grade_index(p: f64) -> Option<usize> {
    Some(match p {
        p if p >= 0.99 => 0,
        p if p >= 0.90 => 1,
        p if p >= 0.70 => 2,
        p if p > 0.30 => return None,
        p if p > 0.10 => 3,
        p if p > 0.01 => 4,
        _ => 5,
    })
}

/// The grade of a spam probability: a symbol suffix, or `None` in the unsure middle (30% to 70%).
pub fn grade(p: f64) -> Option<&'static str> {
    grade_index(p).map(|i| GRADES[i])
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let Some(scores) = ctx.evidence.classifier else {
        return;
    };
    for (symbols, p) in [(&BAYES, scores.bayes), (&LINEAR, scores.linear)] {
        let Some(p) = p.filter(|p| p.is_finite()) else {
            continue;
        };
        if let Some(g) = grade_index(p) {
            hits.hit(symbols[g], format!("p={p:.4}"));
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
        // The typed tables follow the grades' order: the symbol of grade i is ENGINE_GRADES[i].
        for i in 0..GRADES.len() {
            assert_eq!(BAYES[i].name(), format!("BAYES_{}", GRADES[i]));
            assert_eq!(LINEAR[i].name(), format!("LINEAR_{}", GRADES[i]));
        }
        assert_eq!(grade(0.5), None);
        assert_eq!(grade(0.999), Some("SPAM_99"));
        assert_eq!(grade(0.001), Some("HAM_99"));
    }
}
