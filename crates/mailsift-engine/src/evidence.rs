//! Facts gathered before judging: the only stage that may do I/O (DNS, reputation, classifiers).
//!
//! The checks read these facts and never look them up themselves. A fact that could not be established
//! (a DNS timeout) is a fact too, reported as a temporary error rather than a pass or a fail.

use serde::{Deserialize, Serialize};

/// The SPF result of the envelope sender (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// SPF of the envelope sender, when the sender-evidence stage ran.
    pub spf: Option<SpfResult>,
    /// Everything else the sender-evidence stage found (reverse DNS, DKIM, DMARC, ARC).
    pub sender: Option<crate::sender::SenderFacts>,
    /// Spam probabilities from the statistical engines, when a model was consulted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<crate::classify::ClassifierScores>,
}

impl Evidence {
    /// Evidence from the sender-evidence stage.
    pub fn from_sender(facts: crate::sender::SenderFacts) -> Evidence {
        Evidence { spf: facts.spf, sender: Some(facts), ..Evidence::default() }
    }
}
