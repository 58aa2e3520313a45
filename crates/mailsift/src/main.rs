//! The `mailsift` command: scan, explain, evaluate and benchmark messages, and print the symbol registry.

mod accounts;
mod asf;
mod backup;
mod bench;
mod config_cmd;
mod datadir;
mod diagnose;
mod dkim;
mod dmarc;
mod domains;
mod eval;
mod generate;
mod init;
mod inputs;
mod load;
mod log;
mod policy;
mod quarantine;
mod queue;
mod report;
mod reports;
mod reputation;
mod roc;
mod scan;
mod scanner;
mod serve;
mod train;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mailsift_engine::{Engine, Envelope};

#[derive(Parser)]
#[command(name = "mailsift", version, about = "An email security gateway: every verdict explained.")]
struct Cli {
    /// Configuration file (TOML). Without it and MAILSIFT_CONFIG, /etc/mailsift/mailsift.toml when it
    /// exists, else the embedded defaults.
    #[arg(long, short, global = true, env = "MAILSIFT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: the gateway database, the classifier and reputation stores, the keys. Without it and
    /// MAILSIFT_DATA_DIR, the configuration's `data_dir` (relative to the file), else /var/lib/mailsift with
    /// the system configuration, else ./mailsift-data. Only `serve` and `init` create a gateway database.
    #[arg(long, global = true, env = "MAILSIFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan messages and print one verdict line each (exit 0: all ham, 1: some spam, 2: an error).
    Scan(scan::ScanArgs),
    /// Diagnose why a message was (or was not) judged spam, and propose the narrowest fixes as commands;
    /// --dry-run tries them (on the message and over the message log), --apply N makes one.
    Diagnose(diagnose::DiagnoseArgs),
    /// Explain the verdict on one message for a person: every symbol with its meaning and remedy.
    Explain {
        /// The message file, or - for standard input.
        file: PathBuf,
        #[command(flatten)]
        envelope: EnvelopeArgs,
    },
    /// Print the symbol registry: name, group, weight, description, remedy.
    Symbols {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Measure scan throughput over every message under a directory.
    Bench(bench::BenchArgs),
    /// Score labelled ham and spam and report false positives and spam caught, per folder.
    Eval(eval::EvalArgs),
    /// Train the statistical engines (Bayes and the linear model) on sorted spam and ham.
    Train(train::TrainArgs),
    /// Correct the classifiers about one message a user reported (retrains both engines).
    Report(report::ReportArgs),
    /// Local sender reputation: show or reset what the gateway remembers about an IP, domain or address.
    #[command(subcommand)]
    Reputation(reputation::ReputationCommand),
    /// Run the SMTP gateway (inbound MX and outbound relay) until SIGTERM; SIGHUP reloads the configuration.
    Serve(serve::ServeArgs),
    /// The message log the gateway writes: list and search, show one transaction, purge.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// The submission report: false-positive and false-negative reports over a period, by type, channel,
    /// outcome, sender domain and user.
    Reports(reports::ReportsArgs),
    /// The organisation's domains: next hop, recipients, thresholds, ASF options, spamtraps, sending servers.
    #[command(subcommand)]
    Domains(domains::DomainsCommand),
    /// The organisation-wide Additional Spam Filtering options: list them, set them over the configuration's.
    #[command(subcommand)]
    Asf(asf::AsfCommand),
    /// The quarantine: list, show, release (once), delete, purge.
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// The outbound queue: list, show, retry now, remove.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// DKIM keys for signing outbound mail: make one and print its DNS record, check what is published.
    #[command(subcommand)]
    Dkim(dkim::DkimCommand),
    /// DMARC aggregate reports: what would be sent (--dry-run), send them, summarise those received.
    #[command(subcommand)]
    Dmarc(dmarc::DmarcCommand),
    /// Console accounts: administrators, domain administrators and end users; API tokens.
    #[command(subcommand)]
    Accounts(accounts::AccountsCommand),
    /// Filter rules, evaluated in order before the allowed/blocked senders: add, list, show, move, enable,
    /// disable, remove, and test on a message.
    #[command(subcommand)]
    Rules(policy::RulesCommand),
    /// Allowed and blocked senders, per organisation, domain or user: add, list (with when each last
    /// matched), remove.
    #[command(subcommand)]
    Lists(policy::ListsCommand),
    /// The stored policy (rules and lists) as TOML: import, export.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// An SMTP server that accepts and counts everything: a stand-in next hop for trials and load tests.
    SmtpSink(serve::SinkArgs),
    /// Load-test a gateway: concurrent SMTP senders replay messages; prints messages/s and latency.
    SmtpLoad(load::LoadArgs),
    /// Write a production configuration: DNS evidence on with the system resolver, our domains and their
    /// next hop, the console's public URL, the TLS certificate and key. Refuses to overwrite a file
    /// without --force; the file is loaded as `serve` loads it before it is written.
    Init(init::InitArgs),
    /// The configuration file: `check` loads it as `serve` does, without listening; `dump` prints the
    /// effective configuration (defaults included, stored domains and policy marked, secrets hidden).
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// The gateway's store (`[store]`): `check` says where it is, its schema version against this
    /// mailsift's, and on PostgreSQL the server and what searches need; it changes nothing (exit 2 when the
    /// schema is newer than this mailsift or a search would be wrong).
    #[command(subcommand)]
    Store(config_cmd::StoreCommand),
    /// Copy the data directory into DIR while the gateway runs: every SQLite database with SQLite's online
    /// backup API (each as of one moment), the keys and other files byte for byte, and MANIFEST.json
    /// (sizes, SHA-256, schema versions). With [store] on PostgreSQL, back that up with pg_dump.
    Backup(backup::BackupArgs),
    /// Restore a backup into an empty data directory (or --force), after checking every file against the
    /// manifest and SQLite's integrity check; refuses a backup whose schema is newer than this mailsift and
    /// a data directory a running process has open.
    Restore(backup::RestoreArgs),
    /// Hash an SMTP AUTH password for `password = "..."` in `[[smtp.users]]` (Argon2id, fresh salt). The
    /// password is read from standard input (one line), never from the command line.
    AuthHash,
    /// Manual pages and shell completions from this command line's definition (for packagers).
    #[command(subcommand, hide = true)]
    Generate(generate::GenerateCommand),
}

/// Envelope facts for a scan: what the SMTP session would have told us.
#[derive(Args, Clone, Default)]
pub struct EnvelopeArgs {
    /// Connecting client IP.
    #[arg(long)]
    ip: Option<std::net::IpAddr>,
    /// HELO/EHLO name.
    #[arg(long)]
    helo: Option<String>,
    /// Envelope sender (MAIL FROM); "" for the null sender.
    #[arg(long = "from")]
    mail_from: Option<String>,
    /// Envelope recipient (RCPT TO); repeat for several.
    #[arg(long = "rcpt")]
    rcpt: Vec<String>,
    /// Fill missing envelope facts from the message's own trace headers (Received, Return-Path).
    #[arg(long)]
    from_trace: bool,
}

impl EnvelopeArgs {
    pub fn envelope(&self) -> Envelope {
        Envelope {
            client_ip: self.ip,
            helo: self.helo.clone(),
            mail_from: self.mail_from.clone(),
            rcpt_to: self.rcpt.clone(),
            ..Envelope::default()
        }
    }
}

/// The engine of the configuration file (or the embedded defaults), read with [`config_cmd::load`]: the
/// whole file is parsed and checked, `[smtp]` and `[web]` included, whichever command reads it.
pub fn load_engine(path: Option<&PathBuf>) -> Result<Engine> {
    config_cmd::load(path.map(PathBuf::as_path))?.engine()
}

/// Gives the engine the trained model where the gateway keeps it (the shared PostgreSQL store, or the data
/// directory's file), when there is one: commands judge as the running gateway does.
pub fn with_trained_model(config: Option<&PathBuf>, engine: Engine, data_dir: &std::path::Path) -> Result<Engine> {
    if !engine.config().classifier.enabled {
        return Ok(engine);
    }
    let shared = config_cmd::load(config.map(PathBuf::as_path))?.store.postgres()?.is_some();
    let file = data_dir.join(mailsift_store::sqlite::FILE_NAME);
    if !shared && !file.exists() {
        return Ok(engine);
    }
    let store = config_cmd::classifier_store(config, data_dir)?;
    let at = store.describe();
    let learner =
        mailsift_store::Learner::open(store).with_context(|| format!("{at}: cannot load the classifier store"))?;
    Ok(engine.with_model(learner.model()))
}

fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if !matches!(cli.command, Command::Serve(_) | Command::SmtpSink(_) | Command::SmtpLoad(_)) {
        // A report command piped into `head` ends quietly when the reader goes, as Unix tools do, instead of
        // panicking in println!. Only for commands that write to people: the servers keep Rust's default
        // (SIGPIPE ignored) so a log reader that goes away never stops the mail. Sockets are unaffected
        // either way: Rust writes to them with MSG_NOSIGNAL.
        // SAFETY: called before any thread starts; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let from_env = |id: &str| matches.value_source(id) == Some(clap::parser::ValueSource::EnvVariable);
    let config = cli.config.clone().map(|p| {
        let from = if from_env("config") { datadir::ConfigFrom::Env } else { datadir::ConfigFrom::Flag };
        (p, from)
    });
    let data_dir = cli.data_dir.clone().map(|p| {
        let from = if from_env("data_dir") { datadir::DataDirFrom::Env } else { datadir::DataDirFrom::Flag };
        (p, from)
    });
    let read_key =
        !matches!(cli.command, Command::Init(_) | Command::SmtpSink(_) | Command::SmtpLoad(_) | Command::AuthHash);
    let at = match datadir::Location::resolve(config, data_dir, read_key) {
        Ok(at) => at,
        Err(e) => {
            eprintln!("mailsift: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(cli, &at) {
        Ok(code) => code,
        Err(e) => {
            // A command that will not create a database says where it looked and how it chose the place.
            match e.chain().find_map(|c| c.downcast_ref::<datadir::NoDatabase>()) {
                Some(missing) => eprintln!("mailsift: {}", at.refusal(missing)),
                None => eprintln!("mailsift: {e:#}"),
            }
            ExitCode::from(2)
        }
    }
}

fn run(mut cli: Cli, at: &datadir::Location) -> Result<ExitCode> {
    cli.config = at.config.clone();
    let data_dir = at.data_dir.as_path();
    let trained = || with_trained_model(cli.config.as_ref(), load_engine(cli.config.as_ref())?, data_dir);
    match cli.command {
        Command::Scan(args) => scan::run_cli(cli.config.as_ref(), data_dir, &args),
        Command::Explain { file, envelope } => scan::explain(cli.config.as_ref(), data_dir, &file, &envelope),
        Command::Diagnose(args) => diagnose::run(cli.config.as_ref(), data_dir, &args),
        Command::Symbols { json } => {
            let engine = load_engine(cli.config.as_ref())?;
            print_symbols(&engine, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench::run(&trained()?, &args).map(|_| ExitCode::SUCCESS),
        Command::Eval(args) => eval::run(load_engine(cli.config.as_ref())?, data_dir, &args).map(|_| ExitCode::SUCCESS),
        Command::Train(args) => train::run(cli.config.as_ref(), &load_engine(cli.config.as_ref())?, data_dir, &args)
            .map(|_| ExitCode::SUCCESS),
        Command::Reputation(cmd) => {
            reputation::run(cli.config.as_ref(), &load_engine(cli.config.as_ref())?, data_dir, &cmd)
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Report(args) => {
            report::run(cli.config.as_ref(), report::gateway_engine(cli.config.as_ref(), data_dir)?, data_dir, &args)
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Serve(args) => serve::run(cli.config.as_ref(), data_dir, &args).map(|_| ExitCode::SUCCESS),
        Command::Log(cmd) => log::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Domains(cmd) => domains::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Asf(cmd) => asf::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Reports(args) => reports::run(cli.config.as_ref(), data_dir, &args).map(|_| ExitCode::SUCCESS),
        Command::Queue(cmd) => queue::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Dkim(cmd) => dkim::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Dmarc(cmd) => dmarc::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Accounts(cmd) => accounts::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Quarantine(cmd) => quarantine::run(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Rules(cmd) => policy::run_rules(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Lists(cmd) => policy::run_lists(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Policy(cmd) => policy::run_policy(cli.config.as_ref(), data_dir, &cmd).map(|_| ExitCode::SUCCESS),
        Command::Init(args) => init::run(at, &args).map(|_| ExitCode::SUCCESS),
        Command::Config(config_cmd::ConfigCommand::Check) => {
            init::check(cli.config.as_ref(), data_dir).map(|_| ExitCode::SUCCESS)
        }
        Command::Config(config_cmd::ConfigCommand::Dump { non_default }) => {
            config_cmd::dump(at, non_default).map(|_| ExitCode::SUCCESS)
        }
        Command::Store(config_cmd::StoreCommand::Create) => {
            config_cmd::store_create(cli.config.as_ref(), data_dir).map(|_| ExitCode::SUCCESS)
        }
        Command::Store(config_cmd::StoreCommand::Check) => config_cmd::store_check(cli.config.as_ref(), data_dir),
        Command::Store(config_cmd::StoreCommand::Migrate { to, password_file, ca_file }) => {
            config_cmd::store_migrate(data_dir, &to, password_file.as_deref(), ca_file.as_deref())
                .map(|_| ExitCode::SUCCESS)
        }
        Command::Backup(args) => backup::backup(cli.config.as_ref(), data_dir, &args).map(|_| ExitCode::SUCCESS),
        Command::Restore(args) => backup::restore(data_dir, &args).map(|_| ExitCode::SUCCESS),
        Command::SmtpSink(args) => serve::sink(&args).map(|_| ExitCode::SUCCESS),
        Command::SmtpLoad(args) => load::run(&args).map(|_| ExitCode::SUCCESS),
        Command::Generate(cmd) => generate::run(&cmd).map(|_| ExitCode::SUCCESS),
        Command::AuthHash => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).context("cannot read the password from standard input")?;
            let password = line.trim_end_matches(['\r', '\n']);
            if password.is_empty() {
                anyhow::bail!("give the password on standard input, e.g. `mailsift auth-hash < file`");
            }
            println!("{}", mailsift_smtp::auth::hash_password(password));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_symbols(engine: &Engine, json: bool) -> Result<()> {
    let reg = engine.registry();
    if json {
        let all: Vec<_> = reg.iter().collect();
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    let mut defs: Vec<_> = reg.iter().collect();
    defs.sort_by(|a, b| a.group.cmp(&b.group).then(a.name.cmp(&b.name)));
    let mut group = None;
    for d in defs {
        if group != Some(d.group) {
            println!("\n[{}]", d.group.as_str());
            group = Some(d.group);
        }
        let asf = match d.asf {
            Some(mailsift_engine::symbols::AsfEffect::HighConfidenceSpam) => "  (ASF: marks high-confidence spam)",
            Some(mailsift_engine::symbols::AsfEffect::IncreaseScore) => "  (ASF: increases the score)",
            None => "",
        };
        println!("{:<28} {:>8.2}  {}{}", d.name, d.weight, d.description, asf);
        println!("{:<28} {:>8}  fix: {}", "", "", d.remedy);
    }
    Ok(())
}
