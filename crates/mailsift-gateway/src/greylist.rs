//! Greylisting (`[smtp.greylisting]`, off by default): the first mail of an unknown (network, sender, recipient) triplet is deferred.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GreylistConfig {}

impl GreylistConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
