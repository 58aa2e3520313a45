//! Handing a message to its [`Route`]: the next hop, the smarthost, the domain's MX, or the Maildir.
//!
//! Outbound transport security is applied here (settings in `transport.rs`): towards the smarthost, TLS
//! required or verified and AUTH as configured; towards MX hosts, the recipient domain's MTA-STS policy
//! (`mta_sts.rs`): under `enforce` only listed MX hosts are used, each over STARTTLS with a certificate
//! valid for its name, else the mail waits; under `testing` the mail goes anyway and the failure is logged
//! and counted. A failure of TLS policy is temporary (RFC 8461 §5: the mail is deferred, the queue
//! retries), counted in `tls_policy_failures` and logged with its reason.

use std::net::IpAddr;
use std::sync::Arc;

use mailsift_evidence::spf::SpfDns;

use crate::mta_sts::{Mode, Policy};
use crate::relay::{Delivered, HopSecurity, HopTls, RelayClient, RelayError, Reply, SecuredError};
use crate::route::{maildir_deliver, Route};
use crate::state::{Gateway, GatewayState};
use crate::transport::SmarthostTls;

/// The most addresses one delivery tries (over all MX hosts).
const MAX_ATTEMPTS: usize = 5;
/// The most MX hosts whose addresses are looked up.
const MAX_MX_HOSTS: usize = 10;

/// Hands a message to its route.
pub async fn deliver(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    route: &Route,
    mail_from: &str,
    rcpts: &[String],
    bytes: &[u8],
) -> Result<Delivered, RelayError> {
    let client = state.relay_client(gateway);
    match route {
        Route::NextHop(target) => client.deliver(target, mail_from, rcpts, bytes).await,
        Route::Smarthost(target) => {
            let security = smarthost_security(gateway, state, target)?;
            match client.deliver_secured(target, &security, mail_from, rcpts, bytes).await {
                Ok(d) => Ok(d),
                Err(SecuredError::Policy(reason)) => Err(policy_failure(gateway, target, reason)),
                Err(SecuredError::Relay(e)) => Err(e),
            }
        }
        Route::Mx(domain) => deliver_by_mx(gateway, state, &client, domain, mail_from, rcpts, bytes).await,
        Route::Report(_) => {
            Err(RelayError::Permanent(Reply { code: 550, text: "5.1.1 Report addresses take reports only".into() }))
        }
        Route::Maildir => {
            let dir = gateway.data_dir.join("maildir");
            let rcpts = rcpts.to_vec();
            let bytes = bytes.to_vec();
            let written = tokio::task::spawn_blocking(move || {
                for r in &rcpts {
                    maildir_deliver(&dir, r, &bytes)?;
                }
                Ok::<_, std::io::Error>(rcpts)
            })
            .await;
            match written {
                Ok(Ok(rcpts)) => Ok(Delivered {
                    accepted: rcpts,
                    refused: Vec::new(),
                    reply: Reply { code: 250, text: "maildir".into() },
                }),
                Ok(Err(e)) => Err(RelayError::Local(format!("maildir write failed: {e}"))),
                Err(e) => Err(RelayError::Local(format!("maildir write failed: {e}"))),
            }
        }
    }
}

/// Counts and logs a TLS policy failure; the mail waits (a temporary failure).
fn policy_failure(gateway: &Gateway, target: &str, reason: String) -> RelayError {
    gateway.counters.tls_policy_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(target = %target, reason = %reason, "outbound TLS policy failure: the mail waits");
    RelayError::Temporary(reason)
}

/// How to secure the connection to the smarthost (`host:port`), from `[smtp.outbound.security]`.
fn smarthost_security(gateway: &Gateway, state: &GatewayState, target: &str) -> Result<HopSecurity, RelayError> {
    let sec = &state.config.outbound.security;
    let host = target.rsplit_once(':').map(|(h, _)| h).unwrap_or(target);
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    let tls = match sec.tls {
        SmarthostTls::Opportunistic => HopTls::Opportunistic,
        SmarthostTls::Required => HopTls::Required(gateway.client_tls.clone()),
        SmarthostTls::Verify => {
            let config = crate::trust::verifying_config(sec.ca_file.as_deref()).map_err(|e| {
                tracing::error!(reason = %e, "cannot verify the smarthost's certificate: the mail waits");
                RelayError::Temporary(format!("cannot verify the smarthost's certificate: {e}"))
            })?;
            HopTls::Verify(config, crate::trust::label(sec.ca_file.as_deref()))
        }
    };
    let auth = match sec.credentials() {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(e)) => {
            tracing::error!(reason = %e, "the smarthost's AUTH password cannot be read: the mail waits");
            return Err(RelayError::Temporary(format!("the smarthost's AUTH password cannot be read: {e}")));
        }
    };
    let required_by = match sec.tls {
        SmarthostTls::Verify => "the smarthost's tls = \"verify\"",
        _ => "the smarthost's tls = \"required\"",
    };
    Ok(HopSecurity { tls, server_name: Some(host), auth, required_by: required_by.into() })
}

/// Where mail for `domain` goes (RFC 5321 §5.1) with the MX host names kept (an MTA-STS policy names
/// hosts, and their certificates must match the name): the MX hosts by preference, each with its IPv4 then
/// IPv6 addresses; without MX records, the domain itself (the implicit MX). `Err(true)`: the domain takes
/// no mail (no such domain, or a null MX, RFC 7505); `Err(false)`: DNS failed for now.
pub async fn mx_hosts(dns: &dyn SpfDns, domain: &str) -> Result<Vec<(String, Vec<IpAddr>)>, bool> {
    let names = match dns.mx(domain).await {
        Ok(hosts) if hosts.iter().any(|h| h.is_empty() || h == ".") => return Err(true),
        Ok(hosts) if !hosts.is_empty() => hosts,
        Ok(_) | Err(true) => vec![domain.to_string()],
        Err(false) => return Err(false),
    };
    let mut out = Vec::new();
    let mut temporary = false;
    for name in names.into_iter().take(MAX_MX_HOSTS) {
        let (v4, v6) = tokio::join!(dns.a(&name, false), dns.a(&name, true));
        let mut ips = Vec::new();
        for answer in [v4, v6] {
            match answer {
                Ok(found) => ips.extend(found),
                Err(false) => temporary = true,
                Err(true) => {}
            }
        }
        if !ips.is_empty() {
            out.push((name, ips));
        }
    }
    match (out.is_empty(), temporary) {
        (false, _) => Ok(out),
        (true, true) => Err(false),
        (true, false) => Err(true),
    }
}

/// Delivery to the recipient domain's MX hosts, under its MTA-STS policy when it has one.
async fn deliver_by_mx(
    gateway: &Arc<Gateway>,
    state: &Arc<GatewayState>,
    client: &RelayClient,
    domain: &str,
    mail_from: &str,
    rcpts: &[String],
    bytes: &[u8],
) -> Result<Delivered, RelayError> {
    let resolver = state.mx_resolver().map_err(RelayError::Temporary)?;
    let sec = &state.config.outbound.security;
    let mut verifying = None;
    let mut policy: Option<Arc<Policy>> = None;
    if sec.mta_sts {
        match crate::trust::verifying_config(sec.ca_file.as_deref()) {
            Ok(tls) => {
                let fetcher = crate::mta_sts::Fetcher {
                    dns: resolver,
                    tls: tls.clone(),
                    port: sec.mta_sts_port,
                    timeout: std::time::Duration::from_secs(sec.mta_sts_timeout_secs.max(1)),
                };
                policy = crate::mta_sts::policy_for(&gateway.mta_sts, domain, &fetcher).await;
                verifying = Some(tls);
            }
            // Without trust roots no policy can be fetched or applied: the mail waits rather than go out
            // unprotected to a domain that may have one.
            Err(e) => return Err(policy_failure(gateway, domain, format!("MTA-STS: cannot verify certificates: {e}"))),
        }
    }
    let hosts = match mx_hosts(resolver, domain).await {
        Ok(h) => h,
        Err(true) => {
            return Err(RelayError::Permanent(Reply {
                code: 550,
                text: format!("5.1.2 {domain} does not accept mail (no MX or address)"),
            }))
        }
        Err(false) => return Err(RelayError::Temporary(format!("DNS lookup of {domain} failed"))),
    };
    let mode = policy.as_ref().map(|p| p.mode).unwrap_or(Mode::None);
    let required_by = format!("the MTA-STS policy of {domain} ({mode})");
    let mut last = None;
    let mut refused_by_policy = Vec::new();
    let mut attempts = 0;
    for (name, ips) in hosts {
        let opportunistic =
            HopSecurity { server_name: Some(name.clone()), required_by: required_by.clone(), ..Default::default() };
        let listed = policy.as_ref().is_none_or(|p| p.allows(&name));
        let security = match (mode, &verifying) {
            (Mode::Enforce, _) if !listed => {
                let reason = format!("MX {name} is not in {required_by}");
                gateway.counters.tls_policy_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(domain = %domain, mx = %name, "MTA-STS (enforce): MX host not in the policy, skipped");
                refused_by_policy.push(reason);
                continue;
            }
            (Mode::Testing, _) if !listed => {
                gateway.counters.tls_policy_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(domain = %domain, mx = %name, "MTA-STS (testing): MX host not in the policy; delivering anyway");
                opportunistic.clone()
            }
            (Mode::Enforce | Mode::Testing, Some(tls)) => HopSecurity {
                tls: HopTls::Verify(tls.clone(), crate::trust::label(sec.ca_file.as_deref())),
                ..opportunistic.clone()
            },
            _ => opportunistic.clone(),
        };
        for ip in ips {
            if attempts >= MAX_ATTEMPTS {
                break;
            }
            attempts += 1;
            let target = std::net::SocketAddr::new(ip, state.config.outbound.mx_port).to_string();
            let result = match client.deliver_secured(&target, &security, mail_from, rcpts, bytes).await {
                Err(SecuredError::Policy(reason)) if mode == Mode::Testing => {
                    gateway.counters.tls_policy_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(domain = %domain, mx = %name, reason = %reason, "MTA-STS (testing): would be refused; delivering without verification");
                    client.deliver_secured(&target, &opportunistic, mail_from, rcpts, bytes).await
                }
                r => r,
            };
            match result {
                Ok(d) => return Ok(d),
                // A permanent refusal is the domain's answer; a temporary one means try the next host.
                Err(SecuredError::Relay(e @ RelayError::Permanent(_))) => return Err(e),
                Err(SecuredError::Relay(e)) => last = Some(e),
                Err(SecuredError::Policy(reason)) => {
                    gateway.counters.tls_policy_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(domain = %domain, mx = %name, reason = %reason, "MTA-STS: MX host refused by the policy");
                    refused_by_policy.push(reason);
                }
            }
        }
    }
    Err(match (last, refused_by_policy.is_empty()) {
        (Some(e), true) => e,
        (None, true) => RelayError::Temporary(format!("no mail host of {domain} answered")),
        (last, false) => {
            let mut text =
                format!("MTA-STS: no MX host of {domain} passed its policy: {}", refused_by_policy.join("; "));
            if let Some(e) = last {
                text.push_str(&format!("; other hosts: {e}"));
            }
            RelayError::Temporary(text)
        }
    })
}
