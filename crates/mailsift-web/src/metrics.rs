//! `GET /metrics`: the gateway's counters in Prometheus' text format (version 0.0.4).
//!
//! Served to loopback and the gateway's trusted networks, or to an administrator's API token, since the
//! numbers say something about the organisation's mail. Counters restart at zero with the process, as
//! Prometheus expects; the quarantine size is read from the database at each scrape.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;

use crate::app::{AppState, Peer};

pub use crate::app::WebCounters;

pub async fn handler(
    State(web): State<AppState>,
    Extension(Peer(peer)): Extension<Peer>,
    headers: axum::http::HeaderMap,
) -> Response {
    let allowed = peer.ip().is_loopback()
        || web.gateway.state().is_trusted(peer.ip())
        || crate::app::identify(&headers, &web).is_ok_and(|(p, _)| p.is_admin());
    if !allowed {
        return (StatusCode::FORBIDDEN, "metrics are served to loopback, trusted networks and administrators\n")
            .into_response();
    }
    let db = web.db.clone();
    let (held, queue) =
        tokio::task::spawn_blocking(move || (db.quarantine_count(true, &[]).ok(), db.spool_counts().ok()))
            .await
            .unwrap_or((None, None));
    let mut body = render(&web, held);
    if let Some(queue) = queue {
        queue_metrics(&mut body, &queue, mailsift_store::gateway::now_ms());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

fn render(web: &AppState, quarantine_held: Option<u64>) -> String {
    let c = &web.gateway.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::with_capacity(4096);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in samples {
            let _ = writeln!(out, "{name}{labels} {v}");
        }
    };
    metric(
        "mailsift_messages_total",
        "counter",
        "Messages finished by the SMTP gateway, by action.",
        &[
            ("{action=\"deliver\"}", get(&c.messages_delivered)),
            ("{action=\"tag\"}", get(&c.messages_tagged)),
            ("{action=\"quarantine\"}", get(&c.messages_quarantined)),
            ("{action=\"reject\"}", get(&c.messages_rejected)),
            ("{action=\"refused_at_door\"}", get(&c.refused_at_door)),
            ("{action=\"tempfail\"}", get(&c.tempfailed)),
        ],
    );
    metric("mailsift_connections_total", "counter", "SMTP connections accepted.", &[("", get(&c.connections))]);
    metric(
        "mailsift_connections_refused_total",
        "counter",
        "SMTP connections refused at connect (limits).",
        &[("", get(&c.connections_refused))],
    );
    metric("mailsift_relay_denied_total", "counter", "Recipients refused as relaying.", &[("", get(&c.relay_denied))]);
    metric(
        "mailsift_relay_failures_total",
        "counter",
        "Deliveries to the next hop that failed.",
        &[("", get(&c.relay_failures))],
    );
    metric("mailsift_smtp_timeouts_total", "counter", "SMTP sessions cut for silence.", &[("", get(&c.timeouts))]);
    let dns = web.gateway.state().gatherer.as_ref().map(|g| g.temporary_failure_count()).unwrap_or(0);
    metric(
        "mailsift_dns_timeouts_total",
        "counter",
        "Messages whose sender checks had a DNS lookup time out or fail temporarily.",
        &[("", dns)],
    );
    // Outbound trust (issue 21): the queue's deliveries, signing, transport policy, DMARC reports.
    metric(
        "mailsift_outbound_total",
        "counter",
        "Outbound queue items (one per recipient): queued, delivered, bounced after a refusal or expiry.",
        &[
            ("{event=\"queued\"}", get(&c.outbound_queued)),
            ("{event=\"delivered\"}", get(&c.outbound_delivered)),
            ("{event=\"bounced\"}", get(&c.outbound_bounced)),
        ],
    );
    metric(
        "mailsift_signing_total",
        "counter",
        "Messages DKIM-signed (outbound) or ARC-sealed (inbound we changed), and signing that failed.",
        &[
            ("{kind=\"dkim\"}", get(&c.dkim_signed)),
            ("{kind=\"arc\"}", get(&c.arc_sealed)),
            ("{kind=\"failed\"}", get(&c.signing_failed)),
        ],
    );
    metric(
        "mailsift_tls_policy_failures_total",
        "counter",
        "Outbound deliveries refused by the transport policy (MTA-STS, DANE, the smarthost's required TLS).",
        &[("", get(&c.tls_policy_failures))],
    );
    metric(
        "mailsift_dmarc_reports_total",
        "counter",
        "DMARC aggregate reports sent to other domains and received for ours.",
        &[
            ("{direction=\"sent\"}", get(&c.dmarc_reports_sent)),
            ("{direction=\"received\"}", get(&c.dmarc_reports_received)),
        ],
    );
    // The virus scanner ([smtp.virus]): its counters, and the engine's state when clamd is set.
    metric("mailsift_virus_found_total", "counter", "Messages with a virus found.", &[("", get(&c.virus_found))]);
    metric(
        "mailsift_virus_scan_failed_total",
        "counter",
        "Messages the virus scanner could not scan (clamd down, slow, out of date; message too large).",
        &[("", get(&c.virus_scan_failed))],
    );
    if let Some(scanner) = web.gateway.state().virus.clone() {
        let st = scanner.engine_state();
        metric(
            "mailsift_virus_engine_up",
            "gauge",
            "Whether the last exchange with clamd worked.",
            &[("", st.up.into())],
        );
        if let Some(age) = scanner.database_age() {
            let help = "Age of the database clamd reports (from its VERSION).";
            metric("mailsift_virus_database_age_seconds", "gauge", help, &[("", age as u64)]);
        }
        if let Some(v) = &st.version {
            let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
            let db = v.db_version.map(|d| d.to_string()).unwrap_or_default();
            let labels = format!("{{engine=\"{}\",database=\"{db}\"}}", esc(&v.engine));
            metric(
                "mailsift_virus_engine_info",
                "gauge",
                "The virus engine and its database version.",
                &[(&labels, 1)],
            );
        }
    }
    if let Some(n) = quarantine_held {
        metric("mailsift_quarantine_held", "gauge", "Quarantined copies not released.", &[("", n)]);
    }
    let w = &web.metrics;
    metric("mailsift_digests_sent_total", "counter", "Quarantine digests delivered.", &[("", get(&w.digests_sent))]);
    metric(
        "mailsift_digest_failures_total",
        "counter",
        "Quarantine digests that could not be delivered.",
        &[("", get(&w.digest_failures))],
    );
    metric(
        "mailsift_http_connections_refused_total",
        "counter",
        "HTTP connections refused because the connection limits were reached.",
        &[("", get(&w.http_connections_refused))],
    );
    metric(
        "mailsift_http_timeouts_total",
        "counter",
        "HTTP connections or requests ended because they took longer than their timeout.",
        &[("", get(&w.http_timeouts))],
    );
    // The latency histograms: cumulative buckets in seconds.
    let _ = writeln!(
        out,
        "# HELP mailsift_scan_latency_seconds From the end of DATA to the answer.\n\
         # TYPE mailsift_scan_latency_seconds histogram"
    );
    histogram(&mut out, "mailsift_scan_latency_seconds", "", &c.latency);
    // Where the time goes, per stage of a message (see `mailsift_gateway::Stage`).
    let _ = writeln!(
        out,
        "# HELP mailsift_stage_seconds Time a message spent in each stage between the end of DATA and the answer.\n\
         # TYPE mailsift_stage_seconds histogram"
    );
    for stage in mailsift_gateway::Stage::ALL {
        histogram(
            &mut out,
            "mailsift_stage_seconds",
            &format!("stage=\"{}\"", stage.as_str()),
            &c.stages[stage as usize],
        );
    }
    let _ = writeln!(
        out,
        "# HELP mailsift_uptime_seconds Seconds since the HTTP side started.\n# TYPE mailsift_uptime_seconds gauge\n\
         mailsift_uptime_seconds {}",
        web.started.elapsed().as_secs()
    );
    out
}

/// One histogram's lines (`_bucket`, `_sum`, `_count`), with `labels` (`name="value"`, or empty) on each.
fn histogram(out: &mut String, name: &str, labels: &str, h: &mailsift_gateway::counters::Histogram) {
    let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let sep = if labels.is_empty() { "" } else { "," };
    let braces = |l: &str| if l.is_empty() { String::new() } else { format!("{{{l}}}") };
    let mut cumulative = 0;
    for (i, bound) in mailsift_gateway::LATENCY_BUCKETS_MS.iter().enumerate() {
        cumulative += get(&h.buckets[i]);
        let le = if *bound == u64::MAX { "+Inf".to_string() } else { format!("{}", *bound as f64 / 1000.0) };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{} {}", braces(labels), get(&h.sum_us) as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{} {cumulative}", braces(labels));
}

/// The durable queue's size and age by kind (outbound, bounce, copy, digest...) and state (pending, failed),
/// read from the database at each scrape.
fn queue_metrics(out: &mut String, counts: &[mailsift_store::SpoolCount], now_ms: i64) {
    let _ = writeln!(
        out,
        "# HELP mailsift_queue_messages Items in the durable queue (outbound mail and what the gateway owes), \
         by kind and state.\n# TYPE mailsift_queue_messages gauge"
    );
    for c in counts {
        let _ = writeln!(
            out,
            "mailsift_queue_messages{{kind=\"{}\",state=\"{}\"}} {}",
            label(&c.kind),
            label(&c.state),
            c.count
        );
    }
    let _ = writeln!(
        out,
        "# HELP mailsift_queue_oldest_age_seconds Age of the oldest pending item, by kind.\n\
         # TYPE mailsift_queue_oldest_age_seconds gauge"
    );
    for c in counts.iter().filter(|c| c.state == "pending") {
        let age = (now_ms - c.oldest_ms).max(0) / 1000;
        let _ = writeln!(out, "mailsift_queue_oldest_age_seconds{{kind=\"{}\"}} {age}", label(&c.kind));
    }
}

/// A label value as Prometheus' text format needs it (kinds are ours, but stay safe).
fn label(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).take(40).collect()
}
