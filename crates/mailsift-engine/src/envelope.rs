//! How a message arrived: the SMTP facts that are not in the message itself.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::message::Message;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Envelope {
    pub client_ip: Option<IpAddr>,
    /// The name given in HELO/EHLO.
    pub helo: Option<String>,
    /// The reverse-DNS name of the client, when the gateway looked it up.
    pub client_name: Option<String>,
    /// MAIL FROM; empty string for the null sender `<>` (bounces).
    pub mail_from: Option<String>,
    pub rcpt_to: Vec<String>,
    pub direction: Direction,
    pub authenticated_user: Option<String>,
    pub tls: bool,
}

impl Envelope {
    /// Whether the gateway judged the message as our own outbound mail: it came from a trusted network or an
    /// authenticated user (the SMTP session and the milter set the direction for both; a login alone counts
    /// too, whatever the listener).
    pub fn is_outbound(&self) -> bool {
        self.direction == Direction::Outbound
            || self.authenticated_user.as_deref().is_some_and(|u| !u.trim().is_empty())
    }

    /// Fills missing fields from the message's own trace headers: the newest `Received` hop that names a
    /// client IP gives the IP and HELO (never a client name: see below); `Return-Path` gives MAIL FROM; `Delivered-To` or
    /// `X-Original-To` (else To:) give the recipients. Used for scanning stored mail, where the SMTP facts
    /// are gone.
    pub fn fill_from_trace(&mut self, m: &Message<'_>) {
        if self.client_ip.is_none() {
            if let Some(hop) = m.hops.iter().find(|h| h.from_ip.is_some_and(|ip| !is_local(ip))) {
                self.client_ip = hop.from_ip;
                if self.helo.is_none() {
                    self.helo = hop.helo.clone().or_else(|| hop.from_host.clone());
                }
                // No client name: a name in a Received line we did not write is the sender's claim, and
                // `client_name` is believed as verified (the milter's MTA looked it up). Only DNS evidence
                // gives stored mail a verified name.
            }
        }
        if self.mail_from.is_none() {
            if let Some(rp) = m.header("Return-Path") {
                self.mail_from = Some(rp.trim().trim_matches(['<', '>']).to_string());
            }
        }
        if self.rcpt_to.is_empty() {
            let rcpt = m.header("Delivered-To").or_else(|| m.header("X-Original-To"));
            match rcpt {
                Some(r) => self.rcpt_to.push(r.trim().trim_matches(['<', '>']).to_string()),
                None => self.rcpt_to.extend(m.to.iter().map(|t| t.address.clone())),
            }
        }
    }
}

fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_unspecified(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified(),
    }
}
