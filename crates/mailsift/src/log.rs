//! `mailsift log`: list, search and show the message log the gateway writes (every transaction, including
//! those refused at the door), and purge old rows.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mailsift_store::{Database, LogEntry, LogQuery};

#[derive(Subcommand)]
pub enum LogCommand {
    /// List transactions, newest first, filtered.
    List(LogFilters),
    /// Show one transaction in full: envelope, verdict, symbols, next-hop answer.
    Show {
        /// The reference id (as in the 550 text or the X-Mailsift-Id header).
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete rows older than a number of days.
    Purge {
        #[arg(long, default_value_t = 30)]
        older_than_days: u64,
    },
}

#[derive(Args, Default)]
pub struct LogFilters {
    /// Envelope sender contains this (case-insensitive).
    #[arg(long)]
    sender: Option<String>,
    /// A recipient contains this.
    #[arg(long)]
    rcpt: Option<String>,
    /// Subject contains this.
    #[arg(long)]
    subject: Option<String>,
    /// Client IP, exactly.
    #[arg(long)]
    ip: Option<String>,
    /// deliver, tag, quarantine, reject, refused, tempfail or failed.
    #[arg(long)]
    action: Option<String>,
    /// A symbol that fired, exactly (e.g. BAYES_SPAM_99).
    #[arg(long)]
    symbol: Option<String>,
    /// Only newer than this: a duration (`90m`, `12h`, `7d`) or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    /// Only older than this (same forms).
    #[arg(long)]
    until: Option<String>,
    /// At most this many rows.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// A point in time from `90m` / `12h` / `7d` ago, or Unix seconds.
pub fn parse_when(s: &str, now: i64) -> Result<i64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num.parse().with_context(|| format!("{s:?}: expected a duration like 12h or Unix seconds"))?;
    Ok(match unit {
        "" => n,
        "s" => now - n,
        "m" => now - n * 60,
        "h" => now - n * 3600,
        "d" => now - n * 86_400,
        _ => bail!("{s:?}: the unit must be s, m, h or d"),
    })
}

fn open(config: Option<&PathBuf>, data_dir: &Path) -> Result<Database> {
    crate::config_cmd::required_database(config, data_dir)
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &LogCommand) -> Result<()> {
    let now = mailsift_engine::unix_now();
    match cmd {
        LogCommand::List(f) => {
            let db = open(config, data_dir)?;
            let q = LogQuery {
                sender: f.sender.clone(),
                recipient: f.rcpt.clone(),
                subject: f.subject.clone(),
                client_ip: f.ip.clone(),
                action: f.action.clone(),
                symbol: f.symbol.clone(),
                since: f.since.as_deref().map(|s| parse_when(s, now)).transpose()?,
                until: f.until.as_deref().map(|s| parse_when(s, now)).transpose()?,
                reference_id: None,
                limit: f.limit,
                ..LogQuery::default()
            };
            let rows = db.log_search(&q)?;
            if f.json {
                for r in &rows {
                    println!("{}", serde_json::to_string(&json_of(r))?);
                }
            } else {
                println!(
                    "{:<20} {:<20} {:<10} {:>6} {:<15} {:<30} {:<30} subject",
                    "id", "time (UTC)", "action", "score", "client", "from", "to"
                );
                for r in &rows {
                    println!(
                        "{:<20} {:<20} {:<10} {:>6} {:<15} {:<30} {:<30} {}",
                        r.reference_id,
                        short_time(r.time),
                        r.action,
                        r.score.map(|s| format!("{s:.2}")).unwrap_or_else(|| "-".into()),
                        r.client_ip.as_deref().unwrap_or("-"),
                        clip(r.mail_from.as_deref().unwrap_or("-"), 30),
                        clip(&r.recipients.join(","), 30),
                        clip(r.subject.as_deref().unwrap_or(""), 60),
                    );
                }
                eprintln!("{} row(s)", rows.len());
            }
        }
        LogCommand::Show { id, json } => {
            let db = open(config, data_dir)?;
            let Some(r) = db.log_get(id)? else { bail!("{id}: no such reference id in the message log") };
            if *json {
                println!("{}", serde_json::to_string_pretty(&json_of(&r))?);
            } else {
                print!("{}", render(&r));
            }
        }
        LogCommand::Purge { older_than_days } => {
            let db = open(config, data_dir)?;
            let n = db.log_purge(now - *older_than_days as i64 * 86_400)?;
            println!("purged {n} row(s) older than {older_than_days} days");
        }
    }
    Ok(())
}

pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(n - 1).collect();
        out.push('…');
        out
    }
}

pub fn short_time(t: i64) -> String {
    // "Mon, 23 Nov 2026 16:06:40 +0000" → "23 Nov 2026 16:06:40"
    let d = mailsift_gateway::text::rfc5322_date(t);
    d.get(5..d.len() - 6).unwrap_or(&d).to_string()
}

fn json_of(r: &LogEntry) -> serde_json::Value {
    serde_json::json!({
        "id": r.reference_id, "time": r.time, "direction": r.direction, "client_ip": r.client_ip, "helo": r.helo,
        "mail_from": r.mail_from, "recipients": r.recipients, "from": r.from_header, "subject": r.subject,
        "message_id": r.message_id, "size": r.size, "score": r.score, "required": r.required,
        "symbols": r.symbols.iter().map(|(n, s)| serde_json::json!({"name": n, "score": s})).collect::<Vec<_>>(),
        "action": r.action, "stage": r.stage, "reason": r.reason, "next_hop_response": r.next_hop_response,
    })
}

fn render(r: &LogEntry) -> String {
    let mut s = String::new();
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    s.push_str(&format!("Reference:   {}\n", r.reference_id));
    s.push_str(&format!("Time:        {}\n", mailsift_gateway::text::rfc5322_date(r.time)));
    s.push_str(&format!("Direction:   {}\n", r.direction));
    s.push_str(&format!("Client:      {} (HELO {})\n", opt(&r.client_ip), opt(&r.helo)));
    s.push_str(&format!("Envelope:    {} -> {}\n", opt(&r.mail_from), r.recipients.join(", ")));
    s.push_str(&format!("From:        {}\n", opt(&r.from_header)));
    s.push_str(&format!("Subject:     {}\n", opt(&r.subject)));
    s.push_str(&format!("Message-ID:  {}\n", opt(&r.message_id)));
    s.push_str(&format!("Size:        {} bytes\n", r.size));
    s.push_str(&format!("Stage:       {}\n", r.stage));
    s.push_str(&format!("Action:      {}\n", r.action));
    if let Some(score) = r.score {
        s.push_str(&format!("Score:       {score:.2} (tag at {:.2})\n", r.required.unwrap_or(0.0)));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!("Reason:      {reason}\n"));
    }
    if let Some(n) = &r.next_hop_response {
        s.push_str(&format!("Next hop:    {n}\n"));
    }
    if !r.symbols.is_empty() {
        s.push_str("Symbols:\n");
        for (name, score) in &r.symbols {
            s.push_str(&format!("  {score:>7.2}  {name}\n"));
        }
        s.push_str("(`mailsift symbols` describes each symbol and its remedy)\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_when("2h", 10_000).unwrap(), 10_000 - 7200);
        assert_eq!(parse_when("1700000000", 0).unwrap(), 1_700_000_000);
        assert!(parse_when("2w", 0).is_err());
    }
}
