//! `mailsift quarantine`: list, show, release (optionally reporting "not spam"), delete and purge what the
//! gateway quarantined. Release goes through the gateway's normal delivery path, configured by the same file.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use mailsift_store::{Database, QuarantineItem, QuarantineQuery};

#[derive(Subcommand)]
pub enum QuarantineCommand {
    /// List held messages, newest first.
    List(QuarantineFilters),
    /// Show one: envelope, reason, the verdict's symbols, headers and text (no remote content is loaded).
    Show {
        id: i64,
        /// Print the stored message exactly, instead.
        #[arg(long)]
        raw: bool,
    },
    /// Deliver to the recipient through the normal delivery path (once, however often it is asked).
    Release {
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Also report the message as not spam (retrains the classifiers, feeds reputation).
        #[arg(long)]
        not_spam: bool,
        /// Who released it, for the header and the log.
        #[arg(long, default_value = "administrator")]
        by: String,
    },
    /// Release, then add the sender to that recipient's allowed senders, so their next message is delivered.
    Approve {
        #[arg(required = true)]
        ids: Vec<i64>,
        #[arg(long, default_value = "administrator")]
        by: String,
    },
    /// Delete held copies for good.
    Delete {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Delete everything older than the retention period.
    Purge {
        #[arg(long, default_value_t = 30)]
        older_than_days: u64,
    },
}

#[derive(Args)]
pub struct QuarantineFilters {
    /// Recipient contains this.
    #[arg(long)]
    rcpt: Option<String>,
    /// Envelope sender or From: contains this.
    #[arg(long)]
    sender: Option<String>,
    /// Subject contains this.
    #[arg(long)]
    subject: Option<String>,
    /// Only newer than this (`12h`, `7d`, or Unix seconds).
    #[arg(long)]
    since: Option<String>,
    /// Also list released messages.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

fn open(config: Option<&PathBuf>, data_dir: &Path) -> Result<Database> {
    crate::config_cmd::required_database(config, data_dir)
}

pub fn run(config: Option<&PathBuf>, data_dir: &Path, cmd: &QuarantineCommand) -> Result<()> {
    let now = mailsift_engine::unix_now();
    let db = open(config, data_dir)?;
    match cmd {
        QuarantineCommand::List(f) => {
            let q = QuarantineQuery {
                recipient: f.rcpt.clone(),
                sender: f.sender.clone(),
                subject: f.subject.clone(),
                since: f.since.as_deref().map(|s| crate::log::parse_when(s, now)).transpose()?,
                until: None,
                include_released: f.all,
                limit: f.limit,
                ..QuarantineQuery::default()
            };
            let items = db.quarantine_list(&q)?;
            if f.json {
                for i in &items {
                    println!("{}", serde_json::to_string(i)?);
                }
            } else {
                println!(
                    "{:>6} {:<20} {:<28} {:<28} {:>6} {:<9} subject / reason",
                    "id", "time (UTC)", "to", "from", "score", "state"
                );
                for i in &items {
                    println!(
                        "{:>6} {:<20} {:<28} {:<28} {:>6.2} {:<9} {} / {}",
                        i.id,
                        crate::log::short_time(i.time),
                        crate::log::clip(&i.recipient, 28),
                        crate::log::clip(i.from_header.as_deref().or(i.mail_from.as_deref()).unwrap_or("<>"), 28),
                        i.score,
                        if i.released_at.is_some() { "released" } else { "held" },
                        crate::log::clip(i.subject.as_deref().unwrap_or(""), 50),
                        i.reason
                    );
                }
                eprintln!("{} message(s)", items.len());
            }
        }
        QuarantineCommand::Show { id, raw } => {
            let item = db.quarantine_get(*id)?.with_context(|| format!("quarantine item {id} does not exist"))?;
            let bytes = db.quarantine_raw(*id)?.unwrap_or_default();
            if *raw {
                use std::io::Write;
                std::io::stdout().write_all(&bytes)?;
            } else {
                print!("{}", render(&item, &bytes, db.log_get(&item.reference_id)?.as_ref()));
            }
        }
        QuarantineCommand::Approve { ids, by } => act_all(config, data_dir, &db, ids, Act::Approve, by)?,
        QuarantineCommand::Release { ids, not_spam, by } => {
            act_all(config, data_dir, &db, ids, Act::Release { not_spam: *not_spam }, by)?
        }
        QuarantineCommand::Delete { ids } => {
            for id in ids {
                if mailsift_gateway::actions::delete(&db, *id)? {
                    println!("{id}: deleted");
                } else {
                    bail!("quarantine item {id} does not exist");
                }
            }
        }
        QuarantineCommand::Purge { older_than_days } => {
            let n = db.quarantine_purge(now - *older_than_days as i64 * 86_400)?;
            println!("purged {n} quarantined message(s) older than {older_than_days} days");
        }
    }
    Ok(())
}

/// What to do with each item.
#[derive(Clone, Copy)]
enum Act {
    /// Release; with `not_spam`, also report it as ham.
    Release { not_spam: bool },
    /// Release, then allow the sender for that recipient.
    Approve,
}

/// Releases (or approves) each item through the gateway's delivery path, as the running gateway would: the
/// state is built from the same configuration, and the actions are the ones the web console calls.
fn act_all(config: Option<&PathBuf>, data_dir: &Path, db: &Database, ids: &[i64], act: Act, by: &str) -> Result<()> {
    use mailsift_gateway::actions;
    let state = crate::serve::build_state(config, data_dir, &[], Some(db))?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let gateway = {
        let _guard = runtime.enter();
        mailsift_gateway::Gateway::new(state, db.clone(), data_dir)
    };
    let mut failed = 0;
    for id in ids {
        let done = match act {
            // The command line is the administrator's: the virus quarantine too.
            Act::Release { .. } => {
                runtime.block_on(actions::release_as_admin(&gateway, *id, by)).map_err(anyhow::Error::from)
            }
            Act::Approve => match db.quarantine_get(*id)? {
                Some(item) => runtime
                    .block_on(actions::approve(&gateway, &item, by))
                    .map(|a| {
                        if a.allowed.is_none() {
                            eprintln!("mailsift: quarantine item {id}: no sender address to approve");
                        }
                        println!("{id}: {}", a.describe());
                        a.released
                    })
                    .map_err(anyhow::Error::from),
                None => Err(anyhow::anyhow!("quarantine item {id} does not exist")),
            },
        };
        match done {
            Ok(r) => {
                if let Act::Release { not_spam } = act {
                    println!("{id}: {}", r.describe());
                    if not_spam {
                        let engine = crate::report::gateway_engine(config, data_dir)?;
                        crate::report::report_message(
                            config,
                            engine,
                            data_dir,
                            &r.message,
                            mailsift_engine::classify::Side::Ham,
                            &format!("quarantine item {id}"),
                            "quarantine",
                            Some(r.recipient.as_str()),
                        )?;
                    }
                }
            }
            Err(e) => {
                eprintln!("mailsift: {e}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} release(s) failed", ids.len());
    }
    Ok(())
}

/// A person's view: what, why, the headers and the text. Links are shown as text; nothing is fetched.
fn render(item: &QuarantineItem, raw: &[u8], log: Option<&mailsift_store::LogEntry>) -> String {
    let mut s = String::new();
    s.push_str(&format!("Quarantine item {} (ref {})\n", item.id, item.reference_id));
    s.push_str(&format!("Time:       {}\n", mailsift_gateway::text::rfc5322_date(item.time)));
    s.push_str(&format!("Recipient:  {}\n", item.recipient));
    s.push_str(&format!("Sender:     {}\n", item.mail_from.as_deref().unwrap_or("<>")));
    s.push_str(&format!("Score:      {:.2}\n", item.score));
    s.push_str(&format!("Reason:     {}\n", item.reason));
    if let Some(t) = item.released_at {
        s.push_str(&format!("Released:   {}\n", mailsift_gateway::text::rfc5322_date(t)));
    }
    if let Some(l) = log.filter(|l| !l.symbols.is_empty()) {
        s.push_str("Symbols:\n");
        for (name, score) in &l.symbols {
            s.push_str(&format!("  {score:>7.2}  {name}\n"));
        }
    }
    let msg = mailsift_engine::Message::parse(raw, 1 << 20);
    s.push_str("\n--- headers ---\n");
    for h in &msg.headers {
        s.push_str(&format!("{}: {}\n", h.name, mailsift_gateway::text::sanitize(&h.value, 300)));
    }
    s.push_str("\n--- text ---\n");
    let text: String = msg.body_text.chars().take(4000).collect();
    s.push_str(&text);
    s.push('\n');
    s
}
