//! What runs beside the front ends while the gateway serves: the durable spool's runner and the watcher
//! that applies policy edits and retention.

use std::sync::Arc;
use std::time::Duration;

use crate::state::Gateway;

/// Starts what runs beside the front ends: the durable outbound spool (bounces, rule copies, digests
/// owed after a 250: pending items are picked up at start and retried with back-off) and the watcher
/// that applies policy edits from the CLI, the console or another node within about a second and the retention
/// periods hourly. Stop them with [`Background::stop`].
pub fn start(gateway: &Arc<Gateway>) -> Background {
    let spool = crate::spool::start(gateway.clone());
    let _dmarc_reports = crate::dmarc_send::start(gateway.clone());
    let g = gateway.clone();
    let watcher = tokio::spawn(async move {
        // Every second: a change made through any node (the store's policy version) is in force on every
        // node within about a second, well inside the two promised. The question is one cheap read.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_purge: Option<tokio::time::Instant> = None;
        let mut classifier_failing = false;
        loop {
            tick.tick().await;
            if last_purge.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                last_purge = Some(tokio::time::Instant::now());
                let g2 = g.clone();
                let _ = tokio::task::spawn_blocking(move || g2.purge_expired()).await;
            }
            let g2 = g.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || g2.refresh_policy(false)).await {
                tracing::error!(error = %e, "policy change not applied; the previous policy stays")
            }
            // Log rows kept on disk while the database could not take them.
            let g2 = g.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || crate::log::replay_spill(&g2)).await {
                tracing::error!(error = %e, "message log spill file not replayed")
            }
            // What the other nodes learned (a shared classifier store): said once per outage, not per tick.
            let g2 = g.clone();
            match tokio::task::spawn_blocking(move || g2.sync_classifier()).await {
                Ok(Err(e)) if !classifier_failing => {
                    classifier_failing = true;
                    tracing::warn!(error = %e, "classifier not synchronised with the other nodes; retrying each second")
                }
                Ok(Ok(_)) if classifier_failing => {
                    classifier_failing = false;
                    tracing::info!("classifier synchronised with the other nodes again")
                }
                _ => {}
            }
        }
    });
    Background { _spool: spool, watcher }
}

/// The tasks [`start`] started. The spool runner stops by itself at shutdown.
pub struct Background {
    _spool: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Background {
    /// Stops the policy watcher (the spool runner finishes on the shutdown signal).
    pub fn stop(&self) {
        self.watcher.abort();
    }
}
