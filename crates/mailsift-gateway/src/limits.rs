//! Rate limits (`[smtp.rate_limits]`): token buckets by client, sender, recipient and user, in memory or shared through Redis.

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitsConfig {}

impl RateLimitsConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
