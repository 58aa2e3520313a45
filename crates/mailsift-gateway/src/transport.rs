//! Transport security of outbound delivery: TLS required and verified towards the smarthost, SMTP AUTH
//! towards it, MTA-STS (RFC 8461) and DANE (RFC 7672) towards MX hosts. The settings.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundSecurity {}

impl OutboundSecurity {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
