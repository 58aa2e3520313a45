//! The last step before a message leaves the gateway: DKIM signatures on outbound mail, an ARC seal on
//! inbound mail we changed (subject tag, headers). Called once the bytes are final.
//!
//! Which mail is signed: outbound (relayed for an authenticated user or a trusted network) whose From:
//! addresses are all in one domain that has keys with `sign = true`, matched exactly (a subdomain or parent
//! is not signed with the domain's key: another customer may own it). One signature per key. Inbound mail
//! is never DKIM-signed. What is sealed: inbound mail, when `[smtp.dkim.arc]` is on and the gateway changed
//! it (or always, as configured), unless its incoming chain already failed (RFC 8617 §5.1: a failed chain is
//! not sealed over).
//!
//! Signing is CPU work (an RSA-2048 signature is about a millisecond): it runs off the async workers
//! (`block_in_place`) when the runtime has more than one.

use std::sync::Arc;

use mail_auth::AuthenticatedMessage;
use mailsift_engine::envelope::Direction;
use mailsift_engine::Envelope;

use crate::signing::LoadedKeys;
use crate::state::{Gateway, GatewayState};

/// The message as it leaves: `bytes` signed or sealed as configured, or unchanged. `changed`: the gateway
/// altered the content (the subject tag) beyond adding its own headers; `received`: the message as it came
/// in (what the incoming authentication is checked on for a seal). Never fails: a signing error is logged
/// and counted and the message leaves as it was.
pub async fn finish(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    envelope: &Envelope,
    changed: bool,
    received: &[u8],
    bytes: Vec<u8>,
) -> Vec<u8> {
    let Some(keys) = state.config.dkim.loaded() else {
        return bytes;
    };
    let counters = &gateway.counters;
    use std::sync::atomic::Ordering::Relaxed;
    match envelope.direction {
        Direction::Outbound => {
            let Some(domain) = from_domain(&bytes) else {
                return bytes;
            };
            if keys.signing_keys(&domain).next().is_none() {
                return bytes;
            }
            match off_the_workers(|| sign(keys, &domain, &bytes)) {
                Ok(headers) => {
                    counters.dkim_signed.fetch_add(1, Relaxed);
                    let mut out = headers.into_bytes();
                    out.extend_from_slice(&bytes);
                    out
                }
                Err(e) => {
                    counters.signing_failed.fetch_add(1, Relaxed);
                    tracing::warn!(domain = %domain, error = %e, "DKIM signing failed; the message leaves unsigned");
                    bytes
                }
            }
        }
        _ => {
            let Some((_, _, sealer)) = &keys.sealer else {
                return bytes;
            };
            if !changed && state.config.dkim.arc.when != crate::signing::SealWhen::Always {
                return bytes;
            }
            match seal(state, sealer, envelope, received, &bytes).await {
                Ok(Some(headers)) => {
                    counters.arc_sealed.fetch_add(1, Relaxed);
                    let mut out = headers.into_bytes();
                    out.extend_from_slice(&bytes);
                    out
                }
                Ok(None) => bytes,
                Err(e) => {
                    counters.signing_failed.fetch_add(1, Relaxed);
                    tracing::warn!(error = %e, "ARC sealing failed; the message leaves unsealed");
                    bytes
                }
            }
        }
    }
}

/// Runs CPU work on this worker thread after telling the runtime to move its other tasks elsewhere (on a
/// multi-threaded runtime), so that a signature does not hold up the sessions sharing the worker.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The DKIM-Signature fields for `message` (one per signing key of `domain`), newest first.
fn sign(keys: &LoadedKeys, domain: &str, message: &[u8]) -> Result<String, String> {
    let mut out = String::new();
    for key in keys.signing_keys(domain) {
        let header = key.sign(message).map_err(|e| format!("{}._domainkey.{}: {e}", key.selector, key.domain))?;
        out.push_str(&header);
    }
    Ok(out)
}

/// The ARC set (ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) for the message as it leaves,
/// from the authentication of the message as it came in. `Ok(None)`: not sealed (the incoming chain failed
/// or could not be checked, or there is no resolver).
async fn seal(
    state: &GatewayState,
    sealer: &mail_auth::arc::ArcSealer<mail_auth::common::crypto::DkimKey, mail_auth::dkim::Done>,
    envelope: &Envelope,
    received: &[u8],
    bytes: &[u8],
) -> Result<Option<String>, String> {
    use mail_auth::common::headers::HeaderWriter;
    let gatherer = match state.mx_resolver() {
        Ok(g) => g,
        Err(e) => {
            tracing::debug!(error = %e, "no resolver: the message is not ARC-sealed");
            return Ok(None);
        }
    };
    let Some(original) = AuthenticatedMessage::parse(received) else {
        return Err("the received message cannot be parsed".into());
    };
    let Some((arc, results)) = gatherer.arc_seal_inputs(&original, envelope).await else {
        tracing::info!("ARC: the incoming authentication could not be checked in time; not sealed");
        return Ok(None);
    };
    if !arc.can_be_sealed() {
        tracing::info!("ARC: the incoming chain has failed; not sealed (RFC 8617 §5.1.2)");
        return Ok(None);
    }
    // At most 50 sets (RFC 8617 §4.2.1); the chain's verification already refuses longer ones.
    if arc.sets().len() >= 50 {
        return Ok(None);
    }
    let Some(leaving) = AuthenticatedMessage::parse(bytes) else {
        return Err("the message as it leaves cannot be parsed".into());
    };
    off_the_workers(|| {
        sealer.seal(&leaving, &results, &arc).map(|set| Some(set.to_header())).map_err(|e| e.to_string())
    })
}

/// The one domain of the From: addresses (lower case); `None` when there is no From: address or they are
/// in different domains (such a message is not signed: which domain would vouch for it?).
fn from_domain(message: &[u8]) -> Option<String> {
    let header_end = crate::headers::find_header_end(message);
    let parsed = mail_parser::MessageParser::new().parse_headers(&message[..header_end.min(message.len())])?;
    if parsed.header_values("From").count() != 1 {
        return None;
    }
    let from = parsed.from()?;
    let mut domain: Option<String> = None;
    for addr in from.iter() {
        let a = addr.address()?;
        let (_, d) = a.rsplit_once('@')?;
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d.is_empty() {
            return None;
        }
        match &domain {
            Some(prev) if *prev != d => return None,
            _ => domain = Some(d),
        }
    }
    domain
}
