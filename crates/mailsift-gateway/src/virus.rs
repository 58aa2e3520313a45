//! Virus scanning through clamd (`[smtp.virus]`): the configuration, the scanner, and what a finding or a failure does.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VirusConfig {}

impl VirusConfig {
    /// Checks the settings, naming the field in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
