//! `mailsift dmarc`: DMARC aggregate reports, sent (to other domains) and received (for ours).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;

#[derive(Subcommand)]
pub enum DmarcCommand {
    /// Build the aggregate reports owed for the ended periods and send them (--dry-run: only show them).
    Report {
        /// Show the reports that would be sent now (domain, destinations, records), send nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run, print each report's XML too.
        #[arg(long)]
        xml: bool,
    },
    /// Summarise the reports received for our domains: which sources send as them, and whether they pass.
    Received {
        /// Reports whose period ended in the last N days.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Only this one of our domains.
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &DmarcCommand) -> Result<()> {
    let db = crate::config_cmd::database(config, data_dir)?;
    match cmd {
        DmarcCommand::Received { days, domain, json } => {
            let since = mailsift_engine::unix_now() - i64::from(*days) * 86_400;
            let rows = db.dmarc_received_summary(since, domain.as_deref())?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no DMARC reports received for the last {days} day(s)");
                return Ok(());
            }
            println!(
                "{:<28} {:<40} {:>9} {:>9} {:>9} {:>9} {:>5} {:>9}",
                "domain", "source", "messages", "dmarc ok", "dkim ok", "spf ok", "days", "reporters"
            );
            for r in rows {
                println!(
                    "{:<28} {:<40} {:>9} {:>9} {:>9} {:>9} {:>5} {:>9}",
                    r.domain, r.source_ip, r.messages, r.dmarc_pass, r.dkim_pass, r.spf_pass, r.days, r.reporters
                );
            }
            Ok(())
        }
        DmarcCommand::Report { dry_run, xml } => {
            let state = crate::serve::build_state(config, data_dir, &[], Some(&db))?;
            if !state.config.dmarc_reports.send && !dry_run {
                anyhow::bail!("[smtp.dmarc_reports] send is off: nothing is collected or sent (use --dry-run to look)");
            }
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let gateway = {
                let _guard = runtime.enter();
                mailsift_gateway::Gateway::new(state, db.clone(), data_dir)
            };
            let now = mailsift_engine::unix_now();
            if *dry_run {
                let state = gateway.state();
                let plans = runtime
                    .block_on(mailsift_gateway::dmarc_send::plan(&gateway, &state, now))
                    .map_err(anyhow::Error::msg)
                    .context("cannot build the DMARC reports")?;
                if plans.is_empty() {
                    println!("no DMARC aggregate reports owed now");
                }
                for p in plans {
                    let r = &p.report;
                    let messages: u64 = r.records.iter().map(|x| x.count).sum();
                    println!(
                        "{} period {}..{}: {} record(s), {} message(s), report id {}",
                        r.policy.domain,
                        r.begin,
                        r.end,
                        r.records.len(),
                        messages,
                        r.report_id
                    );
                    for (to, size) in &p.destinations {
                        let limit = if *size > 0 { format!(" (limit {size} bytes)") } else { String::new() };
                        println!("  to {to}{limit}");
                    }
                    for (uri, why) in &p.refused {
                        println!("  not to {uri}: {why}");
                    }
                    if *xml {
                        println!("{}", r.to_xml());
                    }
                }
                println!("(dry run: nothing sent)");
                return Ok(());
            }
            let run = runtime.block_on(async {
                let run = mailsift_gateway::dmarc_send::send_due(&gateway, now).await;
                // The spool's first attempts run in the background: give them a moment before the process ends
                // (what does not go now is retried by the running gateway's spool).
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                run
            });
            let run = run.map_err(anyhow::Error::msg).context("cannot send the DMARC reports")?;
            println!(
                "{} report mail(s) queued for {} report(s); {} destination(s) not used",
                run.mails, run.reports, run.refused
            );
            Ok(())
        }
    }
}
