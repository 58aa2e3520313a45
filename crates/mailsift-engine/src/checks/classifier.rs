//! The statistical engines' answers, graded into symbols: `BAYES_SPAM_99` ... `BAYES_HAM_99` and the same
//! grades for the linear model.
//!
//! The probabilities arrive as facts in the evidence (`classify::Model` computed them, or a caller gave them);
//! this check turns them into points. Each engine's points follow its confidence continuously, in log-odds:
//! `±weight × logit(p) / logit(0.99)`, saturating at 99% (1%), so a 91% and a 98% are not the same
//! evidence. The grade symbol names the band the probability fell in (for the explanation and for the
//! administrator's weight overrides, which scale that band) and scores its share of the weight.
//!
//! How the engines combine: neither decides alone. One engine sure of spam gives at most 4 points, under
//! the tag threshold (5), so it needs the other engine or the heuristics to agree; both sure give 8. When
//! they disagree, the points cancel by confidence, not by which engine speaks first (a Bayes 99% ham against
//! a linear 95% spam leaves the linear model's margin, not Bayes' veto). The ham side is a little weaker
//! (2.5 points per engine, 5 for both): a pull toward ham can hide a phish, a push toward spam only tags. It
//! was 3 until 2026-12-06: a spam padded with encyclopedia text (pharmacy spam of 2009-2010) reads as ham to
//! both engines of a model that never saw its kind, and 6 points toward ham cancelled the evidence the
//! heuristics and the connection had against it. At 2.5, with no new false positive on any protocol that
//! trains a model: TEST 467 of 480 both, CV 1,356 -> 1,357 of 1,416, cross 1,293 -> 1,295 of 1,396, 2009-2010
//! mail (trained on the corpus's TRAIN half) 236 -> 242 of 436; the shipped day-one model at a quarter's say
//! flags one more TEST ham (3 of 1,016, a mailing 0.06 over the threshold); at 2 the TEST and cross protocols
//! each gained a false positive.
//! Nothing fires in the unsure middle (30% to 70%), nor while the model has learned too little (the
//! experience gate, `classifier.min_ham` / `min_spam`).
//!
//! These are the points of the fixed combination. A local model that bulk training fitted a combination for
//! (`classify::combine`: how far each engine has earned trust on this installation's own mail) scales each
//! engine's points on each side by its multiplier, at least 1 and at most 3, and the symbol's detail says so;
//! the shipped day-one model never has one.
//!
//! A model trained on someone else's mail speaks with half a say on the spam side. A local model that has not
//! learned at least 50 ham addressed to this organisation (`[organisation] domains`; without them, the SMTP
//! envelope's recipient domains, the sender's for outbound mail, else the message's own recipient domain) was
//! trained on another organisation's mail: a public corpus, another
//! installation's model. What one organisation's users subscribe to, another's model calls spam (commercial
//! newsletters most of all), and both engines say so together, since they learned from the same mail. So its
//! engines' spam side scores `classifier.stranger_say` (0.5) of its points, unless the rest of the evidence
//! agrees: [`STRANGER_AGREEMENT`] points or more from the other checks, or one of [`CONCEALMENT`] (the message
//! hides where it sends the reader, who sent it or to whom it went; phishing often shows little else). The ham
//! side is untouched, and so is a model that learned the organisation's ham. Measured with `mailsift eval` on
//! a model trained on the SpamAssassin corpus's TRAIN half judging a university's mail (TREC 2007 sample, 2,500
//! ham and 2,500 spam; `eval` judges as the installation of the domain most of the judged mail went to):
//! 20 -> 10 ham flagged (0.80% -> 0.40%), 2,175 -> 2,114 spam caught (87.0% -> 84.6%); on the disjoint
//! development sample 14 -> 9 ham, 2,175 -> 2,119 spam. What it costs: recent phishing judged with that model
//! (another organisation's mail again) 5,364 -> 4,869 of 7,909 caught, CSDMC spam 302 -> 297 of 437 (no ham
//! flagged either way). Every protocol where the model learned the organisation's own mail (the SpamAssassin
//! corpus's splits, TREC in-domain) and the day-one model (a quarter's say already) are unchanged.
//!
//! A spam program's fingerprint silences the engines' ham side. Word salad (passages of novels, an
//! encyclopedia) padded around an image or a pill price list reads as ham to both engines of a model that
//! never saw its kind, and their pull toward ham cancelled the evidence the message's own headers gave.
//! When one of [`FINGERPRINTS`] fired (weighted above zero: an administrator who sets one to 0 turns this
//! off with it), a ham grade still shows, with the reason, and scores nothing; the spam side is untouched.
//! Each fingerprint is a defect no mail program of a real sender writes (none fired on the ham of four
//! organisations, 16,000 messages), so what it costs is confined to mail that is already suspect. Measured
//! with the SpamAssassin corpus's TRAIN model on a TREC 2007 sample (another organisation): 1,798 -> 1,856 of
//! 2,500 spam caught beside the fingerprints' own points, no false positive more on any protocol.
//!
//! The local head (`LOCAL_FORM_SPAM`, `LOCAL_FORM_HAM`) is a third engine with a narrower licence: a
//! logistic regression over the form of the sender-written header fields (`classify::tokens::local_features`),
//! which speaks only for mail addressed to an organisation the model learned at least 50 ham and 50 spam of
//! (`classify::Model::knows_organisation`), never from the shipped day-one model, and whose spam side counts
//! only while the linear model does not read the words as ham (form alone, against the words, is what a
//! newsletter of a kind the organisation never learned looks like). Its points follow its log-odds, up to 4
//! toward spam and 2.5 toward ham, saturating at 99.75% (0.25%); the fingerprints silence its ham side.
//! Measured with `mailsift eval` (TREC 2007 samples, two folds of 1,250 + 1,250 trained on the university's
//! own mail): 2,384 -> 2,425 of 2,500 spam caught (95.4% -> 97.0%), 1 -> 0 ham flagged; on the disjoint
//! development sample 2,373 -> 2,419 at 4 ham both. Trained on the SpamAssassin corpus and judging the
//! university's mail (another organisation), and the day-one model: unchanged, as they must be. On the
//! SpamAssassin corpus: TEST 467 -> 468 of 480 at 0 ham; time-ordered 470 -> 475 at 5 ham; four-fold CV
//! inside TRAIN 1,358 -> 1,366 at 8 -> 7 ham; the cross-folder protocol (trained on the first ham folder,
//! judged on the second and the hard ham, newsletters it never learned) 18 -> 22 ham of 1,650.
//!
//! Measured against the fixed grade weights this replaced (where one linear 90% alone reached the tag
//! threshold), on the SpamAssassin corpus (`mailsift eval`): in four-fold cross-validation inside TRAIN
//! (`--split sa-tune`, where the form was chosen) 13 ham of 3,134 flagged against 11, 95.3% of spam caught
//! against 95.9%; trained on TRAIN, on TEST (`--split sa`) 2 ham of 1,016 against 3, 95.4% caught both; trained
//! on the older half and judged on the newer (`--split time`) 8 ham of 2,523 against 20, 90.0% caught against
//! 92.4%. The false positives left are commercial newsletters both engines are sure are spam.

use super::{attachments, headers, html, urls, Ctx};
use crate::symbols::{Group::Classifier, Hits, Sym, SymbolSpec, CLASSIFIER_FACTOR_MAX};

/// Marks only spam programs leave (see the module's documentation): with one of these, the engines' ham
/// grades score nothing.
pub const FINGERPRINTS: [Sym; 6] = [
    headers::sym::MSGID_CLOCK_MISMATCH,
    headers::sym::MSGID_OUTLOOK_FAKE,
    headers::sym::DATE_ZONE_ABSURD,
    headers::sym::OUTLOOK_DIRECT_TO_MX,
    headers::sym::HEADER_TAB_PADDED,
    html::sym::HTML_GIF_NO_LINKS,
];

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
        LOCAL_FORM_SPAM,
        LOCAL_FORM_HAM,
    ];
}

#[rustfmt::skip]
pub const SYMBOLS: &[SymbolSpec] = &[
    SymbolSpec::of(sym::BAYES_SPAM_99, Classifier, 4.0, "Bayes: spam probability 99% or more (full weight).", RETRAIN),
    SymbolSpec::of(sym::BAYES_SPAM_90, Classifier, 4.0, "Bayes: spam probability 90% to 99% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::BAYES_SPAM_70, Classifier, 1.91, "Bayes: spam probability 70% to 90% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::BAYES_HAM_70, Classifier, -1.2, "Bayes: spam probability 10% to 30% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::BAYES_HAM_90, Classifier, -2.5, "Bayes: spam probability 1% to 10% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::BAYES_HAM_99, Classifier, -2.5, "Bayes: spam probability under 1% (full weight).", RETRAIN),
    SymbolSpec::of(sym::LINEAR_SPAM_99, Classifier, 4.0, "Linear model: spam probability 99% or more (full weight).", RETRAIN),
    SymbolSpec::of(sym::LINEAR_SPAM_90, Classifier, 4.0, "Linear model: spam probability 90% to 99% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::LINEAR_SPAM_70, Classifier, 1.91, "Linear model: spam probability 70% to 90% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::LINEAR_HAM_70, Classifier, -1.2, "Linear model: spam probability 10% to 30% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::LINEAR_HAM_90, Classifier, -2.5, "Linear model: spam probability 1% to 10% (scores by its log-odds, up to the weight).", RETRAIN),
    SymbolSpec::of(sym::LINEAR_HAM_99, Classifier, -2.5, "Linear model: spam probability under 1% (full weight).", RETRAIN),
    SymbolSpec::of(sym::LOCAL_FORM_SPAM, Classifier, 4.0, "Local head: the header fields are written the way this organisation's spam writes them (scores by its log-odds, full weight from 99.75%; nothing while the linear model reads the words as ham).", LOCAL_FIX),
    SymbolSpec::of(sym::LOCAL_FORM_HAM, Classifier, -2.5, "Local head: the header fields are written the way this organisation's ham writes them (scores by its log-odds, full weight under 0.25%).", LOCAL_FIX),
];

const LOCAL_FIX: &str = "The local head learns from this organisation's own mail only: report the message with \
    `mailsift report --false-positive FILE` (or --false-negative). It speaks only for mail addressed to an \
    organisation the model learned 50 ham and 50 spam of; to silence it, set the symbol's weight to 0.";

/// The log-odds at which the local head's points saturate (99.75%, 0.25%): it reads form, not words, and a
/// single form (one mailer's Message-ID layout) is often all a message shows of itself, so its confidence
/// is given more room before it counts in full.
const LOCAL_SATURATION: f64 = 6.0;

/// The local head's share of its symbol's weight: its log-odds over [`LOCAL_SATURATION`], at most 1;
/// `None` when it is near a half (nothing to say).
fn local_share(p: f64) -> Option<f64> {
    let x = logit(p.clamp(1e-12, 1.0 - 1e-12));
    (x.abs() >= 0.1).then(|| (x.abs() / LOCAL_SATURATION).min(1.0))
}

/// A stranger's model (`classifier.stranger_say`) counts in full when the rest of the evidence gives at least
/// this many points.
pub const STRANGER_AGREEMENT: f64 = 2.0;

/// Signs that a message hides where it sends the reader, who sent it or to whom it went: with one of these
/// (weighted above zero), a stranger's model counts in full whatever the other points (phishing often shows
/// little else).
pub const CONCEALMENT: [Sym; 13] = [
    urls::sym::URL_SHORTENER,
    urls::sym::URL_FREE_HOSTING,
    urls::sym::URL_USERINFO_TRICK,
    urls::sym::URL_NUMERIC_IP,
    urls::sym::URL_OBSCURED_IP,
    html::sym::HTML_PASSWORD_FORM,
    html::sym::HTML_HIDDEN_TEXT,
    attachments::sym::ATTACH_HTML,
    headers::sym::FROM_NAME_IMPERSONATES_BRAND,
    headers::sym::FROM_DISPLAY_ADDR_MISMATCH,
    headers::sym::REPLYTO_FREEMAIL_DIFF,
    headers::sym::UNDISCLOSED_RECIPIENTS,
    headers::sym::SUBJ_RCPT_ADDRESS,
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

/// The log-odds at which an engine's points saturate: 99% (and 1%).
fn saturation() -> f64 {
    logit(0.99)
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

/// The share of its grade symbol's weight a probability scores: its log-odds over the log-odds at the top
/// of its band (99% for the 90-99% band and above, 90% for the 70-90% band; the same mirrored for ham),
/// at most 1.
pub fn share_of_weight(p: f64) -> f64 {
    let Some(g) = grade_index(p) else {
        return 0.0;
    };
    let top = match g {
        0 | 1 | 4 | 5 => saturation(),
        _ => logit(0.9),
    };
    // Clamped away from 0 and 1 so that a certain 0 or 1 reads as saturated, not infinite.
    let x = logit(p.clamp(1e-12, 1.0 - 1e-12)).abs();
    (x / top).min(1.0)
}

/// The points an engine's probability scores under the fixed combination and the default weights: its
/// grade symbol's weight times its share (what `classify::combine` fits its multipliers on).
pub fn points(p: f64) -> f64 {
    match grade_index(p) {
        Some(g) if p.is_finite() => SYMBOLS[g].weight * share_of_weight(p),
        _ => 0.0,
    }
}

pub fn check(ctx: &Ctx<'_, '_>, hits: &mut Hits<'_>) {
    let Some(scores) = ctx.evidence.classifier else {
        return;
    };
    // The shipped day-one model speaks with its configured share of the points (see `classify::day_one`).
    let say = scores.day_one_say.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 1.0));
    let fingerprint = FINGERPRINTS.into_iter().find(|&f| hits.has(f) && hits.weight(f) > 0.0);
    // A model that never learned this organisation's ham: its spam side counts in part, unless the rest of the
    // evidence agrees (see the module's documentation).
    let stranger =
        scores.stranger_say.filter(|s| s.is_finite() && say.is_none()).map(|s| s.clamp(0.0, 1.0)).filter(|_| {
            hits.points_outside(Classifier) < STRANGER_AGREEMENT
                && !CONCEALMENT.iter().any(|&s| hits.has(s) && hits.weight(s) > 0.0)
        });
    for (is_bayes, symbols, p) in [(true, &BAYES, scores.bayes), (false, &LINEAR, scores.linear)] {
        let Some(p) = p.filter(|p| p.is_finite()) else {
            continue;
        };
        if let Some(g) = grade_index(p) {
            // The installation's fitted combination scales the engine's points on this side.
            let m = match (say, scores.combination) {
                // Grades 0-2 are the spam side (see GRADES).
                (None, Some(c)) => Some((c.multiplier(is_bayes, g < 3), c)),
                _ => None,
            };
            let detail = match (say, m) {
                (Some(s), _) => {
                    format!("p={p:.4}, day-one model at {:.0}% (the local model has not learned enough)", s * 100.0)
                }
                (None, Some((m, c))) => format!(
                    "p={p:.4}, x{m:.2}: this engine's weight here, fitted on {} ham and {} spam of this \
                     installation's training mail judged by engines trained without them",
                    c.ham, c.spam
                ),
                (None, None) => format!("p={p:.4}"),
            };
            // Grades 3-5 are the ham side: silenced by a spam program's fingerprint.
            let (scale, detail) = match fingerprint.filter(|_| g >= 3) {
                Some(f) => {
                    (0.0, format!("p={p:.4}, not counted: {f} marks a spam program, whose padding reads as ham"))
                }
                None => {
                    let scale = say.unwrap_or(1.0) * m.map_or(1.0, |(m, _)| m);
                    match stranger.filter(|_| g < 3) {
                        // Said first: the detail is bounded, and the fitted combination's story is long.
                        Some(s) => (
                            scale * s,
                            format!(
                                "p={p:.4}, at {:.0}%: the model has not learned this organisation's own ham and \
                                 nothing else in the message agrees; {}",
                                s * 100.0,
                                detail.trim_start_matches(&format!("p={p:.4}")).trim_start_matches(", ")
                            ),
                        ),
                        None => (scale, detail),
                    }
                }
            };
            hits.hit_scaled_up_to(symbols[g], share_of_weight(p) * scale, CLASSIFIER_FACTOR_MAX, detail);
        }
    }
    // The local head: only a local model that learned this organisation's mail has one to give (never the
    // day-one model), and the fingerprints silence its ham side as they do the engines'.
    if let (Some(p), None) = (scores.local.filter(|p| p.is_finite()), say) {
        if let Some(share) = local_share(p) {
            // Form alone never argues for spam against the words (a newsletter of a kind the organisation never
            // learned is written like its spam while its words read as ham to the linear model), nor for ham
            // on a message with a spam program's fingerprint.
            let (symbol, silenced) = if p > 0.5 {
                let ham_words = scores.linear.filter(|l| *l < 0.5);
                (sym::LOCAL_FORM_SPAM, ham_words.map(|l| format!("the linear model reads the words as ham (p={l:.4})")))
            } else {
                (sym::LOCAL_FORM_HAM, fingerprint.map(|f| format!("{f} marks a spam program")))
            };
            let (share, detail) = match silenced {
                Some(why) => (0.0, format!("p={p:.4}, not counted: {why}")),
                None => {
                    (share, format!("p={p:.4}, the header fields' form as learned from this organisation's own mail"))
                }
            };
            hits.hit_scaled_up_to(symbol, share, 1.0, detail);
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

    /// Points grow with confidence and meet at the bands' edges: no jump where one grade gives way to the
    /// next, the full weight from 99% (1%), nothing in the unsure middle.
    #[test]
    fn points_follow_the_log_odds_without_jumps() {
        let points = |p: f64| {
            let Some(g) = grade_index(p) else { return 0.0 };
            let spec = SYMBOLS.iter().find(|s| s.name == BAYES[g].name()).unwrap();
            spec.weight * share_of_weight(p)
        };
        assert_eq!(points(0.5), 0.0);
        assert_eq!(points(0.995), 4.0);
        assert_eq!(points(1.0), 4.0);
        assert_eq!(points(0.0), -2.5);
        for edge in [0.9, 0.99] {
            assert!((points(edge - 1e-9) - points(edge)).abs() < 0.01, "jump at {edge}");
            assert!((points(1.0 - edge + 1e-9) - points(1.0 - edge)).abs() < 0.01, "jump at {}", 1.0 - edge);
        }
        let mut last = 0.0;
        for i in 70..=99 {
            let p = i as f64 / 100.0;
            assert!(points(p) > last, "{p}: {} after {last}", points(p));
            last = points(p);
        }
        assert!(points(0.95) > 2.5 && points(0.95) < 3.0, "{}", points(0.95));
        // One engine alone, however sure, stays under the tag threshold; both together pass it.
        assert!(points(1.0) < 5.0 && 2.0 * points(1.0) >= 5.0);
    }
}
