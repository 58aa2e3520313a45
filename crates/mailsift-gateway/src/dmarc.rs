//! DMARC aggregate reports (RFC 7489 §7.2): the settings and the pure work (records to XML, the
//! external-destination check).

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DmarcReportsConfig {}

impl DmarcReportsConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
