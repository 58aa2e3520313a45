//! Compromised-account protection (`[smtp.account_guard]`): outbound users who send far above their baseline, or spam, are held.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountGuardConfig {}

impl AccountGuardConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
